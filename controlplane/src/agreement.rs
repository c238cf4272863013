//! Project-wide agreement refreshes as jobs (ADR 0035). Changing a project's labeling
//! configuration or control weights changes what every stored task agreement measures. The
//! change only marks the project stale (a durable generation counter, in the same transaction);
//! the `agreement.refresh` job recomputes the tasks in short batches
//! ([`storage::agreement::refresh_batch`]) and records the generation as done. A newer change
//! supersedes a running refresh (its batches stop at once) and enqueues its own. A refresh that
//! was never enqueued (the queue refused, the process died in between) is found by the sweep,
//! which enqueues it again: the marker stays until a refresh has finished.

use serde_json::{Value, json};

use crate::{
    jobs::{Jobs, NewJob, worker::Handlers},
    storage::{
        Db,
        agreement::{self, REFRESH_BATCH, RefreshStep},
    },
};

/// Job kind of a refresh.
pub const KIND: &str = "agreement.refresh";
/// Not urgent: annotators keep working while it runs, and each of their saves refreshes its own
/// task at once.
pub const QUEUE: &str = "low";

/// The job id of a project's refresh for one configuration generation: enqueuing it again (a
/// second replica, the sweep) does nothing while it exists.
pub fn job_id(project: i64, generation: i64) -> String {
    format!("agreement-{project}-{generation}")
}

/// Enqueues the refresh of a project when its stored agreements are stale; returns the job id.
pub async fn enqueue(db: &Db, jobs: &Jobs, project: i64) -> Result<Option<String>, String> {
    let Some(stale) = agreement::stale_generation(db, project)
        .await
        .map_err(|e| e.detail)?
    else {
        return Ok(None);
    };
    enqueue_generation(jobs, stale.organization, project, stale.generation)
        .await
        .map(Some)
}

/// After a project update: enqueues the refresh when the update changed the labeling
/// configuration or control weights. A failure is only logged: the project stays marked stale
/// and the sweep enqueues the refresh later.
pub async fn after_update(
    db: &Db,
    jobs: &Jobs,
    project: i64,
    body: &serde_json::Map<String, Value>,
) {
    if !(body.contains_key("label_config") || body.contains_key("control_weights")) {
        return;
    }
    if let Err(e) = enqueue(db, jobs, project).await {
        tracing::warn!(project, error = %e, "could not enqueue the agreement refresh; the sweep will");
    }
}

async fn enqueue_generation(
    jobs: &Jobs,
    org: i64,
    project: i64,
    generation: i64,
) -> Result<String, String> {
    let mut job = NewJob::new(
        QUEUE,
        KIND,
        json!({"project": project, "generation": generation}),
    );
    job.organization = Some(org);
    job.id = Some(job_id(project, generation));
    job.timeout = std::time::Duration::from_secs(3600);
    job.max_attempts = 5;
    jobs.enqueue(&job).await.map_err(|e| e.to_string())
}

/// Enqueues the refresh of every stale project whose job is missing; returns how many it
/// enqueued. Run periodically: it is how a refresh lost between the change and the queue
/// still happens.
pub async fn sweep(db: &Db, jobs: &Jobs) -> Result<usize, String> {
    let mut enqueued = 0;
    for (org, project, generation) in agreement::stale_projects(db).await.map_err(|e| e.detail)? {
        let id = job_id(project, generation);
        if jobs.get(&id).await.map_err(|e| e.to_string())?.is_none() {
            enqueue_generation(jobs, org, project, generation).await?;
            enqueued += 1;
        }
    }
    Ok(enqueued)
}

/// Registers `agreement.refresh`.
pub fn register(db: Db, handlers: Handlers) -> Handlers {
    handlers.on(KIND, move |job| {
        let db = db.clone();
        async move {
            let project = job.leased.payload["project"]
                .as_i64()
                .ok_or("the job has no project id")?;
            let generation = job.leased.payload["generation"]
                .as_i64()
                .ok_or("the job has no generation")?;
            let total = match agreement::stale_generation(&db, project).await {
                Ok(Some(stale)) if stale.generation == generation => stale.tasks.max(1),
                Ok(_) => return Ok(json!({"skipped": "already current, superseded or gone"})),
                Err(e) => return Err(e.detail),
            };
            let (mut after, mut done) = (0, 0u64);
            loop {
                match agreement::refresh_batch(&db, project, generation, after, REFRESH_BATCH)
                    .await
                    .map_err(|e| e.detail)?
                {
                    RefreshStep::Batch { last, tasks } => {
                        after = last;
                        done += tasks;
                        job.progress((done as f64 / total as f64).min(1.0)).await;
                    }
                    RefreshStep::Finished => {
                        return Ok::<Value, String>(json!({"tasks": done}));
                    }
                    RefreshStep::Superseded => {
                        return Ok(
                            json!({"skipped": "a newer change superseded it", "tasks": done}),
                        );
                    }
                }
            }
        }
    })
}
