//! Predictions.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::Response,
};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    authz::{Actor, Permission},
    error::{ApiError, ApiResult},
    http::{
        AppState,
        extract::{JsonObject, Query, opt_int},
        no_content,
    },
    storage::predictions::{self, PredictionInput, PredictionView},
};

/// Query of the prediction list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PredictionListParams {
    /// Task id.
    pub task: Option<String>,
    /// Project id.
    pub project: Option<String>,
    /// Project id (Label Studio's spelling).
    #[serde(rename = "task__project")]
    #[param(rename = "task__project")]
    pub task_project: Option<String>,
}

/// Lists predictions by task or project.
#[utoipa::path(get, path = "/api/predictions", tag = "predictions", params(PredictionListParams), responses((status = 200, body = Vec<PredictionView>)))]
pub async fn list_predictions(
    State(state): State<AppState>,
    actor: Actor,
    Query(params): Query<PredictionListParams>,
) -> ApiResult<Json<Vec<PredictionView>>> {
    let task = opt_int("task", &params.task)?;
    let project =
        opt_int("project", &params.project)?.or(opt_int("task__project", &params.task_project)?);
    Ok(Json(
        predictions::list(&state.db, &actor, task, project).await?,
    ))
}

/// Creates a prediction for a task.
#[utoipa::path(post, path = "/api/predictions", tag = "predictions", request_body = Object, responses((status = 201, body = PredictionView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn create_prediction(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<PredictionView>)> {
    let input = PredictionInput::from_body(&body, "")?;
    let ids = predictions::create_many(&state.db, &actor, None, vec![input]).await?;
    let id = ids
        .first()
        .copied()
        .ok_or_else(|| ApiError::internal("no prediction created"))?;
    Ok((
        StatusCode::CREATED,
        Json(
            predictions::get_row(&state.db, &actor, id, Permission::ProjectView)
                .await?
                .0
                .view(),
        ),
    ))
}

/// One prediction.
#[utoipa::path(get, path = "/api/predictions/{id}", tag = "predictions", params(("id" = i64, Path)), responses((status = 200, body = PredictionView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_prediction(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<PredictionView>> {
    Ok(Json(
        predictions::get_row(&state.db, &actor, id, Permission::ProjectView)
            .await?
            .0
            .view(),
    ))
}

/// Updates a prediction.
#[utoipa::path(patch, path = "/api/predictions/{id}", tag = "predictions", params(("id" = i64, Path)), request_body = Object, responses((status = 200, body = PredictionView)))]
pub async fn update_prediction(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<PredictionView>> {
    let input = PredictionInput::from_body(&body, "")?;
    Ok(Json(
        predictions::update(&state.db, &actor, id, input).await?,
    ))
}

/// Deletes a prediction.
#[utoipa::path(delete, path = "/api/predictions/{id}", tag = "predictions", params(("id" = i64, Path)), responses((status = 204)))]
pub async fn delete_prediction(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    predictions::delete(&state.db, &actor, id).await?;
    Ok(no_content())
}

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_predictions, create_prediction))
        .routes(routes!(
            get_prediction,
            update_prediction,
            delete_prediction
        ))
}
