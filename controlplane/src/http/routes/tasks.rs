//! Tasks: the data-manager list, single tasks, bulk deletion and the label stream.

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
        extract::{JsonObject, Query, opt_bool, opt_int, required_int},
        no_content,
        pagination::Page,
    },
    storage::{
        annotations,
        assignments::{self, Kind},
        bulk,
        cloudstorages::UriResolver,
        predictions, quality,
        tasks::{self, Fields, TaskView, Window},
        views::{self, ViewRow},
    },
    webhooks::{Action, Subject},
};

/// Query of the task list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct TaskListParams {
    /// Project id (required).
    pub project: Option<String>,
    /// Data-manager view id: its filters and ordering apply (those of `query` win when given).
    pub view: Option<String>,
    /// 1-based page.
    pub page: Option<String>,
    /// Page size (default 100; at most `page_size_max_nested` when annotations are nested, else `page_size_max`).
    pub page_size: Option<String>,
    /// `all` (with annotations and predictions) or `task_only`.
    pub fields: Option<String>,
    /// Comma-separated fields to return, e.g. `id`.
    pub include: Option<String>,
    /// Data-manager JSON: `{"filters", "ordering", "selectedItems"}`.
    pub query: Option<String>,
    /// Only tasks with annotations.
    pub only_annotated: Option<String>,
    /// `true` (default): bucket URIs of task data that a storage of the project holds
    /// (`s3://`, `gs://`, `azure-blob://`) become the task's media link
    /// (`/api/tasks/<id>/presign?fileuri=…`); `false`: data as stored.
    pub resolve_uri: Option<String>,
    /// Accepted and ignored.
    pub review: Option<String>,
}

/// A page of the data-manager task list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskListView {
    /// Tasks.
    #[schema(value_type = Vec<Object>)]
    pub tasks: Vec<Value>,
    /// Tasks matching the query.
    pub total: i64,
    /// Annotations in the project.
    pub total_annotations: i64,
    /// Predictions in the project.
    pub total_predictions: i64,
}

fn render(view: &TaskView, include: &Option<Vec<String>>) -> ApiResult<Value> {
    let value = serde_json::to_value(view).map_err(ApiError::internal)?;
    Ok(match (include, value) {
        (Some(keys), Value::Object(mut obj)) => {
            let mut out = Map::new();
            for k in keys {
                if let Some(v) = obj.remove(k) {
                    out.insert(k.clone(), v);
                }
            }
            Value::Object(out)
        }
        (_, v) => v,
    })
}

/// Lists the tasks of a project (data manager).
#[utoipa::path(get, path = "/api/tasks", tag = "tasks", params(TaskListParams), responses((status = 200, body = TaskListView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn list_tasks(
    State(state): State<AppState>,
    actor: Actor,
    Query(params): Query<TaskListParams>,
) -> ApiResult<Json<TaskListView>> {
    let view = match opt_int("view", &params.view)? {
        Some(id) => Some(
            views::for_query(&state.db, &actor, id, opt_int("project", &params.project)?).await?,
        ),
        None => None,
    };
    let Some(project) =
        opt_int("project", &params.project)?.or(view.as_ref().map(|v| v.project_id))
    else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "Neither project nor view id specified",
        ));
    };
    let fields = match params.fields.as_deref() {
        None | Some("") | Some("all") => Fields::All,
        Some("task_only") => Fields::TaskOnly,
        Some(other) => {
            return Err(ApiError::field(
                ErrorCode::InvalidQuery,
                "fields",
                format!("{other:?} is not all or task_only"),
            ));
        }
    };
    let include: Option<Vec<String>> =
        params
            .include
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.split(',')
                    .map(|k| k.trim().to_string())
                    .filter(|k| !k.is_empty())
                    .collect()
            });
    let ids_only = include
        .as_ref()
        .is_some_and(|keys| keys.iter().all(|k| k == "id"));
    let fields = if include.as_ref().is_some_and(|k| {
        !k.iter()
            .any(|k| k == "annotations" || k == "predictions" || k == "drafts" || k == "annotators")
    }) {
        Fields::TaskOnly
    } else {
        fields
    };
    // Pages with annotations, predictions and drafts nested cost far more per task.
    let max = if fields == Fields::All && !ids_only {
        state.config.page_size_max_nested
    } else {
        state.config.page_size_max
    };
    let page = Page::new(
        opt_int("page", &params.page)?,
        opt_int("page_size", &params.page_size)?,
        100,
        max,
    )?;
    let query_json: Value = match params.query.as_deref().filter(|q| !q.is_empty()) {
        None => Value::Null,
        Some(q) => serde_json::from_str(q).map_err(|e| {
            ApiError::field(
                ErrorCode::InvalidQuery,
                "query",
                format!("not valid JSON: {e}"),
            )
        })?,
    };
    let query_json = with_view(view.as_ref(), query_json);
    let only_annotated = opt_bool("only_annotated", &params.only_annotated)?.unwrap_or(false);
    let query = tasks::task_query(state.db.dialect(), &query_json, only_annotated)?;
    let (_, result) = tasks::list(
        &state.db,
        &actor,
        project,
        &query,
        Window {
            offset: page.offset(),
            limit: page.size,
            fields,
            ids_only,
        },
    )
    .await?;
    page.check(result.total)?;
    let resolver = match opt_bool("resolve_uri", &params.resolve_uri)?.unwrap_or(true) {
        true if !ids_only => Some(UriResolver::for_project(&state.db, project).await?),
        _ => None,
    };
    let tasks = result
        .tasks
        .iter()
        .map(|t| {
            let mut value = render(t, &include)?;
            if let (Some(r), Some(data)) = (&resolver, value.get_mut("data")) {
                r.resolve(t.id, data);
            }
            Ok(value)
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(TaskListView {
        tasks,
        total: result.total,
        total_annotations: result.total_annotations,
        total_predictions: result.total_predictions,
    }))
}

fn object_field(
    body: &Map<String, Value>,
    key: &str,
    required: bool,
) -> ApiResult<Option<Map<String, Value>>> {
    match body.get(key) {
        Some(Value::Object(m)) => Ok(Some(m.clone())),
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(ApiError::field(
            ErrorCode::ValidationError,
            key,
            "this field is required",
        )),
        Some(_) => Err(ApiError::field(
            ErrorCode::ValidationError,
            key,
            "must be a JSON object",
        )),
    }
}

/// Creates one task.
#[utoipa::path(post, path = "/api/tasks", tag = "tasks", request_body = Object, responses((status = 201, body = TaskView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn create_task(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<TaskView>)> {
    let project = match body.get("project") {
        Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64().unwrap_or_default(),
        _ => {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "project",
                "this field is required (a project id)",
            ));
        }
    };
    let data = object_field(&body, "data", true)?.unwrap_or_default();
    let meta = object_field(&body, "meta", false)?.unwrap_or_default();
    let created = tasks::create_one(&state.db, &actor, project, data, meta).await?;
    tasks_emit(
        &state,
        &actor,
        project,
        Action::TasksCreated,
        Subject::Tasks(vec![created.id]),
    )
    .await;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Query of a task's detail.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct TaskGetParams {
    /// `true` (default): bucket URIs of the data that a storage of the project holds become the
    /// task's media link (`/api/tasks/<id>/presign?fileuri=…`); `false`: data as stored.
    pub resolve_uri: Option<String>,
}

/// One task with its annotations and predictions.
#[utoipa::path(get, path = "/api/tasks/{id}", tag = "tasks", params(("id" = i64, Path), TaskGetParams), responses((status = 200, body = TaskView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_task(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Query(params): Query<TaskGetParams>,
) -> ApiResult<Json<TaskView>> {
    let resolve = opt_bool("resolve_uri", &params.resolve_uri)?.unwrap_or(true);
    let view = tasks::get(&state.db, &actor, id).await?;
    let view = with_lazy_predictions(&state, &actor, view).await?;
    Ok(Json(match resolve {
        true => with_resolved_uris(&state, view).await?,
        false => view,
    }))
}

/// The task with the bucket URIs of its data that a storage of its project holds turned into
/// its media links (Label Studio's `resolve_uri`; the label and review streams always do this,
/// as the labeling editor needs loadable links).
pub(crate) async fn with_resolved_uris(
    state: &AppState,
    mut view: TaskView,
) -> ApiResult<TaskView> {
    let resolver = UriResolver::for_project(&state.db, view.project).await?;
    if resolver.is_empty() {
        return Ok(view);
    }
    let mut data: Value = serde_json::from_str(view.data.get()).map_err(ApiError::internal)?;
    resolver.resolve(view.id, &mut data);
    view.data = serde_json::value::to_raw_value(&data).map_err(ApiError::internal)?;
    Ok(view)
}

/// A task about to be shown, with lazy predictions when its project asks for them
/// (`evaluate_predictions_automatically`, see [`crate::ml::predict_on_open`]): the backends
/// are asked for the predictions it lacks, and the view gets the predictions as stored then.
async fn with_lazy_predictions(
    state: &AppState,
    actor: &Actor,
    mut view: TaskView,
) -> ApiResult<TaskView> {
    let project = crate::storage::projects::load(&state.db, actor.org_id, view.project).await?;
    if !project.settings().evaluate_predictions_automatically {
        return Ok(view);
    }
    crate::ml::predict_on_open(&state.db, &state.ml, &state.sealer, &project, view.id).await;
    let fresh = tasks::get(&state.db, actor, view.id).await?;
    view.predictions = fresh.predictions;
    view.total_predictions = fresh.total_predictions;
    Ok(view)
}

/// Changes a task's data or meta.
#[utoipa::path(patch, path = "/api/tasks/{id}", tag = "tasks", params(("id" = i64, Path)), request_body = Object, responses((status = 200, body = TaskView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn update_task(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<TaskView>> {
    let data = object_field(&body, "data", false)?;
    let meta = object_field(&body, "meta", false)?;
    Ok(Json(
        tasks::update(&state.db, &actor, id, data, meta).await?,
    ))
}

/// Deletes a task.
#[utoipa::path(delete, path = "/api/tasks/{id}", tag = "tasks", params(("id" = i64, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_task(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let task = tasks::get_row(&state.db, &actor, id, Permission::TaskManage).await?;
    let deleted = tasks::delete_many(&state.db, &actor, task.project_id, Some(&[id])).await?;
    tasks_emit(
        &state,
        &actor,
        task.project_id,
        Action::TasksDeleted,
        Subject::TasksDeleted(deleted),
    )
    .await;
    Ok(no_content())
}

/// Query of the per-project task list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ProjectTasksParams {
    /// 1-based page.
    pub page: Option<String>,
    /// Page size (default 50, at most `page_size_max_nested`); -1 = every task, refused with 400
    /// when the project has more than `page_size_max_nested`.
    pub page_size: Option<String>,
}

/// Lists a project's tasks as a plain list (Label Studio's older endpoint).
#[utoipa::path(get, path = "/api/projects/{id}/tasks", tag = "tasks", params(("id" = i64, Path), ProjectTasksParams), responses((status = 200, body = Vec<TaskView>), (status = 404, body = crate::error::ErrorBody)))]
pub async fn list_project_tasks(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Query(params): Query<ProjectTasksParams>,
) -> ApiResult<Json<Vec<TaskView>>> {
    // Every task comes with its annotations nested, so pages stop at `page_size_max_nested`.
    // `-1` asks for every task at once: granted up to that cap, and refused (not cut short)
    // for a project with more, so that no script takes a part for the whole.
    let max = state.config.page_size_max_nested;
    let all = opt_int("page_size", &params.page_size)? == Some(-1);
    let size = if all {
        Some(max.saturating_add(1))
    } else {
        opt_int("page_size", &params.page_size)?
    };
    let page = Page::new(
        opt_int("page", &params.page)?,
        size,
        50,
        if all { max.saturating_add(1) } else { max },
    )?;
    let query = tasks::task_query(state.db.dialect(), &Value::Null, false)?;
    let (_, result) = tasks::list(
        &state.db,
        &actor,
        id,
        &query,
        Window {
            offset: page.offset(),
            limit: page.size,
            fields: Fields::All,
            ids_only: false,
        },
    )
    .await?;
    if result.tasks.is_empty() && page.number > 1 {
        return Err(ApiError::new(ErrorCode::InvalidPage, "Invalid page."));
    }
    if all && i64::try_from(result.tasks.len()).unwrap_or(i64::MAX) > max {
        return Err(ApiError::field(
            ErrorCode::InvalidQuery,
            "page_size",
            format!(
                "page_size=-1 returns at most {max} tasks (page_size_max_nested) and this project has more; page through with page=1,2,… and page_size up to {max}, or use /api/tasks?fields=task_only"
            ),
        ));
    }
    Ok(Json(result.tasks))
}

/// Deletes every task of a project.
#[utoipa::path(delete, path = "/api/projects/{id}/tasks", tag = "tasks", params(("id" = i64, Path)), responses((status = 204)))]
pub async fn delete_project_tasks(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let deleted = tasks::delete_many(&state.db, &actor, id, None).await?;
    tasks_emit(
        &state,
        &actor,
        id,
        Action::TasksDeleted,
        Subject::TasksDeleted(deleted),
    )
    .await;
    Ok(no_content())
}

/// The next task of the label stream for the caller, reserved for them; bucket URIs of its data
/// are resolved into media links as in `GET /api/tasks/{id}`.
#[utoipa::path(get, path = "/api/projects/{id}/next", tag = "tasks", params(("id" = i64, Path)), responses((status = 200, body = TaskView), (status = 404, description = "no task left", body = crate::error::ErrorBody)))]
pub async fn next_task(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<TaskView>> {
    let view = tasks::next(&state.db, &actor, id, state.config.task_lock_ttl_secs).await?;
    let view = with_lazy_predictions(&state, &actor, view).await?;
    Ok(Json(with_resolved_uris(&state, view).await?))
}

/// The task list's query JSON with a view's filters and ordering under it: keys given in
/// `query` win, so a client can narrow or reorder a view without saving it.
fn with_view(view: Option<&ViewRow>, query: Value) -> Value {
    let Some(view) = view else {
        return query;
    };
    let mut merged = view.query();
    if let (Value::Object(base), Value::Object(extra)) = (&mut merged, query) {
        for (k, v) in extra {
            if !v.is_null() {
                base.insert(k, v);
            }
        }
    }
    merged
}

/// One data-manager action: what it is called and what it needs on top of `task.manage`.
struct ActionSpec {
    id: &'static str,
    title: &'static str,
    order: i64,
    permission: Permission,
    /// Confirmation dialog: title and text.
    dialog: Option<(&'static str, &'static str)>,
}

/// The actions this server runs, in menu order (ADR 0033).
const ACTIONS: &[ActionSpec] = &[
    ActionSpec {
        id: "delete_tasks",
        title: "Delete tasks",
        order: 100,
        permission: Permission::TaskManage,
        dialog: Some((
            "Delete selected tasks?",
            "The selected tasks and their annotations, predictions and reviews are deleted for good.",
        )),
    },
    ActionSpec {
        id: "delete_tasks_annotations",
        title: "Delete annotations",
        order: 101,
        permission: Permission::AnnotationManage,
        dialog: Some((
            "Delete annotations of the selected tasks?",
            "Every annotation of the selected tasks (with its reviews) is deleted for good.",
        )),
    },
    ActionSpec {
        id: "delete_tasks_predictions",
        title: "Delete predictions",
        order: 102,
        permission: Permission::PredictionManage,
        dialog: Some((
            "Delete predictions of the selected tasks?",
            "Every prediction of the selected tasks is deleted for good.",
        )),
    },
    ActionSpec {
        id: "delete_annotators",
        title: "Unassign annotators",
        order: 103,
        permission: Permission::TaskManage,
        dialog: Some((
            "Unassign annotators of the selected tasks?",
            "Every annotator assignment of the selected tasks is removed; annotations stay.",
        )),
    },
    ActionSpec {
        id: "delete_reviewers",
        title: "Unassign reviewers",
        order: 104,
        permission: Permission::TaskManage,
        dialog: Some((
            "Unassign reviewers of the selected tasks?",
            "Every reviewer assignment of the selected tasks is removed; reviews stay.",
        )),
    },
    ActionSpec {
        id: "delete_ground_truths",
        title: "Delete ground truths",
        order: 105,
        permission: Permission::GroundTruthManage,
        dialog: Some((
            "Delete ground truths of the selected tasks?",
            "The ground-truth mark is taken off every annotation of the selected tasks; the annotations stay.",
        )),
    },
    ActionSpec {
        id: "set_ground_truths",
        title: "Mark as ground truth",
        order: 108,
        permission: Permission::GroundTruthManage,
        dialog: Some((
            "Mark ground truths of the selected tasks?",
            "On each selected task the newest submitted annotation becomes the task's ground truth (any other mark of the task is cleared); tasks without a submitted annotation are left alone.",
        )),
    },
    ActionSpec {
        id: "predictions_to_annotations",
        title: "Create annotations from predictions",
        order: 106,
        permission: Permission::AnnotationCreate,
        dialog: Some((
            "Create annotations from predictions?",
            "Each selected task gets an annotation by you made from its newest prediction of the chosen model version (the project's by default); tasks you have annotated already are left alone.",
        )),
    },
    ActionSpec {
        id: "remove_duplicates",
        title: "Remove duplicated tasks",
        order: 107,
        permission: Permission::TaskManage,
        dialog: Some((
            "Remove duplicated tasks?",
            "Of the selected tasks with identical data, the one with the most annotations is kept and gets the annotations of the others, which are deleted for good.",
        )),
    },
];

/// An action as `GET /api/dm/actions` lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActionView {
    /// Action id (the `id` parameter of `POST /api/dm/actions`).
    pub id: &'static str,
    /// Menu title.
    pub title: &'static str,
    /// Menu position.
    pub order: i64,
    /// The permission it needs (besides `task.manage`).
    pub permission: &'static str,
    /// Always false.
    pub experimental: bool,
    /// Confirmation dialog (`title`, `text`, `type`, `form`), or null.
    #[schema(value_type = Object, nullable = true)]
    pub dialog: Value,
}

/// Query naming a project.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ActionListParams {
    /// Project id (required).
    pub project: Option<String>,
}

/// The data-manager actions the caller may run in a project (none for annotators).
#[utoipa::path(get, path = "/api/dm/actions", tag = "tasks", params(ActionListParams), responses((status = 200, body = Vec<ActionView>), (status = 404, body = crate::error::ErrorBody)))]
pub async fn list_actions(
    State(state): State<AppState>,
    actor: Actor,
    Query(params): Query<ActionListParams>,
) -> ApiResult<Json<Vec<ActionView>>> {
    let project = required_int("project", &params.project)?;
    Ok(Json(available_actions(&state, &actor, project).await?))
}

/// The data-manager actions `actor` may run in `project`, in menu order (none for annotators);
/// `GET /api/dm/actions` and the data page list the same.
pub async fn available_actions(
    state: &AppState,
    actor: &Actor,
    project: i64,
) -> ApiResult<Vec<ActionView>> {
    let access =
        crate::storage::access::project(&state.db, actor, project, Permission::ProjectView).await?;
    let holds = |p: Permission| -> bool { access.role >= p.minimum_role() };
    Ok(ACTIONS
        .iter()
        .filter(|a| holds(Permission::TaskManage) && holds(a.permission))
        .map(|a| {
            ActionView {
            id: a.id,
            title: a.title,
            order: a.order,
            permission: a.permission.name(),
            experimental: false,
            dialog: a.dialog.map_or(Value::Null, |(title, text)| {
                serde_json::json!({"title": title, "text": text, "type": "confirm", "form": null})
            }),
        }
        })
        .collect())
}

/// Query of a data-manager action.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ActionParams {
    /// Action id (see `GET /api/dm/actions`).
    pub id: Option<String>,
    /// Project id (or give `view`).
    pub project: Option<String>,
    /// Data-manager view id: its filters narrow the selection (instead of the body's `filters`).
    pub view: Option<String>,
}

/// Runs a data-manager action on the selected tasks (`{"selectedItems": {"all": false,
/// "included": [ids]}}` or `{"all": true, "excluded": [...]}`, with optional `filters`),
/// in one transaction, audited, with the webhooks of the single-object endpoints.
#[utoipa::path(post, path = "/api/dm/actions", tag = "tasks", params(ActionParams), request_body = Object, responses((status = 200), (status = 400, body = crate::error::ErrorBody)))]
pub async fn run_action(
    State(state): State<AppState>,
    actor: Actor,
    Query(params): Query<ActionParams>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let Some(id) = params.id.as_deref() else {
        return Err(ApiError::field(
            ErrorCode::InvalidQuery,
            "id",
            "this parameter is required",
        ));
    };
    let Some(spec) = ACTIONS.iter().find(|a| a.id == id) else {
        return Err(ApiError::field(
            ErrorCode::InvalidQuery,
            "id",
            format!(
                "unknown action {id:?}; supported: {}",
                ACTIONS.iter().map(|a| a.id).collect::<Vec<_>>().join(", ")
            ),
        ));
    };
    let view = match opt_int("view", &params.view)? {
        Some(v) => Some(
            views::for_query(&state.db, &actor, v, opt_int("project", &params.project)?).await?,
        ),
        None => None,
    };
    let project = match (opt_int("project", &params.project)?, &view) {
        (Some(p), _) => p,
        (None, Some(v)) => v.project_id,
        (None, None) => required_int("project", &params.project)?,
    };
    Ok(Json(
        perform_action(&state, &actor, project, view.as_ref(), spec.id, &body).await?,
    ))
}

/// Runs data-manager action `id` (one of `ACTIONS`) on the tasks of `project` that `body`'s
/// `selectedItems` (and `filters`, or `view`'s filters) select: the code behind
/// `POST /api/dm/actions`, also used by the data page.
pub async fn perform_action(
    state: &AppState,
    actor: &Actor,
    project: i64,
    view: Option<&ViewRow>,
    id: &str,
    body: &Map<String, Value>,
) -> ApiResult<Value> {
    let Some(spec) = ACTIONS.iter().find(|a| a.id == id) else {
        return Err(ApiError::field(
            ErrorCode::InvalidQuery,
            "id",
            format!("unknown action {id:?}"),
        ));
    };
    let access =
        crate::storage::access::project(&state.db, actor, project, Permission::TaskManage).await?;
    actor.require_in(Some(access.role), spec.permission)?;
    let ids = selected_task_ids(state, actor, project, body, view).await?;
    match spec.id {
        "delete_tasks" => {
            let deleted = tasks::delete_many(&state.db, actor, project, Some(&ids)).await?;
            let n = deleted.len();
            tasks_emit(
                state,
                actor,
                project,
                Action::TasksDeleted,
                Subject::TasksDeleted(deleted),
            )
            .await;
            Ok(
                serde_json::json!({"processed_items": n, "reload": true, "detail": format!("Deleted {n} tasks")}),
            )
        }
        "delete_tasks_annotations" => {
            let deleted = annotations::delete_for_tasks(&state.db, actor, project, &ids).await?;
            let n = deleted.len();
            if n > 0 {
                tasks_emit(
                    state,
                    actor,
                    project,
                    Action::AnnotationsDeleted,
                    Subject::AnnotationsDeleted(deleted),
                )
                .await;
            }
            Ok(
                serde_json::json!({"processed_items": ids.len(), "reload": true, "detail": format!("Deleted {n} annotations")}),
            )
        }
        "delete_tasks_predictions" => {
            let n = predictions::delete_for_tasks(&state.db, actor, project, &ids).await?;
            Ok(
                serde_json::json!({"processed_items": ids.len(), "reload": true, "detail": format!("Deleted {n} predictions")}),
            )
        }
        "delete_annotators" | "delete_reviewers" => {
            let kind = if spec.id == "delete_annotators" {
                Kind::Annotate
            } else {
                Kind::Review
            };
            let n =
                assignments::unassign(&state.db, actor, project, &ids, Some(kind), None).await?;
            Ok(
                serde_json::json!({"processed_items": ids.len(), "reload": true, "detail": format!("Removed {n} assignments")}),
            )
        }
        "delete_ground_truths" => {
            let n = quality::delete_ground_truths(&state.db, actor, project, &ids).await?;
            if n > 0 {
                // No annotation event reports it; export storages show `ground_truth` (ADR 0052).
                crate::exportchanges::note_tasks(&state.db, &state.jobs, project, ids.clone())
                    .await;
            }
            Ok(
                serde_json::json!({"processed_items": ids.len(), "reload": true, "detail": format!("Deleted {n} ground truths")}),
            )
        }
        "set_ground_truths" => {
            let out = bulk::set_ground_truths(&state.db, actor, project, &ids).await?;
            let n = out.marked.len();
            if n > 0 {
                // As for `delete_ground_truths`: export storages show `ground_truth` (ADR 0052).
                crate::exportchanges::note_tasks(&state.db, &state.jobs, project, ids.clone())
                    .await;
            }
            let without = out.without.len();
            Ok(serde_json::json!({
                "processed_items": ids.len(), "reload": true, "marked": n,
                "unchanged": out.unchanged, "without_annotations": without,
                "detail": format!(
                    "Marked {n} ground truths; {} already marked; {without} tasks without a submitted annotation",
                    out.unchanged
                )
            }))
        }
        "predictions_to_annotations" => {
            let versions = model_versions(body)?;
            let created =
                quality::predictions_to_annotations(&state.db, actor, project, &ids, versions)
                    .await?;
            let n = created.len();
            if n > 0 {
                tasks_emit(
                    state,
                    actor,
                    project,
                    Action::AnnotationsCreated,
                    Subject::Annotations(created),
                )
                .await;
            }
            Ok(
                serde_json::json!({"processed_items": ids.len(), "reload": true, "created": n, "detail": format!("Created {n} annotations")}),
            )
        }
        "remove_duplicates" => {
            let removed = quality::remove_duplicates(&state.db, actor, project, &ids).await?;
            if !removed.is_empty() {
                // Annotations of removed duplicates moved to the kept tasks, which were among the
                // selected ones: export storages get their new task (ADR 0052).
                crate::exportchanges::note_tasks(&state.db, &state.jobs, project, ids.clone())
                    .await;
            }
            let n = removed.len();
            tasks_emit(
                state,
                actor,
                project,
                Action::TasksDeleted,
                Subject::TasksDeleted(removed),
            )
            .await;
            Ok(
                serde_json::json!({"processed_items": ids.len(), "reload": true, "removed": n, "detail": format!("Removed {n} tasks")}),
            )
        }
        other => Err(ApiError::internal(format!("action {other} has no handler"))),
    }
}

/// The `model_version` of a `predictions_to_annotations` body: a version, a list of them, or
/// absent/null for the project's default (see [`quality::Versions`]).
fn model_versions(body: &Map<String, Value>) -> ApiResult<quality::Versions> {
    let bad = || {
        ApiError::field(
            ErrorCode::ValidationError,
            "model_version",
            "must be a model version (a string) or a non-empty list of them",
        )
    };
    match body.get("model_version") {
        None | Some(Value::Null) => Ok(quality::Versions::ProjectDefault),
        Some(Value::String(v)) => Ok(quality::Versions::Given(vec![v.clone()])),
        Some(Value::Array(list)) if !list.is_empty() && list.len() <= 100 => list
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
            .collect::<ApiResult<Vec<_>>>()
            .map(quality::Versions::Given),
        Some(_) => Err(bad()),
    }
}

async fn tasks_emit(
    state: &AppState,
    actor: &Actor,
    project: i64,
    action: Action,
    subject: Subject,
) {
    if matches!(&subject, Subject::TasksDeleted(ids) if ids.is_empty()) {
        return;
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

/// The ids of the tasks a data-manager request selects: its `selectedItems` (required),
/// narrowed by the view's filters or, without a view, by the body's `filters`.
pub(crate) async fn selected_task_ids(
    state: &AppState,
    actor: &Actor,
    project: i64,
    body: &Map<String, Value>,
    view: Option<&ViewRow>,
) -> ApiResult<Vec<i64>> {
    selection_ids(state, actor, project, body, view, None).await
}

/// [`selected_task_ids`] for a caller that takes at most `cap` tasks: it reads at most
/// `cap + 1` ids, so more than `cap` answers `cap + 1` ids however large the selection.
pub(crate) async fn selected_task_ids_capped(
    state: &AppState,
    actor: &Actor,
    project: i64,
    body: &Map<String, Value>,
    view: Option<&ViewRow>,
    cap: usize,
) -> ApiResult<Vec<i64>> {
    selection_ids(state, actor, project, body, view, Some(cap + 1)).await
}

/// The ids a data-manager body selects (`selectedItems`, and `filters` unless a view is given),
/// at most `limit` of them.
async fn selection_ids(
    state: &AppState,
    actor: &Actor,
    project: i64,
    body: &Map<String, Value>,
    view: Option<&ViewRow>,
    limit: Option<usize>,
) -> ApiResult<Vec<i64>> {
    let selected = body.get("selectedItems").cloned().unwrap_or(Value::Null);
    if !selected.is_object() {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "selectedItems",
            "this field is required: {\"all\": false, \"included\": [ids]} or {\"all\": true, \"excluded\": [ids]}",
        ));
    }
    // As in Label Studio, a view's filters take priority over the body's.
    let mut query = serde_json::json!({"selectedItems": selected});
    if let Some(filters) = body
        .get("filters")
        .filter(|f| !f.is_null() && view.is_none())
    {
        query["filters"] = filters.clone();
    }
    let query = with_view(view, query);
    let query = tasks::task_query(state.db.dialect(), &query, false)?;
    collect_ids(state, actor, project, &query, limit).await
}

async fn collect_ids(
    state: &AppState,
    actor: &Actor,
    project: i64,
    query: &tasks::TaskQuery,
    cap: Option<usize>,
) -> ApiResult<Vec<i64>> {
    // Bounded by the selection (and the cap); pages of ids only.
    let page_size = cap.map_or(10_000, |c| c.min(10_000)) as i64;
    let mut ids = Vec::new();
    let mut offset = 0;
    loop {
        let (_, page) = tasks::list(
            &state.db,
            actor,
            project,
            query,
            Window {
                offset,
                limit: page_size,
                fields: Fields::TaskOnly,
                ids_only: true,
            },
        )
        .await?;
        let n = page.tasks.len() as i64;
        ids.extend(page.tasks.iter().map(|t| t.id));
        if n < page_size || cap.is_some_and(|c| ids.len() >= c) {
            break;
        }
        offset += n;
    }
    if let Some(c) = cap {
        ids.truncate(c);
    }
    Ok(ids)
}

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tasks, create_task))
        .routes(routes!(get_task, update_task, delete_task))
        .routes(routes!(list_project_tasks, delete_project_tasks))
        .routes(routes!(next_task))
        .routes(routes!(list_actions, run_action))
}
