//! Uploaded files (Label Studio's `FileUpload`, ADR 0032): listing, replacing and deleting the
//! files a multipart import stored, and serving them at `/data/upload/{project}/{file}`.

use axum::{
    Json,
    body::Body,
    extract::{DefaultBodyLimit, FromRequest, Multipart, RawQuery, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    authz::Actor,
    error::{ApiError, ApiResult, ErrorCode},
    http::{AppState, extract::Path},
    proxy::{Range, parse_range},
    storage::uploads::{self, FileUploadView},
};

fn ids_param(query: Option<&str>) -> ApiResult<Option<Vec<i64>>> {
    let raw = super::imports::repeated(query, "ids");
    if raw.is_empty() {
        return Ok(None);
    }
    raw.iter()
        .map(|s| s.parse::<i64>())
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
        .map_err(|_| ApiError::field(ErrorCode::InvalidQuery, "ids", "must be a list of ids"))
}

/// The files uploaded to a project (oldest first); `ids` narrows the list.
#[utoipa::path(get, path = "/api/projects/{id}/file-uploads", tag = "import", params(("id" = i64, Path), ("ids" = Option<String>, Query, description = "Only these uploads: comma-separated ids, a JSON list, or the parameter repeated.")), responses((status = 200, body = Vec<FileUploadView>), (status = 404, body = crate::error::ErrorBody)))]
pub async fn list_uploads(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Vec<FileUploadView>>> {
    let ids = ids_param(query.as_deref())?;
    Ok(Json(
        uploads::list(&state.db, &actor, id, ids.as_deref()).await?,
    ))
}

/// Deletes a project's uploaded files that no task uses: those named by `file_upload_ids` in
/// the body (or `ids` in the query), or all. Answers `{"deleted": N}`; files that tasks were
/// made of stay until the tasks are deleted.
#[utoipa::path(delete, path = "/api/projects/{id}/file-uploads", tag = "import", params(("id" = i64, Path), ("ids" = Option<String>, Query, description = "Only these uploads: comma-separated ids, a JSON list, or the parameter repeated.")), request_body(content = Object, description = "`{\"file_upload_ids\": [ids]}` (optional)"), responses((status = 200, description = "`{\"deleted\": N}`"), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_uploads(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    RawQuery(query): RawQuery,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let mut ids = ids_param(query.as_deref())?;
    if !body.is_empty() {
        let value: Value = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(ErrorCode::InvalidJson, format!("invalid JSON body: {e}"))
        })?;
        match value.get("file_upload_ids") {
            None | Some(Value::Null) => {}
            Some(list) => {
                ids = Some(serde_json::from_value(list.clone()).map_err(|_| {
                    ApiError::field(
                        ErrorCode::ValidationError,
                        "file_upload_ids",
                        "must be a list of ids",
                    )
                })?);
            }
        }
    }
    let deleted = uploads::delete_many(&state.db, &actor, id, ids.as_deref()).await?;
    let n = deleted.len();
    uploads::remove_files(
        &state.config.data_dir,
        id,
        deleted.into_iter().map(|r| r.file),
    );
    Ok(Json(json!({"deleted": n})))
}

/// One uploaded file.
#[utoipa::path(get, path = "/api/import/file-upload/{id}", tag = "import", params(("id" = i64, Path)), responses((status = 200, body = FileUploadView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_upload(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<FileUploadView>> {
    Ok(Json(uploads::get(&state.db, &actor, id).await?))
}

/// Replaces an uploaded file's content with the file of a multipart body (`file`); the name,
/// URL and tasks stay. The new content is written beside the old and renamed over it.
#[utoipa::path(patch, path = "/api/import/file-upload/{id}", tag = "import", params(("id" = i64, Path)), request_body(content = Object, description = "multipart: `file`", content_type = "multipart/form-data"), responses((status = 200, body = FileUploadView), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody)))]
pub async fn patch_upload(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    request: Request,
) -> ApiResult<Json<FileUploadView>> {
    let row = uploads::for_update(&state.db, &actor, id).await?;
    let mut multipart = Multipart::from_request(request, &state)
        .await
        .map_err(|e| {
            ApiError::bad_request(
                ErrorCode::InvalidImport,
                format!(
                    "send the new content as a multipart upload (file=@...): {}",
                    e.body_text()
                ),
            )
        })?;
    let dir = uploads::project_dir(&state.config.data_dir, row.project_id);
    std::fs::create_dir_all(&dir).map_err(ApiError::internal)?;
    let limit = state.config.import_max_bytes;
    let interrupted = |e: axum::extract::multipart::MultipartError| {
        ApiError::bad_request(
            ErrorCode::InvalidImport,
            format!("invalid multipart body: {}", e.body_text()),
        )
    };
    while let Some(mut field) = multipart.next_field().await.map_err(interrupted)? {
        if field.file_name().is_none() {
            continue;
        }
        let temp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .map_err(ApiError::internal)?;
        let mut file = tokio::fs::File::from_std(temp.reopen().map_err(ApiError::internal)?);
        let mut size = 0u64;
        while let Some(chunk) = field.chunk().await.map_err(interrupted)? {
            size += chunk.len() as u64;
            if size > limit {
                return Err(ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("the file is larger than {limit} bytes (import_max_bytes)"),
                ));
            }
            file.write_all(&chunk).await.map_err(ApiError::internal)?;
        }
        file.flush().await.map_err(ApiError::internal)?;
        file.sync_all().await.map_err(ApiError::internal)?;
        drop(file);
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        uploads::replaced(&state.db, &actor, &row, size).await?;
        temp.persist(dir.join(&row.file))
            .map_err(ApiError::internal)?;
        return Ok(Json(uploads::get(&state.db, &actor, id).await?));
    }
    Err(ApiError::field(
        ErrorCode::InvalidImport,
        "file",
        "the multipart body has no file",
    ))
}

/// Deletes an uploaded file that no task uses (409 `conflict` while tasks use it).
#[utoipa::path(delete, path = "/api/import/file-upload/{id}", tag = "import", params(("id" = i64, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn delete_upload(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let row = uploads::delete_one(&state.db, &actor, id).await?;
    uploads::remove_files(&state.config.data_dir, row.project_id, [row.file]);
    Ok(StatusCode::NO_CONTENT)
}

/// An uploaded file, streamed with its Content-Type and Content-Length, to signed-in users who
/// may view its project: 404 for unknown names and other organizations, the project's 403 for
/// members of the organization without access. One byte range (`Range: bytes=a-b`, `a-`, `-n`)
/// is answered with 206 and `Content-Range`, an unsatisfiable one with 416 and
/// `Content-Range: bytes */<size>`; several ranges get the whole file (ADR 0042). `HEAD` answers
/// the same headers without a body.
#[utoipa::path(get, path = "/data/upload/{project}/{file}", tag = "import", params(("project" = i64, Path), ("file" = String, Path), ("Range" = Option<String>, Header, description = "One byte range: `bytes=0-99`, `bytes=100-` or `bytes=-100`.")), responses((status = 200, description = "the file"), (status = 206, description = "the requested bytes"), (status = 404, body = crate::error::ErrorBody), (status = 416, body = crate::error::ErrorBody)))]
pub async fn serve_upload(
    State(state): State<AppState>,
    actor: Actor,
    method: Method,
    headers: HeaderMap,
    Path((project, file)): Path<(i64, String)>,
) -> ApiResult<Response> {
    if !uploads::valid_name(&file) {
        return Err(ApiError::not_found("file"));
    }
    let Some(_) = uploads::for_serving(&state.db, &actor, project, &file).await? else {
        return Err(ApiError::not_found("file"));
    };
    let path = uploads::project_dir(&state.config.data_dir, project).join(&file);
    let mut handle = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiError::not_found("file"))?;
    let meta = handle.metadata().await.map_err(ApiError::internal)?;
    let len = meta.len();
    // The validator a client may send back in If-Range: a range of another version of the
    // file (replaced by PATCH) must not be spliced onto what it holds.
    let modified = meta.modified().ok().map(httpdate::fmt_http_date);
    let range = match headers.get(header::IF_RANGE) {
        Some(v) if modified.is_none() || v.to_str().ok() != modified.as_deref() => None,
        _ => headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .map(|v| parse_range(v, len)),
    };
    let (status, start, size) = match range {
        Some(Range::Unsatisfiable) => {
            let mut response = ApiError::new(
                ErrorCode::RangeNotSatisfiable,
                format!("the requested range lies outside the file ({len} bytes)"),
            )
            .into_response();
            let h = response.headers_mut();
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            return Ok(response);
        }
        Some(Range::Bytes(start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Some(Range::Ignored) | None => (StatusCode::OK, 0, len),
    };
    let body = if method == Method::HEAD || size == 0 {
        Body::empty()
    } else {
        handle
            .seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(ApiError::internal)?;
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
            handle.take(size),
            64 * 1024,
        ))
    };
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, crate::proxy::content_type(&file))
        .header(header::CONTENT_LENGTH, size)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CACHE_CONTROL, "private, max-age=0")
        .header("x-content-type-options", "nosniff")
        // An uploaded HTML or SVG file opened directly must not run script as this origin
        // (the storage proxy does the same); media embedded in a page is unaffected.
        .header(header::CONTENT_SECURITY_POLICY, "sandbox");
    if let Some(modified) = &modified {
        response = response.header(header::LAST_MODIFIED, modified);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        response = response.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{len}", start + size - 1),
        );
    }
    response.body(body).map_err(ApiError::internal)
}

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_uploads, delete_uploads))
        .routes(routes!(get_upload, delete_upload))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(patch_upload))
                // Replacements are streamed to disk and capped by import_max_bytes instead.
                .layer(DefaultBodyLimit::disable()),
        )
        .routes(routes!(serve_upload))
}
