//! Export storages kept up to date as annotations change (ADR 0052): what Label Studio does
//! when an annotation is saved or deleted, through the job queue instead of inside the request.
//!
//! After a change has committed, [`note`] records each changed annotation once per export
//! storage of the project (`export_change`; a row that is still waiting only gets a newer
//! version) and enqueues a `storage.export.changes` job per storage. The job leases the waiting
//! rows, reads each annotation as it is *then*, and writes `<prefix>/<annotation id>` with the
//! body of the on-demand export sync, or deletes that object when the annotation is gone and the
//! storage has `can_delete_objects`. A row is removed only if no change came while it was being
//! written, so a replay rewrites the current state and never a stale one, and a deleted
//! annotation cannot be written back. A failing target fails the job (the queue retries it with
//! its backoff) and shows in the storage's `status` and `traceback`; it never fails the change
//! itself. Nothing here decides who may change annotations: the change was authorized before.

use std::{path::PathBuf, sync::Arc, time::Duration};

use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path as ObjectPath};
use serde_json::{Value, json};

use crate::{
    cloud::{self, Provider},
    error::{ApiError, ApiResult},
    jobs::{Jobs, NewJob, worker::Handlers},
    localfiles::{self, Root},
    outbound::TargetPolicy,
    secrets::Sealer,
    storage::{
        Db, cloudstorages,
        exportchanges::{self as store, Leased},
        storages,
    },
    webhooks::{Action, Subject},
};

/// Job kind of a storage's write pass.
pub const JOB_KIND: &str = "storage.export.changes";

/// Rows a pass leases (and annotations it reads) at once.
const BATCH: i64 = 100;

/// Objects written at once to a bucket.
const CONCURRENCY: usize = 8;

/// How long a pass holds the rows it leased: far longer than a batch takes (every bucket call
/// gives up within about a minute), so two passes never write one annotation at once.
const LEASE: Duration = Duration::from_secs(600);

/// Attempts of a pass: with the queue's backoff (5 s doubling) a failing target is retried for
/// about ten minutes before the job is failed; the rows stay and the next change, or a sync,
/// takes them again.
const MAX_ATTEMPTS: u32 = 8;

/// The annotations an event changed, for the events that change annotations.
enum Changed {
    Ids(Vec<i64>),
    OfTasks(Vec<i64>),
    /// Recorded with the change itself (tasks deleted with their annotations: the rows were
    /// written in the deleting transaction); only the passes are to start.
    Recorded,
}

fn changed(action: Action, subject: &Subject) -> Option<Changed> {
    match (action, subject) {
        (Action::AnnotationCreated | Action::AnnotationUpdated, Subject::Annotation(id)) => {
            Some(Changed::Ids(vec![*id]))
        }
        (_, Subject::Annotations(ids) | Subject::AnnotationsDeleted(ids)) => {
            Some(Changed::Ids(ids.clone()))
        }
        (_, Subject::AnnotationsOfTasks(tasks)) => Some(Changed::OfTasks(tasks.clone())),
        (_, Subject::TasksDeleted(_)) => Some(Changed::Recorded),
        // A review can change the annotation (fix and accept) and its review counts.
        (_, Subject::Review { annotation, .. }) => Some(Changed::Ids(vec![*annotation])),
        _ => None,
    }
}

/// After a committed change that webhooks hear of as `action`: records the annotations it
/// changed for each export storage of the project and starts their write passes. A project
/// without export storages costs one read and enqueues nothing. Never fails the change: an
/// error is logged (a sync writes everything again).
pub async fn note(db: &Db, jobs: &Jobs, project: Option<i64>, action: Action, subject: &Subject) {
    let (Some(project), Some(changed)) = (project, changed(action, subject)) else {
        return;
    };
    if let Err(e) = try_note(db, jobs, project, changed).await {
        tracing::warn!(project, action = action.name(), error = %e.detail, internal = ?e.internal,
            "recording annotation changes for the export storages failed; a sync of the storage writes them");
    }
}

/// After a committed change that no annotation event reports (a review deleted, ground truth
/// removed, duplicates merged): as [`note`], for the annotations `ids`.
pub async fn note_annotations(db: &Db, jobs: &Jobs, project: i64, ids: Vec<i64>) {
    if let Err(e) = try_note(db, jobs, project, Changed::Ids(ids)).await {
        tracing::warn!(project, error = %e.detail, internal = ?e.internal,
            "recording annotation changes for the export storages failed; a sync of the storage writes them");
    }
}

/// As [`note_annotations`], for every annotation of the tasks `tasks`.
pub async fn note_tasks(db: &Db, jobs: &Jobs, project: i64, tasks: Vec<i64>) {
    if let Err(e) = try_note(db, jobs, project, Changed::OfTasks(tasks)).await {
        tracing::warn!(project, error = %e.detail, internal = ?e.internal,
            "recording annotation changes for the export storages failed; a sync of the storage writes them");
    }
}

async fn try_note(db: &Db, jobs: &Jobs, project: i64, changed: Changed) -> ApiResult<()> {
    let targets = store::targets(db, project).await?;
    if targets.is_empty() {
        return Ok(());
    }
    let ids = match changed {
        Changed::Ids(ids) => ids,
        Changed::OfTasks(tasks) => store::annotations_of_tasks(db, project, &tasks).await?,
        Changed::Recorded => {
            for target in &targets {
                requeue(db, jobs, target).await?;
            }
            return Ok(());
        }
    };
    if ids.is_empty() {
        return Ok(());
    }
    store::add(db, &targets, project, &ids).await?;
    for target in &targets {
        enqueue(jobs, target.organization_id, &target.kind, target.id).await?;
    }
    Ok(())
}

/// Starts a write pass of a storage if changes wait for it that no pass holds: after a
/// deletion recorded them, and after a sync of the storage succeeded, which takes up the
/// changes whose pass failed for good (their rows stay until written, ADR 0058). Answers
/// whether a pass was enqueued.
pub async fn requeue(db: &Db, jobs: &Jobs, target: &store::ExportTarget) -> ApiResult<bool> {
    if !store::waiting(db, &target.kind, target.id).await? {
        return Ok(false);
    }
    enqueue(jobs, target.organization_id, &target.kind, target.id).await?;
    Ok(true)
}

/// After an on-demand sync wrote a batch: the annotations of the batch that changed (or went)
/// between the sync's read and its write are recorded for the storage's write pass, so that a
/// write pass that ran in between is not undone by the sync's older copy.
pub async fn recheck_batch(
    db: &Db,
    jobs: &Jobs,
    target: &store::ExportTarget,
    project: i64,
    written: &[(i64, Value)],
) -> ApiResult<()> {
    let ids: Vec<i64> = written.iter().map(|(id, _)| *id).collect();
    let now: std::collections::HashMap<i64, Value> =
        storages::export_annotations(db, project, &ids)
            .await?
            .into_iter()
            .collect();
    let stale: Vec<i64> = written
        .iter()
        .filter(|(id, value)| now.get(id) != Some(value))
        .map(|(id, _)| *id)
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    store::add(db, std::slice::from_ref(target), project, &stale).await?;
    enqueue(jobs, target.organization_id, &target.kind, target.id).await?;
    Ok(())
}

/// Enqueues a write pass of a storage.
pub async fn enqueue(jobs: &Jobs, org: i64, kind: &str, storage: i64) -> ApiResult<String> {
    let mut job = NewJob::new(
        "default",
        JOB_KIND,
        json!({"kind": kind, "storage": storage}),
    );
    job.organization = Some(org);
    job.max_attempts = MAX_ATTEMPTS;
    job.timeout = LEASE;
    jobs.enqueue(&job).await.map_err(ApiError::internal)
}

/// What a pass needs.
#[derive(Clone)]
struct Context {
    db: Db,
    config: crate::config::Config,
    sealer: Arc<Sealer>,
    policy: Arc<TargetPolicy>,
}

/// Registers `storage.export.changes`.
pub fn register(
    db: Db,
    config: crate::config::Config,
    sealer: Arc<Sealer>,
    handlers: Handlers,
) -> Handlers {
    let policy = Arc::new(TargetPolicy::parse(&config.allow_private_targets).unwrap_or_default());
    let ctx = Context {
        db,
        config,
        sealer,
        policy,
    };
    handlers.on(JOB_KIND, move |job| {
        let ctx = ctx.clone();
        async move {
            let kind = job.leased.payload["kind"]
                .as_str()
                .ok_or("the job has no storage kind")?
                .to_string();
            let storage = job.leased.payload["storage"]
                .as_i64()
                .ok_or("the job has no storage id")?;
            match pass(&ctx, &kind, storage).await {
                Ok(done) => Ok(done),
                Err(e) => {
                    tracing::warn!(storage, kind, error = %e.detail, internal = ?e.internal,
                        "writing changed annotations to an export storage failed; it will be retried");
                    if let Err(shown) =
                        store::show_failure(&ctx.db, &kind, storage, &e.detail).await
                    {
                        tracing::warn!(storage, error = %shown.detail, "could not record the failure");
                    }
                    Err(e.detail)
                }
            }
        }
    })
}

/// Where a pass writes.
enum Target {
    /// A local-files directory (resolved under the root).
    Dir { dir: PathBuf },
    /// A bucket under a prefix.
    Bucket {
        store: Arc<dyn ObjectStore>,
        provider: Provider,
        bucket: String,
        prefix: String,
    },
}

impl Target {
    fn key(&self, annotation: i64) -> String {
        match self {
            Target::Dir { .. } => annotation.to_string(),
            Target::Bucket { prefix, .. } => cloud::export_key(prefix, annotation),
        }
    }
}

/// The storage's target, project and `can_delete_objects`; `None` when it is gone or is not
/// an export storage.
async fn target(ctx: &Context, kind: &str, storage: i64) -> ApiResult<Option<(Target, i64, bool)>> {
    if kind == localfiles::KIND {
        let Some(row) = storages::by_id(&ctx.db, storage).await? else {
            return Ok(None);
        };
        if row.direction != storages::Direction::Export.as_str() {
            return Ok(None);
        }
        let dir = Root::from_config(&ctx.config)?.check_dir(&row.path)?;
        return Ok(Some((
            Target::Dir { dir },
            row.project_id,
            row.can_delete_objects,
        )));
    }
    let Some(row) = cloudstorages::by_id(&ctx.db, storage).await? else {
        return Ok(None);
    };
    if row.direction != storages::Direction::Export.as_str() || row.provider != kind {
        return Ok(None);
    }
    // The organization's allow-list as it is now, as a sync reads it (ADR 0053).
    let policy = cloud::with_org_endpoints(&ctx.db, &ctx.policy, row.organization_id).await?;
    let store = cloud::store(&row.endpoint(&ctx.sealer, &ctx.config)?, policy)?.store;
    Ok(Some((
        Target::Bucket {
            store,
            provider: row.provider(),
            bucket: row.bucket.clone(),
            prefix: row.prefix.clone(),
        },
        row.project_id,
        row.can_delete_objects,
    )))
}

/// What one row came to.
enum Outcome {
    /// Written: key, entity tag, size.
    Written(String, Option<String>, i64),
    /// Deleted (or already absent).
    Deleted(String),
    /// Gone, and the storage keeps objects of deleted annotations.
    Kept,
}

/// One write pass: leases waiting rows batch by batch until none is left.
async fn pass(ctx: &Context, kind: &str, storage: i64) -> ApiResult<Value> {
    let Some((target, project, can_delete)) = target(ctx, kind, storage).await? else {
        return Ok(json!({"skipped": "the storage is gone"}));
    };
    let (mut written, mut deleted) = (0u64, 0u64);
    loop {
        let until = crate::storage::now_micros() + LEASE.as_micros() as i64;
        let rows = store::lease(&ctx.db, kind, storage, until, BATCH).await?;
        if rows.is_empty() {
            break;
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.annotation_id).collect();
        let values: std::collections::HashMap<i64, Value> =
            match storages::export_annotations(&ctx.db, project, &ids).await {
                Ok(v) => v.into_iter().collect(),
                Err(e) => {
                    store::release(&ctx.db, kind, storage, &rows).await?;
                    return Err(e);
                }
            };
        let results = write_batch(&target, &rows, &values, can_delete).await;
        let mut done: Vec<Leased> = Vec::new();
        let mut failed: Vec<Leased> = Vec::new();
        let mut first_error: Option<ApiError> = None;
        let mut records = Vec::new();
        let mut forgotten = Vec::new();
        for (row, result) in results {
            match result {
                Ok(outcome) => {
                    match outcome {
                        Outcome::Written(key, etag, size) => {
                            written += 1;
                            records.push((key, etag, Some(size)));
                        }
                        Outcome::Deleted(key) => {
                            deleted += 1;
                            forgotten.push(key);
                        }
                        Outcome::Kept => {}
                    }
                    done.push(row);
                }
                Err(e) => {
                    failed.push(row);
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Target::Bucket { provider, .. } = &target {
            // Recorded like the sync's writes, so that a sync with `can_delete_objects` knows
            // every key written here.
            cloudstorages::record_objects(&ctx.db, *provider, storage, &records).await?;
            cloudstorages::forget_objects(&ctx.db, *provider, storage, &forgotten).await?;
        }
        store::finish(&ctx.db, kind, storage, &done).await?;
        store::release(&ctx.db, kind, storage, &failed).await?;
        if let Some(e) = first_error {
            return Err(e);
        }
    }
    store::clear_failure(&ctx.db, kind, storage).await?;
    Ok(json!({"written": written, "deleted": deleted}))
}

/// Writes (or deletes) the objects of a batch: a bucket up to `CONCURRENCY` at once, a
/// directory one file after another off the async threads.
async fn write_batch(
    target: &Target,
    rows: &[Leased],
    values: &std::collections::HashMap<i64, Value>,
    can_delete: bool,
) -> Vec<(Leased, ApiResult<Outcome>)> {
    let jobs: Vec<(Leased, String, Option<Vec<u8>>)> = rows
        .iter()
        .map(|row| {
            let body = values
                .get(&row.annotation_id)
                .map(|v| serde_json::to_vec(v).unwrap_or_default());
            (*row, target.key(row.annotation_id), body)
        })
        .collect();
    match target {
        Target::Dir { dir } => {
            let dir = dir.clone();
            let done = tokio::task::spawn_blocking(move || {
                jobs.into_iter()
                    .map(|(row, key, body)| (row, write_file(&dir, &key, body, can_delete)))
                    .collect::<Vec<_>>()
            })
            .await;
            match done {
                Ok(done) => done,
                Err(e) => rows
                    .iter()
                    .map(|r| (*r, Err(ApiError::internal(e.to_string()))))
                    .collect(),
            }
        }
        Target::Bucket {
            store,
            provider,
            bucket,
            ..
        } => {
            futures::stream::iter(jobs)
                .map(|(row, key, body)| {
                    let (store, bucket, provider) = (store.clone(), bucket.clone(), *provider);
                    async move {
                        (
                            row,
                            write_object(&store, provider, &bucket, key, body, can_delete).await,
                        )
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await
        }
    }
}

fn write_file(
    dir: &std::path::Path,
    key: &str,
    body: Option<Vec<u8>>,
    can_delete: bool,
) -> ApiResult<Outcome> {
    let cannot = |what: &str, e: std::io::Error| {
        ApiError::new(
            crate::error::ErrorCode::ValidationError,
            format!("cannot {what} {}: {e}", dir.join(key).display()),
        )
    };
    match body {
        Some(body) => {
            // A temporary file renamed over the old one: a reader never sees half a file.
            let size = body.len() as i64;
            let mut file = tempfile::NamedTempFile::new_in(dir).map_err(|e| cannot("write", e))?;
            std::io::Write::write_all(&mut file, &body).map_err(|e| cannot("write", e))?;
            file.persist(dir.join(key))
                .map_err(|e| cannot("write", e.error))?;
            Ok(Outcome::Written(key.to_string(), None, size))
        }
        None if can_delete => match std::fs::remove_file(dir.join(key)) {
            Ok(()) => Ok(Outcome::Deleted(key.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Outcome::Deleted(key.to_string()))
            }
            Err(e) => Err(cannot("delete", e)),
        },
        None => Ok(Outcome::Kept),
    }
}

async fn write_object(
    store: &Arc<dyn ObjectStore>,
    provider: Provider,
    bucket: &str,
    key: String,
    body: Option<Vec<u8>>,
    can_delete: bool,
) -> ApiResult<Outcome> {
    let path = ObjectPath::from(key.as_str());
    match body {
        Some(body) => {
            let size = body.len() as i64;
            let put = store
                .put(&path, PutPayload::from(body))
                .await
                .map_err(|e| cloud::unreachable(provider, bucket, "write objects to", &e))?;
            Ok(Outcome::Written(key, put.e_tag, size))
        }
        None if can_delete => match store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(Outcome::Deleted(key)),
            Err(e) => Err(cloud::unreachable(
                provider,
                bucket,
                "delete objects of",
                &e,
            )),
        },
        None => Ok(Outcome::Kept),
    }
}
