//! Export snapshots: a JSON export of a project written by a job (`created` → `in_progress` →
//! `completed`/`failed`), convertible to the other formats by further jobs and downloadable
//! later — the flow Label Studio Enterprise clients poll. ADR 0023 records the rules.
//!
//! The files live in the database, in chunks of [`CHUNK`] bytes, never in a server's data
//! directory: any replica serves a snapshot any worker wrote. A file is written under a
//! `writer` token of its own (one per job attempt) and becomes downloadable only in the
//! transaction that marks it completed, so a half-written file is never visible and an attempt
//! that lost its job to a retry can neither finish nor disturb the retry's file. This module
//! never talks to the job queue (see `crate::exports`).

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value, json};

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
    domain::{
        convert::{Converter, Target},
        import::JsonSplitter,
    },
    error::{ApiError, ApiResult, ErrorCode},
};

/// Bytes per stored chunk: what a writer holds in memory and a download reads at once.
pub const CHUNK: usize = 1024 * 1024;

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
    job_id: Option<String>,
}

const COLUMNS: &str = "e.id, e.title, e.status, e.created_by, u.email as creator_email, e.task_count, \
    e.annotation_count, e.md5, e.error, e.created_at, e.finished_at, e.converted, e.job_id";

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
    /// MD5 of the snapshot's JSON file, in hex (empty until it is completed).
    pub md5: String,
    /// `{"task_number", "annotation_number"}`.
    #[schema(value_type = Object)]
    pub counters: Value,
    /// Converted formats: `[{"id", "export_type", "status", "traceback", "job", "requested_at"}]`
    /// (`status`: `created`, `in_progress`, `completed` or `failed`, the reason in `traceback`).
    #[schema(value_type = Vec<Object>)]
    pub converted_formats: Value,
    /// Failure reason.
    pub error: Option<String>,
    /// The job that writes it (poll `/api/jobs/{id}` for attempts and progress).
    pub job: Option<String>,
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
            job: self.job_id.clone(),
        }
    }
}

/// The stored name of a format (Label Studio's `export_type`).
pub fn format_name(format: ExportFormat) -> &'static str {
    format.name()
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

/// Snapshots of one project queued or being made at the same time, at most.
pub const MAX_RUNNING: i64 = 2;

/// Records a new snapshot (`created`) that job `job` will write (409 while [`MAX_RUNNING`] of
/// the project are queued or being made). The caller enqueues the job under that id.
pub async fn create(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    body: &Map<String, Value>,
    job: &str,
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
    let reviewed = match body
        .get("task_filter_options")
        .and_then(|o| o.get("reviewed"))
    {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(s)) if s == "only" || s == "exclude" => Value::String(s.clone()),
        Some(_) => {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "task_filter_options",
                "reviewed must be \"only\", \"exclude\" or null",
            ));
        }
    };
    let params = json!({"only_with_annotations": only_annotated, "reviewed": reviewed}).to_string();
    let now = now_micros();
    let dialect = db.dialect();
    let id: i64 = with_tx!(db, tx, {
        // At most MAX_RUNNING snapshots of a project are made at once (each reads the whole
        // project); the project lock makes the count and the insert one step.
        crate::storage::annotations::lock_project!(tx, dialect, project_id);
        let running: i64 = sqlx::query_scalar(
            "select count(*) from export_snapshot where project_id = $1 and status in ('created', 'in_progress')",
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
            "insert into export_snapshot (project_id, title, status, created_by, params, task_count, annotation_count, created_at, job_id) \
             values ($1, $2, 'created', $3, $4, $5, $6, $7, $8) returning id",
        )
        .bind(project_id)
        .bind(&title)
        .bind(actor.user_id)
        .bind(&params)
        .bind(project.task_number)
        .bind(project.total_annotations_number)
        .bind(now)
        .bind(job)
        .fetch_one(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "export.create",
                "project",
                project_id,
                json!({"export": id, "title": title, "job": job})
            )
        );
        Ok::<_, ApiError>(id)
    })?;
    Ok(row(db, actor, project_id, id).await?.view())
}

/// A snapshot as the job that writes it (or its conversions) sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobTarget {
    /// Snapshot id.
    pub id: i64,
    /// Its project.
    pub project_id: i64,
    /// The project's organization.
    pub organization_id: i64,
    /// `created`, `in_progress`, `completed` or `failed`.
    pub status: String,
    /// `{"only_with_annotations": bool, "reviewed": "only" | "exclude" | null}`.
    pub params: String,
    /// The converted formats (JSON list).
    pub converted: String,
    /// The job that writes the snapshot.
    pub job_id: Option<String>,
    /// Creation time (UTC microseconds).
    pub created_at: i64,
}

impl JobTarget {
    /// The tasks the snapshot takes.
    pub fn selection(&self) -> Selection {
        let params: Value = serde_json::from_str(&self.params).unwrap_or_default();
        Selection {
            all_tasks: !params["only_with_annotations"].as_bool().unwrap_or(false),
            ids: None,
            // A snapshot is JSON; its CSV/TSV conversions always neutralise formulas.
            keep_formulas: false,
            reviewed: match params["reviewed"].as_str() {
                Some("only") => Some(true),
                Some("exclude") => Some(false),
                _ => None,
            },
        }
    }

    /// The conversion entry of `format`, if requested.
    pub fn conversion(&self, format: ExportFormat) -> Option<Value> {
        let converted: Vec<Value> = serde_json::from_str(&self.converted).unwrap_or_default();
        converted
            .into_iter()
            .find(|c| c["export_type"] == json!(format_name(format)))
    }
}

const TARGET: &str = "select e.id, e.project_id, p.organization_id, e.status, e.params, e.converted, e.job_id, e.created_at \
    from export_snapshot e join project p on p.id = e.project_id";

/// A snapshot by id (jobs; no authorization: the request that queued the job checked it).
pub async fn by_id(db: &Db, id: i64) -> ApiResult<Option<JobTarget>> {
    Ok(with_read!(db, conn, {
        sqlx::query_as(&format!("{TARGET} where e.id = $1"))
            .bind(id)
            .fetch_optional(conn)
            .await?
    }))
}

/// Snapshots or conversions still waiting for their job or being written (the sweep of
/// `crate::exports` checks that their jobs are alive).
pub async fn pending(db: &Db) -> ApiResult<Vec<JobTarget>> {
    Ok(with_read!(db, conn, {
        sqlx::query_as(&format!(
            "{TARGET} where e.status in ('created', 'in_progress') \
             or e.converted like '%\"created\"%' or e.converted like '%\"in_progress\"%' order by e.id"
        ))
        .fetch_all(conn)
        .await?
    }))
}

/// One attempt at writing one file of a snapshot.
#[derive(Debug, Clone)]
pub struct Writer {
    /// Snapshot id.
    pub snapshot: i64,
    /// The file's format.
    pub format: ExportFormat,
    /// Names this attempt; its chunks are stored under it.
    pub token: String,
}

/// Reads and rewrites the converted list of a snapshot inside `tx` (row-locked on
/// PostgreSQL, so that two conversions finishing at once both stay listed).
macro_rules! update_converted {
    ($tx:ident, $dialect:expr, $id:expr, |$list:ident| $change:block) => {{
        let current: Option<String> = sqlx::query_scalar(&format!(
            "select converted from export_snapshot where id = $1{}",
            $dialect.for_update()
        ))
        .bind($id)
        .fetch_optional(&mut *$tx)
        .await?;
        match current {
            None => None,
            Some(current) => {
                let mut $list: Vec<Value> = serde_json::from_str(&current).unwrap_or_default();
                let out = $change;
                sqlx::query("update export_snapshot set converted = $1 where id = $2")
                    .bind(Value::Array($list.clone()).to_string())
                    .bind($id)
                    .execute(&mut *$tx)
                    .await?;
                Some(out)
            }
        }
    }};
}

/// Starts an attempt of job `job` at writing `writer`'s file: marks the snapshot (JSON) or
/// its conversion in progress and drops whatever an earlier attempt left. `false`: there is
/// nothing to write (the snapshot is gone, finished, or no longer this job's).
pub async fn begin(db: &Db, writer: &Writer, job: &str) -> ApiResult<bool> {
    let name = format_name(writer.format);
    let dialect = db.dialect();
    with_tx!(db, tx, {
        let ours = if writer.format == ExportFormat::Json {
            sqlx::query(
                "update export_snapshot set status = 'in_progress' \
                 where id = $1 and job_id = $2 and status in ('created', 'in_progress')",
            )
            .bind(writer.snapshot)
            .bind(job)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1
        } else {
            update_converted!(tx, dialect, writer.snapshot, |list| {
                let mut ours = false;
                for c in list.iter_mut() {
                    if c["export_type"] == json!(name)
                        && c["job"] == json!(job)
                        && (c["status"] == json!("created") || c["status"] == json!("in_progress"))
                    {
                        c["status"] = json!("in_progress");
                        ours = true;
                    }
                }
                ours
            })
            .unwrap_or(false)
        };
        if !ours {
            return Ok(false);
        }
        sqlx::query("delete from export_snapshot_chunk where snapshot_id = $1 and format = $2")
            .bind(writer.snapshot)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("delete from export_snapshot_file where snapshot_id = $1 and format = $2")
            .bind(writer.snapshot)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "insert into export_snapshot_file (snapshot_id, format, writer, status) values ($1, $2, $3, 'writing')",
        )
        .bind(writer.snapshot)
        .bind(name)
        .bind(&writer.token)
        .execute(&mut *tx)
        .await?;
        Ok::<_, ApiError>(true)
    })
}

/// Stores chunk `seq`; `false` when the attempt no longer owns the file (a retry took over, or
/// the snapshot was deleted): the writer must stop.
async fn put_chunk(db: &Db, writer: &Writer, seq: i64, body: &[u8]) -> ApiResult<bool> {
    with_tx!(db, tx, {
        let done = sqlx::query(
            "insert into export_snapshot_chunk (snapshot_id, format, writer, seq, body) \
             select $1, $2, $3, $4, $5 where exists (select 1 from export_snapshot_file \
             where snapshot_id = $1 and format = $2 and writer = $3 and status = 'writing')",
        )
        .bind(writer.snapshot)
        .bind(format_name(writer.format))
        .bind(&writer.token)
        .bind(seq)
        .bind(body)
        .execute(&mut *tx)
        .await?;
        Ok::<_, ApiError>(done.rows_affected() == 1)
    })
}

/// Makes the attempt's file the snapshot's (or the conversion's), completed, in one
/// transaction; `false` when the attempt no longer owns the file.
/// `md5` is the hex MD5 of the file's bytes, kept as the snapshot's checksum (JSON).
async fn complete(db: &Db, writer: &Writer, size: i64, chunks: i64, md5: &str) -> ApiResult<bool> {
    let name = format_name(writer.format);
    let dialect = db.dialect();
    let now = now_micros();
    with_tx!(db, tx, {
        let owned = sqlx::query(
            "update export_snapshot_file set status = 'completed', size = $1, chunks = $2 \
             where snapshot_id = $3 and format = $4 and writer = $5 and status = 'writing'",
        )
        .bind(size)
        .bind(chunks)
        .bind(writer.snapshot)
        .bind(name)
        .bind(&writer.token)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !owned {
            return Ok(false);
        }
        // Chunks an attempt that lost its job wrote meanwhile.
        sqlx::query(
            "delete from export_snapshot_chunk where snapshot_id = $1 and format = $2 and writer <> $3",
        )
        .bind(writer.snapshot)
        .bind(name)
        .bind(&writer.token)
        .execute(&mut *tx)
        .await?;
        if writer.format == ExportFormat::Json {
            sqlx::query(
                "update export_snapshot set status = 'completed', error = null, finished_at = $1, \
                 md5 = $2 where id = $3",
            )
            .bind(now)
            .bind(md5)
            .bind(writer.snapshot)
            .execute(&mut *tx)
            .await?;
        } else {
            update_converted!(tx, dialect, writer.snapshot, |list| {
                for c in list.iter_mut() {
                    if c["export_type"] == json!(name) {
                        c["status"] = json!("completed");
                        c["traceback"] = Value::Null;
                    }
                }
            });
        }
        Ok::<_, ApiError>(true)
    })
}

/// Marks the snapshot (JSON) or its conversion to `format` failed with `reason`, if job `job`
/// still owns it and it has not ended; its partial file goes. `true` if it changed anything.
pub async fn fail(
    db: &Db,
    id: i64,
    format: ExportFormat,
    job: &str,
    reason: &str,
) -> ApiResult<bool> {
    let name = format_name(format);
    let dialect = db.dialect();
    let now = now_micros();
    with_tx!(db, tx, {
        let changed = if format == ExportFormat::Json {
            sqlx::query(
                "update export_snapshot set status = 'failed', error = $1, finished_at = $2 \
                 where id = $3 and job_id = $4 and status in ('created', 'in_progress')",
            )
            .bind(reason)
            .bind(now)
            .bind(id)
            .bind(job)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1
        } else {
            update_converted!(tx, dialect, id, |list| {
                let mut changed = false;
                for c in list.iter_mut() {
                    if c["export_type"] == json!(name)
                        && c["job"] == json!(job)
                        && (c["status"] == json!("created") || c["status"] == json!("in_progress"))
                    {
                        c["status"] = json!("failed");
                        c["traceback"] = json!(reason);
                        changed = true;
                    }
                }
                changed
            })
            .unwrap_or(false)
        };
        if changed {
            sqlx::query("delete from export_snapshot_chunk where snapshot_id = $1 and format = $2")
                .bind(id)
                .bind(name)
                .execute(&mut *tx)
                .await?;
            sqlx::query("delete from export_snapshot_file where snapshot_id = $1 and format = $2")
                .bind(id)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        Ok::<_, ApiError>(changed)
    })
}

/// Why a write stopped.
#[derive(Debug)]
pub enum WriteError {
    /// Another attempt owns the file now, or the snapshot was deleted: stop quietly.
    Superseded,
    /// The export or the database failed (a retry may succeed).
    Failed(String),
    /// The stored snapshot cannot be read as an export (a retry would fail the same way).
    Invalid(String),
}

impl From<ApiError> for WriteError {
    fn from(e: ApiError) -> Self {
        WriteError::Failed(e.internal.unwrap_or(e.detail))
    }
}

/// Buffers a file's bytes and stores them in chunks of exactly [`CHUNK`] bytes (the last one
/// shorter): memory holds one chunk.
impl export::Sink for ChunkWriter<'_> {
    type Error = WriteError;
    async fn put(&mut self, bytes: Vec<u8>) -> Result<(), WriteError> {
        self.write(&bytes).await
    }
}

struct ChunkWriter<'a> {
    db: &'a Db,
    writer: &'a Writer,
    buf: Vec<u8>,
    seq: i64,
    size: i64,
    md5: md5::Md5,
}

impl<'a> ChunkWriter<'a> {
    fn new(db: &'a Db, writer: &'a Writer) -> Self {
        Self {
            db,
            writer,
            buf: Vec::with_capacity(CHUNK),
            seq: 0,
            size: 0,
            md5: md5::Md5::default(),
        }
    }

    async fn write(&mut self, mut bytes: &[u8]) -> Result<(), WriteError> {
        self.size += i64::try_from(bytes.len()).unwrap_or(i64::MAX);
        md5::Digest::update(&mut self.md5, bytes);
        while !bytes.is_empty() {
            let take = (CHUNK - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buf.len() == CHUNK {
                self.flush().await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), WriteError> {
        if !put_chunk(self.db, self.writer, self.seq, &self.buf).await? {
            return Err(WriteError::Superseded);
        }
        self.seq += 1;
        self.buf.clear();
        Ok(())
    }

    async fn finish(mut self) -> Result<(), WriteError> {
        if !self.buf.is_empty() {
            self.flush().await?;
        }
        let md5 = hex::encode(md5::Digest::finalize(self.md5.clone()));
        if complete(self.db, self.writer, self.size, self.seq, &md5).await? {
            Ok(())
        } else {
            Err(WriteError::Superseded)
        }
    }
}

/// Writes the snapshot's JSON export of `target` (after [`begin`]) and completes it.
pub async fn write_json(db: &Db, writer: &Writer, target: &JobTarget) -> Result<(), WriteError> {
    let actor = Actor::instance(target.organization_id, Default::default());
    let project = projects::get_row(db, &actor, target.project_id, Permission::ExportRun).await?;
    let mut out = ChunkWriter::new(db, writer);
    let mut rx = export::start(
        db.clone(),
        project,
        ExportFormat::Json,
        target.selection(),
        export::MediaFiles::default(),
    );
    while let Some(bytes) = rx.recv().await {
        let bytes = bytes.map_err(|e| WriteError::Failed(e.to_string()))?;
        out.write(&bytes).await?;
    }
    out.finish().await
}

/// Writes the conversion of a completed snapshot's JSON to `writer.format` (after [`begin`])
/// and completes it. Streams the snapshot's tasks through the splitter, twice for CSV/TSV (the
/// header needs every data key first); memory stays bounded by a chunk and a task.
pub async fn write_conversion(
    db: &Db,
    writer: &Writer,
    target: &JobTarget,
    media: &export::MediaFiles,
) -> Result<(), WriteError> {
    let Some(source) = stored(db, writer.snapshot, ExportFormat::Json).await? else {
        return Err(WriteError::Failed(
            "the snapshot's JSON is not stored; create a new export".into(),
        ));
    };
    let format = writer.format;
    if let ExportFormat::Converted(to) = format {
        return write_converted(db, writer, target, &source, to, media).await;
    }
    if format == ExportFormat::CsvOld {
        // Columns first (bounded by their number), then one row per region.
        let mut columns = crate::domain::csv_old::Columns::default();
        for_each_task(db, &source, None, |task| {
            columns.add_task(&task);
            Ok(Vec::new())
        })
        .await?;
        let mut out = ChunkWriter::new(db, writer);
        out.write(&export::csv_line(
            columns.header().iter().map(String::as_str),
            b',',
            true,
        ))
        .await?;
        for_each_task(db, &source, Some(&mut out), |task| {
            let mut bytes = Vec::new();
            for cells in columns.rows(&task) {
                bytes.extend(export::csv_line(
                    cells.iter().map(String::as_str),
                    b',',
                    true,
                ));
            }
            Ok(bytes)
        })
        .await?;
        return out.finish().await;
    }
    let sep = if format == ExportFormat::Tsv {
        b'\t'
    } else {
        b','
    };
    let mut columns: Vec<String> = Vec::new();
    if matches!(format, ExportFormat::Csv | ExportFormat::Tsv) {
        // The direct export's columns: data keys, the label config's controls, the fixed ones.
        let actor = Actor::instance(target.organization_id, Default::default());
        let project =
            projects::get_row(db, &actor, target.project_id, Permission::ExportRun).await?;
        let mut keys = std::collections::BTreeSet::new();
        for_each_task(db, &source, None, |task| {
            if let Some(data) = task.get("data").and_then(Value::as_object) {
                for k in data.keys() {
                    if keys.len() < 1000 {
                        keys.insert(k.clone());
                    }
                }
            }
            Ok(Vec::new())
        })
        .await?;
        columns = export::column_order(keys, &export::controls(&project));
    }
    let mut out = ChunkWriter::new(db, writer);
    match format {
        ExportFormat::JsonMin => out.write(b"[").await?,
        _ => {
            out.write(&export::csv_line(
                columns.iter().map(String::as_str),
                sep,
                true,
            ))
            .await?
        }
    }
    let mut first = true;
    for_each_task(db, &source, Some(&mut out), |task| {
        let mut bytes = Vec::new();
        for row in export::min_rows(&task) {
            if format == ExportFormat::JsonMin {
                if !first {
                    bytes.push(b',');
                }
                first = false;
                serde_json::to_writer(&mut bytes, &row).map_err(|e| e.to_string())?;
            } else {
                let cells: Vec<String> = columns.iter().map(|c| export::cell(row.get(c))).collect();
                bytes.extend(export::csv_line(
                    cells.iter().map(String::as_str),
                    sep,
                    true,
                ));
            }
        }
        Ok(bytes)
    })
    .await?;
    if format == ExportFormat::JsonMin {
        out.write(b"]").await?;
    }
    out.finish().await
}

/// Writes a converter format (YOLO, COCO, ...) of the snapshot's stored JSON: the tasks stream
/// through the converter, twice for COCO; memory holds a chunk, a task and the converter's
/// categories and zip directory.
async fn write_converted(
    db: &Db,
    writer: &Writer,
    target: &JobTarget,
    source: &StoredFile,
    to: Target,
    media: &export::MediaFiles,
) -> Result<(), WriteError> {
    let actor = Actor::instance(target.organization_id, Default::default());
    let project = projects::get_row(db, &actor, target.project_id, Permission::ExportRun).await?;
    // The config may have changed since the request: a format that no longer fits fails now.
    let mut conv = Converter::new(to, &project.label_config, export::stamp())
        .map_err(|e| WriteError::Invalid(e.to_string()))?;
    // Bucket clients are this conversion's own (the worker's copy of the media outlives it).
    let media = &media.fresh();
    let mut out = ChunkWriter::new(db, writer);
    for pass in 0..conv.passes() {
        let mut bytes = Vec::new();
        conv.start(pass, &mut bytes)
            .map_err(|e| WriteError::Invalid(e.to_string()))?;
        out.write(&bytes).await?;
        let mut tasks = TaskReader::new(source);
        while let Some(batch) = tasks.next(db).await? {
            for task in batch {
                let mut bytes = Vec::new();
                export::convert_task(
                    db,
                    media,
                    project.id,
                    &mut conv,
                    &task,
                    &mut bytes,
                    &mut out,
                    WriteError::Failed,
                )
                .await?;
                out.write(&bytes).await?;
            }
        }
    }
    let mut bytes = Vec::new();
    export::log_missing(project.id, &conv);
    conv.finish(&mut bytes)
        .map_err(|e| WriteError::Invalid(e.to_string()))?;
    out.write(&bytes).await?;
    out.finish().await
}

/// Reads the tasks of a stored JSON file chunk by chunk: memory holds one chunk's tasks.
struct TaskReader<'a> {
    source: &'a StoredFile,
    splitter: JsonSplitter,
    seq: i64,
}

impl<'a> TaskReader<'a> {
    fn new(source: &'a StoredFile) -> Self {
        Self {
            source,
            splitter: JsonSplitter::new(),
            seq: 0,
        }
    }

    /// The tasks of the next chunk (possibly none), or `None` after the last.
    async fn next(&mut self, db: &Db) -> Result<Option<Vec<Value>>, WriteError> {
        let invalid =
            |e: String| WriteError::Invalid(format!("the stored snapshot is not valid JSON: {e}"));
        if self.seq >= self.source.chunks {
            if self.seq == self.source.chunks {
                self.seq += 1;
                self.splitter.finish().map_err(|e| invalid(e.to_string()))?;
            }
            return Ok(None);
        }
        let chunk = read_chunk(db, self.source, self.seq).await?;
        self.seq += 1;
        let mut raw = Vec::new();
        self.splitter
            .feed(&chunk, &mut raw)
            .map_err(|e| invalid(e.to_string()))?;
        raw.iter()
            .map(|r| serde_json::from_slice(r).map_err(|e| invalid(e.to_string())))
            .collect::<Result<Vec<Value>, _>>()
            .map(Some)
    }
}

/// Feeds the tasks of a stored JSON file to `f`, chunk by chunk, writing what `f` answers to
/// `out`.
async fn for_each_task(
    db: &Db,
    source: &StoredFile,
    mut out: Option<&mut ChunkWriter<'_>>,
    mut f: impl FnMut(Value) -> Result<Vec<u8>, String>,
) -> Result<(), WriteError> {
    let mut tasks = TaskReader::new(source);
    while let Some(batch) = tasks.next(db).await? {
        for task in batch {
            let bytes = f(task).map_err(WriteError::Failed)?;
            if let Some(out) = out.as_deref_mut() {
                out.write(&bytes).await?;
            }
        }
    }
    Ok(())
}

/// A completed, stored file of a snapshot.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredFile {
    /// Snapshot id.
    pub snapshot_id: i64,
    /// Format name.
    pub format: String,
    /// The attempt that wrote it.
    pub writer: String,
    /// Bytes.
    pub size: i64,
    /// Chunks.
    pub chunks: i64,
}

async fn stored(db: &Db, id: i64, format: ExportFormat) -> ApiResult<Option<StoredFile>> {
    Ok(with_read!(db, conn, {
        sqlx::query_as(
            "select snapshot_id, format, writer, size, chunks from export_snapshot_file \
             where snapshot_id = $1 and format = $2 and status = 'completed'",
        )
        .bind(id)
        .bind(format_name(format))
        .fetch_optional(conn)
        .await?
    }))
}

async fn read_chunk(db: &Db, file: &StoredFile, seq: i64) -> ApiResult<Vec<u8>> {
    let body: Option<Vec<u8>> = with_read!(db, conn, {
        sqlx::query_scalar(
            "select body from export_snapshot_chunk where snapshot_id = $1 and format = $2 and writer = $3 and seq = $4",
        )
        .bind(file.snapshot_id)
        .bind(&file.format)
        .bind(&file.writer)
        .bind(seq)
        .fetch_optional(conn)
        .await?
    });
    body.ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!("export {} was deleted while it was read", file.snapshot_id),
        )
    })
}

/// The chunks of a stored file in order, read one at a time (a download holds one chunk).
pub fn stream(
    db: Db,
    file: StoredFile,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures::stream::unfold((db, file, 0i64), |(db, file, seq)| async move {
        if seq >= file.chunks {
            return None;
        }
        match read_chunk(&db, &file, seq).await {
            Ok(body) => Some((Ok(Bytes::from(body)), (db, file, seq + 1))),
            Err(e) => {
                tracing::warn!(export = file.snapshot_id, error = %e.detail, "export download failed");
                let end = file.chunks;
                Some((Err(std::io::Error::other(e.detail)), (db, file, end)))
            }
        }
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

/// Removes a snapshot with its stored files inside a write transaction.
macro_rules! remove_snapshot {
    ($tx:expr, $id:expr) => {{
        for statement in [
            "delete from export_snapshot_chunk where snapshot_id = $1",
            "delete from export_snapshot_file where snapshot_id = $1",
            "delete from export_snapshot where id = $1",
        ] {
            sqlx::query(statement).bind($id).execute(&mut *$tx).await?;
        }
    }};
}

/// Deletes a snapshot with its stored files (a job still writing it stops at its next chunk).
pub async fn delete(db: &Db, actor: &Actor, project_id: i64, id: i64) -> ApiResult<()> {
    row(db, actor, project_id, id).await?;
    with_tx!(db, tx, {
        remove_snapshot!(tx, id);
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
    })
}

/// Snapshots removed per transaction by [`expire`].
const EXPIRE_BATCH: i64 = 50;

/// Removes the snapshots that ended (completed or failed) before `before` (UTC microseconds),
/// with their files, at most `EXPIRE_BATCH` per transaction, each audited as `export.expire`
/// in its organization's log; returns how many. Snapshots still being written are never
/// touched. Several replicas may run it at once: a snapshot is removed once.
pub async fn expire(db: &Db, before: i64, retention_days: u64) -> ApiResult<u64> {
    let mut removed = 0u64;
    loop {
        let n = with_tx!(db, tx, {
            let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
                "select e.id, e.project_id, p.organization_id from export_snapshot e \
                 join project p on p.id = e.project_id \
                 where e.status in ('completed', 'failed') and e.finished_at < $1 \
                 order by e.id limit $2",
            )
            .bind(before)
            .bind(EXPIRE_BATCH)
            .fetch_all(&mut *tx)
            .await?;
            for (id, project_id, org) in &rows {
                remove_snapshot!(tx, *id);
                let actor = Actor::instance(*org, Default::default());
                audit!(
                    tx,
                    Prepared::new(
                        &actor,
                        "export.expire",
                        "project",
                        *project_id,
                        json!({"export": id, "retention_days": retention_days})
                    )
                );
            }
            Ok::<_, ApiError>(rows.len() as u64)
        })?;
        removed += n;
        if n < EXPIRE_BATCH as u64 {
            return Ok(removed);
        }
    }
}

/// Asks for the conversion of a completed snapshot to `format`, to be written by job `job`.
/// Answers Label Studio's `{"export_type", "converted_format"}` and what changed: a
/// conversion queued, running or done is not made twice (a snapshot does not change; nothing
/// changes), a failed one is made again; JSON is the snapshot itself (listed, no job).
pub async fn convert(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    id: i64,
    format: ExportFormat,
    job: &str,
) -> ApiResult<(Value, Conversion)> {
    let snapshot = row(db, actor, project_id, id).await?;
    let project = projects::get_row(db, actor, project_id, Permission::ExportRun).await?;
    format.check(&project)?;
    if snapshot.status != "completed" {
        return Err(ApiError::bad_request(
            ErrorCode::ValidationError,
            format!(
                "export {id} is {}; wait until it is completed",
                snapshot.status
            ),
        ));
    }
    let name = format_name(format);
    let dialect = db.dialect();
    let (entry, change) = with_tx!(db, tx, {
        let out = update_converted!(tx, dialect, id, |list| {
            let existing = list
                .iter()
                .find(|c| c["export_type"] == json!(name) && c["status"] != json!("failed"))
                .cloned();
            match existing {
                Some(entry) => (entry, Conversion::Unchanged),
                None => {
                    list.retain(|c| c["export_type"] != json!(name));
                    let next = list
                        .iter()
                        .filter_map(|c| c["id"].as_i64())
                        .max()
                        .unwrap_or(0)
                        + 1;
                    let entry = if format == ExportFormat::Json {
                        json!({"id": next, "export_type": name, "status": "completed", "traceback": null})
                    } else {
                        json!({"id": next, "export_type": name, "status": "created", "traceback": null, "job": job, "requested_at": now_micros()})
                    };
                    list.push(entry.clone());
                    let change = if format == ExportFormat::Json {
                        Conversion::Listed
                    } else {
                        Conversion::Queued
                    };
                    (entry, change)
                }
            }
        });
        let Some((entry, change)) = out else {
            return Err(ApiError::not_found("export"));
        };
        if change != Conversion::Unchanged {
            audit!(
                tx,
                Prepared::new(
                    actor,
                    "export.convert",
                    "project",
                    project_id,
                    json!({"export": id, "format": name, "job": job})
                )
            );
        }
        Ok::<_, ApiError>((entry, change))
    })?;
    let mut answer = json!({"export_type": name, "converted_format": entry["id"]});
    if let Some(job) = entry.get("job") {
        answer["job"] = job.clone();
    }
    Ok((answer, change))
}

/// What a conversion request changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// Already queued, running or done: nothing.
    Unchanged,
    /// JSON listed among the converted formats (it is the snapshot itself).
    Listed,
    /// A conversion recorded; its job must be enqueued.
    Queued,
}

/// The stored file to download, or 404 naming what is missing.
pub async fn download(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    id: i64,
    format: ExportFormat,
) -> ApiResult<StoredFile> {
    let snapshot = row(db, actor, project_id, id).await?;
    if snapshot.status != "completed" {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("export {id} is {}, not completed", snapshot.status),
        ));
    }
    let converted: Vec<Value> = serde_json::from_str(&snapshot.converted).unwrap_or_default();
    if format != ExportFormat::Json {
        let status = converted
            .iter()
            .find(|c| c["export_type"] == json!(format_name(format)))
            .map(|c| c["status"].as_str().unwrap_or_default().to_string());
        match status.as_deref() {
            Some("completed") => {}
            None => {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!(
                        "{} format is not converted yet; POST /api/projects/{project_id}/exports/{id}/convert first",
                        format_name(format)
                    ),
                ));
            }
            Some(other) => {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!(
                        "the conversion to {} is {other}; wait until it is completed",
                        format_name(format)
                    ),
                ));
            }
        }
    }
    stored(db, id, format).await?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!(
                "the {} file of export {id} is not stored; create a new export",
                format_name(format)
            ),
        )
    })
}
