//! Comments beyond their CRUD (ADR 0051) on both backends: the task counters and their
//! data-manager filters, what annotators do not see, notifications and the CSV export.

use http::StatusCode;
use serde_json::{Value, json};

use crate::{
    both_backends,
    common::{TestApp, urlencoding},
    review::{annotate, id, team},
};

async fn comment(app: &TestApp, token: &str, annotation: i64, text: &str) -> i64 {
    id(&app
        .post(
            "/api/comments",
            token,
            json!({"annotation": annotation, "text": text}),
        )
        .await
        .expect(StatusCode::CREATED))
}

async fn task_as(app: &TestApp, token: &str, task: i64) -> Value {
    app.get(&format!("/api/tasks/{task}"), token)
        .await
        .expect(StatusCode::OK)
}

/// `(comment_count, unresolved_comment_count, comment_authors)` of a task, as its owner sees it.
async fn counters(app: &TestApp, task: i64) -> (Value, Value, Value) {
    let t = task_as(app, &app.owner, task).await;
    (
        t["comment_count"].clone(),
        t["unresolved_comment_count"].clone(),
        t["comment_authors"].clone(),
    )
}

/// The ids of the tasks a data-manager query lists to `token`.
async fn listed(app: &TestApp, token: &str, p: i64, query: Value) -> Vec<i64> {
    app.get(
        &format!(
            "/api/tasks?project={p}&query={}",
            urlencoding(&query.to_string())
        ),
        token,
    )
    .await
    .expect(StatusCode::OK)["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(id)
        .collect()
}

fn filter(column: &str, operator: &str, value: Value) -> Value {
    json!({"filters": {"conjunction": "and", "items": [
        {"filter": format!("filter:tasks:{column}"), "operator": operator, "value": value}]}})
}

both_backends! {
    async fn task_counters_follow_every_comment_write(app) {
        let t = team(&app, "counters", json!({}), 3).await;
        let (rev1, ann1) = (app.user_id(&t.rev1).await, app.user_id(&t.ann1).await);
        let a1 = annotate(&app, &t.ann1, t.tasks[0], "pos").await;
        let a2 = annotate(&app, &t.ann2, t.tasks[1], "neg").await;
        assert_eq!(counters(&app, t.tasks[0]).await, (json!(0), json!(0), json!([])));

        let c1 = comment(&app, &t.rev1, a1, "Why positive?").await;
        let c2 = comment(&app, &t.ann1, a1, "The ending.").await;
        let mut authors = vec![rev1, ann1];
        authors.sort_unstable();
        assert_eq!(counters(&app, t.tasks[0]).await, (json!(2), json!(2), json!(authors)));
        let first = task_as(&app, &app.owner, t.tasks[0]).await["last_comment_updated_at"].clone();
        assert!(first.is_string(), "{first}");

        // Resolving counts off the unresolved; reopening counts back.
        app.patch(&format!("/api/comments/{c1}"), &t.rev2, json!({"is_resolved": true})).await.expect(StatusCode::OK);
        assert_eq!(counters(&app, t.tasks[0]).await, (json!(2), json!(1), json!(authors)));
        app.patch(&format!("/api/comments/{c1}"), &t.rev2, json!({"is_resolved": false})).await.expect(StatusCode::OK);
        assert_eq!(counters(&app, t.tasks[0]).await.1, json!(2));
        app.patch(&format!("/api/comments/{c1}"), &t.rev2, json!({"is_resolved": true})).await.expect(StatusCode::OK);
        // Deleting the annotator's comment takes its author off the list.
        app.delete(&format!("/api/comments/{c2}"), &t.ann1).await.expect(StatusCode::NO_CONTENT);
        assert_eq!(counters(&app, t.tasks[0]).await, (json!(1), json!(0), json!([rev1])));

        // A review's comment is a comment of the task too.
        app.post("/api/annotation-reviews", &t.rev1, json!({"annotation": a2, "accepted": false, "comment": "wrong"}))
            .await.expect(StatusCode::CREATED);
        assert_eq!(counters(&app, t.tasks[1]).await, (json!(1), json!(1), json!([rev1])));

        // Data manager: filters and ordering on the counters.
        let p = t.p;
        assert_eq!(listed(&app, &app.owner, p, filter("comment_count", "greater", json!(0))).await, vec![t.tasks[0], t.tasks[1]]);
        assert_eq!(listed(&app, &app.owner, p, filter("unresolved_comment_count", "equal", json!(1))).await, vec![t.tasks[1]]);
        assert_eq!(listed(&app, &app.owner, p, filter("comment_authors", "contains", json!([rev1]))).await, vec![t.tasks[0], t.tasks[1]]);
        assert_eq!(listed(&app, &app.owner, p, filter("comment_authors", "contains", json!(ann1))).await, Vec::<i64>::new());
        assert_eq!(listed(&app, &app.owner, p, filter("last_comment_updated_at", "empty", json!(true))).await, vec![t.tasks[2]]);
        let ordered = listed(&app, &app.owner, p, json!({"ordering": ["-tasks:unresolved_comment_count"]})).await;
        assert_eq!(ordered.first(), Some(&t.tasks[1]), "{ordered:?}");
        let page = app.get(&format!("/api/tasks?project={p}"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(page["tasks"][0]["comment_count"], json!(1), "{page}");

        // Annotators see the counts, not who commented or when; nor may they filter on those.
        let theirs = task_as(&app, &t.ann1, t.tasks[0]).await;
        assert_eq!(
            (theirs["comment_count"].clone(), theirs["comment_authors"].clone(), theirs["last_comment_updated_at"].clone()),
            (json!(1), json!([]), Value::Null),
            "{theirs}"
        );
        let page = app.get(&format!("/api/tasks?project={p}"), &t.ann1).await.expect(StatusCode::OK);
        assert!(page["tasks"].as_array().expect("tasks").iter().all(|t| t["comment_authors"] == json!([]) && t["last_comment_updated_at"].is_null()), "{page}");
        for q in [filter("comment_authors", "contains", json!(rev1)), json!({"ordering": ["tasks:last_comment_updated_at"]})] {
            app.get(&format!("/api/tasks?project={p}&query={}", urlencoding(&q.to_string())), &t.ann1)
                .await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        }
        assert_eq!(listed(&app, &t.ann1, p, filter("comment_count", "greater", json!(0))).await, vec![t.tasks[0], t.tasks[1]]);

        // Deleting an annotation takes its comments off the task.
        app.delete(&format!("/api/annotations/{a2}"), &app.owner).await.expect(StatusCode::NO_CONTENT);
        let after = task_as(&app, &app.owner, t.tasks[1]).await;
        assert_eq!((after["comment_count"].clone(), after["comment_authors"].clone(), after["last_comment_updated_at"].clone()), (json!(0), json!([]), Value::Null));
    }

    async fn removing_duplicates_moves_comment_counts_to_the_kept_task(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let data: Vec<Value> = ["same", "same", "other"].iter().map(|x| json!({"text": x})).collect();
        let t: Vec<i64> = app.post(&format!("/api/projects/{p}/import?return_task_ids=true"), &app.owner, Value::Array(data))
            .await.expect(StatusCode::CREATED)["task_ids"].as_array().expect("ids").iter().map(|v| v.as_i64().expect("id")).collect();
        let keep = annotate(&app, &app.owner, t[0], "pos").await;
        let moved = annotate(&app, &app.owner, t[1], "pos").await;
        let moved2 = annotate(&app, &app.owner, t[1], "neg").await;
        comment(&app, &app.owner, keep, "kept").await;
        comment(&app, &app.owner, moved, "moved").await;
        comment(&app, &app.owner, moved2, "moved too").await;
        // t1 has more annotations: it is kept and t0's annotation and comment move onto it.
        app.post(&format!("/api/dm/actions?project={p}&id=remove_duplicates"), &app.owner, json!({"selectedItems": {"all": true, "excluded": []}}))
            .await.expect(StatusCode::OK);
        let owner = app.user_id(&app.owner).await;
        assert_eq!(counters(&app, t[1]).await, (json!(3), json!(3), json!([owner])));
        app.get(&format!("/api/tasks/{}", t[0]), &app.owner).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    }

    async fn notifications_follow_the_rules_and_are_marked_read(app) {
        let t = team(&app, "notify", json!({}), 2).await;
        let a1 = annotate(&app, &t.ann1, t.tasks[0], "pos").await;
        let a2 = annotate(&app, &t.ann2, t.tasks[1], "neg").await;
        let unread = |token: String| {
            let app = &app;
            async move { app.get("/api/notifications/count", &token).await.expect(StatusCode::OK)["unread"].clone() }
        };
        // The first comment: the project's reviewers and above (rev2, the owner who created it)
        // and the annotation's author; not its own author, not another annotator.
        let region = json!({"regionId": "r1", "controlName": "sentiment"});
        let first = id(&app.post("/api/comments", &t.rev1, json!({"annotation": a1, "text": "Why positive?", "region_ref": region}))
            .await.expect(StatusCode::CREATED));
        for (who, n) in [(&t.ann1, 1), (&t.rev2, 1), (&app.owner, 1), (&t.rev1, 0), (&t.ann2, 0)] {
            assert_eq!(unread(who.clone()).await, json!(n), "first comment");
        }
        // A reply: those who commented before (rev1), and the annotation's author unless it is them.
        comment(&app, &t.ann1, a1, "The ending.").await;
        for (who, n) in [(&t.ann1, 1), (&t.rev1, 1), (&t.rev2, 1), (&app.owner, 1)] {
            assert_eq!(unread(who.clone()).await, json!(n), "reply by the annotator");
        }
        comment(&app, &t.rev2, a1, "Agreed with the annotator.").await;
        for (who, n) in [(&t.ann1, 2), (&t.rev1, 2), (&t.rev2, 1), (&app.owner, 1)] {
            assert_eq!(unread(who.clone()).await, json!(n), "reply by another reviewer");
        }
        // A review's comment tells the annotator too.
        app.post("/api/annotation-reviews", &t.rev1, json!({"annotation": a2, "accepted": false, "comment": "wrong"}))
            .await.expect(StatusCode::CREATED);
        assert_eq!(unread(t.ann2.clone()).await, json!(1));

        // The list: newest first, with a deep link to the task, annotation and region.
        let page = app.get("/api/notifications", &t.ann1).await.expect(StatusCode::OK);
        assert_eq!((page["count"].clone(), page["unread_count"].clone()), (json!(2), json!(2)), "{page}");
        let results = page["results"].as_array().expect("results");
        assert_eq!(results.iter().map(|n| n["kind"].clone()).collect::<Vec<_>>(), vec![json!("reply"), json!("comment")]);
        let oldest = &results[1];
        assert_eq!((oldest["comment"].clone(), oldest["annotation"].clone(), oldest["task"].clone(), oldest["text"].clone()),
            (json!(first), json!(a1), json!(t.tasks[0]), json!("Why positive?")));
        assert_eq!(oldest["link"], json!(format!("/projects/{}/data?task={}&annotation={a1}&region=r1", t.p, t.tasks[0])));
        assert_eq!(oldest["created_by"], json!(app.user_id(&t.rev1).await));

        // Marking one read: it goes after the unread ones; others' ids are ignored.
        let oldest_id = id(oldest);
        let newest_id = id(&results[0]);
        let marked = app.post("/api/notifications/mark-read", &t.ann1, json!({"ids": [oldest_id]})).await.expect(StatusCode::OK);
        assert_eq!(marked["marked"], json!(1));
        let theirs = id(&app.get("/api/notifications", &t.rev1).await.expect(StatusCode::OK)["results"][0]);
        assert_eq!(app.post("/api/notifications/mark-read", &t.ann1, json!({"ids": [theirs]})).await.expect(StatusCode::OK)["marked"], json!(0));
        assert_eq!(unread(t.rev1.clone()).await, json!(2));
        comment(&app, &t.rev1, a1, "Fine then.").await;
        let page = app.get("/api/notifications", &t.ann1).await.expect(StatusCode::OK);
        let order: Vec<(i64, Value)> = page["results"].as_array().expect("results").iter().map(|n| (id(n), n["is_read"].clone())).collect();
        assert_eq!(order[1..], [(newest_id, json!(false)), (oldest_id, json!(true))], "{page}");
        assert_eq!(order[0].1, json!(false));
        let only_unread = app.get("/api/notifications?unread=true&page_size=1", &t.ann1).await.expect(StatusCode::OK);
        assert_eq!((only_unread["count"].clone(), only_unread["results"].as_array().map(Vec::len)), (json!(2), Some(1)));
        assert!(only_unread["next"].is_string(), "{only_unread}");
        app.get("/api/notifications?page=9", &t.ann1).await.expect_error(StatusCode::NOT_FOUND, "invalid_page");

        // All at once.
        assert_eq!(app.post("/api/notifications/mark-read", &t.ann1, json!({"all": true})).await.expect(StatusCode::OK)["marked"], json!(2));
        assert_eq!(app.get("/api/notifications/count", &t.ann1).await.expect(StatusCode::OK), json!({"total": 3, "unread": 0}));
        for bad in [json!({}), json!({"ids": "1"}), json!({"ids": []}), json!({"all": false}), json!({"ids": [1], "all": true}), json!({"every": true})] {
            app.post("/api/notifications/mark-read", &t.ann1, bad).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        }
        let actions: Vec<String> = app.audit_actions(app.org).await.into_iter().map(|(a, _, _)| a).collect();
        assert!(actions.iter().any(|a| a == "notification.read"), "{actions:?}");
    }

    async fn comments_export_as_csv_filtered_by_project_and_visibility(app) {
        let t = team(&app, "export", json!({}), 2).await;
        let other = app.mk_project(&app.owner, json!({})).await;
        let other_task = app.mk_tasks(&app.owner, other, 1).await[0];
        let a1 = annotate(&app, &t.ann1, t.tasks[0], "pos").await;
        let a2 = annotate(&app, &t.ann2, t.tasks[1], "neg").await;
        let elsewhere = annotate(&app, &app.owner, other_task, "pos").await;
        let region = json!({"regionId": "r1", "controlName": "sentiment"});
        let c1 = id(&app.post("/api/comments", &t.rev1, json!({"annotation": a1, "text": "Line one,\n\"quoted\"", "region_ref": region}))
            .await.expect(StatusCode::CREATED));
        let c2 = comment(&app, &t.rev1, a2, "=1+1").await;
        comment(&app, &app.owner, elsewhere, "not in this project").await;
        app.patch(&format!("/api/comments/{c2}"), &t.rev1, json!({"is_resolved": true})).await.expect(StatusCode::OK);

        let reply = app.get(&format!("/api/comments/export?projects={}", t.p), &t.rev2).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert!(reply.headers["content-type"].to_str().expect("type").starts_with("text/csv"));
        let mut lines = reply.text.lines();
        assert_eq!(lines.next(), Some("id,project,task,annotation,review,text,region_ref,classifications,is_resolved,resolved_at,created_by,created_by_email,created_at,updated_at"));
        let rev1 = app.user_id(&t.rev1).await;
        // The first comment's text spans two lines inside quotes; the formula is made text.
        let expected_start = format!("{c1},{},{},{a1},,\"Line one,\n\"\"quoted\"\"\",\"{{\"\"controlName\"\":\"\"sentiment\"\",\"\"regionId\"\":\"\"r1\"\"}}\",,false,,{rev1},rev1-export@example.com,", t.p, t.tasks[0]);
        assert!(reply.text.contains(&expected_start), "{}\nwanted {expected_start}", reply.text);
        assert!(reply.text.contains(&format!("{c2},{},{},{a2},,'=1+1,,,true,", t.p, t.tasks[1])), "{}", reply.text);
        assert!(!reply.text.contains("not in this project"));
        // Two projects at once; an annotator blind to others' work gets only comments on theirs.
        let both = app.get(&format!("/api/comments/export?projects={},{other}", t.p), &app.owner).await;
        assert!(both.text.contains("not in this project") && both.text.contains("=1+1"), "{}", both.text);
        let theirs = app.get(&format!("/api/comments/export?projects={}", t.p), &t.ann1).await;
        assert!(theirs.text.contains("Line one") && !theirs.text.contains("=1+1"), "{}", theirs.text);
        let one = app.get(&format!("/api/comments/export?annotation={a2}"), &t.rev2).await;
        assert_eq!(one.text.lines().count(), 2, "{}", one.text);
        // Errors: no filter, a bad id, another time zone; a project the reviewer is not in.
        for bad in ["", "?projects=x", &format!("?projects={}&tz=Europe/Paris", t.p)] {
            app.get(&format!("/api/comments/export{bad}"), &t.rev2).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        }
        app.get(&format!("/api/comments/export?projects={other}"), &t.rev2).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
    }
}
