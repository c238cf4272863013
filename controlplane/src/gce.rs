//! GCS workload identity: OAuth access tokens of the pod's Google service account, from the
//! GCE metadata server (ADR 0054, addendum).
//!
//! When the administrator turns it on (`gcs_workload_identity`), a GCS storage without a stored
//! service-account key signs its requests with a token of the server's own identity instead of
//! making anonymous requests. On GKE with Workload Identity (or on a GCE VM) the metadata server
//! answers `GET /computeMetadata/v1/instance/service-accounts/default/token` with a short-lived
//! token of the service account the pod is bound to; like Google's client libraries, the host
//! is `metadata.google.internal` unless `GCE_METADATA_HOST` names another. The metadata server
//! is the server's own setting, never a storage's, so it is reached by a plain client, not the
//! outbound-guarded one (it lives on a link-local address the guard refuses). Tokens are cached
//! for the whole process until five minutes before they expire (a token with less left is used
//! once and not kept), so a sync or the storage proxy asks about once per token lifetime.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex},
    time::{Duration, Instant},
};

use object_store::{CredentialProvider, gcp::GcpCredential};

/// The name object_store errors of token requests carry (`Error::Generic { store }`).
pub const STORE: &str = "GCE metadata";

/// The metadata host when `GCE_METADATA_HOST` is not set.
pub const DEFAULT_HOST: &str = "metadata.google.internal";

/// Path of the default service account's access token.
const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

/// Tokens are renewed this long before they expire.
const MARGIN: Duration = Duration::from_secs(300);

/// Why the metadata server gave no token, in words for the storage's owner.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TokenError(pub String);

fn failure(message: String) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: Box::new(TokenError(message)),
    }
}

/// The token URL of a metadata host (`host` or `host:port`; empty: the default host).
pub fn token_url(host: &str) -> String {
    let host = host.trim().trim_end_matches('/');
    let host = host
        .strip_prefix("http://")
        .unwrap_or(host)
        .trim_end_matches('/');
    let host = if host.is_empty() { DEFAULT_HOST } else { host };
    format!("http://{host}{TOKEN_PATH}")
}

/// A credential provider that asks the metadata server for the pod's token.
#[derive(Debug)]
pub struct MetadataToken {
    /// The token URL ([`token_url`]).
    pub url: String,
    client: reqwest::Client,
}

impl MetadataToken {
    /// A provider for the metadata host `host` (`GCE_METADATA_HOST`; empty: the default).
    pub fn new(host: &str) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the metadata server's HTTP client: {e}"))?;
        Ok(Self {
            url: token_url(host),
            client,
        })
    }

    async fn ask(&self) -> object_store::Result<(GcpCredential, Duration)> {
        let response = self
            .client
            .get(&self.url)
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .map_err(|e| {
                failure(format!(
                    "cannot reach the GCE metadata server at {} for the server's workload identity token: {}",
                    self.url,
                    crate::cloud::describe(&e)
                ))
            })?;
        let status = response.status();
        let body = response.text().await.map_err(|e| {
            failure(format!(
                "the GCE metadata server {} broke off its answer: {e}",
                self.url
            ))
        })?;
        if !status.is_success() {
            return Err(failure(format!(
                "the GCE metadata server at {} gave no token ({status}: {}); check that the pod's Kubernetes service account is bound to a Google service account (Workload Identity)",
                self.url,
                body.chars().take(200).collect::<String>().trim()
            )));
        }
        parse_token(&body).map_err(|why| {
            failure(format!(
                "the GCE metadata server at {} gave no usable token ({why})",
                self.url
            ))
        })
    }
}

/// A token answer: `{"access_token": …, "expires_in": seconds, "token_type": "Bearer"}`.
fn parse_token(body: &str) -> Result<(GcpCredential, Duration), String> {
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    let bearer = v["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or("no access_token")?
        .to_string();
    let expires_in = v["expires_in"].as_u64().ok_or("no expires_in")?;
    Ok((GcpCredential { bearer }, Duration::from_secs(expires_in)))
}

/// A token and until when it is used.
struct Cached {
    credential: Arc<GcpCredential>,
    fresh_until: Instant,
}

/// The process's tokens, by token URL (one per metadata host; in practice one).
static CACHE: LazyLock<Mutex<HashMap<String, Cached>>> = LazyLock::new(Default::default);

fn cached(url: &str, now: Instant) -> Option<Arc<GcpCredential>> {
    CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(url)
        .filter(|c| now < c.fresh_until)
        .map(|c| c.credential.clone())
}

/// Until when a token asked at `asked` that lives `lifetime` is used; `None`: not kept.
fn fresh_until(asked: Instant, lifetime: Duration) -> Option<Instant> {
    lifetime
        .checked_sub(MARGIN)
        .filter(|left| !left.is_zero())
        .map(|left| asked + left)
}

#[async_trait::async_trait]
impl CredentialProvider for MetadataToken {
    type Credential = GcpCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<GcpCredential>> {
        if let Some(found) = cached(&self.url, Instant::now()) {
            return Ok(found);
        }
        // The lifetime counts from before the request, so a token is renewed early, not late.
        let asked = Instant::now();
        let (credential, lifetime) = self.ask().await?;
        let credential = Arc::new(credential);
        if let Some(until) = fresh_until(asked, lifetime) {
            CACHE
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(
                    self.url.clone(),
                    Cached {
                        credential: credential.clone(),
                        fresh_until: until,
                    },
                );
        }
        Ok(credential)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_url_follows_gce_metadata_host() {
        assert_eq!(
            token_url(""),
            "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token"
        );
        assert_eq!(
            token_url("127.0.0.1:8099"),
            "http://127.0.0.1:8099/computeMetadata/v1/instance/service-accounts/default/token"
        );
        assert_eq!(
            token_url("http://169.254.169.254/"),
            "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token"
        );
    }

    #[test]
    fn answers_are_read_and_kept_until_shortly_before_they_expire() {
        let (c, life) =
            parse_token(r#"{"access_token":"ya29.x","expires_in":3599,"token_type":"Bearer"}"#)
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.bearer, "ya29.x");
        assert_eq!(life, Duration::from_secs(3599));
        assert!(parse_token(r#"{"expires_in":3599}"#).is_err());
        assert!(parse_token(r#"{"access_token":"","expires_in":3599}"#).is_err());
        assert!(parse_token(r#"{"access_token":"t"}"#).is_err());
        let now = Instant::now();
        assert_eq!(
            fresh_until(now, Duration::from_secs(3599)),
            Some(now + Duration::from_secs(3299))
        );
        // A token about to expire is used once, not kept.
        assert_eq!(fresh_until(now, Duration::from_secs(300)), None);
        assert_eq!(fresh_until(now, Duration::from_secs(60)), None);
    }
}
