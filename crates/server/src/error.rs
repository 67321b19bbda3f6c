//! [`ApiError`]: every way a request can fail, mapped in one place to an HTTP status and the
//! OpenAI error body `{"error": {"message", "type", "param", "code"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// Seconds a client told "overloaded" should wait before retrying.
pub const RETRY_AFTER_SECS: u32 = 1;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or asks for something invalid (400).
    #[error("{message}")]
    InvalidRequest {
        /// What is wrong, naming the field.
        message: String,
        /// The offending field, when one is to blame.
        param: Option<String>,
    },
    /// Missing or wrong API key (401).
    #[error("invalid or missing API key: send `Authorization: Bearer <key>`")]
    Unauthorized,
    /// The `model` field names a model this server does not serve (404).
    #[error("the model `{requested}` does not exist; this server serves `{served}`")]
    ModelNotFound {
        /// What the client asked for.
        requested: String,
        /// What this server serves.
        served: String,
    },
    /// No such route (404).
    #[error("no route for {method} {path}")]
    RouteNotFound {
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
    },
    /// The route exists but not for this method (405; the `Allow` header lists the methods).
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed {
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
    },
    /// The request body is over the limit (413).
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The admission queue is full (429, with `Retry-After`).
    #[error("server overloaded: {pending} requests are already admitted; retry later")]
    Overloaded {
        /// Requests admitted when this one was refused.
        pending: usize,
    },
    /// The engine failed while running the request (500).
    #[error("engine failure: {0}")]
    Engine(String),
    /// The engine is not running (503).
    #[error("service unavailable: {0}")]
    Unavailable(String),
}

impl ApiError {
    /// A 400 about one field.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            message: format!("{param}: {}", message.into()),
            param: Some(param.to_string()),
        }
    }

    /// A 400 not tied to one field.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param: None,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::ModelNotFound { .. } | Self::RouteNotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Engine(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The OpenAI `type` and `code` strings.
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            Self::InvalidRequest { .. } => ("invalid_request_error", "invalid_request"),
            Self::Unauthorized => ("authentication_error", "invalid_api_key"),
            Self::ModelNotFound { .. } => ("invalid_request_error", "model_not_found"),
            Self::RouteNotFound { .. } => ("invalid_request_error", "not_found"),
            Self::MethodNotAllowed { .. } => ("invalid_request_error", "method_not_allowed"),
            Self::PayloadTooLarge { .. } => ("invalid_request_error", "request_too_large"),
            Self::Overloaded { .. } => ("rate_limit_error", "server_overloaded"),
            Self::Engine(_) => ("server_error", "engine_error"),
            Self::Unavailable(_) => ("server_error", "service_unavailable"),
        }
    }

    /// The OpenAI error body.
    pub fn body(&self) -> ErrorResponse {
        let (kind, code) = self.kind();
        let param = match self {
            Self::InvalidRequest { param, .. } => param.clone(),
            Self::ModelNotFound { .. } => Some("model".into()),
            _ => None,
        };
        ErrorResponse {
            error: ErrorBody {
                message: self.to_string(),
                r#type: kind.to_string(),
                param,
                code: code.to_string(),
            },
        }
    }
}

/// The OpenAI error envelope.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorBody,
}

/// One error.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Human-readable explanation naming the problem.
    pub message: String,
    /// Error class: `invalid_request_error`, `authentication_error`, `rate_limit_error`,
    /// `server_error`.
    pub r#type: String,
    /// The request field at fault, if any.
    pub param: Option<String>,
    /// Machine-readable code (`model_not_found`, `server_overloaded`, ...).
    pub code: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(self, Self::Engine(_)) {
            tracing::error!(error = %self, "request failed");
        }
        let mut response = (self.status(), Json(self.body())).into_response();
        if let Self::Overloaded { .. } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}
