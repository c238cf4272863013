//! Runtime configuration: defaults, then a TOML file, then `VERITY_*` environment variables,
//! then command-line flags (each later source wins). `config/controlplane.example.toml`
//! documents every key; the environment variable of a key is `VERITY_` + the key upper-cased.

use std::{net::SocketAddr, path::PathBuf};

use serde::Deserialize;

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("invalid config file {path}: {message}")]
    Parse { path: String, message: String },
    /// An environment variable has a bad value.
    #[error("invalid value {value:?} for {name}: {message}")]
    Env {
        name: String,
        value: String,
        message: String,
    },
}

/// The control plane's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the API listens on.
    pub listen: SocketAddr,
    /// Directory for the embedded database and temporary files.
    pub data_dir: PathBuf,
    /// `postgres://…` or `sqlite://…`; empty = SQLite file `verity.db` in the data directory.
    pub database_url: String,
    /// PEM file of the CAs PostgreSQL's server certificate must chain to (TLS with the
    /// certificate and host name verified); empty: as the URL's `sslmode` says.
    pub database_ca: String,
    /// Maximum database connections (PostgreSQL; SQLite readers).
    pub db_max_connections: u32,
    /// Email of the owner created on first start.
    pub admin_email: String,
    /// Password of that owner (generated and printed when empty).
    pub admin_password: String,
    /// Exact legacy API token for that owner (generated when empty).
    pub admin_token: String,
    /// Maximum size of a JSON request body, in bytes.
    pub max_body_bytes: usize,
    /// Maximum size of an import upload, in bytes.
    pub import_max_bytes: u64,
    /// Time limit for a request (uploads and exports excepted), in seconds.
    pub request_timeout_secs: u64,
    /// Time limit for an import or export request, in seconds.
    pub long_request_timeout_secs: u64,
    /// Largest page size a list endpoint returns.
    pub page_size_max: i64,
    /// Largest page of tasks with their annotations, predictions and drafts nested
    /// (`/api/tasks?fields=all`, `/api/projects/{id}/tasks`).
    pub page_size_max_nested: i64,
    /// Default task reservation (lock) time in the label stream, in seconds.
    pub task_lock_ttl_secs: i64,
    /// Lifetime of personal access tokens, in days.
    pub pat_ttl_days: i64,
    /// Log format: `text` or `json`.
    pub log_format: String,
    /// Bearer token of the instance admin API (`/api/admin/*`); empty disables that API.
    pub instance_admin_token: String,
    /// Take the client address from the first `X-Forwarded-For` entry (behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// The reverse proxies (addresses and networks, comma-separated) whose `X-Forwarded-For`
    /// says where a request came from for the organizations' API allow-lists (ADR 0053); from
    /// any other peer the header is ignored. Empty: the TCP peer is the client.
    pub trusted_proxies: String,
    /// How often the audit-log retention purge runs inside `serve`, in seconds (0 = never).
    pub audit_purge_interval_secs: u64,
    /// Export snapshots (and their conversions) are removed this many days after they ended;
    /// 0 keeps them until someone deletes them (Label Studio's behaviour).
    pub export_retention_days: u64,
    /// Job queue in Redis (`rediss://host:port/db`, TLS only); empty = the `jobs` table of the
    /// database (the embedded default).
    pub redis_url: String,
    /// Redis ACL user.
    pub redis_username: String,
    /// Its password.
    pub redis_password: String,
    /// PEM file of the CA that signed Redis's certificate.
    pub redis_tls_ca: String,
    /// PEM file of the client certificate.
    pub redis_tls_cert: String,
    /// PEM file of the client key.
    pub redis_tls_key: String,
    /// Jobs `verity serve` runs itself, in-process (0 = none: separate `verity work` pools run
    /// them). Defaults to 2, so the embedded default needs nothing else.
    pub serve_workers: usize,
    /// Jobs one `verity work` process runs at once.
    pub worker_concurrency: usize,
    /// Seconds a stopping worker lets its jobs finish before it gives them back (keep it below
    /// the pod's termination grace period).
    pub worker_drain_secs: u64,
    /// Seconds `verity serve` keeps serving after SIGTERM, answering `/readyz` 503 and closing
    /// each connection after its response, before it stops accepting: long enough for the load
    /// balancer (a Service's endpoints) to stop sending new connections to a pod being replaced.
    pub shutdown_delay_secs: u64,
    /// Seconds a job's lease lasts without a heartbeat: a killed worker's jobs run again after
    /// at most this long.
    pub worker_lease_secs: u64,
    /// Requests one credential (token) may make per minute (0: no limit); a spent budget
    /// answers 429 with `Retry-After`.
    pub rate_limit_per_token_per_minute: u32,
    /// Failed sign-ins per client address per minute: failed authentications, token exchanges
    /// and invitation acceptances (0: no limit). A spent budget blocks every request with a
    /// credential from that address until it refills.
    pub rate_limit_sign_ins_per_minute: u32,
    /// Directory holding Label Studio's labeling editor (`main.js`, `main.css`), filled by
    /// `controlplane/ui/fetch-editor`; empty: the labeling page says the editor is not installed.
    pub editor_dir: String,
    /// Lifetime of a browser session (signed in with a password), in hours.
    pub session_ttl_hours: i64,
    /// Mark the session cookie `Secure` always. When false it is `Secure` only for requests that
    /// arrived over HTTPS as a trusted proxy reports (`X-Forwarded-Proto: https` with
    /// `trust_forwarded_for`). Set it whenever users reach the UI over HTTPS.
    pub session_cookie_secure: bool,
    /// Consecutive failed password sign-ins that lock an account (0: never).
    pub login_max_failures: u32,
    /// How long a locked account refuses password sign-in, in seconds.
    pub login_lockout_secs: u64,
    /// Key material (at least 32 characters) that seals stored secrets: webhook signing
    /// secrets, the JWT signing key, ML-backend passwords. Empty: a random key kept in
    /// `<data_dir>/secret.key` (the embedded default); required with PostgreSQL.
    pub session_key: String,
    /// Which non-public addresses outgoing requests (webhooks, ML backends, storage endpoints)
    /// may reach: `false` (none), `true` (all) or a comma-separated list of addresses and
    /// networks (`10.0.0.0/8,127.0.0.1`).
    pub allow_private_targets: String,
    /// Time limit of one webhook request, in milliseconds.
    pub webhook_timeout_ms: u64,
    /// Attempts per webhook event before it is given up.
    pub webhook_max_attempts: u32,
    /// Delay before the first retry of a failed webhook event, in milliseconds; it doubles per
    /// attempt (at most one hour).
    pub webhook_retry_base_ms: u64,
    /// The directory local-files storages must lie under (Label Studio's
    /// `LOCAL_FILES_DOCUMENT_ROOT`); empty: local-files storages are refused.
    pub local_files_root: String,
    /// Public base URL of a separate `verity storage-proxy` (e.g.
    /// `https://media.example.com`); media links point there. Empty: links point at the
    /// `/storage-proxy` routes of the app itself.
    pub storage_proxy_url: String,
    /// Lifetime of a signed media link, in seconds.
    pub storage_link_ttl_secs: u64,
    /// Largest response the storage proxy sends for one request, in bytes (larger objects can
    /// be read in byte ranges up to this size).
    pub storage_proxy_max_bytes: u64,
    /// The address users reach this service at (e.g. `https://label.example.com`): SAML single
    /// sign-on's entity id and assertion consumer URL are built on it. Empty: `http://` +
    /// `listen`.
    pub public_url: String,
    /// The server's own AWS access key id, the base identity that assumes the IAM roles of S3
    /// storages with a `role_arn` (ADR 0054). Empty: such storages must carry their own keys.
    pub aws_access_key_id: String,
    /// The secret of `aws_access_key_id`.
    pub aws_secret_access_key: String,
    /// Session token, when the base identity's keys are themselves temporary.
    pub aws_session_token: String,
    /// STS endpoint for role assumption (e.g. `https://sts.eu-west-1.amazonaws.com`). Empty:
    /// the storage's `s3_endpoint` when it has one (S3-compatible services serve STS there),
    /// else `https://sts.<region>.amazonaws.com`. It obeys `allow_private_targets`.
    pub aws_sts_endpoint: String,
    /// Microsoft Entra ID authority that issues tokens to Azure storages with a service
    /// principal (`tenant_id`, `client_id`, `client_secret`). Empty:
    /// `https://login.microsoftonline.com`. It obeys `allow_private_targets`.
    pub azure_authority_host: String,
    /// GCS workload identity (ADR 0054): GCS storages without a service-account key sign with
    /// an access token of the server's own Google service account, from the GCE metadata
    /// server, instead of making anonymous requests. Every organization of the server then
    /// reads and writes with that identity, so turn it on only for a server of one
    /// organization (as each Organization of the operator is).
    pub gcs_workload_identity: bool,
    /// Host (and port) of the GCE metadata server, Google's `GCE_METADATA_HOST`. Empty:
    /// `metadata.google.internal`.
    pub gce_metadata_host: String,
}

impl Config {
    /// [`Config::public_url`] without a trailing slash, or `http://` + `listen`.
    pub fn public_base_url(&self) -> String {
        let url = self.public_url.trim().trim_end_matches('/');
        if url.is_empty() {
            format!("http://{}", self.listen)
        } else {
            url.to_string()
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./verity-data"),
            database_url: String::new(),
            database_ca: String::new(),
            db_max_connections: 10,
            admin_email: "admin@verity.local".into(),
            admin_password: String::new(),
            admin_token: String::new(),
            max_body_bytes: 16 * 1024 * 1024,
            import_max_bytes: 1024 * 1024 * 1024,
            request_timeout_secs: 60,
            long_request_timeout_secs: 3600,
            page_size_max: 100_000,
            page_size_max_nested: 1000,
            task_lock_ttl_secs: 86_400,
            pat_ttl_days: 365,
            log_format: "text".into(),
            instance_admin_token: String::new(),
            trust_forwarded_for: false,
            trusted_proxies: String::new(),
            audit_purge_interval_secs: 3600,
            export_retention_days: 0,
            redis_url: String::new(),
            redis_username: String::new(),
            redis_password: String::new(),
            redis_tls_ca: String::new(),
            redis_tls_cert: String::new(),
            redis_tls_key: String::new(),
            serve_workers: 2,
            worker_concurrency: 4,
            worker_drain_secs: 25,
            shutdown_delay_secs: 0,
            worker_lease_secs: 30,
            rate_limit_per_token_per_minute: 6000,
            rate_limit_sign_ins_per_minute: 30,
            editor_dir: String::new(),
            session_ttl_hours: 336,
            session_cookie_secure: false,
            login_max_failures: 5,
            login_lockout_secs: 900,
            session_key: String::new(),
            allow_private_targets: "false".into(),
            webhook_timeout_ms: 5000,
            webhook_max_attempts: 8,
            webhook_retry_base_ms: 5000,
            local_files_root: String::new(),
            storage_proxy_url: String::new(),
            aws_access_key_id: String::new(),
            aws_secret_access_key: String::new(),
            aws_session_token: String::new(),
            aws_sts_endpoint: String::new(),
            azure_authority_host: String::new(),
            gcs_workload_identity: false,
            gce_metadata_host: String::new(),
            public_url: String::new(),
            storage_link_ttl_secs: 300,
            storage_proxy_max_bytes: 2 * 1024 * 1024 * 1024,
        }
    }
}

impl Config {
    /// Loads defaults, then `file` (if any), then the environment.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?
            }
            None => Config::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        Ok(config)
    }

    /// Applies `VERITY_*` variables read through `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(name: &str, value: String) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value.parse().map_err(|e: T::Err| ConfigError::Env {
                name: name.into(),
                value,
                message: e.to_string(),
            })
        }
        macro_rules! env {
            ($field:ident, $name:literal, parse) => {
                if let Some(v) = get($name) {
                    self.$field = parse($name, v)?;
                }
            };
            ($field:ident, $name:literal, string) => {
                if let Some(v) = get($name) {
                    self.$field = v.into();
                }
            };
        }
        env!(listen, "VERITY_LISTEN", parse);
        env!(data_dir, "VERITY_DATA_DIR", string);
        env!(database_url, "VERITY_DATABASE_URL", string);
        env!(database_ca, "VERITY_DATABASE_CA", string);
        env!(db_max_connections, "VERITY_DB_MAX_CONNECTIONS", parse);
        env!(admin_email, "VERITY_ADMIN_EMAIL", string);
        env!(admin_password, "VERITY_ADMIN_PASSWORD", string);
        env!(admin_token, "VERITY_ADMIN_TOKEN", string);
        env!(max_body_bytes, "VERITY_MAX_BODY_BYTES", parse);
        env!(import_max_bytes, "VERITY_IMPORT_MAX_BYTES", parse);
        env!(request_timeout_secs, "VERITY_REQUEST_TIMEOUT_SECS", parse);
        env!(
            long_request_timeout_secs,
            "VERITY_LONG_REQUEST_TIMEOUT_SECS",
            parse
        );
        env!(page_size_max, "VERITY_PAGE_SIZE_MAX", parse);
        env!(page_size_max_nested, "VERITY_PAGE_SIZE_MAX_NESTED", parse);
        env!(task_lock_ttl_secs, "VERITY_TASK_LOCK_TTL_SECS", parse);
        env!(pat_ttl_days, "VERITY_PAT_TTL_DAYS", parse);
        env!(log_format, "VERITY_LOG_FORMAT", string);
        env!(instance_admin_token, "VERITY_INSTANCE_ADMIN_TOKEN", string);
        env!(trust_forwarded_for, "VERITY_TRUST_FORWARDED_FOR", parse);
        env!(trusted_proxies, "VERITY_TRUSTED_PROXIES", string);
        env!(
            audit_purge_interval_secs,
            "VERITY_AUDIT_PURGE_INTERVAL_SECS",
            parse
        );
        env!(export_retention_days, "VERITY_EXPORT_RETENTION_DAYS", parse);
        env!(redis_url, "VERITY_REDIS_URL", string);
        env!(redis_username, "VERITY_REDIS_USERNAME", string);
        env!(redis_password, "VERITY_REDIS_PASSWORD", string);
        env!(redis_tls_ca, "VERITY_REDIS_TLS_CA", string);
        env!(redis_tls_cert, "VERITY_REDIS_TLS_CERT", string);
        env!(redis_tls_key, "VERITY_REDIS_TLS_KEY", string);
        env!(serve_workers, "VERITY_SERVE_WORKERS", parse);
        env!(worker_concurrency, "VERITY_WORKER_CONCURRENCY", parse);
        env!(worker_drain_secs, "VERITY_WORKER_DRAIN_SECS", parse);
        env!(shutdown_delay_secs, "VERITY_SHUTDOWN_DELAY_SECS", parse);
        env!(worker_lease_secs, "VERITY_WORKER_LEASE_SECS", parse);
        env!(
            rate_limit_per_token_per_minute,
            "VERITY_RATE_LIMIT_PER_TOKEN_PER_MINUTE",
            parse
        );
        env!(
            rate_limit_sign_ins_per_minute,
            "VERITY_RATE_LIMIT_SIGN_INS_PER_MINUTE",
            parse
        );
        env!(editor_dir, "VERITY_EDITOR_DIR", string);
        env!(session_ttl_hours, "VERITY_SESSION_TTL_HOURS", parse);
        env!(session_cookie_secure, "VERITY_SESSION_COOKIE_SECURE", parse);
        env!(login_max_failures, "VERITY_LOGIN_MAX_FAILURES", parse);
        env!(login_lockout_secs, "VERITY_LOGIN_LOCKOUT_SECS", parse);
        env!(session_key, "VERITY_SESSION_KEY", string);
        env!(
            allow_private_targets,
            "VERITY_ALLOW_PRIVATE_TARGETS",
            string
        );
        env!(webhook_timeout_ms, "VERITY_WEBHOOK_TIMEOUT_MS", parse);
        env!(webhook_max_attempts, "VERITY_WEBHOOK_MAX_ATTEMPTS", parse);
        env!(webhook_retry_base_ms, "VERITY_WEBHOOK_RETRY_BASE_MS", parse);
        env!(local_files_root, "VERITY_LOCAL_FILES_ROOT", string);
        env!(storage_proxy_url, "VERITY_STORAGE_PROXY_URL", string);
        env!(public_url, "VERITY_PUBLIC_URL", string);
        env!(storage_link_ttl_secs, "VERITY_STORAGE_LINK_TTL_SECS", parse);
        env!(
            storage_proxy_max_bytes,
            "VERITY_STORAGE_PROXY_MAX_BYTES",
            parse
        );
        env!(aws_access_key_id, "VERITY_AWS_ACCESS_KEY_ID", string);
        env!(
            aws_secret_access_key,
            "VERITY_AWS_SECRET_ACCESS_KEY",
            string
        );
        env!(aws_session_token, "VERITY_AWS_SESSION_TOKEN", string);
        env!(aws_sts_endpoint, "VERITY_AWS_STS_ENDPOINT", string);
        env!(azure_authority_host, "VERITY_AZURE_AUTHORITY_HOST", string);
        env!(gcs_workload_identity, "VERITY_GCS_WORKLOAD_IDENTITY", parse);
        env!(gce_metadata_host, "GCE_METADATA_HOST", string);
        Ok(())
    }

    /// The parsed `trusted_proxies` (an error names the entry that is neither an address nor a
    /// network).
    pub fn trusted_proxy_networks(&self) -> Result<Vec<ipnet::IpNet>, String> {
        let entries: Vec<String> = self
            .trusted_proxies
            .split(',')
            .map(str::to_string)
            .collect();
        crate::storage::access_policy::parse_networks(&entries)
            .map_err(|why| format!("trusted_proxies (VERITY_TRUSTED_PROXIES): {why}"))
    }

    /// Refuses an instance admin token that is easy to guess: at least 32 characters, of which
    /// at least 10 distinct (a hex string of 16 random bytes passes).
    pub fn check_admin_token(&self) -> Result<(), String> {
        let t = &self.instance_admin_token;
        if t.is_empty() {
            return Ok(());
        }
        let distinct: std::collections::BTreeSet<char> = t.chars().collect();
        if t.chars().count() < 32 || distinct.len() < 10 {
            return Err(
                "instance_admin_token (VERITY_INSTANCE_ADMIN_TOKEN) is too easy to guess: use at least 32 characters with at least 10 different ones, e.g. the output of `openssl rand -hex 32`"
                    .into(),
            );
        }
        Ok(())
    }

    /// The database URL to use: the configured one, or the SQLite file in the data directory.
    pub fn effective_database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("verity.db").display())
        } else {
            self.database_url.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_defaults() {
        let mut c = Config::default();
        c.apply_env(|n| match n {
            "VERITY_LISTEN" => Some("127.0.0.1:9999".into()),
            "VERITY_DATA_DIR" => Some("/tmp/x".into()),
            _ => None,
        })
        .expect("valid env");
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.effective_database_url(), "sqlite:///tmp/x/verity.db");
    }

    #[test]
    fn weak_admin_tokens_are_refused() {
        let with = |t: &str| Config {
            instance_admin_token: t.into(),
            ..Config::default()
        };
        assert!(
            with("").check_admin_token().is_ok(),
            "no token: no admin API"
        );
        assert!(with("short-token").check_admin_token().is_err());
        assert!(with(&"a".repeat(64)).check_admin_token().is_err());
        assert!(
            with("abababababababababababababababababab")
                .check_admin_token()
                .is_err()
        );
        assert!(
            with("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
                .check_admin_token()
                .is_ok()
        );
    }

    #[test]
    fn bad_env_names_the_variable() {
        let mut c = Config::default();
        let err = c
            .apply_env(|n| (n == "VERITY_LISTEN").then(|| "nope".to_string()))
            .unwrap_err();
        assert!(err.to_string().contains("VERITY_LISTEN"), "{err}");
    }

    #[test]
    fn example_file_parses_and_documents_every_key() {
        let text = include_str!("../../config/controlplane.example.toml");
        let parsed: Config = toml::from_str(text).expect("example config parses");
        assert_eq!(parsed.listen.port(), 8080);
        let defaults =
            toml::to_string(&DefaultsProbe::from(&Config::default())).unwrap_or_default();
        for line in defaults.lines() {
            let key = line.split('=').next().unwrap_or_default().trim();
            assert!(
                text.contains(&format!("{key} =")),
                "config/controlplane.example.toml does not document {key}"
            );
        }
    }

    /// Serializes the key names of [`Config`] for the documentation test.
    #[derive(serde::Serialize)]
    struct DefaultsProbe {
        listen: String,
        data_dir: String,
        database_url: String,
        database_ca: String,
        db_max_connections: u32,
        admin_email: String,
        admin_password: String,
        admin_token: String,
        max_body_bytes: usize,
        import_max_bytes: u64,
        request_timeout_secs: u64,
        long_request_timeout_secs: u64,
        page_size_max: i64,
        page_size_max_nested: i64,
        task_lock_ttl_secs: i64,
        pat_ttl_days: i64,
        log_format: String,
        redis_url: String,
        redis_username: String,
        redis_password: String,
        redis_tls_ca: String,
        redis_tls_cert: String,
        redis_tls_key: String,
        serve_workers: usize,
        worker_concurrency: usize,
        worker_drain_secs: u64,
        shutdown_delay_secs: u64,
        worker_lease_secs: u64,
        rate_limit_per_token_per_minute: u32,
        rate_limit_sign_ins_per_minute: u32,
        editor_dir: String,
        session_ttl_hours: i64,
        session_cookie_secure: bool,
        login_max_failures: u32,
        login_lockout_secs: u64,
        session_key: String,
        allow_private_targets: String,
        trusted_proxies: String,
        webhook_timeout_ms: u64,
        webhook_max_attempts: u32,
        webhook_retry_base_ms: u64,
        local_files_root: String,
        storage_proxy_url: String,
        public_url: String,
        storage_link_ttl_secs: u64,
        storage_proxy_max_bytes: u64,
        aws_access_key_id: String,
        aws_secret_access_key: String,
        aws_session_token: String,
        aws_sts_endpoint: String,
        azure_authority_host: String,
        gcs_workload_identity: bool,
        gce_metadata_host: String,
    }

    impl From<&Config> for DefaultsProbe {
        fn from(c: &Config) -> Self {
            Self {
                listen: c.listen.to_string(),
                data_dir: c.data_dir.display().to_string(),
                database_url: c.database_url.clone(),
                database_ca: c.database_ca.clone(),
                db_max_connections: c.db_max_connections,
                admin_email: c.admin_email.clone(),
                admin_password: c.admin_password.clone(),
                admin_token: c.admin_token.clone(),
                max_body_bytes: c.max_body_bytes,
                import_max_bytes: c.import_max_bytes,
                request_timeout_secs: c.request_timeout_secs,
                long_request_timeout_secs: c.long_request_timeout_secs,
                page_size_max: c.page_size_max,
                page_size_max_nested: c.page_size_max_nested,
                task_lock_ttl_secs: c.task_lock_ttl_secs,
                pat_ttl_days: c.pat_ttl_days,
                log_format: c.log_format.clone(),
                redis_url: c.redis_url.clone(),
                redis_username: c.redis_username.clone(),
                redis_password: c.redis_password.clone(),
                redis_tls_ca: c.redis_tls_ca.clone(),
                redis_tls_cert: c.redis_tls_cert.clone(),
                redis_tls_key: c.redis_tls_key.clone(),
                serve_workers: c.serve_workers,
                worker_concurrency: c.worker_concurrency,
                worker_drain_secs: c.worker_drain_secs,
                shutdown_delay_secs: c.shutdown_delay_secs,
                worker_lease_secs: c.worker_lease_secs,
                rate_limit_per_token_per_minute: c.rate_limit_per_token_per_minute,
                rate_limit_sign_ins_per_minute: c.rate_limit_sign_ins_per_minute,
                editor_dir: c.editor_dir.clone(),
                session_ttl_hours: c.session_ttl_hours,
                session_cookie_secure: c.session_cookie_secure,
                login_max_failures: c.login_max_failures,
                login_lockout_secs: c.login_lockout_secs,
                session_key: c.session_key.clone(),
                allow_private_targets: c.allow_private_targets.clone(),
                trusted_proxies: c.trusted_proxies.clone(),
                webhook_timeout_ms: c.webhook_timeout_ms,
                webhook_max_attempts: c.webhook_max_attempts,
                webhook_retry_base_ms: c.webhook_retry_base_ms,
                local_files_root: c.local_files_root.clone(),
                storage_proxy_url: c.storage_proxy_url.clone(),
                public_url: c.public_url.clone(),
                storage_link_ttl_secs: c.storage_link_ttl_secs,
                storage_proxy_max_bytes: c.storage_proxy_max_bytes,
                aws_access_key_id: c.aws_access_key_id.clone(),
                aws_secret_access_key: c.aws_secret_access_key.clone(),
                aws_session_token: c.aws_session_token.clone(),
                aws_sts_endpoint: c.aws_sts_endpoint.clone(),
                azure_authority_host: c.azure_authority_host.clone(),
                gcs_workload_identity: c.gcs_workload_identity,
                gce_metadata_host: c.gce_metadata_host.clone(),
            }
        }
    }
}
