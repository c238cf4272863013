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
    storage::{
        agreement::{self, AgreementMatrix, ReliabilityView, TaskMatrix, TotalAgreement},
        annotator_stats::{
            self as stats, AgreementByUser, AnnotatorAgreement, Finished, LeadTimes, ReviewScore,
            ReviewScores, TruthAgreement, UsersParams,
        },
    },
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

/// Query of one user's ground-truth agreement and review score.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PerLabelParams {
    /// Per-label scores: not available; `true` is refused with 400.
    pub per_label: Option<bool>,
}

/// Query of the finished-tasks statistic.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct FinishedParams {
    /// The user (default: the caller).
    pub user_pk: Option<i64>,
}

/// One annotator's mean agreement with the other annotators on the tasks they share.
#[utoipa::path(get, path = "/api/projects/{id}/stats/agreement_annotator/{user_pk}", tag = "agreement", params(("id" = i64, Path), ("user_pk" = i64, Path)), responses((status = 200, body = AnnotatorAgreement), (status = 404, body = crate::error::ErrorBody)))]
pub async fn agreement_annotator(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, user_pk)): Path<(i64, i64)>,
) -> ApiResult<Json<AnnotatorAgreement>> {
    Ok(Json(
        stats::annotator_agreement(&state.db, &actor, id, user_pk).await?,
    ))
}

/// Several annotators' mean agreement with the others.
#[utoipa::path(get, path = "/api/projects/{id}/stats/agreement_annotators", tag = "agreement", params(("id" = i64, Path), UsersParams), responses((status = 200, body = AgreementByUser), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn agreement_annotators(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Query(params): Query<UsersParams>,
) -> ApiResult<Json<AgreementByUser>> {
    Ok(Json(
        stats::annotators_agreement(&state.db, &actor, id, params.ids.as_deref()).await?,
    ))
}

/// Several annotators' mean agreement with ground truth.
#[utoipa::path(get, path = "/api/projects/{id}/stats/agreement-groundtruth", tag = "agreement", params(("id" = i64, Path), UsersParams), responses((status = 200, body = AgreementByUser), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn users_truth_agreement(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Query(params): Query<UsersParams>,
) -> ApiResult<Json<AgreementByUser>> {
    Ok(Json(
        stats::users_truth_agreement(&state.db, &actor, id, &params).await?,
    ))
}

/// One annotator's mean agreement with ground truth.
#[utoipa::path(get, path = "/api/projects/{id}/users/{user_pk}/stats/agreement-groundtruth", tag = "agreement", params(("id" = i64, Path), ("user_pk" = i64, Path), PerLabelParams), responses((status = 200, body = TruthAgreement), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn user_truth_agreement(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, user_pk)): Path<(i64, i64)>,
    Query(params): Query<PerLabelParams>,
) -> ApiResult<Json<TruthAgreement>> {
    Ok(Json(
        stats::user_truth_agreement(&state.db, &actor, id, user_pk, params.per_label).await?,
    ))
}

/// Tasks a user finished (submitted) in a project, and their share of the project.
#[utoipa::path(get, path = "/api/projects/{id}/stats/finished", tag = "agreement", params(("id" = i64, Path), FinishedParams), responses((status = 200, body = Finished), (status = 404, body = crate::error::ErrorBody)))]
pub async fn finished(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Query(params): Query<FinishedParams>,
) -> ApiResult<Json<Finished>> {
    Ok(Json(
        stats::finished(&state.db, &actor, id, params.user_pk).await?,
    ))
}

/// Lead time (seconds) per annotator: mean, median and sum.
#[utoipa::path(get, path = "/api/projects/{id}/stats/lead_time", tag = "agreement", params(("id" = i64, Path)), responses((status = 200, body = LeadTimes), (status = 404, body = crate::error::ErrorBody)))]
pub async fn lead_time(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<LeadTimes>> {
    Ok(Json(stats::lead_times(&state.db, &actor, id).await?))
}

/// Several annotators' review and performance scores.
#[utoipa::path(get, path = "/api/projects/{id}/user-stats/review_score", tag = "agreement", params(("id" = i64, Path), UsersParams), responses((status = 200, body = ReviewScores), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn users_review_score(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Query(params): Query<UsersParams>,
) -> ApiResult<Json<ReviewScores>> {
    Ok(Json(
        stats::users_review_scores(&state.db, &actor, id, &params).await?,
    ))
}

/// One annotator's review and performance scores.
#[utoipa::path(get, path = "/api/projects/{id}/user-stats/{user_pk}/review_score", tag = "agreement", params(("id" = i64, Path), ("user_pk" = i64, Path), PerLabelParams), responses((status = 200, body = ReviewScore), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn user_review_score(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, user_pk)): Path<(i64, i64)>,
    Query(params): Query<PerLabelParams>,
) -> ApiResult<Json<ReviewScore>> {
    Ok(Json(
        stats::user_review_score(&state.db, &actor, id, user_pk, params.per_label).await?,
    ))
}

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(total_agreement))
        .routes(routes!(iaa))
        .routes(routes!(reliability))
        .routes(routes!(task_matrix))
        .routes(routes!(agreement_annotator))
        .routes(routes!(agreement_annotators))
        .routes(routes!(users_truth_agreement))
        .routes(routes!(user_truth_agreement))
        .routes(routes!(finished))
        .routes(routes!(lead_time))
        .routes(routes!(users_review_score))
        .routes(routes!(user_review_score))
}
