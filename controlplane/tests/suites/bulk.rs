//! Bulk annotation writes (ADR 0061) on both backends: bulk labeling
//! (`POST /api/annotations/bulk/`) with its validation, roles, all-or-nothing rule, counters,
//! overlap and selection by filter; bulk deletion (`POST /api/annotations/bulk-delete/`); and the
//! data-manager action `set_ground_truths`.

use http::StatusCode;
use serde_json::{Value, json};
use verity_controlplane::authz::Role;

use crate::{both_backends, common::choice};

/// Every kind bulk labeling writes, whole-task.
const BULK_CONFIG: &str = r#"<View><Text name="text" value="$text"/>
<Choices name="sentiment" toName="text"><Choice value="pos"/><Choice value="neg"/></Choices>
<Number name="score" toName="text" min="1" max="5"/>
<Rating name="stars" toName="text" maxRating="5"/>
<DateTime name="seen" toName="text" only="date"/>
<TextArea name="note" toName="text"/></View>"#;

fn answer(label: &str, score: i64) -> Value {
    json!([
        {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}},
        {"from_name": "score", "to_name": "text", "type": "number", "value": {"number": score}},
        {"from_name": "stars", "to_name": "text", "type": "rating", "value": {"rating": 4}},
        {"from_name": "seen", "to_name": "text", "type": "datetime", "value": {"datetime": "2026-12-01"}},
        {"from_name": "note", "to_name": "text", "type": "textarea", "value": {"text": ["checked in bulk"]}}
    ])
}

fn created_ids(reply: &Value) -> Vec<i64> {
    reply
        .as_array()
        .expect("a list")
        .iter()
        .map(|x| x["id"].as_i64().expect("id"))
        .collect()
}

async fn counts(app: &crate::common::TestApp, p: i64) -> (Value, Value, Value) {
    let project = app.project(p).await;
    (
        project["total_annotations_number"].clone(),
        project["finished_task_number"].clone(),
        project["num_tasks_with_annotations"].clone(),
    )
}

both_backends! {
    async fn bulk_labeling_writes_one_answer_to_many_tasks(app) {
        let app = &app;
        let p = app.mk_project(&app.owner, json!({"label_config": BULK_CONFIG, "maximum_annotations": 2})).await;
        let t = app.mk_tasks(&app.owner, p, 5).await;
        let reviewer = app.user("bulk-rev@example.com", Role::Reviewer).await;
        let annotator = app.user("bulk-ann@example.com", Role::Annotator).await;
        app.add_member(p, &reviewer, None).await;
        app.add_member(p, &annotator, None).await;
        let reviewer_id = app.user_id(&reviewer).await;
        let hook = app.post("/api/webhooks", &app.owner, json!({"project": p, "url": "https://hooks.example.com/bulk",
            "send_for_all_actions": false, "actions": ["ANNOTATIONS_CREATED"]})).await.expect(StatusCode::CREATED)["id"].as_i64();

        // The project flag: true for whole-task controls of the six kinds, false otherwise.
        assert_eq!(app.project(p).await["config_suitable_for_bulk_annotation"], json!(true));
        let labels = r#"<View><Text name="text" value="$text"/><Labels name="ner" toName="text"><Label value="PER"/></Labels></View>"#;
        let q = app.mk_project(&app.owner, json!({"label_config": labels})).await;
        let q_tasks = app.mk_tasks(&app.owner, q, 1).await;
        assert_eq!(app.project(q).await["config_suitable_for_bulk_annotation"], json!(false));
        let per_region = r#"<View><Text name="text" value="$text"/><TextArea name="note" toName="text" perRegion="true"/></View>"#;
        let r = app.mk_project(&app.owner, json!({"label_config": per_region})).await;
        let r_tasks = app.mk_tasks(&app.owner, r, 1).await;
        assert_eq!(app.project(r).await["config_suitable_for_bulk_annotation"], json!(false));
        let e = app.post("/api/annotations/bulk/", &app.owner, json!({"tasks": q_tasks, "result": []}))
            .await.expect_error(StatusCode::BAD_REQUEST, "config_not_suitable_for_bulk");
        assert!(e["detail"].as_str().is_some_and(|d| d.contains("<Labels>")), "{e}");
        let e = app.post("/api/annotations/bulk/", &app.owner, json!({"tasks": r_tasks, "result": []}))
            .await.expect_error(StatusCode::BAD_REQUEST, "config_not_suitable_for_bulk");
        assert!(e["detail"].as_str().is_some_and(|d| d.contains("perRegion")), "{e}");

        // Annotators may not (annotation.manage); nothing is written.
        app.post("/api/annotations/bulk/", &annotator, json!({"tasks": [t[0]], "result": answer("pos", 3)}))
            .await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        // Bad input: 400 naming the field, nothing written.
        let e = app.post("/api/annotations/bulk/", &reviewer, json!({"tasks": [t[0], t[1]], "result": answer("maybe", 3)}))
            .await.expect_error(StatusCode::BAD_REQUEST, "invalid_result");
        assert!(e["detail"].as_str().is_some_and(|d| d.contains("maybe")), "{e}");
        let mut too_many_stars = answer("pos", 3);
        too_many_stars[2]["value"]["rating"] = json!(9);
        let e = app.post("/api/annotations/bulk/", &reviewer, json!({"tasks": [t[0]], "result": too_many_stars}))
            .await.expect_error(StatusCode::BAD_REQUEST, "invalid_result");
        assert!(e["detail"].as_str().is_some_and(|d| d.contains("maxRating")), "{e}");
        app.post("/api/annotations/bulk/", &reviewer, json!({"tasks": [t[0]]}))
            .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        app.post("/api/annotations/bulk/", &reviewer, json!({"result": answer("pos", 3)}))
            .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        app.post("/api/annotations/bulk/", &reviewer, json!({"tasks": [t[0]], "project": p, "selected_items": {"all": true}, "result": answer("pos", 3)}))
            .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        app.post("/api/annotations/bulk/", &reviewer, json!({"selected_items": {"all": true}, "result": answer("pos", 3)}))
            .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        app.post("/api/annotations/bulk/", &reviewer, json!({"tasks": "all", "result": answer("pos", 3)}))
            .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        let many: Vec<i64> = (1..=1001).collect();
        let e = app.post("/api/annotations/bulk/", &app.owner, json!({"project": p, "tasks": many, "result": answer("pos", 3)}))
            .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        assert!(e["detail"].as_str().is_some_and(|d| d.contains("1000")), "{e}");
        // All or nothing: a task of another project refuses the whole call.
        let e = app.post("/api/annotations/bulk/", &app.owner, json!({"project": p, "tasks": [t[0], t[1], q_tasks[0]], "result": answer("pos", 3)}))
            .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        assert!(e["detail"].as_str().is_some_and(|d| d.contains(&q_tasks[0].to_string())), "{e}");
        // Ground truth is a manager's call; an author from another organization is refused.
        app.post("/api/annotations/bulk/", &reviewer, json!({"tasks": [t[0]], "result": answer("pos", 3), "ground_truth": true}))
            .await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        let (_, other_owner) = app.other_org("Elsewhere", "bulk-else@example.com").await;
        let outsider = app.user_id(&other_owner).await;
        app.post("/api/annotations/bulk/", &app.owner, json!({"tasks": [t[0]], "result": answer("pos", 3), "completed_by": outsider}))
            .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        // Another organization's owner does not find the project's tasks.
        app.post("/api/annotations/bulk/", &other_owner, json!({"tasks": [t[0]], "result": answer("pos", 3)}))
            .await.expect_error(StatusCode::NOT_FOUND, "not_found");
        assert_eq!(counts(app, p).await, (json!(0), json!(0), json!(0)));
        assert!(app.webhook_events(hook).await.is_empty());

        // A reviewer labels t0..t2 by ids (the project comes from the tasks).
        let reply = app.post("/api/annotations/bulk/", &reviewer, json!({"tasks": [t[0], t[1], t[2]], "result": answer("pos", 3)}))
            .await.expect(StatusCode::CREATED);
        let first = created_ids(&reply);
        assert_eq!(first.len(), 3, "{reply}");
        for (task, id) in t.iter().zip(&first) {
            let a = app.get(&format!("/api/annotations/{id}"), &app.owner).await.expect(StatusCode::OK);
            assert_eq!((a["task"].clone(), a["bulk_created"].clone(), a["completed_by"].clone()), (json!(task), json!(true), json!(reviewer_id)), "{a}");
            assert_eq!(a["result"], answer("pos", 3));
            assert_eq!(a["ground_truth"], json!(false));
        }
        // Overlap 2: one annotation does not complete a task.
        let task0 = app.get(&format!("/api/tasks/{}", t[0]), &app.owner).await.expect(StatusCode::OK);
        assert_eq!((task0["total_annotations"].clone(), task0["is_labeled"].clone()), (json!(1), json!(false)));
        assert_eq!(counts(app, p).await, (json!(3), json!(0), json!(3)));
        // A single annotation made by hand is not bulk-created.
        let by_hand = app.post(&format!("/api/tasks/{}/annotations", t[4]), &annotator, json!({"result": answer("neg", 1)}))
            .await.expect(StatusCode::CREATED);
        assert_eq!(by_hand["bulk_created"], json!(false));

        // Again over t0..t3: the reviewer's tasks are left alone, t3 is labeled.
        let reply = app.post("/api/annotations/bulk", &reviewer, json!({"project": p, "tasks": [t[0], t[1], t[2], t[3]], "result": answer("neg", 2)}))
            .await.expect(StatusCode::CREATED);
        assert_eq!(created_ids(&reply).len(), 1, "{reply}");
        assert_eq!(counts(app, p).await, (json!(5), json!(0), json!(5)));

        // The owner, by a data-manager selection with a filter: every task with id > t1.
        let filters = json!({"conjunction": "and", "items": [{"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": t[1]}]});
        let reply = app.post("/api/annotations/bulk/", &app.owner, json!({"project": p, "selected_items": {"all": true, "excluded": [t[4]]}, "filters": filters, "result": answer("pos", 5), "lead_time": 2.5}))
            .await.expect(StatusCode::CREATED);
        let by_owner = created_ids(&reply);
        assert_eq!(by_owner.len(), 2, "{reply}");
        let a = app.get(&format!("/api/annotations/{}", by_owner[0]), &app.owner).await.expect(StatusCode::OK);
        assert_eq!((a["task"].clone(), a["lead_time"].clone()), (json!(t[2]), json!(2.5)));
        // t2 and t3 now have two annotations each: complete under overlap 2.
        for task in [t[2], t[3]] {
            let got = app.get(&format!("/api/tasks/{task}"), &app.owner).await.expect(StatusCode::OK);
            assert_eq!((got["total_annotations"].clone(), got["is_labeled"].clone()), (json!(2), json!(true)), "{got}");
        }
        assert_eq!(counts(app, p).await, (json!(7), json!(2), json!(5)));
        // Ground truth by the owner on t0: a mark, counted.
        let reply = app.post("/api/annotations/bulk/", &app.owner, json!({"tasks": [t[0]], "result": answer("pos", 4), "ground_truth": true}))
            .await.expect(StatusCode::CREATED);
        assert_eq!(created_ids(&reply).len(), 1);
        assert_eq!(app.project(p).await["ground_truth_number"], json!(1));

        // One ANNOTATIONS_CREATED per call, with that call's annotations.
        let events = app.webhook_events(hook).await;
        assert_eq!(events.len(), 4, "{events:?}");
        assert!(events.iter().all(|(action, _)| action == "ANNOTATIONS_CREATED"));
        let sent: Vec<i64> = events[0].1["annotation"].as_array().expect("annotations").iter().map(|x| x["id"].as_i64().expect("id")).collect();
        assert_eq!(sent, first);
        // Audited as annotation creations (one entry per call), refusals too.
        let audit = app.audit_actions(app.org).await;
        let creates = audit.iter().filter(|(a, outcome, target)| a == "annotation.create" && outcome == "ok" && target == &p.to_string()).count();
        assert_eq!(creates, 4, "{audit:?}");
    }

    async fn strict_overlap_leaves_full_tasks_alone_for_reviewers(app) {
        let app = &app;
        let p = app.mk_project(&app.owner, json!({"label_config": BULK_CONFIG, "maximum_annotations": 1, "strict_task_overlap": true})).await;
        let t = app.mk_tasks(&app.owner, p, 3).await;
        let reviewer = app.user("strict-rev@example.com", Role::Reviewer).await;
        let annotator = app.user("strict-ann@example.com", Role::Annotator).await;
        app.add_member(p, &reviewer, None).await;
        app.add_member(p, &annotator, None).await;
        app.post(&format!("/api/tasks/{}/annotations", t[0]), &annotator, json!({"result": answer("pos", 1)}))
            .await.expect(StatusCode::CREATED);
        // t0 is full: the reviewer's bulk call labels t1 and t2 only.
        let reply = app.post("/api/annotations/bulk/", &reviewer, json!({"tasks": t, "result": answer("neg", 2)}))
            .await.expect(StatusCode::CREATED);
        let made = created_ids(&reply);
        assert_eq!(made.len(), 2, "{reply}");
        let tasks_of: Vec<Value> = {
            let mut out = Vec::new();
            for id in &made {
                out.push(app.get(&format!("/api/annotations/{id}"), &app.owner).await.expect(StatusCode::OK)["task"].clone());
            }
            out
        };
        assert_eq!(tasks_of, vec![json!(t[1]), json!(t[2])]);
        assert_eq!(counts(app, p).await, (json!(3), json!(3), json!(3)));
        // A manager's call is deliberate (as for one annotation): it lands on the full task.
        let reply = app.post("/api/annotations/bulk/", &app.owner, json!({"tasks": [t[0]], "result": answer("neg", 2)}))
            .await.expect(StatusCode::CREATED);
        assert_eq!(created_ids(&reply).len(), 1);
        // Switched off, the reviewer's call lands on a full task too.
        app.patch(&format!("/api/projects/{p}"), &app.owner, json!({"strict_task_overlap": false})).await.expect(StatusCode::OK);
        let other = app.user("strict-rev2@example.com", Role::Reviewer).await;
        app.add_member(p, &other, None).await;
        let reply = app.post("/api/annotations/bulk/", &other, json!({"tasks": [t[0]], "result": answer("pos", 2)}))
            .await.expect(StatusCode::CREATED);
        assert_eq!(created_ids(&reply).len(), 1);
    }

    async fn bulk_delete_refuses_ids_outside_the_project(app) {
        let app = &app;
        let p = app.mk_project(&app.owner, json!({"label_config": BULK_CONFIG})).await;
        let t = app.mk_tasks(&app.owner, p, 3).await;
        let q = app.mk_project(&app.owner, json!({})).await;
        let q_task = app.mk_tasks(&app.owner, q, 1).await[0];
        let reviewer = app.user("bulkdel-rev@example.com", Role::Reviewer).await;
        let annotator = app.user("bulkdel-ann@example.com", Role::Annotator).await;
        app.add_member(p, &reviewer, None).await;
        app.add_member(p, &annotator, None).await;
        let made = created_ids(&app.post("/api/annotations/bulk/", &app.owner, json!({"tasks": t, "result": answer("pos", 1)}))
            .await.expect(StatusCode::CREATED));
        let own = app.post(&format!("/api/tasks/{}/annotations", t[0]), &annotator, json!({"result": answer("neg", 2)}))
            .await.expect(StatusCode::CREATED)["id"].as_i64().expect("id");
        let foreign = app.post(&format!("/api/tasks/{q_task}/annotations"), &app.owner, json!({"result": choice("pos")}))
            .await.expect(StatusCode::CREATED)["id"].as_i64().expect("id");
        assert_eq!(counts(app, p).await, (json!(4), json!(3), json!(3)));

        // Refused whole: an id of another project, too many ids, no project, not a list.
        let e = app.post("/api/annotations/bulk-delete/", &reviewer, json!({"ids": [made[0], foreign], "project": p}))
            .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        assert!(e["detail"].as_str().is_some_and(|d| d.contains(&foreign.to_string())), "{e}");
        app.post("/api/annotations/bulk-delete/", &reviewer, json!({"ids": [made[0], 999_999_999], "project": p}))
            .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        let many: Vec<i64> = (1..=101).collect();
        app.post("/api/annotations/bulk-delete/", &reviewer, json!({"ids": many, "project": p}))
            .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        app.post("/api/annotations/bulk-delete/", &reviewer, json!({"ids": []  , "project": p}))
            .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        app.post("/api/annotations/bulk-delete/", &reviewer, json!({"ids": [made[0]]}))
            .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        app.post("/api/annotations/bulk-delete/", &reviewer, json!({"ids": "all", "project": p}))
            .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        // Annotators may not, not even for their own; another organization finds no project.
        app.post("/api/annotations/bulk-delete/", &annotator, json!({"ids": [own], "project": p}))
            .await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        let (_, other_owner) = app.other_org("Elsewhere", "bulkdel-else@example.com").await;
        app.post("/api/annotations/bulk-delete/", &other_owner, json!({"ids": [made[0]], "project": p}))
            .await.expect_error(StatusCode::NOT_FOUND, "not_found");
        assert_eq!(counts(app, p).await, (json!(4), json!(3), json!(3)));

        // The reviewer deletes t0's two annotations and t1's: counters follow.
        let hook_events_before = app.webhook_events(None).await.len();
        let reply = app.post("/api/annotations/bulk-delete/", &reviewer, json!({"ids": [made[0], own, made[1], made[1]], "project": p}))
            .await.expect(StatusCode::OK);
        assert_eq!(reply, json!({"deleted_count": 3}));
        for id in [made[0], own, made[1]] {
            app.get(&format!("/api/annotations/{id}"), &app.owner).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        }
        let task0 = app.get(&format!("/api/tasks/{}", t[0]), &app.owner).await.expect(StatusCode::OK);
        assert_eq!((task0["total_annotations"].clone(), task0["is_labeled"].clone()), (json!(0), json!(false)));
        assert_eq!(counts(app, p).await, (json!(1), json!(1), json!(1)));
        app.get(&format!("/api/annotations/{foreign}"), &app.owner).await.expect(StatusCode::OK);
        // No webhook is configured: nothing recorded, and nothing failed.
        assert_eq!(app.webhook_events(None).await.len(), hook_events_before);
        let audit = app.audit_actions(app.org).await;
        assert!(audit.iter().any(|(a, o, target)| a == "annotation.delete" && o == "ok" && target == &p.to_string()), "{audit:?}");
    }

    async fn set_ground_truths_marks_each_tasks_newest_submitted_annotation(app) {
        let app = &app;
        let p = app.mk_project(&app.owner, json!({"maximum_annotations": 3})).await;
        let t = app.mk_tasks(&app.owner, p, 4).await;
        let reviewer = app.user("gt-rev@example.com", Role::Reviewer).await;
        let annotator = app.user("gt-ann@example.com", Role::Annotator).await;
        app.add_member(p, &reviewer, None).await;
        app.add_member(p, &annotator, None).await;
        let annotate = |token: &str, task: i64, body: Value| {
            let url = format!("/api/tasks/{task}/annotations");
            let token = token.to_string();
            async move { app.post(&url, &token, body).await.expect(StatusCode::CREATED)["id"].as_i64().expect("id") }
        };
        // t0: the annotator's, then the reviewer's (newest); t1: a skip only; t2: nothing;
        // t3: the owner's marked ground truth, then the annotator's (newest), then a skip.
        annotate(&annotator, t[0], json!({"result": choice("pos")})).await;
        let t0_newest = annotate(&reviewer, t[0], json!({"result": choice("neg")})).await;
        annotate(&annotator, t[1], json!({"result": [], "was_cancelled": true})).await;
        let t3_old = annotate(&app.owner, t[3], json!({"result": choice("pos"), "ground_truth": true})).await;
        let t3_newest = annotate(&annotator, t[3], json!({"result": choice("neg")})).await;
        annotate(&reviewer, t[3], json!({"result": [], "was_cancelled": true})).await;
        assert_eq!(app.project(p).await["ground_truth_number"], json!(1));

        let listed = app.get(&format!("/api/dm/actions?project={p}"), &app.owner).await.expect(StatusCode::OK);
        assert!(listed.as_array().expect("list").iter().any(|a| a["id"] == json!("set_ground_truths")), "{listed}");
        let all = json!({"all": true, "excluded": []});
        let url = format!("/api/dm/actions?project={p}&id=set_ground_truths");
        app.post(&url, &annotator, json!({"selectedItems": all})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        app.post(&url, &reviewer, json!({"selectedItems": all})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        assert_eq!(app.project(p).await["ground_truth_number"], json!(1));

        let r = app.post(&url, &app.owner, json!({"selectedItems": all})).await.expect(StatusCode::OK);
        assert_eq!((r["marked"].clone(), r["unchanged"].clone(), r["without_annotations"].clone()), (json!(2), json!(0), json!(2)), "{r}");
        let gt = |id: i64| async move { app.get(&format!("/api/annotations/{id}"), &app.owner).await.expect(StatusCode::OK)["ground_truth"].clone() };
        assert_eq!(gt(t0_newest).await, json!(true));
        assert_eq!(gt(t3_newest).await, json!(true));
        // One mark per task: t3's old mark is cleared.
        assert_eq!(gt(t3_old).await, json!(false));
        let project = app.project(p).await;
        assert_eq!(project["ground_truth_number"], json!(2));

        // Running it again changes nothing.
        let r = app.post(&url, &app.owner, json!({"selectedItems": {"all": false, "included": [t[0], t[2]]}})).await.expect(StatusCode::OK);
        assert_eq!((r["marked"].clone(), r["unchanged"].clone(), r["without_annotations"].clone()), (json!(0), json!(1), json!(1)), "{r}");
        assert_eq!(app.project(p).await["ground_truth_number"], json!(2));
        let audit = app.audit_actions(app.org).await;
        assert_eq!(audit.iter().filter(|(a, o, _)| a == "annotation.ground_truth.set" && o == "ok").count(), 2, "{audit:?}");
    }
}
