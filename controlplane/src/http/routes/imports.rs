//! Task and prediction import. Uploads are streamed to temporary files in the data directory
//! (bounded memory, no request-size spike), then imported in one transaction.

use axum::{
    Json,
    extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use utoipa_axum::{router::OpenApiRouter, routes};

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
        tasks::{self, ImportFormat, ImportSource, ImportSummary},
    },
};

/// Query of an import.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ImportParams {
    /// Return the ids of the created tasks.
    pub return_task_ids: Option<String>,
    /// Must be true or absent (uploads without committing are not kept).
    pub commit_to_project: Option<String>,
    /// Not supported yet.
    pub preannotated_from_fields: Option<String>,
    /// Run the import as a job: answers `{"import": <id>, "job": <id>}` at once; poll
    /// `GET /api/projects/{id}/imports/{import_pk}` (Label Studio Enterprise's flow).
    #[serde(rename = "async")]
    #[param(rename = "async")]
    pub run_async: Option<String>,
}

fn format_for(name: &str) -> ApiResult<(ImportFormat, String)> {
    let lower = name.to_ascii_lowercase();
    let ext = lower
        .rsplit_once('.')
        .map(|(_, e)| e.to_string())
        .unwrap_or_default();
    let format = match ext.as_str() {
        "json" | "jsonl" | "ndjson" => ImportFormat::Json,
        "csv" => ImportFormat::Csv,
        "tsv" => ImportFormat::Tsv,
        _ => {
            return Err(ApiError::field(
                ErrorCode::InvalidImport,
                "file",
                format!("{name}: unsupported file type; upload .json, .jsonl, .csv or .tsv files"),
            ));
        }
    };
    Ok((format, format!(".{ext}")))
}

struct Spool {
    dir: tempfile::TempDir,
    sources: Vec<ImportSource>,
    bytes: u64,
    limit: u64,
}

impl Spool {
    fn new(state: &AppState) -> ApiResult<Self> {
        let base = state.config.data_dir.join("tmp");
        std::fs::create_dir_all(&base).map_err(ApiError::internal)?;
        Ok(Self {
            dir: tempfile::tempdir_in(&base).map_err(ApiError::internal)?,
            sources: Vec::new(),
            bytes: 0,
            limit: state.config.import_max_bytes,
        })
    }

    async fn file(
        &mut self,
        format: ImportFormat,
        extension: String,
    ) -> ApiResult<tokio::fs::File> {
        let path = self
            .dir
            .path()
            .join(format!("upload-{}", self.sources.len()));
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(ApiError::internal)?;
        self.sources.push(ImportSource {
            path,
            format,
            extension,
        });
        Ok(file)
    }

    async fn write(&mut self, file: &mut tokio::fs::File, chunk: &[u8]) -> ApiResult<()> {
        self.bytes += chunk.len() as u64;
        if self.bytes > self.limit {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the upload is larger than {} bytes (import_max_bytes); split it into several imports",
                    self.limit
                ),
            ));
        }
        file.write_all(chunk).await.map_err(ApiError::internal)
    }
}

/// Imports tasks: a JSON list, one JSON object, JSON lines, CSV or TSV in the body, or files in
/// a multipart upload. All or nothing: one bad task rejects the request with its index. With
/// `async=true` the upload is stored and imported by a job: `201 {"import", "job"}`.
#[utoipa::path(post, path = "/api/projects/{id}/import", tag = "import", params(("id" = i64, Path), ImportParams), request_body(content = Object, description = "tasks"), responses((status = 201, body = ImportSummary), (status = 400, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody)))]
pub async fn import_tasks(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Query(params): Query<ImportParams>,
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
    if params
        .preannotated_from_fields
        .as_deref()
        .is_some_and(|s| !s.is_empty())
    {
        return Err(ApiError::field(
            ErrorCode::InvalidQuery,
            "preannotated_from_fields",
            "not supported yet; send predictions inside the tasks",
        ));
    }
    // Check access before reading a possibly large body.
    crate::storage::projects::get_row(&state.db, &actor, id, crate::authz::Permission::TaskManage)
        .await?;
    let content_type = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_ascii_lowercase();
    let mut spool = Spool::new(&state)?;
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|e| {
                ApiError::bad_request(
                    ErrorCode::InvalidImport,
                    format!("invalid multipart body: {}", e.body_text()),
                )
            })?;
        while let Some(mut field) = multipart.next_field().await.map_err(|e| {
            ApiError::bad_request(
                ErrorCode::InvalidImport,
                format!("invalid multipart body: {}", e.body_text()),
            )
        })? {
            let Some(name) = field.file_name().map(str::to_string) else {
                continue;
            };
            let (format, ext) = format_for(&name)?;
            let mut file = spool.file(format, ext).await?;
            while let Some(chunk) = field.chunk().await.map_err(|e| {
                ApiError::bad_request(
                    ErrorCode::InvalidImport,
                    format!("upload interrupted: {}", e.body_text()),
                )
            })? {
                spool.write(&mut file, &chunk).await?;
            }
            file.flush().await.map_err(ApiError::internal)?;
        }
        if spool.sources.is_empty() {
            return Err(ApiError::field(
                ErrorCode::InvalidImport,
                "file",
                "the multipart upload has no file",
            ));
        }
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidImport,
            "importing from a URL is not supported; upload the file or send the tasks as JSON",
        ));
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
    if opt_bool("async", &params.run_async)? == Some(true) {
        let import =
            crate::storage::imports::create(&state.db, &actor, id, &spool.sources, return_ids)
                .await?;
        drop(spool);
        let job = crate::imports::enqueue(&state.jobs, actor.org_id, import)
            .await
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::Unavailable,
                    format!("the job queue did not take the import: {e}"),
                )
            })?;
        crate::storage::imports::set_job(&state.db, import, &job).await?;
        return Ok((
            StatusCode::CREATED,
            Json(serde_json::json!({"import": import, "job": job})),
        )
            .into_response());
    }
    let mut summary = tasks::import(&state.db, &actor, id, &spool.sources, true).await?;
    drop(spool);
    let created = if return_ids {
        summary.task_ids.clone().unwrap_or_default()
    } else {
        summary.task_ids.take().unwrap_or_default()
    };
    crate::imports::announce(
        &state.db,
        &state.jobs,
        actor.org_id,
        id,
        created,
        summary.annotation_count > 0,
    )
    .await;
    Ok((StatusCode::CREATED, Json(summary)).into_response())
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
    crate::storage::projects::get_row(
        &state.db,
        &actor,
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
    let ids = predictions::create_many(&state.db, &actor, Some(id), inputs).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"created": ids.len()})),
    ))
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
