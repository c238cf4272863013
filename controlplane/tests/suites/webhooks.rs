//! Webhooks end to end: the API, real deliveries by a real worker to receivers on loopback
//! (payload shapes, signatures, custom headers, order), retries after 5xx answers and timeouts,
//! giving up, the delivery log, and the refusals of private targets (literal, resolved and
//! redirected).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use hmac::{Hmac, Mac};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;
use verity_controlplane::config::Config;
use verity_controlplane::jobs::Jobs;
use verity_controlplane::jobs::sql::SqlQueue;
use verity_controlplane::jobs::worker::{self, WorkerConfig};

use crate::common::{Backend, TEXT_CONFIG, TestApp, choice};

/// How a receiver answers one request.
#[derive(Clone, Debug)]
enum Answer {
    Status(u16),
    /// Answers 200 after this long (longer than the webhook timeout: a timeout).
    Slow(Duration),
    /// 307 to this URL.
    Redirect(String),
}

#[derive(Clone, Debug)]
struct Got {
    headers: HeaderMap,
    body: Value,
    raw: Vec<u8>,
}

#[derive(Clone, Default)]
struct Inbox {
    got: Arc<Mutex<Vec<Got>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
}

/// An HTTP receiver on a loopback address; answers 200 unless scripted otherwise.
struct Receiver {
    addr: SocketAddr,
    inbox: Inbox,
}

impl Receiver {
    async fn start(ip: [u8; 4]) -> Self {
        let inbox = Inbox::default();
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((ip, 0)))
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(inbox.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, inbox }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn script(&self, answers: &[Answer]) {
        self.inbox
            .script
            .lock()
            .expect("lock")
            .extend(answers.iter().cloned());
    }

    fn got(&self) -> Vec<Got> {
        self.inbox.got.lock().expect("lock").clone()
    }

    fn actions(&self) -> Vec<String> {
        self.got()
            .iter()
            .map(|g| g.body["action"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Waits until `n` requests arrived.
    async fn wait_for(&self, n: usize) -> Vec<Got> {
        for _ in 0..600 {
            let got = self.got();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "the receiver got {} requests, expected {n}: {:?}",
            self.got().len(),
            self.actions()
        );
    }
}

async fn receive(
    State(inbox): State<Inbox>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    inbox.got.lock().expect("lock").push(Got {
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        raw: body.to_vec(),
    });
    let answer = inbox.script.lock().expect("lock").pop_front();
    match answer.unwrap_or(Answer::Status(200)) {
        Answer::Status(s) => (
            StatusCode::from_u16(s).expect("status"),
            format!("answered {s}"),
        )
            .into_response(),
        Answer::Slow(d) => {
            tokio::time::sleep(d).await;
            (StatusCode::OK, "late").into_response()
        }
        Answer::Redirect(to) => {
            (StatusCode::TEMPORARY_REDIRECT, [("location", to)], "moved").into_response()
        }
    }
}

/// Runs a worker with every handler of the control plane over the app's SQL queue.
pub(crate) fn start_worker(app: &TestApp) -> tokio::sync::watch::Sender<bool> {
    let jobs = Jobs::Sql(SqlQueue::new(app.db.clone()));
    let handlers =
        verity_controlplane::server::handlers(&app.db, &jobs, &app.config).expect("handlers");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let config = WorkerConfig {
        concurrency: 4,
        idle_poll: Duration::from_millis(20),
        drain: Duration::from_secs(2),
        ..WorkerConfig::default()
    };
    tokio::spawn(worker::run(jobs, handlers, config, None, stop_rx));
    stop_tx
}

fn fast(allow: &str) -> impl FnOnce(&mut Config) {
    let allow = allow.to_string();
    move |c: &mut Config| {
        c.allow_private_targets = allow;
        c.webhook_timeout_ms = 400;
        c.webhook_retry_base_ms = 50;
        c.webhook_max_attempts = 4;
    }
}

/// Checks the signature header against the secret, independently of the server's code.
fn verify_signature(got: &Got, secret: &str) {
    let header = got
        .headers
        .get("x-verity-signature")
        .and_then(|v| v.to_str().ok())
        .expect("a signature header");
    let (t, v1) = header
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
        .expect("t=…,v1=…");
    let age = time::OffsetDateTime::now_utc().unix_timestamp() - t.parse::<i64>().expect("t");
    assert!((0..300).contains(&age), "timestamp {t} is not now");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(&got.raw);
    mac.verify_slice(&hex::decode(v1).expect("hex"))
        .expect("the signature matches the body and the secret");
}

async fn api_and_deliveries(backend: Backend) {
    let app = TestApp::with_config(backend, fast("true")).await;
    let _worker = start_worker(&app);
    let owner = app.owner.clone();
    let rx = Receiver::start([127, 0, 0, 1]).await;
    let org_rx = Receiver::start([127, 0, 0, 1]).await;
    let lean_rx = Receiver::start([127, 0, 0, 1]).await;
    let p = app.mk_project(&owner, json!({})).await;

    // The event list, as the SDK's webhooks.info() reads it.
    let info = app
        .get("/api/webhooks/info", &owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(info["TASKS_CREATED"]["key"], json!("tasks"));
    assert_eq!(info["PROJECT_CREATED"]["organization-only"], json!(true));
    let org_only = app
        .get("/api/webhooks/info?organization-only=true", &owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(org_only.as_object().map(|o| o.len()), Some(2));

    // Bad input: a clear 400, nothing created.
    for (body, field) in [
        (json!({"project": p}), "url"),
        (json!({"project": p, "url": "ftp://example.com/x"}), "url"),
        (
            json!({"project": p, "url": rx.url(), "actions": ["TASK_CREATED"]}),
            "actions",
        ),
        (
            json!({"project": p, "url": rx.url(), "send_for_all_actions": false, "actions": ["PROJECT_CREATED"]}),
            "actions",
        ),
        (
            json!({"project": p, "url": rx.url(), "headers": {"Host": "evil"}}),
            "headers",
        ),
        (
            json!({"project": p, "url": rx.url(), "headers": {"X-Verity-Signature": "forged"}}),
            "headers",
        ),
        (
            json!({"project": p, "url": rx.url(), "headers": (0..11).map(|i| (format!("h{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}),
            "headers",
        ),
        (
            json!({"project": p, "url": rx.url(), "headers": {"a b": "v"}}),
            "headers",
        ),
        (
            json!({"project": p, "url": rx.url(), "secret": "short"}),
            "secret",
        ),
    ] {
        let e = app
            .post("/api/webhooks", &owner, body.clone())
            .await
            .expect_error(StatusCode::BAD_REQUEST, "validation_error");
        assert!(e["validation_errors"][field].is_array(), "{body}: {e}");
    }
    assert_eq!(
        app.get("/api/webhooks", &owner)
            .await
            .expect(StatusCode::OK),
        json!([])
    );
    // Organization-wide webhooks need organization.manage: a manager is refused.
    let manager = app
        .user(
            "manager@example.com",
            verity_controlplane::authz::Role::Manager,
        )
        .await;
    app.post("/api/webhooks", &manager, json!({"url": org_rx.url()}))
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");

    // A project webhook with a custom header; the secret is answered once.
    let hook = app
        .post(
            "/api/webhooks",
            &owner,
            json!({"project": p, "url": rx.url(), "headers": {"Authorization": "Bearer receiver-token"}}),
        )
        .await
        .expect(StatusCode::CREATED);
    let hook_id = hook["id"].as_i64().expect("id");
    let secret = hook["secret"].as_str().expect("secret").to_string();
    assert!(secret.len() >= 32 && hook["secret_is_set"] == json!(true));
    assert_eq!(
        (
            &hook["send_payload"],
            &hook["send_for_all_actions"],
            &hook["is_active"],
            &hook["project"]
        ),
        (&json!(true), &json!(true), &json!(true), &json!(p))
    );
    let read = app
        .get(&format!("/api/webhooks/{hook_id}"), &owner)
        .await
        .expect(StatusCode::OK);
    assert!(
        read.get("secret").is_none(),
        "the secret is shown only once: {read}"
    );
    // An organization-wide hook (the owner may) and a lean one: only the action, only two events.
    let org_hook = app
        .post(
            "/api/webhooks",
            &owner,
            json!({"url": org_rx.url(), "project": null}),
        )
        .await
        .expect(StatusCode::CREATED);
    app.post(
        "/api/webhooks",
        &owner,
        json!({"project": p, "url": lean_rx.url(), "send_payload": false, "send_for_all_actions": false, "actions": ["TASKS_CREATED", "ANNOTATION_CREATED"]}),
    )
    .await
    .expect(StatusCode::CREATED);
    let listed = app
        .get(&format!("/api/webhooks?project={p}"), &owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    let org_listed = app
        .get("/api/webhooks?project=null", &owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(org_listed[0]["id"], org_hook["id"]);
    assert_eq!(
        app.get("/api/webhooks", &owner)
            .await
            .expect(StatusCode::OK)
            .as_array()
            .map(Vec::len),
        Some(3)
    );

    // The events, each as its own request, in the order they happened.
    let task = app
        .post(
            "/api/tasks",
            &owner,
            json!({"project": p, "data": {"text": "one"}}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("id");
    let ann = app
        .post(
            &format!("/api/tasks/{task}/annotations"),
            &owner,
            json!({"result": choice("pos")}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("id");
    app.patch(
        &format!("/api/annotations/{ann}"),
        &owner,
        json!({"result": choice("neg")}),
    )
    .await
    .expect(StatusCode::OK);
    app.delete(&format!("/api/annotations/{ann}"), &owner)
        .await
        .expect(StatusCode::NO_CONTENT);
    let imported = app
        .post(
            &format!("/api/projects/{p}/import"),
            &owner,
            json!([{"data": {"text": "two"}, "annotations": [{"result": choice("pos")}]}, {"text": "three"}]),
        )
        .await
        .expect(StatusCode::CREATED);
    assert!(
        imported.get("task_ids").is_none(),
        "ids only when asked: {imported}"
    );
    app.delete(&format!("/api/tasks/{task}"), &owner)
        .await
        .expect(StatusCode::NO_CONTENT);
    app.patch(
        &format!("/api/projects/{p}"),
        &owner,
        json!({"title": "Renamed"}),
    )
    .await
    .expect(StatusCode::OK);
    let got = rx.wait_for(8).await;
    assert_eq!(
        rx.actions(),
        [
            "TASKS_CREATED",
            "ANNOTATION_CREATED",
            "ANNOTATION_UPDATED",
            "ANNOTATIONS_DELETED",
            "TASKS_CREATED",
            "ANNOTATIONS_CREATED",
            "TASKS_DELETED",
            "PROJECT_UPDATED",
        ]
    );
    for g in &got {
        verify_signature(g, &secret);
        assert_eq!(
            g.headers.get("authorization").and_then(|v| v.to_str().ok()),
            Some("Bearer receiver-token")
        );
        assert_eq!(
            g.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
        assert_eq!(g.body["project"]["id"], json!(p), "{}", g.body);
        assert!(g.headers.contains_key("x-verity-delivery"));
    }
    // Payload shapes of Label Studio.
    assert_eq!(got[0].body["tasks"][0]["id"], json!(task));
    assert_eq!(got[0].body["tasks"][0]["data"], json!({"text": "one"}));
    assert_eq!(got[0].body["project"]["task_number"], json!(1));
    assert_eq!(got[1].body["annotation"]["id"], json!(ann));
    assert_eq!(got[1].body["annotation"]["result"], choice("pos"));
    assert_eq!(got[1].body["task"]["id"], json!(task));
    assert_eq!(got[2].body["annotation"]["result"], choice("neg"));
    assert_eq!(got[3].body["annotations"], json!([{"id": ann}]));
    assert_eq!(got[4].body["tasks"].as_array().map(Vec::len), Some(2));
    assert_eq!(got[5].body["annotation"].as_array().map(Vec::len), Some(1));
    assert_eq!(got[5].body["task"].as_array().map(Vec::len), Some(2));
    assert_eq!(got[6].body["tasks"], json!([{"id": task}]));
    assert_eq!(got[7].body["project"]["title"], json!("Renamed"));
    // The lean hook: only its two events, only the action.
    let lean = lean_rx.wait_for(3).await;
    assert_eq!(
        lean.iter().map(|g| g.body.clone()).collect::<Vec<_>>(),
        [
            json!({"action": "TASKS_CREATED"}),
            json!({"action": "ANNOTATION_CREATED"}),
            json!({"action": "TASKS_CREATED"})
        ]
    );
    // The organization-wide hook saw every project event, and project creation and deletion.
    let p2 = app.mk_project(&owner, json!({"title": "Second"})).await;
    app.delete(&format!("/api/projects/{p2}"), &owner)
        .await
        .expect(StatusCode::NO_CONTENT);
    org_rx.wait_for(10).await;
    let org_actions = org_rx.actions();
    assert_eq!(&org_actions[8..], ["PROJECT_CREATED", "PROJECT_DELETED"]);
    let org_got = org_rx.got();
    assert_eq!(org_got[8].body["project"]["title"], json!("Second"));
    assert_eq!(org_got[9].body["project"], json!({"id": p2}));

    // The delivery log: every attempt, newest first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = app
        .get(&format!("/api/webhooks/{hook_id}/deliveries"), &owner)
        .await
        .expect(StatusCode::OK);
    let log = log.as_array().expect("list");
    assert_eq!(log.len(), 8);
    assert_eq!(log[0]["action"], json!("PROJECT_UPDATED"));
    assert!(log.iter().all(|d| d["ok"] == json!(true)
        && d["status_code"] == json!(200)
        && d["attempt"] == json!(1)));
    assert_eq!(log[0]["response_excerpt"], json!("answered 200"));

    // Deactivated: no more deliveries. Rotating the secret answers the new one once.
    let patched = app
        .patch(
            &format!("/api/webhooks/{hook_id}"),
            &owner,
            json!({"is_active": false, "rotate_secret": true}),
        )
        .await
        .expect(StatusCode::OK);
    assert!(patched["secret"].as_str().is_some_and(|s| s != secret));
    app.post(
        "/api/tasks",
        &owner,
        json!({"project": p, "data": {"text": "quiet"}}),
    )
    .await
    .expect(StatusCode::CREATED);
    lean_rx.wait_for(4).await;
    assert_eq!(rx.got().len(), 8, "an inactive webhook receives nothing");
    // Changes are audited; deletion removes the webhook and its log.
    app.delete(&format!("/api/webhooks/{hook_id}"), &owner)
        .await
        .expect(StatusCode::NO_CONTENT);
    app.get(&format!("/api/webhooks/{hook_id}/deliveries"), &owner)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    let audited: Vec<String> = app
        .audit_actions(app.org)
        .await
        .into_iter()
        .map(|(action, _, _)| action)
        .filter(|a| a.starts_with("webhook."))
        .collect();
    assert_eq!(
        audited,
        [
            "webhook.create",
            "webhook.create",
            "webhook.create",
            "webhook.update",
            "webhook.delete"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_and_deliveries_sqlite() {
    api_and_deliveries(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_and_deliveries_postgres() {
    api_and_deliveries(Backend::Postgres).await;
}

/// 5xx answers and timeouts are retried with backoff; a webhook's later events wait behind a
/// failing one; out of attempts the event is given up and the next one goes out.
async fn retries_keep_order(backend: Backend) {
    let app = TestApp::with_config(backend, fast("127.0.0.1")).await;
    let _worker = start_worker(&app);
    let owner = app.owner.clone();
    let rx = Receiver::start([127, 0, 0, 1]).await;
    let p = app.mk_project(&owner, json!({})).await;
    let hook = app
        .post(
            "/api/webhooks",
            &owner,
            json!({"project": p, "url": rx.url()}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("id");
    // Event 1 fails four times (500, timeout, 502, 500: given up); event 2 once (503); event 3
    // goes through at once.
    rx.script(&[
        Answer::Status(500),
        Answer::Slow(Duration::from_millis(1500)),
        Answer::Status(502),
        Answer::Status(500),
        Answer::Status(503),
    ]);
    let mut tasks = Vec::new();
    for i in 0..3 {
        tasks.push(
            app.post(
                "/api/tasks",
                &owner,
                json!({"project": p, "data": {"text": format!("t{i}")}}),
            )
            .await
            .expect(StatusCode::CREATED)["id"]
                .as_i64()
                .expect("id"),
        );
    }
    let got = rx.wait_for(7).await;
    let order: Vec<i64> = got
        .iter()
        .map(|g| g.body["tasks"][0]["id"].as_i64().expect("task id"))
        .collect();
    assert_eq!(
        order,
        [
            tasks[0], tasks[0], tasks[0], tasks[0], tasks[1], tasks[1], tasks[2]
        ],
        "a later event never overtakes an earlier one"
    );
    let delivery = |g: &Got| {
        g.headers
            .get("x-verity-delivery")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        got[..4].iter().all(|g| delivery(g) == delivery(&got[0])),
        "one delivery id per event"
    );
    let attempts: Vec<String> = got
        .iter()
        .map(|g| {
            g.headers
                .get("x-verity-attempt")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(attempts, ["1", "2", "3", "4", "1", "2", "1"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = app
        .get(&format!("/api/webhooks/{hook}/deliveries"), &owner)
        .await
        .expect(StatusCode::OK);
    let log: Vec<&Value> = log.as_array().expect("list").iter().rev().collect();
    let summary: Vec<(Value, Value)> = log
        .iter()
        .map(|d| (d["status_code"].clone(), d["ok"].clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (json!(500), json!(false)),
            (Value::Null, json!(false)),
            (json!(502), json!(false)),
            (json!(500), json!(false)),
            (json!(503), json!(false)),
            (json!(200), json!(true)),
            (json!(200), json!(true)),
        ]
    );
    assert_eq!(log[1]["error"], json!("timed out"));
    assert_eq!(log[0]["response_excerpt"], json!("answered 500"));
    assert!(log[0]["latency_ms"].as_i64().is_some());
    // A success resets the failure count.
    let h = app
        .get(&format!("/api/webhooks/{hook}"), &owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(h["consecutive_failures"], json!(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_keep_order_sqlite() {
    retries_keep_order(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_keep_order_postgres() {
    retries_keep_order(Backend::Postgres).await;
}

/// Only 127.0.0.2 is allowed: a literal private address is refused at creation, a name that
/// resolves to a refused address and a redirect to one are refused at delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn private_targets_are_refused() {
    let app = TestApp::with_config(Backend::Sqlite, fast("127.0.0.2")).await;
    let _worker = start_worker(&app);
    let owner = app.owner.clone();
    let allowed = Receiver::start([127, 0, 0, 2]).await;
    let forbidden = Receiver::start([127, 0, 0, 3]).await;
    let p = app.mk_project(&owner, json!({})).await;
    for url in [
        forbidden.url(),
        format!("http://[::1]:{}/", forbidden.addr.port()),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://0x7f.0.0.3/".to_string(),
    ] {
        let e = app
            .post("/api/webhooks", &owner, json!({"project": p, "url": url}))
            .await
            .expect_error(StatusCode::BAD_REQUEST, "private_target");
        assert!(
            e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("VERITY_ALLOW_PRIVATE_TARGETS")),
            "{e}"
        );
    }
    // A name that resolves to loopback: accepted (names resolve at delivery), refused there.
    let by_name = app
        .post(
            "/api/webhooks",
            &owner,
            json!({"project": p, "url": format!("http://localhost:{}/hook", forbidden.addr.port())}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("id");
    // The allowed receiver redirects to the forbidden one, by address and then by name.
    allowed.script(&[
        Answer::Redirect(forbidden.url()),
        Answer::Redirect(format!("http://localhost:{}/hook", forbidden.addr.port())),
    ]);
    let redirected = app
        .post(
            "/api/webhooks",
            &owner,
            json!({"project": p, "url": allowed.url()}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("id");
    app.post(
        "/api/tasks",
        &owner,
        json!({"project": p, "data": {"text": "x"}}),
    )
    .await
    .expect(StatusCode::CREATED);
    // The allowed receiver: redirect, redirect, then the retried event arrives directly.
    allowed.wait_for(3).await;
    let log_of = |hook: i64| {
        let app = &app;
        let owner = owner.clone();
        async move {
            app.get(&format!("/api/webhooks/{hook}/deliveries"), &owner)
                .await
                .expect(StatusCode::OK)
        }
    };
    let mut name_log = Value::Null;
    for _ in 0..200 {
        name_log = log_of(by_name).await;
        if name_log.as_array().is_some_and(|l| !l.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let first = &name_log
        .as_array()
        .expect("list")
        .last()
        .expect("an attempt")["error"];
    assert!(
        first
            .as_str()
            .is_some_and(|e| e.starts_with("refused: localhost is a private")),
        "{first}"
    );
    let redirect_log = log_of(redirected).await;
    let errors: Vec<String> = redirect_log
        .as_array()
        .expect("list")
        .iter()
        .rev()
        .map(|d| d["error"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(errors.len() >= 3, "{errors:?}");
    assert!(
        errors[0].contains("redirect refused") && errors[0].contains("127.0.0.3"),
        "{errors:?}"
    );
    assert!(errors[1].contains("refused: localhost"), "{errors:?}");
    assert_eq!(errors[2], "", "the third attempt is delivered");
    assert!(
        forbidden.got().is_empty(),
        "nothing reached the forbidden receiver"
    );
}

/// An event whose delivery job was lost (a crash between the outbox and the queue) is found by
/// the sweep and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stranded_events_are_swept() {
    let app = TestApp::with_config(Backend::Sqlite, fast("true")).await;
    let owner = app.owner.clone();
    let rx = Receiver::start([127, 0, 0, 1]).await;
    let p = app.mk_project(&owner, json!({})).await;
    app.post(
        "/api/webhooks",
        &owner,
        json!({"project": p, "url": rx.url()}),
    )
    .await
    .expect(StatusCode::CREATED);
    app.post(
        "/api/tasks",
        &owner,
        json!({"project": p, "data": {"text": "x"}}),
    )
    .await
    .expect(StatusCode::CREATED);
    // Lose the queued delivery job, as a crash right after the outbox write would.
    app.sql("delete from jobs").await.expect("drop the jobs");
    let _worker = start_worker(&app);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.got().is_empty(), "no job, no delivery");
    let jobs = Jobs::Sql(SqlQueue::new(app.db.clone()));
    assert_eq!(
        verity_controlplane::webhooks::sweep(&app.db, &jobs).await,
        Ok(1)
    );
    let got = rx.wait_for(1).await;
    assert_eq!(got[0].body["action"], json!("TASKS_CREATED"));
    assert_eq!(
        verity_controlplane::webhooks::sweep(&app.db, &jobs).await,
        Ok(0),
        "nothing left to sweep"
    );
    let _ = TEXT_CONFIG;
}
