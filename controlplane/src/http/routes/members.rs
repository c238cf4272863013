//! Project members, project roles and pauses.

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
        extract::{JsonObject, Query, opt_bool, required_int},
        no_content,
    },
    storage::members::{self, PauseView, ProjectMemberView, parse_project_role},
};

/// The project's members and their project roles.
#[utoipa::path(get, path = "/api/projects/{id}/members", tag = "members", params(("id" = i64, Path)), responses((status = 200, body = Vec<ProjectMemberView>)))]
pub async fn list_members(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<ProjectMemberView>>> {
    Ok(Json(members::list(&state.db, &actor, id).await?))
}

/// Adds a member (`{"user": id, "role"?: "annotator"|"reviewer"}`).
#[utoipa::path(post, path = "/api/projects/{id}/members", tag = "members", params(("id" = i64, Path)), request_body = Object, responses((status = 201)))]
pub async fn add_member(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let user = body::id(&body, "user")?;
    let role = parse_project_role(body.get("role"))?;
    members::add(&state.db, &actor, id, &[user], role).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"user": user, "project": id, "role": role.map(|r| r.as_str())})),
    ))
}

/// Query naming one user.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UserParam {
    /// User id.
    pub user: Option<String>,
}

/// Removes a member (`?user=`).
#[utoipa::path(delete, path = "/api/projects/{id}/members", tag = "members", params(("id" = i64, Path), UserParam), responses((status = 204)))]
pub async fn remove_member(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Query(params): Query<UserParam>,
) -> ApiResult<Response> {
    let user = required_int("user", &params.user)?;
    members::remove(&state.db, &actor, id, &[user]).await?;
    Ok(no_content())
}

/// Adds many members at once (`{"users": [ids], "role"?}`), all or none.
#[utoipa::path(post, path = "/api/projects/{id}/members/bulk", tag = "members", params(("id" = i64, Path)), request_body = Object, responses((status = 200)))]
pub async fn bulk_add_members(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let users = body::ids(&body, "users")?;
    let role = parse_project_role(body.get("role"))?;
    members::add(&state.db, &actor, id, &users, role).await?;
    Ok(Json(serde_json::json!({"added": users.len()})))
}

/// Removes many members at once (`{"users": [ids]}`), all or none.
#[utoipa::path(delete, path = "/api/projects/{id}/members/bulk", tag = "members", params(("id" = i64, Path)), request_body = Object, responses((status = 200)))]
pub async fn bulk_remove_members(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let users = body::ids(&body, "users")?;
    members::remove(&state.db, &actor, id, &users).await?;
    Ok(Json(serde_json::json!({"removed": users.len()})))
}

/// Sets a member's project role (`{"project", "user", "role"}`; Label Studio Enterprise's path).
#[utoipa::path(post, path = "/api/projects/roles", tag = "members", request_body = Object, responses((status = 201)))]
pub async fn set_project_role(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let project = body::id(&body, "project")?;
    let user = body::id(&body, "user")?;
    let role = parse_project_role(body.get("role"))?;
    members::add(&state.db, &actor, project, &[user], role).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            serde_json::json!({"project": project, "user": user, "role": role.map(|r| r.as_str())}),
        ),
    ))
}

/// Query of the pause list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PauseParams {
    /// Include lifted pauses.
    pub include_deleted: Option<String>,
}

/// A member's pauses in a project.
#[utoipa::path(get, path = "/api/projects/{id}/members/{user_pk}/pauses", tag = "members", params(("id" = i64, Path), ("user_pk" = i64, Path), PauseParams), responses((status = 200, body = Vec<PauseView>)))]
pub async fn list_pauses(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, user)): Path<(i64, i64)>,
    Query(params): Query<PauseParams>,
) -> ApiResult<Json<Vec<Value>>> {
    let all = opt_bool("include_deleted", &params.include_deleted)?.unwrap_or(false);
    Ok(Json(
        members::pauses(&state.db, &actor, id, user, all)
            .await?
            .iter()
            .map(PauseView::to_json)
            .collect(),
    ))
}

/// Pauses a member (`{"reason": "MANUAL", "verbose_reason": "what they see"}`): they get no
/// tasks and cannot submit until the pause is deleted.
#[utoipa::path(post, path = "/api/projects/{id}/members/{user_pk}/pauses", tag = "members", params(("id" = i64, Path), ("user_pk" = i64, Path)), request_body = Object, responses((status = 201, body = PauseView)))]
pub async fn create_pause(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, user)): Path<(i64, i64)>,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let text = |key: &str| body.get(key).and_then(Value::as_str).unwrap_or_default();
    let reason = match text("reason") {
        "" => "MANUAL",
        r => r,
    };
    let pause = members::pause(&state.db, &actor, id, user, reason, text("verbose_reason")).await?;
    Ok((StatusCode::CREATED, Json(pause.to_json())))
}

/// One pause.
#[utoipa::path(get, path = "/api/projects/{id}/members/{user_pk}/pauses/{pause_pk}", tag = "members", params(("id" = i64, Path), ("user_pk" = i64, Path), ("pause_pk" = i64, Path)), responses((status = 200, body = PauseView)))]
pub async fn get_pause(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, user, pause)): Path<(i64, i64, i64)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        members::get_pause(&state.db, &actor, id, user, pause)
            .await?
            .to_json(),
    ))
}

/// Changes the message of an active pause (`{"verbose_reason"}`).
#[utoipa::path(patch, path = "/api/projects/{id}/members/{user_pk}/pauses/{pause_pk}", tag = "members", params(("id" = i64, Path), ("user_pk" = i64, Path), ("pause_pk" = i64, Path)), request_body = Object, responses((status = 200, body = PauseView)))]
pub async fn update_pause(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, user, pause)): Path<(i64, i64, i64)>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let text = match body.get("verbose_reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "verbose_reason",
                "must be a string",
            ));
        }
    };
    Ok(Json(
        members::update_pause(&state.db, &actor, id, user, pause, text)
            .await?
            .to_json(),
    ))
}

/// Lifts a pause.
#[utoipa::path(delete, path = "/api/projects/{id}/members/{user_pk}/pauses/{pause_pk}", tag = "members", params(("id" = i64, Path), ("user_pk" = i64, Path), ("pause_pk" = i64, Path)), responses((status = 204)))]
pub async fn delete_pause(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, user, pause)): Path<(i64, i64, i64)>,
) -> ApiResult<Response> {
    members::unpause(&state.db, &actor, id, user, pause).await?;
    Ok(no_content())
}

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_members, add_member, remove_member))
        .routes(routes!(bulk_add_members, bulk_remove_members))
        .routes(routes!(set_project_role))
        .routes(routes!(list_pauses, create_pause))
        .routes(routes!(get_pause, update_pause, delete_pause))
}
