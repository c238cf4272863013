//! Uploaded files kept as Label Studio keeps them (`FileUpload`, ADR 0032): the files of a
//! multipart import are stored under `<data_dir>/upload/<project>/<file>`, served at
//! `/data/upload/<project>/<file>` to those who may view the project, and recorded in
//! `file_upload`; tasks made of an upload point at it (`task.file_upload_id`).

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;

use super::{
    Db, access,
    audit::{Prepared, audit},
    format_micros, with_read, with_tx,
};
use crate::{
    authz::{Actor, Permission},
    error::{ApiError, ApiResult, ErrorCode},
};

/// A file stored for an import, recorded in `file_upload` by the import's transaction.
#[derive(Debug, Clone)]
pub struct StoredUpload {
    /// The stored name in the project's upload directory.
    pub file: String,
    /// Bytes.
    pub size: i64,
}

/// The directory of a project's uploads.
pub fn project_dir(data_dir: &Path, project: i64) -> PathBuf {
    data_dir.join("upload").join(project.to_string())
}

/// Where an upload is served.
pub fn url(project: i64, file: &str) -> String {
    format!("/data/upload/{project}/{file}")
}

/// A fresh stored name for an uploaded file: 8 random hex digits, a dash and the original
/// name reduced to letters, digits, `.`, `-` and `_` (Label Studio prefixes a random id too).
pub fn stored_name(original: &str) -> String {
    let base = original.rsplit(['/', '\\']).next().unwrap_or(original);
    let mut clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.len() > 120 {
        let cut = clean.len() - 120;
        clean = clean[cut..].to_string();
    }
    let clean = clean.trim_start_matches('.');
    let prefix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    if clean.is_empty() {
        prefix.to_string()
    } else {
        format!("{prefix}-{clean}")
    }
}

/// Whether `file` can be a stored name (one path segment, no traversal).
pub fn valid_name(file: &str) -> bool {
    !file.is_empty()
        && !file.starts_with('.')
        && file
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// A stored upload row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UploadRow {
    pub id: i64,
    pub organization_id: i64,
    pub project_id: i64,
    pub file: String,
    pub size: i64,
    pub created_by: Option<i64>,
    pub created_at: i64,
}

const COLUMNS: &str = "id, organization_id, project_id, file, size, created_by, created_at";

/// An upload as the API shows it (Label Studio's `FileUpload`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FileUploadView {
    pub id: i64,
    /// Where the file is served: `/data/upload/{project}/{file}`.
    pub file: String,
    pub project: i64,
    /// Bytes.
    pub size: i64,
    pub created_by: Option<i64>,
    pub created_at: String,
}

impl UploadRow {
    /// The API view.
    pub fn view(&self) -> FileUploadView {
        FileUploadView {
            id: self.id,
            file: url(self.project_id, &self.file),
            project: self.project_id,
            size: self.size,
            created_by: self.created_by,
            created_at: format_micros(self.created_at),
        }
    }
}

/// The uploads of a project (optionally only `ids`), oldest first.
pub async fn list(
    db: &Db,
    actor: &Actor,
    project: i64,
    ids: Option<&[i64]>,
) -> ApiResult<Vec<FileUploadView>> {
    access::project(db, actor, project, Permission::ProjectView).await?;
    let rows: Vec<UploadRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {COLUMNS} from file_upload where project_id = $1 order by id"
        ))
        .bind(project)
        .fetch_all(conn)
        .await?
    });
    Ok(rows
        .iter()
        .filter(|r| ids.is_none_or(|ids| ids.contains(&r.id)))
        .map(UploadRow::view)
        .collect())
}

async fn by_id(db: &Db, actor: &Actor, id: i64, permission: Permission) -> ApiResult<UploadRow> {
    let row: Option<UploadRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {COLUMNS} from file_upload where id = $1 and organization_id = $2"
        ))
        .bind(id)
        .bind(actor.org_id)
        .fetch_optional(conn)
        .await?
    });
    let row = row.ok_or_else(|| ApiError::not_found("file upload"))?;
    access::project(db, actor, row.project_id, permission).await?;
    Ok(row)
}

/// One upload of a project the actor may view.
pub async fn get(db: &Db, actor: &Actor, id: i64) -> ApiResult<FileUploadView> {
    Ok(by_id(db, actor, id, Permission::ProjectView).await?.view())
}

/// The upload to replace (`PATCH`): the actor must manage the project's tasks.
pub async fn for_update(db: &Db, actor: &Actor, id: i64) -> ApiResult<UploadRow> {
    by_id(db, actor, id, Permission::TaskManage).await
}

/// Records a replaced upload's new size.
pub async fn replaced(db: &Db, actor: &Actor, row: &UploadRow, size: i64) -> ApiResult<()> {
    with_tx!(db, tx, {
        crate::recheck_project_access!(tx, actor, row.project_id, Permission::TaskManage)?;
        sqlx::query("update file_upload set size = $1 where id = $2")
            .bind(size)
            .bind(row.id)
            .execute(&mut *tx)
            .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "file_upload.update",
                "file_upload",
                row.id,
                json!({"project": row.project_id, "file": row.file, "size": size}),
            )
        );
        Ok::<_, ApiError>(())
    })
}

/// Deletes the uploads of a project (`ids`, or all) that no task uses; answers the deleted
/// rows (the caller removes their files). Uploads that tasks use are kept: delete the tasks
/// first.
pub async fn delete_many(
    db: &Db,
    actor: &Actor,
    project: i64,
    ids: Option<&[i64]>,
) -> ApiResult<Vec<UploadRow>> {
    access::project(db, actor, project, Permission::TaskManage).await?;
    with_tx!(db, tx, {
        crate::recheck_project_access!(tx, actor, project, Permission::TaskManage)?;
        let rows: Vec<UploadRow> = sqlx::query_as(&format!(
            "select {COLUMNS} from file_upload f where project_id = $1 \
             and not exists (select 1 from task t where t.file_upload_id = f.id) order by id"
        ))
        .bind(project)
        .fetch_all(&mut *tx)
        .await?;
        let rows: Vec<UploadRow> = rows
            .into_iter()
            .filter(|r| ids.is_none_or(|ids| ids.contains(&r.id)))
            .collect();
        for r in &rows {
            sqlx::query("delete from file_upload where id = $1")
                .bind(r.id)
                .execute(&mut *tx)
                .await?;
        }
        audit!(
            tx,
            Prepared::new(
                actor,
                "file_upload.delete",
                "project",
                project,
                json!({"file_uploads": rows.iter().map(|r| r.id).collect::<Vec<_>>()}),
            )
        );
        Ok::<_, ApiError>(rows)
    })
}

/// Deletes one upload no task uses (409 `conflict` while tasks use it); answers the row.
pub async fn delete_one(db: &Db, actor: &Actor, id: i64) -> ApiResult<UploadRow> {
    let row = by_id(db, actor, id, Permission::TaskManage).await?;
    with_tx!(db, tx, {
        crate::recheck_project_access!(tx, actor, row.project_id, Permission::TaskManage)?;
        let used: i64 = sqlx::query_scalar("select count(*) from task where file_upload_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        if used > 0 {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "{used} task(s) were made of this file; delete them first (the file is what they show)"
                ),
            ));
        }
        sqlx::query("delete from file_upload where id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "file_upload.delete",
                "project",
                row.project_id,
                json!({"file_uploads": [id]}),
            )
        );
        Ok::<_, ApiError>(())
    })?;
    Ok(row)
}

/// The size of an upload of the actor's organization to serve (`None`: no such upload, which
/// the caller answers with 404 like another organization's); the actor must be allowed to view the
/// project (the project's usual 403 otherwise).
pub async fn for_serving(
    db: &Db,
    actor: &Actor,
    project: i64,
    file: &str,
) -> ApiResult<Option<i64>> {
    let row: Option<(i64, i64)> = with_read!(db, conn, {
        sqlx::query_as(
            "select id, size from file_upload where project_id = $1 and file = $2 and organization_id = $3",
        )
        .bind(project)
        .bind(file)
        .bind(actor.org_id)
        .fetch_optional(conn)
        .await?
    });
    let Some((_, size)) = row else {
        return Ok(None);
    };
    access::project(db, actor, project, Permission::ProjectView).await?;
    Ok(Some(size))
}

/// Removes stored files (best effort: a file left behind is only disk space).
pub fn remove_files(data_dir: &Path, project: i64, files: impl IntoIterator<Item = String>) {
    let dir = project_dir(data_dir, project);
    for f in files {
        if valid_name(&f)
            && let Err(e) = std::fs::remove_file(dir.join(&f))
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, file = %f, "removing an uploaded file failed");
        }
    }
}
