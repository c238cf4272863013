//! Per-annotator statistics of a project (ADR 0025, "Annotator statistics"): agreement with the
//! other annotators, agreement with ground truth, finished tasks, lead time, and review and
//! performance scores. The shapes are those `label-studio-sdk`'s `projects.stats` client reads.
//! Computed on read from the project's annotations and reviews, with the pairwise metric of
//! [`crate::domain::label_config::agreement`].

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::{Db, access, agreement::Setup, with_read};
use crate::{
    authz::{Actor, Permission},
    domain::label_config::agreement::{self, Params},
    error::{ApiError, ApiResult, ErrorCode},
};

/// Microseconds in a day (UTC).
const DAY_MICROS: i64 = 86_400_000_000;

/// Submitted and skipped annotations of a project on each of the last `days` days (UTC, today
/// last): `(day as days since 1970-01-01, submitted, skipped)`, one entry per day, zeros
/// included. Counted by when the annotation was created.
pub async fn per_day(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    days: i64,
) -> ApiResult<Vec<(i64, i64, i64)>> {
    access::project(db, actor, project_id, Permission::AgreementView).await?;
    let days = days.clamp(1, 366);
    let today = super::now_micros().div_euclid(DAY_MICROS);
    let first = today - days + 1;
    let rows: Vec<(i64, i64, i64)> = with_read!(db, conn, {
        sqlx::query_as(
            "select created_at / $3 as day, \
             sum(case when was_cancelled then 0 else 1 end), \
             sum(case when was_cancelled then 1 else 0 end) \
             from annotation where project_id = $1 and created_at >= $2 \
             group by 1",
        )
        .bind(project_id)
        .bind(first * DAY_MICROS)
        .bind(DAY_MICROS)
        .fetch_all(conn)
        .await?
    });
    let counted: BTreeMap<i64, (i64, i64)> =
        rows.into_iter().map(|(d, s, k)| (d, (s, k))).collect();
    Ok((first..=today)
        .map(|d| {
            let (s, k) = counted.get(&d).copied().unwrap_or_default();
            (d, s, k)
        })
        .collect())
}

/// One submitted annotation: not skipped, with a result and an author.
struct Ann {
    task: i64,
    user: i64,
    result: Value,
    ground_truth: bool,
}

/// The counted annotations of a project's tasks that two authors or more annotated, ordered by
/// task and id. Every statistic built on them compares one author's work with another's (or
/// with someone else's ground truth), so a task with one author adds nothing; leaving those
/// out keeps a project of a million singly-labeled tasks from being read whole.
async fn load(db: &Db, project_id: i64) -> ApiResult<Vec<Ann>> {
    let rows: Vec<(i64, i64, String, bool)> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select a.task_id, a.completed_by, a.result, a.ground_truth from annotation a \
             where a.project_id = $1 and not a.was_cancelled and a.result is not null \
             and a.completed_by is not null{} order by a.task_id, a.id",
            super::agreement::SHARED_TASK
        ))
        .bind(project_id)
        .fetch_all(conn)
        .await?
    });
    Ok(rows
        .into_iter()
        .filter_map(|(task, user, result, ground_truth)| {
            Some(Ann {
                task,
                user,
                result: serde_json::from_str(&result).ok()?,
                ground_truth,
            })
        })
        .collect())
}

/// Per task: each author's latest annotation (ground truth included as its author's), and the
/// task's latest ground-truth annotation.
struct Tasks {
    latest: BTreeMap<i64, BTreeMap<i64, Value>>,
    truth: BTreeMap<i64, (i64, Value)>,
}

fn by_task(anns: Vec<Ann>) -> Tasks {
    let mut latest: BTreeMap<i64, BTreeMap<i64, Value>> = BTreeMap::new();
    let mut truth = BTreeMap::new();
    for a in anns {
        if a.ground_truth {
            truth.insert(a.task, (a.user, a.result.clone()));
        }
        latest.entry(a.task).or_default().insert(a.user, a.result);
    }
    Tasks { latest, truth }
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Mean agreement of `user`'s annotations with the other annotators' on the tasks they share;
/// `None` when they share none.
fn with_others(setup: &Setup, tasks: &Tasks, user: i64) -> Option<f64> {
    let mut scores = Vec::new();
    for by_user in tasks.latest.values() {
        let Some(mine) = by_user.get(&user) else {
            continue;
        };
        for (other, theirs) in by_user {
            if *other == user {
                continue;
            }
            if let Some(s) = agreement::pair_agreement(
                &setup.config,
                &setup.weights,
                Params::default(),
                mine,
                theirs,
            ) {
                scores.push(s);
            }
        }
    }
    mean(&scores)
}

/// Mean agreement of `user`'s annotations with the ground truth of the tasks that have one by
/// someone else; `None` when there is no such task.
fn with_truth(setup: &Setup, tasks: &Tasks, user: i64) -> Option<f64> {
    let mut scores = Vec::new();
    for (task, (author, truth)) in &tasks.truth {
        if *author == user {
            continue;
        }
        let Some(mine) = tasks.latest.get(task).and_then(|m| m.get(&user)) else {
            continue;
        };
        if let Some(s) = agreement::pair_agreement(
            &setup.config,
            &setup.weights,
            Params::default(),
            mine,
            truth,
        ) {
            scores.push(s);
        }
    }
    mean(&scores)
}

/// Query of the per-user statistics of several users.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct UsersParams {
    /// User ids separated by commas (`ids=3,7`).
    pub ids: Option<String>,
    /// Per-label scores: not available; `true` is refused with 400.
    pub per_label: Option<bool>,
}

/// `ids=1,2,3` of the multi-user statistics: at least one user id.
pub fn parse_ids(ids: Option<&str>) -> ApiResult<Vec<i64>> {
    let bad = |m: String| ApiError::field(ErrorCode::InvalidQuery, "ids", m);
    let text = ids.map(str::trim).unwrap_or_default();
    if text.is_empty() {
        return Err(bad(
            "ids is required: user ids separated by commas, e.g. ids=3,7".to_owned(),
        ));
    }
    text.split(',')
        .map(|part| {
            part.trim().parse::<i64>().map_err(|_| {
                bad(format!(
                    "{part:?} is not a user id; give user ids separated by commas, e.g. ids=3,7"
                ))
            })
        })
        .collect()
}

/// Refuses `per_label=true`: the per-label variants are not computed (yet), and answering
/// the overall score instead would mislead.
pub fn refuse_per_label(per_label: Option<bool>) -> ApiResult<()> {
    if per_label == Some(true) {
        return Err(ApiError::field(
            ErrorCode::InvalidQuery,
            "per_label",
            "per-label scores are not available; leave per_label out (or false) for overall scores",
        ));
    }
    Ok(())
}

/// 404 unless `user` is a member of the caller's organization.
async fn check_user(db: &Db, actor: &Actor, user: i64) -> ApiResult<()> {
    let found: Option<i64> = with_read!(db, conn, {
        sqlx::query_scalar(
            "select user_id from org_member where organization_id = $1 and user_id = $2",
        )
        .bind(actor.org_id)
        .bind(user)
        .fetch_optional(conn)
        .await?
    });
    found.map(|_| ()).ok_or_else(|| ApiError::not_found("user"))
}

/// `GET /api/projects/{id}/stats/agreement_annotator/{user_id}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AnnotatorAgreement {
    /// Mean pairwise agreement (0–1) of the annotator's latest annotation on each task with the
    /// other annotators' there; null when they share no task.
    #[serde(rename = "Agreement_per_annotator")]
    #[schema(rename = "Agreement_per_annotator")]
    pub agreement_per_annotator: Option<f64>,
}

/// One annotator's agreement with the others.
pub async fn annotator_agreement(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    user: i64,
) -> ApiResult<AnnotatorAgreement> {
    let project = access::project(db, actor, project_id, Permission::AgreementView).await?;
    check_user(db, actor, user).await?;
    let setup = super::agreement::setup(&project)?;
    let tasks = by_task(load(db, project_id).await?);
    Ok(AnnotatorAgreement {
        agreement_per_annotator: with_others(&setup, &tasks, user),
    })
}

/// Scores keyed by user id (`{"agreement": {"3": 0.8, "7": null}}`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AgreementByUser {
    /// Score (0–1) per requested user id; null where there is nothing to compare.
    pub agreement: BTreeMap<String, Option<f64>>,
}

/// Several annotators' agreement with the others (`ids`).
pub async fn annotators_agreement(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    ids: Option<&str>,
) -> ApiResult<AgreementByUser> {
    let project = access::project(db, actor, project_id, Permission::AgreementView).await?;
    let ids = parse_ids(ids)?;
    let setup = super::agreement::setup(&project)?;
    let tasks = by_task(load(db, project_id).await?);
    Ok(AgreementByUser {
        agreement: ids
            .iter()
            .map(|u| (u.to_string(), with_others(&setup, &tasks, *u)))
            .collect(),
    })
}

/// Several annotators' agreement with ground truth (`ids`).
pub async fn users_truth_agreement(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    params: &UsersParams,
) -> ApiResult<AgreementByUser> {
    let project = access::project(db, actor, project_id, Permission::AgreementView).await?;
    refuse_per_label(params.per_label)?;
    let ids = parse_ids(params.ids.as_deref())?;
    let setup = super::agreement::setup(&project)?;
    let tasks = by_task(load(db, project_id).await?);
    Ok(AgreementByUser {
        agreement: ids
            .iter()
            .map(|u| (u.to_string(), with_truth(&setup, &tasks, *u)))
            .collect(),
    })
}

/// `GET /api/projects/{id}/users/{user_pk}/stats/agreement-groundtruth`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TruthAgreement {
    /// Mean agreement (0–1) of the user's annotations with the ground truth of the tasks that
    /// have one (by someone else); null when there is none.
    pub agreement: Option<f64>,
}

/// One annotator's agreement with ground truth.
pub async fn user_truth_agreement(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    user: i64,
    per_label: Option<bool>,
) -> ApiResult<TruthAgreement> {
    let project = access::project(db, actor, project_id, Permission::AgreementView).await?;
    refuse_per_label(per_label)?;
    check_user(db, actor, user).await?;
    let setup = super::agreement::setup(&project)?;
    let tasks = by_task(load(db, project_id).await?);
    Ok(TruthAgreement {
        agreement: with_truth(&setup, &tasks, user),
    })
}

/// `GET /api/projects/{id}/stats/finished`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Finished {
    /// The user.
    pub id: i64,
    /// Tasks of the project the user submitted an annotation of (skips do not count).
    pub finished: i64,
    /// `finished` in percent of the project's tasks, rounded down (0–100).
    pub progress: i64,
}

/// Tasks a user finished in a project: one's own with `project.view`, anyone's with
/// `agreement.view`.
pub async fn finished(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    user: Option<i64>,
) -> ApiResult<Finished> {
    let user = user.unwrap_or(actor.user_id);
    let permission = crate::authz::OWN_STATS
        .required(user == actor.user_id)
        .unwrap_or(Permission::AgreementView);
    let project = access::project(db, actor, project_id, permission).await?;
    check_user(db, actor, user).await?;
    let finished: i64 = with_read!(db, conn, {
        sqlx::query_scalar(
            "select count(distinct task_id) from annotation where project_id = $1 \
             and completed_by = $2 and not was_cancelled",
        )
        .bind(project_id)
        .bind(user)
        .fetch_one(conn)
        .await?
    });
    let total = project.row.task_number;
    Ok(Finished {
        id: user,
        finished,
        progress: if total > 0 {
            (finished * 100 / total).min(100)
        } else {
            0
        },
    })
}

/// One user's lead times.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserLeadTime {
    /// The user.
    pub user_id: i64,
    /// Mean `lead_time` of their submitted annotations, in seconds.
    pub mean_time: f64,
    /// Median, in seconds.
    pub median_time: f64,
    /// Sum, in seconds.
    pub sum_lead_time: f64,
}

/// `GET /api/projects/{id}/stats/lead_time`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LeadTimes {
    /// Per annotator with at least one submitted annotation that records its lead time, by
    /// user id.
    pub lead_time_stats: Vec<UserLeadTime>,
}

/// Lead-time statistics per annotator.
pub async fn lead_times(db: &Db, actor: &Actor, project_id: i64) -> ApiResult<LeadTimes> {
    access::project(db, actor, project_id, Permission::AgreementView).await?;
    let rows: Vec<(i64, f64)> = with_read!(db, conn, {
        sqlx::query_as(
            "select completed_by, lead_time from annotation where project_id = $1 \
             and not was_cancelled and completed_by is not null and lead_time is not null \
             order by completed_by, lead_time",
        )
        .bind(project_id)
        .fetch_all(conn)
        .await?
    });
    let mut per_user: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for (user, t) in rows {
        if t.is_finite() {
            per_user.entry(user).or_default().push(t);
        }
    }
    Ok(LeadTimes {
        lead_time_stats: per_user
            .into_iter()
            .filter(|(_, times)| !times.is_empty())
            .filter_map(|(user_id, times)| {
                let (mean_time, median_time, sum_lead_time) = time_stats(times)?;
                Some(UserLeadTime {
                    user_id,
                    mean_time,
                    median_time,
                    sum_lead_time,
                })
            })
            .collect(),
    })
}

/// Mean, median and sum of durations; `None` for none.
fn time_stats(mut times: Vec<f64>) -> Option<(f64, f64, f64)> {
    if times.is_empty() {
        return None;
    }
    times.sort_by(f64::total_cmp);
    let n = times.len();
    let median = if n % 2 == 1 {
        times[n / 2]
    } else {
        (times[n / 2 - 1] + times[n / 2]) / 2.0
    };
    let sum: f64 = times.iter().sum();
    Some((sum / n as f64, median, sum))
}

/// Review and performance scores of annotators, from the reviews of their annotations.
struct Scores {
    review: BTreeMap<i64, Option<f64>>,
    performance: BTreeMap<i64, Option<f64>>,
}

async fn scores(db: &Db, setup: &Setup, project_id: i64, users: &[i64]) -> ApiResult<Scores> {
    // Every review of an annotation of the project, with the annotation's author, and for a
    // fix the result before it and the fixed result.
    let rows: Vec<(i64, bool, Option<String>, Option<String>)> = with_read!(db, conn, {
        sqlx::query_as(
            "select a.completed_by, r.accepted, h.result, r.result from annotation_review r \
             join annotation a on a.id = r.annotation_id \
             left join annotation_history h on h.id = r.previous_annotation_history \
             where r.project_id = $1 and a.completed_by is not null order by r.id",
        )
        .bind(project_id)
        .fetch_all(conn)
        .await?
    });
    let mut accepted: BTreeMap<i64, (usize, usize)> = BTreeMap::new();
    let mut performance: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for (author, ok, before, fixed) in rows {
        let counts = accepted.entry(author).or_default();
        counts.1 += 1;
        let score = if !ok {
            0.0
        } else {
            counts.0 += 1;
            match (before, fixed) {
                // Fixed and accepted: as good as the original was close to the fix.
                (Some(before), Some(fixed)) => {
                    let parse = |s: &str| serde_json::from_str::<Value>(s).ok();
                    match (parse(&before), parse(&fixed)) {
                        (Some(b), Some(f)) => agreement::pair_agreement(
                            &setup.config,
                            &setup.weights,
                            Params::default(),
                            &b,
                            &f,
                        )
                        .unwrap_or(1.0),
                        _ => 1.0,
                    }
                }
                _ => 1.0,
            }
        };
        performance.entry(author).or_default().push(score);
    }
    Ok(Scores {
        review: users
            .iter()
            .map(|u| {
                let value = accepted
                    .get(u)
                    .filter(|(_, n)| *n > 0)
                    .map(|(a, n)| *a as f64 / *n as f64);
                (*u, value)
            })
            .collect(),
        performance: users
            .iter()
            .map(|u| (*u, performance.get(u).and_then(|v| mean(v))))
            .collect(),
    })
}

/// `GET /api/projects/{id}/user-stats/review_score`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReviewScores {
    /// Per user id: accepted reviews / reviews of their annotations (0–1); null when none was
    /// reviewed.
    pub review_score: BTreeMap<String, Option<f64>>,
    /// Per user id: the mean over those reviews of 1 (accepted), 0 (rejected) or, for a fix,
    /// the agreement of the original result with the fixed one (0–1).
    pub performance_score: BTreeMap<String, Option<f64>>,
}

/// Review and performance scores of several annotators (`ids`).
pub async fn users_review_scores(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    params: &UsersParams,
) -> ApiResult<ReviewScores> {
    let project = access::project(db, actor, project_id, Permission::AgreementView).await?;
    refuse_per_label(params.per_label)?;
    let ids = parse_ids(params.ids.as_deref())?;
    let setup = super::agreement::setup(&project)?;
    let s = scores(db, &setup, project_id, &ids).await?;
    let keyed = |m: BTreeMap<i64, Option<f64>>| m.into_iter().map(|(k, v)| (k.to_string(), v));
    Ok(ReviewScores {
        review_score: keyed(s.review).collect(),
        performance_score: keyed(s.performance).collect(),
    })
}

/// `GET /api/projects/{id}/user-stats/{user_pk}/review_score`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReviewScore {
    /// Accepted reviews / reviews of the user's annotations (0–1); null when none was reviewed.
    pub review_score: Option<f64>,
    /// Mean of 1 (accepted), 0 (rejected) or the fix's agreement with the original (0–1).
    pub performance_score: Option<f64>,
}

/// One annotator's review and performance scores: one's own with `project.view`, anyone's with
/// `agreement.view`.
pub async fn user_review_score(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    user: i64,
    per_label: Option<bool>,
) -> ApiResult<ReviewScore> {
    let permission = crate::authz::OWN_STATS
        .required(user == actor.user_id)
        .unwrap_or(Permission::AgreementView);
    let project = access::project(db, actor, project_id, permission).await?;
    refuse_per_label(per_label)?;
    check_user(db, actor, user).await?;
    let setup = super::agreement::setup(&project)?;
    let mut s = scores(db, &setup, project_id, &[user]).await?;
    Ok(ReviewScore {
        review_score: s.review.remove(&user).flatten(),
        performance_score: s.performance.remove(&user).flatten(),
    })
}

/// Which member performance table (Label Studio Enterprise's members dashboard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Annotators: what they submitted and how it was reviewed.
    Annotations,
    /// Reviewers: what they reviewed.
    Reviews,
}

impl Table {
    /// `annotations` (the default) or `reviews`.
    pub fn parse(text: Option<&str>) -> ApiResult<Self> {
        match text.map(str::trim).unwrap_or("annotations") {
            "" | "annotations" => Ok(Table::Annotations),
            "reviews" => Ok(Table::Reviews),
            other => Err(ApiError::field(
                ErrorCode::InvalidQuery,
                "table",
                format!("must be \"annotations\" or \"reviews\", not {other:?}"),
            )),
        }
    }
}

/// One member's row of a member performance table. Counts are of this project; times in
/// seconds; scores 0–1 (null where there is nothing to score). Fields of the other table are
/// null.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MemberRow {
    /// The member.
    pub member: super::projects::UserSimple,
    /// Paused in this project.
    pub paused: bool,
    /// Annotations: submitted (not skipped).
    pub finished: Option<i64>,
    /// Annotations: skipped.
    pub skipped: Option<i64>,
    /// Annotations: whose latest review accepted them (fix and accept included) / reviews:
    /// accepted.
    pub accepted: Option<i64>,
    /// Of `accepted`, fixed by the reviewer.
    pub fixed_accepted: Option<i64>,
    /// Annotations: whose latest review rejected them / reviews: rejected.
    pub rejected: Option<i64>,
    /// Reviews: reviews given.
    pub reviewed: Option<i64>,
    /// Annotations: accepted reviews / reviews of their annotations.
    pub review_score: Option<f64>,
    /// Annotations: mean of 1 (accept), 0 (reject), agreement with the fix (fix and accept).
    pub performance_score: Option<f64>,
    /// Annotations: mean agreement with the other annotators on shared tasks.
    pub agreement: Option<f64>,
    /// Annotations: mean agreement with ground truth.
    pub ground_truth: Option<f64>,
    /// Annotations: the score annotator evaluation judges them by (0–1), by the project's
    /// `annotator_evaluation_metric` (ADR 0057); null when evaluation is off or nothing was
    /// evaluated yet.
    pub evaluation_score: Option<f64>,
    /// Annotations: what `evaluation_score` is over (ground-truth tasks, or reviewed
    /// annotations for the review metrics); null when evaluation is off.
    pub evaluation_tasks: Option<i64>,
    /// Annotations: submitted / (submitted + tasks still open to them), in percent (0–100).
    pub progress: Option<f64>,
    /// Annotations: mean lead time.
    pub time_mean: Option<f64>,
    /// Annotations: median lead time.
    pub time_median: Option<f64>,
    /// Annotations: total lead time.
    pub time_total: Option<f64>,
}

impl MemberRow {
    /// A row of `member` with no numbers yet.
    pub fn empty(member: super::projects::UserSimple, paused: bool) -> Self {
        Self {
            member,
            paused,
            finished: None,
            skipped: None,
            accepted: None,
            fixed_accepted: None,
            rejected: None,
            reviewed: None,
            review_score: None,
            performance_score: None,
            agreement: None,
            ground_truth: None,
            evaluation_score: None,
            evaluation_tasks: None,
            progress: None,
            time_mean: None,
            time_median: None,
            time_total: None,
        }
    }
}

/// The rows of a member performance table: every member who annotated (or reviewed) in the
/// project, or the users `ids`, ordered by user id.
pub async fn member_rows(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    table: Table,
    ids: Option<&[i64]>,
) -> ApiResult<Vec<MemberRow>> {
    let project = access::project(db, actor, project_id, Permission::AgreementView).await?;
    let users = participants(db, actor, project_id, table).await?;
    let users: Vec<super::projects::UserSimple> = match ids {
        Some(ids) => users.into_iter().filter(|u| ids.contains(&u.id)).collect(),
        None => users,
    };
    let paused: Vec<i64> = with_read!(db, conn, {
        sqlx::query_scalar(
            "select distinct user_id from project_pause where project_id = $1 and deleted_at is null",
        )
        .bind(project_id)
        .fetch_all(conn)
        .await?
    });
    let empty = |member: super::projects::UserSimple| {
        let paused = paused.contains(&member.id);
        MemberRow::empty(member, paused)
    };
    if table == Table::Reviews {
        let rows: Vec<(i64, bool, bool)> = with_read!(db, conn, {
            sqlx::query_as(
                "select created_by, accepted, result is not null from annotation_review \
                 where project_id = $1 and created_by is not null",
            )
            .bind(project_id)
            .fetch_all(conn)
            .await?
        });
        return Ok(users
            .into_iter()
            .map(|member| {
                let mine = rows.iter().filter(|(by, _, _)| *by == member.id);
                let (mut reviewed, mut accepted, mut fixed) = (0, 0, 0);
                for (_, ok, fix) in mine {
                    reviewed += 1;
                    accepted += i64::from(*ok);
                    fixed += i64::from(*ok && *fix);
                }
                MemberRow {
                    reviewed: Some(reviewed),
                    accepted: Some(accepted),
                    fixed_accepted: Some(fixed),
                    rejected: Some(reviewed - accepted),
                    ..empty(member)
                }
            })
            .collect());
    }
    let setup = super::agreement::setup(&project)?;
    let tasks = by_task(load(db, project_id).await?);
    let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    let mut scores = scores(db, &setup, project_id, &ids).await?;
    // Per author: (cancelled, lead time) of each annotation.
    let anns: Vec<(i64, bool, Option<f64>)> = with_read!(db, conn, {
        sqlx::query_as(
            "select completed_by, was_cancelled, lead_time from annotation \
             where project_id = $1 and completed_by is not null",
        )
        .bind(project_id)
        .fetch_all(conn)
        .await?
    });
    // Per author: the latest review of each of their annotations (accepted, fixed).
    let latest: Vec<(i64, bool, bool)> = with_read!(db, conn, {
        sqlx::query_as(
            "select a.completed_by, r.accepted, r.result is not null from annotation_review r \
             join annotation a on a.id = r.annotation_id where r.project_id = $1 \
             and a.completed_by is not null and r.id = (select max(r2.id) from annotation_review r2 \
             where r2.annotation_id = r.annotation_id)",
        )
        .bind(project_id)
        .fetch_all(conn)
        .await?
    });
    let total_tasks = project.row.task_number;
    // The evaluation score, as the pause rule computes it.
    let settings = project.row.settings();
    let mut evaluation: BTreeMap<i64, (usize, Option<f64>)> = BTreeMap::new();
    if settings.annotator_evaluation_enabled {
        for u in &ids {
            let got = super::distribution::evaluation_score(
                db,
                &project.row,
                settings.annotator_evaluation_metric,
                *u,
            )
            .await?;
            evaluation.insert(*u, got);
        }
    }
    Ok(users
        .into_iter()
        .map(|member| {
            let u = member.id;
            let (mut finished, mut skipped, mut times) = (0i64, 0i64, Vec::new());
            for (_, cancelled, lead) in anns.iter().filter(|(by, _, _)| *by == u) {
                if *cancelled {
                    skipped += 1;
                } else {
                    finished += 1;
                    if let Some(t) = lead.filter(|t| t.is_finite()) {
                        times.push(t);
                    }
                }
            }
            let (mut accepted, mut fixed, mut rejected) = (0i64, 0i64, 0i64);
            for (_, ok, fix) in latest.iter().filter(|(by, _, _)| *by == u) {
                if *ok {
                    accepted += 1;
                    fixed += i64::from(*fix);
                } else {
                    rejected += 1;
                }
            }
            let time = time_stats(times);
            let progress = (total_tasks > 0)
                .then(|| ((finished + skipped) as f64 * 100.0 / total_tasks as f64).min(100.0));
            MemberRow {
                finished: Some(finished),
                skipped: Some(skipped),
                accepted: Some(accepted),
                fixed_accepted: Some(fixed),
                rejected: Some(rejected),
                review_score: scores.review.remove(&u).flatten(),
                performance_score: scores.performance.remove(&u).flatten(),
                agreement: with_others(&setup, &tasks, u),
                ground_truth: with_truth(&setup, &tasks, u),
                evaluation_score: evaluation.get(&u).and_then(|e| e.1),
                evaluation_tasks: evaluation
                    .get(&u)
                    .map(|e| i64::try_from(e.0).unwrap_or(i64::MAX)),
                progress: progress.or(Some(0.0)),
                time_mean: time.map(|t| t.0),
                time_median: time.map(|t| t.1),
                time_total: time.map(|t| t.2),
                ..empty(member)
            }
        })
        .collect())
}

/// The humans of a member performance table: who annotated (or, for `reviews`, reviewed) in
/// the project, ordered by id.
pub async fn participants(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    table: Table,
) -> ApiResult<Vec<super::projects::UserSimple>> {
    access::project(db, actor, project_id, Permission::AgreementView).await?;
    let source = match table {
        Table::Annotations => {
            "select distinct completed_by from annotation where project_id = $1 and completed_by is not null"
        }
        Table::Reviews => {
            "select distinct created_by from annotation_review where project_id = $1 and created_by is not null"
        }
    };
    let rows: Vec<(i64, String, String, String)> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select u.id, u.first_name, u.last_name, u.email from app_user u \
             where u.id in ({source}) order by u.id"
        ))
        .bind(project_id)
        .fetch_all(conn)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(
            |(id, first_name, last_name, email)| super::projects::UserSimple {
                id,
                first_name,
                last_name,
                email,
                avatar: None,
            },
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_user_ids_separated_by_commas() {
        assert_eq!(parse_ids(Some("3, 7,11")).expect("ids"), vec![3, 7, 11]);
        for bad in [None, Some(""), Some("3,x"), Some("3,,4")] {
            let e = parse_ids(bad).expect_err("refused");
            assert_eq!(e.code, ErrorCode::InvalidQuery);
        }
        assert!(refuse_per_label(Some(true)).is_err());
        assert!(refuse_per_label(Some(false)).is_ok() && refuse_per_label(None).is_ok());
    }
}
