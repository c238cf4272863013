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

const BOXES: &str = r#"<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image"><Label value="Car"/><Label value="Bus"/></RectangleLabels></View>"#;

/// The entries of a zip archive (name → bytes), read through its central directory.
fn unzip(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let u16_at = |i: usize| u16::from_le_bytes([data[i], data[i + 1]]) as usize;
    let u32_at =
        |i: usize| u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]) as usize;
    let end = data.len() - 22;
    assert_eq!(u32_at(end), 0x0605_4b50, "no end of central directory");
    let (count, mut at) = (u16_at(end + 10), u32_at(end + 16));
    let mut out = Vec::new();
    for _ in 0..count {
        assert_eq!(u32_at(at), 0x0201_4b50, "bad central directory entry");
        let (size, name_len, local) = (u32_at(at + 24), u16_at(at + 28), u32_at(at + 42));
        let name = String::from_utf8(data[at + 46..at + 46 + name_len].to_vec()).expect("utf-8");
        assert_eq!(u32_at(local), 0x0403_4b50, "bad local header of {name}");
        let start = local + 30 + u16_at(local + 26) + u16_at(local + 28);
        out.push((name, data[start..start + size].to_vec()));
        at += 46 + name_len + u16_at(at + 30) + u16_at(at + 32);
    }
    out
}

/// The converter formats (ADR 0046): `/export/formats` marks those that do not fit the label
/// config disabled and both the direct export and a conversion refuse them; a snapshot converted
/// to YOLO by a job downloads as a zip with the converter's entries.
async fn converter_formats_follow_the_label_config(backend: Backend) {
    let a = app(backend).await;
    let _worker = start_worker(&a);
    let text = project(&a, 2, 10).await;
    let images = a.mk_project(&a.owner, json!({"label_config": BOXES})).await;
    let url = "https://img.example.com/a/street.jpg";
    let task = a
        .post(
            "/api/tasks",
            &a.owner,
            json!({"project": images, "data": {"image": url}}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("task id");
    let region = json!([{"id": "r1", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
        "original_width": 200, "original_height": 100,
        "value": {"x": 10, "y": 20, "width": 50, "height": 40, "rotation": 0, "rectanglelabels": ["Car"]}}]);
    a.post(
        &format!("/api/tasks/{task}/annotations"),
        &a.owner,
        json!({"result": region}),
    )
    .await
    .expect(StatusCode::CREATED);

    let disabled = |list: &Value, name: &str| {
        list.as_array()
            .and_then(|l| l.iter().find(|f| f["name"] == json!(name)))
            .map(|f| f["disabled"].clone())
            .unwrap_or_else(|| panic!("{name} not listed: {list}"))
    };
    let listed = a
        .get(&format!("/api/projects/{images}/export/formats"), &a.owner)
        .await
        .expect(StatusCode::OK);
    for name in ["JSON", "YOLO", "YOLO_OBB", "COCO", "VOC"] {
        assert_eq!(disabled(&listed, name), json!(false), "{name}: {listed}");
    }
    let listed = a
        .get(&format!("/api/projects/{text}/export/formats"), &a.owner)
        .await
        .expect(StatusCode::OK);
    for name in ["YOLO", "YOLO_OBB", "COCO", "VOC"] {
        assert_eq!(disabled(&listed, name), json!(true), "{name}: {listed}");
    }
    assert_eq!(disabled(&listed, "CSV"), json!(false));
    // The formats that fit come first, as Label Studio sorts them.
    let flags: Vec<bool> = listed
        .as_array()
        .expect("list")
        .iter()
        .map(|f| f["disabled"].as_bool().expect("bool"))
        .collect();
    assert!(flags.windows(2).all(|w| w[0] <= w[1]), "{flags:?}");

    // A format that does not fit is refused, directly and as a conversion; nothing is queued.
    let refused = a
        .get(
            &format!("/api/projects/{text}/export?exportType=YOLO"),
            &a.owner,
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "export_format_unsupported");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("RectangleLabels"),
        "{refused}"
    );
    let snap = create(&a, text).await;
    let sid = snap["id"].as_i64().expect("id");
    wait_snapshot(&a, text, sid).await;
    a.post(
        &format!("/api/projects/{text}/exports/{sid}/convert"),
        &a.owner,
        json!({"export_type": "COCO"}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "export_format_unsupported");
    let after = a
        .get(&format!("/api/projects/{text}/exports/{sid}"), &a.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(after["converted_formats"], json!([]), "{after}");

    // A YOLO conversion by a job: the converter's zip layout.
    let snap = create(&a, images).await;
    let sid = snap["id"].as_i64().expect("id");
    assert_eq!(
        wait_snapshot(&a, images, sid).await["status"],
        json!("completed")
    );
    let converted = a
        .post(
            &format!("/api/projects/{images}/exports/{sid}/convert"),
            &a.owner,
            json!({"export_type": "YOLO"}),
        )
        .await
        .expect(StatusCode::OK);
    assert!(converted["job"].is_string(), "{converted}");
    let entry = wait_conversion(&a, images, sid, "YOLO").await;
    assert_eq!(entry["status"], json!("completed"), "{entry}");
    let r = a
        .get(
            &format!("/api/projects/{images}/exports/{sid}/download?exportType=YOLO"),
            &a.owner,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/zip")
    );
    assert_eq!(
        r.headers.get("filename").and_then(|v| v.to_str().ok()),
        Some(format!("project-{images}-export-{sid}.zip").as_str())
    );
    let entries = unzip(&r.bytes);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    // The converter names a label file after its cache copy of the image: md5(url)[:8]__stem.
    let md5 = hex::encode(<md5::Md5 as md5::Digest>::digest(url.as_bytes()));
    let label = format!("labels/{}__street.txt", &md5[..8]);
    let mut want = vec![
        "images/",
        "labels/",
        label.as_str(),
        "classes.txt",
        "notes.json",
    ];
    let mut got = names.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    let file = |name: &str| {
        let (_, b) = entries.iter().find(|(n, _)| n == name).expect("entry");
        String::from_utf8(b.clone()).expect("text")
    };
    // Categories: the config's labels sorted (Bus 0, Car 1); the box as centre and size.
    assert_eq!(file("classes.txt"), "Bus\nCar\n");
    assert_eq!(file(&label), "1 0.35 0.4 0.5 0.4\n");
    let notes: Value = serde_json::from_str(&file("notes.json")).expect("notes.json");
    assert_eq!(
        notes["categories"],
        json!([{"id": 0, "name": "Bus"}, {"id": 1, "name": "Car"}])
    );
    // The direct export gives the same entries.
    let direct = a
        .get(
            &format!("/api/projects/{images}/export?exportType=YOLO"),
            &a.owner,
        )
        .await;
    assert_eq!(direct.status, StatusCode::OK, "{}", direct.text);
    let mut direct_names: Vec<String> = unzip(&direct.bytes).into_iter().map(|(n, _)| n).collect();
    direct_names.sort();
    assert_eq!(direct_names, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn converter_formats_follow_the_label_config_sqlite() {
    converter_formats_follow_the_label_config(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn converter_formats_follow_the_label_config_postgres() {
    converter_formats_follow_the_label_config(Backend::Postgres).await;
}

const BRUSH: &str = r#"<View><Image name="image" value="$image"/><BrushLabels name="tag" toName="image"><Label value="Road"/><Label value="Sky"/></BrushLabels></View>"#;

/// `label_studio_sdk.converter.brush.mask2rle` of two 4×3 masks.
const RLE_DIAGONAL: [u8; 20] = [
    0, 0, 0, 48, 57, 27, 252, 96, 19, 255, 219, 0, 143, 254, 48, 8, 255, 237, 128, 0,
];
const MASK_DIAGONAL: [u8; 12] = [0, 255, 255, 0, 0, 0, 255, 0, 255, 0, 0, 0];
const RLE_TOP_ROW: [u8; 11] = [0, 0, 0, 48, 57, 27, 253, 255, 252, 62, 0];
const MASK_TOP_ROW: [u8; 12] = [255, 255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0];

/// The brush formats (ADR 0050): offered only for an Image with BrushLabels; each brush region
/// becomes one `.npy` (NumPy header + mask) or grayscale `.png` named after the task,
/// annotation, annotator, control and labels, regions of the same label numbered; the direct
/// export and a job's conversion give the same files; a region whose RLE does not match its
/// size is left out.
async fn brush_masks_export_as_numpy_and_png(backend: Backend) {
    let a = app(backend).await;
    let _worker = start_worker(&a);
    let brush = a.mk_project(&a.owner, json!({"label_config": BRUSH})).await;
    let boxes = a.mk_project(&a.owner, json!({"label_config": BOXES})).await;
    let task = a
        .post(
            "/api/tasks",
            &a.owner,
            json!({"project": brush, "data": {"image": "https://img.example.com/street.png"}}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("task id");
    let region = |id: &str, rle: &[u8], label: &str, w: i64| {
        json!({"id": id, "from_name": "tag", "to_name": "image", "type": "brushlabels",
            "original_width": w, "original_height": 3, "image_rotation": 0,
            "value": {"format": "rle", "rle": rle, "brushlabels": [label]}})
    };
    let ann = a
        .post(
            &format!("/api/tasks/{task}/annotations"),
            &a.owner,
            json!({"result": [
                region("r1", &RLE_DIAGONAL, "Road", 4),
                region("r2", &RLE_TOP_ROW, "Road", 4),
                region("r3", &RLE_TOP_ROW, "Sky", 4),
                // 5 × 3 does not match the 48 values of the RLE: left out.
                region("r4", &RLE_TOP_ROW, "Sky", 5),
            ]}),
        )
        .await
        .expect(StatusCode::CREATED);
    let ann_id = ann["id"].as_i64().expect("annotation id");
    let by = match &ann["completed_by"] {
        Value::Object(o) => o["email"].as_str().unwrap_or_default().to_string(),
        other => other.to_string(),
    };
    let by: String = by
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '@' || *c == '.')
        .collect();
    let base = format!("task-{task}-annotation-{ann_id}-by-{by}-tag");

    let disabled = |list: &Value, name: &str| {
        list.as_array()
            .and_then(|l| l.iter().find(|f| f["name"] == json!(name)))
            .map(|f| f["disabled"].clone())
            .unwrap_or_else(|| panic!("{name} not listed: {list}"))
    };
    for (project, want) in [(brush, false), (boxes, true)] {
        let listed = a
            .get(&format!("/api/projects/{project}/export/formats"), &a.owner)
            .await
            .expect(StatusCode::OK);
        for name in ["BRUSH_TO_NUMPY", "BRUSH_TO_PNG"] {
            assert_eq!(disabled(&listed, name), json!(want), "{name}: {listed}");
        }
    }
    let refused = a
        .get(
            &format!("/api/projects/{boxes}/export?exportType=BRUSH_TO_PNG"),
            &a.owner,
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "export_format_unsupported");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("BrushLabels"),
        "{refused}"
    );

    // NumPy, directly: the header numpy.save writes, then the mask's rows.
    let r = a
        .get(
            &format!("/api/projects/{brush}/export?exportType=BRUSH_TO_NUMPY"),
            &a.owner,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let mut entries = unzip(&r.bytes);
    entries.sort();
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec![
            format!("{base}-Road-0.npy"),
            format!("{base}-Road-1.npy"),
            format!("{base}-Sky-0.npy"),
        ]
    );
    for ((_, bytes), mask) in entries
        .iter()
        .zip([MASK_DIAGONAL, MASK_TOP_ROW, MASK_TOP_ROW])
    {
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let header = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        let dict = std::str::from_utf8(&bytes[10..10 + header]).expect("header");
        assert!(
            dict.starts_with("{'descr': '|u1', 'fortran_order': False, 'shape': (3, 4), }"),
            "{dict}"
        );
        assert_eq!((10 + header) % 64, 0);
        assert_eq!(&bytes[10 + header..], &mask[..]);
    }

    // PNG, by a job's conversion of a snapshot: the same names, 4×3 grayscale images.
    let snap = create(&a, brush).await;
    let sid = snap["id"].as_i64().expect("id");
    wait_snapshot(&a, brush, sid).await;
    a.post(
        &format!("/api/projects/{brush}/exports/{sid}/convert"),
        &a.owner,
        json!({"export_type": "BRUSH_TO_PNG"}),
    )
    .await
    .expect(StatusCode::OK);
    let entry = wait_conversion(&a, brush, sid, "BRUSH_TO_PNG").await;
    assert_eq!(entry["status"], json!("completed"), "{entry}");
    let r = a
        .get(
            &format!("/api/projects/{brush}/exports/{sid}/download?exportType=BRUSH_TO_PNG"),
            &a.owner,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let mut entries = unzip(&r.bytes);
    entries.sort();
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec![
            format!("{base}-Road-0.png"),
            format!("{base}-Road-1.png"),
            format!("{base}-Sky-0.png"),
        ]
    );
    for (_, png) in &entries {
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(&png[16..24], &[0, 0, 0, 4, 0, 0, 0, 3]);
        assert_eq!(&png[24..26], &[8, 0], "8-bit grayscale");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn brush_masks_export_as_numpy_and_png_sqlite() {
    brush_masks_export_as_numpy_and_png(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn brush_masks_export_as_numpy_and_png_postgres() {
    brush_masks_export_as_numpy_and_png(Backend::Postgres).await;
}

/// `CSV_OLD` (the converter's older CSV layout): one row per region with the task, annotation,
/// annotator, data and the region's value (one key → the control's column, several → one column
/// each), cells as pandas writes them; the direct export and a job's conversion agree; not
/// listed in `/export/formats`, as Label Studio does not list it.
async fn csv_old_export_has_one_row_per_region(backend: Backend) {
    let a = app(backend).await;
    let _worker = start_worker(&a);
    let p = a.mk_project(&a.owner, json!({"label_config": BOXES})).await;
    let task = a
        .post(
            "/api/tasks",
            &a.owner,
            json!({"project": p, "data": {"image": "https://img.example.com/a.jpg"}}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("task id");
    let result = json!([
        {"id": "r1", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
         "original_width": 200, "original_height": 100,
         "value": {"x": 10, "y": 20.5, "width": 50, "height": 40, "rotation": 0, "rectanglelabels": ["Car"]}},
        {"id": "r2", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
         "original_width": 200, "original_height": 100,
         "value": {"x": 1, "y": 2, "width": 3, "height": 4, "rotation": 0, "rectanglelabels": ["Bus", "Car"]}}]);
    let ann = a
        .post(
            &format!("/api/tasks/{task}/annotations"),
            &a.owner,
            json!({"result": result}),
        )
        .await
        .expect(StatusCode::CREATED);
    let ann_id = ann["id"].as_i64().expect("annotation id");
    let by = match &ann["completed_by"] {
        Value::Object(o) => o["email"].as_str().unwrap_or_default().to_string(),
        other => other.to_string(),
    };
    let csv = direct(&a, p, "CSV_OLD").await;
    // A region's keys in the order of the export JSON (sorted), y has a fraction: a float column.
    let want = format!(
        "id,annotation_id,annotator,image,height,rectanglelabels,rotation,width,x,y\n\
         {task},{ann_id},{by},https://img.example.com/a.jpg,40,['Car'],0,50,10,20.5\n\
         {task},{ann_id},{by},https://img.example.com/a.jpg,4,\"['Bus', 'Car']\",0,3,1,2.0\n"
    );
    assert_eq!(csv, want);
    let listed = a
        .get(&format!("/api/projects/{p}/export/formats"), &a.owner)
        .await
        .expect(StatusCode::OK);
    assert!(
        !listed.to_string().contains("CSV_OLD"),
        "CSV_OLD is not listed: {listed}"
    );
    assert_eq!(
        ExportFormat::parse("csv_old").expect("parses"),
        ExportFormat::CsvOld
    );

    let snap = create(&a, p).await;
    let sid = snap["id"].as_i64().expect("id");
    wait_snapshot(&a, p, sid).await;
    a.post(
        &format!("/api/projects/{p}/exports/{sid}/convert"),
        &a.owner,
        json!({"export_type": "CSV_OLD"}),
    )
    .await
    .expect(StatusCode::OK);
    let entry = wait_conversion(&a, p, sid, "CSV_OLD").await;
    assert_eq!(entry["status"], json!("completed"), "{entry}");
    let r = a
        .get(
            &format!("/api/projects/{p}/exports/{sid}/download?exportType=CSV_OLD"),
            &a.owner,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.text, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn csv_old_export_has_one_row_per_region_sqlite() {
    csv_old_export_has_one_row_per_region(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn csv_old_export_has_one_row_per_region_postgres() {
    csv_old_export_has_one_row_per_region(Backend::Postgres).await;
}
