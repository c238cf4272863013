//! Manual distribution (ADR 0039): the `assignment_settings` project setting, task assignments
//! per task and for a data-manager selection, the label stream and task list of an
//! `assigned_only` project, the review stream with `review_only_manual_assignments`, and the
//! data-manager actions that remove assignments. Each through the API, on both engines.

use http::StatusCode;
use serde_json::{Value, json};
use verity_controlplane::authz::Role;

use crate::both_backends;
use crate::common::{TestApp, choice};

/// A new organization member with `role`, added to project `p` (with a project role when
/// given); answers the token and the user id.
async fn member(
    app: &TestApp,
    p: i64,
    email: &str,
    role: Role,
    project_role: Option<&str>,
) -> (String, i64) {
    let token = app.user(email, role).await;
    app.add_member(p, &token, project_role).await;
    let id = app.user_id(&token).await;
    (token, id)
}

fn assignees_url(p: i64, task: i64) -> String {
    format!("/api/projects/{p}/tasks/{task}/assignees")
}

/// The task's assignees of `kind`, sorted.
async fn assignees(app: &TestApp, p: i64, task: i64, kind: &str) -> Vec<i64> {
    let list = app
        .get(&assignees_url(p, task), &app.owner)
        .await
        .expect(StatusCode::OK);
    let mut users: Vec<i64> = list
        .as_array()
        .expect("a list")
        .iter()
        .filter(|a| a["type"] == json!(kind))
        .filter_map(|a| a["assignee"].as_i64())
        .collect();
    users.sort_unstable();
    users
}

async fn next(app: &TestApp, p: i64, token: &str) -> Value {
    app.get(&format!("/api/projects/{p}/next"), token)
        .await
        .expect(StatusCode::OK)
}

async fn submit(app: &TestApp, task: i64, token: &str) {
    app.post(
        &format!("/api/tasks/{task}/annotations"),
        token,
        json!({"result": choice("pos")}),
    )
    .await
    .expect(StatusCode::CREATED);
}

async fn listed_ids(app: &TestApp, p: i64, token: &str) -> Vec<i64> {
    let page = app
        .get(&format!("/api/tasks?project={p}&fields=task_only"), token)
        .await
        .expect(StatusCode::OK);
    page["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["id"].as_i64())
        .collect()
}

both_backends! {
    async fn assignment_state_follows_the_assignees_work(app) {
        let p = app.mk_project(&app.owner, json!({"maximum_annotations": 3})).await;
        let t = app.mk_tasks(&app.owner, p, 1).await[0];
        let (a_token, a) = member(&app, p, "st-a@example.com", Role::Annotator, None).await;
        let (b_token, b) = member(&app, p, "st-b@example.com", Role::Annotator, None).await;
        let (c_token, c) = member(&app, p, "st-c@example.com", Role::Annotator, None).await;
        let (r_token, r) = member(&app, p, "st-r@example.com", Role::Reviewer, Some("reviewer")).await;
        app.post(&assignees_url(p, t), &app.owner, json!({"type": "AN", "users": [a, b, c]})).await.expect(StatusCode::CREATED);
        let made = app.post(&assignees_url(p, t), &app.owner, json!({"type": "RE", "users": [r]})).await.expect(StatusCode::CREATED);
        assert_eq!(made["state"], json!("assigned"), "{made}");
        let states = |list: Value| -> Vec<(String, i64, String)> {
            list.as_array().expect("list").iter().map(|x| (
                x["type"].as_str().expect("type").to_string(),
                x["assignee"].as_i64().expect("assignee"),
                x["state"].as_str().expect("state").to_string(),
            )).collect()
        };
        let s = |kind: &str, user: i64, state: &str| (kind.to_string(), user, state.to_string());
        let listed = app.get(&assignees_url(p, t), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(states(listed), vec![s("AN", a, "assigned"), s("AN", b, "assigned"), s("AN", c, "assigned"), s("RE", r, "assigned")]);

        // a submits, b skips, c saves an unfinished annotation (no result).
        let own = app.post(&format!("/api/tasks/{t}/annotations"), &a_token, json!({"result": choice("pos")}))
            .await.expect(StatusCode::CREATED)["id"].as_i64().expect("id");
        app.post(&format!("/api/tasks/{t}/annotations"), &b_token, json!({"result": [], "was_cancelled": true})).await.expect(StatusCode::CREATED);
        app.post(&format!("/api/tasks/{t}/annotations"), &c_token, json!({"result": null})).await.expect(StatusCode::CREATED);
        // The reviewer accepts a's annotation, then changes their mind: the latest review counts.
        let review = app.post("/api/annotation-reviews", &r_token, json!({"annotation": own, "accepted": true})).await.expect(StatusCode::CREATED);
        let listed = app.get(&assignees_url(p, t), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(states(listed), vec![s("AN", a, "submitted"), s("AN", b, "skipped"), s("AN", c, "in_progress"), s("RE", r, "accepted")]);
        let review = review["id"].as_i64().expect("id");
        app.patch(&format!("/api/annotation-reviews/{review}"), &r_token, json!({"accepted": false})).await.expect(StatusCode::OK);
        let replaced = app.patch(&assignees_url(p, t), &app.owner, json!({"type": "RE", "users": [r]})).await.expect(StatusCode::OK);
        assert_eq!(replaced["state"], json!("rejected"), "{replaced}");
    }
}

both_backends! {
    async fn assignment_settings_are_project_settings(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let shown = app.project(p).await;
        assert_eq!(shown["assignment_settings"], json!({"label_stream_task_distribution": "auto_distribution"}), "{shown}");
        assert_eq!(shown["review_settings"]["review_only_manual_assignments"], json!(false), "{shown}");
        let changed = app.patch(&format!("/api/projects/{p}"), &app.owner, json!({
            "assignment_settings": {"label_stream_task_distribution": "assigned_only"},
            "review_settings": {"review_only_manual_assignments": true},
        })).await.expect(StatusCode::OK);
        assert_eq!(changed["assignment_settings"]["label_stream_task_distribution"], json!("assigned_only"));
        assert_eq!(changed["review_settings"]["review_only_manual_assignments"], json!(true));
        // Unknown values and keys: 400 naming the setting, nothing saved (the title neither).
        for bad in [
            json!({"title": "Renamed", "assignment_settings": {"label_stream_task_distribution": "round_robin"}}),
            json!({"title": "Renamed", "assignment_settings": {"mode": "manual"}}),
        ] {
            let e = app.patch(&format!("/api/projects/{p}"), &app.owner, bad.clone()).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
            assert!(e["validation_errors"].get("assignment_settings").is_some(), "{bad}: {e}");
        }
        let kept = app.project(p).await;
        assert_eq!(kept["assignment_settings"]["label_stream_task_distribution"], json!("assigned_only"));
        assert_ne!(kept["title"], json!("Renamed"));
    }

    async fn assignments_per_task_and_their_validation(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let tasks = app.mk_tasks(&app.owner, p, 2).await;
        let t = tasks[0];
        let (a_token, a) = member(&app, p, "as-a@example.com", Role::Annotator, None).await;
        let (_, b) = member(&app, p, "as-b@example.com", Role::Annotator, None).await;
        let (_, r) = member(&app, p, "as-r@example.com", Role::Reviewer, Some("reviewer")).await;
        let outsider = app.user("as-out@example.com", Role::Annotator).await;
        let o = app.user_id(&outsider).await;

        let made = app.post(&assignees_url(p, t), &app.owner, json!({"type": "AN", "users": [a]})).await.expect(StatusCode::CREATED);
        assert_eq!((made["task"].clone(), made["assignee"].clone(), made["type"].clone()), (json!(t), json!(a), json!("AN")), "{made}");
        assert!(made["id"].as_i64().is_some() && made["created_at"].is_string(), "{made}");
        // Idempotent.
        app.post(&assignees_url(p, t), &app.owner, json!({"type": "AN", "users": [a]})).await.expect(StatusCode::CREATED);
        assert_eq!(assignees(&app, p, t, "AN").await, vec![a]);

        // Not a member, or a role that may not review: 400 naming the user, nothing written.
        let e = app.post(&assignees_url(p, t), &app.owner, json!({"type": "AN", "users": [b, o]})).await.expect_error(StatusCode::BAD_REQUEST, "invalid_assignee");
        assert!(e["detail"].as_str().is_some_and(|d| d.contains(&format!("user {o} "))), "{e}");
        assert_eq!(assignees(&app, p, t, "AN").await, vec![a]);
        let e = app.post(&assignees_url(p, t), &app.owner, json!({"type": "RE", "users": [a]})).await.expect_error(StatusCode::BAD_REQUEST, "invalid_assignee");
        assert!(e["detail"].as_str().is_some_and(|d| d.contains(&format!("user {a} ")) && d.contains("review")), "{e}");
        assert!(assignees(&app, p, t, "RE").await.is_empty());
        for bad in [json!({"type": "XX", "users": [a]}), json!({"users": [a]}), json!({"type": "AN", "users": "a"}), json!({"type": "AN", "users": []})] {
            app.post(&assignees_url(p, t), &app.owner, bad).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        }
        // A task of another project is not found; annotators may not manage assignments.
        let other = app.mk_project(&app.owner, json!({})).await;
        let foreign = app.mk_tasks(&app.owner, other, 1).await[0];
        app.post(&assignees_url(p, foreign), &app.owner, json!({"type": "AN", "users": [a]})).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        app.get(&assignees_url(p, t), &a_token).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        app.post(&assignees_url(p, t), &a_token, json!({"type": "AN", "users": [a]})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");

        // Reviewer assignment; PATCH replaces one type only; DELETE by type and user.
        app.post(&assignees_url(p, t), &app.owner, json!({"type": "RE", "users": [r]})).await.expect(StatusCode::CREATED);
        let replaced = app.patch(&assignees_url(p, t), &app.owner, json!({"type": "AN", "users": [b]})).await.expect(StatusCode::OK);
        assert_eq!(replaced["assignee"], json!(b));
        assert_eq!(assignees(&app, p, t, "AN").await, vec![b]);
        assert_eq!(assignees(&app, p, t, "RE").await, vec![r]);
        app.delete(&format!("{}?type=RE", assignees_url(p, t)), &app.owner).await.expect(StatusCode::NO_CONTENT);
        assert!(assignees(&app, p, t, "RE").await.is_empty());
        app.post(&assignees_url(p, t), &app.owner, json!({"type": "AN", "users": [a]})).await.expect(StatusCode::CREATED);
        app.delete(&format!("{}?type=AN&users={b}", assignees_url(p, t)), &app.owner).await.expect(StatusCode::NO_CONTENT);
        assert_eq!(assignees(&app, p, t, "AN").await, vec![a]);
        app.delete(&format!("{}?users=x", assignees_url(p, t)), &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        let actions: Vec<String> = app.audit_actions(app.org).await.into_iter().map(|(a, _, _)| a).collect();
        assert!(actions.iter().any(|a| a == "task.assignments.add") && actions.iter().any(|a| a == "task.assignments.remove"), "{actions:?}");

        // Removing a member removes their assignments; deleting a task removes its own.
        app.post(&assignees_url(p, tasks[1]), &app.owner, json!({"type": "AN", "users": [a, b]})).await.expect(StatusCode::CREATED);
        app.delete(&format!("/api/projects/{p}/members?user={b}"), &app.owner).await.expect(StatusCode::NO_CONTENT);
        assert_eq!(assignees(&app, p, tasks[1], "AN").await, vec![a]);
        app.delete(&format!("/api/tasks/{t}"), &app.owner).await.expect(StatusCode::NO_CONTENT);
        assert_eq!(app.sql(&format!("delete from task_assignment where task_id = {t}")).await, Ok(0));
    }

    async fn bulk_assignment_by_selection_and_filter(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let t = app.mk_tasks(&app.owner, p, 6).await;
        let (_, a) = member(&app, p, "bulk-a@example.com", Role::Annotator, None).await;
        let outsider = app.user("bulk-out@example.com", Role::Annotator).await;
        let o = app.user_id(&outsider).await;
        let url = format!("/api/projects/{p}/tasks/assignees");

        let done = app.post(&url, &app.owner, json!({"type": "AN", "users": [a], "selectedItems": {"all": false, "included": [t[0], t[1]]}})).await.expect(StatusCode::OK);
        assert_eq!((done["assignments"].clone(), done["task_ids"].clone()), (json!(2), json!([t[0], t[1]])), "{done}");
        // Again: nothing new.
        let again = app.post(&url, &app.owner, json!({"type": "AN", "users": [a], "selectedItems": {"all": false, "included": [t[0], t[1]]}})).await.expect(StatusCode::OK);
        assert_eq!(again["assignments"], json!(0));
        // Everything but one task, narrowed by a filter.
        let filtered = app.post(&url, &app.owner, json!({
            "type": "AN", "users": [a],
            "selectedItems": {"all": true, "excluded": [t[5]]},
            "filters": {"conjunction": "and", "items": [{"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": t[2]}]},
        })).await.expect(StatusCode::OK);
        assert_eq!((filtered["assignments"].clone(), filtered["task_ids"].clone()), (json!(2), json!([t[3], t[4]])), "{filtered}");
        for task in [t[0], t[1], t[3], t[4]] {
            assert_eq!(assignees(&app, p, task, "AN").await, vec![a], "task {task}");
        }
        for task in [t[2], t[5]] {
            assert!(assignees(&app, p, task, "AN").await.is_empty(), "task {task}");
        }
        // A user who may not annotate here: 400, and none of the selection is assigned.
        app.post(&url, &app.owner, json!({"type": "AN", "users": [a, o], "selectedItems": {"all": true}})).await.expect_error(StatusCode::BAD_REQUEST, "invalid_assignee");
        assert!(assignees(&app, p, t[2], "AN").await.is_empty());
        app.post(&url, &app.owner, json!({"type": "AN", "users": [a]})).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
    }

    async fn manual_stream_gives_assigned_tasks_in_order(app) {
        let p = app.mk_project(&app.owner, json!({"assignment_settings": {"label_stream_task_distribution": "assigned_only"}})).await;
        let t = app.mk_tasks(&app.owner, p, 5).await;
        let (a_token, a) = member(&app, p, "man-a@example.com", Role::Annotator, None).await;
        let (b_token, b) = member(&app, p, "man-b@example.com", Role::Annotator, None).await;
        let (c_token, _) = member(&app, p, "man-c@example.com", Role::Annotator, None).await;
        // Assigned out of order: the stream goes by task id.
        app.post(&assignees_url(p, t[3]), &app.owner, json!({"type": "AN", "users": [a]})).await.expect(StatusCode::CREATED);
        app.post(&assignees_url(p, t[1]), &app.owner, json!({"type": "AN", "users": [a, b]})).await.expect(StatusCode::CREATED);
        app.post(&assignees_url(p, t[2]), &app.owner, json!({"type": "AN", "users": [b]})).await.expect(StatusCode::CREATED);

        let first = next(&app, p, &a_token).await;
        assert_eq!((first["id"].clone(), first["queue"].clone()), (json!(t[1]), json!("Manually assigned queue")), "{first}");
        assert!(first["unique_lock_id"].is_null(), "no reservation in manual mode: {first}");
        submit(&app, t[1], &a_token).await;
        assert_eq!(next(&app, p, &a_token).await["id"], json!(t[3]));
        submit(&app, t[3], &a_token).await;
        app.get(&format!("/api/projects/{p}/next"), &a_token).await.expect_error(StatusCode::NOT_FOUND, "no_more_tasks");
        // b gets t1 although it reached its overlap: an assignment is to be done.
        assert_eq!(next(&app, p, &b_token).await["id"], json!(t[1]));
        submit(&app, t[1], &b_token).await;
        assert_eq!(next(&app, p, &b_token).await["id"], json!(t[2]));
        // Without assignments: nothing.
        app.get(&format!("/api/projects/{p}/next"), &c_token).await.expect_error(StatusCode::NOT_FOUND, "no_more_tasks");
        // Managers and above keep the shared queue.
        assert_eq!(next(&app, p, &app.owner).await["id"], json!(t[0]));
        // Back to automatic distribution: assignments no longer limit the stream.
        app.patch(&format!("/api/projects/{p}"), &app.owner, json!({"assignment_settings": {"label_stream_task_distribution": "auto_distribution"}})).await.expect(StatusCode::OK);
        let auto = next(&app, p, &c_token).await;
        assert_eq!(auto["queue"], json!("Sequence queue"), "{auto}");
        assert!(auto["unique_lock_id"].is_string(), "{auto}");
    }

    async fn task_list_of_annotators_follows_their_assignments(app) {
        let p = app.mk_project(&app.owner, json!({"assignment_settings": {"label_stream_task_distribution": "assigned_only"}})).await;
        let t = app.mk_tasks(&app.owner, p, 4).await;
        let (a_token, a) = member(&app, p, "list-a@example.com", Role::Annotator, None).await;
        app.post(&format!("/api/projects/{p}/tasks/assignees"), &app.owner, json!({"type": "AN", "users": [a], "selectedItems": {"all": false, "included": [t[0], t[2]]}})).await.expect(StatusCode::OK);
        assert_eq!(listed_ids(&app, p, &a_token).await, vec![t[0], t[2]]);
        let page = app.get(&format!("/api/tasks?project={p}"), &a_token).await.expect(StatusCode::OK);
        assert_eq!(page["total"], json!(2), "{page}");
        assert_eq!(listed_ids(&app, p, &app.owner).await, t);
        // Reading one task by id follows the same rule: a task not assigned is not found.
        app.get(&format!("/api/tasks/{}", t[0]), &a_token).await.expect(StatusCode::OK);
        app.get(&format!("/api/tasks/{}", t[1]), &a_token).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        app.get(&format!("/api/tasks/{}", t[1]), &app.owner).await.expect(StatusCode::OK);
        // A task they annotated stays readable after it is unassigned (their own work).
        submit(&app, t[2], &a_token).await;
        app.delete(&format!("{}?type=AN&users={a}", assignees_url(p, t[2])), &app.owner).await.expect(StatusCode::NO_CONTENT);
        assert_eq!(listed_ids(&app, p, &a_token).await, vec![t[0]]);
        app.get(&format!("/api/tasks/{}", t[2]), &a_token).await.expect(StatusCode::OK);
        app.patch(&format!("/api/projects/{p}"), &app.owner, json!({"assignment_settings": {"label_stream_task_distribution": "auto_distribution"}})).await.expect(StatusCode::OK);
        assert_eq!(listed_ids(&app, p, &a_token).await, t);
        app.get(&format!("/api/tasks/{}", t[1]), &a_token).await.expect(StatusCode::OK);
    }

    async fn review_stream_with_review_only_manual_assignments(app) {
        let p = app.mk_project(&app.owner, json!({"review_settings": {"review_only_manual_assignments": true}})).await;
        let t = app.mk_tasks(&app.owner, p, 3).await;
        let (a_token, _) = member(&app, p, "rv-a@example.com", Role::Annotator, None).await;
        let (r1_token, r1) = member(&app, p, "rv-r1@example.com", Role::Reviewer, Some("reviewer")).await;
        let (r2_token, _) = member(&app, p, "rv-r2@example.com", Role::Reviewer, Some("reviewer")).await;
        for task in &t {
            submit(&app, *task, &a_token).await;
        }
        app.post(&assignees_url(p, t[1]), &app.owner, json!({"type": "RE", "users": [r1]})).await.expect(StatusCode::CREATED);
        let url = format!("/api/projects/{p}/review/next");
        let got = app.get(&url, &r1_token).await.expect(StatusCode::OK);
        assert_eq!(got["id"], json!(t[1]), "only the assigned task: {got}");
        app.get(&url, &r2_token).await.expect_error(StatusCode::NOT_FOUND, "nothing_to_review");
        // Managers and above are not restricted; without the setting nobody is.
        assert_eq!(app.get(&url, &app.owner).await.expect(StatusCode::OK)["id"], json!(t[0]));
        app.patch(&format!("/api/projects/{p}"), &app.owner, json!({"review_settings": {"review_only_manual_assignments": false}})).await.expect(StatusCode::OK);
        assert_eq!(app.get(&url, &r2_token).await.expect(StatusCode::OK)["id"], json!(t[2]));
    }

    async fn data_manager_actions_remove_assignments(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let t = app.mk_tasks(&app.owner, p, 2).await;
        let (_, a) = member(&app, p, "dm-a@example.com", Role::Annotator, None).await;
        let (_, r) = member(&app, p, "dm-r@example.com", Role::Reviewer, Some("reviewer")).await;
        let bulk = format!("/api/projects/{p}/tasks/assignees");
        let all = json!({"all": true});
        app.post(&bulk, &app.owner, json!({"type": "AN", "users": [a], "selectedItems": all})).await.expect(StatusCode::OK);
        app.post(&bulk, &app.owner, json!({"type": "RE", "users": [r], "selectedItems": all})).await.expect(StatusCode::OK);
        let listed = app.get(&format!("/api/dm/actions?project={p}"), &app.owner).await.expect(StatusCode::OK);
        let ids: Vec<&str> = listed.as_array().expect("list").iter().filter_map(|a| a["id"].as_str()).collect();
        assert!(ids.contains(&"delete_annotators") && ids.contains(&"delete_reviewers"), "{ids:?}");

        let done = app.post(&format!("/api/dm/actions?id=delete_annotators&project={p}"), &app.owner, json!({"selectedItems": {"all": false, "included": [t[0]]}})).await.expect(StatusCode::OK);
        assert_eq!(done["processed_items"], json!(1), "{done}");
        assert!(assignees(&app, p, t[0], "AN").await.is_empty());
        assert_eq!(assignees(&app, p, t[0], "RE").await, vec![r]);
        assert_eq!(assignees(&app, p, t[1], "AN").await, vec![a]);
        app.post(&format!("/api/dm/actions?id=delete_reviewers&project={p}"), &app.owner, json!({"selectedItems": {"all": true}})).await.expect(StatusCode::OK);
        assert!(assignees(&app, p, t[0], "RE").await.is_empty() && assignees(&app, p, t[1], "RE").await.is_empty());
        assert_eq!(assignees(&app, p, t[1], "AN").await, vec![a]);
    }

    async fn task_payload_carries_completion_prediction_score_and_assignees(app) {
        // Label Studio's completed_at and predictions_score, and Enterprise's assignees, on the
        // task read and the task list (ADR 0057).
        let p = app.mk_project(&app.owner, json!({"maximum_annotations": 2})).await;
        let t = app.mk_tasks(&app.owner, p, 2).await;
        let (a, a_id) = member(&app, p, "payload-a@example.com", Role::Annotator, None).await;
        let (b, b_id) = member(&app, p, "payload-b@example.com", Role::Annotator, None).await;
        let read = |task: i64, token: String| {
            let app = &app;
            async move { app.get(&format!("/api/tasks/{task}"), &token).await.expect(StatusCode::OK) }
        };
        let fresh = read(t[0], app.owner.clone()).await;
        assert_eq!((fresh["completed_at"].clone(), fresh["predictions_score"].clone(), fresh["assignments"].clone()),
            (Value::Null, Value::Null, json!([])), "{fresh}");
        assert!(fresh.get("completed_at").is_some() && fresh.get("predictions_score").is_some(), "{fresh}");
        for score in [0.25, 0.75] {
            app.post("/api/predictions", &app.owner, json!({"task": t[0], "result": choice("pos"), "score": score, "model_version": "m1"}))
                .await
                .expect(StatusCode::CREATED);
        }
        app.post(&assignees_url(p, t[0]), &app.owner, json!({"type": "AN", "users": [a_id, b_id]})).await.expect(StatusCode::CREATED);
        // One of two annotations: not labeled yet, so not completed.
        submit(&app, t[0], &a).await;
        let half = read(t[0], app.owner.clone()).await;
        assert_eq!(half["completed_at"], Value::Null, "{half}");
        assert_eq!(half["predictions_score"], json!(0.5), "{half}");
        let states: Vec<(i64, String, String)> = half["assignments"].as_array().expect("assignments").iter()
            .map(|x| (x["assignee"].as_i64().unwrap_or_default(), x["type"].as_str().unwrap_or_default().to_string(), x["state"].as_str().unwrap_or_default().to_string()))
            .collect();
        let mut want = vec![(a_id, "AN".to_string(), "submitted".to_string()), (b_id, "AN".to_string(), "assigned".to_string())];
        want.sort();
        assert_eq!(states, want, "{half}");
        // The second annotation completes it, at that annotation's time.
        submit(&app, t[0], &b).await;
        let done = read(t[0], app.owner.clone()).await;
        let newest = done["annotations"].as_array().expect("annotations").iter()
            .filter_map(|x| x["created_at"].as_str()).max().map(str::to_string).expect("created_at");
        assert_eq!((done["is_labeled"].clone(), done["completed_at"].clone()), (json!(true), json!(newest)), "{done}");
        // The task list carries the same values; an annotator sees only their own assignment.
        let page = app.get(&format!("/api/tasks?project={p}&fields=all"), &app.owner).await.expect(StatusCode::OK);
        let listed = page["tasks"].as_array().and_then(|l| l.iter().find(|x| x["id"] == json!(t[0]))).cloned().expect("listed");
        assert_eq!((listed["completed_at"].clone(), listed["predictions_score"].clone(), listed["assignments"].clone()),
            (done["completed_at"].clone(), json!(0.5), done["assignments"].clone()), "{listed}");
        let other = page["tasks"].as_array().and_then(|l| l.iter().find(|x| x["id"] == json!(t[1]))).cloned().expect("listed");
        assert_eq!((other["completed_at"].clone(), other["predictions_score"].clone(), other["assignments"].clone()),
            (Value::Null, Value::Null, json!([])), "{other}");
        let own = read(t[0], a.clone()).await;
        let seen: Vec<i64> = own["assignments"].as_array().expect("assignments").iter().filter_map(|x| x["assignee"].as_i64()).collect();
        assert_eq!(seen, vec![a_id], "{own}");
    }
}
