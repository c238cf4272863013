//! Drafts (ADR 0044): the caller's unsubmitted results, as Label Studio's editor saves them.

use axum::{Json, extract::State, http::StatusCode, response::Response};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    authz::Actor,
    error::ApiResult,
    http::{
        AppState,
        extract::{JsonObject, Path},
        no_content,
    },
    storage::drafts::{self, DraftInput, DraftView},
};

/// The caller's drafts of a task, oldest first.
#[utoipa::path(get, path = "/api/tasks/{id}/drafts", tag = "drafts", params(("id" = i64, Path)), responses((status = 200, body = Vec<DraftView>), (status = 404, body = crate::error::ErrorBody)))]
pub async fn list_task_drafts(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<DraftView>>> {
    Ok(Json(drafts::list(&state.db, &actor, id, None).await?))
}

/// Saves a draft of a new annotation of the task: `{result, lead_time?, was_postponed?}`. The
/// result is validated against the labeling configuration (an empty one is allowed).
#[utoipa::path(post, path = "/api/tasks/{id}/drafts", tag = "drafts", params(("id" = i64, Path)), request_body = Object, responses((status = 201, body = DraftView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn create_task_draft(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<DraftView>)> {
    let input = DraftInput::from_body(&body)?;
    let created = drafts::create(&state.db, &actor, id, None, input).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// The caller's drafts of one annotation of the task.
#[utoipa::path(get, path = "/api/tasks/{id}/annotations/{annotation_pk}/drafts", tag = "drafts", params(("id" = i64, Path), ("annotation_pk" = i64, Path)), responses((status = 200, body = Vec<DraftView>), (status = 404, body = crate::error::ErrorBody)))]
pub async fn list_annotation_drafts(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, annotation)): Path<(i64, i64)>,
) -> ApiResult<Json<Vec<DraftView>>> {
    Ok(Json(
        drafts::list(&state.db, &actor, id, Some(annotation)).await?,
    ))
}

/// Saves a draft of changes to one annotation of the task (which the caller must be able to see).
#[utoipa::path(post, path = "/api/tasks/{id}/annotations/{annotation_pk}/drafts", tag = "drafts", params(("id" = i64, Path), ("annotation_pk" = i64, Path)), request_body = Object, responses((status = 201, body = DraftView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn create_annotation_draft(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, annotation)): Path<(i64, i64)>,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<DraftView>)> {
    let input = DraftInput::from_body(&body)?;
    let created = drafts::create(&state.db, &actor, id, Some(annotation), input).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// One of the caller's drafts (anyone else's is not found).
#[utoipa::path(get, path = "/api/drafts/{id}", tag = "drafts", params(("id" = i64, Path)), responses((status = 200, body = DraftView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_draft(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<DraftView>> {
    Ok(Json(drafts::get(&state.db, &actor, id).await?))
}

/// Changes one of the caller's drafts: `{result?, lead_time?, was_postponed?}`.
#[utoipa::path(patch, path = "/api/drafts/{id}", tag = "drafts", params(("id" = i64, Path)), request_body = Object, responses((status = 200, body = DraftView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn update_draft(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<DraftView>> {
    let input = DraftInput::from_body(&body)?;
    Ok(Json(drafts::update(&state.db, &actor, id, input).await?))
}

/// Deletes one of the caller's drafts.
#[utoipa::path(delete, path = "/api/drafts/{id}", tag = "drafts", params(("id" = i64, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_draft(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    drafts::delete(&state.db, &actor, id).await?;
    Ok(no_content())
}

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_task_drafts, create_task_draft))
        .routes(routes!(list_annotation_drafts, create_annotation_draft))
        .routes(routes!(get_draft, update_draft, delete_draft))
}
