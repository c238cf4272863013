//! Export snapshots as jobs (ADR 0023): written by a worker into the database in chunks, equal
//! to the direct export byte for byte, downloadable through any replica (none keeps a file),
//! rewritten from scratch by a retried job, failed when their job fails, gone with their chunks
//! when deleted. On SQLite and PostgreSQL.

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use verity_controlplane::{
    exports,
    jobs::{Jobs, sql::SqlQueue},
    storage::{
        Db,
        export::ExportFormat,
        snapshots::{self, Writer},
    },
};

use crate::common::{Backend, TestApp, choice};
use crate::{scalar_i64, wait_conversion, wait_snapshot, webhooks::start_worker};

async fn app(backend: Backend) -> TestApp {
    // Replicas share the session key, as deployed ones do.
    TestApp::with_config(backend, |c| c.session_key = "k".repeat(40)).await
}

/// A project of `n` tasks with `text_len` bytes of text each; the first three annotated.
async fn project(app: &TestApp, n: usize, text_len: usize) -> i64 {
    let p = app.mk_project(&app.owner, json!({})).await;
    let tasks: Vec<Value> = (0..n)
        .map(|i| json!({"text": format!("task {i} {}", "x".repeat(text_len)), "n": i}))
        .collect();
    let ids = app
        .post(
            &format!("/api/projects/{p}/import?return_task_ids=true"),
            &app.owner,
            Value::Array(tasks),
        )
        .await
        .expect(StatusCode::CREATED)["task_ids"]
        .as_array()
        .expect("ids")
        .clone();
    for (i, id) in ids.iter().take(3).enumerate() {
        let label = if i % 2 == 0 { "pos" } else { "neg" };
        app.post(
            &format!("/api/tasks/{id}/annotations"),
            &app.owner,
            json!({"result": choice(label), "lead_time": 1.5}),
        )
        .await
        .expect(StatusCode::CREATED);
    }
    p
}

async fn direct(app: &TestApp, p: i64, format: &str) -> String {
    let r = app
        .get(
            &format!("/api/projects/{p}/export?exportType={format}&download_all_tasks=true"),
            &app.owner,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.text
}

async fn create(app: &TestApp, p: i64) -> Value {
    app.post(
        &format!("/api/projects/{p}/exports"),
        &app.owner,
        json!({"title": "snap"}),
    )
    .await
    .expect(StatusCode::CREATED)
}

fn sql_blob(db: &Db, text: &str) -> String {
    let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
    match db {
        Db::Postgres(_) => format!("decode('{hex}', 'hex')"),
        Db::Sqlite { .. } => format!("x'{hex}'"),
    }
}

async fn snapshots_are_jobs_stored_in_the_database(backend: Backend) {
    let a = app(backend).await;
    let _worker = start_worker(&a);
    // About 2.5 MB of JSON: three chunks.
    let p = project(&a, 300, 8000).await;
    let (json_direct, csv_direct) = (direct(&a, p, "JSON").await, direct(&a, p, "CSV").await);
    let snap = create(&a, p).await;
    assert_eq!(snap["status"], json!("created"), "{snap}");
    let sid = snap["id"].as_i64().expect("id");
    let job = snap["job"].as_str().expect("a job id").to_string();
    let done = wait_snapshot(&a, p, sid).await;
    assert_eq!(done["status"], json!("completed"), "{done}");
    assert_eq!(done["job"], json!(job));
    // The job is visible in the jobs API (acknowledged just after the snapshot committed).
    let mut j = Value::Null;
    for _ in 0..500 {
        j = a
            .get(&format!("/api/jobs/{job}"), &a.owner)
            .await
            .expect(StatusCode::OK);
        if j["state"] == json!("finished") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        (j["kind"].clone(), j["queue"].clone(), j["state"].clone()),
        (
            json!("export.snapshot"),
            json!("default"),
            json!("finished")
        ),
        "{j}"
    );
    let chunks = scalar_i64(
        &a,
        &format!("select count(*) from export_snapshot_chunk where snapshot_id = {sid} and format = 'JSON'"),
    )
    .await;
    assert!(
        chunks >= 3,
        "{chunks} chunks for {} bytes",
        json_direct.len()
    );
    // A second replica with its own empty data directory serves it, byte for byte.
    let b = a.replica().await;
    let r = b
        .get(
            &format!("/api/projects/{p}/exports/{sid}/download"),
            &b.owner,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        r.text == json_direct,
        "the snapshot differs from the direct export"
    );
    let header = |name: &str| {
        r.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(header("content-length"), json_direct.len().to_string());
    assert_eq!(header("content-type"), "application/json");
    // Its checksum is the MD5 of the file's bytes, as Label Studio's snapshots carry it.
    let md5 = hex::encode(<md5::Md5 as md5::Digest>::digest(r.text.as_bytes()));
    assert_eq!(done["md5"], json!(md5), "{done}");
    assert_eq!(header("filename"), format!("project-{p}-export-{sid}.json"));
    // Converted by a job, downloaded through the other replica: the direct CSV export.
    let converted = b
        .post(
            &format!("/api/projects/{p}/exports/{sid}/convert"),
            &b.owner,
            json!({"export_type": "CSV"}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(converted["export_type"], json!("CSV"));
    assert!(converted["job"].is_string(), "{converted}");
    let entry = wait_conversion(&a, p, sid, "CSV").await;
    assert_eq!(entry["status"], json!("completed"), "{entry}");
    let csv = a
        .get(
            &format!("/api/projects/{p}/exports/{sid}/download?exportType=CSV"),
            &a.owner,
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.text);
    assert!(
        csv.text == csv_direct,
        "the CSV conversion differs from the direct CSV export"
    );
    assert_eq!(
        csv.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/csv; charset=utf-8")
    );
    // Asking again converts nothing twice.
    let again = a
        .post(
            &format!("/api/projects/{p}/exports/{sid}/convert"),
            &a.owner,
            json!({"export_type": "CSV"}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(again["converted_format"], converted["converted_format"]);
    // No replica wrote a file.
    for app in [&a, &b] {
        assert!(!app.config.data_dir.join("exports").exists());
    }
    // Deleting it deletes its chunks.
    b.delete(&format!("/api/projects/{p}/exports/{sid}"), &b.owner)
        .await
        .expect(StatusCode::NO_CONTENT);
    for table in ["export_snapshot_chunk", "export_snapshot_file"] {
        let left = scalar_i64(
            &a,
            &format!("select count(*) from {table} where snapshot_id = {sid}"),
        )
        .await;
        assert_eq!(left, 0, "{table}");
    }
    a.get(
        &format!("/api/projects/{p}/exports/{sid}/download"),
        &a.owner,
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshots_are_jobs_stored_in_the_database_sqlite() {
    snapshots_are_jobs_stored_in_the_database(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshots_are_jobs_stored_in_the_database_postgres() {
    snapshots_are_jobs_stored_in_the_database(Backend::Postgres).await;
}

/// A worker killed -9 in the middle of a snapshot left a partial file; the retried job writes it
/// from scratch, and the partial chunks are gone.
async fn a_retried_snapshot_job_starts_over(backend: Backend) {
    let a = app(backend).await;
    let p = project(&a, 40, 100).await;
    let json_direct = direct(&a, p, "JSON").await;
    let snap = create(&a, p).await;
    let sid = snap["id"].as_i64().expect("id");
    let job = snap["job"].as_str().expect("job").to_string();
    // The killed attempt: it had begun and stored a chunk.
    let killed = Writer {
        snapshot: sid,
        format: ExportFormat::Json,
        token: "killed".into(),
    };
    assert!(snapshots::begin(&a.db, &killed, &job).await.expect("begin"));
    a.sql(&format!(
        "insert into export_snapshot_chunk (snapshot_id, format, writer, seq, body) values ({sid}, 'JSON', 'killed', 0, {})",
        sql_blob(&a.db, "[{\"partial\": ")
    ))
    .await
    .expect("partial chunk");
    let seen = a
        .get(&format!("/api/projects/{p}/exports/{sid}"), &a.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(seen["status"], json!("in_progress"));
    a.get(
        &format!("/api/projects/{p}/exports/{sid}/download"),
        &a.owner,
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found");
    // The job runs (again).
    let _worker = start_worker(&a);
    let done = wait_snapshot(&a, p, sid).await;
    assert_eq!(done["status"], json!("completed"), "{done}");
    let left = scalar_i64(
        &a,
        &format!("select count(*) from export_snapshot_chunk where snapshot_id = {sid} and writer = 'killed'"),
    )
    .await;
    assert_eq!(left, 0);
    let r = a
        .get(
            &format!("/api/projects/{p}/exports/{sid}/download"),
            &a.owner,
        )
        .await;
    assert!(r.text == json_direct, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_snapshot_job_starts_over_sqlite() {
    a_retried_snapshot_job_starts_over(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_snapshot_job_starts_over_postgres() {
    a_retried_snapshot_job_starts_over(Backend::Postgres).await;
}

/// A snapshot or conversion whose job failed (or is gone) is failed with the reason; one whose
/// job is still queued is left alone, whoever will run it.
async fn failed_jobs_fail_their_snapshots(backend: Backend) {
    let a = app(backend).await;
    let jobs = Jobs::Sql(SqlQueue::new(a.db.clone()));
    let p = project(&a, 5, 10).await;
    // No worker yet: the jobs wait in the queue.
    let first = create(&a, p).await;
    let second = create(&a, p).await;
    let (s1, s2) = (
        first["id"].as_i64().expect("id"),
        second["id"].as_i64().expect("id"),
    );
    assert_eq!(
        exports::sweep(&a.db, &jobs, exports::SWEEP_GRACE)
            .await
            .expect("sweep"),
        0,
        "queued jobs are alive"
    );
    // The first one's job failed for good (its worker was killed on the last attempt).
    a.sql(&format!(
        "update jobs set state = 'failed', error = 'lease expired on the last attempt' where id = '{}'",
        first["job"].as_str().expect("job")
    ))
    .await
    .expect("fail the job");
    // The second one's job is gone; only after the grace time is that a failure.
    a.sql(&format!(
        "delete from jobs where id = '{}'",
        second["job"].as_str().expect("job")
    ))
    .await
    .expect("drop the job");
    assert_eq!(
        exports::sweep(&a.db, &jobs, exports::SWEEP_GRACE)
            .await
            .expect("sweep"),
        1
    );
    let got = a
        .get(&format!("/api/projects/{p}/exports/{s1}"), &a.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(got["status"], json!("failed"));
    assert!(
        got["error"]
            .as_str()
            .is_some_and(|e| e.contains("lease expired on the last attempt")),
        "{got}"
    );
    assert_eq!(
        exports::sweep(&a.db, &jobs, Duration::ZERO)
            .await
            .expect("sweep"),
        1
    );
    let got = a
        .get(&format!("/api/projects/{p}/exports/{s2}"), &a.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(got["status"], json!("failed"));
    assert!(
        got["error"].as_str().is_some_and(|e| e.contains("gone")),
        "{got}"
    );
    a.get(
        &format!("/api/projects/{p}/exports/{s1}/download"),
        &a.owner,
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found");
    // A job that fails on the data: a snapshot whose stored JSON is damaged cannot be
    // converted, and the conversion says why.
    let _worker = start_worker(&a);
    let third = create(&a, p).await["id"].as_i64().expect("id");
    assert_eq!(
        wait_snapshot(&a, p, third).await["status"],
        json!("completed")
    );
    a.sql(&format!(
        "update export_snapshot_chunk set body = {} where snapshot_id = {third}",
        sql_blob(&a.db, "not json at all")
    ))
    .await
    .expect("damage");
    a.post(
        &format!("/api/projects/{p}/exports/{third}/convert"),
        &a.owner,
        json!({"export_type": "CSV"}),
    )
    .await
    .expect(StatusCode::OK);
    let entry = wait_conversion(&a, p, third, "CSV").await;
    assert_eq!(entry["status"], json!("failed"), "{entry}");
    assert!(
        entry["traceback"]
            .as_str()
            .is_some_and(|t| t.contains("not valid JSON")),
        "{entry}"
    );
    a.get(
        &format!("/api/projects/{p}/exports/{third}/download?exportType=CSV"),
        &a.owner,
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_jobs_fail_their_snapshots_sqlite() {
    failed_jobs_fail_their_snapshots(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_jobs_fail_their_snapshots_postgres() {
    failed_jobs_fail_their_snapshots(Backend::Postgres).await;
}

/// Retention (`export_retention_days`): snapshots that ended before the cut-off are removed with
/// their files and an `export.expire` audit entry; newer ones and ones still being written stay.
async fn snapshots_past_retention_are_removed(backend: Backend) {
    let a = app(backend).await;
    let _worker = start_worker(&a);
    let p = project(&a, 5, 10).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let sid = create(&a, p).await["id"].as_i64().expect("id");
        assert_eq!(
            wait_snapshot(&a, p, sid).await["status"],
            json!("completed")
        );
        ids.push(sid);
    }
    let (old, recent, running) = (ids[0], ids[1], ids[2]);
    let day = 86_400_000_000i64;
    let now = verity_controlplane::storage::now_micros();
    a.exec(&format!(
        "update export_snapshot set finished_at = {} where id = {old}",
        now - 40 * day
    ))
    .await;
    a.exec(&format!(
        "update export_snapshot set finished_at = {} where id = {recent}",
        now - 10 * day
    ))
    .await;
    // Old, but still being written (a retry in progress): never touched.
    a.exec(&format!(
        "update export_snapshot set status = 'in_progress', finished_at = {} where id = {running}",
        now - 40 * day
    ))
    .await;
    let removed = snapshots::expire(&a.db, now - 30 * day, 30)
        .await
        .expect("expire");
    assert_eq!(removed, 1);
    a.get(&format!("/api/projects/{p}/exports/{old}"), &a.owner)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        scalar_i64(
            &a,
            &format!("select count(*) from export_snapshot_chunk where snapshot_id = {old}")
        )
        .await,
        0
    );
    for kept in [recent, running] {
        a.get(&format!("/api/projects/{p}/exports/{kept}"), &a.owner)
            .await
            .expect(StatusCode::OK);
    }
    let log = a.get("/api/audit-log?page_size=200", &a.owner).await.text;
    assert!(log.contains("export.expire"), "{log}");
    // Nothing left to remove: a second pass (another replica) does nothing.
    assert_eq!(
        snapshots::expire(&a.db, now - 30 * day, 30)
            .await
            .expect("expire"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshots_past_retention_are_removed_sqlite() {
    snapshots_past_retention_are_removed(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshots_past_retention_are_removed_postgres() {
    snapshots_past_retention_are_removed(Backend::Postgres).await;
}
