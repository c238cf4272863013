//! Export snapshots as jobs (`POST /api/projects/{id}/exports` and `.../convert`): the
//! `export.snapshot` handler writes a snapshot's JSON into the database, `export.convert` one of
//! its conversions, each idempotently (a retry starts the file again from scratch under a new
//! writer). A job that fails for good fails its snapshot or conversion with the reason; the
//! sweep does the same for jobs that ended without their handler saying so (killed on their
//! last attempt, timed out, deleted). Never touches work whose job is alive.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    jobs::{Jobs, NewJob, State, worker::Handlers},
    storage::{
        Db,
        export::{ExportFormat, MediaFiles},
        snapshots::{self, WriteError, Writer},
    },
};

/// Job kind of a snapshot.
pub const SNAPSHOT: &str = "export.snapshot";
/// Job kind of a conversion.
pub const CONVERT: &str = "export.convert";
/// The queue: exports are not urgent (ADR 0023), and Label Studio runs them on RQ's `default`.
pub const QUEUE: &str = "default";

/// How long a snapshot or conversion may wait for its job to appear in the queue (the request
/// records it, then enqueues) before the sweep calls the job gone.
pub const SWEEP_GRACE: Duration = Duration::from_secs(600);

fn job(kind: &str, org: i64, id: &str, payload: Value) -> NewJob {
    let mut job = NewJob::new(QUEUE, kind, payload);
    job.organization = Some(org);
    job.id = Some(id.to_string());
    job.timeout = Duration::from_secs(3600);
    job.max_attempts = 3;
    job
}

/// Enqueues the job `id` that writes snapshot `snapshot`.
pub async fn enqueue_snapshot(
    jobs: &Jobs,
    org: i64,
    snapshot: i64,
    id: &str,
) -> Result<(), String> {
    jobs.enqueue(&job(SNAPSHOT, org, id, json!({"snapshot": snapshot})))
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Enqueues the job `id` that converts snapshot `snapshot` to `format`.
pub async fn enqueue_conversion(
    jobs: &Jobs,
    org: i64,
    snapshot: i64,
    format: ExportFormat,
    id: &str,
) -> Result<(), String> {
    let payload = json!({"snapshot": snapshot, "format": snapshots::format_name(format)});
    jobs.enqueue(&job(CONVERT, org, id, payload))
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Registers `export.snapshot` and `export.convert`.
pub fn register(db: Db, media: MediaFiles, handlers: Handlers) -> Handlers {
    let db2 = db.clone();
    handlers
        .on(SNAPSHOT, move |job| {
            let db = db.clone();
            async move {
                let id = job.leased.payload["snapshot"]
                    .as_i64()
                    .ok_or("the job has no snapshot id")?;
                let last = job.leased.attempt >= job.leased.max_attempts;
                run(&db, &job.leased.id, id, ExportFormat::Json, last, None).await
            }
        })
        .on(CONVERT, move |job| {
            let db = db2.clone();
            let media = media.clone();
            async move {
                let id = job.leased.payload["snapshot"]
                    .as_i64()
                    .ok_or("the job has no snapshot id")?;
                let format = job.leased.payload["format"]
                    .as_str()
                    .and_then(|f| ExportFormat::parse(f).ok())
                    .filter(|f| *f != ExportFormat::Json)
                    .ok_or("the job has no format to convert to")?;
                let last = job.leased.attempt >= job.leased.max_attempts;
                run(&db, &job.leased.id, id, format, last, Some(&media)).await
            }
        })
}

async fn run(
    db: &Db,
    job: &str,
    id: i64,
    format: ExportFormat,
    last: bool,
    media: Option<&MediaFiles>,
) -> Result<Value, String> {
    let Some(target) = snapshots::by_id(db, id).await.map_err(|e| e.detail)? else {
        return Ok(json!({"skipped": "the export is gone"}));
    };
    let writer = Writer {
        snapshot: id,
        format,
        token: crate::jobs::new_id(),
    };
    if !snapshots::begin(db, &writer, job)
        .await
        .map_err(|e| e.detail)?
    {
        return Ok(json!({"skipped": "the export is not this job's to write, or already ended"}));
    }
    let written = if format == ExportFormat::Json {
        snapshots::write_json(db, &writer, &target).await
    } else {
        let media = media.cloned().unwrap_or_default();
        snapshots::write_conversion(db, &writer, &target, &media).await
    };
    match written {
        Ok(()) => Ok(json!({"status": "completed", "export_type": snapshots::format_name(format)})),
        Err(WriteError::Superseded) => {
            Ok(json!({"skipped": "another attempt took over, or the export was deleted"}))
        }
        // The stored data: fail the export now, as a retry would.
        Err(WriteError::Invalid(why)) => {
            snapshots::fail(db, id, format, job, &why)
                .await
                .map_err(|e| e.detail)?;
            Ok(json!({"status": "failed", "error": why}))
        }
        Err(WriteError::Failed(why)) => {
            tracing::warn!(export = id, format = snapshots::format_name(format), error = %why, last, "writing an export failed");
            if last {
                snapshots::fail(db, id, format, job, &why)
                    .await
                    .map_err(|e| e.detail)?;
            }
            Err(why)
        }
    }
}

/// Fails snapshots and conversions whose job failed for good, finished without writing them, or
/// is gone (after `grace`, the time between the row and its enqueue); answers how many. Work
/// whose job is queued or running is left alone, whichever process runs it.
pub async fn sweep(db: &Db, jobs: &Jobs, grace: Duration) -> Result<u64, String> {
    let now = crate::storage::now_micros();
    let grace = i64::try_from(grace.as_micros()).unwrap_or(i64::MAX);
    let mut failed = 0;
    for target in snapshots::pending(db).await.map_err(|e| e.detail)? {
        let mut work: Vec<(ExportFormat, String, i64)> = Vec::new();
        if matches!(target.status.as_str(), "created" | "in_progress")
            && let Some(job) = &target.job_id
        {
            work.push((ExportFormat::Json, job.clone(), target.created_at));
        }
        for format in ExportFormat::ALL
            .into_iter()
            .filter(|f| *f != ExportFormat::Json)
        {
            if let Some(c) = target.conversion(format)
                && matches!(c["status"].as_str(), Some("created" | "in_progress"))
                && let Some(job) = c["job"].as_str()
            {
                let since = c["requested_at"].as_i64().unwrap_or(target.created_at);
                work.push((format, job.to_string(), since));
            }
        }
        for (format, job, since) in work {
            let why = match jobs.get(&job).await.map_err(|e| e.to_string())? {
                Some(j) if j.state == State::Failed => format!(
                    "its job {job} failed: {}",
                    j.error.unwrap_or_else(|| "no reason recorded".into())
                ),
                Some(j) if j.state == State::Finished => {
                    format!("its job {job} finished without writing it; create a new export")
                }
                Some(_) => continue,
                None if now - since > grace => {
                    format!("its job {job} is gone from the queue; create a new export")
                }
                None => continue,
            };
            if snapshots::fail(db, target.id, format, &job, &why)
                .await
                .map_err(|e| e.detail)?
            {
                tracing::warn!(export = target.id, format = snapshots::format_name(format), reason = %why, "export failed");
                failed += 1;
            }
        }
    }
    Ok(failed)
}
