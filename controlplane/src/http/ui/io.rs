//! The data manager's import and export pages (ADR 0049): `/projects/{id}/data/import` (upload
//! files or give a URL, follow an import run as a job, sync a connected storage) and
//! `/projects/{id}/data/export` (download in a format; create, follow, download and delete
//! snapshots, convert them to other formats).
//!
//! They run the API's own code and never a copy of it: uploads go through the import spool and
//! [`imports::commit`] of `POST /api/projects/{id}/import`, syncs through
//! [`storages::start_sync`], snapshots through [`exports::start_snapshot`], conversions through
//! [`exports::start_conversion`], and the
//! downloads are links to the API's download endpoints (a GET with the session cookie is
//! authenticated there). Permissions are the API's: `task.manage` to import,
//! `storage.manage` to see and sync storages, `export.run` to export.

use axum::{
    extract::{FromRequest, Multipart, Request, State},
    http::{StatusCode, header},
    response::Response,
};
use minijinja::context;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    PageUser, error_page,
    pages::{
        csrf_forms, csrf_refusal, js, project_form, project_header, project_page_user, project_role,
    },
    redirect, render, user_context,
};
use crate::{
    authz::{Permission, Role},
    error::{ApiError, ErrorCode},
    http::{
        AppState,
        routes::{
            exports,
            imports::{self, ImportOutcome, ImportRun, multipart_error},
            storages,
        },
    },
    imports::Spool,
    storage::{
        imports as stored_imports, projects, snapshots, storages::Direction, tasks::ImportOptions,
    },
};

/// Uploads of task files (JSON, CSV, TSV) up to this size are imported while the page waits,
/// as a synchronous API import; media files, a URL or a larger upload run as a job whose
/// progress the page follows (ADR 0049).
const SYNC_IMPORT_BYTES: u64 = 4 * 1024 * 1024;

/// Longest value of a text field of the import form (the CSRF token, the URL).
const MAX_TEXT_FIELD: usize = 8 * 1024;

/// Seconds between the reloads of a page that follows a job.
const REFRESH_SECS: u32 = 1;

/// Whether a job's `status` (import, snapshot, storage sync) is still to end.
fn running(status: &str) -> bool {
    matches!(status, "created" | "queued" | "in_progress")
}

/// The path segment `n` of the request as a number.
fn path_number(parts: &axum::http::request::Parts, n: usize) -> Option<i64> {
    parts
        .uri
        .path()
        .split('/')
        .nth(n)
        .and_then(|s| s.parse().ok())
}

/// What the import page shows besides its forms.
#[derive(Default)]
struct ImportNotice {
    /// A synchronous import's summary.
    result: Option<Value>,
    error: Option<String>,
    /// Set after a sync was started: the page follows the storages until their syncs end.
    follow_syncs: bool,
    /// How many predictions a predictions file created.
    predictions: Option<usize>,
    /// Why a predictions file was refused.
    predictions_error: Option<String>,
}

/// Renders the import page (403 without `task.manage`, as the API).
async fn import_view(
    state: &AppState,
    user: &PageUser,
    id: i64,
    status: StatusCode,
    notice: ImportNotice,
) -> Response {
    let role = match project_role(state, user, id, Permission::TaskManage).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let project = match projects::get(&state.db, &user.actor, id).await {
        Ok(p) => p,
        Err(e) => return error_page(Some(user), &e),
    };
    let can_sync = role >= Permission::StorageManage.minimum_role();
    let can_predict = role >= Permission::PredictionManage.minimum_role();
    let list = if can_sync {
        match storages::project_storages(state, &user.actor, Direction::Import, id).await {
            Ok(l) => l,
            Err(e) => return error_page(Some(user), &e),
        }
    } else {
        Vec::new()
    };
    let refresh = notice.follow_syncs
        && list
            .iter()
            .any(|s| running(s["status"].as_str().unwrap_or("")));
    render(
        status,
        "import.html",
        context! {
            user => user_context(user),
            project => js(&project_header(&project, role)),
            storages => js(&list),
            can_sync => can_sync,
            can_predict => can_predict,
            result => notice.result.map(|r| js(&r)),
            error => notice.error,
            predictions => notice.predictions,
            predictions_error => notice.predictions_error,
            refresh => refresh.then_some(REFRESH_SECS),
            max_bytes => state.config.import_max_bytes,
        },
    )
}

/// `GET /projects/{id}/data/import`.
pub(super) async fn import_page(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let (user, id) = match project_page_user(&state, &parts).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let notice = ImportNotice {
        follow_syncs: parts.uri.query().is_some_and(|q| q.contains("sync=1")),
        ..ImportNotice::default()
    };
    import_view(&state, &user, id, StatusCode::OK, notice).await
}

/// Why an upload was not imported: a page to answer with (CSRF), or the API's refusal.
enum Refusal {
    Page(Response),
    Api(ApiError),
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal::Api(e)
    }
}

/// A text field of the multipart form, at most [`MAX_TEXT_FIELD`] bytes.
async fn text_field(mut field: axum::extract::multipart::Field<'_>) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| multipart_error(&e.body_text()))?
    {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_TEXT_FIELD {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidImport,
                "a field of the import form is too long",
            ));
        }
    }
    String::from_utf8(bytes)
        .map_err(|_| ApiError::bad_request(ErrorCode::InvalidImport, "a form field is not UTF-8"))
}

/// Reads the import form (its CSRF token first, as the page sends it, then the files, which go
/// through the API's spool) and imports through the API's [`imports::commit`].
async fn upload(
    state: &AppState,
    user: &PageUser,
    id: i64,
    request: Request,
) -> Result<ImportOutcome, Refusal> {
    let project = projects::get_row(&state.db, &user.actor, id, Permission::TaskManage).await?;
    let config = project.config();
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !is_multipart {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidImport,
            "the import form must be sent as multipart/form-data",
        )
        .into());
    }
    let mut spool = Spool::new(
        &state.config.data_dir,
        state.config.import_max_bytes,
        id,
        config.as_deref(),
    )?;
    let mut multipart = Multipart::from_request(request, state)
        .await
        .map_err(|e| multipart_error(&e.body_text()))?;
    let mut checked = false;
    let mut url = String::new();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(&e.body_text()))?
    {
        let name = field.name().unwrap_or_default().to_string();
        match field.file_name().map(str::to_string) {
            // Nothing is stored before the form has shown it comes from this site.
            Some(_) if !checked => {
                return Err(Refusal::Page(
                    csrf_refusal(user, "").unwrap_or_else(|| redirect("/")),
                ));
            }
            // A file input left empty.
            Some(file) if file.is_empty() => {}
            Some(file) => {
                use futures::StreamExt;
                spool
                    .take(&file, field.map(|c| c.map_err(|e| e.body_text())))
                    .await?;
            }
            None => {
                let text = text_field(field).await?;
                match name.as_str() {
                    "csrf_token" => {
                        if let Some(refused) = csrf_refusal(user, &text) {
                            return Err(Refusal::Page(refused));
                        }
                        checked = true;
                    }
                    "url" => url = text.trim().to_string(),
                    _ => {}
                }
            }
        }
    }
    if !checked {
        return Err(Refusal::Page(
            csrf_refusal(user, "").unwrap_or_else(|| redirect("/")),
        ));
    }
    let url = (!url.is_empty()).then_some(url);
    match (spool.sources.is_empty(), &url) {
        (true, None) => {
            return Err(ApiError::field(
                ErrorCode::InvalidImport,
                "file",
                "Choose one or more files to upload, or give the URL of a file to import.",
            )
            .into());
        }
        (false, Some(_)) => {
            return Err(ApiError::field(
                ErrorCode::InvalidImport,
                "url",
                "Upload files or give a URL, not both: a URL is imported on its own.",
            )
            .into());
        }
        _ => {}
    }
    if let Some(u) = &url {
        // The job fetches it; an address the outbound rules refuse is answered now (as the API).
        crate::imports::check_url(&state.config.allow_private_targets, u)?;
    }
    let run_async = url.is_some() || spool.has_media() || spool.bytes() > SYNC_IMPORT_BYTES;
    let run = ImportRun {
        return_task_ids: false,
        run_async,
        url,
        options: ImportOptions::default(),
    };
    Ok(imports::commit(state, &user.actor, id, spool, run).await?)
}

/// `POST /projects/{id}/data/import`: the upload form (multipart). A synchronous import shows
/// its result at once; one run as a job sends the browser to its progress page.
pub(super) async fn import_post(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (user, id) = match project_page_user(&state, &parts).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    // Refused before the body is read, as the API does.
    if let Err(r) = project_role(&state, &user, id, Permission::TaskManage).await {
        return r;
    }
    match upload(&state, &user, id, Request::from_parts(parts, body)).await {
        Ok(ImportOutcome::Queued { import, .. }) => {
            redirect(&format!("/projects/{id}/data/import/{import}"))
        }
        Ok(ImportOutcome::Done(summary)) => {
            let result = json!({
                "status": "completed",
                "task_count": summary.task_count,
                "annotation_count": summary.annotation_count,
                "prediction_count": summary.prediction_count,
                "duration": summary.duration,
                "found_formats": summary.found_formats,
            });
            let notice = ImportNotice {
                result: Some(result),
                ..ImportNotice::default()
            };
            import_view(&state, &user, id, StatusCode::OK, notice).await
        }
        Err(refusal) => {
            refused(&state, &user, id, refusal, |error| ImportNotice {
                error: Some(error),
                ..ImportNotice::default()
            })
            .await
        }
    }
}

/// The import page's answer to a refused form: a page as it is (CSRF); the API's client
/// error shown on the import page through `notice`; anything else (a missing project, a
/// server error) as the error page.
async fn refused(
    state: &AppState,
    user: &PageUser,
    id: i64,
    refusal: Refusal,
    notice: impl FnOnce(String) -> ImportNotice,
) -> Response {
    match refusal {
        Refusal::Page(r) => r,
        Refusal::Api(e) if e.code.status().is_client_error() && e.code != ErrorCode::NotFound => {
            let status = e.code.status();
            import_view(state, user, id, status, notice(e.detail)).await
        }
        Refusal::Api(e) => error_page(Some(user), &e),
    }
}

/// `GET /projects/{id}/data/import/{import_pk}`: an import run as a job, as
/// `GET /api/projects/{id}/imports/{import_pk}` shows it; reloads itself until it has ended.
pub(super) async fn import_status_page(
    State(state): State<AppState>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let (user, id) = match project_page_user(&state, &parts).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(import_pk) = path_number(&parts, 5) else {
        return error_page(Some(&user), &ApiError::not_found("import"));
    };
    let role = match project_role(&state, &user, id, Permission::TaskManage).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let view = match stored_imports::get(&state.db, &user.actor, id, import_pk).await {
        Ok(v) => v,
        Err(e) => return error_page(Some(&user), &e),
    };
    let project = match projects::get(&state.db, &user.actor, id).await {
        Ok(p) => p,
        Err(e) => return error_page(Some(&user), &e),
    };
    render(
        StatusCode::OK,
        "import_status.html",
        context! {
            user => user_context(&user),
            project => js(&project_header(&project, role)),
            import => js(&view),
            refresh => running(&view.status).then_some(REFRESH_SECS),
        },
    )
}

/// Reads the predictions form (its CSRF token first, then one JSON file of predictions, at most
/// the API's `max_body_bytes`) and creates them through the API's
/// [`imports::create_predictions`].
async fn upload_predictions(
    state: &AppState,
    user: &PageUser,
    id: i64,
    request: Request,
) -> Result<usize, Refusal> {
    let mut multipart = Multipart::from_request(request, state)
        .await
        .map_err(|e| multipart_error(&e.body_text()))?;
    let mut checked = false;
    let mut file: Option<Vec<u8>> = None;
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(&e.body_text()))?
    {
        if field.file_name().is_some() {
            if !checked {
                return Err(Refusal::Page(
                    csrf_refusal(user, "").unwrap_or_else(|| redirect("/")),
                ));
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = field
                .chunk()
                .await
                .map_err(|e| multipart_error(&e.body_text()))?
            {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > state.config.max_body_bytes {
                    return Err(ApiError::new(
                        ErrorCode::PayloadTooLarge,
                        "the predictions file is larger than the server accepts (max_body_bytes)",
                    )
                    .into());
                }
            }
            if !bytes.is_empty() {
                file = Some(bytes);
            }
        } else if field.name() == Some("csrf_token") {
            let text = text_field(field).await?;
            if let Some(refused) = csrf_refusal(user, &text) {
                return Err(Refusal::Page(refused));
            }
            checked = true;
        }
    }
    if !checked {
        return Err(Refusal::Page(
            csrf_refusal(user, "").unwrap_or_else(|| redirect("/")),
        ));
    }
    let Some(bytes) = file else {
        return Err(ApiError::field(
            ErrorCode::InvalidImport,
            "file",
            "Choose a JSON file of predictions.",
        )
        .into());
    };
    let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            ErrorCode::InvalidJson,
            format!("the predictions file is not JSON: {e}"),
        )
    })?;
    Ok(imports::create_predictions(state, &user.actor, id, body).await?)
}

/// `POST /projects/{id}/data/import/predictions`: a JSON file of predictions for tasks of the
/// project (multipart), created as `POST /api/projects/{id}/import/predictions` creates them;
/// the import page then says how many.
pub(super) async fn predictions_post(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (user, id) = match project_page_user(&state, &parts).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    // Refused before the body is read, as the API does.
    if let Err(r) = project_role(&state, &user, id, Permission::PredictionManage).await {
        return r;
    }
    match upload_predictions(&state, &user, id, Request::from_parts(parts, body)).await {
        Ok(created) => {
            let notice = ImportNotice {
                predictions: Some(created),
                ..ImportNotice::default()
            };
            import_view(&state, &user, id, StatusCode::OK, notice).await
        }
        Err(refusal) => {
            refused(&state, &user, id, refusal, |error| ImportNotice {
                predictions_error: Some(error),
                ..ImportNotice::default()
            })
            .await
        }
    }
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct SyncForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    storage: String,
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct ExportForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    op: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    only_with_annotations: Option<String>,
    #[serde(default)]
    snapshot: String,
    #[serde(default)]
    export_type: String,
}

csrf_forms!(SyncForm, ExportForm);

/// `POST /projects/{id}/data/import/sync`: starts the sync of one of the project's import
/// storages, as `POST /api/storages/{type}/{id}/sync` does, and follows it on the import page.
pub(super) async fn sync_post(State(state): State<AppState>, request: Request) -> Response {
    let (user, id, _, form) = match project_form::<SyncForm>(&state, request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    // Only a storage of this project (the list checks storage.manage).
    let list = match storages::project_storages(&state, &user.actor, Direction::Import, id).await {
        Ok(l) => l,
        Err(e) => return error_page(Some(&user), &e),
    };
    let storage: Option<i64> = form.storage.trim().parse().ok();
    let Some(storage) = storage.filter(|s| {
        list.iter()
            .any(|v| v["id"].as_i64() == Some(*s) && v["type"].as_str() == Some(form.kind.as_str()))
    }) else {
        return error_page(Some(&user), &ApiError::not_found("storage"));
    };
    match storages::start_sync(&state, &user.actor, Direction::Import, &form.kind, storage).await {
        Ok(_) => redirect(&format!("/projects/{id}/data/import?sync=1")),
        Err(e) if e.code.status().is_client_error() && e.code != ErrorCode::NotFound => {
            let notice = ImportNotice {
                error: Some(e.detail.clone()),
                ..ImportNotice::default()
            };
            import_view(&state, &user, id, e.code.status(), notice).await
        }
        Err(e) => error_page(Some(&user), &e),
    }
}

/// Renders the export page (403 without `export.run`, as the API).
async fn export_view(
    state: &AppState,
    user: &PageUser,
    id: i64,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let role: Role = match project_role(state, user, id, Permission::ExportRun).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let row = match projects::get_row(&state.db, &user.actor, id, Permission::ExportRun).await {
        Ok(r) => r,
        Err(e) => return error_page(Some(user), &e),
    };
    let project = match projects::get(&state.db, &user.actor, id).await {
        Ok(p) => p,
        Err(e) => return error_page(Some(user), &e),
    };
    let formats: Vec<Value> = exports::formats_of(&row)
        .into_iter()
        .map(|(mut format, refusal)| {
            format["reason"] = json!(refusal);
            format
        })
        .collect();
    let list = match snapshots::list(&state.db, &user.actor, id).await {
        Ok(l) => l,
        Err(e) => return error_page(Some(user), &e),
    };
    // Followed while a snapshot or one of its conversions is being written.
    let refresh = list.iter().any(|s| {
        running(&s.status)
            || s.converted_formats.as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| running(c["status"].as_str().unwrap_or("")))
            })
    });
    render(
        status,
        "export.html",
        context! {
            user => user_context(user),
            project => js(&project_header(&project, role)),
            formats => js(&formats),
            snapshots => js(&list),
            error => error,
            refresh => refresh.then_some(REFRESH_SECS),
        },
    )
}

/// `GET /projects/{id}/data/export`.
pub(super) async fn export_page(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let (user, id) = match project_page_user(&state, &parts).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    export_view(&state, &user, id, StatusCode::OK, None).await
}

/// `POST /projects/{id}/data/export`: `op=snapshot` creates a snapshot through the code of
/// `POST /api/projects/{id}/exports`; `op=convert` converts one to `export_type` through the
/// code of `POST /api/projects/{id}/exports/{pk}/convert`; `op=delete` deletes one as
/// `DELETE /api/projects/{id}/exports/{pk}` does.
pub(super) async fn export_post(State(state): State<AppState>, request: Request) -> Response {
    let (user, id, _, form) = match project_form::<ExportForm>(&state, request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let done = match form.op.as_str() {
        "snapshot" => {
            let mut body = Map::new();
            let title = form.title.trim();
            if !title.is_empty() {
                body.insert("title".into(), json!(title));
            }
            if form
                .only_with_annotations
                .as_deref()
                .is_some_and(|v| !v.is_empty())
            {
                body.insert(
                    "task_filter_options".into(),
                    json!({"only_with_annotations": true}),
                );
            }
            exports::start_snapshot(&state, &user.actor, id, &body)
                .await
                .map(|_| ())
        }
        "delete" => match form.snapshot.trim().parse::<i64>() {
            Ok(pk) => snapshots::delete(&state.db, &user.actor, id, pk).await,
            Err(_) => Err(ApiError::not_found("export")),
        },
        "convert" => match form.snapshot.trim().parse::<i64>() {
            Ok(pk) => {
                exports::start_conversion(&state, &user.actor, id, pk, form.export_type.trim())
                    .await
                    .map(|_| ())
            }
            Err(_) => Err(ApiError::not_found("export")),
        },
        other => Err(ApiError::field(
            ErrorCode::ValidationError,
            "op",
            format!("unknown form {other:?}"),
        )),
    };
    match done {
        Ok(()) => redirect(&format!("/projects/{id}/data/export")),
        Err(e) if e.code.status().is_client_error() && e.code != ErrorCode::NotFound => {
            export_view(&state, &user, id, e.code.status(), Some(e.detail.clone())).await
        }
        Err(e) => error_page(Some(&user), &e),
    }
}
