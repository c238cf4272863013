//! Task assignments (ADR 0039): Label Studio Enterprise's `/api/projects/{id}/tasks/…/assignees`
//! endpoints, one task at a time or a data-manager selection at once.

use axum::{Json, extract::State, http::StatusCode, response::Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    authz::Actor,
    error::{ApiError, ApiResult, ErrorCode},
    http::{
        AppState,
        extract::{JsonObject, Path, Query},
        no_content,
    },
    storage::assignments::{self, AssignmentView, Change, Kind},
};

/// Body of a single-task or bulk assignment.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AssignParams {
    /// `AN` (annotate) or `RE` (review).
    #[serde(rename = "type")]
    pub kind: String,
    /// User ids.
    pub users: Vec<i64>,
    /// Bulk only: `{"all": false, "included": [ids]}` or `{"all": true, "excluded": [ids]}`.
    #[serde(rename = "selectedItems")]
    #[schema(value_type = Option<Object>)]
    pub selected_items: Option<Value>,
    /// Bulk only: data-manager filters narrowing the selection.
    #[schema(value_type = Option<Object>)]
    pub filters: Option<Value>,
}

/// Answer of a bulk assignment.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkAssignView {
    /// Assignments created (those that existed already are not counted).
    pub assignments: u64,
    /// Always false: the assignment is done when the answer comes.
    #[serde(rename = "async")]
    pub is_async: bool,
    /// The selected tasks (at most the first 1000 ids).
    pub task_ids: Vec<i64>,
}

/// Query of a removal.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UnassignParams {
    /// `AN` or `RE`; without it both kinds are removed.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Comma-separated user ids; without it every assignee (of the type) is removed.
    pub users: Option<String>,
}

/// Task ids a bulk answer lists at most.
const LISTED_IDS: usize = 1000;

fn kind_and_users(body: &Map<String, Value>) -> ApiResult<(Kind, Vec<i64>)> {
    let kind = match body.get("type") {
        None | Some(Value::Null) => Kind::parse(None, "type")?,
        Some(Value::String(s)) => Kind::parse(Some(s), "type")?,
        Some(_) => {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "type",
                "must be the string AN (annotate) or RE (review)",
            ));
        }
    };
    let bad = || {
        ApiError::field(
            ErrorCode::ValidationError,
            "users",
            "must be a list of user ids, e.g. [3, 5]",
        )
    };
    let users = body
        .get("users")
        .and_then(Value::as_array)
        .ok_or_else(bad)?
        .iter()
        .map(|u| u.as_i64().ok_or_else(bad))
        .collect::<ApiResult<Vec<i64>>>()?;
    Ok((kind, users))
}

/// The assignment of `users[0]` among `all` (the SDK reads one `TaskAssignment`).
fn first_of(all: Vec<AssignmentView>, users: &[i64]) -> ApiResult<Json<AssignmentView>> {
    let first = users.first().copied();
    all.into_iter()
        .find(|a| Some(a.assignee) == first)
        .map(Json)
        .ok_or_else(|| ApiError::internal("the assignment just made is missing"))
}

/// The task's assignments (annotate and review).
#[utoipa::path(get, path = "/api/projects/{id}/tasks/{task_pk}/assignees", tag = "assignments", params(("id" = i64, Path), ("task_pk" = i64, Path)), responses((status = 200, body = Vec<AssignmentView>), (status = 404, body = crate::error::ErrorBody)))]
pub async fn list_assignees(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, task_pk)): Path<(i64, i64)>,
) -> ApiResult<Json<Vec<AssignmentView>>> {
    Ok(Json(
        assignments::list(&state.db, &actor, id, task_pk).await?,
    ))
}

/// Assigns users to the task (`{"type": "AN"|"RE", "users": [ids]}`); users assigned already
/// stay. Answers the assignment of the first user named.
#[utoipa::path(post, path = "/api/projects/{id}/tasks/{task_pk}/assignees", tag = "assignments", params(("id" = i64, Path), ("task_pk" = i64, Path)), request_body = AssignParams, responses((status = 201, body = AssignmentView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn assign_task(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, task_pk)): Path<(i64, i64)>,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<AssignmentView>)> {
    let (kind, users) = kind_and_users(&body)?;
    let all =
        assignments::assign_task(&state.db, &actor, id, task_pk, kind, &users, Change::Add).await?;
    Ok((StatusCode::CREATED, first_of(all, &users)?))
}

/// Replaces the task's assignees of the type with the users named. Answers the assignment of
/// the first user named.
#[utoipa::path(patch, path = "/api/projects/{id}/tasks/{task_pk}/assignees", tag = "assignments", params(("id" = i64, Path), ("task_pk" = i64, Path)), request_body = AssignParams, responses((status = 200, body = AssignmentView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn replace_task_assignees(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, task_pk)): Path<(i64, i64)>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<AssignmentView>> {
    let (kind, users) = kind_and_users(&body)?;
    let all = assignments::assign_task(
        &state.db,
        &actor,
        id,
        task_pk,
        kind,
        &users,
        Change::Replace,
    )
    .await?;
    first_of(all, &users)
}

/// Removes the task's assignees: of `type` (else both), of `users` (else all).
#[utoipa::path(delete, path = "/api/projects/{id}/tasks/{task_pk}/assignees", tag = "assignments", params(("id" = i64, Path), ("task_pk" = i64, Path), UnassignParams), responses((status = 204), (status = 400, body = crate::error::ErrorBody)))]
pub async fn unassign_task(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, task_pk)): Path<(i64, i64)>,
    Query(params): Query<UnassignParams>,
) -> ApiResult<Response> {
    let kind = match params.kind.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(k) => Some(Kind::parse(Some(k), "type")?),
    };
    let users = match params.users.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(list) => Some(
            list.split(',')
                .map(|u| {
                    u.trim().parse::<i64>().map_err(|_| {
                        ApiError::field(
                            ErrorCode::InvalidQuery,
                            "users",
                            format!("{u:?} is not a user id; give comma-separated ids, e.g. 3,5"),
                        )
                    })
                })
                .collect::<ApiResult<Vec<i64>>>()?,
        ),
    };
    assignments::unassign_task(&state.db, &actor, id, task_pk, kind, users.as_deref()).await?;
    Ok(no_content())
}

/// Assigns users to a data-manager selection of tasks (`selectedItems`, optional `filters`),
/// in one transaction.
#[utoipa::path(post, path = "/api/projects/{id}/tasks/assignees", tag = "assignments", params(("id" = i64, Path)), request_body = AssignParams, responses((status = 200, body = BulkAssignView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn bulk_assign(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<BulkAssignView>> {
    let (kind, users) = kind_and_users(&body)?;
    crate::storage::access::project(&state.db, &actor, id, crate::authz::Permission::TaskManage)
        .await?;
    let ids = super::tasks::selected_task_ids(&state, &actor, id, &body, None).await?;
    let created =
        assignments::assign(&state.db, &actor, id, &ids, kind, &users, Change::Add).await?;
    Ok(Json(BulkAssignView {
        assignments: created,
        is_async: false,
        task_ids: ids.into_iter().take(LISTED_IDS).collect(),
    }))
}

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(
            list_assignees,
            assign_task,
            replace_task_assignees,
            unassign_task
        ))
        .routes(routes!(bulk_assign))
}
