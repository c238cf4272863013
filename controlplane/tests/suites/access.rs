//! Per-organization access policies (ADR 0053), over real TCP connections from distinct
//! loopback addresses (127.0.0.2, 127.0.0.3, …) so that the server sees different peers: the
//! networks allowed to call the API (tokens, session cookies, pages, media links), the
//! lock-out guard, `X-Forwarded-For` from trusted proxies only, and the storage endpoints an
//! organization's S3 storages may use (on create, update, validate, sync and in the proxy),
//! against a real S3 server (moto_server).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine;
use http::StatusCode;
use serde_json::{Value, json};
use verity_controlplane::authz::Role;

use crate::common::{Backend, TestApp};
use crate::webhooks::start_worker;

const IMAGE_CONFIG: &str = r#"<View><Image name="img" value="$image"/><Choices name="c" toName="img"><Choice value="cat"/><Choice value="dog"/></Choices></View>"#;

/// Serves the app on a loopback port with the peer address of every connection; answers the
/// base URL.
async fn serve(app: &TestApp) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let service = app.service.clone();
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
                SocketAddr,
            >(service),
        )
        .await;
    });
    format!("http://{addr}")
}

/// An HTTP client whose connections come from `ip` (a loopback address).
fn from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().expect("ip"))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("client")
}

/// A request: `Authorization: Token` when `token` is not empty, extra headers, a JSON body.
async fn call(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = client.request(method.parse().expect("method"), url);
    if !token.is_empty() {
        req = req.header("authorization", format!("Token {token}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = StatusCode::from_u16(resp.status().as_u16()).expect("status");
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn refused(reply: &(StatusCode, Value), code: &str) {
    assert_eq!(reply.0, StatusCode::FORBIDDEN, "{}", reply.1);
    assert_eq!(reply.1["code"], json!(code), "{}", reply.1);
}

/// The networks allowed to call an organization's API: only admins set them, a list that
/// would lock the caller out is refused, the change is audited; then tokens, session cookies
/// and pages of that organization are refused from elsewhere (nothing changes), while another
/// organization is unaffected.
async fn api_callers(backend: Backend) {
    let app = TestApp::new(backend).await;
    let base = serve(&app).await;
    let (inside, outside) = (from("127.0.0.2"), from("127.0.0.3"));
    let policy = format!("{base}/api/access-policy");

    let empty = call(&inside, "GET", &policy, &app.owner, &[], None).await;
    assert_eq!(empty.0, StatusCode::OK, "{}", empty.1);
    assert_eq!(
        empty.1,
        json!({"storage_endpoints": [], "api_networks": []})
    );
    // Not an administrator's: refused, for reading and changing.
    let manager = app.user("acl-manager@example.com", Role::Manager).await;
    refused(
        &call(&inside, "GET", &policy, &manager, &[], None).await,
        "forbidden",
    );
    let body = json!({"api_networks": ["127.0.0.2/32"]});
    refused(
        &call(&inside, "PATCH", &policy, &manager, &[], Some(body.clone())).await,
        "forbidden",
    );
    // Bad entries and unknown fields: 400 naming the field.
    for (bad, field) in [
        (json!({"api_networks": ["127.0.0.300"]}), "api_networks"),
        (json!({"api_networks": "127.0.0.2"}), "api_networks"),
        (
            json!({"storage_endpoints": ["http://minio"]}),
            "storage_endpoints",
        ),
        (json!({"networks": []}), "networks"),
    ] {
        let r = call(
            &inside,
            "PATCH",
            &policy,
            &app.owner,
            &[],
            Some(bad.clone()),
        )
        .await;
        assert_eq!(r.0, StatusCode::BAD_REQUEST, "{bad}: {}", r.1);
        assert_eq!(r.1["code"], json!("validation_error"), "{}", r.1);
        assert!(
            r.1["validation_errors"].get(field).is_some(),
            "{bad}: {}",
            r.1
        );
    }
    // The lock-out guard: a list without the caller's own address is refused.
    let lockout = call(
        &outside,
        "PATCH",
        &policy,
        &app.owner,
        &[],
        Some(body.clone()),
    )
    .await;
    assert_eq!(lockout.0, StatusCode::BAD_REQUEST, "{}", lockout.1);
    assert!(
        lockout.1["validation_errors"]["api_networks"][0]
            .as_str()
            .is_some_and(|m| m.contains("127.0.0.3") && m.contains("lock you out")),
        "{}",
        lockout.1
    );
    assert_eq!(
        call(&inside, "GET", &policy, &app.owner, &[], None).await.1,
        empty.1
    );
    // A member with a token and a browser session, made before the list exists.
    let annotator = app.user("acl-annotator@example.com", Role::Annotator).await;
    let user = app.user_id(&annotator).await;
    let session = verity_controlplane::storage::sessions::open_for_user(
        &app.db,
        &Default::default(),
        user,
        3600,
        "password",
    )
    .await
    .expect("session");
    // Set from inside the list: stored (normalised) and audited.
    let set = call(
        &inside,
        "PATCH",
        &policy,
        &app.owner,
        &[],
        Some(json!({"api_networks": ["127.0.0.2", "10.9.0.0/16"]})),
    )
    .await;
    assert_eq!(set.0, StatusCode::OK, "{}", set.1);
    assert_eq!(
        set.1,
        json!({"storage_endpoints": [], "api_networks": ["127.0.0.2/32", "10.9.0.0/16"]})
    );
    let actions = app.audit_actions(app.org).await;
    assert_eq!(
        actions
            .iter()
            .filter(|(a, o, _)| a == "access_policy.update" && o == "ok")
            .count(),
        1,
        "{actions:?}"
    );

    // A token from outside: 403, and a write changes nothing.
    let projects = format!("{base}/api/projects");
    refused(
        &call(&outside, "GET", &projects, &app.owner, &[], None).await,
        "client_not_allowed",
    );
    let create = call(
        &outside,
        "POST",
        &projects,
        &app.owner,
        &[],
        Some(json!({"title": "from outside"})),
    )
    .await;
    refused(&create, "client_not_allowed");
    let listed = call(&inside, "GET", &projects, &app.owner, &[], None).await;
    assert_eq!(listed.0, StatusCode::OK, "{}", listed.1);
    assert_eq!(listed.1["count"], json!(0), "{}", listed.1);
    // A member's token (not only the admin's).
    let whoami = format!("{base}/api/current-user/whoami");
    refused(
        &call(&outside, "GET", &whoami, &annotator, &[], None).await,
        "client_not_allowed",
    );
    assert_eq!(
        call(&inside, "GET", &whoami, &annotator, &[], None).await.0,
        StatusCode::OK
    );
    // A session cookie: the API and the pages.
    let cookie = format!("verity_session={}", session.token);
    refused(
        &call(&outside, "GET", &whoami, "", &[("cookie", &cookie)], None).await,
        "client_not_allowed",
    );
    assert_eq!(
        call(&inside, "GET", &whoami, "", &[("cookie", &cookie)], None)
            .await
            .0,
        StatusCode::OK
    );
    let page = format!("{base}/projects");
    assert_eq!(
        call(&outside, "GET", &page, "", &[("cookie", &cookie)], None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&inside, "GET", &page, "", &[("cookie", &cookie)], None)
            .await
            .0,
        StatusCode::OK
    );
    // Another organization has no list: its members call from anywhere.
    let (_, other_owner) = app.other_org("Elsewhere", "acl-other@example.com").await;
    assert_eq!(
        call(&outside, "GET", &projects, &other_owner, &[], None)
            .await
            .0,
        StatusCode::OK
    );
    // The refusals are audited (instance chain, rate-limited per address).
    let refusals = app.audit_actions(0).await;
    assert!(
        refusals.iter().any(|(a, _, _)| a == "auth.client_refused"),
        "{refusals:?}"
    );
    // Removing the list (from inside) lets everyone in again.
    let cleared = call(
        &inside,
        "PATCH",
        &policy,
        &app.owner,
        &[],
        Some(json!({"api_networks": []})),
    )
    .await;
    assert_eq!(cleared.0, StatusCode::OK, "{}", cleared.1);
    assert_eq!(
        call(&outside, "GET", &projects, &app.owner, &[], None)
            .await
            .0,
        StatusCode::OK
    );
    // Recovery without the API: the operator clears the policy with the CLI.
    let again = call(
        &inside,
        "PATCH",
        &policy,
        &app.owner,
        &[],
        Some(json!({"api_networks": ["127.0.0.2"]})),
    )
    .await;
    assert_eq!(again.0, StatusCode::OK, "{}", again.1);
    refused(
        &call(&outside, "GET", &projects, &app.owner, &[], None).await,
        "client_not_allowed",
    );
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_verity"))
        .args([
            "org",
            "access-policy",
            "--org",
            &app.org.to_string(),
            "--clear",
        ])
        .env("VERITY_DATABASE_URL", &app.config.database_url)
        .env("VERITY_DATA_DIR", &app.config.data_dir)
        .output()
        .expect("run verity org access-policy");
    assert!(cli.status.success(), "{cli:?}");
    let printed: Value = serde_json::from_slice(&cli.stdout).expect("policy JSON");
    assert_eq!(
        printed,
        json!({"storage_endpoints": [], "api_networks": []})
    );
    // Another process changed it: this one notices within its 2 s memory (bounded wait).
    let mut status = StatusCode::FORBIDDEN;
    for _ in 0..100 {
        status = call(&outside, "GET", &projects, &app.owner, &[], None)
            .await
            .0;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, StatusCode::OK);
    let actions = app.audit_actions(app.org).await;
    assert!(
        actions.iter().any(|(a, _, _)| a == "access_policy.clear"),
        "{actions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_callers_sqlite() {
    api_callers(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_callers_postgres() {
    api_callers(Backend::Postgres).await;
}

/// `X-Forwarded-For` decides the client only when the peer is a trusted proxy
/// (`trusted_proxies`); from any other peer it is ignored.
async fn forwarded_for(backend: Backend) {
    let app = TestApp::with_config(backend, |c| c.trusted_proxies = "127.0.0.4".into()).await;
    let base = serve(&app).await;
    let (inside, outside, proxy) = (from("127.0.0.2"), from("127.0.0.3"), from("127.0.0.4"));
    let set = call(
        &inside,
        "PATCH",
        &format!("{base}/api/access-policy"),
        &app.owner,
        &[],
        Some(json!({"api_networks": ["127.0.0.2"]})),
    )
    .await;
    assert_eq!(set.0, StatusCode::OK, "{}", set.1);
    let projects = format!("{base}/api/projects");
    // An untrusted peer claiming an allowed address: ignored.
    refused(
        &call(
            &outside,
            "GET",
            &projects,
            &app.owner,
            &[("x-forwarded-for", "127.0.0.2")],
            None,
        )
        .await,
        "client_not_allowed",
    );
    // An allowed peer claiming an outside address: ignored as well (it is not a proxy).
    assert_eq!(
        call(
            &inside,
            "GET",
            &projects,
            &app.owner,
            &[("x-forwarded-for", "203.0.113.9")],
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    // The trusted proxy: its header counts, the rightmost untrusted entry is the client.
    for (forwarded, allowed) in [
        ("127.0.0.2", true),
        ("127.0.0.3", false),
        ("127.0.0.3, 127.0.0.2", true),
        ("127.0.0.2, 127.0.0.3", false),
        ("127.0.0.2, 127.0.0.4", true),
        ("not an address", false),
    ] {
        let r = call(
            &proxy,
            "GET",
            &projects,
            &app.owner,
            &[("x-forwarded-for", forwarded)],
            None,
        )
        .await;
        if allowed {
            assert_eq!(r.0, StatusCode::OK, "{forwarded}: {}", r.1);
        } else {
            refused(&r, "client_not_allowed");
        }
    }
    // Without the header the proxy itself is the client, which is not in the list.
    refused(
        &call(&proxy, "GET", &projects, &app.owner, &[], None).await,
        "client_not_allowed",
    );
    // Through the proxy, the lock-out guard judges the forwarded address.
    let lockout = call(
        &proxy,
        "PATCH",
        &format!("{base}/api/access-policy"),
        &app.owner,
        &[("x-forwarded-for", "127.0.0.2")],
        Some(json!({"api_networks": ["127.0.0.4"]})),
    )
    .await;
    assert_eq!(lockout.0, StatusCode::BAD_REQUEST, "{}", lockout.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forwarded_for_sqlite() {
    forwarded_for(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forwarded_for_postgres() {
    forwarded_for(Backend::Postgres).await;
}

async fn wait_sync(app: &TestApp, storage: i64) -> Value {
    app.wait_storage_sync(&format!("/api/storages/s3/{storage}"), 500)
        .await
}

async fn sync(app: &TestApp, storage: i64) -> Value {
    app.post(
        &format!("/api/storages/s3/{storage}/sync"),
        &app.owner,
        json!({}),
    )
    .await
    .expect(StatusCode::OK);
    wait_sync(app, storage).await
}

/// The storage endpoints an organization allows: a storage outside the list is refused on
/// create, validate and update (400 `endpoint_not_allowed`, nothing stored), also when its
/// name resolves outside the listed networks; inside it works; after the list shrinks the sync
/// fails with the reason and the proxy refuses its links (403 `endpoint_refused`). The
/// proxy also refuses links fetched from outside the organization's API networks.
async fn storage_endpoints(backend: Backend) {
    // moto's S3 server from the SDK venv, as the export-storage tests start it (skipped, with a
    // note, where there is none; e2e/test-all provides it).
    let Some(s3) = crate::exportchanges::moto().await else {
        return;
    };
    let http = reqwest::Client::new();
    let put = http
        .put(format!("{}/media", s3.url))
        .send()
        .await
        .expect("create bucket");
    assert!(put.status().is_success(), "{}", put.status());
    let put = http
        .put(format!("{}/media/images/a.jpg", s3.url))
        .body(vec![7u8; 100])
        .send()
        .await
        .expect("put object");
    assert!(put.status().is_success(), "{}", put.status());
    let port = s3.url.rsplit(':').next().expect("port").to_string();

    let app = TestApp::with_config(backend, |c| {
        c.allow_private_targets = "127.0.0.1".into();
        c.session_key = "access-policy-test-session-key-0123456789abcdef".into();
    })
    .await;
    let _worker = start_worker(&app);
    let p = app
        .mk_project(&app.owner, json!({"label_config": IMAGE_CONFIG}))
        .await;
    let storage = |endpoint: &str| {
        json!({"project": p, "bucket": "media", "prefix": "images", "s3_endpoint": endpoint,
               "use_blob_urls": true, "presign": false,
               "aws_access_key_id": "testing", "aws_secret_access_key": "testing"})
    };
    let set = |list: Value| {
        let app = &app;
        async move {
            app.patch(
                "/api/access-policy",
                &app.owner,
                json!({"storage_endpoints": list}),
            )
            .await
            .expect(StatusCode::OK)
        }
    };
    let owner_only = |reply: crate::common::Reply| {
        let body = reply.expect_error(StatusCode::BAD_REQUEST, "endpoint_not_allowed");
        let detail = body["detail"].as_str().unwrap_or_default().to_string();
        assert!(detail.contains("allow-list"), "{body}");
        assert!(
            body["validation_errors"].get("s3_endpoint").is_some(),
            "{body}"
        );
        detail
    };

    // A host name list without this endpoint: refused before any connection, nothing stored.
    set(json!(["minio.example.com", "*.s3.amazonaws.com"])).await;
    for path in [
        "/api/storages/s3",
        "/api/storages/s3/validate",
        "/api/storages/export/s3",
    ] {
        let detail = owner_only(app.post(path, &app.owner, storage(&s3.url)).await);
        assert!(
            detail.contains("127.0.0.1") && detail.contains("minio.example.com"),
            "{detail}"
        );
    }
    // No endpoint: the provider's public service (s3.us-east-1.amazonaws.com) is judged.
    set(json!(["minio.example.com"])).await;
    owner_only(
        app.post(
            "/api/storages/s3/validate",
            &app.owner,
            json!({"project": p, "bucket": "media"}),
        )
        .await,
    );
    // A network list: a name that resolves outside it is refused when it is resolved.
    set(json!(["10.0.0.0/8"])).await;
    let by_name = format!("http://localhost:{port}");
    let detail = owner_only(
        app.post("/api/storages/s3", &app.owner, storage(&by_name))
            .await,
    );
    assert!(
        detail.contains("localhost") && detail.contains("10.0.0.0/8"),
        "{detail}"
    );
    let none = app
        .get(&format!("/api/storages/s3?project={p}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(none, json!([]));
    // Listed by name, or by network: allowed.
    set(json!(["localhost"])).await;
    app.post("/api/storages/s3/validate", &app.owner, storage(&by_name))
        .await
        .expect(StatusCode::OK);
    set(json!(["127.0.0.0/8"])).await;
    let created = app
        .post("/api/storages/s3", &app.owner, storage(&s3.url))
        .await
        .expect(StatusCode::CREATED);
    let id = created["id"].as_i64().expect("id");
    let done = sync(&app, id).await;
    assert_eq!(done["status"], json!("completed"), "{done}");
    let tasks = app
        .get(&format!("/api/tasks?project={p}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    let task = tasks["tasks"][0]["id"].as_i64().expect("a task");
    let fileuri = base64::engine::general_purpose::URL_SAFE.encode("s3://media/images/a.jpg");
    let presign = app
        .get(
            &format!("/api/tasks/{task}/presign?fileuri={fileuri}"),
            &app.owner,
        )
        .await;
    assert_eq!(presign.status, StatusCode::SEE_OTHER, "{}", presign.text);
    let link = presign
        .headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("location")
        .to_string();
    assert!(link.starts_with("/storage-proxy/"), "{link}");
    let base = serve(&app).await;
    let (inside, outside) = (from("127.0.0.2"), from("127.0.0.3"));
    let served = call(&outside, "GET", &format!("{base}{link}"), "", &[], None).await;
    assert_eq!(served.0, StatusCode::OK, "{}", served.1);

    // The list shrinks: the sync fails with the reason, an update and the proxy refuse.
    set(json!(["10.0.0.0/8"])).await;
    let failed = sync(&app, id).await;
    assert_eq!(failed["status"], json!("failed"), "{failed}");
    assert!(
        failed["traceback"]
            .as_str()
            .is_some_and(|t| t.contains("allow-list") && t.contains("10.0.0.0/8")),
        "{failed}"
    );
    owner_only(
        app.patch(
            &format!("/api/storages/s3/{id}"),
            &app.owner,
            json!({"title": "renamed"}),
        )
        .await,
    );
    refused(
        &call(&outside, "GET", &format!("{base}{link}"), "", &[], None).await,
        "endpoint_refused",
    );

    // The organization's API networks apply to its media links too: from outside they are
    // refused before anything else; from inside the endpoint is still refused.
    let networks = call(
        &inside,
        "PATCH",
        &format!("{base}/api/access-policy"),
        &app.owner,
        &[],
        Some(json!({"api_networks": ["127.0.0.2"]})),
    )
    .await;
    assert_eq!(networks.0, StatusCode::OK, "{}", networks.1);
    refused(
        &call(&outside, "GET", &format!("{base}{link}"), "", &[], None).await,
        "client_not_allowed",
    );
    refused(
        &call(&inside, "GET", &format!("{base}{link}"), "", &[], None).await,
        "endpoint_refused",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_endpoints_sqlite() {
    storage_endpoints(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_endpoints_postgres() {
    storage_endpoints(Backend::Postgres).await;
}
