//! Conversions and predictions in the web UI, driven as a browser would: the export page
//! converts a snapshot through the code of `POST /api/projects/{id}/exports/{pk}/convert` and
//! offers the converted file for download; the import page imports a JSON file of predictions
//! through the code of `POST /api/projects/{id}/import/predictions`; the labeling page turns the
//! author's own annotation into their draft through the code of
//! `POST /api/annotations/{id}/convert-to-draft`. Each effect is checked through the API; bad
//! input shows the API's message and changes nothing; forged posts and roles without the
//! permission change nothing.

use http::StatusCode;
use serde_json::{Value, json};
use verity_controlplane::authz::Role;

use crate::{
    both_backends,
    common::{TEXT_CONFIG, TestApp, choice},
    ui::{Browser, PASSWORD, escaped, follow, location, password_user},
    webhooks::start_worker,
};

/// A signed-in browser of a new user with `role`, its CSRF token and the user's API token.
async fn signed_in(app: &TestApp, email: &str, role: Role) -> (Browser, String, String) {
    let token = password_user(app, email, role).await;
    let mut browser = Browser::default();
    let reply = browser.sign_in(app, email, PASSWORD).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    let csrf = browser.csrf(app).await;
    (browser, csrf, token)
}

/// The snapshot `sid` of project `p` as the API shows it.
async fn snapshot(app: &TestApp, p: i64, sid: i64) -> Value {
    app.get(&format!("/api/projects/{p}/exports/{sid}"), &app.owner)
        .await
        .expect(StatusCode::OK)
}

/// How many audit entries have the action `action`.
async fn audited(app: &TestApp, action: &str) -> usize {
    app.audit_actions(app.org)
        .await
        .iter()
        .filter(|(a, outcome, _)| a == action && outcome == "ok")
        .count()
}

/// How many predictions project `p` has, through the API.
async fn prediction_count(app: &TestApp, p: i64) -> usize {
    app.get(&format!("/api/predictions?project={p}"), &app.owner)
        .await
        .expect(StatusCode::OK)
        .as_array()
        .map(Vec::len)
        .expect("list")
}

both_backends! {
    // A completed snapshot converted to CSV through the export page's form: the page follows
    // the conversion, then links the converted file, which is the project's CSV. A format the
    // label config does not fit, an unknown one, or a snapshot still being written show the
    // API's message and change nothing; forged posts and an annotator change nothing.
    async fn export_page_converts_a_snapshot_and_downloads_it(app) {
        let annotator = password_user(&app, "cv-annotator@example.com", Role::Annotator).await;
        let (mut admin, csrf, _) = signed_in(&app, "cv-admin@example.com", Role::Admin).await;
        let p = app.mk_project(&app.owner, json!({"title": "Conversions", "label_config": TEXT_CONFIG})).await;
        app.add_member(p, &annotator, None).await;
        let tasks = app.mk_tasks(&app.owner, p, 2).await;
        for (t, label) in tasks.iter().zip(["pos", "neg"]) {
            app.post(&format!("/api/tasks/{t}/annotations"), &app.owner, json!({"result": choice(label)})).await.expect(StatusCode::CREATED);
        }
        let export_path = format!("/projects/{p}/data/export");
        let made = admin.post_form(&app, &export_path, &[("csrf_token", &csrf), ("op", "snapshot")]).await;
        assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.text);
        let sid = app.get(&format!("/api/projects/{p}/exports"), &app.owner).await.expect(StatusCode::OK)[0]["id"].as_i64().expect("snapshot id");

        // Not written yet (no worker runs): the API's refusal, nothing converted.
        let early = admin.post_form(&app, &export_path, &[("csrf_token", &csrf), ("op", "convert"), ("snapshot", &sid.to_string()), ("export_type", "CSV")]).await;
        assert_eq!(early.status, StatusCode::BAD_REQUEST, "{}", early.text);
        assert!(early.text.contains(&format!("id=\"export-error\">export {sid} is created; wait until it is completed")), "{}", early.text);
        assert!(!early.text.contains("class=\"inline convert\""), "no convert form before the snapshot is written");
        assert_eq!(snapshot(&app, p, sid).await["converted_formats"], json!([]));

        let _worker = start_worker(&app);
        let written = follow(&mut admin, &app, &export_path).await;
        assert!(written.text.contains("data-status=\"completed\""), "{}", written.text);
        // The form offers the formats that fit (not JSON, which the snapshot is, nor COCO).
        assert!(written.text.contains(&format!("id=\"convert-{sid}\" name=\"export_type\"")), "{}", written.text);
        assert!(written.text.contains("<option value=\"CSV\">CSV</option>"), "{}", written.text);
        assert!(written.text.contains("<option value=\"JSON_MIN\">"), "{}", written.text);
        assert!(!written.text.contains("<option value=\"COCO\">") && !written.text.contains("<option value=\"JSON\">"), "{}", written.text);

        // Forged or missing token, and an annotator: refused, nothing converted.
        let forged = admin.post_form(&app, &export_path, &[("csrf_token", "forged"), ("op", "convert"), ("snapshot", &sid.to_string()), ("export_type", "CSV")]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        let tokenless = admin.post_form(&app, &export_path, &[("op", "convert"), ("snapshot", &sid.to_string()), ("export_type", "CSV")]).await;
        assert_eq!(tokenless.status, StatusCode::FORBIDDEN);
        let mut ann = Browser::default();
        ann.sign_in(&app, "cv-annotator@example.com", PASSWORD).await;
        let ann_csrf = ann.csrf(&app).await;
        let tried = ann.post_form(&app, &export_path, &[("csrf_token", &ann_csrf), ("op", "convert"), ("snapshot", &sid.to_string()), ("export_type", "CSV")]).await;
        assert_eq!(tried.status, StatusCode::FORBIDDEN);
        assert!(tried.text.contains("export.run"), "{}", tried.text);
        assert_eq!(snapshot(&app, p, sid).await["converted_formats"], json!([]));

        // COCO does not fit a text project: the API's own message, nothing converted.
        let api = app.post(&format!("/api/projects/{p}/exports/{sid}/convert"), &app.owner, json!({"export_type": "COCO"})).await;
        let message = api.expect_error(StatusCode::BAD_REQUEST, "export_format_unsupported")["detail"].as_str().expect("detail").to_string();
        let coco = admin.post_form(&app, &export_path, &[("csrf_token", &csrf), ("op", "convert"), ("snapshot", &sid.to_string()), ("export_type", "COCO")]).await;
        assert_eq!(coco.status, StatusCode::BAD_REQUEST, "{}", coco.text);
        assert!(coco.text.contains(&format!("id=\"export-error\">{}", escaped(&message))), "{message} in {}", coco.text);
        let unknown = admin.post_form(&app, &export_path, &[("csrf_token", &csrf), ("op", "convert"), ("snapshot", &sid.to_string()), ("export_type", "NOPE")]).await;
        assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.text);
        assert!(unknown.text.contains("NOPE"), "{}", unknown.text);
        assert_eq!(snapshot(&app, p, sid).await["converted_formats"], json!([]));
        assert_eq!(audited(&app, "export.convert").await, 0);
        // A snapshot that does not exist.
        let missing = admin.post_form(&app, &export_path, &[("csrf_token", &csrf), ("op", "convert"), ("snapshot", "999999"), ("export_type", "CSV")]).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);

        // CSV: queued by the form, followed, then downloadable; the file is the project's CSV.
        let queued = admin.post_form(&app, &export_path, &[("csrf_token", &csrf), ("op", "convert"), ("snapshot", &sid.to_string()), ("export_type", "CSV")]).await;
        assert_eq!((queued.status, location(&queued)), (StatusCode::SEE_OTHER, export_path.clone()), "{}", queued.text);
        assert_eq!(audited(&app, "export.convert").await, 1);
        let done = follow(&mut admin, &app, &export_path).await;
        let link = format!("/api/projects/{p}/exports/{sid}/download?exportType=CSV");
        assert!(done.text.contains(&format!("<li data-format=\"CSV\" data-status=\"completed\"><a href=\"{link}\" class=\"download-converted\" download>Download CSV</a>")), "{}", done.text);
        let file = admin.get(&app, &link).await;
        assert_eq!(file.status, StatusCode::OK, "{}", file.text);
        assert_eq!(file.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("text/csv; charset=utf-8"));
        let direct = app.get(&format!("/api/projects/{p}/export?exportType=CSV&download_all_tasks=true"), &app.owner).await;
        assert_eq!(direct.status, StatusCode::OK);
        assert_eq!(file.text, direct.text, "the converted file is the project's CSV");
        let lines: Vec<&str> = file.text.lines().collect();
        assert_eq!(lines.len(), 3, "{}", file.text);
        assert!(lines[0].contains("sentiment") && file.text.contains("pos") && file.text.contains("neg"), "{}", file.text);
        // Converting again changes nothing.
        let again = admin.post_form(&app, &export_path, &[("csrf_token", &csrf), ("op", "convert"), ("snapshot", &sid.to_string()), ("export_type", "CSV")]).await;
        assert_eq!(again.status, StatusCode::SEE_OTHER);
        assert_eq!(audited(&app, "export.convert").await, 1);
        assert_eq!(snapshot(&app, p, sid).await["converted_formats"].as_array().map(Vec::len), Some(1));
    }

    // A JSON file of predictions for existing tasks through the import page: created as the API
    // creates them; a prediction for a task that does not exist, or a file that is not JSON,
    // shows the message and imports none; forged posts and an annotator import nothing.
    async fn import_page_imports_predictions_for_existing_tasks(app) {
        let annotator = password_user(&app, "pr-annotator@example.com", Role::Annotator).await;
        let (mut admin, csrf, _) = signed_in(&app, "pr-admin@example.com", Role::Admin).await;
        let p = app.mk_project(&app.owner, json!({"title": "Predictions", "label_config": TEXT_CONFIG})).await;
        app.add_member(p, &annotator, None).await;
        let tasks = app.mk_tasks(&app.owner, p, 2).await;
        let import_path = format!("/projects/{p}/data/import");
        let predictions_path = format!("/projects/{p}/data/import/predictions");
        let page = admin.get(&app, &import_path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert!(page.text.contains(&format!("action=\"{predictions_path}\" enctype=\"multipart/form-data\" id=\"predictions-form\"")), "{}", page.text);
        assert!(page.text.contains("id=\"predictions-with-tasks\""), "{}", page.text);

        // A prediction for a task that does not exist: the API's message, none imported.
        let bad = json!([
            {"task": tasks[0], "result": choice("pos"), "score": 0.9, "model_version": "v1"},
            {"task": 999_999, "result": choice("neg")},
        ]);
        let api = app.post(&format!("/api/projects/{p}/import/predictions"), &app.owner, bad.clone()).await;
        let message = api.expect_error(StatusCode::BAD_REQUEST, "validation_error")["detail"].as_str().expect("detail").to_string();
        let refused = admin.post_multipart(&app, &predictions_path, &[("csrf_token", &csrf)], &[("bad.json", bad.to_string().as_bytes())]).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
        assert!(refused.text.contains(&format!("id=\"predictions-error\">{}", escaped(&message))), "{message} in {}", refused.text);
        let garbled = admin.post_multipart(&app, &predictions_path, &[("csrf_token", &csrf)], &[("bad.json", b"[{\"task\":")]).await;
        assert_eq!(garbled.status, StatusCode::BAD_REQUEST);
        assert!(garbled.text.contains("the predictions file is not JSON"), "{}", garbled.text);
        let empty = admin.post_multipart(&app, &predictions_path, &[("csrf_token", &csrf)], &[("", b"")]).await;
        assert_eq!(empty.status, StatusCode::BAD_REQUEST);
        assert!(empty.text.contains("Choose a JSON file of predictions"), "{}", empty.text);
        let good = json!([
            {"task": tasks[0], "result": choice("pos"), "score": 0.9, "model_version": "v1"},
            {"task": tasks[1], "result": choice("neg"), "score": 0.4, "model_version": "v1"},
        ]);
        // Forged, tokenless (the file before any token), and an annotator: refused.
        let forged = admin.post_multipart(&app, &predictions_path, &[("csrf_token", "forged")], &[("p.json", good.to_string().as_bytes())]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        let tokenless = admin.post_multipart(&app, &predictions_path, &[], &[("p.json", good.to_string().as_bytes())]).await;
        assert_eq!(tokenless.status, StatusCode::FORBIDDEN);
        let mut ann = Browser::default();
        ann.sign_in(&app, "pr-annotator@example.com", PASSWORD).await;
        let ann_csrf = ann.csrf(&app).await;
        let tried = ann.post_multipart(&app, &predictions_path, &[("csrf_token", &ann_csrf)], &[("p.json", good.to_string().as_bytes())]).await;
        assert_eq!(tried.status, StatusCode::FORBIDDEN);
        assert!(tried.text.contains("prediction.manage"), "{}", tried.text);
        assert_eq!(prediction_count(&app, p).await, 0);

        // The good file: both created, as the API lists them.
        let done = admin.post_multipart(&app, &predictions_path, &[("csrf_token", &csrf)], &[("p.json", good.to_string().as_bytes())]).await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.text);
        assert!(done.text.contains("id=\"predictions-result\">Imported 2 predictions."), "{}", done.text);
        let listed = app.get(&format!("/api/predictions?task={}", tasks[1]), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
        assert_eq!(listed[0]["model_version"], json!("v1"));
        assert_eq!(listed[0]["result"][0]["value"]["choices"], json!(["neg"]));
        assert_eq!(prediction_count(&app, p).await, 2);
    }

    // The labeling page opened on one's own annotation offers "Convert to draft": the author's
    // post turns it into their draft of the task (the annotation is gone) and opens the task;
    // anyone else gets no form and their forged posts are refused (not_author); a post without
    // the token, or naming an annotation of another project, changes nothing.
    async fn label_page_converts_the_authors_annotation_to_a_draft(app) {
        let (mut author, csrf, author_token) = signed_in(&app, "cd-author@example.com", Role::Annotator).await;
        let (mut other, other_csrf, other_token) = signed_in(&app, "cd-other@example.com", Role::Annotator).await;
        let (mut admin, admin_csrf, _) = signed_in(&app, "cd-admin@example.com", Role::Admin).await;
        let p = app.mk_project(&app.owner, json!({"title": "Drafts", "label_config": TEXT_CONFIG})).await;
        let elsewhere = app.mk_project(&app.owner, json!({"title": "Elsewhere", "label_config": TEXT_CONFIG})).await;
        for project in [p, elsewhere] {
            app.add_member(project, &author_token, None).await;
            app.add_member(project, &other_token, None).await;
        }
        let t = app.mk_tasks(&app.owner, p, 1).await[0];
        let t_elsewhere = app.mk_tasks(&app.owner, elsewhere, 1).await[0];
        let annotate = |token: String, task: i64, label: &'static str| {
            let app = &app;
            async move {
                app.post(&format!("/api/tasks/{task}/annotations"), &token, json!({"result": choice(label), "lead_time": 4.5})).await.expect(StatusCode::CREATED)["id"].as_i64().expect("id")
            }
        };
        let mine = annotate(author_token.clone(), t, "pos").await;
        let theirs = annotate(other_token.clone(), t, "neg").await;
        let mine_elsewhere = annotate(author_token.clone(), t_elsewhere, "pos").await;
        let convert_path = format!("/projects/{p}/label/convert-to-draft");
        let exists = |id: i64| {
            let app = &app;
            async move { app.get(&format!("/api/annotations/{id}"), &app.owner).await.status == StatusCode::OK }
        };

        // The form only on one's own annotation.
        let page = author.get(&app, &format!("/projects/{p}/data?task={t}&annotation={mine}")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert!(page.text.contains(&format!("action=\"{convert_path}\" id=\"convert-to-draft\"")), "{}", page.text);
        assert!(page.text.contains(&format!("name=\"annotation\" value=\"{mine}\"")), "{}", page.text);
        let seen = admin.get(&app, &format!("/projects/{p}/data?task={t}&annotation={mine}")).await;
        assert_eq!(seen.status, StatusCode::OK, "{}", seen.text);
        assert!(!seen.text.contains("id=\"convert-to-draft\""), "{}", seen.text);
        let own = author.get(&app, &format!("/projects/{p}/data?task={t}")).await;
        assert!(!own.text.contains("id=\"convert-to-draft\""), "no form without an annotation named");

        // Forged posts: someone else's annotation (not_author), no token, another project's.
        // The admin sees it and is told it is not theirs; the other annotator, who does not see
        // others' annotations here, is answered as the API answers them.
        let refused = admin.post_form(&app, &convert_path, &[("csrf_token", &admin_csrf), ("annotation", &mine.to_string())]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
        assert!(refused.text.contains(&format!("annotation {mine} is not yours")), "{}", refused.text);
        let api = app.post(&format!("/api/annotations/{mine}/convert-to-draft"), &other_token, json!({})).await;
        assert!(matches!(api.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND), "{}", api.text);
        let refused = other.post_form(&app, &convert_path, &[("csrf_token", &other_csrf), ("annotation", &mine.to_string())]).await;
        assert_eq!(refused.status, api.status, "{}", refused.text);
        assert!(refused.text.contains(&escaped(api.body["detail"].as_str().expect("detail"))), "{} in {}", api.text, refused.text);
        let tokenless = author.post_form(&app, &convert_path, &[("annotation", &mine.to_string())]).await;
        assert_eq!(tokenless.status, StatusCode::FORBIDDEN);
        let forged = author.post_form(&app, &convert_path, &[("csrf_token", "forged"), ("annotation", &mine.to_string())]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        let crossed = author.post_form(&app, &convert_path, &[("csrf_token", &csrf), ("annotation", &mine_elsewhere.to_string())]).await;
        assert_eq!(crossed.status, StatusCode::NOT_FOUND, "{}", crossed.text);
        assert!(exists(mine).await && exists(theirs).await && exists(mine_elsewhere).await);
        assert_eq!(audited(&app, "annotation.convert_to_draft").await, 0);
        let drafts = app.get(&format!("/api/tasks/{t}/drafts"), &author_token).await.expect(StatusCode::OK);
        assert_eq!(drafts, json!([]), "{drafts}");

        // The author's post: the annotation becomes their draft, and the task opens.
        let converted = author.post_form(&app, &convert_path, &[("csrf_token", &csrf), ("annotation", &mine.to_string())]).await;
        assert_eq!((converted.status, location(&converted)), (StatusCode::SEE_OTHER, format!("/projects/{p}/data?task={t}")), "{}", converted.text);
        assert!(!exists(mine).await, "the annotation is gone");
        assert!(exists(theirs).await && exists(mine_elsewhere).await);
        let drafts = app.get(&format!("/api/tasks/{t}/drafts"), &author_token).await.expect(StatusCode::OK);
        assert_eq!(drafts.as_array().map(Vec::len), Some(1), "{drafts}");
        assert_eq!(drafts[0]["result"], choice("pos"));
        assert_eq!(drafts[0]["lead_time"], json!(4.5));
        assert_eq!(drafts[0]["annotation"], Value::Null);
        assert_eq!(audited(&app, "annotation.convert_to_draft").await, 1);
        // Once converted, it is not there to convert again.
        let again = author.post_form(&app, &convert_path, &[("csrf_token", &csrf), ("annotation", &mine.to_string())]).await;
        assert_eq!(again.status, StatusCode::NOT_FOUND);
    }
}
