//! Crash safety, proven: `verity serve` is killed with SIGKILL while 8 annotators take tasks and
//! submit annotations; after a restart every annotation that was answered 201 is there, the
//! counters match a recount, no reservation outlives its TTL, and labeling goes on. On SQLite
//! and on PostgreSQL; and on PostgreSQL the database server itself is crashed (immediate
//! shutdown, recovery from its write-ahead log on start) under the same load while `verity
//! serve` keeps running, which must ride it out and go on answering.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

struct Server {
    child: std::process::Child,
}

impl Server {
    fn start(env: &[(String, String)]) -> Self {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_verity"))
            .arg("serve")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start verity serve");
        Self { child }
    }

    fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill_9();
    }
}

fn cli(env: &[(String, String)], args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_verity"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("run verity");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

async fn ready(base: &str) {
    for _ in 0..300 {
        if reqwest::get(format!("{base}/readyz"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("verity serve did not become ready");
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> reqwest::Result<(u16, Value)> {
    let mut r = client
        .request(method, url)
        .header("authorization", format!("Token {token}"));
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

/// A private PostgreSQL cluster that the test may crash and restart (the shared test server must
/// stay up for the other tests). Durable commits as in production (`synchronous_commit=on`);
/// `fsync=off` only, as the machine itself does not crash here.
struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl PgCluster {
    fn start() -> Self {
        let bin = std::env::var_os("PG_BIN")
            .map(PathBuf::from)
            .or_else(|| {
                let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                    .ok()?
                    .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                    .filter(|d| d.join("initdb").exists())
                    .collect();
                dirs.sort();
                dirs.pop()
            })
            .expect("PostgreSQL server binaries (apt-get install postgresql; e2e/test-all does)");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let cluster = Self { dir, bin, port };
        if is_root() {
            run(std::process::Command::new("chown")
                .arg("postgres:")
                .arg(cluster.dir.path()));
        }
        let data = cluster.data();
        cluster.pg(&[
            "initdb",
            "-D",
            &data,
            "-U",
            "verity",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        cluster.up();
        cluster
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://verity@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs a PostgreSQL program as the cluster's owner (initdb refuses root).
    fn pg(&self, args: &[&str]) {
        let program = self.bin.join(args[0]);
        let mut command = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            std::process::Command::new(program)
        };
        run(command.args(&args[1..]));
    }

    fn up(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=100",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        let data = self.data();
        self.pg(&[
            "pg_ctl", "-D", &data, "-l", &log, "-w", "-t", "60", "-o", &options, "start",
        ]);
    }

    /// Crashes the server: immediate shutdown, no checkpoint; the next start recovers from WAL.
    fn crash(&self) {
        let data = self.data();
        self.pg(&["pg_ctl", "-D", &data, "-m", "immediate", "stop"]);
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = std::process::Command::new(if is_root() { "runuser" } else { "true" })
            .args(if is_root() {
                vec!["-u", "postgres", "--"]
            } else {
                vec![]
            })
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &data, "-m", "immediate", "stop"])
            .output();
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run(command: &mut std::process::Command) {
    let out = command.output().expect("run");
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// What goes wrong under the load.
enum Fault<'a> {
    /// `verity serve` is killed with SIGKILL and started again.
    KillServe,
    /// The database server crashes and comes back; `verity serve` keeps running.
    CrashDatabase(&'a PgCluster),
}

async fn drill(
    env: Vec<(String, String)>,
    fault: Fault<'_>,
    recount: impl AsyncFn(i64) -> (i64, i64, i64, i64),
) {
    let port = free_port();
    let mut env = env;
    env.push(("VERITY_LISTEN".into(), format!("127.0.0.1:{port}")));
    env.push(("VERITY_RATE_LIMIT_PER_TOKEN_PER_MINUTE".into(), "0".into()));
    let owner = env
        .iter()
        .find(|(k, _)| k == "VERITY_ADMIN_TOKEN")
        .map(|(_, v)| v.clone())
        .expect("owner token");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut server = Server::start(&env);
    ready(&base).await;
    let config = r#"<View><Text name="text" value="$text"/><Choices name="c" toName="text"><Choice value="a"/><Choice value="b"/></Choices></View>"#;
    let (_, project) = call(
        &client,
        reqwest::Method::POST,
        format!("{base}/api/projects"),
        &owner,
        Some(json!({"title": "Crash", "label_config": config})),
    )
    .await
    .expect("project");
    let p = project["id"].as_i64().expect("project id");
    let tasks: Vec<Value> = (0..2000)
        .map(|i| json!({"text": format!("t{i}")}))
        .collect();
    let (s, _) = call(
        &client,
        reqwest::Method::POST,
        format!("{base}/api/projects/{p}/import"),
        &owner,
        Some(Value::Array(tasks)),
    )
    .await
    .expect("import");
    assert_eq!(s, 201);
    let mut tokens = Vec::new();
    for i in 0..8 {
        let token = cli(
            &env,
            &[
                "user",
                "create",
                "--email",
                &format!("crash{i}@example.com"),
                "--role",
                "annotator",
            ],
        );
        let (_, me) = call(
            &client,
            reqwest::Method::GET,
            format!("{base}/api/current-user/whoami"),
            &token,
            None,
        )
        .await
        .expect("whoami");
        let (s, _) = call(
            &client,
            reqwest::Method::POST,
            format!("{base}/api/projects/{p}/members"),
            &owner,
            Some(json!({"user": me["id"]})),
        )
        .await
        .expect("member");
        assert_eq!(s, 201);
        tokens.push(token);
    }
    // Eight annotators label as fast as they can; the fault strikes under them. While the server
    // is dead they stop; while only the database is, they retry until told to stop.
    let persist = matches!(fault, Fault::CrashDatabase(_));
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged: Arc<Mutex<BTreeSet<i64>>> = Arc::default();
    let mut load = tokio::task::JoinSet::new();
    for token in tokens.clone() {
        let (client, base, acknowledged, stop) = (
            client.clone(),
            base.clone(),
            acknowledged.clone(),
            stop.clone(),
        );
        load.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let annotated = async {
                    let Ok((200, task)) = call(&client, reqwest::Method::GET, format!("{base}/api/projects/{p}/next"), &token, None).await else { return false };
                    let id = task["id"].as_i64().unwrap_or_default();
                    let result = json!([{"from_name": "c", "to_name": "text", "type": "choices", "value": {"choices": ["a"]}}]);
                    match call(&client, reqwest::Method::POST, format!("{base}/api/tasks/{id}/annotations"), &token, Some(json!({"result": result}))).await {
                        Ok((201, a)) => {
                            acknowledged.lock().expect("lock").insert(a["id"].as_i64().unwrap_or_default());
                            true
                        }
                        _ => false,
                    }
                }
                .await;
                if !annotated {
                    if !persist {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
    }
    let acked = || acknowledged.lock().expect("lock").len();
    let wait_for = async |n: usize| {
        for _ in 0..600 {
            if acked() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    wait_for(150).await;
    let server = match fault {
        Fault::KillServe => {
            server.kill_9();
            while load.join_next().await.is_some() {}
            assert!(acked() >= 50, "the load ran: {}", acked());
            // Restart the server.
            let server = Server::start(&env);
            ready(&base).await;
            server
        }
        Fault::CrashDatabase(cluster) => {
            let before = acked();
            assert!(before >= 50, "the load ran: {before}");
            cluster.crash();
            tokio::time::sleep(Duration::from_secs(2)).await;
            cluster.up();
            // The running server comes back by itself and the annotators go on.
            wait_for(acked() + 100).await;
            stop.store(true, Ordering::Relaxed);
            while load.join_next().await.is_some() {}
            assert!(
                acked() >= before + 100,
                "labeling did not resume after the database restarted: {before} before, {} after",
                acked()
            );
            ready(&base).await;
            server
        }
    };
    let acknowledged = acknowledged.lock().expect("lock").clone();
    // Everything that was acknowledged is there, and the counters add up.
    for id in &acknowledged {
        let (s, _) = call(
            &client,
            reqwest::Method::GET,
            format!("{base}/api/annotations/{id}"),
            &owner,
            None,
        )
        .await
        .expect("get");
        assert_eq!(
            s, 200,
            "annotation {id} was answered 201 before the crash and is gone"
        );
    }
    let (stored, counted, task_sum, stuck_locks) = recount(p).await;
    assert!(stored >= acknowledged.len() as i64);
    assert_eq!(counted, stored, "project counter vs annotations stored");
    assert_eq!(task_sum, stored, "task counters vs annotations stored");
    assert_eq!(stuck_locks, 0, "reservations past their TTL");
    let (_, project) = call(
        &client,
        reqwest::Method::GET,
        format!("{base}/api/projects/{p}"),
        &owner,
        None,
    )
    .await
    .expect("project");
    assert_eq!(project["total_annotations_number"], json!(stored));
    // Labeling goes on.
    let (s, task) = call(
        &client,
        reqwest::Method::GET,
        format!("{base}/api/projects/{p}/next"),
        &tokens[0],
        None,
    )
    .await
    .expect("next");
    assert_eq!(s, 200, "{task}");
    drop(server);
}

/// The recount, straight from the database: annotations stored, the project's counter, the sum
/// of the tasks' counters, and reservations that expire later than a TTL from now.
macro_rules! recount_sql {
    ($pool:expr, $p:expr) => {{
        let stored: i64 = sqlx::query_scalar("select count(*) from annotation where project_id = $1").bind($p).fetch_one($pool).await.expect("count");
        let counted: i64 = sqlx::query_scalar("select total_annotations_number from project where id = $1").bind($p).fetch_one($pool).await.expect("counter");
        let task_sum: i64 = sqlx::query_scalar("select cast(coalesce(sum(total_annotations), 0) as bigint) from task where project_id = $1").bind($p).fetch_one($pool).await.expect("sum");
        let horizon = verity_controlplane::storage::now_micros() + 86_400 * 1_000_000 + 60_000_000;
        let stuck: i64 = sqlx::query_scalar("select count(*) from task_lock where project_id = $1 and expire_at > $2").bind($p).bind(horizon).fetch_one($pool).await.expect("locks");
        (stored, counted, task_sum, stuck)
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn annotations_survive_kill_9_of_serve_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = vec![
        (
            "VERITY_DATA_DIR".to_string(),
            dir.path().display().to_string(),
        ),
        (
            "VERITY_ADMIN_TOKEN".to_string(),
            "crash-owner-token-0123456789abcdef".to_string(),
        ),
    ];
    let path = dir.path().join("verity.db");
    drill(env, Fault::KillServe, async |p| {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("open");
        recount_sql!(&pool, p)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn annotations_survive_kill_9_of_serve_on_postgres() {
    let base = std::env::var("VERITY_TEST_DATABASE_URL")
        .expect("VERITY_TEST_DATABASE_URL (e2e/test-all starts PostgreSQL)");
    let name = format!("verity_crash_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&base).await.expect("connect");
    sqlx::query(&format!("create database {name}"))
        .execute(&admin)
        .await
        .expect("create database");
    admin.close().await;
    let url = format!("{}/{name}", base.rsplit_once('/').expect("path").0);
    let dir = tempfile::tempdir().expect("tempdir");
    let env = vec![
        (
            "VERITY_DATA_DIR".to_string(),
            dir.path().display().to_string(),
        ),
        ("VERITY_DATABASE_URL".to_string(), url.clone()),
        (
            "VERITY_SESSION_KEY".to_string(),
            "crash-session-key-0123456789abcdefghij".to_string(),
        ),
        (
            "VERITY_ADMIN_TOKEN".to_string(),
            "crash-owner-token-0123456789abcdef".to_string(),
        ),
    ];
    drill(env, Fault::KillServe, async |p| {
        let pool = sqlx::PgPool::connect(&url).await.expect("open");
        recount_sql!(&pool, p)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn annotations_survive_a_crash_of_the_postgres_server() {
    let cluster = PgCluster::start();
    let url = cluster.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let env = vec![
        (
            "VERITY_DATA_DIR".to_string(),
            dir.path().display().to_string(),
        ),
        ("VERITY_DATABASE_URL".to_string(), url.clone()),
        (
            "VERITY_SESSION_KEY".to_string(),
            "crash-session-key-0123456789abcdefghij".to_string(),
        ),
        (
            "VERITY_ADMIN_TOKEN".to_string(),
            "crash-owner-token-0123456789abcdef".to_string(),
        ),
    ];
    drill(env, Fault::CrashDatabase(&cluster), async |p| {
        let pool = sqlx::PgPool::connect(&url).await.expect("open");
        recount_sql!(&pool, p)
    })
    .await;
}

/// A replica being replaced stops without failing a request: after SIGTERM `verity serve` goes
/// on accepting connections for `VERITY_SHUTDOWN_DELAY_SECS` (while its Service drops it), says
/// so on `/readyz` (503) and closes each connection after its response; then it exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_drains_on_sigterm_before_it_stops_accepting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let env = vec![
        (
            "VERITY_DATA_DIR".to_string(),
            dir.path().display().to_string(),
        ),
        ("VERITY_LISTEN".to_string(), format!("127.0.0.1:{port}")),
        ("VERITY_SHUTDOWN_DELAY_SECS".to_string(), "6".to_string()),
    ];
    let mut server = Server::start(&env);
    ready(&base).await;
    // A kept-alive connection, as a load balancer or SDK client holds one.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let before = client
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("health");
    assert!(before.headers().get("connection").is_none());
    run(std::process::Command::new("kill").args(["-TERM", &server.child.id().to_string()]));
    let mut not_ready = false;
    for _ in 0..40 {
        let r = reqwest::get(format!("{base}/readyz"))
            .await
            .expect("readyz while draining");
        if r.status() == 503 {
            not_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(not_ready, "/readyz did not turn 503 after SIGTERM");
    // Still serving, on old and new connections, each told to close after its response.
    let kept = client
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("on the kept connection");
    assert_eq!(kept.status(), 200);
    assert_eq!(
        kept.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    let fresh = reqwest::Client::new()
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("a new connection is still accepted while draining");
    assert_eq!(fresh.status(), 200);
    assert!(
        server.child.try_wait().expect("status").is_none(),
        "stopped before the delay"
    );
    let mut status = None;
    for _ in 0..300 {
        status = server.child.try_wait().expect("status");
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = status.expect("verity serve did not stop after the shutdown delay");
    assert!(status.success(), "verity serve exited with {status}");
    assert!(
        reqwest::get(format!("{base}/health")).await.is_err(),
        "still accepting after it stopped"
    );
}
