//! Predictions.

use axum::{Json, extract::State, http::StatusCode, response::Response};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    authz::{Actor, Permission},
    error::ErrorCode,
    error::{ApiError, ApiResult},
    http::extract::Path,
    http::pagination::Page,
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
    /// 1-based page of the list (with `page_size`); without it the whole list, which may hold at
    /// most `page_size_max` predictions.
    pub page: Option<String>,
    /// Predictions per page (default and cap: `page_size_max`).
    pub page_size: Option<String>,
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
    let max = state.config.page_size_max;
    let paged = params.page.is_some() || params.page_size.is_some();
    let page = Page::new(
        opt_int("page", &params.page)?,
        opt_int("page_size", &params.page_size)?,
        max,
        max,
    )?;
    // Unpaged, one more than the cap is read to tell a complete list from a cut one.
    let limit = if paged { page.size } else { max + 1 };
    let mut rows =
        predictions::list(&state.db, &actor, task, project, (page.offset(), limit)).await?;
    if !paged && rows.len() as i64 > max {
        rows.clear();
        return Err(ApiError::field(
            ErrorCode::InvalidQuery,
            "page",
            format!(
                "more than {max} predictions match; filter by task, or read them in pages with page and page_size"
            ),
        ));
    }
    Ok(Json(rows))
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
