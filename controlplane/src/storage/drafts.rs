//! Drafts (Label Studio's `AnnotationDraft`, ADR 0044): a user's unsubmitted result for a task,
//! or for one of its annotations. A draft is private: only its user lists, reads, changes or
//! deletes it; anyone else is told it does not exist. Never readable across users.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::{Map, Value, json, value::RawValue};

use super::{
    Db,
    annotations::{self, raw},
    audit::{Prepared, audit},
    format_micros, now_micros, tasks, with_read, with_tx,
};
use crate::{
    authz::{Actor, Permission},
    error::{ApiError, ApiResult, ErrorCode},
};

/// A draft row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DraftRow {
    /// Id.
    pub id: i64,
    /// Task.
    pub task_id: i64,
    /// Project.
    pub project_id: i64,
    /// The annotation it changes, if any.
    pub annotation_id: Option<i64>,
    /// Its user.
    pub user_id: i64,
    /// Result JSON.
    pub result: String,
    /// Seconds spent.
    pub lead_time: Option<f64>,
    /// Postponed.
    pub was_postponed: bool,
    /// Created (micros).
    pub created_at: i64,
    /// Updated (micros).
    pub updated_at: i64,
}

const DRAFT_COLUMNS: &str = "d.id, d.task_id, d.project_id, d.annotation_id, d.user_id, d.result, \
    d.lead_time, d.was_postponed, d.created_at, d.updated_at";

/// The draft JSON of Label Studio.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DraftView {
    /// Id.
    pub id: i64,
    /// Region items.
    #[schema(value_type = Vec<Object>)]
    pub result: Box<RawValue>,
    /// Seconds spent.
    pub lead_time: Option<f64>,
    /// Task id.
    pub task: i64,
    /// The annotation the draft changes, or null for a new one.
    pub annotation: Option<i64>,
    /// The draft's user.
    pub user: i64,
    /// Postponed (put aside to come back to later).
    pub was_postponed: bool,
    /// ISO creation time.
    pub created_at: String,
    /// ISO update time.
    pub updated_at: String,
}

impl DraftRow {
    /// The API view.
    pub fn view(&self) -> DraftView {
        DraftView {
            id: self.id,
            result: raw(&self.result),
            lead_time: self.lead_time,
            task: self.task_id,
            annotation: self.annotation_id,
            user: self.user_id,
            was_postponed: self.was_postponed,
            created_at: format_micros(self.created_at),
            updated_at: format_micros(self.updated_at),
        }
    }
}

/// The fields of a draft body; `None` = not given.
#[derive(Debug, Default)]
pub struct DraftInput {
    /// Result (an array).
    pub result: Option<Value>,
    /// Seconds spent.
    pub lead_time: Option<f64>,
    /// Postponed.
    pub was_postponed: Option<bool>,
}

impl DraftInput {
    /// Reads a draft body, with a 400 naming the first bad field.
    pub fn from_body(body: &Map<String, Value>) -> ApiResult<Self> {
        let bad = |key: &str, what: &str| ApiError::field(ErrorCode::ValidationError, key, what);
        let result = match body.get("result") {
            None => None,
            Some(v @ Value::Array(_)) => Some(v.clone()),
            Some(_) => return Err(bad("result", "must be a list of region items")),
        };
        let lead_time = match body.get("lead_time") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_f64() {
                Some(f) if f.is_finite() && f >= 0.0 => Some(f),
                _ => return Err(bad("lead_time", "must be a number of seconds, 0 or more")),
            },
            Some(_) => return Err(bad("lead_time", "must be a number of seconds, 0 or more")),
        };
        let was_postponed = match body.get("was_postponed") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(bad("was_postponed", "must be true or false")),
        };
        Ok(Self {
            result,
            lead_time,
            was_postponed,
        })
    }
}

/// Postponing a task ends the user's reservation of it (under the project's lock, as annotation
/// writes do): the task waits in their postponed queue without holding a place of its overlap
/// from other annotators, and it is reserved again when it comes back (ADR 0003 addendum).
macro_rules! release_reservation {
    ($tx:expr, $task_id:expr, $user:expr) => {{
        sqlx::query("delete from task_lock where task_id = $1 and user_id = $2")
            .bind($task_id)
            .bind($user)
            .execute(&mut *$tx)
            .await?;
    }};
}

/// The caller's drafts of a task (of one of its annotations with `annotation`), oldest first.
pub async fn list(
    db: &Db,
    actor: &Actor,
    task_id: i64,
    annotation: Option<i64>,
) -> ApiResult<Vec<DraftView>> {
    let (task, _) = tasks::get_with_project(db, actor, task_id, Permission::ProjectView).await?;
    if let Some(a) = annotation {
        annotation_of_task(db, actor, a, task.id).await?;
    }
    let of_annotation = if annotation.is_some() {
        "and d.annotation_id = $3"
    } else {
        ""
    };
    let rows: Vec<DraftRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {DRAFT_COLUMNS} from annotation_draft d where d.task_id = $1 and d.user_id = $2 \
             {of_annotation} order by d.id"
        ))
        .bind(task.id)
        .bind(actor.user_id)
        .bind(annotation.unwrap_or(0))
        .fetch_all(conn)
        .await?
    });
    Ok(rows.iter().map(DraftRow::view).collect())
}

/// The annotation `id`, checked to be one of task `task` that the caller may see.
async fn annotation_of_task(db: &Db, actor: &Actor, id: i64, task: i64) -> ApiResult<()> {
    let row = annotations::get_row(db, actor, id).await?;
    if row.task_id != task {
        return Err(ApiError::not_found("annotation"));
    }
    Ok(())
}

/// Saves a new draft of the caller for a task (of one of its annotations with `annotation`).
/// The result is validated as an annotation's is (an empty one is allowed: work in progress).
pub async fn create(
    db: &Db,
    actor: &Actor,
    task_id: i64,
    annotation: Option<i64>,
    input: DraftInput,
) -> ApiResult<DraftView> {
    let (task, project) =
        tasks::get_with_project(db, actor, task_id, Permission::AnnotationCreate).await?;
    if let Some(a) = annotation {
        annotation_of_task(db, actor, a, task.id).await?;
    }
    let result = input.result.unwrap_or_else(|| Value::Array(Vec::new()));
    annotations::validate_result(&project.row, &result, true)?;
    let now = now_micros();
    let project_id = project.row.id;
    let dialect = db.dialect();
    let postponed = input.was_postponed.unwrap_or(false);
    let row: DraftRow = with_tx!(db, tx, {
        if postponed {
            annotations::lock_project!(tx, dialect, project_id);
        }
        crate::recheck_project_access!(tx, actor, project_id, Permission::AnnotationCreate)?;
        if postponed {
            release_reservation!(tx, task.id, actor.user_id);
        }
        let id: i64 = sqlx::query_scalar(
            "insert into annotation_draft (task_id, project_id, annotation_id, user_id, result, \
             lead_time, was_postponed, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $8) returning id",
        )
        .bind(task.id)
        .bind(project_id)
        .bind(annotation)
        .bind(actor.user_id)
        .bind(result.to_string())
        .bind(input.lead_time)
        .bind(input.was_postponed.unwrap_or(false))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "draft.create",
                "task",
                task.id,
                json!({"draft": id, "project": project_id, "annotation": annotation})
            )
        );
        let row: DraftRow = sqlx::query_as(&format!(
            "select {DRAFT_COLUMNS} from annotation_draft d where d.id = $1"
        ))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        Ok::<_, ApiError>(row)
    })?;
    Ok(row.view())
}

/// The caller's draft `id`, with `permission` in its project; anyone else's is not found.
async fn own(db: &Db, actor: &Actor, id: i64, permission: Permission) -> ApiResult<DraftRow> {
    let row: Option<DraftRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {DRAFT_COLUMNS} from annotation_draft d join project p on p.id = d.project_id \
             where d.id = $1 and d.user_id = $2 and p.organization_id = $3"
        ))
        .bind(id)
        .bind(actor.user_id)
        .bind(actor.org_id)
        .fetch_optional(conn)
        .await?
    });
    let row = row.ok_or_else(|| ApiError::not_found("draft"))?;
    super::access::project(db, actor, row.project_id, permission).await?;
    Ok(row)
}

/// One of the caller's drafts.
pub async fn get(db: &Db, actor: &Actor, id: i64) -> ApiResult<DraftView> {
    Ok(own(db, actor, id, Permission::ProjectView).await?.view())
}

/// Changes one of the caller's drafts (the autosave of the editor).
pub async fn update(db: &Db, actor: &Actor, id: i64, input: DraftInput) -> ApiResult<DraftView> {
    let row = own(db, actor, id, Permission::AnnotationCreate).await?;
    if let Some(result) = &input.result {
        let project = super::projects::load(db, actor.org_id, row.project_id).await?;
        annotations::validate_result(&project, result, true)?;
    }
    let now = now_micros();
    let dialect = db.dialect();
    let postponed = input.was_postponed == Some(true);
    let row: DraftRow = with_tx!(db, tx, {
        if postponed {
            annotations::lock_project!(tx, dialect, row.project_id);
        }
        crate::recheck_project_access!(tx, actor, row.project_id, Permission::AnnotationCreate)?;
        if postponed {
            release_reservation!(tx, row.task_id, actor.user_id);
        }
        sqlx::query(
            "update annotation_draft set result = coalesce($1, result), \
             lead_time = coalesce($2, lead_time), was_postponed = coalesce($3, was_postponed), \
             updated_at = $4 where id = $5",
        )
        .bind(input.result.as_ref().map(Value::to_string))
        .bind(input.lead_time)
        .bind(input.was_postponed)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "draft.update",
                "task",
                row.task_id,
                json!({"draft": id, "project": row.project_id})
            )
        );
        let row: DraftRow = sqlx::query_as(&format!(
            "select {DRAFT_COLUMNS} from annotation_draft d where d.id = $1"
        ))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        Ok::<_, ApiError>(row)
    })?;
    Ok(row.view())
}

/// Deletes one of the caller's drafts.
pub async fn delete(db: &Db, actor: &Actor, id: i64) -> ApiResult<()> {
    let row = own(db, actor, id, Permission::ProjectView).await?;
    with_tx!(db, tx, {
        sqlx::query("delete from annotation_draft where id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "draft.delete",
                "task",
                row.task_id,
                json!({"draft": id, "project": row.project_id})
            )
        );
        Ok::<_, ApiError>(())
    })
}

/// `user`'s drafts of the tasks `task_ids`, by task, oldest first (for the `drafts` nested in
/// task JSON).
pub async fn of_tasks(
    db: &Db,
    user: i64,
    task_ids: &[i64],
) -> ApiResult<HashMap<i64, Vec<DraftView>>> {
    let mut out: HashMap<i64, Vec<DraftView>> = HashMap::new();
    if task_ids.is_empty() {
        return Ok(out);
    }
    let ids = task_ids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let rows: Vec<DraftRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {DRAFT_COLUMNS} from annotation_draft d where d.user_id = $1 \
             and d.task_id in ({ids}) order by d.id"
        ))
        .bind(user)
        .fetch_all(conn)
        .await?
    });
    for r in &rows {
        out.entry(r.task_id).or_default().push(r.view());
    }
    Ok(out)
}

/// Which of the tasks `task_ids` somebody has a draft of (the data manager's `draft_exists`).
pub async fn tasks_with_drafts(db: &Db, task_ids: &[i64]) -> ApiResult<HashSet<i64>> {
    if task_ids.is_empty() {
        return Ok(HashSet::new());
    }
    let ids = task_ids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let found: Vec<i64> = with_read!(db, conn, {
        sqlx::query_scalar(&format!(
            "select distinct task_id from annotation_draft where task_id in ({ids})"
        ))
        .fetch_all(conn)
        .await?
    });
    Ok(found.into_iter().collect())
}
