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
        let events = webhook_events(&app).await;
        let deleted = events.iter().find(|(a, _)| a == "ANNOTATIONS_DELETED").expect("ANNOTATIONS_DELETED event");
        let body: Value = serde_json::from_str(&deleted.1).expect("json");
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
        assert!(webhook_events(&app).await.iter().any(|(a, _)| a == "TASKS_DELETED"));
    }
}

async fn webhook_events(app: &crate::common::TestApp) -> Vec<(String, String)> {
    let sql = "select action, body from webhook_event order by id";
    match &app.db {
        verity_controlplane::storage::Db::Postgres(pool) => {
            sqlx::query_as(sql).fetch_all(pool).await.expect("events")
        }
        verity_controlplane::storage::Db::Sqlite { read, .. } => {
            sqlx::query_as(sql).fetch_all(read).await.expect("events")
        }
    }
}
