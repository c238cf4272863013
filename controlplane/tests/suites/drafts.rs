//! Drafts (ADR 0044): the drafts API of Label Studio's editor (`/api/tasks/{id}/drafts`,
//! `/api/tasks/{id}/annotations/{aid}/drafts`, `/api/drafts/{id}`), drafts nested in the task
//! and the label stream, `draft_exists` in the task list, and submitting an annotation from a
//! draft. Each through the API, on both engines.

use http::StatusCode;
use serde_json::json;
use verity_controlplane::authz::Role;

use crate::both_backends;
use crate::common::{TestApp, choice};

/// An annotator of project `p`: token and user id.
async fn annotator(app: &TestApp, p: i64, email: &str) -> (String, i64) {
    let token = app.user(email, Role::Annotator).await;
    app.add_member(p, &token, None).await;
    let id = app.user_id(&token).await;
    (token, id)
}

both_backends! {
    async fn drafts_are_saved_changed_and_private(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let t = app.mk_tasks(&app.owner, p, 2).await;
        let (ann, ann_id) = annotator(&app, p, "drafter@example.com").await;
        let (other, _) = annotator(&app, p, "other@example.com").await;
        let url = format!("/api/tasks/{}/drafts", t[0]);
        let draft = app
            .post(&url, &ann, json!({"result": choice("pos"), "lead_time": 3.5}))
            .await
            .expect(StatusCode::CREATED);
        let id = draft["id"].as_i64().expect("id");
        assert_eq!(draft["task"], json!(t[0]));
        assert_eq!(draft["user"], json!(ann_id));
        assert_eq!(draft["annotation"], json!(null));
        assert_eq!(draft["was_postponed"], json!(false));
        assert_eq!(draft["lead_time"], json!(3.5));
        assert_eq!(draft["result"], choice("pos"));
        for key in ["created_at", "updated_at"] {
            assert!(draft[key].as_str().is_some_and(|s| s.ends_with('Z')), "{key}: {draft}");
        }
        // The autosave changes it.
        let changed = app
            .patch(&format!("/api/drafts/{id}"), &ann, json!({"result": choice("neg"), "was_postponed": true}))
            .await
            .expect(StatusCode::OK);
        assert_eq!(changed["result"], choice("neg"));
        assert_eq!(changed["was_postponed"], json!(true));
        assert_eq!(changed["lead_time"], json!(3.5), "a field not sent stays");
        let listed = app.get(&url, &ann).await.expect(StatusCode::OK);
        assert_eq!(listed.as_array().map(Vec::len), Some(1));
        assert_eq!(app.get(&format!("/api/drafts/{id}"), &ann).await.expect(StatusCode::OK)["id"], json!(id));
        // Nobody else sees, changes or deletes it; not even the project's owner.
        for token in [&other, &app.owner] {
            assert_eq!(app.get(&url, token).await.expect(StatusCode::OK), json!([]));
            app.get(&format!("/api/drafts/{id}"), token).await.expect_error(StatusCode::NOT_FOUND, "not_found");
            app.patch(&format!("/api/drafts/{id}"), token, json!({"result": choice("pos")}))
                .await
                .expect_error(StatusCode::NOT_FOUND, "not_found");
            app.delete(&format!("/api/drafts/{id}"), token).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        }
        // Drafts of the caller in the task detail; draft_exists in the task list.
        let task = app.get(&format!("/api/tasks/{}", t[0]), &ann).await.expect(StatusCode::OK);
        assert_eq!(task["drafts"][0]["id"], json!(id));
        let task = app.get(&format!("/api/tasks/{}", t[0]), &other).await.expect(StatusCode::OK);
        assert_eq!(task["drafts"], json!([]));
        let list = app.get(&format!("/api/tasks?project={p}"), &app.owner).await.expect(StatusCode::OK);
        let exists: Vec<(i64, bool)> = list["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .map(|x| (x["id"].as_i64().unwrap_or(0), x["draft_exists"].as_bool().unwrap_or(false)))
            .collect();
        assert!(exists.contains(&(t[0], true)) && exists.contains(&(t[1], false)), "{exists:?}");
        // Deleting it.
        app.delete(&format!("/api/drafts/{id}"), &ann).await.expect(StatusCode::NO_CONTENT);
        app.get(&format!("/api/drafts/{id}"), &ann).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        let actions: Vec<String> = app.audit_actions(app.org).await.into_iter().map(|a| a.0).collect();
        for a in ["draft.create", "draft.update", "draft.delete"] {
            assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
        }
    }

    async fn bad_drafts_are_refused_and_change_nothing(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let t = app.mk_tasks(&app.owner, p, 1).await[0];
        let (ann, _) = annotator(&app, p, "careless@example.com").await;
        let url = format!("/api/tasks/{t}/drafts");
        let bad = json!([{"from_name": "nope", "to_name": "text", "type": "choices", "value": {"choices": ["pos"]}}]);
        app.post(&url, &ann, json!({"result": bad})).await.expect_error(StatusCode::BAD_REQUEST, "invalid_result");
        app.post(&url, &ann, json!({"result": "pos"})).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        app.post(&url, &ann, json!({"lead_time": -1})).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        assert_eq!(app.get(&url, &ann).await.expect(StatusCode::OK), json!([]));
        // An empty draft is work in progress, and allowed.
        let id = app.post(&url, &ann, json!({"result": []})).await.expect(StatusCode::CREATED)["id"]
            .as_i64()
            .expect("id");
        app.patch(&format!("/api/drafts/{id}"), &ann, json!({"result": bad}))
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_result");
        assert_eq!(app.get(&format!("/api/drafts/{id}"), &ann).await.expect(StatusCode::OK)["result"], json!([]));
        // A task of another organization is not found.
        let (_, stranger) = app.other_org("Elsewhere", "stranger@example.com").await;
        app.post(&url, &stranger, json!({"result": []})).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        app.get(&format!("/api/drafts/{id}"), &stranger).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    }

    async fn drafts_of_an_annotation(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let t = app.mk_tasks(&app.owner, p, 2).await;
        let a = app
            .post(&format!("/api/tasks/{}/annotations", t[0]), &app.owner, json!({"result": choice("pos")}))
            .await
            .expect(StatusCode::CREATED)["id"]
            .as_i64()
            .expect("id");
        let url = format!("/api/tasks/{}/annotations/{a}/drafts", t[0]);
        let d = app.post(&url, &app.owner, json!({"result": choice("neg")})).await.expect(StatusCode::CREATED);
        assert_eq!(d["annotation"], json!(a));
        assert_eq!(app.get(&url, &app.owner).await.expect(StatusCode::OK)[0]["id"], d["id"]);
        // The annotation must be of that task.
        app.post(&format!("/api/tasks/{}/annotations/{a}/drafts", t[1]), &app.owner, json!({"result": []}))
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
        // A blind annotator cannot draft on somebody else's annotation: it is not found.
        let (ann, _) = annotator(&app, p, "blind@example.com").await;
        app.post(&url, &ann, json!({"result": []})).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    }

    async fn submitting_from_a_draft_keeps_its_time_and_deletes_it(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let t = app.mk_tasks(&app.owner, p, 2).await;
        let (ann, _) = annotator(&app, p, "submitter@example.com").await;
        let (other, _) = annotator(&app, p, "thief@example.com").await;
        let draft = app
            .post(&format!("/api/tasks/{}/drafts", t[0]), &ann, json!({"result": choice("pos")}))
            .await
            .expect(StatusCode::CREATED);
        let id = draft["id"].as_i64().expect("id");
        // The label stream hands the annotator their draft with the task.
        let next = app.get(&format!("/api/projects/{p}/next"), &ann).await.expect(StatusCode::OK);
        if next["id"] == json!(t[0]) {
            assert_eq!(next["drafts"][0]["id"], json!(id));
        }
        // Somebody else's draft, or a draft of another task, cannot be submitted: 403, nothing saved.
        app.post(&format!("/api/tasks/{}/annotations", t[0]), &other, json!({"result": choice("pos"), "draft_id": id}))
            .await
            .expect_error(StatusCode::FORBIDDEN, "forbidden");
        app.post(&format!("/api/tasks/{}/annotations", t[1]), &ann, json!({"result": choice("pos"), "draft_id": id}))
            .await
            .expect_error(StatusCode::FORBIDDEN, "forbidden");
        let anns = app.get(&format!("/api/tasks/{}/annotations", t[0]), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(anns, json!([]));
        let anns = app.get(&format!("/api/tasks/{}/annotations", t[1]), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(anns, json!([]));
        let created = app
            .post(&format!("/api/tasks/{}/annotations", t[0]), &ann, json!({"result": choice("pos"), "draft_id": id}))
            .await
            .expect(StatusCode::CREATED);
        assert_eq!(created["draft_created_at"], draft["created_at"]);
        app.get(&format!("/api/drafts/{id}"), &ann).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        let shown = app.get(&format!("/api/annotations/{}", created["id"]), &ann).await.expect(StatusCode::OK);
        assert_eq!(shown["draft_created_at"], draft["created_at"]);
    }
}
