//! The tenant's Redis PKI and generated secrets: a CA per Organization, a server certificate for
//! Redis and one client identity (certificate and ACL password) each for the app, the workers
//! and the operator, plus the session key and the operator↔control-plane token. Existing material is reused until it is due for renewal, so a
//! reconcile does not mint new certificates (or write Secrets) when nothing is due.
//!
//! Nothing here is logged: errors name the Secret, never its content.

use std::collections::BTreeMap;

use rand::RngCore as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::build::{
    ADMIN_TOKEN_KEY, APP_SECRET, Material, OWNER_SECRET, REDIS_CA_SECRET, REDIS_SERVER_SECRET,
    REDIS_USERS, RedisUser,
};

/// Annotation on the certificate Secrets: when the leaf certificates expire (RFC 3339).
pub const NOT_AFTER_ANNOTATION: &str = "verity.dev/not-after";
/// Validity of the tenant CA. The CA is re-issued (with new leaves) in its last year.
const CA_VALIDITY_DAYS: i64 = 3650;
const CA_RENEW_DAYS: i64 = 365;

/// A Secret as read back: decoded data plus the expiry annotation.
#[derive(Clone, Debug, Default)]
pub struct ExistingSecret {
    /// Decoded `data`.
    pub data: BTreeMap<String, String>,
    /// The `verity.dev/not-after` annotation, if any.
    pub not_after: Option<String>,
}

/// Certificate policy from the spec.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Validity of leaf certificates in days.
    pub validity_days: i64,
    /// Renew leaves this many days before expiry.
    pub renew_before_days: i64,
}

/// Why material could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A certificate or key could not be generated or signed.
    #[error("issuing certificates for {what}: {source}")]
    Issue {
        /// What was being issued.
        what: &'static str,
        /// The cause.
        source: rcgen::Error,
    },
    /// Fewer Redis identities than users (a defect, never expected).
    #[error("issuing certificates: a Redis user identity is missing")]
    Incomplete,
}

fn err(what: &'static str) -> impl FnOnce(rcgen::Error) -> CertError {
    move |source| CertError::Issue { what, source }
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn parse_time(s: Option<&String>) -> Option<OffsetDateTime> {
    s.and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn ca_params(
    org: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("verity-redis-ca {org}"));
    dn.push(DnType::OrganizationName, "verity");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = not_before;
    p.not_after = not_after;
    p
}

/// The CA's validity window is stored with the leaves' not-after in the CA Secret's
/// `ca.not-after`; the CA certificate itself is re-derived from its key to sign new leaves.
fn leaf(
    names: Vec<String>,
    cn: &str,
    usage: ExtendedKeyUsagePurpose,
    now: OffsetDateTime,
    not_after: OffsetDateTime,
    ca: &rcgen::Certificate,
    ca_key: &KeyPair,
) -> Result<(String, String), CertError> {
    let mut p = CertificateParams::new(names).map_err(err("leaf names"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.extended_key_usages = vec![usage];
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.not_before = now - Duration::minutes(5);
    p.not_after = not_after;
    let key = KeyPair::generate().map_err(err("leaf key"))?;
    let cert = p
        .signed_by(&key, ca, ca_key)
        .map_err(err("leaf signature"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Produces the material for an Organization from what exists, generating what is missing and
/// renewing what is due. Returns the material and whether the certificates were (re)issued.
pub fn material(
    org: &str,
    namespace: &str,
    existing: &BTreeMap<String, ExistingSecret>,
    policy: Policy,
    now: OffsetDateTime,
) -> Result<(Material, bool), CertError> {
    let app = existing.get(APP_SECRET);
    let get = |s: Option<&ExistingSecret>, k: &str| {
        s.and_then(|s| s.data.get(k))
            .filter(|v| !v.is_empty())
            .cloned()
    };
    let session_key = get(app, "session-key").unwrap_or_else(random_token);
    let admin_token = get(app, ADMIN_TOKEN_KEY).unwrap_or_else(random_token);
    let owner_token = get(existing.get(OWNER_SECRET), "token").unwrap_or_else(random_token);

    let ca_secret = existing.get(REDIS_CA_SECRET);
    let ca_not_after = ca_secret.and_then(|s| parse_time(s.data.get("ca.not-after")));
    let ca_valid = ca_not_after.is_some_and(|t| t - now > Duration::days(CA_RENEW_DAYS));
    let (ca_cert_pem, ca_key_pem, ca_not_after, ca_new) = match (
        get(ca_secret, "ca.crt"),
        get(ca_secret, "ca.key"),
        ca_not_after,
    ) {
        (Some(c), Some(k), Some(t)) if ca_valid => (c, k, t, false),
        _ => {
            let key = KeyPair::generate().map_err(err("CA key"))?;
            let not_after = now + Duration::days(CA_VALIDITY_DAYS);
            let cert = ca_params(org, now - Duration::minutes(5), not_after)
                .self_signed(&key)
                .map_err(err("CA"))?;
            (cert.pem(), key.serialize_pem(), not_after, true)
        }
    };

    let server = existing.get(REDIS_SERVER_SECRET);
    let leaf_not_after = server.and_then(|s| parse_time(s.not_after.as_ref()));
    let same_ca = |s: Option<&ExistingSecret>| get(s, "ca.crt").as_deref() == Some(&ca_cert_pem);
    let leaves_valid = !ca_new
        && leaf_not_after.is_some_and(|t| t - now > Duration::days(policy.renew_before_days))
        && same_ca(server);
    // Every identity is reused only if all of them are complete and current: they are issued
    // and renewed together.
    let stored_user = |secret: &str| {
        let s = existing.get(secret);
        Some(RedisUser {
            cert: get(s, "tls.crt")?,
            key: get(s, "tls.key")?,
            password: get(s, "password")?,
        })
        .filter(|_| same_ca(s))
    };
    let stored_users: Option<Vec<RedisUser>> = REDIS_USERS
        .iter()
        .map(|(_, secret)| stored_user(secret))
        .collect();
    let reuse = match (
        get(server, "tls.crt"),
        get(server, "tls.key"),
        stored_users,
        leaf_not_after,
    ) {
        (Some(sc), Some(sk), Some(users), Some(t)) if leaves_valid => Some((sc, sk, users, t)),
        _ => None,
    };
    let issued = reuse.is_none();
    let (server_cert, server_key, users, not_after) = match reuse {
        Some(r) => r,
        None => {
            let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(err("CA key (stored)"))?;
            // Re-deriving the CA certificate from its key and name yields an issuer with the same
            // subject and key identifier, so new leaves chain to the stored CA certificate.
            let ca_window_start =
                ca_not_after - Duration::days(CA_VALIDITY_DAYS) - Duration::minutes(5);
            let ca = ca_params(org, ca_window_start, ca_not_after)
                .self_signed(&ca_key)
                .map_err(err("CA (re-derived)"))?;
            let not_after = (now + Duration::days(policy.validity_days)).min(ca_not_after);
            let names = vec![
                "redis".to_owned(),
                format!("redis.{namespace}.svc"),
                format!("redis.{namespace}.svc.cluster.local"),
                format!("redis-0.redis.{namespace}.svc"),
                format!("redis-0.redis.{namespace}.svc.cluster.local"),
            ];
            let (sc, sk) = leaf(
                names,
                "redis",
                ExtendedKeyUsagePurpose::ServerAuth,
                now,
                not_after,
                &ca,
                &ca_key,
            )?;
            let mut users = Vec::new();
            for (user, _) in REDIS_USERS {
                let (cert, key) = leaf(
                    vec![format!("{user}.verity.{namespace}")],
                    user,
                    ExtendedKeyUsagePurpose::ClientAuth,
                    now,
                    not_after,
                    &ca,
                    &ca_key,
                )?;
                users.push(RedisUser {
                    cert,
                    key,
                    password: random_token(),
                });
            }
            (sc, sk, users, not_after)
        }
    };
    let mut users = users.into_iter();
    let mut next_user = || users.next().ok_or(CertError::Incomplete);
    let (app, worker, operator) = (next_user()?, next_user()?, next_user()?);
    Ok((
        Material {
            session_key,
            admin_token,
            owner_token,
            ca_cert: ca_cert_pem,
            ca_key: ca_key_pem,
            ca_not_after: rfc3339(ca_not_after),
            server_cert,
            server_key,
            app,
            worker,
            operator,
            not_after: rfc3339(not_after),
        },
        issued,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_existing(m: &Material) -> BTreeMap<String, ExistingSecret> {
        let s = |pairs: &[(&str, &str)], na: Option<&str>| ExistingSecret {
            data: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            not_after: na.map(str::to_owned),
        };
        BTreeMap::from([
            (
                APP_SECRET.to_owned(),
                s(
                    &[
                        ("session-key", &m.session_key),
                        (ADMIN_TOKEN_KEY, &m.admin_token),
                    ],
                    None,
                ),
            ),
            (
                REDIS_CA_SECRET.to_owned(),
                s(
                    &[
                        ("ca.crt", &m.ca_cert),
                        ("ca.key", &m.ca_key),
                        ("ca.not-after", &m.ca_not_after),
                    ],
                    None,
                ),
            ),
            (
                OWNER_SECRET.to_owned(),
                s(&[("token", &m.owner_token)], None),
            ),
            (
                REDIS_SERVER_SECRET.to_owned(),
                s(
                    &[
                        ("tls.crt", &m.server_cert),
                        ("tls.key", &m.server_key),
                        ("ca.crt", &m.ca_cert),
                    ],
                    Some(&m.not_after),
                ),
            ),
        ])
        .into_iter()
        .chain(REDIS_USERS.iter().map(|(user, secret)| {
            let u = m.redis_user(user).unwrap();
            (
                (*secret).to_owned(),
                s(
                    &[
                        ("tls.crt", &u.cert),
                        ("tls.key", &u.key),
                        ("ca.crt", &m.ca_cert),
                        ("password", &u.password),
                    ],
                    Some(&m.not_after),
                ),
            )
        }))
        .collect()
    }

    const POLICY: Policy = Policy {
        validity_days: 90,
        renew_before_days: 30,
    };

    #[test]
    fn generated_once_then_reused_then_renewed_when_due() {
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let (first, issued) =
            material("acme", "tenant-acme", &BTreeMap::new(), POLICY, t0).unwrap();
        assert!(issued);
        assert_eq!(first.admin_token.len(), 64);
        assert!(first.server_cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_ne!(first.session_key, first.admin_token);
        assert_eq!(first.owner_token.len(), 64);
        assert_ne!(first.owner_token, first.admin_token);

        // 59 days later: 31 days left, not yet due.
        let (again, issued) = material(
            "acme",
            "tenant-acme",
            &as_existing(&first),
            POLICY,
            t0 + Duration::days(59),
        )
        .unwrap();
        assert!(!issued);
        assert_eq!(again, first);

        // 61 days later: 29 days left, due: new leaves from the same CA, secrets kept.
        let (renewed, issued) = material(
            "acme",
            "tenant-acme",
            &as_existing(&first),
            POLICY,
            t0 + Duration::days(61),
        )
        .unwrap();
        assert!(issued);
        assert_eq!(renewed.ca_cert, first.ca_cert);
        assert_eq!(renewed.admin_token, first.admin_token);
        assert_eq!(renewed.owner_token, first.owner_token);
        assert_ne!(renewed.server_cert, first.server_cert);
        assert_ne!(renewed.app, first.app);
        assert_ne!(renewed.operator.password, first.operator.password);
        assert_eq!(renewed.not_after, rfc3339(t0 + Duration::days(61 + 90)));
    }

    #[test]
    fn every_component_has_its_own_identity() {
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let (m, _) = material("acme", "ns", &BTreeMap::new(), POLICY, t0).unwrap();
        let users = [&m.app, &m.worker, &m.operator];
        for (i, a) in users.iter().enumerate() {
            assert_eq!(a.password.len(), 64);
            for b in &users[i + 1..] {
                assert_ne!(a.cert, b.cert);
                assert_ne!(a.key, b.key);
                assert_ne!(a.password, b.password);
            }
        }
        // A missing identity (for example after an upgrade from one shared client certificate)
        // re-issues them all, from the same CA.
        let mut existing = as_existing(&m);
        existing.remove(super::super::build::REDIS_WORKER_SECRET);
        let (again, issued) = material("acme", "ns", &existing, POLICY, t0).unwrap();
        assert!(issued);
        assert_eq!(again.ca_cert, m.ca_cert);
        assert_ne!(again.app, m.app);
    }

    #[test]
    fn a_changed_ca_reissues_the_leaves() {
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let (first, _) = material("acme", "ns", &BTreeMap::new(), POLICY, t0).unwrap();
        let mut existing = as_existing(&first);
        existing.remove(REDIS_CA_SECRET);
        let (second, issued) = material("acme", "ns", &existing, POLICY, t0).unwrap();
        assert!(issued);
        assert_ne!(second.ca_cert, first.ca_cert);
        assert_ne!(second.server_cert, first.server_cert);
    }
}
