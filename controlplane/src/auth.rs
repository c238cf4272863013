//! Credentials: legacy API tokens, personal access tokens (JWT refresh tokens) and the short-lived
//! access tokens they are exchanged for, and password hashing.
//!
//! Tokens are stored as SHA-256 hashes, never in clear. JWTs are HS256-signed with the instance's
//! signing key (kept in the database so tokens survive restarts and are shared by replicas).
//! This module only computes and checks; the storage layer looks tokens up.

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

/// Whether a string looks like a JWT (three dot-separated parts starting with a JSON header).
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.matches('.').count() == 2
}

/// Signs claims into a compact HS256 JWT (the `jsonwebtoken` crate).
pub fn sign_jwt(key: &[u8], claims: &Claims) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .unwrap_or_default()
}

/// Verifies a JWT with the `jsonwebtoken` crate: HS256 only (no `none`, no algorithm
/// confusion), the signature, every claim of [`Claims`] present with its type, expiry against
/// `now_secs` (0: expiry not checked, for revocation), the type, and for access tokens the
/// personal access token they were exchanged for.
pub fn verify_jwt(
    key: &[u8],
    token: &str,
    expected_type: &'static str,
    now_secs: i64,
) -> Result<Claims, JwtError> {
    use jsonwebtoken::errors::ErrorKind;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    // Expiry is compared below against the caller's clock; `exp` must still be there.
    validation.validate_exp = false;
    validation.set_required_spec_claims(&["exp"]);
    let data = jsonwebtoken::decode::<Claims>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(key),
        &validation,
    )
    .map_err(|e| match e.kind() {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName => JwtError::BadSignature,
        _ => JwtError::Malformed,
    })?;
    let claims = data.claims;
    if now_secs > 0 && claims.exp <= now_secs {
        return Err(JwtError::Expired);
    }
    if claims.token_type != expected_type {
        return Err(JwtError::WrongType {
            expected: expected_type,
        });
    }
    if expected_type == "access" && claims.pat.as_deref().is_none_or(str::is_empty) {
        // Every access token comes from exchanging a personal access token; one without is
        // not ours.
        return Err(JwtError::Malformed);
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
    fn jwt_algorithms_claims_and_untied_access_tokens_are_refused() {
        use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
        let b64 = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let payload = serde_json::json!({"token_type": "refresh", "exp": 100, "iat": 0, "jti": "j", "user_id": 7});
        // alg "none" with an empty signature.
        let none = format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
            b64(&payload)
        );
        assert!(verify_jwt(b"key", &none, "refresh", 50).is_err());
        // Another HMAC algorithm, correctly signed with the same key: still refused.
        let hs512 = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
            &claims("refresh", 100),
            &jsonwebtoken::EncodingKey::from_secret(b"key"),
        )
        .expect("sign");
        assert_eq!(
            verify_jwt(b"key", &hs512, "refresh", 50),
            Err(JwtError::BadSignature)
        );
        // A required claim missing (user_id), correctly signed.
        let partial = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &serde_json::json!({"token_type": "refresh", "exp": 100, "iat": 0, "jti": "j"}),
            &jsonwebtoken::EncodingKey::from_secret(b"key"),
        )
        .expect("sign");
        assert_eq!(
            verify_jwt(b"key", &partial, "refresh", 50),
            Err(JwtError::Malformed)
        );
        // An access token not exchanged from a personal access token.
        let untied = sign_jwt(b"key", &claims("access", 100));
        assert_eq!(
            verify_jwt(b"key", &untied, "access", 50),
            Err(JwtError::Malformed)
        );
        let tied = sign_jwt(
            b"key",
            &Claims {
                pat: Some("p".into()),
                ..claims("access", 100)
            },
        );
        assert!(verify_jwt(b"key", &tied, "access", 50).is_ok());
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
