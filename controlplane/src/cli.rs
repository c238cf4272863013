//! The `verity` command line: `serve`, `work`, `storage-proxy`, `migrate`, `org create`, `user create`,
//! `audit verify`, `audit purge`, `job enqueue|status|stats`, `openapi`.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{
    authz::Role,
    config::Config,
    server,
    storage::{Db, PoolOptions, users},
};

/// Verity control plane.
#[derive(Debug, Parser)]
#[command(
    name = "verity",
    version,
    about = "Verity: a Kubernetes-native, Label Studio compatible data-labeling control plane"
)]
pub struct Cli {
    /// Configuration file (TOML); see config/controlplane.example.toml.
    #[arg(long, global = true, env = "VERITY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database URL (overrides VERITY_DATABASE_URL and the file).
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// Data directory (overrides VERITY_DATA_DIR and the file).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (applies migrations first).
    Serve {
        /// Listen address (overrides VERITY_LISTEN).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Run background jobs (RQ-style worker) until SIGTERM, then drain.
    Work {
        /// Queues to take jobs from, highest priority first (critical, high, default, low).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "critical,high,default,low"
        )]
        queues: Vec<String>,
        /// Address of /livez, /readyz and /metrics (overrides VERITY_LISTEN).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Jobs at once (overrides VERITY_WORKER_CONCURRENCY).
        #[arg(long)]
        concurrency: Option<usize>,
    },
    /// Serve signed media links (the storage proxy): streams the objects of links the API
    /// issued (GET/HEAD, byte ranges), with /livez, /readyz and /metrics. Needs the app's
    /// database and session key (VERITY_SESSION_KEY); applies no migrations.
    StorageProxy {
        /// Listen address (overrides VERITY_LISTEN).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Manage users.
    User {
        /// User command.
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage organizations (instance administration).
    Org {
        /// Organization command.
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Check and maintain the audit log.
    Audit {
        /// Audit command.
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Enqueue and inspect background jobs (operations, drills).
    Job {
        /// Job command.
        #[command(subcommand)]
        command: JobCommand,
    },
    /// Print the OpenAPI document.
    Openapi,
}

/// `verity job …`: against the configured job queue (the database's, or Redis).
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Enqueue a job and print its id (`noop` answers its payload; `sleep` waits `{"ms": N}`).
    Enqueue {
        /// Queue.
        #[arg(long, default_value = "default", value_parser = ["critical", "high", "default", "low"])]
        queue: String,
        /// Handler name.
        #[arg(long)]
        kind: String,
        /// JSON payload.
        #[arg(long, default_value = "{}")]
        payload: String,
        /// Organization id the job belongs to.
        #[arg(long)]
        org: Option<i64>,
        /// Attempts before the failed registry.
        #[arg(long, default_value_t = 3)]
        max_attempts: u32,
    },
    /// Print one job as JSON (exit code 1 if there is none).
    Status {
        /// Job id.
        id: String,
    },
    /// Print the numbers of every queue as JSON.
    Stats,
}

/// `verity org …`.
#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organization with its owner and print the owner's API token.
    Create {
        /// Organization name.
        #[arg(long)]
        name: String,
        /// The owner's email.
        #[arg(long)]
        owner_email: String,
        /// Exact API token for the owner (generated when absent).
        #[arg(long)]
        owner_token: Option<String>,
        /// Slug the admin API addresses it by (derived from the name when absent).
        #[arg(long)]
        slug: Option<String>,
    },
    /// Issue a new SCIM provisioning token for an organization and print it (the previous
    /// token stops working). Configure it in the identity provider with `/scim/v2` as the base.
    ScimToken {
        /// Organization id.
        #[arg(long)]
        org: i64,
    },
    /// Print an organization's access policy (ADR 0053) as JSON; with `--clear`, remove it
    /// (storages and callers unrestricted again): the way back in for an administrator whom the
    /// API networks lock out.
    AccessPolicy {
        /// Organization id.
        #[arg(long)]
        org: i64,
        /// Remove the policy (audited as `access_policy.clear`).
        #[arg(long)]
        clear: bool,
    },
}

/// `verity audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk every organization's hash chain and report the first broken link (exit code 1 if
    /// any chain is broken).
    Verify {
        /// Only this organization (id).
        #[arg(long)]
        org: Option<i64>,
    },
    /// Remove entries older than each organization's audit_retention_days.
    Purge,
}

/// `verity user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user in the default organization and print their API token.
    Create {
        /// Email address.
        #[arg(long)]
        email: String,
        /// Password (optional; API tokens work without one).
        #[arg(long)]
        password: Option<String>,
        /// Organization role.
        #[arg(long, default_value = "annotator", value_parser = ["owner", "admin", "manager", "reviewer", "annotator"])]
        role: String,
        /// Exact legacy API token to use (generated when absent).
        #[arg(long)]
        token: Option<String>,
    },
    /// Set a user's password for browser sign-in: unlocks the account and ends its sessions.
    /// The password is read from standard input (one line) unless --password is given.
    SetPassword {
        /// Email address of the user.
        #[arg(long)]
        email: String,
        /// Organization id (default: the first organization).
        #[arg(long)]
        org: Option<i64>,
        /// The new password (prefer standard input: arguments are visible to other users).
        #[arg(long)]
        password: Option<String>,
    },
}

/// Runs the command and maps failures to an exit code with a message on stderr.
pub fn run(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("verity: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("verity: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(url) = &cli.database_url {
        config.database_url = url.clone();
    }
    if let Some(dir) = &cli.data_dir {
        config.data_dir = dir.clone();
    }
    Ok(config)
}

async fn open_db(config: &Config) -> anyhow::Result<Db> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create data directory {}: {e}",
            config.data_dir.display()
        )
    })?;
    let db = Db::connect(&config.effective_database_url(), &pool_options(config)).await?;
    db.migrate().await?;
    Ok(db)
}

/// Pool settings of every process that opens the database (`database_ca` included).
fn pool_options(config: &Config) -> PoolOptions {
    PoolOptions {
        max_connections: config.db_max_connections,
        ca_file: (!config.database_ca.is_empty()).then(|| config.database_ca.clone().into()),
        ..Default::default()
    }
}

async fn execute(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve { listen } => {
            let mut config = load_config(&cli)?;
            if let Some(listen) = listen {
                config.listen = *listen;
            }
            server::init_tracing(&config.log_format);
            let db = open_db(&config).await?;
            server::bootstrap(&db, &config).await?;
            server::serve(db, config).await
        }
        Command::Work {
            queues,
            listen,
            concurrency,
        } => {
            let mut config = load_config(&cli)?;
            if let Some(listen) = listen {
                config.listen = *listen;
            }
            if let Some(c) = concurrency {
                config.worker_concurrency = *c;
            }
            let mut names = Vec::new();
            for q in queues {
                let q = crate::jobs::queue(q.trim()).ok_or_else(|| {
                    anyhow::anyhow!(
                        "unknown queue {q:?}; the queues are {}",
                        crate::jobs::QUEUES.join(", ")
                    )
                })?;
                if !names.contains(&q) {
                    names.push(q);
                }
            }
            server::init_tracing(&config.log_format);
            let db = open_db(&config).await?;
            server::work(db, config, names).await
        }
        Command::StorageProxy { listen } => {
            let mut config = load_config(&cli)?;
            if let Some(listen) = listen {
                config.listen = *listen;
            }
            server::init_tracing(&config.log_format);
            // No migrations: the proxy only reads.
            let db = Db::connect(&config.effective_database_url(), &pool_options(&config)).await?;
            server::storage_proxy(db, config).await
        }
        Command::Migrate => {
            let config = load_config(&cli)?;
            open_db(&config).await?;
            println!(
                "migrations applied to {}",
                crate::storage::redact(&config.effective_database_url())
            );
            Ok(())
        }
        Command::User {
            command:
                UserCommand::Create {
                    email,
                    password,
                    role,
                    token,
                },
        } => {
            let config = load_config(&cli)?;
            let db = open_db(&config).await?;
            server::bootstrap(&db, &config).await?;
            let org = users::default_organization(&db)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no organization exists"))?;
            let role = Role::parse(role).ok_or_else(|| anyhow::anyhow!("unknown role {role}"))?;
            let new = users::NewUser {
                email: email.clone(),
                password: password.clone(),
                role,
                token: token.clone(),
                first_name: String::new(),
                last_name: String::new(),
                username: None,
            };
            let by = crate::authz::Actor::instance(org, crate::authz::RequestMeta::default());
            let (_, token) = users::create_user_in_org(&db, &by, org, &new)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.detail))?;
            println!("{token}");
            Ok(())
        }
        Command::User {
            command:
                UserCommand::SetPassword {
                    email,
                    org,
                    password,
                },
        } => {
            let config = load_config(&cli)?;
            let db = open_db(&config).await?;
            let org = match org {
                Some(o) => *o,
                None => users::default_organization(&db)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("no organization exists"))?,
            };
            let password = match password {
                Some(p) => p.clone(),
                None => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            let user = crate::storage::sessions::user_by_email(&db, org, email)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.detail))?
                .ok_or_else(|| anyhow::anyhow!("no user {email} in organization {org}"))?;
            let by = crate::authz::Actor::instance(org, crate::authz::RequestMeta::default());
            crate::storage::sessions::set_password(&db, &by, user, &password)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.detail))?;
            println!("password set for {email}; the account is unlocked and its sessions ended");
            Ok(())
        }
        Command::Org {
            command:
                OrgCommand::Create {
                    name,
                    owner_email,
                    owner_token,
                    slug,
                },
        } => {
            let config = load_config(&cli)?;
            let db = open_db(&config).await?;
            let slug = slug.clone().unwrap_or_else(|| slugify(name));
            let meta = crate::authz::RequestMeta {
                user_agent: "verity org create".into(),
                ..Default::default()
            };
            let spec = crate::storage::admin::OrganizationSpec {
                title: name.clone(),
                owner_email: owner_email.clone(),
                owner_token: owner_token.clone(),
                managed_by: None,
            };
            let (org, created) = crate::storage::admin::put_organization(&db, &meta, &slug, &spec)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.detail))?;
            if created != crate::storage::admin::Change::Created {
                anyhow::bail!(
                    "an organization with the slug {slug:?} already exists (id {}); choose another --slug",
                    org.id
                );
            }
            eprintln!(
                "created organization {} (id {}, slug {}) with owner {owner_email}",
                org.title, org.id, org.slug
            );
            println!("{}", org.owner_token.unwrap_or_default());
            Ok(())
        }
        Command::Org {
            command: OrgCommand::ScimToken { org },
        } => {
            let config = load_config(&cli)?;
            let db = open_db(&config).await?;
            let exists: Option<i64> = crate::storage::orgs::exists(&db, *org)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.detail))?;
            if exists.is_none() {
                anyhow::bail!("no organization with id {org}");
            }
            let meta = crate::authz::RequestMeta {
                user_agent: "verity org scim-token".into(),
                ..Default::default()
            };
            let token =
                crate::storage::scim::rotate_token(&db, &crate::authz::Actor::instance(*org, meta))
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", e.detail))?;
            eprintln!(
                "new SCIM provisioning token for organization {org} (the previous one is revoked)"
            );
            println!("{token}");
            Ok(())
        }
        Command::Org {
            command: OrgCommand::AccessPolicy { org, clear },
        } => {
            let config = load_config(&cli)?;
            let db = open_db(&config).await?;
            let exists: Option<i64> = crate::storage::orgs::exists(&db, *org)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.detail))?;
            if exists.is_none() {
                anyhow::bail!("no organization with id {org}");
            }
            let fail = |e: crate::error::ApiError| anyhow::anyhow!("{}", e.detail);
            if *clear {
                let removed = crate::storage::access_policy::clear(&db, *org)
                    .await
                    .map_err(fail)?;
                eprintln!(
                    "{}",
                    if removed {
                        format!("removed the access policy of organization {org}")
                    } else {
                        format!("organization {org} has no access policy")
                    }
                );
            }
            let policy = crate::storage::access_policy::of_org(&db, *org)
                .await
                .map_err(fail)?;
            println!("{}", serde_json::to_string(&policy)?);
            Ok(())
        }
        Command::Audit {
            command: AuditCommand::Verify { org },
        } => {
            let config = load_config(&cli)?;
            let db = open_db(&config).await?;
            let reports = crate::storage::audit::verify(&db, *org)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.detail))?;
            let mut broken = 0;
            for r in &reports {
                let name = if r.chain_id == 0 {
                    "instance events".to_string()
                } else {
                    format!("organization {}", r.chain_id)
                };
                match &r.broken {
                    None => println!("ok      {name}: {} entries verified", r.entries),
                    Some(b) => {
                        broken += 1;
                        println!(
                            "BROKEN  {name}: first broken link at entry {} (row id {}): {}",
                            b.seq, b.id, b.reason
                        );
                    }
                }
            }
            if broken > 0 {
                anyhow::bail!("{broken} audit chain(s) failed verification");
            }
            Ok(())
        }
        Command::Audit {
            command: AuditCommand::Purge,
        } => {
            let config = load_config(&cli)?;
            let db = open_db(&config).await?;
            let removed = crate::storage::audit::purge(&db, crate::storage::now_micros())
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.detail))?;
            println!("removed {removed} audit entries past retention");
            Ok(())
        }
        Command::Job { command } => {
            let config = load_config(&cli)?;
            let db = open_db(&config).await?;
            let jobs = crate::jobs::open(&db, &config).await?;
            match command {
                JobCommand::Enqueue {
                    queue,
                    kind,
                    payload,
                    org,
                    max_attempts,
                } => {
                    let queue = crate::jobs::queue(queue)
                        .ok_or_else(|| anyhow::anyhow!("unknown queue {queue}"))?;
                    let payload: serde_json::Value = serde_json::from_str(payload)
                        .map_err(|e| anyhow::anyhow!("--payload is not JSON: {e}"))?;
                    let job = crate::jobs::NewJob {
                        organization: *org,
                        max_attempts: *max_attempts,
                        ..crate::jobs::NewJob::new(queue, kind.clone(), payload)
                    };
                    println!("{}", jobs.enqueue(&job).await?);
                }
                JobCommand::Status { id } => match jobs.get(id).await? {
                    Some(v) => println!("{}", serde_json::to_string(&v)?),
                    None => anyhow::bail!("there is no job {id}"),
                },
                JobCommand::Stats => {
                    let mut all = Vec::new();
                    for q in crate::jobs::QUEUES {
                        all.push(jobs.stats(q).await?);
                    }
                    println!("{}", serde_json::to_string(&all)?);
                }
            }
            Ok(())
        }
        Command::Openapi => {
            use std::io::Write as _;
            // A closed pipe (`verity openapi | head`) is not an error worth a panic.
            let _ = std::io::stdout().write_all(crate::http::routes::openapi_json().as_bytes());
            Ok(())
        }
    }
}

/// A slug from an organization name: lowercase letters and digits, other runs become `-`.
fn slugify(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let trimmed: String = out.trim_end_matches('-').chars().take(63).collect();
    trimmed.trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::slugify;

    #[test]
    fn slugs_are_dns_labels() {
        assert_eq!(slugify("Acme Labs, Inc."), "acme-labs-inc");
        assert_eq!(slugify("  Ünïcode  Team "), "n-code-team");
        assert_eq!(slugify(&"x".repeat(80)).len(), 63);
    }
}
