//! Reads queue depth, running jobs and the oldest job's enqueue time from a tenant's Redis,
//! over TLS with the operator's client certificate and ACL user, through the `redis` crate (the
//! same client the control plane's job queue uses).
//!
//! The key layout is the contract with `verity work` (ADR 0011), RQ's own:
//! `rq:queue:<q>` is a list of job ids (appended at the tail, taken from the head, so the head
//! is the oldest), `rq:job:<id>` a hash whose `enqueued_at` is an RFC 3339 UTC time, and
//! `rq:wip:<q>` the sorted set of started jobs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Where and how to reach one tenant's Redis.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port` to connect to.
    pub addr: String,
    /// The name the server certificate must carry (`redis.<namespace>.svc`).
    pub server_name: String,
    /// PEM of the tenant CA.
    pub ca_pem: String,
    /// PEM of the client certificate.
    pub cert_pem: String,
    /// PEM of the client key.
    pub key_pem: String,
    /// ACL user (the operator's own, allowed to read queue statistics only).
    pub username: String,
    /// Its password.
    pub password: String,
}

/// The key is secret: Debug shows where, never what.
impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// One queue as read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Length of `rq:queue:<q>`.
    pub waiting: u64,
    /// Size of `rq:wip:<q>`.
    pub running: u64,
    /// `enqueued_at` of the job at the head of the queue.
    pub oldest_enqueued_at: Option<OffsetDateTime>,
}

/// Why a queue could not be read. The messages are stable for a given cause (they end up in
/// `status.workers[].metricsError`, which is written only when it changes) and never contain
/// key material.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The stored certificates or key could not be loaded.
    #[error("the Redis client certificate or CA cannot be used: {0}")]
    Material(String),
    /// TCP connection failed.
    #[error("cannot connect to Redis at {addr}: {kind}")]
    Connect {
        /// The address.
        addr: String,
        /// The I/O error kind.
        kind: std::io::ErrorKind,
    },
    /// The TLS handshake failed (wrong CA, rejected client certificate, plaintext server).
    #[error("TLS handshake with Redis at {addr} failed: {reason}")]
    Tls {
        /// The address.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// The connection broke or Redis answered something that is not RESP.
    #[error("Redis connection failed: {0}")]
    Protocol(String),
    /// Redis answered with an error.
    #[error("Redis answered an error: {0}")]
    Redis(String),
    /// No answer in time.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
}

impl ProbeError {
    /// Low-cardinality label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Material(_) => "material",
            Self::Connect { .. } => "connect",
            Self::Tls { .. } => "tls",
            Self::Protocol(_) => "protocol",
            Self::Redis(_) => "redis",
            Self::Timeout(_) => "timeout",
        }
    }
}

fn tls_config(ep: &Endpoint) -> Result<rustls::ClientConfig, ProbeError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| ProbeError::Material(format!("{what}: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ep.ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| bad("CA certificate", &e))?;
        roots.add(cert).map_err(|e| bad("CA certificate", &e))?;
    }
    if roots.is_empty() {
        return Err(ProbeError::Material("no CA certificate".into()));
    }
    let chain = CertificateDer::pem_slice_iter(ep.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("client certificate", &e))?;
    // The key's parse error is not shown: it could quote the key.
    let key = PrivateKeyDer::from_pem_slice(ep.key_pem.as_bytes())
        .map_err(|_| ProbeError::Material("client key is not a PEM private key".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS versions", &e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| bad("client certificate", &e))
}

/// Parses `enqueued_at`: RFC 3339 (RQ writes `2024-05-01T12:00:00.123456Z`).
pub fn parse_enqueued_at(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &Rfc3339).ok()
}

/// Reads the given queues in two round trips.
pub async fn probe(
    ep: &Endpoint,
    queues: &[&str],
    timeout: Duration,
) -> Result<BTreeMap<String, QueueStats>, ProbeError> {
    tokio::time::timeout(timeout, probe_inner(ep, queues))
        .await
        .map_err(|_| ProbeError::Timeout(timeout))?
}

/// A resolver that sends every name to one address: the connection goes to `addr` (an
/// override in tests and development) while TLS still verifies the in-cluster server name.
struct FixedAddress(Vec<std::net::SocketAddr>);

impl redis::io::AsyncDNSResolver for FixedAddress {
    fn resolve<'a, 'b: 'a>(
        &'a self,
        _host: &'b str,
        _port: u16,
    ) -> redis::RedisFuture<'a, Box<dyn Iterator<Item = std::net::SocketAddr> + Send + 'a>> {
        Box::pin(async move {
            Ok(Box::new(self.0.clone().into_iter())
                as Box<
                    dyn Iterator<Item = std::net::SocketAddr> + Send + 'a,
                >)
        })
    }
}

/// Sorts a client error into the probe's stable categories (never quoting key material).
fn classify(ep: &Endpoint, e: &redis::RedisError) -> ProbeError {
    if e.kind() == redis::ErrorKind::AuthenticationFailed {
        return ProbeError::Redis(
            "WRONGPASS the operator's ACL user was refused (wrong or rotated password)".into(),
        );
    }
    if e.is_connection_refusal() {
        return ProbeError::Connect {
            addr: ep.addr.clone(),
            kind: std::io::ErrorKind::ConnectionRefused,
        };
    }
    if e.is_timeout() {
        return ProbeError::Connect {
            addr: ep.addr.clone(),
            kind: std::io::ErrorKind::TimedOut,
        };
    }
    if let Some(code) = e.code() {
        let detail = e.detail().unwrap_or_default();
        return ProbeError::Redis(format!("{code} {detail}").chars().take(200).collect());
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            return match io.kind() {
                K::ConnectionRefused
                | K::AddrNotAvailable
                | K::HostUnreachable
                | K::NetworkUnreachable => ProbeError::Connect {
                    addr: ep.addr.clone(),
                    kind: io.kind(),
                },
                K::InvalidData
                | K::UnexpectedEof
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::BrokenPipe => ProbeError::Tls {
                    addr: ep.addr.clone(),
                    reason: io.to_string().chars().take(200).collect(),
                },
                _ => ProbeError::Protocol(io.to_string().chars().take(200).collect()),
            };
        }
        source = err.source();
    }
    if e.is_io_error() {
        return ProbeError::Tls {
            addr: ep.addr.clone(),
            reason: e.to_string().chars().take(200).collect(),
        };
    }
    ProbeError::Protocol(e.to_string().chars().take(200).collect())
}

/// One reply of a pipeline: an error reply (e.g. `WRONGTYPE`) is Redis's error, not a zero.
fn value<T: redis::FromRedisValue>(v: &redis::Value) -> Result<T, ProbeError> {
    if let redis::Value::ServerError(e) = v {
        let detail = e.details().unwrap_or_default();
        return Err(ProbeError::Redis(
            format!("{} {detail}", e.code()).chars().take(200).collect(),
        ));
    }
    redis::from_redis_value_ref(v)
        .map_err(|e| ProbeError::Protocol(e.to_string().chars().take(200).collect()))
}

async fn probe_inner(
    ep: &Endpoint,
    queues: &[&str],
) -> Result<BTreeMap<String, QueueStats>, ProbeError> {
    // Checked first, for a clear message about unusable stored material.
    tls_config(ep)?;
    let port = ep
        .addr
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .ok_or_else(|| ProbeError::Material(format!("bad Redis address {}", ep.addr)))?;
    let resolved: Vec<std::net::SocketAddr> = tokio::net::lookup_host(&ep.addr)
        .await
        .map_err(|e| ProbeError::Connect {
            addr: ep.addr.clone(),
            kind: e.kind(),
        })?
        .collect();
    let url = format!("rediss://{}:{port}/0", ep.server_name);
    let info = redis::IntoConnectionInfo::into_connection_info(url.as_str())
        .map_err(|e| ProbeError::Material(format!("server name {}: {e}", ep.server_name)))?;
    let settings = info
        .redis_settings()
        .clone()
        .set_username(&ep.username)
        .set_password(&ep.password);
    let info = info.set_redis_settings(settings);
    let certs = redis::TlsCertificates {
        client_tls: Some(redis::ClientTlsConfig {
            client_cert: ep.cert_pem.as_bytes().to_vec(),
            client_key: ep.key_pem.as_bytes().to_vec(),
        }),
        root_cert: Some(ep.ca_pem.as_bytes().to_vec()),
    };
    let client = redis::Client::build_with_tls(info, certs)
        .map_err(|_| ProbeError::Material("the client certificate, key or CA".into()))?;
    let config = redis::AsyncConnectionConfig::new().set_dns_resolver(FixedAddress(resolved));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| classify(ep, &e))?;

    let mut pipe = redis::pipe();
    for q in queues {
        pipe.cmd("LLEN").arg(format!("rq:queue:{q}"));
        pipe.cmd("LINDEX").arg(format!("rq:queue:{q}")).arg(0);
        pipe.cmd("ZCARD").arg(format!("rq:wip:{q}"));
    }
    let replies: Vec<redis::Value> = pipe
        .ignore_errors()
        .query_async(&mut conn)
        .await
        .map_err(|e| classify(ep, &e))?;
    let mut stats = BTreeMap::new();
    let mut heads = Vec::new();
    for (q, r) in queues.iter().zip(replies.chunks(3)) {
        let [waiting, head, running] = r else {
            return Err(ProbeError::Protocol("missing replies".into()));
        };
        let waiting: u64 = value(waiting)?;
        let head: Option<String> = value(head)?;
        let running: u64 = value(running)?;
        if let Some(id) = head {
            heads.push(((*q).to_owned(), id));
        }
        stats.insert(
            (*q).to_owned(),
            QueueStats {
                waiting,
                running,
                oldest_enqueued_at: None,
            },
        );
    }
    if !heads.is_empty() {
        let mut pipe = redis::pipe();
        for (_, id) in &heads {
            pipe.cmd("HGET")
                .arg(format!("rq:job:{id}"))
                .arg("enqueued_at");
        }
        let times: Vec<redis::Value> = pipe
            .ignore_errors()
            .query_async(&mut conn)
            .await
            .map_err(|e| classify(ep, &e))?;
        for ((q, _), at) in heads.iter().zip(times) {
            let at: Option<String> = value(&at)?;
            if let Some(s) = stats.get_mut(q) {
                s.oldest_enqueued_at = at.as_deref().and_then(parse_enqueued_at);
            }
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enqueued_at_accepts_rq_and_rfc3339_times() {
        let t = parse_enqueued_at("2024-05-01T12:00:00.123456Z").map(|t| t.unix_timestamp());
        assert_eq!(t, Some(1_714_564_800));
        assert!(parse_enqueued_at("2024-05-01T14:00:00+02:00").is_some());
        assert!(parse_enqueued_at("yesterday").is_none());
    }

    #[test]
    fn unusable_material_is_reported_without_the_key() {
        let ep = Endpoint {
            addr: "127.0.0.1:1".into(),
            server_name: "redis.t.svc".into(),
            ca_pem: "not a pem".into(),
            cert_pem: String::new(),
            key_pem: "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n".into(),
            username: "operator".into(),
            password: "hunter2".into(),
        };
        let e = tls_config(&ep)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("no CA certificate"), "{e}");
        assert!(
            !format!("{ep:?}").contains("hunter2"),
            "Debug hides the password"
        );
    }
}
