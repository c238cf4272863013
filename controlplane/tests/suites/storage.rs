//! Local-files storages and the storage proxy end to end: a directory under the root becomes
//! tasks by a sync job (incrementally), a member resolves a task's media to a signed link and
//! the proxy serves its bytes (ranges, HEAD, validators); outsiders, expired, changed and
//! foreign links, paths leaving the root and a server without a root are refused. The last
//! test runs the real `verity storage-proxy` binary next to the app.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use base64::Engine;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use verity_controlplane::authz::Role;
use verity_controlplane::links::{Link, LinkSigner, unix_now};

use crate::common::{Backend, Reply, TestApp};
use crate::webhooks::start_worker;

const IMAGE_CONFIG: &str = r#"<View><Image name="img" value="$image"/><Choices name="c" toName="img"><Choice value="cat"/><Choice value="dog"/></Choices></View>"#;

const SESSION_KEY: &str = "storage-proxy-test-session-key-0123456789abcdef";

/// The bytes of a test object: every byte value, repeated.
fn object_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// A media tree: `root/images/{a.jpg,b.png,notes.txt}`, `root/other/secret.jpg`,
/// `root/json/tasks.json`, and `outside/private.jpg` next to the root.
fn media_tree(base: &Path) -> PathBuf {
    let root = base.join("root");
    for d in ["images", "other", "json"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::create_dir_all(base.join("outside")).expect("mkdir");
    std::fs::write(root.join("images/a.jpg"), object_bytes(1000)).expect("write");
    std::fs::write(root.join("images/b.png"), object_bytes(10)).expect("write");
    std::fs::write(root.join("images/notes.txt"), "not an image").expect("write");
    std::fs::write(root.join("other/secret.jpg"), "secret").expect("write");
    std::fs::write(base.join("outside/private.jpg"), "private").expect("write");
    std::fs::write(
        root.join("json/tasks.json"),
        json!([{"image": "https://example.com/1.jpg"}, {"data": {"image": "https://example.com/2.jpg"}}]).to_string(),
    )
    .expect("write");
    root
}

async fn app_with_root(backend: Backend, root: &Path, proxy_url: Option<String>) -> TestApp {
    let root = root.display().to_string();
    TestApp::with_config(backend, move |c| {
        c.local_files_root = root;
        c.session_key = SESSION_KEY.into();
        if let Some(url) = proxy_url {
            c.storage_proxy_url = url;
        }
    })
    .await
}

async fn wait_sync(app: &TestApp, storage: i64) -> Value {
    app.wait_storage_sync(&format!("/api/storages/localfiles/{storage}"), 500)
        .await
}

async fn sync(app: &TestApp, storage: i64) -> Value {
    let queued = app
        .post(
            &format!("/api/storages/localfiles/{storage}/sync"),
            &app.owner,
            json!({}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(queued["status"], json!("queued"), "{queued}");
    assert!(queued["last_sync_job"].is_string(), "{queued}");
    wait_sync(app, storage).await
}

async fn tasks(app: &TestApp, p: i64) -> Vec<Value> {
    app.get(&format!("/api/tasks?project={p}&page_size=100"), &app.owner)
        .await
        .expect(StatusCode::OK)["tasks"]
        .as_array()
        .expect("tasks")
        .clone()
}

fn fileuri(uri: &str) -> String {
    base64::engine::general_purpose::URL_SAFE.encode(uri)
}

fn location(reply: &Reply) -> String {
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    reply
        .headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("location")
        .to_string()
}

/// Fetches a proxy path from the in-process app, without credentials.
async fn fetch(app: &TestApp, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut builder = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    app.send(builder.body(Body::empty()).expect("request"))
        .await
}

fn header<'a>(reply: &'a Reply, name: &str) -> &'a str {
    reply
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

async fn local_files_storage(backend: Backend) {
    let base = tempfile::tempdir().expect("tempdir");
    let root = media_tree(base.path());
    let app = app_with_root(backend, &root, None).await;
    let _worker = start_worker(&app);
    let p = app
        .mk_project(&app.owner, json!({"label_config": IMAGE_CONFIG}))
        .await;
    let images = root.join("images").display().to_string();

    // Paths must stay under the root: .., absolute paths elsewhere and symbolic links out.
    app.post(
        "/api/storages/localfiles/validate",
        &app.owner,
        json!({"project": p, "path": images}),
    )
    .await
    .expect(StatusCode::OK);
    for path in [
        format!("{images}/../.."),
        "/etc".to_string(),
        base.path().join("outside").display().to_string(),
    ] {
        app.post(
            "/api/storages/localfiles/validate",
            &app.owner,
            json!({"project": p, "path": path}),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "path_not_allowed");
        app.post(
            "/api/storages/localfiles",
            &app.owner,
            json!({"project": p, "path": path}),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "path_not_allowed");
    }
    std::os::unix::fs::symlink(base.path().join("outside"), root.join("escape")).expect("link");
    app.post(
        "/api/storages/localfiles",
        &app.owner,
        json!({"project": p, "path": root.join("escape").display().to_string()}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "path_not_allowed");
    // A symbolic link inside the storage that points out of it is never listed or served.
    std::os::unix::fs::symlink(
        base.path().join("outside/private.jpg"),
        root.join("images/private.jpg"),
    )
    .expect("link");
    app.post(
        "/api/storages/localfiles",
        &app.owner,
        json!({"project": p, "path": images, "regex_filter": "[", "use_blob_urls": true}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    assert_eq!(
        app.get(&format!("/api/storages/localfiles?project={p}"), &app.owner)
            .await
            .expect(StatusCode::OK),
        json!([]),
        "refused bodies stored nothing"
    );

    let storage = app
        .post(
            "/api/storages/localfiles",
            &app.owner,
            json!({"project": p, "path": images, "regex_filter": ".*\\.(jpg|png)$", "use_blob_urls": true, "title": "Images"}),
        )
        .await
        .expect(StatusCode::CREATED);
    let s = storage["id"].as_i64().expect("id");
    assert_eq!(storage["type"], json!("localfiles"));
    assert_eq!(storage["status"], json!("initialized"));
    assert_eq!(storage["regex_filter"], json!(".*\\.(jpg|png)$"));
    let listed = app
        .get(&format!("/api/storages/localfiles?project={p}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    app.patch(
        &format!("/api/storages/localfiles/{s}"),
        &app.owner,
        json!({"description": "camera roll"}),
    )
    .await
    .expect(StatusCode::OK);

    // Sync: each matching file becomes one task carrying its URL.
    let done = sync(&app, s).await;
    assert_eq!(done["status"], json!("completed"), "{done}");
    assert_eq!(done["last_sync_count"], json!(2), "{done}");
    assert!(done["last_sync"].is_string());
    let all = tasks(&app, p).await;
    let mut urls: Vec<String> = all
        .iter()
        .map(|t| t["data"]["image"].as_str().unwrap_or_default().to_string())
        .collect();
    urls.sort();
    assert_eq!(
        urls,
        vec![
            "/data/local-files/?d=images/a.jpg".to_string(),
            "/data/local-files/?d=images/b.png".to_string()
        ]
    );
    // A re-sync imports only new files.
    std::fs::write(root.join("images/c.jpg"), b"third").expect("write");
    let again = sync(&app, s).await;
    assert_eq!(again["last_sync_count"], json!(1), "{again}");
    assert_eq!(tasks(&app, p).await.len(), 3);
    let idle = sync(&app, s).await;
    assert_eq!(idle["last_sync_count"], json!(0), "{idle}");
    assert_eq!(tasks(&app, p).await.len(), 3);

    // JSON files of tasks (use_blob_urls = false), incrementally too.
    let js = app
        .post(
            "/api/storages/localfiles",
            &app.owner,
            json!({"project": p, "path": root.join("json").display().to_string()}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("id");
    assert_eq!(sync(&app, js).await["last_sync_count"], json!(2));
    assert_eq!(sync(&app, js).await["last_sync_count"], json!(0));
    assert_eq!(tasks(&app, p).await.len(), 5);
    std::fs::write(root.join("json/broken.json"), "{not json").expect("write");
    let failed = sync(&app, js).await;
    assert_eq!(failed["status"], json!("failed"), "{failed}");
    assert!(
        failed["traceback"]
            .as_str()
            .is_some_and(|t| t.contains("broken.json")),
        "{failed}"
    );
    assert_eq!(tasks(&app, p).await.len(), 5, "a failed sync adds nothing");

    // A member resolves a task's media: a redirect to a signed link; the proxy serves it.
    let annotator = app.user("ann@example.com", Role::Annotator).await;
    app.add_member(p, &annotator, None).await;
    let task_a = all
        .iter()
        .find(|t| t["data"]["image"] == json!("/data/local-files/?d=images/a.jpg"))
        .expect("task of a.jpg")["id"]
        .as_i64()
        .expect("id");
    let presign = format!(
        "/api/tasks/{task_a}/presign?fileuri={}",
        fileuri("/data/local-files/?d=images/a.jpg")
    );
    let link = location(&app.get(&presign, &annotator).await);
    assert!(link.starts_with("/storage-proxy/"), "{link}");
    let got = fetch(&app, "GET", &link, &[]).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text);
    let body = got_bytes(&app, &link, &[]).await;
    assert_eq!(body, object_bytes(1000));
    assert_eq!(header(&got, "content-type"), "image/jpeg");
    assert_eq!(header(&got, "content-length"), "1000");
    assert_eq!(header(&got, "accept-ranges"), "bytes");
    assert!(!header(&got, "last-modified").is_empty());
    let max_age: i64 = header(&got, "cache-control")
        .strip_prefix("private, max-age=")
        .and_then(|s| s.parse().ok())
        .expect("private cache lifetime");
    assert!((1..=300).contains(&max_age), "{max_age}");
    let etag = header(&got, "etag").to_string();
    assert!(!etag.is_empty());
    // Byte ranges, HEAD, validators.
    let part = fetch(&app, "GET", &link, &[("range", "bytes=10-19")]).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&part, "content-range"), "bytes 10-19/1000");
    assert_eq!(header(&part, "content-length"), "10");
    assert_eq!(
        got_bytes(&app, &link, &[("range", "bytes=10-19")]).await,
        object_bytes(1000)[10..20].to_vec()
    );
    assert_eq!(
        got_bytes(&app, &link, &[("range", "bytes=-5")]).await,
        object_bytes(1000)[995..].to_vec()
    );
    let unsatisfiable = fetch(&app, "GET", &link, &[("range", "bytes=5000-")]).await;
    assert_eq!(header(&unsatisfiable, "content-range"), "bytes */1000");
    unsatisfiable.expect_error(StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable");
    let head = fetch(&app, "HEAD", &link, &[]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(header(&head, "content-length"), "1000");
    assert!(head.text.is_empty());
    let cached = fetch(&app, "GET", &link, &[("if-none-match", &etag)]).await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    // Label Studio's /data/local-files/ URL, for a caller who can see a covering storage.
    let link_b = location(
        &app.get("/data/local-files/?d=images/b.png", &annotator)
            .await,
    );
    assert_eq!(got_bytes(&app, &link_b, &[]).await, object_bytes(10));

    // Outsiders: an annotator of no project, the owner of another organization.
    let stranger = app.user("stranger@example.com", Role::Annotator).await;
    app.get(&presign, &stranger)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    app.get("/data/local-files/?d=images/a.jpg", &stranger)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    let (other_org, other_owner) = app.other_org("Other", "other@example.com").await;
    app.get(&presign, &other_owner)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.get("/data/local-files/?d=images/a.jpg", &other_owner)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    // Files no storage covers, outside the root, or through a link out of the storage.
    for d in [
        "other/secret.jpg",
        "../outside/private.jpg",
        "images/private.jpg",
        "images/missing.jpg",
    ] {
        app.get(&format!("/data/local-files/?d={d}"), &app.owner)
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
    }
    app.get(
        &format!(
            "/api/tasks/{task_a}/presign?fileuri={}",
            fileuri("/data/local-files/?d=other/secret.jpg")
        ),
        &app.owner,
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_query");

    // Changed, expired and foreign links.
    let token = link.trim_start_matches("/storage-proxy/");
    let (payload, tag) = token.rsplit_once('.').expect("tag");
    let mut chars: Vec<char> = payload.chars().collect();
    let last = chars.len() - 1;
    chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    fetch(
        &app,
        "GET",
        &format!("/storage-proxy/{tampered}.{tag}"),
        &[],
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "invalid_link");
    let signer = LinkSigner::for_config(&app.config).expect("signer");
    let good = Link {
        organization: app.org,
        project: p,
        task: Some(task_a),
        kind: "localfiles".into(),
        storage: s,
        key: "a.jpg".into(),
        expires: unix_now() + 60,
        user: 0,
    };
    fetch(
        &app,
        "GET",
        &format!("/storage-proxy/{}", signer.sign(&good)),
        &[],
    )
    .await
    .expect(StatusCode::OK);
    let expired = Link {
        expires: unix_now() - 1,
        ..good.clone()
    };
    fetch(
        &app,
        "GET",
        &format!("/storage-proxy/{}", signer.sign(&expired)),
        &[],
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "link_expired");
    let foreign = Link {
        organization: other_org,
        ..good.clone()
    };
    fetch(
        &app,
        "GET",
        &format!("/storage-proxy/{}", signer.sign(&foreign)),
        &[],
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "invalid_link");
    let other_key = LinkSigner::from_material(b"some other deployment's session key material");
    fetch(
        &app,
        "GET",
        &format!("/storage-proxy/{}", other_key.sign(&good)),
        &[],
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "invalid_link");
    let escaping = Link {
        key: "../other/secret.jpg".into(),
        ..good.clone()
    };
    let refused = fetch(
        &app,
        "GET",
        &format!("/storage-proxy/{}", signer.sign(&escaping)),
        &[],
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    // Deleting the storage ends its links (its tasks stay).
    app.delete(&format!("/api/storages/localfiles/{s}"), &app.owner)
        .await
        .expect(StatusCode::NO_CONTENT);
    fetch(&app, "GET", &link, &[])
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(tasks(&app, p).await.len(), 5);
    // The proxy's metrics count outcomes and bytes.
    let metrics = fetch(&app, "GET", "/metrics", &[]).await.text;
    assert!(
        metrics.contains("verity_storage_proxy_requests_total{outcome=\"partial\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("verity_storage_proxy_bytes_total"));
    let audited: Vec<String> = app
        .audit_actions(app.org)
        .await
        .into_iter()
        .map(|(action, _, _)| action)
        .collect();
    for action in [
        "storage.create",
        "storage.update",
        "storage.sync",
        "storage.delete",
    ] {
        assert!(audited.iter().any(|a| a == action), "{action} not audited");
    }
}

/// The body of a GET of a proxy path.
async fn got_bytes(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut builder = Request::builder().method("GET").uri(path);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let response = app
        .service
        .clone()
        .oneshot(builder.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    assert!(response.status().is_success(), "{}", response.status());
    response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_files_storage_sqlite() {
    local_files_storage(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_files_storage_postgres() {
    local_files_storage(Backend::Postgres).await;
}

/// Without `local_files_root` local storages are refused with a code of their own.
async fn local_files_need_a_root(backend: Backend) {
    let app = TestApp::new(backend).await;
    let p = app.mk_project(&app.owner, json!({})).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let body = json!({"project": p, "path": dir.path().display().to_string()});
    app.post("/api/storages/localfiles", &app.owner, body.clone())
        .await
        .expect_error(StatusCode::BAD_REQUEST, "local_files_disabled");
    app.post("/api/storages/localfiles/validate", &app.owner, body)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "local_files_disabled");
    app.get("/data/local-files/?d=a.jpg", &app.owner)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "local_files_disabled");
    // Managing storages is the project manager's: an annotator is refused before anything.
    let annotator = app.user("ann@example.com", Role::Annotator).await;
    app.add_member(p, &annotator, None).await;
    app.post(
        "/api/storages/localfiles",
        &annotator,
        json!({"project": p, "path": "/tmp"}),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_files_need_a_root_sqlite() {
    local_files_need_a_root(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_files_need_a_root_postgres() {
    local_files_need_a_root(Backend::Postgres).await;
}

struct ProxyProcess(std::process::Child);

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real `verity storage-proxy` next to the app: probes answer, and a link the app issued
/// (to the proxy's public URL) is served by the separate process sharing the session key.
async fn separate_proxy_process(backend: Backend) {
    let base = tempfile::tempdir().expect("tempdir");
    let root = media_tree(base.path());
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let proxy_url = format!("http://127.0.0.1:{port}");
    let app = app_with_root(backend, &root, Some(proxy_url.clone())).await;
    let _worker = start_worker(&app);
    let p = app
        .mk_project(&app.owner, json!({"label_config": IMAGE_CONFIG}))
        .await;
    let s = app
        .post(
            "/api/storages/localfiles",
            &app.owner,
            json!({"project": p, "path": "images", "regex_filter": "a\\.jpg$", "use_blob_urls": true}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("id");
    assert_eq!(sync(&app, s).await["last_sync_count"], json!(1));
    let proxy_data = base.path().join("proxy-data");
    std::fs::create_dir_all(&proxy_data).expect("mkdir");
    let _proxy = ProxyProcess(
        std::process::Command::new(env!("CARGO_BIN_EXE_verity"))
            .arg("storage-proxy")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("VERITY_DATABASE_URL", &app.config.database_url)
            .env("VERITY_SESSION_KEY", SESSION_KEY)
            .env("VERITY_DATA_DIR", &proxy_data)
            .env("VERITY_LOCAL_FILES_ROOT", &root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start verity storage-proxy"),
    );
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut ready = false;
    for _ in 0..300 {
        if client
            .get(format!("{proxy_url}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "verity storage-proxy did not become ready");
    let live = client
        .get(format!("{proxy_url}/livez"))
        .send()
        .await
        .expect("livez");
    assert_eq!(live.status(), StatusCode::OK);
    let link = location(
        &app.get("/data/local-files/?d=images/a.jpg", &app.owner)
            .await,
    );
    assert!(
        link.starts_with(&format!("{proxy_url}/storage-proxy/")),
        "{link}"
    );
    let got = client.get(&link).send().await.expect("get");
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(
        got.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/jpeg")
    );
    assert_eq!(
        got.bytes().await.expect("bytes").to_vec(),
        object_bytes(1000)
    );
    let part = client
        .get(&link)
        .header("range", "bytes=100-199")
        .send()
        .await
        .expect("range");
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        part.bytes().await.expect("bytes").to_vec(),
        object_bytes(1000)[100..200].to_vec()
    );
    let head = client.head(&link).send().await.expect("head");
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        head.headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()),
        Some("1000")
    );
    // A changed link is refused by the proxy in the stable envelope.
    let refused = client
        .get(format!("{link}x"))
        .send()
        .await
        .expect("tampered");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["code"], json!("invalid_link"), "{body}");
    let metrics = client
        .get(format!("{proxy_url}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("verity_storage_proxy_requests_total{outcome=\"served\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("verity_storage_proxy_bytes_total 1100"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn separate_proxy_process_sqlite() {
    separate_proxy_process(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn separate_proxy_process_postgres() {
    separate_proxy_process(Backend::Postgres).await;
}

/// Objects over `storage_proxy_max_bytes` are refused whole with a code that says to read
/// ranges; ranges within the limit are served.
async fn proxy_size_limit(backend: Backend) {
    let base = tempfile::tempdir().expect("tempdir");
    let root = media_tree(base.path()).display().to_string();
    let app = TestApp::with_config(backend, move |c| {
        c.local_files_root = root;
        c.storage_proxy_max_bytes = 100;
    })
    .await;
    let p = app
        .mk_project(&app.owner, json!({"label_config": IMAGE_CONFIG}))
        .await;
    app.post(
        "/api/storages/localfiles",
        &app.owner,
        json!({"project": p, "path": "images", "use_blob_urls": true}),
    )
    .await
    .expect(StatusCode::CREATED);
    let link = location(
        &app.get("/data/local-files/?d=images/a.jpg", &app.owner)
            .await,
    );
    let refused = fetch(&app, "GET", &link, &[]).await;
    assert!(
        refused.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("storage_proxy_max_bytes")),
        "{}",
        refused.text
    );
    refused.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "object_too_large");
    fetch(&app, "GET", &link, &[("range", "bytes=0-199")])
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "object_too_large");
    assert_eq!(
        got_bytes(&app, &link, &[("range", "bytes=900-999")]).await,
        object_bytes(1000)[900..].to_vec()
    );
    // The small file fits whole.
    let small = location(
        &app.get("/data/local-files/?d=images/b.png", &app.owner)
            .await,
    );
    assert_eq!(got_bytes(&app, &small, &[]).await, object_bytes(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proxy_size_limit_sqlite() {
    proxy_size_limit(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proxy_size_limit_postgres() {
    proxy_size_limit(Backend::Postgres).await;
}

async fn wait_storage(app: &TestApp, path: &str) -> Value {
    for _ in 0..500 {
        let s = app.get(path, &app.owner).await.expect(StatusCode::OK);
        if s["status"] == json!("completed") || s["status"] == json!("failed") {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last = app.get(path, &app.owner).await.body;
    let job = app
        .get(
            &format!(
                "/api/jobs/{}",
                last["last_sync_job"].as_str().unwrap_or_default()
            ),
            &app.owner,
        )
        .await
        .text;
    panic!("the sync of {path} did not end: {last} job {job}");
}

/// Export (target) storage: a sync writes every annotation of the project as `<annotation id>`
/// under the directory; it is a storage of its own kind, under the same root rules.
async fn local_files_export_storage(backend: Backend) {
    let base = tempfile::tempdir().expect("tempdir");
    let root = media_tree(base.path());
    std::fs::create_dir_all(root.join("out")).expect("mkdir");
    let app = app_with_root(backend, &root, None).await;
    let _worker = start_worker(&app);
    let p = app.mk_project(&app.owner, json!({})).await;
    let t = app.mk_tasks(&app.owner, p, 2).await;
    let a1 = app
        .post(
            &format!("/api/tasks/{}/annotations", t[0]),
            &app.owner,
            json!({"result": crate::common::choice("pos")}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("id");
    app.post(
        "/api/storages/export/localfiles",
        &app.owner,
        json!({"project": p, "path": base.path().join("outside").display().to_string()}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "path_not_allowed");
    let created = app
        .post(
            "/api/storages/export/localfiles",
            &app.owner,
            json!({"project": p, "path": "out", "title": "Annotations"}),
        )
        .await
        .expect(StatusCode::CREATED);
    let e = created["id"].as_i64().expect("id");
    assert_eq!(created["can_delete_objects"], json!(false));
    // Import and export storages are apart.
    assert_eq!(
        app.get(&format!("/api/storages/localfiles?project={p}"), &app.owner)
            .await
            .expect(StatusCode::OK),
        json!([])
    );
    app.get(&format!("/api/storages/localfiles/{e}"), &app.owner)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    // Syncing is the manager's.
    let annotator = app.user("ann@example.com", Role::Annotator).await;
    app.add_member(p, &annotator, None).await;
    app.post(
        &format!("/api/storages/export/localfiles/{e}/sync"),
        &annotator,
        json!({}),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "forbidden");
    let path = format!("/api/storages/export/localfiles/{e}");
    app.post(&format!("{path}/sync"), &app.owner, json!({}))
        .await
        .expect(StatusCode::OK);
    let done = wait_storage(&app, &path).await;
    assert_eq!(done["status"], json!("completed"), "{done}");
    assert_eq!(done["last_sync_count"], json!(1), "{done}");
    let written: Value = serde_json::from_slice(
        &std::fs::read(root.join("out").join(a1.to_string())).expect("the annotation's file"),
    )
    .expect("json");
    assert_eq!(written["id"], json!(a1));
    assert_eq!(written["result"], crate::common::choice("pos"));
    assert_eq!(written["task"]["id"], json!(t[0]));
    assert_eq!(written["task"]["data"]["text"], json!("task 0"));
    let a2 = app
        .post(
            &format!("/api/tasks/{}/annotations", t[1]),
            &app.owner,
            json!({"result": crate::common::choice("neg")}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("id");
    app.post(&format!("{path}/sync"), &app.owner, json!({}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(wait_storage(&app, &path).await["last_sync_count"], json!(2));
    assert!(root.join("out").join(a2.to_string()).is_file());
    let mut names: Vec<String> = std::fs::read_dir(root.join("out"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    let mut want = vec![a1.to_string(), a2.to_string()];
    want.sort();
    assert_eq!(names, want, "no temporary files left behind");
    app.delete(&path, &app.owner)
        .await
        .expect(StatusCode::NO_CONTENT);
    assert!(
        root.join("out").join(a1.to_string()).is_file(),
        "files stay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_files_export_storage_sqlite() {
    local_files_export_storage(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_files_export_storage_postgres() {
    local_files_export_storage(Backend::Postgres).await;
}

/// S3 storages refuse bad settings before touching a bucket, refuse private endpoints unless
/// the administrator allows them, and report a bucket that does not answer; nothing is stored
/// when a check fails. (Syncs, media and export against a real S3 server: e2e/sdk/test_storage_s3.py.)
async fn s3_storage_checks(backend: Backend) {
    let app = TestApp::new(backend).await;
    let p = app.mk_project(&app.owner, json!({})).await;
    let base = json!({"project": p, "bucket": "media", "s3_endpoint": "http://127.0.0.1:9"});
    for path in [
        "/api/storages/s3",
        "/api/storages/s3/validate",
        "/api/storages/export/s3",
    ] {
        app.post(path, &app.owner, base.clone())
            .await
            .expect_error(StatusCode::BAD_REQUEST, "private_target");
    }
    // No endpoint (AWS): every case below fails its checks before any request is made.
    let with = |extra: Value| {
        let mut body = json!({"project": p, "bucket": "media"});
        body.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        body
    };
    for (bad, field) in [
        (json!({"bucket": "Not_A_Bucket"}), "bucket"),
        (json!({"presign_ttl": 0}), "presign_ttl"),
        (
            json!({"aws_access_key_id": "AKIAONLYTHEKEY"}),
            "aws_secret_access_key",
        ),
        (json!({"regex_filter": "("}), "regex_filter"),
        (json!({"s3_endpoint": "ftp://example.com"}), "s3_endpoint"),
    ] {
        let reply = app
            .post("/api/storages/s3", &app.owner, with(bad.clone()))
            .await;
        let body = reply.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        assert!(
            body["validation_errors"].get(field).is_some(),
            "{bad}: {body}"
        );
    }
    // Managing storages is the project manager's.
    let annotator = app.user("ann@example.com", Role::Annotator).await;
    app.add_member(p, &annotator, None).await;
    app.post("/api/storages/s3", &annotator, base.clone())
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    let listed = app
        .get(&format!("/api/storages/s3?project={p}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed, json!([]));
    app.get("/api/storages/s3/1", &app.owner)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");

    // Allowed, but nothing listens there: the bucket is unreachable and nothing is stored.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let allowed =
        TestApp::with_config(backend, |c| c.allow_private_targets = "127.0.0.1".into()).await;
    let p2 = allowed.mk_project(&allowed.owner, json!({})).await;
    let body = json!({"project": p2, "bucket": "media", "s3_endpoint": format!("http://127.0.0.1:{port}"),
        "aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": "secret"});
    for path in ["/api/storages/s3", "/api/storages/s3/validate"] {
        let reply = allowed.post(path, &allowed.owner, body.clone()).await;
        let err = reply.expect_error(StatusCode::BAD_REQUEST, "storage_unreachable");
        assert!(
            err["detail"].as_str().is_some_and(|d| d.contains("media")),
            "{err}"
        );
        assert!(!err.to_string().contains("secret\""), "{err}");
    }
    let listed = allowed
        .get(&format!("/api/storages/s3?project={p2}"), &allowed.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_storage_checks_sqlite() {
    s3_storage_checks(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_storage_checks_postgres() {
    s3_storage_checks(Backend::Postgres).await;
}

/// GCS and Azure storages check their own fields before touching a bucket (a service-account
/// key that does not parse, an unusable account key, bad bucket/container and account names,
/// private endpoints) and report an endpoint that does not answer; nothing is stored when a
/// check fails. (Syncs, media and export against the emulators: e2e/sdk/test_storage_gcs.py and
/// test_storage_azure.py.)
async fn gcs_and_azure_storage_checks(backend: Backend) {
    let app = TestApp::new(backend).await;
    let p = app.mk_project(&app.owner, json!({})).await;
    let with = |base: Value, extra: Value| {
        let mut body = base;
        body.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        body
    };
    let gcs = json!({"project": p, "bucket": "media"});
    let azure = json!({"project": p, "container": "media", "account_name": "devstoreaccount1"});
    // Private endpoints are refused like s3_endpoint, on every route that takes a body.
    for (path, body) in [
        (
            "/api/storages/gcs",
            with(gcs.clone(), json!({"gcs_endpoint": "http://127.0.0.1:9"})),
        ),
        (
            "/api/storages/gcs/validate",
            with(gcs.clone(), json!({"gcs_endpoint": "http://10.1.2.3"})),
        ),
        (
            "/api/storages/export/gcs",
            with(gcs.clone(), json!({"gcs_endpoint": "http://[::1]:9"})),
        ),
        (
            "/api/storages/azure",
            with(
                azure.clone(),
                json!({"azure_endpoint": "http://127.0.0.1:9/devstoreaccount1"}),
            ),
        ),
        (
            "/api/storages/export/azure/validate",
            with(
                azure.clone(),
                json!({"azure_endpoint": "http://169.254.169.254/x"}),
            ),
        ),
    ] {
        let err = app
            .post(path, &app.owner, body)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "private_target");
        assert!(err.to_string().contains("endpoint"), "{path}: {err}");
    }
    let key_pem = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";
    for (base, bad, field) in [
        (
            &gcs,
            json!({"google_application_credentials": "{not json"}),
            "google_application_credentials",
        ),
        (
            &gcs,
            json!({"google_application_credentials": "[1, 2]"}),
            "google_application_credentials",
        ),
        (
            &gcs,
            json!({"google_application_credentials": {"type": "authorized_user", "client_email": "a@b", "private_key": key_pem}}),
            "google_application_credentials",
        ),
        (
            &gcs,
            json!({"google_application_credentials": {"private_key": key_pem}}),
            "google_application_credentials",
        ),
        (
            &gcs,
            json!({"google_application_credentials": 7}),
            "google_application_credentials",
        ),
        (&gcs, json!({"bucket": "Not A Bucket"}), "bucket"),
        (&gcs, json!({"presign_ttl": 20000}), "presign_ttl"),
        (
            &gcs,
            json!({"gcs_endpoint": "ftp://example.com"}),
            "gcs_endpoint",
        ),
        (&azure, json!({"container": "two--hyphens"}), "container"),
        (&azure, json!({"account_name": "Has_Upper"}), "account_name"),
        (&azure, json!({"account_name": null}), "account_name"),
        (&azure, json!({"regex_filter": "("}), "regex_filter"),
    ] {
        let mut body = with(base.clone(), bad.clone());
        if bad.get("account_name") == Some(&Value::Null) {
            body.as_object_mut().expect("object").remove("account_name");
        }
        let path = if base.get("container").is_some() {
            "/api/storages/azure"
        } else {
            "/api/storages/gcs"
        };
        let reply = app.post(path, &app.owner, body).await;
        let err = reply.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        assert!(
            err["validation_errors"].get(field).is_some(),
            "{bad}: {err}"
        );
    }
    // A key whose PEM does not hold a usable private key, and an account key that is not
    // base64: refused on their field when the client is built, before any request.
    let allowed =
        TestApp::with_config(backend, |c| c.allow_private_targets = "127.0.0.1".into()).await;
    let p2 = allowed.mk_project(&allowed.owner, json!({})).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let gcs2 = json!({"project": p2, "bucket": "media", "gcs_endpoint": format!("http://127.0.0.1:{port}")});
    let azure2 = json!({"project": p2, "container": "media", "account_name": "devstoreaccount1",
        "azure_endpoint": format!("http://127.0.0.1:{port}/devstoreaccount1")});
    let err = allowed
        .post(
            "/api/storages/gcs",
            &allowed.owner,
            with(
                gcs2.clone(),
                json!({"google_application_credentials": json!({"type": "service_account", "client_email": "a@b.iam", "private_key": key_pem}).to_string()}),
            ),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    assert!(
        err["validation_errors"]
            .get("google_application_credentials")
            .is_some(),
        "{err}"
    );
    let err = allowed
        .post(
            "/api/storages/azure",
            &allowed.owner,
            with(azure2.clone(), json!({"account_key": "not base64 !!"})),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    assert!(
        err["validation_errors"].get("account_key").is_some(),
        "{err}"
    );
    // Well-formed, but nothing listens there: unreachable, nothing stored, no secret echoed.
    for (path, body) in [
        ("/api/storages/gcs", gcs2.clone()),
        ("/api/storages/gcs/validate", gcs2.clone()),
        (
            "/api/storages/azure",
            with(
                azure2.clone(),
                json!({"account_key": "c2VjcmV0LWtleS12YWx1ZQ=="}),
            ),
        ),
        ("/api/storages/export/azure/validate", azure2.clone()),
    ] {
        let err = allowed
            .post(path, &allowed.owner, body)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "storage_unreachable");
        assert!(
            err["detail"].as_str().is_some_and(|d| d.contains("media")),
            "{err}"
        );
        assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
    }
    for path in ["/api/storages/gcs", "/api/storages/azure", "/api/storages"] {
        let listed = allowed
            .get(&format!("{path}?project={p2}"), &allowed.owner)
            .await
            .expect(StatusCode::OK);
        assert_eq!(listed, json!([]), "{path}");
    }
    // Managing storages is the project manager's.
    let annotator = app.user("ann@example.com", Role::Annotator).await;
    app.add_member(p, &annotator, None).await;
    app.post("/api/storages/gcs", &annotator, gcs.clone())
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    app.post("/api/storages/azure", &annotator, azure.clone())
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gcs_and_azure_storage_checks_sqlite() {
    gcs_and_azure_storage_checks(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gcs_and_azure_storage_checks_postgres() {
    gcs_and_azure_storage_checks(Backend::Postgres).await;
}

/// `/api/storages/types` and `/api/storages/export/types` name every type; `/api/storages?project=`
/// and `/api/storages/export?project=` list every storage of a project with its `type` and its
/// type's fields (never a credential), each direction apart, for project managers only; a GCS
/// storage is not found under the Azure or S3 routes.
async fn storage_types_and_listing(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = media_tree(dir.path());
    let app = app_with_root(backend, &root, None).await;
    let p = app.mk_project(&app.owner, json!({})).await;
    let annotator = app.user("ann@example.com", Role::Annotator).await;
    app.add_member(p, &annotator, None).await;
    let expected = json!([
        {"name": "localfiles", "title": "Local files"},
        {"name": "s3", "title": "AWS S3"},
        {"name": "s3s", "title": "AWS S3 (IAM role)"},
        {"name": "gcs", "title": "Google Cloud Storage"},
        {"name": "azure", "title": "Microsoft Azure"},
        {"name": "azure_spi", "title": "Microsoft Azure (service principal)"},
    ]);
    for path in ["/api/storages/types", "/api/storages/export/types/"] {
        for who in [&app.owner, &annotator] {
            assert_eq!(app.get(path, who).await.expect(StatusCode::OK), expected);
        }
    }
    let local = app
        .post(
            "/api/storages/localfiles",
            &app.owner,
            json!({"project": p, "path": "images"}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .clone();
    // Bucket storages need a bucket that answers to be created; the listing is about what is
    // stored, so the rows are written directly (sealed credential columns hold a marker).
    for (provider, direction, bucket) in [
        ("azure", "import", "box"),
        ("s3", "import", "pics"),
        ("gcs", "import", "gpics"),
        ("gcs", "export", "gout"),
    ] {
        app.sql(&format!(
            "insert into cloud_storage (organization_id, project_id, provider, direction, bucket, account_name, \
             google_application_credentials, account_key, aws_access_key_id, aws_secret_access_key, created_at, updated_at) \
             select organization_id, id, '{provider}', '{direction}', '{bucket}', 'acct', 'sealed-secret', \
             'sealed-secret', 'sealed-secret', 'sealed-secret', 0, 0 from project where id = {p}"
        ))
        .await
        .expect("insert");
    }
    let all = app
        .get(&format!("/api/storages/?project={p}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    let types: Vec<&str> = all
        .as_array()
        .expect("list")
        .iter()
        .map(|s| s["type"].as_str().expect("type"))
        .collect();
    assert_eq!(types, ["localfiles", "s3", "gcs", "azure"], "{all}");
    assert_eq!(all[0]["id"], local);
    assert_eq!(all[1]["bucket"], "pics");
    assert_eq!(all[2]["bucket"], "gpics");
    assert_eq!(all[2]["has_credentials"], true);
    assert_eq!(all[3]["container"], "box");
    assert_eq!(all[3]["account_name"], "acct");
    assert!(!all.to_string().contains("sealed-secret"), "{all}");
    let exports = app
        .get(&format!("/api/storages/export?project={p}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(exports.as_array().map(Vec::len), Some(1), "{exports}");
    assert_eq!(exports[0]["type"], "gcs");
    assert_eq!(exports[0]["bucket"], "gout");
    // Each type's routes find only their own storages.
    let gcs_id = all[2]["id"].as_i64().expect("id");
    app.get(&format!("/api/storages/gcs/{gcs_id}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    for other in ["azure", "s3", "export/gcs"] {
        app.get(&format!("/api/storages/{other}/{gcs_id}"), &app.owner)
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
    }
    let gcs_list = app
        .get(&format!("/api/storages/gcs?project={p}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(gcs_list.as_array().map(Vec::len), Some(1));
    // The project is required; annotators may not list storages.
    app.get("/api/storages", &app.owner)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
    app.get(&format!("/api/storages?project={p}"), &annotator)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    // A PATCH of a field that is not the connection needs no bucket; deleting forgets it.
    let renamed = app
        .patch(
            &format!("/api/storages/gcs/{gcs_id}"),
            &app.owner,
            json!({"title": "renamed", "google_project_id": "proj-1"}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(renamed["title"], "renamed");
    assert_eq!(renamed["google_project_id"], "proj-1");
    app.delete(&format!("/api/storages/gcs/{gcs_id}"), &app.owner)
        .await
        .expect(StatusCode::NO_CONTENT);
    let after = app
        .get(&format!("/api/storages?project={p}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(after.as_array().map(Vec::len), Some(3), "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_types_and_listing_sqlite() {
    storage_types_and_listing(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_types_and_listing_postgres() {
    storage_types_and_listing(Backend::Postgres).await;
}
