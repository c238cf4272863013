//! Integration tests of the HTTP API on SQLite and PostgreSQL (one binary for the crate).

#[path = "suites/access.rs"]
mod access;
#[path = "suites/agreement.rs"]
mod agreement;
#[path = "suites/analytics.rs"]
mod analytics;
#[path = "suites/assignments.rs"]
mod assignments;
#[path = "suites/bucketsync.rs"]
mod bucketsync;
#[path = "suites/bulk.rs"]
mod bulk;
#[path = "suites/comments.rs"]
mod comments;
mod common;
#[path = "suites/crash.rs"]
mod crash;
#[path = "suites/credentials.rs"]
mod credentials;
#[path = "suites/distribution.rs"]
mod distribution;
#[path = "suites/dm.rs"]
mod dm;
#[path = "suites/drafts.rs"]
mod drafts;
#[path = "suites/exportchanges.rs"]
mod exportchanges;
#[path = "suites/jobs.rs"]
mod jobs;
#[path = "suites/ldap.rs"]
mod ldap;
#[path = "suites/matrix.rs"]
mod matrix;
#[path = "suites/ml.rs"]
mod ml;
#[path = "suites/review.rs"]
mod review;
#[path = "suites/scim.rs"]
mod scim;
#[path = "suites/snapshots.rs"]
mod snapshots;
#[path = "suites/storage.rs"]
mod storage;
#[path = "suites/stream.rs"]
mod stream;
#[path = "suites/tenancy.rs"]
mod tenancy;
#[path = "suites/ui.rs"]
mod ui;
#[path = "suites/ui_admin.rs"]
mod ui_admin;
#[path = "suites/ui_convert.rs"]
mod ui_convert;
#[path = "suites/ui_members.rs"]
mod ui_members;
#[path = "suites/ui_storage.rs"]
mod ui_storage;
#[path = "suites/uploads.rs"]
mod uploads;
#[path = "suites/webhooks.rs"]
mod webhooks;

use std::{collections::HashMap, sync::Arc};

use axum::body::Body;
use common::{Backend, TEXT_CONFIG, TestApp, choice};
use http::{Request, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use verity_controlplane::authz::Role;

both_backends! {
    async fn wire_conventions(app) {
        // Both spellings of a path, no redirect.
        for path in ["/api/version", "/api/version/"] {
            let v = app.get(path, "").await.expect(StatusCode::OK);
            assert_eq!(v["edition"], json!("Community"));
            assert!(v["release"].is_string());
        }
        let a = app.get("/api/projects", &app.owner).await.expect(StatusCode::OK);
        let b = app.get("/api/projects/", &app.owner).await.expect(StatusCode::OK);
        assert_eq!(a["count"], b["count"]);
        // Unknown endpoint, wrong method: JSON envelopes with stable codes.
        app.get("/api/nothing-here", &app.owner).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        let e = app.call("PUT", "/api/projects", &app.owner, Some(json!({}))).await.expect_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        assert_eq!(e["status_code"], json!(405));
        // Request ids are echoed, or generated.
        let req = Request::get("/api/version").header("x-request-id", "abc-123").body(Body::empty()).expect("req");
        assert_eq!(app.send(req).await.headers.get("x-request-id").and_then(|v| v.to_str().ok()), Some("abc-123"));
        assert!(app.get("/api/version", "").await.headers.contains_key("x-request-id"));
        // Health, readiness, metrics by route template.
        app.get("/livez", "").await.expect(StatusCode::OK);
        app.get("/readyz", "").await.expect(StatusCode::OK);
        app.get("/health/", "").await.expect(StatusCode::OK);
        let metrics = app.get("/metrics", "").await;
        assert!(metrics.text.contains("verity_http_requests_total{method=\"GET\",route=\"/api/version\",status=\"200\"}"), "{}", metrics.text);
        assert!(metrics.text.contains("verity_db_pool_connections"), "{}", metrics.text);
    }

    async fn authentication(app) {
        app.get("/api/projects", "").await.expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
        app.get("/api/projects", "not-a-real-token-at-all-xxxxxxxx").await.expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
        // X-Api-Key carries a legacy token.
        let req = Request::get("/api/current-user/whoami").header("x-api-key", &app.owner).body(Body::empty()).expect("req");
        assert_eq!(app.send(req).await.expect(StatusCode::OK)["email"], json!("owner@example.com"));
        // Personal access token: refresh → access → Bearer.
        let pat = app.post("/api/token", &app.owner, json!({})).await.expect(StatusCode::CREATED)["token"].as_str().expect("pat").to_string();
        let bearer = |token: &str| Request::get("/api/current-user/whoami").header("authorization", format!("Bearer {token}")).body(Body::empty()).expect("req");
        // A refresh token is not an access token.
        app.send(bearer(&pat)).await.expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
        let access = app.post("/api/token/refresh", "", json!({"refresh": pat})).await.expect(StatusCode::OK)["access"].as_str().expect("access").to_string();
        assert_eq!(app.send(bearer(&access)).await.expect(StatusCode::OK)["email"], json!("owner@example.com"));
        let listed = app.get("/api/token", &app.owner).await.expect(StatusCode::OK);
        assert_eq!(listed.as_array().map(Vec::len), Some(1));
        assert!(!pat.starts_with(listed[0]["token"].as_str().expect("preview").to_string().as_str()) || listed[0]["token"].as_str() != Some(&pat), "the listing must not reveal the signature");
        // Revocation: refresh stops working; a second revocation is a 404.
        app.post("/api/token/blacklist", &app.owner, json!({"refresh": pat})).await.expect(StatusCode::NO_CONTENT);
        app.post("/api/token/refresh", "", json!({"refresh": pat})).await.expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
        app.post("/api/token/blacklist", &app.owner, json!({"refresh": pat})).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        // A tampered token is refused.
        let mut tampered = access.clone();
        tampered.pop();
        app.send(bearer(&tampered)).await.expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
        // Legacy token reset: the old one stops working.
        let new = app.post("/api/current-user/reset-token", &app.owner, json!({})).await.expect(StatusCode::CREATED)["token"].as_str().expect("t").to_string();
        app.get("/api/projects", &app.owner).await.expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
        app.get("/api/projects", &new).await.expect(StatusCode::OK);
        // Tokens are stored hashed: nothing in the database equals the token.
        let stored: Vec<String> = match &app.db {
            verity_controlplane::storage::Db::Postgres(p) => sqlx::query_scalar("select token_hash from api_token").fetch_all(p).await.expect("q"),
            verity_controlplane::storage::Db::Sqlite { read, .. } => sqlx::query_scalar("select token_hash from api_token").fetch_all(read).await.expect("q"),
        };
        assert!(!stored.iter().any(|h| h == &new || h == &pat));
    }

    async fn deactivated_users_lose_access(app) {
        let annotator = app.user("ann@example.com", Role::Annotator).await;
        let id = app.user_id(&annotator).await;
        let peer = app.user("peer@example.com", Role::Annotator).await;
        app.delete(&format!("/api/users/{id}"), &peer).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        app.delete(&format!("/api/users/{id}"), &annotator).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        app.delete(&format!("/api/users/{id}"), &app.owner).await.expect(StatusCode::NO_CONTENT);
        app.get("/api/current-user/whoami", &annotator).await.expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
        let users = app.get("/api/users", &app.owner).await.expect(StatusCode::OK);
        let user = users.as_array().expect("list").iter().find(|u| u["id"] == json!(id)).cloned().expect("still listed");
        assert_eq!(user["is_active"], json!(false));
    }

    async fn project_crud_and_validation(app) {
        let created = app.post("/api/projects", &app.owner, json!({"title": "My project", "label_config": TEXT_CONFIG, "maximum_annotations": 2, "sampling": "Uniform sampling"})).await.expect(StatusCode::CREATED);
        let id = created["id"].as_i64().expect("id");
        assert_eq!(created["maximum_annotations"], json!(2));
        assert_eq!(created["sampling"], json!("Uniform sampling"));
        assert_eq!(created["skip_queue"], json!("REQUEUE_FOR_OTHERS"));
        assert_eq!(created["show_skip_button"], json!(true));
        assert_eq!(created["task_number"], json!(0));
        assert_eq!(created["parsed_label_config"]["sentiment"]["type"], json!("Choices"));
        assert_eq!(created["created_by"]["email"], json!("owner@example.com"));
        // Invalid configurations: 400 naming the tag and attribute; nothing changes.
        let cases = [
            ("<View><Text name=\"t\" value=\"$t\"", "label_config"),
            ("<View><Bogus name=\"x\"/></View>", "Bogus"),
            ("<View><Text name=\"t\" value=\"$t\"/><Choices name=\"c\" toName=\"missing\"><Choice value=\"a\"/></Choices></View>", "toName"),
            ("<View><Text name=\"t\" value=\"$t\"/><Choices name=\"t\" toName=\"t\"><Choice value=\"a\"/></Choices></View>", "t"),
        ];
        for (config, mention) in cases {
            let e = app.patch(&format!("/api/projects/{id}"), &app.owner, json!({"label_config": config, "title": "Changed"})).await.expect_error(StatusCode::BAD_REQUEST, "invalid_label_config");
            assert!(e["detail"].as_str().expect("detail").contains(mention), "{e}");
            assert!(e["validation_errors"]["label_config"].is_array());
        }
        // Wrong types name the field; nothing changes.
        for (body, field) in [
            (json!({"maximum_annotations": "three"}), "maximum_annotations"),
            (json!({"sampling": "Random"}), "sampling"),
            (json!({"title": 5}), "title"),
            (json!({"title": "ab"}), "title"),
            (json!({"overlap_cohort_percentage": 150}), "overlap_cohort_percentage"),
            (json!({"show_skip_button": "yes"}), "show_skip_button"),
        ] {
            let e = app.patch(&format!("/api/projects/{id}"), &app.owner, body).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
            assert!(e["validation_errors"][field].is_array(), "{e}");
        }
        let after = app.project(id).await;
        assert_eq!(after["title"], json!("My project"));
        assert_eq!(after["label_config"], json!(TEXT_CONFIG));
        assert_eq!(after["maximum_annotations"], json!(2));
        // Malformed JSON and non-objects.
        let raw = app.post_raw("/api/projects", &app.owner, "application/json", "{not json").await;
        raw.expect_error(StatusCode::BAD_REQUEST, "invalid_json");
        app.post("/api/projects", &app.owner, json!([1, 2])).await.expect_error(StatusCode::BAD_REQUEST, "invalid_json");
        // Update and read back.
        let updated = app.patch(&format!("/api/projects/{id}/"), &app.owner, json!({"title": "Renamed", "expert_instruction": "<b>Be careful</b>", "skip_queue": "IGNORE_SKIPPED"})).await.expect(StatusCode::OK);
        assert_eq!(updated["title"], json!("Renamed"));
        assert_eq!(app.project(id).await["expert_instruction"], json!("<b>Be careful</b>"));
        // Validate endpoints.
        app.post("/api/projects/validate", &app.owner, json!({"label_config": TEXT_CONFIG})).await.expect(StatusCode::OK);
        app.post(&format!("/api/projects/{id}/validate"), &app.owner, json!({"label_config": "<View><X/></View>"})).await.expect_error(StatusCode::BAD_REQUEST, "invalid_label_config");
        // Delete: 204, then 404.
        app.delete(&format!("/api/projects/{id}"), &app.owner).await.expect(StatusCode::NO_CONTENT);
        app.get(&format!("/api/projects/{id}"), &app.owner).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        app.delete(&format!("/api/projects/{id}"), &app.owner).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    }

    async fn project_pagination(app) {
        for _ in 0..5 {
            app.mk_project(&app.owner, json!({})).await;
        }
        let p1 = app.get("/api/projects?page=1&page_size=2", &app.owner).await.expect(StatusCode::OK);
        assert_eq!(p1["count"], json!(5));
        assert_eq!(p1["results"].as_array().map(Vec::len), Some(2));
        assert!(p1["next"].as_str().expect("next").contains("page=2"));
        assert!(p1["previous"].is_null());
        let p3 = app.get("/api/projects?page=3&page_size=2", &app.owner).await.expect(StatusCode::OK);
        assert_eq!(p3["results"].as_array().map(Vec::len), Some(1));
        assert!(p3["next"].is_null());
        app.get("/api/projects?page=4&page_size=2", &app.owner).await.expect_error(StatusCode::NOT_FOUND, "invalid_page");
        app.get("/api/projects?page=0", &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        app.get("/api/projects?page_size=abc", &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
    }

    async fn import_formats(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let url = format!("/api/projects/{p}/import");
        // One object, JSON lines, CSV, TSV, multipart.
        let one = app.post(&url, &app.owner, json!({"text": "single"})).await.expect(StatusCode::CREATED);
        assert_eq!(one["task_count"], json!(1));
        let lines = app.post_raw(&url, &app.owner, "application/json", "{\"text\": \"l1\"}\n{\"text\": \"l2\"}\n").await.expect(StatusCode::CREATED);
        assert_eq!(lines["task_count"], json!(2));
        let csv = app.post_raw(&url, &app.owner, "text/csv", "text,extra\n\"a, quoted\",1\nb,2\n").await.expect(StatusCode::CREATED);
        assert_eq!(csv["task_count"], json!(2));
        let tsv = app.post_raw(&url, &app.owner, "text/tab-separated-values", "text\textra\nt1\tx\n").await.expect(StatusCode::CREATED);
        assert_eq!(tsv["task_count"], json!(1));
        let boundary = "XBOUNDARYX";
        let multipart = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"tasks.csv\"\r\nContent-Type: text/csv\r\n\r\ntext\nm1\nm2\nm3\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file2\"; filename=\"more.json\"\r\nContent-Type: application/json\r\n\r\n[{{\"text\": \"j1\"}}]\r\n--{boundary}--\r\n"
        );
        let mp = app.post_raw(&url, &app.owner, &format!("multipart/form-data; boundary={boundary}"), multipart).await.expect(StatusCode::CREATED);
        assert_eq!(mp["task_count"], json!(4));
        assert_eq!(mp["found_formats"], json!({".csv": 1, ".json": 1}));
        let project = app.project(p).await;
        assert_eq!(project["task_number"], json!(10));
        // The CSV quoted cell survived.
        let tasks = app.get(&format!("/api/tasks?project={p}&page_size=100&fields=task_only"), &app.owner).await.expect(StatusCode::OK);
        assert!(tasks["tasks"].as_array().expect("tasks").iter().any(|t| t["data"]["text"] == json!("a, quoted")));
        assert_eq!(tasks["total"], json!(10));
        // Unsupported upload type.
        let bad = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.exe\"\r\n\r\nMZ\r\n--{boundary}--\r\n");
        app.post_raw(&url, &app.owner, &format!("multipart/form-data; boundary={boundary}"), bad).await.expect_error(StatusCode::BAD_REQUEST, "invalid_import");
        assert_eq!(app.project(p).await["task_number"], json!(10));
    }

    async fn import_is_all_or_nothing(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        app.mk_tasks(&app.owner, p, 3).await;
        let url = format!("/api/projects/{p}/import");
        let ann = |label: &str| json!({"result": choice(label)});
        let cases: Vec<(Value, &str)> = vec![
            (json!([{"text": "ok"}, {"text": "ok"}, {"other": "missing text"}]), "task 2"),
            (json!([{"text": "ok"}, {"data": {"text": "x"}, "annotations": [ann("maybe")]}]), "task 1"),
            (json!([{"data": {"text": "x"}, "annotations": [{"result": [{"from_name": "nope", "to_name": "text", "type": "choices", "value": {"choices": ["pos"]}}]}]}]), "nope"),
            (json!([{"data": {"text": "x"}, "predictions": [{"result": "bad"}]}]), "predictions[0].result"),
            (json!([{"data": {"text": "x"}, "annotations": [{"result": [], "completed_by": 999999}]}]), "completed_by"),
            (json!([{"text": "ok"}, 5]), "task 1"),
            (json!([]), "no tasks"),
        ];
        for (body, mention) in cases {
            let e = app.post(&url, &app.owner, body).await.expect_error(StatusCode::BAD_REQUEST, "invalid_import");
            assert!(e["detail"].as_str().expect("detail").contains(mention), "expected {mention:?} in {e}");
        }
        for (ct, body) in [("application/json", "[{\"text\": \"a\"}, {\"text\": "), ("application/json", "[{\"text\": \"a\"} {\"text\": \"b\"}]"), ("text/csv", "text,b\n1\n")] {
            app.post_raw(&url, &app.owner, ct, body).await.expect_error(StatusCode::BAD_REQUEST, "invalid_import");
        }
        let project = app.project(p).await;
        assert_eq!(project["task_number"], json!(3), "a rejected import must write nothing");
        assert_eq!(project["total_annotations_number"], json!(0));
        let tasks = app.get(&format!("/api/tasks?project={p}&include=id"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(tasks["tasks"].as_array().map(Vec::len), Some(3));
    }

    async fn import_with_annotations_and_predictions(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let annotator = app.user("ann@example.com", Role::Annotator).await;
        let ann_id = app.user_id(&annotator).await;
        let body = json!([
            {"data": {"text": "a"}, "meta": {"source": "x"}, "annotations": [
                {"result": choice("pos"), "completed_by": ann_id, "lead_time": 2.5},
                {"result": [], "was_cancelled": true},
                {"result": choice("neg"), "ground_truth": true, "completed_by": {"email": "ann@example.com"}}
            ], "predictions": [{"result": choice("pos"), "score": 0.9, "model_version": "v1"}]},
            {"text": "b"}
        ]);
        let s = app.post(&format!("/api/projects/{p}/import?return_task_ids=true"), &app.owner, body).await.expect(StatusCode::CREATED);
        assert_eq!((s["task_count"].clone(), s["annotation_count"].clone(), s["prediction_count"].clone()), (json!(2), json!(3), json!(1)));
        let ids = s["task_ids"].as_array().expect("ids").clone();
        let project = app.project(p).await;
        assert_eq!(project["task_number"], json!(2));
        assert_eq!(project["total_annotations_number"], json!(2));
        assert_eq!(project["skipped_annotations_number"], json!(1));
        assert_eq!(project["ground_truth_number"], json!(1));
        assert_eq!(project["useful_annotation_number"], json!(1));
        assert_eq!(project["num_tasks_with_annotations"], json!(1));
        assert_eq!(project["total_predictions_number"], json!(1));
        assert_eq!(project["finished_task_number"], json!(1));
        let task = app.get(&format!("/api/tasks/{}", ids[0]), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(task["meta"], json!({"source": "x"}));
        assert_eq!(task["annotations"].as_array().map(Vec::len), Some(3));
        assert_eq!(task["annotations"][0]["completed_by"], json!(ann_id));
        assert_eq!(task["annotations"][0]["lead_time"], json!(2.5));
        // Annotators are listed once each, in the order of their first annotation, even when
        // their annotations are not adjacent (ann, importer, ann).
        let mut expected: Vec<Value> = Vec::new();
        for a in task["annotations"].as_array().expect("annotations") {
            if !expected.contains(&a["completed_by"]) {
                expected.push(a["completed_by"].clone());
            }
        }
        assert_eq!(task["annotations"][2]["completed_by"], json!(ann_id));
        assert_ne!(task["annotations"][1]["completed_by"], json!(ann_id));
        assert_eq!(task["annotators"], json!(expected));
        assert_eq!(expected.len(), 2);
        assert_eq!(task["predictions"][0]["model_version"], json!("v1"));
        assert_eq!(task["is_labeled"], json!(true));
    }

    async fn task_listing(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let ids = app.mk_tasks(&app.owner, p, 25).await;
        // Data-manager shape, include=id, 404 past the end.
        let page = app.get(&format!("/api/tasks?project={p}&page=2&page_size=10"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(page["total"], json!(25));
        let tasks = page["tasks"].as_array().expect("tasks");
        assert_eq!(tasks.len(), 10);
        assert_eq!(tasks[0]["id"], json!(ids[10]));
        assert!(tasks[0]["annotations"].is_array(), "fields=all is the default");
        let only_ids = app.get(&format!("/api/tasks?project={p}&page=3&page_size=10&include=id"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(only_ids["tasks"], json!(ids[20..].iter().map(|i| json!({"id": i})).collect::<Vec<_>>()));
        app.get(&format!("/api/tasks?project={p}&page=4&page_size=10"), &app.owner).await.expect_error(StatusCode::NOT_FOUND, "invalid_page");
        // Page numbers whose offset overflows, or that are no integer at all: 400.
        app.get(&format!("/api/tasks?project={p}&page=9223372036854775807&page_size=100"), &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        app.get(&format!("/api/tasks?project={p}&page=99999999999999999999"), &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        app.get("/api/projects?page=9223372036854775807&page_size=100", &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        app.get("/api/tasks", &app.owner).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        // Filters and ordering.
        let q = |v: Value| format!("/api/tasks?project={p}&include=id&query={}", common::urlencoding(&v.to_string()));
        let f = app.get(&q(json!({"filters": {"conjunction": "and", "items": [{"filter": "filter:tasks:data.text", "operator": "equal", "type": "String", "value": "task 3"}]}})), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(f["tasks"], json!([{"id": ids[3]}]));
        assert_eq!(f["total"], json!(1));
        let f = app.get(&q(json!({"filters": {"conjunction": "or", "items": [
            {"filter": "filter:tasks:id", "operator": "equal", "type": "Number", "value": ids[1]},
            {"filter": "filter:tasks:data.text", "operator": "contains", "type": "String", "value": "K 2"}]}})), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(f["total"], json!(1 + 6), "id {} or text containing 'k 2' (2, 20..=24)", ids[1]);
        let f = app.get(&q(json!({"filters": {"conjunction": "and", "items": [{"filter": "filter:tasks:id", "operator": "in", "type": "Number", "value": {"min": ids[5], "max": ids[7]}}]}, "ordering": ["-tasks:id"]})), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(f["tasks"], json!([{"id": ids[7]}, {"id": ids[6]}, {"id": ids[5]}]));
        let f = app.get(&q(json!({"selectedItems": {"all": false, "included": [ids[0], ids[2]]}})), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(f["total"], json!(2));
        app.get(&q(json!({"filters": {"conjunction": "xor", "items": []}})), &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        app.get(&q(json!({"filters": {"conjunction": "and", "items": [{"filter": "filter:tasks:nope", "operator": "equal", "value": 1}]}})), &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        // Values that parse as floats but are no SQL number: 400, not a database error.
        for bad in ["NaN", "inf", "-infinity", "1e400"] {
            app.get(&q(json!({"filters": {"conjunction": "and", "items": [{"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": bad}]}})), &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        }
        let f = app.get(&q(json!({"filters": {"conjunction": "and", "items": [{"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": "1e300"}]}})), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(f["total"], json!(0), "a huge but finite number still filters");
        // Per-project plain list.
        let list = app.get(&format!("/api/projects/{p}/tasks?page=1&page_size=20"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(list.as_array().map(Vec::len), Some(20));
        app.get(&format!("/api/projects/{p}/tasks?page=3&page_size=20"), &app.owner).await.expect_error(StatusCode::NOT_FOUND, "invalid_page");
    }

    async fn task_changes_and_bulk_delete(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let ids = app.mk_tasks(&app.owner, p, 6).await;
        let t = app.post("/api/tasks", &app.owner, json!({"project": p, "data": {"text": "created"}})).await.expect(StatusCode::CREATED);
        assert_eq!(t["data"], json!({"text": "created"}));
        app.post("/api/tasks", &app.owner, json!({"project": p, "data": {"other": 1}})).await.expect_error(StatusCode::BAD_REQUEST, "invalid_import");
        let patched = app.patch(&format!("/api/tasks/{}", ids[0]), &app.owner, json!({"data": {"text": "changed"}, "meta": {"m": 1}})).await.expect(StatusCode::OK);
        assert_eq!(patched["data"], json!({"text": "changed"}));
        app.patch(&format!("/api/tasks/{}", ids[0]), &app.owner, json!({"data": {"nope": 1}})).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        app.patch(&format!("/api/tasks/{}", ids[0]), &app.owner, json!({"data": "string"})).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        assert_eq!(app.get(&format!("/api/tasks/{}", ids[0]), &app.owner).await.expect(StatusCode::OK)["data"], json!({"text": "changed"}));
        // Annotate one task, then delete it: counters follow.
        app.post(&format!("/api/tasks/{}/annotations", ids[1]), &app.owner, json!({"result": choice("pos")})).await.expect(StatusCode::CREATED);
        app.delete(&format!("/api/tasks/{}", ids[1]), &app.owner).await.expect(StatusCode::NO_CONTENT);
        app.get(&format!("/api/tasks/{}", ids[1]), &app.owner).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        let project = app.project(p).await;
        assert_eq!(project["task_number"], json!(6));
        assert_eq!(project["total_annotations_number"], json!(0));
        assert_eq!(project["finished_task_number"], json!(0));
        // Bulk delete through the data-manager action.
        let r = app.post(&format!("/api/dm/actions?id=delete_tasks&project={p}"), &app.owner, json!({"selectedItems": {"all": false, "included": [ids[2], ids[3]]}})).await.expect(StatusCode::OK);
        assert_eq!(r["processed_items"], json!(2));
        assert_eq!(app.project(p).await["task_number"], json!(4));
        let r = app.post(&format!("/api/dm/actions?id=delete_tasks&project={p}"), &app.owner, json!({"selectedItems": {"all": true, "excluded": [ids[4]]}})).await.expect(StatusCode::OK);
        assert_eq!(r["processed_items"], json!(3));
        assert_eq!(app.project(p).await["task_number"], json!(1));
        app.delete(&format!("/api/projects/{p}/tasks"), &app.owner).await.expect(StatusCode::NO_CONTENT);
        assert_eq!(app.project(p).await["task_number"], json!(0));
    }

    async fn annotations_and_counters(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let ids = app.mk_tasks(&app.owner, p, 2).await;
        let url = format!("/api/tasks/{}/annotations", ids[0]);
        // Results that don't match the config name the item; nothing is written.
        for (result, mention) in [
            (json!([{"from_name": "other", "to_name": "text", "type": "choices", "value": {"choices": ["pos"]}}]), "other"),
            (json!([{"from_name": "sentiment", "to_name": "nope", "type": "choices", "value": {"choices": ["pos"]}}]), "nope"),
            (json!([{"from_name": "sentiment", "to_name": "text", "type": "labels", "value": {"labels": ["pos"]}}]), "labels"),
            (json!([{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["maybe"]}}]), "maybe"),
            (json!([{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": "pos"}}]), "choices"),
        ] {
            let e = app.post(&url, &app.owner, json!({"result": result})).await.expect_error(StatusCode::BAD_REQUEST, "invalid_result");
            assert!(e["detail"].as_str().expect("d").contains(mention), "{mention}: {e}");
        }
        app.post(&url, &app.owner, json!({"result": "x"})).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        app.post(&url, &app.owner, json!({"result": choice("pos"), "lead_time": "slow"})).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        assert_eq!(app.project(p).await["total_annotations_number"], json!(0));
        // Create, read back byte-for-byte, update, skip, delete.
        let result = json!([{"id": "r1", "from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["pos"]}, "origin": "manual", "extra": {"nested": [1, 2.5, null]}}]);
        let a = app.post(&url, &app.owner, json!({"result": result, "lead_time": 4.2})).await.expect(StatusCode::CREATED);
        assert_eq!(a["result"], result);
        assert_eq!(a["lead_time"], json!(4.2));
        let aid = a["id"].as_i64().expect("id");
        let p1 = app.project(p).await;
        assert_eq!((p1["total_annotations_number"].clone(), p1["finished_task_number"].clone(), p1["num_tasks_with_annotations"].clone()), (json!(1), json!(1), json!(1)));
        let list = app.get(&url, &app.owner).await.expect(StatusCode::OK);
        assert_eq!(list.as_array().map(Vec::len), Some(1));
        let up = app.patch(&format!("/api/annotations/{aid}"), &app.owner, json!({"result": choice("neg"), "ground_truth": true})).await.expect(StatusCode::OK);
        assert_eq!(up["result"], choice("neg"));
        assert_eq!(app.project(p).await["ground_truth_number"], json!(1));
        assert_eq!(app.project(p).await["useful_annotation_number"], json!(0));
        app.patch(&format!("/api/annotations/{aid}"), &app.owner, json!({"result": [{"from_name": "x"}]})).await.expect_error(StatusCode::BAD_REQUEST, "invalid_result");
        assert_eq!(app.get(&format!("/api/annotations/{aid}"), &app.owner).await.expect(StatusCode::OK)["result"], choice("neg"));
        // A skip on the other task.
        let skip = app.post(&format!("/api/tasks/{}/annotations?was_cancelled=1", ids[1]), &app.owner, json!({"result": []})).await.expect(StatusCode::CREATED);
        assert_eq!(skip["was_cancelled"], json!(true));
        let p2 = app.project(p).await;
        assert_eq!(p2["skipped_annotations_number"], json!(1));
        assert_eq!(p2["finished_task_number"], json!(1));
        // Deleting restores the counters.
        app.delete(&format!("/api/annotations/{aid}"), &app.owner).await.expect(StatusCode::NO_CONTENT);
        app.delete(&format!("/api/annotations/{}", skip["id"]), &app.owner).await.expect(StatusCode::NO_CONTENT);
        let p3 = app.project(p).await;
        for key in ["total_annotations_number", "finished_task_number", "num_tasks_with_annotations", "skipped_annotations_number", "ground_truth_number", "useful_annotation_number"] {
            assert_eq!(p3[key], json!(0), "{key}");
        }
        app.get(&format!("/api/annotations/{aid}"), &app.owner).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        app.post("/api/tasks/999999/annotations", &app.owner, json!({"result": choice("pos")})).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    }

    async fn empty_annotations_follow_the_project_setting(app) {
        let p = app.mk_project(&app.owner, json!({"enable_empty_annotation": false})).await;
        let ids = app.mk_tasks(&app.owner, p, 1).await;
        app.post(&format!("/api/tasks/{}/annotations", ids[0]), &app.owner, json!({"result": []})).await.expect_error(StatusCode::BAD_REQUEST, "invalid_result");
        app.post(&format!("/api/tasks/{}/annotations", ids[0]), &app.owner, json!({"result": [], "was_cancelled": true})).await.expect(StatusCode::CREATED);
    }

    async fn roles_are_enforced(app) {
        let annotator = app.user("ann@example.com", Role::Annotator).await;
        let other = app.user("ann2@example.com", Role::Annotator).await;
        let p = app.mk_project(&app.owner, json!({})).await;
        let ids = app.mk_tasks(&app.owner, p, 2).await;
        // Annotators reach only the projects they are members of.
        app.get(&format!("/api/projects/{p}"), &annotator).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        assert_eq!(app.get("/api/projects", &annotator).await.expect(StatusCode::OK)["count"], json!(0));
        app.add_member(p, &annotator, None).await;
        app.add_member(p, &other, None).await;
        assert_eq!(app.get("/api/projects", &annotator).await.expect(StatusCode::OK)["count"], json!(1));
        app.post("/api/projects", &annotator, json!({"title": "Mine"})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        let e = app.delete(&format!("/api/projects/{p}"), &annotator).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        assert!(e["detail"].as_str().expect("d").contains("project.delete"));
        app.post(&format!("/api/projects/{p}/import"), &annotator, json!([{"text": "x"}])).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        app.get(&format!("/api/projects/{p}/export"), &annotator).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        // Annotators annotate, and change only their own work.
        let a = app.post(&format!("/api/tasks/{}/annotations", ids[0]), &annotator, json!({"result": choice("pos")})).await.expect(StatusCode::CREATED);
        app.patch(&format!("/api/annotations/{}", a["id"]), &other, json!({"result": choice("neg")})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        app.delete(&format!("/api/annotations/{}", a["id"]), &other).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        app.patch(&format!("/api/annotations/{}", a["id"]), &annotator, json!({"result": choice("neg")})).await.expect(StatusCode::OK);
        // Nor can they author in someone else's name.
        let owner_id = app.user_id(&app.owner).await;
        app.post(&format!("/api/tasks/{}/annotations", ids[1]), &annotator, json!({"result": choice("pos"), "completed_by": owner_id})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        // Nothing changed by the refused calls.
        let project = app.project(p).await;
        assert_eq!(project["task_number"], json!(2));
        assert_eq!(project["total_annotations_number"], json!(1));
        // A manager cannot create an owner.
        let manager = app.user("m@example.com", Role::Manager).await;
        app.post("/api/users", &manager, json!({"email": "x@example.com", "role": "owner"})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        let admin = app.user("ad@example.com", Role::Admin).await;
        app.post("/api/users", &admin, json!({"email": "x@example.com", "role": "owner"})).await.expect_error(StatusCode::FORBIDDEN, "privilege_escalation");
        let created = app.post("/api/users", &admin, json!({"email": "x@example.com", "role": "reviewer"})).await.expect(StatusCode::CREATED);
        assert_eq!(created["role"], json!("RE"));
        app.post("/api/users", &admin, json!({"email": "X@example.com"})).await.expect_error(StatusCode::CONFLICT, "conflict");
    }

    async fn other_organizations_are_invisible(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let ids = app.mk_tasks(&app.owner, p, 1).await;
        let a = app.post(&format!("/api/tasks/{}/annotations", ids[0]), &app.owner, json!({"result": choice("pos")})).await.expect(StatusCode::CREATED);
        let pr = app.post("/api/predictions", &app.owner, json!({"task": ids[0], "result": choice("neg")})).await.expect(StatusCode::CREATED);
        let (_, stranger) = app.other_org("Other", "s@example.com").await;
        for path in [format!("/api/projects/{p}"), format!("/api/tasks/{}", ids[0]), format!("/api/annotations/{}", a["id"]), format!("/api/predictions/{}", pr["id"]), format!("/api/projects/{p}/export"), format!("/api/projects/{p}/next")] {
            app.get(&path, &stranger).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        }
        app.patch(&format!("/api/projects/{p}"), &stranger, json!({"title": "Hijacked"})).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        app.delete(&format!("/api/annotations/{}", a["id"]), &stranger).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        app.post(&format!("/api/projects/{p}/import"), &stranger, json!([{"text": "x"}])).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        app.get(&format!("/api/tasks?project={p}"), &stranger).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        assert_eq!(app.get("/api/projects", &stranger).await.expect(StatusCode::OK)["count"], json!(0));
        app.get(&format!("/api/predictions?project={p}"), &stranger).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        assert_eq!(app.get("/api/predictions", &stranger).await.expect(StatusCode::OK), json!([]));
        assert!(!app.get("/api/users", &stranger).await.text.contains("owner@example.com"));
        let project = app.project(p).await;
        assert_eq!(project["title"], json!("Sentiment"));
        assert_eq!(project["task_number"], json!(1));
    }

    async fn predictions(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let ids = app.mk_tasks(&app.owner, p, 3).await;
        let pr = app.post("/api/predictions", &app.owner, json!({"task": ids[0], "result": choice("pos"), "score": 0.7, "model_version": "m1"})).await.expect(StatusCode::CREATED);
        assert_eq!(pr["score"], json!(0.7));
        app.post("/api/predictions", &app.owner, json!({"task": ids[0], "result": [{"from_name": "zzz"}]})).await.expect_error(StatusCode::BAD_REQUEST, "invalid_result");
        app.post("/api/predictions", &app.owner, json!({"result": choice("pos")})).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        let bulk = app.post(&format!("/api/projects/{p}/import/predictions"), &app.owner, json!([
            {"task": ids[1], "result": choice("neg"), "score": 0.1, "model_version": "m2"},
            {"task": ids[2], "result": choice("pos")}
        ])).await.expect(StatusCode::CREATED);
        assert_eq!(bulk["created"], json!(2));
        // All or nothing.
        let e = app.post(&format!("/api/projects/{p}/import/predictions"), &app.owner, json!([
            {"task": ids[1], "result": choice("neg")}, {"task": 999999, "result": choice("pos")}
        ])).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        assert!(e["detail"].as_str().expect("d").contains("[1].task"), "{e}");
        assert_eq!(app.project(p).await["total_predictions_number"], json!(3));
        let list = app.get(&format!("/api/predictions?project={p}"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(list.as_array().map(Vec::len), Some(3));
        let by_task = app.get(&format!("/api/predictions?task={}", ids[1]), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(by_task[0]["model_version"], json!("m2"));
        let up = app.patch(&format!("/api/predictions/{}", pr["id"]), &app.owner, json!({"score": 0.95})).await.expect(StatusCode::OK);
        assert_eq!(up["score"], json!(0.95));
        assert_eq!(up["result"], choice("pos"));
        app.delete(&format!("/api/predictions/{}", pr["id"]), &app.owner).await.expect(StatusCode::NO_CONTENT);
        assert_eq!(app.project(p).await["total_predictions_number"], json!(2));
        assert_eq!(app.get(&format!("/api/tasks/{}", ids[0]), &app.owner).await.expect(StatusCode::OK)["total_predictions"], json!(0));
    }

    async fn label_stream_basics(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let ids = app.mk_tasks(&app.owner, p, 3).await;
        let a = app.user("a@example.com", Role::Annotator).await;
        let b = app.user("b@example.com", Role::Annotator).await;
        app.add_member(p, &a, None).await;
        app.add_member(p, &b, None).await;
        let n1 = app.get(&format!("/api/projects/{p}/next"), &a).await.expect(StatusCode::OK);
        assert_eq!(n1["id"], json!(ids[0]));
        assert!(n1["unique_lock_id"].is_string());
        // Asking again returns the reserved task.
        assert_eq!(app.get(&format!("/api/projects/{p}/next/"), &a).await.expect(StatusCode::OK)["id"], json!(ids[0]));
        // Another annotator gets a different task while the reservation holds.
        assert_eq!(app.get(&format!("/api/projects/{p}/next"), &b).await.expect(StatusCode::OK)["id"], json!(ids[1]));
        app.post(&format!("/api/tasks/{}/annotations", ids[0]), &a, json!({"result": choice("pos")})).await.expect(StatusCode::CREATED);
        assert_eq!(app.get(&format!("/api/projects/{p}/next"), &a).await.expect(StatusCode::OK)["id"], json!(ids[2]));
        // Skipping (REQUEUE_FOR_OTHERS): the skipper never gets it back.
        app.post(&format!("/api/tasks/{}/annotations", ids[2]), &a, json!({"result": [], "was_cancelled": true})).await.expect(StatusCode::CREATED);
        app.post(&format!("/api/tasks/{}/annotations", ids[1]), &b, json!({"result": choice("neg")})).await.expect(StatusCode::CREATED);
        let e = app.get(&format!("/api/projects/{p}/next"), &a).await.expect_error(StatusCode::NOT_FOUND, "no_more_tasks");
        assert!(e["detail"].as_str().expect("d").contains("a@example.com"));
        assert_eq!(app.get(&format!("/api/projects/{p}/next"), &b).await.expect(StatusCode::OK)["id"], json!(ids[2]));
    }

    async fn exports(app) {
        let _worker = webhooks::start_worker(&app);
        let p = app.mk_project(&app.owner, json!({})).await;
        let ids = app.mk_tasks(&app.owner, p, 4).await;
        app.post(&format!("/api/tasks/{}/annotations", ids[0]), &app.owner, json!({"result": choice("pos"), "lead_time": 3.0})).await.expect(StatusCode::CREATED);
        app.post(&format!("/api/tasks/{}/annotations", ids[1]), &app.owner, json!({"result": [], "was_cancelled": true})).await.expect(StatusCode::CREATED);
        app.post("/api/predictions", &app.owner, json!({"task": ids[0], "result": choice("neg"), "model_version": "m"})).await.expect(StatusCode::CREATED);
        // Default: tasks with annotations (skips included), Label Studio's task schema.
        let r = app.get(&format!("/api/projects/{p}/export?exportType=JSON"), &app.owner).await;
        assert!(r.headers.get("content-disposition").and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("attachment")));
        let tasks = r.expect(StatusCode::OK);
        let tasks = tasks.as_array().expect("list");
        assert_eq!(tasks.iter().map(|t| t["id"].clone()).collect::<Vec<_>>(), vec![json!(ids[0]), json!(ids[1])]);
        assert_eq!(tasks[0]["data"], json!({"text": "task 0"}));
        assert_eq!(tasks[0]["annotations"][0]["result"], choice("pos"));
        assert_eq!(tasks[0]["predictions"][0]["model_version"], json!("m"));
        assert!(tasks[0].get("overlap").is_none() && tasks[0].get("is_labeled").is_none());
        let all = app.get(&format!("/api/projects/{p}/export?export_type=json&download_all_tasks=true"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(all.as_array().map(Vec::len), Some(4));
        let some = app.get(&format!("/api/projects/{p}/export?download_all_tasks=true&ids[]={}&ids[]={}", ids[2], ids[3]), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(some.as_array().map(|a| a.iter().map(|t| t["id"].clone()).collect::<Vec<_>>()), Some(vec![json!(ids[2]), json!(ids[3])]));
        let min = app.get(&format!("/api/projects/{p}/export?exportType=JSON_MIN"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(min[0]["sentiment"], json!("pos"));
        assert_eq!(min[0]["text"], json!("task 0"));
        assert_eq!(min[0]["lead_time"], json!(3.0));
        let csv = app.get(&format!("/api/projects/{p}/export?exportType=CSV"), &app.owner).await;
        assert_eq!(csv.status, StatusCode::OK);
        let mut lines = csv.text.lines();
        let header: Vec<&str> = lines.next().expect("header").split(',').collect();
        assert!(header.contains(&"text") && header.contains(&"sentiment") && header.contains(&"annotator"), "{header:?}");
        let first: Vec<&str> = lines.next().expect("row").split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name).expect("column");
        assert_eq!(first[col("sentiment")], "pos");
        assert_eq!(first[col("text")], "task 0");
        let tsv = app.get(&format!("/api/projects/{p}/export?exportType=TSV"), &app.owner).await;
        assert!(tsv.text.lines().next().expect("header").contains('\t'));
        app.get(&format!("/api/projects/{p}/export?exportType=DOCLANG"), &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        // A brush format is known but needs brush labels (ADR 0050).
        app.get(&format!("/api/projects/{p}/export?exportType=BRUSH_TO_PNG"), &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "export_format_unsupported");
        app.get(&format!("/api/projects/{p}/export?exportType=BRUSH_TO_COCO"), &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "export_format_unsupported");
        // A converter format that does not fit a text classification project (ADR 0046).
        app.get(&format!("/api/projects/{p}/export?exportType=COCO"), &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "export_format_unsupported");
        app.get(&format!("/api/projects/{p}/export?ids=abc"), &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        let formats = app.get(&format!("/api/projects/{p}/export/formats"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(formats.as_array().map(Vec::len), Some(16));

        // Snapshots: create → poll → download; convert; a snapshot does not change with the data.
        let snap = app.post(&format!("/api/projects/{p}/exports"), &app.owner, json!({"title": "snap", "task_filter_options": {"only_with_annotations": true}})).await.expect(StatusCode::CREATED);
        let sid = snap["id"].as_i64().expect("id");
        let mut status = snap["status"].clone();
        for _ in 0..200 {
            if status == json!("completed") || status == json!("failed") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            status = app.get(&format!("/api/projects/{p}/exports/{sid}"), &app.owner).await.expect(StatusCode::OK)["status"].clone();
        }
        assert_eq!(status, json!("completed"));
        app.post(&format!("/api/tasks/{}/annotations", ids[3]), &app.owner, json!({"result": choice("neg")})).await.expect(StatusCode::CREATED);
        let downloaded = app.get(&format!("/api/projects/{p}/exports/{sid}/download"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(downloaded.as_array().map(Vec::len), Some(2), "the snapshot keeps its content");
        app.get(&format!("/api/projects/{p}/exports/{sid}/download?exportType=CSV"), &app.owner).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        let converted = app.post(&format!("/api/projects/{p}/exports/{sid}/convert"), &app.owner, json!({"export_type": "CSV"})).await.expect(StatusCode::OK);
        assert_eq!(converted["export_type"], json!("CSV"));
        wait_conversion(&app, p, sid, "CSV").await;
        let csv = app.get(&format!("/api/projects/{p}/exports/{sid}/download?exportType=CSV"), &app.owner).await;
        assert_eq!(csv.status, StatusCode::OK);
        assert_eq!(csv.text.lines().count(), 3, "header + one row per annotation: {}", csv.text);
        app.post(&format!("/api/projects/{p}/exports/{sid}/convert"), &app.owner, json!({"export_type": "XML"})).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        let listed = app.get(&format!("/api/projects/{p}/exports"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(listed[0]["converted_formats"][0]["export_type"], json!("CSV"));
        app.delete(&format!("/api/projects/{p}/exports/{sid}"), &app.owner).await.expect(StatusCode::NO_CONTENT);
        app.get(&format!("/api/projects/{p}/exports/{sid}"), &app.owner).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    }

    async fn import_large_batches_of_nested_objects(app) {
        // 600 tasks x 6 annotations and 6 predictions: several insert batches and chunks.
        let p = app.mk_project(&app.owner, json!({})).await;
        let tasks: Vec<Value> = (0..600)
            .map(|i| json!({"data": {"text": format!("t{i}")},
                "annotations": (0..6).map(|_| json!({"result": choice("pos")})).collect::<Vec<_>>(),
                "predictions": (0..6).map(|_| json!({"result": choice("neg"), "score": 0.5})).collect::<Vec<_>>()}))
            .collect();
        let s = app.post(&format!("/api/projects/{p}/import"), &app.owner, Value::Array(tasks)).await.expect(StatusCode::CREATED);
        assert_eq!((s["task_count"].clone(), s["annotation_count"].clone(), s["prediction_count"].clone()), (json!(600), json!(3600), json!(3600)));
        let project = app.project(p).await;
        assert_eq!(project["total_annotations_number"], json!(3600));
        assert_eq!(project["total_predictions_number"], json!(3600));
        let page = app.get(&format!("/api/tasks?project={p}&page=6&page_size=100"), &app.owner).await.expect(StatusCode::OK);
        for t in page["tasks"].as_array().expect("tasks") {
            assert_eq!(t["annotations"].as_array().map(Vec::len), Some(6));
            assert_eq!(t["predictions"].as_array().map(Vec::len), Some(6));
        }
    }

    async fn skips_complete_tasks_only_under_ignore_skipped(app) {
        let p = app.mk_project(&app.owner, json!({"skip_queue": "IGNORE_SKIPPED"})).await;
        let ids = app.mk_tasks(&app.owner, p, 2).await;
        let skip = app.post(&format!("/api/tasks/{}/annotations", ids[0]), &app.owner, json!({"result": [], "was_cancelled": true})).await.expect(StatusCode::CREATED);
        assert_eq!(app.get(&format!("/api/tasks/{}", ids[0]), &app.owner).await.expect(StatusCode::OK)["is_labeled"], json!(true));
        assert_eq!(app.project(p).await["finished_task_number"], json!(1));
        // Switching to the default policy recomputes completion: a skip no longer completes.
        app.patch(&format!("/api/projects/{p}"), &app.owner, json!({"skip_queue": "REQUEUE_FOR_OTHERS"})).await.expect(StatusCode::OK);
        assert_eq!(app.project(p).await["finished_task_number"], json!(0));
        app.patch(&format!("/api/projects/{p}"), &app.owner, json!({"skip_queue": "IGNORE_SKIPPED"})).await.expect(StatusCode::OK);
        assert_eq!(app.project(p).await["finished_task_number"], json!(1));
        // Turning the skip into a real annotation keeps the task complete; deleting it reopens it.
        app.patch(&format!("/api/annotations/{}", skip["id"]), &app.owner, json!({"was_cancelled": false, "result": choice("pos")})).await.expect(StatusCode::OK);
        let project = app.project(p).await;
        assert_eq!((project["finished_task_number"].clone(), project["skipped_annotations_number"].clone(), project["total_annotations_number"].clone()), (json!(1), json!(0), json!(1)));
        app.delete(&format!("/api/annotations/{}", skip["id"]), &app.owner).await.expect(StatusCode::NO_CONTENT);
        let project = app.project(p).await;
        assert_eq!((project["finished_task_number"].clone(), project["total_annotations_number"].clone(), project["num_tasks_with_annotations"].clone()), (json!(0), json!(0), json!(0)));
        assert_eq!(app.get(&format!("/api/tasks/{}", ids[0]), &app.owner).await.expect(StatusCode::OK)["is_labeled"], json!(false));
    }

    async fn breadth_first_takes_the_fullest_started_task_else_the_first(app) {
        // Overlap 3, skips requeued to others (a skip does not count towards the overlap).
        let p = app.mk_project(&app.owner, json!({"maximum_annotations": 3, "skip_queue": "REQUEUE_FOR_OTHERS"})).await;
        let ids = app.mk_tasks(&app.owner, p, 6).await;
        let mut users = Vec::new();
        for name in ["a", "b", "c", "d", "e"] {
            let token = app.user(&format!("{name}@bf.example.com"), Role::Annotator).await;
            app.add_member(p, &token, None).await;
            users.push(token);
        }
        let next = |token: String| {
            let app = &app;
            async move { app.get(&format!("/api/projects/{p}/next"), &token).await.expect(StatusCode::OK)["id"].as_i64().expect("id") }
        };
        // Only a skip on the fourth task: it was started but counts nothing, so the first task
        // in order comes first, not the skipped one.
        app.post(&format!("/api/tasks/{}/annotations", ids[3]), &users[0], json!({"result": [], "was_cancelled": true})).await.expect(StatusCode::CREATED);
        assert_eq!(next(users[1].clone()).await, ids[0]);
        // One annotation on the fifth task and two on the sixth: the fullest open task first.
        app.post(&format!("/api/tasks/{}/annotations", ids[4]), &users[0], json!({"result": choice("pos")})).await.expect(StatusCode::CREATED);
        for u in [&users[0], &users[1]] {
            app.post(&format!("/api/tasks/{}/annotations", ids[5]), u, json!({"result": choice("pos")})).await.expect(StatusCode::CREATED);
        }
        assert_eq!(next(users[2].clone()).await, ids[5]);
        // The sixth is now full for others (two annotations and c's reservation): the fifth next.
        assert_eq!(next(users[3].clone()).await, ids[4]);
        // e: the fifth holds one annotation and d's reservation, 2 of 3; it still has room.
        assert_eq!(next(users[4].clone()).await, ids[4]);
        // Once every started task is full or reserved, the stream goes back to task order.
        let f = app.user("f@bf.example.com", Role::Annotator).await;
        app.add_member(p, &f, None).await;
        assert_eq!(next(f).await, ids[0]);
    }
}

/// 50 annotators work a project concurrently: no task is ever held by more annotators than its
/// overlap at once, every submitted annotation is stored, and the counters match the rows.
async fn concurrent_annotators(backend: Backend, overlap: i64) {
    let app = Arc::new(TestApp::new(backend).await);
    let p = app
        .mk_project(&app.owner, json!({"maximum_annotations": overlap}))
        .await;
    let n_tasks = 40usize;
    app.mk_tasks(&app.owner, p, n_tasks).await;
    let mut tokens = Vec::new();
    for i in 0..50 {
        tokens.push(
            app.user(&format!("ann{i}@example.com"), Role::Annotator)
                .await,
        );
    }
    // They reach the project through its workspace, added in one bulk request.
    let ws = app
        .post("/api/workspaces", &app.owner, json!({"title": "Team"}))
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("id");
    let mut ids = Vec::new();
    for t in &tokens {
        ids.push(app.user_id(t).await);
    }
    app.post(
        &format!("/api/workspaces/{ws}/memberships/bulk"),
        &app.owner,
        json!({"users": ids}),
    )
    .await
    .expect(StatusCode::OK);
    app.post(
        &format!("/api/workspaces/{ws}/projects"),
        &app.owner,
        json!({"project": p}),
    )
    .await
    .expect(StatusCode::CREATED);
    // task id -> annotators currently holding it (between `next` and the submit's response).
    let holding: Arc<Mutex<HashMap<i64, usize>>> = Arc::default();
    let max_seen: Arc<Mutex<usize>> = Arc::default();
    let submitted: Arc<Mutex<Vec<i64>>> = Arc::default();
    let mut handles = Vec::new();
    for token in tokens {
        let (app, holding, max_seen, submitted) = (
            app.clone(),
            holding.clone(),
            max_seen.clone(),
            submitted.clone(),
        );
        handles.push(tokio::spawn(async move {
            for _ in 0..(n_tasks + 5) {
                let reply = app.get(&format!("/api/projects/{p}/next"), &token).await;
                if reply.status == StatusCode::NOT_FOUND {
                    assert_eq!(reply.body["code"], json!("no_more_tasks"), "{}", reply.text);
                    break;
                }
                let task = reply.expect(StatusCode::OK)["id"].as_i64().expect("id");
                {
                    let mut h = holding.lock().await;
                    let n = h.entry(task).or_default();
                    *n += 1;
                    let mut m = max_seen.lock().await;
                    *m = (*m).max(*n);
                }
                let a = app
                    .post(
                        &format!("/api/tasks/{task}/annotations"),
                        &token,
                        json!({"result": choice("pos")}),
                    )
                    .await
                    .expect(StatusCode::CREATED);
                submitted.lock().await.push(a["id"].as_i64().expect("id"));
                // Still counted as holding until the response arrived: the stricter check.
                *holding.lock().await.get_mut(&task).expect("held") -= 1;
            }
        }));
    }
    for h in handles {
        h.await.expect("annotator task");
    }
    let max_seen = *max_seen.lock().await;
    assert!(
        max_seen <= overlap as usize,
        "a task was handed to {max_seen} annotators at once with overlap {overlap}"
    );
    let submitted = submitted.lock().await.clone();
    assert_eq!(
        submitted.len(),
        n_tasks * overlap as usize,
        "each task gets exactly `overlap` annotations"
    );
    let tasks = app
        .get(
            &format!("/api/tasks?project={p}&page_size=1000"),
            &app.owner,
        )
        .await
        .expect(StatusCode::OK);
    let mut stored = 0;
    for t in tasks["tasks"].as_array().expect("tasks") {
        let anns = t["annotations"].as_array().expect("annotations");
        assert_eq!(
            anns.len() as i64,
            overlap,
            "task {} has {} annotations",
            t["id"],
            anns.len()
        );
        assert_eq!(t["total_annotations"], json!(overlap));
        assert_eq!(t["is_labeled"], json!(true));
        let mut authors: Vec<i64> = anns
            .iter()
            .map(|a| a["completed_by"].as_i64().expect("author"))
            .collect();
        authors.sort_unstable();
        authors.dedup();
        assert_eq!(
            authors.len() as i64,
            overlap,
            "distinct annotators per task"
        );
        stored += anns.len();
    }
    assert_eq!(stored, submitted.len(), "no annotation lost");
    let project = app.project(p).await;
    assert_eq!(project["total_annotations_number"], json!(submitted.len()));
    assert_eq!(project["finished_task_number"], json!(n_tasks));
    assert_eq!(project["num_tasks_with_annotations"], json!(n_tasks));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_annotators_overlap_1_sqlite() {
    concurrent_annotators(Backend::Sqlite, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_annotators_overlap_3_sqlite() {
    concurrent_annotators(Backend::Sqlite, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_annotators_overlap_1_postgres() {
    concurrent_annotators(Backend::Postgres, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_annotators_overlap_3_postgres() {
    concurrent_annotators(Backend::Postgres, 3).await;
}

#[tokio::test]
async fn oversized_bodies_get_413_and_change_nothing() {
    let app = TestApp::with_config(Backend::Sqlite, |c| {
        c.max_body_bytes = 1024;
        c.import_max_bytes = 2048;
    })
    .await;
    let big = "x".repeat(4096);
    app.post(
        "/api/projects",
        &app.owner,
        json!({"title": "Big", "description": big}),
    )
    .await
    .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let p = app.mk_project(&app.owner, json!({})).await;
    let tasks: Vec<Value> = (0..200)
        .map(|i| json!({"text": format!("task number {i}")}))
        .collect();
    app.post(
        &format!("/api/projects/{p}/import"),
        &app.owner,
        Value::Array(tasks),
    )
    .await
    .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_eq!(
        app.get("/api/projects", &app.owner)
            .await
            .expect(StatusCode::OK)["count"],
        json!(1)
    );
    assert_eq!(app.project(p).await["task_number"], json!(0));
}

#[tokio::test]
async fn openapi_document_is_committed() {
    let current = verity_controlplane::http::routes::openapi_json();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    if std::env::var_os("VERITY_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &current).expect("write docs/openapi.json");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == current,
        "docs/openapi.json is out of date; regenerate with VERITY_UPDATE_OPENAPI=1 cargo test -p verity-controlplane --test api openapi"
    );
    let doc: Value = serde_json::from_str(&current).expect("valid JSON");
    for path in [
        "/api/projects",
        "/api/projects/{id}/import",
        "/api/tasks",
        "/api/projects/{id}/next",
        "/api/projects/{id}/export",
        "/api/token/refresh",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
}

/// A path segment that is not an id answers in the error envelope (404 `not_found`, JSON), not
/// with the framework's plain-text rejection, for every kind of route.
#[tokio::test]
async fn path_segments_that_are_not_ids_answer_in_the_envelope() {
    let app = TestApp::new(Backend::Sqlite).await;
    for (method, path) in [
        ("GET", "/api/projects/9223372036854775808"),
        ("PATCH", "/api/projects/abc"),
        ("GET", "/api/tasks/1.5"),
        ("DELETE", "/api/annotations/-"),
        ("GET", "/api/projects/1/exports/x"),
    ] {
        let body = (method == "PATCH").then(|| json!({}));
        let reply = app.call(method, path, &app.owner, body).await;
        assert_eq!(
            reply
                .headers
                .get("content-type")
                .map(|v| v.to_str().unwrap_or_default()),
            Some("application/json"),
            "{method} {path}: {}",
            reply.text
        );
        reply.expect_error(StatusCode::NOT_FOUND, "not_found");
    }
}

/// The document lists the error answers an operation can give: every `/api/` operation may be
/// rate limited, every authenticated one refused, every one with parameters or a body rejected
/// as invalid, every write may conflict. The fuzzer in the test command holds the server to it.
#[test]
fn openapi_declares_the_error_answers() {
    let doc: Value =
        serde_json::from_str(&verity_controlplane::http::routes::openapi_json()).expect("json");
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("ops") {
            let responses = op["responses"].as_object().expect("responses");
            let public = op["security"].as_array().is_some_and(|s| {
                s.iter()
                    .all(|r| r.as_object().is_some_and(|r| r.is_empty()))
            });
            let mut expected = Vec::new();
            if path.starts_with("/api/") {
                expected.push("429");
            }
            if !public {
                expected.extend(["401", "403"]);
            }
            if method != "get" {
                expected.push("409");
            }
            if path.contains('{') || op.get("requestBody").is_some() {
                expected.extend(["400", "404"]);
            }
            for status in expected {
                let declared = &responses
                    .get(status)
                    .unwrap_or_else(|| panic!("{method} {path} does not declare {status}"));
                assert_eq!(
                    declared["content"]["application/json"]["schema"]["$ref"],
                    json!("#/components/schemas/ErrorBody"),
                    "{method} {path} {status}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 300, "only {checked} declarations checked");
}

#[test]
fn permission_table_is_documented() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/api.md");
    let doc = std::fs::read_to_string(&path).expect("docs/api.md");
    let (begin, end) = (
        "<!-- permission-table:begin -->\n",
        "<!-- permission-table:end -->",
    );
    let start = doc.find(begin).expect("begin marker") + begin.len();
    let stop = doc.find(end).expect("end marker");
    let table = verity_controlplane::authz::permission_table_markdown();
    if std::env::var_os("VERITY_UPDATE_DOCS").is_some() {
        std::fs::write(&path, format!("{}{}{}", &doc[..start], table, &doc[stop..]))
            .expect("write");
        return;
    }
    assert!(
        doc[start..stop] == table,
        "docs/api.md's permission table is out of date; regenerate with VERITY_UPDATE_DOCS=1 cargo test -p verity-controlplane --test api permission_table"
    );
}

/// Production databases are reached over TLS: with `sslmode=verify-full` and the server's CA the
/// connection is encrypted (rustls), and a wrong CA is refused.
#[tokio::test]
async fn postgres_connections_can_require_tls() {
    use verity_controlplane::storage::{Db, PoolOptions};
    let base = std::env::var("VERITY_TEST_DATABASE_URL")
        .expect("VERITY_TEST_DATABASE_URL (e2e/test-all starts PostgreSQL)");
    let ca = std::env::var("VERITY_TEST_PG_CA")
        .expect("VERITY_TEST_PG_CA: the test server's certificate (e2e/lib/postgres.sh)");
    let url = format!("{base}?sslmode=verify-full&sslrootcert={ca}");
    let db = Db::connect(&url, &PoolOptions::default())
        .await
        .expect("TLS connection");
    let Db::Postgres(pool) = &db else {
        panic!("expected PostgreSQL")
    };
    let ssl: bool = sqlx::query_scalar("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
        .fetch_one(pool)
        .await
        .expect("query");
    assert!(ssl, "the connection is not encrypted");
    let wrong = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(wrong.path(), include_str!("fixtures/unrelated-ca.pem")).expect("write");
    let bad = format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        wrong.path().display()
    );
    assert!(
        Db::connect(
            &bad,
            &PoolOptions {
                acquire_timeout: std::time::Duration::from_secs(5),
                ..Default::default()
            }
        )
        .await
        .is_err(),
        "a certificate from another CA must be refused"
    );
    // The same through `database_ca` (VERITY_DATABASE_CA, set by the operator from
    // spec.database.caSecretRef) and a URL without sslmode: verified TLS.
    let with_ca = |file: &std::path::Path| PoolOptions {
        acquire_timeout: std::time::Duration::from_secs(5),
        ca_file: Some(file.to_path_buf()),
        ..Default::default()
    };
    let db = Db::connect(&base, &with_ca(std::path::Path::new(&ca)))
        .await
        .expect("TLS connection through database_ca");
    let Db::Postgres(pool) = &db else {
        panic!("expected PostgreSQL")
    };
    let ssl: bool = sqlx::query_scalar("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
        .fetch_one(pool)
        .await
        .expect("query");
    assert!(ssl, "database_ca did not turn TLS on");
    assert!(
        Db::connect(&base, &with_ca(wrong.path())).await.is_err(),
        "database_ca: a certificate from another CA must be refused"
    );
    let weak = Db::connect(
        &format!("{base}?sslmode=require"),
        &with_ca(std::path::Path::new(&ca)),
    )
    .await
    .expect_err("a weaker sslmode with a CA must be refused");
    assert!(weak.to_string().contains("sslmode=require"), "{weak}");
}

async fn matrix_app(backend: Backend) -> TestApp {
    TestApp::with_config(backend, |c| {
        c.instance_admin_token = "matrix-instance-admin-token-0123456789".into();
        // The stand-in model server listens on loopback.
        c.allow_private_targets = "127.0.0.1".into();
        // Local-files storages need a root.
        let media = c.data_dir.join("media");
        std::fs::create_dir_all(&media).expect("media root");
        c.local_files_root = media.display().to_string();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn authorization_matrix_sqlite() {
    matrix::run(&matrix_app(Backend::Sqlite).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn authorization_matrix_postgres() {
    matrix::run(&matrix_app(Backend::Postgres).await).await;
}

/// Every route the server serves has an entry in the permission table, and every entry names
/// a route that exists: a new endpoint without a declared permission fails here.
#[test]
fn every_route_declares_its_permission() {
    let doc: Value =
        serde_json::from_str(&verity_controlplane::http::routes::openapi_json()).expect("json");
    let mut served = std::collections::BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for method in ops.as_object().expect("ops").keys() {
            served.insert((method.to_uppercase(), path.clone()));
        }
    }
    let declared: std::collections::BTreeSet<(String, String)> =
        verity_controlplane::authz::ENDPOINTS
            .iter()
            .map(|e| (e.method.to_string(), e.path.to_string()))
            .collect();
    let undeclared: Vec<_> = served.difference(&declared).collect();
    let stale: Vec<_> = declared.difference(&served).collect();
    assert!(
        undeclared.is_empty(),
        "routes without an entry in authz::ENDPOINTS: {undeclared:?}"
    );
    assert!(
        stale.is_empty(),
        "authz::ENDPOINTS entries without a route: {stale:?}"
    );
}

/// Handlers reach the database only through the storage layer, which checks authorization:
/// nothing under `src/http` may use sqlx, open a transaction or match on the pools.
#[test]
fn handlers_have_no_way_around_the_storage_layer() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut stack = vec![root];
    let mut offenders = Vec::new();
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src/http") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files += 1;
                let text = std::fs::read_to_string(&path).expect("read");
                for needle in [
                    "sqlx",
                    "with_read!",
                    "with_tx!",
                    "Db::Postgres",
                    "Db::Sqlite",
                ] {
                    if text.contains(needle) {
                        offenders.push(format!("{} uses {needle}", path.display()));
                    }
                }
            }
        }
    }
    assert!(files > 10, "found only {files} files under src/http");
    assert!(offenders.is_empty(), "{offenders:?}");
}

both_backends! {
    async fn annotators_are_blind_to_each_other(app) {
        let a = app.user("blind-a@example.com", Role::Annotator).await;
        let b = app.user("blind-b@example.com", Role::Annotator).await;
        let reviewer = app.user("blind-r@example.com", Role::Reviewer).await;
        let p = app.mk_project(&app.owner, json!({"maximum_annotations": 2})).await;
        for t in [&a, &b] {
            app.add_member(p, t, None).await;
        }
        app.add_member(p, &reviewer, Some("reviewer")).await;
        let task = app.mk_tasks(&app.owner, p, 1).await[0];
        let mine = app.post(&format!("/api/tasks/{task}/annotations"), &a, json!({"result": choice("pos")})).await.expect(StatusCode::CREATED)["id"].clone();
        let theirs = app.post(&format!("/api/tasks/{task}/annotations"), &b, json!({"result": choice("neg")})).await.expect(StatusCode::CREATED)["id"].clone();
        let a_id = app.user_id(&a).await;
        let ids = |v: &Value| -> Vec<Value> { v.as_array().expect("list").iter().map(|x| x["id"].clone()).collect() };
        // Every read path an annotator has: only their own annotation, and only themselves as annotator.
        let t = app.get(&format!("/api/tasks/{task}"), &a).await.expect(StatusCode::OK);
        assert_eq!(ids(&t["annotations"]), vec![mine.clone()]);
        assert_eq!(t["annotators"], json!([a_id]));
        assert_eq!(ids(&app.get(&format!("/api/tasks/{task}/annotations"), &a).await.expect(StatusCode::OK)), vec![mine.clone()]);
        app.get(&format!("/api/annotations/{theirs}"), &a).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        app.get(&format!("/api/annotations/{mine}"), &a).await.expect(StatusCode::OK);
        let page = app.get(&format!("/api/tasks?project={p}&fields=all"), &a).await.expect(StatusCode::OK);
        assert_eq!(ids(&page["tasks"][0]["annotations"]), vec![mine.clone()]);
        assert!(!page.to_string().contains("\"neg\""), "the other annotator's result leaks: {page}");
        let page = app.get(&format!("/api/tasks?project={p}"), &a).await.expect(StatusCode::OK);
        assert!(!page.to_string().contains("\"neg\""), "the other annotator's result leaks: {page}");
        // Reviewers and above see everybody's work.
        for who in [&reviewer, &app.owner] {
            let t = app.get(&format!("/api/tasks/{task}"), who).await.expect(StatusCode::OK);
            assert_eq!(ids(&t["annotations"]).len(), 2);
            assert_eq!(ids(&app.get(&format!("/api/tasks/{task}/annotations"), who).await.expect(StatusCode::OK)).len(), 2);
            app.get(&format!("/api/annotations/{theirs}"), who).await.expect(StatusCode::OK);
        }
        // A project can lift the blindness (consensus discussions, training): then annotators
        // see every annotation of the tasks they can see; the default stays blind.
        assert_eq!(app.project(p).await["annotators_see_others"], json!(false));
        app.patch(&format!("/api/projects/{p}"), &app.owner, json!({"annotators_see_others": true})).await.expect(StatusCode::OK);
        let t = app.get(&format!("/api/tasks/{task}"), &a).await.expect(StatusCode::OK);
        assert_eq!(ids(&t["annotations"]).len(), 2);
        app.get(&format!("/api/annotations/{theirs}"), &a).await.expect(StatusCode::OK);
        assert_eq!(ids(&app.get(&format!("/api/tasks/{task}/annotations"), &a).await.expect(StatusCode::OK)).len(), 2);
        app.patch(&format!("/api/projects/{p}"), &app.owner, json!({"annotators_see_others": "yes"})).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
    }
}

both_backends! {
    async fn ground_truth_is_a_managers_call(app) {
        let annotator = app.user("gt-a@example.com", Role::Annotator).await;
        // Managers of a project (here an organization admin; project members without a
        // workspace role are annotators or reviewers).
        let manager = app.user("gt-m@example.com", Role::Admin).await;
        let p = app.mk_project(&app.owner, json!({})).await;
        app.add_member(p, &annotator, None).await;
        let tasks = app.mk_tasks(&app.owner, p, 2).await;
        // The manager marks ground truth; the annotator can neither mark their own nor, by
        // doing so, clear the manager's.
        let gt = app.post(&format!("/api/tasks/{}/annotations", tasks[0]), &manager, json!({"result": choice("pos"), "ground_truth": true})).await.expect(StatusCode::CREATED);
        assert_eq!(gt["ground_truth"], json!(true));
        let e = app.post(&format!("/api/tasks/{}/annotations", tasks[0]), &annotator, json!({"result": choice("neg"), "ground_truth": true})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        assert!(e["detail"].as_str().unwrap_or_default().contains("ground_truth.manage"), "{e}");
        let mine = app.post(&format!("/api/tasks/{}/annotations", tasks[0]), &annotator, json!({"result": choice("neg")})).await.expect(StatusCode::CREATED);
        app.patch(&format!("/api/annotations/{}", mine["id"]), &annotator, json!({"ground_truth": true})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        // Changing other fields of one's own annotation still works (ground_truth unchanged).
        app.patch(&format!("/api/annotations/{}", mine["id"]), &annotator, json!({"result": choice("pos"), "ground_truth": false})).await.expect(StatusCode::OK);
        // Nothing changed: the manager's mark stands, the project counts one ground truth.
        assert_eq!(app.get(&format!("/api/annotations/{}", gt["id"]), &app.owner).await.expect(StatusCode::OK)["ground_truth"], json!(true));
        assert_eq!(app.project(p).await["ground_truth_number"], json!(1));
        // The manager may clear it.
        app.patch(&format!("/api/annotations/{}", gt["id"]), &manager, json!({"ground_truth": false})).await.expect(StatusCode::OK);
        assert_eq!(app.project(p).await["ground_truth_number"], json!(0));
    }
}

both_backends! {
    async fn parent_ids_must_belong_to_the_task(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let tasks = app.mk_tasks(&app.owner, p, 2).await;
        let pred = app.post("/api/predictions", &app.owner, json!({"task": tasks[0], "result": choice("pos")})).await.expect(StatusCode::CREATED)["id"].clone();
        let ann = app.post(&format!("/api/tasks/{}/annotations", tasks[0]), &app.owner, json!({"result": choice("pos")})).await.expect(StatusCode::CREATED)["id"].clone();
        // Of the same task: fine.
        app.post(&format!("/api/tasks/{}/annotations", tasks[0]), &app.owner, json!({"result": choice("neg"), "parent_prediction": pred, "parent_annotation": ann})).await.expect(StatusCode::CREATED);
        // Of another task, or not existing: 400 naming the field, nothing created.
        let before = app.project(p).await["total_annotations_number"].clone();
        let e = app.post(&format!("/api/tasks/{}/annotations", tasks[1]), &app.owner, json!({"result": choice("neg"), "parent_prediction": pred})).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        assert!(e["validation_errors"]["parent_prediction"].is_array(), "{e}");
        app.post(&format!("/api/tasks/{}/annotations", tasks[1]), &app.owner, json!({"result": choice("neg"), "parent_annotation": ann})).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        app.post(&format!("/api/tasks/{}/annotations", tasks[1]), &app.owner, json!({"result": choice("neg"), "parent_annotation": 999_999})).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        assert_eq!(app.project(p).await["total_annotations_number"], before);
    }
}

both_backends! {
    async fn csv_exports_neutralise_formulas(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        app.post(&format!("/api/projects/{p}/import"), &app.owner, json!([
            {"text": "=HYPERLINK(\"http://evil.example\",\"click\")"},
            {"text": "-3"},
            {"text": "plain"},
        ])).await.expect(StatusCode::CREATED);
        let csv = app.get(&format!("/api/projects/{p}/export?exportType=CSV&download_all_tasks=true"), &app.owner).await;
        assert_eq!(csv.status, StatusCode::OK);
        assert!(csv.text.contains("\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"click\"\")\""), "{}", csv.text);
        assert!(csv.text.contains(",'-3") || csv.text.contains("'-3,") || csv.text.contains("\n'-3"), "{}", csv.text);
        assert!(!csv.text.contains(",=HYPERLINK") && !csv.text.contains("\"=HYPERLINK"), "{}", csv.text);
        let tsv = app.get(&format!("/api/projects/{p}/export?exportType=TSV&download_all_tasks=true"), &app.owner).await;
        assert!(tsv.text.contains("'=HYPERLINK"), "{}", tsv.text);
        // Opt out for tools that need the raw values.
        let raw = app.get(&format!("/api/projects/{p}/export?exportType=CSV&download_all_tasks=true&keep_formulas=true"), &app.owner).await;
        assert!(raw.text.contains("\"=HYPERLINK(") && !raw.text.contains("'-3"), "{}", raw.text);
        app.get(&format!("/api/projects/{p}/export?exportType=CSV&keep_formulas=maybe"), &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
    }
}

async fn scalar(app: &TestApp, sql: &str) -> String {
    match &app.db {
        verity_controlplane::storage::Db::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await,
        verity_controlplane::storage::Db::Sqlite { read, .. } => {
            sqlx::query_scalar(sql).fetch_one(read).await
        }
    }
    .expect("query")
}

both_backends! {
    async fn secrets_are_write_only_and_sealed_at_rest(app) {
        // A project's ML-backend password: accepted, never answered, sealed in the database.
        let created = app.post("/api/projects", &app.owner, json!({"title": "Secrets", "label_config": TEXT_CONFIG, "task_data_login": "ml", "task_data_password": "pw-very-secret-1"})).await.expect(StatusCode::CREATED);
        let p = created["id"].as_i64().expect("id");
        assert_eq!(created["task_data_password"], Value::Null, "{created}");
        assert_eq!(created["task_data_login"], json!("ml"));
        assert_eq!(app.project(p).await["task_data_password"], Value::Null);
        let stored = scalar(&app, &format!("select settings from project where id = {p}")).await;
        assert!(!stored.contains("pw-very-secret-1") && stored.contains("sealed:v1:"), "{stored}");
        // Other changes keep it; it is never sealed twice.
        app.patch(&format!("/api/projects/{p}"), &app.owner, json!({"title": "Secrets 2"})).await.expect(StatusCode::OK);
        assert_eq!(scalar(&app, &format!("select settings from project where id = {p}")).await, stored);
        // A webhook's signing secret: answered once, sealed in the database.
        let hook = app.post("/api/webhooks", &app.owner, json!({"project": p, "url": "https://hooks.example.com/x"})).await.expect(StatusCode::CREATED);
        let secret = hook["secret"].as_str().expect("secret").to_string();
        let stored_secret = scalar(&app, &format!("select secret from webhook where id = {}", hook["id"])).await;
        assert!(stored_secret.starts_with("sealed:v1:") && !stored_secret.contains(&secret));
        for listed in [app.get("/api/webhooks", &app.owner).await.expect(StatusCode::OK), app.get(&format!("/api/webhooks/{}", hook["id"]), &app.owner).await.expect(StatusCode::OK)] {
            assert!(!listed.to_string().contains(&secret), "{listed}");
        }
        // The JWT signing key is sealed too.
        assert!(scalar(&app, "select value from instance_setting where key = 'jwt_signing_key'").await.starts_with("sealed:v1:"));
        // Values written in plain text by an older version are sealed by the start-up pass and
        // the signing-key read, and keep working.
        let sealer = verity_controlplane::secrets::Sealer::for_config(&app.config).expect("sealer");
        app.sql(&format!("update project set settings = '{{\"task_data_password\":\"legacy-plain-pw\"}}' where id = {p}")).await.expect("legacy");
        app.sql("update instance_setting set value = 'legacy-plain-signing-key' where key = 'jwt_signing_key'").await.expect("legacy key");
        assert_eq!(verity_controlplane::storage::projects::seal_legacy_secrets(&app.db, &sealer).await.expect("seal"), 1);
        let resealed = scalar(&app, &format!("select settings from project where id = {p}")).await;
        assert!(resealed.contains("sealed:v1:") && !resealed.contains("legacy-plain-pw"), "{resealed}");
        assert_eq!(verity_controlplane::storage::projects::seal_legacy_secrets(&app.db, &sealer).await.expect("again"), 0);
        let key = verity_controlplane::storage::users::signing_key(&app.db, &sealer).await.expect("key");
        assert_eq!(key, b"legacy-plain-signing-key");
        assert!(scalar(&app, "select value from instance_setting where key = 'jwt_signing_key'").await.starts_with("sealed:v1:"));
        assert_eq!(verity_controlplane::storage::users::signing_key(&app.db, &sealer).await.expect("key"), b"legacy-plain-signing-key");
    }
}

/// A request from `ip` (through a trusted proxy) with `token`.
fn from(ip: &str, path: &str, token: &str) -> Request<Body> {
    let mut r = Request::get(path).header("x-forwarded-for", ip);
    if !token.is_empty() {
        r = r.header("authorization", format!("Token {token}"));
    }
    r.body(Body::empty()).expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_per_token_and_per_address() {
    let app = TestApp::with_config(common::Backend::Sqlite, |c| {
        c.trust_forwarded_for = true;
        c.rate_limit_per_token_per_minute = 5;
        c.rate_limit_sign_ins_per_minute = 3;
    })
    .await;
    let other = app.user("budget@example.com", Role::Annotator).await;
    // A token's budget: 5 requests a minute, then 429 with Retry-After; other tokens unaffected.
    for _ in 0..5 {
        app.send(from("192.0.2.10", "/api/projects", &app.owner))
            .await
            .expect(StatusCode::OK);
    }
    let spent = app
        .send(from("192.0.2.10", "/api/projects", &app.owner))
        .await;
    let retry: u64 = spent
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
    spent.expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    app.send(from("192.0.2.10", "/api/projects", &other))
        .await
        .expect(StatusCode::OK);
    // Failed sign-ins from one address: after 3 the 4th failure blocks the address, and then
    // even a valid token from there is refused (guessing stays slow whatever the answer).
    for _ in 0..4 {
        app.send(from(
            "198.51.100.7",
            "/api/projects",
            "not-a-valid-token-xxxxxxxxxxxxxxxx",
        ))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    let third = app.user("third@example.com", Role::Annotator).await;
    app.send(from("198.51.100.7", "/api/projects", &third))
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    app.send(from("198.51.100.8", "/api/projects", &third))
        .await
        .expect(StatusCode::OK);
    // Requests without credentials from the blocked address are not sign-ins: still answered.
    app.send(from("198.51.100.7", "/api/version", ""))
        .await
        .expect(StatusCode::OK);
    // Failed token exchanges count too.
    for _ in 0..4 {
        let r = Request::post("/api/token/refresh")
            .header("x-forwarded-for", "203.0.113.9")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"refresh": "bogus"}"#))
            .expect("req");
        app.send(r)
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    let r = Request::post("/api/token/refresh")
        .header("x-forwarded-for", "203.0.113.9")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"refresh": "bogus"}"#))
        .expect("req");
    app.send(r)
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // So do refused SAML responses (anyone may post to an assertion consumer service): once
    // the address is blocked, its posts no longer reach the verifier or the audit log.
    let acs = format!("/saml/{}/acs", app.org);
    let post_acs = || {
        Request::post(acs.as_str())
            .header("x-forwarded-for", "203.0.113.20")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from("SAMLResponse=bm90IHNhbWw%3D&RelayState="))
            .expect("req")
    };
    for _ in 0..4 {
        assert_eq!(
            app.send_unchecked(post_acs()).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let audited = app.audit_actions(app.org).await.len();
    let blocked = app.send_unchecked(post_acs()).await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(app.audit_actions(app.org).await.len(), audited);
}

both_backends! {
    async fn annotation_changes_follow_the_declared_author_rule(app) {
        use verity_controlplane::authz::{Access, CHANGE_ANNOTATION, ENDPOINTS};
        // The table declares the rule the code enforces, for both methods.
        for method in ["PATCH", "DELETE"] {
            let e = ENDPOINTS.iter().find(|e| e.method == method && e.path == "/api/annotations/{id}").expect("declared");
            assert!(matches!(e.access, Access::AuthorOr { .. }), "{method}");
            assert_eq!(e.access.required(true), CHANGE_ANNOTATION.required(true));
        }
        let p = app.mk_project(&app.owner, json!({})).await;
        let annotator = app.user("author@example.com", Role::Annotator).await;
        let other = app.user("other@example.com", Role::Annotator).await;
        let reviewer = app.user("reviewer@example.com", Role::Reviewer).await;
        for t in [&annotator, &other, &reviewer] {
            app.add_member(p, t, None).await;
        }
        let task = app.mk_tasks(&app.owner, p, 1).await[0];
        let own = app.post(&format!("/api/tasks/{task}/annotations"), &annotator, json!({"result": choice("pos")})).await.expect(StatusCode::CREATED)["id"].as_i64().expect("id");
        let theirs = app.post(&format!("/api/tasks/{task}/annotations"), &other, json!({"result": choice("pos")})).await.expect(StatusCode::CREATED)["id"].as_i64().expect("id");
        // The author, with annotation.create: allowed.
        app.patch(&format!("/api/annotations/{own}"), &annotator, json!({"result": choice("neg")})).await.expect(StatusCode::OK);
        // Someone else's needs annotation.manage, which annotators lack and reviewers hold. (An
        // annotator cannot even see another's annotation: blind labeling answers 404.)
        let e = app.patch(&format!("/api/annotations/{theirs}"), &annotator, json!({"result": choice("neg")})).await;
        assert!(matches!(e.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND), "{}", e.text);
        assert_ne!(e.status, StatusCode::OK);
        app.patch(&format!("/api/annotations/{theirs}"), &reviewer, json!({"result": choice("neg")})).await.expect(StatusCode::OK);
        app.delete(&format!("/api/annotations/{own}"), &annotator).await.expect(StatusCode::NO_CONTENT);
        app.delete(&format!("/api/annotations/{theirs}"), &reviewer).await.expect(StatusCode::NO_CONTENT);
    }
}

/// Pages that nest annotations, predictions and drafts stop at `page_size_max_nested`; pages of
/// bare tasks at `page_size_max`; the legacy "every task" (`page_size=-1`) is refused rather than
/// cut short when a project has more.
#[tokio::test]
async fn nested_task_pages_are_bounded() {
    let app = TestApp::with_config(common::Backend::Sqlite, |c| {
        c.page_size_max = 100;
        c.page_size_max_nested = 3;
    })
    .await;
    let p = app.mk_project(&app.owner, json!({})).await;
    app.mk_tasks(&app.owner, p, 5).await;
    let count = |v: &Value| v["tasks"].as_array().map(Vec::len).expect("tasks");
    for (query, expected) in [
        ("page_size=10", 3),
        ("page_size=10&fields=all", 3),
        ("page_size=10&fields=task_only", 5),
        ("page_size=10&include=id", 5),
    ] {
        let got = app
            .get(&format!("/api/tasks?project={p}&{query}"), &app.owner)
            .await
            .expect(StatusCode::OK);
        assert_eq!(count(&got), expected, "{query}");
        assert_eq!(got["total"], json!(5), "{query}");
    }
    let legacy = app
        .get(&format!("/api/projects/{p}/tasks?page_size=10"), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(legacy.as_array().map(Vec::len), Some(3));
    let e = app
        .get(&format!("/api/projects/{p}/tasks?page_size=-1"), &app.owner)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
    assert!(
        e["detail"]
            .as_str()
            .is_some_and(|d| d.contains("page_size")),
        "{e}"
    );
    let small = app.mk_project(&app.owner, json!({"title": "Small"})).await;
    app.mk_tasks(&app.owner, small, 3).await;
    let all = app
        .get(
            &format!("/api/projects/{small}/tasks?page_size=-1"),
            &app.owner,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(all.as_array().map(Vec::len), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prediction_lists_are_bounded() {
    let app = TestApp::with_config(common::Backend::Sqlite, |c| c.page_size_max = 3).await;
    let p = app.mk_project(&app.owner, json!({})).await;
    let tasks = app.mk_tasks(&app.owner, p, 4).await;
    for t in &tasks {
        app.post(
            "/api/predictions",
            &app.owner,
            json!({"task": t, "result": choice("pos")}),
        )
        .await
        .expect(StatusCode::CREATED);
    }
    // More than the cap without pages: a clear 400, not everything at once.
    for path in [
        format!("/api/predictions?project={p}"),
        "/api/predictions".to_string(),
    ] {
        let e = app
            .get(&path, &app.owner)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        assert!(
            e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("page_size")),
            "{e}"
        );
    }
    // In pages, a plain list each (what the SDK reads); a filter by task stays small.
    let mut seen = Vec::new();
    for page in 1..=3 {
        let got = app
            .get(
                &format!("/api/predictions?project={p}&page={page}&page_size=2"),
                &app.owner,
            )
            .await
            .expect(StatusCode::OK);
        seen.extend(
            got.as_array()
                .expect("list")
                .iter()
                .map(|x| x["task"].as_i64().expect("task")),
        );
    }
    assert_eq!(seen, tasks);
    let one = app
        .get(&format!("/api/predictions?task={}", tasks[0]), &app.owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(one.as_array().map(Vec::len), Some(1));
    app.get(&format!("/api/predictions?project={p}&page=0"), &app.owner)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
}

both_backends! {
    async fn bulk_deletions_run_in_batches_with_a_bounded_audit_entry(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let ids = app.mk_tasks(&app.owner, p, 2500).await;
        let (keep, gone) = ids.split_at(10);
        app.post(&format!("/api/tasks/{}/annotations", gone[0]), &app.owner, json!({"result": choice("pos")})).await.expect(StatusCode::CREATED);
        let r = app.post(&format!("/api/dm/actions?project={p}&id=delete_tasks"), &app.owner, json!({"selectedItems": {"all": false, "included": gone}})).await.expect(StatusCode::OK);
        assert_eq!(r["processed_items"], json!(2490));
        let project = app.project(p).await;
        assert_eq!((project["task_number"].clone(), project["total_annotations_number"].clone()), (json!(10), json!(0)));
        let listed = app.get(&format!("/api/tasks?project={p}&page_size=100"), &app.owner).await.expect(StatusCode::OK);
        let left: Vec<i64> = listed["tasks"].as_array().expect("tasks").iter().map(|t| t["id"].as_i64().expect("id")).collect();
        assert_eq!(left, keep);
        let summary = scalar(&app, "select summary from audit_log where action = 'task.delete' order by id desc limit 1").await;
        let summary: Value = serde_json::from_str(&summary).expect("json");
        assert_eq!(summary["deleted"], json!(2490));
        assert_eq!(summary["ids"].as_array().map(Vec::len), Some(100));
        assert_eq!(summary["ids_truncated"], json!(true));
    }
}

both_backends! {
    async fn export_snapshots_of_a_project_run_two_at_a_time(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        app.mk_tasks(&app.owner, p, 3).await;
        // Two snapshots still being made (as a slow export would be).
        let owner_id = app.user_id(&app.owner).await;
        for _ in 0..2 {
            app.sql(&format!("insert into export_snapshot (project_id, title, status, created_by, params, task_count, annotation_count, created_at) values ({p}, 'slow', 'in_progress', {owner_id}, '{{}}', 0, 0, 1)")).await.expect("insert");
        }
        let e = app.post(&format!("/api/projects/{p}/exports"), &app.owner, json!({"title": "third"})).await.expect_error(StatusCode::CONFLICT, "conflict");
        assert!(e["detail"].as_str().is_some_and(|d| d.contains("wait until one is completed")), "{e}");
        // Another project is not held back; one finishing lets the next one start.
        let other = app.mk_project(&app.owner, json!({"title": "Other project"})).await;
        app.post(&format!("/api/projects/{other}/exports"), &app.owner, json!({})).await.expect(StatusCode::CREATED);
        app.sql(&format!("update export_snapshot set status = 'completed' where project_id = {p} and title = 'slow' and id = (select min(id) from export_snapshot where project_id = {p})")).await.expect("finish one");
        app.post(&format!("/api/projects/{p}/exports"), &app.owner, json!({"title": "now"})).await.expect(StatusCode::CREATED);
    }
}

both_backends! {
    async fn unique_and_reference_races_answer_409(app) {
        // What the database says when two writers race is translated, whatever the code path.
        let conflict = |e: sqlx::Error| {
            let api: verity_controlplane::error::ApiError = e.into();
            assert_eq!(api.code, verity_controlplane::error::ErrorCode::Conflict, "{}", api.detail);
        };
        let dup = "insert into instance_setting (key, value) values ('race-probe', 'x')";
        let fk = "insert into project_member (project_id, user_id, role, created_at) values (987654321, 987654321, null, 0)";
        match &app.db {
            verity_controlplane::storage::Db::Postgres(p) => {
                sqlx::query(dup).execute(p).await.expect("first");
                conflict(sqlx::query(dup).execute(p).await.expect_err("duplicate"));
                conflict(sqlx::query(fk).execute(p).await.expect_err("dangling reference"));
            }
            verity_controlplane::storage::Db::Sqlite { write, .. } => {
                sqlx::query(dup).execute(write).await.expect("first");
                conflict(sqlx::query(dup).execute(write).await.expect_err("duplicate"));
                conflict(sqlx::query(fk).execute(write).await.expect_err("dangling reference"));
            }
        }
        // Concurrent creations of one user: one is created, the others are told it exists.
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let service = app.service.clone();
            let owner = app.owner.clone();
            set.spawn(async move {
                let request = Request::post("/api/users").header("authorization", format!("Token {owner}")).header("content-type", "application/json").body(Body::from(r#"{"email": "twice@example.com", "role": "annotator"}"#)).expect("req");
                tower::ServiceExt::oneshot(service, request).await.expect("response").status()
            });
        }
        let mut created = 0;
        while let Some(status) = set.join_next().await {
            let status = status.expect("join");
            assert!(matches!(status, StatusCode::CREATED | StatusCode::CONFLICT), "{status}");
            created += usize::from(status == StatusCode::CREATED);
        }
        assert_eq!(created, 1);
    }
}

/// Runs `verity serve` on a fresh data directory with `env` until it printed the first-start
/// announcement (stdout is a pipe, as under a process supervisor); answers stdout.
async fn first_start(dir: &std::path::Path, env: &[(&str, &str)]) -> String {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_verity"))
        .arg("serve")
        .env("VERITY_DATA_DIR", dir)
        .env("VERITY_LISTEN", "127.0.0.1:0")
        .env_remove("VERITY_DATABASE_URL")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn verity serve");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut out = String::new();
    let read = async {
        while let Ok(Some(line)) = lines.next_line().await {
            out.push_str(&line);
            out.push('\n');
            if line.contains("listening on") {
                break;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), read)
        .await
        .expect("serve started within a minute");
    let _ = child.kill().await;
    out
}

#[tokio::test]
async fn first_start_never_prints_credentials_to_a_log_stream() {
    // Generated credentials: not in the output, in a file only the service user can read.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = first_start(dir.path(), &[]).await;
    let file = dir.path().join("initial-credentials");
    let saved = std::fs::read_to_string(&file).expect("credentials file");
    let token = saved
        .lines()
        .find_map(|l| l.strip_prefix("API token: "))
        .and_then(|l| l.split_whitespace().next())
        .expect("token line")
        .to_string();
    assert!(token.len() >= 32, "{saved}");
    assert!(
        !out.contains(&token) && out.contains("initial-credentials"),
        "{out}"
    );
    assert!(
        saved.contains("password:") && !out.contains("password:  "),
        "{out}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777,
            0o600
        );
    }
    // Configured credentials are never repeated, anywhere.
    let dir = tempfile::tempdir().expect("tempdir");
    let given = "configured-admin-token-0123456789abcdef";
    let out = first_start(
        dir.path(),
        &[
            ("VERITY_ADMIN_TOKEN", given),
            ("VERITY_ADMIN_PASSWORD", "configured-password-123"),
        ],
    )
    .await;
    assert!(
        !out.contains(given) && !out.contains("configured-password-123"),
        "{out}"
    );
    assert!(!dir.path().join("initial-credentials").exists());
}

both_backends! {
    async fn a_pause_landing_between_check_and_write_is_honoured(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let annotator = app.user("racer@example.com", Role::Annotator).await;
        app.add_member(p, &annotator, None).await;
        let annotator_id = app.user_id(&annotator).await;
        let owner_id = app.user_id(&app.owner).await;
        let task = app.mk_tasks(&app.owner, p, 1).await[0];
        let pause = format!("insert into project_pause (project_id, user_id, reason, verbose_reason, paused_by, created_at) values ({p}, {annotator_id}, 'MANUAL', 'stop', {owner_id}, 1)");
        // Hold the project's write lock while the annotator's request passes its first check;
        // pause them inside that transaction; let go.
        let submit = |service: verity_controlplane::http::Service| {
            let token = annotator.clone();
            tokio::spawn(async move {
                let request = Request::post(format!("/api/tasks/{task}/annotations")).header("authorization", format!("Token {token}")).header("content-type", "application/json").body(Body::from(json!({"result": choice("pos")}).to_string())).expect("req");
                tower::ServiceExt::oneshot(service, request).await.expect("response").status()
            })
        };
        let status = match &app.db {
            verity_controlplane::storage::Db::Postgres(pool) => {
                let mut tx = pool.begin().await.expect("begin");
                sqlx::query(&format!("select id from project where id = {p} for update")).execute(&mut *tx).await.expect("lock");
                let pending = submit(app.service.clone());
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                sqlx::query(&pause).execute(&mut *tx).await.expect("pause");
                tx.commit().await.expect("commit");
                pending.await.expect("join")
            }
            verity_controlplane::storage::Db::Sqlite { .. } => {
                use sqlx::Connection;
                let url = format!("sqlite://{}", app.config.data_dir.join("verity.db").display());
                let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("second connection");
                sqlx::query("begin immediate").execute(&mut conn).await.expect("lock");
                let pending = submit(app.service.clone());
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                sqlx::query(&pause).execute(&mut conn).await.expect("pause");
                sqlx::query("commit").execute(&mut conn).await.expect("commit");
                pending.await.expect("join")
            }
        };
        assert_eq!(status, StatusCode::FORBIDDEN, "the pause committed before the annotation was written");
        let project = app.project(p).await;
        assert_eq!(project["total_annotations_number"], json!(0));
    }
}

both_backends! {
    async fn two_owners_demoting_each_other_at_once_leave_one_owner(app) {
        let second = app.user("second-owner@example.com", Role::Owner).await;
        let first_id = app.user_id(&app.owner).await;
        let second_id = app.user_id(&second).await;
        let demote = |service: verity_controlplane::http::Service, token: String, target: i64, org: i64| {
            tokio::spawn(async move {
                let request = Request::patch(format!("/api/organizations/{org}/memberships")).header("authorization", format!("Token {token}")).header("content-type", "application/json").body(Body::from(json!({"user_id": target, "role": "admin"}).to_string())).expect("req");
                tower::ServiceExt::oneshot(service, request).await.expect("response").status()
            })
        };
        // Both requests read the owners while their writes are held back, then go at once.
        let statuses = match &app.db {
            verity_controlplane::storage::Db::Postgres(pool) => {
                let mut tx = pool.begin().await.expect("begin");
                sqlx::query(&format!("select user_id from org_member where organization_id = {} for update", app.org)).execute(&mut *tx).await.expect("lock");
                let a = demote(app.service.clone(), app.owner.clone(), second_id, app.org);
                let b = demote(app.service.clone(), second.clone(), first_id, app.org);
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                tx.commit().await.expect("commit");
                [a.await.expect("a"), b.await.expect("b")]
            }
            verity_controlplane::storage::Db::Sqlite { .. } => {
                use sqlx::Connection;
                let url = format!("sqlite://{}", app.config.data_dir.join("verity.db").display());
                let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("second connection");
                sqlx::query("begin immediate").execute(&mut conn).await.expect("lock");
                let a = demote(app.service.clone(), app.owner.clone(), second_id, app.org);
                let b = demote(app.service.clone(), second.clone(), first_id, app.org);
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                sqlx::query("commit").execute(&mut conn).await.expect("commit");
                [a.await.expect("a"), b.await.expect("b")]
            }
        };
        let ok = statuses.iter().filter(|s| s.is_success()).count();
        assert_eq!(ok, 1, "exactly one demotion goes through: {statuses:?}");
        assert!(statuses.contains(&StatusCode::FORBIDDEN), "{statuses:?}");
        let owners = scalar_i64(&app, &format!("select count(*) from org_member where organization_id = {} and role = 'owner' and deactivated_at is null", app.org)).await;
        assert_eq!(owners, 1);
    }
}

async fn scalar_i64(app: &TestApp, sql: &str) -> i64 {
    match &app.db {
        verity_controlplane::storage::Db::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await,
        verity_controlplane::storage::Db::Sqlite { read, .. } => {
            sqlx::query_scalar(sql).fetch_one(read).await
        }
    }
    .expect("query")
}

both_backends! {
    async fn concurrent_conversions_of_one_snapshot_both_land(app) {
        let _worker = webhooks::start_worker(&app);
        let p = app.mk_project(&app.owner, json!({})).await;
        let ids = app.mk_tasks(&app.owner, p, 50).await;
        for id in &ids {
            app.post(&format!("/api/tasks/{id}/annotations"), &app.owner, json!({"result": choice("pos")})).await.expect(StatusCode::CREATED);
        }
        for round in 0..3 {
            let sid = app.post(&format!("/api/projects/{p}/exports"), &app.owner, json!({"title": format!("round {round}")})).await.expect(StatusCode::CREATED)["id"].as_i64().expect("id");
            for _ in 0..400 {
                let s = app.get(&format!("/api/projects/{p}/exports/{sid}"), &app.owner).await.expect(StatusCode::OK);
                if s["status"] == json!("completed") {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            let convert = |format: &'static str| {
                let (service, token) = (app.service.clone(), app.owner.clone());
                tokio::spawn(async move {
                    let request = Request::post(format!("/api/projects/{p}/exports/{sid}/convert")).header("authorization", format!("Token {token}")).header("content-type", "application/json").body(Body::from(json!({"export_type": format}).to_string())).expect("req");
                    tower::ServiceExt::oneshot(service, request).await.expect("response").status()
                })
            };
            let (csv, tsv) = (convert("CSV"), convert("TSV"));
            assert_eq!((csv.await.expect("csv"), tsv.await.expect("tsv")), (StatusCode::OK, StatusCode::OK));
            wait_conversion(&app, p, sid, "CSV").await;
            wait_conversion(&app, p, sid, "TSV").await;
            let s = app.get(&format!("/api/projects/{p}/exports/{sid}"), &app.owner).await.expect(StatusCode::OK);
            let mut formats: Vec<String> = s["converted_formats"].as_array().expect("list").iter().map(|c| c["export_type"].as_str().unwrap_or_default().to_string()).collect();
            formats.sort();
            assert_eq!(formats, ["CSV", "TSV"], "round {round}: {s}");
            let csv = app.get(&format!("/api/projects/{p}/exports/{sid}/download?exportType=CSV"), &app.owner).await;
            let tsv = app.get(&format!("/api/projects/{p}/exports/{sid}/download?exportType=TSV"), &app.owner).await;
            assert_eq!((csv.text.lines().count(), tsv.text.lines().count()), (51, 51));
            assert!(csv.text.lines().next().is_some_and(|h| h.contains(',')) && tsv.text.lines().next().is_some_and(|h| h.contains('\t')));
        }
    }
}

/// Runs `requests` while a second connection holds the write lock, so that each passes its
/// reads before any of them writes; answers their statuses.
async fn race(app: &TestApp, p: i64, requests: Vec<Request<Body>>) -> Vec<StatusCode> {
    let spawn_all = |requests: Vec<Request<Body>>| {
        requests
            .into_iter()
            .map(|r| {
                let service = app.service.clone();
                tokio::spawn(async move {
                    tower::ServiceExt::oneshot(service, r)
                        .await
                        .expect("response")
                        .status()
                })
            })
            .collect::<Vec<_>>()
    };
    let pending = match &app.db {
        verity_controlplane::storage::Db::Postgres(pool) => {
            let mut tx = pool.begin().await.expect("begin");
            sqlx::query(&format!("select id from project where id = {p} for update"))
                .execute(&mut *tx)
                .await
                .expect("lock");
            let pending = spawn_all(requests);
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            tx.commit().await.expect("commit");
            pending
        }
        verity_controlplane::storage::Db::Sqlite { .. } => {
            use sqlx::Connection;
            let url = format!(
                "sqlite://{}",
                app.config.data_dir.join("verity.db").display()
            );
            let mut conn = sqlx::SqliteConnection::connect(&url)
                .await
                .expect("second connection");
            sqlx::query("begin immediate")
                .execute(&mut conn)
                .await
                .expect("lock");
            let pending = spawn_all(requests);
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            sqlx::query("commit")
                .execute(&mut conn)
                .await
                .expect("commit");
            pending
        }
    };
    let mut out = Vec::new();
    for p in pending {
        out.push(p.await.expect("join"));
    }
    out
}

fn patch_json(path: &str, token: &str, body: Value) -> Request<Body> {
    Request::patch(path)
        .header("authorization", format!("Token {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("req")
}

both_backends! {
    async fn concurrent_changes_of_one_annotation_both_land(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let task = app.mk_tasks(&app.owner, p, 1).await[0];
        let a = app.post(&format!("/api/tasks/{task}/annotations"), &app.owner, json!({"result": choice("pos")})).await.expect(StatusCode::CREATED)["id"].as_i64().expect("id");
        let path = format!("/api/annotations/{a}");
        let statuses = race(&app, p, vec![
            patch_json(&path, &app.owner, json!({"result": choice("neg")})),
            patch_json(&path, &app.owner, json!({"ground_truth": true})),
        ]).await;
        assert_eq!(statuses, [StatusCode::OK, StatusCode::OK]);
        let got = app.get(&path, &app.owner).await.expect(StatusCode::OK);
        assert_eq!((got["result"].clone(), got["ground_truth"].clone()), (choice("neg"), json!(true)), "neither change is lost: {got}");
        assert_eq!(app.project(p).await["ground_truth_number"], json!(1));
    }
}

both_backends! {
    async fn concurrent_project_changes_both_land(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        app.mk_tasks(&app.owner, p, 4).await;
        let path = format!("/api/projects/{p}");
        let statuses = race(&app, p, vec![
            patch_json(&path, &app.owner, json!({"title": "Renamed meanwhile"})),
            patch_json(&path, &app.owner, json!({"maximum_annotations": 2, "description": "two each"})),
        ]).await;
        assert_eq!(statuses, [StatusCode::OK, StatusCode::OK]);
        let got = app.project(p).await;
        assert_eq!(
            (got["title"].clone(), got["maximum_annotations"].clone(), got["description"].clone()),
            (json!("Renamed meanwhile"), json!(2), json!("two each")),
            "neither change is lost: {got}"
        );
        let tasks = app.get(&format!("/api/tasks?project={p}"), &app.owner).await.expect(StatusCode::OK);
        assert!(tasks["tasks"].as_array().expect("tasks").iter().all(|t| t["overlap"] == json!(2)), "{tasks}");
    }
}

both_backends! {
    async fn accepting_an_invitation_is_one_step(app) {
        let ws = app.post("/api/workspaces", &app.owner, json!({"title": "Joiners"})).await.expect(StatusCode::CREATED)["id"].as_i64().expect("id");
        let inv = app.post("/api/invitations", &app.owner, json!({"role": "annotator", "workspace": ws})).await.expect(StatusCode::CREATED);
        let token = inv["token"].as_str().expect("token").to_string();
        // A sign-up that fails (the email is taken) uses nothing up.
        app.post("/api/invitations/accept", "", json!({"token": token, "email": "owner@example.com", "password": "long enough password"})).await.expect_error(StatusCode::CONFLICT, "conflict");
        assert_eq!(app.get("/api/invitations", &app.owner).await.expect(StatusCode::OK)[0]["status"], json!("pending"));
        // Eight sign-ups race for the link: one user exists afterwards, in the workspace.
        let mut set = tokio::task::JoinSet::new();
        for i in 0..8 {
            let service = app.service.clone();
            let body = json!({"token": token, "email": format!("racer{i}@example.com"), "password": "long enough password"}).to_string();
            set.spawn(async move {
                let request = Request::post("/api/invitations/accept").header("content-type", "application/json").body(Body::from(body)).expect("req");
                tower::ServiceExt::oneshot(service, request).await.expect("response").status()
            });
        }
        let mut statuses = Vec::new();
        while let Some(s) = set.join_next().await {
            statuses.push(s.expect("join"));
        }
        assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count(), 1, "{statuses:?}");
        assert!(statuses.iter().all(|s| matches!(*s, StatusCode::CREATED | StatusCode::GONE)), "{statuses:?}");
        assert_eq!(scalar_i64(&app, "select count(*) from app_user where email like 'racer%'").await, 1);
        assert_eq!(scalar_i64(&app, &format!("select count(*) from workspace_member m join app_user u on u.id = m.user_id where m.workspace_id = {ws} and u.email like 'racer%'")).await, 1);
        assert_eq!(app.get("/api/invitations", &app.owner).await.expect(StatusCode::OK)[0]["status"], json!("used"));
    }
}

both_backends! {
    async fn csv_imports_larger_than_one_read_buffer_keep_every_row(app) {
        // Rows cross the 256 KiB read boundary of the import: unquoted text (where a cut used to
        // end the record) and, every tenth row, a quoted field with a delimiter and a newline.
        let p = app.mk_project(&app.owner, json!({})).await;
        let mut csv = String::from("text,note\n");
        for i in 0..6000 {
            if i % 10 == 0 {
                csv.push_str(&format!("\"row {i}, with a comma\nand a newline\",note-{i}-{}\n", "x".repeat(i % 40)));
            } else {
                csv.push_str(&format!("row {i} in plain text,note-{i}-{}\n", "x".repeat(i % 40)));
            }
        }
        assert!(csv.len() > 300 * 1024, "{}", csv.len());
        // Pad the first row so that a delimiter is the last byte of the first 256 KiB read (where
        // the cut used to add an empty column).
        let boundary = 256 * 1024;
        let comma = csv[..boundary].rfind(',').expect("a comma");
        let pad = boundary - 1 - comma;
        let first_text = csv.find("row 0,").expect("first row") + "row 0".len();
        csv.insert_str(first_text, &"p".repeat(pad));
        assert_eq!(csv.as_bytes()[boundary - 1], b',');
        let s = app.post_raw(&format!("/api/projects/{p}/import?return_task_ids=true"), &app.owner, "text/csv", csv).await.expect(StatusCode::CREATED);
        assert_eq!(s["task_count"], json!(6000));
        let ids = s["task_ids"].as_array().expect("ids");
        for i in [0usize, 2999, 4440, 4444, 5999] {
            let t = app.get(&format!("/api/tasks/{}", ids[i]), &app.owner).await.expect(StatusCode::OK);
            let text = match i {
                0 => format!("row 0{}, with a comma\nand a newline", "p".repeat(pad)),
                _ if i % 10 == 0 => format!("row {i}, with a comma\nand a newline"),
                _ => format!("row {i} in plain text"),
            };
            assert_eq!(t["data"], json!({"text": text, "note": format!("note-{i}-{}", "x".repeat(i % 40))}));
        }
    }
}

async fn wait_import(app: &TestApp, p: i64, id: i64) -> Value {
    for _ in 0..500 {
        let got = app
            .get(&format!("/api/projects/{p}/imports/{id}"), &app.owner)
            .await
            .expect(StatusCode::OK);
        if got["status"] == json!("completed") || got["status"] == json!("failed") {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("import {id} did not end");
}

/// Imports as jobs (Label Studio Enterprise's flow): the upload answers at once with an import
/// to poll; a worker imports it as the uploader, exactly once; bad data fails the import with
/// the same message a synchronous import gives and imports nothing; the stored upload is
/// removed when the import ends.
async fn async_imports_run_as_jobs(backend: Backend) {
    let app = TestApp::new(backend).await;
    let _worker = webhooks::start_worker(&app);
    let p = app.mk_project(&app.owner, json!({})).await;
    let queued = app
        .post(
            &format!("/api/projects/{p}/import?async=true&return_task_ids=true"),
            &app.owner,
            json!([{"text": "a"}, {"text": "b"}, {"data": {"text": "c"}, "annotations": [{"result": choice("pos")}]}]),
        )
        .await
        .expect(StatusCode::CREATED);
    let id = queued["import"].as_i64().expect("import id");
    assert!(queued["job"].is_string(), "{queued}");
    let done = wait_import(&app, p, id).await;
    assert_eq!(done["status"], json!("completed"), "{done}");
    assert_eq!(
        (done["task_count"].clone(), done["annotation_count"].clone()),
        (json!(3), json!(1))
    );
    assert_eq!(done["task_ids"].as_array().map(Vec::len), Some(3));
    // The worker acknowledges the job after the import's transaction (and its webhook
    // events): the import can read completed a moment before its job reads finished.
    let mut job = Value::Null;
    for _ in 0..250 {
        job = app
            .get(
                &format!("/api/jobs/{}", queued["job"].as_str().unwrap_or_default()),
                &app.owner,
            )
            .await
            .expect(StatusCode::OK);
        if job["state"] != json!("started") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(job["state"], json!("finished"), "{job}");
    assert_eq!(app.project(p).await["task_number"], json!(3));
    // The same import's job again (a retry): nothing imported twice.
    let jobs = verity_controlplane::jobs::Jobs::Sql(verity_controlplane::jobs::sql::SqlQueue::new(
        app.db.clone(),
    ));
    let again = verity_controlplane::imports::enqueue(&jobs, app.org, id)
        .await
        .expect("enqueue");
    for _ in 0..500 {
        let j = app
            .get(&format!("/api/jobs/{again}"), &app.owner)
            .await
            .expect(StatusCode::OK);
        if j["state"] == json!("finished") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(app.project(p).await["task_number"], json!(3));
    // Even a run that got past the status check cannot write the tasks a second time.
    let actor = verity_controlplane::storage::users::actor_for_legacy_token(&app.db, &app.owner)
        .await
        .expect("actor")
        .expect("owner");
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("again.json");
    std::fs::write(&path, r#"[{"text": "dup"}]"#).expect("write");
    let source = verity_controlplane::storage::tasks::ImportSource {
        path,
        format: verity_controlplane::storage::tasks::ImportFormat::Json,
        extension: ".json".into(),
        upload: None,
    };
    let e = verity_controlplane::storage::tasks::import_with(
        &app.db,
        &actor,
        p,
        &[source],
        false,
        verity_controlplane::storage::tasks::Claim::Import(id),
    )
    .await
    .expect_err("a completed import is not run again");
    assert_eq!(e.code, verity_controlplane::error::ErrorCode::Conflict);
    assert_eq!(app.project(p).await["task_number"], json!(3));
    // Bad data: the import fails with the reason, nothing is imported.
    let bad = app
        .post(
            &format!("/api/projects/{p}/import?async=true"),
            &app.owner,
            json!([{"text": "fine"}, {"body": "no text"}]),
        )
        .await
        .expect(StatusCode::CREATED)["import"]
        .as_i64()
        .expect("id");
    let failed = wait_import(&app, p, bad).await;
    assert_eq!(failed["status"], json!("failed"), "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("task 1")),
        "{failed}"
    );
    assert_eq!(app.project(p).await["task_number"], json!(3));
    assert_eq!(
        scalar_i64(&app, "select count(*) from project_import_file").await,
        0
    );
    // Another organization's import is not found; so is an unknown one.
    let (_, other) = app.other_org("Other", "other-owner@b.test").await;
    app.get(&format!("/api/projects/{p}/imports/{id}"), &other)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.get(&format!("/api/projects/{p}/imports/999999"), &app.owner)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_imports_run_as_jobs_sqlite() {
    async_imports_run_as_jobs(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_imports_run_as_jobs_postgres() {
    async_imports_run_as_jobs(Backend::Postgres).await;
}

/// Polls an export snapshot until it is completed or failed.
async fn wait_snapshot(app: &TestApp, p: i64, id: i64) -> Value {
    for _ in 0..1500 {
        let got = app
            .get(&format!("/api/projects/{p}/exports/{id}"), &app.owner)
            .await
            .expect(StatusCode::OK);
        if got["status"] == json!("completed") || got["status"] == json!("failed") {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("export {id} did not end");
}

/// Polls a snapshot's conversion to `format` until it is completed or failed; answers its
/// `converted_formats` entry.
async fn wait_conversion(app: &TestApp, p: i64, id: i64, format: &str) -> Value {
    for _ in 0..1500 {
        let got = app
            .get(&format!("/api/projects/{p}/exports/{id}"), &app.owner)
            .await
            .expect(StatusCode::OK);
        let entry = got["converted_formats"].as_array().and_then(|l| {
            l.iter()
                .find(|c| c["export_type"] == json!(format))
                .cloned()
        });
        if let Some(entry) = entry
            && (entry["status"] == json!("completed") || entry["status"] == json!("failed"))
        {
            return entry;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the conversion of export {id} to {format} did not end");
}

/// `verity storage-proxy` opens the database like the other commands: with `database_ca` set it
/// checks the server's certificate, so a server whose certificate does not chain to that CA is
/// refused and the proxy does not start.
#[tokio::test]
async fn storage_proxy_checks_the_database_certificate() {
    let base = std::env::var("VERITY_TEST_DATABASE_URL")
        .expect("VERITY_TEST_DATABASE_URL (e2e/test-all starts PostgreSQL)");
    let wrong = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(wrong.path(), include_str!("fixtures/unrelated-ca.pem")).expect("write");
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_verity"))
        .arg("storage-proxy")
        .env("VERITY_DATABASE_URL", &base)
        .env("VERITY_DATABASE_CA", wrong.path())
        .env(
            "VERITY_SESSION_KEY",
            "proxy-test-session-key-0123456789abcdef",
        )
        .env("VERITY_DATA_DIR", dir.path())
        .env("VERITY_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start verity storage-proxy");
    let mut status = None;
    for _ in 0..600 {
        status = child.try_wait().expect("status");
        if status.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let Some(status) = status else {
        let _ = child.kill();
        panic!("the proxy started although the database's certificate is not from its CA");
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("stderr");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}
