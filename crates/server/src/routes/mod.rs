//! The API's routes, as data: one table of `(path, handler)` per concern, then the layers
//! (API key, body limit, response metrics) and the 404 fallback.

mod chat;
mod chat_stream;
mod common;
mod completions;
mod extract;
mod info;
mod tokenize;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

pub use chat::__path_chat_completions;
pub use completions::__path_completions;
pub use info::{
    __path_health, __path_list_models, __path_metrics, __path_retrieve_model, __path_version,
};
pub use tokenize::{__path_detokenize, __path_tokenize};

/// The full API over `state`: OpenAI routes and operational routes. With an API key, every
/// request but `GET /health` needs it (unknown routes too: 401 before 404, so the routes
/// cannot be probed without the key).
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/completions", post(completions::completions))
        .route("/v1/models", get(info::list_models))
        .route("/v1/models/{model}", get(info::retrieve_model))
        .route("/tokenize", post(tokenize::tokenize))
        .route("/detokenize", post(tokenize::detokenize));
    let mut operations = Router::new()
        .route("/health", get(info::health))
        .route("/version", get(info::version))
        .route("/metrics", get(info::metrics))
        .route("/openapi.json", get(info::openapi));
    if std::env::var_os("TOKENSPEED_DEBUG_ROUTES").is_some_and(|v| v == "1") {
        operations = operations.route("/debug/integrity", get(info::integrity));
    }
    let body_limit = state.config.max_body_bytes;
    api.merge(operations)
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_response,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::RouteNotFound {
        method: request.method().to_string(),
        path: request.uri().path().to_string(),
    }
}

/// A known path with another method: an OpenAI-shaped 405 (axum adds the `Allow` header).
async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::MethodNotAllowed {
        method: request.method().to_string(),
        path: request.uri().path().to_string(),
    }
}

/// `Authorization: Bearer <key>`, compared in constant time.
async fn require_api_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let open = request.uri().path() == "/health"; // for load balancers and probes
    if let (Some(key), false) = (&state.config.api_key, open) {
        let given = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(key.as_bytes())) {
            return ApiError::Unauthorized.into_response();
        }
    }
    next.run(request).await
}

/// Counts every response by route and status for `/metrics`, and logs it.
async fn count_response(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let method = request.method().clone();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state.metrics.record_response(&route, status);
    // For streams this is the time to the response head; the body follows.
    tracing::info!(%method, route, status, ms = started.elapsed().as_millis() as u64, "request");
    response
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tool_choice_tests;
