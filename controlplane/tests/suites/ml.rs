//! ML backends through the API: connecting (checked against the backend, refused on private
//! targets unless allowed), secrets never answered, batch predictions and training as jobs run
//! by a real worker, automatic training after submissions, interactive pre-annotation with a
//! time limit, the legacy shorthand of prediction results, and uncertainty sampling. The model
//! server here is the protocol stand-in of `common`; the e2e suite runs a learning one.

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};

use verity_controlplane::authz::Role;

use crate::common::{
    Backend, TestApp, choice, stub_ml, stub_ml_backend, stub_ml_backend_counting,
    stub_ml_backend_with,
};

/// An annotator who is a member of project `p`; answers the token.
async fn member(app: &TestApp, p: i64, email: &str) -> String {
    let token = app.user(email, Role::Annotator).await;
    app.add_member(p, &token, None).await;
    token
}

async fn app(backend: Backend) -> TestApp {
    TestApp::with_config(backend, |c| c.allow_private_targets = "127.0.0.1".into()).await
}

async fn wait_job(app: &TestApp, id: &str) -> Value {
    for _ in 0..1500 {
        let job = app
            .get(&format!("/api/jobs/{id}"), &app.owner)
            .await
            .expect(StatusCode::OK);
        if job["state"] == json!("finished") || job["state"] == json!("failed") {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {id} did not end");
}

async fn backends(app: &TestApp, p: i64) -> usize {
    app.get(&format!("/api/ml?project={p}"), &app.owner)
        .await
        .expect(StatusCode::OK)
        .as_array()
        .map_or(0, Vec::len)
}

async fn connecting_is_checked(backend: Backend) {
    let app = app(backend).await;
    let p = app.mk_project(&app.owner, json!({})).await;
    // A backend that is not there: refused, nothing stored.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let e = app
        .post(
            "/api/ml",
            &app.owner,
            json!({"project": p, "url": format!("http://{closed}")}),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "ml_backend_unreachable");
    assert!(
        e["detail"].as_str().is_some_and(|d| d.contains("/health")),
        "{e}"
    );
    assert_eq!(backends(&app, p).await, 0);
    // A private target the administrator did not allow.
    let strict = TestApp::new(backend).await;
    let sp = strict.mk_project(&strict.owner, json!({})).await;
    strict
        .post(
            "/api/ml",
            &strict.owner,
            json!({"project": sp, "url": stub_ml_backend().await}),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "private_target");
    // A working one: connected, its model version stored, the password never shown.
    let url = stub_ml_backend().await;
    let made = app
        .post(
            "/api/ml",
            &app.owner,
            json!({"project": p, "url": url, "title": "stub", "auth_method": "BASIC_AUTH",
                   "basic_auth_user": "u", "basic_auth_pass": "s3cret-pass", "timeout": 5}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(made["state"], json!("CO"));
    assert_eq!(made["model_version"], json!("stub-1"));
    assert_eq!(made["basic_auth_pass_is_set"], json!(true));
    let id = made["id"].as_i64().expect("id");
    for reply in [
        app.get(&format!("/api/ml/{id}"), &app.owner).await,
        app.get(&format!("/api/ml?project={p}"), &app.owner).await,
        app.get("/api/audit-log", &app.owner).await,
    ] {
        assert!(!reply.text.contains("s3cret-pass"), "{}", reply.text);
    }
    // A change of URL is checked too; a bad one changes nothing.
    app.patch(
        &format!("/api/ml/{id}"),
        &app.owner,
        json!({"url": format!("http://{closed}"), "title": "moved"}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "ml_backend_unreachable");
    let now = app
        .get(&format!("/api/ml/{id}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (now["url"].clone(), now["title"].clone()),
        (json!(url), json!("stub"))
    );
    // Bad fields: clear errors.
    for (body, field) in [
        (json!({"project": p, "url": url, "timeout": -1}), "timeout"),
        (
            json!({"project": p, "url": url, "auth_method": "TOKEN"}),
            "auth_method",
        ),
        (json!({"project": p, "url": "ftp://x"}), "url"),
        (json!({"project": p}), "url"),
        (json!({"url": url}), "project"),
    ] {
        let e = app
            .post("/api/ml", &app.owner, body)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "validation_error");
        assert!(e["validation_errors"][field].is_array(), "{field}: {e}");
    }
    app.delete(&format!("/api/ml/{id}"), &app.owner)
        .await
        .expect(StatusCode::NO_CONTENT);
    assert_eq!(backends(&app, p).await, 0);
}

async fn batch_prediction_and_training_run_as_jobs(backend: Backend) {
    let app = app(backend).await;
    let _worker = crate::webhooks::start_worker(&app);
    let p = app
        .mk_project(
            &app.owner,
            json!({"start_training_on_annotation_update": true, "train_every_annotations": 2}),
        )
        .await;
    let tasks = app.mk_tasks(&app.owner, p, 5).await;
    let (url, trained) = stub_ml_backend_counting(Duration::ZERO).await;
    let made = app
        .post("/api/ml", &app.owner, json!({"project": p, "url": url}))
        .await
        .expect(StatusCode::CREATED);
    let id = made["id"].as_i64().expect("id");
    let job = app
        .post(&format!("/api/ml/{id}/predict"), &app.owner, json!({}))
        .await
        .expect(StatusCode::OK)["job"]
        .as_str()
        .expect("job")
        .to_string();
    let done = wait_job(&app, &job).await;
    assert_eq!(done["state"], json!("finished"), "{done}");
    assert_eq!(done["result"]["stored"], json!(5), "{done}");
    // Stored in the full form, with the model version, counted.
    let preds = app
        .get(&format!("/api/predictions?task={}", tasks[0]), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(preds[0]["model_version"], json!("stub-1"));
    assert_eq!(preds[0]["result"], choice("pos"));
    assert_eq!(app.project(p).await["total_predictions_number"], json!(5));
    // Again: nothing left to do for this version (no duplicates).
    let again = app
        .post(&format!("/api/ml/{id}/predict"), &app.owner, json!({}))
        .await
        .expect(StatusCode::OK)["job"]
        .as_str()
        .expect("job")
        .to_string();
    assert_eq!(wait_job(&app, &again).await["result"]["stored"], json!(0));
    assert_eq!(app.project(p).await["total_predictions_number"], json!(5));
    // Automatic training: every second submitted annotation starts one.
    for t in &tasks[..4] {
        app.post(
            &format!("/api/tasks/{t}/annotations"),
            &app.owner,
            json!({"result": choice("neg")}),
        )
        .await
        .expect(StatusCode::CREATED);
    }
    let mut seen = 0;
    for _ in 0..200 {
        seen = trained.load(std::sync::atomic::Ordering::SeqCst);
        if seen >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, 2, "four submissions, one training per two");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(trained.load(std::sync::atomic::Ordering::SeqCst), 2);
    let state = app
        .get(&format!("/api/ml/{id}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(state["state"], json!("CO"), "{state}");
}

async fn interactive_pre_annotation_is_bounded(backend: Backend) {
    let app = app(backend).await;
    let p = app.mk_project(&app.owner, json!({})).await;
    let task = app.mk_tasks(&app.owner, p, 1).await[0];
    let annotator = member(&app, p, "ml-annotator@a.test").await;
    let fast = app
        .post(
            "/api/ml",
            &app.owner,
            json!({"project": p, "url": stub_ml_backend().await, "is_interactive": true}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("id");
    // Members who do not manage backends see the URL without its query string.
    let tokened = app
        .post(
            "/api/ml",
            &app.owner,
            json!({"project": p, "url": format!("{}/?key=s3cret-key", stub_ml_backend().await)}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("id");
    let seen = app
        .get(&format!("/api/ml/{tokened}"), &annotator)
        .await
        .expect(StatusCode::OK);
    assert!(!seen["url"].as_str().unwrap_or("?").contains('?'), "{seen}");
    let listed = app.get(&format!("/api/ml?project={p}"), &annotator).await;
    assert!(!listed.text.contains("s3cret-key"), "{}", listed.text);
    let managed = app
        .get(&format!("/api/ml/{tokened}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert!(
        managed["url"]
            .as_str()
            .is_some_and(|u| u.contains("key=s3cret-key"))
    );
    let got = app
        .post(
            &format!("/api/ml/{fast}/interactive-annotating"),
            &annotator,
            json!({"task": task, "context": {"result": []}}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(got["data"]["result"], choice("pos"));
    // A model slower than the backend's time limit: a clear 502 in time, not a hung annotator.
    let slow = app
        .post(
            "/api/ml",
            &app.owner,
            json!({"project": p, "url": stub_ml_backend_with(Duration::from_secs(30)).await,
                   "is_interactive": true, "timeout": 0.5}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("id");
    let started = std::time::Instant::now();
    let e = app
        .post(
            &format!("/api/ml/{slow}/interactive-annotating"),
            &annotator,
            json!({"task": task, "context": {}}),
        )
        .await
        .expect_error(StatusCode::BAD_GATEWAY, "ml_backend_failed");
    assert!(
        e["detail"]
            .as_str()
            .is_some_and(|d| d.contains("timed out")),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // Annotators may not manage backends.
    app.post(&format!("/api/ml/{fast}/train"), &annotator, json!({}))
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
}

async fn prediction_shorthand_is_expanded(backend: Backend) {
    let app = app(backend).await;
    let p = app.mk_project(&app.owner, json!({})).await;
    let task = app.mk_tasks(&app.owner, p, 1).await[0];
    for shorthand in [
        json!("pos"),
        json!({"choices": ["pos"]}),
        choice("pos")[0].clone(),
    ] {
        let made = app
            .post(
                "/api/predictions",
                &app.owner,
                json!({"task": task, "result": shorthand, "score": 0.7}),
            )
            .await
            .expect(StatusCode::CREATED);
        assert_eq!(made["result"], choice("pos"), "{shorthand}");
    }
    // A label the config does not have, and a config with two controls: refused, nothing stored.
    app.post(
        "/api/predictions",
        &app.owner,
        json!({"task": task, "result": "maybe"}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_result");
    let two = app
        .mk_project(
            &app.owner,
            json!({"title": "Two", "label_config": r#"<View><Text name="text" value="$text"/><Choices name="a" toName="text"><Choice value="x"/></Choices><Choices name="b" toName="text"><Choice value="y"/></Choices></View>"#}),
        )
        .await;
    let t2 = app.mk_tasks(&app.owner, two, 1).await[0];
    let e = app
        .post(
            "/api/predictions",
            &app.owner,
            json!({"task": t2, "result": "x"}),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_result");
    assert!(
        e["detail"]
            .as_str()
            .is_some_and(|d| d.contains("exactly one control")),
        "{e}"
    );
    assert_eq!(app.project(p).await["total_predictions_number"], json!(3));
    assert_eq!(app.project(two).await["total_predictions_number"], json!(0));
}

async fn uncertainty_sampling_hands_out_the_least_certain_first(backend: Backend) {
    let app = app(backend).await;
    let p = app
        .mk_project(
            &app.owner,
            json!({"sampling": "Uncertainty sampling", "model_version": "v2"}),
        )
        .await;
    let tasks = app.mk_tasks(&app.owner, p, 5).await;
    // Scores of the current version (v2); an older version's low score must not count.
    for (task, score, version) in [
        (tasks[0], 0.95, "v2"),
        (tasks[1], 0.40, "v2"),
        (tasks[2], 0.10, "v1"),
        (tasks[2], 0.80, "v2"),
        (tasks[3], 0.55, "v2"),
    ] {
        app.post(
            "/api/predictions",
            &app.owner,
            json!({"task": task, "result": choice("pos"), "score": score, "model_version": version}),
        )
        .await
        .expect(StatusCode::CREATED);
    }
    let mut order = Vec::new();
    for i in 0..5 {
        let token = member(&app, p, &format!("u{i}@a.test")).await;
        let next = app
            .get(&format!("/api/projects/{p}/next"), &token)
            .await
            .expect(StatusCode::OK);
        let id = next["id"].as_i64().expect("id");
        order.push(id);
        app.post(
            &format!("/api/tasks/{id}/annotations"),
            &token,
            json!({"result": choice("pos")}),
        )
        .await
        .expect(StatusCode::CREATED);
    }
    // 0.40, 0.55, 0.80, 0.95, then the task without a v2 prediction.
    assert_eq!(
        order,
        vec![tasks[1], tasks[3], tasks[2], tasks[0], tasks[4]]
    );
}

/// A model server that fails: `/predict` answers 500 the first `failures` times, then works;
/// with `huge` it answers 17 MiB of JSON instead.
async fn failing_backend(failures: usize, huge: bool) -> String {
    use axum::{Json, Router, routing::get, routing::post};
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = Router::new()
        .route("/health", get(|| async { Json(json!({"status": "UP"})) }))
        .route(
            "/setup",
            post(|| async { Json(json!({"model_version": "f-1"})) }),
        )
        .route(
            "/predict",
            post(move |Json(body): Json<Value>| {
                let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    if huge {
                        let filler = "x".repeat(17 * 1024 * 1024);
                        return (
                            StatusCode::OK,
                            Json(json!({"results": [], "filler": filler})),
                        );
                    }
                    if n < failures {
                        return (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            Json(json!({"error": "model crashed"})),
                        );
                    }
                    let tasks = body["tasks"].as_array().map_or(0, Vec::len);
                    let one = json!({"result": choice("neg"), "score": 0.3});
                    (StatusCode::OK, Json(json!({"results": vec![one; tasks]})))
                }
            }),
        );
    let (addr, _) = crate::common::serve_loopback(app).await;
    format!("http://{addr}")
}

/// A backend that fails is reported in the API (state `ER`, the reason) and the batch is
/// retried on the queue until it works; an answer over the size cap is refused with a clear
/// error instead of being read.
async fn failing_backends_are_reported_retried_and_capped(backend: Backend) {
    let app = app(backend).await;
    let _worker = crate::webhooks::start_worker(&app);
    let p = app.mk_project(&app.owner, json!({})).await;
    app.mk_tasks(&app.owner, p, 3).await;
    let id = app
        .post(
            "/api/ml",
            &app.owner,
            json!({"project": p, "url": failing_backend(1, false).await}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("id");
    let job = app
        .post(&format!("/api/ml/{id}/predict"), &app.owner, json!({}))
        .await
        .expect(StatusCode::OK)["job"]
        .as_str()
        .expect("job")
        .to_string();
    let mut reported = Value::Null;
    for _ in 0..300 {
        reported = app
            .get(&format!("/api/ml/{id}"), &app.owner)
            .await
            .expect(StatusCode::OK);
        if reported["state"] == json!("ER") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reported["state"], json!("ER"), "{reported}");
    assert!(
        reported["error_message"]
            .as_str()
            .is_some_and(|e| e.contains("/predict answered 500") && e.contains("model crashed")),
        "{reported}"
    );
    // The queue retries (after its first backoff) and the second attempt stores everything.
    let mut done = Value::Null;
    for _ in 0..1000 {
        done = app
            .get(&format!("/api/jobs/{job}"), &app.owner)
            .await
            .expect(StatusCode::OK);
        if done["state"] == json!("finished") || done["state"] == json!("failed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(done["state"], json!("finished"), "{done}");
    assert_eq!(done["attempts"], json!(2), "{done}");
    assert_eq!(done["result"]["stored"], json!(3), "{done}");
    let now = app
        .get(&format!("/api/ml/{id}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(now["state"], json!("CO"), "{now}");
    // An answer over 16 MiB: refused, said so.
    let big = app
        .post(
            "/api/ml",
            &app.owner,
            json!({"project": p, "url": failing_backend(0, true).await}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("id");
    let e = app
        .post(
            &format!("/api/ml/{big}/predict/test"),
            &app.owner,
            json!({}),
        )
        .await
        .expect_error(StatusCode::BAD_GATEWAY, "ml_backend_failed");
    assert!(
        e["detail"]
            .as_str()
            .is_some_and(|d| d.contains("more than 16 MiB")),
        "{e}"
    );
}

/// Trainings of one backend never overlap: a second one waits for the first (its attempt is
/// retried), so model versions are read and written in order and the project follows the last.
async fn trainings_of_a_backend_run_one_at_a_time(backend: Backend) {
    use axum::{Json, Router, routing::get, routing::post};
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let in_flight = std::sync::Arc::new(AtomicUsize::new(0));
    let most = std::sync::Arc::new(AtomicUsize::new(0));
    let trained = std::sync::Arc::new(AtomicUsize::new(0));
    let (f, m, t) = (in_flight.clone(), most.clone(), trained.clone());
    let t2 = trained.clone();
    let server = Router::new()
        .route("/health", get(|| async { Json(json!({"status": "UP"})) }))
        .route(
            "/setup",
            post(move || {
                let n = t2.load(SeqCst);
                async move { Json(json!({"model_version": format!("v{n}")})) }
            }),
        )
        .route(
            "/webhook",
            post(move || {
                let (f, m, t) = (f.clone(), m.clone(), t.clone());
                async move {
                    let now = f.fetch_add(1, SeqCst) + 1;
                    m.fetch_max(now, SeqCst);
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    t.fetch_add(1, SeqCst);
                    f.fetch_sub(1, SeqCst);
                    (StatusCode::CREATED, Json(json!({"status": "ok"})))
                }
            }),
        );
    let (addr, _) = crate::common::serve_loopback(server).await;
    let app = app(backend).await;
    let _worker = crate::webhooks::start_worker(&app);
    let p = app.mk_project(&app.owner, json!({})).await;
    let id = app
        .post(
            "/api/ml",
            &app.owner,
            json!({"project": p, "url": format!("http://{addr}"), "auto_update": false}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("id");
    assert_eq!(app.project(p).await["model_version"], json!("v0"));
    let mut jobs = Vec::new();
    for _ in 0..2 {
        jobs.push(
            app.post(&format!("/api/ml/{id}/train"), &app.owner, json!({}))
                .await
                .expect(StatusCode::OK)["job"]
                .as_str()
                .expect("job")
                .to_string(),
        );
    }
    for job in &jobs {
        assert_eq!(wait_job(&app, job).await["state"], json!("finished"));
    }
    assert_eq!(trained.load(SeqCst), 2);
    assert_eq!(
        most.load(SeqCst),
        1,
        "two trainings of one backend overlapped"
    );
    let now = app
        .get(&format!("/api/ml/{id}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(now["model_version"], json!("v2"), "{now}");
    assert_eq!(app.project(p).await["model_version"], json!("v2"));
}

/// `POST /api/ml/{id}/predict?batch_size=N` asks the backend for N tasks per request; a size
/// outside 1..=1000 is refused before anything is enqueued.
async fn batch_size_sets_the_tasks_per_request(backend: Backend) {
    let app = app(backend).await;
    let _worker = crate::webhooks::start_worker(&app);
    let p = app.mk_project(&app.owner, json!({})).await;
    app.mk_tasks(&app.owner, p, 7).await;
    let stub = stub_ml(Duration::ZERO).await;
    let id = app
        .post(
            "/api/ml",
            &app.owner,
            json!({"project": p, "url": stub.url}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("id");
    for bad in ["0", "1001", "-3", "many"] {
        app.post(
            &format!("/api/ml/{id}/predict?batch_size={bad}"),
            &app.owner,
            json!({}),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
    }
    assert!(stub.predict_sizes.lock().expect("sizes").is_empty());
    let job = app
        .post(
            &format!("/api/ml/{id}/predict?batch_size=3"),
            &app.owner,
            json!({}),
        )
        .await
        .expect(StatusCode::OK)["job"]
        .as_str()
        .expect("job")
        .to_string();
    let done = wait_job(&app, &job).await;
    assert_eq!(done["result"]["stored"], json!(7), "{done}");
    assert_eq!(*stub.predict_sizes.lock().expect("sizes"), vec![3, 3, 1]);
}

/// Lazy predictions (`evaluate_predictions_automatically`): a task opened by id or handed out
/// by the label stream gets its prediction from the backend first, once per model version; a
/// project without the setting never calls the backend; a dead backend delays one opening by
/// its timeout at most, is marked `ER`, and is left alone for a while.
async fn lazy_predictions_when_a_task_is_opened(backend: Backend) {
    let app = app(backend).await;
    let p = app
        .mk_project(
            &app.owner,
            json!({"evaluate_predictions_automatically": true}),
        )
        .await;
    let tasks = app.mk_tasks(&app.owner, p, 2).await;
    let annotator = member(&app, p, "lazy-annotator@a.test").await;
    let stub = stub_ml(Duration::ZERO).await;
    app.post(
        "/api/ml",
        &app.owner,
        json!({"project": p, "url": stub.url}),
    )
    .await
    .expect(StatusCode::CREATED);
    let calls = |stub: &crate::common::StubMl| stub.predict_sizes.lock().expect("sizes").clone();
    assert!(calls(&stub).is_empty(), "connecting predicts nothing");
    let opened = app
        .get(&format!("/api/tasks/{}", tasks[0]), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        opened["predictions"][0]["model_version"],
        json!("stub-1"),
        "{opened}"
    );
    assert_eq!(
        opened["predictions"][0]["result"],
        choice("pos"),
        "{opened}"
    );
    assert_eq!(opened["total_predictions"], json!(1), "{opened}");
    assert_eq!(calls(&stub), vec![1]);
    // Opened again: the stored prediction is used.
    app.get(&format!("/api/tasks/{}", tasks[0]), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(calls(&stub), vec![1]);
    // The label stream hands out the other task with its prediction.
    let next = app
        .get(&format!("/api/projects/{p}/next"), &annotator)
        .await
        .expect(StatusCode::OK);
    let served = next["id"].as_i64().expect("id");
    assert_eq!(next["total_predictions"], json!(1), "{next}");
    assert_eq!(calls(&stub).len(), if served == tasks[0] { 1 } else { 2 });
    let stored = app
        .get(&format!("/api/predictions?task={served}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(stored.as_array().map(Vec::len), Some(1), "{stored}");

    // Without the setting, opening a task never calls the backend.
    let plain = app.mk_project(&app.owner, json!({})).await;
    let plain_task = app.mk_tasks(&app.owner, plain, 1).await[0];
    let quiet = stub_ml(Duration::ZERO).await;
    app.post(
        "/api/ml",
        &app.owner,
        json!({"project": plain, "url": quiet.url}),
    )
    .await
    .expect(StatusCode::CREATED);
    let shown = app
        .get(&format!("/api/tasks/{plain_task}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(shown["total_predictions"], json!(0), "{shown}");
    assert!(calls(&quiet).is_empty());

    // A backend slower than its timeout: the task is shown without a prediction, in time.
    let slow_project = app
        .mk_project(
            &app.owner,
            json!({"evaluate_predictions_automatically": true}),
        )
        .await;
    let slow_tasks = app.mk_tasks(&app.owner, slow_project, 2).await;
    let slow = stub_ml(Duration::from_secs(30)).await;
    let slow_id = app
        .post(
            "/api/ml",
            &app.owner,
            json!({"project": slow_project, "url": slow.url, "timeout": 0.5}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("id");
    let started = std::time::Instant::now();
    let shown = app
        .get(&format!("/api/tasks/{}", slow_tasks[0]), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(shown["total_predictions"], json!(0), "{shown}");
    let state = app
        .get(&format!("/api/ml/{slow_id}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(state["state"], json!("ER"), "{state}");
    assert!(
        state["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("lazy prediction")),
        "{state}"
    );
    // Left alone for a while: the next opening does not wait for it again.
    app.get(&format!("/api/tasks/{}", slow_tasks[1]), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(calls(&slow), vec![1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batch_size_sets_the_tasks_per_request_sqlite() {
    batch_size_sets_the_tasks_per_request(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batch_size_sets_the_tasks_per_request_postgres() {
    batch_size_sets_the_tasks_per_request(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lazy_predictions_when_a_task_is_opened_sqlite() {
    lazy_predictions_when_a_task_is_opened(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lazy_predictions_when_a_task_is_opened_postgres() {
    lazy_predictions_when_a_task_is_opened(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connecting_is_checked_sqlite() {
    connecting_is_checked(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connecting_is_checked_postgres() {
    connecting_is_checked(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batch_prediction_and_training_run_as_jobs_sqlite() {
    batch_prediction_and_training_run_as_jobs(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batch_prediction_and_training_run_as_jobs_postgres() {
    batch_prediction_and_training_run_as_jobs(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interactive_pre_annotation_is_bounded_sqlite() {
    interactive_pre_annotation_is_bounded(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interactive_pre_annotation_is_bounded_postgres() {
    interactive_pre_annotation_is_bounded(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prediction_shorthand_is_expanded_sqlite() {
    prediction_shorthand_is_expanded(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prediction_shorthand_is_expanded_postgres() {
    prediction_shorthand_is_expanded(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uncertainty_sampling_hands_out_the_least_certain_first_sqlite() {
    uncertainty_sampling_hands_out_the_least_certain_first(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uncertainty_sampling_hands_out_the_least_certain_first_postgres() {
    uncertainty_sampling_hands_out_the_least_certain_first(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_backends_are_reported_retried_and_capped_sqlite() {
    failing_backends_are_reported_retried_and_capped(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_backends_are_reported_retried_and_capped_postgres() {
    failing_backends_are_reported_retried_and_capped(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trainings_of_a_backend_run_one_at_a_time_sqlite() {
    trainings_of_a_backend_run_one_at_a_time(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trainings_of_a_backend_run_one_at_a_time_postgres() {
    trainings_of_a_backend_run_one_at_a_time(Backend::Postgres).await;
}
