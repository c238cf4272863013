//! Version, health, readiness, metrics and the OpenAPI document.

use axum::{Json, extract::State, http::header, response::IntoResponse};
use serde::Serialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    error::{ApiError, ApiResult, ErrorCode},
    http::AppState,
};

/// `GET /api/version`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VersionView {
    /// Release (Verity's version).
    pub release: String,
    /// `Community`: clients use the synchronous import and export flows.
    pub edition: String,
    /// The server's own name.
    pub server: String,
}

/// The server version and edition (clients choose their import/export flows by `edition`).
#[utoipa::path(get, path = "/api/version", tag = "meta", security(()), responses((status = 200, body = VersionView)))]
pub async fn version() -> Json<VersionView> {
    Json(VersionView {
        release: crate::VERSION.into(),
        edition: "Community".into(),
        server: "verity".into(),
    })
}

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/livez", tag = "meta", security(()), responses((status = 200, description = "alive")))]
pub async fn livez() -> &'static str {
    "ok"
}

/// Readiness: the database answers and the server is not stopping.
#[utoipa::path(get, path = "/readyz", tag = "meta", security(()), responses((status = 200, description = "ready"), (status = 503, body = crate::error::ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<&'static str> {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "the server is shutting down",
        ));
    }
    state.db.ping().await.map_err(|e| ApiError {
        internal: Some(e.to_string()),
        ..ApiError::new(ErrorCode::Unavailable, "the database is not reachable")
    })?;
    Ok("ok")
}

/// Label Studio's health probe.
#[utoipa::path(get, path = "/health", tag = "meta", security(()), responses((status = 200, description = "`{\"status\": \"UP\"}`")))]
pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "UP"}))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "meta", security(()), responses((status = 200, description = "text exposition format")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // Queue depths are read at scrape time (a few indexed counts, or Redis LLEN/ZCARD).
    state.metrics.jobs.refresh(&state.jobs).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(state.db.pool_stats()),
    )
}

/// This API's OpenAPI document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta", security(()), responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi_json(),
    )
}

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(version))
        .routes(routes!(livez))
        .routes(routes!(readyz))
        .routes(routes!(health))
        .routes(routes!(metrics))
        .routes(routes!(openapi))
}
