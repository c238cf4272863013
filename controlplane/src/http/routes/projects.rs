//! Projects.

use axum::{
    Json,
    extract::{OriginalUri, State},
    http::StatusCode,
    response::Response,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    authz::{Actor, Permission},
    error::{ApiError, ApiResult, ErrorCode},
    http::extract::Path,
    http::{
        AppState,
        extract::{JsonObject, Query, opt_bool, opt_int},
        no_content,
        pagination::{Page, links},
    },
    storage::projects::{self, ProjectFilter, ProjectView},
    webhooks::{Action, Subject},
};

/// Query of the project list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ProjectListParams {
    /// 1-based page.
    pub page: Option<String>,
    /// Page size (default 30, max 100).
    pub page_size: Option<String>,
    /// Comma-separated ids.
    pub ids: Option<String>,
    /// Title contains.
    pub title: Option<String>,
    /// Search in titles.
    pub search: Option<String>,
    /// Comma-separated workspace ids.
    pub workspaces: Option<String>,
    /// `true`: only archived projects; default: only active ones.
    pub archived: Option<String>,
}

/// A page of projects.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProjectPage {
    /// Total projects.
    pub count: i64,
    /// Next page.
    pub next: Option<String>,
    /// Previous page.
    pub previous: Option<String>,
    /// Projects.
    pub results: Vec<ProjectView>,
}

/// Lists the caller's projects, newest first.
#[utoipa::path(get, path = "/api/projects", tag = "projects", params(ProjectListParams), responses((status = 200, body = ProjectPage), (status = 404, description = "past the last page", body = crate::error::ErrorBody)))]
pub async fn list_projects(
    State(state): State<AppState>,
    actor: Actor,
    OriginalUri(uri): OriginalUri,
    Query(params): Query<ProjectListParams>,
) -> ApiResult<Json<ProjectPage>> {
    let page = Page::new(
        opt_int("page", &params.page)?,
        opt_int("page_size", &params.page_size)?,
        30,
        100,
    )?;
    let filter = ProjectFilter {
        ids: id_list("ids", params.ids.as_deref())?,
        title: params.title.or(params.search).filter(|t| !t.is_empty()),
        workspaces: id_list("workspaces", params.workspaces.as_deref())?,
        archived: opt_bool("archived", &params.archived)?,
    };
    let (count, results) =
        projects::list(&state.db, &actor, &filter, page.offset(), page.size).await?;
    page.check(count)?;
    let (next, previous) = links(&uri, page, count);
    Ok(Json(ProjectPage {
        count,
        next,
        previous,
        results,
    }))
}

/// Parses a comma-separated id list (`None` when absent or empty).
pub fn id_list(name: &str, raw: Option<&str>) -> ApiResult<Option<Vec<i64>>> {
    match raw.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(list) => list
            .split(',')
            .map(|s| s.trim().parse::<i64>())
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
            .map_err(|_| {
                ApiError::field(
                    ErrorCode::InvalidQuery,
                    name,
                    "must be a comma-separated list of ids",
                )
            }),
    }
}

/// Creates a project.
#[utoipa::path(post, path = "/api/projects", tag = "projects", request_body = Object, responses((status = 201, body = ProjectView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn create_project(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<ProjectView>)> {
    let created = projects::create(&state.db, &actor, &state.sealer, &body).await?;
    crate::webhooks::emit(
        &state.db,
        &state.jobs,
        actor.org_id,
        Some(created.id),
        Action::ProjectCreated,
        Subject::Project(created.id),
    )
    .await;
    Ok((StatusCode::CREATED, Json(created)))
}

/// One project.
#[utoipa::path(get, path = "/api/projects/{id}", tag = "projects", params(("id" = i64, Path)), responses((status = 200, body = ProjectView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_project(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<ProjectView>> {
    Ok(Json(projects::get(&state.db, &actor, id).await?))
}

/// Changes a project's title, labeling configuration or settings.
#[utoipa::path(patch, path = "/api/projects/{id}", tag = "projects", params(("id" = i64, Path)), request_body = Object, responses((status = 200, body = ProjectView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn update_project(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<ProjectView>> {
    let updated = projects::update(&state.db, &actor, &state.sealer, id, &body).await?;
    crate::agreement::after_update(&state.db, &state.jobs, id, &body).await;
    crate::webhooks::emit(
        &state.db,
        &state.jobs,
        actor.org_id,
        Some(id),
        Action::ProjectUpdated,
        Subject::Project(id),
    )
    .await;
    Ok(Json(updated))
}

/// Deletes a project and everything in it.
#[utoipa::path(delete, path = "/api/projects/{id}", tag = "projects", params(("id" = i64, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_project(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    projects::delete(&state.db, &actor, id).await?;
    crate::webhooks::emit(
        &state.db,
        &state.jobs,
        actor.org_id,
        Some(id),
        Action::ProjectDeleted,
        Subject::ProjectDeleted(id),
    )
    .await;
    Ok(no_content())
}

fn validate_body(body: &serde_json::Map<String, Value>) -> ApiResult<Json<Value>> {
    let xml = match body.get("label_config") {
        Some(Value::String(s)) => s,
        _ => {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "label_config",
                "this field is required",
            ));
        }
    };
    projects::parse_label_config(xml)?;
    Ok(Json(serde_json::json!({"label_config": xml})))
}

/// Validates a labeling configuration for a project.
#[utoipa::path(post, path = "/api/projects/{id}/validate", tag = "projects", params(("id" = i64, Path)), request_body = Object, responses((status = 200), (status = 400, body = crate::error::ErrorBody)))]
pub async fn validate_project_config(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    projects::get_row(&state.db, &actor, id, Permission::ProjectView).await?;
    validate_body(&body)
}

/// Validates a labeling configuration.
#[utoipa::path(post, path = "/api/projects/validate", tag = "projects", request_body = Object, responses((status = 200), (status = 400, body = crate::error::ErrorBody)))]
pub async fn validate_config(
    _actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    validate_body(&body)
}

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_projects, create_project))
        .routes(routes!(get_project, update_project, delete_project))
        .routes(routes!(validate_project_config))
        .routes(routes!(validate_config))
}
