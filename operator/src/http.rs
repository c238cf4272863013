//! The operator's own HTTP endpoints: `/metrics`, `/livez` (the process is up) and `/readyz`
//! (this replica leads and its controllers run, or it is a healthy standby).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::metrics::Metrics;

/// State served over HTTP.
#[derive(Clone)]
pub struct Health {
    /// Metrics to render.
    pub metrics: Metrics,
    /// Set once the controllers run (or the replica is a ready standby).
    pub ready: Arc<AtomicBool>,
}

/// The router (no I/O at construction, so tests can call it directly).
pub fn router(health: Health) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(h): State<Health>| async move { h.metrics.render() }),
        )
        .route("/livez", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(h): State<Health>| async move {
                if h.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting")
                }
            }),
        )
        .with_state(health)
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    health: Health,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /livez, /readyz");
    axum::serve(listener, router(health))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
