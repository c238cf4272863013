//! Export: streamed downloads in Label Studio's formats.

use axum::{
    Json,
    body::Body,
    extract::{RawQuery, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::Value;
use tokio_stream_compat::ReceiverStream;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    authz::{Actor, Permission},
    domain::convert::Target,
    error::{ApiError, ApiResult, ErrorCode},
    http::extract::JsonObject,
    http::extract::Path,
    http::{
        AppState,
        extract::{Query, opt_bool},
    },
    storage::{
        export::{self, ExportFormat, Selection},
        projects,
        snapshots::{self, SnapshotView},
    },
};

/// Query of an export.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ExportParams {
    /// JSON, JSON_MIN, CSV, CSV_OLD, TSV, CONLL2003, YOLO, YOLO_WITH_IMAGES, YOLO_OBB,
    /// YOLO_OBB_WITH_IMAGES, COCO, COCO_WITH_IMAGES, VOC, BRUSH_TO_NUMPY, BRUSH_TO_PNG,
    /// BRUSH_TO_COCO or ASR_MANIFEST.
    #[serde(rename = "exportType")]
    pub export_type_camel: Option<String>,
    /// Same as `exportType`.
    pub export_type: Option<String>,
    /// Include tasks without annotations.
    pub download_all_tasks: Option<String>,
    /// CSV/TSV: `true` writes cells starting with = + - @ as they are; by default they get a
    /// leading `'` so spreadsheet programs do not run them as formulas.
    pub keep_formulas: Option<String>,
    /// Accepted and ignored: the `*_WITH_IMAGES` formats always carry the images this server
    /// can read, the others never copy media.
    pub download_resources: Option<String>,
    /// Only these task ids (`ids=1&ids=2`, `ids[]=1` or `ids=1,2`).
    #[serde(skip)]
    #[param(value_type = Option<Vec<i64>>)]
    pub ids: (),
}

/// Task ids from `ids=1&ids=2`, `ids[]=1` or `ids=1,2` (read from the raw query because the
/// key repeats).
fn query_ids(query: Option<&str>) -> ApiResult<Vec<i64>> {
    let mut ids = Vec::new();
    for pair in query.unwrap_or_default().split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !matches!(key, "ids" | "ids[]" | "ids%5B%5D") {
            continue;
        }
        for part in value.split([',', '+']).flat_map(|v| v.split("%2C")) {
            if part.is_empty() {
                continue;
            }
            ids.push(part.trim().parse::<i64>().map_err(|_| {
                ApiError::field(
                    ErrorCode::InvalidQuery,
                    "ids",
                    format!("{part:?} is not a task id"),
                )
            })?);
        }
    }
    Ok(ids)
}

/// A file download: content type of the format, `Content-Disposition` and Label Studio's extra
/// `filename` header.
fn attachment(format: ExportFormat, filename: String, body: Body) -> ApiResult<Response> {
    Response::builder()
        .header(header::CONTENT_TYPE, format.content_type())
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{filename}\""),
        )
        .header("filename", filename)
        .body(body)
        .map_err(ApiError::internal)
}

/// Downloads the project's tasks, streamed in constant memory.
#[utoipa::path(get, path = "/api/projects/{id}/export", tag = "export", params(("id" = i64, Path), ExportParams), responses((status = 200, description = "the export file"), (status = 400, body = crate::error::ErrorBody)))]
pub async fn export_project(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Query(params): Query<ExportParams>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let project = projects::get_row(&state.db, &actor, id, Permission::ExportRun).await?;
    let format = ExportFormat::parse(
        params
            .export_type_camel
            .as_deref()
            .or(params.export_type.as_deref())
            .unwrap_or("JSON"),
    )?;
    format.check(&project)?;
    let ids = query_ids(raw.as_deref())?;
    let selection = Selection {
        all_tasks: opt_bool("download_all_tasks", &params.download_all_tasks)?.unwrap_or(false),
        ids: (!ids.is_empty()).then_some(ids),
        keep_formulas: opt_bool("keep_formulas", &params.keep_formulas)?.unwrap_or(false),
        reviewed: None,
    };
    let _ = opt_bool("download_resources", &params.download_resources)?;
    let filename = format!(
        "project-{}-at-{}.{}",
        project.id,
        crate::storage::format_micros(crate::storage::now_micros()).replace(':', "-"),
        format.extension()
    );
    let media = export::MediaFiles::from_config(&state.config);
    let rx = export::start(state.db.clone(), project, format, selection, media);
    attachment(format, filename, Body::from_stream(ReceiverStream::new(rx)))
}

/// The export formats offered for a project: Label Studio's list, each `disabled` when it does
/// not fit the project's label config (as Label Studio decides), the ones that fit first.
#[utoipa::path(get, path = "/api/projects/{id}/export/formats", tag = "export", params(("id" = i64, Path)), responses((status = 200, body = Vec<Object>)))]
pub async fn export_formats(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<Value>>> {
    let project = projects::get_row(&state.db, &actor, id, Permission::ProjectView).await?;
    Ok(Json(
        formats_of(&project)
            .into_iter()
            .map(|(format, _)| format)
            .collect(),
    ))
}

/// The export formats offered for `project` as `/export/formats` lists them, each with the
/// reason it is disabled (the refusal an export in it would answer), the ones that fit first.
pub fn formats_of(project: &projects::ProjectRow) -> Vec<(Value, Option<String>)> {
    let mut formats: Vec<(Value, Option<String>)> = ExportFormat::ALL
        .iter()
        // Label Studio's converter keeps CSV_OLD out of its list (command line only).
        .filter(|format| **format != ExportFormat::CsvOld)
        .map(|format| {
            let (title, description, tags): (&str, &str, &[&str]) = match format {
                ExportFormat::Json => ("JSON", "List of items in raw JSON format stored in one JSON file. Use it to export both the data and the annotations of a dataset (Label Studio's common format).", &[]),
                ExportFormat::JsonMin => ("JSON-MIN", "List of items where only the \"from_name\" and \"to_name\" values of the raw JSON are kept. Use it to export only the annotations.", &[]),
                ExportFormat::Csv => ("CSV", "Results as comma-separated values, the column names taken from the \"from_name\" and \"to_name\" values.", &[]),
                ExportFormat::CsvOld => ("CSV (old layout)", "One row per region: task, annotation, annotator, data, and the region's value spread into columns.", &[]),
                ExportFormat::Tsv => ("TSV", "Results as tab-separated values, the column names taken from the \"from_name\" and \"to_name\" values.", &[]),
                ExportFormat::Converted(Target::Conll2003) => ("CONLL2003", "The CoNLL-2003 named entity recognition format: one token per line with its B-/I-/O tag from the text's Labels spans, tasks separated by blank lines.", &["sequence labeling", "text tagging", "named entity recognition"]),
                ExportFormat::Converted(Target::Coco) => ("COCO", "The COCO dataset's JSON format for object detection and image segmentation with rectangles, polygons and keypoints (zip archive; images are not included).", &["image segmentation", "object detection", "keypoints"]),
                ExportFormat::Converted(Target::Voc) => ("Pascal VOC XML", "One Pascal VOC XML file per image for object detection (zip archive; images are not included).", &["image segmentation", "object detection"]),
                ExportFormat::Converted(Target::Yolo) => ("YOLO", "One text file per image with each object's class and box (centre, width, height), plus classes.txt (zip archive; images are not included).", &["image segmentation", "object detection", "keypoints"]),
                ExportFormat::Converted(Target::BrushNumpy) => ("Brush labels to NumPy", "Each brush region as a NumPy 2d array of its mask (.npy), one file per region and label (zip archive).", &["image segmentation"]),
                ExportFormat::Converted(Target::BrushPng) => ("Brush labels to PNG", "Each brush region as a grayscale PNG image of its mask, one file per region and label (zip archive).", &["image segmentation"]),
                ExportFormat::Converted(Target::BrushCoco) => ("Brush labels to COCO", "Brush masks traced to COCO polygons (their outer contours), with polygon and rectangle regions, for segmentation (zip archive with result_coco.json; images are not included).", &["image segmentation", "brush annotations"]),
                ExportFormat::Converted(Target::AsrManifest) => ("ASR Manifest", "Audio transcriptions as the JSON-lines manifest NVIDIA NeMo reads: the audio's path, its duration (WAV files this server serves) and the text, one line per annotation (zip archive; audio is not included).", &["speech recognition"]),
                ExportFormat::Converted(Target::CocoImages) => ("COCO with Images", "The COCO format with the task images in the archive's images/ folder (uploaded files and files of local-files storages; an image that cannot be read is left out and named in the archive comment).", &["image segmentation", "object detection", "keypoints"]),
                ExportFormat::Converted(Target::YoloImages) => ("YOLO with Images", "The YOLO format with the task images in the archive's images/ folder, next to their label files (uploaded files and files of local-files storages; an image that cannot be read is left out and named in the archive comment).", &["image segmentation", "object detection", "keypoints"]),
                ExportFormat::Converted(Target::YoloObbImages) => ("YOLOv8 OBB with Images", "The YOLOv8 OBB format with the task images in the archive's images/ folder, next to their label files (uploaded files and files of local-files storages; an image that cannot be read is left out and named in the archive comment).", &["image segmentation", "object detection"]),
                ExportFormat::Converted(Target::YoloObb) => ("YOLOv8 OBB", "One text file per image with each object's class and the four corners of its box, normalised to 0-1, so rotated objects keep their angle (zip archive; images are not included).", &["image segmentation", "object detection"]),
            };
            let refusal = format.check(project).err().map(|e| e.detail);
            (
                serde_json::json!({
                    "name": format.name(),
                    "title": title,
                    "description": description,
                    "link": "",
                    "tags": tags,
                    "disabled": refusal.is_some(),
                }),
                refusal,
            )
        })
        .collect();
    // Label Studio lists the formats that fit first.
    formats.sort_by_key(|(_, refusal)| refusal.is_some());
    formats
}

/// Lists the project's export snapshots.
#[utoipa::path(get, path = "/api/projects/{id}/exports", tag = "export", params(("id" = i64, Path)), responses((status = 200, body = Vec<SnapshotView>)))]
pub async fn list_snapshots(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<SnapshotView>>> {
    Ok(Json(snapshots::list(&state.db, &actor, id).await?))
}

/// Creates an export snapshot; a job writes it (poll its `status`; `job` names the job).
#[utoipa::path(post, path = "/api/projects/{id}/exports", tag = "export", params(("id" = i64, Path)), request_body = Object, responses((status = 201, body = SnapshotView)))]
pub async fn create_snapshot(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<SnapshotView>)> {
    // Clients send `{}`, options, or nothing at all.
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Map::new()
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => map,
            _ => {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidJson,
                    "the body must be a JSON object",
                ));
            }
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(start_snapshot(&state, &actor, id, &body).await?),
    ))
}

/// Records an export snapshot of project `id` with the options of `body` and queues the job
/// that writes it: `POST /api/projects/{id}/exports`, also used by the data manager's export
/// page.
pub async fn start_snapshot(
    state: &AppState,
    actor: &Actor,
    id: i64,
    body: &serde_json::Map<String, Value>,
) -> ApiResult<SnapshotView> {
    let job = crate::jobs::new_id();
    let snapshot = snapshots::create(&state.db, actor, id, body, &job).await?;
    if let Err(e) =
        crate::exports::enqueue_snapshot(&state.jobs, actor.org_id, snapshot.id, &job).await
    {
        let why = format!("the job queue did not take the export: {e}");
        snapshots::fail(&state.db, snapshot.id, ExportFormat::Json, &job, &why).await?;
        return Err(ApiError::new(ErrorCode::Unavailable, why));
    }
    Ok(snapshot)
}

/// One export snapshot.
#[utoipa::path(get, path = "/api/projects/{id}/exports/{export_pk}", tag = "export", params(("id" = i64, Path), ("export_pk" = i64, Path)), responses((status = 200, body = SnapshotView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_snapshot(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, export_pk)): Path<(i64, i64)>,
) -> ApiResult<Json<SnapshotView>> {
    Ok(Json(
        snapshots::get(&state.db, &actor, id, export_pk).await?,
    ))
}

/// Deletes an export snapshot and its stored files.
#[utoipa::path(delete, path = "/api/projects/{id}/exports/{export_pk}", tag = "export", params(("id" = i64, Path), ("export_pk" = i64, Path)), responses((status = 204)))]
pub async fn delete_snapshot(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, export_pk)): Path<(i64, i64)>,
) -> ApiResult<Response> {
    snapshots::delete(&state.db, &actor, id, export_pk).await?;
    Ok(crate::http::no_content())
}

/// Converts a completed snapshot to `export_type` (JSON_MIN, CSV, CSV_OLD, TSV, CONLL2003, YOLO,
/// YOLO_OBB, COCO, their `*_WITH_IMAGES` variants, VOC, BRUSH_TO_NUMPY, BRUSH_TO_PNG,
/// BRUSH_TO_COCO, ASR_MANIFEST) in a job; the
/// conversion's `status` in `converted_formats` tells when it can be downloaded.
#[utoipa::path(post, path = "/api/projects/{id}/exports/{export_pk}/convert", tag = "export", params(("id" = i64, Path), ("export_pk" = i64, Path)), request_body = Object, responses((status = 200), (status = 400, body = crate::error::ErrorBody)))]
pub async fn convert_snapshot(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, export_pk)): Path<(i64, i64)>,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let export_type = match body.get("export_type") {
        Some(Value::String(s)) => s.as_str(),
        _ => {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "export_type",
                "this field is required",
            ));
        }
    };
    let (answer, change) = start_conversion(&state, &actor, id, export_pk, export_type).await?;
    let mut response = Json(answer).into_response();
    if change == snapshots::Conversion::Unchanged {
        // Nothing was written (the conversion exists): say so, as the admin API does.
        response.headers_mut().insert(
            "x-verity-unchanged",
            header::HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

/// Converts snapshot `export_pk` of project `id` to the format named `export_type` and queues
/// the job that writes it: `POST /api/projects/{id}/exports/{export_pk}/convert`, also used by
/// the data manager's export page. Answers the API's body and what the request changed.
pub async fn start_conversion(
    state: &AppState,
    actor: &Actor,
    id: i64,
    export_pk: i64,
    export_type: &str,
) -> ApiResult<(Value, snapshots::Conversion)> {
    let format = ExportFormat::parse(export_type)
        .map_err(|e| ApiError::field(ErrorCode::ValidationError, "export_type", e.detail))?;
    let job = crate::jobs::new_id();
    let (answer, change) =
        snapshots::convert(&state.db, actor, id, export_pk, format, &job).await?;
    if change == snapshots::Conversion::Queued
        && let Err(e) =
            crate::exports::enqueue_conversion(&state.jobs, actor.org_id, export_pk, format, &job)
                .await
    {
        let why = format!("the job queue did not take the conversion: {e}");
        snapshots::fail(&state.db, export_pk, format, &job, &why).await?;
        return Err(ApiError::new(ErrorCode::Unavailable, why));
    }
    Ok((answer, change))
}

/// Query of a snapshot download.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DownloadParams {
    /// JSON (default) or a converted format.
    #[serde(rename = "exportType")]
    pub export_type: Option<String>,
}

/// Downloads a snapshot file, streamed from the database chunk by chunk.
#[utoipa::path(get, path = "/api/projects/{id}/exports/{export_pk}/download", tag = "export", params(("id" = i64, Path), ("export_pk" = i64, Path), DownloadParams), responses((status = 200, description = "the file"), (status = 404, body = crate::error::ErrorBody)))]
pub async fn download_snapshot(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, export_pk)): Path<(i64, i64)>,
    Query(params): Query<DownloadParams>,
) -> ApiResult<Response> {
    let format = ExportFormat::parse(params.export_type.as_deref().unwrap_or("JSON"))?;
    let file = snapshots::download(&state.db, &actor, id, export_pk, format).await?;
    let filename = format!("project-{id}-export-{export_pk}.{}", format.extension());
    let size = file.size;
    let mut response = attachment(
        format,
        filename,
        Body::from_stream(snapshots::stream(state.db.clone(), file)),
    )?;
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, header::HeaderValue::from(size));
    Ok(response)
}

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(export_project))
        .routes(routes!(export_formats))
        .routes(routes!(list_snapshots, create_snapshot))
        .routes(routes!(get_snapshot, delete_snapshot))
        .routes(routes!(convert_snapshot))
        .routes(routes!(download_snapshot))
}

/// A `Stream` over an mpsc receiver (avoids a dependency on tokio-stream).
pub(crate) mod tokio_stream_compat {
    use std::{
        pin::Pin,
        task::{Context, Poll},
    };

    use tokio::sync::mpsc::Receiver;

    pub(crate) struct ReceiverStream<T>(Receiver<T>);

    impl<T> ReceiverStream<T> {
        pub(crate) fn new(rx: Receiver<T>) -> Self {
            Self(rx)
        }
    }

    impl<T> futures::Stream for ReceiverStream<T> {
        type Item = T;

        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
}
