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

use crate::{
    authz::Actor,
    domain::label_config::LabelConfig,
    error::{ApiError, ApiResult, ErrorCode},
    http::extract::Path,
    http::{
        AppState,
        extract::{JsonValue, Query, opt_bool},
    },
    storage::{
        predictions::{self, PredictionInput},
        tasks::{self, ImportFormat, ImportOptions, ImportSource, ImportSummary},
        uploads::StoredUpload,
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

/// The format of a task file by its name (`None`: not a task file, so a media file).
fn task_format(name: &str) -> Option<(ImportFormat, String)> {
    let lower = name.to_ascii_lowercase();
    let ext = lower.rsplit_once('.').map(|(_, e)| e.to_string())?;
    let format = match ext.as_str() {
        "json" | "jsonl" | "ndjson" => ImportFormat::Json,
        "csv" => ImportFormat::Csv,
        "tsv" => ImportFormat::Tsv,
        _ => return None,
    };
    Some((format, format!(".{ext}")))
}

/// File types kept as media tasks (ADR 0032): images, audio, video, text and documents that
/// Label Studio's editor shows. Anything else (an executable, an archive) is refused.
const MEDIA_EXTENSIONS: &[&str] = &[
    "avif", "bmp", "gif", "jpeg", "jpg", "png", "svg", "tif", "tiff", "webp", "aac", "flac", "m4a",
    "mp3", "oga", "ogg", "opus", "wav", "mov", "mp4", "webm", "htm", "html", "md", "txt", "xml",
    "pdf",
];

/// Whether a file that is not a task file may be kept as a media task.
fn is_media(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| MEDIA_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
}

/// The task data key a media file's URL goes under (ADR 0032): the one key the label config
/// reads, or Label Studio's `$undefined$` when it reads none.
fn media_key(config: Option<&LabelConfig>) -> Result<String, String> {
    let keys: Vec<String> = config
        .map(|c| c.data_keys().into_iter().collect())
        .unwrap_or_default();
    match keys.as_slice() {
        [] => Ok("$undefined$".to_string()),
        [one] => Ok(one.clone()),
        several => Err(format!(
            "the label config reads {} data keys ({}) and an uploaded media file fills one; upload a task file (JSON, CSV, TSV) that names every key instead",
            several.len(),
            several.join(", ")
        )),
    }
}

/// What an import received: task sources spooled or stored, and the files it stored under the
/// project's upload directory, which are removed again unless the import succeeded.
struct Spool {
    dir: tempfile::TempDir,
    sources: Vec<ImportSource>,
    bytes: u64,
    limit: u64,
    project: i64,
    data_dir: std::path::PathBuf,
    media_key: Result<String, String>,
    /// Stored names of the files kept under the upload directory.
    stored: Vec<String>,
    /// Set once the import succeeded: the stored files stay.
    keep: bool,
}

impl Drop for Spool {
    fn drop(&mut self) {
        if !self.keep {
            crate::storage::uploads::remove_files(
                &self.data_dir,
                self.project,
                std::mem::take(&mut self.stored),
            );
        }
    }
}

impl Spool {
    fn new(state: &AppState, project: i64, config: Option<&LabelConfig>) -> ApiResult<Self> {
        let base = state.config.data_dir.join("tmp");
        std::fs::create_dir_all(&base).map_err(ApiError::internal)?;
        Ok(Self {
            dir: tempfile::tempdir_in(&base).map_err(ApiError::internal)?,
            sources: Vec::new(),
            bytes: 0,
            limit: state.config.import_max_bytes,
            project,
            data_dir: state.config.data_dir.clone(),
            media_key: media_key(config),
            stored: Vec::new(),
            keep: false,
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
            upload: None,
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

    /// Stores an uploaded file under the project's upload directory (written to a temporary
    /// file there and renamed into place once complete) and adds it as a source: a task file
    /// is read as tasks, any other file becomes one task whose data points at its URL.
    async fn take<S, E>(&mut self, name: &str, stream: S) -> ApiResult<()>
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>>,
        E: std::fmt::Display,
    {
        let format = task_format(name);
        if format.is_none() && !is_media(name) {
            return Err(ApiError::field(
                ErrorCode::InvalidImport,
                "file",
                format!(
                    "{name}: not a file type that can be imported; upload task files (JSON, JSON lines, CSV, TSV) or media (images, audio, video, text, HTML, PDF)"
                ),
            ));
        }
        if format.is_none()
            && let Err(why) = &self.media_key
        {
            return Err(ApiError::field(
                ErrorCode::InvalidImport,
                "file",
                format!("{name}: {why}"),
            ));
        }
        let dir = crate::storage::uploads::project_dir(&self.data_dir, self.project);
        std::fs::create_dir_all(&dir).map_err(ApiError::internal)?;
        let temp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .map_err(ApiError::internal)?;
        let mut file = tokio::fs::File::from_std(temp.reopen().map_err(ApiError::internal)?);
        let mut size = 0i64;
        let mut stream = std::pin::pin!(stream);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request(ErrorCode::InvalidImport, format!("upload interrupted: {e}"))
            })?;
            size += chunk.len() as i64;
            self.write(&mut file, &chunk).await?;
        }
        file.flush().await.map_err(ApiError::internal)?;
        file.sync_all().await.map_err(ApiError::internal)?;
        drop(file);
        let stored = crate::storage::uploads::stored_name(name);
        let path = dir.join(&stored);
        temp.persist(&path).map_err(ApiError::internal)?;
        self.stored.push(stored.clone());
        let upload = Some(StoredUpload {
            file: stored.clone(),
            size,
        });
        match format {
            Some((format, extension)) => self.sources.push(ImportSource {
                path,
                format,
                extension,
                upload,
            }),
            None => {
                let key = self.media_key.clone().unwrap_or_default();
                let task = serde_json::json!({
                    "data": {key: crate::storage::uploads::url(self.project, &stored)}
                });
                let spooled = self
                    .dir
                    .path()
                    .join(format!("upload-{}", self.sources.len()));
                tokio::fs::write(&spooled, task.to_string())
                    .await
                    .map_err(ApiError::internal)?;
                let extension = name
                    .rsplit_once('.')
                    .map(|(_, e)| format!(".{}", e.to_ascii_lowercase()))
                    .unwrap_or_default();
                self.sources.push(ImportSource {
                    path: spooled,
                    format: ImportFormat::Json,
                    extension,
                    upload,
                });
            }
        }
        Ok(())
    }
}

/// How long fetching an import's URL may take.
const URL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Fetches an import's URL under the outbound rules and stores what it answers like an
/// uploaded file named after the URL's last path segment (a task file by the answer's
/// Content-Type or the name's extension, otherwise a media file).
async fn fetch_url(state: &AppState, spool: &mut Spool, url: &str) -> ApiResult<()> {
    let bad = |why: String| ApiError::field(ErrorCode::InvalidImport, "url", why);
    let policy = crate::outbound::TargetPolicy::parse(&state.config.allow_private_targets)
        .map_err(ApiError::internal)?;
    let parsed = policy.check_url(url.trim()).map_err(|why| {
        if why.contains("private") {
            ApiError::field(ErrorCode::PrivateTarget, "url", why)
        } else {
            bad(why)
        }
    })?;
    let client = crate::webhooks::client(std::sync::Arc::new(policy), URL_TIMEOUT);
    let response = client.get(parsed.clone()).send().await.map_err(|e| {
        let why = crate::outbound::describe(&e);
        if why.starts_with("refused") {
            ApiError::field(ErrorCode::PrivateTarget, "url", why)
        } else {
            bad(format!("fetching the URL failed: {why}"))
        }
    })?;
    if !response.status().is_success() {
        return Err(bad(format!(
            "fetching the URL answered {}; check the address",
            response.status()
        )));
    }
    if let Some(len) = response.content_length()
        && len > spool.limit.saturating_sub(spool.bytes)
    {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the URL's content is {len} bytes, more than {} (import_max_bytes)",
                spool.limit
            ),
        ));
    }
    let mut name = parsed
        .path_segments()
        .and_then(|mut s| s.next_back().map(str::to_string))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "download".to_string());
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if task_format(&name).is_none() {
        let by_type = if content_type.starts_with("application/json") {
            Some("json")
        } else if content_type.starts_with("application/x-ndjson")
            || content_type.starts_with("application/jsonl")
        {
            Some("jsonl")
        } else if content_type.starts_with("text/csv") {
            Some("csv")
        } else if content_type.starts_with("text/tab-separated-values") {
            Some("tsv")
        } else {
            None
        };
        if let Some(ext) = by_type {
            name = format!("{name}.{ext}");
        }
    }
    spool
        .take(
            &name,
            response
                .bytes_stream()
                .map(|c| c.map_err(|e| crate::outbound::describe(&e))),
        )
        .await
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
    if run_async && !options.preannotated_from_fields.is_empty() {
        return Err(ApiError::field(
            ErrorCode::InvalidQuery,
            "preannotated_from_fields",
            "not supported with async=true; import without async",
        ));
    }
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
    let mut spool = Spool::new(&state, id, config.as_deref())?;
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|e| {
                ApiError::bad_request(
                    ErrorCode::InvalidImport,
                    format!("invalid multipart body: {}", e.body_text()),
                )
            })?;
        while let Some(field) = multipart.next_field().await.map_err(|e| {
            ApiError::bad_request(
                ErrorCode::InvalidImport,
                format!("invalid multipart body: {}", e.body_text()),
            )
        })? {
            let Some(name) = field.file_name().map(str::to_string) else {
                continue;
            };
            if run_async && task_format(&name).is_none() {
                return Err(ApiError::field(
                    ErrorCode::InvalidImport,
                    "file",
                    format!(
                        "{name}: media files are not imported with async=true; import without async"
                    ),
                ));
            }
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
            return Err(ApiError::field(
                ErrorCode::InvalidImport,
                "url",
                "importing from a URL is not supported with async=true; import without async",
            ));
        }
        fetch_url(&state, &mut spool, url).await?;
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
    if run_async {
        // Task files of an import run as a job are kept with the import, not as uploads.
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
    let mut summary = tasks::import_opts(
        &state.db,
        &actor,
        id,
        &spool.sources,
        true,
        tasks::Claim::None,
        &options,
    )
    .await?;
    spool.keep = true;
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
