//! Quality actions of the data manager over a selection of tasks (ADR 0041): clearing ground
//! truth, turning predictions into annotations, and removing duplicated tasks. Each is one
//! transaction with one audit entry, and changes annotations only through the shared counter
//! upkeep of [`super::annotations`]; nothing here computes a counter of its own.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::{
    Db, access,
    annotations::{Kind, NewAnnotation},
    assignments::id_list,
    audit::{Prepared, audit},
    now_micros, tasks, with_tx,
};
use crate::{
    authz::{Actor, Permission},
    error::{ApiError, ApiResult},
};

/// Clears the ground-truth mark of every annotation of the selected tasks of `project_id`
/// (the data-manager action `delete_ground_truths`). Answers how many marks were cleared.
pub async fn delete_ground_truths(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    task_ids: &[i64],
) -> ApiResult<i64> {
    let access = access::project(db, actor, project_id, Permission::GroundTruthManage).await?;
    let skip_queue = access.row.settings().skip_queue;
    let dialect = db.dialect();
    with_tx!(db, tx, {
        crate::lock_project!(tx, dialect, project_id);
        crate::recheck_project_access!(tx, actor, project_id, Permission::GroundTruthManage)?;
        let mut cleared = 0i64;
        let mut touched: Vec<i64> = Vec::new();
        for chunk in task_ids.chunks(tasks::DELETE_BATCH) {
            let marked: Vec<(i64, i64)> = sqlx::query_as(&format!(
                "select id, ground_truth_annotations from task where project_id = $1 \
                 and ground_truth_annotations > 0 and id in ({}) order by id",
                id_list(chunk)
            ))
            .bind(project_id)
            .fetch_all(&mut *tx)
            .await?;
            for (task_id, marks) in marked {
                crate::unset_ground_truth!(tx, task_id, project_id, skip_queue);
                cleared += marks;
                touched.push(task_id);
            }
        }
        audit!(
            tx,
            Prepared::new(
                actor,
                "annotation.ground_truth.delete",
                "project",
                project_id,
                json!({"cleared": cleared, "selected": task_ids.len(),
                       "tasks": touched.iter().take(tasks::AUDIT_IDS).collect::<Vec<_>>()}),
            )
        );
        Ok::<_, ApiError>(cleared)
    })
}

/// Which predictions `predictions_to_annotations` converts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Versions {
    /// Predictions of these model versions (the body's `model_version`).
    Given(Vec<String>),
    /// Of the project's `model_version` when it is set, else of any version.
    ProjectDefault,
}

/// Turns the predictions of the selected tasks into annotations by the caller (the
/// data-manager action `predictions_to_annotations`): per task, the newest prediction of the
/// chosen model version becomes one annotation with the prediction as its parent. Tasks where
/// the caller has an annotation already (submitted or skipped) are left alone, so running it
/// twice creates nothing new. Answers the new annotations' ids.
pub async fn predictions_to_annotations(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    task_ids: &[i64],
    versions: Versions,
) -> ApiResult<Vec<i64>> {
    let access = access::project(db, actor, project_id, Permission::AnnotationCreate).await?;
    let settings = access.row.settings();
    let versions: Option<Vec<String>> = match versions {
        Versions::Given(list) => Some(list),
        Versions::ProjectDefault if !settings.model_version.is_empty() => {
            Some(vec![settings.model_version.clone()])
        }
        Versions::ProjectDefault => None,
    };
    let skip_queue = settings.skip_queue;
    let dialect = db.dialect();
    let now = now_micros();
    let version_sql = match &versions {
        None => String::new(),
        Some(list) => format!(
            " and pr.model_version in ({})",
            (0..list.len())
                .map(|i| format!("${}", i + 3))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    with_tx!(db, tx, {
        crate::lock_project!(tx, dialect, project_id);
        crate::recheck_project_access!(tx, actor, project_id, Permission::AnnotationCreate)?;
        let mut created: Vec<i64> = Vec::new();
        for chunk in task_ids.chunks(tasks::DELETE_BATCH) {
            let sql = format!(
                "select pr.id, pr.task_id, pr.result from prediction pr where pr.project_id = $1 \
                 and pr.task_id in ({}){version_sql} and not exists (select 1 from annotation a \
                 where a.task_id = pr.task_id and a.completed_by = $2) order by pr.task_id, pr.id desc",
                id_list(chunk)
            );
            let mut query = sqlx::query_as(&sql).bind(project_id).bind(actor.user_id);
            for v in versions.iter().flatten() {
                query = query.bind(v);
            }
            let found: Vec<(i64, i64, String)> = query.fetch_all(&mut *tx).await?;
            let mut last_task = None;
            for (prediction_id, task_id, result) in found {
                // Newest first within a task: the first row of each task is the one converted.
                if last_task == Some(task_id) {
                    continue;
                }
                last_task = Some(task_id);
                let id = crate::insert_annotation!(
                    tx,
                    project_id,
                    task_id,
                    &NewAnnotation {
                        result: Some(result),
                        author: actor.user_id,
                        updated_by: actor.user_id,
                        was_cancelled: false,
                        ground_truth: false,
                        lead_time: None,
                        parent_prediction: Some(prediction_id),
                        parent_annotation: None,
                        now,
                        bulk_created: false,
                    },
                    skip_queue
                );
                created.push(id);
            }
        }
        audit!(
            tx,
            Prepared::new(
                actor,
                "annotation.create",
                "project",
                project_id,
                json!({"from": "predictions", "model_version": versions, "created": created.len(),
                       "selected": task_ids.len(),
                       "ids": created.iter().take(tasks::AUDIT_IDS).collect::<Vec<_>>()}),
            )
        );
        Ok::<_, ApiError>(created)
    })
}

/// One set of tasks with identical `data`: the task kept and the ones removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateGroup {
    /// The task kept: the one with the most annotations, the lowest id among equals.
    pub keep: i64,
    /// The others, by id.
    pub remove: Vec<i64>,
}

/// Groups tasks `(id, data JSON text, annotations)` whose data is the same JSON value (key
/// order and spacing do not matter); groups of one are left out. Groups come in order of their
/// kept task's id.
pub fn duplicate_groups(tasks: &[(i64, String, i64)]) -> Vec<DuplicateGroup> {
    let mut by_data: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    for (id, data, annotations) in tasks {
        // Maps serialize with sorted keys, so equal values give equal text.
        let canonical = serde_json::from_str::<Value>(data)
            .map(|v| v.to_string())
            .unwrap_or_else(|_| data.clone());
        by_data
            .entry(canonical)
            .or_default()
            .push((*id, *annotations));
    }
    let mut groups: Vec<DuplicateGroup> = by_data
        .into_values()
        .filter(|members| members.len() > 1)
        .map(|mut members| {
            members.sort_by_key(|&(id, annotations)| (std::cmp::Reverse(annotations), id));
            let keep = members[0].0;
            let mut remove: Vec<i64> = members[1..].iter().map(|&(id, _)| id).collect();
            remove.sort_unstable();
            DuplicateGroup { keep, remove }
        })
        .collect();
    groups.sort_by_key(|g| g.keep);
    groups
}

/// Tables whose rows follow an annotation (or a task's discussion) to the task it moves to.
const MOVED_WITH_ANNOTATIONS: [&str; 5] = [
    "annotation",
    "annotation_history",
    "annotation_review",
    "review_comment",
    "notification",
];

/// Removes duplicated tasks among the selected tasks of `project_id` (the data-manager action
/// `remove_duplicates`): of each set with identical `data`, the task with the most annotations
/// (the lowest id among equals) is kept, the annotations of the others (with their reviews,
/// history and comments) move onto it, and the others are deleted. Answers the removed ids.
pub async fn remove_duplicates(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    task_ids: &[i64],
) -> ApiResult<Vec<i64>> {
    let access = access::project(db, actor, project_id, Permission::TaskManage).await?;
    let skip_queue = access.row.settings().skip_queue;
    let dialect = db.dialect();
    with_tx!(db, tx, {
        crate::lock_project!(tx, dialect, project_id);
        crate::recheck_project_access!(tx, actor, project_id, Permission::TaskManage)?;
        let mut rows: Vec<(i64, String, i64)> = Vec::new();
        for chunk in task_ids.chunks(tasks::DELETE_BATCH) {
            let part: Vec<(i64, String, i64)> = sqlx::query_as(&format!(
                "select id, data, total_annotations + cancelled_annotations from task \
                 where project_id = $1 and id in ({})",
                id_list(chunk)
            ))
            .bind(project_id)
            .fetch_all(&mut *tx)
            .await?;
            rows.extend(part);
        }
        let groups = duplicate_groups(&rows);
        let mut removed: Vec<i64> = Vec::new();
        let mut moved = 0i64;
        for group in &groups {
            let keep = group.keep;
            let mut keep_has_truth: bool = sqlx::query_scalar::<_, i64>(
                "select ground_truth_annotations from task where id = $1",
            )
            .bind(keep)
            .fetch_one(&mut *tx)
            .await?
                > 0;
            for &other in &group.remove {
                let truth: i64 =
                    sqlx::query_scalar("select ground_truth_annotations from task where id = $1")
                        .bind(other)
                        .fetch_one(&mut *tx)
                        .await?;
                // A task has at most one ground truth: the kept task's (or the first moved) wins.
                if truth > 0 {
                    if keep_has_truth {
                        crate::unset_ground_truth!(tx, other, project_id, skip_queue);
                    }
                    keep_has_truth = true;
                }
                let kinds: Vec<(bool, bool, bool)> = sqlx::query_as(
                    "select was_cancelled, ground_truth, result is not null from annotation where task_id = $1",
                )
                .bind(other)
                .fetch_all(&mut *tx)
                .await?;
                if !kinds.is_empty() {
                    let sum = kinds.iter().fold(Kind::default(), |sum, &(c, gt, r)| {
                        sum.plus(Kind::of(c, gt, r))
                    });
                    // Counted off the duplicate and onto the kept task, through the same upkeep
                    // as any annotation change (completion under the overlap included).
                    crate::apply_annotation_delta!(
                        tx,
                        other,
                        project_id,
                        Kind::default().minus(sum),
                        skip_queue
                    );
                    for table in MOVED_WITH_ANNOTATIONS {
                        sqlx::query(&format!(
                            "update {table} set task_id = $1 where task_id = $2"
                        ))
                        .bind(keep)
                        .bind(other)
                        .execute(&mut *tx)
                        .await?;
                    }
                    crate::apply_annotation_delta!(tx, keep, project_id, sum, skip_queue);
                    moved += i64::try_from(kinds.len()).unwrap_or(i64::MAX);
                }
                removed.push(other);
            }
            crate::refresh_task_agreement!(tx, project_id, keep);
            crate::refresh_task_comments!(tx, keep);
        }
        removed.sort_unstable();
        let conditions = tasks::id_conditions(Some(&removed));
        let (deleted, _) = crate::delete_task_rows!(tx, project_id, &conditions);
        audit!(
            tx,
            Prepared::new(
                actor,
                "task.remove_duplicates",
                "project",
                project_id,
                json!({"removed": deleted.len(), "moved_annotations": moved, "groups": groups.len(),
                       "selected": task_ids.len(),
                       "ids": deleted.iter().take(tasks::AUDIT_IDS).collect::<Vec<_>>()}),
            )
        );
        Ok::<_, ApiError>(deleted)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_json_value_and_keeps_the_most_annotated() {
        let tasks = vec![
            (1, r#"{"text": "a", "n": 1}"#.to_string(), 0),
            (2, r#"{"n":1,"text":"a"}"#.to_string(), 2),
            (3, r#"{"text": "b"}"#.to_string(), 0),
            (4, r#"{"text": "a", "n": 1}"#.to_string(), 2),
            (5, r#"{"text": "b"}"#.to_string(), 0),
            (6, r#"{"text": "c"}"#.to_string(), 5),
        ];
        assert_eq!(
            duplicate_groups(&tasks),
            vec![
                DuplicateGroup {
                    keep: 2,
                    remove: vec![1, 4]
                },
                DuplicateGroup {
                    keep: 3,
                    remove: vec![5]
                },
            ]
        );
        assert!(duplicate_groups(&tasks[..1]).is_empty());
    }
}
