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
/// The one agreement metric family Verity computes: each control tag's metric of ADR 0025.
pub const METRIC_NAME: &str = "per_control_default";

/// The low-agreement strategy as Label Studio Enterprise's `metricparam` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MetricParam {
    /// Always `per_control_default` (each control tag's metric, ADR 0025).
    pub metric_name: String,
    /// Always `{}`.
    #[schema(value_type = Object)]
    pub metric_params: Value,
    /// The project's `agreement_threshold` (percent), or null.
    pub agreement_threshold: Option<f64>,
    /// The project's `max_additional_annotators_assignable`, or null.
    pub max_additional_annotators_assignable: Option<i64>,
    /// Whether the caller may change it.
    pub allowed: bool,
}

fn metric_param(row: &projects::ProjectRow, allowed: bool) -> MetricParam {
    let settings = row.settings();
    MetricParam {
        metric_name: METRIC_NAME.into(),
        metric_params: Value::Object(Default::default()),
        agreement_threshold: settings.agreement_threshold,
        max_additional_annotators_assignable: settings.max_additional_annotators_assignable,
        allowed,
    }
}

/// The project's agreement metric and low-agreement strategy (`projects.metrics.get`).
#[utoipa::path(get, path = "/api/projects/{id}/metricparam", tag = "projects", params(("id" = i64, Path)), responses((status = 200, body = MetricParam), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_metric_param(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<MetricParam>> {
    let access =
        crate::storage::access::project(&state.db, &actor, id, Permission::ProjectView).await?;
    let allowed = access.role >= Permission::ProjectChange.minimum_role();
    Ok(Json(metric_param(&access.row, allowed)))
}

/// Sets the low-agreement strategy (`projects.metrics.update`): `{"agreement_threshold",
/// "max_additional_annotators_assignable", "metric_name"?, "additional_params"?}`. The
/// threshold and the cap are the project settings of the same names (ADR 0037); `metric_name`
/// may only name the one metric family Verity computes, and `additional_params` must be empty.
#[utoipa::path(post, path = "/api/projects/{id}/metricparam", tag = "projects", params(("id" = i64, Path)), request_body = Object, responses((status = 200, body = MetricParam), (status = 400, body = crate::error::ErrorBody)))]
pub async fn set_metric_param(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<MetricParam>> {
    let mut patch = serde_json::Map::new();
    for (key, value) in &body {
        match key.as_str() {
            "agreement_threshold" | "max_additional_annotators_assignable" => {
                patch.insert(key.clone(), value.clone());
            }
            "metric_name" => {
                if !(value.is_null() || value == METRIC_NAME) {
                    return Err(ApiError::field(
                        ErrorCode::ValidationError,
                        "metric_name",
                        format!(
                            "only {METRIC_NAME:?} is available: each control tag's own metric (see docs/quality.md)"
                        ),
                    ));
                }
            }
            "additional_params" | "metric_params" => {
                if !(value.is_null() || value.as_object().is_some_and(|m| m.is_empty())) {
                    return Err(ApiError::field(
                        ErrorCode::ValidationError,
                        key,
                        "metric parameters are not supported; send {} or leave it out",
                    ));
                }
            }
            other => {
                return Err(ApiError::field(
                    ErrorCode::ValidationError,
                    other,
                    "unknown field; send agreement_threshold, max_additional_annotators_assignable, metric_name or additional_params",
                ));
            }
        }
    }
    projects::update(&state.db, &actor, &state.sealer, id, &patch).await?;
    crate::webhooks::emit(
        &state.db,
        &state.jobs,
        actor.org_id,
        Some(id),
        Action::ProjectUpdated,
        Subject::Project(id),
    )
    .await;
    let row = projects::get_row(&state.db, &actor, id, Permission::ProjectChange).await?;
    Ok(Json(metric_param(&row, true)))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_metric_param, set_metric_param))
        .routes(routes!(list_projects, create_project))
        .routes(routes!(get_project, update_project, delete_project))
        .routes(routes!(validate_project_config))
        .routes(routes!(validate_config))
}
