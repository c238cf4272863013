//! Who may see and change which jobs: the boundary the HTTP routes go through. A member sees
//! the jobs of their own organization (404 for any other, identical to a missing id); the
//! failed registry and requeue/delete need `job.manage`. Changes are audited.

use serde_json::json;

use super::{JobError, JobView, Jobs, State};
use crate::authz::{Actor, Permission};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::storage::{Db, audit};

fn backend(e: JobError) -> ApiError {
    match e {
        JobError::Invalid(m) => ApiError::new(ErrorCode::ValidationError, m),
        other => ApiError {
            code: ErrorCode::Unavailable,
            detail: "the job queue is unavailable; retry shortly".into(),
            validation_errors: None,
            internal: Some(other.to_string()),
        },
    }
}

/// One job of the caller's organization.
pub async fn get(jobs: &Jobs, actor: &Actor, id: &str) -> ApiResult<JobView> {
    actor.require(Permission::OrgView)?;
    match jobs.get(id).await.map_err(backend)? {
        Some(j) if j.organization == Some(actor.org_id) => Ok(j),
        _ => Err(ApiError::not_found("job")),
    }
}

/// Whether the caller may see the failed registry and change jobs (checked before the query
/// is validated, so that a caller without the right learns nothing from its errors).
pub fn may_manage(actor: &Actor) -> ApiResult<()> {
    actor.require(Permission::JobManage)
}

/// The failed jobs of the caller's organization in `queue`, newest first.
pub async fn failed(
    jobs: &Jobs,
    actor: &Actor,
    queue: &'static str,
    limit: u32,
) -> ApiResult<Vec<JobView>> {
    actor.require(Permission::JobManage)?;
    // The registry is shared by the organizations of one instance (SQL queue); read a wider
    // window and keep the caller's.
    let all = jobs
        .failed(queue, limit.saturating_mul(4).min(4000))
        .await
        .map_err(backend)?;
    Ok(all
        .into_iter()
        .filter(|j| j.organization == Some(actor.org_id))
        .take(limit as usize)
        .collect())
}

/// Puts a failed job back in its queue.
pub async fn requeue(db: &Db, jobs: &Jobs, actor: &Actor, id: &str) -> ApiResult<JobView> {
    // Another organization's job is "not found" before it is "forbidden".
    let job = get(jobs, actor, id).await?;
    actor.require(Permission::JobManage)?;
    if job.state != State::Failed {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "job {id} is {}; only failed jobs can be requeued",
                job.state.as_str()
            ),
        ));
    }
    if !jobs.requeue(id).await.map_err(backend)? {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("job {id} is no longer failed"),
        ));
    }
    audit::record(
        db,
        audit::Prepared::new(
            actor,
            "job.requeue",
            "job",
            0,
            json!({"job": id, "kind": job.kind}),
        ),
    )
    .await?;
    get(jobs, actor, id).await
}

/// Deletes a failed or finished job.
pub async fn delete(db: &Db, jobs: &Jobs, actor: &Actor, id: &str) -> ApiResult<()> {
    let job = get(jobs, actor, id).await?;
    actor.require(Permission::JobManage)?;
    if !matches!(job.state, State::Failed | State::Finished) {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "job {id} is {}; only failed or finished jobs can be deleted",
                job.state.as_str()
            ),
        ));
    }
    if !jobs.delete(id).await.map_err(backend)? {
        return Err(ApiError::not_found("job"));
    }
    audit::record(
        db,
        audit::Prepared::new(
            actor,
            "job.delete",
            "job",
            0,
            json!({"job": id, "kind": job.kind}),
        ),
    )
    .await
}
