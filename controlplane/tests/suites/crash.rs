//! Crash safety, proven: `verity serve` is killed with SIGKILL while 8 annotators take tasks and
//! submit annotations; after a restart every annotation that was answered 201 is there, the
//! counters match a recount, no reservation outlives its TTL, and labeling goes on. On SQLite
//! and on PostgreSQL.

use std::collections::BTreeSet;
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

async fn drill(env: Vec<(String, String)>, recount: impl AsyncFn(i64) -> (i64, i64, i64, i64)) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
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
    // Eight annotators label as fast as they can; the server dies under them.
    let acknowledged: Arc<Mutex<BTreeSet<i64>>> = Arc::default();
    let mut load = tokio::task::JoinSet::new();
    for token in tokens.clone() {
        let (client, base, acknowledged) = (client.clone(), base.clone(), acknowledged.clone());
        load.spawn(async move {
            loop {
                let Ok((200, task)) = call(&client, reqwest::Method::GET, format!("{base}/api/projects/{p}/next"), &token, None).await else { return };
                let id = task["id"].as_i64().unwrap_or_default();
                let result = json!([{"from_name": "c", "to_name": "text", "type": "choices", "value": {"choices": ["a"]}}]);
                match call(&client, reqwest::Method::POST, format!("{base}/api/tasks/{id}/annotations"), &token, Some(json!({"result": result}))).await {
                    Ok((201, a)) => {
                        acknowledged.lock().expect("lock").insert(a["id"].as_i64().unwrap_or_default());
                    }
                    _ => return,
                }
            }
        });
    }
    for _ in 0..100 {
        if acknowledged.lock().expect("lock").len() >= 150 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill_9();
    while load.join_next().await.is_some() {}
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(
        acknowledged.len() >= 50,
        "the load ran: {}",
        acknowledged.len()
    );
    // Restart: everything that was acknowledged is there, and the counters add up.
    let _server = Server::start(&env);
    ready(&base).await;
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
    drill(env, async |p| {
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
    drill(env, async |p| {
        let pool = sqlx::PgPool::connect(&url).await.expect("open");
        recount_sql!(&pool, p)
    })
    .await;
}
