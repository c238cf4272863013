//! Imports that run as jobs: Label Studio Enterprise's `ProjectImport`, polled at
//! `GET /api/projects/{id}/imports/{import_pk}`. The upload is stored with the import until the
//! job has run it, so any worker can (ADR 0013's queues are shared by processes and pods).

use serde::Serialize;
use serde_json::{Value, json};

use super::{
    Db, access,
    audit::{Prepared, audit},
    format_micros, now_micros,
    tasks::{ImportFormat, ImportSource},
    uploads::StoredUpload,
    with_read, with_tx,
};
use crate::{
    authz::{Actor, Permission},
    error::{ApiError, ApiResult},
};

/// Largest upload an import run as a job takes (it is held in memory while it is stored and
/// again when the job unpacks it); larger ones are imported synchronously or split.
pub const MAX_ASYNC_BYTES: u64 = 256 * 1024 * 1024;

/// A stored import.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ImportRow {
    pub id: i64,
    pub organization_id: i64,
    pub project_id: i64,
    pub created_by: Option<i64>,
    pub status: String,
    pub job_id: Option<String>,
    pub error: Option<String>,
    pub return_task_ids: bool,
    pub summary: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    /// The URL the job fetches (a form-encoded `url=` import).
    pub url: Option<String>,
    /// `preannotated_from_fields` of the request, a JSON list.
    pub preannotated_from_fields: Option<String>,
}

const COLUMNS: &str = "id, organization_id, project_id, created_by, status, job_id, error, return_task_ids, summary, created_at, finished_at, url, preannotated_from_fields";

/// What an import run as a job brings besides its stored files.
#[derive(Debug, Clone, Default)]
pub struct ImportRequest {
    /// Return the new tasks' ids.
    pub return_task_ids: bool,
    /// A URL the job fetches and imports (ADR 0042).
    pub url: Option<String>,
    /// Task data fields that become a prediction (`preannotated_from_fields`).
    pub preannotated_from_fields: Vec<String>,
}

/// An import as the API shows it (Label Studio's `ProjectImport`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportView {
    pub id: i64,
    pub project: i64,
    /// `created`, `in_progress`, `completed` or `failed`.
    pub status: String,
    /// What went wrong (failed imports): the same message a synchronous import answers.
    pub error: Option<String>,
    /// The job that runs it (poll `/api/jobs/{id}` for attempts and progress).
    pub job: Option<String>,
    pub task_count: i64,
    pub annotation_count: i64,
    pub prediction_count: i64,
    /// Seconds the import took.
    pub duration: f64,
    #[schema(value_type = Object)]
    pub found_formats: Value,
    pub data_columns: Vec<String>,
    /// The new tasks' ids (with `return_task_ids=true`).
    pub task_ids: Option<Vec<i64>>,
    pub created_at: String,
    pub finished_at: Option<String>,
}

impl ImportRow {
    /// The `preannotated_from_fields` the job applies.
    pub fn preannotated_from_fields(&self) -> Vec<String> {
        self.preannotated_from_fields
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default()
    }

    /// The API view.
    pub fn view(&self) -> ImportView {
        let summary: Value = self
            .summary
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_else(|| json!({}));
        let count = |k: &str| summary[k].as_i64().unwrap_or(0);
        ImportView {
            id: self.id,
            project: self.project_id,
            status: self.status.clone(),
            error: self.error.clone(),
            job: self.job_id.clone(),
            task_count: count("task_count"),
            annotation_count: count("annotation_count"),
            prediction_count: count("prediction_count"),
            duration: summary["duration"].as_f64().unwrap_or(0.0),
            found_formats: summary
                .get("found_formats")
                .cloned()
                .unwrap_or_else(|| json!({})),
            data_columns: summary["data_columns"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            task_ids: if self.return_task_ids {
                summary["task_ids"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_i64).collect())
            } else {
                None
            },
            created_at: format_micros(self.created_at),
            finished_at: self.finished_at.map(format_micros),
        }
    }
}

fn format_name(format: ImportFormat) -> &'static str {
    match format {
        ImportFormat::Json => "json",
        ImportFormat::Csv => "csv",
        ImportFormat::Tsv => "tsv",
    }
}

fn parse_format(name: &str) -> ImportFormat {
    match name {
        "csv" => ImportFormat::Csv,
        "tsv" => ImportFormat::Tsv,
        _ => ImportFormat::Json,
    }
}

/// Stores an upload as a new import (status `created`); answers its id. The caller enqueues
/// the job and records it with [`set_job`]. A source kept as an upload (a file of a multipart
/// import, already under the project's upload directory) is recorded with its stored name, so
/// the job's transaction writes its `file_upload` row as a synchronous import does.
pub async fn create(
    db: &Db,
    actor: &Actor,
    project: i64,
    sources: &[ImportSource],
    request: &ImportRequest,
) -> ApiResult<i64> {
    access::project(db, actor, project, Permission::TaskManage).await?;
    let mut total = 0u64;
    for s in sources {
        total += tokio::fs::metadata(&s.path)
            .await
            .map_err(ApiError::internal)?
            .len();
    }
    if total > MAX_ASYNC_BYTES {
        return Err(ApiError::new(
            crate::error::ErrorCode::PayloadTooLarge,
            format!(
                "an import run as a job takes at most {} MiB; split the upload, or import it without async=true",
                MAX_ASYNC_BYTES / (1024 * 1024)
            ),
        ));
    }
    let mut files = Vec::with_capacity(sources.len());
    for s in sources {
        let body = tokio::fs::read(&s.path).await.map_err(ApiError::internal)?;
        files.push((
            format_name(s.format),
            s.extension.clone(),
            body,
            s.upload.clone(),
        ));
    }
    let now = now_micros();
    with_tx!(db, tx, {
        crate::recheck_project_access!(tx, actor, project, Permission::TaskManage)?;
        let id: i64 = sqlx::query_scalar(
            "insert into project_import (organization_id, project_id, created_by, return_task_ids, created_at, url, preannotated_from_fields) \
             values ($1, $2, $3, $4, $5, $6, $7) returning id",
        )
        .bind(actor.org_id)
        .bind(project)
        .bind((actor.user_id != 0).then_some(actor.user_id))
        .bind(request.return_task_ids)
        .bind(now)
        .bind(&request.url)
        .bind(
            (!request.preannotated_from_fields.is_empty())
                .then(|| json!(request.preannotated_from_fields).to_string()),
        )
        .fetch_one(&mut *tx)
        .await?;
        for (seq, (format, extension, body, upload)) in files.iter().enumerate() {
            sqlx::query(
                "insert into project_import_file (import_id, seq, format, extension, body, upload_file, upload_size) \
                 values ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(id)
            .bind(i64::try_from(seq).unwrap_or(i64::MAX))
            .bind(*format)
            .bind(extension)
            .bind(body.as_slice())
            .bind(upload.as_ref().map(|u| u.file.clone()))
            .bind(upload.as_ref().map(|u| u.size))
            .execute(&mut *tx)
            .await?;
        }
        let bytes: usize = files.iter().map(|f| f.2.len()).sum();
        audit!(
            tx,
            Prepared::new(
                actor,
                "import.queue",
                "project",
                project,
                json!({"import": id, "files": files.len(), "bytes": bytes, "url": request.url}),
            )
        );
        Ok::<_, ApiError>(id)
    })
}

/// Records the job that runs an import.
pub async fn set_job(db: &Db, id: i64, job: &str) -> ApiResult<()> {
    with_tx!(db, tx, {
        sqlx::query("update project_import set job_id = $1 where id = $2")
            .bind(job)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        Ok::<_, ApiError>(())
    })
}

/// An import of a project whose tasks the actor manages (who may import may follow imports).
pub async fn get(db: &Db, actor: &Actor, project: i64, id: i64) -> ApiResult<ImportView> {
    access::project(db, actor, project, Permission::TaskManage).await?;
    let row = by_id(db, id)
        .await?
        .filter(|r| r.project_id == project && r.organization_id == actor.org_id)
        .ok_or_else(|| ApiError::not_found("import"))?;
    Ok(row.view())
}

/// An import by id (jobs).
pub async fn by_id(db: &Db, id: i64) -> ApiResult<Option<ImportRow>> {
    Ok(with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {COLUMNS} from project_import where id = $1"
        ))
        .bind(id)
        .fetch_optional(conn)
        .await?
    }))
}

/// Writes an import's files into `dir` for the importer; marks it `in_progress`.
pub async fn start(db: &Db, id: i64, dir: &std::path::Path) -> ApiResult<Vec<ImportSource>> {
    #[allow(clippy::type_complexity)]
    let files: Vec<(i64, String, String, Vec<u8>, Option<String>, Option<i64>)> = with_read!(
        db,
        conn,
        {
            sqlx::query_as(
            "select seq, format, extension, body, upload_file, upload_size from project_import_file where import_id = $1 order by seq",
        )
        .bind(id)
        .fetch_all(conn)
        .await?
        }
    );
    let mut sources = Vec::with_capacity(files.len());
    for (seq, format, extension, body, upload_file, upload_size) in files {
        let path = dir.join(format!("upload-{seq}"));
        tokio::fs::write(&path, body)
            .await
            .map_err(ApiError::internal)?;
        sources.push(ImportSource {
            path,
            format: parse_format(&format),
            extension,
            upload: upload_file.map(|file| StoredUpload {
                file,
                size: upload_size.unwrap_or(0),
            }),
        });
    }
    with_tx!(db, tx, {
        sqlx::query(
            "update project_import set status = 'in_progress' where id = $1 and status = 'created'",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        Ok::<_, ApiError>(())
    })?;
    Ok(sources)
}

/// Ends an import: `completed` with its summary, or `failed` with the error. Its stored files
/// go from the database; answers the names of those it had kept under the project's upload
/// directory (a failed import's caller removes them).
pub async fn finish(db: &Db, id: i64, outcome: Result<Value, String>) -> ApiResult<Vec<String>> {
    let (status, summary, error) = match outcome {
        Ok(s) => ("completed", Some(s.to_string()), None),
        Err(e) => ("failed", None, Some(e)),
    };
    with_tx!(db, tx, {
        sqlx::query(
            "update project_import set status = $1, summary = $2, error = $3, finished_at = $4 where id = $5",
        )
        .bind(status)
        .bind(summary)
        .bind(error)
        .bind(now_micros())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let stored: Vec<String> = sqlx::query_scalar(
            "select upload_file from project_import_file where import_id = $1 and upload_file is not null",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("delete from project_import_file where import_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        Ok::<_, ApiError>(stored)
    })
}
