//! The review workflow (ADR 0024) on both backends: `/api/annotation-reviews/` and its
//! settings, fix and accept with history, the three reject modes, required comments, review
//! counts on tasks and annotations (and data-manager filters on them), the review stream with
//! its reservations, webhooks and the audit log.

use http::StatusCode;
use serde_json::{Value, json};
use verity_controlplane::authz::Role;

use crate::{
    both_backends,
    common::{TestApp, choice, urlencoding},
};

pub(crate) fn id(v: &Value) -> i64 {
    v["id"].as_i64().expect("id")
}

/// A project (with `extra` settings), two annotators and two reviewers, members of it.
pub(crate) struct Team {
    pub(crate) p: i64,
    pub(crate) tasks: Vec<i64>,
    pub(crate) ann1: String,
    pub(crate) ann2: String,
    pub(crate) rev1: String,
    pub(crate) rev2: String,
}

pub(crate) async fn team(app: &TestApp, tag: &str, extra: Value, tasks: usize) -> Team {
    let p = app.mk_project(&app.owner, extra).await;
    let tasks = app.mk_tasks(&app.owner, p, tasks).await;
    let mut tokens = Vec::new();
    for (name, role) in [
        ("ann1", Role::Annotator),
        ("ann2", Role::Annotator),
        ("rev1", Role::Reviewer),
        ("rev2", Role::Reviewer),
    ] {
        let token = app.user(&format!("{name}-{tag}@example.com"), role).await;
        app.add_member(p, &token, None).await;
        tokens.push(token);
    }
    let mut t = tokens.into_iter();
    let mut next = || t.next().expect("token");
    Team {
        p,
        tasks,
        ann1: next(),
        ann2: next(),
        rev1: next(),
        rev2: next(),
    }
}

pub(crate) async fn annotate(app: &TestApp, token: &str, task: i64, label: &str) -> i64 {
    id(&app
        .post(
            &format!("/api/tasks/{task}/annotations"),
            token,
            json!({"result": choice(label)}),
        )
        .await
        .expect(StatusCode::CREATED))
}

async fn review(app: &TestApp, token: &str, body: Value) -> Value {
    app.post("/api/annotation-reviews", token, body)
        .await
        .expect(StatusCode::CREATED)
}

async fn task(app: &TestApp, task: i64) -> Value {
    app.get(&format!("/api/tasks/{task}"), &app.owner)
        .await
        .expect(StatusCode::OK)
}

async fn annotation(app: &TestApp, id: i64) -> Value {
    app.get(&format!("/api/annotations/{id}"), &app.owner)
        .await
        .expect(StatusCode::OK)
}

async fn task_as(app: &TestApp, token: &str, task: i64) -> Value {
    app.get(&format!("/api/tasks/{task}"), token)
        .await
        .expect(StatusCode::OK)
}

async fn review_count(app: &TestApp, p: i64) -> usize {
    app.get(
        &format!("/api/annotation-reviews?annotation__task__project={p}"),
        &app.owner,
    )
    .await
    .expect(StatusCode::OK)
    .as_array()
    .expect("list")
    .len()
}

both_backends! {
    async fn review_settings_have_defaults_patch_by_key_and_are_validated(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let rs = app.project(p).await["review_settings"].clone();
        assert_eq!(rs["requeue_rejected_tasks_mode"], json!("requeue"));
        assert_eq!(rs["requeue_rejected_tasks_to_annotator"], json!(true));
        assert_eq!(rs["review_criteria"], json!("all"));
        assert_eq!(rs["only_finished_tasks"], json!(false));
        assert_eq!(rs["require_comment_on_reject"], json!(false));
        assert_eq!(rs["sampling"], json!("task_id"));
        assert_eq!(rs["anonymize_annotations"], json!(false));
        assert_eq!(rs["instruction"], json!(""));
        assert_eq!(rs["show_instruction"], json!(false));
        // A partial object changes only its keys.
        let patched = app.patch(&format!("/api/projects/{p}"), &app.owner,
            json!({"review_settings": {"review_criteria": "one", "instruction": "<b>check spans</b>", "show_instruction": true}}))
            .await.expect(StatusCode::OK);
        assert_eq!(patched["review_settings"]["review_criteria"], json!("one"));
        assert_eq!(patched["review_settings"]["instruction"], json!("<b>check spans</b>"));
        assert_eq!(patched["review_settings"]["requeue_rejected_tasks_mode"], json!("requeue"));
        app.patch(&format!("/api/projects/{p}"), &app.owner,
            json!({"review_settings": {"sampling": "random", "only_finished_tasks": true}}))
            .await.expect(StatusCode::OK);
        let rs = app.project(p).await["review_settings"].clone();
        assert_eq!((rs["review_criteria"].clone(), rs["sampling"].clone(), rs["only_finished_tasks"].clone()),
            (json!("one"), json!("random"), json!(true)));
        // Bad values are refused, naming the field, and change nothing.
        for bad in [json!({"requeue_rejected_tasks_mode": "sometimes"}), json!({"review_criteria": 3}),
                    json!({"no_such_setting": true}), json!({"sampling": "by_task"}),
                    json!({"review_task_limit_percent": "120"}), json!({"annotator_batch_percent": "half"}),
                    json!({"allowed_reject_actions": ["redistribute"]}),
                    json!({"allowed_reject_actions": ["requeue"], "default_reject_action": "remove"})] {
            let e = app.patch(&format!("/api/projects/{p}"), &app.owner, json!({"review_settings": bad}))
                .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
            assert!(e["validation_errors"]["review_settings"].is_array(), "{e}");
        }
        assert_eq!(app.project(p).await["review_settings"], rs);
        // An annotator cannot change them.
        let ann = app.user("rs-ann@example.com", Role::Annotator).await;
        app.add_member(p, &ann, None).await;
        app.patch(&format!("/api/projects/{p}"), &ann, json!({"review_settings": {"review_criteria": "all"}}))
            .await.expect_error(StatusCode::FORBIDDEN, "forbidden");
    }

    async fn accept_counts_lists_changes_and_deletes(app) {
        let t = team(&app, "acc", json!({}), 2).await;
        let a1 = annotate(&app, &t.ann1, t.tasks[0], "pos").await;
        // Who may review: not an annotator, not the author.
        app.post("/api/annotation-reviews", &t.ann2, json!({"annotation": a1, "accepted": true}))
            .await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        let own = annotate(&app, &t.rev2, t.tasks[1], "neg").await;
        app.post("/api/annotation-reviews", &t.rev2, json!({"annotation": own, "accepted": true}))
            .await.expect_error(StatusCode::FORBIDDEN, "self_review");
        // Bodies that say what to fix.
        app.post("/api/annotation-reviews", &t.rev1, json!({"annotation": a1}))
            .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        app.post("/api/annotation-reviews", &t.rev1, json!({"accepted": true}))
            .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        app.post("/api/annotation-reviews", &t.rev1, json!({"annotation": 999_999, "accepted": true}))
            .await.expect_error(StatusCode::NOT_FOUND, "not_found");
        assert_eq!(review_count(&app, t.p).await, 0);

        let r = review(&app, &t.rev1, json!({"annotation": a1, "accepted": true, "started_at": "2026-01-02T03:04:05Z"})).await;
        let rid = id(&r);
        let rev1 = app.user_id(&t.rev1).await;
        assert_eq!(r["annotation"], json!(a1));
        assert_eq!(r["accepted"], json!(true));
        assert_eq!(r["created_by"], json!(rev1));
        assert_eq!(r["result"], Value::Null);
        assert_eq!(r["remove_from_queue"], Value::Null);
        assert_eq!(r["started_at"], json!("2026-01-02T03:04:05.000000Z"));
        assert_eq!(r["task"], json!(t.tasks[0]));
        let a = annotation(&app, a1).await;
        assert_eq!((a["reviews_accepted"].clone(), a["reviews_rejected"].clone(), a["last_action"].clone()),
            (json!(1), json!(0), json!("accepted")));
        let tv = task(&app, t.tasks[0]).await;
        assert_eq!(tv["reviews_accepted"], json!(1));
        assert_eq!(tv["reviews_rejected"], json!(0));
        assert_eq!(tv["reviewed"], json!(true));
        assert_eq!(tv["reviewers"], json!([rev1]));
        assert_eq!(tv["reviewers_count"], json!(1));
        // The other task has an unreviewed annotation: not reviewed under "all".
        assert_eq!(task(&app, t.tasks[1]).await["reviewed"], json!(false));

        // Reads.
        let got = app.get(&format!("/api/annotation-reviews/{rid}/"), &t.rev2).await.expect(StatusCode::OK);
        assert_eq!(got["id"], json!(rid));
        let by_ann = app.get(&format!("/api/annotation-reviews/?annotation={a1}"), &t.rev1).await.expect(StatusCode::OK);
        assert_eq!(by_ann.as_array().map(Vec::len), Some(1));
        // The annotator sees the reviews of their own annotation, not of others'.
        app.get(&format!("/api/annotation-reviews/{rid}"), &t.ann1).await.expect(StatusCode::OK);
        app.get(&format!("/api/annotation-reviews/{rid}"), &t.ann2).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        let r2 = review(&app, &t.rev1, json!({"annotation": own, "accepted": false})).await;
        let listed = app.get(&format!("/api/annotation-reviews?annotation__task__project={}&ordering=-id", t.p), &t.rev1)
            .await.expect(StatusCode::OK);
        let ids: Vec<i64> = listed.as_array().expect("list").iter().map(id).collect();
        assert_eq!(ids, vec![id(&r2), rid]);
        let as_ann = app.get(&format!("/api/annotation-reviews?annotation__task__project={}", t.p), &t.ann1)
            .await.expect(StatusCode::OK);
        assert_eq!(as_ann.as_array().map(Vec::len), Some(1));
        app.get("/api/annotation-reviews", &t.rev1).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        app.get(&format!("/api/annotation-reviews?annotation__task__project={}&ordering=nope", t.p), &t.rev1)
            .await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");

        // Data manager: review columns, filters and ordering.
        let q = json!({"filters": {"conjunction": "and", "items": [
            {"filter": "filter:tasks:reviews_accepted", "operator": "greater", "type": "Number", "value": 0}]}});
        let page = app.get(&format!("/api/tasks?project={}&query={}", t.p, crate::common::urlencoding(&q.to_string())), &app.owner)
            .await.expect(StatusCode::OK);
        let found: Vec<i64> = page["tasks"].as_array().expect("tasks").iter().map(id).collect();
        assert_eq!(found, vec![t.tasks[0]]);
        assert_eq!(page["tasks"][0]["reviews_accepted"], json!(1));
        let q = json!({"filters": {"conjunction": "and", "items": [
            {"filter": "filter:tasks:reviews_rejected", "operator": "equal", "type": "Number", "value": 1}]}});
        let page = app.get(&format!("/api/tasks?project={}&query={}", t.p, crate::common::urlencoding(&q.to_string())), &app.owner)
            .await.expect(StatusCode::OK);
        assert_eq!(page["tasks"].as_array().map(|a| a.iter().map(id).collect::<Vec<_>>()), Some(vec![t.tasks[1]]));

        // PATCH: the accept becomes a reject (requeue mode: the annotation stays counted).
        let changed = app.patch(&format!("/api/annotation-reviews/{rid}"), &t.rev2, json!({"accepted": false, "comment": "wrong label"}))
            .await.expect(StatusCode::OK);
        assert_eq!(changed["accepted"], json!(false));
        assert_eq!(changed["remove_from_queue"], json!(false));
        assert_eq!(changed["comment"], json!("wrong label"));
        let tv = task(&app, t.tasks[0]).await;
        assert_eq!((tv["reviews_accepted"].clone(), tv["reviews_rejected"].clone(), tv["total_annotations"].clone()),
            (json!(0), json!(1), json!(1)));
        assert_eq!(annotation(&app, a1).await["last_action"], json!("rejected"));
        app.patch(&format!("/api/annotation-reviews/{rid}"), &t.rev2, json!({"annotation": own}))
            .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        app.patch(&format!("/api/annotation-reviews/{rid}"), &t.ann1, json!({"accepted": true}))
            .await.expect_error(StatusCode::FORBIDDEN, "forbidden");

        // DELETE: gone, counts back, the annotation back in the review stream.
        app.delete(&format!("/api/annotation-reviews/{rid}"), &t.rev1).await.expect(StatusCode::NO_CONTENT);
        app.get(&format!("/api/annotation-reviews/{rid}"), &t.rev1).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        let tv = task(&app, t.tasks[0]).await;
        assert_eq!((tv["reviews_accepted"].clone(), tv["reviews_rejected"].clone(), tv["reviewed"].clone()),
            (json!(0), json!(0), json!(false)));
        assert_eq!(annotation(&app, a1).await["last_action"], json!("deleted_review"));

        // Every action is in the audit log.
        let actions: Vec<String> = app.audit_actions(app.org).await.into_iter()
            .filter(|(a, o, _)| a.starts_with("review.") && o == "ok").map(|(a, _, _)| a).collect();
        assert_eq!(actions, vec!["review.create", "review.create", "review.update", "review.delete"]);
    }

    async fn fix_and_accept_replaces_the_result_and_keeps_history(app) {
        let t = team(&app, "fix", json!({}), 1).await;
        let a1 = annotate(&app, &t.ann1, t.tasks[0], "pos").await;
        // A fixed result must fit the labeling configuration; a rejection carries none.
        app.post("/api/annotation-reviews", &t.rev1, json!({"annotation": a1, "accepted": true, "result": choice("maybe")}))
            .await.expect_error(StatusCode::BAD_REQUEST, "invalid_result");
        app.post("/api/annotation-reviews", &t.rev1, json!({"annotation": a1, "accepted": false, "result": choice("neg")}))
            .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        assert_eq!(review_count(&app, t.p).await, 0);
        assert_eq!(annotation(&app, a1).await["result"], choice("pos"));
        let history = app.get(&format!("/api/annotations/{a1}/history"), &t.rev1).await.expect(StatusCode::OK);
        assert_eq!(history, json!([]));

        let r = review(&app, &t.rev1, json!({"annotation": a1, "accepted": true, "result": choice("neg")})).await;
        assert_eq!(r["result"], choice("neg"));
        let a = annotation(&app, a1).await;
        assert_eq!(a["result"], choice("neg"));
        assert_eq!(a["last_action"], json!("fixed_and_accepted"));
        assert_eq!(a["updated_by"], json!(app.user_id(&t.rev1).await));
        assert_eq!(a["completed_by"], json!(app.user_id(&t.ann1).await), "the annotation stays the annotator's");
        let history = app.get(&format!("/api/annotations/{a1}/history"), &t.ann1).await.expect(StatusCode::OK);
        let h = history.as_array().expect("history");
        assert_eq!(h.len(), 2);
        assert_eq!(h[0]["result"], choice("pos"));
        assert_eq!(h[0]["action"], json!("submitted"));
        assert_eq!(h[0]["created_by"], json!(app.user_id(&t.ann1).await));
        assert_eq!(h[1]["result"], choice("neg"));
        assert_eq!(h[1]["action"], json!("fixed_and_accepted"));
        assert_eq!(r["previous_annotation_history"], h[0]["id"]);
        assert_eq!(r["fixed_annotation_history"], h[1]["id"]);
        assert_eq!(r["last_annotation_history"], h[1]["id"]);
        // Another annotator cannot read that history (blind labeling).
        app.get(&format!("/api/annotations/{a1}/history"), &t.ann2).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        // The task keeps one annotation.
        assert_eq!(task(&app, t.tasks[0]).await["total_annotations"], json!(1));
    }

    async fn reject_requeue_sends_the_annotation_back_for_rework(app) {
        let t = team(&app, "rq", json!({}), 2).await;
        let a1 = annotate(&app, &t.ann1, t.tasks[0], "pos").await;
        review(&app, &t.rev1, json!({"annotation": a1, "accepted": false, "remove_from_queue": true})).await;
        // Requeue mode wins over remove_from_queue (only flexible mode reads it).
        let a = annotation(&app, a1).await;
        assert_eq!((a["was_cancelled"].clone(), a["last_action"].clone()), (json!(false), json!("rejected")));
        // The annotator gets the task back first, with their annotation to change.
        let next = app.get(&format!("/api/projects/{}/next", t.p), &t.ann1).await.expect(StatusCode::OK);
        assert_eq!(next["id"], json!(t.tasks[0]));
        assert_eq!(next["queue"], json!("Rework queue"));
        assert_eq!(next["annotations"].as_array().map(|a| a.iter().map(id).collect::<Vec<_>>()), Some(vec![a1]));
        // Others do not get it (still counted).
        let other = app.get(&format!("/api/projects/{}/next", t.p), &t.ann2).await.expect(StatusCode::OK);
        assert_eq!(other["id"], json!(t.tasks[1]));
        // Rework done: out of the rework queue, back into the review stream.
        app.patch(&format!("/api/annotations/{a1}"), &t.ann1, json!({"result": choice("neg")})).await.expect(StatusCode::OK);
        // (tasks[1] is reserved by ann2, tasks[0] done: nothing for ann1.)
        app.get(&format!("/api/projects/{}/next", t.p), &t.ann1).await.expect_error(StatusCode::NOT_FOUND, "no_more_tasks");
        let rv = app.get(&format!("/api/projects/{}/review/next", t.p), &t.rev2).await.expect(StatusCode::OK);
        assert_eq!(rv["annotations"][0]["id"], json!(a1));
    }

    async fn a_held_task_comes_before_rework(app) {
        // The annotator holds a reserved task when their earlier annotation is sent back: they
        // finish the task they hold first, then get the rework.
        let t = team(&app, "hr", json!({}), 3).await;
        let a1 = annotate(&app, &t.ann1, t.tasks[0], "pos").await;
        let held = app.get(&format!("/api/projects/{}/next", t.p), &t.ann1).await.expect(StatusCode::OK);
        assert_eq!(held["id"], json!(t.tasks[1]));
        review(&app, &t.rev1, json!({"annotation": a1, "accepted": false})).await;
        let again = app.get(&format!("/api/projects/{}/next", t.p), &t.ann1).await.expect(StatusCode::OK);
        assert_eq!((again["id"].clone(), again["queue"].clone()), (json!(t.tasks[1]), json!("Task lock")));
        assert_eq!(again["unique_lock_id"], held["unique_lock_id"]);
        annotate(&app, &t.ann1, t.tasks[1], "neg").await;
        let rework = app.get(&format!("/api/projects/{}/next", t.p), &t.ann1).await.expect(StatusCode::OK);
        assert_eq!((rework["id"].clone(), rework["queue"].clone()), (json!(t.tasks[0]), json!("Rework queue")));
        assert!(rework["unique_lock_id"].is_string());
        assert_ne!(rework["unique_lock_id"], held["unique_lock_id"]);
    }

    async fn rework_ends_the_annotators_reservation(app) {
        // Overlap 2: after the rework, the task's second place is free for another annotator
        // at once (the reworking annotator's reservation ended with their change).
        let t = team(&app, "rwl", json!({"maximum_annotations": 2}), 1).await;
        let a1 = annotate(&app, &t.ann1, t.tasks[0], "pos").await;
        review(&app, &t.rev1, json!({"annotation": a1, "accepted": false})).await;
        let next = app.get(&format!("/api/projects/{}/next", t.p), &t.ann1).await.expect(StatusCode::OK);
        assert_eq!(next["queue"], json!("Rework queue"));
        app.patch(&format!("/api/annotations/{a1}"), &t.ann1, json!({"result": choice("neg")})).await.expect(StatusCode::OK);
        let other = app.get(&format!("/api/projects/{}/next", t.p), &t.ann2).await.expect(StatusCode::OK);
        assert_eq!(other["id"], json!(t.tasks[0]));
    }

    async fn reject_remove_returns_the_task_to_the_pool(app) {
        let t = team(&app, "rm", json!({"review_settings": {"requeue_rejected_tasks_mode": "remove"}}), 1).await;
        let a1 = annotate(&app, &t.ann1, t.tasks[0], "pos").await;
        app.get(&format!("/api/projects/{}/next", t.p), &t.ann2).await.expect_error(StatusCode::NOT_FOUND, "no_more_tasks");
        let r = review(&app, &t.rev1, json!({"annotation": a1, "accepted": false, "remove_from_queue": false})).await;
        assert_eq!(r["remove_from_queue"], json!(true));
        assert_eq!(r["reject_action"], json!("remove"));
        let a = annotation(&app, a1).await;
        assert_eq!((a["was_cancelled"].clone(), a["last_action"].clone()), (json!(true), json!("rejected")));
        let tv = task(&app, t.tasks[0]).await;
        assert_eq!((tv["is_labeled"].clone(), tv["total_annotations"].clone(), tv["cancelled_annotations"].clone()),
            (json!(false), json!(0), json!(1)));
        assert_eq!(app.project(t.p).await["finished_task_number"], json!(0));
        // Another annotator fills the overlap; the rejected annotator does not get it back.
        app.get(&format!("/api/projects/{}/next", t.p), &t.ann1).await.expect_error(StatusCode::NOT_FOUND, "no_more_tasks");
        let next = app.get(&format!("/api/projects/{}/next", t.p), &t.ann2).await.expect(StatusCode::OK);
        assert_eq!(next["id"], json!(t.tasks[0]));
        // A cancelled annotation is not reviewed again.
        app.post("/api/annotation-reviews", &t.rev2, json!({"annotation": a1, "accepted": true}))
            .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        // Deleting the review restores the annotation and the counters.
        app.delete(&format!("/api/annotation-reviews/{}", id(&r)), &t.rev1).await.expect(StatusCode::NO_CONTENT);
        let tv = task(&app, t.tasks[0]).await;
        assert_eq!((tv["is_labeled"].clone(), tv["total_annotations"].clone(), tv["cancelled_annotations"].clone()),
            (json!(true), json!(1), json!(0)));
        assert_eq!(app.project(t.p).await["finished_task_number"], json!(1));
    }

    async fn flexible_mode_lets_the_reviewer_choose_and_comments_can_be_required(app) {
        let t = team(&app, "flex", json!({"review_settings": {"requeue_rejected_tasks_mode": "flexible",
            "require_comment_on_reject": true}}), 4).await;
        let a: Vec<i64> = {
            let mut v = Vec::new();
            for task in &t.tasks { v.push(annotate(&app, &t.ann1, *task, "pos").await); }
            v
        };
        // No comment (or a blank one): refused, nothing stored, nothing changed.
        for body in [json!({"annotation": a[0], "accepted": false}), json!({"annotation": a[0], "accepted": false, "comment": "  "})] {
            let e = app.post("/api/annotation-reviews", &t.rev1, body).await.expect_error(StatusCode::BAD_REQUEST, "comment_required");
            assert!(e["validation_errors"]["comment"].is_array());
        }
        assert_eq!(review_count(&app, t.p).await, 0);
        assert_eq!(annotation(&app, a[0]).await["last_action"], json!("submitted"));
        // Accepting needs no comment.
        review(&app, &t.rev1, json!({"annotation": a[3], "accepted": true})).await;
        // The reviewer chooses.
        let removed = review(&app, &t.rev1, json!({"annotation": a[0], "accepted": false, "remove_from_queue": true, "comment": "off topic"})).await;
        assert_eq!(removed["remove_from_queue"], json!(true));
        assert_eq!(annotation(&app, a[0]).await["was_cancelled"], json!(true));
        let requeued = review(&app, &t.rev1, json!({"annotation": a[1], "accepted": false, "reject_action": "requeue", "comment": "redo"})).await;
        assert_eq!(requeued["remove_from_queue"], json!(false));
        assert_eq!(annotation(&app, a[1]).await["was_cancelled"], json!(false));
        // Without a choice, requeue_rejected_tasks_to_annotator decides.
        app.patch(&format!("/api/projects/{}", t.p), &app.owner,
            json!({"review_settings": {"requeue_rejected_tasks_to_annotator": false}})).await.expect(StatusCode::OK);
        let default = review(&app, &t.rev1, json!({"annotation": a[2], "accepted": false, "comment": "no"})).await;
        assert_eq!(default["remove_from_queue"], json!(true));
        app.post("/api/annotation-reviews", &t.rev1, json!({"annotation": a[3], "accepted": false, "reject_action": "redistribute", "comment": "x"}))
            .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        // Comments are stored and readable, on the review and as comments.
        assert_eq!(app.get(&format!("/api/annotation-reviews/{}", id(&removed)), &t.ann1).await.expect(StatusCode::OK)["comment"], json!("off topic"));
        let comments = app.get(&format!("/api/comments?annotation={}", a[0]), &t.ann1).await.expect(StatusCode::OK);
        assert_eq!(comments.as_array().map(Vec::len), Some(1));
        assert_eq!(comments[0]["text"], json!("off topic"));
        assert_eq!(comments[0]["review"], removed["id"]);
        assert_eq!(comments[0]["created_by"], json!(app.user_id(&t.rev1).await));
        let all = app.get(&format!("/api/comments?projects={}", t.p), &t.rev2).await.expect(StatusCode::OK);
        assert_eq!(all.as_array().map(Vec::len), Some(3));
        app.get(&format!("/api/comments?projects={}", t.p), &t.ann2).await.expect(StatusCode::OK)
            .as_array().filter(|c| c.is_empty()).expect("another annotator sees none");
        app.get("/api/comments", &t.rev2).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        // Turning a removal into an accept restores the annotation.
        app.patch(&format!("/api/annotation-reviews/{}", id(&removed)), &t.rev2, json!({"accepted": true})).await.expect(StatusCode::OK);
        let a0 = annotation(&app, a[0]).await;
        assert_eq!((a0["was_cancelled"].clone(), a0["last_action"].clone()), (json!(false), json!("accepted")));
        assert_eq!(task(&app, t.tasks[0]).await["total_annotations"], json!(1));
    }

    async fn review_stream_hands_out_others_unreviewed_annotations_once(app) {
        let t = team(&app, "rs", json!({}), 3).await;
        // Annotators annotate every task; rev2 annotates the first task as well.
        let mut by_task = Vec::new();
        for task in &t.tasks {
            by_task.push((annotate(&app, &t.ann1, *task, "pos").await, annotate(&app, &t.ann2, *task, "neg").await));
        }
        let own = annotate(&app, &t.rev2, t.tasks[0], "pos").await;
        let url = format!("/api/projects/{}/review/next", t.p);
        app.get(&url, &t.ann1).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        // Task-id order; the reservation holds until reviewed.
        let first = app.get(&url, &t.rev1).await.expect(StatusCode::OK);
        assert_eq!(first["id"], json!(t.tasks[0]));
        assert_eq!(first["queue"], json!("Review queue"));
        assert!(first["unique_lock_id"].is_string());
        let got = first["annotations"][0]["id"].as_i64().expect("annotation");
        assert_eq!(got, by_task[0].0);
        assert_eq!(first["annotations"][0]["completed_by"], json!(app.user_id(&t.ann1).await));
        assert_eq!(app.get(&url, &t.rev1).await.expect(StatusCode::OK)["annotations"][0]["id"], json!(got));
        // Another reviewer gets another annotation; never their own.
        let second = app.get(&url, &t.rev2).await.expect(StatusCode::OK)["annotations"][0]["id"].as_i64().expect("id");
        assert_eq!(second, by_task[0].1);
        // Reviewed annotations leave the stream.
        review(&app, &t.rev1, json!({"annotation": got, "accepted": true})).await;
        let mut seen = vec![got, second];
        loop {
            let reply = app.get(&url, &t.rev1).await;
            if reply.status == StatusCode::NOT_FOUND {
                reply.expect_error(StatusCode::NOT_FOUND, "nothing_to_review");
                break;
            }
            let a = reply.expect(StatusCode::OK)["annotations"][0]["id"].as_i64().expect("id");
            assert!(!seen.contains(&a), "annotation {a} handed out twice");
            seen.push(a);
            review(&app, &t.rev1, json!({"annotation": a, "accepted": true})).await;
            assert!(seen.len() <= 7, "the stream does not end");
        }
        // rev1 saw everything but rev2's reservation: the rest of the annotations, and rev2's own.
        assert_eq!(seen.len(), 7);
        assert!(seen.contains(&own));
    }

    async fn review_stream_settings(app) {
        // only_finished_tasks: a task that has not reached its overlap is not offered.
        let t = team(&app, "of", json!({"maximum_annotations": 2,
            "review_settings": {"only_finished_tasks": true, "anonymize_annotations": true}}), 2).await;
        annotate(&app, &t.ann1, t.tasks[0], "pos").await;
        let url = format!("/api/projects/{}/review/next", t.p);
        app.get(&url, &t.rev1).await.expect_error(StatusCode::NOT_FOUND, "nothing_to_review");
        annotate(&app, &t.ann2, t.tasks[0], "pos").await;
        let next = app.get(&url, &t.rev1).await.expect(StatusCode::OK);
        assert_eq!(next["id"], json!(t.tasks[0]));
        // anonymize_annotations: the annotator is not shown.
        assert_eq!(next["annotations"][0]["completed_by"], Value::Null);
        assert_eq!(next["annotations"][0]["created_username"], json!(""));
        assert_eq!(next["annotators"], json!([]));
        // ... and not in a reviewer's other reads either; managers and the author still see it.
        let ann1 = app.user_id(&t.ann1).await;
        let shown = next["annotations"][0]["id"].as_i64().expect("id");
        let as_reviewer = app.get(&format!("/api/tasks/{}", t.tasks[0]), &t.rev1).await.expect(StatusCode::OK);
        assert!(as_reviewer["annotations"].as_array().expect("annotations").iter()
            .all(|a| a["completed_by"].is_null() && a["created_username"] == json!("")), "{as_reviewer}");
        assert_eq!(as_reviewer["annotators"], json!([]));
        assert_eq!(app.get(&format!("/api/annotations/{shown}"), &t.rev1).await.expect(StatusCode::OK)["completed_by"], Value::Null);
        let listed = app.get(&format!("/api/tasks/{}/annotations", t.tasks[0]), &t.rev1).await.expect(StatusCode::OK);
        assert!(listed.as_array().expect("list").iter().all(|a| a["completed_by"].is_null()));
        let page = app.get(&format!("/api/tasks?project={}&fields=all", t.p), &t.rev1).await.expect(StatusCode::OK);
        assert!(page["tasks"][0]["annotations"].as_array().expect("nested").iter().all(|a| a["completed_by"].is_null()), "{page}");
        assert_eq!(task(&app, t.tasks[0]).await["annotators"].as_array().map(Vec::len), Some(2));
        assert_eq!(app.get(&format!("/api/annotations/{shown}"), &t.ann1).await.expect(StatusCode::OK)["completed_by"], json!(ann1));

        // review_criteria one: an accepted annotation takes the task out of the stream.
        let t = team(&app, "one", json!({"maximum_annotations": 2, "review_settings": {"review_criteria": "one"}}), 1).await;
        let a1 = annotate(&app, &t.ann1, t.tasks[0], "pos").await;
        annotate(&app, &t.ann2, t.tasks[0], "pos").await;
        review(&app, &t.rev1, json!({"annotation": a1, "accepted": true})).await;
        let url = format!("/api/projects/{}/review/next", t.p);
        app.get(&url, &t.rev2).await.expect_error(StatusCode::NOT_FOUND, "nothing_to_review");
        assert_eq!(task(&app, t.tasks[0]).await["reviewed"], json!(true));
        let (one_project, one_task) = (t.p, t.tasks[0]);

        // review_criteria all: reviewed only when every annotation has a review.
        let t = team(&app, "all", json!({"maximum_annotations": 2}), 1).await;
        let a1 = annotate(&app, &t.ann1, t.tasks[0], "pos").await;
        let a2 = annotate(&app, &t.ann2, t.tasks[0], "pos").await;
        review(&app, &t.rev1, json!({"annotation": a1, "accepted": true})).await;
        assert_eq!(task(&app, t.tasks[0]).await["reviewed"], json!(false));
        assert_eq!(reviewed_tasks(&app, t.p, true).await, Vec::<i64>::new());
        assert_eq!(reviewed_tasks(&app, t.p, false).await, vec![t.tasks[0]]);
        review(&app, &t.rev1, json!({"annotation": a2, "accepted": false})).await;
        assert_eq!(task(&app, t.tasks[0]).await["reviewed"], json!(true));
        assert_eq!(reviewed_tasks(&app, t.p, true).await, vec![t.tasks[0]]);
        assert_eq!(reviewed_tasks(&app, t.p, false).await, Vec::<i64>::new());
        // Under "one", the filter follows the project's criteria.
        assert_eq!(reviewed_tasks(&app, one_project, true).await, vec![one_task]);

        // sampling random: every eligible annotation still comes exactly once.
        let t = team(&app, "rnd", json!({"review_settings": {"sampling": "random"}}), 6).await;
        let mut made = Vec::new();
        for task in &t.tasks { made.push(annotate(&app, &t.ann1, *task, "pos").await); }
        let url = format!("/api/projects/{}/review/next", t.p);
        let mut seen = Vec::new();
        for _ in 0..6 {
            let a = app.get(&url, &t.rev1).await.expect(StatusCode::OK)["annotations"][0]["id"].as_i64().expect("id");
            review(&app, &t.rev1, json!({"annotation": a, "accepted": true})).await;
            seen.push(a);
        }
        app.get(&url, &t.rev1).await.expect_error(StatusCode::NOT_FOUND, "nothing_to_review");
        seen.sort_unstable();
        assert_eq!(seen, made);
    }

    async fn review_stream_sampling_by_annotator_and_task_limit(app) {
        // Read-only keys that Label Studio Enterprise returns inside the object are accepted
        // back; percentages are written as decimal strings.
        let t = team(&app, "ba", json!({"review_settings": {"sampling": "by_annotator", "annotator_batch_percent": 50,
            "id": 77, "project": 5}}), 8).await;
        let rs = app.project(t.p).await["review_settings"].clone();
        assert_eq!((rs["sampling"].clone(), rs["annotator_batch_percent"].clone(), rs["review_task_limit_percent"].clone()),
            (json!("by_annotator"), json!("50.00"), Value::Null), "{rs}");
        assert!(rs.get("id").is_none() && rs.get("project").is_none(), "{rs}");
        // ann1 labels the first four tasks, ann2 the last four: in task order a reviewer would
        // see all of ann1's work first. By annotator with batches of 50%: two of ann1's, two of
        // ann2's, then the next two of each.
        let (ann1, ann2) = (app.user_id(&t.ann1).await, app.user_id(&t.ann2).await);
        for (i, task) in t.tasks.iter().enumerate() {
            annotate(&app, if i < 4 { &t.ann1 } else { &t.ann2 }, *task, "pos").await;
        }
        let url = format!("/api/projects/{}/review/next", t.p);
        let mut authors = Vec::new();
        for _ in 0..8 {
            let next = app.get(&url, &t.rev1).await.expect(StatusCode::OK);
            authors.push(next["annotations"][0]["completed_by"].as_i64().expect("author"));
            review(&app, &t.rev1, json!({"annotation": next["annotations"][0]["id"], "accepted": true})).await;
        }
        assert_eq!(authors, vec![ann1, ann1, ann2, ann2, ann1, ann1, ann2, ann2]);
        app.get(&url, &t.rev1).await.expect_error(StatusCode::NOT_FOUND, "nothing_to_review");

        // Without a batch percentage, by annotator means one annotator's whole work, then the next.
        let t = team(&app, "bw", json!({"review_settings": {"sampling": "by_annotator"}}), 4).await;
        let (ann1, ann2) = (app.user_id(&t.ann1).await, app.user_id(&t.ann2).await);
        for (i, task) in t.tasks.iter().enumerate() {
            annotate(&app, if i % 2 == 0 { &t.ann1 } else { &t.ann2 }, *task, "pos").await;
        }
        let url = format!("/api/projects/{}/review/next", t.p);
        let mut authors = Vec::new();
        for _ in 0..4 {
            let next = app.get(&url, &t.rev1).await.expect(StatusCode::OK);
            authors.push(next["annotations"][0]["completed_by"].as_i64().expect("author"));
            review(&app, &t.rev1, json!({"annotation": next["annotations"][0]["id"], "accepted": false})).await;
        }
        assert_eq!(authors, vec![ann1, ann1, ann2, ann2]);

        // Random sampling with a task limit: at most half of the six tasks are served, by
        // either reviewer.
        let t = team(&app, "lim", json!({"review_settings": {"sampling": "random", "review_task_limit_percent": "50.00"}}), 6).await;
        for task in &t.tasks {
            annotate(&app, &t.ann1, *task, "pos").await;
        }
        let url = format!("/api/projects/{}/review/next", t.p);
        let mut served = Vec::new();
        for reviewer in [&t.rev1, &t.rev2, &t.rev1] {
            let next = app.get(&url, reviewer).await.expect(StatusCode::OK);
            served.push(next["id"].as_i64().expect("task"));
            review(&app, reviewer, json!({"annotation": next["annotations"][0]["id"], "accepted": true})).await;
        }
        served.sort_unstable();
        served.dedup();
        assert_eq!(served.len(), 3, "three different tasks: {served:?}");
        for reviewer in [&t.rev1, &t.rev2] {
            app.get(&url, reviewer).await.expect_error(StatusCode::NOT_FOUND, "nothing_to_review");
        }
        // Raising the limit serves more; 100 switches it off.
        app.patch(&format!("/api/projects/{}", t.p), &app.owner,
            json!({"review_settings": {"review_task_limit_percent": "100"}})).await.expect(StatusCode::OK);
        for _ in 0..3 {
            let next = app.get(&url, &t.rev2).await.expect(StatusCode::OK);
            review(&app, &t.rev2, json!({"annotation": next["annotations"][0]["id"], "accepted": true})).await;
        }
        app.get(&url, &t.rev2).await.expect_error(StatusCode::NOT_FOUND, "nothing_to_review");
    }

    async fn only_finished_tasks_under_manual_distribution_waits_for_every_assignee(app) {
        // Overlap 1 would make the task labeled after the first annotation; with manual
        // distribution it is finished only when both assigned annotators have submitted.
        let t = team(&app, "mf", json!({"maximum_annotations": 1,
            "assignment_settings": {"label_stream_task_distribution": "assigned_only"},
            "review_settings": {"only_finished_tasks": true}}), 2).await;
        let users = json!([app.user_id(&t.ann1).await, app.user_id(&t.ann2).await]);
        app.post(&format!("/api/projects/{}/tasks/{}/assignees", t.p, t.tasks[0]), &app.owner,
            json!({"type": "AN", "users": users})).await.expect(StatusCode::CREATED);
        let url = format!("/api/projects/{}/review/next", t.p);
        annotate(&app, &t.ann1, t.tasks[0], "pos").await;
        assert_eq!(task(&app, t.tasks[0]).await["is_labeled"], json!(true));
        app.get(&url, &t.rev1).await.expect_error(StatusCode::NOT_FOUND, "nothing_to_review");
        // A skip is not a submission.
        app.post(&format!("/api/tasks/{}/annotations?was_cancelled=1", t.tasks[0]), &t.ann2, json!({"result": []}))
            .await.expect(StatusCode::CREATED);
        app.get(&url, &t.rev1).await.expect_error(StatusCode::NOT_FOUND, "nothing_to_review");
        annotate(&app, &t.ann2, t.tasks[0], "neg").await;
        let next = app.get(&url, &t.rev1).await.expect(StatusCode::OK);
        assert_eq!(next["id"], json!(t.tasks[0]));
        // A task nobody is assigned to is finished when it is labeled.
        app.post(&format!("/api/tasks/{}/annotations", t.tasks[1]), &app.owner, json!({"result": choice("pos")}))
            .await.expect(StatusCode::CREATED);
        review(&app, &t.rev1, json!({"annotation": next["annotations"][0]["id"], "accepted": true})).await;
        let mut offered = Vec::new();
        for _ in 0..2 {
            let next = app.get(&url, &t.rev1).await.expect(StatusCode::OK);
            offered.push(next["id"].as_i64().expect("task"));
            review(&app, &t.rev1, json!({"annotation": next["annotations"][0]["id"], "accepted": true})).await;
        }
        offered.sort_unstable();
        assert_eq!(offered, vec![t.tasks[0], t.tasks[1]]);
    }

    async fn reviewer_visibility_and_allowed_reject_actions(app) {
        let t = team(&app, "vis", json!({"maximum_annotations": 2}), 2).await;
        let a1 = annotate(&app, &t.ann1, t.tasks[0], "pos").await;
        annotate(&app, &t.ann2, t.tasks[0], "neg").await;
        let list = format!("/api/tasks?project={}", t.p);
        let filtered = format!("/api/tasks?project={}&query={}", t.p, urlencoding(
            r#"{"filters":{"conjunction":"and","items":[{"filter":"filter:tasks:agreement","operator":"less","type":"Number","value":50}]}}"#));
        // By default reviewers see the task list and agreement.
        assert!(task_as(&app, &t.rev1, t.tasks[0]).await["agreement"].is_number());
        app.get(&filtered, &t.rev1).await.expect(StatusCode::OK);
        app.patch(&format!("/api/projects/{}", t.p), &app.owner,
            json!({"review_settings": {"show_agreement_to_reviewers": false}})).await.expect(StatusCode::OK);
        assert!(task_as(&app, &t.rev1, t.tasks[0]).await["agreement"].is_null());
        assert!(task_as(&app, &app.owner, t.tasks[0]).await["agreement"].is_number());
        let page = app.get(&list, &t.rev1).await.expect(StatusCode::OK);
        assert!(page["tasks"].as_array().expect("tasks").iter().all(|t| t["agreement"].is_null()), "{page}");
        app.get(&filtered, &t.rev1).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        app.get(&filtered, &app.owner).await.expect(StatusCode::OK);
        app.patch(&format!("/api/projects/{}", t.p), &app.owner,
            json!({"review_settings": {"show_data_manager_to_reviewers": false}})).await.expect(StatusCode::OK);
        app.get(&list, &t.rev1).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        app.get(&list, &app.owner).await.expect(StatusCode::OK);
        // The review stream still serves them.
        app.get(&format!("/api/projects/{}/review/next", t.p), &t.rev1).await.expect(StatusCode::OK);

        // allowed_reject_actions replaces the mode: only removal is allowed here.
        app.patch(&format!("/api/projects/{}", t.p), &app.owner,
            json!({"review_settings": {"allowed_reject_actions": ["remove"]}})).await.expect(StatusCode::OK);
        let e = app.post("/api/annotation-reviews", &t.rev1, json!({"annotation": a1, "accepted": false, "reject_action": "requeue"}))
            .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        assert!(e["validation_errors"]["reject_action"].is_array(), "{e}");
        assert_eq!(review_count(&app, t.p).await, 0);
        review(&app, &t.rev1, json!({"annotation": a1, "accepted": false})).await;
        assert_eq!(annotation(&app, a1).await["was_cancelled"], json!(true));
        // Both allowed, requeue by default: a rejection without a choice requeues.
        let t = team(&app, "dra", json!({"review_settings": {"requeue_rejected_tasks_mode": "remove",
            "allowed_reject_actions": ["remove", "requeue"], "default_reject_action": "requeue"}}), 2).await;
        let a = annotate(&app, &t.ann1, t.tasks[0], "pos").await;
        let b = annotate(&app, &t.ann1, t.tasks[1], "pos").await;
        review(&app, &t.rev1, json!({"annotation": a, "accepted": false})).await;
        assert_eq!(annotation(&app, a).await["was_cancelled"], json!(false));
        review(&app, &t.rev1, json!({"annotation": b, "accepted": false, "remove_from_queue": true})).await;
        assert_eq!(annotation(&app, b).await["was_cancelled"], json!(true));
    }

    async fn concurrent_reviewers_never_hold_the_same_annotation(app) {
        let t = team(&app, "cc", json!({}), 8).await;
        for task in &t.tasks { annotate(&app, &t.ann1, *task, "pos").await; }
        let mut reviewers = Vec::new();
        for i in 0..8 {
            let token = app.user(&format!("cc-rev{i}@example.com"), Role::Reviewer).await;
            app.add_member(t.p, &token, None).await;
            reviewers.push(token);
        }
        let url = format!("/api/projects/{}/review/next", t.p);
        let calls = reviewers.iter().map(|token| app.get(&url, token));
        let replies = futures::future::join_all(calls).await;
        let mut got: Vec<i64> = replies.into_iter()
            .map(|r| r.expect(StatusCode::OK)["annotations"][0]["id"].as_i64().expect("id"))
            .collect();
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len(), 8, "two reviewers were handed the same annotation");
        let _ = (&t.rev1, &t.rev2, &t.ann2);
    }

    async fn review_webhooks(app) {
        let t = team(&app, "wh", json!({}), 1).await;
        let hook = id(&app.post("/api/webhooks", &app.owner,
            json!({"project": t.p, "url": "https://hooks.example.com/reviews", "send_for_all_actions": false,
                   "actions": ["REVIEW_CREATED", "REVIEW_UPDATED", "REVIEWS_DELETED"]}))
            .await.expect(StatusCode::CREATED));
        let info = app.get("/api/webhooks/info", &app.owner).await.expect(StatusCode::OK);
        assert_eq!(info["REVIEWS_DELETED"]["key"], json!("reviews"));
        let a1 = annotate(&app, &t.ann1, t.tasks[0], "pos").await;
        let r = review(&app, &t.rev1, json!({"annotation": a1, "accepted": true})).await;
        app.patch(&format!("/api/annotation-reviews/{}", id(&r)), &t.rev1, json!({"accepted": false})).await.expect(StatusCode::OK);
        app.delete(&format!("/api/annotation-reviews/{}", id(&r)), &t.rev1).await.expect(StatusCode::NO_CONTENT);
        let ev = app.webhook_events(Some(hook)).await;
        let actions: Vec<&str> = ev.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(actions, vec!["REVIEW_CREATED", "REVIEW_UPDATED", "REVIEWS_DELETED"]);
        assert_eq!(ev[0].1["action"], json!("REVIEW_CREATED"));
        assert_eq!(ev[0].1["review"]["id"], r["id"]);
        assert_eq!(ev[0].1["review"]["accepted"], json!(true));
        assert_eq!(ev[0].1["annotation"]["id"], json!(a1));
        assert_eq!(ev[0].1["task"]["id"], json!(t.tasks[0]));
        assert_eq!(ev[0].1["project"]["id"], json!(t.p));
        assert_eq!(ev[1].1["review"]["accepted"], json!(false));
        assert_eq!(ev[2].1["reviews"], json!([{"id": r["id"]}]));
    }

    async fn json_exports_nest_reviews_and_filter_by_reviewed(app) {
        let _worker = crate::webhooks::start_worker(&app);
        let t = team(&app, "ex", json!({}), 4).await;
        let a0 = annotate(&app, &t.ann1, t.tasks[0], "pos").await;
        let a1 = annotate(&app, &t.ann1, t.tasks[1], "neg").await;
        let _a2 = annotate(&app, &t.ann2, t.tasks[2], "pos").await;
        let r0 = review(&app, &t.rev1, json!({"annotation": a0, "accepted": true})).await;
        let r1 = review(&app, &t.rev2, json!({"annotation": a1, "accepted": false})).await;
        let rev1 = app.user_id(&t.rev1).await;
        let rev2 = app.user_id(&t.rev2).await;
        let url = format!("/api/projects/{}/export?exportType=JSON&download_all_tasks=true", t.p);
        let r = app.get(&url, &app.owner).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let tasks: Vec<Value> = serde_json::from_str(&r.text).expect("json");
        let by_id = |task: i64| tasks.iter().find(|x| id(x) == task).expect("task").clone();
        let reviews = |task: i64| by_id(task)["annotations"][0]["reviews"].clone();
        assert_eq!(reviews(t.tasks[0]), json!([{"id": r0["id"], "accepted": true, "created_by": {
            "id": rev1, "email": "rev1-ex@example.com", "first_name": "", "last_name": ""}}]));
        assert_eq!(reviews(t.tasks[1])[0]["id"], r1["id"]);
        assert_eq!(reviews(t.tasks[1])[0]["accepted"], json!(false));
        assert_eq!(reviews(t.tasks[1])[0]["created_by"]["id"], json!(rev2));
        assert_eq!(reviews(t.tasks[2]), json!([]));
        assert_eq!(by_id(t.tasks[3])["annotations"], json!([]));
        // JSON_MIN stays flat.
        let min = app.get(&url.replace("JSON", "JSON_MIN"), &app.owner).await;
        assert!(!min.text.contains("\"reviews\""), "{}", min.text);

        // Snapshots: task_filter_options.reviewed follows the data manager's `reviewed`.
        let snapshot = |filter: Value| {
            let app = &app;
            let p = t.p;
            async move {
                let snap = app.post(&format!("/api/projects/{p}/exports"), &app.owner,
                    json!({"title": "rv", "task_filter_options": filter})).await.expect(StatusCode::CREATED);
                let sid = id(&snap);
                let done = crate::wait_snapshot(app, p, sid).await;
                assert_eq!(done["status"], json!("completed"), "{done}");
                let r = app.get(&format!("/api/projects/{p}/exports/{sid}/download"), &app.owner).await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.text);
                let tasks: Vec<Value> = serde_json::from_str(&r.text).expect("json");
                let mut ids: Vec<i64> = tasks.iter().map(id).collect();
                ids.sort_unstable();
                (ids, tasks)
            }
        };
        let reviewed = reviewed_tasks(&app, t.p, true).await;
        assert!(reviewed.contains(&t.tasks[0]) && !reviewed.contains(&t.tasks[2]), "{reviewed:?}");
        let (only, tasks) = snapshot(json!({"reviewed": "only"})).await;
        assert_eq!(only, reviewed);
        let first = tasks.iter().find(|x| id(x) == t.tasks[0]).expect("task 0");
        assert_eq!(first["annotations"][0]["reviews"][0]["id"], r0["id"]);
        let (excluded, _) = snapshot(json!({"reviewed": "exclude"})).await;
        let mut rest: Vec<i64> = t.tasks.iter().copied().filter(|x| !reviewed.contains(x)).collect();
        rest.sort_unstable();
        assert_eq!(excluded, rest);
        let (annotated, _) = snapshot(json!({"reviewed": "exclude", "only_with_annotations": true})).await;
        assert_eq!(annotated, rest.iter().copied().filter(|x| *x != t.tasks[3]).collect::<Vec<_>>());
        let (all, _) = snapshot(json!({})).await;
        assert_eq!(all.len(), 4);
        app.post(&format!("/api/projects/{}/exports", t.p), &app.owner,
            json!({"task_filter_options": {"reviewed": "yes"}}))
            .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
    }
}

/// The tasks of project `p` the data manager lists for the filter `reviewed = value`.
async fn reviewed_tasks(app: &TestApp, p: i64, value: bool) -> Vec<i64> {
    let q = json!({"filters": {"conjunction": "and", "items": [
        {"filter": "filter:tasks:reviewed", "operator": "equal", "type": "Boolean", "value": value}]}});
    let url = format!(
        "/api/tasks?project={p}&query={}",
        crate::common::urlencoding(&q.to_string())
    );
    app.get(&url, &app.owner).await.expect(StatusCode::OK)["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(id)
        .collect()
}

both_backends! {
    async fn comments_follow_the_annotations_visibility_and_their_authors(app) {
        let t = team(&app, "comments", json!({}), 2).await;
        let ann = annotate(&app, &t.ann1, t.tasks[0], "pos").await;
        let region = json!({"regionId": "r1", "controlName": "sentiment"});
        let made = app.post("/api/comments", &t.rev1, json!({"annotation": ann, "text": "Is this really positive?", "region_ref": region}))
            .await
            .expect(StatusCode::CREATED);
        let c = id(&made);
        assert_eq!((made["annotation"].clone(), made["task"].clone(), made["project"].clone()), (json!(ann), json!(t.tasks[0]), json!(t.p)), "{made}");
        assert_eq!(made["region_ref"], region);
        assert_eq!((made["is_resolved"].clone(), made["resolved_at"].clone()), (json!(false), Value::Null));
        // The annotation's author reads and answers it; another annotator (blind) sees nothing.
        let listed = app.get(&format!("/api/comments?annotation={ann}"), &t.ann1).await.expect(StatusCode::OK);
        assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
        let reply = app.post("/api/comments", &t.ann1, json!({"annotation": ann, "text": "Yes: the last sentence."}))
            .await
            .expect(StatusCode::CREATED);
        app.get(&format!("/api/comments/{c}"), &t.ann2).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        app.post("/api/comments", &t.ann2, json!({"annotation": ann, "text": "peek"})).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        let theirs = app.get(&format!("/api/comments?projects={}", t.p), &t.ann2).await.expect(StatusCode::OK);
        assert_eq!(theirs, json!([]), "blind annotators see no comments on others' work");
        // Resolving: the annotation's author may; changing the text is the comment author's.
        let resolved = app.patch(&format!("/api/comments/{c}"), &t.ann1, json!({"is_resolved": true})).await.expect(StatusCode::OK);
        assert!(resolved["is_resolved"] == json!(true) && resolved["resolved_at"].is_string(), "{resolved}");
        app.patch(&format!("/api/comments/{c}"), &t.ann1, json!({"text": "rewritten"})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        let edited = app.patch(&format!("/api/comments/{c}"), &t.rev1, json!({"text": "Is this positive?", "region_ref": null})).await.expect(StatusCode::OK);
        assert_eq!((edited["text"].clone(), edited["region_ref"].clone()), (json!("Is this positive?"), Value::Null));
        // A reviewer may reopen anyone's; an annotator may not resolve a comment on others' work.
        app.patch(&format!("/api/comments/{}", id(&reply)), &t.rev2, json!({"is_resolved": true})).await.expect(StatusCode::OK);
        // Bad bodies: 400 naming the field, nothing written.
        for (bad, field) in [
            (json!({"annotation": ann, "text": "  "}), "text"),
            (json!({"annotation": ann, "text": "x", "region_ref": "r1"}), "region_ref"),
            (json!({"annotation": ann, "text": "x", "colour": "red"}), "colour"),
            (json!({"text": "x"}), "annotation"),
            (json!({"draft": 3, "text": "x"}), "draft"),
        ] {
            let e = app.post("/api/comments", &t.rev1, bad).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
            assert!(e["validation_errors"].get(field).is_some(), "{field}: {e}");
        }
        assert_eq!(app.get(&format!("/api/comments?annotation={ann}"), &app.owner).await.expect(StatusCode::OK).as_array().map(Vec::len), Some(2));
        // Deleting: the author only.
        app.delete(&format!("/api/comments/{c}"), &t.ann1).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        app.delete(&format!("/api/comments/{c}"), &t.rev1).await.expect(StatusCode::NO_CONTENT);
        app.get(&format!("/api/comments/{c}"), &t.rev1).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        let log = app.get("/api/audit-log?page_size=200", &app.owner).await.text;
        for action in ["comment.create", "comment.update", "comment.delete"] {
            assert!(log.contains(action), "{action} audited");
        }
    }

    async fn review_routing_rules_route_annotations_to_reviewers(app) {
        let t = team(&app, "route", json!({}), 6).await;
        let (ann1, ann2, rev1, rev2) = (app.user_id(&t.ann1).await, app.user_id(&t.ann2).await,
            app.user_id(&t.rev1).await, app.user_id(&t.rev2).await);
        let rules_url = format!("/api/projects/{}/review-routing-rules/", t.p);
        let bulk_url = format!("/api/projects/{}/review-routing-rules/bulk/", t.p);
        assert_eq!(app.get(&rules_url, &app.owner).await.expect(StatusCode::OK), json!([]));
        // ann1's work goes to rev1 (even a "neg"); other "neg" work to rev2; the rest to anyone.
        let written = app.post(&bulk_url, &app.owner, json!({"rules": [
            {"name": "new annotator", "annotators": [ann1], "reviewers": [rev1]},
            {"labels": ["neg"], "reviewers": [rev2, rev2]},
        ]})).await.expect(StatusCode::OK);
        let shape: Vec<(i64, String, Value, Value, Value)> = written.as_array().expect("rules").iter()
            .map(|r| (r["position"].as_i64().unwrap_or(-1), r["name"].as_str().unwrap_or_default().to_string(),
                      r["annotators"].clone(), r["labels"].clone(), r["reviewers"].clone()))
            .collect();
        assert_eq!(shape, vec![
            (0, "new annotator".to_string(), json!([ann1]), json!([]), json!([rev1])),
            (1, String::new(), json!([]), json!(["neg"]), json!([rev2])),
        ]);
        assert_eq!(app.get(&rules_url, &t.rev1).await.expect(StatusCode::OK), written);
        let reversed = app.get(&format!("{rules_url}?ordering=-position"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(reversed[0]["position"], json!(1), "{reversed}");
        app.get(&format!("{rules_url}?ordering=name"), &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        let a0 = annotate(&app, &t.ann1, t.tasks[0], "pos").await;
        let a1 = annotate(&app, &t.ann1, t.tasks[1], "neg").await;
        let a2 = annotate(&app, &t.ann2, t.tasks[2], "pos").await;
        let a3 = annotate(&app, &t.ann2, t.tasks[3], "neg").await;
        let next = format!("/api/projects/{}/review/next", t.p);
        // Each reviewer takes and accepts until nothing is left for them.
        let drain = |token: String| {
            let (app, next) = (&app, next.clone());
            async move {
                let mut got = Vec::new();
                for _ in 0..10 {
                    let reply = app.get(&next, &token).await;
                    if reply.status == StatusCode::NOT_FOUND {
                        reply.expect_error(StatusCode::NOT_FOUND, "nothing_to_review");
                        return got;
                    }
                    let ann = reply.expect(StatusCode::OK)["annotations"][0]["id"].as_i64().expect("annotation");
                    review(app, &token, json!({"annotation": ann, "accepted": true})).await;
                    got.push(ann);
                }
                panic!("the review stream did not run dry: {got:?}");
            }
        };
        assert_eq!(drain(t.rev2.clone()).await, vec![a2, a3]);
        assert_eq!(drain(t.rev1.clone()).await, vec![a0, a1]);
        // Managers and above are not routed.
        let a4 = annotate(&app, &t.ann1, t.tasks[4], "pos").await;
        app.get(&next, &t.rev2).await.expect_error(StatusCode::NOT_FOUND, "nothing_to_review");
        let owner_got = app.get(&next, &app.owner).await.expect(StatusCode::OK);
        assert_eq!(owner_got["annotations"][0]["id"], json!(a4), "{owner_got}");
        // Bad rules: 400 invalid_routing_rule naming the rule, and the old list stays.
        for bad in [
            json!({"rules": [{"reviewers": []}]}),
            json!({"rules": [{"reviewers": [rev1]}, {"reviewers": [ann2]}]}),
            json!({"rules": [{"reviewers": [rev1], "annotators": [999999]}]}),
            json!({"rules": [{"reviewers": [rev1], "labels": [""]}]}),
            json!({"rules": [{"reviewers": [rev1], "weight": 2}]}),
            json!({"rules": "all"}),
            json!({}),
        ] {
            let e = app.post(&bulk_url, &app.owner, bad.clone()).await.expect_error(StatusCode::BAD_REQUEST, "invalid_routing_rule");
            assert!(e["validation_errors"].as_object().is_some_and(|m| m.keys().any(|k| k.starts_with("rules"))), "{bad}: {e}");
        }
        assert_eq!(app.get(&rules_url, &app.owner).await.expect(StatusCode::OK), written);
        // Annotators may not read them; reviewers may not change them.
        app.get(&rules_url, &t.ann1).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        app.post(&bulk_url, &t.rev1, json!({"rules": []})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        // An empty list removes the rules: rev2 gets ann1's work again.
        assert_eq!(app.post(&bulk_url, &app.owner, json!({"rules": []})).await.expect(StatusCode::OK), json!([]));
        review(&app, &app.owner, json!({"annotation": a4, "accepted": true})).await;
        let a5 = annotate(&app, &t.ann1, t.tasks[5], "pos").await;
        assert_eq!(drain(t.rev2.clone()).await, vec![a5]);
    }
}
