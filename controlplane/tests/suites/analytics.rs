//! The KPI API (ADR 0060), `GET /api/analytics/kpis/` and `/api/analytics/kpis/{key}`, on both
//! backends: values per time interval in the caller's time zone, per person and per project;
//! what each role sees; and refusals of bad queries.

use http::StatusCode;
use serde_json::{Value, json};
use verity_controlplane::authz::Role;

use crate::{
    both_backends,
    common::{TestApp, choice, urlencoding},
    review::{id, team},
};

/// Microseconds since 1970 of an RFC 3339 instant.
fn micros(at: &str) -> i64 {
    at.parse::<jiff::Timestamp>()
        .expect("instant")
        .as_microsecond()
}

async fn annotate(app: &TestApp, token: &str, task: i64, body: Value, at: &str) -> i64 {
    let made = app
        .post(&format!("/api/tasks/{task}/annotations"), token, body)
        .await
        .expect(StatusCode::CREATED);
    let a = id(&made);
    app.sql(&format!(
        "update annotation set created_at = {} where id = {a}",
        micros(at)
    ))
    .await
    .expect("date the annotation");
    a
}

async fn kpi(app: &TestApp, token: &str, key: &str, query: &str) -> Value {
    app.get(&format!("/api/analytics/kpis/{key}?{query}"), token)
        .await
        .expect(StatusCode::OK)
}

const NY: &str = "tz=America%2FNew_York";

both_backends! {
    async fn kpis_count_events_per_interval_person_and_project_in_the_callers_zone(app) {
        let t = team(&app, "kpi", json!({"title": "Alpha"}), 4).await;
        let b = app.mk_project(&app.owner, json!({"title": "Bravo"})).await;
        let b_tasks = app.mk_tasks(&app.owner, b, 1).await;
        app.add_member(b, &t.ann1, None).await;
        let (ann1, ann2) = (app.user_id(&t.ann1).await, app.user_id(&t.ann2).await);
        // 2026-03-08 is the day New York moves its clocks forward: 23 hours long.
        // 23:30 on the 7th in New York is the 8th in UTC.
        let a1 = annotate(&app, &t.ann1, t.tasks[0], json!({"result": choice("pos"), "lead_time": 10.0}), "2026-03-08T04:30:00Z").await;
        let a2 = annotate(&app, &t.ann1, t.tasks[1], json!({"result": choice("neg"), "lead_time": 20.0}), "2026-03-08T16:00:00Z").await;
        let a3 = annotate(&app, &t.ann2, t.tasks[0], json!({"result": choice("neg"), "lead_time": 30.0}), "2026-03-09T04:10:00Z").await;
        annotate(&app, &t.ann2, t.tasks[2], json!({"result": [], "was_cancelled": true, "lead_time": 4.0}), "2026-03-08T06:00:00Z").await;
        annotate(&app, &t.ann1, b_tasks[0], json!({"result": choice("pos"), "lead_time": 5.0}), "2026-03-06T12:00:00Z").await;
        let range = format!("{NY}&start=2026-03-07&end=2026-03-09");

        // Totals: the range keeps the three submissions of 7–9 March in New York.
        let all = kpi(&app, &app.owner, "annotations_submitted", NY).await;
        assert_eq!((all["segmentation"].clone(), all["total"].clone()), (json!("none"), json!({"unit": "count", "value": 4.0})), "{all}");
        let ranged = kpi(&app, &app.owner, "annotations_submitted", &range).await;
        assert_eq!(ranged["total"]["value"], json!(3.0), "{ranged}");
        assert_eq!(kpi(&app, &app.owner, "annotations_skipped", &range).await["total"]["value"], json!(1.0));
        // Lead times: 10 + 20 + 30 submitted and 4 skipped; the mean is of submissions only.
        assert_eq!(kpi(&app, &app.owner, "time_annotating", &range).await["total"]["value"], json!(64.0));
        assert_eq!(kpi(&app, &app.owner, "average_annotation_time", &range).await["total"]["value"], json!(20.0));

        // Per day of New York's calendar, the offsets as they were.
        let days = kpi(&app, &app.owner, "annotations_submitted", &format!("{range}&segment_by_time=daily")).await;
        assert_eq!(days["segmentation"], json!("time"));
        assert_eq!(days["time_series"], json!({
            "interval_start": ["2026-03-07T00:00:00-05:00", "2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00"],
            "values": [1.0, 1.0, 1.0],
        }), "{days}");
        // The same events in UTC fall on other days.
        let utc = kpi(&app, &app.owner, "annotations_submitted", "tz=UTC&start=2026-03-07&end=2026-03-09&segment_by_time=daily").await;
        assert_eq!(utc["time_series"]["values"], json!([0.0, 2.0, 1.0]), "{utc}");
        // Person × day.
        let m = kpi(&app, &app.owner, "annotations_submitted", &format!("{range}&segment_by_time=daily&segment_by_user=true")).await;
        assert_eq!(m["segmentation"], json!("matrix"));
        let users: Vec<i64> = m["matrix"]["users"].as_array().expect("value").iter().map(|u| u["user_id"].as_i64().expect("value")).collect();
        assert_eq!(users, vec![ann1.min(ann2), ann1.max(ann2)]);
        let row = |u: i64| m["matrix"]["values"][users.iter().position(|x| *x == u).expect("value")].clone();
        assert_eq!((row(ann1), row(ann2)), (json!([1.0, 1.0, 0.0]), json!([0.0, 0.0, 1.0])), "{m}");
        assert!(m["matrix"]["users"][0]["user_email"].as_str().expect("value").ends_with("-kpi@example.com"));
        // Per project, all time; a project filter narrows.
        let per = kpi(&app, &app.owner, "annotations_submitted", &format!("{NY}&segment_by_project=true")).await;
        let projects: Vec<(i64, String)> = per["by_project"]["projects"].as_array().expect("value").iter()
            .map(|p| (p["project_id"].as_i64().expect("value"), p["project_name"].as_str().expect("value").to_string())).collect();
        assert_eq!(projects, vec![(t.p, "Alpha".to_string()), (b, "Bravo".to_string())]);
        assert_eq!(per["by_project"]["values"], json!([3.0, 1.0]));
        let only_b = kpi(&app, &app.owner, "annotations_submitted", &format!("{NY}&projects={b}")).await;
        assert_eq!(only_b["total"]["value"], json!(1.0));
        // Months × projects.
        let pm = kpi(&app, &app.owner, "annotations_submitted", &format!("{NY}&segment_by_project=true&segment_by_time=monthly&start=2026-03-01&end=2026-04-30")).await;
        assert_eq!(pm["project_matrix"]["interval_start"], json!(["2026-03-01T00:00:00-05:00", "2026-04-01T00:00:00-04:00"]), "{pm}");
        assert_eq!(pm["project_matrix"]["values"], json!([[3.0, 0.0], [1.0, 0.0]]));

        // Reviews: accept, reject, fix and accept.
        app.post("/api/annotation-reviews", &t.rev1, json!({"annotation": a1, "accepted": true})).await.expect(StatusCode::CREATED);
        app.post("/api/annotation-reviews", &t.rev1, json!({"annotation": a3, "accepted": false})).await.expect(StatusCode::CREATED);
        app.post("/api/annotation-reviews", &t.rev2, json!({"annotation": a2, "accepted": true, "result": choice("pos")})).await.expect(StatusCode::CREATED);
        let total = |v: Value| v["total"]["value"].clone();
        assert_eq!(total(kpi(&app, &app.owner, "reviews_total", "tz=UTC").await), json!(3.0));
        assert_eq!(total(kpi(&app, &app.owner, "reviews_accepted", "tz=UTC").await), json!(2.0));
        assert_eq!(total(kpi(&app, &app.owner, "reviews_fixed_accepted", "tz=UTC").await), json!(1.0));
        assert_eq!(total(kpi(&app, &app.owner, "reviews_rejected", "tz=UTC").await), json!(1.0));
        let rate = total(kpi(&app, &app.owner, "review_accept_rate", "tz=UTC").await).as_f64().expect("value");
        assert!((rate - 2.0 / 3.0).abs() < 1e-12, "{rate}");
        // Two tasks were reviewed, each counted once, for its first reviewer.
        let reviewed = kpi(&app, &app.owner, "tasks_reviewed", "tz=UTC&segment_by_user=true").await;
        let rev1 = app.user_id(&t.rev1).await;
        let rev2 = app.user_id(&t.rev2).await;
        let who: Vec<i64> = reviewed["by_user"]["users"].as_array().expect("value").iter().map(|u| u["user_id"].as_i64().expect("value")).collect();
        assert_eq!(who, vec![rev1.min(rev2), rev1.max(rev2)], "{reviewed}");
        assert_eq!(reviewed["by_user"]["values"], json!([1.0, 1.0]));
        // Reviews by rev1 only: a ratio per person.
        let by_rev = kpi(&app, &app.owner, "review_accept_rate", &format!("tz=UTC&segment_by_user=true&members={rev1},{rev2}")).await;
        assert_eq!(by_rev["by_user"]["values"], json!([0.5, 1.0]), "{by_rev}");
        // all=true: people with events, most first, and how many.
        let top = kpi(&app, &app.owner, "annotations_submitted", &format!("{NY}&segment_by_user=true&all=true")).await;
        assert_eq!(top["by_user"]["total"], json!(2));
        assert_eq!(top["by_user"]["users"][0]["user_id"], json!(ann1), "{top}");
        assert_eq!(top["by_user"]["values"], json!([3.0, 1.0]));
        // Tasks made in the projects: 4 + 1, all of them now.
        assert_eq!(total(kpi(&app, &app.owner, "tasks_created", "tz=UTC").await), json!(5.0));
    }

    async fn annotators_see_their_own_events_and_nobody_sees_beyond_their_projects(app) {
        let t = team(&app, "reach", json!({"title": "Alpha"}), 3).await;
        let ann1 = app.user_id(&t.ann1).await;
        annotate(&app, &t.ann1, t.tasks[0], json!({"result": choice("pos")}), "2026-05-01T10:00:00Z").await;
        annotate(&app, &t.ann2, t.tasks[0], json!({"result": choice("pos")}), "2026-05-01T11:00:00Z").await;
        annotate(&app, &t.ann2, t.tasks[1], json!({"result": choice("neg")}), "2026-05-01T12:00:00Z").await;
        // An annotator counts only their own, however they segment.
        assert_eq!(kpi(&app, &t.ann1, "annotations_submitted", "tz=UTC").await["total"]["value"], json!(1.0));
        let mine = kpi(&app, &t.ann1, "annotations_submitted", "tz=UTC&segment_by_user=true").await;
        assert_eq!(mine["by_user"]["users"].as_array().expect("value").len(), 1, "{mine}");
        assert_eq!(mine["by_user"]["users"][0]["user_id"], json!(ann1));
        let asked = kpi(&app, &t.ann1, "annotations_submitted", &format!("tz=UTC&members={}", app.user_id(&t.ann2).await)).await;
        assert_eq!(asked["total"]["value"], json!(0.0), "{asked}");
        // A manager sees the projects of their workspaces, or none: a project out of reach is
        // not found, as is another organization's.
        let manager = app.user("kpi-manager@example.com", Role::Manager).await;
        assert_eq!(kpi(&app, &manager, "annotations_submitted", "tz=UTC").await["total"]["value"], json!(0.0));
        app.get(&format!("/api/analytics/kpis/annotations_submitted?tz=UTC&projects={}", t.p), &manager)
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
        let ws = id(&app.post("/api/workspaces", &app.owner, json!({"title": "Labeling"})).await.expect(StatusCode::CREATED));
        app.patch(&format!("/api/projects/{}", t.p), &app.owner, json!({"workspace": ws})).await.expect(StatusCode::OK);
        let manager_id = app.user_id(&manager).await;
        app.post(&format!("/api/workspaces/{ws}/memberships"), &app.owner, json!({"user": manager_id}))
            .await
            .expect(StatusCode::CREATED);
        assert_eq!(kpi(&app, &manager, "annotations_submitted", &format!("tz=UTC&projects={}", t.p)).await["total"]["value"], json!(3.0));
        let (_, stranger) = app.other_org("Elsewhere", "kpi-stranger@example.com").await;
        assert_eq!(kpi(&app, &stranger, "annotations_submitted", "tz=UTC").await["total"]["value"], json!(0.0));
        app.get(&format!("/api/analytics/kpis/annotations_submitted?tz=UTC&projects={}", t.p), &stranger)
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
        app.get("/api/analytics/kpis", "not-a-token").await.expect(StatusCode::UNAUTHORIZED);
    }

    async fn the_catalogue_lists_the_kpis_and_bad_queries_are_refused(app) {
        let list = app.get("/api/analytics/kpis", &app.owner).await.expect(StatusCode::OK);
        let keys: Vec<&str> = list.as_array().expect("value").iter().map(|k| k["key"].as_str().expect("value")).collect();
        for key in ["annotations_submitted", "annotations_skipped", "time_annotating", "reviews_total", "tasks_reviewed", "review_accept_rate", "tasks_created"] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
        let rate = list.as_array().expect("value").iter().find(|k| k["key"] == "review_accept_rate").expect("value");
        assert_eq!((rate["is_calculated"].clone(), rate["unit"].clone(), rate["depends_on_kpis"].clone()),
            (json!(true), json!("ratio"), json!(["reviews_accepted", "reviews_total"])), "{rate}");
        let too_many = (1..=51).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        for (query, field) in [
            ("start=2026-01-01".to_string(), "tz"),
            ("tz=Mars%2FOlympus".to_string(), "tz"),
            ("tz=UTC&start=yesterday".to_string(), "start"),
            ("tz=UTC&start=2026-02-01&end=2026-01-01".to_string(), "end"),
            ("tz=UTC&segment_by_time=minutely".to_string(), "segment_by_time"),
            ("tz=UTC&segment_by_time=hourly&start=2020-01-01&end=2026-01-01".to_string(), "segment_by_time"),
            ("tz=UTC&segment_by_user=true&segment_by_project=true".to_string(), "segment_by_project"),
            ("tz=UTC&segment_by_user=maybe".to_string(), "segment_by_user"),
            ("tz=UTC&projects=1,x".to_string(), "projects"),
            (format!("tz=UTC&projects={}", urlencoding(&too_many)), "projects"),
            ("tz=UTC&members=me".to_string(), "members"),
        ] {
            let body = app.get(&format!("/api/analytics/kpis/annotations_submitted?{query}"), &app.owner)
                .await
                .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
            assert!(body["validation_errors"][field].is_array(), "{query}: {body}");
        }
        app.get("/api/analytics/kpis/tasks_created?tz=UTC&segment_by_user=true", &app.owner)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        app.get("/api/analytics/kpis/happiness?tz=UTC", &app.owner)
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
    }
}

both_backends! {
    async fn the_analytics_page_shows_each_person_what_the_api_shows_them(app) {
        use crate::ui::{Browser, PASSWORD, password_user};
        let manager = password_user(&app, "an-manager@example.com", Role::Manager).await;
        let annotator = password_user(&app, "an-annotator@example.com", Role::Annotator).await;
        let other = app.user("an-other@example.com", Role::Annotator).await;
        let p = app.mk_project(&manager, json!({"title": "Charted"})).await;
        app.add_member(p, &annotator, None).await;
        app.add_member(p, &other, None).await;
        let tasks = app.mk_tasks(&manager, p, 3).await;
        // Two days in Tokyo: the 1st (one submission, one skip) and the 3rd (another's).
        annotate(&app, &annotator, tasks[0], json!({"result": choice("pos"), "lead_time": 90.0}), "2026-06-01T01:00:00Z").await;
        annotate(&app, &annotator, tasks[1], json!({"result": [], "was_cancelled": true}), "2026-06-01T02:00:00Z").await;
        let theirs = annotate(&app, &other, tasks[2], json!({"result": choice("neg")}), "2026-06-03T05:00:00Z").await;
        app.post("/api/annotation-reviews", &manager, json!({"annotation": theirs, "accepted": false})).await.expect(StatusCode::CREATED);
        app.sql(&format!("update annotation_review set created_at = {} where annotation_id = {theirs}", micros("2026-06-03T06:00:00Z"))).await.expect("date the review");
        let page = "/analytics?start=2026-06-01&end=2026-06-03&tz=Asia%2FTokyo";

        let mut m = Browser::default();
        m.sign_in(&app, "an-manager@example.com", PASSWORD).await;
        let html = m.get(&app, page).await;
        assert_eq!(html.status, StatusCode::OK, "{}", html.text);
        let section = |id: &str| html.text.split(&format!("id=\"{id}\"")).nth(1).and_then(|s| s.split("</table>").next()).expect(id).to_string();
        // Three day columns; the table lists the two days with work.
        let chart = html.text.split("id=\"analytics-days\"").nth(1).and_then(|s| s.split("</svg>").next()).expect("chart");
        assert_eq!(chart.matches("<rect class=\"track\"").count(), 3, "{chart}");
        let days = section("analytics-days-table");
        assert!(days.contains("<th scope=\"row\">2026-06-01</th><td>1</td><td>1</td>"), "{days}");
        assert!(days.contains("<th scope=\"row\">2026-06-03</th><td>1</td><td>0</td>"), "{days}");
        let people = section("analytics-annotators");
        assert!(people.contains("an-annotator@example.com)</th><td>1</td><td>1</td><td>1 min 30 s</td><td>90.0 s</td>"), "{people}");
        assert!(people.contains("an-other@example.com"), "{people}");
        let reviewers = section("analytics-reviewers");
        assert!(reviewers.contains("an-manager@example.com)</th><td>1</td><td>0</td><td>0</td><td>1</td><td>0 %</td>"), "{reviewers}");
        // The project filter narrows to one project; its choices are the projects in reach.
        assert!(html.text.contains(&format!("<option value=\"{p}\">Charted</option>")), "project choice");
        assert!(!html.text.contains("style=") && !html.text.contains("<script>"), "inline style or script");

        // The annotator sees their own row and nobody else's.
        let mut a = Browser::default();
        a.sign_in(&app, "an-annotator@example.com", PASSWORD).await;
        let mine = a.get(&app, page).await;
        assert_eq!(mine.status, StatusCode::OK, "{}", mine.text);
        assert!(mine.text.contains("an-annotator@example.com)</th><td>1</td>"), "{}", mine.text);
        assert!(!mine.text.contains("an-other@example.com"), "another's row shown to an annotator");

        // A bad zone or date is said on the page, with the form kept.
        let bad = m.get(&app, "/analytics?start=2026-06-01&end=2026-06-03&tz=Mars%2FOlympus").await;
        assert_eq!(bad.status, StatusCode::OK);
        assert!(bad.text.contains("id=\"analytics-error\"") && bad.text.contains("not a known time zone"), "{}", bad.text);
        assert!(bad.text.contains(&format!("value=\"{}\"", crate::ui::escaped("Mars/Olympus"))), "typed zone kept");
        let backwards = m.get(&app, "/analytics?start=2026-06-05&end=2026-06-01&tz=UTC").await;
        assert!(backwards.text.contains("end must be after start"), "{}", backwards.text);
        // Signed out: to the sign-in page.
        let anonymous = Browser::default().get(&app, "/analytics").await;
        assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    }
}
