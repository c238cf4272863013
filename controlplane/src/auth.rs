//! Credentials: legacy API tokens, personal access tokens (JWT refresh tokens) and the short-lived
//! access tokens they are exchanged for, and password hashing.
//!
//! Tokens are stored as SHA-256 hashes, never in clear. JWTs are HS256-signed with the instance's
//! signing key (kept in the database so tokens survive restarts and are shared by replicas).
//! This module only computes and checks; the storage layer looks tokens up.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rand::{Rng, distributions::Alphanumeric};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Lifetime of an access token obtained through `/api/token/refresh`.
pub const ACCESS_TOKEN_TTL_SECS: i64 = 300;

/// A fresh random legacy token: 40 alphanumeric characters, like Label Studio's.
pub fn new_legacy_token() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(40)
        .map(char::from)
        .collect()
}

/// A random secret of `len` alphanumeric characters.
pub fn random_secret(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// The stored form of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A short, non-secret preview of a token for listings (`abcd…wxyz`).
pub fn preview(token: &str) -> String {
    if token.len() <= 8 {
        "…".to_string()
    } else {
        format!("{}…{}", &token[..4], &token[token.len() - 4..])
    }
}

/// JWT claims of personal access (refresh) and access tokens, as Label Studio issues them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    /// `refresh` (personal access token) or `access`.
    pub token_type: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Unique id; for refresh tokens the revocation key.
    pub jti: String,
    /// The user the token belongs to.
    pub user_id: i64,
    /// For access tokens: the `jti` of the personal access token they were exchanged for, so
    /// revoking that token ends its access tokens at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pat: Option<String>,
}

/// Why a JWT was not accepted.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JwtError {
    /// Not three base64url parts.
    #[error("the token is not a well-formed JWT")]
    Malformed,
    /// Signature mismatch or unsupported algorithm.
    #[error("the token signature is not valid")]
    BadSignature,
    /// `exp` is in the past.
    #[error("the token has expired")]
    Expired,
    /// A refresh token where an access token was expected, or the reverse.
    #[error("wrong token type: expected {expected}")]
    WrongType {
        /// The type that was required.
        expected: &'static str,
    },
}

type HmacSha256 = Hmac<Sha256>;

/// Whether a string looks like a JWT (three dot-separated parts starting with a JSON header).
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.matches('.').count() == 2
}

/// Signs claims into a compact HS256 JWT.
pub fn sign_jwt(key: &[u8], claims: &Claims) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signing_input = format!("{header}.{payload}");
    let signature = URL_SAFE_NO_PAD.encode(mac(key, signing_input.as_bytes()));
    format!("{signing_input}.{signature}")
}

fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut m = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// Verifies signature, expiry (against `now_secs`) and type of a JWT and returns its claims.
pub fn verify_jwt(
    key: &[u8],
    token: &str,
    expected_type: &'static str,
    now_secs: i64,
) -> Result<Claims, JwtError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header: serde_json::Value = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or(JwtError::Malformed)?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
        return Err(JwtError::BadSignature);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| JwtError::Malformed)?;
    let mut m = HmacSha256::new_from_slice(key).map_err(|_| JwtError::BadSignature)?;
    let signed_len = token.len() - token.rsplit('.').next().map_or(0, str::len) - 1;
    m.update(&token.as_bytes()[..signed_len]);
    m.verify_slice(&signature)
        .map_err(|_| JwtError::BadSignature)?;
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|p| serde_json::from_slice(&p).ok())
        .ok_or(JwtError::Malformed)?;
    if claims.exp <= now_secs {
        return Err(JwtError::Expired);
    }
    if claims.token_type != expected_type {
        return Err(JwtError::WrongType {
            expected: expected_type,
        });
    }
    Ok(claims)
}

/// Hashes a password with Argon2id and a random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::{Argon2, PasswordHasher, password_hash::SaltString};
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks a password against a stored Argon2 hash.
pub fn verify_password(password: &str, stored: &str) -> bool {
    use argon2::{Argon2, PasswordHash, PasswordVerifier};
    PasswordHash::new(stored)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(token_type: &str, exp: i64) -> Claims {
        Claims {
            pat: None,
            token_type: token_type.into(),
            exp,
            iat: 0,
            jti: "j".into(),
            user_id: 7,
        }
    }

    #[test]
    fn jwt_round_trip() {
        let token = sign_jwt(b"key", &claims("refresh", 100));
        assert!(looks_like_jwt(&token));
        assert_eq!(
            verify_jwt(b"key", &token, "refresh", 50),
            Ok(claims("refresh", 100))
        );
    }

    #[test]
    fn jwt_rejections() {
        let token = sign_jwt(b"key", &claims("refresh", 100));
        assert_eq!(
            verify_jwt(b"other", &token, "refresh", 50),
            Err(JwtError::BadSignature)
        );
        assert_eq!(
            verify_jwt(b"key", &token, "refresh", 100),
            Err(JwtError::Expired)
        );
        assert_eq!(
            verify_jwt(b"key", &token, "access", 50),
            Err(JwtError::WrongType { expected: "access" })
        );
        assert_eq!(
            verify_jwt(b"key", "a.b", "access", 50),
            Err(JwtError::Malformed)
        );
        let mut tampered = token.clone();
        tampered.insert(tampered.find('.').map_or(0, |i| i + 2), 'x');
        assert!(verify_jwt(b"key", &tampered, "refresh", 50).is_err());
    }

    #[test]
    fn passwords_verify() {
        let hash = hash_password("s3cret").expect("hash");
        assert!(verify_password("s3cret", &hash));
        assert!(!verify_password("wrong", &hash));
    }

    #[test]
    fn legacy_tokens_are_40_chars_and_hash_stably() {
        let t = new_legacy_token();
        assert_eq!(t.len(), 40);
        assert_eq!(hash_token(&t), hash_token(&t));
        assert_ne!(hash_token(&t), hash_token("x"));
    }
}
