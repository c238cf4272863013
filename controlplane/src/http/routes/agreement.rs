//! Agreement statistics of a project (ADR 0025). Read-only; reviewers and above.

use axum::{Json, extract::State};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    authz::Actor,
    error::{ApiError, ApiResult, ErrorCode},
    http::{
        AppState,
        extract::{Path, Query},
    },
    storage::agreement::{self, AgreementMatrix, ReliabilityView, TaskMatrix, TotalAgreement},
};

/// The mean task agreement of a project (tasks with two or more annotations).
#[utoipa::path(get, path = "/api/projects/{id}/stats/total_agreement", tag = "agreement", params(("id" = i64, Path)), responses((status = 200, body = TotalAgreement), (status = 404, body = crate::error::ErrorBody)))]
pub async fn total_agreement(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<TotalAgreement>> {
    Ok(Json(agreement::total(&state.db, &actor, id).await?))
}

/// The annotator × annotator agreement matrix of a project.
#[utoipa::path(get, path = "/api/projects/{id}/stats/IAA", tag = "agreement", params(("id" = i64, Path)), responses((status = 200, body = AgreementMatrix), (status = 404, body = crate::error::ErrorBody)))]
pub async fn iaa(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<AgreementMatrix>> {
    Ok(Json(agreement::iaa(&state.db, &actor, id).await?))
}

/// Query of the reliability statistics.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ReliabilityParams {
    /// The control tag (its `name` in the labeling configuration).
    pub from_name: Option<String>,
}

/// Cohen's kappa per rater pair, Fleiss' kappa and Krippendorff's alpha of one control.
#[utoipa::path(get, path = "/api/projects/{id}/stats/reliability", tag = "agreement", params(("id" = i64, Path), ReliabilityParams), responses((status = 200, body = ReliabilityView), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn reliability(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Query(params): Query<ReliabilityParams>,
) -> ApiResult<Json<ReliabilityView>> {
    let Some(from_name) = params.from_name.filter(|f| !f.trim().is_empty()) else {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "from_name is required: the name of a control tag of the labeling configuration",
        ));
    };
    Ok(Json(
        agreement::reliability(&state.db, &actor, id, &from_name).await?,
    ))
}

/// The pairwise agreement of one task's annotations.
#[utoipa::path(get, path = "/api/projects/{id}/tasks/{task_pk}/agreement-matrix", tag = "agreement", params(("id" = i64, Path), ("task_pk" = i64, Path)), responses((status = 200, body = TaskMatrix), (status = 404, body = crate::error::ErrorBody)))]
pub async fn task_matrix(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, task_pk)): Path<(i64, i64)>,
) -> ApiResult<Json<TaskMatrix>> {
    Ok(Json(
        agreement::task_matrix(&state.db, &actor, id, task_pk).await?,
    ))
}

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(total_agreement))
        .routes(routes!(iaa))
        .routes(routes!(reliability))
        .routes(routes!(task_matrix))
}
