//! Bulk annotation writes (ADR 0061): labeling many tasks with one answer (Label Studio
//! Enterprise's `POST /api/annotations/bulk/`), deleting a list of annotations
//! (`POST /api/annotations/bulk-delete/`) and marking each selected task's newest submitted
//! annotation as ground truth (the data-manager action `set_ground_truths`). Each is one
//! transaction with one audit entry and changes annotations only through the shared upkeep of
//! [`super::annotations`] (`insert_annotation!`, `apply_annotation_delta!`,
//! `unset_ground_truth!`); nothing here computes a counter of its own. It never decides which
//! tasks a data-manager selection means: callers pass task ids.

use serde_json::{Value, json};

use super::{
    Db, access,
    annotations::{AnnotationInput, Kind, NewAnnotation, check_member, validate_result},
    assignments::id_list,
    audit::{Prepared, audit},
    now_micros, tasks, with_tx,
};
use crate::{
    authz::{Actor, Permission, Role},
    error::{ApiError, ApiResult, ErrorCode},
};

/// Most tasks one bulk-labeling call writes (ADR 0061): one transaction holds the project's
/// lock while it writes, and the label stream of the project waits for it meanwhile.
pub const MAX_TASKS: usize = 1000;

/// Most annotations one bulk delete names (Label Studio Enterprise's limit).
pub const MAX_DELETE: usize = 100;

/// Ids named in an error message, at most.
const NAMED_IDS: usize = 20;

fn named(ids: &[i64]) -> String {
    let mut text = ids
        .iter()
        .take(NAMED_IDS)
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > NAMED_IDS {
        text.push_str(&format!(" and {} more", ids.len() - NAMED_IDS));
    }
    text
}

/// What a bulk-labeling call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labeled {
    /// The new annotations, in task order.
    pub created: Vec<i64>,
    /// Tasks left alone: the author has an annotation of them already, or (strict overlap)
    /// they have no place left.
    pub left_alone: Vec<i64>,
}

/// Why a project's labeling configuration cannot be labeled in bulk, as the API error.
pub fn check_suitable(project: &super::projects::ProjectRow) -> ApiResult<()> {
    let reason = match project.config() {
        None => Some("the project has no labeling configuration".to_owned()),
        Some(config) => config.bulk_unsuitable(),
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(ApiError::new(
            ErrorCode::ConfigNotSuitableForBulk,
            format!(
                "project {} cannot be labeled in bulk: {reason} (label its tasks one by one in the editor)",
                project.id
            ),
        )),
    }
}

/// Labels tasks `task_ids` of `project_id` with one answer (`input`): one annotation per task,
/// `bulk_created`, authored by `input.completed_by` or the caller, in one transaction. Needs
/// `annotation.manage` (Reviewer and above); ground truth needs `ground_truth.manage`. The
/// result is checked against the labeling configuration as any annotation's is, and the
/// configuration must be one bulk labeling can write ([`check_suitable`]). Every id must be a
/// task of the project, else nothing is written. A task the author has annotated already
/// (submitted or skipped) is left alone, as is, under strict overlap, a task with no place left.
pub async fn label_tasks(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    task_ids: &[i64],
    input: &AnnotationInput,
) -> ApiResult<Labeled> {
    let access = access::project(db, actor, project_id, Permission::AnnotationManage).await?;
    let project = access.row;
    check_suitable(&project)?;
    let mut task_ids = task_ids.to_vec();
    task_ids.sort_unstable();
    task_ids.dedup();
    if task_ids.is_empty() {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "tasks",
            "select at least one task",
        ));
    }
    if task_ids.len() > MAX_TASKS {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "tasks",
            format!(
                "{} tasks selected; bulk labeling writes at most {MAX_TASKS} per call: narrow the selection with a filter, or send several calls",
                task_ids.len()
            ),
        ));
    }
    let Some(result) = input.result.clone() else {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "result",
            "this field is required: the region items every selected task gets",
        ));
    };
    if result.is_null() {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "result",
            "must be a list of region items, not null",
        ));
    }
    let was_cancelled = input.was_cancelled.unwrap_or(false);
    validate_result(&project, &result, was_cancelled)?;
    let author = input.completed_by.unwrap_or(actor.user_id);
    if author != actor.user_id {
        check_member(db, actor, author).await?;
    }
    let ground_truth = input.ground_truth.unwrap_or(false);
    if ground_truth {
        actor.require_in(Some(access.role), Permission::GroundTruthManage)?;
    }
    let settings = project.settings();
    let skip_queue = settings.skip_queue;
    // Strict overlap binds whom it binds for a single create (see `annotations::create`): the
    // label stream's roles under automatic distribution. Unlike a single create, a full task is
    // left alone whatever the author's reservations: a bulk call never comes from the stream
    // (ADR 0061).
    let strict = settings.strict_task_overlap
        && !settings.assignment_settings.manual()
        && access.role < Role::Manager
        && !was_cancelled
        && !ground_truth;
    let result_text = result.to_string();
    let dialect = db.dialect();
    with_tx!(db, tx, {
        crate::lock_project!(tx, dialect, project_id);
        let now = now_micros();
        crate::recheck_project_access!(tx, actor, project_id, Permission::AnnotationManage)?;
        let mut outcome = Labeled::default();
        let mut foreign: Vec<i64> = Vec::new();
        for chunk in task_ids.chunks(tasks::DELETE_BATCH) {
            let list = id_list(chunk);
            let found: Vec<i64> = sqlx::query_scalar(&format!(
                "select id from task where project_id = $1 and id in ({list})"
            ))
            .bind(project_id)
            .fetch_all(&mut *tx)
            .await?;
            let found: std::collections::BTreeSet<i64> = found.into_iter().collect();
            foreign.extend(chunk.iter().filter(|id| !found.contains(id)));
        }
        if !foreign.is_empty() {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "tasks",
                format!(
                    "not tasks of project {project_id}: {}; nothing was labeled",
                    named(&foreign)
                ),
            ));
        }
        for chunk in task_ids.chunks(tasks::DELETE_BATCH) {
            let list = id_list(chunk);
            let done: Vec<i64> = sqlx::query_scalar(&format!(
                "select distinct task_id from annotation where task_id in ({list}) and completed_by = $1"
            ))
            .bind(author)
            .fetch_all(&mut *tx)
            .await?;
            let mut skip: std::collections::BTreeSet<i64> = done.into_iter().collect();
            if strict {
                // No place left: counted annotations and others' live reservations fill it.
                let full: Vec<i64> = sqlx::query_scalar(&format!(
                    "select t.id from task t where t.id in ({list}) and {} + (select count(*) from task_lock l \
                     where l.task_id = t.id and l.user_id <> $1 and l.expire_at > $2) >= t.overlap",
                    tasks::counted_sql(skip_queue)
                ))
                .bind(author)
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
                skip.extend(full);
            }
            for &task_id in chunk {
                if skip.contains(&task_id) {
                    outcome.left_alone.push(task_id);
                    continue;
                }
                let id = crate::insert_annotation!(
                    tx,
                    project_id,
                    task_id,
                    &NewAnnotation {
                        result: Some(result_text.clone()),
                        author,
                        updated_by: actor.user_id,
                        was_cancelled,
                        ground_truth,
                        lead_time: input.lead_time,
                        parent_prediction: None,
                        parent_annotation: None,
                        now,
                        bulk_created: true,
                    },
                    skip_queue
                );
                outcome.created.push(id);
            }
        }
        audit!(
            tx,
            Prepared::new(
                actor,
                "annotation.create",
                "project",
                project_id,
                json!({"from": "bulk", "created": outcome.created.len(), "selected": task_ids.len(),
                       "left_alone": outcome.left_alone.len(), "completed_by": author,
                       "ground_truth": ground_truth,
                       "ids": outcome.created.iter().take(tasks::AUDIT_IDS).collect::<Vec<_>>()}),
            )
        );
        Ok::<_, ApiError>(outcome)
    })
}

/// Deletes annotations `ids` of `project_id` (at most [`MAX_DELETE`]), with `annotation.manage`.
/// An id that is not an annotation of the project (another project's, another organization's,
/// or none) refuses the whole call: nothing is deleted. Answers the deleted ids.
pub async fn delete_annotations(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    ids: &[i64],
) -> ApiResult<Vec<i64>> {
    let access = access::project(db, actor, project_id, Permission::AnnotationManage).await?;
    let skip_queue = access.row.settings().skip_queue;
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() || ids.len() > MAX_DELETE {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "ids",
            format!(
                "give 1 to {MAX_DELETE} annotation ids ({} given)",
                ids.len()
            ),
        ));
    }
    let dialect = db.dialect();
    let list = id_list(&ids);
    with_tx!(db, tx, {
        crate::lock_project!(tx, dialect, project_id);
        crate::recheck_project_access!(tx, actor, project_id, Permission::AnnotationManage)?;
        let found: Vec<i64> = sqlx::query_scalar(&format!(
            "select id from annotation where project_id = $1 and id in ({list})"
        ))
        .bind(project_id)
        .fetch_all(&mut *tx)
        .await?;
        if found.len() != ids.len() {
            let missing: Vec<i64> = ids.iter().copied().filter(|i| !found.contains(i)).collect();
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "ids",
                format!(
                    "not annotations of project {project_id}: {}; nothing was deleted",
                    named(&missing)
                ),
            ));
        }
        let gone: Vec<(i64, i64, bool, bool, bool)> = sqlx::query_as(&format!(
            "delete from annotation where project_id = $1 and id in ({list}) \
             returning id, task_id, was_cancelled, ground_truth, result is not null"
        ))
        .bind(project_id)
        .fetch_all(&mut *tx)
        .await?;
        let (mut deleted, tasks_touched) =
            crate::retract_deleted_annotations!(tx, project_id, skip_queue, gone);
        deleted.sort_unstable();
        audit!(
            tx,
            Prepared::new(
                actor,
                "annotation.delete",
                "project",
                project_id,
                json!({"deleted": deleted.len(), "tasks": tasks_touched, "ids": deleted}),
            )
        );
        Ok::<_, ApiError>(deleted)
    })
}

/// What marking ground truths did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroundTruths {
    /// Annotations newly marked as ground truth.
    pub marked: Vec<i64>,
    /// Tasks whose newest submitted annotation was their ground truth already.
    pub unchanged: i64,
    /// Tasks without a submitted annotation (nothing to mark).
    pub without: Vec<i64>,
}

/// Marks, on each selected task of `project_id`, the newest submitted annotation (not skipped,
/// with a result; the latest created, the highest id among equals) as the task's ground truth,
/// clearing any other mark of the task: the data-manager action `set_ground_truths`. Tasks
/// without a submitted annotation are counted, not refused. Needs `ground_truth.manage`.
pub async fn set_ground_truths(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    task_ids: &[i64],
) -> ApiResult<GroundTruths> {
    let access = access::project(db, actor, project_id, Permission::GroundTruthManage).await?;
    let skip_queue = access.row.settings().skip_queue;
    let dialect = db.dialect();
    let now = now_micros();
    with_tx!(db, tx, {
        crate::lock_project!(tx, dialect, project_id);
        crate::recheck_project_access!(tx, actor, project_id, Permission::GroundTruthManage)?;
        let mut out = GroundTruths::default();
        for chunk in task_ids.chunks(tasks::DELETE_BATCH) {
            let rows: Vec<(i64, i64, bool)> = sqlx::query_as(&format!(
                "select a.task_id, a.id, a.ground_truth from annotation a where a.project_id = $1 \
                 and a.task_id in ({}) and not a.was_cancelled and a.result is not null \
                 order by a.task_id, a.created_at desc, a.id desc",
                id_list(chunk)
            ))
            .bind(project_id)
            .fetch_all(&mut *tx)
            .await?;
            let mut newest: std::collections::BTreeMap<i64, (i64, bool)> = Default::default();
            for (task_id, id, gt) in rows {
                newest.entry(task_id).or_insert((id, gt));
            }
            for &task_id in chunk {
                let Some(&(id, already)) = newest.get(&task_id) else {
                    out.without.push(task_id);
                    continue;
                };
                if already {
                    out.unchanged += 1;
                    continue;
                }
                crate::unset_ground_truth!(tx, task_id, project_id, skip_queue);
                sqlx::query(
                    "update annotation set ground_truth = $1, updated_at = $2 where id = $3",
                )
                .bind(true)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                let delta = Kind::of(false, true, true).minus(Kind::of(false, false, true));
                crate::apply_annotation_delta!(tx, task_id, project_id, delta, skip_queue);
                crate::refresh_task_agreement!(tx, project_id, task_id);
                out.marked.push(id);
            }
        }
        audit!(
            tx,
            Prepared::new(
                actor,
                "annotation.ground_truth.set",
                "project",
                project_id,
                json!({"marked": out.marked.len(), "unchanged": out.unchanged,
                       "without": out.without.len(), "selected": task_ids.len(),
                       "ids": out.marked.iter().take(tasks::AUDIT_IDS).collect::<Vec<_>>()}),
            )
        );
        Ok::<_, ApiError>(out)
    })
}

/// The ids of a list field (`tasks`, `ids`): a list of integer ids.
pub fn task_id_list(value: &Value, field: &str) -> ApiResult<Vec<i64>> {
    let bad = || {
        ApiError::field(
            ErrorCode::ValidationError,
            field,
            "must be a list of integer ids",
        )
    };
    value
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|v| v.as_i64().ok_or_else(bad))
        .collect()
}
