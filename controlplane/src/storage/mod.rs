//! The storage layer: one set of repository code over PostgreSQL and SQLite.
//!
//! Every repository function is written once and compiled for both backends by the
//! [`with_read!`] and [`with_tx!`] macros, which expand the same body once per backend. SQL is
//! written in the dialect both engines share (`$1` placeholders, `RETURNING`, `ON CONFLICT`);
//! the few differences live in [`Dialect`]. Timestamps are UTC microseconds (`i64`) and JSON
//! payloads are TEXT in both engines (see ADR 0002).
//!
//! SQLite never answers "database is locked" to a request: all writes go through one writer
//! connection whose transactions start with `BEGIN IMMEDIATE`, so writers queue in the pool
//! instead of racing for SQLite's lock, while readers use a separate WAL-mode pool and never
//! block writers. A generous `busy_timeout` covers other processes (a CLI next to `serve`).
//!
//! Authorization is not decided here; callers pass an [`crate::authz::Actor`] that the
//! repository functions check before they touch a connection.

pub mod access;
pub mod access_policy;
pub mod admin;
pub mod agreement;
pub mod analytics;
pub mod annotations;
pub mod annotator_stats;
pub mod assignments;
pub mod audit;
pub mod bulk;
pub mod cloudstorages;
pub mod comments;
pub mod distribution;
pub mod drafts;
pub mod export;
pub mod exportchanges;
pub mod groupmap;
pub mod imports;
pub mod label_stats;
pub mod ldap;
pub mod members;
pub mod ml;
pub mod notifications;
pub mod orgs;
pub mod predictions;
pub mod projects;
pub mod quality;
pub mod reviews;
pub mod routing;
pub mod saml;
pub mod scim;
pub mod sessions;
pub mod snapshots;
pub mod storages;
pub mod task_columns;
pub mod tasks;
pub mod uploads;
pub mod users;
pub mod views;
pub mod webhooks;
pub mod workspaces;

use std::{str::FromStr, time::Duration};

use sqlx::{
    PgPool, SqlitePool,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

/// Errors of the storage layer. Constraint violations that a client can cause are translated
/// by the caller into API errors; everything else is an internal error.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database URL could not be understood.
    #[error("invalid database URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// Opening the connection pool failed.
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    /// Applying migrations failed.
    #[error("applying migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// Creating the data directory failed.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
}

/// Which SQL engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL (production).
    Postgres,
    /// SQLite (embedded default).
    Sqlite,
}

impl Dialect {
    /// SQL that reads a top-level string field of a JSON TEXT column as text.
    pub fn json_text(self, column: &str, key_param: &str) -> String {
        match self {
            Dialect::Postgres => format!("({column}::jsonb ->> {key_param})"),
            Dialect::Sqlite => format!("json_extract({column}, '$.' || {key_param})"),
        }
    }

    /// SQL that reads a top-level field of a JSON TEXT column as a number, or null when the
    /// field is not a JSON number.
    pub fn json_number(self, column: &str, key_param: &str) -> String {
        match self {
            Dialect::Postgres => format!(
                "(case when jsonb_typeof({column}::jsonb -> {key_param}) = 'number' \
                 then ({column}::jsonb ->> {key_param})::double precision end)"
            ),
            Dialect::Sqlite => format!(
                "(case when json_type({column}, '$.' || {key_param}) in ('integer', 'real') \
                 then json_extract({column}, '$.' || {key_param}) end)"
            ),
        }
    }

    /// The placeholder for the `n`-th (1-based) parameter of a generated statement. SQLite
    /// resolves each named parameter (`$N`) by a linear scan of the statement's parameter names,
    /// which makes statements with thousands of parameters quadratic; anonymous `?` parameters
    /// bind by position. Only valid where parameters appear in order, each once.
    pub fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            Dialect::Sqlite => "?".to_string(),
        }
    }

    /// `(…),(…)` for a multi-row `VALUES` of `rows` rows of `cols` parameters, numbered in order.
    pub fn values_list(self, rows: usize, cols: usize) -> String {
        let mut out = String::new();
        for r in 0..rows {
            if r > 0 {
                out.push(',');
            }
            out.push('(');
            for c in 1..=cols {
                if c > 1 {
                    out.push(',');
                }
                out.push_str(&self.placeholder(r * cols + c));
            }
            out.push(')');
        }
        out
    }

    /// A suffix that locks the selected rows for the rest of the transaction, where the engine
    /// has row locks (SQLite serializes writers instead).
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Postgres => " for update",
            Dialect::Sqlite => "",
        }
    }
}

/// Connection pools for one database.
#[derive(Debug, Clone)]
pub enum Db {
    /// PostgreSQL: one pool for reads and writes.
    Postgres(PgPool),
    /// SQLite: a single-connection writer pool and a reader pool.
    Sqlite {
        /// Exactly one connection: writes queue here instead of racing for the file lock.
        write: SqlitePool,
        /// WAL readers; never block the writer.
        read: SqlitePool,
    },
}

/// Pool sizing and timeouts.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Maximum PostgreSQL connections (SQLite readers use the same number).
    pub max_connections: u32,
    /// How long a request waits for a connection before failing.
    pub acquire_timeout: Duration,
    /// PEM file of the certificate authorities that PostgreSQL's server certificate must chain
    /// to: connections then use TLS and verify the certificate and its host name
    /// (`sslmode=verify-full`, or `verify-ca` if the URL asks for that).
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(30),
            ca_file: None,
        }
    }
}

/// TLS with the server certificate verified against `ca` (a CA file makes no sense with a
/// weaker mode, so a URL asking for one is refused rather than silently strengthened).
fn with_ca(
    connect: PgConnectOptions,
    url: &str,
    ca: &std::path::Path,
) -> Result<PgConnectOptions, StorageError> {
    let asked = url::Url::parse(url).ok().and_then(|u| {
        u.query_pairs()
            .find(|(k, _)| k == "sslmode" || k == "ssl-mode")
            .map(|(_, v)| v.to_ascii_lowercase())
    });
    let mode = match asked.as_deref() {
        None | Some("verify-full") => sqlx::postgres::PgSslMode::VerifyFull,
        Some("verify-ca") => sqlx::postgres::PgSslMode::VerifyCa,
        Some(other) => {
            return Err(StorageError::InvalidUrl {
                url: redact(url),
                reason: format!(
                    "sslmode={other} does not check the server certificate, but a database CA is set (database_ca / VERITY_DATABASE_CA); use sslmode=verify-full or leave sslmode out"
                ),
            });
        }
    };
    if !ca.is_file() {
        return Err(StorageError::InvalidUrl {
            url: redact(url),
            reason: format!("the database CA file {} does not exist", ca.display()),
        });
    }
    Ok(connect.ssl_mode(mode).ssl_root_cert(ca))
}

impl Db {
    /// Opens pools for `url` (`postgres://…` or `sqlite://path`).
    pub async fn connect(url: &str, options: &PoolOptions) -> Result<Self, StorageError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut connect =
                PgConnectOptions::from_str(url).map_err(|e| StorageError::InvalidUrl {
                    url: redact(url),
                    reason: e.to_string(),
                })?;
            if let Some(ca) = &options.ca_file {
                connect = with_ca(connect, url, ca)?;
            }
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connect)
                .await
                .map_err(StorageError::Connect)?;
            Ok(Db::Postgres(pool))
        } else if url.starts_with("sqlite:") {
            let base = SqliteConnectOptions::from_str(url)
                .map_err(|e| StorageError::InvalidUrl {
                    url: redact(url),
                    reason: e.to_string(),
                })?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: an acknowledged write survives power loss, not just a process crash.
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(30))
                .pragma("cache_size", "-32000");
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(options.acquire_timeout)
                .connect_with(base.clone())
                .await
                .map_err(StorageError::Connect)?;
            let read = SqlitePoolOptions::new()
                .max_connections(options.max_connections.max(2))
                .acquire_timeout(options.acquire_timeout)
                .connect_with(base.read_only(true))
                .await
                .map_err(StorageError::Connect)?;
            Ok(Db::Sqlite { write, read })
        } else {
            Err(StorageError::InvalidUrl {
                url: redact(url),
                reason: "expected a postgres:// or sqlite: URL".into(),
            })
        }
    }

    /// The SQL dialect of this database.
    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Postgres(_) => Dialect::Postgres,
            Db::Sqlite { .. } => Dialect::Sqlite,
        }
    }

    /// Applies pending migrations. On PostgreSQL sqlx holds an advisory lock, so concurrent
    /// starts apply each migration once; on SQLite the single writer serializes them.
    pub async fn migrate(&self) -> Result<(), StorageError> {
        match self {
            Db::Postgres(pool) => sqlx::migrate!("migrations/postgres").run(pool).await?,
            Db::Sqlite { write, .. } => sqlx::migrate!("migrations/sqlite").run(write).await?,
        }
        Ok(())
    }

    /// Checks that the database answers (readiness probe).
    pub async fn ping(&self) -> Result<(), StorageError> {
        with_read!(self, conn, {
            sqlx::query("select 1").execute(conn).await?;
        });
        Ok(())
    }

    /// Reported to `/metrics`: (connections open, idle connections).
    pub fn pool_stats(&self) -> (u32, u32) {
        match self {
            Db::Postgres(pool) => (pool.size(), pool.num_idle() as u32),
            Db::Sqlite { write, read } => (
                write.size() + read.size(),
                (write.num_idle() + read.num_idle()) as u32,
            ),
        }
    }

    /// Closes every pool (graceful shutdown).
    pub async fn close(&self) {
        match self {
            Db::Postgres(pool) => pool.close().await,
            Db::Sqlite { write, read } => {
                write.close().await;
                read.close().await;
            }
        }
    }
}

/// Hides the password of a database URL in messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Runs `$body` with `$conn` bound to a pooled read connection (`&Pool` of the backend).
#[macro_export]
macro_rules! with_read {
    ($db:expr, $conn:ident, $body:block) => {
        match $db {
            $crate::storage::Db::Postgres(pool) => {
                let $conn = pool;
                $body
            }
            $crate::storage::Db::Sqlite { read, .. } => {
                let $conn = read;
                $body
            }
        }
    };
}

/// Runs `$body` inside a write transaction bound to `$tx`, commits when the body finishes, and
/// rolls back when it returns early with an error. The body must evaluate to `Result<T, E>`
/// where `E: From<sqlx::Error>`.
#[macro_export]
macro_rules! with_tx {
    ($db:expr, $tx:ident, $body:block) => {
        match $db {
            $crate::storage::Db::Postgres(pool) => {
                let mut $tx = pool.begin().await?;
                // The body runs in its own async block so `?` and `return` leave the body (and
                // roll back by dropping the transaction), not the enclosing function.
                let out = async { $body }.await;
                match out {
                    Ok(value) => {
                        $tx.commit().await?;
                        Ok(value)
                    }
                    Err(err) => Err(err),
                }
            }
            $crate::storage::Db::Sqlite { write, .. } => {
                let mut $tx = write.begin_with("BEGIN IMMEDIATE").await?;
                let out = async { $body }.await;
                match out {
                    Ok(value) => {
                        $tx.commit().await?;
                        Ok(value)
                    }
                    Err(err) => Err(err),
                }
            }
        }
    };
}

pub use crate::{with_read, with_tx};

/// Current time in UTC microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000) as i64
}

/// Formats UTC microseconds as `2021-03-09T21:52:49.513742Z`, the wire format Label Studio uses.
pub fn format_micros(micros: i64) -> String {
    let nanos = i128::from(micros) * 1_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        ),
        Err(_) => String::from("1970-01-01T00:00:00.000000Z"),
    }
}

/// A URL as the audit log and readers without management rights see it: without its query
/// string and fragment, where tokens may be.
pub fn url_without_query(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_timestamps_like_label_studio() {
        assert_eq!(
            format_micros(1_615_326_769_513_742),
            "2021-03-09T21:52:49.513742Z"
        );
        assert_eq!(format_micros(0), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }
}
