//! Task and prediction import. Uploads are streamed to temporary files in the data directory
//! (bounded memory, no request-size spike), then imported in one transaction.

use axum::{
    Json,
    extract::{DefaultBodyLimit, FromRequest, Multipart, RawQuery, Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::imports::Spool;
use crate::{
    authz::Actor,
    error::{ApiError, ApiResult, ErrorCode},
    http::extract::Path,
    http::{
        AppState,
        extract::{JsonValue, Query, opt_bool},
    },
    storage::{
        predictions::{self, PredictionInput},
        tasks::{self, ImportFormat, ImportOptions, ImportSummary},
    },
};

/// Query of an import.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ImportParams {
    /// Return the ids of the created tasks.
    pub return_task_ids: Option<String>,
    /// Must be true or absent (uploads without committing are not kept).
    pub commit_to_project: Option<String>,
    /// Run the import as a job: answers `{"import": <id>, "job": <id>}` at once; poll
    /// `GET /api/projects/{id}/imports/{import_pk}` (Label Studio Enterprise's flow).
    #[serde(rename = "async")]
    #[param(rename = "async")]
    pub run_async: Option<String>,
}

/// Every value of a query parameter that may repeat (`a=1&a=2`), each split at commas; a
/// value written as a JSON list (`["a","b"]`, `[1,2]`) counts as its items.
pub fn repeated(query: Option<&str>, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if k != name {
            continue;
        }
        let v = v.trim();
        let items: Vec<String> = match serde_json::from_str::<Vec<Value>>(v) {
            Ok(list) if v.starts_with('[') => list
                .into_iter()
                .map(|i| match i {
                    Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect(),
            _ => v.split(',').map(str::to_string).collect(),
        };
        out.extend(
            items
                .into_iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
        );
    }
    out
}

/// Imports tasks: a JSON list, one JSON object, JSON lines, CSV or TSV in the body; files in a
/// multipart upload (task files are read as tasks, any other file is stored and becomes one
/// task pointing at its URL, ADR 0032); or `url=...` (form-encoded) to fetch. All or nothing:
/// one bad task rejects the request with its index and the stored files are removed. With
/// `async=true` the upload is stored and imported by a job: `201 {"import", "job"}`.
#[utoipa::path(post, path = "/api/projects/{id}/import", tag = "import", params(("id" = i64, Path), ImportParams, ("preannotated_from_fields" = Option<String>, Query, description = "Comma-separated task data fields (or the parameter repeated) that become a prediction of the control tags named like them (ADR 0032); the fields leave the task data.")), request_body(content = Object, description = "tasks"), responses((status = 201, body = ImportSummary), (status = 400, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody)))]
pub async fn import_tasks(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Query(params): Query<ImportParams>,
    RawQuery(query): RawQuery,
    request: Request,
) -> ApiResult<Response> {
    let return_ids = opt_bool("return_task_ids", &params.return_task_ids)?.unwrap_or(false);
    if opt_bool("commit_to_project", &params.commit_to_project)? == Some(false) {
        return Err(ApiError::field(
            ErrorCode::InvalidQuery,
            "commit_to_project",
            "uploads without committing are not supported; omit the parameter",
        ));
    }
    let options = ImportOptions {
        preannotated_from_fields: repeated(query.as_deref(), "preannotated_from_fields"),
    };
    let run_async = opt_bool("async", &params.run_async)? == Some(true);
    // Check access before reading a possibly large body.
    let project = crate::storage::projects::get_row(
        &state.db,
        &actor,
        id,
        crate::authz::Permission::TaskManage,
    )
    .await?;
    let config = project.config();
    let content_type = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_ascii_lowercase();
    if run_async {
        // The job checks them again; a typo is answered now, before the body is read.
        tasks::check_preannotated_fields(config.as_deref(), &options.preannotated_from_fields)?;
    }
    let mut spool = Spool::new(
        &state.config.data_dir,
        state.config.import_max_bytes,
        id,
        config.as_deref(),
    )?;
    let mut url_to_fetch = None;
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|e| multipart_error(&e.body_text()))?;
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| multipart_error(&e.body_text()))?
        {
            let Some(name) = field.file_name().map(str::to_string) else {
                continue;
            };
            spool
                .take(&name, field.map(|c| c.map_err(|e| e.body_text())))
                .await?;
        }
        if spool.sources.is_empty() {
            return Err(ApiError::field(
                ErrorCode::InvalidImport,
                "file",
                "the multipart upload has no file",
            ));
        }
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        let axum::Form(form) =
            axum::Form::<std::collections::HashMap<String, String>>::from_request(request, &state)
                .await
                .map_err(|e| {
                    ApiError::bad_request(
                        ErrorCode::InvalidImport,
                        format!("invalid form body: {}", e.body_text()),
                    )
                })?;
        let Some(url) = form.get("url").filter(|u| !u.trim().is_empty()) else {
            return Err(ApiError::field(
                ErrorCode::InvalidImport,
                "url",
                "a form-encoded import needs url=<address of the file to import>",
            ));
        };
        if run_async {
            // The job fetches it; an address the outbound rules refuse is answered now.
            crate::imports::check_url(&state.config.allow_private_targets, url)?;
            url_to_fetch = Some(url.trim().to_string());
        } else {
            crate::imports::fetch_url(&state.config.allow_private_targets, &mut spool, url).await?;
        }
    } else {
        let (format, ext) = if content_type.starts_with("text/csv") {
            (ImportFormat::Csv, ".csv")
        } else if content_type.starts_with("text/tab-separated-values") {
            (ImportFormat::Tsv, ".tsv")
        } else {
            (ImportFormat::Json, ".json")
        };
        let mut file = spool.file(format, ext.to_string()).await?;
        let mut body = request.into_body().into_data_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request(ErrorCode::InvalidImport, format!("upload interrupted: {e}"))
            })?;
            spool.write(&mut file, &chunk).await?;
        }
        file.flush().await.map_err(ApiError::internal)?;
    }
    let run = ImportRun {
        return_task_ids: return_ids,
        run_async,
        url: url_to_fetch,
        options,
    };
    match commit(&state, &actor, id, spool, run).await? {
        ImportOutcome::Queued { import, job } => Ok((
            StatusCode::CREATED,
            Json(serde_json::json!({"import": import, "job": job})),
        )
            .into_response()),
        ImportOutcome::Done(summary) => Ok((StatusCode::CREATED, Json(summary)).into_response()),
    }
}

/// The refusal of a multipart body that cannot be read.
pub fn multipart_error(why: &str) -> ApiError {
    ApiError::bad_request(
        ErrorCode::InvalidImport,
        format!("invalid multipart body: {why}"),
    )
}

/// How a received import is run.
pub struct ImportRun {
    /// Answer (synchronous) or record (job) the new tasks' ids.
    pub return_task_ids: bool,
    /// Run it as a job (`async=true`).
    pub run_async: bool,
    /// A URL the job fetches instead of stored files (a job only).
    pub url: Option<String>,
    /// `preannotated_from_fields` and the like.
    pub options: ImportOptions,
}

/// What [`commit`] did.
pub enum ImportOutcome {
    /// A synchronous import wrote its tasks.
    Done(ImportSummary),
    /// An import run as a job was stored and queued.
    Queued { import: i64, job: String },
}

/// Imports what `spool` received into `project`, now or as a job (`run.run_async`): the one
/// path of `POST /api/projects/{id}/import` after its body is read, also taken by the data
/// manager's import page. A failed import leaves nothing (the spool removes its files).
pub async fn commit(
    state: &AppState,
    actor: &Actor,
    project: i64,
    mut spool: Spool,
    run: ImportRun,
) -> ApiResult<ImportOutcome> {
    if run.run_async {
        // The import owns the files stored so far (the job records them as uploads, or
        // removes them when the import fails).
        let request = crate::storage::imports::ImportRequest {
            return_task_ids: run.return_task_ids,
            url: run.url,
            preannotated_from_fields: run.options.preannotated_from_fields,
        };
        let import =
            crate::storage::imports::create(&state.db, actor, project, &spool.sources, &request)
                .await?;
        spool.keep = true;
        drop(spool);
        let job = match crate::imports::enqueue(&state.jobs, actor.org_id, import).await {
            Ok(job) => job,
            Err(e) => {
                let why = format!("the job queue did not take the import: {e}");
                let stored =
                    crate::storage::imports::finish(&state.db, import, Err(why.clone())).await?;
                crate::storage::uploads::remove_files(&state.config.data_dir, project, stored);
                return Err(ApiError::new(ErrorCode::Unavailable, why));
            }
        };
        crate::storage::imports::set_job(&state.db, import, &job).await?;
        return Ok(ImportOutcome::Queued { import, job });
    }
    let mut summary = tasks::import_opts(
        &state.db,
        actor,
        project,
        &spool.sources,
        true,
        tasks::Claim::None,
        &run.options,
    )
    .await?;
    spool.keep = true;
    drop(spool);
    let created = if run.return_task_ids {
        summary.task_ids.clone().unwrap_or_default()
    } else {
        summary.task_ids.take().unwrap_or_default()
    };
    crate::imports::announce(
        &state.db,
        &state.jobs,
        actor.org_id,
        project,
        created,
        summary.annotation_count > 0,
    )
    .await;
    Ok(ImportOutcome::Done(summary))
}

/// An import run as a job: its status (`created`, `in_progress`, `completed`, `failed`), the
/// error of a failed one, and the counts (and `task_ids`) of a completed one.
#[utoipa::path(get, path = "/api/projects/{id}/imports/{import_pk}", tag = "import", params(("id" = i64, Path), ("import_pk" = i64, Path)), responses((status = 200, body = crate::storage::imports::ImportView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_import(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, import_pk)): Path<(i64, i64)>,
) -> ApiResult<Json<crate::storage::imports::ImportView>> {
    Ok(Json(
        crate::storage::imports::get(&state.db, &actor, id, import_pk).await?,
    ))
}

/// Imports predictions: `[{"task": id, "result": [...], "score": 0.9, "model_version": "v1"}]`.
#[utoipa::path(post, path = "/api/projects/{id}/import/predictions", tag = "import", params(("id" = i64, Path)), request_body = Vec<Object>, responses((status = 201, description = "`{\"created\": N}`"), (status = 400, body = crate::error::ErrorBody)))]
pub async fn import_predictions(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonValue(body): JsonValue,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let created = create_predictions(&state, &actor, id, body).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"created": created})),
    ))
}

/// Creates the predictions of `body` (a list of them, or one) for tasks of project `id`, all or
/// nothing: `POST /api/projects/{id}/import/predictions`, also used by the data manager's import
/// page. Answers how many were created.
pub async fn create_predictions(
    state: &AppState,
    actor: &Actor,
    id: i64,
    body: Value,
) -> ApiResult<usize> {
    crate::storage::projects::get_row(
        &state.db,
        actor,
        id,
        crate::authz::Permission::PredictionManage,
    )
    .await?;
    let items = match body {
        Value::Array(items) => items,
        Value::Object(_) => vec![body],
        _ => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidJson,
                "the body must be a list of predictions",
            ));
        }
    };
    let mut inputs = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(obj) = item else {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                &format!("[{i}]"),
                "each prediction must be an object",
            ));
        };
        inputs.push(PredictionInput::from_body(obj, &format!("[{i}]."))?);
    }
    let ids = predictions::create_many(&state.db, actor, Some(id), inputs).await?;
    Ok(ids.len())
}

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(import_tasks))
        // Uploads are streamed to disk and capped by import_max_bytes instead.
        .layer(DefaultBodyLimit::disable())
        .merge(OpenApiRouter::new().routes(routes!(import_predictions)))
        .merge(OpenApiRouter::new().routes(routes!(get_import)))
}
