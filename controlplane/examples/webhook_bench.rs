//! Webhook end-to-end latency on loopback: a control plane (API, in-process workers, the
//! configured database and queue) and a receiver in one process; N tasks are created one after
//! another through the HTTP API, and for each the time from sending the request to the receiver
//! getting its `TASKS_CREATED` is measured. Also the API latency of those requests with the
//! webhook subscribed and without any webhook. Run by `bench/webhooks/run`; numbers go to
//! docs/benchmarks.md.
//!
//!   cargo run --release -p verity-controlplane --example webhook_bench -- N
//!   (VERITY_DATABASE_URL / VERITY_REDIS_URL… choose the database and queue, as for `verity`)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use verity_controlplane::authz::{Actor, Role};
use verity_controlplane::config::Config;
use verity_controlplane::http::{AppState, app, metrics::Metrics};
use verity_controlplane::jobs::{self, worker};
use verity_controlplane::storage::{Db, PoolOptions, users};

type Arrivals = Arc<Mutex<HashMap<i64, Instant>>>;

fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let at = |p: f64| {
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i].as_secs_f64() * 1000.0
    };
    format!(
        "p50={:.2}ms p95={:.2}ms p99={:.2}ms max={:.2}ms",
        at(0.50),
        at(0.95),
        at(0.99),
        at(1.0)
    )
}

async fn create_tasks(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    project: i64,
    n: usize,
) -> anyhow::Result<Vec<(i64, Instant, Duration)>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let sent = Instant::now();
        let r: Value = client
            .post(format!("{base}/api/tasks"))
            .header("authorization", format!("Token {token}"))
            .json(&json!({"project": project, "data": {"text": format!("task {i}")}}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = r["id"]
            .as_i64()
            .ok_or_else(|| anyhow::anyhow!("no id: {r}"))?;
        out.push((id, sent, sent.elapsed()));
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "1000".into())
        .parse()?;
    let mut config = Config::load(None)?;
    config.allow_private_targets = "127.0.0.1".into();
    let db = Db::connect(
        &config.effective_database_url(),
        &PoolOptions {
            max_connections: 16,
            ..Default::default()
        },
    )
    .await?;
    db.migrate().await?;
    let org = users::create_organization(&db, "Bench", None, None, &Default::default())
        .await
        .map_err(|e| anyhow::anyhow!(e.detail))?;
    let (_, token) = users::create_user_in_org(
        &db,
        &Actor::instance(org, Default::default()),
        org,
        &users::NewUser {
            email: format!("bench-{}@example.com", jobs::new_id()),
            password: None,
            role: Role::Owner,
            token: None,
            first_name: String::new(),
            last_name: String::new(),
            username: None,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!(e.detail))?;
    let queue = jobs::open(&db, &config).await?;
    let handlers = verity_controlplane::server::handlers(&db, &queue, &config)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(worker::run(
        queue.clone(),
        handlers,
        worker::WorkerConfig {
            concurrency: 2,
            ..Default::default()
        },
        None,
        stop_rx,
    ));
    let sealer = Arc::new(verity_controlplane::secrets::Sealer::for_config(&config)?);
    let key = users::signing_key(&db, &sealer)
        .await
        .map_err(|e| anyhow::anyhow!(e.detail))?;
    let links = verity_controlplane::links::LinkSigner::for_config(&config)?;
    let state = AppState::new(
        db.clone(),
        Arc::new(config),
        sealer,
        links,
        key,
        Metrics::new()?,
    )
    .with_jobs(queue.clone());
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", api.local_addr()?);
    let service = app(state);
    tokio::spawn(async move {
        let _ = axum::serve(
            api,
            axum::ServiceExt::<axum::extract::Request>::into_make_service(service),
        )
        .await;
    });
    // The receiver notes when each task's event arrived.
    let arrivals: Arrivals = Arc::default();
    let rx = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_url = format!("http://{}/hook", rx.local_addr()?);
    let seen = arrivals.clone();
    let receiver = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let seen = seen.clone();
        async move {
            let now = Instant::now();
            if let Ok(v) = serde_json::from_slice::<Value>(&body)
                && let Some(id) = v["tasks"][0]["id"].as_i64()
            {
                seen.lock().expect("lock").insert(id, now);
            }
            "ok"
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(rx, receiver).await;
    });
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        client
            .post(format!("{base}{path}"))
            .header("authorization", format!("Token {token}"))
            .json(&body)
            .send()
    };
    let project = |title: &str| {
        post(
            "/api/projects",
            json!({"title": title, "label_config": "<View><Text name=\"text\" value=\"$text\"/><Choices name=\"c\" toName=\"text\"><Choice value=\"a\"/></Choices></View>"}),
        )
    };
    let plain: Value = project("no webhook")
        .await?
        .error_for_status()?
        .json()
        .await?;
    let hooked: Value = project("webhook").await?.error_for_status()?.json().await?;
    let plain = plain["id"].as_i64().unwrap_or_default();
    let hooked = hooked["id"].as_i64().unwrap_or_default();
    post("/api/webhooks", json!({"project": hooked, "url": hook_url}))
        .await?
        .error_for_status()?;

    let without = create_tasks(&client, &base, &token, plain, n).await?;
    let with = create_tasks(&client, &base, &token, hooked, n).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while arrivals.lock().expect("lock").len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = arrivals.lock().expect("lock").clone();
    let e2e: Vec<Duration> = with
        .iter()
        .filter_map(|(id, sent, _)| got.get(id).map(|at| at.duration_since(*sent)))
        .collect();
    anyhow::ensure!(
        e2e.len() == n,
        "only {} of {n} webhooks arrived within a minute",
        e2e.len()
    );
    println!(
        "backend={} queue={} tasks={n}",
        format!("{:?}", db.dialect()).to_lowercase(),
        queue.backend()
    );
    println!(
        "  POST /api/tasks without webhooks:  {}",
        percentiles(without.iter().map(|t| t.2).collect())
    );
    println!(
        "  POST /api/tasks with a webhook:    {}",
        percentiles(with.iter().map(|t| t.2).collect())
    );
    println!("  request sent -> webhook received:  {}", percentiles(e2e));
    let _ = stop_tx.send(true);
    let _ = worker.await;
    Ok(())
}
