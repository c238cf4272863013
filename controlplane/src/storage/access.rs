//! The authorization boundary of the storage layer: every repository function that touches a
//! project or workspace loads it through here, with the caller's membership, in one query, and
//! gets it back only if the caller holds the permission. Another organization's objects are
//! not found; a missing permission in one's own organization is a 403 naming it.

use super::{
    Db,
    audit::{self, Outcome, Prepared},
    projects::PROJECT_COLUMNS,
    projects::ProjectRow,
    with_read,
};
use crate::{
    authz::{self, Actor, Permission, ProjectMembership, Role},
    error::{ApiError, ApiResult, ErrorCode},
};

/// A project the caller may act on, with their role in it.
#[derive(Debug, Clone)]
pub struct ProjectAccess {
    /// The project.
    pub row: ProjectRow,
    /// The caller's role in the project.
    pub role: Role,
}

/// A project with the caller's membership facts (what access decisions are made on).
#[derive(sqlx::FromRow)]
pub(crate) struct AccessRow {
    #[sqlx(flatten)]
    row: ProjectRow,
    member_role: Option<String>,
    is_member: bool,
    in_workspace: bool,
    pause_reason: Option<String>,
}

/// Loads a project of the caller's organization and checks `permission` in it. Taking work
/// (`annotation.create`) is refused with `paused` while the caller is paused in the project.
pub async fn project(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    permission: Permission,
) -> ApiResult<ProjectAccess> {
    let found = load(db, actor, By::Project(project_id)).await?;
    let found = found.ok_or_else(|| ApiError::not_found("project"))?;
    check(db, actor, found, permission).await
}

/// [`project`] for the project of a task, in one statement: a task of another organization (or
/// none) is "task not found".
pub async fn project_of_task(
    db: &Db,
    actor: &Actor,
    task_id: i64,
    permission: Permission,
) -> ApiResult<ProjectAccess> {
    let found = load(db, actor, By::Task(task_id)).await?;
    let found = found.ok_or_else(|| ApiError::not_found("task"))?;
    check(db, actor, found, permission).await
}

enum By {
    Project(i64),
    Task(i64),
}

/// The access query: `$1` the project (or task) id, `$2` the user, `$3` the organization.
pub(crate) fn access_sql(by_task: bool) -> String {
    let (from, key) = if by_task {
        ("task t join project p on p.id = t.project_id", "t.id")
    } else {
        ("project p", "p.id")
    };
    format!(
        "select {PROJECT_COLUMNS}, pm.role as member_role, (pm.user_id is not null) as is_member, \
         exists(select 1 from workspace_member wm where wm.workspace_id = p.workspace_id and wm.user_id = $2) as in_workspace, \
         (select pp.verbose_reason from project_pause pp where pp.project_id = p.id and pp.user_id = $2 \
          and pp.deleted_at is null order by pp.id desc limit 1) as pause_reason \
         from {from} left join app_user u on u.id = p.created_by \
         left join project_member pm on pm.project_id = p.id and pm.user_id = $2 \
         where {key} = $1 and p.organization_id = $3"
    )
}

/// Checks access again inside a write transaction (after the project lock), so a pause or a
/// removal that committed after the first check but before the write is not missed. Errors
/// roll the transaction back; refusals here are not audited again.
#[macro_export]
macro_rules! recheck_project_access {
    ($tx:expr, $actor:expr, $project_id:expr, $permission:expr) => {{
        let found: Option<$crate::storage::access::AccessRow> =
            sqlx::query_as(&$crate::storage::access::access_sql(false))
                .bind($project_id)
                .bind($actor.user_id)
                .bind($actor.org_id)
                .fetch_optional(&mut *$tx)
                .await?;
        match found {
            None => Err($crate::error::ApiError::not_found("project")),
            Some(f) => $crate::storage::access::decide($actor, f, $permission),
        }
    }};
}

async fn load(db: &Db, actor: &Actor, by: By) -> ApiResult<Option<AccessRow>> {
    let (by_task, id) = match by {
        By::Project(id) => (false, id),
        By::Task(id) => (true, id),
    };
    Ok(with_read!(db, conn, {
        sqlx::query_as(&access_sql(by_task))
            .bind(id)
            .bind(actor.user_id)
            .bind(actor.org_id)
            .fetch_optional(conn)
            .await?
    }))
}

/// Checks `permission` on a loaded project; refusals are audited.
async fn check(
    db: &Db,
    actor: &Actor,
    found: AccessRow,
    permission: Permission,
) -> ApiResult<ProjectAccess> {
    let project_id = found.row.id;
    match decide(actor, found, permission) {
        Err(e) if e.code == ErrorCode::Forbidden => {
            Err(denied(db, actor, permission, "project", project_id, e).await)
        }
        other => other,
    }
}

/// The decision on a loaded project: the caller's role in it must hold `permission`, and taking
/// work needs the caller not to be paused.
pub(crate) fn decide(
    actor: &Actor,
    found: AccessRow,
    permission: Permission,
) -> ApiResult<ProjectAccess> {
    let membership = ProjectMembership {
        creator: found.row.created_by == Some(actor.user_id),
        workspace_member: found.in_workspace,
        project_member: found.is_member,
        project_role: found.member_role.as_deref().and_then(Role::parse),
    };
    let role = authz::project_role(actor.role, membership);
    actor.require_in(role, permission)?;
    let role = role.unwrap_or(Role::Annotator);
    if permission == Permission::AnnotationCreate
        && role < Role::Manager
        && let Some(reason) = found.pause_reason
    {
        let why = if reason.is_empty() {
            "a manager paused you in this project".to_string()
        } else {
            reason
        };
        return Err(ApiError::new(
            ErrorCode::Paused,
            format!("you are paused in this project: {why}; ask a project manager to unpause you"),
        ));
    }
    Ok(ProjectAccess {
        row: found.row,
        role,
    })
}

/// Repeats of one refusal (same actor, request, target and permission) within this window are
/// not recorded again.
const DENIED_REPEAT_MICROS: i64 = 10_000_000;

/// Audits a refused attempt to change something (reads are not audited) and passes the error
/// on. The entry is written in its own transaction: the change never happened.
async fn denied(
    db: &Db,
    actor: &Actor,
    permission: Permission,
    target_type: &str,
    target_id: i64,
    error: ApiError,
) -> ApiError {
    let is_read = matches!(
        permission,
        Permission::ProjectView | Permission::WorkspaceView | Permission::OrgView
    );
    if is_read {
        return error;
    }
    let summary = serde_json::json!({"permission": permission.name(), "request": actor.meta.route});
    // The same refusal (actor, request, target) repeated within 10 s is one entry: a member
    // cannot grow the log by retrying a forbidden change in a loop.
    let summary_text = summary.to_string();
    let repeated: ApiResult<Option<i64>> = with_read!(db, conn, {
        sqlx::query_scalar(
            "select id from audit_log where chain_id = $1 and target_type = $2 and target_id = $3 \
             and action = 'access.denied' and actor_id = $4 and summary = $5 and created_at > $6 \
             order by id desc limit 1",
        )
        .bind(actor.org_id)
        .bind(target_type)
        .bind(target_id.to_string())
        .bind(actor.user_id)
        .bind(&summary_text)
        .bind(super::now_micros() - DENIED_REPEAT_MICROS)
        .fetch_optional(conn)
        .await
        .map_err(ApiError::from)
    });
    match repeated {
        Ok(Some(_)) => return error,
        Ok(None) => {}
        Err(e) => return e,
    }
    let entry = Prepared::new(actor, "access.denied", target_type, target_id, summary)
        .outcome(Outcome::Denied);
    match audit::record(db, entry).await {
        Ok(()) => error,
        Err(e) => e,
    }
}

/// SQL condition (over `project p`) selecting the projects the caller can see. Binds nothing:
/// the user id is an integer from the authenticated actor.
pub fn visible_projects(actor: &Actor) -> String {
    let u = actor.user_id;
    match actor.role {
        Role::Owner | Role::Admin => "true".into(),
        Role::Manager => format!(
            "(p.created_by = {u} \
             or exists(select 1 from workspace_member wm where wm.workspace_id = p.workspace_id and wm.user_id = {u}) \
             or exists(select 1 from project_member pm where pm.project_id = p.id and pm.user_id = {u}))"
        ),
        Role::Reviewer | Role::Annotator => format!(
            "(exists(select 1 from workspace_member wm where wm.workspace_id = p.workspace_id and wm.user_id = {u}) \
             or exists(select 1 from project_member pm where pm.project_id = p.id and pm.user_id = {u}))"
        ),
    }
}

/// A workspace row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkspaceRow {
    /// Id.
    pub id: i64,
    /// Organization.
    pub organization_id: i64,
    /// Key used by the admin API (the custom resource's name).
    pub key: Option<String>,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Color.
    pub color: String,
    /// Personal sandbox.
    pub is_personal: bool,
    /// Archived.
    pub is_archived: bool,
    /// Owning custom resource.
    pub managed_by: Option<String>,
    /// Creator.
    pub created_by: Option<i64>,
    /// Created (micros).
    pub created_at: i64,
    /// Updated (micros).
    pub updated_at: i64,
}

/// Columns of [`WorkspaceRow`] (alias `w`).
pub const WORKSPACE_COLUMNS: &str = "w.id, w.organization_id, w.key, w.title, w.description, w.color, \
     w.is_personal, w.is_archived, w.managed_by, w.created_by, w.created_at, w.updated_at";

#[derive(sqlx::FromRow)]
struct WorkspaceAccessRow {
    #[sqlx(flatten)]
    row: WorkspaceRow,
    is_member: bool,
}

/// A workspace the caller may act on, with their role in it.
#[derive(Debug, Clone)]
pub struct WorkspaceAccess {
    /// The workspace.
    pub row: WorkspaceRow,
    /// The caller's role in it.
    pub role: Role,
}

/// Loads a workspace of the caller's organization and checks `permission` in it.
pub async fn workspace(
    db: &Db,
    actor: &Actor,
    workspace_id: i64,
    permission: Permission,
) -> ApiResult<WorkspaceAccess> {
    let found: Option<WorkspaceAccessRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {WORKSPACE_COLUMNS}, \
             exists(select 1 from workspace_member m where m.workspace_id = w.id and m.user_id = $2) as is_member \
             from workspace w where w.id = $1 and w.organization_id = $3"
        ))
        .bind(workspace_id)
        .bind(actor.user_id)
        .bind(actor.org_id)
        .fetch_optional(conn)
        .await?
    });
    let found = found.ok_or_else(|| ApiError::not_found("workspace"))?;
    let role = authz::workspace_role(actor.role, found.is_member);
    if let Err(e) = actor.require_in(role, permission) {
        return Err(denied(db, actor, permission, "workspace", workspace_id, e).await);
    }
    Ok(WorkspaceAccess {
        row: found.row,
        role: role.unwrap_or(Role::Annotator),
    })
}
