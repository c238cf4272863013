//! Agreement statistics through the API (ADR 0025): which annotations count, the shapes,
//! control weights, who may read them.

use http::StatusCode;
use serde_json::{Value, json};
use verity_controlplane::authz::Role;

use crate::both_backends;

const CONFIG: &str = r#"<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text"><Choice value="pos"/><Choice value="neg"/></Choices><Rating name="stars" toName="text"/></View>"#;

fn sentiment(label: &str) -> Value {
    json!({"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}})
}

fn close(v: &Value, expected: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - expected).abs() < 1e-12)
}

/// `total_agreement` once the project's refresh job has run (a worker must be running).
async fn refreshed_total(app: &crate::common::TestApp, p: i64) -> Value {
    for _ in 0..500 {
        let total = app
            .get(
                &format!("/api/projects/{p}/stats/total_agreement"),
                &app.owner,
            )
            .await
            .expect(StatusCode::OK);
        if total["stale"] == json!(false) {
            return total;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the agreement refresh of project {p} did not finish");
}

both_backends! {
    async fn agreement_statistics(app) {
        let p = app.mk_project(&app.owner, json!({"label_config": CONFIG, "maximum_annotations": 3})).await;
        let mut tokens = Vec::new();
        for name in ["a", "b", "c"] {
            let t = app.user(&format!("agree-{name}@example.com"), Role::Annotator).await;
            app.add_member(p, &t, None).await;
            tokens.push(t);
        }
        let reviewer = app.user("agree-r@example.com", Role::Reviewer).await;
        app.add_member(p, &reviewer, Some("reviewer")).await;
        let ids: Vec<i64> = {
            let mut v = Vec::new();
            for t in &tokens {
                v.push(app.user_id(t).await);
            }
            v
        };
        let tasks = app.mk_tasks(&app.owner, p, 5).await;
        // Rows: annotators a, b, c; columns: tasks 1..4.
        let labels = [["pos", "pos", "neg", "neg"], ["pos", "pos", "neg", "pos"], ["pos", "neg", "neg", "neg"]];
        let mut ann = std::collections::HashMap::new();
        for (who, row) in labels.iter().enumerate() {
            for (t, label) in row.iter().enumerate() {
                let mut result = vec![sentiment(label)];
                if who == 0 && t == 0 {
                    result.push(json!({"from_name": "stars", "to_name": "text", "type": "rating", "value": {"rating": 4}}));
                }
                let created = app.post(&format!("/api/tasks/{}/annotations", tasks[t]), &tokens[who], json!({"result": result}))
                    .await
                    .expect(StatusCode::CREATED);
                ann.insert((who, t), created["id"].as_i64().expect("id"));
            }
        }
        // A skip never counts.
        app.post(&format!("/api/tasks/{}/annotations", tasks[4]), &tokens[2], json!({"result": [], "was_cancelled": true}))
            .await
            .expect(StatusCode::CREATED);

        // Reliability of the Choices control (hand-computed: see ADR 0025's worked example).
        let r = app.get(&format!("/api/projects/{p}/stats/reliability?from_name=sentiment"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(r["items"], json!(4), "{r}");
        assert_eq!(r["raters"], json!(3), "{r}");
        let key = |i: usize, j: usize| format!("{}-{}", ids[i], ids[j]);
        assert!(close(&r["cohen_kappa"][key(0, 1)], 0.5), "{r}");
        assert!(close(&r["cohen_kappa"][key(0, 2)], 0.5), "{r}");
        assert!(close(&r["cohen_kappa"][key(1, 2)], 0.2), "{r}");
        assert!(close(&r["fleiss_kappa"], 1.0 / 3.0), "{r}");
        assert!(close(&r["krippendorff_alpha"]["nominal"], 7.0 / 18.0), "{r}");
        assert_eq!(r["krippendorff_alpha"]["interval"], Value::Null);
        assert!(r["undefined"]["krippendorff_alpha.interval"].as_str().is_some_and(|s| s.contains("numeric")), "{r}");
        // One rater of the Rating: nothing is defined, and each null says why.
        let r = app.get(&format!("/api/projects/{p}/stats/reliability?from_name=stars"), &reviewer).await.expect(StatusCode::OK);
        assert_eq!((r["items"].clone(), r["raters"].clone()), (json!(0), json!(1)));
        assert_eq!(r["fleiss_kappa"], Value::Null);
        assert!(r["undefined"]["fleiss_kappa"].as_str().is_some_and(|s| s.contains("two raters")), "{r}");
        // Bad queries: 400 with what to fix.
        let e = app.get(&format!("/api/projects/{p}/stats/reliability?from_name=nope"), &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        assert!(e["detail"].as_str().is_some_and(|d| d.contains("sentiment")), "{e}");
        app.get(&format!("/api/projects/{p}/stats/reliability"), &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");

        // Task agreement: both controls count; a control empty on both sides agrees.
        let total = app.get(&format!("/api/projects/{p}/stats/total_agreement"), &app.owner).await.expect(StatusCode::OK);
        assert!(close(&total["total_agreement"], 0.75), "{total}");
        assert_eq!(total["tasks"], json!(4));
        let m = app.get(&format!("/api/projects/{p}/tasks/{}/agreement-matrix", tasks[0]), &app.owner).await.expect(StatusCode::OK);
        assert!(close(&m["agreement"], 2.0 / 3.0), "{m}");
        assert!(close(&m["matrix"][0][1], 0.5) && close(&m["matrix"][1][2], 1.0) && close(&m["matrix"][0][0], 1.0), "{m}");
        assert_eq!(m["users"].as_array().map(Vec::len), Some(3));
        let skipped = app.get(&format!("/api/projects/{p}/tasks/{}/agreement-matrix", tasks[4]), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(skipped["agreement"], Value::Null);
        assert_eq!(skipped["annotations"], json!([]));
        let iaa = app.get(&format!("/api/projects/{p}/stats/IAA"), &app.owner).await.expect(StatusCode::OK);
        let users: Vec<i64> = iaa["users"].as_array().expect("users").iter().filter_map(|u| u["id"].as_i64()).collect();
        assert_eq!(users, ids);
        assert!(close(&iaa["IAA"][0][1], 0.75) && close(&iaa["IAA"][1][2], 0.75), "{iaa}");
        assert_eq!(iaa["common_tasks"][0][1], json!(4));

        // Weights: the Rating weighs nothing, so only the choice counts. The stored task
        // agreements are stale until the refresh job has run (ADR 0035).
        app.patch(&format!("/api/projects/{p}"), &app.owner, json!({"control_weights": {"stars": {"overall": 0}, "sentiment": {"overall": 1}}}))
            .await
            .expect(StatusCode::OK);
        let total = app.get(&format!("/api/projects/{p}/stats/total_agreement"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(total["stale"], json!(true), "{total}");
        assert!(close(&total["total_agreement"], 0.75), "not recomputed inline: {total}");
        let _worker = crate::webhooks::start_worker(&app);
        let total = refreshed_total(&app, p).await;
        assert!(close(&total["total_agreement"], 2.0 / 3.0), "{total}");
        let iaa = app.get(&format!("/api/projects/{p}/stats/IAA"), &app.owner).await.expect(StatusCode::OK);
        assert!(close(&iaa["IAA"][0][1], 0.75) && close(&iaa["IAA"][1][2], 0.5), "{iaa}");

        // The stored task agreement follows every annotation change (total_agreement reads it).
        let total_path = format!("/api/projects/{p}/stats/total_agreement");
        // c's "neg" on task 2 becomes "pos": task 2 agrees fully.
        app.patch(&format!("/api/annotations/{}", ann[&(2, 1)]), &tokens[2], json!({"result": [sentiment("pos")]}))
            .await
            .expect(StatusCode::OK);
        let t = app.get(&total_path, &app.owner).await.expect(StatusCode::OK);
        assert!(close(&t["total_agreement"], 5.0 / 6.0) && t["tasks"] == json!(4), "{t}");
        // b's dissent on task 4 is deleted.
        app.delete(&format!("/api/annotations/{}", ann[&(1, 3)]), &tokens[1]).await.expect(StatusCode::NO_CONTENT);
        let t = app.get(&total_path, &app.owner).await.expect(StatusCode::OK);
        assert!(close(&t["total_agreement"], 1.0) && t["tasks"] == json!(4), "{t}");
        // A task imported with two disagreeing annotations.
        let imported = app.post(
            &format!("/api/projects/{p}/import?return_task_ids=true"),
            &app.owner,
            json!([{"data": {"text": "imported"}, "annotations": [
                {"result": [sentiment("pos")], "completed_by": ids[0]},
                {"result": [sentiment("neg")], "completed_by": ids[1]},
            ]}]),
        )
        .await
        .expect(StatusCode::CREATED);
        let t = app.get(&total_path, &app.owner).await.expect(StatusCode::OK);
        assert!(close(&t["total_agreement"], 0.8) && t["tasks"] == json!(5), "{t}");

        // The data manager shows the stored agreement, filters and orders by it.
        let imported_task = imported["task_ids"][0].as_i64().expect("task id");
        let dm = |q: Value| format!("/api/tasks?project={p}&query={}", crate::common::urlencoding(&q.to_string()));
        let page = app.get(&dm(json!({})), &app.owner).await.expect(StatusCode::OK);
        let agreement_of = |page: &Value, task: i64| {
            page["tasks"].as_array().expect("tasks").iter().find(|t| t["id"] == json!(task)).map(|t| t["agreement"].clone())
        };
        assert_eq!(agreement_of(&page, imported_task), Some(json!(0.0)), "{page}");
        assert_eq!(agreement_of(&page, tasks[0]), Some(json!(1.0)), "{page}");
        // A task with no two annotators has none.
        assert_eq!(agreement_of(&page, tasks[4]), Some(Value::Null), "{page}");
        let low = json!({"filters": {"conjunction": "and", "items": [
            {"filter": "filter:tasks:agreement", "operator": "less", "type": "Number", "value": 0.5}]}});
        let page = app.get(&dm(low.clone()), &app.owner).await.expect(StatusCode::OK);
        let found: Vec<i64> = page["tasks"].as_array().expect("tasks").iter().filter_map(|t| t["id"].as_i64()).collect();
        assert_eq!(found, vec![imported_task], "{page}");
        let ordered = json!({"ordering": ["tasks:agreement"], "filters": {"conjunction": "and", "items": [
            {"filter": "filter:tasks:agreement", "operator": "exists", "type": "Number", "value": true}]}});
        let page = app.get(&dm(ordered), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(page["tasks"][0]["id"], json!(imported_task), "{page}");
        assert_eq!(page["total"], json!(5), "{page}");
        let one = app.get(&format!("/api/tasks/{imported_task}"), &reviewer).await.expect(StatusCode::OK);
        assert_eq!(one["agreement"], json!(0.0), "{one}");
        // Annotators who see only their own work neither see it nor filter by it.
        let mine = app.get(&format!("/api/tasks/{}", tasks[0]), &tokens[0]).await.expect(StatusCode::OK);
        assert!(mine.get("agreement").is_none(), "{mine}");
        app.get(&dm(low), &tokens[0]).await.expect_error(StatusCode::FORBIDDEN, "forbidden");

        // A reviewer's fix changes the result: the stored agreement follows (ADR 0024/0025).
        let listed = app.get(&format!("/api/tasks/{imported_task}/annotations"), &app.owner).await.expect(StatusCode::OK);
        let dissent = listed
            .as_array()
            .expect("annotations")
            .iter()
            .find(|a| a["completed_by"] == json!(ids[1]))
            .and_then(|a| a["id"].as_i64())
            .expect("b's imported annotation");
        app.post("/api/annotation-reviews", &reviewer, json!({"annotation": dissent, "accepted": true, "result": [sentiment("pos")]}))
            .await
            .expect(StatusCode::CREATED);
        let t = app.get(&total_path, &app.owner).await.expect(StatusCode::OK);
        assert!(close(&t["total_agreement"], 1.0) && t["tasks"] == json!(5), "{t}");

        // Annotators never see agreement (it compares everyone's work: blind labeling).
        for path in ["stats/total_agreement", "stats/IAA", "stats/reliability?from_name=sentiment"] {
            app.get(&format!("/api/projects/{p}/{path}"), &tokens[0]).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        }
        app.get(&format!("/api/projects/{p}/tasks/{}/agreement-matrix", tasks[0]), &tokens[0]).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        app.get(&format!("/api/projects/{p}/stats/IAA"), &reviewer).await.expect(StatusCode::OK);
        // A task of another project is not found under this one.
        let other = app.mk_project(&app.owner, json!({})).await;
        let foreign = app.mk_tasks(&app.owner, other, 1).await[0];
        app.get(&format!("/api/projects/{p}/tasks/{foreign}/agreement-matrix"), &app.owner).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    }
}

both_backends! {
    async fn annotator_statistics(app) {
        // The sentiment alone: a pair agrees 1 or 0.
        let config = r#"<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text"><Choice value="pos"/><Choice value="neg"/></Choices></View>"#;
        let p = app.mk_project(&app.owner, json!({"label_config": config, "maximum_annotations": 3})).await;
        let (a, b, c) = (
            app.user("stats-a@example.com", Role::Annotator).await,
            app.user("stats-b@example.com", Role::Annotator).await,
            app.user("stats-c@example.com", Role::Annotator).await,
        );
        let reviewer = app.user("stats-r@example.com", Role::Reviewer).await;
        for t in [&a, &b, &c] {
            app.add_member(p, t, None).await;
        }
        app.add_member(p, &reviewer, Some("reviewer")).await;
        let (ia, ib, ic, owner) = (app.user_id(&a).await, app.user_id(&b).await, app.user_id(&c).await, app.user_id(&app.owner).await);
        let tasks = app.mk_tasks(&app.owner, p, 4).await;
        let mut ann_a = Vec::new();
        for (who, labels, times) in [
            (&a, ["pos", "pos", "neg", "neg"], [10.0, 20.0, 30.0, 40.0]),
            (&b, ["pos", "neg", "neg", "pos"], [5.0, 5.0, 5.0, 100.0]),
        ] {
            for t in 0..4 {
                let made = app.post(&format!("/api/tasks/{}/annotations", tasks[t]), who,
                    json!({"result": [sentiment(labels[t])], "lead_time": times[t]}))
                    .await
                    .expect(StatusCode::CREATED);
                if std::ptr::eq(who, &a) {
                    ann_a.push(made["id"].as_i64().expect("id"));
                }
            }
        }
        // Ground truth on tasks 0 and 1 ("pos" both), by the owner; a skip by c never counts.
        for t in &tasks[..2] {
            app.post(&format!("/api/tasks/{t}/annotations"), &app.owner, json!({"result": [sentiment("pos")], "ground_truth": true}))
                .await
                .expect(StatusCode::CREATED);
        }
        app.post(&format!("/api/tasks/{}/annotations", tasks[0]), &c, json!({"result": [], "was_cancelled": true}))
            .await
            .expect(StatusCode::CREATED);

        // Agreement with the others: a agrees with b on 2 of 4 tasks and with the owner on 2 of 2.
        let one = app.get(&format!("/api/projects/{p}/stats/agreement_annotator/{ia}"), &reviewer).await.expect(StatusCode::OK);
        assert!(close(&one["Agreement_per_annotator"], 4.0 / 6.0), "{one}");
        let many = app.get(&format!("/api/projects/{p}/stats/agreement_annotators?ids={ia},{ib},{ic}"), &app.owner).await.expect(StatusCode::OK);
        assert!(close(&many["agreement"][ia.to_string()], 4.0 / 6.0), "{many}");
        assert!(close(&many["agreement"][ib.to_string()], 0.5), "{many}");
        assert_eq!(many["agreement"][ic.to_string()], Value::Null, "{many}");
        // Agreement with ground truth: a matches both, b one of two; the truth's author has none.
        let gt = app.get(&format!("/api/projects/{p}/stats/agreement-groundtruth?ids={ia},{ib},{owner}"), &app.owner).await.expect(StatusCode::OK);
        assert!(close(&gt["agreement"][ia.to_string()], 1.0) && close(&gt["agreement"][ib.to_string()], 0.5), "{gt}");
        assert_eq!(gt["agreement"][owner.to_string()], Value::Null, "{gt}");
        let gt_b = app.get(&format!("/api/projects/{p}/users/{ib}/stats/agreement-groundtruth"), &reviewer).await.expect(StatusCode::OK);
        assert!(close(&gt_b["agreement"], 0.5), "{gt_b}");
        // Finished tasks: one's own without user_pk, anyone's for reviewers and above.
        let fin = app.get(&format!("/api/projects/{p}/stats/finished"), &a).await.expect(StatusCode::OK);
        assert_eq!(fin, json!({"id": ia, "finished": 4, "progress": 100}));
        let fin = app.get(&format!("/api/projects/{p}/stats/finished?user_pk={ic}"), &reviewer).await.expect(StatusCode::OK);
        assert_eq!(fin, json!({"id": ic, "finished": 0, "progress": 0}));
        let fin = app.get(&format!("/api/projects/{p}/stats/finished?user_pk={owner}"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(fin["progress"], json!(50));
        app.get(&format!("/api/projects/{p}/stats/finished?user_pk={ib}"), &a).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        // Lead time per annotator (annotations without one, and skips, do not enter).
        let lt = app.get(&format!("/api/projects/{p}/stats/lead_time"), &reviewer).await.expect(StatusCode::OK);
        assert_eq!(lt["lead_time_stats"], json!([
            {"user_id": ia, "mean_time": 25.0, "median_time": 25.0, "sum_lead_time": 100.0},
            {"user_id": ib, "mean_time": 28.75, "median_time": 5.0, "sum_lead_time": 115.0},
        ]), "{lt}");

        // Review scores: accept, reject, and a fix that changes a's "neg" to "pos".
        app.post("/api/annotation-reviews", &reviewer, json!({"annotation": ann_a[0], "accepted": true})).await.expect(StatusCode::CREATED);
        app.post("/api/annotation-reviews", &reviewer, json!({"annotation": ann_a[1], "accepted": false})).await.expect(StatusCode::CREATED);
        app.post("/api/annotation-reviews", &reviewer, json!({"annotation": ann_a[2], "accepted": true, "result": [sentiment("pos")]}))
            .await
            .expect(StatusCode::CREATED);
        let mine = app.get(&format!("/api/projects/{p}/user-stats/{ia}/review_score"), &a).await.expect(StatusCode::OK);
        assert!(close(&mine["review_score"], 2.0 / 3.0) && close(&mine["performance_score"], 1.0 / 3.0), "{mine}");
        let all = app.get(&format!("/api/projects/{p}/user-stats/review_score?ids={ia},{ib}"), &reviewer).await.expect(StatusCode::OK);
        assert!(close(&all["review_score"][ia.to_string()], 2.0 / 3.0), "{all}");
        assert_eq!((all["review_score"][ib.to_string()].clone(), all["performance_score"][ib.to_string()].clone()), (Value::Null, Value::Null));
        app.get(&format!("/api/projects/{p}/user-stats/{ia}/review_score"), &b).await.expect_error(StatusCode::FORBIDDEN, "forbidden");

        // Bad requests: a clear 400 or 404; annotators cannot compare others.
        for path in ["stats/agreement_annotators", "stats/agreement_annotators?ids=1,x", "user-stats/review_score?ids="] {
            let e = app.get(&format!("/api/projects/{p}/{path}"), &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
            assert!(e["detail"].as_str().is_some_and(|d| d.contains("ids")), "{e}");
        }
        app.get(&format!("/api/projects/{p}/stats/agreement-groundtruth?ids={ia}&per_label=true"), &app.owner)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        app.get(&format!("/api/projects/{p}/stats/agreement_annotator/999999"), &app.owner).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        app.get(&format!("/api/projects/{p}/stats/agreement_annotator/{ia}"), &a).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        app.get(&format!("/api/projects/{p}/stats/lead_time"), &a).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
    }
}

both_backends! {
    async fn agreement_refresh_is_a_resumable_job(app) {
        use verity_controlplane::jobs::{Jobs, sql::SqlQueue};
        use verity_controlplane::storage::agreement::{RefreshStep, refresh_batch, stale_generation};
        let p = app.mk_project(&app.owner, json!({"label_config": CONFIG, "maximum_annotations": 2})).await;
        let mut tokens = Vec::new();
        for name in ["a", "b"] {
            let t = app.user(&format!("refresh-{name}@example.com"), Role::Annotator).await;
            app.add_member(p, &t, None).await;
            tokens.push(t);
        }
        let tasks = app.mk_tasks(&app.owner, p, 5).await;
        // Same choice, different rating on every task: 1/2 with both controls, 1 without stars.
        for (who, stars) in [(0, 4), (1, 2)] {
            for t in &tasks {
                let result = json!([sentiment("pos"), {"from_name": "stars", "to_name": "text", "type": "rating", "value": {"rating": stars}}]);
                app.post(&format!("/api/tasks/{t}/annotations"), &tokens[who], json!({"result": result})).await.expect(StatusCode::CREATED);
            }
        }
        let total_path = format!("/api/projects/{p}/stats/total_agreement");
        let t = app.get(&total_path, &app.owner).await.expect(StatusCode::OK);
        assert!(close(&t["total_agreement"], 0.5) && t["stale"] == json!(false), "{t}");
        // Saving settings that do not change what agreement measures leaves it current.
        let same = app.project(p).await["label_config"].clone();
        app.patch(&format!("/api/projects/{p}"), &app.owner, json!({"title": "renamed", "label_config": same})).await.expect(StatusCode::OK);
        assert_eq!(stale_generation(&app.db, p).await.expect("stale"), None);

        // A weights change marks the project stale; no worker runs yet, so nothing moves.
        app.patch(&format!("/api/projects/{p}"), &app.owner, json!({"control_weights": {"stars": {"overall": 0}, "sentiment": {"overall": 1}}})).await.expect(StatusCode::OK);
        let stale = stale_generation(&app.db, p).await.expect("stale").expect("the project is stale");
        assert_eq!(stale.tasks, 5);
        // Batches: two tasks at a time; each is committed on its own.
        let step = refresh_batch(&app.db, p, stale.generation, 0, 2).await.expect("batch");
        assert_eq!(step, RefreshStep::Batch { last: tasks[1], tasks: 2 });
        let t = app.get(&total_path, &app.owner).await.expect(StatusCode::OK);
        assert!(close(&t["total_agreement"], 0.7) && t["stale"] == json!(true), "two of five recomputed: {t}");
        // A newer change supersedes the running refresh: its next batch writes nothing.
        app.patch(&format!("/api/projects/{p}"), &app.owner, json!({"control_weights": {"stars": {"overall": 1}, "sentiment": {"overall": 1}}})).await.expect(StatusCode::OK);
        let newer = stale_generation(&app.db, p).await.expect("stale").expect("still stale");
        assert!(newer.generation > stale.generation);
        let step = refresh_batch(&app.db, p, stale.generation, tasks[1], 2).await.expect("batch");
        assert_eq!(step, RefreshStep::Superseded);
        let t = app.get(&total_path, &app.owner).await.expect(StatusCode::OK);
        assert!(close(&t["total_agreement"], 0.7), "{t}");

        // The update enqueued the newer generation's job: the sweep finds nothing missing.
        let jobs = Jobs::Sql(SqlQueue::new(app.db.clone()));
        assert_eq!(verity_controlplane::agreement::sweep(&app.db, &jobs).await.expect("sweep"), 0);
        let job_id = verity_controlplane::agreement::job_id(p, newer.generation);
        let job = app.get(&format!("/api/jobs/{job_id}"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(job["kind"], json!("agreement.refresh"), "{job}");
        // A worker runs it.
        let worker = crate::webhooks::start_worker(&app);
        let t = refreshed_total(&app, p).await;
        assert!(close(&t["total_agreement"], 0.5) && t["tasks"] == json!(5), "{t}");
        let _ = worker.send(true);

        // A change whose job was never enqueued (the queue refused it, the process died): the
        // marker stays, and the sweep enqueues the refresh, once.
        app.exec(&format!("update project set agreement_generation = agreement_generation + 1 where id = {p}")).await;
        let t = app.get(&total_path, &app.owner).await.expect(StatusCode::OK);
        assert_eq!(t["stale"], json!(true), "{t}");
        assert_eq!(verity_controlplane::agreement::sweep(&app.db, &jobs).await.expect("sweep"), 1);
        assert_eq!(verity_controlplane::agreement::sweep(&app.db, &jobs).await.expect("sweep"), 0);
        let _worker = crate::webhooks::start_worker(&app);
        let t = refreshed_total(&app, p).await;
        assert!(close(&t["total_agreement"], 0.5), "{t}");
    }
}

both_backends! {
    async fn label_distribution_and_member_tables(app) {
        let p = app.mk_project(&app.owner, json!({"label_config": CONFIG})).await;
        let mut tokens = Vec::new();
        for name in ["a", "b"] {
            let t = app.user(&format!("dash-{name}@example.com"), Role::Annotator).await;
            app.add_member(p, &t, None).await;
            tokens.push(t);
        }
        let reviewer = app.user("dash-r@example.com", Role::Reviewer).await;
        app.add_member(p, &reviewer, Some("reviewer")).await;
        let ids = [app.user_id(&tokens[0]).await, app.user_id(&tokens[1]).await];
        let tasks = app.mk_tasks(&app.owner, p, 3).await;
        let stars = json!({"from_name": "stars", "to_name": "text", "type": "rating", "value": {"rating": 4}});
        let mut made = std::collections::HashMap::new();
        let plan: [(usize, usize, Value); 6] = [
            (0, 0, json!({"result": [sentiment("pos"), stars.clone()], "lead_time": 10.0})),
            (0, 1, json!({"result": [sentiment("neg")], "lead_time": 20.0})),
            (0, 2, json!({"result": [sentiment("pos")], "lead_time": 60.0})),
            (1, 0, json!({"result": [sentiment("pos")], "lead_time": 5.0})),
            (1, 1, json!({"result": [sentiment("pos"), stars.clone()]})),
            (1, 2, json!({"result": [], "was_cancelled": true})),
        ];
        for (who, t, body) in plan {
            let a = app.post(&format!("/api/tasks/{}/annotations", tasks[t]), &tokens[who], body).await.expect(StatusCode::CREATED);
            made.insert((who, t), a["id"].as_i64().expect("id"));
        }
        app.post("/api/predictions", &app.owner, json!({"task": tasks[0], "result": [sentiment("neg")], "model_version": "m1"}))
            .await
            .expect(StatusCode::CREATED);

        // Structure: the controls, declared and seen choices, flat keys.
        let base = format!("/api/projects/{p}/stats/label-distribution");
        let s = app.get(&format!("{base}/structure"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(s["choice_keys"], json!(["sentiment___SEP___neg", "sentiment___SEP___pos", "stars___SEP___4"]), "{s}");
        assert_eq!(s["dimensions"][0]["name"], json!("sentiment"));
        assert_eq!(s["dimensions"][0]["type"], json!("choices"));
        assert_eq!(s["dimensions"][1]["choices"], json!(["4"]));
        assert_eq!(s["has_predictions"], json!(true));
        // Counts: the skip does not count; percentages of the dimension's total.
        let c = app.get(&format!("{base}/counts"), &app.owner).await.expect(StatusCode::OK);
        let row = |c: &Value, key: &str| c["results"].as_array().and_then(|r| r.iter().find(|x| x["choice_key"] == json!(key)).cloned()).unwrap_or(Value::Null);
        let pos = row(&c, "sentiment___SEP___pos");
        assert_eq!((pos["from_annotations_count"].clone(), pos["from_predictions_count"].clone()), (json!(4), json!(0)), "{c}");
        assert!(close(&pos["from_annotations_percent"], 80.0), "{c}");
        let neg = row(&c, "sentiment___SEP___neg");
        assert!(close(&neg["from_annotations_percent"], 20.0) && close(&neg["from_predictions_percent"], 100.0), "{c}");
        assert_eq!(row(&c, "stars___SEP___4")["from_annotations_count"], json!(2));
        assert_eq!(c["totals"]["annotation_totals_by_dimension"], json!({"sentiment": 5, "stars": 2}));
        assert_eq!(c["totals"]["prediction_totals_by_dimension"], json!({"sentiment": 1}));
        assert_eq!(c["next_offset"], Value::Null);
        // Pages of keys, explicit keys, and a task filter.
        let page = app.get(&format!("{base}/counts?limit=2"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!((page["results"].as_array().map(Vec::len), page["next_offset"].clone()), (Some(2), json!(2)), "{page}");
        let page = app.get(&format!("{base}/counts?limit=2&offset=2"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!((page["results"].as_array().map(Vec::len), page["next_offset"].clone()), (Some(1), Value::Null), "{page}");
        let picked = app.get(&format!("{base}/counts?choice_keys=stars___SEP___4___PIPE___sentiment___SEP___neg"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(picked["results"][0]["choice"], json!("4"), "{picked}");
        assert_eq!(picked["results"][1]["choice"], json!("neg"), "{picked}");
        let filter = json!({"conjunction": "and", "items": [{"filter": "filter:tasks:id", "operator": "equal", "type": "Number", "value": tasks[1]}]});
        let query: String = crate::common::urlencoding(&filter.to_string());
        let f = app.get(&format!("{base}/counts?filters={query}"), &app.owner).await.expect(StatusCode::OK);
        assert!(close(&row(&f, "sentiment___SEP___pos")["from_annotations_percent"], 50.0), "{f}");
        assert_eq!(row(&f, "sentiment___SEP___neg")["from_predictions_count"], json!(0), "{f}");
        for bad in ["limit=0", "offset=-1", "filters=nonsense", "choice_keys=nokey"] {
            app.get(&format!("{base}/counts?{bad}"), &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        }
        let or = crate::common::urlencoding(&json!({"conjunction": "or", "items": [{"filter": "filter:tasks:id", "operator": "equal", "type": "Number", "value": 1}]}).to_string());
        app.get(&format!("{base}/counts?filters={or}"), &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        // Annotators do not read the dashboards.
        app.get(&format!("{base}/structure"), &tokens[0]).await.expect_error(StatusCode::FORBIDDEN, "forbidden");

        // Reviews: a's first annotation accepted, b's second rejected.
        for (key, accepted) in [((0, 0), true), ((1, 1), false)] {
            app.post("/api/annotation-reviews", &reviewer, json!({"annotation": made[&key], "accepted": accepted, "comment": "checked"}))
                .await
                .expect(StatusCode::CREATED);
        }
        let stats = format!("/api/projects/{p}/stats");
        let rows = app.get(&format!("{stats}/member_performance_rows?ordering=-finished"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(rows["count"], json!(2), "{rows}");
        let (a, b) = (&rows["results"][0], &rows["results"][1]);
        assert_eq!(a["member"]["id"], json!(ids[0]), "{rows}");
        assert_eq!((a["finished"].clone(), a["skipped"].clone(), a["accepted"].clone(), a["rejected"].clone()), (json!(3), json!(0), json!(1), json!(0)), "{rows}");
        assert_eq!((b["finished"].clone(), b["skipped"].clone(), b["rejected"].clone()), (json!(2), json!(1), json!(1)), "{rows}");
        assert!(close(&a["time_median"], 20.0) && close(&a["time_total"], 90.0), "{rows}");
        assert!(close(&a["review_score"], 1.0) && close(&b["review_score"], 0.0), "{rows}");
        // Shared tasks 0 and 1 (b skipped 2): 1/2 on task 0 (same choice, stars only in a's),
        // 0 on task 1.
        assert!(close(&a["agreement"], 0.25) && close(&b["agreement"], 0.25), "{rows}");
        assert!(close(&a["progress"], 100.0), "{rows}");
        let asc = app.get(&format!("{stats}/member_performance_rows?ordering=skipped&page_size=1&page=2"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(asc["results"][0]["member"]["id"], json!(ids[1]), "{asc}");
        assert_eq!(asc["results"].as_array().map(Vec::len), Some(1));
        let summary = app.get(&format!("{stats}/member_performance_summary"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(summary["summary"]["finished"], json!(5), "{summary}");
        assert_eq!(summary["summary"]["skipped"], json!(1), "{summary}");
        assert_eq!(summary["summary"]["members"], json!(2), "{summary}");
        let reviews = app.get(&format!("{stats}/member_performance_rows?table=reviews"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(reviews["results"][0]["reviewed"], json!(2), "{reviews}");
        assert_eq!((reviews["results"][0]["accepted"].clone(), reviews["results"][0]["rejected"].clone()), (json!(1), json!(1)));
        let people = app.get(&format!("{stats}/member_performance_participants?table=reviews"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(people.as_array().map(Vec::len), Some(1), "{people}");
        assert_eq!(people[0]["email"], json!("dash-r@example.com"));
        let only_b = app.get(&format!("{stats}/member_performance_rows?ids={}", ids[1]), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(only_b["count"], json!(1), "{only_b}");
        for bad in ["table=nope", "ordering=member.email", "page_size=101", "page=0", "ids=x"] {
            app.get(&format!("{stats}/member_performance_rows?{bad}"), &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        }
    }
}
