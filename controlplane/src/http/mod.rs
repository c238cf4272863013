//! The HTTP layer: routes, extractors, middleware. Handlers parse requests into repository
//! calls and render views; they never touch the database directly.
//!
//! [`app`] builds the whole service without I/O, so tests drive it in-process. Paths answer
//! with and without a trailing slash (normalized before routing, never redirected), as Label
//! Studio's API does.

pub mod extract;
pub mod limits;
pub mod metrics;
pub mod pagination;
pub mod routes;
pub mod ui;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use tower::Layer;
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};
use tracing::Instrument;

use crate::{
    config::Config,
    error::{ApiError, ErrorCode, REQUEST_ID},
    storage::Db,
};

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// Database pools.
    pub db: Db,
    /// Configuration.
    pub config: Arc<Config>,
    /// JWT signing key.
    pub jwt_key: Arc<Vec<u8>>,
    /// Prometheus metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// What authentication remembers between requests (audit de-duplication).
    pub auth_memory: Arc<extract::AuthMemory>,
    /// The job queue (the database's by default; see [`AppState::with_jobs`]).
    pub jobs: crate::jobs::Jobs,
    /// Seals and opens stored secrets.
    pub sealer: Arc<crate::secrets::Sealer>,
    /// Rate limits.
    pub limits: Arc<limits::RateLimits>,
    /// The outgoing client of ML backends (under the target policy).
    pub ml: crate::ml::Connector,
    /// Set once the server has been told to stop: `/readyz` answers 503 and every response
    /// closes its connection, so clients move to other replicas before this one stops accepting.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// Signs media links (ADR 0021).
    pub links: crate::links::LinkSigner,
}

impl AppState {
    /// State for a service over `db`.
    pub fn new(
        db: Db,
        config: Arc<Config>,
        sealer: Arc<crate::secrets::Sealer>,
        links: crate::links::LinkSigner,
        jwt_key: Vec<u8>,
        metrics: metrics::Metrics,
    ) -> Self {
        Self {
            links,
            limits: Arc::new(limits::RateLimits::new(
                config.rate_limit_per_token_per_minute,
                config.rate_limit_sign_ins_per_minute,
            )),
            sealer,
            jobs: crate::jobs::Jobs::Sql(crate::jobs::sql::SqlQueue::new(db.clone())),
            db,
            jwt_key: Arc::new(jwt_key),
            metrics: Arc::new(metrics),
            auth_memory: Arc::default(),
            ml: crate::ml::Connector::new(&config),
            config,
            draining: Arc::default(),
        }
    }

    /// The storage proxy served in-process under `/storage-proxy/`.
    pub fn proxy(&self) -> crate::proxy::Proxy {
        crate::proxy::Proxy {
            db: self.db.clone(),
            links: self.links.clone(),
            config: self.config.clone(),
            metrics: self.metrics.proxy.clone(),
        }
    }

    /// The same state with another job queue (Redis).
    pub fn with_jobs(mut self, jobs: crate::jobs::Jobs) -> Self {
        self.jobs = jobs;
        self
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("db", &self.db.dialect())
            .finish_non_exhaustive()
    }
}

/// The service: the router behind trailing-slash normalization.
pub type Service = NormalizePath<Router>;

/// Builds the router with every route and middleware; no I/O.
pub fn app(state: AppState) -> Service {
    let (router, _) = routes::router().split_for_parts();
    let router = router
        .merge(ui::router())
        .merge(crate::scim::router())
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(state.clone(), limits::limit))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .with_state(state);
    NormalizePathLayer::trim_trailing_slash().layer(router)
}

async fn fallback() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "no such endpoint; see /api/openapi.json for the API",
    )
}

fn is_long_request(path: &str) -> bool {
    path.contains("/import") || path.ends_with("/export") || path.contains("/download")
}

/// Request id, tracing span, timeout, metrics and error envelope for method-not-allowed.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let timeout = Duration::from_secs(if is_long_request(&path) {
        state.config.long_request_timeout_secs
    } else {
        state.config.request_timeout_secs
    });
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    let started = std::time::Instant::now();
    state.metrics.in_flight.inc();
    let response = REQUEST_ID
        .scope(id.clone(), async move {
            match tokio::time::timeout(timeout, next.run(request)).await {
                Ok(response) => remap(response),
                Err(_) => ApiError::new(
                    ErrorCode::Timeout,
                    format!("the request took longer than {}s", timeout.as_secs()),
                )
                .into_response(),
            }
        })
        .instrument(span.clone())
        .await;
    state.metrics.in_flight.dec();
    let status = response.status();
    state
        .metrics
        .observe(method.as_str(), &route, status.as_u16(), started.elapsed());
    span.in_scope(|| {
        tracing::info!(status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, path = %path, "served");
    });
    let mut response = response;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        // The client's next request opens a new connection, which the Service sends to a
        // replica that is not stopping.
        response
            .headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Gives axum's own plain-text rejections (405, 413 from the body limit) our JSON envelope.
fn remap(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return response;
    }
    match response.status() {
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            ErrorCode::MethodNotAllowed,
            "this method is not allowed on this path",
        )
        .into_response(),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            ErrorCode::PayloadTooLarge,
            "the request body is larger than the server accepts (max_body_bytes)",
        )
        .into_response(),
        _ => response,
    }
}

/// An empty 204 response.
pub fn no_content() -> Response {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Body::empty())
        .unwrap_or_default()
}
