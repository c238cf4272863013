//! Reads queue depth, running jobs and the oldest job's enqueue time from a tenant's Redis,
//! over TLS with the tenant's client certificate, using the few RESP commands it needs.
//!
//! The key layout is the contract with `verity work` (ADR 0011), RQ's own:
//! `rq:queue:<q>` is a list of job ids (appended at the tail, taken from the head, so the head
//! is the oldest), `rq:job:<id>` a hash whose `enqueued_at` is an RFC 3339 UTC time, and
//! `rq:wip:<q>` the sorted set of started jobs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

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

/// A RESP reply (the subset these commands produce).
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Simple(String),
}

const MAX_BULK: usize = 64 * 1024;

async fn read_reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<Reply, ProbeError> {
    let proto = |m: &str| ProbeError::Protocol(m.to_owned());
    let mut line = Vec::new();
    let n = (&mut *r)
        .take(MAX_BULK as u64)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| ProbeError::Protocol(e.kind().to_string()))?;
    if n == 0 {
        return Err(proto("connection closed"));
    }
    if !line.ends_with(b"\r\n") {
        return Err(proto("reply line too long or not terminated"));
    }
    line.truncate(line.len() - 2);
    let (kind, rest) = line.split_first().ok_or_else(|| proto("empty reply"))?;
    let text = String::from_utf8_lossy(rest).into_owned();
    match kind {
        b'+' => Ok(Reply::Simple(text)),
        b'-' => Err(ProbeError::Redis(text.chars().take(200).collect())),
        b':' => text
            .parse()
            .map(Reply::Int)
            .map_err(|_| proto("bad integer reply")),
        b'$' => {
            let len: i64 = text.parse().map_err(|_| proto("bad bulk length"))?;
            if len < 0 {
                return Ok(Reply::Bulk(None));
            }
            let len = usize::try_from(len).map_err(|_| proto("bad bulk length"))?;
            if len > MAX_BULK {
                return Err(proto("bulk reply too large"));
            }
            let mut buf = vec![0; len + 2];
            r.read_exact(&mut buf)
                .await
                .map_err(|e| ProbeError::Protocol(e.kind().to_string()))?;
            if !buf.ends_with(b"\r\n") {
                return Err(proto("bulk reply not terminated"));
            }
            buf.truncate(len);
            Ok(Reply::Bulk(Some(buf)))
        }
        _ => Err(proto("unexpected reply type")),
    }
}

fn command(out: &mut Vec<u8>, args: &[&str]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

fn int(reply: Reply) -> Result<u64, ProbeError> {
    match reply {
        Reply::Int(n) => Ok(u64::try_from(n).unwrap_or(0)),
        other => Err(ProbeError::Protocol(format!(
            "expected an integer, got {other:?}"
        ))),
    }
}

fn bulk(reply: Reply) -> Result<Option<String>, ProbeError> {
    match reply {
        Reply::Bulk(b) => Ok(b.map(|b| String::from_utf8_lossy(&b).into_owned())),
        other => Err(ProbeError::Protocol(format!(
            "expected a bulk string, got {other:?}"
        ))),
    }
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

async fn probe_inner(
    ep: &Endpoint,
    queues: &[&str],
) -> Result<BTreeMap<String, QueueStats>, ProbeError> {
    let config = tls_config(ep)?;
    let name = ServerName::try_from(ep.server_name.clone())
        .map_err(|e| ProbeError::Material(format!("server name {}: {e}", ep.server_name)))?;
    let tcp = TcpStream::connect(&ep.addr)
        .await
        .map_err(|e| ProbeError::Connect {
            addr: ep.addr.clone(),
            kind: e.kind(),
        })?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| ProbeError::Tls {
            addr: ep.addr.clone(),
            reason: e.to_string(),
        })?;
    let mut stream = BufReader::new(tls);
    let io = |e: std::io::Error| ProbeError::Protocol(e.kind().to_string());

    let mut out = Vec::new();
    // Every user needs its password: authenticate as the operator's ACL user first. An error reply
    // (wrong password, unknown user) ends the probe with that error.
    command(&mut out, &["AUTH", &ep.username, &ep.password]);
    stream.get_mut().write_all(&out).await.map_err(io)?;
    stream.get_mut().flush().await.map_err(io)?;
    read_reply(&mut stream).await?;
    out.clear();
    for q in queues {
        command(&mut out, &["LLEN", &format!("rq:queue:{q}")]);
        command(&mut out, &["LINDEX", &format!("rq:queue:{q}"), "0"]);
        command(&mut out, &["ZCARD", &format!("rq:wip:{q}")]);
    }
    stream.get_mut().write_all(&out).await.map_err(io)?;
    stream.get_mut().flush().await.map_err(io)?;
    let mut stats = BTreeMap::new();
    let mut heads = Vec::new();
    for q in queues {
        let waiting = int(read_reply(&mut stream).await?)?;
        let head = bulk(read_reply(&mut stream).await?)?;
        let running = int(read_reply(&mut stream).await?)?;
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
        let mut out = Vec::new();
        for (_, id) in &heads {
            command(&mut out, &["HGET", &format!("rq:job:{id}"), "enqueued_at"]);
        }
        stream.get_mut().write_all(&out).await.map_err(io)?;
        stream.get_mut().flush().await.map_err(io)?;
        for (q, _) in &heads {
            let at = bulk(read_reply(&mut stream).await?)?;
            if let Some(s) = stats.get_mut(q) {
                s.oldest_enqueued_at = at.as_deref().and_then(parse_enqueued_at);
            }
        }
    }
    let _ = stream.get_mut().shutdown().await;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> Result<Reply, ProbeError> {
        let mut r = BufReader::new(bytes);
        read_reply(&mut r).await
    }

    #[tokio::test]
    async fn resp_replies_parse() {
        assert_eq!(parse(b":42\r\n").await.ok(), Some(Reply::Int(42)));
        assert_eq!(
            parse(b"+OK\r\n").await.ok(),
            Some(Reply::Simple("OK".into()))
        );
        assert_eq!(parse(b"$-1\r\n").await.ok(), Some(Reply::Bulk(None)));
        assert_eq!(
            parse(b"$5\r\nab\r\nc\r\n").await.ok(),
            Some(Reply::Bulk(Some(b"ab\r\nc".to_vec()))),
            "bulk strings are length-delimited"
        );
        assert!(
            matches!(parse(b"-WRONGTYPE nope\r\n").await, Err(ProbeError::Redis(m)) if m == "WRONGTYPE nope")
        );
        assert!(matches!(parse(b"").await, Err(ProbeError::Protocol(_))));
        assert!(
            matches!(parse(b":1").await, Err(ProbeError::Protocol(_))),
            "unterminated"
        );
        assert!(
            matches!(parse(b"$999999999\r\n").await, Err(ProbeError::Protocol(_))),
            "too large"
        );
        assert!(
            matches!(parse(b"*2\r\n").await, Err(ProbeError::Protocol(_))),
            "arrays are not expected"
        );
    }

    #[test]
    fn commands_are_resp_arrays() {
        let mut out = Vec::new();
        command(&mut out, &["LLEN", "rq:queue:default"]);
        assert_eq!(out, b"*2\r\n$4\r\nLLEN\r\n$16\r\nrq:queue:default\r\n");
    }

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
