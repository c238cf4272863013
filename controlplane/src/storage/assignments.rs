//! Task assignments (ADR 0039), Label Studio Enterprise's manual distribution: a manager assigns
//! tasks to annotators (`AN`, the label stream of an `assigned_only` project) and to reviewers
//! (`RE`, the review stream with `review_settings.review_only_manual_assignments`). This module
//! owns the `task_assignment` rows; it never decides what a stream hands out (that is
//! [`super::tasks::next`] and [`super::reviews::next`], which read the rows).

use serde::Serialize;
use serde_json::json;

use super::{
    Db, access,
    audit::{Prepared, audit},
    format_micros, now_micros, with_read, with_tx,
};
use crate::{
    authz::{self, Actor, Permission, ProjectMembership, Role},
    error::{ApiError, ApiResult, ErrorCode},
};

/// Tasks per statement when a selection is assigned or unassigned.
const BATCH: usize = 500;
/// Most users one request may name.
const MAX_USERS: usize = 1000;
/// Task ids an audit entry names at most.
const AUDIT_IDS: usize = 100;

/// What an assignment is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Annotate (`AN`): the label stream.
    Annotate,
    /// Review (`RE`): the review stream.
    Review,
}

impl Kind {
    /// Parses `AN` or `RE` (the wire values); `field` names the parameter in the error.
    pub fn parse(value: Option<&str>, field: &str) -> ApiResult<Kind> {
        match value {
            Some("AN") => Ok(Kind::Annotate),
            Some("RE") => Ok(Kind::Review),
            Some(other) => Err(ApiError::field(
                ErrorCode::ValidationError,
                field,
                format!("{other:?} is not an assignment type; use AN (annotate) or RE (review)"),
            )),
            None => Err(ApiError::field(
                ErrorCode::ValidationError,
                field,
                "this field is required: AN (annotate) or RE (review)",
            )),
        }
    }

    /// The wire and stored value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Annotate => "AN",
            Kind::Review => "RE",
        }
    }

    /// The least project role that may hold an assignment of this kind.
    fn minimum_role(self) -> Role {
        match self {
            Kind::Annotate => Permission::AnnotationCreate.minimum_role(),
            Kind::Review => Permission::ReviewCreate.minimum_role(),
        }
    }
}

/// One assignment, as Label Studio Enterprise's `TaskAssignment`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AssignmentView {
    /// Id.
    pub id: i64,
    /// The task.
    pub task: i64,
    /// The assigned user.
    pub assignee: i64,
    /// `AN` (annotate) or `RE` (review).
    #[serde(rename = "type")]
    pub kind: String,
    /// When it was made (ISO).
    pub created_at: String,
    /// Where the assignee is with the task, read from their latest annotation of it or review
    /// of its annotations: `AN` `assigned`, `in_progress`, `submitted` or `skipped`; `RE`
    /// `assigned`, `accepted` or `rejected`.
    pub state: String,
}

/// SQL expression over assignment `ta` (binding nothing): the assignment's state, from the
/// assignee's latest annotation of the task (`AN`) or latest review of one of its annotations
/// (`RE`); `assigned` while there is none. Derived on read, so it never disagrees with the
/// annotations and reviews it describes (ADR 0041).
pub const STATE_SQL: &str = "coalesce(case when ta.type = 'AN' then \
    (select case when a.was_cancelled then 'skipped' when a.result is null then 'in_progress' \
     else 'submitted' end from annotation a where a.task_id = ta.task_id and a.completed_by = ta.user_id \
     order by a.id desc limit 1) \
    else (select case when rv.accepted then 'accepted' else 'rejected' end from annotation_review rv \
     where rv.task_id = ta.task_id and rv.created_by = ta.user_id order by rv.id desc limit 1) end, 'assigned')";

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    task_id: i64,
    user_id: i64,
    #[sqlx(rename = "type")]
    kind: String,
    created_at: i64,
    state: String,
}

impl Row {
    fn view(self) -> AssignmentView {
        AssignmentView {
            id: self.id,
            task: self.task_id,
            assignee: self.user_id,
            kind: self.kind,
            created_at: format_micros(self.created_at),
            state: self.state,
        }
    }
}

/// How a request changes the assignments of its tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Add the users (those assigned already stay as they are).
    Add,
    /// The users become the task's only assignees of the kind.
    Replace,
}

/// The assignments of one task of the project.
pub async fn list(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    task_id: i64,
) -> ApiResult<Vec<AssignmentView>> {
    access::project(db, actor, project_id, Permission::TaskManage).await?;
    task_of_project(db, project_id, task_id).await?;
    of_task(db, task_id, None).await
}

/// The assignments of a task (of one kind, or all), by kind and user.
async fn of_task(db: &Db, task_id: i64, kind: Option<Kind>) -> ApiResult<Vec<AssignmentView>> {
    let rows: Vec<Row> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select ta.id, ta.task_id, ta.user_id, ta.type, ta.created_at, {STATE_SQL} as state \
             from task_assignment ta where ta.task_id = $1 and ($2 = '' or ta.type = $2) \
             order by ta.type, ta.user_id"
        ))
        .bind(task_id)
        .bind(kind.map_or("", Kind::as_str))
        .fetch_all(conn)
        .await?
    });
    Ok(rows.into_iter().map(Row::view).collect())
}

/// Assigns `users` to one task of the project; answers the task's assignments of the kind.
pub async fn assign_task(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    task_id: i64,
    kind: Kind,
    users: &[i64],
    change: Change,
) -> ApiResult<Vec<AssignmentView>> {
    access::project(db, actor, project_id, Permission::TaskManage).await?;
    task_of_project(db, project_id, task_id).await?;
    assign(db, actor, project_id, &[task_id], kind, users, change).await?;
    of_task(db, task_id, Some(kind)).await
}

/// Assigns `users` to the tasks `task_ids` of the project (ids the caller has selected from
/// the project), all or nothing: every user must be a member whose project role may do the
/// kind of work. Answers the number of assignments created.
pub async fn assign(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    task_ids: &[i64],
    kind: Kind,
    users: &[i64],
    change: Change,
) -> ApiResult<u64> {
    let project = access::project(db, actor, project_id, Permission::TaskManage)
        .await?
        .row;
    check_user_list(users)?;
    let dialect = db.dialect();
    let now = now_micros();
    let user_list = id_list(users);
    with_tx!(db, tx, {
        // Serialized with member changes, so a removal cannot slip between check and write.
        crate::storage::annotations::lock_project!(tx, dialect, project_id);
        let facts: Vec<(i64, String, Option<String>, bool, bool)> = sqlx::query_as(&format!(
            "select m.user_id, m.role, pm.role, (pm.user_id is not null), \
             exists(select 1 from workspace_member wm where wm.workspace_id = $2 and wm.user_id = m.user_id) \
             from org_member m left join project_member pm on pm.project_id = $3 and pm.user_id = m.user_id \
             where m.organization_id = $1 and m.deactivated_at is null and m.user_id in ({user_list})"
        ))
        .bind(actor.org_id)
        .bind(project.workspace_id)
        .bind(project_id)
        .fetch_all(&mut *tx)
        .await?;
        for user in users {
            let role = facts.iter().find(|f| f.0 == *user).and_then(
                |(_, org_role, project_role, is_member, in_workspace)| {
                    let membership = ProjectMembership {
                        creator: project.created_by == Some(*user),
                        workspace_member: *in_workspace,
                        project_member: *is_member,
                        project_role: project_role.as_deref().and_then(Role::parse),
                    };
                    authz::project_role(Role::parse(org_role)?, membership)
                },
            );
            if role.is_none_or(|r| r < kind.minimum_role()) {
                let work = match kind {
                    Kind::Annotate => "annotate",
                    Kind::Review => "review",
                };
                return Err(ApiError::field(
                    ErrorCode::InvalidAssignee,
                    "users",
                    format!(
                        "user {user} is not a member of this project with a role that may {work} \
                         ({} or above); add them to the project first",
                        kind.minimum_role().as_str()
                    ),
                ));
            }
        }
        let mut created = 0u64;
        let mut removed = 0u64;
        for chunk in task_ids.chunks(BATCH) {
            let tasks = id_list(chunk);
            if change == Change::Replace {
                removed += sqlx::query(&format!(
                    "delete from task_assignment where project_id = $1 and type = $2 \
                     and task_id in ({tasks}) and user_id not in ({user_list})"
                ))
                .bind(project_id)
                .bind(kind.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            for user in users {
                created += sqlx::query(&format!(
                    "insert into task_assignment (task_id, project_id, user_id, type, created_by, created_at) \
                     select t.id, t.project_id, $2, $3, $4, $5 from task t where t.project_id = $1 and t.id in ({tasks}) \
                     on conflict (task_id, user_id, type) do nothing"
                ))
                .bind(project_id)
                .bind(user)
                .bind(kind.as_str())
                .bind(actor.user_id)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
        }
        let mut summary = json!({
            "type": kind.as_str(),
            "users": users,
            "replace": change == Change::Replace,
            "tasks": task_ids.len(),
            "created": created,
            "removed": removed,
            "ids": task_ids.iter().take(AUDIT_IDS).collect::<Vec<_>>(),
        });
        if task_ids.len() > AUDIT_IDS {
            summary["ids_truncated"] = json!(true);
        }
        audit!(
            tx,
            Prepared::new(
                actor,
                "task.assignments.add",
                "project",
                project_id,
                summary
            )
        );
        Ok::<_, ApiError>(created)
    })
}

/// Removes assignments of the tasks `task_ids` of the project: of one kind or both, of the
/// given users or everyone. Answers the number removed.
pub async fn unassign(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    task_ids: &[i64],
    kind: Option<Kind>,
    users: Option<&[i64]>,
) -> ApiResult<u64> {
    access::project(db, actor, project_id, Permission::TaskManage).await?;
    if let Some(users) = users {
        check_user_list(users)?;
    }
    let mut condition = String::new();
    if let Some(kind) = kind {
        condition.push_str(&format!(" and type = '{}'", kind.as_str()));
    }
    if let Some(users) = users {
        condition.push_str(&format!(" and user_id in ({})", id_list(users)));
    }
    with_tx!(db, tx, {
        let mut removed = 0u64;
        for chunk in task_ids.chunks(BATCH) {
            removed += sqlx::query(&format!(
                "delete from task_assignment where project_id = $1 and task_id in ({}){condition}",
                id_list(chunk)
            ))
            .bind(project_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        let mut summary = json!({
            "type": kind.map(Kind::as_str),
            "users": users,
            "tasks": task_ids.len(),
            "removed": removed,
            "ids": task_ids.iter().take(AUDIT_IDS).collect::<Vec<_>>(),
        });
        if task_ids.len() > AUDIT_IDS {
            summary["ids_truncated"] = json!(true);
        }
        audit!(
            tx,
            Prepared::new(
                actor,
                "task.assignments.remove",
                "project",
                project_id,
                summary
            )
        );
        Ok::<_, ApiError>(removed)
    })
}

/// Removes one task's assignments (`DELETE …/tasks/{task_pk}/assignees`).
pub async fn unassign_task(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    task_id: i64,
    kind: Option<Kind>,
    users: Option<&[i64]>,
) -> ApiResult<u64> {
    access::project(db, actor, project_id, Permission::TaskManage).await?;
    task_of_project(db, project_id, task_id).await?;
    unassign(db, actor, project_id, &[task_id], kind, users).await
}

/// Whether an annotator of a manually distributed project may read the task: it is assigned
/// to them for annotation, or holds an annotation of theirs.
pub async fn may_read(db: &Db, task_id: i64, user: i64) -> ApiResult<bool> {
    let found: Option<i64> = with_read!(db, conn, {
        sqlx::query_scalar(
            "select task_id from task_assignment where task_id = $1 and user_id = $2 and type = 'AN' \
             union all select task_id from annotation where task_id = $1 and completed_by = $2 \
             limit 1",
        )
        .bind(task_id)
        .bind(user)
        .fetch_optional(conn)
        .await?
    });
    Ok(found.is_some())
}

/// The assignments of tasks with their states, for the task payload (ADR 0057): per task id,
/// by kind and user.
pub async fn of_tasks(
    db: &Db,
    task_ids: &[i64],
) -> ApiResult<std::collections::HashMap<i64, Vec<AssignmentView>>> {
    let mut out: std::collections::HashMap<i64, Vec<AssignmentView>> = Default::default();
    for chunk in task_ids.chunks(BATCH) {
        let rows: Vec<Row> = with_read!(db, conn, {
            sqlx::query_as(&format!(
                "select ta.id, ta.task_id, ta.user_id, ta.type, ta.created_at, {STATE_SQL} as state \
                 from task_assignment ta where ta.task_id in ({}) \
                 order by ta.task_id, ta.type, ta.user_id",
                id_list(chunk)
            ))
            .fetch_all(conn)
            .await?
        });
        for row in rows {
            out.entry(row.task_id).or_default().push(row.view());
        }
    }
    Ok(out)
}

async fn task_of_project(db: &Db, project_id: i64, task_id: i64) -> ApiResult<()> {
    let found: Option<i64> = with_read!(db, conn, {
        sqlx::query_scalar("select id from task where id = $1 and project_id = $2")
            .bind(task_id)
            .bind(project_id)
            .fetch_optional(conn)
            .await?
    });
    found.map(|_| ()).ok_or_else(|| ApiError::not_found("task"))
}

fn check_user_list(users: &[i64]) -> ApiResult<()> {
    if users.is_empty() {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "users",
            "name at least one user id",
        ));
    }
    if users.len() > MAX_USERS {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "users",
            format!("at most {MAX_USERS} users per request"),
        ));
    }
    Ok(())
}

/// Ids as an SQL list (`0` for none, which matches no row).
pub(crate) fn id_list(ids: &[i64]) -> String {
    if ids.is_empty() {
        return "0".into();
    }
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

/// SQL condition over task `t` (binding nothing): the task is assigned to `user` for `kind`.
pub fn assigned_sql(user: i64, kind: Kind) -> String {
    format!(
        "exists (select 1 from task_assignment ta where ta.task_id = t.id and ta.user_id = {user} \
         and ta.type = '{}')",
        kind.as_str()
    )
}
