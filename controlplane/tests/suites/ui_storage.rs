//! The project's cloud storage settings page of the web UI (`/projects/{id}/settings/storage`),
//! driven as a browser would: local-files and S3 (moto) storages connected, checked, synced,
//! edited and removed through the forms, each effect checked through the API. Credentials never
//! appear in a page, and editing without retyping one keeps it; bad input shows the API's
//! message, keeps what was typed and changes nothing; members without `storage.manage`, forged
//! posts and posts without the CSRF token change nothing.

use http::StatusCode;
use serde_json::{Value, json};
use verity_controlplane::authz::Role;

use crate::{
    common::{Backend, Reply, TestApp},
    exportchanges::moto,
    ui::{Browser, PASSWORD, escaped, follow, location, password_user, task_total},
    webhooks::start_worker,
};

/// A signed-in browser of a new user with `role`; answers it and the user's API token.
async fn signed_in(app: &TestApp, email: &str, role: Role) -> (Browser, String) {
    let token = password_user(app, email, role).await;
    let mut browser = Browser::default();
    let reply = browser.sign_in(app, email, PASSWORD).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    (browser, token)
}

/// Posts `fields` with the CSRF token `csrf`.
async fn post(
    browser: &mut Browser,
    app: &TestApp,
    path: &str,
    csrf: &str,
    fields: &[(&str, &str)],
) -> Reply {
    let mut all = vec![("csrf_token", csrf)];
    all.extend_from_slice(fields);
    browser.post_form(app, path, &all).await
}

/// The project's storages of `kind` through the API (`export/` in `kind` for targets).
async fn api_storages(app: &TestApp, kind: &str, p: i64) -> Vec<Value> {
    app.get(&format!("/api/storages/{kind}?project={p}"), &app.owner)
        .await
        .expect(StatusCode::OK)
        .as_array()
        .expect("a list")
        .clone()
}

#[track_caller]
fn see_other(reply: &Reply, to: &str) {
    assert_eq!(
        (reply.status, location(reply).as_str()),
        (StatusCode::SEE_OTHER, to),
        "{}",
        reply.text
    );
}

async fn local_files_through_the_page(backend: Backend) {
    let base = tempfile::tempdir().expect("tempdir");
    let root = base.path().join("root");
    std::fs::create_dir_all(root.join("json")).expect("mkdir");
    std::fs::create_dir_all(root.join("out")).expect("mkdir");
    std::fs::write(
        root.join("json/tasks.json"),
        json!([{"text": "from the page 1"}, {"text": "from the page 2"}]).to_string(),
    )
    .expect("write");
    let root_text = root.display().to_string();
    let app = TestApp::with_config(backend, move |c| c.local_files_root = root_text).await;
    let p = app.mk_project(&app.owner, json!({})).await;
    let (mut admin, _) = signed_in(&app, "uis-admin@example.com", Role::Admin).await;
    let (mut annotator, annotator_token) =
        signed_in(&app, "uis-annotator@example.com", Role::Annotator).await;
    let csrf = admin.csrf(&app).await;
    let page_path = format!("/projects/{p}/settings/storage");
    let form_path = format!("/projects/{p}/settings/storage/form");

    // The page is a tab of the project and linked from the import page.
    let settings = admin.get(&app, &format!("/projects/{p}/settings")).await;
    assert!(
        settings.text.contains(&format!("href=\"{page_path}\"")),
        "{}",
        settings.text
    );
    let import = admin.get(&app, &format!("/projects/{p}/data/import")).await;
    assert!(
        import.text.contains(&format!("href=\"{page_path}\"")),
        "{}",
        import.text
    );
    let page = admin.get(&app, &page_path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(
        page.text.contains("Source Cloud Storage")
            && page.text.contains("Target Cloud Storage")
            && page.text.contains("id=\"no-import-storages\"")
            && page.text.contains("id=\"no-export-storages\""),
        "{}",
        page.text
    );
    let form = admin
        .get(
            &app,
            &format!("{form_path}?direction=import&type=localfiles"),
        )
        .await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.text);
    assert!(form.text.contains("name=\"path\""), "{}", form.text);

    // Bad input: the API's message, the typed values kept, nothing created.
    let bad = post(
        &mut admin,
        &app,
        &form_path,
        &csrf,
        &[
            ("op", "save"),
            ("direction", "import"),
            ("type", "localfiles"),
            ("title", "Typed title"),
            ("path", "no-such-dir"),
        ],
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    assert!(
        bad.text.contains("id=\"storage-error\"")
            && bad.text.contains("no-such-dir does not exist")
            && bad.text.contains("value=\"Typed title\""),
        "{}",
        bad.text
    );
    assert!(api_storages(&app, "localfiles", p).await.is_empty());

    // Without the CSRF token, and from an annotator (the page and a forged post): refused.
    let json_dir = root.join("json").display().to_string();
    let good = [
        ("op", "save"),
        ("direction", "import"),
        ("type", "localfiles"),
        ("title", "Shared drive"),
        ("path", json_dir.as_str()),
        ("use_blob_urls", ""),
    ];
    let no_csrf = admin.post_form(&app, &form_path, &good).await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN, "{}", no_csrf.text);
    let api_status = app
        .get(&format!("/api/storages?project={p}"), &annotator_token)
        .await
        .status;
    assert!(api_status.is_client_error(), "{api_status}");
    let refused = annotator.get(&app, &page_path).await;
    assert_eq!(refused.status, api_status, "{}", refused.text);
    assert!(
        !refused.text.contains("Source Cloud Storage"),
        "{}",
        refused.text
    );
    let annotator_csrf = annotator.csrf(&app).await;
    let forged = post(&mut annotator, &app, &form_path, &annotator_csrf, &good).await;
    assert_eq!(forged.status, api_status, "{}", forged.text);
    assert!(api_storages(&app, "localfiles", p).await.is_empty());

    // Connected through the form.
    let created = post(&mut admin, &app, &form_path, &csrf, &good).await;
    see_other(&created, &format!("{page_path}?done=created"));
    let list = api_storages(&app, "localfiles", p).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["title"], json!("Shared drive"));
    assert_eq!(list[0]["use_blob_urls"], json!(false));
    let storage = list[0]["id"].as_i64().expect("id");
    let storage_text = storage.to_string();
    let page = admin.get(&app, &format!("{page_path}?done=created")).await;
    assert!(
        page.text
            .contains(&format!("data-storage=\"import-localfiles-{storage}\""))
            && page.text.contains("Shared drive")
            && page.text.contains("id=\"storage-ok\""),
        "{}",
        page.text
    );
    let target = |op: &'static str| {
        [
            ("op", op),
            ("direction", "import"),
            ("type", "localfiles"),
            ("storage", storage_text.as_str()),
        ]
    };

    // An annotator cannot remove it, even with a well-formed post.
    let forged = post(
        &mut annotator,
        &app,
        &page_path,
        &annotator_csrf,
        &[
            ("op", "delete"),
            ("confirmed", "1"),
            ("direction", "import"),
            ("type", "localfiles"),
            ("storage", &storage_text),
        ],
    )
    .await;
    assert_eq!(forged.status, api_status, "{}", forged.text);
    assert_eq!(api_storages(&app, "localfiles", p).await.len(), 1);

    // Check connection.
    let checked = post(&mut admin, &app, &page_path, &csrf, &target("check")).await;
    assert_eq!(checked.status, StatusCode::OK, "{}", checked.text);
    assert!(
        checked.text.contains("the connection works"),
        "{}",
        checked.text
    );

    // Sync: the files become tasks.
    let synced = post(&mut admin, &app, &page_path, &csrf, &target("sync")).await;
    see_other(&synced, &format!("{page_path}?done=sync"));
    let _worker = start_worker(&app);
    let done = follow(&mut admin, &app, &format!("{page_path}?done=sync")).await;
    assert!(done.text.contains(">completed"), "{}", done.text);
    assert_eq!(task_total(&app, p).await, 2);

    // Edit: the form shows the storage; a change is saved; a bad one changes nothing.
    let edit_path = format!("{form_path}?direction=import&type=localfiles&storage={storage}");
    let edit = admin.get(&app, &edit_path).await;
    assert!(
        edit.text.contains("value=\"Shared drive\""),
        "{}",
        edit.text
    );
    let mut renamed = target("save").to_vec();
    renamed.extend([("title", "Renamed drive"), ("path", json_dir.as_str())]);
    let saved = post(&mut admin, &app, &form_path, &csrf, &renamed).await;
    see_other(&saved, &format!("{page_path}?done=saved"));
    let mut broken = target("save").to_vec();
    broken.extend([("title", "Never saved"), ("path", "gone-dir")]);
    let refused = post(&mut admin, &app, &form_path, &csrf, &broken).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    assert!(
        refused.text.contains("id=\"storage-error\"")
            && refused.text.contains("value=\"Never saved\""),
        "{}",
        refused.text
    );
    let list = api_storages(&app, "localfiles", p).await;
    assert_eq!(list[0]["title"], json!("Renamed drive"));

    // A target storage with can_delete_objects, and its export sync.
    let out_dir = root.join("out").display().to_string();
    let export = post(
        &mut admin,
        &app,
        &form_path,
        &csrf,
        &[
            ("op", "save"),
            ("direction", "export"),
            ("type", "localfiles"),
            ("title", "Results"),
            ("path", &out_dir),
            ("can_delete_objects", "1"),
        ],
    )
    .await;
    see_other(&export, &format!("{page_path}?done=created"));
    let targets = api_storages(&app, "export/localfiles", p).await;
    assert_eq!(targets.len(), 1, "{targets:?}");
    assert_eq!(targets[0]["can_delete_objects"], json!(true));
    let export_id = targets[0]["id"].as_i64().expect("id").to_string();
    let export_form = admin
        .get(
            &app,
            &format!("{form_path}?direction=export&type=localfiles&storage={export_id}"),
        )
        .await;
    assert!(
        export_form
            .text
            .contains("name=\"can_delete_objects\" value=\"1\" checked")
            && !export_form.text.contains("name=\"use_blob_urls\""),
        "{}",
        export_form.text
    );
    let export_sync = post(
        &mut admin,
        &app,
        &page_path,
        &csrf,
        &[
            ("op", "sync"),
            ("direction", "export"),
            ("type", "localfiles"),
            ("storage", &export_id),
        ],
    )
    .await;
    see_other(&export_sync, &format!("{page_path}?done=sync"));
    let done = app
        .wait_storage_sync(
            &format!("/api/storages/export/localfiles/{export_id}"),
            3000,
        )
        .await;
    assert_eq!(done["status"], json!("completed"), "{done}");

    // Remove: asked first (nothing removed), then removed.
    let asked = post(&mut admin, &app, &page_path, &csrf, &target("delete")).await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.text);
    assert!(
        asked.text.contains("id=\"storage-confirm\""),
        "{}",
        asked.text
    );
    assert_eq!(api_storages(&app, "localfiles", p).await.len(), 1);
    let mut confirmed = target("delete").to_vec();
    confirmed.push(("confirmed", "1"));
    let removed = post(&mut admin, &app, &page_path, &csrf, &confirmed).await;
    see_other(&removed, &format!("{page_path}?done=removed"));
    assert!(api_storages(&app, "localfiles", p).await.is_empty());
    assert_eq!(api_storages(&app, "export/localfiles", p).await.len(), 1);
    // The tasks stay.
    assert_eq!(task_total(&app, p).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ui_storage_local_files_sqlite() {
    local_files_through_the_page(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ui_storage_local_files_postgres() {
    local_files_through_the_page(Backend::Postgres).await;
}

const SECRET: &str = "S3cret-access-key-never-shown";
const KEY_ID: &str = "AKIAUISTORAGETEST";

/// The S3 form of a new storage of bucket `ui-bucket` at `endpoint`, posted as `op`.
fn s3_fields<'a>(op: &'a str, endpoint: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("op", op),
        ("direction", "import"),
        ("type", "s3"),
        ("title", "Bucket tasks"),
        ("bucket", "ui-bucket"),
        ("prefix", "tasks"),
        ("region_name", "us-east-1"),
        ("s3_endpoint", endpoint),
        ("aws_access_key_id", KEY_ID),
        ("aws_secret_access_key", SECRET),
        ("presign", "1"),
        ("presign_ttl", "15"),
    ]
}

async fn s3_through_the_page(backend: Backend) {
    let Some(moto) = moto().await else { return };
    let app = TestApp::with_config(backend, |c| c.allow_private_targets = "127.0.0.1".into()).await;
    let _worker = start_worker(&app);
    let client = reqwest::Client::new();
    let made = client
        .put(format!("{}/ui-bucket", moto.url))
        .send()
        .await
        .expect("create bucket");
    assert!(made.status().is_success(), "create bucket");
    let put = client
        .put(format!("{}/ui-bucket/tasks/one.json", moto.url))
        .body(json!({"data": {"text": "from the bucket"}}).to_string())
        .send()
        .await
        .expect("put object");
    assert!(put.status().is_success(), "put object");

    let p = app.mk_project(&app.owner, json!({})).await;
    let (mut admin, _) = signed_in(&app, "uis3-admin@example.com", Role::Admin).await;
    let csrf = admin.csrf(&app).await;
    let page_path = format!("/projects/{p}/settings/storage");
    let form_path = format!("/projects/{p}/settings/storage/form");
    let form = admin
        .get(&app, &format!("{form_path}?direction=import&type=s3"))
        .await;
    assert!(
        form.text
            .contains("name=\"aws_secret_access_key\" type=\"password\"")
            && form.text.contains("name=\"s3_endpoint\""),
        "{}",
        form.text
    );

    // An endpoint the outbound rules refuse: the API's message, typed values kept (never the
    // secret), nothing created.
    let refused = post(
        &mut admin,
        &app,
        &form_path,
        &csrf,
        &s3_fields("save", "http://10.9.8.7:9000"),
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    assert!(
        refused.text.contains("id=\"storage-error\"")
            && refused
                .text
                .contains(&format!("value=\"{}\"", escaped("http://10.9.8.7:9000")))
            && refused.text.contains("value=\"Bucket tasks\""),
        "{}",
        refused.text
    );
    assert!(!refused.text.contains(SECRET) && !refused.text.contains(KEY_ID));
    assert!(api_storages(&app, "s3", p).await.is_empty());

    // Checked without saving, then connected.
    let endpoint = moto.url.as_str();
    let checked = post(
        &mut admin,
        &app,
        &form_path,
        &csrf,
        &s3_fields("check", endpoint),
    )
    .await;
    assert_eq!(checked.status, StatusCode::OK, "{}", checked.text);
    assert!(
        checked.text.contains("id=\"storage-ok\""),
        "{}",
        checked.text
    );
    assert!(!checked.text.contains(SECRET));
    assert!(api_storages(&app, "s3", p).await.is_empty());
    let created = post(
        &mut admin,
        &app,
        &form_path,
        &csrf,
        &s3_fields("save", endpoint),
    )
    .await;
    see_other(&created, &format!("{page_path}?done=created"));
    let list = api_storages(&app, "s3", p).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let s = &list[0];
    assert_eq!(
        (
            &s["bucket"],
            &s["prefix"],
            &s["s3_endpoint"],
            &s["presign_ttl"],
            &s["has_credentials"]
        ),
        (
            &json!("ui-bucket"),
            &json!("tasks"),
            &json!(moto.url),
            &json!(15),
            &json!(true)
        ),
        "{s}"
    );
    let storage = s["id"].as_i64().expect("id").to_string();

    // The credentials are in no page.
    let page = admin.get(&app, &page_path).await;
    let edit_path = format!("{form_path}?direction=import&type=s3&storage={storage}");
    let edit = admin.get(&app, &edit_path).await;
    for html in [&page.text, &edit.text] {
        assert!(!html.contains(SECRET) && !html.contains(KEY_ID), "{html}");
    }
    assert!(
        edit.text.contains("value=\"Bucket tasks\"")
            && edit.text.contains("set — leave empty to keep"),
        "{}",
        edit.text
    );

    // Edited without retyping the credentials: they stay.
    let saved = post(
        &mut admin,
        &app,
        &form_path,
        &csrf,
        &[
            ("op", "save"),
            ("direction", "import"),
            ("type", "s3"),
            ("storage", &storage),
            ("title", "Renamed bucket"),
            ("bucket", "ui-bucket"),
            ("prefix", "tasks"),
            ("region_name", "us-east-1"),
            ("s3_endpoint", endpoint),
            ("aws_access_key_id", ""),
            ("aws_secret_access_key", ""),
            ("presign", "1"),
            ("presign_ttl", "15"),
        ],
    )
    .await;
    see_other(&saved, &format!("{page_path}?done=saved"));
    let got = app
        .get(&format!("/api/storages/s3/{storage}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (&got["title"], &got["has_credentials"]),
        (&json!("Renamed bucket"), &json!(true)),
        "{got}"
    );

    // A bad value on edit: the API's message, nothing changed.
    let bad = post(
        &mut admin,
        &app,
        &form_path,
        &csrf,
        &[
            ("op", "save"),
            ("direction", "import"),
            ("type", "s3"),
            ("storage", &storage),
            ("title", "Not saved"),
            ("bucket", "ui-bucket"),
            ("s3_endpoint", endpoint),
            ("presign_ttl", "forever"),
        ],
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    assert!(
        bad.text.contains("presign_ttl: must be a whole number")
            && bad.text.contains("value=\"forever\""),
        "{}",
        bad.text
    );
    let same = app
        .get(&format!("/api/storages/s3/{storage}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(same["title"], json!("Renamed bucket"));
    assert_eq!(same["presign_ttl"], json!(15));

    // Check connection and sync from the list: the object becomes a task.
    let target = |op: &'static str| {
        vec![
            ("op", op),
            ("direction", "import"),
            ("type", "s3"),
            ("storage", storage.as_str()),
        ]
    };
    let checked = post(&mut admin, &app, &page_path, &csrf, &target("check")).await;
    assert!(
        checked.text.contains("the connection works"),
        "{}",
        checked.text
    );
    let synced = post(&mut admin, &app, &page_path, &csrf, &target("sync")).await;
    see_other(&synced, &format!("{page_path}?done=sync"));
    let done = follow(&mut admin, &app, &format!("{page_path}?done=sync")).await;
    assert!(done.text.contains(">completed"), "{}", done.text);
    assert_eq!(task_total(&app, p).await, 1);

    // The stored keys cleared with their boxes: anonymous access from then on.
    let cleared = post(
        &mut admin,
        &app,
        &form_path,
        &csrf,
        &[
            ("op", "save"),
            ("direction", "import"),
            ("type", "s3"),
            ("storage", &storage),
            ("title", "Renamed bucket"),
            ("bucket", "ui-bucket"),
            ("prefix", "tasks"),
            ("region_name", "us-east-1"),
            ("s3_endpoint", endpoint),
            ("clear", "aws_access_key_id"),
            ("clear", "aws_secret_access_key"),
            ("presign", "1"),
            ("presign_ttl", "15"),
        ],
    )
    .await;
    see_other(&cleared, &format!("{page_path}?done=saved"));
    let anonymous = app
        .get(&format!("/api/storages/s3/{storage}"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(anonymous["has_credentials"], json!(false), "{anonymous}");

    // The other types' forms take their own fields (GCS's key and Azure's secrets write-only).
    for (kind, fields) in [
        (
            "gcs",
            &[
                "name=\"google_application_credentials\"",
                "name=\"gcs_endpoint\"",
            ][..],
        ),
        (
            "azure",
            &[
                "name=\"container\"",
                "name=\"account_key\" type=\"password\"",
                "name=\"client_secret\" type=\"password\"",
            ][..],
        ),
    ] {
        let form = admin
            .get(&app, &format!("{form_path}?direction=export&type={kind}"))
            .await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.text);
        for f in fields.iter().chain(&["name=\"can_delete_objects\""]) {
            assert!(form.text.contains(f), "{kind}: {f} in {}", form.text);
        }
        assert!(!form.text.contains("name=\"presign\""), "{}", form.text);
    }
    let unknown = admin
        .get(&app, &format!("{form_path}?direction=import&type=ftp"))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);

    // Removed after the confirmation.
    let mut confirmed = target("delete");
    confirmed.push(("confirmed", "1"));
    let removed = post(&mut admin, &app, &page_path, &csrf, &confirmed).await;
    see_other(&removed, &format!("{page_path}?done=removed"));
    assert!(api_storages(&app, "s3", p).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ui_storage_s3_sqlite() {
    s3_through_the_page(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ui_storage_s3_postgres() {
    s3_through_the_page(Backend::Postgres).await;
}
