//! Label Studio Enterprise's distribution rules around the label stream (ADR 0037): automatic
//! pauses (the annotation limit, and annotator evaluation against ground truth) and the
//! scores they are decided on. The stream's own queues (ground-truth onboarding, low
//! agreement) are in [`super::tasks::next`].

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{
    Db,
    audit::{Prepared, audit},
    now_micros,
    projects::ProjectRow,
    with_read, with_tx,
};
use crate::{
    authz::Actor,
    domain::{
        label_config::agreement,
        project::{EvaluationMetric, ProjectSettings},
    },
    error::{ApiError, ApiResult},
};

/// Pause reasons set by the rules here (lifted when the project's settings change, and set
/// again at the next request for a task if they still apply).
pub const AUTOMATIC_REASONS: [&str; 2] = ["ANNOTATION_LIMIT", "ANNOTATOR_EVALUATION"];

/// The settings whose change lifts automatic pauses.
pub const RULE_SETTINGS: [&str; 8] = [
    "annotation_limit_count",
    "annotation_limit_percent",
    "annotator_evaluation_enabled",
    "annotator_evaluation_metric",
    "annotator_evaluation_minimum_score",
    "annotator_evaluation_minimum_tasks",
    "pause_on_failed_annotator_evaluation",
    "maximum_annotations",
];

/// The annotation cap of one annotator: the smaller of the count and the percentage of the
/// project's tasks (rounded up, at least 1).
pub fn annotation_limit(s: &ProjectSettings, task_number: i64) -> Option<i64> {
    let by_percent = s
        .annotation_limit_percent
        .map(|p| ((task_number as f64 * p / 100.0).ceil() as i64).max(1));
    match (s.annotation_limit_count, by_percent) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A user's agreement with ground truth: over the tasks that have a ground-truth annotation by
/// someone else and a submitted annotation by the user, the mean agreement (0–1) of the user's
/// latest annotation with the latest ground truth. Answers `(tasks, mean)`.
pub async fn truth_score(
    db: &Db,
    project: &ProjectRow,
    user: i64,
) -> ApiResult<(usize, Option<f64>)> {
    let rows: Vec<(i64, String, String)> = with_read!(db, conn, {
        sqlx::query_as(
            "select a.task_id, a.result, g.result from annotation a \
             join annotation g on g.task_id = a.task_id and g.ground_truth and not g.was_cancelled \
             and g.result is not null and g.completed_by <> $2 \
             where a.project_id = $1 and a.completed_by = $2 and not a.was_cancelled \
             and not a.ground_truth and a.result is not null order by a.task_id, a.id, g.id",
        )
        .bind(project.id)
        .bind(user)
        .fetch_all(conn)
        .await?
    });
    // Ordered by annotation then ground truth: the last pair of a task is the latest of both.
    let mut latest: BTreeMap<i64, (String, String)> = BTreeMap::new();
    for (task, mine, truth) in rows {
        latest.insert(task, (mine, truth));
    }
    let Some(config) = project.config() else {
        return Ok((latest.len(), None));
    };
    let weights = project.settings().control_weights;
    let scores: Vec<f64> = latest
        .values()
        .filter_map(|(mine, truth)| {
            let parse = |s: &str| serde_json::from_str::<Value>(s).ok();
            agreement::pair_agreement(
                &config,
                &weights,
                agreement::Params::default(),
                &parse(mine)?,
                &parse(truth)?,
            )
        })
        .collect();
    let mean = (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64);
    Ok((latest.len(), mean))
}

/// A user's review outcomes in a project: over their annotations that a reviewer reviewed,
/// `(annotations, accepted by the latest review, ever rejected)`.
async fn review_outcomes(db: &Db, project_id: i64, user: i64) -> ApiResult<(usize, usize, usize)> {
    let rows: Vec<(i64, bool)> = with_read!(db, conn, {
        sqlx::query_as(
            "select r.annotation_id, r.accepted from annotation_review r \
             join annotation a on a.id = r.annotation_id \
             where r.project_id = $1 and a.completed_by = $2 order by r.annotation_id, r.id",
        )
        .bind(project_id)
        .bind(user)
        .fetch_all(conn)
        .await?
    });
    // Per annotation: (latest accepted, ever rejected); rows come oldest review first.
    let mut by_annotation: BTreeMap<i64, (bool, bool)> = BTreeMap::new();
    for (annotation, accepted) in rows {
        let entry = by_annotation.entry(annotation).or_insert((accepted, false));
        entry.0 = accepted;
        entry.1 |= !accepted;
    }
    let accepted = by_annotation.values().filter(|(ok, _)| *ok).count();
    let rejected = by_annotation.values().filter(|(_, no)| *no).count();
    Ok((by_annotation.len(), accepted, rejected))
}

/// The score annotator evaluation judges `user` by, by the project's
/// `annotator_evaluation_metric` (ADR 0057): `(items it is over, score 0–1)`. The items are
/// ground-truth tasks for `gt_agreement` and reviewed annotations for the review metrics; the
/// score is null when there are none.
pub async fn evaluation_score(
    db: &Db,
    project: &ProjectRow,
    metric: EvaluationMetric,
    user: i64,
) -> ApiResult<(usize, Option<f64>)> {
    if metric == EvaluationMetric::GtAgreement {
        return truth_score(db, project, user).await;
    }
    let (reviewed, accepted, rejected) = review_outcomes(db, project.id, user).await?;
    let part = match metric {
        EvaluationMetric::AcceptanceScore => accepted,
        _ => reviewed - rejected,
    };
    Ok((
        reviewed,
        (reviewed > 0).then(|| part as f64 / reviewed as f64),
    ))
}

/// Applies the automatic pause rules to the caller (an annotator or reviewer of the project)
/// before they get a task: the annotation limit, then annotator evaluation. A pause that
/// applies is recorded (and committed) with a message for the annotator; answers whether one
/// was.
pub async fn automatic_pause(
    db: &Db,
    actor: &Actor,
    project: &ProjectRow,
    settings: &ProjectSettings,
) -> ApiResult<bool> {
    let user = actor.user_id;
    let mut why: Option<(&str, String, Value)> = None;
    if let Some(limit) = annotation_limit(settings, project.task_number) {
        let done: i64 = with_read!(db, conn, {
            sqlx::query_scalar(
                "select count(*) from annotation where project_id = $1 and completed_by = $2",
            )
            .bind(project.id)
            .bind(user)
            .fetch_one(conn)
            .await?
        });
        if done >= limit {
            why = Some((
                "ANNOTATION_LIMIT",
                format!(
                    "You have reached this project's limit of {limit} annotations per annotator. \
                     A project manager can raise it."
                ),
                json!({"limit": limit, "annotations": done}),
            ));
        }
    }
    if why.is_none()
        && settings.annotator_evaluation_enabled
        && settings.pause_on_failed_annotator_evaluation
        && let Some(pass) = settings.annotator_evaluation_minimum_score
    {
        let metric = settings.annotator_evaluation_metric;
        let (tasks, score) = evaluation_score(db, project, metric, user).await?;
        let needed = usize::try_from(settings.annotator_evaluation_minimum_tasks.max(1))
            .unwrap_or(usize::MAX);
        if let Some(score) = score.filter(|_| tasks >= needed)
            && score * 100.0 < pass
        {
            let what = match metric {
                EvaluationMetric::GtAgreement => format!(
                    "Your agreement with the ground truth is {:.1}% over {tasks} tasks",
                    score * 100.0
                ),
                EvaluationMetric::AcceptanceScore => format!(
                    "Reviewers accepted {:.1}% of your {tasks} reviewed annotations",
                    score * 100.0
                ),
                EvaluationMetric::RejectionRate => format!(
                    "Reviewers rejected {:.1}% of your {tasks} reviewed annotations (a score of \
                     {:.1}%)",
                    100.0 - score * 100.0,
                    score * 100.0
                ),
            };
            why = Some((
                "ANNOTATOR_EVALUATION",
                format!(
                    "{what}, below this project's pass mark of {pass:.1}%. A project manager has \
                     been told and can let you continue."
                ),
                json!({"metric": metric, "score": score, "tasks": tasks, "minimum_score": pass}),
            ));
        }
    }
    let Some((reason, message, facts)) = why else {
        return Ok(false);
    };
    let dialect = db.dialect();
    let now = now_micros();
    with_tx!(db, tx, {
        crate::storage::annotations::lock_project!(tx, dialect, project.id);
        let active: Option<i64> = sqlx::query_scalar(
            "select id from project_pause where project_id = $1 and user_id = $2 \
             and deleted_at is null and reason = $3 limit 1",
        )
        .bind(project.id)
        .bind(user)
        .bind(reason)
        .fetch_optional(&mut *tx)
        .await?;
        if active.is_some() {
            return Ok::<_, ApiError>(true);
        }
        let id = crate::record_pause!(tx, project.id, user, reason, &message, None::<i64>, now);
        let system = Actor::instance(actor.org_id, Default::default());
        audit!(
            tx,
            Prepared::new(
                &system,
                "project.members.pause",
                "user",
                user,
                json!({"project": project.id, "pause": id, "reason": reason, "automatic": facts}),
            )
        );
        Ok(true)
    })
}

/// Lifts the automatic pauses of a project inside a write transaction (its rules changed):
/// each is set again at the member's next request for a task if it still applies.
#[macro_export]
macro_rules! lift_automatic_pauses {
    ($tx:expr, $project_id:expr, $now:expr) => {{
        sqlx::query(
            "update project_pause set deleted_at = $2 where project_id = $1 and deleted_at is null \
             and reason in ('ANNOTATION_LIMIT', 'ANNOTATOR_EVALUATION')",
        )
        .bind($project_id)
        .bind($now)
        .execute(&mut *$tx)
        .await?;
    }};
}

pub use crate::lift_automatic_pauses;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smaller_limit_applies_and_percentages_round_up() {
        let mut s = ProjectSettings {
            annotation_limit_count: Some(10),
            annotation_limit_percent: Some(25.0),
            ..ProjectSettings::default()
        };
        assert_eq!(annotation_limit(&s, 100), Some(10));
        assert_eq!(annotation_limit(&s, 30), Some(8));
        s.annotation_limit_count = None;
        assert_eq!(annotation_limit(&s, 1), Some(1));
        s.annotation_limit_percent = None;
        assert_eq!(annotation_limit(&s, 100), None);
    }
}
