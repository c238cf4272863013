//! Reviews (Label Studio Enterprise's `/api/annotation-reviews/`), the review stream, annotation
//! history and comments (ADR 0024).

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::Response,
};
use serde::Deserialize;
use serde_json::Value;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    authz::Actor,
    error::{ApiError, ApiResult, ErrorCode},
    http::{
        AppState,
        extract::{JsonObject, Path, Query, opt_int},
        no_content,
    },
    storage::{
        comments::{self, CommentInput, CommentRow},
        reviews::{self, HistoryRow, ReviewFilter, ReviewInput, ReviewView},
        routing::{self, BulkInput, RoutingRule},
        tasks::TaskView,
    },
    webhooks::{Action, Subject},
};

/// Query of a review list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ReviewListParams {
    /// Reviews of this annotation.
    pub annotation: Option<String>,
    /// Reviews in this project.
    #[serde(rename = "annotation__task__project")]
    pub project: Option<String>,
    /// `id`, `created_at` or `updated_at`; `-` for descending.
    pub ordering: Option<String>,
}

/// Reviews of an annotation (`annotation`) or a project (`annotation__task__project`); an
/// annotator sees those of their own annotations only.
#[utoipa::path(get, path = "/api/annotation-reviews", tag = "reviews", params(ReviewListParams), responses((status = 200, body = Vec<ReviewView>)))]
pub async fn list_reviews(
    State(state): State<AppState>,
    actor: Actor,
    Query(params): Query<ReviewListParams>,
) -> ApiResult<Json<Vec<ReviewView>>> {
    let filter = ReviewFilter {
        annotation: opt_int("annotation", &params.annotation)?,
        project: opt_int("annotation__task__project", &params.project)?,
        task: None,
        ordering: params.ordering.filter(|o| !o.is_empty()),
    };
    Ok(Json(reviews::list(&state.db, &actor, filter).await?))
}

/// Reviews an annotation: `{annotation, accepted, result?, comment?, remove_from_queue?,
/// reject_action?, started_at?}`. Accept; fix and accept (`accepted: true` with the fixed
/// `result`, which replaces the annotation's, the earlier one kept in its history); reject,
/// by the project's `review_settings.requeue_rejected_tasks_mode`.
#[utoipa::path(post, path = "/api/annotation-reviews", tag = "reviews", request_body = Object, responses((status = 201, body = ReviewView), (status = 400, body = crate::error::ErrorBody), (status = 403, description = "not a reviewer here, or the caller's own annotation (`self_review`)", body = crate::error::ErrorBody)))]
pub async fn create_review(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<ReviewView>)> {
    let input = ReviewInput::from_body(&body)?;
    let created = reviews::create(&state.db, &actor, input).await?;
    emit(&state, &actor, &created, Action::ReviewCreated).await;
    Ok((StatusCode::CREATED, Json(created)))
}

/// One review.
#[utoipa::path(get, path = "/api/annotation-reviews/{id}", tag = "reviews", params(("id" = i64, Path)), responses((status = 200, body = ReviewView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_review(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<ReviewView>> {
    Ok(Json(reviews::get(&state.db, &actor, id).await?))
}

/// Changes a review and applies its new outcome.
#[utoipa::path(patch, path = "/api/annotation-reviews/{id}", tag = "reviews", params(("id" = i64, Path)), request_body = Object, responses((status = 200, body = ReviewView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn update_review(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<ReviewView>> {
    let input = ReviewInput::from_body(&body)?;
    let updated = reviews::update(&state.db, &actor, id, input).await?;
    emit(&state, &actor, &updated, Action::ReviewUpdated).await;
    Ok(Json(updated))
}

/// Deletes a review (a removal it made is undone).
#[utoipa::path(delete, path = "/api/annotation-reviews/{id}", tag = "reviews", params(("id" = i64, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_review(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let (project, annotation) = reviews::delete(&state.db, &actor, id).await?;
    // Undoing the review changes the annotation and its review counts (ADR 0052).
    crate::exportchanges::note_annotations(&state.db, &state.jobs, project, vec![annotation]).await;
    crate::webhooks::emit(
        &state.db,
        &state.jobs,
        actor.org_id,
        Some(project),
        Action::ReviewsDeleted,
        Subject::ReviewsDeleted(vec![id]),
    )
    .await;
    Ok(no_content())
}

/// The next annotation to review, reserved for the caller: the task with that one annotation
/// in `annotations`, `queue: "Review queue"` and `unique_lock_id`, bucket URIs of its data
/// resolved into media links as in `GET /api/tasks/{id}`. 404 `nothing_to_review` when none is
/// left.
#[utoipa::path(get, path = "/api/projects/{id}/review/next", tag = "reviews", params(("id" = i64, Path)), responses((status = 200, body = TaskView), (status = 404, description = "nothing left to review", body = crate::error::ErrorBody)))]
pub async fn next_review(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<TaskView>> {
    let view = reviews::next(&state.db, &actor, id, state.config.task_lock_ttl_secs).await?;
    Ok(Json(super::tasks::with_resolved_uris(&state, view).await?))
}

/// Query of the routing rule list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct RoutingParams {
    /// `position` (the default) or `-position`.
    pub ordering: Option<String>,
}

/// The project's review routing rules in order (ADR 0057): the first rule matching an
/// annotation (by its annotator, by a label value in its result) names the reviewers the
/// review stream hands it to.
#[utoipa::path(get, path = "/api/projects/{id}/review-routing-rules", tag = "reviews", params(("id" = i64, Path), RoutingParams), responses((status = 200, body = Vec<RoutingRule>), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn list_routing_rules(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Query(params): Query<RoutingParams>,
) -> ApiResult<Json<Vec<RoutingRule>>> {
    Ok(Json(
        routing::list(&state.db, &actor, id, params.ordering.as_deref()).await?,
    ))
}

/// Replaces the project's review routing rules with `{"rules": [...]}` at once (ADR 0057);
/// answers the new list. A bad rule is 400 `invalid_routing_rule` naming it, and the old list
/// stays.
#[utoipa::path(post, path = "/api/projects/{id}/review-routing-rules/bulk", tag = "reviews", params(("id" = i64, Path)), request_body = BulkInput, responses((status = 200, body = Vec<RoutingRule>), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn replace_routing_rules(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Vec<RoutingRule>>> {
    let input: BulkInput = serde_json::from_value(Value::Object(body)).map_err(|e| {
        ApiError::field(
            ErrorCode::InvalidRoutingRule,
            "rules",
            format!(
                "{e}; send {{\"rules\": [{{\"name\", \"annotators\": [user ids], \"labels\": [values], \"reviewers\": [user ids]}}]}}"
            ),
        )
    })?;
    Ok(Json(routing::replace(&state.db, &actor, id, input).await?))
}

/// The kept versions of an annotation's result, oldest first: a reviewer's fix keeps the
/// annotator's version and the fix.
#[utoipa::path(get, path = "/api/annotations/{id}/history", tag = "reviews", params(("id" = i64, Path)), responses((status = 200, body = Vec<HistoryRow>), (status = 404, body = crate::error::ErrorBody)))]
pub async fn annotation_history(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<HistoryRow>>> {
    Ok(Json(reviews::history(&state.db, &actor, id).await?))
}

/// Query of a comment list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct CommentListParams {
    /// Comments on this annotation.
    pub annotation: Option<String>,
    /// Comments in this project.
    pub projects: Option<String>,
}

/// Comments of an annotation or a project that the caller may see, oldest first.
#[utoipa::path(get, path = "/api/comments", tag = "reviews", params(CommentListParams), responses((status = 200, body = Vec<CommentRow>), (status = 400, body = crate::error::ErrorBody)))]
pub async fn list_comments(
    State(state): State<AppState>,
    actor: Actor,
    Query(params): Query<CommentListParams>,
) -> ApiResult<Json<Vec<CommentRow>>> {
    Ok(Json(
        comments::list(
            &state.db,
            &actor,
            opt_int("annotation", &params.annotation)?,
            opt_int("projects", &params.projects)?,
        )
        .await?,
    ))
}

/// Query of the comment export.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct CommentExportParams {
    /// Comments of these projects: `1` or `1,2,3`.
    pub projects: Option<String>,
    /// Comments on this annotation.
    pub annotation: Option<String>,
    /// Time zone of the times: only `UTC` (the default).
    pub tz: Option<String>,
}

/// The comments of projects (or of an annotation) that the caller may see, as a CSV file.
#[utoipa::path(get, path = "/api/comments/export", tag = "reviews", params(CommentExportParams), responses((status = 200, description = "CSV: id, project, task, annotation, review, text, region_ref, classifications, is_resolved, resolved_at, created_by, created_by_email, created_at, updated_at", content_type = "text/csv"), (status = 400, body = crate::error::ErrorBody)))]
pub async fn export_comments(
    State(state): State<AppState>,
    actor: Actor,
    Query(params): Query<CommentExportParams>,
) -> ApiResult<Response> {
    if let Some(tz) = params.tz.as_deref().map(str::trim)
        && !tz.is_empty()
        && !tz.eq_ignore_ascii_case("UTC")
    {
        return Err(ApiError::field(
            ErrorCode::InvalidQuery,
            "tz",
            format!("{tz:?}: only UTC is supported; leave tz out"),
        ));
    }
    let mut projects = Vec::new();
    for part in params
        .projects
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        projects.push(part.parse::<i64>().map_err(|_| {
            ApiError::field(
                ErrorCode::InvalidQuery,
                "projects",
                format!("{part:?} is not a project id"),
            )
        })?);
    }
    if projects.len() > comments::MAX_EXPORT_PROJECTS {
        return Err(ApiError::field(
            ErrorCode::InvalidQuery,
            "projects",
            format!(
                "at most {} projects at a time",
                comments::MAX_EXPORT_PROJECTS
            ),
        ));
    }
    let annotation = opt_int("annotation", &params.annotation)?;
    let csv = comments::export_csv(&state.db, &actor, &projects, annotation).await?;
    Response::builder()
        .header(header::CONTENT_TYPE, "text/csv; charset=utf-8")
        .header(
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"comments.csv\"",
        )
        .body(axum::body::Body::from(csv))
        .map_err(ApiError::internal)
}

/// Comments on an annotation: `{"annotation", "text", "region_ref"?, "classifications"?,
/// "is_resolved"?}` (comments on drafts are not supported: 400).
#[utoipa::path(post, path = "/api/comments", tag = "reviews", request_body = Object, responses((status = 201, body = CommentRow), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn create_comment(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<CommentRow>)> {
    if body.get("draft").is_some_and(|d| !d.is_null()) {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "draft",
            "comments on drafts are not supported; comment on the submitted annotation",
        ));
    }
    let annotation = match body.get("annotation") {
        Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64().unwrap_or_default(),
        _ => {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "annotation",
                "this field is required (an annotation id)",
            ));
        }
    };
    let input = CommentInput::from_body(&body)?;
    let made = comments::create(&state.db, &actor, annotation, &input).await?;
    Ok((StatusCode::CREATED, Json(made)))
}

/// One comment.
#[utoipa::path(get, path = "/api/comments/{id}", tag = "reviews", params(("id" = i64, Path)), responses((status = 200, body = CommentRow), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_comment(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<CommentRow>> {
    Ok(Json(comments::get(&state.db, &actor, id).await?))
}

/// Changes a comment (`text`, `region_ref`, `classifications` by its author; `is_resolved` by
/// its author, the annotation's author, or reviewers and above).
#[utoipa::path(patch, path = "/api/comments/{id}", tag = "reviews", params(("id" = i64, Path)), request_body = Object, responses((status = 200, body = CommentRow), (status = 400, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn update_comment(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<CommentRow>> {
    let input = CommentInput::from_body(&body)?;
    Ok(Json(comments::update(&state.db, &actor, id, &input).await?))
}

/// Deletes a comment (its author only).
#[utoipa::path(delete, path = "/api/comments/{id}", tag = "reviews", params(("id" = i64, Path)), responses((status = 204), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_comment(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    comments::delete(&state.db, &actor, id).await?;
    Ok(no_content())
}

pub(crate) async fn emit(state: &AppState, actor: &Actor, review: &ReviewView, action: Action) {
    crate::webhooks::emit(
        &state.db,
        &state.jobs,
        actor.org_id,
        Some(review.project),
        action,
        Subject::Review {
            review: serde_json::to_value(review).unwrap_or_default(),
            annotation: review.annotation,
        },
    )
    .await;
}

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_reviews, create_review))
        .routes(routes!(get_review, update_review, delete_review))
        .routes(routes!(next_review))
        .routes(routes!(list_routing_rules))
        .routes(routes!(replace_routing_rules))
        .routes(routes!(annotation_history))
        .routes(routes!(list_comments, create_comment))
        .routes(routes!(export_comments))
        .routes(routes!(get_comment, update_comment, delete_comment))
}
