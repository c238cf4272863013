//! Signed media links (ADR 0021): the API hands a browser a short-lived URL of the storage
//! proxy instead of the object's location or a credential; the proxy checks the link and
//! streams the object. A link is `v1.<payload>.<tag>`: the payload (organization, project,
//! task, storage, object key, expiry, user) as base64url JSON and an HMAC-SHA256 tag over
//! `v1.<payload>`, keyed by a key derived with HKDF from the deployment's key material under a
//! label of its own (so it is never the sealing key). Links are bearer credentials for one
//! object until they expire; this module never decides who may have one.

use base64::Engine;
use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorCode};

const VERSION: &str = "v1";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What a link grants: one object of one storage, until `expires`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Organization of the storage.
    #[serde(rename = "o")]
    pub organization: i64,
    /// Project of the storage.
    #[serde(rename = "p")]
    pub project: i64,
    /// The task the link was resolved for, if any (for the access log).
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub task: Option<i64>,
    /// Storage kind (`localfiles`).
    #[serde(rename = "k")]
    pub kind: String,
    /// Storage id.
    #[serde(rename = "s")]
    pub storage: i64,
    /// The object: a path relative to the storage's directory (`/`-separated).
    #[serde(rename = "key")]
    pub key: String,
    /// Expiry, Unix seconds.
    #[serde(rename = "e")]
    pub expires: i64,
    /// The user the link was issued to (0: the instance).
    #[serde(rename = "u")]
    pub user: i64,
}

/// Why a link was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not a link of this format, or its tag does not match (tampered, or signed with another
    /// deployment's key).
    #[error("the link is not valid: it was changed or was not issued by this deployment")]
    Invalid,
    /// The link's lifetime is over.
    #[error("the link has expired; reload the task to get a fresh one")]
    Expired,
}

impl From<LinkError> for ApiError {
    fn from(e: LinkError) -> Self {
        let code = match e {
            LinkError::Invalid => ErrorCode::InvalidLink,
            LinkError::Expired => ErrorCode::LinkExpired,
        };
        ApiError::new(code, e.to_string())
    }
}

/// Signs and checks links.
#[derive(Clone)]
pub struct LinkSigner {
    key: hmac::Key,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner(..)")
    }
}

struct KeyLen;

impl ring::hkdf::KeyType for KeyLen {
    fn len(&self) -> usize {
        32
    }
}

impl LinkSigner {
    /// A signer keyed by the deployment's key material (`session_key` or the key file).
    pub fn from_material(material: &[u8]) -> Self {
        let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"verity storage links");
        let mut key = [0u8; 32];
        salt.extract(material)
            .expand(&[b"hmac-sha256 v1"], KeyLen)
            .and_then(|okm| okm.fill(&mut key))
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
        }
    }

    /// The signer of a configuration (the same key material as [`crate::secrets::Sealer`]).
    pub fn for_config(config: &crate::config::Config) -> Result<Self, crate::secrets::SecretError> {
        Ok(Self::from_material(&crate::secrets::key_material(config)?))
    }

    /// The token of a link.
    pub fn sign(&self, link: &Link) -> String {
        let payload = B64.encode(serde_json::to_vec(link).unwrap_or_default());
        let signed = format!("{VERSION}.{payload}");
        let tag = hmac::sign(&self.key, signed.as_bytes());
        format!("{signed}.{}", B64.encode(tag.as_ref()))
    }

    /// Checks a token's tag (in constant time) and expiry against `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<Link, LinkError> {
        let (signed, tag) = token.rsplit_once('.').ok_or(LinkError::Invalid)?;
        let payload = signed
            .strip_prefix(VERSION)
            .and_then(|p| p.strip_prefix('.'))
            .ok_or(LinkError::Invalid)?;
        let tag = B64.decode(tag).map_err(|_| LinkError::Invalid)?;
        hmac::verify(&self.key, signed.as_bytes(), &tag).map_err(|_| LinkError::Invalid)?;
        let bytes = B64.decode(payload).map_err(|_| LinkError::Invalid)?;
        let link: Link = serde_json::from_slice(&bytes).map_err(|_| LinkError::Invalid)?;
        if link.expires <= now {
            return Err(LinkError::Expired);
        }
        Ok(link)
    }
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> Link {
        Link {
            organization: 1,
            project: 2,
            task: Some(3),
            kind: "localfiles".into(),
            storage: 4,
            key: "images/cat.jpg".into(),
            expires: 1_000,
            user: 5,
        }
    }

    #[test]
    fn links_verify_until_they_expire() {
        let s = LinkSigner::from_material(b"0123456789abcdef0123456789abcdef");
        let token = s.sign(&link());
        assert_eq!(s.verify(&token, 999), Ok(link()));
        assert_eq!(s.verify(&token, 1_000), Err(LinkError::Expired));
    }

    #[test]
    fn tampered_or_foreign_links_are_invalid() {
        let s = LinkSigner::from_material(b"0123456789abcdef0123456789abcdef");
        let token = s.sign(&link());
        let other = LinkSigner::from_material(b"another deployment's key material");
        assert_eq!(other.verify(&token, 0), Err(LinkError::Invalid));
        // Another payload under the original tag.
        let (_, tag) = token.rsplit_once('.').expect("tag");
        let forged = Link {
            key: "../etc/passwd".into(),
            ..link()
        };
        let forged_payload = B64.encode(serde_json::to_vec(&forged).expect("json"));
        assert_eq!(
            s.verify(&format!("v1.{forged_payload}.{tag}"), 0),
            Err(LinkError::Invalid)
        );
        for bad in ["", "v1", "v1..", "v2.abc.def", "garbage.with.dots"] {
            assert_eq!(s.verify(bad, 0), Err(LinkError::Invalid), "{bad}");
        }
        // The sealing key is not the link key.
        let material = b"0123456789abcdef0123456789abcdef";
        let sealer = crate::secrets::Sealer::from_material(material);
        assert!(!sealer.seal("x", "p").contains(&token));
    }
}
