//! Workspaces, their members and their projects.

use axum::{Json, extract::State, http::StatusCode, response::Response};
use serde::Deserialize;
use serde_json::Value;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    authz::Actor,
    body,
    error::{ApiError, ApiResult, ErrorCode},
    http::extract::Path,
    http::{
        AppState,
        extract::{JsonObject, Query, opt_bool, opt_int, required_int},
        no_content,
    },
    storage::{
        projects::ProjectView,
        workspaces::{self, WorkspaceMemberView, WorkspaceView},
    },
};

/// Query of the workspace list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct WorkspaceParams {
    /// `true`: only archived; `false`: only active; absent: all.
    pub is_archived: Option<String>,
}

/// The workspaces the caller can see (all for Owners and Admins, their own otherwise).
#[utoipa::path(get, path = "/api/workspaces", tag = "workspaces", params(WorkspaceParams), responses((status = 200, body = Vec<WorkspaceView>)))]
pub async fn list_workspaces(
    State(state): State<AppState>,
    actor: Actor,
    Query(params): Query<WorkspaceParams>,
) -> ApiResult<Json<Vec<WorkspaceView>>> {
    let archived = opt_bool("is_archived", &params.is_archived)?;
    Ok(Json(workspaces::list(&state.db, &actor, archived).await?))
}

/// Creates a workspace (`{"title", "description"?, "color"?}`); the creator becomes a member.
#[utoipa::path(post, path = "/api/workspaces", tag = "workspaces", request_body = Object, responses((status = 201, body = WorkspaceView)))]
pub async fn create_workspace(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<WorkspaceView>)> {
    Ok((
        StatusCode::CREATED,
        Json(workspaces::create(&state.db, &actor, &body).await?),
    ))
}

/// One workspace.
#[utoipa::path(get, path = "/api/workspaces/{id}", tag = "workspaces", params(("id" = i64, Path)), responses((status = 200, body = WorkspaceView)))]
pub async fn get_workspace(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<WorkspaceView>> {
    Ok(Json(workspaces::get(&state.db, &actor, id).await?))
}

/// Changes title, description, color or `is_archived`.
#[utoipa::path(patch, path = "/api/workspaces/{id}", tag = "workspaces", params(("id" = i64, Path)), request_body = Object, responses((status = 200, body = WorkspaceView)))]
pub async fn update_workspace(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<WorkspaceView>> {
    Ok(Json(
        workspaces::update(&state.db, &actor, id, &body).await?,
    ))
}

/// Deletes an empty workspace.
#[utoipa::path(delete, path = "/api/workspaces/{id}", tag = "workspaces", params(("id" = i64, Path)), responses((status = 204), (status = 409, body = crate::error::ErrorBody)))]
pub async fn delete_workspace(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    workspaces::delete(&state.db, &actor, id).await?;
    Ok(no_content())
}

/// The workspace's members.
#[utoipa::path(get, path = "/api/workspaces/{id}/memberships", tag = "workspaces", params(("id" = i64, Path)), responses((status = 200, body = Vec<WorkspaceMemberView>)))]
pub async fn list_workspace_members(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<WorkspaceMemberView>>> {
    Ok(Json(workspaces::members(&state.db, &actor, id).await?))
}

fn one_user(body: &serde_json::Map<String, Value>) -> ApiResult<i64> {
    body.get("user")
        .or_else(|| body.get("user_id"))
        .and_then(Value::as_i64)
        .ok_or_else(|| {
            ApiError::field(
                ErrorCode::ValidationError,
                "user",
                "this field is required and must be a user id",
            )
        })
}

/// Adds a member (`{"user": id}`).
#[utoipa::path(post, path = "/api/workspaces/{id}/memberships", tag = "workspaces", params(("id" = i64, Path)), request_body = Object, responses((status = 201)))]
pub async fn add_workspace_member(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let user = one_user(&body)?;
    workspaces::set_members(&state.db, &actor, id, &[user], true).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"user": user, "workspace": id})),
    ))
}

/// Query naming one user.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UserParam {
    /// User id.
    pub user_id: Option<String>,
    /// User id (Label Studio's other spelling).
    pub user: Option<String>,
}

/// Removes a member (`?user_id=`).
#[utoipa::path(delete, path = "/api/workspaces/{id}/memberships", tag = "workspaces", params(("id" = i64, Path), UserParam), responses((status = 204)))]
pub async fn remove_workspace_member(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Query(params): Query<UserParam>,
) -> ApiResult<Response> {
    let user = opt_int("user_id", &params.user_id)?
        .or(opt_int("user", &params.user)?)
        .ok_or_else(|| {
            ApiError::field(
                ErrorCode::InvalidQuery,
                "user_id",
                "this parameter is required",
            )
        })?;
    workspaces::set_members(&state.db, &actor, id, &[user], false).await?;
    Ok(no_content())
}

/// Adds many members at once (`{"users": [ids]}`), all or none.
#[utoipa::path(post, path = "/api/workspaces/{id}/memberships/bulk", tag = "workspaces", params(("id" = i64, Path)), request_body = Object, responses((status = 200)))]
pub async fn bulk_add_workspace_members(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let users = body::ids(&body, "users")?;
    let added = workspaces::set_members(&state.db, &actor, id, &users, true).await?;
    Ok(Json(serde_json::json!({"added": added})))
}

/// Removes many members at once (`{"users": [ids]}`), all or none.
#[utoipa::path(delete, path = "/api/workspaces/{id}/memberships/bulk", tag = "workspaces", params(("id" = i64, Path)), request_body = Object, responses((status = 200)))]
pub async fn bulk_remove_workspace_members(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let users = body::ids(&body, "users")?;
    let removed = workspaces::set_members(&state.db, &actor, id, &users, false).await?;
    Ok(Json(serde_json::json!({"removed": removed})))
}

/// The workspace's projects the caller can see.
#[utoipa::path(get, path = "/api/workspaces/{id}/projects", tag = "workspaces", params(("id" = i64, Path)), responses((status = 200, body = Vec<ProjectView>)))]
pub async fn list_workspace_projects(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<ProjectView>>> {
    Ok(Json(workspaces::projects(&state.db, &actor, id).await?))
}

/// Moves projects into the workspace (`{"project": id}` or `{"projects": [ids]}`).
#[utoipa::path(post, path = "/api/workspaces/{id}/projects", tag = "workspaces", params(("id" = i64, Path)), request_body = Object, responses((status = 201)))]
pub async fn add_workspace_projects(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let projects = match body.get("project").and_then(Value::as_i64) {
        Some(p) => vec![p],
        None => body::ids(&body, "projects")?,
    };
    workspaces::set_projects(&state.db, &actor, id, &projects, true).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"projects": projects, "workspace": id})),
    ))
}

/// Query naming one project.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ProjectParam {
    /// Project id.
    pub project: Option<String>,
}

/// Takes a project out of the workspace (`?project=`).
#[utoipa::path(delete, path = "/api/workspaces/{id}/projects", tag = "workspaces", params(("id" = i64, Path), ProjectParam), responses((status = 204)))]
pub async fn remove_workspace_project(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Query(params): Query<ProjectParam>,
) -> ApiResult<Response> {
    let project = required_int("project", &params.project)?;
    workspaces::set_projects(&state.db, &actor, id, &[project], false).await?;
    Ok(no_content())
}

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_workspaces, create_workspace))
        .routes(routes!(get_workspace, update_workspace, delete_workspace))
        .routes(routes!(
            list_workspace_members,
            add_workspace_member,
            remove_workspace_member
        ))
        .routes(routes!(
            bulk_add_workspace_members,
            bulk_remove_workspace_members
        ))
        .routes(routes!(
            list_workspace_projects,
            add_workspace_projects,
            remove_workspace_project
        ))
}
