//! Export snapshots: a JSON export of a project written to the data directory in the background
//! (`created` → `in_progress` → `completed`/`failed`), convertible to the other formats and
//! downloadable later — the flow Label Studio Enterprise clients poll.
//!
//! Files live under `<data_dir>/exports/<project>/`; a process restart marks snapshots that
//! were being written as failed instead of leaving them in progress forever.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    Db,
    audit::{Prepared, audit},
    export::{self, ExportFormat, Selection},
    format_micros, now_micros,
    projects::{self, UserSimple},
    with_read, with_tx,
};
use crate::{
    authz::{Actor, Permission},
    domain::import::JsonSplitter,
    error::{ApiError, ApiResult, ErrorCode},
};

#[derive(Debug, Clone, sqlx::FromRow)]
struct SnapshotRow {
    id: i64,
    title: String,
    status: String,
    created_by: Option<i64>,
    creator_email: Option<String>,
    task_count: i64,
    annotation_count: i64,
    md5: String,
    error: Option<String>,
    created_at: i64,
    finished_at: Option<i64>,
    converted: String,
}

const COLUMNS: &str = "e.id, e.title, e.status, e.created_by, u.email as creator_email, e.task_count, \
    e.annotation_count, e.md5, e.error, e.created_at, e.finished_at, e.converted";

/// An export snapshot as Label Studio shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SnapshotView {
    /// Id.
    pub id: i64,
    /// Title.
    pub title: String,
    /// `created`, `in_progress`, `completed` or `failed`.
    pub status: String,
    /// Creator.
    pub created_by: Option<UserSimple>,
    /// ISO creation time.
    pub created_at: String,
    /// ISO completion time.
    pub finished_at: Option<String>,
    /// Checksum (empty: not computed).
    pub md5: String,
    /// `{"task_number", "annotation_number"}`.
    #[schema(value_type = Object)]
    pub counters: Value,
    /// Converted formats: `[{"id", "export_type", "status", "traceback"}]`.
    #[schema(value_type = Vec<Object>)]
    pub converted_formats: Value,
    /// Failure reason.
    pub error: Option<String>,
}

impl SnapshotRow {
    fn view(&self) -> SnapshotView {
        let converted: Value =
            serde_json::from_str(&self.converted).unwrap_or(Value::Array(Vec::new()));
        SnapshotView {
            id: self.id,
            title: self.title.clone(),
            status: self.status.clone(),
            created_by: self.created_by.map(|id| UserSimple {
                id,
                first_name: String::new(),
                last_name: String::new(),
                email: self.creator_email.clone().unwrap_or_default(),
                avatar: None,
            }),
            created_at: format_micros(self.created_at),
            finished_at: self.finished_at.map(format_micros),
            md5: self.md5.clone(),
            counters: json!({"task_number": self.task_count, "annotation_number": self.annotation_count}),
            converted_formats: converted,
            error: self.error.clone(),
        }
    }
}

fn dir(data_dir: &Path, project: i64) -> PathBuf {
    data_dir.join("exports").join(project.to_string())
}

fn file(data_dir: &Path, project: i64, id: i64, format: ExportFormat) -> PathBuf {
    let name = match format {
        ExportFormat::Json => format!("{id}.json"),
        ExportFormat::JsonMin => format!("{id}.min.json"),
        ExportFormat::Csv => format!("{id}.csv"),
        ExportFormat::Tsv => format!("{id}.tsv"),
    };
    dir(data_dir, project).join(name)
}

fn format_name(format: ExportFormat) -> &'static str {
    match format {
        ExportFormat::Json => "JSON",
        ExportFormat::JsonMin => "JSON_MIN",
        ExportFormat::Csv => "CSV",
        ExportFormat::Tsv => "TSV",
    }
}

async fn row(db: &Db, actor: &Actor, project_id: i64, id: i64) -> ApiResult<SnapshotRow> {
    projects::get_row(db, actor, project_id, Permission::ExportRun).await?;
    let found: Option<SnapshotRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {COLUMNS} from export_snapshot e left join app_user u on u.id = e.created_by \
             where e.id = $1 and e.project_id = $2"
        ))
        .bind(id)
        .bind(project_id)
        .fetch_optional(conn)
        .await?
    });
    found.ok_or_else(|| ApiError::not_found("export"))
}

/// Snapshots of one project made at the same time, at most.
pub const MAX_RUNNING: i64 = 2;

/// Creates a snapshot and starts writing it in the background (409 while [`MAX_RUNNING`] of
/// the project are being made).
pub async fn create(
    db: &Db,
    actor: &Actor,
    data_dir: &Path,
    project_id: i64,
    body: &Map<String, Value>,
) -> ApiResult<SnapshotView> {
    let project = projects::get_row(db, actor, project_id, Permission::ExportRun).await?;
    let title = match body.get("title") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if s.chars().count() <= 2048 => s.clone(),
        Some(_) => {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "title",
                "must be a string",
            ));
        }
    };
    let only_annotated = match body
        .get("task_filter_options")
        .and_then(|o| o.get("only_with_annotations"))
    {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "task_filter_options",
                "only_with_annotations must be true or false",
            ));
        }
    };
    let params = json!({"only_with_annotations": only_annotated}).to_string();
    let now = now_micros();
    let dialect = db.dialect();
    let id: i64 = with_tx!(db, tx, {
        // At most MAX_RUNNING snapshots of a project are made at once (each reads the whole
        // project); the project lock makes the count and the insert one step.
        crate::storage::annotations::lock_project!(tx, dialect, project_id);
        let running: i64 = sqlx::query_scalar(
            "select count(*) from export_snapshot where project_id = $1 and status = 'in_progress'",
        )
        .bind(project_id)
        .fetch_one(&mut *tx)
        .await?;
        if running >= MAX_RUNNING {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "{running} export snapshots of this project are being made; wait until one is completed (GET /api/projects/{project_id}/exports) and try again"
                ),
            ));
        }
        let id: i64 = sqlx::query_scalar(
            "insert into export_snapshot (project_id, title, status, created_by, params, task_count, annotation_count, created_at) \
             values ($1, $2, 'in_progress', $3, $4, $5, $6, $7) returning id",
        )
        .bind(project_id)
        .bind(&title)
        .bind(actor.user_id)
        .bind(&params)
        .bind(project.task_number)
        .bind(project.total_annotations_number)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "export.create",
                "project",
                project_id,
                json!({"export": id, "title": title})
            )
        );
        Ok::<_, ApiError>(id)
    })?;
    let (db2, data_dir) = (db.clone(), data_dir.to_path_buf());
    tokio::spawn(async move {
        let path = file(&data_dir, project_id, id, ExportFormat::Json);
        let selection = Selection {
            all_tasks: !only_annotated,
            ids: None,
            // A snapshot is JSON; its CSV/TSV conversions always neutralise formulas.
            keep_formulas: false,
        };
        let outcome = write_export(&db2, project, selection, &path).await;
        let (status, error) = match outcome {
            Ok(()) => ("completed", None),
            Err(e) => {
                tracing::error!(export = id, error = %e, "export snapshot failed");
                ("failed", Some(e))
            }
        };
        let _ = finish(&db2, id, status, error).await;
    });
    Ok(row(db, actor, project_id, id).await?.view())
}

async fn write_export(
    db: &Db,
    project: projects::ProjectRow,
    selection: Selection,
    path: &Path,
) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| e.to_string())?;
    }
    let partial = partial_of(path);
    let mut out = tokio::fs::File::create(&partial)
        .await
        .map_err(|e| e.to_string())?;
    let mut rx = export::start(db.clone(), project, ExportFormat::Json, selection);
    while let Some(chunk) = rx.recv().await {
        let bytes = chunk.map_err(|e| e.to_string())?;
        out.write_all(&bytes).await.map_err(|e| e.to_string())?;
    }
    out.sync_all().await.map_err(|e| e.to_string())?;
    tokio::fs::rename(&partial, path)
        .await
        .map_err(|e| e.to_string())
}

/// A file name of its own for writing `path` before the atomic rename: two conversions of one
/// snapshot (CSV and TSV) never write into the same file.
fn partial_of(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.partial", uuid::Uuid::new_v4().simple()))
}

async fn finish(db: &Db, id: i64, status: &str, error: Option<String>) -> ApiResult<()> {
    let now = now_micros();
    with_tx!(db, tx, {
        sqlx::query(
            "update export_snapshot set status = $1, error = $2, finished_at = $3 where id = $4",
        )
        .bind(status)
        .bind(&error)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        Ok::<_, ApiError>(())
    })
}

/// Marks snapshots left in progress by a previous process as failed (called at start-up).
pub async fn fail_interrupted(db: &Db) -> ApiResult<u64> {
    let now = now_micros();
    with_tx!(db, tx, {
        let done = sqlx::query(
            "update export_snapshot set status = 'failed', error = 'interrupted by a server restart; create a new export', \
             finished_at = $1 where status = 'in_progress'",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?;
        Ok::<_, ApiError>(done.rows_affected())
    })
}

/// The project's snapshots, newest first.
pub async fn list(db: &Db, actor: &Actor, project_id: i64) -> ApiResult<Vec<SnapshotView>> {
    projects::get_row(db, actor, project_id, Permission::ExportRun).await?;
    let rows: Vec<SnapshotRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {COLUMNS} from export_snapshot e left join app_user u on u.id = e.created_by \
             where e.project_id = $1 order by e.id desc"
        ))
        .bind(project_id)
        .fetch_all(conn)
        .await?
    });
    Ok(rows.iter().map(SnapshotRow::view).collect())
}

/// One snapshot.
pub async fn get(db: &Db, actor: &Actor, project_id: i64, id: i64) -> ApiResult<SnapshotView> {
    Ok(row(db, actor, project_id, id).await?.view())
}

/// Deletes a snapshot and its files.
pub async fn delete(
    db: &Db,
    actor: &Actor,
    data_dir: &Path,
    project_id: i64,
    id: i64,
) -> ApiResult<()> {
    row(db, actor, project_id, id).await?;
    with_tx!(db, tx, {
        sqlx::query("delete from export_snapshot where id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "export.delete",
                "project",
                project_id,
                json!({"export": id})
            )
        );
        Ok::<_, ApiError>(())
    })?;
    for format in [
        ExportFormat::Json,
        ExportFormat::JsonMin,
        ExportFormat::Csv,
        ExportFormat::Tsv,
    ] {
        let _ = tokio::fs::remove_file(file(data_dir, project_id, id, format)).await;
    }
    Ok(())
}

/// Converts a completed snapshot to another format (from the snapshot file, not the live data).
pub async fn convert(
    db: &Db,
    actor: &Actor,
    data_dir: &Path,
    project_id: i64,
    id: i64,
    format: ExportFormat,
) -> ApiResult<Value> {
    let snapshot = row(db, actor, project_id, id).await?;
    if snapshot.status != "completed" {
        return Err(ApiError::bad_request(
            ErrorCode::ValidationError,
            format!(
                "export {id} is {}; wait until it is completed",
                snapshot.status
            ),
        ));
    }
    if format != ExportFormat::Json {
        let source = file(data_dir, project_id, id, ExportFormat::Json);
        let target = file(data_dir, project_id, id, format);
        convert_file(&source, &target, format)
            .await
            .map_err(ApiError::internal)?;
    }
    let name = format_name(format);
    let dialect = db.dialect();
    // Read, change and write the list in one transaction (row-locked on PostgreSQL): two
    // conversions finishing at once both stay listed.
    let converted: Vec<Value> = with_tx!(db, tx, {
        let current: String = sqlx::query_scalar(&format!(
            "select converted from export_snapshot where id = $1{}",
            dialect.for_update()
        ))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let mut converted: Vec<Value> = serde_json::from_str(&current).unwrap_or_default();
        converted.retain(|c| c["export_type"] != json!(name));
        converted.push(json!({"id": converted.len() + 1, "export_type": name, "status": "completed", "traceback": null}));
        sqlx::query("update export_snapshot set converted = $1 where id = $2")
            .bind(Value::Array(converted.clone()).to_string())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "export.convert",
                "project",
                project_id,
                json!({"export": id, "format": name})
            )
        );
        Ok::<_, ApiError>(converted)
    })?;
    Ok(json!({"export_type": name, "converted_format": converted.len()}))
}

/// Streams the snapshot's tasks through the splitter, twice for CSV/TSV (the header needs every
/// data key first). Memory stays bounded by one task.
async fn convert_file(source: &Path, target: &Path, format: ExportFormat) -> Result<(), String> {
    let sep = if format == ExportFormat::Tsv {
        b'\t'
    } else {
        b','
    };
    let mut columns: Vec<String> = Vec::new();
    if matches!(format, ExportFormat::Csv | ExportFormat::Tsv) {
        let mut keys = std::collections::BTreeSet::new();
        for_each_task(
            source,
            |task| {
                for row in export::min_rows(&task) {
                    for k in row.keys() {
                        if keys.len() < 1000 {
                            keys.insert(k.clone());
                        }
                    }
                }
                Ok(Vec::new())
            },
            &mut tokio::io::sink(),
        )
        .await?;
        columns = keys.into_iter().collect();
    }
    let partial = partial_of(target);
    let mut out = tokio::fs::File::create(&partial)
        .await
        .map_err(|e| e.to_string())?;
    let mut first = true;
    match format {
        ExportFormat::JsonMin => out.write_all(b"[").await.map_err(|e| e.to_string())?,
        _ => out
            .write_all(&export::csv_line(
                columns.iter().map(String::as_str),
                sep,
                true,
            ))
            .await
            .map_err(|e| e.to_string())?,
    }
    for_each_task(
        source,
        |task| {
            let mut bytes = Vec::new();
            for row in export::min_rows(&task) {
                if format == ExportFormat::JsonMin {
                    if !first {
                        bytes.push(b',');
                    }
                    first = false;
                    serde_json::to_writer(&mut bytes, &row).map_err(|e| e.to_string())?;
                } else {
                    let cells: Vec<String> =
                        columns.iter().map(|c| export::cell(row.get(c))).collect();
                    bytes.extend(export::csv_line(
                        cells.iter().map(String::as_str),
                        sep,
                        true,
                    ));
                }
            }
            Ok(bytes)
        },
        &mut out,
    )
    .await?;
    if format == ExportFormat::JsonMin {
        out.write_all(b"]").await.map_err(|e| e.to_string())?;
    }
    out.sync_all().await.map_err(|e| e.to_string())?;
    tokio::fs::rename(&partial, target)
        .await
        .map_err(|e| e.to_string())
}

async fn for_each_task<W: tokio::io::AsyncWrite + Unpin>(
    source: &Path,
    mut f: impl FnMut(Value) -> Result<Vec<u8>, String>,
    out: &mut W,
) -> Result<(), String> {
    let mut input = tokio::fs::File::open(source)
        .await
        .map_err(|e| e.to_string())?;
    let mut splitter = JsonSplitter::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = input.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return splitter.finish().map_err(|e| e.to_string());
        }
        let mut tasks = Vec::new();
        splitter
            .feed(&buf[..n], &mut tasks)
            .map_err(|e| e.to_string())?;
        for raw in tasks {
            let task: Value = serde_json::from_slice(&raw).map_err(|e| e.to_string())?;
            let bytes = f(task)?;
            out.write_all(&bytes).await.map_err(|e| e.to_string())?;
        }
    }
}

/// The path of a downloadable snapshot file, or 404 naming what is missing.
pub async fn download_path(
    db: &Db,
    actor: &Actor,
    data_dir: &Path,
    project_id: i64,
    id: i64,
    format: ExportFormat,
) -> ApiResult<PathBuf> {
    let snapshot = row(db, actor, project_id, id).await?;
    if snapshot.status != "completed" {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("export {id} is {}, not completed", snapshot.status),
        ));
    }
    let converted: Vec<Value> = serde_json::from_str(&snapshot.converted).unwrap_or_default();
    if format != ExportFormat::Json
        && !converted
            .iter()
            .any(|c| c["export_type"] == json!(format_name(format)))
    {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("{} format is not converted yet", format_name(format)),
        ));
    }
    let path = file(data_dir, project_id, id, format);
    if tokio::fs::metadata(&path).await.is_err() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "the export file is gone from this server's data directory; create a new export",
        ));
    }
    Ok(path)
}
