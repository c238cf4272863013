//! Annotations: create, read, update, delete, with the task and project counters updated in the
//! same transaction as the change.

use serde::Serialize;
use serde_json::{Map, Value, value::RawValue};

use super::{
    Db, access,
    audit::{Prepared, audit},
    format_micros, now_micros, with_read, with_tx,
};
use crate::{
    authz::{Actor, Permission},
    domain::project::SkipQueue,
    error::{ApiError, ApiResult, ErrorCode},
    storage::tasks,
};

/// An annotation row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AnnotationRow {
    /// Id.
    pub id: i64,
    /// Task.
    pub task_id: i64,
    /// Project.
    pub project_id: i64,
    /// Result JSON (null = unfinished).
    pub result: Option<String>,
    /// Author.
    pub completed_by: Option<i64>,
    /// Last editor.
    pub updated_by: Option<i64>,
    /// Skipped.
    pub was_cancelled: bool,
    /// Ground truth.
    pub ground_truth: bool,
    /// Seconds spent.
    pub lead_time: Option<f64>,
    /// Prediction snapshot JSON.
    pub prediction: String,
    /// Source prediction.
    pub parent_prediction: Option<i64>,
    /// Source annotation.
    pub parent_annotation: Option<i64>,
    /// Original id when imported.
    pub import_id: Option<i64>,
    /// Last action.
    pub last_action: Option<String>,
    /// Unique id.
    pub unique_id: String,
    /// Created (micros).
    pub created_at: i64,
    /// Updated (micros).
    pub updated_at: i64,
    /// Creation time of the draft it was submitted from (micros, ADR 0044).
    #[sqlx(default)]
    pub draft_created_at: Option<i64>,
    /// Made by bulk labeling (ADR 0061).
    #[sqlx(default)]
    pub bulk_created: bool,
    /// Author email.
    pub author_email: Option<String>,
    /// Reviews that accepted it.
    pub reviews_accepted: i64,
    /// Reviews that rejected it.
    pub reviews_rejected: i64,
}

/// Columns selected into [`AnnotationRow`] (annotation aliased `a`, author `u`).
pub const ANNOTATION_COLUMNS: &str = "a.id, a.task_id, a.project_id, a.result, a.completed_by, a.updated_by, \
    a.was_cancelled, a.ground_truth, a.lead_time, a.prediction, a.parent_prediction, a.parent_annotation, \
    a.import_id, a.last_action, a.unique_id, a.created_at, a.updated_at, a.draft_created_at, \
    a.bulk_created, u.email as author_email, \
    (select count(*) from annotation_review rv where rv.annotation_id = a.id and rv.accepted) as reviews_accepted, \
    (select count(*) from annotation_review rv where rv.annotation_id = a.id and not rv.accepted) as reviews_rejected";

/// The annotation JSON of Label Studio.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AnnotationView {
    /// Id.
    pub id: i64,
    /// Region items.
    #[schema(value_type = Option<Vec<Object>>)]
    pub result: Option<Box<RawValue>>,
    /// Author email.
    pub created_username: String,
    /// Always empty (the UI computes relative times).
    pub created_ago: String,
    /// Author id.
    pub completed_by: Option<i64>,
    /// Skipped.
    pub was_cancelled: bool,
    /// Ground truth.
    pub ground_truth: bool,
    /// ISO creation time.
    pub created_at: String,
    /// ISO update time.
    pub updated_at: String,
    /// When the draft it was submitted from was created (ADR 0044), or null.
    pub draft_created_at: Option<String>,
    /// Seconds spent.
    pub lead_time: Option<f64>,
    /// Original id when imported.
    pub import_id: Option<i64>,
    /// Last action.
    pub last_action: Option<String>,
    /// Task id.
    pub task: i64,
    /// Project id.
    pub project: i64,
    /// Last editor.
    pub updated_by: Option<i64>,
    /// Source prediction.
    pub parent_prediction: Option<i64>,
    /// Source annotation.
    pub parent_annotation: Option<i64>,
    /// Always null.
    pub last_created_by: Option<i64>,
    /// Unique id.
    pub unique_id: String,
    /// Prediction snapshot.
    #[schema(value_type = Object)]
    pub prediction: Box<RawValue>,
    /// Number of result items.
    pub result_count: usize,
    /// Made by bulk labeling (`POST /api/annotations/bulk/`, ADR 0061).
    pub bulk_created: bool,
    /// Reviews that accepted it.
    pub reviews_accepted: i64,
    /// Reviews that rejected it.
    pub reviews_rejected: i64,
}

/// Stored JSON back as raw JSON (stored text was produced by serde_json, so it parses).
pub fn raw(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_string())
        .unwrap_or_else(|_| RawValue::from_string("null".to_string()).unwrap_or_default())
}

impl AnnotationRow {
    /// The API view.
    pub fn view(&self) -> AnnotationView {
        let result_count = self
            .result
            .as_deref()
            .and_then(|r| serde_json::from_str::<Vec<&RawValue>>(r).ok())
            .map_or(0, |items| items.len());
        AnnotationView {
            id: self.id,
            result: self.result.as_deref().map(raw),
            created_username: self.author_email.clone().unwrap_or_default(),
            created_ago: String::new(),
            completed_by: self.completed_by,
            was_cancelled: self.was_cancelled,
            ground_truth: self.ground_truth,
            created_at: format_micros(self.created_at),
            updated_at: format_micros(self.updated_at),
            draft_created_at: self.draft_created_at.map(format_micros),
            lead_time: self.lead_time,
            import_id: self.import_id,
            last_action: self.last_action.clone(),
            task: self.task_id,
            project: self.project_id,
            updated_by: self.updated_by,
            parent_prediction: self.parent_prediction,
            parent_annotation: self.parent_annotation,
            last_created_by: None,
            unique_id: self.unique_id.clone(),
            prediction: raw(&self.prediction),
            result_count,
            bulk_created: self.bulk_created,
            reviews_accepted: self.reviews_accepted,
            reviews_rejected: self.reviews_rejected,
        }
    }
}

/// How one annotation counts toward task and project counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kind {
    /// Not skipped (`total_annotations`).
    pub total: i64,
    /// Skipped (`cancelled_annotations`).
    pub cancelled: i64,
    /// Not skipped, not ground truth, with a result (`useful`).
    pub useful: i64,
    /// Ground truth.
    pub ground_truth: i64,
}

impl Kind {
    /// Classifies an annotation.
    pub fn of(was_cancelled: bool, ground_truth: bool, has_result: bool) -> Kind {
        Kind {
            total: i64::from(!was_cancelled),
            cancelled: i64::from(was_cancelled),
            useful: i64::from(!was_cancelled && !ground_truth && has_result),
            ground_truth: i64::from(ground_truth),
        }
    }

    /// `self + other`, field by field.
    pub fn plus(self, other: Kind) -> Kind {
        Kind {
            total: self.total + other.total,
            cancelled: self.cancelled + other.cancelled,
            useful: self.useful + other.useful,
            ground_truth: self.ground_truth + other.ground_truth,
        }
    }

    /// `self - other`, field by field.
    pub fn minus(self, other: Kind) -> Kind {
        Kind {
            total: self.total - other.total,
            cancelled: self.cancelled - other.cancelled,
            useful: self.useful - other.useful,
            ground_truth: self.ground_truth - other.ground_truth,
        }
    }
}

/// Takes deleted annotations off their tasks' and project's counters inside `tx`: `gone` holds
/// `(id, task_id, was_cancelled, ground_truth, has_result)` as the deleting statement returned
/// them. Each task gets one delta, in task order, then its agreement and comment counts are
/// refreshed. Evaluates to the deleted ids and the number of tasks they were on.
#[macro_export]
macro_rules! retract_deleted_annotations {
    ($tx:ident, $project_id:expr, $skip_queue:expr, $gone:expr) => {{
        use $crate::storage::annotations::Kind;
        let mut per_task: std::collections::BTreeMap<i64, Kind> = Default::default();
        let mut ids: Vec<i64> = Vec::new();
        for (id, task_id, cancelled, gt, has_result) in $gone {
            ids.push(id);
            let sum = per_task.entry(task_id).or_default();
            *sum = sum.plus(Kind::of(cancelled, gt, has_result));
        }
        for (&task_id, &kind) in &per_task {
            $crate::apply_annotation_delta!(
                $tx,
                task_id,
                $project_id,
                Kind::default().minus(kind),
                $skip_queue
            );
            $crate::refresh_task_agreement!($tx, $project_id, task_id);
            $crate::refresh_task_comments!($tx, task_id);
        }
        (ids, per_task.len())
    }};
}

/// Applies a counter delta to a task and its project, recomputing completion, inside `tx`.
/// Every annotation change goes through here, so counters never drift and never need a scan.
#[macro_export]
macro_rules! apply_annotation_delta {
    ($tx:expr, $task_id:expr, $project_id:expr, $delta:expr, $skip_queue:expr) => {{
        let delta: $crate::storage::annotations::Kind = $delta;
        // One statement: right-hand sides see the old row, so completion is computed from the old
        // counts plus the delta, and the old state is the returned new counts minus the delta.
        let ignore_skipped = $skip_queue == $crate::domain::project::SkipQueue::IgnoreSkipped;
        let completed_new = if ignore_skipped {
            "(total_annotations + $1 + cancelled_annotations + $2)"
        } else {
            "(total_annotations + $1)"
        };
        let (total, cancelled, useful, overlap): (i64, i64, i64, i64) = sqlx::query_as(&format!(
            "update task set total_annotations = total_annotations + $1, \
             cancelled_annotations = cancelled_annotations + $2, useful_annotations = useful_annotations + $3, \
             ground_truth_annotations = ground_truth_annotations + $4, is_labeled = ({completed_new} >= overlap), \
             updated_at = $5 where id = $6 returning total_annotations, cancelled_annotations, useful_annotations, overlap"
        ))
        .bind(delta.total)
        .bind(delta.cancelled)
        .bind(delta.useful)
        .bind(delta.ground_truth)
        .bind($crate::storage::now_micros())
        .bind($task_id)
        .fetch_one(&mut *$tx)
        .await?;
        let completed = |total: i64, cancelled: i64| if ignore_skipped { total + cancelled } else { total };
        let labeled_now = completed(total, cancelled) >= overlap;
        let labeled_before = completed(total - delta.total, cancelled - delta.cancelled) >= overlap;
        let finished_delta = i64::from(labeled_now) - i64::from(labeled_before);
        let with_annotations_delta = i64::from(useful > 0) - i64::from(useful - delta.useful > 0);
        sqlx::query(
            "update project set total_annotations_number = total_annotations_number + $1, \
             skipped_annotations_number = skipped_annotations_number + $2, \
             useful_annotation_number = useful_annotation_number + $3, \
             ground_truth_number = ground_truth_number + $4, finished_task_number = finished_task_number + $5, \
             num_tasks_with_annotations = num_tasks_with_annotations + $6 where id = $7",
        )
        .bind(delta.total)
        .bind(delta.cancelled)
        .bind(delta.useful)
        .bind(delta.ground_truth)
        .bind(finished_delta)
        .bind(with_annotations_delta)
        .bind($project_id)
        .execute(&mut *$tx)
        .await?;
    }};
}

/// The body of an annotation create or update, already type-checked.
#[derive(Debug, Clone, Default)]
pub struct AnnotationInput {
    /// Result (array) or null; `None` = not given.
    pub result: Option<Value>,
    /// Skipped.
    pub was_cancelled: Option<bool>,
    /// Ground truth.
    pub ground_truth: Option<bool>,
    /// Seconds spent.
    pub lead_time: Option<f64>,
    /// Author (defaults to the caller).
    pub completed_by: Option<i64>,
    /// Source prediction.
    pub parent_prediction: Option<i64>,
    /// Source annotation.
    pub parent_annotation: Option<i64>,
    /// The caller's draft of the task this annotation is submitted from (create only; the
    /// draft is deleted and its creation time kept, ADR 0044).
    pub draft_id: Option<i64>,
}

impl AnnotationInput {
    /// The names of the fields given (for the audit log).
    pub fn fields(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (name, given) in [
            ("result", self.result.is_some()),
            ("was_cancelled", self.was_cancelled.is_some()),
            ("ground_truth", self.ground_truth.is_some()),
            ("lead_time", self.lead_time.is_some()),
            ("completed_by", self.completed_by.is_some()),
        ] {
            if given {
                out.push(name);
            }
        }
        out
    }

    /// Reads a Label Studio annotation body, with a 400 naming the first bad field.
    pub fn from_body(body: &Map<String, Value>) -> ApiResult<Self> {
        let bool_field = |key: &str| -> ApiResult<Option<bool>> {
            match body.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Bool(b)) => Ok(Some(*b)),
                Some(_) => Err(ApiError::field(
                    ErrorCode::ValidationError,
                    key,
                    "must be true or false",
                )),
            }
        };
        let int_field = |key: &str| -> ApiResult<Option<i64>> {
            match body.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64()),
                Some(_) => Err(ApiError::field(
                    ErrorCode::ValidationError,
                    key,
                    "must be an integer id",
                )),
            }
        };
        let result = match body.get("result") {
            None => None,
            Some(Value::Null) => Some(Value::Null),
            Some(v @ Value::Array(_)) => Some(v.clone()),
            Some(_) => {
                return Err(ApiError::field(
                    ErrorCode::ValidationError,
                    "result",
                    "must be a list of region items",
                ));
            }
        };
        let lead_time = match body.get("lead_time") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(_) => {
                return Err(ApiError::field(
                    ErrorCode::ValidationError,
                    "lead_time",
                    "must be a number of seconds",
                ));
            }
        };
        Ok(Self {
            result,
            was_cancelled: bool_field("was_cancelled")?,
            ground_truth: bool_field("ground_truth")?,
            lead_time,
            completed_by: int_field("completed_by")?,
            parent_prediction: int_field("parent_prediction")?,
            parent_annotation: int_field("parent_annotation")?,
            draft_id: int_field("draft_id")?,
        })
    }
}

pub(crate) fn validate_result(
    project: &super::projects::ProjectRow,
    result: &Value,
    was_cancelled: bool,
) -> ApiResult<()> {
    if result.is_null() {
        return Ok(());
    }
    let empty = result.as_array().is_some_and(Vec::is_empty);
    if empty && !was_cancelled && !project.settings().enable_empty_annotation {
        return Err(ApiError::field(
            ErrorCode::InvalidResult,
            "result",
            "this project does not accept empty annotations (enable_empty_annotation is false)",
        ));
    }
    if let Some(config) = project.config() {
        config
            .validate_result(result)
            .map_err(|e| ApiError::field(ErrorCode::InvalidResult, "result", e.to_string()))?;
    }
    Ok(())
}

pub(crate) async fn check_member(db: &Db, actor: &Actor, user_id: i64) -> ApiResult<()> {
    let found: Option<i64> = with_read!(db, conn, {
        sqlx::query_scalar(
            "select user_id from org_member where organization_id = $1 and user_id = $2",
        )
        .bind(actor.org_id)
        .bind(user_id)
        .fetch_optional(conn)
        .await?
    });
    found.map(|_| ()).ok_or_else(|| {
        ApiError::field(
            ErrorCode::ValidationError,
            "completed_by",
            "no such user in your organization",
        )
    })
}

/// Creates an annotation on a task (the caller's own unless `annotation.manage`).
pub async fn create(
    db: &Db,
    actor: &Actor,
    task_id: i64,
    input: AnnotationInput,
) -> ApiResult<AnnotationView> {
    let access = access::project_of_task(db, actor, task_id, Permission::AnnotationCreate).await?;
    let project = access.row;
    let was_cancelled = input.was_cancelled.unwrap_or(false);
    let result = input.result.clone().unwrap_or(Value::Array(Vec::new()));
    validate_result(&project, &result, was_cancelled)?;
    let author = input.completed_by.unwrap_or(actor.user_id);
    if author != actor.user_id {
        actor.require_in(Some(access.role), Permission::AnnotationManage)?;
        check_member(db, actor, author).await?;
    }
    let ground_truth = input.ground_truth.unwrap_or(false);
    if ground_truth {
        // Ground truth is what others are measured against: a manager's call, not an
        // annotator's (who could otherwise clear a manager's mark by setting their own).
        actor.require_in(Some(access.role), Permission::GroundTruthManage)?;
    }
    let result_text = if result.is_null() {
        None
    } else {
        Some(result.to_string())
    };
    let settings = project.settings();
    let skip_queue = settings.skip_queue;
    // Strict overlap applies to submissions by the label stream's roles under automatic
    // distribution (manual assignees must all submit; managers and ground truth are deliberate).
    let strict = settings.strict_task_overlap
        && !settings.assignment_settings.manual()
        && access.role < crate::authz::Role::Manager
        && !was_cancelled
        && !ground_truth;
    let dialect = db.dialect();
    let row: AnnotationRow = with_tx!(db, tx, {
        lock_project!(tx, dialect, project.id);
        // The time once the project's lock is held: waiting for it can take longer than a
        // reservation lives, and a clock read before the wait would take the author's
        // reservation for live after the label stream (at a later time) gave its place to
        // someone else, and overfill the task.
        let now = now_micros();
        // A pause or removal that landed since the check above counts.
        crate::recheck_project_access!(tx, actor, project.id, Permission::AnnotationCreate)?;
        if strict {
            // A live reservation of the author's is the stream's promise of a place. A late
            // submit (the author's reservation expired) lands only if a place is left after the
            // others' live reservations, so it can neither overfill the task nor take a place
            // promised to someone else. A task that never came from the author's stream is
            // annotated as in Label Studio (scripts that write annotations directly).
            let full: bool = sqlx::query_scalar(&format!(
                "select case when exists (select 1 from task_lock l where l.task_id = t.id and l.user_id = $2 \
                 and l.expire_at > $3) then false \
                 when not exists (select 1 from task_lock l where l.task_id = t.id and l.user_id = $2) then false \
                 else {} + (select count(*) from task_lock l \
                 where l.task_id = t.id and l.user_id <> $2 and l.expire_at > $3) >= t.overlap end \
                 from task t where t.id = $1",
                super::tasks::counted_sql(skip_queue)
            ))
            .bind(task_id)
            .bind(author)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            if full {
                return Err(ApiError::new(
                    ErrorCode::OverlapReached,
                    format!(
                        "task {task_id} has no place left under its overlap (its annotations and the \
                         other annotators' reservations fill it) and your reservation of it expired: \
                         take the next task from the label stream"
                    ),
                ));
            }
        }
        // Referenced ids must be of this very task (not just any id, or another tenant's).
        for (field, table, id) in [
            ("parent_prediction", "prediction", input.parent_prediction),
            ("parent_annotation", "annotation", input.parent_annotation),
        ] {
            let Some(id) = id else { continue };
            let found: Option<i64> = sqlx::query_scalar(&format!(
                "select id from {table} where id = $1 and task_id = $2"
            ))
            .bind(id)
            .bind(task_id)
            .fetch_optional(&mut *tx)
            .await?;
            if found.is_none() {
                return Err(ApiError::field(
                    ErrorCode::ValidationError,
                    field,
                    format!("{table} {id} is not a {table} of task {task_id}"),
                ));
            }
        }
        let id = insert_annotation!(
            tx,
            project.id,
            task_id,
            &NewAnnotation {
                result: result_text.clone(),
                author,
                updated_by: actor.user_id,
                was_cancelled,
                ground_truth,
                lead_time: input.lead_time,
                parent_prediction: input.parent_prediction,
                parent_annotation: input.parent_annotation,
                now,
                bulk_created: false,
            },
            skip_queue
        );
        // Submitted from a draft: it must be the caller's draft of this task (else 403, whether
        // or not it exists, so other people's drafts stay unseen); its creation time is kept
        // and the draft deleted (ADR 0044).
        if let Some(draft) = input.draft_id {
            let created: Option<i64> = sqlx::query_scalar(
                "select created_at from annotation_draft where id = $1 and task_id = $2 and user_id = $3",
            )
            .bind(draft)
            .bind(task_id)
            .bind(actor.user_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(created) = created else {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    format!("draft {draft} is not your draft of task {task_id}"),
                ));
            };
            sqlx::query("update annotation set draft_created_at = $1 where id = $2")
                .bind(created)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("delete from annotation_draft where id = $1")
                .bind(draft)
                .execute(&mut *tx)
                .await?;
        }
        audit!(
            tx,
            Prepared::new(
                actor,
                if was_cancelled {
                    "annotation.skip"
                } else {
                    "annotation.create"
                },
                "annotation",
                id,
                serde_json::json!({"task": task_id, "project": project.id, "completed_by": author, "ground_truth": ground_truth}),
            )
        );
        // Read back in the transaction: access was checked above, no second lookup needed.
        let row: AnnotationRow = sqlx::query_as(&format!(
            "select {ANNOTATION_COLUMNS} from annotation a left join app_user u on u.id = a.completed_by \
             where a.id = $1"
        ))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        Ok::<_, ApiError>(row)
    })?;
    Ok(row.view())
}

/// A new annotation's fields, checked by the caller (see [`insert_annotation`]).
#[derive(Debug, Clone)]
pub struct NewAnnotation {
    /// Result JSON text (null = unfinished).
    pub result: Option<String>,
    /// Author.
    pub author: i64,
    /// Who wrote it (the caller).
    pub updated_by: i64,
    /// Skipped.
    pub was_cancelled: bool,
    /// Ground truth (clears the task's other ground-truth marks).
    pub ground_truth: bool,
    /// Seconds spent.
    pub lead_time: Option<f64>,
    /// Source prediction.
    pub parent_prediction: Option<i64>,
    /// Source annotation.
    pub parent_annotation: Option<i64>,
    /// Creation time (micros).
    pub now: i64,
    /// Made by bulk labeling (ADR 0061).
    pub bulk_created: bool,
}

/// Inserts one annotation inside `tx` with everything creating one entails: the task's other
/// ground-truth marks cleared when it is ground truth, task and project counters (completion
/// under the project's overlap), the task's agreement, and the end of the author's reservation.
/// Every annotation create goes through here (the single create and bulk actions alike); the
/// caller checks access and writes the audit entry. Evaluates to the new id.
#[macro_export]
macro_rules! insert_annotation {
    ($tx:expr, $project_id:expr, $task_id:expr, $new:expr, $skip_queue:expr) => {{
        let new: &$crate::storage::annotations::NewAnnotation = $new;
        if new.ground_truth {
            $crate::unset_ground_truth!($tx, $task_id, $project_id, $skip_queue);
        }
        let id: i64 = sqlx::query_scalar(
            "insert into annotation (task_id, project_id, result, completed_by, updated_by, was_cancelled, ground_truth, \
             lead_time, parent_prediction, parent_annotation, last_action, unique_id, created_at, updated_at, \
             bulk_created) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14) returning id",
        )
        .bind($task_id)
        .bind($project_id)
        .bind(&new.result)
        .bind(new.author)
        .bind(new.updated_by)
        .bind(new.was_cancelled)
        .bind(new.ground_truth)
        .bind(new.lead_time)
        .bind(new.parent_prediction)
        .bind(new.parent_annotation)
        .bind(if new.was_cancelled { "skipped" } else { "submitted" })
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(new.now)
        .bind(new.bulk_created)
        .fetch_one(&mut *$tx)
        .await?;
        let kind = $crate::storage::annotations::Kind::of(
            new.was_cancelled,
            new.ground_truth,
            new.result.is_some(),
        );
        $crate::apply_annotation_delta!($tx, $task_id, $project_id, kind, $skip_queue);
        $crate::refresh_task_agreement!($tx, $project_id, $task_id);
        // Submitting (or skipping) ends the author's reservation of the task.
        sqlx::query("delete from task_lock where task_id = $1 and user_id = $2")
            .bind($task_id)
            .bind(new.author)
            .execute(&mut *$tx)
            .await?;
        id
    }};
}

/// Locks the project row for the rest of the transaction where the engine has row locks, so
/// counter updates and label-stream decisions of one project are serialized.
#[macro_export]
macro_rules! lock_project {
    ($tx:expr, $dialect:expr, $project_id:expr) => {{
        if $dialect == $crate::storage::Dialect::Postgres {
            sqlx::query("select id from project where id = $1 for update")
                .bind($project_id)
                .execute(&mut *$tx)
                .await?;
        }
    }};
}

/// Clears the ground-truth flag of every annotation of a task, keeping counters right.
#[macro_export]
macro_rules! unset_ground_truth {
    ($tx:expr, $task_id:expr, $project_id:expr, $skip_queue:expr) => {{
        let previous: Vec<(bool, bool)> = sqlx::query_as(
            "select was_cancelled, result is not null from annotation where task_id = $1 and ground_truth",
        )
        .bind($task_id)
        .fetch_all(&mut *$tx)
        .await?;
        if !previous.is_empty() {
            sqlx::query("update annotation set ground_truth = false where task_id = $1 and ground_truth")
                .bind($task_id)
                .execute(&mut *$tx)
                .await?;
            for (cancelled, has_result) in previous {
                let delta = $crate::storage::annotations::Kind::of(cancelled, false, has_result)
                    .minus($crate::storage::annotations::Kind::of(cancelled, true, has_result));
                $crate::apply_annotation_delta!($tx, $task_id, $project_id, delta, $skip_queue);
            }
        }
    }};
}

pub use crate::{apply_annotation_delta, insert_annotation, lock_project, unset_ground_truth};

/// Loads an annotation of the actor's organization whose project the actor can see. Another
/// annotator's annotation is not found for an annotator (blind labeling; see
/// [`tasks::Visible`]).
pub async fn get_row(db: &Db, actor: &Actor, id: i64) -> ApiResult<AnnotationRow> {
    let row = load_row(db, actor, id).await?;
    let project = access::project(db, actor, row.project_id, Permission::ProjectView).await?;
    if !tasks::Visible::for_access(actor, &project).shows(row.completed_by) {
        return Err(ApiError::not_found("annotation"));
    }
    Ok(row)
}

/// Loads an annotation of the actor's organization; the caller checks its project.
pub(crate) async fn load_row(db: &Db, actor: &Actor, id: i64) -> ApiResult<AnnotationRow> {
    let row: Option<AnnotationRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {ANNOTATION_COLUMNS} from annotation a join project p on p.id = a.project_id \
             left join app_user u on u.id = a.completed_by where a.id = $1 and p.organization_id = $2"
        ))
        .bind(id)
        .bind(actor.org_id)
        .fetch_optional(conn)
        .await?
    });
    row.ok_or_else(|| ApiError::not_found("annotation"))
}

/// One annotation (without its author for a reviewer of an anonymized project, ADR 0024).
pub async fn get(db: &Db, actor: &Actor, id: i64) -> ApiResult<AnnotationView> {
    let row = load_row(db, actor, id).await?;
    let project = access::project(db, actor, row.project_id, Permission::ProjectView).await?;
    let visible = tasks::Visible::for_access(actor, &project);
    if !visible.shows(row.completed_by) {
        return Err(ApiError::not_found("annotation"));
    }
    Ok(visible.render(&row))
}

/// The non-skipped annotations of a task, oldest first.
pub async fn list_for_task(db: &Db, actor: &Actor, task_id: i64) -> ApiResult<Vec<AnnotationView>> {
    let (task, project) =
        tasks::get_with_project(db, actor, task_id, Permission::ProjectView).await?;
    let visible = tasks::Visible::for_access(actor, &project);
    let rows: Vec<AnnotationRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {ANNOTATION_COLUMNS} from annotation a left join app_user u on u.id = a.completed_by \
             where a.task_id = $1 and not a.was_cancelled order by a.id"
        ))
        .bind(task.id)
        .fetch_all(conn)
        .await?
    });
    Ok(rows
        .iter()
        .filter(|r| visible.shows(r.completed_by))
        .map(|r| visible.render(r))
        .collect())
}

/// Loads an annotation with its project for a change: one's own needs `annotation.create` in
/// the project (and not being paused), anyone else's `annotation.manage`.
async fn load_for_change(
    db: &Db,
    actor: &Actor,
    id: i64,
) -> ApiResult<(AnnotationRow, access::ProjectAccess)> {
    let row = load_row(db, actor, id).await?;
    // The route table's declaration decides (and the documentation is generated from it).
    let permission = crate::authz::CHANGE_ANNOTATION
        .required(row.completed_by == Some(actor.user_id))
        .unwrap_or(Permission::AnnotationManage);
    let project = access::project(db, actor, row.project_id, permission).await?;
    Ok((row, project))
}

/// Updates an annotation (one's own, or any with `annotation.manage`).
pub async fn update(
    db: &Db,
    actor: &Actor,
    id: i64,
    input: AnnotationInput,
) -> ApiResult<AnnotationView> {
    let (row, access) = load_for_change(db, actor, id).await?;
    let project = access.row;
    // Early answers from what was read; the write below decides on the row as it is then.
    let was_cancelled = input.was_cancelled.unwrap_or(row.was_cancelled);
    if input.ground_truth.is_some_and(|gt| gt != row.ground_truth) {
        actor.require_in(Some(access.role), Permission::GroundTruthManage)?;
    }
    let new_result_text = match &input.result {
        Some(Value::Null) => Some(None),
        Some(result) => {
            validate_result(&project, result, was_cancelled)?;
            Some(Some(result.to_string()))
        }
        None => None,
    };
    if let Some(author) = input.completed_by
        && Some(author) != row.completed_by
    {
        actor.require_in(Some(access.role), Permission::AnnotationManage)?;
        check_member(db, actor, author).await?;
    }
    let skip_queue: SkipQueue = project.settings().skip_queue;
    let dialect = db.dialect();
    let now = now_micros();
    with_tx!(db, tx, {
        lock_project!(tx, dialect, project.id);
        // The row as it is now: a concurrent change that committed since the read above is
        // kept; only the fields of this request change.
        let current: (Option<String>, bool, bool, Option<i64>) = sqlx::query_as(
            "select result, was_cancelled, ground_truth, completed_by from annotation where id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ApiError::not_found("annotation"))?;
        let was_cancelled = input.was_cancelled.unwrap_or(current.1);
        let ground_truth = input.ground_truth.unwrap_or(current.2);
        if ground_truth != current.2 {
            actor.require_in(Some(access.role), Permission::GroundTruthManage)?;
        }
        let result_text = new_result_text.clone().unwrap_or(current.0.clone());
        let completed_by = input.completed_by.or(current.3);
        if ground_truth && !current.2 {
            unset_ground_truth!(tx, row.task_id, project.id, skip_queue);
        }
        // Re-read the counted kind: the ground-truth reset above may have changed it.
        let before: (bool, bool, bool) = sqlx::query_as(
            "select was_cancelled, ground_truth, result is not null from annotation where id = $1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "update annotation set result = $1, was_cancelled = $2, ground_truth = $3, lead_time = coalesce($4, lead_time), \
             completed_by = $5, updated_by = $6, updated_at = $7, last_action = 'updated' where id = $8",
        )
        .bind(&result_text)
        .bind(was_cancelled)
        .bind(ground_truth)
        .bind(input.lead_time)
        .bind(completed_by)
        .bind(actor.user_id)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let delta = Kind::of(was_cancelled, ground_truth, result_text.is_some())
            .minus(Kind::of(before.0, before.1, before.2));
        apply_annotation_delta!(tx, row.task_id, project.id, delta, skip_queue);
        // Changing one's annotation (e.g. reworking a rejected one) ends one's reservation of
        // the task, as submitting does; a stale one would hold back other annotators.
        if completed_by == Some(actor.user_id) {
            sqlx::query("delete from task_lock where task_id = $1 and user_id = $2")
                .bind(row.task_id)
                .bind(actor.user_id)
                .execute(&mut *tx)
                .await?;
        }
        crate::refresh_task_agreement!(tx, project.id, row.task_id);
        // The caller's drafts of this annotation are saved now (ADR 0044): they go, as a
        // draft submitted as a new annotation does. Other people's drafts of it stay theirs.
        sqlx::query("delete from annotation_draft where annotation_id = $1 and user_id = $2")
            .bind(id)
            .bind(actor.user_id)
            .execute(&mut *tx)
            .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "annotation.update",
                "annotation",
                id,
                serde_json::json!({"task": row.task_id, "project": project.id, "fields": input.fields()}),
            )
        );
        Ok::<_, ApiError>(())
    })?;
    get(db, actor, id).await
}

/// Deletes an annotation (one's own, or any with `annotation.manage`).
/// Deletes an annotation; answers its project.
pub async fn delete(db: &Db, actor: &Actor, id: i64) -> ApiResult<i64> {
    let (row, access) = load_for_change(db, actor, id).await?;
    let project = access.row;
    let skip_queue = project.settings().skip_queue;
    let dialect = db.dialect();
    with_tx!(db, tx, {
        lock_project!(tx, dialect, project.id);
        let deleted: Option<(bool, bool, bool)> = sqlx::query_as(
            "delete from annotation where id = $1 returning was_cancelled, ground_truth, result is not null",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((cancelled, gt, has_result)) = deleted {
            let delta = Kind::default().minus(Kind::of(cancelled, gt, has_result));
            apply_annotation_delta!(tx, row.task_id, project.id, delta, skip_queue);
            crate::refresh_task_agreement!(tx, project.id, row.task_id);
            // Its comments went with it.
            crate::refresh_task_comments!(tx, row.task_id);
        }
        audit!(
            tx,
            Prepared::new(
                actor,
                "annotation.delete",
                "annotation",
                id,
                serde_json::json!({"task": row.task_id, "project": project.id, "completed_by": row.completed_by}),
            )
        );
        Ok::<_, ApiError>(())
    })?;
    Ok(project.id)
}

/// Turns the caller's own annotation into a draft of theirs (Label Studio's
/// `POST /api/annotations/{id}/convert-to-draft`, the editor's "unskip"): in one transaction a
/// draft of a new annotation of the task is made from its result and lead time, and the
/// annotation is deleted as [`delete`] deletes it (counters, agreement, its comments). Only the
/// author may: anyone else who sees it is refused with `not_author` (the draft would be theirs,
/// taking the author's work), and one who does not see it is told it does not exist. Answers
/// the project and the new draft.
pub async fn convert_to_draft(
    db: &Db,
    actor: &Actor,
    id: i64,
) -> ApiResult<(i64, super::drafts::DraftView)> {
    let row = get_row(db, actor, id).await?;
    if row.completed_by != Some(actor.user_id) {
        return Err(ApiError::new(
            ErrorCode::NotAuthor,
            format!("annotation {id} is not yours: only its author may turn it into a draft"),
        ));
    }
    let access = access::project(db, actor, row.project_id, Permission::AnnotationCreate).await?;
    let project = access.row;
    let skip_queue = project.settings().skip_queue;
    let dialect = db.dialect();
    let now = now_micros();
    let draft: super::drafts::DraftRow = with_tx!(db, tx, {
        lock_project!(tx, dialect, project.id);
        crate::recheck_project_access!(tx, actor, project.id, Permission::AnnotationCreate)?;
        // As it is now: a concurrent change that committed since the read above is what the
        // draft keeps; a concurrent deletion leaves nothing to convert.
        let deleted: Option<(bool, bool, Option<String>, Option<f64>)> = sqlx::query_as(
            "delete from annotation where id = $1 and completed_by = $2 \
             returning was_cancelled, ground_truth, result, lead_time",
        )
        .bind(id)
        .bind(actor.user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((cancelled, gt, result, lead_time)) = deleted else {
            return Err(ApiError::not_found("annotation"));
        };
        let delta = Kind::default().minus(Kind::of(cancelled, gt, result.is_some()));
        apply_annotation_delta!(tx, row.task_id, project.id, delta, skip_queue);
        crate::refresh_task_agreement!(tx, project.id, row.task_id);
        crate::refresh_task_comments!(tx, row.task_id);
        let draft_id: i64 = sqlx::query_scalar(
            "insert into annotation_draft (task_id, project_id, annotation_id, user_id, result, \
             lead_time, was_postponed, created_at, updated_at) \
             values ($1, $2, null, $3, $4, $5, false, $6, $6) returning id",
        )
        .bind(row.task_id)
        .bind(project.id)
        .bind(actor.user_id)
        .bind(result.unwrap_or_else(|| "[]".to_string()))
        .bind(lead_time)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "annotation.convert_to_draft",
                "annotation",
                id,
                serde_json::json!({"task": row.task_id, "project": project.id, "draft": draft_id}),
            )
        );
        let draft: super::drafts::DraftRow = sqlx::query_as(
            "select id, task_id, project_id, annotation_id, user_id, result, lead_time, \
             was_postponed, created_at, updated_at from annotation_draft where id = $1",
        )
        .bind(draft_id)
        .fetch_one(&mut *tx)
        .await?;
        Ok::<_, ApiError>(draft)
    })?;
    Ok((project.id, draft.view()))
}

/// Deletes every annotation of the given tasks of a project (a data-manager action) in one
/// transaction: the same counter and agreement upkeep as [`delete`], task by task, with one
/// bounded audit entry. Returns the deleted annotations' ids.
pub async fn delete_for_tasks(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    task_ids: &[i64],
) -> ApiResult<Vec<i64>> {
    let access = access::project(db, actor, project_id, Permission::AnnotationManage).await?;
    let skip_queue = access.row.settings().skip_queue;
    let dialect = db.dialect();
    with_tx!(db, tx, {
        lock_project!(tx, dialect, project_id);
        crate::recheck_project_access!(tx, actor, project_id, Permission::AnnotationManage)?;
        let mut deleted: Vec<i64> = Vec::new();
        for chunk in task_ids.chunks(tasks::DELETE_BATCH) {
            let list = chunk
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let gone: Vec<(i64, i64, bool, bool, bool)> = sqlx::query_as(&format!(
                "delete from annotation where project_id = $1 and task_id in ({list}) \
                 returning id, task_id, was_cancelled, ground_truth, result is not null"
            ))
            .bind(project_id)
            .fetch_all(&mut *tx)
            .await?;
            let (ids, _) = crate::retract_deleted_annotations!(tx, project_id, skip_queue, gone);
            deleted.extend(ids);
        }
        deleted.sort_unstable();
        audit!(
            tx,
            Prepared::new(
                actor,
                "annotation.delete",
                "project",
                project_id,
                serde_json::json!({"deleted": deleted.len(), "tasks": task_ids.len(), "ids": deleted.iter().take(tasks::AUDIT_IDS).collect::<Vec<_>>()}),
            )
        );
        Ok::<_, ApiError>(deleted)
    })
}

/// Annotations of many tasks at once (for task pages and exports), grouped by the caller.
pub async fn for_tasks(
    db: &Db,
    task_ids: &[i64],
    include_cancelled: bool,
) -> ApiResult<Vec<AnnotationRow>> {
    if task_ids.is_empty() {
        return Ok(Vec::new());
    }
    // Ids are integers from our own query, so inlining them is safe and keeps one statement.
    let list = task_ids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let cancelled = if include_cancelled {
        ""
    } else {
        " and not a.was_cancelled"
    };
    Ok(with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {ANNOTATION_COLUMNS} from annotation a left join app_user u on u.id = a.completed_by \
             where a.task_id in ({list}){cancelled} order by a.task_id, a.id"
        ))
        .fetch_all(conn)
        .await?
    }))
}
