//! Background jobs: status for members of the job's organization, the failed registry for
//! admins (`job.manage`). Authorization is in `jobs::access`.

use axum::{Json, extract::State, response::Response};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    authz::Actor,
    error::{ApiError, ApiResult, ErrorCode},
    http::extract::Path,
    http::{AppState, extract::Query, no_content},
    jobs::{self, JobView, access},
};

/// Query of the job list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct JobListParams {
    /// Queue: `critical`, `high`, `default` or `low`.
    pub queue: Option<String>,
    /// Only `failed` is listed (the failed registry).
    pub state: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// A job of the caller's organization: state, attempts, progress, result or last error.
#[utoipa::path(get, path = "/api/jobs/{id}", tag = "jobs", params(("id" = String, Path)), responses((status = 200, body = JobView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_job(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    Ok(Json(access::get(&state.jobs, &actor, &id).await?))
}

/// The failed jobs of a queue (newest first).
#[utoipa::path(get, path = "/api/jobs", tag = "jobs", params(JobListParams), responses((status = 200, body = Vec<JobView>), (status = 400, body = crate::error::ErrorBody)))]
pub async fn list_jobs(
    State(state): State<AppState>,
    actor: Actor,
    Query(params): Query<JobListParams>,
) -> ApiResult<Json<Vec<JobView>>> {
    access::may_manage(&actor)?;
    let queue = jobs::queue(params.queue.as_deref().unwrap_or_default()).ok_or_else(|| {
        ApiError::field(
            ErrorCode::InvalidQuery,
            "queue",
            format!("must be one of {}", jobs::QUEUES.join(", ")),
        )
    })?;
    if params.state.as_deref() != Some("failed") {
        return Err(ApiError::field(
            ErrorCode::InvalidQuery,
            "state",
            "only state=failed is listed; get one job by its id",
        ));
    }
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field(
            ErrorCode::InvalidQuery,
            "limit",
            "must be between 1 and 1000",
        ));
    }
    Ok(Json(
        access::failed(&state.jobs, &actor, queue, limit).await?,
    ))
}

/// Puts a failed job back in its queue with fresh attempts.
#[utoipa::path(post, path = "/api/jobs/{id}/requeue", tag = "jobs", params(("id" = String, Path)), responses((status = 200, body = JobView), (status = 409, body = crate::error::ErrorBody)))]
pub async fn requeue_job(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    Ok(Json(
        access::requeue(&state.db, &state.jobs, &actor, &id).await?,
    ))
}

/// Deletes a failed or finished job.
#[utoipa::path(delete, path = "/api/jobs/{id}", tag = "jobs", params(("id" = String, Path)), responses((status = 204), (status = 409, body = crate::error::ErrorBody)))]
pub async fn delete_job(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    access::delete(&state.db, &state.jobs, &actor, &id).await?;
    Ok(no_content())
}

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs))
        .routes(routes!(get_job, delete_job))
        .routes(routes!(requeue_job))
}
