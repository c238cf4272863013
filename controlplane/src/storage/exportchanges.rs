//! Annotations waiting to be written to (or deleted from) export storages after they changed
//! (`export_change`, ADR 0052): one row per storage and annotation, a version that every new
//! change bumps, and a writer's lease. No actor: rows are recorded after a change that was
//! already authorized and committed, and read by the writer job, which acts for the storage.
//! Nothing here touches a bucket or a directory (`crate::exportchanges` does).

use serde_json::Value;

use super::{Db, now_micros, with_read, with_tx};
use crate::error::{ApiError, ApiResult};

/// The prefix of a storage's `traceback` when writing changed annotations failed; a later
/// successful write clears only a failure of its own (never a sync's).
pub const FAILURE_PREFIX: &str = "writing changed annotations failed: ";

/// An export storage of a project: its kind (`localfiles`, `s3`, `gcs`, `azure`), id and
/// organization.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ExportTarget {
    /// `localfiles` or the bucket provider's kind.
    pub kind: String,
    /// Storage id (unique within its kind).
    pub id: i64,
    /// Organization.
    pub organization_id: i64,
}

/// The export storages of a project (local files first, then buckets), oldest first.
pub async fn targets(db: &Db, project: i64) -> ApiResult<Vec<ExportTarget>> {
    Ok(with_read!(db, conn, {
        sqlx::query_as(
            "select kind, id, organization_id from (\
             select 'localfiles' as kind, id, organization_id, 0 as o from local_storage \
             where project_id = $1 and direction = 'export' \
             union all select provider as kind, id, organization_id, 1 as o from cloud_storage \
             where project_id = $1 and direction = 'export') s order by o, id",
        )
        .bind(project)
        .fetch_all(conn)
        .await?
    }))
}

/// The annotations of some tasks of a project (tasks imported with their annotations).
pub async fn annotations_of_tasks(db: &Db, project: i64, tasks: &[i64]) -> ApiResult<Vec<i64>> {
    let mut out = Vec::new();
    for chunk in tasks.chunks(500) {
        let list = chunk
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let ids: Vec<i64> = with_read!(db, conn, {
            sqlx::query_scalar(&format!(
                "select id from annotation where project_id = $1 and task_id in ({list}) order by id"
            ))
            .bind(project)
            .fetch_all(conn)
            .await?
        });
        out.extend(ids);
    }
    Ok(out)
}

/// Records that `annotations` of `project` changed, for each target: a new row, or a bumped
/// version of the row that is already waiting (many changes before the writer runs cost one
/// write). Short transactions of at most 500 rows.
pub async fn add(
    db: &Db,
    targets: &[ExportTarget],
    project: i64,
    annotations: &[i64],
) -> ApiResult<()> {
    let now = now_micros();
    for target in targets {
        for chunk in annotations.chunks(500) {
            with_tx!(db, tx, {
                for annotation in chunk {
                    sqlx::query(
                        "insert into export_change (storage_kind, storage_id, annotation_id, project_id, version, created_at) \
                         values ($1, $2, $3, $4, 1, $5) on conflict (storage_kind, storage_id, annotation_id) \
                         do update set version = export_change.version + 1",
                    )
                    .bind(&target.kind)
                    .bind(target.id)
                    .bind(annotation)
                    .bind(project)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                Ok::<_, ApiError>(())
            })?;
        }
    }
    Ok(())
}

/// Whether changes wait for a storage that no live lease holds (a pass that failed for good
/// left them, or a deletion recorded them with its transaction).
pub async fn waiting(db: &Db, kind: &str, storage: i64) -> ApiResult<bool> {
    let now = now_micros();
    let found: Option<i64> = with_read!(db, conn, {
        sqlx::query_scalar(
            "select annotation_id from export_change where storage_kind = $1 and storage_id = $2 \
             and (leased_until is null or leased_until < $3) limit 1",
        )
        .bind(kind)
        .bind(storage)
        .bind(now)
        .fetch_optional(conn)
        .await?
    });
    Ok(found.is_some())
}

/// A row the writer holds: the annotation and the version it saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Leased {
    /// Annotation id.
    pub annotation_id: i64,
    /// The row's version when leased.
    pub version: i64,
}

/// Leases up to `limit` waiting rows of a storage that no live lease holds, until `until`
/// (micros), lowest annotation ids first.
pub async fn lease(
    db: &Db,
    kind: &str,
    storage: i64,
    until: i64,
    limit: i64,
) -> ApiResult<Vec<Leased>> {
    let now = now_micros();
    let mut rows: Vec<Leased> = with_tx!(db, tx, {
        let rows: Vec<Leased> = sqlx::query_as(
            "update export_change set leased_until = $1 where storage_kind = $2 and storage_id = $3 \
             and (leased_until is null or leased_until < $4) and annotation_id in (\
             select annotation_id from export_change where storage_kind = $2 and storage_id = $3 \
             and (leased_until is null or leased_until < $4) order by annotation_id limit $5) \
             returning annotation_id, version",
        )
        .bind(until)
        .bind(kind)
        .bind(storage)
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        Ok::<_, ApiError>(rows)
    })?;
    rows.sort_by_key(|r| r.annotation_id);
    Ok(rows)
}

/// The writer is done with rows: each is removed if no change came since it was leased (its
/// version is the one leased), else let go so that the newer change is written next.
pub async fn finish(db: &Db, kind: &str, storage: i64, done: &[Leased]) -> ApiResult<()> {
    if done.is_empty() {
        return Ok(());
    }
    with_tx!(db, tx, {
        for row in done {
            let removed = sqlx::query(
                "delete from export_change where storage_kind = $1 and storage_id = $2 \
                 and annotation_id = $3 and version = $4",
            )
            .bind(kind)
            .bind(storage)
            .bind(row.annotation_id)
            .bind(row.version)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if removed == 0 {
                sqlx::query(RELEASE)
                    .bind(kind)
                    .bind(storage)
                    .bind(row.annotation_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        Ok::<_, ApiError>(())
    })
}

/// Lets go of one row (`$1` kind, `$2` storage, `$3` annotation) for the next pass.
const RELEASE: &str = "update export_change set leased_until = null where storage_kind = $1 \
     and storage_id = $2 and annotation_id = $3";

/// Lets go of rows without removing them (their write failed; a retry takes them again).
pub async fn release(db: &Db, kind: &str, storage: i64, rows: &[Leased]) -> ApiResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    with_tx!(db, tx, {
        for row in rows {
            sqlx::query(RELEASE)
                .bind(kind)
                .bind(storage)
                .bind(row.annotation_id)
                .execute(&mut *tx)
                .await?;
        }
        Ok::<_, ApiError>(())
    })
}

fn table(kind: &str) -> &'static str {
    if kind == crate::localfiles::KIND {
        "local_storage"
    } else {
        "cloud_storage"
    }
}

/// Shows a failed write in the storage's status: `failed`, with why in `traceback` (prefixed
/// with [`FAILURE_PREFIX`]); bucket storages also carry it in `meta.changes`. A sync that is
/// queued or running is left to report its own outcome.
pub async fn show_failure(db: &Db, kind: &str, storage: i64, why: &str) -> ApiResult<()> {
    let traceback = format!("{FAILURE_PREFIX}{why}");
    let table = table(kind);
    with_tx!(db, tx, {
        let meta: Option<(String, String)> = if table == "cloud_storage" {
            sqlx::query_as("select status, meta from cloud_storage where id = $1")
                .bind(storage)
                .fetch_optional(&mut *tx)
                .await?
        } else {
            None
        };
        sqlx::query(&format!(
            "update {table} set status = 'failed', traceback = $1 where id = $2 \
             and status not in ('queued', 'in_progress')"
        ))
        .bind(&traceback)
        .bind(storage)
        .execute(&mut *tx)
        .await?;
        if let Some((status, meta)) = meta
            && status != "queued"
            && status != "in_progress"
        {
            let mut meta: Value =
                serde_json::from_str(&meta).unwrap_or_else(|_| serde_json::json!({}));
            if !meta.is_object() {
                meta = serde_json::json!({});
            }
            meta["changes"] =
                serde_json::json!({"error": why, "failed_at": super::format_micros(now_micros())});
            sqlx::query("update cloud_storage set meta = $1 where id = $2")
                .bind(meta.to_string())
                .bind(storage)
                .execute(&mut *tx)
                .await?;
        }
        Ok::<_, ApiError>(())
    })
}

/// After a successful write: a failure that [`show_failure`] recorded is cleared (`completed`).
pub async fn clear_failure(db: &Db, kind: &str, storage: i64) -> ApiResult<()> {
    let table = table(kind);
    with_tx!(db, tx, {
        let cleared = sqlx::query(&format!(
            "update {table} set status = 'completed', traceback = null where id = $1 \
             and status = 'failed' and traceback like $2"
        ))
        .bind(storage)
        .bind(format!("{FAILURE_PREFIX}%"))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if cleared > 0 && table == "cloud_storage" {
            let meta: String = sqlx::query_scalar("select meta from cloud_storage where id = $1")
                .bind(storage)
                .fetch_one(&mut *tx)
                .await?;
            if let Ok(Value::Object(mut meta)) = serde_json::from_str::<Value>(&meta) {
                meta.remove("changes");
                sqlx::query("update cloud_storage set meta = $1 where id = $2")
                    .bind(Value::Object(meta).to_string())
                    .bind(storage)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        Ok::<_, ApiError>(())
    })
}
