//! Data-manager views (tabs): `/api/dm/views`. The task list applies them (`/api/tasks?view=`).

use axum::{Json, extract::State, http::StatusCode, response::Response};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    authz::Actor,
    error::{ApiError, ApiResult, ErrorCode},
    http::{
        AppState,
        extract::{JsonObject, Path, Query, required_int},
        no_content,
    },
    storage::views::{self, ViewView},
};

/// Query naming a project.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ViewListParams {
    /// Project id (required).
    pub project: Option<String>,
}

fn body_project(body: &Map<String, Value>) -> ApiResult<i64> {
    body.get("project").and_then(Value::as_i64).ok_or_else(|| {
        ApiError::field(
            ErrorCode::ValidationError,
            "project",
            "this field is required (a project id)",
        )
    })
}

fn body_data(body: &Map<String, Value>) -> Value {
    body.get("data")
        .filter(|d| !d.is_null())
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()))
}

/// Lists a project's views in tab order.
#[utoipa::path(get, path = "/api/dm/views", tag = "data manager", params(ViewListParams), responses((status = 200, body = Vec<ViewView>), (status = 404, body = crate::error::ErrorBody)))]
pub async fn list_views(
    State(state): State<AppState>,
    actor: Actor,
    Query(params): Query<ViewListParams>,
) -> ApiResult<Json<Vec<ViewView>>> {
    let project = required_int("project", &params.project)?;
    let rows = views::list(&state.db, &actor, project).await?;
    Ok(Json(rows.iter().map(views::ViewRow::view).collect()))
}

/// Creates a view: `{"project": id, "data": {"title", "filters", "ordering", …}}`. Filters
/// and ordering are checked like the task list's; a bad one is refused and nothing is saved.
#[utoipa::path(post, path = "/api/dm/views", tag = "data manager", request_body = Object, responses((status = 201, body = ViewView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn create_view(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<ViewView>)> {
    let project = body_project(&body)?;
    let row = views::create(&state.db, &actor, project, body_data(&body)).await?;
    Ok((StatusCode::CREATED, Json(row.view())))
}

/// One view.
#[utoipa::path(get, path = "/api/dm/views/{id}", tag = "data manager", params(("id" = i64, Path)), responses((status = 200, body = ViewView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_view(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<ViewView>> {
    Ok(Json(views::get(&state.db, &actor, id).await?.view()))
}

/// Replaces a view's `data` (one's own view; anyone's with `task.manage`).
#[utoipa::path(patch, path = "/api/dm/views/{id}", tag = "data manager", params(("id" = i64, Path)), request_body = Object, responses((status = 200, body = ViewView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn update_view(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<ViewView>> {
    let current = views::get(&state.db, &actor, id).await?;
    if let Some(p) = body.get("project").and_then(Value::as_i64)
        && p != current.project_id
    {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "project",
            "a view cannot move to another project",
        ));
    }
    let data = match body.get("data") {
        None => serde_json::from_str(&current.data).map_err(ApiError::internal)?,
        Some(_) => body_data(&body),
    };
    Ok(Json(
        views::update(&state.db, &actor, id, data).await?.view(),
    ))
}

/// Deletes a view (one's own; anyone's with `task.manage`).
#[utoipa::path(delete, path = "/api/dm/views/{id}", tag = "data manager", params(("id" = i64, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_view(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    views::delete(&state.db, &actor, id).await?;
    Ok(no_content())
}

/// Deletes the caller's own views of a project.
#[utoipa::path(delete, path = "/api/dm/views/reset", tag = "data manager", params(ViewListParams), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn reset_views(
    State(state): State<AppState>,
    actor: Actor,
    Query(params): Query<ViewListParams>,
) -> ApiResult<Response> {
    let project = required_int("project", &params.project)?;
    views::reset(&state.db, &actor, project).await?;
    Ok(no_content())
}

/// Sets the tab order: `{"project": id, "ids": [view ids, first to last]}`; views not named
/// keep their order after these.
#[utoipa::path(post, path = "/api/dm/views/order", tag = "data manager", request_body = Object, responses((status = 200), (status = 400, body = crate::error::ErrorBody)))]
pub async fn order_views(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let project = body_project(&body)?;
    let ids: Vec<i64> = match body.get("ids") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_i64().ok_or_else(|| {
                    ApiError::field(ErrorCode::ValidationError, "ids", "must be view ids")
                })
            })
            .collect::<ApiResult<_>>()?,
        _ => {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "ids",
                "this field is required (a list of view ids)",
            ));
        }
    };
    views::order(&state.db, &actor, project, &ids).await?;
    Ok(Json(serde_json::json!({"detail": "View order updated"})))
}

/// The data manager's column catalogue for a project, as Label Studio's front end reads it:
/// `{"columns": [{id, title, type, target, help, visibility_defaults, project_defined,
/// orderable, parent?, children?}]}`. The task columns the caller may filter and order by (the
/// ones the task list would refuse them are left out), then `data` with a child per data field
/// of the labeling configuration.
#[utoipa::path(get, path = "/api/dm/columns", tag = "data manager", params(ViewListParams), responses((status = 200, description = "`{\"columns\": [...]}`"), (status = 404, body = crate::error::ErrorBody)))]
pub async fn list_columns(
    State(state): State<AppState>,
    actor: Actor,
    Query(params): Query<ViewListParams>,
) -> ApiResult<Json<Value>> {
    use crate::storage::{
        access, projects,
        task_columns::{self, CATALOGUE},
        tasks::Visible,
    };
    let id = required_int("project", &params.project)?;
    let access =
        access::project(&state.db, &actor, id, crate::authz::Permission::ProjectView).await?;
    let visible = Visible::for_access(&actor, &access);
    let project = projects::get(&state.db, &actor, id).await?;
    let mut columns: Vec<Value> = CATALOGUE
        .iter()
        .filter(|(name, ..)| task_columns::offered(name, visible, &access))
        .map(|(name, title, kind, help, explore, orderable)| {
            serde_json::json!({
                "id": name, "title": title, "type": kind, "target": "tasks", "help": help,
                "visibility_defaults": {"explore": explore, "labeling": false},
                "project_defined": false, "orderable": orderable,
            })
        })
        .collect();
    let keys: Vec<&String> = project.data_types.keys().collect();
    columns.push(serde_json::json!({
        "id": "data", "title": "data", "type": "List", "target": "tasks",
        "help": "The task's data", "children": keys,
        "visibility_defaults": {"explore": true, "labeling": true},
        "project_defined": false, "orderable": false,
    }));
    for (key, kind) in &project.data_types {
        let orderable = key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        columns.push(serde_json::json!({
            "id": key, "title": key, "type": kind.as_str().unwrap_or("String"), "target": "tasks",
            "parent": "data", "help": format!("data.{key}"),
            "visibility_defaults": {"explore": true, "labeling": true},
            "project_defined": false, "orderable": orderable,
        }));
    }
    Ok(Json(serde_json::json!({ "columns": columns })))
}

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_columns))
        .routes(routes!(list_views, create_view))
        .routes(routes!(get_view, update_view, delete_view))
        .routes(routes!(reset_views))
        .routes(routes!(order_views))
}
