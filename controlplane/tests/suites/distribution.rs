//! Distribution rules of Label Studio Enterprise around the label stream (ADR 0037): the
//! per-annotator annotation limit, ground-truth onboarding and annotator evaluation with
//! automatic pauses, and the low-agreement strategy. Each through the API, on both engines.

use http::StatusCode;
use serde_json::{Value, json};
use verity_controlplane::authz::Role;

use crate::both_backends;
use crate::common::{TestApp, choice};

async fn annotator(app: &TestApp, p: i64, email: &str) -> String {
    let token = app.user(email, Role::Annotator).await;
    app.add_member(p, &token, None).await;
    token
}

/// The next task of the stream for `token`, submitted with `label`; answers the task and queue.
async fn take(app: &TestApp, p: i64, token: &str, label: &str) -> (i64, String) {
    let next = app
        .get(&format!("/api/projects/{p}/next"), token)
        .await
        .expect(StatusCode::OK);
    let task = next["id"].as_i64().expect("id");
    app.post(
        &format!("/api/tasks/{task}/annotations"),
        token,
        json!({"result": choice(label)}),
    )
    .await
    .expect(StatusCode::CREATED);
    (task, next["queue"].as_str().unwrap_or_default().to_string())
}

async fn pauses(app: &TestApp, p: i64, token: &str) -> Value {
    let user = app.user_id(token).await;
    app.get(
        &format!("/api/projects/{p}/members/{user}/pauses"),
        &app.owner,
    )
    .await
    .expect(StatusCode::OK)
}

both_backends! {
    async fn the_annotation_limit_pauses_and_new_settings_lift_it(app) {
        let p = app.mk_project(&app.owner, json!({"annotation_limit_count": 2})).await;
        app.mk_tasks(&app.owner, p, 10).await;
        let a = annotator(&app, p, "limit-a@example.com").await;
        take(&app, p, &a, "pos").await;
        take(&app, p, &a, "pos").await;
        let e = app.get(&format!("/api/projects/{p}/next"), &a).await.expect_error(StatusCode::FORBIDDEN, "paused");
        assert!(e["detail"].as_str().is_some_and(|d| d.contains("limit of 2")), "{e}");
        let listed = pauses(&app, p, &a).await;
        assert_eq!(listed[0]["reason"], json!("ANNOTATION_LIMIT"), "{listed}");
        assert_eq!(listed.as_array().map(Vec::len), Some(1));
        // Asking again does not pile up pauses; submitting is refused too.
        app.get(&format!("/api/projects/{p}/next"), &a).await.expect_error(StatusCode::FORBIDDEN, "paused");
        assert_eq!(pauses(&app, p, &a).await.as_array().map(Vec::len), Some(1));
        // Managers and above are not limited.
        for _ in 0..3 {
            take(&app, p, &app.owner, "neg").await;
        }
        // A higher limit lifts the pause; the percentage (of 10 tasks) applies when smaller.
        app.patch(&format!("/api/projects/{p}"), &app.owner, json!({"annotation_limit_count": 5})).await.expect(StatusCode::OK);
        take(&app, p, &a, "pos").await;
        let shown = app.patch(&format!("/api/projects/{p}"), &app.owner, json!({"annotation_limit_percent": 30})).await.expect(StatusCode::OK);
        assert_eq!(shown["annotation_limit_percent"], json!("30.00"), "{shown}");
        app.get(&format!("/api/projects/{p}/next"), &a).await.expect_error(StatusCode::FORBIDDEN, "paused");
        // Bad values: 400 naming the field, nothing changed.
        for bad in [json!({"annotation_limit_percent": 150}), json!({"annotation_limit_percent": "lots"}), json!({"annotation_limit_count": 0})] {
            let e = app.patch(&format!("/api/projects/{p}"), &app.owner, bad.clone()).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
            assert!(e["validation_errors"].as_object().is_some_and(|m| m.keys().any(|k| k.starts_with("annotation_limit"))), "{bad}: {e}");
        }
        assert_eq!(app.project(p).await["annotation_limit_percent"], json!("30.00"));
    }

    async fn ground_truth_onboarding_and_evaluation(app) {
        let p = app.mk_project(&app.owner, json!({
            "annotator_evaluation_enabled": true,
            "annotator_evaluation_onboarding_tasks": 2,
            "annotator_evaluation_minimum_tasks": 2,
            "annotator_evaluation_minimum_score": "80",
            "pause_on_failed_annotator_evaluation": true,
        })).await;
        let tasks = app.mk_tasks(&app.owner, p, 6).await;
        for t in &tasks[4..] {
            app.post(&format!("/api/tasks/{t}/annotations"), &app.owner, json!({"result": choice("pos"), "ground_truth": true}))
                .await
                .expect(StatusCode::CREATED);
        }
        // A careless annotator: onboarding hands out the ground-truth tasks first, then the
        // failing score pauses them with a message.
        let careless = annotator(&app, p, "gt-careless@example.com").await;
        let (t1, q1) = take(&app, p, &careless, "neg").await;
        let (t2, q2) = take(&app, p, &careless, "neg").await;
        assert_eq!((t1, t2), (tasks[4], tasks[5]));
        assert_eq!((q1.as_str(), q2.as_str()), ("Ground truth queue", "Ground truth queue"));
        let e = app.get(&format!("/api/projects/{p}/next"), &careless).await.expect_error(StatusCode::FORBIDDEN, "paused");
        assert!(e["detail"].as_str().is_some_and(|d| d.contains("0.0%") && d.contains("80.0%")), "{e}");
        assert_eq!(pauses(&app, p, &careless).await[0]["reason"], json!("ANNOTATOR_EVALUATION"));
        // A careful one passes onboarding and goes on to the regular stream.
        let careful = annotator(&app, p, "gt-careful@example.com").await;
        take(&app, p, &careful, "pos").await;
        take(&app, p, &careful, "pos").await;
        let (t, q) = take(&app, p, &careful, "pos").await;
        assert_eq!((t, q.as_str()), (tasks[0], "Sequence queue"));
        // A lower pass mark lifts the pause.
        app.patch(&format!("/api/projects/{p}"), &app.owner, json!({"annotator_evaluation_minimum_score": "0"})).await.expect(StatusCode::OK);
        let next = app.get(&format!("/api/projects/{p}/next"), &careless).await.expect(StatusCode::OK);
        assert!(next["id"].as_i64().is_some_and(|id| id < tasks[4]), "{next}");
    }

    async fn low_agreement_tasks_get_additional_annotators(app) {
        let p = app.mk_project(&app.owner, json!({
            "maximum_annotations": 2,
            "agreement_threshold": "60",
            "max_additional_annotators_assignable": 1,
        })).await;
        let tasks = app.mk_tasks(&app.owner, p, 2).await;
        let people = [
            annotator(&app, p, "low-a@example.com").await,
            annotator(&app, p, "low-b@example.com").await,
            annotator(&app, p, "low-c@example.com").await,
            annotator(&app, p, "low-d@example.com").await,
        ];
        // a and b: they disagree on the first task and agree on the second.
        for (who, first) in [(0, "pos"), (1, "neg")] {
            for (t, label) in [(tasks[0], first), (tasks[1], "pos")] {
                app.post(&format!("/api/tasks/{t}/annotations"), &people[who], json!({"result": choice(label)}))
                    .await
                    .expect(StatusCode::CREATED);
            }
        }
        assert_eq!(app.get(&format!("/api/tasks/{}", tasks[0]), &app.owner).await.expect(StatusCode::OK)["is_labeled"], json!(true));
        // c gets the disagreed task as one extra annotator.
        let (t, q) = take(&app, p, &people[2], "pos").await;
        assert_eq!((t, q.as_str()), (tasks[0], "Low agreement queue"));
        // Its agreement is still below 60% (1 of 3 pairs agree), but the extra is used up.
        app.get(&format!("/api/projects/{p}/next"), &people[3]).await.expect_error(StatusCode::NOT_FOUND, "no_more_tasks");
        // Without the strategy nothing is handed out again.
        app.patch(&format!("/api/projects/{p}"), &app.owner, json!({"agreement_threshold": null, "max_additional_annotators_assignable": 3})).await.expect(StatusCode::OK);
        app.get(&format!("/api/projects/{p}/next"), &people[3]).await.expect_error(StatusCode::NOT_FOUND, "no_more_tasks");
        // The same settings through Label Studio Enterprise's metricparam.
        let mp = format!("/api/projects/{p}/metricparam");
        let got = app.post(&mp, &app.owner, json!({"agreement_threshold": 60, "max_additional_annotators_assignable": 2, "metric_name": "per_control_default", "additional_params": {}}))
            .await
            .expect(StatusCode::OK);
        assert_eq!((got["agreement_threshold"].clone(), got["max_additional_annotators_assignable"].clone()), (json!(60.0), json!(2)), "{got}");
        assert_eq!(app.project(p).await["agreement_threshold"], json!("60.00"));
        let seen = app.get(&mp, &people[0]).await.expect(StatusCode::OK);
        assert_eq!((seen["allowed"].clone(), seen["metric_name"].clone()), (json!(false), json!("per_control_default")), "{seen}");
        for bad in [json!({"metric_name": "iou"}), json!({"additional_params": {"x": 1}}), json!({"threshold": 3}), json!({"agreement_threshold": 101})] {
            app.post(&mp, &app.owner, bad).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        }
        app.post(&mp, &people[0], json!({"agreement_threshold": 10})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        let (t, q) = take(&app, p, &people[3], "pos").await;
        assert_eq!((t, q.as_str()), (tasks[0], "Low agreement queue"));
    }

    async fn continuous_evaluation_mixes_ground_truth_into_the_stream(app) {
        // One onboarding task, then every third task is ground truth (ADR 0057).
        let p = app.mk_project(&app.owner, json!({
            "annotator_evaluation_enabled": true,
            "annotator_evaluation_onboarding_tasks": 1,
            "annotator_evaluation_continuous_tasks": 3,
        })).await;
        let tasks = app.mk_tasks(&app.owner, p, 10).await;
        for t in &tasks[7..] {
            app.post(&format!("/api/tasks/{t}/annotations"), &app.owner, json!({"result": choice("pos"), "ground_truth": true}))
                .await
                .expect(StatusCode::CREATED);
        }
        let a = annotator(&app, p, "cont-a@example.com").await;
        // Everything the stream hands out, until it runs dry (bounded).
        let mut got = Vec::new();
        for _ in 0..12 {
            let next = app.get(&format!("/api/projects/{p}/next"), &a).await;
            if next.status == StatusCode::NOT_FOUND {
                next.expect_error(StatusCode::NOT_FOUND, "no_more_tasks");
                break;
            }
            let next = next.expect(StatusCode::OK);
            let task = next["id"].as_i64().expect("id");
            app.post(&format!("/api/tasks/{task}/annotations"), &a, json!({"result": choice("pos")}))
                .await
                .expect(StatusCode::CREATED);
            got.push((task, next["queue"].as_str().unwrap_or_default().to_string()));
        }
        let (gt, ce, sq) = ("Ground truth queue", "Continuous evaluation queue", "Sequence queue");
        let want: Vec<(i64, String)> = [
            (tasks[7], gt),
            (tasks[0], sq), (tasks[1], sq), (tasks[8], ce),
            (tasks[2], sq), (tasks[3], sq), (tasks[9], ce),
            (tasks[4], sq), (tasks[5], sq),
            // Due again, but no ground truth is left: the regular stream goes on.
            (tasks[6], sq),
        ].into_iter().map(|(t, q)| (t, q.to_string())).collect();
        assert_eq!(got, want);
        // After onboarding, overlap applies to ground-truth tasks: a second annotator gets the
        // onboarding task only (the others are done), and nothing after it.
        let b = annotator(&app, p, "cont-b@example.com").await;
        assert_eq!(take(&app, p, &b, "pos").await, (tasks[7], gt.to_string()));
        app.get(&format!("/api/projects/{p}/next"), &b).await.expect_error(StatusCode::NOT_FOUND, "no_more_tasks");
        // Bad values: 400 naming the field, nothing changed.
        for bad in [json!({"annotator_evaluation_continuous_tasks": -1}), json!({"annotator_evaluation_continuous_tasks": 10_001}),
                    json!({"annotator_evaluation_metric": "accuracy"}), json!({"annotator_evaluation_metric": 2})] {
            let e = app.patch(&format!("/api/projects/{p}"), &app.owner, bad.clone()).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
            assert!(e.to_string().contains("annotator_evaluation_"), "{bad}: {e}");
        }
        let shown = app.project(p).await;
        assert_eq!((shown["annotator_evaluation_continuous_tasks"].clone(), shown["annotator_evaluation_metric"].clone()),
            (json!(3), json!("gt_agreement")), "{shown}");
    }

    async fn review_metrics_decide_the_evaluation_pause(app) {
        let p = app.mk_project(&app.owner, json!({
            "annotator_evaluation_enabled": true,
            "annotator_evaluation_metric": "acceptance_score",
            "annotator_evaluation_minimum_tasks": 2,
            "annotator_evaluation_minimum_score": "60",
            "pause_on_failed_annotator_evaluation": true,
        })).await;
        app.mk_tasks(&app.owner, p, 6).await;
        let a = annotator(&app, p, "rm-a@example.com").await;
        let a_id = app.user_id(&a).await;
        let mut anns = Vec::new();
        for _ in 0..3 {
            let (task, _) = take(&app, p, &a, "pos").await;
            let listed = app.get(&format!("/api/tasks/{task}/annotations"), &app.owner).await.expect(StatusCode::OK);
            anns.push(listed[0]["id"].as_i64().expect("annotation id"));
        }
        let review = |ann: i64, accepted: bool| {
            let app = &app;
            async move {
                app.post("/api/annotation-reviews", &app.owner, json!({"annotation": ann, "accepted": accepted}))
                    .await
                    .expect(StatusCode::CREATED);
            }
        };
        // One review is fewer than the minimum: no pause.
        review(anns[0], true).await;
        app.get(&format!("/api/projects/{p}/next"), &a).await.expect(StatusCode::OK);
        // Accepted 1 of 2 reviewed annotations: 50% < 60%.
        review(anns[1], false).await;
        let e = app.get(&format!("/api/projects/{p}/next"), &a).await.expect_error(StatusCode::FORBIDDEN, "paused");
        assert!(e["detail"].as_str().is_some_and(|d| d.contains("accepted 50.0%") && d.contains("60.0%")), "{e}");
        assert_eq!(pauses(&app, p, &a).await[0]["reason"], json!("ANNOTATOR_EVALUATION"));
        // The members dashboard shows the score the pause was decided on.
        let rows = app.get(&format!("/api/projects/{p}/stats/member_performance_rows"), &app.owner).await.expect(StatusCode::OK);
        let row = rows["results"].as_array().and_then(|r| r.iter().find(|r| r["member"]["id"] == json!(a_id))).cloned().expect("a's row");
        assert_eq!((row["evaluation_score"].clone(), row["evaluation_tasks"].clone()), (json!(0.5), json!(2)), "{row}");
        // The reviewer accepts the second on a second look: the acceptance score counts the
        // latest review, the rejection rate every rejection.
        review(anns[1], true).await;
        app.patch(&format!("/api/projects/{p}"), &app.owner, json!({"annotator_evaluation_metric": "rejection_rate"})).await.expect(StatusCode::OK);
        let e = app.get(&format!("/api/projects/{p}/next"), &a).await.expect_error(StatusCode::FORBIDDEN, "paused");
        assert!(e["detail"].as_str().is_some_and(|d| d.contains("rejected 50.0%")), "{e}");
        app.patch(&format!("/api/projects/{p}"), &app.owner, json!({"annotator_evaluation_metric": "acceptance_score"})).await.expect(StatusCode::OK);
        app.get(&format!("/api/projects/{p}/next"), &a).await.expect(StatusCode::OK);
        let rows = app.get(&format!("/api/projects/{p}/stats/member_performance_rows"), &app.owner).await.expect(StatusCode::OK);
        let row = rows["results"].as_array().and_then(|r| r.iter().find(|r| r["member"]["id"] == json!(a_id))).cloned().expect("a's row");
        assert_eq!(row["evaluation_score"], json!(1.0), "{row}");
        // Ground-truth agreement (the default) has no ground truth here to pause on.
        app.patch(&format!("/api/projects/{p}"), &app.owner, json!({"annotator_evaluation_metric": "gt_agreement"})).await.expect(StatusCode::OK);
        review(anns[2], false).await;
        app.get(&format!("/api/projects/{p}/next"), &a).await.expect(StatusCode::OK);
    }
}
