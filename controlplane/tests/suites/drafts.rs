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

/// The next task of the stream for `token`: its id, queue and `allow_postpone`.
async fn next(app: &TestApp, p: i64, token: &str) -> (i64, String, serde_json::Value) {
    let next = app
        .get(&format!("/api/projects/{p}/next"), token)
        .await
        .expect(StatusCode::OK);
    let id = next["id"].as_i64().expect("id");
    (
        id,
        next["queue"].as_str().unwrap_or_default().to_string(),
        next,
    )
}

both_backends! {
    async fn postponed_tasks_come_back_last_without_postpone(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let t = app.mk_tasks(&app.owner, p, 3).await;
        let (ann, _) = annotator(&app, p, "postponer@example.com").await;
        let (id, queue, body) = next(&app, p, &ann).await;
        assert_eq!((id, queue.as_str()), (t[0], "Sequence queue"));
        assert_eq!(body["allow_postpone"], json!(true), "{body}");
        // Postponed as the editor does: a draft with was_postponed.
        let first = app
            .post(&format!("/api/tasks/{}/drafts", t[0]), &ann, json!({"result": choice("pos"), "was_postponed": true}))
            .await
            .expect(StatusCode::CREATED)["id"]
            .as_i64()
            .expect("id");
        // The held reservation does not bring it back: the next task is another one.
        let (id, _, _) = next(&app, p, &ann).await;
        assert_eq!(id, t[1]);
        // Postponed by changing an autosaved draft.
        let second = app
            .post(&format!("/api/tasks/{}/drafts", t[1]), &ann, json!({"result": choice("neg")}))
            .await
            .expect(StatusCode::CREATED)["id"]
            .as_i64()
            .expect("id");
        app.patch(&format!("/api/drafts/{second}"), &ann, json!({"was_postponed": true})).await.expect(StatusCode::OK);
        let (id, queue, body) = next(&app, p, &ann).await;
        assert_eq!((id, queue.as_str()), (t[2], "Sequence queue"));
        assert_eq!(body["allow_postpone"], json!(true));
        app.post(&format!("/api/tasks/{}/annotations", t[2]), &ann, json!({"result": choice("pos")}))
            .await
            .expect(StatusCode::CREATED);
        // Then the postponed ones, the longest postponed first, without Postpone, with the draft.
        let (id, queue, body) = next(&app, p, &ann).await;
        assert_eq!((id, queue.as_str()), (t[0], "Postponed draft queue"));
        assert_eq!(body["allow_postpone"], json!(false), "{body}");
        assert_eq!(body["drafts"][0]["id"], json!(first));
        assert_eq!(body["drafts"][0]["was_postponed"], json!(true));
        assert!(body["unique_lock_id"].is_string(), "reserved again: {body}");
        // Asked again (a reload), the same task.
        assert_eq!(next(&app, p, &ann).await.0, t[0]);
        app.post(&format!("/api/tasks/{}/annotations", t[0]), &ann, json!({"result": choice("pos"), "draft_id": first}))
            .await
            .expect(StatusCode::CREATED);
        let (id, queue, body) = next(&app, p, &ann).await;
        assert_eq!((id, queue.as_str(), &body["allow_postpone"]), (t[1], "Postponed draft queue", &json!(false)));
        app.post(&format!("/api/tasks/{}/annotations", t[1]), &ann, json!({"result": choice("neg"), "draft_id": second}))
            .await
            .expect(StatusCode::CREATED);
        app.get(&format!("/api/projects/{p}/next"), &ann).await.expect_error(StatusCode::NOT_FOUND, "no_more_tasks");
    }

    async fn a_postponed_task_is_others_and_not_served_past_its_overlap(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let t = app.mk_tasks(&app.owner, p, 2).await;
        let (a, _) = annotator(&app, p, "later@example.com").await;
        let (b, _) = annotator(&app, p, "now@example.com").await;
        assert_eq!(next(&app, p, &a).await.0, t[0]);
        app.post(&format!("/api/tasks/{}/drafts", t[0]), &a, json!({"result": [], "was_postponed": true}))
            .await
            .expect(StatusCode::CREATED);
        // Postponing ended A's reservation: B gets the task (overlap 1), with Postpone offered.
        let (id, queue, body) = next(&app, p, &b).await;
        assert_eq!((id, queue.as_str()), (t[0], "Sequence queue"));
        assert_eq!(body["allow_postpone"], json!(true));
        assert_eq!(body["drafts"], json!([]), "A's draft is not B's");
        assert_eq!(next(&app, p, &a).await.0, t[1]);
        app.post(&format!("/api/tasks/{}/annotations", t[1]), &a, json!({"result": choice("pos")}))
            .await
            .expect(StatusCode::CREATED);
        // B holds the only place of t0: nothing for A.
        app.get(&format!("/api/projects/{p}/next"), &a).await.expect_error(StatusCode::NOT_FOUND, "no_more_tasks");
        app.post(&format!("/api/tasks/{}/annotations", t[0]), &b, json!({"result": choice("neg")}))
            .await
            .expect(StatusCode::CREATED);
        // t0 reached its overlap: A's postponed draft does not bring it back.
        app.get(&format!("/api/projects/{p}/next"), &a).await.expect_error(StatusCode::NOT_FOUND, "no_more_tasks");
        // With room for two, a postponed task comes back after the others.
        let p2 = app.mk_project(&app.owner, json!({"maximum_annotations": 2})).await;
        let u = app.mk_tasks(&app.owner, p2, 2).await;
        app.add_member(p2, &a, None).await;
        app.add_member(p2, &b, None).await;
        let (id, queue, _) = next(&app, p2, &a).await;
        assert_eq!((id, queue.as_str()), (u[0], "Breadth first queue"));
        app.post(&format!("/api/tasks/{}/drafts", u[0]), &a, json!({"result": [], "was_postponed": true}))
            .await
            .expect(StatusCode::CREATED);
        assert_eq!(next(&app, p2, &a).await.0, u[1]);
        app.post(&format!("/api/tasks/{}/annotations", u[1]), &a, json!({"result": choice("pos")}))
            .await
            .expect(StatusCode::CREATED);
        let (id, queue, body) = next(&app, p2, &a).await;
        assert_eq!((id, queue.as_str(), &body["allow_postpone"]), (u[0], "Postponed draft queue", &json!(false)));
    }

    async fn postponed_assigned_tasks_come_back_last_in_manual_distribution(app) {
        let p = app
            .mk_project(&app.owner, json!({"assignment_settings": {"label_stream_task_distribution": "assigned_only"}}))
            .await;
        let t = app.mk_tasks(&app.owner, p, 3).await;
        let (ann, ann_id) = annotator(&app, p, "assigned@example.com").await;
        for task in [t[0], t[1]] {
            app.post(&format!("/api/projects/{p}/tasks/{task}/assignees"), &app.owner, json!({"type": "AN", "users": [ann_id]}))
                .await
                .expect(StatusCode::CREATED);
        }
        let (id, queue, body) = next(&app, p, &ann).await;
        assert_eq!((id, queue.as_str(), &body["allow_postpone"]), (t[0], "Manually assigned queue", &json!(true)));
        app.post(&format!("/api/tasks/{}/drafts", t[0]), &ann, json!({"result": [], "was_postponed": true}))
            .await
            .expect(StatusCode::CREATED);
        assert_eq!(next(&app, p, &ann).await.0, t[1]);
        app.post(&format!("/api/tasks/{}/annotations", t[1]), &ann, json!({"result": choice("pos")}))
            .await
            .expect(StatusCode::CREATED);
        // The postponed assigned task, not the unassigned t2.
        let (id, queue, body) = next(&app, p, &ann).await;
        assert_eq!((id, queue.as_str(), &body["allow_postpone"]), (t[0], "Postponed draft queue", &json!(false)));
        assert!(body["unique_lock_id"].is_null(), "no reservation in manual mode: {body}");
    }

    async fn drafts_of_an_annotation_are_nested_and_go_when_it_is_updated(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let t = app.mk_tasks(&app.owner, p, 1).await[0];
        let (ann, _) = annotator(&app, p, "reviser@example.com").await;
        let a = app
            .post(&format!("/api/tasks/{t}/annotations"), &ann, json!({"result": choice("pos")}))
            .await
            .expect(StatusCode::CREATED)["id"]
            .as_i64()
            .expect("id");
        let url = format!("/api/tasks/{t}/annotations/{a}/drafts");
        let mine = app.post(&url, &ann, json!({"result": choice("neg")})).await.expect(StatusCode::CREATED)["id"].clone();
        let owners = app.post(&url, &app.owner, json!({"result": choice("pos")})).await.expect(StatusCode::CREATED)["id"].clone();
        // The task as the labeling page reads it nests the caller's drafts, with their annotation.
        let task = app.get(&format!("/api/tasks/{t}"), &ann).await.expect(StatusCode::OK);
        assert_eq!(task["drafts"].as_array().map(Vec::len), Some(1), "{task}");
        assert_eq!((&task["drafts"][0]["id"], &task["drafts"][0]["annotation"]), (&mine, &json!(a)));
        // Updating the annotation saves the author's draft of it: the draft goes; the owner's stays.
        app.patch(&format!("/api/annotations/{a}"), &ann, json!({"result": choice("neg")})).await.expect(StatusCode::OK);
        let task = app.get(&format!("/api/tasks/{t}"), &ann).await.expect(StatusCode::OK);
        assert_eq!(task["drafts"], json!([]));
        app.get(&format!("/api/drafts/{mine}"), &ann).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        app.get(&format!("/api/drafts/{owners}"), &app.owner).await.expect(StatusCode::OK);
    }

    async fn convert_to_draft_is_the_authors_alone(app) {
        let p = app.mk_project(&app.owner, json!({"skip_queue": "REQUEUE_FOR_ME"})).await;
        let t = app.mk_tasks(&app.owner, p, 2).await;
        let (ann, ann_id) = annotator(&app, p, "unskipper@example.com").await;
        let (other, _) = annotator(&app, p, "bystander@example.com").await;
        let reviewer = app.user("checker@example.com", Role::Reviewer).await;
        app.add_member(p, &reviewer, None).await;
        let a = app
            .post(&format!("/api/tasks/{}/annotations", t[0]), &ann, json!({"result": choice("pos"), "lead_time": 4.0}))
            .await
            .expect(StatusCode::CREATED)["id"]
            .as_i64()
            .expect("id");
        let url = format!("/api/annotations/{a}/convert-to-draft");
        // Others: a blind annotator does not see it; the owner and a reviewer may not take it.
        app.post(&url, &other, json!({})).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        for token in [&app.owner, &reviewer] {
            app.post(&url, token, json!({})).await.expect_error(StatusCode::FORBIDDEN, "not_author");
        }
        let (_, stranger) = app.other_org("Far", "far@example.com").await;
        app.post(&url, &stranger, json!({})).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        // Nothing changed.
        app.get(&format!("/api/annotations/{a}"), &ann).await.expect(StatusCode::OK);
        assert_eq!(app.get(&format!("/api/tasks/{}", t[0]), &app.owner).await.expect(StatusCode::OK)["is_labeled"], json!(true));
        // The author: the annotation becomes their draft of the task, and is gone.
        let draft = app.post(&url, &ann, json!({})).await.expect(StatusCode::CREATED);
        assert_eq!(draft["task"], json!(t[0]));
        assert_eq!(draft["annotation"], json!(null));
        assert_eq!(draft["user"], json!(ann_id));
        assert_eq!(draft["result"], choice("pos"));
        assert_eq!(draft["lead_time"], json!(4.0));
        assert_eq!(draft["was_postponed"], json!(false));
        app.get(&format!("/api/annotations/{a}"), &ann).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        let task = app.get(&format!("/api/tasks/{}", t[0]), &ann).await.expect(StatusCode::OK);
        assert_eq!(task["is_labeled"], json!(false));
        assert_eq!(task["total_annotations"], json!(0));
        assert_eq!(task["drafts"][0]["id"], draft["id"]);
        app.post(&url, &ann, json!({})).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        // Unskip: a skipped task becomes a draft and the task is the annotator's to do again.
        let (id, _, _) = next(&app, p, &ann).await;
        assert_eq!(id, t[0], "the task is open again");
        app.post(&format!("/api/tasks/{}/annotations", t[0]), &ann, json!({"result": choice("pos")}))
            .await
            .expect(StatusCode::CREATED);
        assert_eq!(next(&app, p, &ann).await.0, t[1]);
        let skip = app
            .post(&format!("/api/tasks/{}/annotations", t[1]), &ann, json!({"result": [], "was_cancelled": true}))
            .await
            .expect(StatusCode::CREATED)["id"]
            .as_i64()
            .expect("id");
        let (id, queue, _) = next(&app, p, &ann).await;
        assert_eq!((id, queue.as_str()), (t[1], "Skipped queue"));
        let unskipped = app.post(&format!("/api/annotations/{skip}/convert-to-draft"), &ann, json!({})).await.expect(StatusCode::CREATED);
        assert_eq!(unskipped["result"], json!([]));
        let (id, queue, _) = next(&app, p, &ann).await;
        assert_eq!((id, queue.as_str()), (t[1], "Task lock"), "no longer a skip");
        let task = app.get(&format!("/api/tasks/{}", t[1]), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(task["cancelled_annotations"], json!(0));
        let actions: Vec<String> = app.audit_actions(app.org).await.into_iter().map(|x| x.0).collect();
        assert!(actions.iter().any(|x| x == "annotation.convert_to_draft"), "{actions:?}");
    }
}
