//! Temporary S3 credentials from AWS STS `AssumeRole` (ADR 0054).
//!
//! An S3 storage that names a `role_arn` signs its requests with credentials of that role: a
//! base identity (the storage's own keys, or else the server's `aws_access_key_id`) asks STS
//! for them, with the storage's `external_id` when it has one. `object_store` has no provider
//! for `AssumeRole` (only for the web-identity variant, which reads the pod's token file and
//! environment), so this module is one: the request is signed by `object_store`'s own SigV4
//! signer ([`AwsAuthorizer`]) and sent by the same guarded HTTP client as bucket requests, so
//! the STS endpoint obeys the outbound rules too. What STS answers is cached per (endpoint,
//! role, external id, base identity) for the whole process and used until five minutes before
//! it expires, so a sync or the storage proxy does not ask STS once per request.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex},
    time::{Duration, Instant},
};

use object_store::{
    CredentialProvider,
    aws::{AwsAuthorizer, AwsCredential},
    client::{HttpClient, HttpRequestBody},
};
use sha2::{Digest, Sha256};

/// The name object_store errors of role assumption carry (`Error::Generic { store }`).
pub const STORE: &str = "STS";

/// Lifetime asked of STS: one hour, the longest every role allows (a role's maximum session
/// duration is one hour or more).
const DURATION: Duration = Duration::from_secs(3600);

/// Credentials are renewed this long before they expire.
const MARGIN: Duration = Duration::from_secs(300);

/// Cached credentials at most (entries past their time are dropped first).
const CACHE_LIMIT: usize = 4096;

/// Why STS gave no credentials, in words for the storage's owner.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RoleError(pub String);

fn failure(message: String) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: Box::new(RoleError(message)),
    }
}

/// What is needed to assume a role.
pub struct AssumeRole {
    /// STS endpoint URL (checked against the outbound policy by the caller).
    pub url: String,
    /// Region the request is signed for.
    pub region: String,
    /// The role.
    pub role_arn: String,
    /// The role's external id condition (empty: none sent).
    pub external_id: String,
    /// The identity that assumes the role.
    pub base: AwsCredential,
    /// HTTP client with the outbound guard.
    pub client: HttpClient,
}

impl std::fmt::Debug for AssumeRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssumeRole")
            .field("url", &self.url)
            .field("role_arn", &self.role_arn)
            .finish_non_exhaustive()
    }
}

/// Credentials and until when they are used.
struct Cached {
    credential: Arc<AwsCredential>,
    fresh_until: Instant,
}

/// The process's assumed-role credentials, by [`AssumeRole::cache_key`].
#[derive(Default)]
struct Cache {
    entries: HashMap<[u8; 32], Cached>,
}

impl Cache {
    fn get(&self, key: &[u8; 32], now: Instant) -> Option<Arc<AwsCredential>> {
        self.entries
            .get(key)
            .filter(|c| now < c.fresh_until)
            .map(|c| c.credential.clone())
    }

    fn put(&mut self, key: [u8; 32], credential: Arc<AwsCredential>, fresh_until: Instant) {
        if self.entries.len() >= CACHE_LIMIT {
            let now = Instant::now();
            self.entries.retain(|_, c| now < c.fresh_until);
            if self.entries.len() >= CACHE_LIMIT {
                self.entries.clear();
            }
        }
        self.entries.insert(
            key,
            Cached {
                credential,
                fresh_until,
            },
        );
    }
}

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(Default::default);

fn cache() -> std::sync::MutexGuard<'static, Cache> {
    CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl AssumeRole {
    /// Everything that decides which credentials STS answers (secrets hashed, not kept).
    fn cache_key(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        for part in [
            self.url.as_str(),
            &self.region,
            &self.role_arn,
            &self.external_id,
            &self.base.key_id,
            &self.base.secret_key,
            self.base.token.as_deref().unwrap_or(""),
        ] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        hash.finalize().into()
    }

    /// Asks STS for credentials of the role.
    async fn assume(&self) -> object_store::Result<AwsCredential> {
        let form = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("Action", "AssumeRole")
                .append_pair("Version", "2011-06-15")
                .append_pair("RoleArn", &self.role_arn)
                .append_pair("RoleSessionName", "verity-storage")
                .append_pair("DurationSeconds", &DURATION.as_secs().to_string());
            if !self.external_id.is_empty() {
                form.append_pair("ExternalId", &self.external_id);
            }
            form.finish()
        };
        let mut request = http::Request::builder()
            .method("POST")
            .uri(&self.url)
            .header(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(HttpRequestBody::from(form))
            .map_err(|e| failure(format!("the STS endpoint {} is not usable: {e}", self.url)))?;
        AwsAuthorizer::new(&self.base, "sts", &self.region).authorize(&mut request, None);
        let response = self.client.execute(request).await.map_err(|e| {
            failure(format!(
                "cannot reach the STS endpoint {}: {}",
                self.url,
                crate::cloud::describe(&e)
            ))
        })?;
        let status = response.status();
        let body = response.into_body().bytes().await.map_err(|e| {
            failure(format!(
                "the STS endpoint {} broke off its answer: {e}",
                self.url
            ))
        })?;
        let text = String::from_utf8_lossy(&body);
        if !status.is_success() {
            let (code, message) = sts_error(&text);
            return Err(failure(format!(
                "AWS STS refused to let the base identity assume role {} ({status}: {code}: {message}); check role_arn, external_id, the role's trust policy and the base identity's permission to call sts:AssumeRole",
                self.role_arn
            )));
        }
        parse_credentials(&text).map_err(|why| {
            failure(format!(
                "the STS endpoint {} gave no usable credentials ({why})",
                self.url
            ))
        })
    }
}

#[async_trait::async_trait]
impl CredentialProvider for AssumeRole {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let key = self.cache_key();
        if let Some(found) = cache().get(&key, Instant::now()) {
            return Ok(found);
        }
        // The lifetime counts from before the request, so the credentials are renewed early
        // rather than late. Two requests that miss at once both ask STS; the later answer wins.
        let asked = Instant::now();
        let credential = Arc::new(self.assume().await?);
        cache().put(key, credential.clone(), asked + DURATION - MARGIN);
        Ok(credential)
    }
}

/// The text of an element of an STS answer (`<AccessKeyId>…`), wherever it is.
fn element<'a>(doc: &'a roxmltree::Document<'a>, name: &str) -> Option<&'a str> {
    doc.descendants()
        .find(|n| n.tag_name().name() == name)
        .and_then(|n| n.text())
        .map(str::trim)
}

/// `Code` and `Message` of an STS error answer (or what can be said of a body that is not one).
fn sts_error(body: &str) -> (String, String) {
    match roxmltree::Document::parse(body) {
        Ok(doc) => (
            element(&doc, "Code").unwrap_or("Unknown").to_string(),
            element(&doc, "Message").unwrap_or("").to_string(),
        ),
        Err(_) => ("Unknown".into(), body.chars().take(200).collect::<String>()),
    }
}

/// The credentials of an `AssumeRoleResponse`.
fn parse_credentials(body: &str) -> Result<AwsCredential, String> {
    let doc = roxmltree::Document::parse(body).map_err(|e| format!("not XML: {e}"))?;
    let field = |name: &str| {
        element(&doc, name)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("no {name}"))
    };
    Ok(AwsCredential {
        key_id: field("AccessKeyId")?,
        secret_key: field("SecretAccessKey")?,
        token: Some(field("SessionToken")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_of_sts_are_read() {
        let ok = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
          <AssumeRoleResult><Credentials><AccessKeyId>ASIAX</AccessKeyId>
          <SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken>
          <Expiration>2030-01-01T00:00:00Z</Expiration></Credentials></AssumeRoleResult>
          </AssumeRoleResponse>"#;
        let c = parse_credentials(ok).expect("credentials");
        assert_eq!((c.key_id.as_str(), c.secret_key.as_str()), ("ASIAX", "s"));
        assert_eq!(c.token.as_deref(), Some("t"));
        assert!(parse_credentials("<AssumeRoleResponse/>").is_err());
        let refused = r#"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>
          <Message>not authorized</Message></Error></ErrorResponse>"#;
        assert_eq!(
            sts_error(refused),
            ("AccessDenied".into(), "not authorized".into())
        );
        assert_eq!(sts_error("oops").0, "Unknown");
    }

    #[test]
    fn cached_credentials_are_used_until_shortly_before_they_expire() {
        let mut cache = Cache::default();
        let key = [7u8; 32];
        let start = Instant::now();
        let credential = Arc::new(AwsCredential {
            key_id: "ASIA1".into(),
            secret_key: "s".into(),
            token: Some("t".into()),
        });
        cache.put(key, credential, start + DURATION - MARGIN);
        assert!(cache.get(&key, start).is_some());
        assert!(cache.get(&key, start + DURATION - MARGIN * 2).is_some());
        // From five minutes before expiry on, the next request asks STS again.
        assert!(cache.get(&key, start + DURATION - MARGIN).is_none());
        assert!(cache.get(&[8u8; 32], start).is_none());
    }
}
