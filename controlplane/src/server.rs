//! Process lifecycle of `verity serve` and `verity work`: tracing, first-start bootstrap, the
//! listener and graceful shutdown (SIGINT/SIGTERM stop accepting, in-flight requests and jobs
//! drain, pools close).

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::{
    auth,
    authz::Role,
    config::Config,
    error::ErrorCode,
    http::{self, AppState, metrics::Metrics},
    storage::{Db, users},
};

/// Installs the tracing subscriber (`RUST_LOG` filters; default `info`).
pub fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    // Logs go to stderr (stdout carries the first-start credentials and command output), with
    // colours only when a person is watching.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// On first start (no users), creates the organization and its owner and prints the login and
/// API token once. Safe when several processes start at once: the loser sees the email taken.
pub async fn bootstrap(db: &Db, config: &Config) -> anyhow::Result<()> {
    if users::count_users(db)
        .await
        .map_err(|e| anyhow::anyhow!(e.detail))?
        > 0
    {
        return Ok(());
    }
    let org = match users::default_organization(db)
        .await
        .map_err(|e| anyhow::anyhow!(e.detail))?
    {
        Some(id) => id,
        None => users::create_organization(db, "Verity", None, None, &Default::default())
            .await
            .map_err(|e| anyhow::anyhow!(e.detail))?,
    };
    let generated_password = config.admin_password.is_empty();
    let password = if generated_password {
        auth::random_secret(20)
    } else {
        config.admin_password.clone()
    };
    let new = users::NewUser {
        email: config.admin_email.clone(),
        password: Some(password.clone()),
        role: Role::Owner,
        token: (!config.admin_token.is_empty()).then(|| config.admin_token.clone()),
        first_name: String::new(),
        last_name: String::new(),
        username: None,
    };
    let by = crate::authz::Actor::instance(org, Default::default());
    match users::create_user_in_org(db, &by, org, &new).await {
        Ok((user, token)) => announce_owner(
            config,
            org,
            &user.email,
            &password,
            generated_password,
            &token,
        ),
        Err(e) if e.code == ErrorCode::Conflict => Ok(()),
        Err(e) => Err(anyhow::anyhow!("creating the owner failed: {}", e.detail)),
    }
}

/// Tells the operator of a first start how to sign in. Secrets that came from the configuration
/// are never repeated; generated ones go to the terminal when there is one, else to a file only
/// the service user can read (a log stream, such as a pod's, never carries them).
fn announce_owner(
    config: &Config,
    org: i64,
    login: &str,
    password: &str,
    generated_password: bool,
    token: &str,
) -> anyhow::Result<()> {
    println!("Verity: created the owner account of organization {org}");
    println!("  login:     {login}");
    let token_given = !config.admin_token.is_empty();
    if !generated_password && token_given {
        println!(
            "  password and API token: the ones configured (VERITY_ADMIN_PASSWORD, VERITY_ADMIN_TOKEN)"
        );
        return Ok(());
    }
    let mut lines = Vec::new();
    if generated_password {
        lines.push(format!(
            "password:  {password}   (generated; set VERITY_ADMIN_PASSWORD to choose one)"
        ));
    }
    if !token_given {
        lines.push(format!(
            "API token: {token}   (generated; use `Authorization: Token <token>`)"
        ));
    }
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        for line in &lines {
            println!("  {line}");
        }
        println!("  (shown once)");
        return Ok(());
    }
    let _ = std::fs::create_dir_all(&config.data_dir);
    let path = config.data_dir.join("initial-credentials");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("writing the generated credentials to {}", path.display()))?;
    std::io::Write::write_all(
        &mut file,
        format!("login:     {login}\n{}\n", lines.join("\n")).as_bytes(),
    )?;
    println!(
        "  generated credentials: in {} (readable by this user only; not printed because the output is not a terminal)",
        path.display()
    );
    Ok(())
}

/// Serves the API until SIGINT or SIGTERM.
pub async fn serve(db: Db, config: Config) -> anyhow::Result<()> {
    config.check_admin_token().map_err(|e| anyhow::anyhow!(e))?;
    config
        .trusted_proxy_networks()
        .map_err(|e| anyhow::anyhow!(e))?;
    let sealer = sealer(&db, &config)?;
    let jwt_key = users::signing_key(&db, &sealer)
        .await
        .map_err(|e| anyhow::anyhow!(e.detail))?;
    let sealed = crate::storage::projects::seal_legacy_secrets(&db, &sealer)
        .await
        .map_err(|e| anyhow::anyhow!(e.detail))?;
    if sealed > 0 {
        tracing::info!(
            projects = sealed,
            "sealed ML-backend passwords stored in plain text"
        );
    }
    let metrics = Metrics::new().context("registering metrics")?;
    let listen = config.listen;
    let purge = (config.audit_purge_interval_secs > 0).then(|| {
        tokio::spawn(purge_audit_log(
            db.clone(),
            std::time::Duration::from_secs(config.audit_purge_interval_secs),
        ))
    });
    let jobs = crate::jobs::open_patiently(&db, &config, crate::jobs::STARTUP_PATIENCE)
        .await
        .context("opening the job queue")?;
    let workers = config.serve_workers;
    let drain = std::time::Duration::from_secs(config.worker_drain_secs);
    let lease = std::time::Duration::from_secs(config.worker_lease_secs.max(1));
    let handlers = handlers(&db, &jobs, &config)?;
    let sweeps = spawn_sweeps(&db, &jobs, &config);
    let shutdown_delay = std::time::Duration::from_secs(config.shutdown_delay_secs);
    let links = crate::links::LinkSigner::for_config(&config)?;
    let state = AppState::new(
        db.clone(),
        Arc::new(config),
        sealer,
        links,
        jwt_key,
        metrics,
    )
    .with_jobs(jobs.clone());
    // The embedded default runs its jobs in-process; a deployment with Redis runs them in
    // `verity work` pools and sets serve_workers = 0.
    let (stop_workers, stop_rx) = tokio::sync::watch::channel(false);
    let worker = (workers > 0).then(|| {
        tokio::spawn(crate::jobs::worker::run(
            jobs.clone(),
            handlers,
            crate::jobs::worker::WorkerConfig {
                concurrency: workers,
                drain,
                lease,
                ..Default::default()
            },
            None,
            stop_rx,
        ))
    });
    let draining = state.draining.clone();
    let service = http::app(state);
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(address = %listen, backend = ?db.dialect(), jobs = jobs.backend(), in_process_workers = workers, "serving the Verity API");
    println!("Verity API listening on http://{listen}");
    axum::serve(
        listener,
        axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
            std::net::SocketAddr,
        >(service),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        // Serve on, not ready, while the Service takes this replica out of its endpoints; only
        // then stop accepting (a connection refused now would be a failed request).
        draining.store(true, std::sync::atomic::Ordering::Relaxed);
        if !shutdown_delay.is_zero() {
            tracing::info!(
                seconds = shutdown_delay.as_secs(),
                "not ready any more; serving on before closing the listener"
            );
            tokio::time::sleep(shutdown_delay).await;
        }
    })
    .await
    .context("server error")?;
    if let Some(task) = purge {
        task.abort();
    }
    for sweep in sweeps {
        sweep.abort();
    }
    let _ = stop_workers.send(true);
    if let Some(w) = worker {
        let _ = w.await;
    }
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Runs jobs of `queues` until SIGINT or SIGTERM, then drains; serves `/livez`, `/readyz` and
/// `/metrics` on the configured listen address meanwhile.
pub async fn work(db: Db, config: Config, queues: Vec<&'static str>) -> anyhow::Result<()> {
    let jobs = crate::jobs::open_patiently(&db, &config, crate::jobs::STARTUP_PATIENCE)
        .await
        .context("opening the job queue")?;
    let metrics = Metrics::new().context("registering metrics")?;
    let job_metrics = metrics.jobs.clone();
    let listen = config.listen;
    let worker_config = crate::jobs::worker::WorkerConfig {
        queues: queues.clone(),
        concurrency: config.worker_concurrency.max(1),
        drain: std::time::Duration::from_secs(config.worker_drain_secs),
        lease: std::time::Duration::from_secs(config.worker_lease_secs.max(1)),
        ..Default::default()
    };
    let sealer = sealer(&db, &config)?;
    let jwt_key = users::signing_key(&db, &sealer)
        .await
        .map_err(|e| anyhow::anyhow!(e.detail))?;
    let handlers = handlers(&db, &jobs, &config)?;
    let links = crate::links::LinkSigner::for_config(&config)?;
    let state = AppState::new(
        db.clone(),
        Arc::new(config),
        sealer,
        links,
        jwt_key,
        metrics,
    )
    .with_jobs(jobs.clone());
    let probes = axum::Router::new()
        .route("/livez", axum::routing::get(|| async { "ok" }))
        .route(
            "/readyz",
            axum::routing::get(
                |axum::extract::State(s): axum::extract::State<AppState>| async move {
                    match s.db.ping().await {
                        Ok(()) => (axum::http::StatusCode::OK, "ok"),
                        Err(_) => (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "database unreachable",
                        ),
                    }
                },
            ),
        )
        .route("/metrics", axum::routing::get(http::routes::meta::metrics))
        .with_state(state);
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(crate::jobs::worker::run(
        jobs.clone(),
        handlers,
        worker_config,
        Some(job_metrics),
        stop_rx,
    ));
    tracing::info!(address = %listen, queues = ?queues, jobs = jobs.backend(), "worker probes listening");
    let mut stop_http = stop_tx.subscribe();
    let http = tokio::spawn(async move {
        axum::serve(listener, probes)
            .with_graceful_shutdown(async move {
                let _ = stop_http.wait_for(|s| *s).await;
            })
            .await
    });
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    let given_back = worker.await.unwrap_or(0);
    let _ = http.await;
    db.close().await;
    tracing::info!(given_back, "stopped");
    Ok(())
}

/// Runs the storage proxy (ADR 0021) until SIGINT or SIGTERM: signed links under
/// `/storage-proxy/`, `/livez`, `/readyz` (the database answers) and `/metrics`. It applies no
/// migrations and writes nothing: the app owns the schema.
pub async fn storage_proxy(db: Db, config: Config) -> anyhow::Result<()> {
    if config.session_key.is_empty() && db.dialect() == crate::storage::Dialect::Postgres {
        anyhow::bail!(
            "set session_key (VERITY_SESSION_KEY, the same as the app's) to run the storage proxy on PostgreSQL: links are signed with a key derived from it"
        );
    }
    config
        .trusted_proxy_networks()
        .map_err(|e| anyhow::anyhow!(e))?;
    let links = crate::links::LinkSigner::for_config(&config)?;
    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    let listen = config.listen;
    let proxy = crate::proxy::Proxy {
        db: db.clone(),
        links,
        config: Arc::new(config),
        metrics: metrics.proxy.clone(),
    };
    let render = {
        let (metrics, db) = (metrics.clone(), db.clone());
        Arc::new(move || metrics.render(db.pool_stats()))
    };
    let app = crate::proxy::router(proxy, render);
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(address = %listen, backend = ?db.dialect(), "storage proxy listening");
    println!("Verity storage proxy listening on http://{listen}");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .context("server error")?;
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The sealer of stored secrets. PostgreSQL serves several replicas, which must share the key:
/// there it has to come from `session_key`.
pub fn sealer(db: &Db, config: &Config) -> anyhow::Result<Arc<crate::secrets::Sealer>> {
    if config.session_key.is_empty() && db.dialect() == crate::storage::Dialect::Postgres {
        anyhow::bail!(
            "set session_key (VERITY_SESSION_KEY, at least 32 characters) to run on PostgreSQL: it seals stored secrets and every replica needs the same one"
        );
    }
    Ok(Arc::new(crate::secrets::Sealer::for_config(config)?))
}

/// Every job handler a process registers: the built-in ones, webhook delivery, the ML
/// backends' predictions and trainings, imports, export snapshots and storage syncs run as jobs.
pub fn handlers(
    db: &Db,
    jobs: &crate::jobs::Jobs,
    config: &Config,
) -> anyhow::Result<crate::jobs::worker::Handlers> {
    let sealer = Arc::new(crate::secrets::Sealer::for_config(config)?);
    let delivery = crate::webhooks::Delivery::new(db.clone(), jobs.clone(), sealer.clone(), config)
        .map_err(|e| anyhow::anyhow!(e))?;
    let ml = crate::ml::Runner::new(db.clone(), jobs.clone(), sealer.clone(), config)
        .map_err(|e| anyhow::anyhow!(e))?;
    let handlers = ml.register(delivery.register(crate::jobs::builtin_handlers()));
    let handlers = crate::localfiles::register(db.clone(), jobs.clone(), config.clone(), handlers);
    let handlers = crate::cloud::register(
        db.clone(),
        jobs.clone(),
        config.clone(),
        sealer.clone(),
        handlers,
    );
    let handlers = crate::exportchanges::register(db.clone(), config.clone(), sealer, handlers);
    let handlers = crate::exports::register(
        db.clone(),
        crate::storage::export::MediaFiles::from_config(config),
        handlers,
    );
    let handlers = crate::agreement::register(db.clone(), handlers);
    Ok(crate::imports::register(
        db.clone(),
        jobs.clone(),
        config.clone(),
        handlers,
    ))
}

/// Runs one pass of a sweep every minute until aborted: the sweeps find work stranded between
/// a database write and the queue (or whose job ended without finishing it) and put it right.
/// Several replicas may sweep at once; each sweep is idempotent.
async fn every_minute<F, Fut>(what: &'static str, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, String>>,
{
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(60));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match pass().await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(count = n, "{what}"),
            Err(e) => tracing::warn!(error = %e, "{what}: the sweep failed; retrying later"),
        }
    }
}

/// The sweeps of a process that serves the API: export snapshots and conversions whose job
/// ended without writing them are failed (only work whose job is over: never what another
/// replica's worker is writing); webhook events that no delivery pass holds are delivered;
/// stale project agreements whose refresh job is missing are enqueued again; export snapshots
/// past `export_retention_days` are removed.
fn spawn_sweeps(
    db: &Db,
    jobs: &crate::jobs::Jobs,
    config: &Config,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (d1, j1) = (db.clone(), jobs.clone());
    let (d2, j2) = (db.clone(), jobs.clone());
    let (d3, j3) = (db.clone(), jobs.clone());
    let d4 = db.clone();
    let retention_days = config.export_retention_days;
    let mut sweeps = vec![
        tokio::spawn(every_minute(
            "failed export snapshots whose job ended",
            move || {
                let (db, jobs) = (d1.clone(), j1.clone());
                async move { crate::exports::sweep(&db, &jobs, crate::exports::SWEEP_GRACE).await }
            },
        )),
        tokio::spawn(every_minute(
            "restarted delivery of stranded webhook events",
            move || {
                let (db, jobs) = (d2.clone(), j2.clone());
                async move { crate::webhooks::sweep(&db, &jobs).await.map(|n| n as u64) }
            },
        )),
        tokio::spawn(every_minute(
            "enqueued missing agreement refreshes",
            move || {
                let (db, jobs) = (d3.clone(), j3.clone());
                async move { crate::agreement::sweep(&db, &jobs).await.map(|n| n as u64) }
            },
        )),
    ];
    if retention_days > 0 {
        let retention = retention_days.saturating_mul(86_400_000_000);
        sweeps.push(tokio::spawn(every_minute(
            "removed export snapshots past their retention",
            move || {
                let db = d4.clone();
                async move {
                    let before = crate::storage::now_micros()
                        .saturating_sub(i64::try_from(retention).unwrap_or(i64::MAX));
                    crate::storage::snapshots::expire(&db, before, retention_days)
                        .await
                        .map_err(|e| e.detail)
                }
            },
        )));
    }
    sweeps
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: draining in-flight requests");
}

/// Removes audit entries past each organization's retention, every `every`. Several replicas
/// may run it at once: the purge deletes in short transactions and anchors each chain, so a
/// second purger finds nothing left to do.
async fn purge_audit_log(db: Db, every: std::time::Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match crate::storage::audit::purge(&db, crate::storage::now_micros()).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "purged audit entries past retention"),
            Err(e) => {
                tracing::warn!(error = %e.detail, "purging the audit log failed; retrying later")
            }
        }
        let cutoff = crate::storage::now_micros()
            - crate::storage::users::TOKEN_SOURCE_DAYS * 86_400_000_000;
        if let Err(e) = crate::storage::users::forget_token_sources(&db, cutoff).await {
            tracing::warn!(error = %e.detail, "forgetting old token sources failed; retrying later");
        }
    }
}
