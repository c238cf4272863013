//! Annotations.

use axum::{Json, extract::State, http::StatusCode, response::Response};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    authz::Actor,
    error::ApiResult,
    http::extract::Path,
    http::{
        AppState,
        extract::{JsonObject, Query, opt_bool},
        no_content,
    },
    storage::annotations::{self, AnnotationInput, AnnotationView},
    webhooks::{Action, Subject},
};

/// Query of an annotation create.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct CreateAnnotationParams {
    /// `1`/`true` marks the annotation as a skip.
    pub was_cancelled: Option<String>,
}

/// The annotations of a task (skips excluded), oldest first.
#[utoipa::path(get, path = "/api/tasks/{id}/annotations", tag = "annotations", params(("id" = i64, Path)), responses((status = 200, body = Vec<AnnotationView>), (status = 404, body = crate::error::ErrorBody)))]
pub async fn list_annotations(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<AnnotationView>>> {
    Ok(Json(
        annotations::list_for_task(&state.db, &actor, id).await?,
    ))
}

/// Creates an annotation (or a skip with `was_cancelled`). The result is validated against the
/// project's labeling configuration; submitting ends the caller's reservation of the task.
#[utoipa::path(post, path = "/api/tasks/{id}/annotations", tag = "annotations", params(("id" = i64, Path), CreateAnnotationParams), request_body = Object, responses((status = 201, body = AnnotationView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn create_annotation(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Query(params): Query<CreateAnnotationParams>,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<AnnotationView>)> {
    let mut input = AnnotationInput::from_body(&body)?;
    if opt_bool("was_cancelled", &params.was_cancelled)? == Some(true) {
        input.was_cancelled = Some(true);
    }
    let created = annotations::create(&state.db, &actor, id, input).await?;
    emit(
        &state,
        &actor,
        created.project,
        Action::AnnotationCreated,
        Subject::Annotation(created.id),
    )
    .await;
    Ok((StatusCode::CREATED, Json(created)))
}

/// One annotation.
#[utoipa::path(get, path = "/api/annotations/{id}", tag = "annotations", params(("id" = i64, Path)), responses((status = 200, body = AnnotationView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_annotation(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<AnnotationView>> {
    Ok(Json(annotations::get(&state.db, &actor, id).await?))
}

/// Updates an annotation.
#[utoipa::path(patch, path = "/api/annotations/{id}", tag = "annotations", params(("id" = i64, Path)), request_body = Object, responses((status = 200, body = AnnotationView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn update_annotation(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<AnnotationView>> {
    let input = AnnotationInput::from_body(&body)?;
    let updated = annotations::update(&state.db, &actor, id, input).await?;
    emit(
        &state,
        &actor,
        updated.project,
        Action::AnnotationUpdated,
        Subject::Annotation(updated.id),
    )
    .await;
    Ok(Json(updated))
}

/// Deletes an annotation.
#[utoipa::path(delete, path = "/api/annotations/{id}", tag = "annotations", params(("id" = i64, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_annotation(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let project = annotations::delete(&state.db, &actor, id).await?;
    emit(
        &state,
        &actor,
        project,
        Action::AnnotationsDeleted,
        Subject::AnnotationsDeleted(vec![id]),
    )
    .await;
    Ok(no_content())
}

/// Turns the caller's own annotation into a draft of theirs (Label Studio's "unskip"): the
/// answer is the new draft (of a new annotation of the task, with the annotation's result and
/// lead time); the annotation is deleted. Only its author may (`not_author` for anyone else).
#[utoipa::path(post, path = "/api/annotations/{id}/convert-to-draft", tag = "annotations", params(("id" = i64, Path)), responses((status = 201, body = crate::storage::drafts::DraftView), (status = 403, description = "not the annotation's author (`not_author`), or not allowed to annotate here", body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn convert_annotation_to_draft(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<(StatusCode, Json<crate::storage::drafts::DraftView>)> {
    Ok((
        StatusCode::CREATED,
        Json(convert_to_draft(&state, &actor, id).await?),
    ))
}

/// Turns annotation `id` of the caller into their draft and sends the webhook of its deletion:
/// `POST /api/annotations/{id}/convert-to-draft`, also used by the labeling page's form.
pub async fn convert_to_draft(
    state: &AppState,
    actor: &Actor,
    id: i64,
) -> ApiResult<crate::storage::drafts::DraftView> {
    let (project, draft) = annotations::convert_to_draft(&state.db, actor, id).await?;
    emit(
        state,
        actor,
        project,
        Action::AnnotationsDeleted,
        Subject::AnnotationsDeleted(vec![id]),
    )
    .await;
    Ok(draft)
}

async fn emit(state: &AppState, actor: &Actor, project: i64, action: Action, subject: Subject) {
    // A submitted or updated annotation counts towards the ML backends' next training.
    if matches!(
        action,
        Action::AnnotationCreated | Action::AnnotationUpdated
    ) && let Ok(row) = crate::storage::projects::load(&state.db, actor.org_id, project).await
    {
        crate::ml::after_annotation(&state.db, &state.jobs, &row).await;
    }
    crate::webhooks::emit(
        &state.db,
        &state.jobs,
        actor.org_id,
        Some(project),
        action,
        subject,
    )
    .await;
}

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_annotations, create_annotation))
        .routes(routes!(
            get_annotation,
            update_annotation,
            delete_annotation
        ))
        .routes(routes!(convert_annotation_to_draft))
}
