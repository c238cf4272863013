//! Uploaded files kept as Label Studio keeps them (ADR 0032): media files of a multipart
//! import become tasks pointing at `/data/upload/...`, served only to who may view the
//! project; the upload list and deletion; size limits leave nothing behind; import from a URL
//! under the outbound rules; `preannotated_from_fields`.

use std::net::SocketAddr;

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::both_backends;
use crate::common::{Backend, TestApp};

const IMAGE_CONFIG: &str = r#"<View><Image name="image" value="$image"/><Choices name="kind" toName="image"><Choice value="cat"/><Choice value="dog"/></Choices></View>"#;

/// Bytes that are not UTF-8, so the comparison is of bytes.
fn png_bytes(seed: u8, len: usize) -> Vec<u8> {
    let mut v = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    v.extend((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    v
}

/// A multipart body of `(file name, bytes)` parts named `file`.
fn multipart(files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "verityUploadBoundary7d1";
    let mut body = Vec::new();
    for (name, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn upload(
    app: &TestApp,
    token: &str,
    path: &str,
    files: &[(&str, &[u8])],
) -> crate::common::Reply {
    let (content_type, body) = multipart(files);
    app.post_raw(path, token, &content_type, body).await
}

/// A raw GET: status, headers and body bytes.
async fn get_bytes(
    app: &TestApp,
    path: &str,
    token: &str,
) -> (StatusCode, http::HeaderMap, Vec<u8>) {
    request_bytes(app, "GET", path, token, &[]).await
}

/// A raw request with extra headers: status, headers and body bytes.
async fn request_bytes(
    app: &TestApp,
    method: &str,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, Vec<u8>) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Token {token}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Body::empty()).expect("request");
    let response = app
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
    (status, headers, bytes.to_vec())
}

/// Files in a project's upload directory (temporary ones included).
fn stored_files(app: &TestApp, project: i64) -> Vec<String> {
    let dir = app.config.data_dir.join("upload").join(project.to_string());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

async fn tasks_of(app: &TestApp, project: i64) -> Vec<Value> {
    app.get(
        &format!("/api/tasks?project={project}&fields=all&page_size=100"),
        &app.owner,
    )
    .await
    .expect(StatusCode::OK)["tasks"]
        .as_array()
        .expect("tasks")
        .clone()
}

both_backends! {
    async fn media_uploads_become_tasks_served_to_project_viewers(app) {
        let project = app.mk_project(&app.owner, json!({"label_config": IMAGE_CONFIG})).await;
        let (a, b) = (png_bytes(1, 3000), png_bytes(2, 70_000));
        let text = b"plain text notes\n".to_vec();
        let summary = upload(
            &app,
            &app.owner,
            &format!("/api/projects/{project}/import?return_task_ids=true"),
            &[("cat one.png", &a), ("dog.jpg", &b), ("notes.txt", &text)],
        )
        .await
        .expect(StatusCode::CREATED);
        assert_eq!(summary["task_count"], 3);
        let upload_ids: Vec<i64> = summary["file_upload_ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|v| v.as_i64().expect("id"))
            .collect();
        assert_eq!(upload_ids.len(), 3);
        assert_eq!(summary["found_formats"], json!({".png": 1, ".jpg": 1, ".txt": 1}));
        let tasks = tasks_of(&app, project).await;
        assert_eq!(tasks.len(), 3);
        let (other_org, other) = app.other_org("Other", "other@example.com").await;
        assert!(other_org > 0);
        for (task, bytes, suffix, mime) in [
            (&tasks[0], &a, "cat_one.png", "image/png"),
            (&tasks[1], &b, "dog.jpg", "image/jpeg"),
            (&tasks[2], &text, "notes.txt", "text/plain"),
        ] {
            let url = task["data"]["image"].as_str().expect("url");
            let prefix = format!("/data/upload/{project}/");
            assert!(url.starts_with(&prefix), "{url}");
            let file = &url[prefix.len()..];
            assert!(file.ends_with(suffix), "{file}");
            assert_eq!(task["file_upload"], json!(file));
            let (status, headers, body) = get_bytes(&app, url, &app.owner).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(&body, bytes);
            assert!(headers[http::header::CONTENT_TYPE].to_str().expect("type").starts_with(mime));
            assert_eq!(headers[http::header::CONTENT_LENGTH], bytes.len().to_string().as_str());
            assert_eq!(headers[http::header::CONTENT_SECURITY_POLICY], "sandbox");
            // Another organization's user learns nothing.
            let (status, _, _) = get_bytes(&app, url, &other).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
        }
        // Signed-in only.
        let url = tasks[0]["data"]["image"].as_str().expect("url").to_string();
        let (status, _, _) = get_bytes(&app, &url, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // No way out of the project's directory.
        std::fs::write(app.config.data_dir.join("upload").join("secret.txt"), b"secret").expect("write");
        for path in [
            format!("/data/upload/{project}/..%2Fsecret.txt"),
            format!("/data/upload/{project}/%2E%2E%2F%2E%2E%2Fsecret.key"),
            format!("/data/upload/{project}/../secret.txt"),
            format!("/data/upload/{project}/.."),
        ] {
            let (status, _, body) = get_bytes(&app, &path, &app.owner).await;
            assert_ne!(status, StatusCode::OK, "{path}");
            assert!(!String::from_utf8_lossy(&body).contains("secret"), "{path}");
        }

        // The list, narrowed by ids.
        let list = app.get(&format!("/api/projects/{project}/file-uploads"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(list.as_array().expect("list").len(), 3);
        assert_eq!(list[0]["file"], json!(url));
        assert_eq!(list[0]["size"], json!(a.len()));
        let one = app
            .get(&format!("/api/projects/{project}/file-uploads?ids={}", upload_ids[1]), &app.owner)
            .await
            .expect(StatusCode::OK);
        assert_eq!(one.as_array().expect("list").len(), 1);
        assert_eq!(one[0]["id"], upload_ids[1]);
        let got = app.get(&format!("/api/import/file-upload/{}", upload_ids[0]), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(got["file"], json!(url));
        app.get(&format!("/api/import/file-upload/{}", upload_ids[0]), &other)
            .await
            .expect(StatusCode::NOT_FOUND);

        // Replacing a file's content keeps its URL.
        let replacement = png_bytes(9, 10);
        let (content_type, body) = multipart(&[("new.png", &replacement)]);
        let request = Request::builder()
            .method("PATCH")
            .uri(format!("/api/import/file-upload/{}", upload_ids[0]))
            .header("authorization", format!("Token {}", app.owner))
            .header("content-type", content_type)
            .body(Body::from(body))
            .expect("request");
        let patched = app.send(request).await.expect(StatusCode::OK);
        assert_eq!(patched["size"], json!(replacement.len()));
        let (_, _, body) = get_bytes(&app, &url, &app.owner).await;
        assert_eq!(body, replacement);

        // Files that tasks were made of stay.
        app.delete(&format!("/api/import/file-upload/{}", upload_ids[0]), &app.owner)
            .await
            .expect_error(StatusCode::CONFLICT, "conflict");
        let deleted = app
            .call("DELETE", &format!("/api/projects/{project}/file-uploads"), &app.owner, Some(json!({"file_upload_ids": upload_ids})))
            .await
            .expect(StatusCode::OK);
        assert_eq!(deleted["deleted"], 0);
        assert_eq!(stored_files(&app, project).len(), 3);
        // Without the tasks they go, rows and files.
        app.call("DELETE", &format!("/api/projects/{project}/tasks"), &app.owner, None)
            .await;
        assert!(tasks_of(&app, project).await.is_empty());
        app.delete(&format!("/api/import/file-upload/{}", upload_ids[0]), &app.owner)
            .await
            .expect(StatusCode::NO_CONTENT);
        let deleted = app
            .call("DELETE", &format!("/api/projects/{project}/file-uploads"), &app.owner, Some(json!({"file_upload_ids": [upload_ids[1]]})))
            .await
            .expect(StatusCode::OK);
        assert_eq!(deleted["deleted"], 1);
        assert_eq!(stored_files(&app, project).len(), 1);
        let deleted = app
            .call("DELETE", &format!("/api/projects/{project}/file-uploads"), &app.owner, None)
            .await
            .expect(StatusCode::OK);
        assert_eq!(deleted["deleted"], 1);
        assert!(stored_files(&app, project).is_empty());
        let (status, _, _) = get_bytes(&app, &url, &app.owner).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let list = app.get(&format!("/api/projects/{project}/file-uploads"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(list, json!([]));
    }

    async fn task_files_are_kept_and_failed_imports_leave_nothing(app) {
        let project = app.mk_project(&app.owner, json!({})).await;
        let summary = upload(
            &app,
            &app.owner,
            &format!("/api/projects/{project}/import"),
            &[("tasks.json", br#"[{"text": "a"}, {"text": "b"}]"#), ("more.csv", b"text\nc\n")],
        )
        .await
        .expect(StatusCode::CREATED);
        assert_eq!(summary["task_count"], 3);
        assert_eq!(summary["file_upload_ids"].as_array().expect("ids").len(), 2);
        let tasks = tasks_of(&app, project).await;
        let json_file = tasks[0]["file_upload"].as_str().expect("name").to_string();
        assert!(json_file.ends_with("-tasks.json"), "{json_file}");
        assert_eq!(tasks[1]["file_upload"], json!(json_file));
        assert!(tasks[2]["file_upload"].as_str().expect("name").ends_with("-more.csv"));
        let (status, _, body) = get_bytes(&app, &format!("/data/upload/{project}/{json_file}"), &app.owner).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, br#"[{"text": "a"}, {"text": "b"}]"#);
        assert_eq!(stored_files(&app, project).len(), 2);

        // A bad task file with a media file beside it: nothing stays.
        let before = stored_files(&app, project);
        upload(
            &app,
            &app.owner,
            &format!("/api/projects/{project}/import"),
            &[("pic.png", &png_bytes(3, 100)), ("bad.json", br#"[{"nottext": 1}]"#)],
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_import");
        assert_eq!(stored_files(&app, project), before);
        assert_eq!(tasks_of(&app, project).await.len(), 3);
        let list = app.get(&format!("/api/projects/{project}/file-uploads"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(list.as_array().expect("list").len(), 2);

        // A media file needs a config that reads one data key.
        let two_keys = app
            .mk_project(&app.owner, json!({"label_config": r#"<View><Image name="a" value="$a"/><Image name="b" value="$b"/></View>"#}))
            .await;
        let error = upload(&app, &app.owner, &format!("/api/projects/{two_keys}/import"), &[("pic.png", &png_bytes(3, 10))])
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_import");
        assert!(error["detail"].as_str().expect("detail").contains("data keys"), "{error}");
        assert!(stored_files(&app, two_keys).is_empty());
    }

    async fn preannotated_from_fields_become_predictions(app) {
        let project = app.mk_project(&app.owner, json!({})).await;
        let summary = app
            .post_raw(
                &format!("/api/projects/{project}/import?preannotated_from_fields=sentiment"),
                &app.owner,
                "text/csv",
                "text,sentiment\nhello,pos\nbye,neg\n",
            )
            .await
            .expect(StatusCode::CREATED);
        assert_eq!(summary["task_count"], 2);
        assert_eq!(summary["prediction_count"], 2);
        let tasks = tasks_of(&app, project).await;
        assert_eq!(tasks[0]["data"], json!({"text": "hello"}));
        assert_eq!(
            tasks[0]["predictions"][0]["result"],
            json!([{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["pos"]}}])
        );
        assert_eq!(tasks[1]["predictions"][0]["result"][0]["value"]["choices"], json!(["neg"]));
        // A value that is a result list is taken as it is.
        let result = json!([{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["neg"]}}]);
        app.post(
            &format!("/api/projects/{project}/import?preannotated_from_fields=sentiment"),
            &app.owner,
            json!([{"text": "listed", "sentiment": result}]),
        )
        .await
        .expect(StatusCode::CREATED);
        let tasks = tasks_of(&app, project).await;
        assert_eq!(tasks[2]["predictions"][0]["result"], result);

        // A field that names no control tag, a label the config lacks, a missing field: 400,
        // nothing imported.
        let error = app
            .post_raw(
                &format!("/api/projects/{project}/import?preannotated_from_fields=mood"),
                &app.owner,
                "text/csv",
                "text,mood\nx,pos\n",
            )
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        assert!(error["detail"].as_str().expect("detail").contains("mood"), "{error}");
        app.post_raw(
            &format!("/api/projects/{project}/import?preannotated_from_fields=sentiment"),
            &app.owner,
            "text/csv",
            "text,sentiment\nx,pos\ny,maybe\n",
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_import");
        app.post(
            &format!("/api/projects/{project}/import?preannotated_from_fields=sentiment"),
            &app.owner,
            json!([{"text": "x", "sentiment": "pos"}, {"text": "y"}]),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_import");
        assert_eq!(tasks_of(&app, project).await.len(), 3);
    }
}

/// A file server on loopback: `/tasks.json` (JSON tasks, no extension needed with its
/// Content-Type at `/tasks`) and `/photo.png`.
async fn file_server() -> SocketAddr {
    let app = axum::Router::new()
        .route(
            "/tasks",
            axum::routing::get(|| async {
                (
                    [(http::header::CONTENT_TYPE, "application/json")],
                    r#"[{"text": "from url 1"}, {"text": "from url 2"}]"#,
                )
            }),
        )
        .route(
            "/photo.png",
            axum::routing::get(|| async {
                (
                    [(http::header::CONTENT_TYPE, "image/png")],
                    png_bytes(5, 500),
                )
            }),
        );
    crate::common::serve_loopback(app).await.0
}

async fn url_import(backend: Backend) {
    let server = file_server().await;
    let app = TestApp::with_config(backend, |c| c.allow_private_targets = "true".into()).await;
    let project = app.mk_project(&app.owner, json!({})).await;
    let summary = app
        .post_raw(
            &format!("/api/projects/{project}/import"),
            &app.owner,
            "application/x-www-form-urlencoded",
            format!("url=http%3A%2F%2F{server}%2Ftasks"),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(summary["task_count"], 2);
    assert_eq!(summary["file_upload_ids"].as_array().expect("ids").len(), 1);
    let tasks = tasks_of(&app, project).await;
    assert_eq!(tasks[1]["data"]["text"], "from url 2");
    // A media file by URL: stored and served like an upload.
    let images = app
        .mk_project(&app.owner, json!({"label_config": IMAGE_CONFIG}))
        .await;
    app.post_raw(
        &format!("/api/projects/{images}/import"),
        &app.owner,
        "application/x-www-form-urlencoded",
        format!("url=http://{server}/photo.png"),
    )
    .await
    .expect(StatusCode::CREATED);
    let task = &tasks_of(&app, images).await[0];
    let (status, _, body) = get_bytes(
        &app,
        task["data"]["image"].as_str().expect("url"),
        &app.owner,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, png_bytes(5, 500));
    // A URL that does not answer 2xx.
    app.post_raw(
        &format!("/api/projects/{project}/import"),
        &app.owner,
        "application/x-www-form-urlencoded",
        format!("url=http://{server}/missing.json"),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_import");

    // The default policy refuses loopback targets; nothing is imported.
    let strict = TestApp::new(backend).await;
    let project = strict.mk_project(&strict.owner, json!({})).await;
    let error = strict
        .post_raw(
            &format!("/api/projects/{project}/import"),
            &strict.owner,
            "application/x-www-form-urlencoded",
            format!("url=http://{server}/tasks"),
        )
        .await;
    assert_eq!(error.status, StatusCode::BAD_REQUEST, "{}", error.text);
    assert_eq!(error.body["code"], "private_target");
    let error = strict
        .post_raw(
            &format!("/api/projects/{project}/import"),
            &strict.owner,
            "application/x-www-form-urlencoded",
            format!("url=http://localhost:{}/tasks", server.port()),
        )
        .await;
    assert_eq!(error.body["code"], "private_target", "{}", error.text);
    assert!(tasks_of(&strict, project).await.is_empty());
    assert!(stored_files(&strict, project).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn url_import_sqlite() {
    url_import(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn url_import_postgres() {
    url_import(Backend::Postgres).await;
}

async fn oversize(backend: Backend) {
    let app = TestApp::with_config(backend, |c| c.import_max_bytes = 1000).await;
    let project = app
        .mk_project(&app.owner, json!({"label_config": IMAGE_CONFIG}))
        .await;
    upload(
        &app,
        &app.owner,
        &format!("/api/projects/{project}/import"),
        &[
            ("small.png", &png_bytes(1, 100)),
            ("big.png", &png_bytes(2, 5000)),
        ],
    )
    .await
    .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert!(
        stored_files(&app, project).is_empty(),
        "{:?}",
        stored_files(&app, project)
    );
    let list = app
        .get(&format!("/api/projects/{project}/file-uploads"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(list, json!([]));
    assert!(tasks_of(&app, project).await.is_empty());
    // Under the limit it works.
    upload(
        &app,
        &app.owner,
        &format!("/api/projects/{project}/import"),
        &[("small.png", &png_bytes(1, 100))],
    )
    .await
    .expect(StatusCode::CREATED);
    assert_eq!(stored_files(&app, project).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversize_upload_leaves_nothing_sqlite() {
    oversize(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversize_upload_leaves_nothing_postgres() {
    oversize(Backend::Postgres).await;
}

/// Queues an import with `async=true` (`extra` appended to the query) and waits for its job.
async fn import_async(
    app: &TestApp,
    project: i64,
    extra: &str,
    content_type: &str,
    body: impl Into<Body>,
) -> Value {
    let queued = app
        .post_raw(
            &format!("/api/projects/{project}/import?async=true{extra}"),
            &app.owner,
            content_type,
            body,
        )
        .await
        .expect(StatusCode::CREATED);
    let id = queued["import"].as_i64().expect("import id");
    crate::wait_import(app, project, id).await
}

both_backends! {
    // Media files of an import run as a job are stored and recorded as uploads exactly as a
    // synchronous import stores them, and the job writes their tasks; a retried job writes
    // nothing twice.
    async fn async_media_uploads_become_tasks(app) {
        let _worker = crate::webhooks::start_worker(&app);
        let project = app.mk_project(&app.owner, json!({"label_config": IMAGE_CONFIG})).await;
        let (a, b) = (png_bytes(7, 4000), png_bytes(8, 90_000));
        let tasks_json = br#"[{"image": "https://example.com/listed.png"}]"#;
        let (content_type, body) = multipart(&[("cat.png", &a), ("dog photo.jpg", &b), ("tasks.json", tasks_json)]);
        let done = import_async(&app, project, "&return_task_ids=true", &content_type, body).await;
        assert_eq!(done["status"], json!("completed"), "{done}");
        assert_eq!(done["task_count"], json!(3));
        assert_eq!(done["found_formats"], json!({".png": 1, ".jpg": 1, ".json": 1}), "{done}");
        assert_eq!(done["task_ids"].as_array().map(Vec::len), Some(3));
        let tasks = tasks_of(&app, project).await;
        assert_eq!(tasks.len(), 3);
        for (task, bytes, suffix) in [(&tasks[0], &a, "-cat.png"), (&tasks[1], &b, "-dog_photo.jpg")] {
            let url = task["data"]["image"].as_str().expect("url");
            let prefix = format!("/data/upload/{project}/");
            assert!(url.starts_with(&prefix) && url.ends_with(suffix), "{url}");
            assert_eq!(task["file_upload"], json!(&url[prefix.len()..]));
            let (status, _, body) = get_bytes(&app, url, &app.owner).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(&body, bytes);
        }
        assert_eq!(tasks[2]["data"]["image"], "https://example.com/listed.png");
        assert!(tasks[2]["file_upload"].as_str().expect("name").ends_with("-tasks.json"), "{}", tasks[2]);
        let list = app.get(&format!("/api/projects/{project}/file-uploads"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(list.as_array().map(Vec::len), Some(3), "{list}");
        assert_eq!(list[1]["size"], json!(b.len()));
        assert_eq!(stored_files(&app, project).len(), 3);
        assert_eq!(crate::scalar_i64(&app, "select count(*) from project_import_file").await, 0);

        // The same import's job again: no second task, row or file.
        let jobs = verity_controlplane::jobs::Jobs::Sql(verity_controlplane::jobs::sql::SqlQueue::new(app.db.clone()));
        let again = verity_controlplane::imports::enqueue(&jobs, app.org, done["id"].as_i64().expect("id"))
            .await
            .expect("enqueue");
        for _ in 0..500 {
            let j = app.get(&format!("/api/jobs/{again}"), &app.owner).await.expect(StatusCode::OK);
            if j["state"] == json!("finished") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(tasks_of(&app, project).await.len(), 3);
        assert_eq!(crate::scalar_i64(&app, &format!("select count(*) from file_upload where project_id = {project}")).await, 3);
        assert_eq!(stored_files(&app, project).len(), 3);

        // A media file the label config cannot place is refused at once, nothing queued.
        let two_keys = app
            .mk_project(&app.owner, json!({"label_config": r#"<View><Image name="a" value="$a"/><Image name="b" value="$b"/></View>"#}))
            .await;
        upload(&app, &app.owner, &format!("/api/projects/{two_keys}/import?async=true"), &[("pic.png", &png_bytes(3, 10))])
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_import");
        assert!(stored_files(&app, two_keys).is_empty());
    }

    // A job whose import fails (a bad task file beside a media file) leaves no task, no
    // `file_upload` row and no stored file, and says why.
    async fn failed_async_media_import_leaves_nothing(app) {
        let _worker = crate::webhooks::start_worker(&app);
        let project = app.mk_project(&app.owner, json!({"label_config": IMAGE_CONFIG})).await;
        let (content_type, body) = multipart(&[("pic.png", &png_bytes(4, 2000)), ("bad.json", br#"[{"image": "x"}, {"other": 1}]"#)]);
        let failed = import_async(&app, project, "", &content_type, body).await;
        assert_eq!(failed["status"], json!("failed"), "{failed}");
        assert!(failed["error"].as_str().is_some_and(|e| e.contains("task 2")), "{failed}");
        assert!(tasks_of(&app, project).await.is_empty());
        assert!(stored_files(&app, project).is_empty(), "{:?}", stored_files(&app, project));
        assert_eq!(crate::scalar_i64(&app, "select count(*) from file_upload").await, 0);
        assert_eq!(crate::scalar_i64(&app, "select count(*) from project_import_file").await, 0);
    }

    // `preannotated_from_fields` is kept with the import and applied by its job; a field that
    // names no control tag is refused before anything is queued.
    async fn async_preannotated_from_fields(app) {
        let _worker = crate::webhooks::start_worker(&app);
        let project = app.mk_project(&app.owner, json!({})).await;
        let done = import_async(
            &app,
            project,
            "&preannotated_from_fields=sentiment",
            "text/csv",
            "text,sentiment\nhello,pos\nbye,neg\n",
        )
        .await;
        assert_eq!(done["status"], json!("completed"), "{done}");
        assert_eq!((done["task_count"].clone(), done["prediction_count"].clone()), (json!(2), json!(2)));
        let tasks = tasks_of(&app, project).await;
        assert_eq!(tasks[0]["data"], json!({"text": "hello"}));
        assert_eq!(
            tasks[1]["predictions"][0]["result"],
            json!([{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["neg"]}}])
        );
        // A value the config does not declare fails the import with the task's index.
        let failed = import_async(
            &app,
            project,
            "&preannotated_from_fields=sentiment",
            "text/csv",
            "text,sentiment\nx,pos\ny,maybe\n",
        )
        .await;
        assert_eq!(failed["status"], json!("failed"), "{failed}");
        assert_eq!(tasks_of(&app, project).await.len(), 2);
        let error = app
            .post_raw(
                &format!("/api/projects/{project}/import?async=true&preannotated_from_fields=mood"),
                &app.owner,
                "text/csv",
                "text,mood\nx,pos\n",
            )
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        assert!(error["detail"].as_str().expect("detail").contains("mood"), "{error}");
        assert_eq!(crate::scalar_i64(&app, "select count(*) from project_import").await, 2);
    }
}

/// An import from a URL run as a job: the job fetches the URL under the same rules as a
/// synchronous import and stores the answer as an upload; a fetch that fails marks the import
/// failed with the reason and leaves nothing; an address the rules refuse is refused at once.
async fn async_url_import(backend: Backend) {
    let server = file_server().await;
    let app = TestApp::with_config(backend, |c| c.allow_private_targets = "true".into()).await;
    let _worker = crate::webhooks::start_worker(&app);
    let form = "application/x-www-form-urlencoded";
    let project = app.mk_project(&app.owner, json!({})).await;
    let done = import_async(
        &app,
        project,
        "",
        form,
        format!("url=http%3A%2F%2F{server}%2Ftasks"),
    )
    .await;
    assert_eq!(done["status"], json!("completed"), "{done}");
    assert_eq!(done["task_count"], json!(2));
    let tasks = tasks_of(&app, project).await;
    assert_eq!(tasks[1]["data"]["text"], "from url 2");
    assert!(
        tasks[0]["file_upload"]
            .as_str()
            .is_some_and(|f| f.ends_with("-tasks.json")),
        "{}",
        tasks[0]
    );
    assert_eq!(stored_files(&app, project).len(), 1);
    // A media file by URL.
    let images = app
        .mk_project(&app.owner, json!({"label_config": IMAGE_CONFIG}))
        .await;
    let done = import_async(
        &app,
        images,
        "",
        form,
        format!("url=http://{server}/photo.png"),
    )
    .await;
    assert_eq!(done["status"], json!("completed"), "{done}");
    let task = &tasks_of(&app, images).await[0];
    let (status, _, body) = get_bytes(
        &app,
        task["data"]["image"].as_str().expect("url"),
        &app.owner,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, png_bytes(5, 500));
    let uploads_before = crate::scalar_i64(&app, "select count(*) from file_upload").await;
    // A URL that answers 404: failed with the synchronous import's message, nothing written.
    let failed = import_async(
        &app,
        project,
        "",
        form,
        format!("url=http://{server}/missing.json"),
    )
    .await;
    assert_eq!(failed["status"], json!("failed"), "{failed}");
    let error = failed["error"].as_str().expect("error");
    assert!(error.contains("fetching the URL answered 404"), "{failed}");
    assert_eq!(tasks_of(&app, project).await.len(), 2);
    assert_eq!(stored_files(&app, project).len(), 1);
    assert_eq!(
        crate::scalar_i64(&app, "select count(*) from file_upload").await,
        uploads_before
    );
    // A media file the label config cannot place: the fetched file goes too.
    let two_keys = app
        .mk_project(
            &app.owner,
            json!({"label_config": r#"<View><Image name="a" value="$a"/><Image name="b" value="$b"/></View>"#}),
        )
        .await;
    let failed = import_async(
        &app,
        two_keys,
        "",
        form,
        format!("url=http://{server}/photo.png"),
    )
    .await;
    assert_eq!(failed["status"], json!("failed"), "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("data keys")),
        "{failed}"
    );
    assert!(stored_files(&app, two_keys).is_empty());
    assert!(tasks_of(&app, two_keys).await.is_empty());

    // The default policy refuses a loopback address before anything is queued.
    let strict = TestApp::new(backend).await;
    let project = strict.mk_project(&strict.owner, json!({})).await;
    let error = strict
        .post_raw(
            &format!("/api/projects/{project}/import?async=true"),
            &strict.owner,
            form,
            format!("url=http://{server}/tasks"),
        )
        .await;
    assert_eq!(error.status, StatusCode::BAD_REQUEST, "{}", error.text);
    assert_eq!(error.body["code"], "private_target");
    assert_eq!(
        crate::scalar_i64(&strict, "select count(*) from project_import").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_url_import_sqlite() {
    async_url_import(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_url_import_postgres() {
    async_url_import(Backend::Postgres).await;
}

both_backends! {
    // Byte ranges on served uploads (ADR 0042): one range is 206 with the exact bytes and
    // Content-Range; a range past the end is 416 with `bytes */size`; several ranges, or an
    // If-Range that does not match, get the whole file; HEAD answers the headers only; users
    // who may not see the project learn nothing, range or not.
    async fn served_uploads_honour_byte_ranges(app) {
        let project = app.mk_project(&app.owner, json!({"label_config": IMAGE_CONFIG})).await;
        // Larger than one 64 KiB read, so a range spans several chunks of the stream.
        let bytes = png_bytes(11, 300_000);
        let len = bytes.len();
        upload(&app, &app.owner, &format!("/api/projects/{project}/import"), &[("clip.png", &bytes)])
            .await
            .expect(StatusCode::CREATED);
        let url = tasks_of(&app, project).await[0]["data"]["image"].as_str().expect("url").to_string();
        let ranged = |range: &'static str| {
            let (app, url) = (&app, url.clone());
            async move { request_bytes(app, "GET", &url, &app.owner, &[("range", range)]).await }
        };

        let (status, headers, body) = get_bytes(&app, &url, &app.owner).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[http::header::ACCEPT_RANGES], "bytes");
        assert_eq!(body, bytes);
        let modified = headers[http::header::LAST_MODIFIED].to_str().expect("date").to_string();

        let (status, headers, body) = ranged("bytes=10-19").await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(body, &bytes[10..20]);
        assert_eq!(headers[http::header::CONTENT_RANGE], format!("bytes 10-19/{len}").as_str());
        assert_eq!(headers[http::header::CONTENT_LENGTH], "10");
        assert_eq!(headers[http::header::ACCEPT_RANGES], "bytes");
        assert!(headers[http::header::CONTENT_TYPE].to_str().expect("type").starts_with("image/png"));

        let (status, headers, body) = ranged("bytes=65000-200000").await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(body, &bytes[65000..=200_000]);
        assert_eq!(headers[http::header::CONTENT_RANGE], format!("bytes 65000-200000/{len}").as_str());

        let (status, headers, body) = ranged("bytes=299990-").await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(body, &bytes[299_990..]);
        assert_eq!(headers[http::header::CONTENT_RANGE], format!("bytes 299990-{}/{len}", len - 1).as_str());

        // A suffix range: the last n bytes.
        let (status, headers, body) = ranged("bytes=-50").await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(body, &bytes[len - 50..]);
        assert_eq!(headers[http::header::CONTENT_RANGE], format!("bytes {}-{}/{len}", len - 50, len - 1).as_str());
        assert_eq!(headers[http::header::CONTENT_LENGTH], "50");

        // An end past the file is cut to the file.
        let (status, headers, body) = ranged("bytes=0-999999999").await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(body, bytes);
        assert_eq!(headers[http::header::CONTENT_RANGE], format!("bytes 0-{}/{len}", len - 1).as_str());

        // Unsatisfiable: 416 with the size.
        for range in ["bytes=400000-", "bytes=300008-300010", "bytes=-0"] {
            let (status, headers, body) = request_bytes(&app, "GET", &url, &app.owner, &[("range", range)]).await;
            assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
            assert_eq!(headers[http::header::CONTENT_RANGE], format!("bytes */{len}").as_str(), "{range}");
            let error: Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(error["code"], "range_not_satisfiable", "{error}");
        }

        // Several ranges, or a unit this server does not know: the whole file.
        for range in ["bytes=0-1,5-6", "items=0-1"] {
            let (status, headers, body) = request_bytes(&app, "GET", &url, &app.owner, &[("range", range)]).await;
            assert_eq!(status, StatusCode::OK, "{range}");
            assert!(headers.get(http::header::CONTENT_RANGE).is_none());
            assert_eq!(body, bytes);
        }

        // If-Range: the range only for the version the client holds.
        let (status, _, body) =
            request_bytes(&app, "GET", &url, &app.owner, &[("range", "bytes=0-3"), ("if-range", &modified)]).await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(body, &bytes[..4]);
        let (status, _, body) = request_bytes(
            &app,
            "GET",
            &url,
            &app.owner,
            &[("range", "bytes=0-3"), ("if-range", "Thu, 01 Jan 1970 00:00:00 GMT")],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, bytes);

        // HEAD: the same headers, no body.
        let (status, headers, body) = request_bytes(&app, "HEAD", &url, &app.owner, &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[http::header::CONTENT_LENGTH], len.to_string().as_str());
        assert_eq!(headers[http::header::ACCEPT_RANGES], "bytes");
        assert!(body.is_empty());
        let (status, headers, body) = request_bytes(&app, "HEAD", &url, &app.owner, &[("range", "bytes=-50")]).await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(headers[http::header::CONTENT_LENGTH], "50");
        assert_eq!(headers[http::header::CONTENT_RANGE], format!("bytes {}-{}/{len}", len - 50, len - 1).as_str());
        assert!(body.is_empty());

        // Another organization's user, with or without a range, and without a token.
        let (_, other) = app.other_org("Other", "other-ranges@example.com").await;
        for (method, range) in [("GET", "bytes=0-9"), ("HEAD", "bytes=0-9"), ("GET", "bytes=400000-")] {
            let (status, headers, body) = request_bytes(&app, method, &url, &other, &[("range", range)]).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {range}");
            assert!(headers.get(http::header::CONTENT_RANGE).is_none());
            assert!(!body.starts_with(&bytes[..8]));
        }
        let (status, _, _) = request_bytes(&app, "GET", &url, "", &[("range", "bytes=0-9")]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

const AUDIO_CONFIG: &str = r#"<View><Audio name="audio" value="$audio"/><TextArea name="transcription" toName="audio"/></View>"#;

/// A PCM WAV file: 16-bit mono at `rate` Hz holding `frames` frames of silence.
fn wav_bytes(rate: u32, frames: u32) -> Vec<u8> {
    let data = frames * 2;
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&(rate * 2).to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data.to_le_bytes());
    w.resize(w.len() + data as usize, 0);
    w
}

/// The entry `name` of a zip archive (stored entries, read through the central directory).
fn zip_entry(data: &[u8], name: &str) -> Option<Vec<u8>> {
    let u16_at = |i: usize| u16::from_le_bytes([data[i], data[i + 1]]) as usize;
    let u32_at =
        |i: usize| u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]) as usize;
    // The end record, followed by the archive comment if there is one.
    let end = (0..=data.len() - 22)
        .rev()
        .find(|&i| u32_at(i) == 0x0605_4b50 && i + 22 + u16_at(i + 20) == data.len())?;
    let (count, mut at) = (u16_at(end + 10), u32_at(end + 16));
    for _ in 0..count {
        let (size, name_len, local) = (u32_at(at + 24), u16_at(at + 28), u32_at(at + 42));
        if &data[at + 46..at + 46 + name_len] == name.as_bytes() {
            let start = local + 30 + u16_at(local + 26) + u16_at(local + 28);
            return Some(data[start..start + size].to_vec());
        }
        at += 46 + name_len + u16_at(at + 30) + u16_at(at + 32);
    }
    None
}

// ASR_MANIFEST (ADR 0050): offered for an Audio with a TextArea; one JSON line per
// annotation with the audio's path, the duration read from the uploaded WAV file (null for
// audio this server does not serve), the transcription and the annotator; the direct
// export and a job's conversion agree.
both_backends! {
    async fn asr_manifest_reads_durations_of_uploaded_audio(app) {
        let _worker = crate::webhooks::start_worker(&app);
        let project = app.mk_project(&app.owner, json!({"label_config": AUDIO_CONFIG})).await;
        let summary = upload(
            &app,
            &app.owner,
            &format!("/api/projects/{project}/import?return_task_ids=true"),
            &[("talk.wav", &wav_bytes(8000, 12_000))],
        )
        .await
        .expect(StatusCode::CREATED);
        let uploaded = summary["task_ids"][0].as_i64().expect("task id");
        let remote = app
            .post("/api/tasks", &app.owner, json!({"project": project, "data": {"audio": "https://cdn.example.com/a/remote%20one.wav?x=1"}}))
            .await
            .expect(StatusCode::CREATED)["id"]
            .as_i64()
            .expect("task id");
        let mut by = String::new();
        for (task, text) in [(uploaded, "hello \"world\" é"), (remote, "second")] {
            let ann = app
                .post(
                    &format!("/api/tasks/{task}/annotations"),
                    &app.owner,
                    json!({"result": [{"id": "t", "from_name": "transcription", "to_name": "audio", "type": "textarea", "value": {"text": [text]}}]}),
                )
                .await
                .expect(StatusCode::CREATED);
            by = match &ann["completed_by"] {
                Value::Object(o) => o["email"].as_str().unwrap_or_default().to_string(),
                other => other.to_string(),
            };
        }
        let audio = tasks_of(&app, project).await[0]["data"]["audio"]
            .as_str()
            .expect("audio url")
            .to_string();
        let stored = audio.rsplit('/').next().expect("file name").to_string();
        assert!(stored.ends_with("talk.wav"), "{audio}");
        let want = format!(
            "{{\"audio_filepath\": \"audio/{stored}\", \"duration\": 1.5, \"text\": \"hello \\\"world\\\" \\u00e9\", \"annotator\": \"{by}\"}}\n\
             {{\"audio_filepath\": \"audio/remote%20one.wav\", \"duration\": null, \"text\": \"second\", \"annotator\": \"{by}\"}}\n"
        );

        let listed = app
            .get(&format!("/api/projects/{project}/export/formats"), &app.owner)
            .await
            .expect(StatusCode::OK);
        let flag = |name: &str| {
            listed.as_array().expect("list").iter().find(|f| f["name"] == json!(name)).expect("listed")["disabled"].clone()
        };
        assert_eq!(flag("ASR_MANIFEST"), json!(false), "{listed}");
        assert_eq!(flag("BRUSH_TO_PNG"), json!(true), "{listed}");
        let r = app
            .get(&format!("/api/projects/{project}/export?exportType=ASR_MANIFEST"), &app.owner)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let manifest = zip_entry(&r.bytes, "manifest.json").expect("manifest.json");
        assert_eq!(String::from_utf8(manifest).expect("utf-8"), want);
        assert!(zip_entry(&r.bytes, "audio/").is_some(), "the converter's audio/ folder");

        // A job's conversion reads the same durations.
        let snap = app
            .post(&format!("/api/projects/{project}/exports"), &app.owner, json!({}))
            .await
            .expect(StatusCode::CREATED)["id"]
            .as_i64()
            .expect("id");
        crate::wait_snapshot(&app, project, snap).await;
        app.post(
            &format!("/api/projects/{project}/exports/{snap}/convert"),
            &app.owner,
            json!({"export_type": "ASR_MANIFEST"}),
        )
        .await
        .expect(StatusCode::OK);
        let entry = crate::wait_conversion(&app, project, snap, "ASR_MANIFEST").await;
        assert_eq!(entry["status"], json!("completed"), "{entry}");
        let r = app
            .get(&format!("/api/projects/{project}/exports/{snap}/download?exportType=ASR_MANIFEST"), &app.owner)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let manifest = zip_entry(&r.bytes, "manifest.json").expect("manifest.json");
        assert_eq!(String::from_utf8(manifest).expect("utf-8"), want);

        // A project without audio refuses the format.
        let text = app.mk_project(&app.owner, json!({"label_config": IMAGE_CONFIG})).await;
        app.get(&format!("/api/projects/{text}/export?exportType=ASR_MANIFEST"), &app.owner)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "export_format_unsupported");
    }
}

const BOXES_CONFIG: &str = r#"<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image"><Label value="Car"/><Label value="Bus"/></RectangleLabels></View>"#;

/// The start of a PNG file of `width` × `height` (signature and IHDR; enough to be recognised).
fn sized_png(width: u32, height: u32, fill: u8) -> Vec<u8> {
    let mut p = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    p.extend_from_slice(&width.to_be_bytes());
    p.extend_from_slice(&height.to_be_bytes());
    p.extend_from_slice(&[8, 0, 0, 0, 0]);
    // Past 64 KiB so an image is copied in several pieces.
    p.resize(70_000, fill);
    p
}

/// Entry names of a zip archive, sorted, and its comment (the end record is searched from the
/// end, as a comment follows it).
fn zip_names_and_comment(data: &[u8]) -> (Vec<String>, String) {
    let u16_at = |i: usize| u16::from_le_bytes([data[i], data[i + 1]]) as usize;
    let u32_at =
        |i: usize| u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]) as usize;
    let end = (0..=data.len() - 22)
        .rev()
        .find(|&i| u32_at(i) == 0x0605_4b50 && i + 22 + u16_at(i + 20) == data.len())
        .expect("end of central directory");
    let comment = String::from_utf8(data[end + 22..].to_vec()).expect("utf-8 comment");
    let (count, mut at) = (u16_at(end + 10), u32_at(end + 16));
    let mut names = Vec::new();
    for _ in 0..count {
        let name_len = u16_at(at + 28);
        names.push(String::from_utf8(data[at + 46..at + 46 + name_len].to_vec()).expect("utf-8"));
        at += 46 + name_len + u16_at(at + 30) + u16_at(at + 32);
    }
    names.sort();
    (names, comment)
}

// YOLO_WITH_IMAGES, YOLO_OBB_WITH_IMAGES, COCO_WITH_IMAGES (ADR 0046 addendum): the
// label-only archive plus each task's uploaded image in images/ under its stored name, bytes
// unchanged; COCO takes an image's size from the file; an image this server cannot read (a
// URL elsewhere, an upload that is gone) is left out, its labels kept, and named in the
// archive comment; a job's conversion gives the same archive; a config without shapes refuses
// the formats.
both_backends! {
    async fn images_export_with_yolo_and_coco_archives(app) {
        let _worker = crate::webhooks::start_worker(&app);
        let project = app.mk_project(&app.owner, json!({"label_config": BOXES_CONFIG})).await;
        let (first, second) = (sized_png(64, 48, 1), sized_png(30, 20, 2));
        let summary = upload(
            &app,
            &app.owner,
            &format!("/api/projects/{project}/import?return_task_ids=true"),
            &[("street.png", &first), ("yard.png", &second)],
        )
        .await
        .expect(StatusCode::CREATED);
        assert_eq!(summary["task_ids"].as_array().map(Vec::len), Some(2), "{summary}");
        let remote_url = "https://img.example.invalid/a/far.png";
        let gone_url = format!("/data/upload/{project}/0000-gone.png");
        for url in [remote_url, gone_url.as_str()] {
            app.post("/api/tasks", &app.owner, json!({"project": project, "data": {"image": url}}))
                .await
                .expect(StatusCode::CREATED);
        }
        let tasks = tasks_of(&app, project).await;
        let mut stored = Vec::new();
        for task in &tasks {
            let id = task["id"].as_i64().expect("id");
            let url = task["data"]["image"].as_str().expect("image").to_string();
            if url.starts_with(&format!("/data/upload/{project}/")) && url != gone_url {
                stored.push(url.rsplit('/').next().expect("name").to_string());
            }
            app.post(&format!("/api/tasks/{id}/annotations"), &app.owner, json!({"result": [{
                "id": "r1", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
                "original_width": 200, "original_height": 100,
                "value": {"x": 10, "y": 20, "width": 50, "height": 40, "rotation": 0, "rectanglelabels": ["Car"]}}]}))
                .await
                .expect(StatusCode::CREATED);
        }
        assert_eq!(stored.len(), 2, "{tasks:?}");
        assert!(stored[0].ends_with("street.png") && stored[1].ends_with("yard.png"), "{stored:?}");

        let listed = app.get(&format!("/api/projects/{project}/export/formats"), &app.owner).await.expect(StatusCode::OK);
        for name in ["YOLO_WITH_IMAGES", "YOLO_OBB_WITH_IMAGES", "COCO_WITH_IMAGES"] {
            let entry = listed.as_array().expect("list").iter().find(|f| f["name"] == json!(name)).unwrap_or_else(|| panic!("{name}: {listed}")).clone();
            assert_eq!(entry["disabled"], json!(false), "{entry}");
            assert!(entry["title"].as_str().unwrap_or_default().contains("with Images"), "{entry}");
        }

        // YOLO: the label-only archive's entries plus the two images.
        let export = |format: &'static str| {
            let app = &app;
            async move {
                let r = app.get(&format!("/api/projects/{project}/export?exportType={format}"), &app.owner).await;
                assert_eq!(r.status, StatusCode::OK, "{format}: {}", r.text);
                r.bytes.to_vec()
            }
        };
        let labels_only = export("YOLO").await;
        let with_images = export("YOLO_WITH_IMAGES").await;
        let (plain_names, plain_comment) = zip_names_and_comment(&labels_only);
        let (names, comment) = zip_names_and_comment(&with_images);
        assert_eq!(plain_comment, "");
        let mut want = plain_names.clone();
        want.extend(stored.iter().map(|s| format!("images/{s}")));
        want.sort();
        assert_eq!(names, want);
        // Uploads keep their stored name, as the converter copies them from the upload folder;
        // the label file is named after the image.
        for s in &stored {
            let stem = s.trim_end_matches(".png");
            assert!(names.contains(&format!("labels/{stem}.txt")), "{names:?}");
        }
        for name in &plain_names {
            assert_eq!(zip_entry(&with_images, name), zip_entry(&labels_only, name), "{name}");
        }
        assert_eq!(zip_entry(&with_images, &format!("images/{}", stored[0])), Some(first.clone()));
        assert_eq!(zip_entry(&with_images, &format!("images/{}", stored[1])), Some(second.clone()));
        // The two images it could not read are named in the comment; their labels are there.
        assert!(comment.starts_with("2 image(s) could not be read"), "{comment}");
        assert!(comment.contains(remote_url) && comment.contains(&gone_url), "{comment}");
        assert!(names.iter().any(|n| n.ends_with("__far.txt")), "{names:?}");

        // COCO: file names in images/ and sizes from the files (the annotation says 200×100).
        let coco = export("COCO_WITH_IMAGES").await;
        let (coco_names, _) = zip_names_and_comment(&coco);
        assert!(coco_names.contains(&format!("images/{}", stored[0])), "{coco_names:?}");
        let doc: Value = serde_json::from_slice(&zip_entry(&coco, "result.json").expect("result.json")).expect("json");
        let image = doc["images"].as_array().expect("images").iter()
            .find(|i| i["file_name"] == json!(format!("images/{}", stored[0]))).expect("image listed").clone();
        assert_eq!((image["width"].clone(), image["height"].clone()), (json!(64), json!(48)), "{doc}");
        let far = doc["images"].as_array().expect("images").iter()
            .find(|i| i["file_name"].as_str().unwrap_or_default().ends_with("__far.png")).expect("far listed").clone();
        assert_eq!(far["width"], json!(200), "{doc}");
        assert_eq!(doc["annotations"].as_array().map(Vec::len), Some(4), "{doc}");
        let plain: Value = serde_json::from_slice(&zip_entry(&export("COCO").await, "result.json").expect("result.json")).expect("json");
        assert_eq!(doc["annotations"], plain["annotations"]);
        assert_eq!(doc["categories"], plain["categories"]);

        // A job's conversion writes the same archive as the direct export.
        let snap = app
            .post(&format!("/api/projects/{project}/exports"), &app.owner, json!({}))
            .await
            .expect(StatusCode::CREATED)["id"]
            .as_i64()
            .expect("id");
        crate::wait_snapshot(&app, project, snap).await;
        for format in ["YOLO_OBB_WITH_IMAGES", "COCO_WITH_IMAGES"] {
            app.post(&format!("/api/projects/{project}/exports/{snap}/convert"), &app.owner, json!({"export_type": format}))
                .await
                .expect(StatusCode::OK);
            let entry = crate::wait_conversion(&app, project, snap, format).await;
            assert_eq!(entry["status"], json!("completed"), "{entry}");
            let r = app
                .get(&format!("/api/projects/{project}/exports/{snap}/download?exportType={format}"), &app.owner)
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            let direct = export(format).await;
            let (job_names, job_comment) = zip_names_and_comment(&r.bytes);
            assert_eq!((job_names.clone(), job_comment), zip_names_and_comment(&direct), "{format}");
            for name in job_names.iter().filter(|n| !n.ends_with('/') && *n != "notes.json" && *n != "result.json") {
                assert_eq!(zip_entry(&r.bytes, name), zip_entry(&direct, name), "{format}: {name}");
            }
        }

        // Unknown names and configs without shapes are refused.
        app.get(&format!("/api/projects/{project}/export?exportType=YOLO_WITH_VIDEOS"), &app.owner)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        let text = app.mk_project(&app.owner, json!({"label_config": IMAGE_CONFIG})).await;
        for format in ["YOLO_WITH_IMAGES", "COCO_WITH_IMAGES", "YOLO_OBB_WITH_IMAGES"] {
            let refused = app.get(&format!("/api/projects/{text}/export?exportType={format}"), &app.owner)
                .await
                .expect_error(StatusCode::BAD_REQUEST, "export_format_unsupported");
            assert!(refused["detail"].as_str().unwrap_or_default().contains(format), "{refused}");
        }
    }
}

/// PUTs `bytes` as `bucket`/`key` of the S3 emulator (moto accepts unsigned writes).
async fn moto_put(moto: &crate::exportchanges::Emulator, bucket: &str, key: &str, bytes: Vec<u8>) {
    let reply = reqwest::Client::new()
        .put(format!("{}/{bucket}/{key}", moto.url))
        .body(bytes)
        .send()
        .await
        .expect("S3 PUT");
    assert!(
        reply.status().is_success(),
        "PUT {bucket}/{key}: {}",
        reply.status()
    );
}

// Images of the *_WITH_IMAGES archives read from the project's S3 source storage (moto; ADR
// 0046 addendum): `s3://` task URLs are read with the credentials of the storage whose bucket and
// prefix hold them, as the media proxy decides, and copied unchanged; an object that is
// missing, one of the bucket outside the storage's prefix, and one of a bucket no storage of the
// project connects are left out and named in the archive comment; COCO takes the size from the
// object; a job's conversion gives the same archive.
async fn cloud_images_export(backend: Backend) {
    let Some(moto) = crate::exportchanges::moto().await else {
        return;
    };
    let app = TestApp::with_config(backend, |c| c.allow_private_targets = "true".into()).await;
    let _worker = crate::webhooks::start_worker(&app);
    let created = reqwest::Client::new()
        .put(format!("{}/pics", moto.url))
        .send()
        .await
        .expect("create bucket");
    assert!(created.status().is_success(), "create bucket");
    let street = sized_png(64, 48, 3);
    moto_put(&moto, "pics", "shots/street.png", street.clone()).await;
    // In the bucket, but outside the storage's prefix: not the storage's to read.
    moto_put(&moto, "pics", "elsewhere/out.png", sized_png(10, 10, 4)).await;

    let project = app
        .mk_project(&app.owner, json!({"label_config": BOXES_CONFIG}))
        .await;
    app.post(
        "/api/storages/s3",
        &app.owner,
        json!({"project": project, "bucket": "pics", "prefix": "shots/", "s3_endpoint": moto.url,
               "region_name": "us-east-1", "aws_access_key_id": "test",
               "aws_secret_access_key": "test", "use_blob_urls": true}),
    )
    .await
    .expect(StatusCode::CREATED);
    let present = "s3://pics/shots/street.png";
    let unreadable = [
        "s3://pics/shots/lost.png",
        "s3://pics/elsewhere/out.png",
        "s3://unconnected/shots/x.png",
    ];
    for url in std::iter::once(present).chain(unreadable) {
        let task = app
            .post(
                "/api/tasks",
                &app.owner,
                json!({"project": project, "data": {"image": url}}),
            )
            .await
            .expect(StatusCode::CREATED)["id"]
            .as_i64()
            .expect("task id");
        app.post(&format!("/api/tasks/{task}/annotations"), &app.owner, json!({"result": [{
            "id": "r1", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
            "original_width": 200, "original_height": 100,
            "value": {"x": 10, "y": 20, "width": 50, "height": 40, "rotation": 0, "rectanglelabels": ["Car"]}}]}))
            .await
            .expect(StatusCode::CREATED);
    }

    let export = |format: &'static str| {
        let app = &app;
        async move {
            let r = app
                .get(
                    &format!("/api/projects/{project}/export?exportType={format}"),
                    &app.owner,
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{format}: {}", r.text);
            r.bytes.to_vec()
        }
    };
    let yolo = export("YOLO_WITH_IMAGES").await;
    let (names, comment) = zip_names_and_comment(&yolo);
    let images: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("images/") && n.len() > 7)
        .collect();
    assert_eq!(
        images.len(),
        1,
        "only the object the storage holds: {names:?}"
    );
    assert!(images[0].ends_with("__street.png"), "{names:?}");
    assert_eq!(
        zip_entry(&yolo, images[0]),
        Some(street.clone()),
        "the object's bytes, unchanged"
    );
    assert!(
        comment.starts_with("3 image(s) could not be read"),
        "{comment}"
    );
    for url in unreadable {
        assert!(comment.contains(url), "{url} named in: {comment}");
    }
    assert!(!comment.contains(present), "{comment}");
    // Every task keeps its labels.
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("labels/") && n.ends_with(".txt"))
            .count(),
        4,
        "{names:?}"
    );

    // COCO reads the size from the object (the annotation says 200×100).
    let coco = export("COCO_WITH_IMAGES").await;
    let doc: Value = serde_json::from_slice(&zip_entry(&coco, "result.json").expect("result.json"))
        .expect("json");
    let image = doc["images"]
        .as_array()
        .expect("images")
        .iter()
        .find(|i| {
            i["file_name"]
                .as_str()
                .unwrap_or_default()
                .ends_with("__street.png")
        })
        .expect("listed")
        .clone();
    assert_eq!(
        (image["width"].clone(), image["height"].clone()),
        (json!(64), json!(48)),
        "{doc}"
    );
    assert_eq!(
        zip_entry(&coco, image["file_name"].as_str().expect("name")),
        Some(street.clone())
    );

    // A job's conversion reads the same objects.
    let snap = app
        .post(
            &format!("/api/projects/{project}/exports"),
            &app.owner,
            json!({}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("id");
    crate::wait_snapshot(&app, project, snap).await;
    for format in ["YOLO_WITH_IMAGES", "COCO_WITH_IMAGES"] {
        app.post(
            &format!("/api/projects/{project}/exports/{snap}/convert"),
            &app.owner,
            json!({"export_type": format}),
        )
        .await
        .expect(StatusCode::OK);
        let entry = crate::wait_conversion(&app, project, snap, format).await;
        assert_eq!(entry["status"], json!("completed"), "{entry}");
        let r = app
            .get(
                &format!("/api/projects/{project}/exports/{snap}/download?exportType={format}"),
                &app.owner,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let direct = if format == "YOLO_WITH_IMAGES" {
            yolo.clone()
        } else {
            coco.clone()
        };
        let (job_names, job_comment) = zip_names_and_comment(&r.bytes);
        assert_eq!(
            (job_names.clone(), job_comment),
            zip_names_and_comment(&direct),
            "{format}"
        );
        for name in job_names
            .iter()
            .filter(|n| !n.ends_with('/') && *n != "notes.json" && *n != "result.json")
        {
            assert_eq!(
                zip_entry(&r.bytes, name),
                zip_entry(&direct, name),
                "{format}: {name}"
            );
        }
    }
}

mod cloud_images_export {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        cloud_images_export(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        cloud_images_export(Backend::Postgres).await;
    }
}

// Images of the *_WITH_IMAGES archives read from the project's GCS source storage
// (fake-gcs-server): `gs://` task URLs are read through the storage whose bucket and prefix
// hold them and copied unchanged; a missing object and one outside the storage's prefix are
// left out and named; COCO takes the size from the object.
async fn gcs_images_export(backend: Backend) {
    let Some(gcs) = crate::exportchanges::fake_gcs().await else {
        return;
    };
    let app = TestApp::with_config(backend, |c| c.allow_private_targets = "true".into()).await;
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{}/storage/v1/b", gcs.url))
        .json(&json!({"name": "gpics"}))
        .send()
        .await
        .expect("create bucket");
    assert!(created.status().is_success(), "create bucket");
    let put = |key: &'static str, bytes: Vec<u8>| {
        let (client, url) = (client.clone(), gcs.url.clone());
        async move {
            let r = client
                .post(format!(
                    "{url}/upload/storage/v1/b/gpics/o?uploadType=media&name={key}"
                ))
                .body(bytes)
                .send()
                .await
                .expect("upload");
            assert!(r.status().is_success(), "upload {key}: {}", r.status());
        }
    };
    let street = sized_png(64, 48, 5);
    put("shots/street.png", street.clone()).await;
    put("elsewhere/out.png", sized_png(10, 10, 6)).await;
    let project = app
        .mk_project(&app.owner, json!({"label_config": BOXES_CONFIG}))
        .await;
    app.post(
        "/api/storages/gcs",
        &app.owner,
        json!({"project": project, "bucket": "gpics", "prefix": "shots", "gcs_endpoint": gcs.url,
               "use_blob_urls": true}),
    )
    .await
    .expect(StatusCode::CREATED);
    let present = "gs://gpics/shots/street.png";
    let unreadable = ["gs://gpics/shots/lost.png", "gs://gpics/elsewhere/out.png"];
    for url in std::iter::once(present).chain(unreadable) {
        let task = app
            .post(
                "/api/tasks",
                &app.owner,
                json!({"project": project, "data": {"image": url}}),
            )
            .await
            .expect(StatusCode::CREATED)["id"]
            .as_i64()
            .expect("task id");
        app.post(&format!("/api/tasks/{task}/annotations"), &app.owner, json!({"result": [{
            "id": "r1", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
            "original_width": 200, "original_height": 100,
            "value": {"x": 10, "y": 20, "width": 50, "height": 40, "rotation": 0, "rectanglelabels": ["Car"]}}]}))
            .await
            .expect(StatusCode::CREATED);
    }
    let export = |format: &'static str| {
        let app = &app;
        async move {
            let r = app
                .get(
                    &format!("/api/projects/{project}/export?exportType={format}"),
                    &app.owner,
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{format}: {}", r.text);
            r.bytes.to_vec()
        }
    };
    let yolo = export("YOLO_WITH_IMAGES").await;
    let (names, comment) = zip_names_and_comment(&yolo);
    let images: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("images/") && n.len() > 7)
        .collect();
    assert_eq!(
        images.len(),
        1,
        "only the object the storage holds: {names:?}"
    );
    assert!(images[0].ends_with("__street.png"), "{names:?}");
    assert_eq!(zip_entry(&yolo, images[0]), Some(street.clone()));
    assert!(
        comment.starts_with("2 image(s) could not be read"),
        "{comment}"
    );
    for url in unreadable {
        assert!(comment.contains(url), "{url} named in: {comment}");
    }
    let coco = export("COCO_WITH_IMAGES").await;
    let doc: Value = serde_json::from_slice(&zip_entry(&coco, "result.json").expect("result.json"))
        .expect("json");
    let image = doc["images"]
        .as_array()
        .expect("images")
        .iter()
        .find(|i| {
            i["file_name"]
                .as_str()
                .unwrap_or_default()
                .ends_with("__street.png")
        })
        .expect("listed")
        .clone();
    assert_eq!(
        (image["width"].clone(), image["height"].clone()),
        (json!(64), json!(48)),
        "{doc}"
    );
    assert_eq!(
        zip_entry(&coco, image["file_name"].as_str().expect("name")),
        Some(street)
    );
}

mod gcs_images_export {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        gcs_images_export(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        gcs_images_export(Backend::Postgres).await;
    }
}

// `resolve_uri` (Label Studio's default for task lists and the task detail): bucket URIs of
// task data that an import storage of the project holds become the task's media link
// (`/api/tasks/<id>/presign?fileuri=<base64url>`), which answers with a signed link of the
// storage proxy (the storage does not presign) that serves the object's bytes; URIs no storage
// holds, other strings and other values stay; `resolve_uri=false` gives the data as stored;
// another value is a 400; the label and review streams always resolve. Against moto.
async fn resolve_uri_in_task_lists(backend: Backend) {
    use base64::Engine;
    let Some(moto) = crate::exportchanges::moto().await else {
        return;
    };
    let app = TestApp::with_config(backend, |c| c.allow_private_targets = "true".into()).await;
    let created = reqwest::Client::new()
        .put(format!("{}/resolve", moto.url))
        .send()
        .await
        .expect("create bucket");
    assert!(created.status().is_success(), "create bucket");
    let bytes = sized_png(8, 8, 9);
    moto_put(&moto, "resolve", "shots/a.png", bytes.clone()).await;
    let project = app
        .mk_project(&app.owner, json!({"label_config": BOXES_CONFIG}))
        .await;
    app.post(
        "/api/storages/s3",
        &app.owner,
        json!({"project": project, "bucket": "resolve", "prefix": "shots", "s3_endpoint": moto.url,
               "region_name": "us-east-1", "aws_access_key_id": "test",
               "aws_secret_access_key": "test", "use_blob_urls": true, "presign": false}),
    )
    .await
    .expect(StatusCode::CREATED);
    let data = json!({"image": "s3://resolve/shots/a.png", "outside": "s3://resolve/other/b.png",
        "unconnected": "s3://elsewhere/shots/a.png", "text": "s3 is a word", "n": 3,
        "nested": {"image": "s3://resolve/shots/a.png"}});
    let task = app
        .post(
            "/api/tasks",
            &app.owner,
            json!({"project": project, "data": data}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("task id");
    let encoded = base64::engine::general_purpose::URL_SAFE.encode("s3://resolve/shots/a.png");
    let link = format!("/api/tasks/{task}/presign?fileuri={encoded}");
    let mut resolved = data.clone();
    resolved["image"] = json!(link);

    for path in [
        format!("/api/tasks?project={project}"),
        format!("/api/tasks?project={project}&resolve_uri=true"),
        format!("/api/tasks?project={project}&fields=task_only"),
    ] {
        let page = app.get(&path, &app.owner).await.expect(StatusCode::OK);
        assert_eq!(page["tasks"][0]["data"], resolved, "{path}");
    }
    let page = app
        .get(
            &format!("/api/tasks?project={project}&resolve_uri=false"),
            &app.owner,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(page["tasks"][0]["data"], data);
    let ids = app
        .get(
            &format!("/api/tasks?project={project}&include=id"),
            &app.owner,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(ids["tasks"][0], json!({"id": task}));
    for path in [
        format!("/api/tasks?project={project}&resolve_uri=maybe"),
        format!("/api/tasks/{task}?resolve_uri=maybe"),
    ] {
        let err = app
            .get(&path, &app.owner)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        assert!(
            err["validation_errors"].get("resolve_uri").is_some(),
            "{err}"
        );
    }
    let detail = app
        .get(&format!("/api/tasks/{task}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(detail["data"], resolved);
    let raw = app
        .get(&format!("/api/tasks/{task}?resolve_uri=0"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(raw["data"], data);

    // The label stream and the review stream hand out the task with its links resolved (the
    // editor loads them as they are).
    let annotator = app
        .user(
            "resolve-annotator@example.com",
            verity_controlplane::authz::Role::Annotator,
        )
        .await;
    app.add_member(project, &annotator, None).await;
    let next = app
        .get(&format!("/api/projects/{project}/next"), &annotator)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (next["id"].as_i64(), &next["data"]),
        (Some(task), &resolved)
    );
    app.post(&format!("/api/tasks/{task}/annotations"), &annotator, json!({"result": [{
        "id": "r1", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
        "original_width": 8, "original_height": 8,
        "value": {"x": 10, "y": 20, "width": 50, "height": 40, "rotation": 0, "rectanglelabels": ["Car"]}}]}))
        .await
        .expect(StatusCode::CREATED);
    let review = app
        .get(&format!("/api/projects/{project}/review/next"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (review["id"].as_i64(), &review["data"]),
        (Some(task), &resolved)
    );

    // The link leads to the object's bytes through the storage proxy.
    let answer = app.get(&link, &app.owner).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text);
    let proxied = answer
        .headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("location")
        .to_string();
    assert!(proxied.starts_with("/storage-proxy/"), "{proxied}");
    let served = app.get(&proxied, &app.owner).await;
    assert_eq!(served.status, StatusCode::OK, "{}", served.text);
    assert_eq!(served.bytes, bytes);
}

mod resolve_uri_in_task_lists {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        resolve_uri_in_task_lists(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        resolve_uri_in_task_lists(Backend::Postgres).await;
    }
}
