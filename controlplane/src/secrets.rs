//! Secrets at rest: credentials the server must use later (webhook signing secrets, the JWT
//! signing key, the ML-backend password of a project) are stored sealed with ChaCha20-Poly1305
//! under a key the deployment provides (`session_key`, which the operator mounts), never in
//! plain text, and no endpoint returns them after they were set. The key is derived with HKDF-SHA256;
//! each value is bound to its purpose (AEAD associated data), so a sealed value moved to another
//! column does not open. Without a configured key (the embedded default) a random key is kept in
//! `<data_dir>/secret.key` (mode 0600), away from the database and its backups. ADR 0016.

use std::path::Path;

use base64::Engine;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// Prefix of a sealed value.
const PREFIX: &str = "sealed:v1:";

/// Seals and opens stored secrets.
pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

/// Why a stored secret could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The value is damaged or was sealed with another key or for another purpose.
    #[error(
        "a stored secret cannot be opened: it was sealed with another key (session_key changed?) or damaged"
    )]
    Open,
    /// The key could not be read or created.
    #[error("{0}")]
    Key(String),
}

struct KeyLen;

impl ring::hkdf::KeyType for KeyLen {
    fn len(&self) -> usize {
        32
    }
}

impl Sealer {
    /// A sealer keyed by `material` (any length; at least 32 characters recommended).
    pub fn from_material(material: &[u8]) -> Self {
        let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"verity secrets at rest");
        let mut key = [0u8; 32];
        salt.extract(material)
            .expand(&[b"chacha20-poly1305 v1"], KeyLen)
            .and_then(|okm| okm.fill(&mut key))
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let unbound =
            UnboundKey::new(&CHACHA20_POLY1305, &key).expect("a 32-byte ChaCha20-Poly1305 key");
        Self {
            key: LessSafeKey::new(unbound),
        }
    }

    /// The sealer of a configuration: `session_key` when set, else the key file in the data
    /// directory (created on first use).
    pub fn for_config(config: &crate::config::Config) -> Result<Self, SecretError> {
        Ok(Self::from_material(&key_material(config)?))
    }

    /// Seals `plain` for `purpose` (e.g. `webhook.secret`).
    pub fn seal(&self, plain: &str, purpose: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
        let mut data = plain.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose.as_bytes()),
                &mut data,
            )
            .expect("sealing in memory cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
        )
    }

    /// Opens a value sealed for `purpose`. A value without the prefix was stored before secrets
    /// were sealed and is answered as it is (it is sealed when next written; `verity serve`
    /// seals such values at start).
    pub fn open(&self, stored: &str, purpose: &str) -> Result<String, SecretError> {
        let Some(encoded) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_string());
        };
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| SecretError::Open)?;
        if raw.len() < NONCE_LEN {
            return Err(SecretError::Open);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::Open)?;
        let mut data = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut data)
            .map_err(|_| SecretError::Open)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SecretError::Open)
    }

    /// Whether a stored value is sealed.
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(PREFIX)
    }
}

/// The deployment's key material: `session_key` when set (at least 32 characters), else the
/// key file in the data directory (created on first use). Every key Verity derives (sealing,
/// media links) comes from it, each under its own HKDF label.
pub fn key_material(config: &crate::config::Config) -> Result<Vec<u8>, SecretError> {
    if !config.session_key.is_empty() {
        if config.session_key.len() < 32 {
            return Err(SecretError::Key(
                "session_key (VERITY_SESSION_KEY) must have at least 32 characters".into(),
            ));
        }
        return Ok(config.session_key.as_bytes().to_vec());
    }
    key_file(&config.data_dir)
}

/// Reads `<dir>/secret.key`, or creates it with 32 random bytes (mode 0600).
fn key_file(dir: &Path) -> Result<Vec<u8>, SecretError> {
    let path = dir.join("secret.key");
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() >= 32 => return Ok(bytes),
        Ok(_) => {
            return Err(SecretError::Key(format!(
                "{} is shorter than 32 bytes; restore it from a backup (stored secrets need it)",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(SecretError::Key(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| SecretError::Key(format!("cannot create {}: {e}", dir.display())))?;
    let mut key = vec![0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut f) => {
            std::io::Write::write_all(&mut f, &key)
                .and_then(|()| f.sync_all())
                .map_err(|e| SecretError::Key(format!("cannot write {}: {e}", path.display())))?;
            Ok(key)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(&path)
            .map_err(|e| SecretError::Key(format!("cannot read {}: {e}", path.display()))),
        Err(e) => Err(SecretError::Key(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_purpose() {
        let s = Sealer::from_material(b"0123456789abcdef0123456789abcdef");
        let sealed = s.seal("hunter2-hunter2", "webhook.secret");
        assert!(Sealer::is_sealed(&sealed) && !sealed.contains("hunter2"));
        assert_ne!(
            sealed,
            s.seal("hunter2-hunter2", "webhook.secret"),
            "random nonces"
        );
        assert_eq!(
            s.open(&sealed, "webhook.secret").expect("opens"),
            "hunter2-hunter2"
        );
        assert!(
            s.open(&sealed, "jwt_signing_key").is_err(),
            "bound to its purpose"
        );
        let other = Sealer::from_material(b"another key, also long enough....");
        assert!(other.open(&sealed, "webhook.secret").is_err());
        let mut damaged = sealed.clone();
        damaged.pop();
        assert!(s.open(&damaged, "webhook.secret").is_err());
        assert_eq!(
            s.open("legacy plain", "webhook.secret").expect("legacy"),
            "legacy plain"
        );
    }

    #[test]
    fn the_key_file_is_created_once_and_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = key_file(dir.path()).expect("created");
        let b = key_file(dir.path()).expect("read back");
        assert_eq!(a, b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secret.key"))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join("secret.key"), b"short").expect("write");
        assert!(key_file(dir.path()).is_err());
    }
}
