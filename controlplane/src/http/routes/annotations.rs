//! Annotations.

use axum::{Json, extract::State, http::StatusCode, response::Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    authz::{Actor, Permission},
    error::{ApiError, ApiResult, ErrorCode},
    http::extract::Path,
    http::{
        AppState,
        extract::{JsonObject, Query, opt_bool},
        no_content,
    },
    storage::{
        annotations::{self, AnnotationInput, AnnotationView},
        bulk,
        views::ViewRow,
    },
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
    // A submitted or updated annotation (or many, labeled in bulk) counts towards the ML
    // backends' next training.
    if matches!(
        action,
        Action::AnnotationCreated | Action::AnnotationUpdated | Action::AnnotationsCreated
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

/// One annotation made by bulk labeling.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkCreatedView {
    /// The new annotation's id.
    pub id: i64,
}

/// The answer of a bulk delete.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkDeletedView {
    /// How many annotations were deleted.
    pub deleted_count: usize,
}

/// Bulk labeling (Label Studio Enterprise's `annotations.create_bulk`, ADR 0061): one answer
/// (`result`, optional `was_cancelled`, `ground_truth`, `lead_time`, `completed_by`) for many
/// tasks, given as `tasks` (ids) or as `selected_items` (`{"all": false, "included": [ids]}`
/// or `{"all": true, "excluded": [ids]}`, with `project` and optional `filters`). At most 1,000
/// tasks; all or nothing. Each new annotation has `bulk_created`. Tasks the author annotated
/// before are left alone. Reviewer and above (`annotation.manage`); the project's controls must
/// all be whole-task Choices, DateTime, Number, Rating, Taxonomy or TextArea
/// (`config_not_suitable_for_bulk` otherwise).
#[utoipa::path(post, path = "/api/annotations/bulk", tag = "annotations", request_body = Object, responses((status = 201, body = Vec<BulkCreatedView>), (status = 400, description = "a bad field (`validation_error`, `invalid_result`) or a configuration bulk labeling cannot write (`config_not_suitable_for_bulk`)", body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn create_bulk(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<Vec<BulkCreatedView>>)> {
    let input = AnnotationInput::from_body(&body)?;
    let project = match body.get("project") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| {
            ApiError::field(
                ErrorCode::ValidationError,
                "project",
                "must be a project id",
            )
        })?),
    };
    let selection = body
        .get("selected_items")
        .or_else(|| body.get("selectedItems"))
        .filter(|v| !v.is_null());
    let listed = match (body.get("tasks"), body.get("task")) {
        (Some(v), _) if !v.is_null() => Some(bulk::task_id_list(v, "tasks")?),
        (_, Some(Value::Number(n))) => Some(vec![n.as_i64().ok_or_else(|| {
            ApiError::field(ErrorCode::ValidationError, "task", "must be a task id")
        })?]),
        _ => None,
    };
    let (project, task_ids) = match (listed, selection) {
        (Some(_), Some(_)) => {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "tasks",
                "give either tasks or selected_items, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "tasks",
                "select the tasks to label: tasks (a list of ids), or selected_items with project",
            ));
        }
        (Some(ids), None) => {
            let project = match (project, ids.first()) {
                (Some(p), _) => p,
                // The project of the first task; the others must be of the same project.
                (None, Some(&first)) => {
                    crate::storage::access::project_of_task(
                        &state.db,
                        &actor,
                        first,
                        Permission::ProjectView,
                    )
                    .await?
                    .row
                    .id
                }
                (None, None) => {
                    return Err(ApiError::field(
                        ErrorCode::ValidationError,
                        "tasks",
                        "select at least one task",
                    ));
                }
            };
            (project, ids)
        }
        (None, Some(selected)) => {
            let Some(project) = project else {
                return Err(ApiError::field(
                    ErrorCode::ValidationError,
                    "project",
                    "this field is required with selected_items",
                ));
            };
            let mut dm = Map::new();
            dm.insert("selectedItems".into(), selected.clone());
            if let Some(filters) = body.get("filters") {
                dm.insert("filters".into(), filters.clone());
            }
            let ids = selected_tasks(&state, &actor, project, &dm, None).await?;
            (project, ids)
        }
    };
    let created = label(&state, &actor, project, &task_ids, &input).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            created
                .created
                .into_iter()
                .map(|id| BulkCreatedView { id })
                .collect(),
        ),
    ))
}

/// The tasks of `project` a data-manager selection (`selectedItems`, `filters` or `view`'s
/// filters) means for bulk labeling: at most [`bulk::MAX_TASKS`] plus one, so a selection over
/// the limit is refused by [`bulk::label_tasks`] without reading every id of the project.
pub async fn selected_tasks(
    state: &AppState,
    actor: &Actor,
    project: i64,
    dm: &Map<String, Value>,
    view: Option<&ViewRow>,
) -> ApiResult<Vec<i64>> {
    // Access first: the selection is read with the caller's visibility.
    crate::storage::access::project(&state.db, actor, project, Permission::AnnotationManage)
        .await?;
    super::tasks::selected_task_ids_capped(state, actor, project, dm, view, bulk::MAX_TASKS).await
}

/// Labels `task_ids` of `project` with `input` ([`bulk::label_tasks`]) and sends what a
/// submit sends: the `ANNOTATIONS_CREATED` webhook and the ML backends' training count.
/// `POST /api/annotations/bulk/` and the data page's bulk-label form both land here.
pub async fn label(
    state: &AppState,
    actor: &Actor,
    project: i64,
    task_ids: &[i64],
    input: &AnnotationInput,
) -> ApiResult<bulk::Labeled> {
    let labeled = bulk::label_tasks(&state.db, actor, project, task_ids, input).await?;
    if !labeled.created.is_empty() {
        emit(
            state,
            actor,
            project,
            Action::AnnotationsCreated,
            Subject::Annotations(labeled.created.clone()),
        )
        .await;
    }
    Ok(labeled)
}

/// Deletes up to 100 annotations of one project (`{"ids": [...], "project": id}`, Label Studio
/// Enterprise's `annotations.delete_bulk`): `{"deleted_count": n}`. An id that is not an
/// annotation of the project refuses the whole call (400 naming it); nothing is deleted.
/// Reviewer and above (`annotation.manage`).
#[utoipa::path(post, path = "/api/annotations/bulk-delete", tag = "annotations", request_body = Object, responses((status = 200, body = BulkDeletedView), (status = 400, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_bulk(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<BulkDeletedView>> {
    let project = body.get("project").and_then(Value::as_i64).ok_or_else(|| {
        ApiError::field(
            ErrorCode::ValidationError,
            "project",
            "this field is required: the project id of the annotations",
        )
    })?;
    let ids = bulk::task_id_list(body.get("ids").unwrap_or(&Value::Null), "ids")?;
    let deleted = bulk::delete_annotations(&state.db, &actor, project, &ids).await?;
    let n = deleted.len();
    emit(
        &state,
        &actor,
        project,
        Action::AnnotationsDeleted,
        Subject::AnnotationsDeleted(deleted),
    )
    .await;
    Ok(Json(BulkDeletedView { deleted_count: n }))
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
        .routes(routes!(create_bulk))
        .routes(routes!(delete_bulk))
}
