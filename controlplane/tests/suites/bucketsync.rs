//! Import syncs at bucket scale (ADR 0058) against moto's S3 server with the in-process worker:
//! the listing is streamed page by page and each page's new objects are imported before the
//! listing goes on (memory bounded by a page, not by the bucket), and a sync that dies part way
//! and is run again imports nothing twice and misses nothing.
//!
//! moto answers listings 1,000 keys a page, so the buckets here span several pages. Without
//! moto (see `exportchanges::moto`) the tests say so and skip.

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

async fn sync(app: &TestApp, storage: i64) -> Value {
    let path = format!("/api/storages/s3/{storage}");
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
    let failed = sync(&app, storage).await;
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
    let done = sync(&app, storage).await;
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
    let again = sync(&app, storage).await;
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
