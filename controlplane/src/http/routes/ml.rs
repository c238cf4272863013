//! ML backends: Label Studio's `/api/ml` API (what `label-studio-sdk`'s `client.ml` calls).
//! Authorization is in `storage::ml`; the protocol and the jobs in `crate::ml`.

use axum::{Json, extract::State, http::StatusCode, response::Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    authz::{Actor, Permission},
    error::{ApiError, ApiResult, ErrorCode},
    http::{
        AppState,
        extract::{JsonObject, Path, Query, opt_bool, opt_int, required_int},
        no_content,
    },
    ml,
    storage::ml::{self as store, Candidate, Input, MlBackendView},
    webhooks::TargetPolicy,
};

fn policy(state: &AppState) -> ApiResult<TargetPolicy> {
    TargetPolicy::parse(&state.config.allow_private_targets).map_err(ApiError::internal)
}

/// Query of the backend list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct MlListParams {
    /// Project id (required).
    pub project: Option<String>,
    /// Only interactive backends (`true`) or only the others (`false`).
    pub is_interactive: Option<String>,
}

/// The ML backends of a project (plain list, oldest first).
#[utoipa::path(get, path = "/api/ml", tag = "ml", params(MlListParams), responses((status = 200, body = Vec<MlBackendView>)))]
pub async fn list_backends(
    State(state): State<AppState>,
    actor: Actor,
    Query(params): Query<MlListParams>,
) -> ApiResult<Json<Vec<MlBackendView>>> {
    let project = required_int("project", &params.project)?;
    let interactive = opt_bool("is_interactive", &params.is_interactive)?;
    let rows = store::list(&state.db, &actor, project).await?;
    let manager = store::authorize(&state.db, &actor, project).await.is_ok();
    Ok(Json(
        rows.iter()
            .filter(|r| interactive.is_none_or(|i| r.is_interactive == i))
            .map(|r| shown(r.view(), manager))
            .collect(),
    ))
}

/// What a project member who does not manage backends sees: the URL without its query string
/// (where a token may be).
fn shown(mut view: MlBackendView, manager: bool) -> MlBackendView {
    if !manager {
        view.url = crate::storage::url_without_query(&view.url);
    }
    view
}

/// Connects an ML backend: `{"project", "url", "title"?, "description"?, "is_interactive"?,
/// "auth_method"? (NONE|BASIC_AUTH), "basic_auth_user"?, "basic_auth_pass"?, "extra_params"?,
/// "timeout"? (seconds), "auto_update"?}`. The backend must answer `/health` and `/setup` (its
/// model version is stored); otherwise 400 `ml_backend_unreachable` and nothing is stored.
#[utoipa::path(post, path = "/api/ml", tag = "ml", request_body = Object, responses((status = 201, body = MlBackendView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn create_backend(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<MlBackendView>)> {
    let project_id = match body.get("project") {
        Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64().unwrap_or_default(),
        _ => {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "project",
                "this field is required (a project id)",
            ));
        }
    };
    let project = store::authorize(&state.db, &actor, project_id).await?;
    let input = Input::parse(&body, &policy(&state)?)?;
    let url = input.url.clone().ok_or_else(|| {
        ApiError::field(ErrorCode::ValidationError, "url", "this field is required")
    })?;
    let candidate = Candidate {
        url,
        credentials: (input.auth_method.as_deref() == Some("BASIC_AUTH")).then(|| {
            (
                input.basic_auth_user.clone().flatten().unwrap_or_default(),
                input.basic_auth_pass.clone().flatten().unwrap_or_default(),
            )
        }),
        extra_params: serde_json::from_str(input.extra_params.as_deref().unwrap_or("{}"))
            .unwrap_or_else(|_| json!({})),
        timeout: input.timeout.unwrap_or(100.0),
    };
    let version = ml::check(&state.ml, &candidate, &project).await?;
    let view = store::create(
        &state.db,
        &actor,
        &state.sealer,
        project_id,
        &input,
        &version,
    )
    .await?;
    // A project without a model version pre-labels with, and samples by, this backend's.
    store::follow_model_version(&state.db, project_id, "", &version).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// One ML backend.
#[utoipa::path(get, path = "/api/ml/{id}", tag = "ml", params(("id" = i64, Path)), responses((status = 200, body = MlBackendView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_backend(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<MlBackendView>> {
    let (row, _) = store::get_row(&state.db, &actor, id, Permission::ProjectView).await?;
    let manager = store::authorize(&state.db, &actor, row.project_id)
        .await
        .is_ok();
    Ok(Json(shown(row.view(), manager)))
}

/// Changes an ML backend. A changed URL, authentication or extra parameters are checked
/// against the backend (`/health`, `/setup`) before anything is stored.
#[utoipa::path(patch, path = "/api/ml/{id}", tag = "ml", params(("id" = i64, Path)), request_body = Object, responses((status = 200, body = MlBackendView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn update_backend(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<MlBackendView>> {
    let (row, project) = store::get_row(&state.db, &actor, id, Permission::MlManage).await?;
    let input = Input::parse(&body, &policy(&state)?)?;
    let reconnect = input.url.is_some()
        || input.auth_method.is_some()
        || input.basic_auth_user.is_some()
        || input.basic_auth_pass.is_some()
        || input.extra_params.is_some();
    let version = if reconnect {
        let candidate = store::candidate(&row, &input, &state.sealer)?;
        Some(ml::check(&state.ml, &candidate, &project).await?)
    } else {
        None
    };
    Ok(Json(
        store::update(
            &state.db,
            &actor,
            &state.sealer,
            id,
            &input,
            version.as_deref(),
        )
        .await?,
    ))
}

/// Disconnects an ML backend (its predictions stay).
#[utoipa::path(delete, path = "/api/ml/{id}", tag = "ml", params(("id" = i64, Path)), responses((status = 204)))]
pub async fn delete_backend(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    store::delete(&state.db, &actor, id).await?;
    Ok(no_content())
}

/// Enqueues a training (or a batch prediction) of a backend the actor manages, audited:
/// `{"job": "<id>"}`.
/// `batch_size` is `None` for a training, the tasks per request for a batch prediction.
async fn start_job(
    state: &AppState,
    actor: &Actor,
    id: i64,
    batch_size: Option<i64>,
) -> ApiResult<Json<Value>> {
    let (row, _) = store::get_row(&state.db, actor, id, Permission::MlManage).await?;
    let (enqueued, action) = match batch_size {
        None => (
            ml::enqueue_train(&state.jobs, &row).await,
            "ml_backend.train",
        ),
        Some(batch) => (
            ml::enqueue_predict(&state.jobs, &row, batch).await,
            "ml_backend.predict",
        ),
    };
    let job = enqueued.map_err(|e| {
        ApiError::new(
            ErrorCode::Unavailable,
            format!("the job queue did not take the job: {e}"),
        )
    })?;
    store::audit_started(&state.db, actor, &row, action, &job).await?;
    Ok(Json(json!({"job": job})))
}

/// Starts a training on the queue (`START_TRAINING` to the backend's `/webhook`, then a check
/// of its model version): `{"job": "<id>"}`, to poll at `/api/jobs/{id}`.
#[utoipa::path(post, path = "/api/ml/{id}/train", tag = "ml", params(("id" = i64, Path)), request_body(content = Object, description = "Ignored (`use_ground_truth` is accepted for compatibility)."), responses((status = 200, body = Object)))]
pub async fn train_backend(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    start_job(&state, &actor, id, None).await
}

/// Query of a batch prediction.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PredictParams {
    /// Tasks per `/predict` request to the backend, 1 to 1000 (default 32).
    pub batch_size: Option<String>,
}

/// Predicts, on the queue, every task of the project that has no prediction of the backend's
/// current model version, `batch_size` tasks per request: `{"job": "<id>"}`.
#[utoipa::path(post, path = "/api/ml/{id}/predict", tag = "ml", params(("id" = i64, Path), PredictParams), responses((status = 200, body = Object), (status = 400, body = crate::error::ErrorBody)))]
pub async fn predict_all(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Query(params): Query<PredictParams>,
) -> ApiResult<Json<Value>> {
    let batch = opt_int("batch_size", &params.batch_size)?.unwrap_or(ml::BATCH_SIZE);
    if !(1..=ml::MAX_BATCH_SIZE).contains(&batch) {
        return Err(ApiError::field(
            ErrorCode::InvalidQuery,
            "batch_size",
            format!("must be between 1 and {}", ml::MAX_BATCH_SIZE),
        ));
    }
    start_job(&state, &actor, id, Some(batch)).await
}

fn backend_failed(e: String) -> ApiError {
    ApiError::new(
        ErrorCode::MlBackendFailed,
        format!("the ML backend failed: {e}"),
    )
}

/// Asks the backend for a prediction of one task of the project (the first) and answers what
/// it said, without storing it: a check of the connection and the model.
#[utoipa::path(post, path = "/api/ml/{id}/predict/test", tag = "ml", params(("id" = i64, Path)), responses((status = 200, body = Object), (status = 502, body = crate::error::ErrorBody)))]
pub async fn predict_test(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let (row, project) = store::get_row(&state.db, &actor, id, Permission::MlManage).await?;
    let task = store::first_task(&state.db, project.id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "the project has no task to predict"))?;
    let tasks = [task];
    let candidate = row.connection(&state.sealer)?;
    let answer = state
        .ml
        .to(&candidate)
        .predict(&project, &tasks, None, ml::INTERACTIVE_TIMEOUT)
        .await
        .map_err(backend_failed)?;
    let (made, rejected) = ml::read_predictions(
        project.config().as_deref(),
        &tasks,
        &answer,
        &row.model_version,
    )
    .map_err(backend_failed)?;
    Ok(Json(json!({
        "task": tasks[0]["id"],
        "predictions": made.iter().map(|m| json!({"result": m.result, "score": m.score, "model_version": m.model_version})).collect::<Vec<_>>(),
        "rejected": rejected,
    })))
}

/// Interactive pre-annotation for the task being labeled: `{"task": <id>, "context": {...}}`
/// → `{"data": <the first prediction>}`. Nothing is stored. The backend has
/// [`ml::INTERACTIVE_TIMEOUT`] to answer; a failure is 502 `ml_backend_failed`.
#[utoipa::path(post, path = "/api/ml/{id}/interactive-annotating", tag = "ml", params(("id" = i64, Path)), request_body = Object, responses((status = 200, body = Object), (status = 502, body = crate::error::ErrorBody)))]
pub async fn interactive(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let (row, project) =
        store::get_row(&state.db, &actor, id, Permission::AnnotationCreate).await?;
    let task_id = body.get("task").and_then(Value::as_i64).ok_or_else(|| {
        ApiError::field(
            ErrorCode::ValidationError,
            "task",
            "this field is required (a task id)",
        )
    })?;
    let context = match body.get("context") {
        None | Some(Value::Null) => json!({}),
        Some(c @ Value::Object(_)) => c.clone(),
        Some(_) => {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "context",
                "must be a JSON object",
            ));
        }
    };
    if !row.is_interactive {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "id",
            "this ML backend is not interactive (is_interactive is false)",
        ));
    }
    let task = store::task_json(&state.db, project.id, task_id)
        .await?
        .ok_or_else(|| ApiError::not_found("task"))?;
    let tasks = [task];
    let candidate = row.connection(&state.sealer)?;
    let timeout = ml::INTERACTIVE_TIMEOUT.min(std::time::Duration::from_secs_f64(
        row.timeout.clamp(0.1, store::MAX_TIMEOUT_SECS),
    ));
    let answer = state
        .ml
        .to(&candidate)
        .predict(&project, &tasks, Some(&context), timeout)
        .await
        .map_err(backend_failed)?;
    let (made, rejected) = ml::read_predictions(
        project.config().as_deref(),
        &tasks,
        &answer,
        &row.model_version,
    )
    .map_err(backend_failed)?;
    match made.first() {
        Some(m) => Ok(Json(json!({
            "data": {"result": m.result, "score": m.score, "model_version": m.model_version}
        }))),
        None if !rejected.is_empty() => Err(backend_failed(format!(
            "its prediction does not fit the labeling config: {}",
            rejected.join("; ")
        ))),
        None => Ok(Json(json!({"data": null}))),
    }
}

/// The model versions the backend offers: `{"versions": [...], "message": "..."}` (its current
/// version when it has no `/versions`).
#[utoipa::path(get, path = "/api/ml/{id}/versions", tag = "ml", params(("id" = i64, Path)), responses((status = 200, body = Object), (status = 502, body = crate::error::ErrorBody)))]
pub async fn versions(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let (row, _) = store::get_row(&state.db, &actor, id, Permission::MlManage).await?;
    let candidate = row.connection(&state.sealer)?;
    match state
        .ml
        .to(&candidate)
        .versions()
        .await
        .map_err(backend_failed)?
    {
        Some(v) => Ok(Json(json!({"versions": v, "message": ""}))),
        None => Ok(Json(json!({
            "versions": [row.model_version],
            "message": "the backend has no /versions; this is its current version"
        }))),
    }
}

/// The ML backend routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_backends, create_backend))
        .routes(routes!(get_backend, update_backend, delete_backend))
        .routes(routes!(train_backend))
        .routes(routes!(predict_all))
        .routes(routes!(predict_test))
        .routes(routes!(interactive))
        .routes(routes!(versions))
}
