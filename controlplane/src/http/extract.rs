//! Extractors: the authenticated [`Actor`], JSON bodies and query strings whose rejections use
//! the API's error envelope.

use std::{collections::HashMap, net::SocketAddr, sync::Mutex};

use axum::{
    extract::{
        ConnectInfo, FromRequest, FromRequestParts, Request,
        rejection::{JsonRejection, PathRejection},
    },
    http::request::Parts,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::AppState;
use crate::{
    auth,
    authz::{Actor, RequestMeta},
    error::{ApiError, ErrorCode, REQUEST_ID},
    storage::{audit, now_micros, users},
};

/// What authentication remembers between requests: which (token, address) pairs were already
/// seen (so only a token's first use from a new address is audited) and when a failed attempt
/// from an address was last audited (so a flood of bad tokens cannot flood the log). Both are
/// bounded; forgetting only means an extra audit entry.
#[derive(Debug, Default)]
pub struct AuthMemory {
    sources: Mutex<HashMap<(String, String), i64>>,
    failures: Mutex<HashMap<String, i64>>,
    activity: Mutex<HashMap<i64, i64>>,
    networks: Mutex<HashMap<i64, (i64, Vec<ipnet::IpNet>)>>,
}

const MEMORY_LIMIT: usize = 100_000;

/// How long a process relies on the API networks it read for an organization (ADR 0053): a
/// change made through another replica or the CLI applies within this time; one made through
/// this process at once.
const NETWORKS_FRESH_MICROS: i64 = 2_000_000;

impl AuthMemory {
    /// Whether the pair was not seen by this process within the database's memory of it
    /// ([`users::TOKEN_SOURCE_DAYS`]), so the database must be asked.
    fn first_sight(&self, key: &str, ip: &str, now: i64) -> bool {
        let mut seen = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MEMORY_LIMIT {
            seen.clear();
        }
        let horizon = users::TOKEN_SOURCE_DAYS * 86_400_000_000;
        match seen.get(&(key.to_string(), ip.to_string())) {
            Some(at) if now - at < horizon => false,
            _ => {
                seen.insert((key.to_string(), ip.to_string()), now);
                true
            }
        }
    }

    /// Whether the user's last activity is worth recording again (once a minute per process).
    fn should_touch(&self, user_id: i64, now: i64) -> bool {
        let mut seen = self.activity.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MEMORY_LIMIT {
            seen.clear();
        }
        match seen.get(&user_id) {
            Some(last) if now - last < 60_000_000 => false,
            _ => {
                seen.insert(user_id, now);
                true
            }
        }
    }

    /// The API networks of an organization as this process last read them, if that was less
    /// than [`NETWORKS_FRESH_MICROS`] ago.
    fn networks(&self, org: i64, now: i64) -> Option<Vec<ipnet::IpNet>> {
        let cached = self.networks.lock().unwrap_or_else(|e| e.into_inner());
        cached
            .get(&org)
            .filter(|(at, _)| now - at < NETWORKS_FRESH_MICROS)
            .map(|(_, nets)| nets.clone())
    }

    fn remember_networks(&self, org: i64, now: i64, nets: Vec<ipnet::IpNet>) {
        let mut cached = self.networks.lock().unwrap_or_else(|e| e.into_inner());
        if cached.len() >= MEMORY_LIMIT {
            cached.clear();
        }
        cached.insert(org, (now, nets));
    }

    /// Forgets an organization's API networks (this process changed them).
    pub fn forget_networks(&self, org: i64) {
        let mut cached = self.networks.lock().unwrap_or_else(|e| e.into_inner());
        cached.remove(&org);
    }

    fn should_audit_failure(&self, ip: &str, now: i64) -> bool {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MEMORY_LIMIT {
            failures.clear();
        }
        match failures.get(ip) {
            Some(last) if now - last < 10_000_000 => false,
            _ => {
                failures.insert(ip.to_string(), now);
                true
            }
        }
    }
}

/// Where the request came from: request id, client address, user agent.
pub fn request_meta(parts: &Parts, trust_forwarded_for: bool) -> RequestMeta {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let forwarded = trust_forwarded_for
        .then(|| header("x-forwarded-for"))
        .flatten()
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let route = parts
        .extensions
        .get::<axum::extract::MatchedPath>()
        .map(|p| format!("{} {}", parts.method, p.as_str()))
        .unwrap_or_default();
    RequestMeta {
        route,
        request_id: REQUEST_ID.try_with(Clone::clone).unwrap_or_default(),
        client_ip: forwarded.or(peer).unwrap_or_default(),
        user_agent: header("user-agent")
            .unwrap_or_default()
            .chars()
            .take(512)
            .collect(),
    }
}

/// The client address of a request for the organizations' API allow-lists (ADR 0053): the TCP
/// peer, or what `X-Forwarded-For` says when the peer is a trusted proxy (`trusted_proxies`).
pub fn client_ip(parts: &Parts, config: &crate::config::Config) -> Option<std::net::IpAddr> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let forwarded: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let trusted = config.trusted_proxy_networks().unwrap_or_default();
    crate::storage::access_policy::client_address(peer, &forwarded, &trusted)
}

/// Refuses a request of `actor`'s organization from outside its allowed networks (403
/// `client_not_allowed`, audited at most once per address every 10 s); with trusted proxies
/// configured, the audit records the address they reported.
pub(crate) async fn check_client(
    parts: &Parts,
    state: &AppState,
    actor: &mut Actor,
) -> Result<(), ApiError> {
    let client = client_ip(parts, &state.config);
    if let Some(ip) = client
        && !state.config.trusted_proxies.trim().is_empty()
    {
        actor.meta.client_ip = ip.to_string();
    }
    let now = now_micros();
    let nets = match state.auth_memory.networks(actor.org_id, now) {
        Some(nets) => nets,
        None => {
            let nets = crate::storage::access_policy::of_org(&state.db, actor.org_id)
                .await?
                .networks();
            state
                .auth_memory
                .remember_networks(actor.org_id, now, nets.clone());
            nets
        }
    };
    if let Err(e) = crate::storage::access_policy::check_networks(&nets, client) {
        if e.code == ErrorCode::ClientNotAllowed {
            audit_failed_sign_in(state, &actor.meta, "auth.client_refused", &e.detail).await;
        }
        return Err(e);
    }
    Ok(())
}

impl FromRequestParts<AppState> for Actor {
    type Rejection = ApiError;

    /// Accepts `Authorization: Token <legacy>`, `Authorization: Bearer <access JWT>` (or a
    /// legacy token), and `X-Api-Key: <legacy or access JWT>`. Failures are audited (at most
    /// one entry per address every 10 s), and so is a token's first use from a new address.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let meta = request_meta(parts, state.config.trust_forwarded_for);
        match authenticate(parts, state).await {
            Ok((mut actor, source_key)) => {
                actor.meta = meta;
                check_client(parts, state, &mut actor).await?;
                if state
                    .auth_memory
                    .first_sight(&source_key, &actor.meta.client_ip, now_micros())
                {
                    users::note_token_source(&state.db, &actor, &source_key).await?;
                }
                if state.auth_memory.should_touch(actor.user_id, now_micros()) {
                    users::touch_activity(&state.db, actor.user_id).await?;
                }
                Ok(actor)
            }
            Err(err) => {
                if err.code == ErrorCode::Unauthenticated {
                    audit_failed_sign_in(state, &meta, "auth.failed", &err.detail).await;
                }
                Err(err)
            }
        }
    }
}

/// Audits a refused credential as `action` with `reason`, at most one entry per client address
/// every 10 s (so a flood of bad tokens cannot flood the log). A failure to audit is logged.
pub(crate) async fn audit_failed_sign_in(
    state: &AppState,
    meta: &RequestMeta,
    action: &str,
    reason: &str,
) {
    if !state
        .auth_memory
        .should_audit_failure(&meta.client_ip, now_micros())
    {
        return;
    }
    let entry = audit::anonymous(meta, action, serde_json::json!({"reason": reason}));
    if let Err(e) = audit::record(&state.db, entry).await {
        tracing::warn!(error = %e.detail, action, "auditing a failed sign-in failed");
    }
}

/// Resolves the credential of a request to an actor and a key naming the credential (for the
/// new-source audit): a legacy token's hash prefix, or the user behind an access token.
async fn authenticate(parts: &Parts, state: &AppState) -> Result<(Actor, String), ApiError> {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let credential = match (header("authorization"), header("x-api-key")) {
        (Some(auth), _) => {
            let (scheme, value) = auth.split_once(' ').unwrap_or((auth, ""));
            match scheme.to_ascii_lowercase().as_str() {
                "token" | "bearer" => value.trim().to_string(),
                _ => {
                    return Err(ApiError::unauthenticated(
                        "unsupported Authorization scheme; use \"Token <key>\" or \"Bearer <access token>\"",
                    ));
                }
            }
        }
        (None, Some(key)) => key.to_string(),
        (None, None) => {
            if let Some(cookie) = super::ui::session_cookie(&parts.headers) {
                return session_actor(parts, state, &cookie).await;
            }
            return Err(ApiError::unauthenticated(
                "Authentication credentials were not provided. Send \"Authorization: Token <your API token>\".",
            ));
        }
    };
    if credential.is_empty() {
        return Err(ApiError::unauthenticated(
            "the Authorization header has no token",
        ));
    }
    let (actor, key) = if auth::looks_like_jwt(&credential) {
        let claims = auth::verify_jwt(
            &state.jwt_key,
            &credential,
            "access",
            now_micros() / 1_000_000,
        )
        .map_err(|e| {
            let hint = if matches!(e, auth::JwtError::WrongType { .. }) {
                "; a personal access token must first be exchanged at POST /api/token/refresh"
            } else {
                ""
            };
            ApiError::unauthenticated(format!("{e}{hint}"))
        })?;
        (
            users::actor_for_access(&state.db, &claims).await?,
            format!("access:{}", claims.user_id),
        )
    } else {
        let hash = auth::hash_token(&credential);
        (
            users::actor_for_legacy_token(&state.db, &credential).await?,
            format!("legacy:{}", &hash[..16]),
        )
    };
    let actor = actor
        .ok_or_else(|| ApiError::unauthenticated("Invalid token, or the user is deactivated."))?;
    Ok((actor, key))
}

/// The actor behind a session cookie (the web UI's calls). Unsafe methods must carry the
/// session's CSRF token in `X-CSRFToken` (the header Label Studio's frontend sends): the cookie
/// alone, which a browser attaches to a forged cross-site request, is not enough.
async fn session_actor(
    parts: &Parts,
    state: &AppState,
    cookie: &str,
) -> Result<(Actor, String), ApiError> {
    let (actor, session) = crate::storage::sessions::actor_for_session(&state.db, cookie)
        .await?
        .ok_or_else(|| {
            ApiError::unauthenticated("your session has ended; sign in again at /user/login")
        })?;
    let safe = matches!(parts.method.as_str(), "GET" | "HEAD" | "OPTIONS");
    if !safe {
        let given = parts
            .headers
            .get("x-csrftoken")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !super::ui::same_secret(given, &session.csrf_token) {
            return Err(ApiError::new(
                ErrorCode::CsrfFailed,
                "calls made with the session cookie must send the page's CSRF token in the X-CSRFToken header; reload the page",
            ));
        }
    }
    Ok((actor, format!("session:{}", session.id)))
}

/// The caller of the instance admin API: authenticated with `Authorization: Bearer
/// <instance_admin_token>`. Without a configured token the API does not exist (404).
#[derive(Debug, Clone)]
pub struct InstanceAdmin(pub RequestMeta);

impl FromRequestParts<AppState> for InstanceAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let expected = &state.config.instance_admin_token;
        if expected.is_empty() {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                "no such endpoint; the instance admin API is off (set instance_admin_token)",
            ));
        }
        let meta = request_meta(parts, state.config.trust_forwarded_for);
        let given = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or_default();
        // Comparing digests keeps the comparison's timing independent of the secret.
        if auth::hash_token(given) == auth::hash_token(expected) {
            return Ok(Self(meta));
        }
        audit_failed_sign_in(
            state,
            &meta,
            "auth.admin_failed",
            "wrong or missing instance admin token",
        )
        .await;
        Err(ApiError::unauthenticated(
            "the instance admin API needs \"Authorization: Bearer <instance_admin_token>\"",
        ))
    }
}

/// A JSON object body; malformed JSON or a non-object is a 400 in the API's envelope.
#[derive(Debug)]
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<Value>::from_request(req, state).await {
            Ok(axum::Json(Value::Object(map))) => Ok(Self(map)),
            Ok(_) => Err(ApiError::bad_request(
                ErrorCode::InvalidJson,
                "the body must be a JSON object",
            )),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// Any JSON body.
#[derive(Debug)]
pub struct JsonValue(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonValue {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Json::<Value>::from_request(req, state)
            .await
            .map(|axum::Json(v)| Self(v))
            .map_err(json_rejection)
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::BytesRejection(_)
            if rejection.status() == http::StatusCode::PAYLOAD_TOO_LARGE =>
        {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                "the request body is larger than the server accepts (max_body_bytes)",
            )
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::bad_request(
            ErrorCode::InvalidJson,
            "send the body as JSON with Content-Type: application/json",
        ),
        other => ApiError::bad_request(
            ErrorCode::InvalidJson,
            format!("invalid JSON body: {}", other.body_text()),
        ),
    }
}

/// Path parameters. A segment that does not parse as the route expects (an id that is not an
/// integer, or out of range) names no resource: 404 `not_found` in the API's envelope, as Label
/// Studio answers for a URL its patterns do not match.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(ApiError::new(
                ErrorCode::NotFound,
                format!("no such resource: {}", e.body_text()),
            )),
            Err(other) => Err(ApiError::internal(format!(
                "path parameters: {}",
                other.body_text()
            ))),
        }
    }
}

/// Query string parameters; bad values are a 400 naming the parameter.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded_compat::from_str(query)
            .map(Query)
            .map_err(|e| {
                ApiError::bad_request(
                    ErrorCode::InvalidQuery,
                    format!("invalid query string: {e}"),
                )
            })
    }
}

/// Query-string decoding through axum's own deserializer (keeps one dependency).
mod serde_urlencoded_compat {
    use serde::de::DeserializeOwned;

    pub(super) fn from_str<T: DeserializeOwned>(query: &str) -> Result<T, String> {
        let uri: http::Uri = format!("/?{query}")
            .parse()
            .map_err(|e: http::uri::InvalidUri| e.to_string())?;
        axum::extract::Query::<T>::try_from_uri(&uri)
            .map(|q| q.0)
            .map_err(|e| e.body_text())
    }
}

/// Parses an optional integer query value that may be empty.
pub fn opt_int(name: &str, value: &Option<String>) -> Result<Option<i64>, ApiError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            ApiError::field(
                ErrorCode::InvalidQuery,
                name,
                format!("{v:?} is not an integer"),
            )
        }),
    }
}

/// Parses a required integer query value: 400 `invalid_query` naming `name` when it is missing
/// or not an integer.
pub fn required_int(name: &str, value: &Option<String>) -> Result<i64, ApiError> {
    opt_int(name, value)?
        .ok_or_else(|| ApiError::field(ErrorCode::InvalidQuery, name, "this parameter is required"))
}

/// Parses an optional boolean query value (`true`/`false`/`1`/`0`).
pub fn opt_bool(name: &str, value: &Option<String>) -> Result<Option<bool>, ApiError> {
    match value.as_deref().map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v == "true" || v == "1" => Ok(Some(true)),
        Some(v) if v == "false" || v == "0" => Ok(Some(false)),
        Some(v) => Err(ApiError::field(
            ErrorCode::InvalidQuery,
            name,
            format!("{v:?} is not true or false"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_sources_are_remembered_for_the_database_horizon() {
        let m = AuthMemory::default();
        let day = 86_400_000_000;
        assert!(m.first_sight("k", "1.2.3.4", 0));
        assert!(!m.first_sight("k", "1.2.3.4", day));
        assert!(m.first_sight("k", "5.6.7.8", day), "a new address");
        assert!(m.first_sight("other", "1.2.3.4", day), "another token");
        let later = users::TOKEN_SOURCE_DAYS * day;
        assert!(
            m.first_sight("k", "1.2.3.4", later),
            "asked again once the database forgot"
        );
        assert!(!m.first_sight("k", "1.2.3.4", later + 1));
    }

    #[test]
    fn failed_sign_ins_are_audited_once_per_address_per_10_seconds() {
        let m = AuthMemory::default();
        assert!(m.should_audit_failure("1.2.3.4", 0));
        assert!(!m.should_audit_failure("1.2.3.4", 9_999_999));
        assert!(m.should_audit_failure("5.6.7.8", 9_999_999));
        assert!(m.should_audit_failure("1.2.3.4", 10_000_000));
    }
}
