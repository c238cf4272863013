//! Short-lived storage credentials (ADR 0054) on both engines.
//!
//! S3 role assumption runs against moto's server (the `moto_server` of the SDK suite's venv, or
//! `VERITY_TEST_MOTO_SERVER`) with IAM authentication enforced: after the set-up (a user with an
//! access key that may only call `sts:AssumeRole` on one role, a role that trusts that user
//! with an external id condition and may use S3, a bucket with objects), moto checks the
//! signature of every request and the policies of whoever signs it, so the user's own keys
//! cannot list the bucket and only the role's temporary credentials can.
//!
//! Azure service principals: no emulator issues Entra ID tokens, so the tests stop at what is
//! real: the fields are checked, the client secret is sealed and never returned, and the token
//! request object_store builds reaches the configured authority (a loopback listener that
//! records it and refuses it), whose refusal is reported as a clear 400.

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use verity_controlplane::storage::Db;

use crate::{
    common::{Backend, TestApp},
    exportchanges::{Emulator, moto},
};

/// The account moto gives everything.
const ACCOUNT: &str = "123456789012";
const ROLE: &str = "media-reader";
const EXTERNAL_ID: &str = "verity-ext-7f3a";
const SESSION_KEY: &str = "credentials-test-session-key-0123456789abcdef";

fn role_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{name}")
}

/// A set-up request to moto before authentication is enforced: moto reads the service from the
/// credential scope of the `Authorization` header and does not check the signature yet.
async fn setup_call(
    moto: &Emulator,
    method: reqwest::Method,
    service: &str,
    path: &str,
    form: Option<&[(&str, &str)]>,
    body: Option<Vec<u8>>,
) -> String {
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential=AKIASETUP/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
    );
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", moto.url))
        .header("authorization", auth);
    if let Some(form) = form {
        request = request.form(form);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let reply = request.send().await.expect("moto answers");
    let status = reply.status();
    let text = reply.text().await.expect("body");
    assert!(status.is_success(), "{service} {path}: {status}: {text}");
    text
}

fn xml_text(xml: &str, tag: &str) -> String {
    let start = xml
        .find(&format!("<{tag}>"))
        .unwrap_or_else(|| panic!("no {tag} in {xml}"))
        + tag.len()
        + 2;
    let end = start + xml[start..].find(&format!("</{tag}>")).expect("end tag");
    xml[start..end].to_string()
}

/// The user's access key (id, secret) after the set-up; authentication is enforced from then on.
async fn set_up_aws(moto: &Emulator) -> (String, String) {
    let iam = |params: Vec<(&'static str, String)>| async move {
        let mut form: Vec<(&str, &str)> = vec![("Version", "2010-05-08")];
        form.extend(params.iter().map(|(k, v)| (*k, v.as_str())));
        setup_call(moto, reqwest::Method::POST, "iam", "/", Some(&form), None).await
    };
    iam(vec![
        ("Action", "CreateUser".into()),
        ("UserName", "verity".into()),
    ])
    .await;
    let key = iam(vec![
        ("Action", "CreateAccessKey".into()),
        ("UserName", "verity".into()),
    ])
    .await;
    let (key_id, secret) = (
        xml_text(&key, "AccessKeyId"),
        xml_text(&key, "SecretAccessKey"),
    );
    // The user may assume the one role, and do nothing else.
    let user_policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role_arn(ROLE)}]});
    iam(vec![
        ("Action", "PutUserPolicy".into()),
        ("UserName", "verity".into()),
        ("PolicyName", "assume-media-reader".into()),
        ("PolicyDocument", user_policy.to_string()),
    ])
    .await;
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/verity")},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}}}]});
    iam(vec![
        ("Action", "CreateRole".into()),
        ("RoleName", ROLE.into()),
        ("AssumeRolePolicyDocument", trust.to_string()),
    ])
    .await;
    let s3_policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]});
    iam(vec![
        ("Action", "PutRolePolicy".into()),
        ("RoleName", ROLE.into()),
        ("PolicyName", "s3".into()),
        ("PolicyDocument", s3_policy.to_string()),
    ])
    .await;
    setup_call(moto, reqwest::Method::PUT, "s3", "/media", None, None).await;
    for name in ["a.png", "b.png", "c.png"] {
        setup_call(
            moto,
            reqwest::Method::PUT,
            "s3",
            &format!("/media/img/{name}"),
            None,
            Some(name.as_bytes().to_vec()),
        )
        .await;
    }
    // From here on moto checks every request's signature and its signer's policies.
    let reply = reqwest::Client::new()
        .post(format!("{}/moto-api/reset-auth", moto.url))
        .body("0")
        .send()
        .await
        .expect("reset-auth");
    assert!(reply.status().is_success());
    (key_id, secret)
}

async fn raw_column(app: &TestApp, column: &str, id: i64) -> String {
    let sql = format!("select {column} from cloud_storage where id = {id}");
    match &app.db {
        Db::Postgres(pool) => sqlx::query_scalar(&sql).fetch_one(pool).await,
        Db::Sqlite { read, .. } => sqlx::query_scalar(&sql).fetch_one(read).await,
    }
    .expect("column")
}

async fn wait_s3_sync(app: &TestApp, storage: i64) -> Value {
    app.wait_storage_sync(&format!("/api/storages/s3/{storage}"), 1500)
        .await
}

/// An S3 storage with `role_arn` and `external_id` validates, is created and syncs with the
/// role's temporary credentials against moto with authentication enforced (the user's own keys
/// may not list the bucket); a wrong external id, an unknown role or a wrong secret is a 400 on
/// `role_arn` and stores nothing; the server's own base identity (`VERITY_AWS_*`) assumes a
/// role for a storage that has no keys at all; no key, secret or temporary credential is ever
/// returned, and the stored secret is sealed.
async fn s3_role_assumption(backend: Backend) {
    let Some(moto) = moto().await else {
        return;
    };
    let (key_id, secret) = set_up_aws(&moto).await;
    let moto_url = moto.url.clone();
    let app = TestApp::with_config(backend, |c| {
        c.allow_private_targets = "127.0.0.1".into();
        c.session_key = SESSION_KEY.into();
    })
    .await;
    let p = app.mk_project(&app.owner, json!({})).await;
    let body = |extra: Value| {
        let mut b = json!({"project": p, "bucket": "media", "prefix": "img", "use_blob_urls": true,
            "s3_endpoint": moto_url, "aws_access_key_id": key_id, "aws_secret_access_key": secret});
        b.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        b
    };

    // Without the role the user's keys are refused by the bucket: the role is what grants access.
    app.post("/api/storages/s3/validate", &app.owner, body(json!({})))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "storage_unreachable");

    let good = body(json!({"role_arn": role_arn(ROLE), "external_id": EXTERNAL_ID}));
    app.post("/api/storages/s3/validate", &app.owner, good.clone())
        .await
        .expect(StatusCode::OK);

    // Refusals of STS are 400s on role_arn that say what to check; nothing is stored.
    for (extra, says) in [
        (
            json!({"role_arn": role_arn(ROLE), "external_id": "wrong-external-id"}),
            "AccessDenied",
        ),
        (
            json!({"role_arn": role_arn("no-such-role"), "external_id": EXTERNAL_ID}),
            "AccessDenied",
        ),
        (
            json!({"role_arn": role_arn(ROLE), "external_id": EXTERNAL_ID,
                "aws_secret_access_key": "not-the-secret"}),
            "SignatureDoesNotMatch",
        ),
    ] {
        for path in ["/api/storages/s3/validate", "/api/storages/s3"] {
            let err = app
                .post(path, &app.owner, body(extra.clone()))
                .await
                .expect_error(StatusCode::BAD_REQUEST, "storage_unreachable");
            let why = err["validation_errors"]["role_arn"][0]
                .as_str()
                .unwrap_or_else(|| panic!("{extra}: {err}"));
            assert!(why.contains(says), "{extra}: {why}");
            assert!(why.contains("check role_arn, external_id"), "{why}");
            assert!(!err.to_string().contains(&secret), "{err}");
        }
    }
    let listed = app
        .get(&format!("/api/storages/s3?project={p}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed, json!([]));

    // Bad values are refused before anything is asked.
    for (extra, field) in [
        (json!({"role_arn": "arn:aws:iam::12:role/x"}), "role_arn"),
        (json!({"role_arn": "arn:aws:s3:::media"}), "role_arn"),
        (
            json!({"role_arn": role_arn(ROLE), "external_id": "bad id!"}),
            "external_id",
        ),
        (json!({"external_id": EXTERNAL_ID}), "external_id"),
    ] {
        let err = app
            .post("/api/storages/s3", &app.owner, body(extra.clone()))
            .await
            .expect_error(StatusCode::BAD_REQUEST, "validation_error");
        assert!(
            err["validation_errors"].get(field).is_some(),
            "{extra}: {err}"
        );
    }

    // Created and synced with the role's credentials.
    let created = app
        .post("/api/storages/s3", &app.owner, good.clone())
        .await
        .expect(StatusCode::CREATED);
    let id = created["id"].as_i64().expect("id");
    assert_eq!(created["role_arn"], json!(role_arn(ROLE)));
    assert_eq!(created["external_id"], json!(EXTERNAL_ID));
    assert_eq!(created["has_credentials"], json!(true));
    let stop = {
        use verity_controlplane::jobs::{Jobs, sql::SqlQueue, worker};
        let jobs = Jobs::Sql(SqlQueue::new(app.db.clone()));
        let handlers =
            verity_controlplane::server::handlers(&app.db, &jobs, &app.config).expect("handlers");
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let config = worker::WorkerConfig {
            queues: vec!["high"],
            idle_poll: Duration::from_millis(10),
            ..worker::WorkerConfig::default()
        };
        tokio::spawn(worker::run(jobs, handlers, config, None, stop_rx));
        stop
    };
    app.post(
        &format!("/api/storages/s3/{id}/sync"),
        &app.owner,
        json!({}),
    )
    .await
    .expect(StatusCode::OK);
    let done = wait_s3_sync(&app, id).await;
    let _ = stop.send(true);
    assert_eq!(done["status"], json!("completed"), "{done}");
    assert_eq!(done["last_sync_count"], json!(3), "{done}");
    let tasks = app
        .get(&format!("/api/tasks?project={p}&page_size=100"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(tasks["tasks"].as_array().expect("tasks").len(), 3);

    // Nothing secret is returned; the secret is sealed at rest.
    for view in [
        app.get(&format!("/api/storages/s3/{id}"), &app.owner)
            .await
            .expect(StatusCode::OK),
        app.get(&format!("/api/storages/s3?project={p}"), &app.owner)
            .await
            .expect(StatusCode::OK),
        app.get(&format!("/api/storages?project={p}"), &app.owner)
            .await
            .expect(StatusCode::OK),
    ] {
        let text = view.to_string();
        assert!(!text.contains(&secret), "{text}");
        assert!(!text.contains("aws_secret_access_key"), "{text}");
        assert!(
            !text.contains("SessionToken") && !text.contains("ASIA"),
            "{text}"
        );
    }
    let sealed = raw_column(&app, "aws_secret_access_key", id).await;
    assert!(!sealed.is_empty() && !sealed.contains(&secret));
    assert_eq!(raw_column(&app, "role_arn", id).await, role_arn(ROLE));

    // Changing the external id to a wrong one is checked and refused; the storage keeps its own.
    let err = app
        .patch(
            &format!("/api/storages/s3/{id}"),
            &app.owner,
            json!({"external_id": "wrong-external-id"}),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "storage_unreachable");
    assert!(err["validation_errors"].get("role_arn").is_some(), "{err}");
    assert_eq!(raw_column(&app, "external_id", id).await, EXTERNAL_ID);

    // The server's own identity assumes the role for a storage without keys; its STS endpoint
    // is the server's setting, checked by the outbound rules like the bucket's.
    let (server_key, server_secret, sts) = (key_id.clone(), secret.clone(), moto.url.clone());
    let server = TestApp::with_config(backend, move |c| {
        c.allow_private_targets = "127.0.0.1".into();
        c.session_key = SESSION_KEY.into();
        c.aws_access_key_id = server_key;
        c.aws_secret_access_key = server_secret;
        c.aws_sts_endpoint = sts;
    })
    .await;
    let p2 = server.mk_project(&server.owner, json!({})).await;
    let keyless = json!({"project": p2, "bucket": "media", "prefix": "img", "use_blob_urls": true,
        "s3_endpoint": moto.url, "role_arn": role_arn(ROLE), "external_id": EXTERNAL_ID});
    let made = server
        .post("/api/storages/s3", &server.owner, keyless.clone())
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(made["has_credentials"], json!(true));
    assert_eq!(
        raw_column(
            &server,
            "aws_access_key_id",
            made["id"].as_i64().expect("id")
        )
        .await,
        ""
    );
    // Without a server identity and without keys there is nothing to assume the role with.
    let mut no_base = keyless.clone();
    no_base["project"] = json!(p);
    let err = app
        .post("/api/storages/s3/validate", &app.owner, no_base)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    assert!(
        err["validation_errors"]["role_arn"][0]
            .as_str()
            .is_some_and(|m| m.contains("VERITY_AWS_ACCESS_KEY_ID")),
        "{err}"
    );
    // An STS endpoint on a private address is refused unless allowed.
    let strict = TestApp::with_config(backend, |c| {
        c.session_key = SESSION_KEY.into();
        c.aws_access_key_id = "AKIAEXAMPLE".into();
        c.aws_secret_access_key = "secret".into();
        c.aws_sts_endpoint = "http://127.0.0.1:9".into();
    })
    .await;
    let p3 = strict.mk_project(&strict.owner, json!({})).await;
    let err = strict
        .post(
            "/api/storages/s3/validate",
            &strict.owner,
            json!({"project": p3, "bucket": "media", "role_arn": role_arn(ROLE)}),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "private_target");
    assert!(err["validation_errors"].get("role_arn").is_some(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_role_assumption_sqlite() {
    s3_role_assumption(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_role_assumption_postgres() {
    s3_role_assumption(Backend::Postgres).await;
}

/// What the loopback stand-in of the Azure tests saw: method, path and query, the form of a
/// token request, and the `Authorization` header of a blob request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    body: String,
    authorization: String,
}

/// A loopback stand-in for Microsoft Entra ID and a blob endpoint, NOT an identity provider:
/// the token path answers `accept` (a made-up opaque token) or refuses as Entra ID words a bad
/// client secret; the blob path lists an empty container only for requests that carry that
/// token. It shows what Verity sends, stores and reports, not that Entra ID or Azure Storage
/// would accept it.
async fn azure_stand_in(accept: bool) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Seen>>>) {
    use axum::{body::Bytes, extract::Request, response::IntoResponse};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Seen>::new()));
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |request: Request| {
        let record = record.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
            let path = parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
            let authorization = parts
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            record.lock().expect("lock").push(Seen {
                method: parts.method.to_string(),
                path: path.clone(),
                body: String::from_utf8_lossy(&body).into_owned(),
                authorization: authorization.clone(),
            });
            if path.contains("/oauth2/v2.0/token") {
                if accept {
                    let token = json!({"access_token": "stand-in-token", "expires_in": 3600, "token_type": "Bearer"});
                    return (StatusCode::OK, [("content-type", "application/json")], token.to_string()).into_response();
                }
                let refusal = json!({"error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided."});
                return (StatusCode::UNAUTHORIZED, [("content-type", "application/json")], refusal.to_string()).into_response();
            }
            if authorization != "Bearer stand-in-token" {
                return (StatusCode::FORBIDDEN, "<Error><Code>AuthenticationFailed</Code></Error>").into_response();
            }
            let empty = r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults ContainerName="media"><Blobs></Blobs><NextMarker/></EnumerationResults>"#;
            (StatusCode::OK, [("content-type", "application/xml")], empty).into_response()
        }
    });
    let (addr, _) = crate::common::serve_loopback(app).await;
    (format!("http://{addr}"), seen)
}

const TENANT: &str = "8d3c1f2a-5b6e-4c7d-9e0f-1a2b3c4d5e6f";
const CLIENT: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const CLIENT_SECRET: &str = "spi-secret-Zq8~never-returned";

/// Azure storages with a service principal: the fields are checked; the token request goes to
/// the configured authority (obeying the outbound rules) with the tenant, client id and secret
/// and the storage scope, and a refusal is a 400 that names the fields to check, storing
/// nothing; with a token the blob requests carry it, the secret is sealed at rest and never
/// returned. (Against a loopback stand-in only: no emulator issues Entra ID tokens.)
async fn azure_service_principal(backend: Backend) {
    let (refusing, refused_seen) = azure_stand_in(false).await;
    let app = TestApp::with_config(backend, |c| {
        c.allow_private_targets = "127.0.0.1".into();
        c.session_key = SESSION_KEY.into();
        c.azure_authority_host = refusing.clone();
    })
    .await;
    let p = app.mk_project(&app.owner, json!({})).await;
    let with = |endpoint: &str, extra: Value| {
        let mut b = json!({"project": p, "container": "media", "account_name": "verityacct",
            "azure_endpoint": format!("{endpoint}/verityacct"),
            "tenant_id": TENANT, "client_id": CLIENT, "client_secret": CLIENT_SECRET});
        b.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        b
    };
    // Field checks come first.
    for (extra, field) in [
        (json!({"tenant_id": "not a tenant"}), "tenant_id"),
        (json!({"client_id": "contoso.example"}), "client_id"),
        (json!({"client_secret": ""}), "client_secret"),
        (json!({"tenant_id": null}), "tenant_id"),
        (json!({"account_key": "a2V5"}), "client_secret"),
    ] {
        let mut body = with(&refusing, extra.clone());
        if extra.get("tenant_id") == Some(&Value::Null) {
            body.as_object_mut().expect("object").remove("tenant_id");
        }
        let err = app
            .post("/api/storages/azure", &app.owner, body)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "validation_error");
        assert!(
            err["validation_errors"].get(field).is_some(),
            "{extra}: {err}"
        );
    }
    // The authority refuses: a clear 400, nothing stored, the secret not echoed.
    for path in ["/api/storages/azure/validate", "/api/storages/azure"] {
        let err = app
            .post(path, &app.owner, with(&refusing, json!({})))
            .await
            .expect_error(StatusCode::BAD_REQUEST, "storage_unreachable");
        let text = err["validation_errors"]["client_secret"][0]
            .as_str()
            .unwrap_or_else(|| panic!("{err}"))
            .to_string();
        assert!(
            text.contains("Entra ID gave the service principal no token; check tenant_id, client_id and client_secret"),
            "{text}"
        );
        assert!(
            text.contains("AADSTS7000215") || text.contains("401"),
            "{text}"
        );
        assert!(!err.to_string().contains(CLIENT_SECRET), "{err}");
    }
    let listed = app
        .get(&format!("/api/storages/azure?project={p}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed, json!([]));
    let token_requests: Vec<Seen> = refused_seen.lock().expect("lock").clone();
    let first = token_requests.first().expect("the authority was asked");
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, format!("/{TENANT}/oauth2/v2.0/token"));
    for part in [
        "grant_type=client_credentials".to_string(),
        format!("client_id={CLIENT}"),
        "scope=https%3A%2F%2Fstorage.azure.com%2F.default".to_string(),
    ] {
        assert!(first.body.contains(&part), "{part} not in {}", first.body);
    }

    // An authority on a private address is refused unless allowed.
    let strict = TestApp::with_config(backend, |c| {
        c.session_key = SESSION_KEY.into();
        c.azure_authority_host = "http://127.0.0.1:9".into();
    })
    .await;
    let p3 = strict.mk_project(&strict.owner, json!({})).await;
    strict
        .post(
            "/api/storages/azure/validate",
            &strict.owner,
            json!({"project": p3, "container": "media", "account_name": "verityacct",
                "tenant_id": TENANT, "client_id": CLIENT, "client_secret": CLIENT_SECRET}),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "private_target");

    // With a token from the stand-in, blob requests carry it; the secret is sealed and hidden.
    let (accepting, accepted_seen) = azure_stand_in(true).await;
    let app = TestApp::with_config(backend, |c| {
        c.allow_private_targets = "127.0.0.1".into();
        c.session_key = SESSION_KEY.into();
        c.azure_authority_host = accepting.clone();
    })
    .await;
    let p = app.mk_project(&app.owner, json!({})).await;
    let mut body = with(&accepting, json!({}));
    body["project"] = json!(p);
    let created = app
        .post("/api/storages/azure", &app.owner, body)
        .await
        .expect(StatusCode::CREATED);
    let id = created["id"].as_i64().expect("id");
    assert_eq!(created["tenant_id"], json!(TENANT));
    assert_eq!(created["client_id"], json!(CLIENT));
    assert_eq!(created["has_client_secret"], json!(true));
    assert_eq!(created["has_credentials"], json!(true));
    let blob_requests: Vec<Seen> = accepted_seen
        .lock()
        .expect("lock")
        .iter()
        .filter(|s| s.path.starts_with("/verityacct/media"))
        .cloned()
        .collect();
    assert!(!blob_requests.is_empty());
    assert!(
        blob_requests
            .iter()
            .all(|s| s.authorization == "Bearer stand-in-token"),
        "{blob_requests:?}"
    );
    for view in [
        created.clone(),
        app.get(&format!("/api/storages/azure/{id}"), &app.owner)
            .await
            .expect(StatusCode::OK),
        app.get(&format!("/api/storages?project={p}"), &app.owner)
            .await
            .expect(StatusCode::OK),
    ] {
        let text = view.to_string();
        assert!(
            !text.contains(CLIENT_SECRET) && !text.contains("\"client_secret\""),
            "{text}"
        );
    }
    let sealed = raw_column(&app, "client_secret", id).await;
    assert!(
        !sealed.is_empty() && !sealed.contains(CLIENT_SECRET),
        "{sealed}"
    );
    // Clearing the principal needs an account key instead; the secret stays otherwise.
    app.patch(
        &format!("/api/storages/azure/{id}"),
        &app.owner,
        json!({"title": "renamed"}),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(raw_column(&app, "client_secret", id).await, sealed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn azure_service_principal_sqlite() {
    azure_service_principal(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn azure_service_principal_postgres() {
    azure_service_principal(Backend::Postgres).await;
}

/// A job worker on queue `high` for `app` (syncs run on it); stop it with the sender.
fn start_worker(app: &TestApp) -> tokio::sync::watch::Sender<bool> {
    use verity_controlplane::jobs::{Jobs, sql::SqlQueue, worker};
    let jobs = Jobs::Sql(SqlQueue::new(app.db.clone()));
    let handlers =
        verity_controlplane::server::handlers(&app.db, &jobs, &app.config).expect("handlers");
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let config = worker::WorkerConfig {
        queues: vec!["high"],
        idle_poll: Duration::from_millis(10),
        ..worker::WorkerConfig::default()
    };
    tokio::spawn(worker::run(jobs, handlers, config, None, stop_rx));
    stop
}

/// The `validation_errors` entry of `field` in a 400 body, or a panic naming the body.
fn field_error(err: &Value, field: &str) -> String {
    err["validation_errors"][field][0]
        .as_str()
        .unwrap_or_else(|| panic!("no error on {field}: {err}"))
        .to_string()
}

/// Label Studio Enterprise's `s3s` routes (ADR 0054 addendum), import and export: an S3
/// storage reached only by assuming `role_arn` with the server's own base identity, against
/// moto with IAM authentication enforced. The role is required and static keys are refused
/// (400 on the field, nothing stored); created, it syncs with the role's credentials; it is
/// listed under `s3s` and with `type: "s3s"` in `/api/storages`, and not found under `s3`.
async fn s3s_routes(backend: Backend) {
    let Some(moto) = moto().await else {
        return;
    };
    let (key_id, secret) = set_up_aws(&moto).await;
    let (server_key, server_secret, sts) = (key_id.clone(), secret.clone(), moto.url.clone());
    let app = TestApp::with_config(backend, move |c| {
        c.allow_private_targets = "127.0.0.1".into();
        c.session_key = SESSION_KEY.into();
        c.aws_access_key_id = server_key;
        c.aws_secret_access_key = server_secret;
        c.aws_sts_endpoint = sts;
    })
    .await;
    let p = app.mk_project(&app.owner, json!({})).await;
    let body = |extra: Value| {
        let mut b = json!({"project": p, "bucket": "media", "prefix": "img", "use_blob_urls": true,
            "s3_endpoint": moto.url, "role_arn": role_arn(ROLE), "external_id": EXTERNAL_ID});
        let b_obj = b.as_object_mut().expect("object");
        for (k, v) in extra.as_object().expect("object") {
            if v.is_null() {
                b_obj.remove(k);
            } else {
                b_obj.insert(k.clone(), v.clone());
            }
        }
        b
    };
    for base in ["/api/storages/s3s", "/api/storages/export/s3s"] {
        // The role is what an s3s storage is; keys of its own are refused, as is a wrong
        // external id (STS says no).
        for (extra, field, code, says) in [
            (
                json!({"role_arn": null}),
                "role_arn",
                "validation_error",
                "this field is required",
            ),
            (
                json!({"role_arn": ""}),
                "role_arn",
                "validation_error",
                "this field is required",
            ),
            (
                json!({"aws_access_key_id": key_id, "aws_secret_access_key": secret}),
                "aws_access_key_id",
                "validation_error",
                "an s3s storage keeps no keys",
            ),
            (
                json!({"aws_session_token": "token"}),
                "aws_session_token",
                "validation_error",
                "/api/storages/s3",
            ),
            (
                json!({"external_id": "wrong-external-id"}),
                "role_arn",
                "storage_unreachable",
                "AccessDenied",
            ),
        ] {
            for path in [format!("{base}/validate"), base.to_string()] {
                let err = app
                    .post(&path, &app.owner, body(extra.clone()))
                    .await
                    .expect_error(StatusCode::BAD_REQUEST, code);
                let why = field_error(&err, field);
                assert!(why.contains(says), "{path} {extra}: {why}");
                assert!(!err.to_string().contains(&secret), "{err}");
            }
        }
        let listed = app
            .get(&format!("{base}?project={p}"), &app.owner)
            .await
            .expect(StatusCode::OK);
        assert_eq!(listed, json!([]), "{base}");
        app.post(&format!("{base}/validate"), &app.owner, body(json!({})))
            .await
            .expect(StatusCode::OK);
    }

    // Created: the view is an S3 view of type s3s, with the role and no key.
    let created = app
        .post("/api/storages/s3s/", &app.owner, body(json!({})))
        .await
        .expect(StatusCode::CREATED);
    let id = created["id"].as_i64().expect("id");
    assert_eq!(created["type"], json!("s3s"), "{created}");
    assert_eq!(created["role_arn"], json!(role_arn(ROLE)));
    assert_eq!(created["external_id"], json!(EXTERNAL_ID));
    assert_eq!(created["has_credentials"], json!(true));
    assert_eq!(created["bucket"], json!("media"));
    assert_eq!(raw_column(&app, "aws_access_key_id", id).await, "");
    assert_eq!(raw_column(&app, "variant", id).await, "s3s");
    let exported = app
        .post(
            "/api/storages/export/s3s",
            &app.owner,
            body(json!({"prefix": "out", "use_blob_urls": null})),
        )
        .await
        .expect(StatusCode::CREATED);
    let export_id = exported["id"].as_i64().expect("id");
    assert_eq!(exported["type"], json!("s3s"), "{exported}");

    // Listed under its own type only; in the combined list with its type.
    let own = app
        .get(&format!("/api/storages/s3s?project={p}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(own.as_array().map(Vec::len), Some(1), "{own}");
    assert_eq!(own[0]["id"], json!(id));
    assert_eq!(
        app.get(&format!("/api/storages/s3?project={p}"), &app.owner)
            .await
            .expect(StatusCode::OK),
        json!([])
    );
    for path in [
        format!("/api/storages/s3/{id}"),
        format!("/api/storages/export/s3s/{id}"),
        format!("/api/storages/s3s/{export_id}"),
        format!("/api/storages/export/s3/{export_id}"),
    ] {
        app.get(&path, &app.owner)
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
    }
    let all = app
        .get(&format!("/api/storages?project={p}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");
    assert_eq!(all[0]["type"], json!("s3s"));
    let all_export = app
        .get(&format!("/api/storages/export?project={p}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(all_export[0]["type"], json!("s3s"), "{all_export}");

    // Changes keep the rules: no keys, the role stays required; other changes go through.
    let err = app
        .patch(
            &format!("/api/storages/s3s/{id}"),
            &app.owner,
            json!({"aws_secret_access_key": secret}),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    field_error(&err, "aws_secret_access_key");
    let err = app
        .patch(
            &format!("/api/storages/s3s/{id}"),
            &app.owner,
            json!({"role_arn": ""}),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    field_error(&err, "role_arn");
    assert_eq!(raw_column(&app, "role_arn", id).await, role_arn(ROLE));
    let renamed = app
        .patch(
            &format!("/api/storages/s3s/{id}"),
            &app.owner,
            json!({"title": "by role"}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(renamed["title"], json!("by role"));
    assert_eq!(renamed["type"], json!("s3s"));

    // Synced with the role's temporary credentials (the user's keys alone may not list).
    let stop = start_worker(&app);
    let queued = app
        .post(
            &format!("/api/storages/s3s/{id}/sync"),
            &app.owner,
            json!({}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(queued["type"], json!("s3s"));
    let done = app
        .wait_storage_sync(&format!("/api/storages/s3s/{id}"), 1500)
        .await;
    let _ = stop.send(true);
    assert_eq!(done["status"], json!("completed"), "{done}");
    assert_eq!(done["last_sync_count"], json!(3), "{done}");

    // Deleted through its own routes only.
    app.delete(&format!("/api/storages/s3/{id}"), &app.owner)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.delete(&format!("/api/storages/s3s/{id}"), &app.owner)
        .await
        .expect(StatusCode::NO_CONTENT);
    app.delete(&format!("/api/storages/export/s3s/{export_id}"), &app.owner)
        .await
        .expect(StatusCode::NO_CONTENT);

    // Both types are offered.
    let types = app
        .get("/api/storages/types", &app.owner)
        .await
        .expect(StatusCode::OK);
    let names: Vec<&str> = types
        .as_array()
        .expect("types")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["localfiles", "s3", "s3s", "gcs", "azure", "azure_spi"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3s_routes_sqlite() {
    s3s_routes(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3s_routes_postgres() {
    s3s_routes(Backend::Postgres).await;
}

/// Label Studio Enterprise's `azure_spi` routes (ADR 0054 addendum), import and export: an
/// Azure storage that signs in only as a service principal. All three principal fields are
/// required, an account key, another `auth_mode` and a `user_delegation_key` are refused;
/// created, its blob requests carry the principal's token (from a loopback stand-in of Entra
/// ID, not Entra ID); it is listed under `azure_spi` only, with `type: "azure_spi"`.
async fn azure_spi_routes(backend: Backend) {
    let (accepting, seen) = azure_stand_in(true).await;
    let app = TestApp::with_config(backend, |c| {
        c.allow_private_targets = "127.0.0.1".into();
        c.session_key = SESSION_KEY.into();
        c.azure_authority_host = accepting.clone();
    })
    .await;
    let p = app.mk_project(&app.owner, json!({})).await;
    let body = |extra: Value| {
        let mut b = json!({"project": p, "container": "media", "account_name": "verityacct",
            "azure_endpoint": format!("{accepting}/verityacct"),
            "tenant_id": TENANT, "client_id": CLIENT, "client_secret": CLIENT_SECRET});
        let b_obj = b.as_object_mut().expect("object");
        for (k, v) in extra.as_object().expect("object") {
            if v.is_null() {
                b_obj.remove(k);
            } else {
                b_obj.insert(k.clone(), v.clone());
            }
        }
        b
    };
    for base in ["/api/storages/azure_spi", "/api/storages/export/azure_spi"] {
        for (extra, field, says) in [
            (
                json!({"client_secret": null}),
                "client_secret",
                "this field is required",
            ),
            (
                json!({"tenant_id": null, "client_id": null, "client_secret": null}),
                "tenant_id",
                "this field is required",
            ),
            (
                json!({"account_key": "a2V5"}),
                "account_key",
                "keeps no account key",
            ),
            (
                json!({"auth_mode": "workload_identity"}),
                "auth_mode",
                "only service_principal",
            ),
            (
                json!({"user_delegation_key": "k"}),
                "user_delegation_key",
                "is not offered",
            ),
        ] {
            for path in [format!("{base}/validate"), base.to_string()] {
                let err = app
                    .post(&path, &app.owner, body(extra.clone()))
                    .await
                    .expect_error(StatusCode::BAD_REQUEST, "validation_error");
                let why = field_error(&err, field);
                assert!(why.contains(says), "{path} {extra}: {why}");
            }
        }
        assert_eq!(
            app.get(&format!("{base}?project={p}"), &app.owner)
                .await
                .expect(StatusCode::OK),
            json!([])
        );
    }
    let created = app
        .post(
            "/api/storages/azure_spi/",
            &app.owner,
            body(json!({"auth_mode": "service_principal"})),
        )
        .await
        .expect(StatusCode::CREATED);
    let id = created["id"].as_i64().expect("id");
    assert_eq!(created["type"], json!("azure_spi"), "{created}");
    assert_eq!(created["tenant_id"], json!(TENANT));
    assert_eq!(created["client_id"], json!(CLIENT));
    assert_eq!(created["has_client_secret"], json!(true));
    assert!(!created.to_string().contains(CLIENT_SECRET), "{created}");
    let exported = app
        .post(
            "/api/storages/export/azure_spi",
            &app.owner,
            body(json!({})),
        )
        .await
        .expect(StatusCode::CREATED);
    let export_id = exported["id"].as_i64().expect("id");
    assert_eq!(exported["type"], json!("azure_spi"));
    let blob_requests: Vec<Seen> = seen
        .lock()
        .expect("lock")
        .iter()
        .filter(|s| s.path.starts_with("/verityacct/media"))
        .cloned()
        .collect();
    assert!(!blob_requests.is_empty());
    assert!(
        blob_requests
            .iter()
            .all(|s| s.authorization == "Bearer stand-in-token"),
        "{blob_requests:?}"
    );

    let own = app
        .get(&format!("/api/storages/azure_spi?project={p}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(own.as_array().map(Vec::len), Some(1), "{own}");
    assert_eq!(
        app.get(&format!("/api/storages/azure?project={p}"), &app.owner)
            .await
            .expect(StatusCode::OK),
        json!([])
    );
    for path in [
        format!("/api/storages/azure/{id}"),
        format!("/api/storages/export/azure/{export_id}"),
        format!("/api/storages/export/azure_spi/{id}"),
    ] {
        app.get(&path, &app.owner)
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
    }
    let all = app
        .get(&format!("/api/storages?project={p}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");
    assert_eq!(all[0]["type"], json!("azure_spi"));
    assert!(!all.to_string().contains(CLIENT_SECRET));

    // The principal stays required; an account key stays refused.
    for (change, field) in [
        (json!({"client_secret": ""}), "client_secret"),
        (json!({"account_key": "a2V5"}), "account_key"),
    ] {
        let err = app
            .patch(&format!("/api/storages/azure_spi/{id}"), &app.owner, change)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "validation_error");
        field_error(&err, field);
    }
    let sealed = raw_column(&app, "client_secret", id).await;
    assert!(!sealed.is_empty() && !sealed.contains(CLIENT_SECRET));
    let renamed = app
        .patch(
            &format!("/api/storages/azure_spi/{id}"),
            &app.owner,
            json!({"title": "principal"}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(renamed["title"], json!("principal"));
    assert_eq!(raw_column(&app, "client_secret", id).await, sealed);

    // An empty container syncs (with the token) to nothing.
    let stop = start_worker(&app);
    app.post(
        &format!("/api/storages/azure_spi/{id}/sync"),
        &app.owner,
        json!({}),
    )
    .await
    .expect(StatusCode::OK);
    let done = app
        .wait_storage_sync(&format!("/api/storages/azure_spi/{id}"), 1500)
        .await;
    let _ = stop.send(true);
    assert_eq!(done["status"], json!("completed"), "{done}");
    assert_eq!(done["type"], json!("azure_spi"));

    app.delete(&format!("/api/storages/azure/{id}"), &app.owner)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.delete(&format!("/api/storages/azure_spi/{id}"), &app.owner)
        .await
        .expect(StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn azure_spi_routes_sqlite() {
    azure_spi_routes(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn azure_spi_routes_postgres() {
    azure_spi_routes(Backend::Postgres).await;
}
