//! Test fixtures: an in-process app on a fresh SQLite file or a fresh PostgreSQL database,
//! request helpers and `mk_*` builders.
#![allow(dead_code, unreachable_pub)]

pub mod redis;

use std::sync::Arc;

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use verity_controlplane::{
    authz::{Actor, Role},
    config::Config,
    http::{AppState, Service, app, metrics::Metrics},
    storage::{Db, PoolOptions, audit, users},
};

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// An app on its own database, with an owner.
pub struct TestApp {
    pub service: Service,
    pub db: Db,
    pub owner: String,
    pub org: i64,
    pub config: Arc<Config>,
    _dir: tempfile::TempDir,
    /// Last, so the app's pool is dropped before its database is.
    _pg: Option<Arc<PgDatabase>>,
}

/// A test's own PostgreSQL database, dropped when the last app using it (replicas share it) is
/// dropped: about 10 MB each, a hundred PostgreSQL tests per run would otherwise keep a
/// gigabyte on disk until the server stops.
struct PgDatabase {
    admin_url: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread with its
        // own runtime does the work. Failures only leave the database for pg_stop to remove.
        let worker = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(admin) = sqlx::PgPool::connect(&url).await {
                    let drop = format!("drop database if exists {name} with (force)");
                    let _ = sqlx::query(&drop).execute(&admin).await;
                    admin.close().await;
                }
            });
        });
        let _ = worker.join();
    }
}

/// A response: status, headers and parsed JSON (Null when the body is not JSON).
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Value,
    pub text: String,
    /// The body as sent (binary downloads: zip archives).
    pub bytes: Vec<u8>,
}

impl Reply {
    #[track_caller]
    pub fn expect(self, status: StatusCode) -> Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        self.body
    }

    #[track_caller]
    pub fn expect_error(self, status: StatusCode, code: &str) -> Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        assert_eq!(
            self.body["code"],
            json!(code),
            "unexpected code; body: {}",
            self.text
        );
        assert!(
            self.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "error without detail: {}",
            self.text
        );
        self.body
    }
}

async fn fresh_postgres() -> (String, Arc<PgDatabase>) {
    let base = std::env::var("VERITY_TEST_DATABASE_URL").expect(
        "VERITY_TEST_DATABASE_URL must point at a PostgreSQL server (e2e/test-all starts one); \
         the suite runs every test on both backends",
    );
    let name = format!("verity_test_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&base)
        .await
        .expect("connect to the test PostgreSQL server");
    sqlx::query(&format!("create database {name}"))
        .execute(&admin)
        .await
        .expect("create test database");
    admin.close().await;
    let (prefix, _) = base.rsplit_once('/').expect("URL with a database path");
    let url = format!("{prefix}/{name}");
    let guard = Arc::new(PgDatabase {
        admin_url: base,
        name,
    });
    (url, guard)
}

impl TestApp {
    pub async fn new(backend: Backend) -> Self {
        Self::with_config(backend, |_| {}).await
    }

    pub async fn with_config(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, pg) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("verity.db").display()),
                None,
            ),
            Backend::Postgres => {
                let (url, guard) = fresh_postgres().await;
                (url, Some(guard))
            }
        };
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            database_url: url.clone(),
            ..Config::default()
        };
        tweak(&mut config);
        let db = Db::connect(
            &url,
            &PoolOptions {
                max_connections: 8,
                ..Default::default()
            },
        )
        .await
        .expect("connect");
        db.migrate().await.expect("migrate");
        let org = users::create_organization(&db, "Test org", None, None, &Default::default())
            .await
            .expect("org");
        let owner = users::create_user_in_org(
            &db,
            &Actor::instance(org, Default::default()),
            org,
            &new_user("owner@example.com", Role::Owner),
        )
        .await
        .expect("owner")
        .1;
        let sealer =
            Arc::new(verity_controlplane::secrets::Sealer::for_config(&config).expect("sealer"));
        let jwt_key = users::signing_key(&db, &sealer).await.expect("key");
        let links = verity_controlplane::links::LinkSigner::for_config(&config).expect("links");
        let config = Arc::new(config);
        let state = AppState::new(
            db.clone(),
            config.clone(),
            sealer,
            links,
            jwt_key,
            Metrics::new().expect("metrics"),
        );
        Self {
            service: app(state),
            db,
            owner,
            org,
            config,
            _dir: dir,
            _pg: pg,
        }
    }

    /// A second replica of this app: the same database and configuration (set `session_key`,
    /// as replicas share it), its own empty data directory and state.
    pub async fn replica(&self) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = (*self.config).clone();
        config.data_dir = dir.path().to_path_buf();
        let sealer =
            Arc::new(verity_controlplane::secrets::Sealer::for_config(&config).expect("sealer"));
        let jwt_key = users::signing_key(&self.db, &sealer).await.expect("key");
        let links = verity_controlplane::links::LinkSigner::for_config(&config).expect("links");
        let config = Arc::new(config);
        let state = AppState::new(
            self.db.clone(),
            config.clone(),
            sealer,
            links,
            jwt_key,
            Metrics::new().expect("metrics"),
        );
        TestApp {
            service: app(state),
            db: self.db.clone(),
            owner: self.owner.clone(),
            org: self.org,
            config,
            _dir: dir,
            _pg: self._pg.clone(),
        }
    }

    /// Runs one SQL statement on the app's database (its writer on SQLite); answers the rows
    /// it changed. For tests that stage what the API cannot produce on demand.
    pub async fn exec(&self, sql: &str) -> u64 {
        match &self.db {
            Db::Postgres(pool) => sqlx::query(sql)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            Db::Sqlite { write, .. } => sqlx::query(sql)
                .execute(write)
                .await
                .map(|r| r.rows_affected()),
        }
        .expect("statement")
    }

    /// A new user with `role` in this app's organization; returns the token.
    pub async fn user(&self, email: &str, role: Role) -> String {
        self.user_in(self.org, email, role).await
    }

    /// A new user with `role` in organization `org`; returns the token.
    pub async fn user_in(&self, org: i64, email: &str, role: Role) -> String {
        users::create_user_in_org(
            &self.db,
            &Actor::instance(org, Default::default()),
            org,
            &new_user(email, role),
        )
        .await
        .expect("user")
        .1
    }

    /// Adds the user behind `token` to project `p` (as the owner), with an optional project role.
    pub async fn add_member(&self, p: i64, token: &str, role: Option<&str>) {
        let user = self.user_id(token).await;
        self.post(
            &format!("/api/projects/{p}/members"),
            &self.owner,
            json!({"user": user, "role": role}),
        )
        .await
        .expect(StatusCode::CREATED);
    }

    /// Runs raw SQL on the test database, bypassing the API (to simulate time passing or an
    /// attacker with database access). Returns the error text when the database refuses.
    pub async fn sql(&self, statement: &str) -> Result<u64, String> {
        let result = match &self.db {
            Db::Postgres(pool) => sqlx::query(statement)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            Db::Sqlite { write, .. } => sqlx::query(statement)
                .execute(write)
                .await
                .map(|r| r.rows_affected()),
        };
        result.map_err(|e| e.to_string())
    }

    /// The audit entries of this app's organization, oldest first, read straight from the
    /// database.
    pub async fn audit_actions(&self, org: i64) -> Vec<(String, String, String)> {
        let rows: Vec<(String, String, String)> = match &self.db {
            Db::Postgres(pool) => sqlx::query_as(
                "select action, outcome, target_id from audit_log where chain_id = $1 order by id",
            )
            .bind(org)
            .fetch_all(pool)
            .await,
            Db::Sqlite { read, .. } => sqlx::query_as(
                "select action, outcome, target_id from audit_log where chain_id = $1 order by id",
            )
            .bind(org)
            .fetch_all(read)
            .await,
        }
        .expect("audit rows");
        rows
    }

    /// A second organization with an owner; returns its id and the owner's token.
    pub async fn other_org(&self, title: &str, owner_email: &str) -> (i64, String) {
        let org = users::create_organization(&self.db, title, None, None, &Default::default())
            .await
            .expect("org");
        let token = self.user_in(org, owner_email, Role::Owner).await;
        (org, token)
    }

    /// A user id by token (through whoami).
    pub async fn user_id(&self, token: &str) -> i64 {
        self.get("/api/current-user/whoami", token)
            .await
            .expect(StatusCode::OK)["id"]
            .as_i64()
            .expect("id")
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let mutating = !matches!(request.method().as_str(), "GET" | "HEAD" | "OPTIONS");
        let path = request.uri().path().to_string();
        let reply = self.send_unchecked(request).await;
        let unchanged = reply.headers.contains_key("x-verity-unchanged");
        if mutating
            && reply.status.is_success()
            && !unchanged
            && !AUDIT_EXEMPT.iter().any(|p| path_matches(p, &path))
        {
            // Every change made through the API leaves an audit entry written by the request.
            let id = reply
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .expect("request id")
                .to_string();
            let entries = audit::entries_for_request(&self.db, &id)
                .await
                .expect("audit query");
            assert!(
                !entries.is_empty(),
                "{path} answered {} but wrote no audit entry",
                reply.status
            );
        }
        reply
    }

    /// Sends a request without the audit check (for tests that look at the audit log itself).
    pub async fn send_unchecked(&self, request: Request<Body>) -> Reply {
        let response = self
            .service
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).to_string();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
            bytes: bytes.to_vec(),
        }
    }

    pub async fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Reply {
        let mut builder = Request::builder().method(method).uri(path);
        if !token.is_empty() {
            builder = builder.header("authorization", format!("Token {token}"));
        }
        let request = match body {
            Some(b) => builder
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => builder.body(Body::empty()),
        }
        .expect("request");
        self.send(request).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call("GET", path, token, None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call("POST", path, token, Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call("PATCH", path, token, Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call("DELETE", path, token, None).await
    }

    /// Posts raw bytes with a content type.
    pub async fn post_raw(
        &self,
        path: &str,
        token: &str,
        content_type: &str,
        body: impl Into<Body>,
    ) -> Reply {
        let request = Request::builder()
            .method("POST")
            .uri(path)
            .header("authorization", format!("Token {token}"))
            .header("content-type", content_type)
            .body(body.into())
            .expect("request");
        self.send(request).await
    }

    /// Creates a project with the text-classification config; returns its id.
    /// Polls the storage at `path` (`/api/storages/<type>/<id>`) every 20 ms, at most `rounds`
    /// times, until its sync has completed or failed; answers the storage.
    pub async fn wait_storage_sync(&self, path: &str, rounds: usize) -> Value {
        for _ in 0..rounds {
            let s = self.get(path, &self.owner).await.expect(StatusCode::OK);
            if s["status"] == json!("completed") || s["status"] == json!("failed") {
                return s;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the sync of {path} did not end");
    }

    pub async fn mk_project(&self, token: &str, extra: Value) -> i64 {
        let mut body = json!({"title": "Sentiment", "label_config": TEXT_CONFIG});
        if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
            b.extend(e);
        }
        self.post("/api/projects", token, body)
            .await
            .expect(StatusCode::CREATED)["id"]
            .as_i64()
            .expect("id")
    }

    /// Imports `n` flat tasks; returns their ids.
    pub async fn mk_tasks(&self, token: &str, project: i64, n: usize) -> Vec<i64> {
        let tasks: Vec<Value> = (0..n)
            .map(|i| json!({"text": format!("task {i}")}))
            .collect();
        let reply = self
            .post(
                &format!("/api/projects/{project}/import?return_task_ids=true"),
                token,
                Value::Array(tasks),
            )
            .await;
        reply.expect(StatusCode::CREATED)["task_ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|v| v.as_i64().expect("id"))
            .collect()
    }

    /// The webhook events recorded (`(action, body)`, oldest first): of one webhook, or of all.
    pub async fn webhook_events(&self, hook: Option<i64>) -> Vec<(String, Value)> {
        let sql = "select action, body from webhook_event where $1 is null or webhook_id = $1 order by id";
        let rows: Vec<(String, String)> = match &self.db {
            Db::Postgres(pool) => sqlx::query_as(sql).bind(hook).fetch_all(pool).await,
            Db::Sqlite { read, .. } => sqlx::query_as(sql).bind(hook).fetch_all(read).await,
        }
        .expect("webhook events");
        rows.into_iter()
            .map(|(a, b)| (a, serde_json::from_str(&b).expect("an event body is JSON")))
            .collect()
    }

    pub async fn project(&self, id: i64) -> Value {
        self.get(&format!("/api/projects/{id}"), &self.owner)
            .await
            .expect(StatusCode::OK)
    }
}

pub fn new_user(email: &str, role: Role) -> users::NewUser {
    users::NewUser {
        email: email.into(),
        password: None,
        role,
        token: None,
        first_name: String::new(),
        last_name: String::new(),
        username: None,
    }
}

pub const TEXT_CONFIG: &str = r#"<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text"><Choice value="pos"/><Choice value="neg"/></Choices></View>"#;

/// Percent-encodes a query value (every byte but RFC 3986's unreserved characters).
pub fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn choice(label: &str) -> Value {
    json!([{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}])
}

/// Mutating endpoints that change nothing (validation only), exempt from the audit check.
const AUDIT_EXEMPT: &[&str] = &[
    "/api/projects/validate",
    "/api/projects/*/validate",
    // Ask the model server and answer what it said; nothing is stored.
    "/api/ml/*/predict/test",
    "/api/ml/*/interactive-annotating",
    // Checks a storage body; nothing is stored.
    "/api/storages/localfiles/validate",
    "/api/storages/export/localfiles/validate",
    "/api/storages/*/validate",
    "/api/storages/export/*/validate",
];

fn path_matches(pattern: &str, path: &str) -> bool {
    let path = path.trim_end_matches('/');
    let (a, b): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| *x == "*" || x == y)
}

/// Runs an async test body on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! both_backends {
    ($(async fn $name:ident($app:ident) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                async fn run($app: $crate::common::TestApp) $body
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    run($crate::common::TestApp::new($crate::common::Backend::Sqlite).await).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    run($crate::common::TestApp::new($crate::common::Backend::Postgres).await).await
                }
            }
        )*
    };
}

/// A stand-in model server on loopback that answers Label Studio's ML backend protocol with
/// fixed answers (`/health`, `/setup` → version `stub-1`, `/predict` → the label `pos` with score
/// 0.5 for every task, `/webhook` → 201): for tests about the API around ML backends
/// (authorization, validation). The real model server of the e2e suite learns.
pub async fn stub_ml_backend() -> String {
    stub_ml_backend_with(std::time::Duration::ZERO).await
}

/// [`stub_ml_backend`] whose `/predict` takes `delay` to answer (a slow model).
pub async fn stub_ml_backend_with(delay: std::time::Duration) -> String {
    stub_ml_backend_counting(delay).await.0
}

/// [`stub_ml_backend_with`], and the number of trainings (`/webhook` calls) it received.
pub async fn stub_ml_backend_counting(
    delay: std::time::Duration,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let stub = stub_ml(delay).await;
    (stub.url, stub.trainings)
}

/// A running protocol stand-in of a model server (see [`stub_ml`]).
pub struct StubMl {
    /// Its base URL.
    pub url: String,
    /// Trainings (`/webhook` calls) received.
    pub trainings: Arc<std::sync::atomic::AtomicUsize>,
    /// The number of tasks of each `/predict` request received, in order.
    pub predict_sizes: Arc<std::sync::Mutex<Vec<usize>>>,
}

/// A model server on loopback: `/health`, `/setup` (version `stub-1`), `/predict` (a "pos"
/// choice with score 0.5 for every task, after `delay`) and `/webhook`, recording what it got.
pub async fn stub_ml(delay: std::time::Duration) -> StubMl {
    use axum::{Json, Router, routing::get, routing::post};
    let trainings = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let predict_sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (counter, sizes) = (trainings.clone(), predict_sizes.clone());
    let app = Router::new()
        .route("/health", get(|| async { Json(json!({"status": "UP"})) }))
        .route(
            "/setup",
            post(|| async { Json(json!({"model_version": "stub-1"})) }),
        )
        .route(
            "/predict",
            post(move |Json(body): Json<Value>| async move {
                let n = body["tasks"].as_array().map_or(0, Vec::len);
                sizes.lock().expect("sizes").push(n);
                tokio::time::sleep(delay).await;
                let one = json!({"result": choice("pos"), "score": 0.5});
                Json(json!({"results": vec![one; n]}))
            }),
        )
        .route(
            "/webhook",
            post(move || {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { (StatusCode::CREATED, Json(json!({"status": "ok"}))) }
            }),
        );
    let (addr, _) = serve_loopback(app).await;
    StubMl {
        url: format!("http://{addr}"),
        trainings,
        predict_sizes,
    }
}

/// Serves `app` on a free port of 127.0.0.1 for the rest of the test: its address and the
/// serving task (dropping the handle leaves it running).
pub async fn serve_loopback(
    app: axum::Router,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}
