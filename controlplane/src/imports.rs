//! Imports as jobs (`POST /api/projects/{id}/import?async=true`): the `import.tasks` handler
//! runs a stored import as the user who uploaded it, exactly once (the import is marked
//! completed in the transaction that writes its tasks), and announces the new tasks to
//! webhooks as a synchronous import does.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    authz::{Actor, RequestMeta},
    error::ErrorCode,
    jobs::{Jobs, NewJob, worker::Handlers},
    storage::{Db, imports, tasks, users},
    webhooks::{Action, Subject},
};

/// Job kind.
pub const KIND: &str = "import.tasks";

/// Enqueues the job of a stored import (queue `high`, as Label Studio runs imports).
pub async fn enqueue(jobs: &Jobs, org: i64, import: i64) -> Result<String, String> {
    let mut job = NewJob::new("high", KIND, json!({"import": import}));
    job.organization = Some(org);
    job.timeout = Duration::from_secs(3600);
    job.max_attempts = 3;
    jobs.enqueue(&job).await.map_err(|e| e.to_string())
}

/// Tells webhooks about imported tasks (and their annotations).
pub async fn announce(
    db: &Db,
    jobs: &Jobs,
    org: i64,
    project: i64,
    created: Vec<i64>,
    annotated: bool,
) {
    if created.is_empty() {
        return;
    }
    crate::webhooks::emit(
        db,
        jobs,
        org,
        Some(project),
        Action::TasksCreated,
        Subject::Tasks(created.clone()),
    )
    .await;
    if annotated {
        crate::webhooks::emit(
            db,
            jobs,
            org,
            Some(project),
            Action::AnnotationsCreated,
            Subject::AnnotationsOfTasks(created),
        )
        .await;
    }
}

/// Registers `import.tasks`; uploads are unpacked under `<data_dir>/tmp`.
pub fn register(db: Db, jobs: Jobs, data_dir: PathBuf, handlers: Handlers) -> Handlers {
    handlers.on(KIND, move |job| {
        let (db, jobs, data_dir) = (db.clone(), jobs.clone(), data_dir.clone());
        async move {
            let id = job.leased.payload["import"]
                .as_i64()
                .ok_or("the job has no import id")?;
            let last = job.leased.attempt >= job.leased.max_attempts;
            run(&db, &jobs, &data_dir, id, last).await
        }
    })
}

async fn run(
    db: &Db,
    jobs: &Jobs,
    data_dir: &std::path::Path,
    id: i64,
    last: bool,
) -> Result<Value, String> {
    let Some(row) = imports::by_id(db, id).await.map_err(|e| e.detail)? else {
        return Ok(json!({"skipped": "the import is gone"}));
    };
    if row.status == "completed" || row.status == "failed" {
        return Ok(json!({"status": row.status}));
    }
    let fail = |why: String| async move {
        imports::finish(db, id, Err(why.clone()))
            .await
            .map_err(|e| e.detail)?;
        Ok::<Value, String>(json!({"status": "failed", "error": why}))
    };
    // The uploader's rights as they are now: a removal since the upload counts.
    let actor = match row.created_by {
        Some(user) => match users::actor_for_user(db, user)
            .await
            .map_err(|e| e.detail)?
        {
            Some(a) if a.org_id == row.organization_id => a,
            _ => {
                return fail(
                    "the user who uploaded the import is no longer active in this organization"
                        .into(),
                )
                .await;
            }
        },
        None => Actor::instance(row.organization_id, RequestMeta::default()),
    };
    let base = data_dir.join("tmp");
    std::fs::create_dir_all(&base).map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir_in(&base).map_err(|e| e.to_string())?;
    let sources = imports::start(db, id, dir.path())
        .await
        .map_err(|e| e.detail)?;
    match tasks::import_with(
        db,
        &actor,
        row.project_id,
        &sources,
        true,
        tasks::Claim::Import(id),
    )
    .await
    {
        Ok(mut summary) => {
            let created = summary.task_ids.clone().unwrap_or_default();
            if !row.return_task_ids {
                summary.task_ids = None;
            }
            let mut value = serde_json::to_value(&summary).map_err(|e| e.to_string())?;
            value["task_ids"] = json!(created);
            imports::finish(db, id, Ok(value))
                .await
                .map_err(|e| e.detail)?;
            announce(
                db,
                jobs,
                row.organization_id,
                row.project_id,
                created,
                summary.annotation_count > 0,
            )
            .await;
            Ok(json!({"status": "completed", "task_count": summary.task_count}))
        }
        // A retry after the tasks were written: nothing to do.
        Err(e) if e.code == ErrorCode::Conflict => Ok(json!({"status": "completed"})),
        // The data or the caller's rights: a retry would fail the same way.
        Err(e) if e.code.status().is_client_error() => fail(e.detail).await,
        Err(e) if last => fail(e.detail).await,
        Err(e) => Err(e.detail),
    }
}
