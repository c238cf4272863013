//! The storage proxy (ADR 0021): serves the object a signed link names, streamed from its
//! storage with single byte ranges, validators and a cache lifetime bounded by the link's.
//! It runs as `verity storage-proxy` (one Deployment per organization) and inside
//! `verity serve` under `/storage-proxy/` (the embedded default). It keeps no state: the link
//! carries what to serve, the database says whether the storage still exists. It never reads a
//! whole object into memory and never serves anything a valid link does not name.

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use object_store::ObjectStore;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::{
    config::Config,
    error::{ApiError, ApiResult, ErrorCode},
    links::{LinkSigner, unix_now},
    localfiles::Root,
    storage::{Db, storages},
};

/// How a 416 carries the object's length to the response (`internal`, never sent).
const OBJECT_LENGTH: &str = "object-length:";

/// The path prefix of the proxy's links.
pub const PREFIX: &str = "/storage-proxy";

/// Metrics of the proxy (`verity_storage_proxy_*`).
#[derive(Debug, Clone)]
pub struct ProxyMetrics {
    requests: IntCounterVec,
    bytes: IntCounter,
}

impl ProxyMetrics {
    /// Registers the proxy's metrics in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "verity_storage_proxy_requests_total",
                "Storage proxy requests by outcome (served, partial, not_modified, invalid_link, link_expired, not_found, range_not_satisfiable, too_large, refused, error)",
            ),
            &["outcome"],
        )?;
        let bytes = IntCounter::new(
            "verity_storage_proxy_bytes_total",
            "Bytes of objects the storage proxy sent (bodies of GET answers)",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        Ok(Self { requests, bytes })
    }

    fn outcome(&self, outcome: &str) {
        self.requests.with_label_values(&[outcome]).inc();
    }
}

/// What the proxy needs to serve a link.
#[derive(Clone)]
pub struct Proxy {
    /// Database (storage lookups).
    pub db: Db,
    /// Link signer.
    pub links: LinkSigner,
    /// Configuration (root, size limit).
    pub config: Arc<Config>,
    /// Metrics.
    pub metrics: ProxyMetrics,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

impl Proxy {
    /// Serves the object of `token` (GET, or HEAD without a body).
    /// `client` is the caller's address (the organization's API networks apply to links too).
    pub async fn respond(
        &self,
        method: &Method,
        token: &str,
        headers: &HeaderMap,
        client: Option<std::net::IpAddr>,
    ) -> Response {
        match self.serve(method, token, headers, client).await {
            Ok((outcome, response)) => {
                self.metrics.outcome(outcome);
                response
            }
            Err(e) => {
                self.metrics.outcome(match e.code {
                    ErrorCode::InvalidLink => "invalid_link",
                    ErrorCode::LinkExpired => "link_expired",
                    ErrorCode::NotFound => "not_found",
                    ErrorCode::RangeNotSatisfiable => "range_not_satisfiable",
                    ErrorCode::ObjectTooLarge => "too_large",
                    ErrorCode::ClientNotAllowed | ErrorCode::EndpointRefused => "refused",
                    _ => "error",
                });
                // A 416 says how long the object is.
                let length = (e.code == ErrorCode::RangeNotSatisfiable)
                    .then(|| e.internal.clone())
                    .flatten()
                    .and_then(|s| s.strip_prefix(OBJECT_LENGTH).map(str::to_string));
                let mut response = e.into_response();
                if let Some(v) =
                    length.and_then(|len| HeaderValue::from_str(&format!("bytes */{len}")).ok())
                {
                    response.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                response
            }
        }
    }

    async fn serve(
        &self,
        method: &Method,
        token: &str,
        headers: &HeaderMap,
        client: Option<std::net::IpAddr>,
    ) -> ApiResult<(&'static str, Response)> {
        let now = unix_now();
        let link = self.links.verify(token, now)?;
        crate::storage::access_policy::check_caller(&self.db, link.organization, client).await?;
        let gone = || ApiError::not_found("object");
        let (source, len, etag, modified) =
            if crate::cloud::Provider::from_kind(&link.kind).is_some() {
                let store = bucket_target(&self.db, &self.config, &link)
                    .await?
                    .ok_or_else(gone)?;
                let path = object_store::path::Path::from(link.key.as_str());
                let meta = match object_store::ObjectStoreExt::head(&store, &path).await {
                    Ok(m) => m,
                    Err(object_store::Error::NotFound { .. }) => return Err(gone()),
                    Err(e) => return Err(bucket_error(&e)),
                };
                let etag = meta
                    .e_tag
                    .clone()
                    .map(|t| {
                        if t.starts_with('"') {
                            t
                        } else {
                            format!("\"{t}\"")
                        }
                    })
                    .unwrap_or_else(|| format!("\"{:x}\"", meta.size));
                let modified = std::time::SystemTime::UNIX_EPOCH.checked_add(
                    std::time::Duration::from_secs(meta.last_modified.timestamp().max(0) as u64),
                );
                (Source::Bucket(store, path), meta.size, etag, modified)
            } else {
                let dir = storages::link_target(&self.db, &link)
                    .await?
                    .ok_or_else(gone)?;
                let root = Root::from_config(&self.config).map_err(|_| gone())?;
                let path = root
                    .object(std::path::Path::new(&dir), &link.key)?
                    .ok_or_else(gone)?;
                let file = tokio::fs::File::open(&path).await.map_err(|_| gone())?;
                let meta = file.metadata().await.map_err(ApiError::internal)?;
                let len = meta.len();
                let modified = meta.modified().ok();
                let mtime = modified
                    .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                (
                    Source::File(file),
                    len,
                    format!("\"{len:x}-{mtime:x}\""),
                    modified,
                )
            };
        let mut common = HeaderMap::new();
        let put = |h: &mut HeaderMap, name: header::HeaderName, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(name, v);
            }
        };
        put(&mut common, header::ETAG, &etag);
        if let Some(m) = modified {
            put(
                &mut common,
                header::LAST_MODIFIED,
                &httpdate::fmt_http_date(m),
            );
        }
        let remaining = (link.expires - now).max(0);
        put(
            &mut common,
            header::CACHE_CONTROL,
            &format!("private, max-age={remaining}"),
        );
        put(&mut common, header::ACCEPT_RANGES, "bytes");
        put(&mut common, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
        // The object is the user's data, never the app's: a document it contains runs in an
        // opaque origin, without the app's privileges, even when the proxy shares its host.
        put(&mut common, header::CONTENT_SECURITY_POLICY, "sandbox");
        put(&mut common, header::CONTENT_TYPE, content_type(&link.key));
        let unconditional_range = match headers.get(header::IF_RANGE) {
            Some(v) => v.to_str().ok() == Some(etag.as_str()),
            None => true,
        };
        let range = if unconditional_range {
            headers
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok())
                .map(|v| parse_range(v, len))
        } else {
            None
        };
        if range.is_none()
            && headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
        {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            response.headers_mut().extend(common);
            response.headers_mut().remove(header::CONTENT_TYPE);
            return Ok(("not_modified", response));
        }
        let (status, start, end, outcome) = match range {
            Some(Range::Unsatisfiable) => {
                return Err(ApiError {
                    internal: Some(format!("{OBJECT_LENGTH}{len}")),
                    ..ApiError::new(
                        ErrorCode::RangeNotSatisfiable,
                        format!("the requested range lies outside the object ({len} bytes)"),
                    )
                });
            }
            Some(Range::Bytes(start, end)) => (StatusCode::PARTIAL_CONTENT, start, end, "partial"),
            Some(Range::Ignored) | None if len == 0 => (StatusCode::OK, 0, 0, "served"),
            Some(Range::Ignored) | None => (StatusCode::OK, 0, len - 1, "served"),
        };
        let size = if len == 0 { 0 } else { end - start + 1 };
        if size > self.config.storage_proxy_max_bytes {
            return Err(ApiError::new(
                ErrorCode::ObjectTooLarge,
                format!(
                    "the object is {len} bytes and this server sends at most {} per request (storage_proxy_max_bytes); ask for byte ranges (Range: bytes=0-…)",
                    self.config.storage_proxy_max_bytes
                ),
            ));
        }
        let body = if method == Method::HEAD || size == 0 {
            Body::empty()
        } else {
            let metrics = self.metrics.clone();
            let count = move |chunk: &Result<bytes::Bytes, std::io::Error>| {
                if let Ok(bytes) = chunk {
                    metrics.bytes.inc_by(bytes.len() as u64);
                }
            };
            match source {
                Source::File(mut file) => {
                    file.seek(std::io::SeekFrom::Start(start))
                        .await
                        .map_err(ApiError::internal)?;
                    let stream =
                        tokio_util::io::ReaderStream::with_capacity(file.take(size), 64 * 1024);
                    Body::from_stream(futures::StreamExt::inspect(stream, count))
                }
                Source::Bucket(store, path) => {
                    let options = object_store::GetOptions {
                        range: Some(object_store::GetRange::Bounded(start..end + 1)),
                        ..Default::default()
                    };
                    let result = store.get_opts(&path, options).await.map_err(|e| match e {
                        object_store::Error::NotFound { .. } => ApiError::not_found("object"),
                        e => bucket_error(&e),
                    })?;
                    let stream = futures::StreamExt::map(result.into_stream(), |chunk| {
                        chunk.map_err(std::io::Error::other)
                    });
                    Body::from_stream(futures::StreamExt::inspect(stream, count))
                }
            }
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        response.headers_mut().extend(common);
        let h = response.headers_mut();
        put(h, header::CONTENT_LENGTH, &size.to_string());
        if status == StatusCode::PARTIAL_CONTENT {
            put(
                h,
                header::CONTENT_RANGE,
                &format!("bytes {start}-{end}/{len}"),
            );
        }
        Ok((outcome, response))
    }
}

/// Where an object's bytes come from.
enum Source {
    /// A file of a local-files storage, opened.
    File(tokio::fs::File),
    /// An object of a bucket storage (S3, GCS, Azure).
    Bucket(Arc<dyn object_store::ObjectStore>, object_store::path::Path),
}

/// The bucket client of a link's bucket storage, if the storage still exists. `Err(invalid_link)`
/// when it belongs to another organization or project than the link says, or is not an
/// import storage. No actor: the link's signature is the authority.
async fn bucket_target(
    db: &Db,
    config: &Config,
    link: &crate::links::Link,
) -> ApiResult<Option<Arc<dyn object_store::ObjectStore>>> {
    let Some(row) = crate::storage::cloudstorages::by_id(db, link.storage).await? else {
        return Ok(None);
    };
    if row.provider != link.kind
        || row.direction != storages::Direction::Import.as_str()
        || row.organization_id != link.organization
        || row.project_id != link.project
    {
        return Err(crate::links::LinkError::Invalid.into());
    }
    let sealer = crate::secrets::Sealer::for_config(config).map_err(ApiError::internal)?;
    // An endpoint the organization's allow-list no longer allows is refused (403), before any
    // connection; one whose name resolves outside it fails when the bucket is asked (below).
    row.client(db, config, &sealer)
        .await
        .map(|b| Some(b.store))
        .map_err(refused_endpoint)
}

/// An allow-list refusal as the proxy answers it: 403 `endpoint_refused`.
fn refused_endpoint(e: ApiError) -> ApiError {
    if e.code == ErrorCode::EndpointNotAllowed {
        ApiError::new(ErrorCode::EndpointRefused, e.detail)
    } else {
        e
    }
}

/// A bucket error of the proxy: a refusal by the organization's allow-list (a name that
/// resolved outside it) is 403 `endpoint_refused`, anything else `storage_unreachable`.
fn bucket_error(e: &object_store::Error) -> ApiError {
    let text = crate::cloud::describe(e);
    if text.contains(crate::outbound::NOT_IN_ALLOW_LIST) {
        ApiError::new(ErrorCode::EndpointRefused, text)
    } else {
        ApiError::new(
            ErrorCode::StorageUnreachable,
            format!("the bucket did not answer: {text}"),
        )
    }
}

/// A `Range` header, decided against the object's length (also for uploaded files served at
/// `/data/upload/...`, ADR 0042).
#[derive(Debug, PartialEq, Eq)]
pub enum Range {
    /// Serve bytes `start..=end`.
    Bytes(u64, u64),
    /// Not satisfiable: 416.
    Unsatisfiable,
    /// Not a single byte range this server honours (several ranges, another unit, bad
    /// syntax): the whole object is served, as RFC 9110 allows.
    Ignored,
}

/// Decides a `Range` header value against an object of `len` bytes: one range of the form
/// `bytes=a-b`, `bytes=a-` or `bytes=-n` is honoured; anything else is ignored.
pub fn parse_range(value: &str, len: u64) -> Range {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Range::Ignored;
    };
    if spec.contains(',') {
        return Range::Ignored;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Range::Ignored;
    };
    let (a, b) = (a.trim(), b.trim());
    match (a.parse::<u64>(), b.parse::<u64>()) {
        // bytes=-N: the last N bytes.
        (Err(_), Ok(n)) if a.is_empty() => {
            if n == 0 || len == 0 {
                Range::Unsatisfiable
            } else {
                Range::Bytes(len.saturating_sub(n), len - 1)
            }
        }
        // bytes=S-
        (Ok(s), Err(_)) if b.is_empty() => {
            if s >= len {
                Range::Unsatisfiable
            } else {
                Range::Bytes(s, len - 1)
            }
        }
        (Ok(s), Ok(e)) if s <= e => {
            if s >= len {
                Range::Unsatisfiable
            } else {
                Range::Bytes(s, e.min(len - 1))
            }
        }
        _ => Range::Ignored,
    }
}

/// The media type of an object, by its extension.
pub fn content_type(key: &str) -> &'static str {
    let ext = key
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "bmp" => "image/bmp",
        "tif" | "tiff" => "image/tiff",
        "svg" => "image/svg+xml",
        "avif" => "image/avif",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "ogg" | "oga" => "audio/ogg",
        "flac" => "audio/flac",
        "m4a" => "audio/mp4",
        "aac" => "audio/aac",
        "mp4" | "m4v" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "txt" | "log" => "text/plain; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "tsv" => "text/tab-separated-values; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "json" => "application/json",
        "jsonl" => "application/jsonl",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

/// The URL of a link: under the public base URL of a separate proxy when one is configured,
/// else the app's own `/storage-proxy/` route (relative, so it works behind any host name).
pub fn url(config: &Config, token: &str) -> String {
    let base = config.storage_proxy_url.trim().trim_end_matches('/');
    format!("{base}{PREFIX}/{token}")
}

async fn object(
    State(proxy): State<Proxy>,
    Path(token): Path<String>,
    parts: axum::http::request::Parts,
) -> Response {
    let client = crate::http::extract::client_ip(&parts, &proxy.config);
    proxy
        .respond(&parts.method, &token, &parts.headers, client)
        .await
}

/// The routes of `verity storage-proxy`: links under `/storage-proxy/`, probes and metrics.
/// `render_metrics` renders the process's registry.
pub fn router(proxy: Proxy, render_metrics: Arc<dyn Fn() -> String + Send + Sync>) -> Router {
    let db = proxy.db.clone();
    Router::new()
        .route(&format!("{PREFIX}/{{token}}"), get(object))
        .with_state(proxy)
        .route("/livez", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let db = db.clone();
                async move {
                    match db.ping().await {
                        Ok(()) => (StatusCode::OK, "ok"),
                        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unreachable"),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let render = render_metrics.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        render(),
                    )
                }
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Range::Bytes(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), Range::Bytes(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), Range::Bytes(90, 99));
        assert_eq!(parse_range("bytes=-500", 100), Range::Bytes(0, 99));
        assert_eq!(parse_range("bytes=50-500", 100), Range::Bytes(50, 99));
        assert_eq!(parse_range("bytes=100-", 100), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=100-200", 100), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Range::Ignored);
        assert_eq!(parse_range("items=0-1", 100), Range::Ignored);
        assert_eq!(parse_range("bytes=9-1", 100), Range::Ignored);
        assert_eq!(parse_range("bytes=x-y", 100), Range::Ignored);
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("a/b.JPG"), "image/jpeg");
        assert_eq!(content_type("clip.mp4"), "video/mp4");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}
