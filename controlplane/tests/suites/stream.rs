//! The label stream under churn (issue 13's concurrency test): 50 annotators work one project
//! with overlap 3 while some skip, some walk away from a reserved task until its reservation
//! expires, and some submit only after their reservation expired. At the end no task has more
//! annotations than its overlap, none is left behind, nobody annotated a task twice, every
//! acknowledged annotation is stored and the counters match the rows.
//!
//! The size is `VERITY_STREAM_TASKS` tasks: 1,000 by default, which keeps the suite's time in
//! check (10,000 on both engines takes some 17 minutes in a debug build on the 2-core machine);
//! `VERITY_STREAM_TASKS=10000` runs the size (ADR 0048). Nothing is decided by the clock: an annotator with an empty stream stops when every
//! task is labeled, and the test fails only when the project makes no progress for a long run
//! of looks (ADR 0057).

use std::{sync::Arc, time::Duration};

use http::StatusCode;
use serde_json::json;
use verity_controlplane::{authz::Role, storage::Db};

use crate::{both_backends, common::choice};

const ANNOTATORS: usize = 50;
const OVERLAP: i64 = 3;
/// Reservation lifetime (`custom_task_lock_ttl`), short so that expiries happen.
const TTL_SECS: u64 = 2;
/// Annotators `0..WALKERS` sometimes walk away from a reserved task.
const WALKERS: usize = 5;

fn tasks_wanted() -> usize {
    std::env::var("VERITY_STREAM_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

/// A small deterministic generator (xorshift), one per annotator, so a failure can be rerun.
struct Rng(u64);

impl Rng {
    fn percent(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % 100
    }
}

/// How long an annotator with an empty stream waits before looking again (a poll interval,
/// not a deadline: what ends the wait is the project's state).
const LOOK_AGAIN: Duration = Duration::from_millis(500);
/// Looks in a row at an empty stream, with no task of the project labeled meanwhile, before
/// the test fails: far beyond the reservation lifetime that frees walked-away tasks.
const IDLE_LOOKS: usize = 120;

/// Tasks of project `p` not yet labeled.
async fn unlabeled(db: &Db, p: i64) -> i64 {
    // `= false` reads the (project, is_labeled) index on both engines: cheap when few are left.
    scalar(
        db,
        &format!("select count(*) from task where project_id = {p} and is_labeled = false"),
    )
    .await
}

/// What one annotator saw acknowledged.
#[derive(Default)]
struct Tally {
    submitted: Vec<i64>,
    skipped: Vec<i64>,
    refused_late: usize,
}

async fn scalar(db: &Db, sql: &str) -> i64 {
    match db {
        Db::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        Db::Sqlite { read, .. } => sqlx::query_scalar(sql).fetch_one(read).await,
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Rows of three integers.
async fn rows3(db: &Db, sql: &str) -> Vec<(i64, i64, i64)> {
    match db {
        Db::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await,
        Db::Sqlite { read, .. } => sqlx::query_as(sql).fetch_all(read).await,
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

both_backends! {
    async fn strict_overlap_refuses_late_submits(app) {
        let p = app.mk_project(&app.owner, json!({"maximum_annotations": 1})).await;
        let tasks = app.mk_tasks(&app.owner, p, 2).await;
        let ann1 = app.user("strict1@example.com", Role::Annotator).await;
        let ann2 = app.user("strict2@example.com", Role::Annotator).await;
        let ann3 = app.user("strict3@example.com", Role::Annotator).await;
        for t in [&ann1, &ann2, &ann3] {
            app.add_member(p, t, None).await;
        }
        let uid1 = app.user_id(&ann1).await;
        let submit = |token: &str, task: i64| {
            let (token, url) = (token.to_string(), format!("/api/tasks/{task}/annotations"));
            let app = &app;
            async move { app.post(&url, &token, json!({"result": choice("pos")})).await }
        };
        let next = |token: &str| {
            let (token, url) = (token.to_string(), format!("/api/projects/{p}/next"));
            let app = &app;
            async move { app.get(&url, &token).await.expect(StatusCode::OK)["id"].as_i64().expect("id") }
        };
        // ann1's reservation of the first task (a day, the default) expires a second ago, and
        // the task goes to ann2.
        assert_eq!(next(&ann1).await, tasks[0]);
        app.sql(&format!("update task_lock set expire_at = expire_at - 86401000000 where user_id = {uid1}")).await.expect("expire");
        assert_eq!(next(&ann2).await, tasks[0]);
        // ann1's late submit would take the place promised to ann2: refused, nothing stored.
        let e = submit(&ann1, tasks[0]).await.expect_error(StatusCode::CONFLICT, "overlap_reached");
        assert!(e["detail"].as_str().is_some_and(|d| d.contains("next task")), "{e}");
        assert_eq!(app.get(&format!("/api/tasks/{}", tasks[0]), &app.owner).await.expect(StatusCode::OK)["total_annotations"], json!(0));
        submit(&ann2, tasks[0]).await.expect(StatusCode::CREATED);
        // Now the task is full: still refused; a skip is not limited.
        submit(&ann1, tasks[0]).await.expect_error(StatusCode::CONFLICT, "overlap_reached");
        app.post(&format!("/api/tasks/{}/annotations?was_cancelled=1", tasks[0]), &ann1, json!({"result": []})).await.expect(StatusCode::CREATED);
        // Not limited: the project's owner, and an annotator writing to a task that never came
        // from their stream (a script, as in Label Studio).
        submit(&app.owner, tasks[0]).await.expect(StatusCode::CREATED);
        submit(&ann3, tasks[0]).await.expect(StatusCode::CREATED);
        // Switched off: Label Studio's behaviour, the late submit lands.
        app.patch(&format!("/api/projects/{p}"), &app.owner, json!({"strict_task_overlap": false})).await.expect(StatusCode::OK);
        assert_eq!(app.project(p).await["strict_task_overlap"], json!(false));
        assert_eq!(next(&ann1).await, tasks[1]);
        app.sql(&format!("update task_lock set expire_at = expire_at - 86401000000 where user_id = {uid1}")).await.expect("expire");
        assert_eq!(next(&ann2).await, tasks[1]);
        submit(&ann2, tasks[1]).await.expect(StatusCode::CREATED);
        submit(&ann1, tasks[1]).await.expect(StatusCode::CREATED);
    }

    async fn fifty_annotators_with_skips_walkaways_and_late_submits(app) {
        let app = Arc::new(app);
        let n_tasks = tasks_wanted();
        let p = app.mk_project(&app.owner, json!({"maximum_annotations": OVERLAP,
            "custom_task_lock_ttl": TTL_SECS})).await;
        let mut made = 0;
        while made < n_tasks {
            let n = (n_tasks - made).min(2_000);
            app.mk_tasks(&app.owner, p, n).await;
            made += n;
        }
        let ws = app.post("/api/workspaces", &app.owner, json!({"title": "Churn"}))
            .await.expect(StatusCode::CREATED)["id"].as_i64().expect("id");
        let mut tokens = Vec::new();
        let mut ids = Vec::new();
        for i in 0..ANNOTATORS {
            let token = app.user(&format!("churn{i}@example.com"), Role::Annotator).await;
            ids.push(app.user_id(&token).await);
            tokens.push(token);
        }
        app.post(&format!("/api/workspaces/{ws}/memberships/bulk"), &app.owner, json!({"users": ids}))
            .await.expect(StatusCode::OK);
        app.post(&format!("/api/workspaces/{ws}/projects"), &app.owner, json!({"project": p}))
            .await.expect(StatusCode::CREATED);

        let pause = Duration::from_millis(TTL_SECS * 1000 + 300);
        let mut handles = Vec::new();
        for (i, token) in tokens.into_iter().enumerate() {
            let app = app.clone();
            handles.push(tokio::spawn(async move {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1));
                let mut tally = Tally::default();
                let mut idle = 0;
                let mut last_left = i64::MAX;
                // Bounded: every task at most once, the re-handouts after walking away, and the
                // looks at an empty stream below.
                for _ in 0..(4 * n_tasks + IDLE_LOOKS) {
                    let reply = app.get(&format!("/api/projects/{p}/next"), &token).await;
                    if reply.status == StatusCode::NOT_FOUND {
                        assert_eq!(reply.body["code"], json!("no_more_tasks"), "{}", reply.text);
                        // Nothing for this annotator now. They stop once every task is labeled
                        // (the state the test waits for, however slow the machine); until then
                        // others' reservations may still expire and free a task, so they look
                        // again, a bounded number of times in a row.
                        let left = unlabeled(&app.db, p).await;
                        if left == 0 {
                            break;
                        }
                        // Waiting counts only while nobody makes progress either.
                        if left < last_left {
                            idle = 0;
                            last_left = left;
                        }
                        idle += 1;
                        assert!(idle <= IDLE_LOOKS, "the project made no progress while annotator {i} looked \
                            {IDLE_LOOKS} times at an empty stream; {left} tasks are not labeled");
                        tokio::time::sleep(LOOK_AGAIN).await;
                        continue;
                    }
                    idle = 0;
                    let task = reply.expect(StatusCode::OK)["id"].as_i64().expect("id");
                    let roll = rng.percent();
                    if i < WALKERS && roll < 2 {
                        // Walk away: the reservation expires and the task goes to others.
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                    let late = (2..4).contains(&roll);
                    if late {
                        tokio::time::sleep(pause).await;
                    }
                    let skip = roll >= 90;
                    let url = if skip {
                        format!("/api/tasks/{task}/annotations?was_cancelled=1")
                    } else {
                        format!("/api/tasks/{task}/annotations")
                    };
                    let body = if skip { json!({"result": []}) } else { json!({"result": choice("pos")}) };
                    let answer = app.post(&url, &token, body).await;
                    match answer.status {
                        StatusCode::CREATED => {
                            let id = answer.body["id"].as_i64().expect("id");
                            if skip { tally.skipped.push(id) } else { tally.submitted.push(id) }
                        }
                        // Any submit may be late under load (the reservation is short): once
                        // others filled the task it is refused, and nothing is stored.
                        StatusCode::CONFLICT if !skip => {
                            assert_eq!(answer.body["code"], json!("overlap_reached"), "{}", answer.text);
                            tally.refused_late += 1;
                        }
                        other => panic!("annotation answered {other}: {}", answer.text),
                    }
                }
                tally
            }));
        }
        let mut submitted = Vec::new();
        let mut skipped = Vec::new();
        let mut refused = 0;
        for h in handles {
            let t = h.await.expect("annotator");
            submitted.extend(t.submitted);
            skipped.extend(t.skipped);
            refused += t.refused_late;
        }
        let db = &app.db;
        let q = |sql: String| async move { scalar(db, &sql).await };
        // None above its overlap and none left behind: every task has exactly OVERLAP
        // submitted annotations.
        let off = rows3(db, &format!("select t.id, \
            (select count(*) from annotation a where a.task_id = t.id and not a.was_cancelled), \
            (select count(*) from annotation a where a.task_id = t.id and a.was_cancelled) \
            from task t where t.project_id = {p} and \
            (select count(*) from annotation a where a.task_id = t.id and not a.was_cancelled) <> {OVERLAP} \
            order by t.id limit 20")).await;
        assert!(off.is_empty(), "tasks with other than {OVERLAP} submitted annotations \
            (task, submitted, skipped): {off:?}");
        // Each (task, annotator) at most once, skips included.
        assert_eq!(q(format!("select count(*) from (select task_id, completed_by from annotation where project_id = {p} \
            group by task_id, completed_by having count(*) > 1) d")).await, 0, "an annotator got a task twice");
        // Every acknowledged annotation is stored, and nothing else.
        assert_eq!(submitted.len() as i64, n_tasks as i64 * OVERLAP);
        assert_eq!(q(format!("select count(*) from annotation where project_id = {p} and not was_cancelled")).await,
            submitted.len() as i64);
        assert_eq!(q(format!("select count(*) from annotation where project_id = {p} and was_cancelled")).await,
            skipped.len() as i64);
        // Counters agree with the rows.
        assert_eq!(q(format!("select count(*) from task t where t.project_id = {p} and (t.total_annotations <> \
            (select count(*) from annotation a where a.task_id = t.id and not a.was_cancelled) or t.cancelled_annotations <> \
            (select count(*) from annotation a where a.task_id = t.id and a.was_cancelled) or not t.is_labeled)")).await, 0);
        let project = app.project(p).await;
        assert_eq!(project["finished_task_number"], json!(n_tasks));
        assert_eq!(project["total_annotations_number"], json!(submitted.len()));
        assert_eq!(project["skipped_annotations_number"], json!(skipped.len()));
        // The churn really happened (a run without skips or expiries proves little).
        assert!(!skipped.is_empty(), "no skips");
        eprintln!("{n_tasks} tasks: {} submitted, {} skipped, {refused} late submits refused", submitted.len(), skipped.len());
    }
}
