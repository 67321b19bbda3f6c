//! [`ApiJson`]: a JSON body extractor whose every failure is an [`ApiError`] (413 over the
//! body limit, 400 for bad JSON or wrong field types, naming the field).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON request body (any content type is accepted, so `curl -d` works as is).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge {
                    limit: state.config.max_body_bytes,
                }
            } else {
                ApiError::bad_request(format!("cannot read the request body: {e}"))
            }
        })?;
        let deserializer = &mut serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize(deserializer) {
            Ok(value) => Ok(Self(value)),
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner();
                Err(if inner.is_syntax() || inner.is_eof() || path == "." {
                    ApiError::bad_request(format!("invalid JSON body: {inner}"))
                } else {
                    ApiError::invalid(&path, inner.to_string())
                })
            }
        }
    }
}
