//! Import syncs at bucket scale (ADR 0058) against moto's S3 server with the in-process worker:
//! the listing is streamed page by page and each page's new objects are imported before the
//! listing goes on (memory bounded by a page, not by the bucket), and a sync that dies part way
//! and is run again imports nothing twice and misses nothing.
//!
//! moto answers listings 1,000 keys a page, so the buckets here span several pages. Without
//! moto (see `exportchanges::moto`) the tests say so and skip. The local-files storage's sync
//! walks its directory the same way; its tests (at the end) need no emulator.

use std::sync::Arc;

use http::StatusCode;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path as ObjectPath};
use serde_json::{Value, json};
use verity_controlplane::storage::Db;

use crate::common::{Backend, TestApp};
use crate::exportchanges::{Emulator, moto};
use crate::webhooks::start_worker;

/// Objects in the bucket: three listing pages of moto's.
const OBJECTS: usize = 2_500;
/// The object that is not JSON on the first sync (on the second listing page).
const BROKEN: usize = 1_200;

fn key(i: usize) -> String {
    format!("tasks/{i:05}.json")
}

fn bucket(moto: &Emulator, name: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&moto.url)
            .with_allow_http(true)
            .with_bucket_name(name)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .expect("S3 client"),
    )
}

/// Writes the objects `range` (each one task `{"n": i}`, but `broken`, which is not JSON).
async fn put_objects(
    store: &Arc<dyn ObjectStore>,
    range: std::ops::Range<usize>,
    broken: Option<usize>,
) {
    use futures::StreamExt;
    futures::stream::iter(range)
        .map(|i| {
            let store = store.clone();
            async move {
                let body = if Some(i) == broken {
                    b"not json at all".to_vec()
                } else {
                    serde_json::to_vec(&json!({"data": {"text": format!("object {i}"), "n": i}}))
                        .expect("json")
                };
                store
                    .put(&ObjectPath::from(key(i)), PutPayload::from(body))
                    .await
                    .expect("put object");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

/// The `n` of every task of the project, sorted (a duplicate shows twice).
async fn numbers(db: &Db, project: i64) -> Vec<i64> {
    let sql = "select data from task where project_id = $1";
    let rows: Vec<String> = match db {
        Db::Postgres(pool) => sqlx::query_scalar(sql).bind(project).fetch_all(pool).await,
        Db::Sqlite { read, .. } => sqlx::query_scalar(sql).bind(project).fetch_all(read).await,
    }
    .expect("tasks");
    let mut ns: Vec<i64> = rows
        .iter()
        .map(|d| {
            serde_json::from_str::<Value>(d).expect("task data")["n"]
                .as_i64()
                .expect("n")
        })
        .collect();
    ns.sort_unstable();
    ns
}

/// Syncs the `kind` (`s3`, `localfiles`) storage and waits for the outcome.
async fn sync(app: &TestApp, kind: &str, storage: i64) -> Value {
    let path = format!("/api/storages/{kind}/{storage}");
    app.post(&format!("{path}/sync"), &app.owner, json!({}))
        .await
        .expect(StatusCode::OK);
    app.wait_storage_sync(&path, 3000).await
}

async fn resumed_after_a_failure(backend: Backend) {
    let Some(moto) = moto().await else { return };
    let app = TestApp::with_config(backend, |c| c.allow_private_targets = "true".into()).await;
    let _worker = start_worker(&app);
    let store = bucket(&moto, "many");
    let created = reqwest::Client::new()
        .put(format!("{}/many", moto.url))
        .send()
        .await
        .expect("create bucket");
    assert!(created.status().is_success(), "create bucket");
    put_objects(&store, 0..OBJECTS, Some(BROKEN)).await;

    let p = app.mk_project(&app.owner, json!({})).await;
    let storage = app
        .post(
            "/api/storages/s3",
            &app.owner,
            json!({"project": p, "bucket": "many", "prefix": "tasks/", "s3_endpoint": moto.url,
                   "region_name": "us-east-1", "aws_access_key_id": "test",
                   "aws_secret_access_key": "test", "use_blob_urls": false}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("id");

    // The first sync dies on the broken object, part way through the second listing page: the
    // pages before it are in, and the listing never went to its end (it is streamed, not
    // collected first).
    let failed = sync(&app, "s3", storage).await;
    assert_eq!(failed["status"], json!("failed"), "{failed}");
    let why = failed["traceback"].as_str().expect("traceback");
    assert!(why.contains(&key(BROKEN)), "names the broken object: {why}");
    let listed = failed["meta"]["listed"].as_u64().expect("listed");
    assert!(
        listed < OBJECTS as u64,
        "the sync imported as it listed, and stopped listing where it failed: {}",
        failed["meta"]
    );
    let first = numbers(&app.db, p).await;
    assert!(
        first.len() >= 1_000 && first.len() <= BROKEN,
        "whole batches before the broken object landed: {}",
        first.len()
    );
    assert_eq!(
        first,
        (0..first.len() as i64).collect::<Vec<_>>(),
        "a prefix of the listing, each object once"
    );

    // Fixed and run again: the rest comes in, nothing twice.
    put_objects(&store, BROKEN..BROKEN + 1, None).await;
    let done = sync(&app, "s3", storage).await;
    assert_eq!(done["status"], json!("completed"), "{done}");
    let meta = &done["meta"];
    assert_eq!(meta["listed"], json!(OBJECTS), "{meta}");
    assert_eq!(meta["unchanged"], json!(first.len()), "{meta}");
    assert_eq!(meta["new"], json!(OBJECTS - first.len()), "{meta}");
    assert_eq!(done["last_sync_count"], json!(OBJECTS - first.len()));
    assert_eq!(
        numbers(&app.db, p).await,
        (0..OBJECTS as i64).collect::<Vec<_>>(),
        "every object once"
    );

    // More objects land on every page (keys sort between the old ones) and one changes: an
    // incremental sync reads just those.
    let extra: Vec<String> = (0..OBJECTS)
        .step_by(500)
        .map(|i| format!("tasks/{i:05}b.json"))
        .collect();
    for (j, k) in extra.iter().enumerate() {
        let body = serde_json::to_vec(&json!({"data": {"text": "later", "n": OBJECTS + j}}))
            .expect("json");
        store
            .put(&ObjectPath::from(k.as_str()), PutPayload::from(body))
            .await
            .expect("put");
    }
    let again = sync(&app, "s3", storage).await;
    assert_eq!(again["status"], json!("completed"), "{again}");
    assert_eq!(again["meta"]["new"], json!(extra.len()), "{again}");
    assert_eq!(again["meta"]["unchanged"], json!(OBJECTS), "{again}");
    assert_eq!(
        numbers(&app.db, p).await,
        (0..(OBJECTS + extra.len()) as i64).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bucket_sync_resumes_after_a_failure_sqlite() {
    resumed_after_a_failure(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bucket_sync_resumes_after_a_failure_postgres() {
    resumed_after_a_failure(Backend::Postgres).await;
}

/// The local-files storage's sync walks its directory the same way (ADR 0058): files in
/// nested folders, one broken on the first sync; the next sync imports the rest, nothing twice,
/// and a later one only what is new.
async fn local_files_resumed(backend: Backend) {
    let base = tempfile::tempdir().expect("tempdir");
    let root = base.path().join("root");
    let dir = root.join("tasks");
    let path_of = |i: usize| {
        dir.join(format!("{:02}", i / 1000))
            .join(format!("{i:05}.json"))
    };
    let write = |i: usize, text: &str| {
        let path = path_of(i);
        std::fs::create_dir_all(path.parent().expect("folder")).expect("mkdir");
        let body = json!({"data": {"text": text, "n": i}}).to_string();
        std::fs::write(path, body).expect("write");
    };
    for i in 0..OBJECTS {
        write(i, "file");
    }
    std::fs::write(path_of(BROKEN), "not json").expect("write");
    let root_text = root.display().to_string();
    let app = TestApp::with_config(backend, move |c| c.local_files_root = root_text).await;
    let _worker = start_worker(&app);
    let p = app.mk_project(&app.owner, json!({})).await;
    let storage = app
        .post(
            "/api/storages/localfiles",
            &app.owner,
            json!({"project": p, "path": dir.display().to_string(), "use_blob_urls": false}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("id");

    let failed = sync(&app, "localfiles", storage).await;
    assert_eq!(failed["status"], json!("failed"), "{failed}");
    let why = failed["traceback"].as_str().unwrap_or_default();
    assert!(why.contains(&format!("{BROKEN:05}.json")), "{why}");
    let first = numbers(&app.db, p).await;
    assert_eq!(
        first,
        (0..BROKEN as i64).collect::<Vec<_>>(),
        "the files before the broken one (in key order, across folders), each once"
    );

    write(BROKEN, "fixed");
    let done = sync(&app, "localfiles", storage).await;
    assert_eq!(done["status"], json!("completed"), "{done}");
    assert_eq!(done["last_sync_count"], json!(OBJECTS - BROKEN));
    assert_eq!(
        numbers(&app.db, p).await,
        (0..OBJECTS as i64).collect::<Vec<_>>()
    );

    write(OBJECTS, "later");
    let again = sync(&app, "localfiles", storage).await;
    assert_eq!(again["last_sync_count"], json!(1), "{again}");
    assert_eq!(
        numbers(&app.db, p).await,
        (0..=OBJECTS as i64).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_files_sync_resumes_after_a_failure_sqlite() {
    local_files_resumed(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_files_sync_resumes_after_a_failure_postgres() {
    local_files_resumed(Backend::Postgres).await;
}

/// The files' URLs of a project's tasks, in the order the tasks were made.
async fn urls_in_task_order(db: &Db, project: i64) -> Vec<String> {
    let sql = "select data from task where project_id = $1 order by id";
    let rows: Vec<String> = match db {
        Db::Postgres(pool) => sqlx::query_scalar(sql).bind(project).fetch_all(pool).await,
        Db::Sqlite { read, .. } => sqlx::query_scalar(sql).bind(project).fetch_all(read).await,
    }
    .expect("tasks");
    rows.iter()
        .map(|d| {
            let data: Value = serde_json::from_str(d).expect("task data");
            let url = data.as_object().and_then(|o| o.values().next()).cloned();
            url.and_then(|u| u.as_str().map(str::to_string))
                .unwrap_or_else(|| panic!("one URL in {data}"))
        })
        .collect()
}

/// A local-files sync walks one folder at a time yet imports in the order of the sorted keys
/// (a folder's files sort after `a-b.txt` and `a.txt`, before `a0.txt`), across more than one
/// page; a link to a folder inside the storage adds nothing twice, a link to a file keeps its
/// name, a link out of the storage and files `regex_filter` refuses are left out. A re-sync
/// imports nothing; a file added later to a folder already walked is imported alone.
#[cfg(unix)]
async fn local_files_in_key_order(backend: Backend) {
    let base = tempfile::tempdir().expect("tempdir");
    let root = base.path().join("root");
    let dir = root.join("tasks");
    let outside = base.path().join("outside");
    for d in [dir.join("a/b"), dir.join("bulk/deep"), outside.clone()] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let mut expected: Vec<String> = Vec::new();
    let mut put = |key: String| {
        std::fs::write(dir.join(&key), &key).expect("write");
        expected.push(key);
    };
    for key in [
        "a.txt",
        "a-b.txt",
        "a0.txt",
        "ab.txt",
        "a/x.txt",
        "a/b/c.txt",
    ] {
        put(key.to_string());
    }
    for i in 0..1_100 {
        put(format!("bulk/{i:04}.txt"));
    }
    for i in 0..50 {
        put(format!("bulk/deep/{i:02}.txt"));
    }
    std::fs::write(dir.join("skip.md"), "not a .txt").expect("write");
    std::fs::write(outside.join("secret.txt"), "outside").expect("write");
    std::os::unix::fs::symlink(dir.join("a"), dir.join("link")).expect("symlink");
    std::os::unix::fs::symlink(dir.join("ab.txt"), dir.join("alias.txt")).expect("symlink");
    std::os::unix::fs::symlink(&outside, dir.join("out")).expect("symlink");
    expected.push("alias.txt".to_string());
    expected.sort();
    let url = |key: &str| format!("/data/local-files/?d=tasks/{key}");

    let root_text = root.display().to_string();
    let app = TestApp::with_config(backend, move |c| c.local_files_root = root_text).await;
    let _worker = start_worker(&app);
    let p = app.mk_project(&app.owner, json!({})).await;
    let storage = app
        .post(
            "/api/storages/localfiles",
            &app.owner,
            json!({"project": p, "path": dir.display().to_string(),
                   "regex_filter": r"\.txt$", "use_blob_urls": true}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("id");

    let first = sync(&app, "localfiles", storage).await;
    assert_eq!(first["status"], json!("completed"), "{first}");
    assert_eq!(first["last_sync_count"], json!(expected.len()), "{first}");
    let want: Vec<String> = expected.iter().map(|k| url(k)).collect();
    assert_eq!(urls_in_task_order(&app.db, p).await, want);

    let again = sync(&app, "localfiles", storage).await;
    assert_eq!(again["status"], json!("completed"), "{again}");
    assert_eq!(again["last_sync_count"], json!(0), "{again}");

    std::fs::write(dir.join("a/b/later.txt"), "later").expect("write");
    let later = sync(&app, "localfiles", storage).await;
    assert_eq!(later["last_sync_count"], json!(1), "{later}");
    let mut want = want;
    want.push(url("a/b/later.txt"));
    assert_eq!(urls_in_task_order(&app.db, p).await, want);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_files_sync_in_key_order_sqlite() {
    local_files_in_key_order(Backend::Sqlite).await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_files_sync_in_key_order_postgres() {
    local_files_in_key_order(Backend::Postgres).await;
}
