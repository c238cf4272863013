//! The LDAP client of directory sign-in (ADR 0030): connects to an organization's directory
//! over TLS only (LDAPS, or LDAP upgraded with StartTLS before anything is sent), to an address
//! the outbound-target policy permits, verifies the server certificate against the configured
//! CA (or the system roots), and authenticates a login: service bind, user search (or a DN
//! template), a bind as the user with their password, then the user's attributes and groups.
//!
//! Values from the login are escaped before they enter a filter (RFC 4515) or a DN (RFC 4514),
//! so `*)(uid=*` searches for that literal text. When no entry matches, a bind with a DN that
//! names nobody is made anyway with the given password, so an unknown login costs the same
//! directory round trips as a wrong password.

use std::{sync::Arc, time::Duration};

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, StdStream};
use rustls::pki_types::{CertificateDer, pem::PemObject};

use crate::outbound::TargetPolicy;

/// How long resolving, connecting and the TLS handshake may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// How long a whole sign-in (or settings test) may spend with the directory.
const TOTAL: Duration = Duration::from_secs(30);

/// LDAP result code of a refused simple bind.
const INVALID_CREDENTIALS: u32 = 49;

/// Where and how to reach a directory, and what to read from it.
#[derive(Debug, Clone)]
pub struct DirectoryConfig {
    /// `ldaps://host[:port]` or `ldap://host[:port]` (then `start_tls` must be on).
    pub uri: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    pub start_tls: bool,
    /// PEM CA certificate(s) the server certificate must chain to; system roots when empty.
    pub ca_pem: String,
    /// Service account DN.
    pub bind_dn: String,
    /// Service account password (opened from its sealed form).
    pub bind_password: String,
    /// Base of the user search.
    pub user_search_base: String,
    /// User search filter with `{login}` (the whole login) and/or `{user}` (before the `@`).
    pub user_search_filter: String,
    /// DN template with `{login}`/`{user}` (used instead of the search when set).
    pub user_dn_template: String,
    /// Attribute names: email, first name, last name.
    pub attr_email: String,
    /// First-name attribute.
    pub attr_first_name: String,
    /// Last-name attribute.
    pub attr_last_name: String,
    /// Base of the group search (no group search when empty).
    pub group_search_base: String,
    /// Group filter with `{dn}` (the user's DN) and/or `{login}`/`{user}`.
    pub group_search_filter: String,
    /// Attribute naming a group (e.g. `cn`).
    pub group_name_attr: String,
}

/// A directory user who proved their password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    /// Their entry's DN.
    pub dn: String,
    /// Email (from the email attribute; may be empty).
    pub email: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Their groups: each group's name attribute values and its DN.
    pub groups: Vec<String>,
}

/// The directory's answer to a sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The password is right.
    Accepted(DirectoryUser),
    /// The entry exists and refused the password (its email attribute, for the lock-out).
    WrongPassword {
        /// The entry's email (may be empty).
        email: String,
    },
    /// No entry (or more than one) matches the login, or the filter excludes it (disabled).
    UnknownUser,
    /// The directory could not be used (connection, TLS, service bind, search failed).
    Unavailable(String),
}

/// Checks that a URI is one Verity may use: `ldaps://`, or `ldap://` with StartTLS; a host; no
/// path beyond `/`, no credentials. Returns the host and port.
pub fn check_uri(uri: &str, start_tls: bool) -> Result<(String, u16), String> {
    let url = url::Url::parse(uri.trim()).map_err(|e| {
        format!("{uri:?} is not an LDAP URL such as ldaps://ldap.example.com ({e})")
    })?;
    let default_port = match (url.scheme(), start_tls) {
        ("ldaps", _) => 636,
        ("ldap", true) => 389,
        ("ldap", false) => {
            return Err(
                "ldap:// without StartTLS would send passwords in plain text: use ldaps://, or set start_tls"
                    .into(),
            );
        }
        (other, _) => return Err(format!("the URI must use ldaps or ldap, not {other}")),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URI must not carry credentials; set bind_dn and bind_password".into());
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() {
        return Err("the URI names the server only (no path or query)".into());
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("the URI has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((host, url.port().unwrap_or(default_port)))
}

/// Parses PEM CA certificates (at least one).
pub fn parse_ca(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not a PEM certificate ({e})"))?;
    if certs.is_empty() {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) found".into());
    }
    Ok(certs)
}

fn tls_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in parse_ca(ca_pem)? {
        roots
            .add(cert)
            .map_err(|e| format!("the CA certificate cannot be used ({e})"))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Opens a TLS connection to the directory (the address checked against `policy`).
async fn connect(cfg: &DirectoryConfig, policy: &TargetPolicy) -> Result<Ldap, String> {
    let (host, port) = check_uri(&cfg.uri, cfg.start_tls)?;
    let addrs: Vec<std::net::SocketAddr> =
        tokio::time::timeout(TIMEOUT, tokio::net::lookup_host((host.as_str(), port)))
            .await
            .map_err(|_| format!("resolving {host} timed out"))?
            .map_err(|e| format!("{host} cannot be resolved ({e})"))?
            .collect();
    if let Some(bad) = addrs.iter().find(|a| !policy.permits(a.ip())) {
        return Err(format!(
            "{host} is a private, loopback or link-local address ({}); an administrator can allow such targets with VERITY_ALLOW_PRIVATE_TARGETS",
            bad.ip()
        ));
    }
    let mut last = format!("{host} has no address");
    let mut stream = None;
    for addr in &addrs {
        match tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                stream = Some(s);
                break;
            }
            Ok(Err(e)) => last = format!("cannot connect to {addr} ({e})"),
            Err(_) => last = format!("connecting to {addr} timed out"),
        }
    }
    let stream = stream.ok_or(last)?.into_std().map_err(|e| e.to_string())?;
    let mut settings = LdapConnSettings::new()
        .set_conn_timeout(TIMEOUT)
        .set_starttls(cfg.start_tls && cfg.uri.trim().starts_with("ldap:"))
        .set_std_stream(StdStream::Tcp(stream));
    if !cfg.ca_pem.trim().is_empty() {
        settings = settings.set_config(tls_config(&cfg.ca_pem)?);
    }
    let (conn, ldap) = LdapConnAsync::with_settings(settings, cfg.uri.trim())
        .await
        .map_err(|e| format!("TLS connection to {host}:{port} failed ({e})"))?;
    ldap3::drive!(conn);
    Ok(ldap)
}

/// Substitutes `{login}` and `{user}` (escaped with `escape`) and `{dn}` (escaped likewise).
fn fill(template: &str, login: &str, dn: &str, escape: fn(&str) -> String) -> String {
    let user = login.split_once('@').map_or(login, |(u, _)| u);
    template
        .replace("{login}", &escape(login))
        .replace("{user}", &escape(user))
        .replace("{dn}", &escape(dn))
}

fn filter_escape(v: &str) -> String {
    ldap3::ldap_escape(v).into_owned()
}

fn dn_escape(v: &str) -> String {
    ldap3::dn_escape(v).into_owned()
}

fn first(entry: &SearchEntry, attr: &str) -> String {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .and_then(|(_, v)| v.first())
        .cloned()
        .unwrap_or_default()
}

async fn service_bind(ldap: &mut Ldap, cfg: &DirectoryConfig) -> Result<(), String> {
    if cfg.bind_dn.is_empty() {
        return Ok(());
    }
    match ldap.simple_bind(&cfg.bind_dn, &cfg.bind_password).await {
        Ok(r) if r.rc == 0 => Ok(()),
        Ok(r) if r.rc == INVALID_CREDENTIALS => {
            Err("the directory refused the service account's DN or password".into())
        }
        Ok(r) => Err(format!(
            "the service bind failed (LDAP result {}: {})",
            r.rc, r.text
        )),
        Err(e) => Err(format!("the service bind failed ({e})")),
    }
}

/// Binds with the service account and reports: `Ok(message)` when it worked (and, with a
/// test login, whether the user search finds it).
pub async fn test_connection(
    cfg: &DirectoryConfig,
    policy: &TargetPolicy,
) -> Result<String, String> {
    tokio::time::timeout(TOTAL, test_inner(cfg, policy))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "the directory did not answer within {}s",
                TOTAL.as_secs()
            ))
        })
}

async fn test_inner(cfg: &DirectoryConfig, policy: &TargetPolicy) -> Result<String, String> {
    let mut ldap = connect(cfg, policy).await?;
    let result = service_bind(&mut ldap, cfg).await;
    let _ = ldap.unbind().await;
    result.map(|()| {
        if cfg.bind_dn.is_empty() {
            "Connected over TLS (no service account set).".to_string()
        } else {
            format!("Connected over TLS and bound as {}.", cfg.bind_dn)
        }
    })
}

/// Authenticates `login` with `password` against the directory.
pub async fn authenticate(
    cfg: &DirectoryConfig,
    policy: &TargetPolicy,
    login: &str,
    password: &str,
) -> Verdict {
    match tokio::time::timeout(TOTAL, authenticate_inner(cfg, policy, login, password)).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => Verdict::Unavailable(e),
        Err(_) => Verdict::Unavailable(format!(
            "the directory did not answer within {}s",
            TOTAL.as_secs()
        )),
    }
}

async fn authenticate_inner(
    cfg: &DirectoryConfig,
    policy: &TargetPolicy,
    login: &str,
    password: &str,
) -> Result<Verdict, String> {
    // An empty password would make an unauthenticated bind, which directories accept.
    if password.is_empty() || login.is_empty() {
        return Ok(Verdict::UnknownUser);
    }
    let mut ldap = connect(cfg, policy).await?;
    service_bind(&mut ldap, cfg).await?;
    let attrs = [
        cfg.attr_email.as_str(),
        cfg.attr_first_name.as_str(),
        cfg.attr_last_name.as_str(),
    ];
    let (entry, base, scope, filter) = if cfg.user_dn_template.trim().is_empty() {
        let filter = fill(&cfg.user_search_filter, login, "", filter_escape);
        (None, cfg.user_search_base.clone(), Scope::Subtree, filter)
    } else {
        // The DN template names the entry; reading it (with the search filter, when set, so
        // that disabled accounts stay excluded) proves it exists.
        let dn = fill(&cfg.user_dn_template, login, "", dn_escape);
        let filter = if cfg.user_search_filter.trim().is_empty() {
            "(objectClass=*)".to_string()
        } else {
            fill(&cfg.user_search_filter, login, "", filter_escape)
        };
        (Some(()), dn, Scope::Base, filter)
    };
    let found = ldap
        .search(&base, scope, &filter, attrs.to_vec())
        .await
        .map_err(|e| format!("the user search failed ({e})"))?;
    let (entries, result) = (found.0, found.1);
    // A base-scope search of a DN that does not exist answers noSuchObject (32).
    if result.rc != 0 && !(entry.is_some() && result.rc == 32) {
        return Err(format!(
            "the user search failed (LDAP result {}: {})",
            result.rc, result.text
        ));
    }
    let entries: Vec<SearchEntry> = entries.into_iter().map(SearchEntry::construct).collect();
    let user = if entries.len() == 1 {
        entries.into_iter().next()
    } else {
        None
    };
    let Some(user) = user else {
        // Same work as a wrong password: a bind that cannot succeed.
        let nobody = format!(
            "cn=verity-no-such-user-{},{}",
            crate::auth::random_secret(12),
            cfg.user_search_base
        );
        let _ = ldap.simple_bind(&nobody, password).await;
        let _ = ldap.unbind().await;
        return Ok(Verdict::UnknownUser);
    };
    let bound = ldap
        .simple_bind(&user.dn, password)
        .await
        .map_err(|e| format!("the user bind failed ({e})"))?;
    if bound.rc == INVALID_CREDENTIALS {
        let _ = ldap.unbind().await;
        return Ok(Verdict::WrongPassword {
            email: first(&user, &cfg.attr_email),
        });
    }
    if bound.rc != 0 {
        let _ = ldap.unbind().await;
        return Err(format!(
            "the user bind failed (LDAP result {}: {})",
            bound.rc, bound.text
        ));
    }
    // Groups are read as the service account (users may not read groups).
    service_bind(&mut ldap, cfg).await?;
    let mut groups = Vec::new();
    if !cfg.group_search_base.trim().is_empty() && !cfg.group_search_filter.trim().is_empty() {
        let filter = fill(&cfg.group_search_filter, login, &user.dn, filter_escape);
        let found = ldap
            .search(
                &cfg.group_search_base,
                Scope::Subtree,
                &filter,
                vec![cfg.group_name_attr.as_str()],
            )
            .await
            .map_err(|e| format!("the group search failed ({e})"))?;
        let (entries, result) = (found.0, found.1);
        if result.rc != 0 {
            return Err(format!(
                "the group search failed (LDAP result {}: {})",
                result.rc, result.text
            ));
        }
        for e in entries.into_iter().map(SearchEntry::construct) {
            for (k, values) in &e.attrs {
                if k.eq_ignore_ascii_case(&cfg.group_name_attr) {
                    groups.extend(values.iter().cloned());
                }
            }
            groups.push(e.dn);
        }
    }
    let _ = ldap.unbind().await;
    Ok(Verdict::Accepted(DirectoryUser {
        email: first(&user, &cfg.attr_email),
        first_name: first(&user, &cfg.attr_first_name),
        last_name: first(&user, &cfg.attr_last_name),
        dn: user.dn,
        groups,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_require_tls() {
        assert_eq!(
            check_uri("ldaps://ldap.example.com", false),
            Ok(("ldap.example.com".into(), 636))
        );
        assert_eq!(
            check_uri("ldap://ldap.example.com:1389/", true),
            Ok(("ldap.example.com".into(), 1389))
        );
        assert!(check_uri("ldap://ldap.example.com", false).is_err());
        assert!(check_uri("http://ldap.example.com", true).is_err());
        assert!(check_uri("ldaps://u:p@ldap.example.com", true).is_err());
        assert!(check_uri("ldaps://ldap.example.com/dc=x", true).is_err());
    }

    #[test]
    fn login_values_are_escaped() {
        let f = fill(
            "(&(uid={user})(mail={login}))",
            "*)(uid=*",
            "",
            filter_escape,
        );
        assert_eq!(
            f,
            "(&(uid=\\2a\\29\\28uid=\\2a)(mail=\\2a\\29\\28uid=\\2a))"
        );
        let d = fill("uid={user},ou=people", "a,ou=admins+cn=x", "", dn_escape);
        assert_eq!(d, "uid=a\\2cou\\3dadmins\\2bcn\\3dx,ou=people");
        let g = fill("(member={dn})", "x", "uid=a*,ou=p", filter_escape);
        assert_eq!(g, "(member=uid=a\\2a,ou=p)");
    }
}
