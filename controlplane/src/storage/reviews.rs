//! The review workflow (Label Studio Enterprise's `AnnotationReview`, ADR 0024): reviews of
//! annotations and what they do to them, the history of results that a reviewer's fix
//! replaces, comments written with a rejection, the review stream with its reservations, and
//! the review counts of tasks.
//!
//! A review's effect is recorded on the annotation's `last_action` (`accepted`,
//! `fixed_and_accepted`, `rejected`): that is what the review stream and the rework queue of the
//! label stream read. An annotator's later change sets it to `updated`, which puts the
//! annotation back into the review stream.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::{Map, Value, value::RawValue};

use super::{
    Db, access,
    annotations::{self, ANNOTATION_COLUMNS, AnnotationRow, Kind, raw},
    audit::{Prepared, audit},
    format_micros, now_micros, with_read, with_tx,
};
use crate::{
    authz::{Actor, Permission, Role},
    domain::project::{RejectAction, RequeueMode, ReviewCriteria, ReviewSampling},
    error::{ApiError, ApiResult, ErrorCode},
    storage::tasks::{self, TaskView, Visible},
};

/// The `last_action` values a review leaves on an annotation: reviewed, out of the stream.
const REVIEWED_ACTIONS: &str = "('accepted', 'fixed_and_accepted', 'rejected')";

/// A review row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReviewRow {
    /// Id.
    pub id: i64,
    /// The reviewed annotation.
    pub annotation_id: i64,
    /// Project.
    pub project_id: i64,
    /// Task.
    pub task_id: i64,
    /// The reviewer.
    pub created_by: Option<i64>,
    /// Accepted (false: rejected).
    pub accepted: bool,
    /// The reviewer's fixed result.
    pub result: Option<String>,
    /// For rejections: removed (true) or requeued (false).
    pub remove_from_queue: Option<bool>,
    /// When the reviewer opened the annotation (micros).
    pub started_at: Option<i64>,
    /// The annotator's version before a fix.
    pub previous_annotation_history: Option<i64>,
    /// The reviewer's fixed version.
    pub fixed_annotation_history: Option<i64>,
    /// Created (micros).
    pub created_at: i64,
    /// Updated (micros).
    pub updated_at: i64,
    /// The latest comment written with the review.
    pub comment: Option<String>,
}

const REVIEW_COLUMNS: &str = "r.id, r.annotation_id, r.project_id, r.task_id, r.created_by, r.accepted, r.result, \
    r.remove_from_queue, r.started_at, r.previous_annotation_history, r.fixed_annotation_history, r.created_at, \
    r.updated_at, (select c.text from review_comment c where c.review_id = r.id order by c.id desc limit 1) as comment";

/// The review JSON of Label Studio Enterprise.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReviewView {
    /// Id.
    pub id: i64,
    /// The reviewed annotation.
    pub annotation: i64,
    /// The reviewer.
    pub created_by: Option<i64>,
    /// Accepted (false: rejected).
    pub accepted: bool,
    /// The fixed result of a fix and accept, else null.
    #[schema(value_type = Option<Vec<Object>>)]
    pub result: Option<Box<RawValue>>,
    /// For rejections: removed from the queue (true) or requeued to the annotator (false).
    pub remove_from_queue: Option<bool>,
    /// For rejections: `remove` or `requeue`.
    pub reject_action: Option<String>,
    /// The latest comment written with the review.
    pub comment: Option<String>,
    /// ISO time the reviewer started.
    pub started_at: Option<String>,
    /// History entry of the annotator's version that a fix replaced.
    pub previous_annotation_history: Option<i64>,
    /// History entry of the reviewer's fixed version.
    pub fixed_annotation_history: Option<i64>,
    /// The newest history entry the review produced.
    pub last_annotation_history: Option<i64>,
    /// Task id.
    pub task: i64,
    /// Project id.
    pub project: i64,
    /// ISO creation time.
    pub created_at: String,
    /// ISO update time.
    pub updated_at: String,
    /// Always null (no state machine).
    pub state: Option<String>,
}

impl ReviewRow {
    /// The API view.
    pub fn view(&self) -> ReviewView {
        ReviewView {
            id: self.id,
            annotation: self.annotation_id,
            created_by: self.created_by,
            accepted: self.accepted,
            result: self.result.as_deref().map(raw),
            remove_from_queue: self.remove_from_queue,
            reject_action: self
                .remove_from_queue
                .map(|r| if r { "remove" } else { "requeue" }.to_string()),
            comment: self.comment.clone(),
            started_at: self.started_at.map(format_micros),
            previous_annotation_history: self.previous_annotation_history,
            fixed_annotation_history: self.fixed_annotation_history,
            last_annotation_history: self
                .fixed_annotation_history
                .or(self.previous_annotation_history),
            task: self.task_id,
            project: self.project_id,
            created_at: format_micros(self.created_at),
            updated_at: format_micros(self.updated_at),
            state: None,
        }
    }
}

/// A review body (create or PATCH), type-checked.
#[derive(Debug, Clone, Default)]
pub struct ReviewInput {
    /// The annotation (required on create).
    pub annotation: Option<i64>,
    /// Accept (true) or reject (false); required on create.
    pub accepted: Option<bool>,
    /// The fixed result (fix and accept).
    pub result: Option<Value>,
    /// A comment (required on reject when the project says so).
    pub comment: Option<String>,
    /// Reject and remove (true) or reject and requeue (false); `flexible` mode only.
    pub remove_from_queue: Option<bool>,
    /// When the reviewer started (micros).
    pub started_at: Option<i64>,
}

impl ReviewInput {
    /// Reads a review body, with a 400 naming the first bad field. Unknown fields are ignored
    /// (`last_annotation_history` is accepted and ignored).
    pub fn from_body(body: &Map<String, Value>) -> ApiResult<Self> {
        let bad = |field: &str, message: &str| {
            Err(ApiError::field(ErrorCode::ValidationError, field, message))
        };
        let annotation = match body.get("annotation") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
            Some(_) => return bad("annotation", "must be an annotation id (an integer)"),
        };
        let accepted = match body.get("accepted") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return bad("accepted", "must be true (accept) or false (reject)"),
        };
        let result = match body.get("result") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Array(_)) => Some(v.clone()),
            Some(_) => {
                return bad(
                    "result",
                    "must be a list of region items (the fixed result)",
                );
            }
        };
        let comment = match body.get("comment") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.len() > 65_536 => {
                return bad("comment", "must be at most 65536 bytes");
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return bad("comment", "must be a string"),
        };
        let mut remove_from_queue = match body.get("remove_from_queue") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return bad("remove_from_queue", "must be true or false"),
        };
        match body.get("reject_action") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == "remove" => remove_from_queue = Some(true),
            Some(Value::String(s)) if s == "requeue" => remove_from_queue = Some(false),
            Some(_) => {
                return bad(
                    "reject_action",
                    "must be \"remove\" or \"requeue\" (\"redistribute\" is not supported)",
                );
            }
        }
        let started_at = match body.get("started_at") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                    .map(|t| (t.unix_timestamp_nanos() / 1000) as i64)
                    .map_err(|_| {
                        ApiError::field(
                            ErrorCode::ValidationError,
                            "started_at",
                            "must be an ISO 8601 time such as 2026-01-02T03:04:05Z",
                        )
                    })?,
            ),
            Some(_) => return bad("started_at", "must be an ISO 8601 time string"),
        };
        Ok(Self {
            annotation,
            accepted,
            result,
            comment,
            remove_from_queue,
            started_at,
        })
    }
}

/// What a review does to its annotation, decided before the write.
#[derive(Debug, Clone)]
struct Outcome {
    accepted: bool,
    /// The fixed result text (fix and accept).
    fix: Option<String>,
    /// Rejected and removed.
    remove: bool,
    comment: Option<String>,
}

/// Decides the outcome of a review body in a project, or says what to fix.
fn decide(
    project: &super::projects::ProjectRow,
    accepted: bool,
    result: Option<&Value>,
    comment: Option<&str>,
    remove_from_queue: Option<bool>,
) -> ApiResult<Outcome> {
    let rs = project.settings().review_settings;
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    if !accepted && result.is_some() {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "result",
            "a fixed result goes with accepted: true (fix and accept); a rejection carries no result",
        ));
    }
    if !accepted && rs.require_comment_on_reject && comment.is_none() {
        return Err(ApiError::field(
            ErrorCode::CommentRequired,
            "comment",
            "this project requires a comment when rejecting (review_settings.require_comment_on_reject); say what is wrong",
        ));
    }
    let fix = match result {
        Some(r) => {
            annotations::validate_result(project, r, false)?;
            Some(r.to_string())
        }
        None => None,
    };
    let remove = !accepted
        && match rs.allowed_reject_actions.as_deref() {
            // Label Studio Enterprise's newer settings replace the mode when present: the
            // reviewer's choice, else the default action, else the first allowed one.
            Some(allowed @ [first, ..]) => {
                let chosen = remove_from_queue
                    .map(|r| {
                        if r {
                            RejectAction::Remove
                        } else {
                            RejectAction::Requeue
                        }
                    })
                    .or(rs.default_reject_action)
                    .unwrap_or(*first);
                if !allowed.contains(&chosen) {
                    let names: Vec<&str> = allowed.iter().map(|a| a.name()).collect();
                    return Err(ApiError::field(
                        ErrorCode::ValidationError,
                        "reject_action",
                        format!(
                            "this project allows only these rejections: {} (review_settings.allowed_reject_actions)",
                            names.join(", ")
                        ),
                    ));
                }
                chosen == RejectAction::Remove
            }
            _ => match rs.requeue_rejected_tasks_mode {
                RequeueMode::Requeue => false,
                RequeueMode::Remove => true,
                RequeueMode::Flexible => {
                    remove_from_queue.unwrap_or(!rs.requeue_rejected_tasks_to_annotator)
                }
            },
        };
    Ok(Outcome {
        accepted,
        fix,
        remove,
        comment: comment.map(str::to_string),
    })
}

/// Records a comment written with review `$review` on annotation `$ann`.
macro_rules! insert_comment {
    ($tx:ident, $actor:expr, $ann:expr, $review:expr, $text:expr, $now:expr) => {{
        let ann: &AnnotationRow = $ann;
        let comment: i64 = sqlx::query_scalar(
            "insert into review_comment (project_id, task_id, annotation_id, review_id, text, created_by, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $7) returning id",
        )
        .bind(ann.project_id)
        .bind(ann.task_id)
        .bind(ann.id)
        .bind($review)
        .bind($text)
        .bind($actor.user_id)
        .bind($now)
        .fetch_one(&mut *$tx)
        .await?;
        crate::refresh_task_comments!($tx, ann.task_id);
        crate::notify_comment!(
            $tx,
            ann.project_id,
            ann.task_id,
            ann.id,
            ann.completed_by,
            comment,
            $actor.user_id,
            $now
        );
    }};
}

/// Applies an [`Outcome`] to the annotation `$ann` inside `$tx` (project row locked): a fix
/// keeps the annotator's version and the fix in the history and replaces the result; a
/// removal cancels the annotation (the task returns to the pool); `$undo_remove` un-cancels an
/// annotation that an earlier outcome of the same review removed. Evaluates to the history ids
/// `(previous, fixed)`.
macro_rules! apply_outcome {
    ($tx:ident, $actor:expr, $ann:expr, $project:expr, $outcome:expr, $undo_remove:expr, $now:expr) => {{
        let outcome: &Outcome = $outcome;
        let ann: &AnnotationRow = $ann;
        let skip_queue = $project.settings().skip_queue;
        let current: (Option<String>, bool, bool, Option<String>) = sqlx::query_as(
            "select result, was_cancelled, ground_truth, last_action from annotation where id = $1",
        )
        .bind(ann.id)
        .fetch_optional(&mut *$tx)
        .await?
        .ok_or_else(|| ApiError::not_found("annotation"))?;
        let (old_result, old_cancelled, ground_truth, old_action) = current;
        let mut result = old_result.clone();
        let mut history = (None, None);
        if let Some(fix) = &outcome.fix {
            let previous: i64 = sqlx::query_scalar(
                "insert into annotation_history (annotation_id, project_id, task_id, result, action, created_by, created_at) \
                 values ($1, $2, $3, $4, $5, $6, $7) returning id",
            )
            .bind(ann.id)
            .bind(ann.project_id)
            .bind(ann.task_id)
            .bind(&old_result)
            .bind(old_action.as_deref().unwrap_or("submitted"))
            .bind(ann.completed_by)
            .bind($now)
            .fetch_one(&mut *$tx)
            .await?;
            let fixed: i64 = sqlx::query_scalar(
                "insert into annotation_history (annotation_id, project_id, task_id, result, action, created_by, created_at) \
                 values ($1, $2, $3, $4, 'fixed_and_accepted', $5, $6) returning id",
            )
            .bind(ann.id)
            .bind(ann.project_id)
            .bind(ann.task_id)
            .bind(fix)
            .bind($actor.user_id)
            .bind($now)
            .fetch_one(&mut *$tx)
            .await?;
            history = (Some(previous), Some(fixed));
            result = Some(fix.clone());
        }
        let cancelled = if outcome.remove {
            true
        } else if $undo_remove {
            false
        } else {
            old_cancelled
        };
        let action = match (outcome.accepted, outcome.fix.is_some()) {
            (true, true) => "fixed_and_accepted",
            (true, false) => "accepted",
            (false, _) => "rejected",
        };
        sqlx::query(
            "update annotation set result = $1, was_cancelled = $2, last_action = $3, \
             updated_by = case when $4 then $5 else updated_by end, \
             updated_at = case when $4 then $6 else updated_at end where id = $7",
        )
        .bind(&result)
        .bind(cancelled)
        .bind(action)
        .bind(outcome.fix.is_some())
        .bind($actor.user_id)
        .bind($now)
        .bind(ann.id)
        .execute(&mut *$tx)
        .await?;
        // A fix changes the result and a removal takes the annotation out of the comparison:
        // the task's stored agreement follows in the same transaction (ADR 0025).
        if outcome.fix.is_some() || cancelled != old_cancelled {
            crate::refresh_task_agreement!($tx, ann.project_id, ann.task_id);
        }
        let delta = Kind::of(cancelled, ground_truth, result.is_some())
            .minus(Kind::of(old_cancelled, ground_truth, old_result.is_some()));
        if delta == Kind::default() {
            sqlx::query("update task set updated_at = $1 where id = $2")
                .bind($now)
                .bind(ann.task_id)
                .execute(&mut *$tx)
                .await?;
        } else {
            annotations::apply_annotation_delta!($tx, ann.task_id, ann.project_id, delta, skip_queue);
        }
        // The review ends the review stream's reservation.
        sqlx::query("delete from review_lock where annotation_id = $1")
            .bind(ann.id)
            .execute(&mut *$tx)
            .await?;
        history
    }};
}

/// Loads an annotation of the caller's organization to review: the caller needs
/// `review.create` in its project and must not be its author.
async fn annotation_to_review(
    db: &Db,
    actor: &Actor,
    id: i64,
) -> ApiResult<(AnnotationRow, access::ProjectAccess)> {
    let ann = annotations::load_row(db, actor, id)
        .await
        .map_err(|e| match e.code {
            ErrorCode::NotFound => ApiError::field(
                ErrorCode::NotFound,
                "annotation",
                format!("annotation {id} does not exist"),
            ),
            _ => e,
        })?;
    let access = access::project(db, actor, ann.project_id, Permission::ReviewCreate).await?;
    if ann.completed_by == Some(actor.user_id) {
        return Err(ApiError::new(
            ErrorCode::SelfReview,
            format!(
                "annotation {id} is your own; reviewers review other people's annotations only"
            ),
        ));
    }
    Ok((ann, access))
}

/// Creates a review of an annotation and applies it.
pub async fn create(db: &Db, actor: &Actor, input: ReviewInput) -> ApiResult<ReviewView> {
    let Some(annotation_id) = input.annotation else {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "annotation",
            "is required: the id of the annotation to review",
        ));
    };
    let Some(accepted) = input.accepted else {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "accepted",
            "is required: true to accept, false to reject",
        ));
    };
    let (ann, access) = annotation_to_review(db, actor, annotation_id).await?;
    if ann.was_cancelled {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "annotation",
            format!(
                "annotation {annotation_id} is cancelled (a skip, or removed by a review); there is nothing to review"
            ),
        ));
    }
    let project = access.row;
    let outcome = decide(
        &project,
        accepted,
        input.result.as_ref(),
        input.comment.as_deref(),
        input.remove_from_queue,
    )?;
    let dialect = db.dialect();
    let now = now_micros();
    let id: i64 = with_tx!(db, tx, {
        annotations::lock_project!(tx, dialect, project.id);
        crate::recheck_project_access!(tx, actor, project.id, Permission::ReviewCreate)?;
        // As it is now: a skip or removal that landed since the check above counts.
        let cancelled: Option<bool> =
            sqlx::query_scalar("select was_cancelled from annotation where id = $1")
                .bind(ann.id)
                .fetch_optional(&mut *tx)
                .await?;
        match cancelled {
            None => return Err(ApiError::not_found("annotation")),
            Some(true) => {
                return Err(ApiError::field(
                    ErrorCode::ValidationError,
                    "annotation",
                    format!("annotation {annotation_id} is cancelled; there is nothing to review"),
                ));
            }
            Some(false) => {}
        }
        let (previous, fixed) = apply_outcome!(tx, actor, &ann, project, &outcome, false, now);
        let id: i64 = sqlx::query_scalar(
            "insert into annotation_review (annotation_id, project_id, task_id, created_by, accepted, result, \
             remove_from_queue, started_at, previous_annotation_history, fixed_annotation_history, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) returning id",
        )
        .bind(ann.id)
        .bind(project.id)
        .bind(ann.task_id)
        .bind(actor.user_id)
        .bind(accepted)
        .bind(&outcome.fix)
        .bind((!accepted).then_some(outcome.remove))
        .bind(input.started_at)
        .bind(previous)
        .bind(fixed)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(text) = &outcome.comment {
            insert_comment!(tx, actor, &ann, id, text, now);
        }
        audit!(
            tx,
            Prepared::new(
                actor,
                "review.create",
                "annotation_review",
                id,
                serde_json::json!({"annotation": ann.id, "task": ann.task_id, "project": project.id,
                    "accepted": accepted, "fixed": outcome.fix.is_some(),
                    "remove_from_queue": (!accepted).then_some(outcome.remove),
                    "comment": outcome.comment.is_some()}),
            )
        );
        Ok::<_, ApiError>(id)
    })?;
    load(db, id).await.map(|r| r.view())
}

async fn load(db: &Db, id: i64) -> ApiResult<ReviewRow> {
    let row: Option<ReviewRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {REVIEW_COLUMNS} from annotation_review r where r.id = $1"
        ))
        .bind(id)
        .fetch_optional(conn)
        .await?
    });
    row.ok_or_else(|| ApiError::not_found("review"))
}

/// Loads a review of the caller's organization with its annotation's author.
async fn load_in_org(db: &Db, actor: &Actor, id: i64) -> ApiResult<(ReviewRow, Option<i64>)> {
    let found: Option<(i64, Option<i64>)> = with_read!(db, conn, {
        sqlx::query_as(
            "select r.id, a.completed_by from annotation_review r join annotation a on a.id = r.annotation_id \
             join project p on p.id = r.project_id where r.id = $1 and p.organization_id = $2",
        )
        .bind(id)
        .bind(actor.org_id)
        .fetch_optional(conn)
        .await?
    });
    let (id, author) = found.ok_or_else(|| ApiError::not_found("review"))?;
    Ok((load(db, id).await?, author))
}

/// One review: visible to whoever may see its annotation.
pub async fn get(db: &Db, actor: &Actor, id: i64) -> ApiResult<ReviewView> {
    let (row, author) = load_in_org(db, actor, id).await?;
    let project = access::project(db, actor, row.project_id, Permission::ProjectView).await?;
    if !Visible::for_access(actor, &project).shows(author) {
        return Err(ApiError::not_found("review"));
    }
    Ok(row.view())
}

/// Filters of a review list.
#[derive(Debug, Clone, Default)]
pub struct ReviewFilter {
    /// Reviews of this annotation.
    pub annotation: Option<i64>,
    /// Reviews in this project.
    pub project: Option<i64>,
    /// Reviews of the annotations of this task (with `project`).
    pub task: Option<i64>,
    /// `id`, `-id`, `created_at`, `-created_at`, `updated_at`, `-updated_at`.
    pub ordering: Option<String>,
}

/// Reviews of an annotation or a project, those of annotations the caller may see.
pub async fn list(db: &Db, actor: &Actor, filter: ReviewFilter) -> ApiResult<Vec<ReviewView>> {
    let order = match filter.ordering.as_deref().unwrap_or("id") {
        "id" => "r.id",
        "-id" => "r.id desc",
        "created_at" => "r.created_at, r.id",
        "-created_at" => "r.created_at desc, r.id desc",
        "updated_at" => "r.updated_at, r.id",
        "-updated_at" => "r.updated_at desc, r.id desc",
        other => {
            return Err(ApiError::field(
                ErrorCode::InvalidQuery,
                "ordering",
                format!(
                    "cannot order by {other:?}; use id, created_at or updated_at, with - for descending"
                ),
            ));
        }
    };
    let (project_id, annotation) = match (filter.annotation, filter.project) {
        (Some(a), project) => {
            let row = annotations::get_row(db, actor, a).await?;
            if project.is_some_and(|p| p != row.project_id) {
                return Ok(Vec::new());
            }
            (row.project_id, Some(a))
        }
        (None, Some(p)) => (p, None),
        (None, None) => {
            return Err(ApiError::field(
                ErrorCode::InvalidQuery,
                "annotation__task__project",
                "give annotation=<id> or annotation__task__project=<project id>",
            ));
        }
    };
    let project = access::project(db, actor, project_id, Permission::ProjectView).await?;
    let visible = Visible::for_access(actor, &project);
    let rows: Vec<(i64, Option<i64>)> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select r.id, a.completed_by from annotation_review r join annotation a on a.id = r.annotation_id \
             where r.project_id = $1 and ($2 = 0 or r.annotation_id = $2) and ($3 = 0 or r.task_id = $3) \
             order by {order}"
        ))
        .bind(project_id)
        .bind(annotation.unwrap_or(0))
        .bind(filter.task.unwrap_or(0))
        .fetch_all(conn)
        .await?
    });
    let ids: Vec<i64> = rows
        .into_iter()
        .filter(|(_, author)| visible.shows(*author))
        .map(|(id, _)| id)
        .collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // Ids are integers from the query above.
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let mut by_id: HashMap<i64, ReviewRow> = with_read!(db, conn, {
        sqlx::query_as::<_, ReviewRow>(&format!(
            "select {REVIEW_COLUMNS} from annotation_review r where r.id in ({list})"
        ))
        .fetch_all(conn)
        .await?
    })
    .into_iter()
    .map(|r| (r.id, r))
    .collect();
    Ok(ids
        .iter()
        .filter_map(|id| by_id.remove(id))
        .map(|r| r.view())
        .collect())
}

/// Changes a review (`accepted`, `result`, `comment`, `remove_from_queue`, `started_at`) and
/// applies its new outcome; a removal the review made earlier is undone when it no longer
/// removes.
pub async fn update(db: &Db, actor: &Actor, id: i64, input: ReviewInput) -> ApiResult<ReviewView> {
    let (row, _) = load_in_org(db, actor, id).await?;
    if input.annotation.is_some_and(|a| a != row.annotation_id) {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "annotation",
            format!(
                "a review stays with its annotation ({}); create a new review for another",
                row.annotation_id
            ),
        ));
    }
    let (ann, access) = annotation_to_review(db, actor, row.annotation_id).await?;
    let project = access.row;
    let accepted = input.accepted.unwrap_or(row.accepted);
    // A new result is a new fix; without one, an earlier fix is kept while the review stays an
    // accept (see `keep_fix` below).
    let result = input.result.clone();
    let comment = input.comment.clone();
    let remove_from_queue = input.remove_from_queue.or(row.remove_from_queue);
    let outcome = decide(
        &project,
        accepted,
        result.as_ref(),
        comment.as_deref().or(if accepted {
            None
        } else {
            row.comment.as_deref()
        }),
        remove_from_queue,
    )?;
    let new_comment = comment
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty());
    let undo_remove = row.remove_from_queue == Some(true) && !outcome.remove;
    let dialect = db.dialect();
    let now = now_micros();
    with_tx!(db, tx, {
        annotations::lock_project!(tx, dialect, project.id);
        crate::recheck_project_access!(tx, actor, project.id, Permission::ReviewCreate)?;
        let (previous, fixed) =
            apply_outcome!(tx, actor, &ann, project, &outcome, undo_remove, now);
        let keep_fix = accepted && outcome.fix.is_none() && row.accepted;
        sqlx::query(
            "update annotation_review set accepted = $1, result = case when $2 then result else $3 end, \
             remove_from_queue = $4, started_at = coalesce($5, started_at), \
             previous_annotation_history = coalesce($6, case when $2 then previous_annotation_history else null end), \
             fixed_annotation_history = coalesce($7, case when $2 then fixed_annotation_history else null end), \
             updated_at = $8 where id = $9",
        )
        .bind(accepted)
        .bind(keep_fix)
        .bind(&outcome.fix)
        .bind((!accepted).then_some(outcome.remove))
        .bind(input.started_at)
        .bind(previous)
        .bind(fixed)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if let Some(text) = &new_comment {
            insert_comment!(tx, actor, &ann, id, text, now);
        }
        audit!(
            tx,
            Prepared::new(
                actor,
                "review.update",
                "annotation_review",
                id,
                serde_json::json!({"annotation": ann.id, "task": ann.task_id, "project": project.id,
                    "accepted": accepted, "fixed": outcome.fix.is_some(),
                    "remove_from_queue": (!accepted).then_some(outcome.remove),
                    "comment": new_comment.is_some()}),
            )
        );
        Ok::<_, ApiError>(())
    })?;
    load(db, id).await.map(|r| r.view())
}

/// Deletes a review. A removal it made is undone (the annotation counts again); a fix stays
/// (both versions remain in the history). Without other reviews the annotation returns to the
/// review stream (`last_action = deleted_review`). Answers the project and the annotation.
pub async fn delete(db: &Db, actor: &Actor, id: i64) -> ApiResult<(i64, i64)> {
    let (row, author) = load_in_org(db, actor, id).await?;
    let access = access::project(db, actor, row.project_id, Permission::ReviewCreate).await?;
    if author == Some(actor.user_id) {
        return Err(ApiError::new(
            ErrorCode::SelfReview,
            "this review is of your own annotation; another reviewer must change it",
        ));
    }
    let project = access.row;
    let skip_queue = project.settings().skip_queue;
    let dialect = db.dialect();
    let now = now_micros();
    with_tx!(db, tx, {
        annotations::lock_project!(tx, dialect, project.id);
        crate::recheck_project_access!(tx, actor, project.id, Permission::ReviewCreate)?;
        let deleted: Option<(Option<bool>,)> = sqlx::query_as(
            "delete from annotation_review where id = $1 returning remove_from_queue",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((removed,)) = deleted else {
            return Err(ApiError::not_found("review"));
        };
        let left: i64 =
            sqlx::query_scalar("select count(*) from annotation_review where annotation_id = $1")
                .bind(row.annotation_id)
                .fetch_one(&mut *tx)
                .await?;
        let state: (bool, bool, bool) = sqlx::query_as(
            "select was_cancelled, ground_truth, result is not null from annotation where id = $1",
        )
        .bind(row.annotation_id)
        .fetch_one(&mut *tx)
        .await?;
        let uncancel = removed == Some(true) && state.0;
        sqlx::query(
            "update annotation set was_cancelled = case when $1 then false else was_cancelled end, \
             last_action = case when $2 then 'deleted_review' else last_action end where id = $3",
        )
        .bind(uncancel)
        .bind(left == 0)
        .bind(row.annotation_id)
        .execute(&mut *tx)
        .await?;
        if uncancel {
            let delta = Kind::of(false, state.1, state.2).minus(Kind::of(true, state.1, state.2));
            annotations::apply_annotation_delta!(tx, row.task_id, project.id, delta, skip_queue);
            crate::refresh_task_agreement!(tx, project.id, row.task_id);
        } else {
            sqlx::query("update task set updated_at = $1 where id = $2")
                .bind(now)
                .bind(row.task_id)
                .execute(&mut *tx)
                .await?;
        }
        audit!(
            tx,
            Prepared::new(
                actor,
                "review.delete",
                "annotation_review",
                id,
                serde_json::json!({"annotation": row.annotation_id, "task": row.task_id, "project": project.id,
                    "restored": uncancel}),
            )
        );
        Ok::<_, ApiError>(())
    })?;
    Ok((project.id, row.annotation_id))
}

// ---------------------------------------------------------------------------------------------
// History and comments

/// One version of an annotation's result.
#[derive(Debug, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct HistoryRow {
    /// Id.
    pub id: i64,
    /// The annotation.
    #[sqlx(rename = "annotation_id")]
    pub annotation: i64,
    /// The result of this version.
    #[schema(value_type = Option<Vec<Object>>)]
    #[serde(serialize_with = "raw_json")]
    pub result: Option<String>,
    /// What produced it: the annotator's last action, or `fixed_and_accepted`.
    pub action: String,
    /// Who wrote this version.
    pub created_by: Option<i64>,
    /// When it was kept (micros; shown as ISO).
    #[serde(serialize_with = "iso")]
    #[schema(value_type = String)]
    pub created_at: i64,
}

fn raw_json<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    v.as_deref().map(raw).serialize(s)
}

pub(super) fn iso<S: serde::Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_micros(*v))
}

/// The kept versions of an annotation's result, oldest first (a fix adds the annotator's
/// version and the reviewer's).
pub async fn history(db: &Db, actor: &Actor, annotation: i64) -> ApiResult<Vec<HistoryRow>> {
    let row = annotations::get_row(db, actor, annotation).await?;
    Ok(with_read!(db, conn, {
        sqlx::query_as(
            "select id, annotation_id, result, action, created_by, created_at from annotation_history \
             where annotation_id = $1 order by id",
        )
        .bind(row.id)
        .fetch_all(conn)
        .await?
    }))
}

// ---------------------------------------------------------------------------------------------
// Review stream

/// The order in which `by_annotator` sampling visits annotators, from `(annotator, submitted,
/// served)` counts: a batch is `share` of an annotator's submitted annotations (at least one;
/// all of them without a share). Annotators who have had fewer batches reviewed come first;
/// among them one part-way through a batch, then by user id.
fn annotator_order(counts: &[(i64, i64, i64)], share: Option<f64>) -> Vec<i64> {
    let mut keyed: Vec<(i64, bool, i64)> = counts
        .iter()
        .map(|&(annotator, submitted, served)| {
            let batch = match share {
                Some(s) => ((s * submitted as f64).ceil() as i64).max(1),
                None => submitted.max(1),
            };
            (served / batch, served % batch == 0, annotator)
        })
        .collect();
    keyed.sort_unstable();
    keyed
        .into_iter()
        .map(|(_, _, annotator)| annotator)
        .collect()
}

/// Hands the caller the next annotation to review and reserves it for them. Inside one
/// transaction holding the project's row lock (PostgreSQL) or the single writer (SQLite), so
/// two reviewers never hold the same annotation (ADR 0003's label-stream reasoning, ADR 0024).
/// Eligible: finished, not cancelled, not the caller's, not reviewed since its last change,
/// not reserved by another reviewer; with `only_finished_tasks` only of labeled tasks; with
/// `review_criteria = one` not of tasks that already have an accepted annotation.
pub async fn next(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    default_lock_ttl_secs: i64,
) -> ApiResult<TaskView> {
    let access = access::project(db, actor, project_id, Permission::ReviewCreate).await?;
    let project = access.row;
    let settings = project.settings();
    let rs = settings.review_settings.clone();
    let ttl = settings
        .custom_task_lock_ttl
        .unwrap_or(default_lock_ttl_secs);
    let dialect = db.dialect();
    let now = now_micros();
    let user = actor.user_id;
    let mut conditions = format!(
        "a.project_id = $1 and not a.was_cancelled and a.result is not null \
         and (a.completed_by is null or a.completed_by <> $2) \
         and (a.last_action is null or a.last_action not in {REVIEWED_ACTIONS})"
    );
    if rs.only_finished_tasks {
        if settings.assignment_settings.manual() {
            // Manual distribution: finished when every annotator assigned to the task has
            // submitted (skips do not count); a task nobody is assigned to falls back to
            // `is_labeled`.
            conditions.push_str(
                " and (case when exists (select 1 from task_assignment ta where ta.task_id = a.task_id and ta.type = 'AN') \
                 then not exists (select 1 from task_assignment ta where ta.task_id = a.task_id and ta.type = 'AN' \
                 and not exists (select 1 from annotation b where b.task_id = ta.task_id and b.completed_by = ta.user_id \
                 and not b.was_cancelled and b.result is not null)) else t.is_labeled end)",
            );
        } else {
            conditions.push_str(" and t.is_labeled");
        }
    }
    // Reviewers review only the tasks assigned to them for review (ADR 0039); managers and
    // above are not restricted.
    if rs.review_only_manual_assignments && access.role < Role::Manager {
        conditions.push_str(
            " and exists (select 1 from task_assignment ta where ta.task_id = a.task_id \
             and ta.user_id = $2 and ta.type = 'RE')",
        );
    }
    // Review routing rules (ADR 0057): the first rule matching an annotation names its
    // reviewers; managers and above are not routed.
    if let Some(routed) =
        super::routing::stream_condition(db, project_id, user, access.role).await?
    {
        conditions.push_str(&format!(" and {routed}"));
    }
    if rs.review_criteria == ReviewCriteria::One {
        conditions.push_str(
            " and not exists (select 1 from annotation_review rv where rv.task_id = a.task_id and rv.accepted)",
        );
    }
    let order = match rs.sampling {
        ReviewSampling::TaskId | ReviewSampling::ByAnnotator => "a.task_id, a.id",
        ReviewSampling::Random => "random()",
    };
    // Annotations somebody already reviews: reviewed, or reserved by a reviewer.
    const SERVED: &str = "(exists (select 1 from annotation_review rv where rv.annotation_id = a.id) \
         or exists (select 1 from review_lock l where l.annotation_id = a.id))";
    let picked: Option<(i64, String)> = with_tx!(db, tx, {
        annotations::lock_project!(tx, dialect, project_id);
        crate::recheck_project_access!(tx, actor, project_id, Permission::ReviewCreate)?;
        sqlx::query("delete from review_lock where project_id = $1 and expire_at <= $2")
            .bind(project_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        // 1. An annotation this reviewer holds and has not reviewed yet.
        let held: Option<(i64, String)> = sqlx::query_as(&format!(
            "select l.annotation_id, l.unique_id from review_lock l join annotation a on a.id = l.annotation_id \
             join task t on t.id = a.task_id where l.project_id = $1 and l.user_id = $2 and {conditions} \
             order by l.annotation_id limit 1"
        ))
        .bind(project_id)
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(found) = held {
            return Ok::<_, ApiError>(Some(found));
        }
        // 2. The next eligible annotation nobody else holds.
        let mut conditions = format!(
            "{conditions} and not exists (select 1 from review_lock l where l.annotation_id = a.id and l.user_id <> $2)"
        );
        // With random sampling and a task limit, once the limit's share of the tasks that have
        // annotations is being reviewed, only those tasks are served (so started tasks can still
        // be completed under `review_criteria = all`).
        if let (ReviewSampling::Random, Some(share)) = (
            rs.sampling,
            rs.review_task_limit_percent.and_then(|p| p.active()),
        ) {
            let (with_work, served): (i64, i64) = sqlx::query_as(&format!(
                "select count(distinct a.task_id), count(distinct case when {SERVED} then a.task_id end) \
                 from annotation a where a.project_id = $1 and not a.was_cancelled and a.result is not null"
            ))
            .bind(project_id)
            .fetch_one(&mut *tx)
            .await?;
            if served as f64 >= (share * with_work as f64).ceil() {
                conditions.push_str(&format!(
                    " and exists (select 1 from annotation a2 where a2.task_id = a.task_id and {})",
                    SERVED.replace("a.id", "a2.id")
                ));
            }
        }
        let mut candidate: Option<i64> = None;
        // By annotator: the annotator whose current batch (a share of their work) is least
        // reviewed goes first; one who is part-way through a batch is finished first.
        if rs.sampling == ReviewSampling::ByAnnotator {
            let counts: Vec<(i64, i64, i64)> = sqlx::query_as(&format!(
                "select a.completed_by, count(*), sum(case when {SERVED} then 1 else 0 end) from annotation a \
                 where a.project_id = $1 and not a.was_cancelled and a.result is not null \
                 and a.completed_by is not null and a.completed_by <> $2 group by a.completed_by"
            ))
            .bind(project_id)
            .bind(user)
            .fetch_all(&mut *tx)
            .await?;
            let share = rs.annotator_batch_percent.and_then(|p| p.active());
            for annotator in annotator_order(&counts, share) {
                candidate = sqlx::query_scalar(&format!(
                    "select a.id from annotation a join task t on t.id = a.task_id where {conditions} \
                     and a.completed_by = $3 order by {order} limit 1"
                ))
                .bind(project_id)
                .bind(user)
                .bind(annotator)
                .fetch_optional(&mut *tx)
                .await?;
                if candidate.is_some() {
                    break;
                }
            }
        }
        // Everything else (and annotations without an author under `by_annotator`).
        if candidate.is_none() {
            candidate = sqlx::query_scalar(&format!(
                "select a.id from annotation a join task t on t.id = a.task_id where {conditions} \
                 order by {order} limit 1"
            ))
            .bind(project_id)
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?;
        }
        let Some(annotation) = candidate else {
            return Ok(None);
        };
        // One reservation per reviewer and project.
        sqlx::query("delete from review_lock where project_id = $1 and user_id = $2")
            .bind(project_id)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        let lock = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "insert into review_lock (annotation_id, user_id, project_id, expire_at, unique_id) values ($1, $2, $3, $4, $5) \
             on conflict (annotation_id) do update set user_id = excluded.user_id, expire_at = excluded.expire_at, \
             unique_id = excluded.unique_id",
        )
        .bind(annotation)
        .bind(user)
        .bind(project_id)
        .bind(now + ttl * 1_000_000)
        .bind(&lock)
        .execute(&mut *tx)
        .await?;
        Ok(Some((annotation, lock)))
    })?;
    let Some((annotation_id, lock)) = picked else {
        return Err(ApiError::new(
            ErrorCode::NothingToReview,
            format!("There are no annotations for {} to review", actor.email),
        ));
    };
    let row: AnnotationRow = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {ANNOTATION_COLUMNS} from annotation a left join app_user u on u.id = a.completed_by where a.id = $1"
        ))
        .bind(annotation_id)
        .fetch_one(conn)
        .await?
    });
    let mut task = tasks::get(db, actor, row.task_id).await?;
    let mut view = row.view();
    if rs.anonymize_annotations {
        view.completed_by = None;
        view.created_username = String::new();
        view.updated_by = None;
        task.annotators = Some(Vec::new());
    }
    task.annotations = Some(vec![view]);
    task.unique_lock_id = Some(lock);
    task.queue = Some("Review queue".to_string());
    Ok(task)
}

// ---------------------------------------------------------------------------------------------
// Review counts of tasks

/// Review counts of one task.
#[derive(Debug, Clone, Default)]
pub struct TaskReviews {
    /// Accepting reviews.
    pub accepted: i64,
    /// Rejecting reviews.
    pub rejected: i64,
    /// Reviewed by the project's `review_criteria`.
    pub reviewed: bool,
    /// Distinct reviewers, in the order of their first review.
    pub reviewers: Vec<i64>,
}

/// Review counts of tasks of one project, by task id.
pub async fn for_tasks(
    db: &Db,
    task_ids: &[i64],
    criteria: ReviewCriteria,
) -> ApiResult<HashMap<i64, TaskReviews>> {
    let mut out: HashMap<i64, TaskReviews> = HashMap::new();
    if task_ids.is_empty() {
        return Ok(out);
    }
    // Ids are integers from our own queries.
    let list = task_ids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    /// `(task, accepted, reviewer)`.
    type ReviewFact = (i64, bool, Option<i64>);
    /// `(task, annotations needing a review, annotations with one)`.
    type Coverage = (i64, i64, i64);
    let (reviews, coverage): (Vec<ReviewFact>, Vec<Coverage>) = with_read!(db, conn, {
        let reviews = sqlx::query_as(&format!(
                "select task_id, accepted, created_by from annotation_review where task_id in ({list}) order by id"
            ))
            .fetch_all(conn)
            .await?;
        // Per task: annotations that need a review (not cancelled, or cancelled by a
        // review) and how many of them have one.
        let coverage = sqlx::query_as(&format!(
                "select a.task_id, count(*), \
                 coalesce(sum(case when exists (select 1 from annotation_review r where r.annotation_id = a.id) then 1 else 0 end), 0) \
                 from annotation a where a.task_id in ({list}) and a.result is not null \
                 and (not a.was_cancelled or exists (select 1 from annotation_review r where r.annotation_id = a.id)) \
                 group by a.task_id"
            ))
            .fetch_all(conn)
            .await?;
        (reviews, coverage)
    });
    let mut seen: HashSet<(i64, i64)> = HashSet::new();
    for (task, accepted, by) in reviews {
        let entry = out.entry(task).or_default();
        if accepted {
            entry.accepted += 1;
        } else {
            entry.rejected += 1;
        }
        if let Some(by) = by
            && seen.insert((task, by))
        {
            entry.reviewers.push(by);
        }
    }
    for (task, total, covered) in coverage {
        let entry = out.entry(task).or_default();
        entry.reviewed = match criteria {
            ReviewCriteria::One => entry.accepted > 0,
            ReviewCriteria::All => total > 0 && covered == total,
        };
    }
    if criteria == ReviewCriteria::One {
        for entry in out.values_mut() {
            entry.reviewed = entry.accepted > 0;
        }
    }
    Ok(out)
}

/// Fills the review fields of task views.
pub async fn attach(db: &Db, views: &mut [TaskView], criteria: ReviewCriteria) -> ApiResult<()> {
    let ids: Vec<i64> = views.iter().map(|v| v.id).collect();
    let mut stats = for_tasks(db, &ids, criteria).await?;
    for v in views {
        let s = stats.remove(&v.id).unwrap_or_default();
        v.reviews_accepted = s.accepted;
        v.reviews_rejected = s.rejected;
        v.reviewed = s.reviewed;
        v.reviewers_count = s.reviewers.len() as i64;
        v.reviewers = s.reviewers;
    }
    Ok(())
}

/// The reviews of the annotations of tasks, as Label Studio Enterprise's JSON export nests them
/// in each annotation: `{id, created_by: {id, email, first_name, last_name} | null, accepted}`,
/// oldest first, by annotation id.
pub async fn export_briefs(db: &Db, task_ids: &[i64]) -> ApiResult<HashMap<i64, Vec<Value>>> {
    let mut out: HashMap<i64, Vec<Value>> = HashMap::new();
    if task_ids.is_empty() {
        return Ok(out);
    }
    // Ids are integers from our own queries.
    let list = task_ids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    /// `(review, annotation, accepted, reviewer, email, first name, last name)`.
    type Brief = (
        i64,
        i64,
        bool,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Brief> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select r.id, r.annotation_id, r.accepted, u.id, u.email, u.first_name, u.last_name \
             from annotation_review r left join app_user u on u.id = r.created_by \
             where r.task_id in ({list}) order by r.id"
        ))
        .fetch_all(conn)
        .await?
    });
    for (id, annotation, accepted, user, email, first, last) in rows {
        let created_by = match user {
            Some(user) => serde_json::json!({
                "id": user,
                "email": email.unwrap_or_default(),
                "first_name": first.unwrap_or_default(),
                "last_name": last.unwrap_or_default(),
            }),
            None => Value::Null,
        };
        out.entry(annotation).or_default().push(serde_json::json!({
            "id": id,
            "created_by": created_by,
            "accepted": accepted,
        }));
    }
    Ok(out)
}
