//! Agreement statistics of a project (ADR 0025): task agreement, the annotator × annotator
//! matrix, one task's matrix and chance-corrected reliability per control. Computed on read
//! from the project's annotations; the metrics themselves are the pure functions of
//! [`crate::domain::label_config::agreement`].
//!
//! Which annotations count: submitted ones (not skipped, with a result, with an author),
//! ground truth included as its author's annotation; when one person has several annotations
//! on a task, their latest counts.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use serde::Serialize;
use serde_json::{Map, Value};

use super::{Db, access, tasks, with_read, with_tx};
use crate::{
    authz::{Actor, Permission},
    domain::label_config::{
        LabelConfig,
        agreement::{self, Params, Rating, Stat},
    },
    error::{ApiError, ApiResult, ErrorCode},
};

/// One counted annotation.
#[derive(Debug, Clone)]
struct Counted {
    id: i64,
    task: i64,
    user: i64,
    result: Value,
}

/// A user in a statistic.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StatUser {
    /// User id.
    pub id: i64,
    /// Email.
    pub email: String,
}

/// The project's labeling config and control weights.
pub(super) struct Setup {
    pub(super) config: std::sync::Arc<LabelConfig>,
    pub(super) weights: Map<String, Value>,
}

pub(super) fn setup(project: &access::ProjectAccess) -> ApiResult<Setup> {
    let config = project.row.config().ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidLabelConfig,
            "the project's labeling configuration does not parse; fix it in the project settings",
        )
    })?;
    Ok(Setup {
        config,
        weights: project.row.settings().control_weights,
    })
}

/// A condition on an annotation `a`: its task holds another author's counted annotation (not
/// skipped, with a result). Pairwise statistics need nothing else.
pub(super) const SHARED_TASK: &str = " and exists (select 1 from annotation b \
     where b.task_id = a.task_id and b.completed_by <> a.completed_by \
     and not b.was_cancelled and b.result is not null)";

/// Which annotations [`load`] reads.
#[derive(Clone, Copy)]
enum Scope {
    /// Those of one task.
    Task(i64),
    /// Those of tasks that two authors or more annotated: all a pairwise comparison uses.
    Shared,
}

/// Loads the counted annotations of a project (or of one task) with their authors' emails.
async fn load(
    db: &Db,
    project_id: i64,
    scope: Scope,
) -> ApiResult<(Vec<Counted>, BTreeMap<i64, String>)> {
    let (task_filter, task_id) = match scope {
        Scope::Task(t) => (" and a.task_id = $2", Some(t)),
        Scope::Shared => (SHARED_TASK, None),
    };
    let rows: Vec<(i64, i64, i64, String, Option<String>)> = with_read!(db, conn, {
        let sql = format!(
            "select a.id, a.task_id, a.completed_by, a.result, u.email from annotation a \
             left join app_user u on u.id = a.completed_by \
             where a.project_id = $1{task_filter} and not a.was_cancelled \
             and a.result is not null and a.completed_by is not null order by a.task_id, a.id"
        );
        let mut q = sqlx::query_as(&sql).bind(project_id);
        if let Some(t) = task_id {
            q = q.bind(t);
        }
        q.fetch_all(conn).await?
    });
    let mut latest: BTreeMap<(i64, i64), Counted> = BTreeMap::new();
    let mut emails = BTreeMap::new();
    for (id, task, user, result, email) in rows {
        let Ok(result) = serde_json::from_str::<Value>(&result) else {
            continue;
        };
        emails.insert(user, email.unwrap_or_default());
        // Ordered by id: a later annotation of the same person replaces the earlier one.
        latest.insert(
            (task, user),
            Counted {
                id,
                task,
                user,
                result,
            },
        );
    }
    Ok((latest.into_values().collect(), emails))
}

fn by_task(anns: &[Counted]) -> BTreeMap<i64, Vec<&Counted>> {
    let mut out: BTreeMap<i64, Vec<&Counted>> = BTreeMap::new();
    for a in anns {
        out.entry(a.task).or_default().push(a);
    }
    out
}

fn users(ids: impl IntoIterator<Item = i64>, emails: &BTreeMap<i64, String>) -> Vec<StatUser> {
    ids.into_iter()
        .map(|id| StatUser {
            id,
            email: emails.get(&id).cloned().unwrap_or_default(),
        })
        .collect()
}

/// Task agreements from a project's stored configuration and settings and the rows
/// `(task, author, result)` of submitted annotations (ordered by annotation id): the latest
/// annotation of each author on a task counts. Tasks with fewer than two get `None`.
pub fn task_values(
    label_config: &str,
    settings: &str,
    rows: &[(i64, i64, String)],
) -> Vec<(i64, Option<f64>)> {
    let Some(config) = super::projects::parsed_config(label_config) else {
        return Vec::new();
    };
    let weights = serde_json::from_str::<crate::domain::project::ProjectSettings>(settings)
        .unwrap_or_default()
        .control_weights;
    let mut latest: BTreeMap<i64, BTreeMap<i64, Value>> = BTreeMap::new();
    for (task, user, result) in rows {
        let slot = latest.entry(*task).or_default();
        if let Ok(v) = serde_json::from_str::<Value>(result) {
            slot.insert(*user, v);
        }
    }
    latest
        .into_iter()
        .map(|(task, by_user)| {
            let results: Vec<&Value> = by_user.values().collect();
            let value = agreement::task_agreement(&config, &weights, Params::default(), &results);
            (task, value)
        })
        .collect()
}

/// Whether rows `(task, author, result)` of one task have two or more authors, the least a
/// task agreement needs.
pub fn has_two_authors(rows: &[(i64, i64, String)]) -> bool {
    rows.iter()
        .any(|(_, user, _)| Some(user) != rows.first().map(|(_, u, _)| u))
}

/// Recomputes one task's stored agreement inside a write transaction (`$tx`): after an
/// annotation of the task was created, changed or deleted. Reads the task's annotations only.
#[macro_export]
macro_rules! refresh_task_agreement {
    ($tx:expr, $project_id:expr, $task_id:expr) => {{
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            "select task_id, completed_by, result from annotation where task_id = $1 \
             and not was_cancelled and result is not null and completed_by is not null order by id",
        )
        .bind($task_id)
        .fetch_all(&mut *$tx)
        .await?;
        // Most saves leave a task with one author: no agreement, and nothing to parse.
        let value = if $crate::storage::agreement::has_two_authors(&rows) {
            let (label_config, settings): (String, String) =
                sqlx::query_as("select label_config, settings from project where id = $1")
                    .bind($project_id)
                    .fetch_one(&mut *$tx)
                    .await?;
            $crate::storage::agreement::task_values(&label_config, &settings, &rows)
                .first()
                .and_then(|(_, v)| *v)
        } else {
            None
        };
        sqlx::query(
            "update task set agreement = $1 where id = $2 \
             and (agreement is not null or $1 is not null)",
        )
        .bind(value)
        .bind($task_id)
        .execute(&mut *$tx)
        .await?;
    }};
}

/// Marks the stored task agreements of a project stale inside a write transaction, after its
/// labeling configuration or control weights changed (the one case that touches the whole
/// project; annotation changes refresh their task at once). The `agreement.refresh` job
/// ([`crate::agreement`]) recomputes them in batches; see [`refresh_batch`].
#[macro_export]
macro_rules! mark_agreement_stale {
    ($tx:expr, $project_id:expr) => {{
        sqlx::query(
            "update project set agreement_generation = agreement_generation + 1 where id = $1",
        )
        .bind($project_id)
        .execute(&mut *$tx)
        .await?;
    }};
}

pub use crate::{mark_agreement_stale, refresh_task_agreement};

/// Tasks recomputed per transaction by a project-wide refresh: each batch holds the project's
/// lock (which annotation writes take too) for a few milliseconds, never the whole project.
pub const REFRESH_BATCH: i64 = 500;

/// A project whose stored agreements are stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stale {
    /// Its organization.
    pub organization: i64,
    /// The configuration generation to recompute for.
    pub generation: i64,
    /// Its tasks (for progress).
    pub tasks: i64,
}

/// The stale agreement generation of a project: `Some` when a configuration or weights change
/// has not been recomputed yet, `None` when it is current or the project is gone.
pub async fn stale_generation(db: &Db, project_id: i64) -> ApiResult<Option<Stale>> {
    let row: Option<(i64, i64, i64, i64)> = with_read!(db, conn, {
        sqlx::query_as(
            "select organization_id, agreement_generation, agreement_generation_done, \
             (select count(*) from task t where t.project_id = p.id) from project p where id = $1",
        )
        .bind(project_id)
        .fetch_optional(conn)
        .await?
    });
    Ok(row.and_then(|(organization, generation, done, tasks)| {
        (generation != done).then_some(Stale {
            organization,
            generation,
            tasks,
        })
    }))
}

/// Every project whose stored agreements are stale: `(organization, project, generation)`.
pub async fn stale_projects(db: &Db) -> ApiResult<Vec<(i64, i64, i64)>> {
    Ok(with_read!(db, conn, {
        sqlx::query_as(
            "select organization_id, id, agreement_generation from project \
             where agreement_generation <> agreement_generation_done order by id",
        )
        .fetch_all(conn)
        .await?
    }))
}

/// What one step of a project-wide refresh did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshStep {
    /// Recomputed the tasks up to this id; call again with it.
    Batch {
        /// The last task id of the batch.
        last: i64,
        /// Tasks in the batch.
        tasks: u64,
    },
    /// Every task is recomputed and the generation recorded as done.
    Finished,
    /// A newer change (or the project's deletion) superseded this generation: its own refresh
    /// does the work.
    Superseded,
}

/// Recomputes the stored agreement of the next `batch` tasks after task id `after` of a project
/// for configuration generation `generation`, in one transaction; with no task left, records
/// the generation as done. The transaction first locks the project row and checks that the
/// generation is still the latest, so it serializes with annotation writes (whose own refresh
/// of one task it could otherwise overwrite with an older view) and never writes values of a
/// configuration that has changed since.
pub async fn refresh_batch(
    db: &Db,
    project_id: i64,
    generation: i64,
    after: i64,
    batch: i64,
) -> ApiResult<RefreshStep> {
    with_tx!(db, tx, {
        let locked = sqlx::query(
            "update project set agreement_generation_done = agreement_generation_done \
             where id = $1 and agreement_generation = $2",
        )
        .bind(project_id)
        .bind(generation)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if locked == 0 {
            return Ok::<_, ApiError>(RefreshStep::Superseded);
        }
        let ids: Vec<i64> = sqlx::query_scalar(
            "select id from task where project_id = $1 and id > $2 order by id limit $3",
        )
        .bind(project_id)
        .bind(after)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        let (Some(&first), Some(&last)) = (ids.first(), ids.last()) else {
            sqlx::query("update project set agreement_generation_done = $2 where id = $1")
                .bind(project_id)
                .bind(generation)
                .execute(&mut *tx)
                .await?;
            return Ok(RefreshStep::Finished);
        };
        let (label_config, settings): (String, String) =
            sqlx::query_as("select label_config, settings from project where id = $1")
                .bind(project_id)
                .fetch_one(&mut *tx)
                .await?;
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            "select task_id, completed_by, result from annotation where project_id = $1 \
             and task_id between $2 and $3 and not was_cancelled and result is not null \
             and completed_by is not null order by id",
        )
        .bind(project_id)
        .bind(first)
        .bind(last)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(
            "update task set agreement = null where project_id = $1 and id between $2 and $3 \
             and agreement is not null",
        )
        .bind(project_id)
        .bind(first)
        .bind(last)
        .execute(&mut *tx)
        .await?;
        for (task, value) in task_values(&label_config, &settings, &rows) {
            if value.is_some() {
                sqlx::query("update task set agreement = $1 where id = $2")
                    .bind(value)
                    .bind(task)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        Ok(RefreshStep::Batch {
            last,
            tasks: ids.len() as u64,
        })
    })
}

/// `GET /api/projects/{id}/stats/total_agreement`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TotalAgreement {
    /// Mean task agreement over tasks with two or more annotations; null when there is none.
    pub total_agreement: Option<f64>,
    /// Tasks that entered the mean.
    pub tasks: usize,
    /// True while a change of the labeling configuration or control weights is being applied
    /// to the stored task agreements (the `agreement.refresh` job, ADR 0035): until then the
    /// mean mixes tasks measured before and after the change.
    pub stale: bool,
}

/// The mean of the task agreements of a project.
pub async fn total(db: &Db, actor: &Actor, project_id: i64) -> ApiResult<TotalAgreement> {
    access::project(db, actor, project_id, Permission::AgreementView).await?;
    // Stored per task, kept up to date by every annotation change (ADR 0025) and by the
    // refresh job after configuration changes (ADR 0035).
    let (tasks, mean, stale): (i64, Option<f64>, bool) = with_read!(db, conn, {
        sqlx::query_as(
            "select count(agreement), avg(agreement), \
             (select agreement_generation <> agreement_generation_done from project where id = $1) \
             from task where project_id = $1 and agreement is not null",
        )
        .bind(project_id)
        .fetch_one(conn)
        .await?
    });
    Ok(TotalAgreement {
        total_agreement: mean,
        tasks: usize::try_from(tasks).unwrap_or_default(),
        stale,
    })
}

/// `GET /api/projects/{id}/stats/IAA`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AgreementMatrix {
    /// The annotators, in the order of the matrix rows and columns.
    pub users: Vec<StatUser>,
    /// `IAA[i][j]`: mean agreement of users i and j over the tasks both annotated (null when
    /// they share none); 1 on the diagonal.
    #[serde(rename = "IAA")]
    #[schema(rename = "IAA")]
    pub iaa: Vec<Vec<Option<f64>>>,
    /// `common_tasks[i][j]`: how many tasks users i and j both annotated.
    pub common_tasks: Vec<Vec<usize>>,
}

/// The annotator × annotator agreement matrix of a project.
pub async fn iaa(db: &Db, actor: &Actor, project_id: i64) -> ApiResult<AgreementMatrix> {
    let project = access::project(db, actor, project_id, Permission::AgreementView).await?;
    let setup = setup(&project)?;
    // Every author with the number of tasks they annotated (the diagonal), counted in the
    // database; the results only of the tasks two of them share, the only ones compared.
    let authors: Vec<(i64, i64, Option<String>)> = with_read!(db, conn, {
        sqlx::query_as(
            "select a.completed_by, count(distinct a.task_id), max(u.email) from annotation a \
             left join app_user u on u.id = a.completed_by where a.project_id = $1 \
             and not a.was_cancelled and a.result is not null and a.completed_by is not null \
             group by a.completed_by order by a.completed_by",
        )
        .bind(project_id)
        .fetch_all(conn)
        .await?
    });
    let (anns, _) = load(db, project_id, Scope::Shared).await?;
    let ids: Vec<i64> = authors.iter().map(|a| a.0).collect();
    let emails: BTreeMap<i64, String> = authors
        .iter()
        .map(|(id, _, email)| (*id, email.clone().unwrap_or_default()))
        .collect();
    let index: BTreeMap<i64, usize> = ids.iter().enumerate().map(|(i, u)| (*u, i)).collect();
    let n = ids.len();
    let mut sums = vec![vec![0.0; n]; n];
    let mut counts = vec![vec![0usize; n]; n];
    let mut common = vec![vec![0usize; n]; n];
    for (i, (_, tasks, _)) in authors.iter().enumerate() {
        common[i][i] = usize::try_from(*tasks).unwrap_or_default();
    }
    for list in by_task(&anns).values() {
        for (x, a) in list.iter().enumerate() {
            let Some(&i) = index.get(&a.user) else {
                continue;
            };
            for b in &list[x + 1..] {
                let Some(&j) = index.get(&b.user) else {
                    continue;
                };
                common[i][j] += 1;
                common[j][i] += 1;
                if let Some(s) = agreement::pair_agreement(
                    &setup.config,
                    &setup.weights,
                    Params::default(),
                    &a.result,
                    &b.result,
                ) {
                    for (r, c) in [(i, j), (j, i)] {
                        sums[r][c] += s;
                        counts[r][c] += 1;
                    }
                }
            }
        }
    }
    let iaa = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    if i == j {
                        Some(1.0)
                    } else {
                        (counts[i][j] > 0).then(|| sums[i][j] / counts[i][j] as f64)
                    }
                })
                .collect()
        })
        .collect();
    Ok(AgreementMatrix {
        users: users(ids, &emails),
        iaa,
        common_tasks: common,
    })
}

/// `GET /api/projects/{id}/tasks/{task_pk}/agreement-matrix`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskMatrix {
    /// Task id.
    pub task: i64,
    /// The task's agreement (mean over pairs); null with fewer than two annotations.
    pub agreement: Option<f64>,
    /// The counted annotations, in the order of the matrix rows and columns.
    pub annotations: Vec<i64>,
    /// Their authors.
    pub users: Vec<StatUser>,
    /// `matrix[i][j]`: agreement of annotations i and j (null when no control counts).
    pub matrix: Vec<Vec<Option<f64>>>,
}

/// The pairwise agreement of one task's annotations.
pub async fn task_matrix(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    task_id: i64,
) -> ApiResult<TaskMatrix> {
    let (task, project) =
        tasks::get_with_project(db, actor, task_id, Permission::AgreementView).await?;
    if task.project_id != project_id {
        return Err(ApiError::not_found("task"));
    }
    let setup = setup(&project)?;
    let (anns, emails) = load(db, project_id, Scope::Task(task_id)).await?;
    let results: Vec<&Value> = anns.iter().map(|a| &a.result).collect();
    let matrix = results
        .iter()
        .map(|a| {
            results
                .iter()
                .map(|b| {
                    agreement::pair_agreement(
                        &setup.config,
                        &setup.weights,
                        Params::default(),
                        a,
                        b,
                    )
                })
                .collect()
        })
        .collect();
    Ok(TaskMatrix {
        task: task_id,
        agreement: agreement::task_agreement(
            &setup.config,
            &setup.weights,
            Params::default(),
            &results,
        ),
        annotations: anns.iter().map(|a| a.id).collect(),
        users: users(anns.iter().map(|a| a.user), &emails),
        matrix,
    })
}

/// Krippendorff's alpha at two levels of measurement.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Alphas {
    /// Nominal alpha.
    pub nominal: Option<f64>,
    /// Interval alpha (numeric controls only).
    pub interval: Option<f64>,
}

/// `GET /api/projects/{id}/stats/reliability`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReliabilityView {
    /// The control.
    pub from_name: String,
    /// Cohen's kappa per pair of raters, keyed `"<user_a>-<user_b>"` (user ids, smaller first).
    pub cohen_kappa: BTreeMap<String, Option<f64>>,
    /// Fleiss' kappa.
    pub fleiss_kappa: Option<f64>,
    /// Krippendorff's alpha.
    pub krippendorff_alpha: Alphas,
    /// Tasks with two or more ratings of the control.
    pub items: usize,
    /// Raters with at least one rating of the control.
    pub raters: usize,
    /// Why a statistic is null, keyed by its path (`fleiss_kappa`,
    /// `krippendorff_alpha.interval`, `cohen_kappa.3-7`).
    pub undefined: BTreeMap<String, String>,
}

/// Chance-corrected agreement of one control over a project.
pub async fn reliability(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    from_name: &str,
) -> ApiResult<ReliabilityView> {
    let project = access::project(db, actor, project_id, Permission::AgreementView).await?;
    let setup = setup(&project)?;
    let Some(control) = setup
        .config
        .controls()
        .iter()
        .find(|c| c.name == from_name)
        .cloned()
    else {
        let names: Vec<&str> = setup
            .config
            .controls()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!(
                "from_name {from_name:?} is not a control of this project's labeling configuration; use one of: {}",
                names.join(", ")
            ),
        ));
    };
    // Every counted annotation of the project, read as a stream and reduced to its rating at
    // once: holding a million parsed results at the same time is what a project this size
    // cannot afford. Ordered by id within a task, a person's later annotation (whose result
    // parses) replaces the earlier one, as `load` does; a latest annotation without a value for
    // this control leaves the person without a rating of the task.
    let mut latest: BTreeMap<(i64, i64), Option<Rating>> = BTreeMap::new();
    with_read!(db, conn, {
        let mut rows = sqlx::query_as::<_, (i64, i64, String)>(
            "select a.task_id, a.completed_by, a.result from annotation a \
             where a.project_id = $1 and not a.was_cancelled \
             and a.result is not null and a.completed_by is not null order by a.task_id, a.id",
        )
        .bind(project_id)
        .fetch(conn);
        while let Some((task, user, result)) = rows.try_next().await? {
            let Ok(result) = serde_json::from_str::<Value>(&result) else {
                continue;
            };
            let items = agreement::items_of(&result, from_name);
            let rating =
                agreement::rating_value(&control, &items).map(|(category, number)| Rating {
                    item: task,
                    rater: user,
                    category,
                    number,
                });
            latest.insert((task, user), rating);
        }
    });
    let ratings: Vec<Rating> = latest.into_values().flatten().collect();
    let numeric = matches!(control.tag.as_str(), "Rating" | "Number");
    let r = agreement::reliability(&ratings, numeric);
    let mut undefined = BTreeMap::new();
    let mut note = |key: String, s: &Stat| {
        if let Stat::Undefined(why) = s {
            undefined.insert(key, why.clone());
        }
        s.value()
    };
    let cohen_kappa = r
        .cohen_kappa
        .iter()
        .map(|((a, b), s)| {
            let key = format!("{a}-{b}");
            (key.clone(), note(format!("cohen_kappa.{key}"), s))
        })
        .collect();
    let fleiss_kappa = note("fleiss_kappa".to_owned(), &r.fleiss_kappa);
    let nominal = note("krippendorff_alpha.nominal".to_owned(), &r.alpha_nominal);
    let interval = note("krippendorff_alpha.interval".to_owned(), &r.alpha_interval);
    Ok(ReliabilityView {
        from_name: from_name.to_owned(),
        cohen_kappa,
        fleiss_kappa,
        krippendorff_alpha: Alphas { nominal, interval },
        items: r.items,
        raters: r.raters,
        undefined,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"<View><Text name="t" value="$text"/><Choices name="c" toName="t"><Choice value="A"/><Choice value="B"/></Choices></View>"#;

    fn row(task: i64, user: i64, choice: &str) -> (i64, i64, String) {
        let result = serde_json::json!([{"from_name": "c", "to_name": "t", "type": "choices",
            "value": {"choices": [choice]}}]);
        (task, user, result.to_string())
    }

    #[test]
    fn two_authors_are_needed_and_found() {
        assert!(!has_two_authors(&[]));
        assert!(!has_two_authors(&[row(1, 7, "A")]));
        // One author twice (an update or a second annotation) is still one author.
        assert!(!has_two_authors(&[row(1, 7, "A"), row(1, 7, "B")]));
        assert!(has_two_authors(&[
            row(1, 7, "A"),
            row(1, 7, "B"),
            row(1, 8, "A")
        ]));
    }

    #[test]
    fn task_values_use_each_authors_latest_annotation() {
        let rows = [
            row(1, 7, "B"),
            row(1, 8, "A"),
            row(1, 7, "A"),
            row(2, 9, "A"),
        ];
        let values = task_values(CONFIG, "{}", &rows);
        assert_eq!(values, vec![(1, Some(1.0)), (2, None)]);
        let rows = [row(1, 7, "A"), row(1, 8, "B")];
        assert_eq!(task_values(CONFIG, "{}", &rows), vec![(1, Some(0.0))]);
        // A configuration that does not parse yields nothing rather than an error.
        assert!(task_values("<Nope/>", "{}", &rows).is_empty());
    }

    #[test]
    fn parsed_configurations_are_shared() {
        let a = super::super::projects::parsed_config(CONFIG).expect("parses");
        let b = super::super::projects::parsed_config(CONFIG).expect("parses");
        assert!(std::sync::Arc::ptr_eq(&a, &b));
        assert!(super::super::projects::parsed_config("<Nope/>").is_none());
    }
}
