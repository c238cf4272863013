//! The data manager (ADR 0033) on both backends: saved views (CRUD, order, reset, validation,
//! who may change them), the task list through a view, and bulk actions with a selection.

use http::StatusCode;
use serde_json::{Value, json};
use verity_controlplane::authz::Role;

use crate::{both_backends, common::choice};

fn ids(list: &Value) -> Vec<i64> {
    list["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["id"].as_i64().expect("id"))
        .collect()
}

fn id_filter(operator: &str, value: i64) -> Value {
    json!({"conjunction": "and", "items": [{"filter": "filter:tasks:id", "operator": operator, "type": "Number", "value": value}]})
}

both_backends! {
    async fn views_are_saved_ordered_and_applied(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let tasks = app.mk_tasks(&app.owner, p, 5).await;
        let annotator = app.user("dm-ann@example.com", Role::Annotator).await;
        app.add_member(p, &annotator, None).await;

        // Created with filters and ordering; the task list applies both.
        let v1 = app.post("/api/dm/views/", &app.owner, json!({"project": p, "data": {"title": "Late", "filters": id_filter("greater", tasks[1]), "ordering": ["-tasks:id"]}}))
            .await.expect(StatusCode::CREATED);
        let v1_id = v1["id"].as_i64().expect("id");
        assert_eq!(v1["project"], json!(p));
        assert_eq!(v1["data"]["title"], json!("Late"));
        assert_eq!(v1["order"], json!(0));
        let listed = app.get(&format!("/api/tasks?view={v1_id}"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(ids(&listed), vec![tasks[4], tasks[3], tasks[2]]);
        assert_eq!(listed["total"], json!(3));
        let listed = app.get(&format!("/api/tasks?project={p}&view={v1_id}"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(ids(&listed), vec![tasks[4], tasks[3], tasks[2]]);
        // The query's own ordering wins over the view's.
        let q = json!({"ordering": ["tasks:id"]}).to_string();
        let listed = app.get(&format!("/api/tasks?view={v1_id}&query={}", crate::common::urlencoding(&q)), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(ids(&listed), vec![tasks[2], tasks[3], tasks[4]]);
        // A view of another project is refused for this one.
        let other = app.mk_project(&app.owner, json!({})).await;
        app.get(&format!("/api/tasks?project={other}&view={v1_id}"), &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");

        // A bad filter is refused and nothing is saved.
        let before = app.get(&format!("/api/dm/views?project={p}"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(before.as_array().map(Vec::len), Some(1));
        let bad = json!({"conjunction": "and", "items": [{"filter": "filter:tasks:nope", "operator": "equal", "type": "Number", "value": 1}]});
        let e = app.post("/api/dm/views", &app.owner, json!({"project": p, "data": {"title": "Bad", "filters": bad}}))
            .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        assert!(e["detail"].as_str().is_some_and(|d| d.contains("nope")), "{e}");
        app.patch(&format!("/api/dm/views/{v1_id}"), &app.owner, json!({"data": {"title": "Bad", "ordering": ["nope"]}}))
            .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        let after = app.get(&format!("/api/dm/views?project={p}"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(after.as_array().map(Vec::len), Some(1));
        assert_eq!(after[0]["data"]["title"], json!("Late"));

        // PATCH replaces data; GET shows it.
        let v = app.patch(&format!("/api/dm/views/{v1_id}"), &app.owner, json!({"data": {"title": "Early", "filters": id_filter("less_or_equal", tasks[1])}}))
            .await.expect(StatusCode::OK);
        assert_eq!(v["data"]["title"], json!("Early"));
        assert_eq!(v["data"].get("ordering"), None);
        let got = app.get(&format!("/api/dm/views/{v1_id}"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(got["data"]["title"], json!("Early"));
        let listed = app.get(&format!("/api/tasks?view={v1_id}"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(ids(&listed), vec![tasks[0], tasks[1]]);

        // The annotator has views of their own; they see everyone's but change only theirs.
        let mine = app.post("/api/dm/views", &annotator, json!({"project": p, "data": {"title": "Mine"}})).await.expect(StatusCode::CREATED);
        let mine_id = mine["id"].as_i64().expect("id");
        assert_eq!(mine["order"], json!(1));
        assert_eq!(mine["user"], json!(app.user_id(&annotator).await));
        let seen = app.get(&format!("/api/dm/views?project={p}"), &annotator).await.expect(StatusCode::OK);
        assert_eq!(seen.as_array().map(Vec::len), Some(2));
        app.patch(&format!("/api/dm/views/{v1_id}"), &annotator, json!({"data": {"title": "x"}})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        app.delete(&format!("/api/dm/views/{v1_id}"), &annotator).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        app.patch(&format!("/api/dm/views/{mine_id}"), &annotator, json!({"data": {"title": "Mine 2"}})).await.expect(StatusCode::OK);
        // Reordering someone else's view needs task.manage; the owner may.
        app.post("/api/dm/views/order", &annotator, json!({"project": p, "ids": [mine_id, v1_id]})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        app.post("/api/dm/views/order", &app.owner, json!({"project": p, "ids": [mine_id, v1_id]})).await.expect(StatusCode::OK);
        let ordered = app.get(&format!("/api/dm/views?project={p}"), &app.owner).await.expect(StatusCode::OK);
        let order: Vec<(i64, i64)> = ordered.as_array().expect("list").iter().map(|v| (v["id"].as_i64().expect("id"), v["order"].as_i64().expect("order"))).collect();
        assert_eq!(order, vec![(mine_id, 0), (v1_id, 1)]);
        app.post("/api/dm/views/order", &app.owner, json!({"project": p, "ids": [mine_id, 999_999]})).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");

        // Reset deletes the caller's own views only.
        app.delete(&format!("/api/dm/views/reset?project={p}"), &annotator).await.expect(StatusCode::NO_CONTENT);
        let left = app.get(&format!("/api/dm/views?project={p}"), &app.owner).await.expect(StatusCode::OK);
        let left: Vec<i64> = left.as_array().expect("list").iter().map(|v| v["id"].as_i64().expect("id")).collect();
        assert_eq!(left, vec![v1_id]);
        // The owner deletes the view; it is gone.
        app.delete(&format!("/api/dm/views/{v1_id}"), &app.owner).await.expect(StatusCode::NO_CONTENT);
        app.get(&format!("/api/dm/views/{v1_id}"), &app.owner).await.expect_error(StatusCode::NOT_FOUND, "not_found");

        // Every change is audited.
        let actions: Vec<String> = app.audit_actions(app.org).await.into_iter().map(|(a, _, _)| a).collect();
        for a in ["view.create", "view.update", "view.order", "view.reset", "view.delete"] {
            assert!(actions.iter().any(|x| x == a), "{a} missing from {actions:?}");
        }
    }

    async fn columns_from_annotations_reviews_predictions_and_drafts(app) {
        let app = &app;
        let p = app.mk_project(&app.owner, json!({})).await;
        let t = app.mk_tasks(&app.owner, p, 5).await;
        let a1 = app.user("dm-col-a1@example.com", Role::Annotator).await;
        let a2 = app.user("dm-col-a2@example.com", Role::Annotator).await;
        app.add_member(p, &a1, None).await;
        app.add_member(p, &a2, None).await;
        let (a1_id, owner_id) = (app.user_id(&a1).await, app.user_id(&app.owner).await);
        let annotate = |token: &str, task: i64, body: Value| {
            let url = format!("/api/tasks/{task}/annotations");
            let token = token.to_string();
            async move { app.post(&url, &token, body).await.expect(StatusCode::CREATED)["id"].as_i64().expect("id") }
        };
        // t0: a1 "pos" (10 s); t1: a1 "neg" (30 s); t2: a2 "neg"; t3: the owner, ground truth;
        // t4: a2 skipped (not an annotator of it, not completed).
        let first = annotate(&a1, t[0], json!({"result": choice("pos"), "lead_time": 10.0})).await;
        annotate(&a1, t[1], json!({"result": choice("neg"), "lead_time": 30.0})).await;
        annotate(&a2, t[2], json!({"result": choice("neg")})).await;
        annotate(&app.owner, t[3], json!({"result": choice("pos"), "ground_truth": true})).await;
        annotate(&a2, t[4], json!({"result": [], "was_cancelled": true})).await;
        app.post("/api/annotation-reviews", &app.owner, json!({"annotation": first, "accepted": true})).await.expect(StatusCode::CREATED);
        app.post("/api/predictions", &app.owner, json!({"task": t[4], "result": choice("pos"), "score": 0.9, "model_version": "model-v2"})).await.expect(StatusCode::CREATED);
        app.post("/api/predictions", &app.owner, json!({"task": t[0], "result": choice("neg"), "score": 0.2, "model_version": "model-v1"})).await.expect(StatusCode::CREATED);
        app.post(&format!("/api/tasks/{}/drafts", t[1]), &a2, json!({"result": choice("pos")})).await.expect(StatusCode::CREATED);

        let list = |token: &str, filters: Value, ordering: Value| {
            let q = json!({"filters": filters, "ordering": ordering}).to_string();
            let url = format!("/api/tasks?project={p}&query={}", crate::common::urlencoding(&q));
            let token = token.to_string();
            async move { app.get(&url, &token).await }
        };
        let one = |name: &str, operator: &str, value: Value| {
            json!({"conjunction": "and", "items": [{"filter": format!("filter:tasks:{name}"), "operator": operator, "type": "String", "value": value}]})
        };
        let cases = [
            (one("annotators", "contains", json!([a1_id])), vec![t[0], t[1]]),
            (one("annotators", "not_contains", json!(a1_id)), vec![t[2], t[3], t[4]]),
            (one("annotators", "exists", json!(null)), vec![t[0], t[1], t[2], t[3]]),
            (one("reviewers", "contains", json!([owner_id])), vec![t[0]]),
            (one("annotations_results", "contains", json!("NEG")), vec![t[1], t[2]]),
            (one("annotations_results", "not_contains", json!("neg")), vec![t[0], t[3], t[4]]),
            (one("predictions_results", "contains", json!("neg")), vec![t[0]]),
            (one("predictions_model_versions", "equal", json!("model-v2")), vec![t[4]]),
            (one("predictions_score", "greater", json!(0.5)), vec![t[4]]),
            (one("ground_truth", "equal", json!(true)), vec![t[3]]),
            (one("draft_exists", "equal", json!(true)), vec![t[1]]),
            (one("avg_lead_time", "greater", json!(20)), vec![t[1]]),
            (one("completed_at", "exists", json!(null)), vec![t[0], t[1], t[2], t[3]]),
            (one("completed_at", "greater", json!("2000-01-01T00:00:00Z")), vec![t[0], t[1], t[2], t[3]]),
            (json!({"conjunction": "or", "items": [
                {"filter": "filter:tasks:ground_truth", "operator": "equal", "type": "Boolean", "value": true},
                {"filter": "filter:tasks:predictions_score", "operator": "less", "type": "Number", "value": 0.5}]}), vec![t[0], t[3]]),
        ];
        for (filters, want) in cases {
            let got = list(&app.owner, filters.clone(), json!(["tasks:id"])).await.expect(StatusCode::OK);
            assert_eq!(ids(&got), want, "{filters}");
        }

        // Ordering: newest completion first, the task never completed last; by prediction
        // score with the tasks without one first; by number of annotators; by a data field.
        let got = list(&app.owner, Value::Null, json!(["-tasks:completed_at"])).await.expect(StatusCode::OK);
        assert_eq!(ids(&got), vec![t[3], t[2], t[1], t[0], t[4]]);
        let got = list(&app.owner, Value::Null, json!(["tasks:completed_at"])).await.expect(StatusCode::OK);
        assert_eq!(ids(&got), vec![t[4], t[0], t[1], t[2], t[3]]);
        let got = list(&app.owner, Value::Null, json!(["tasks:predictions_score"])).await.expect(StatusCode::OK);
        assert_eq!(ids(&got), vec![t[1], t[2], t[3], t[0], t[4]]);
        let got = list(&app.owner, Value::Null, json!(["-tasks:avg_lead_time"])).await.expect(StatusCode::OK);
        assert_eq!(ids(&got)[..2], [t[1], t[0]]);
        let got = list(&app.owner, Value::Null, json!(["-tasks:data.text"])).await.expect(StatusCode::OK);
        assert_eq!(ids(&got), vec![t[4], t[3], t[2], t[1], t[0]]);
        let e = list(&app.owner, Value::Null, json!(["tasks:data.te'xt"])).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        assert!(e["detail"].as_str().is_some_and(|d| d.contains("letters, digits")), "{e}");
        let e = list(&app.owner, Value::Null, json!(["tasks:annotations_results"])).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        assert!(e["detail"].as_str().is_some_and(|d| d.contains("completed_at")), "{e}");
        // Bad values are refused with what to fix.
        let e = list(&app.owner, one("annotators", "contains", json!("a1")), Value::Null).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        assert!(e["detail"].as_str().is_some_and(|d| d.contains("user id")), "{e}");
        list(&app.owner, one("reviewers", "greater", json!(1)), Value::Null).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        // LIKE wildcards are literal: "%" matches no result.
        let got = list(&app.owner, one("annotations_results", "contains", json!("%")), Value::Null).await.expect(StatusCode::OK);
        assert_eq!(ids(&got), Vec::<i64>::new());

        // An annotator who sees only their own annotations may not learn the others' work
        // from a filter or an ordering; predictions are theirs to filter by.
        list(&a1, one("annotators", "contains", json!([a1_id])), Value::Null).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        list(&a1, one("annotations_results", "contains", json!("neg")), Value::Null).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        list(&a1, Value::Null, json!(["-tasks:completed_at"])).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        let got = list(&a1, one("predictions_score", "greater", json!(0.5)), Value::Null).await.expect(StatusCode::OK);
        assert_eq!(ids(&got), vec![t[4]]);
        // A reviewer of a project that hides who annotated may filter by results, not by people.
        let reviewer = app.user("dm-col-rev@example.com", Role::Annotator).await;
        app.add_member(p, &reviewer, Some("reviewer")).await;
        app.patch(&format!("/api/projects/{p}"), &app.owner, json!({"review_settings": {"anonymize_annotations": true, "show_data_manager_to_reviewers": true}}))
            .await.expect(StatusCode::OK);
        let got = list(&reviewer, one("annotations_results", "contains", json!("neg")), Value::Null).await.expect(StatusCode::OK);
        assert_eq!(ids(&got), vec![t[1], t[2]]);
        list(&reviewer, one("annotators", "contains", json!([a1_id])), Value::Null).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        list(&reviewer, Value::Null, json!(["tasks:reviewers"])).await.expect_error(StatusCode::FORBIDDEN, "forbidden");

        // The column catalogue lists what each caller may filter by, and the data fields.
        let ids_of = |columns: &Value| -> Vec<String> {
            columns["columns"].as_array().expect("columns").iter().map(|c| c["id"].as_str().expect("id").to_string()).collect()
        };
        let all = app.get(&format!("/api/dm/columns?project={p}"), &app.owner).await.expect(StatusCode::OK);
        let names = ids_of(&all);
        for want in ["id", "completed_at", "annotators", "reviewers", "annotations_results", "predictions_score", "agreement", "comment_authors", "data", "text"] {
            assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
        }
        let text = all["columns"].as_array().expect("columns").iter().find(|c| c["id"] == json!("text")).expect("text column");
        assert_eq!((&text["parent"], &text["type"], &text["orderable"]), (&json!("data"), &json!("Text"), &json!(true)));
        let completed = all["columns"].as_array().expect("columns").iter().find(|c| c["id"] == json!("completed_at")).expect("completed_at");
        assert_eq!((&completed["type"], &completed["target"]), (&json!("Datetime"), &json!("tasks")));
        let blind = ids_of(&app.get(&format!("/api/dm/columns?project={p}"), &a1).await.expect(StatusCode::OK));
        for hidden in ["completed_at", "annotators", "reviewers", "annotations_results", "agreement", "comment_authors"] {
            assert!(!blind.iter().any(|n| n == hidden), "{hidden} shown to a blind annotator: {blind:?}");
        }
        assert!(blind.iter().any(|n| n == "predictions_score"), "{blind:?}");
        let anonymous = ids_of(&app.get(&format!("/api/dm/columns?project={p}"), &reviewer).await.expect(StatusCode::OK));
        assert!(!anonymous.iter().any(|n| n == "annotators" || n == "reviewers"), "{anonymous:?}");
        assert!(anonymous.iter().any(|n| n == "annotations_results"), "{anonymous:?}");
        app.get("/api/dm/columns", &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        let outsider = app.user("dm-col-out@example.com", Role::Annotator).await;
        // Someone outside the project is refused as by the project itself.
        let project_answer = app.get(&format!("/api/projects/{p}"), &outsider).await;
        let columns_answer = app.get(&format!("/api/dm/columns?project={p}"), &outsider).await;
        assert!(!project_answer.status.is_success(), "{:?}", project_answer.status);
        assert_eq!(columns_answer.status, project_answer.status);
    }

    async fn data_fields_compare_numbers_as_numbers(app) {
        let app = &app;
        let p = app.mk_project(&app.owner, json!({})).await;
        let reply = app.post(&format!("/api/projects/{p}/import?return_task_ids=true"), &app.owner, json!([
            {"text": "a", "n": 5}, {"text": "b", "n": 10}, {"text": "c", "n": "5"}, {"text": "d", "n": 9.5}, {"text": "e"},
        ])).await.expect(StatusCode::CREATED);
        let t: Vec<i64> = reply["task_ids"].as_array().expect("ids").iter().map(|v| v.as_i64().expect("id")).collect();
        let list = |filter: Value| {
            let q = json!({"filters": {"conjunction": "and", "items": [filter]}, "ordering": ["tasks:id"]}).to_string();
            let url = format!("/api/tasks?project={p}&query={}", crate::common::urlencoding(&q));
            async move { ids(&app.get(&url, &app.owner).await.expect(StatusCode::OK)) }
        };
        let number = |operator: &str, value: Value| json!({"filter": "filter:tasks:data.n", "operator": operator, "type": "Number", "value": value});
        // The same answers on both engines: numbers as numbers, not as text.
        assert_eq!(list(number("equal", json!(5))).await, vec![t[0]]);
        assert_eq!(list(number("greater", json!(9))).await, vec![t[1], t[3]]);
        assert_eq!(list(number("less_or_equal", json!("9.5"))).await, vec![t[0], t[3]]);
        assert_eq!(list(number("in", json!({"min": 6, "max": 10}))).await, vec![t[1], t[3]]);
        assert_eq!(list(number("not_equal", json!(5))).await, vec![t[1], t[2], t[3], t[4]]);
        // Text filters take LIKE's wildcards literally, as docs/data-manager.md says.
        let reply = app.post(&format!("/api/projects/{p}/import?return_task_ids=true"), &app.owner, json!([
            {"text": "50% off", "n": 1}, {"text": "500 off", "n": 1}, {"text": "a_b", "n": 1}, {"text": "axb", "n": 1}, {"text": "c:\\d", "n": 1},
        ])).await.expect(StatusCode::CREATED);
        let w: Vec<i64> = reply["task_ids"].as_array().expect("ids").iter().map(|v| v.as_i64().expect("id")).collect();
        let text = |operator: &str, value: &str| json!({"filter": "filter:tasks:data.text", "operator": operator, "type": "String", "value": value});
        assert_eq!(list(text("contains", "0%")).await, vec![w[0]]);
        assert_eq!(list(text("contains", "A_B")).await, vec![w[2]]);
        assert_eq!(list(text("starts_with", "_")).await, Vec::<i64>::new());
        assert_eq!(list(text("ends_with", ":\\d")).await, vec![w[4]]);
        assert!(!list(text("not_contains", "a_b")).await.contains(&w[2]));
        assert!(list(text("not_contains", "a_b")).await.contains(&w[3]));
    }

    async fn actions_run_on_a_selection(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let tasks = app.mk_tasks(&app.owner, p, 6).await;
        let annotator = app.user("dm-act@example.com", Role::Annotator).await;
        app.add_member(p, &annotator, None).await;
        for t in &tasks {
            app.post("/api/predictions", &app.owner, json!({"task": t, "result": choice("pos"), "model_version": "m1"})).await.expect(StatusCode::CREATED);
        }
        let mut annotations = Vec::new();
        for t in &tasks[..3] {
            let a = app.post(&format!("/api/tasks/{t}/annotations"), &app.owner, json!({"result": choice("pos")})).await.expect(StatusCode::CREATED);
            annotations.push(a["id"].as_i64().expect("id"));
        }
        app.post("/api/webhooks", &app.owner, json!({"project": p, "url": "https://hooks.example.com/dm"})).await.expect(StatusCode::CREATED);

        // The catalogue: managers and up see the actions, annotators none.
        let listed = app.get(&format!("/api/dm/actions?project={p}"), &app.owner).await.expect(StatusCode::OK);
        let names: Vec<&str> = listed.as_array().expect("list").iter().map(|a| a["id"].as_str().expect("id")).collect();
        assert!(names.contains(&"delete_tasks") && names.contains(&"delete_tasks_predictions"), "{listed}");
        assert!(listed[0]["dialog"]["text"].is_string(), "{listed}");
        let none = app.get(&format!("/api/dm/actions?project={p}"), &annotator).await.expect(StatusCode::OK);
        assert_eq!(none, json!([]));
        // Annotators cannot run them.
        app.post(&format!("/api/dm/actions?project={p}&id=delete_tasks"), &annotator, json!({"selectedItems": {"all": true, "excluded": []}}))
            .await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        app.post(&format!("/api/dm/actions?project={p}&id=nope"), &app.owner, json!({"selectedItems": {"all": true}}))
            .await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        app.post(&format!("/api/dm/actions?project={p}&id=delete_tasks"), &app.owner, json!({}))
            .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");

        // delete_tasks_annotations on two selected tasks: counters follow, one webhook event.
        let r = app.post(&format!("/api/dm/actions?project={p}&id=delete_tasks_annotations"), &app.owner,
            json!({"selectedItems": {"all": false, "included": [tasks[1], tasks[2]]}}))
            .await.expect(StatusCode::OK);
        assert_eq!(r["processed_items"], json!(2));
        let project = app.project(p).await;
        assert_eq!((project["total_annotations_number"].clone(), project["num_tasks_with_annotations"].clone()), (json!(1), json!(1)));
        let listed = app.get(&format!("/api/tasks?project={p}&fields=task_only"), &app.owner).await.expect(StatusCode::OK);
        let counts: Vec<i64> = listed["tasks"].as_array().expect("tasks").iter().map(|t| t["total_annotations"].as_i64().expect("n")).collect();
        assert_eq!(counts, vec![1, 0, 0, 0, 0, 0]);
        app.get(&format!("/api/annotations/{}", annotations[1]), &app.owner).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        let events = app.webhook_events(None).await;
        let (_, body) = events.iter().find(|(a, _)| a == "ANNOTATIONS_DELETED").expect("ANNOTATIONS_DELETED event");
        let mut got: Vec<i64> = body["annotations"].as_array().expect("annotations").iter().map(|a| a["id"].as_i64().expect("id")).collect();
        got.sort_unstable();
        assert_eq!(got, vec![annotations[1], annotations[2]]);

        // delete_tasks_predictions on all-but-two, narrowed by filters.
        let r = app.post(&format!("/api/dm/actions?project={p}&id=delete_tasks_predictions"), &app.owner,
            json!({"selectedItems": {"all": true, "excluded": [tasks[0], tasks[1]]}, "filters": id_filter("less_or_equal", tasks[4])}))
            .await.expect(StatusCode::OK);
        assert_eq!(r["processed_items"], json!(3));
        let project = app.project(p).await;
        assert_eq!(project["total_predictions_number"], json!(3));
        let listed = app.get(&format!("/api/tasks?project={p}&fields=task_only"), &app.owner).await.expect(StatusCode::OK);
        let counts: Vec<i64> = listed["tasks"].as_array().expect("tasks").iter().map(|t| t["total_predictions"].as_i64().expect("n")).collect();
        assert_eq!(counts, vec![1, 1, 0, 0, 0, 1]);

        // delete_tasks through a view: the view's filter narrows `all: true`.
        let view = app.post("/api/dm/views", &app.owner, json!({"project": p, "data": {"title": "Tail", "filters": id_filter("greater", tasks[3])}}))
            .await.expect(StatusCode::CREATED)["id"].as_i64().expect("id");
        let r = app.post(&format!("/api/dm/actions?id=delete_tasks&view={view}"), &app.owner, json!({"selectedItems": {"all": true, "excluded": [tasks[5]]}}))
            .await.expect(StatusCode::OK);
        assert_eq!(r["processed_items"], json!(1));
        assert_eq!(r["reload"], json!(true));
        let left = app.get(&format!("/api/tasks?project={p}"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(ids(&left), vec![tasks[0], tasks[1], tasks[2], tasks[3], tasks[5]]);

        let actions: Vec<String> = app.audit_actions(app.org).await.into_iter().map(|(a, _, _)| a).collect();
        assert!(actions.iter().any(|a| a == "prediction.delete"), "{actions:?}");
        assert!(actions.iter().any(|a| a == "task.delete"), "{actions:?}");
        assert!(actions.iter().any(|a| a == "annotation.delete"), "{actions:?}");
        assert!(app.webhook_events(None).await.iter().any(|(a, _)| a == "TASKS_DELETED"));
    }
    async fn predictions_become_annotations_and_ground_truth_is_cleared(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let t = app.mk_tasks(&app.owner, p, 4).await;
        let annotator = app.user("dm-q-ann@example.com", Role::Annotator).await;
        app.add_member(p, &annotator, None).await;
        let admin = app.user("dm-q-adm@example.com", Role::Admin).await;
        let t0_m1 = predict(&app, t[0], "pos", "m1").await;
        let t0_m2 = predict(&app, t[0], "neg", "m2").await;
        predict(&app, t[1], "pos", "m1").await;
        let t2_m2 = predict(&app, t[2], "neg", "m2").await;
        // The owner has annotated t1 already (and made it ground truth).
        let own = app.post(&format!("/api/tasks/{}/annotations", t[1]), &app.owner, json!({"result": choice("neg"), "ground_truth": true}))
            .await.expect(StatusCode::CREATED)["id"].as_i64().expect("id");
        let owner_id = app.user_id(&app.owner).await;
        let all = json!({"all": true, "excluded": []});
        let hook = app.post("/api/webhooks", &app.owner, json!({"project": p, "url": "https://hooks.example.com/created",
            "send_for_all_actions": false, "actions": ["ANNOTATIONS_CREATED"]})).await.expect(StatusCode::CREATED)["id"].as_i64();

        // Listed for managers and up; annotators neither see nor run them.
        let listed = app.get(&format!("/api/dm/actions?project={p}"), &app.owner).await.expect(StatusCode::OK);
        let names: Vec<&str> = listed.as_array().expect("list").iter().map(|a| a["id"].as_str().expect("id")).collect();
        for id in ["delete_ground_truths", "predictions_to_annotations", "remove_duplicates"] {
            assert!(names.contains(&id), "{id} missing from {listed}");
        }
        for id in ["delete_ground_truths", "predictions_to_annotations"] {
            app.post(&format!("/api/dm/actions?project={p}&id={id}"), &annotator, json!({"selectedItems": all}))
                .await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        }
        // A bad model_version is refused and nothing is written.
        for bad in [json!(42), json!([]), json!(["m1", 3])] {
            let e = app.post(&format!("/api/dm/actions?project={p}&id=predictions_to_annotations"), &app.owner, json!({"selectedItems": all, "model_version": bad}))
                .await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
            assert!(e["detail"].as_str().is_some_and(|d| d.contains("model_version")), "{e}");
        }
        assert_eq!(app.project(p).await["total_annotations_number"], json!(1));

        // model_version m1: t0 gets its m1 prediction; t1 is skipped (the owner has one), t2 has no m1.
        let r = app.post(&format!("/api/dm/actions?project={p}&id=predictions_to_annotations"), &app.owner, json!({"selectedItems": all, "model_version": "m1"}))
            .await.expect(StatusCode::OK);
        assert_eq!((r["processed_items"].clone(), r["created"].clone()), (json!(4), json!(1)), "{r}");
        let task0 = app.get(&format!("/api/tasks/{}", t[0]), &app.owner).await.expect(StatusCode::OK);
        let made = &task0["annotations"][0];
        assert_eq!(made["result"], choice("pos"));
        assert_eq!((made["parent_prediction"].clone(), made["completed_by"].clone()), (json!(t0_m1), json!(owner_id)));
        // One ANNOTATIONS_CREATED event with the new annotation and its task, not the task's others.
        let events = app.webhook_events(hook).await;
        assert_eq!(events.len(), 1, "{events:?}");
        let (action, body) = &events[0];
        assert_eq!(action, "ANNOTATIONS_CREATED");
        assert_eq!(body["annotation"].as_array().map(|a| a.iter().map(|x| x["id"].clone()).collect::<Vec<_>>()), Some(vec![made["id"].clone()]), "{body}");
        assert_eq!(body["task"][0]["id"], json!(t[0]), "{body}");
        assert_eq!((task0["total_annotations"].clone(), task0["is_labeled"].clone()), (json!(1), json!(true)));
        let project = app.project(p).await;
        assert_eq!((project["total_annotations_number"].clone(), project["finished_task_number"].clone()), (json!(2), json!(2)));
        // Again with no version (the project has none set): the newest of each task; t0 is the owner's already.
        let r = app.post(&format!("/api/dm/actions?project={p}&id=predictions_to_annotations"), &app.owner, json!({"selectedItems": all}))
            .await.expect(StatusCode::OK);
        assert_eq!(r["created"], json!(1), "{r}");
        let task2 = app.get(&format!("/api/tasks/{}", t[2]), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(task2["annotations"][0]["parent_prediction"], json!(t2_m2));
        // An admin, with the project's model_version m2: t0 and t2 (the newest m2 each), not t1.
        app.patch(&format!("/api/projects/{p}"), &app.owner, json!({"model_version": "m2"})).await.expect(StatusCode::OK);
        let r = app.post(&format!("/api/dm/actions?project={p}&id=predictions_to_annotations"), &admin, json!({"selectedItems": {"all": false, "included": [t[0], t[1], t[2]]}}))
            .await.expect(StatusCode::OK);
        assert_eq!(r["created"], json!(2), "{r}");
        let task0 = app.get(&format!("/api/tasks/{}", t[0]), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(task0["annotations"][1]["parent_prediction"], json!(t0_m2));
        assert_eq!(task0["total_annotations"], json!(2));
        let project = app.project(p).await;
        assert_eq!((project["total_annotations_number"].clone(), project["finished_task_number"].clone()), (json!(5), json!(3)));

        // delete_ground_truths: mark t0's first annotation too, then clear t0 only, then the rest.
        let first = task0["annotations"][0]["id"].as_i64().expect("id");
        app.patch(&format!("/api/annotations/{first}"), &app.owner, json!({"ground_truth": true})).await.expect(StatusCode::OK);
        assert_eq!(app.project(p).await["ground_truth_number"], json!(2));
        let r = app.post(&format!("/api/dm/actions?project={p}&id=delete_ground_truths"), &app.owner, json!({"selectedItems": {"all": false, "included": [t[0]]}}))
            .await.expect(StatusCode::OK);
        assert_eq!(r["detail"], json!("Deleted 1 ground truths"));
        assert_eq!(app.get(&format!("/api/annotations/{first}"), &app.owner).await.expect(StatusCode::OK)["ground_truth"], json!(false));
        assert_eq!(app.get(&format!("/api/annotations/{own}"), &app.owner).await.expect(StatusCode::OK)["ground_truth"], json!(true));
        assert_eq!(app.project(p).await["ground_truth_number"], json!(1));
        app.post(&format!("/api/dm/actions?project={p}&id=delete_ground_truths"), &admin, json!({"selectedItems": all}))
            .await.expect(StatusCode::OK);
        assert_eq!(app.get(&format!("/api/annotations/{own}"), &app.owner).await.expect(StatusCode::OK)["ground_truth"], json!(false));
        let project = app.project(p).await;
        assert_eq!((project["ground_truth_number"].clone(), project["total_annotations_number"].clone()), (json!(0), json!(5)));
        let listed = app.get(&format!("/api/tasks?project={p}&fields=task_only"), &app.owner).await.expect(StatusCode::OK);
        assert!(listed["tasks"].as_array().expect("tasks").iter().all(|t| t["ground_truth"] != json!(true)), "{listed}");

        let actions: Vec<String> = app.audit_actions(app.org).await.into_iter().map(|(a, _, _)| a).collect();
        assert!(actions.iter().any(|a| a == "annotation.ground_truth.delete"), "{actions:?}");
    }

    async fn duplicates_are_merged_into_the_most_annotated_task(app) {
        let p = app.mk_project(&app.owner, json!({"maximum_annotations": 2})).await;
        let annotator = app.user("dm-dup@example.com", Role::Annotator).await;
        app.add_member(p, &annotator, None).await;
        let data = ["a", "b", "a", "a", "c", "b"].map(|x| json!({"text": x, "meta_info": {"k": 1, "j": [x]}}));
        let t: Vec<i64> = app.post(&format!("/api/projects/{p}/import?return_task_ids=true"), &app.owner, Value::Array(data.to_vec()))
            .await.expect(StatusCode::CREATED)["task_ids"].as_array().expect("ids").iter().map(|v| v.as_i64().expect("id")).collect();
        let on_t2 = app.post(&format!("/api/tasks/{}/annotations", t[2]), &app.owner, json!({"result": choice("pos"), "ground_truth": true}))
            .await.expect(StatusCode::CREATED)["id"].as_i64().expect("id");
        let on_t3 = app.post(&format!("/api/tasks/{}/annotations", t[3]), &annotator, json!({"result": choice("pos")}))
            .await.expect(StatusCode::CREATED)["id"].as_i64().expect("id");
        app.patch(&format!("/api/annotations/{on_t3}"), &app.owner, json!({"ground_truth": true})).await.expect(StatusCode::OK);
        app.post("/api/annotation-reviews", &app.owner, json!({"annotation": on_t3, "accepted": true})).await.expect(StatusCode::CREATED);
        let before = app.project(p).await;
        assert_eq!((before["finished_task_number"].clone(), before["ground_truth_number"].clone()), (json!(0), json!(2)));

        // Annotators may not; a selection without two equal tasks removes nothing.
        app.post(&format!("/api/dm/actions?project={p}&id=remove_duplicates"), &annotator, json!({"selectedItems": {"all": true}}))
            .await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        let r = app.post(&format!("/api/dm/actions?project={p}&id=remove_duplicates"), &app.owner, json!({"selectedItems": {"all": false, "included": [t[0], t[1], t[4]]}}))
            .await.expect(StatusCode::OK);
        assert_eq!((r["removed"].clone(), r["detail"].clone()), (json!(0), json!("Removed 0 tasks")));
        assert_eq!(app.project(p).await["task_number"], json!(6));

        // Everything: "a" keeps t2 (one annotation, lowest id of the most annotated), "b" keeps t1.
        let r = app.post(&format!("/api/dm/actions?project={p}&id=remove_duplicates"), &app.owner, json!({"selectedItems": {"all": true, "excluded": []}}))
            .await.expect(StatusCode::OK);
        assert_eq!((r["removed"].clone(), r["processed_items"].clone()), (json!(3), json!(6)), "{r}");
        let left = app.get(&format!("/api/tasks?project={p}"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(ids(&left), vec![t[1], t[2], t[4]]);
        // t3's annotation (with its review) moved onto t2, which now meets the overlap of 2.
        let moved = app.get(&format!("/api/annotations/{on_t3}"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!((moved["task"].clone(), moved["reviews_accepted"].clone()), (json!(t[2]), json!(1)));
        // One ground truth per task: the kept task's mark stays, the moved one's is cleared.
        assert_eq!(moved["ground_truth"], json!(false));
        assert_eq!(app.get(&format!("/api/annotations/{on_t2}"), &app.owner).await.expect(StatusCode::OK)["ground_truth"], json!(true));
        let kept = app.get(&format!("/api/tasks/{}", t[2]), &app.owner).await.expect(StatusCode::OK);
        assert_eq!((kept["total_annotations"].clone(), kept["is_labeled"].clone()), (json!(2), json!(true)));
        let project = app.project(p).await;
        assert_eq!(
            [&project["task_number"], &project["total_annotations_number"], &project["finished_task_number"], &project["ground_truth_number"], &project["num_tasks_with_annotations"]],
            [&json!(3), &json!(2), &json!(1), &json!(1), &json!(1)],
            "{project}"
        );
        let actions: Vec<String> = app.audit_actions(app.org).await.into_iter().map(|(a, _, _)| a).collect();
        assert!(actions.iter().any(|a| a == "task.remove_duplicates"), "{actions:?}");
    }
}

async fn predict(app: &crate::common::TestApp, task: i64, label: &str, version: &str) -> i64 {
    app.post(
        "/api/predictions",
        &app.owner,
        json!({"task": task, "result": choice(label), "model_version": version}),
    )
    .await
    .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("id")
}

both_backends! {
    // Ordering by a column that is never null is written without a `nulls` clause so an index
    // serves the page (ADR 0059, session 23): the answers are those of before, ties in id order,
    // and the exact total of an annotation-count filter over the new index.
    async fn orders_and_counts_on_task_columns_are_exact(app) {
        let app = &app;
        let p = app.mk_project(&app.owner, json!({})).await;
        let t = app.mk_tasks(&app.owner, p, 6).await;
        let a1 = app.user("dm-order-a1@example.com", Role::Annotator).await;
        app.add_member(p, &a1, None).await;
        for (token, task) in [(&app.owner, t[1]), (&app.owner, t[3]), (&a1, t[3]), (&a1, t[5])] {
            app.post(&format!("/api/tasks/{task}/annotations"), token, json!({"result": choice("pos")})).await.expect(StatusCode::CREATED);
        }
        let list = |filters: Value, ordering: &str, page: &str| {
            let q = json!({"filters": filters, "ordering": [ordering]}).to_string();
            format!("/api/tasks?project={p}&include=id{page}&query={}", crate::common::urlencoding(&q))
        };
        let count = |operator: &str, value: i64| json!({"conjunction": "and", "items": [{"filter": "filter:tasks:total_annotations", "operator": operator, "type": "Number", "value": value}]});
        let cases: Vec<(Value, &str, &str, Vec<i64>, i64)> = vec![
            (Value::Null, "-tasks:total_annotations", "", vec![t[3], t[1], t[5], t[0], t[2], t[4]], 6),
            (Value::Null, "tasks:total_annotations", "", vec![t[0], t[2], t[4], t[1], t[5], t[3]], 6),
            (Value::Null, "-tasks:id", "", vec![t[5], t[4], t[3], t[2], t[1], t[0]], 6),
            (Value::Null, "tasks:inner_id", "", t.clone(), 6),
            (Value::Null, "-tasks:is_labeled", "", vec![t[1], t[3], t[5], t[0], t[2], t[4]], 6),
            (count("equal", 0), "-tasks:id", "", vec![t[4], t[2], t[0]], 3),
            (count("equal", 0), "-tasks:id", "&page=2&page_size=2", vec![t[0]], 3),
            (count("greater", 0), "tasks:id", "&page=1&page_size=2", vec![t[1], t[3]], 3),
            (count("greater", 1), "-tasks:id", "", vec![t[3]], 1),
            (count("less_or_equal", 1), "-tasks:total_annotations", "", vec![t[1], t[5], t[0], t[2], t[4]], 5),
        ];
        for (filters, ordering, page, want, total) in cases {
            let got = app.get(&list(filters.clone(), ordering, page), &app.owner).await.expect(StatusCode::OK);
            assert_eq!((ids(&got), got["total"].as_i64().expect("total")), (want, total), "{filters} by {ordering} {page}");
        }
    }
}
