//! Rate limits (the `governor` crate, GCRA): a request budget per credential, and a budget of
//! failed sign-ins per client address. A failed authentication, token exchange or invitation
//! acceptance spends the address's budget; once it is spent, the address gets 429 for every
//! request that carries a credential (and for those endpoints) until it refills, so guessing
//! tokens from one address stays slow whatever the answers would have been. Successful
//! sign-ins cost nothing (clients exchange tokens often, many users share an address). Each
//! 429 carries `Retry-After`.

use std::{
    net::IpAddr,
    num::NonZeroU32,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use axum::{
    extract::{Request, State},
    http::{HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use sha2::{Digest, Sha256};

use super::AppState;
use crate::error::{ApiError, ErrorCode};

/// Endpoints that exchange or create credentials without one: each call is a sign-in attempt.
const SIGN_IN_PATHS: &[&str] = &[
    "/api/token/refresh",
    "/api/invitations/accept",
    "/user/login",
    "/user/signup",
];

/// Whether a POST to `path` is a sign-in: one of [`SIGN_IN_PATHS`], or a SAML assertion
/// consumer service (`/saml/{org}/acs`), where anyone may post a response to be checked.
fn is_sign_in(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    SIGN_IN_PATHS.contains(&path)
        || path
            .strip_prefix("/saml/")
            .and_then(|rest| rest.strip_suffix("/acs"))
            .is_some_and(|org| !org.is_empty() && !org.contains('/'))
}

/// The limiters of one process.
pub struct RateLimits {
    per_credential: Option<DefaultKeyedRateLimiter<[u8; 16]>>,
    sign_in_per_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Addresses whose sign-in budget ran out, until when.
    blocked: std::sync::Mutex<std::collections::HashMap<IpAddr, Instant>>,
    checks: AtomicU64,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").finish_non_exhaustive()
    }
}

impl RateLimits {
    /// Limits of `per_credential_per_minute` requests per credential and
    /// `sign_ins_per_minute` sign-in attempts per address (0: no limit).
    pub fn new(per_credential_per_minute: u32, sign_ins_per_minute: u32) -> Self {
        Self {
            per_credential: NonZeroU32::new(per_credential_per_minute)
                .map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            sign_in_per_address: NonZeroU32::new(sign_ins_per_minute)
                .map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            blocked: std::sync::Mutex::default(),
            checks: AtomicU64::new(0),
        }
    }

    /// Forgets keys whose budget is full again (bounded memory), every 4096 checks.
    fn housekeeping(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 != 4095 {
            return;
        }
        if let Some(l) = &self.per_credential {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.sign_in_per_address {
            l.retain_recent();
            l.shrink_to_fit();
        }
        let now = Instant::now();
        self.blocked_map().retain(|_, until| *until > now);
    }

    /// Spends one sign-in attempt of `ip`; when none is left, blocks the address and answers how
    /// long.
    fn spend_sign_in(&self, ip: IpAddr) -> Option<Duration> {
        let limiter = self.sign_in_per_address.as_ref()?;
        match limiter.check_key(&ip) {
            Ok(()) => None,
            Err(not_until) => {
                let wait = not_until
                    .wait_time_from(DefaultClock::default().now())
                    .max(Duration::from_secs(1));
                self.blocked_map().insert(ip, Instant::now() + wait);
                Some(wait)
            }
        }
    }

    fn blocked_for(&self, ip: IpAddr) -> Option<Duration> {
        let until = *self.blocked_map().get(&ip)?;
        until.checked_duration_since(Instant::now())
    }

    fn blocked_map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<IpAddr, Instant>> {
        self.blocked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn too_many(wait: Duration, what: &str) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = ApiError::new(
        ErrorCode::RateLimited,
        format!("{what}; retry after {secs} s"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert("retry-after", v);
    }
    response
}

/// The credential a request carries (`Authorization` or `X-Api-Key`), if any.
fn credential(request: &Request) -> Option<&str> {
    let headers = request.headers();
    headers
        .get("authorization")
        .or_else(|| headers.get("x-api-key"))
        .and_then(|v| v.to_str().ok())
        .map(|v| v.rsplit(' ').next().unwrap_or(v).trim())
        .filter(|v| !v.is_empty())
}

/// The middleware.
pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limits = &state.limits;
    limits.housekeeping();
    let (parts, body) = request.into_parts();
    let ip: Option<IpAddr> = super::extract::request_meta(&parts, state.config.trust_forwarded_for)
        .client_ip
        .parse()
        .ok();
    let request = Request::from_parts(parts, body);
    let sign_in = request.method() == http::Method::POST && is_sign_in(request.uri().path());
    let key = credential(&request).map(|c| {
        let digest = Sha256::digest(c.as_bytes());
        let mut k = [0u8; 16];
        k.copy_from_slice(&digest[..16]);
        k
    });
    if let Some(ip) = ip
        && (sign_in || key.is_some())
        && let Some(wait) = limits.blocked_for(ip)
    {
        return too_many(wait, "too many failed sign-ins from this address");
    }
    if let (Some(k), Some(limiter)) = (key, &limits.per_credential)
        && let Err(not_until) = limiter.check_key(&k)
    {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        return too_many(wait, "this token's request budget is spent");
    }
    let response = next.run(request).await;
    let failed = response.status() == StatusCode::UNAUTHORIZED
        || (sign_in && response.status() == StatusCode::GONE);
    if failed && let Some(ip) = ip {
        limits.spend_sign_in(ip);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_paths_include_every_assertion_consumer_service() {
        for path in [
            "/user/login",
            "/user/login/",
            "/saml/1/acs",
            "/saml/42/acs/",
        ] {
            assert!(is_sign_in(path), "{path}");
        }
        for path in [
            "/saml/1/login",
            "/saml//acs",
            "/saml/1/2/acs",
            "/api/projects",
            "/acs",
        ] {
            assert!(!is_sign_in(path), "{path}");
        }
    }

    #[test]
    fn a_spent_sign_in_budget_blocks_the_address_only() {
        let limits = RateLimits::new(0, 2);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        assert_eq!(limits.spend_sign_in(a), None);
        assert_eq!(limits.spend_sign_in(a), None);
        let wait = limits.spend_sign_in(a).expect("spent");
        assert!(
            wait >= Duration::from_secs(1) && wait <= Duration::from_secs(31),
            "{wait:?}"
        );
        assert!(limits.blocked_for(a).is_some());
        assert!(limits.blocked_for(b).is_none() && limits.spend_sign_in(b).is_none());
        let off = RateLimits::new(0, 0);
        for _ in 0..100 {
            assert_eq!(off.spend_sign_in(a), None);
        }
    }
}
