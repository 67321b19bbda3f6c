//! [`ApiJson`]: a JSON body extractor whose every failure is an [`ApiError`] (413 over the
//! body limit, 400 for bad JSON or wrong field types, naming the field).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::protocol::SamplingFields;
use crate::state::AppState;

/// The sampling fields are `#[serde(flatten)]`ed into the completion requests, which hides
/// the path of an error in them; deserializing them alone recovers it (`temperature: "hot"`
/// becomes an error about `temperature`).
fn sampling_field_error(bytes: &[u8]) -> Option<ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    let e = serde_path_to_error::deserialize::<_, SamplingFields>(deserializer).err()?;
    let path = e.path().to_string();
    (path != ".").then(|| ApiError::invalid(&path, e.into_inner().to_string()))
}

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
                Err(if inner.is_syntax() || inner.is_eof() {
                    ApiError::bad_request(format!("invalid JSON body: {inner}"))
                } else if path != "." {
                    ApiError::invalid(&path, inner.to_string())
                } else if let Some(field) = sampling_field_error(&bytes) {
                    field
                } else {
                    ApiError::bad_request(format!("invalid request body: {inner}"))
                })
            }
        }
    }
}
