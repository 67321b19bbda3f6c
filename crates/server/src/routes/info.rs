//! `GET /v1/models`, `/v1/models/{model}`, `/version`, `/health`, `/metrics` and
//! `/openapi.json`.

use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::Json;
use utoipa::OpenApi;

use super::common::check_model;
use crate::error::{ApiError, ErrorResponse};
use crate::protocol::{HealthResponse, ModelCard, ModelList, VersionResponse};
use crate::state::AppState;

/// Lists the served model.
#[utoipa::path(get, path = "/v1/models", responses((status = 200, body = ModelList),
    (status = 401, description = "Bad API key", body = ErrorResponse),
    (status = 503, description = "Server shutting down", body = ErrorResponse)))]
pub async fn list_models(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList {
        object: "list".into(),
        data: vec![model_card(&state)],
    })
}

/// Describes the served model (OpenAI's "retrieve model"); any other name is a 404.
#[utoipa::path(get, path = "/v1/models/{model}",
    params(("model" = String, Path, description = "The model's id")),
    responses((status = 200, body = ModelCard),
    (status = 401, description = "Bad API key", body = ErrorResponse),
    (status = 404, description = "Unknown model", body = ErrorResponse),
    (status = 503, description = "Server shutting down", body = ErrorResponse)))]
pub async fn retrieve_model(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<ModelCard>, ApiError> {
    check_model(&state, Some(&model))?;
    Ok(Json(model_card(&state)))
}

fn model_card(state: &AppState) -> ModelCard {
    ModelCard {
        id: state.config.served_model_name.clone(),
        object: "model".into(),
        created: state.created,
        owned_by: "tokenspeed".into(),
        max_model_len: state.config.max_model_len,
    }
}

/// The server's version (the `tokenspeed-server` crate's, which the wheel shares).
#[utoipa::path(get, path = "/version", responses((status = 200, body = VersionResponse),
    (status = 401, description = "Bad API key", body = ErrorResponse),
    (status = 503, description = "Server shutting down", body = ErrorResponse)))]
pub async fn version() -> Json<VersionResponse> {
    Json(VersionResponse {
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// 200 while the engine runs, 503 once it stopped.
#[utoipa::path(get, path = "/health", responses(
    (status = 200, body = HealthResponse),
    (status = 503, description = "Engine stopped", body = ErrorResponse)))]
pub async fn health(State(state): State<AppState>) -> Result<Json<HealthResponse>, ApiError> {
    state.generator.health().map_err(ApiError::Unavailable)?;
    Ok(Json(HealthResponse {
        status: "ok".into(),
    }))
}

/// Prometheus metrics (text format 0.0.4).
#[utoipa::path(get, path = "/metrics", responses((status = 200, body = String,
    content_type = "text/plain"),
    (status = 503, description = "Server shutting down", body = ErrorResponse)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let generator = std::sync::Arc::clone(&state.generator);
    // Reading the stats takes the scheduler lock: keep it off the async workers.
    let stats = tokio::task::spawn_blocking(move || generator.stats())
        .await
        .unwrap_or_default();
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(&stats),
    )
}

/// Debug: the engine's integrity check (200 `{"status": "ok"}`, or 500 naming the broken
/// invariant). Routed only with `TOKENSPEED_DEBUG_ROUTES=1` (tests): it holds the scheduler
/// lock while it walks every page, slot and prefix-tree node.
pub async fn integrity(State(state): State<AppState>) -> Result<Json<HealthResponse>, ApiError> {
    let generator = std::sync::Arc::clone(&state.generator);
    tokio::task::spawn_blocking(move || generator.check_integrity())
        .await
        .map_err(|e| ApiError::Engine(format!("the integrity check did not run: {e}")))?
        .map_err(|e| ApiError::Engine(format!("integrity check failed: {e}")))?;
    Ok(Json(HealthResponse {
        status: "ok".into(),
    }))
}

/// The OpenAPI document of this API.
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::ApiDoc::openapi())
}
