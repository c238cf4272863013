//! Workspaces: groups of projects with members. A Manager manages the workspaces they belong
//! to; Owners and Admins manage all of them. Members of a workspace reach its projects.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{
    Db,
    access::{self, WORKSPACE_COLUMNS, WorkspaceRow},
    audit::{Prepared, audit},
    format_micros, now_micros,
    users::{MEMBER_COLUMNS, MemberRow, UserView},
    with_read, with_tx,
};
use crate::{
    authz::{Actor, Permission, Role},
    body,
    error::{ApiError, ApiResult, ErrorCode},
};

/// The workspace JSON (Label Studio Enterprise's shape).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkspaceView {
    /// Id.
    pub id: i64,
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
    /// Creator.
    pub created_by: Option<i64>,
    /// ISO creation time.
    pub created_at: String,
    /// ISO update time.
    pub updated_at: String,
    /// Projects in the workspace.
    pub projects_count: i64,
    /// Members of the workspace.
    pub members_count: i64,
    /// The custom resource that declares the workspace, if any.
    pub managed_by: Option<String>,
    /// Admin-API key (the custom resource's name), if any.
    pub key: Option<String>,
}

#[derive(sqlx::FromRow)]
struct CountedRow {
    #[sqlx(flatten)]
    row: WorkspaceRow,
    projects_count: i64,
    members_count: i64,
}

fn view(r: CountedRow) -> WorkspaceView {
    WorkspaceView {
        id: r.row.id,
        title: r.row.title,
        description: r.row.description,
        color: r.row.color,
        is_personal: r.row.is_personal,
        is_archived: r.row.is_archived,
        created_by: r.row.created_by,
        created_at: format_micros(r.row.created_at),
        updated_at: format_micros(r.row.updated_at),
        projects_count: r.projects_count,
        members_count: r.members_count,
        managed_by: r.row.managed_by,
        key: r.row.key,
    }
}

fn counted_sql(condition: &str) -> String {
    format!(
        "select {WORKSPACE_COLUMNS}, \
         (select count(*) from project p where p.workspace_id = w.id) as projects_count, \
         (select count(*) from workspace_member m where m.workspace_id = w.id) as members_count \
         from workspace w where w.organization_id = $1 and {condition}"
    )
}

/// The workspaces the caller can see: all for Owners and Admins, their own for everyone else.
pub async fn list(db: &Db, actor: &Actor, archived: Option<bool>) -> ApiResult<Vec<WorkspaceView>> {
    let mut cond = match actor.role {
        Role::Owner | Role::Admin => "true".to_string(),
        _ => format!(
            "exists(select 1 from workspace_member m where m.workspace_id = w.id and m.user_id = {})",
            actor.user_id
        ),
    };
    match archived {
        Some(true) => cond.push_str(" and w.is_archived"),
        Some(false) => cond.push_str(" and not w.is_archived"),
        None => {}
    }
    let rows: Vec<CountedRow> = with_read!(db, conn, {
        sqlx::query_as(&format!("{} order by w.id", counted_sql(&cond)))
            .bind(actor.org_id)
            .fetch_all(conn)
            .await?
    });
    Ok(rows.into_iter().map(view).collect())
}

/// One workspace.
pub async fn get(db: &Db, actor: &Actor, id: i64) -> ApiResult<WorkspaceView> {
    access::workspace(db, actor, id, Permission::WorkspaceView).await?;
    get_unchecked(db, actor.org_id, id).await
}

pub(crate) async fn get_unchecked(db: &Db, org_id: i64, id: i64) -> ApiResult<WorkspaceView> {
    let row: Option<CountedRow> = with_read!(db, conn, {
        sqlx::query_as(&counted_sql("w.id = $2"))
            .bind(org_id)
            .bind(id)
            .fetch_optional(conn)
            .await?
    });
    row.map(view)
        .ok_or_else(|| ApiError::not_found("workspace"))
}

/// Creates a workspace; the creator becomes its first member (so a Manager manages it).
pub async fn create(db: &Db, actor: &Actor, body: &Map<String, Value>) -> ApiResult<WorkspaceView> {
    actor.require(Permission::WorkspaceCreate)?;
    let title = body::opt_text(body, "title", 1000)?.unwrap_or_default();
    if title.trim().is_empty() {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "title",
            "a workspace needs a title",
        ));
    }
    let description = body::opt_text(body, "description", 10_000)?.unwrap_or_default();
    let color = body::opt_text(body, "color", 16)?.unwrap_or_default();
    let personal = body::opt_bool(body, "is_personal")?.unwrap_or(false);
    let now = now_micros();
    let id: i64 = with_tx!(db, tx, {
        let id: i64 = sqlx::query_scalar(
            "insert into workspace (organization_id, title, description, color, is_personal, created_by, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $7) returning id",
        )
        .bind(actor.org_id)
        .bind(&title)
        .bind(&description)
        .bind(&color)
        .bind(personal)
        .bind(actor.user_id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "insert into workspace_member (workspace_id, user_id, created_at) values ($1, $2, $3)",
        )
        .bind(id)
        .bind(actor.user_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "workspace.create",
                "workspace",
                id,
                json!({"title": title})
            )
        );
        Ok::<_, ApiError>(id)
    })?;
    get_unchecked(db, actor.org_id, id).await
}

fn refuse_managed(row: &WorkspaceRow, fields: &[&str]) -> ApiResult<()> {
    match &row.managed_by {
        Some(owner) if !fields.is_empty() => Err(ApiError::new(
            ErrorCode::ManagedByGit,
            format!(
                "{} of this workspace {} declared by the custom resource {owner} and owned by Git; change the resource instead",
                fields.join(", "),
                if fields.len() == 1 { "is" } else { "are" }
            ),
        )),
        _ => Ok(()),
    }
}

/// Changes title, description, color or the archived flag.
pub async fn update(
    db: &Db,
    actor: &Actor,
    id: i64,
    body: &Map<String, Value>,
) -> ApiResult<WorkspaceView> {
    let ws = access::workspace(db, actor, id, Permission::WorkspaceManage).await?;
    let title = body::opt_text(body, "title", 1000)?;
    if title.as_deref().is_some_and(|t| t.trim().is_empty()) {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "title",
            "a workspace needs a title",
        ));
    }
    let description = body::opt_text(body, "description", 10_000)?;
    let color = body::opt_text(body, "color", 16)?;
    let archived = body::opt_bool(body, "is_archived")?;
    let changed: Vec<&str> = [
        ("title", title.as_ref().is_some_and(|v| *v != ws.row.title)),
        (
            "description",
            description
                .as_ref()
                .is_some_and(|v| *v != ws.row.description),
        ),
        (
            "is_archived",
            archived.is_some_and(|v| v != ws.row.is_archived),
        ),
    ]
    .into_iter()
    .filter_map(|(k, c)| c.then_some(k))
    .collect();
    refuse_managed(&ws.row, &changed)?;
    with_tx!(db, tx, {
        sqlx::query(
            "update workspace set title = coalesce($1, title), description = coalesce($2, description), \
             color = coalesce($3, color), is_archived = coalesce($4, is_archived), updated_at = $5 where id = $6",
        )
        .bind(&title)
        .bind(&description)
        .bind(&color)
        .bind(archived)
        .bind(now_micros())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "workspace.update",
                "workspace",
                id,
                json!({"fields": body.keys().collect::<Vec<_>>()})
            )
        );
        Ok::<_, ApiError>(())
    })?;
    get_unchecked(db, actor.org_id, id).await
}

/// Deletes an empty workspace (move or delete its projects first).
pub async fn delete(db: &Db, actor: &Actor, id: i64) -> ApiResult<()> {
    let ws = access::workspace(db, actor, id, Permission::WorkspaceManage).await?;
    refuse_managed(&ws.row, &["the workspace itself"])?;
    with_tx!(db, tx, {
        let projects: i64 =
            sqlx::query_scalar("select count(*) from project where workspace_id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        if projects > 0 {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("the workspace still has {projects} project(s); move or delete them first"),
            ));
        }
        sqlx::query("delete from workspace where id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "workspace.delete",
                "workspace",
                id,
                json!({"title": ws.row.title})
            )
        );
        Ok::<_, ApiError>(())
    })
}

/// A workspace member.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkspaceMemberView {
    /// The user.
    pub user: UserView,
}

/// The workspace's members.
pub async fn members(db: &Db, actor: &Actor, id: i64) -> ApiResult<Vec<WorkspaceMemberView>> {
    access::workspace(db, actor, id, Permission::WorkspaceView).await?;
    let rows: Vec<MemberRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {MEMBER_COLUMNS} from workspace_member wm join app_user u on u.id = wm.user_id \
             join org_member m on m.user_id = u.id and m.organization_id = $2 where wm.workspace_id = $1 order by u.id"
        ))
        .bind(id)
        .bind(actor.org_id)
        .fetch_all(conn)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|r| {
            let (u, role) = r.split();
            WorkspaceMemberView { user: u.view(role) }
        })
        .collect())
}

/// Adds (`add = true`) or removes members, all or none. Every user must belong to the
/// organization; adding someone already there and removing someone absent are no-ops.
pub async fn set_members(
    db: &Db,
    actor: &Actor,
    id: i64,
    user_ids: &[i64],
    add: bool,
) -> ApiResult<usize> {
    access::workspace(db, actor, id, Permission::WorkspaceManage).await?;
    check_users(db, actor, user_ids).await?;
    let now = now_micros();
    with_tx!(db, tx, {
        let mut changed = 0usize;
        for user in user_ids {
            let done = if add {
                sqlx::query(
                    "insert into workspace_member (workspace_id, user_id, created_at) values ($1, $2, $3) on conflict do nothing",
                )
                .bind(id)
                .bind(user)
                .bind(now)
                .execute(&mut *tx)
                .await?
            } else {
                sqlx::query("delete from workspace_member where workspace_id = $1 and user_id = $2")
                    .bind(id)
                    .bind(user)
                    .execute(&mut *tx)
                    .await?
            };
            changed += done.rows_affected() as usize;
        }
        audit!(
            tx,
            Prepared::new(
                actor,
                if add {
                    "workspace.members.add"
                } else {
                    "workspace.members.remove"
                },
                "workspace",
                id,
                json!({"users": user_ids, "changed": changed}),
            )
        );
        Ok::<_, ApiError>(changed)
    })
}

/// Checks that every id names a member of the actor's organization (404 naming the first that
/// does not, without saying whether it exists elsewhere).
pub async fn check_users(db: &Db, actor: &Actor, user_ids: &[i64]) -> ApiResult<()> {
    if user_ids.is_empty() {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "users",
            "name at least one user",
        ));
    }
    if user_ids.len() > 1000 {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "users",
            "at most 1000 users per request",
        ));
    }
    let list = user_ids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let found: Vec<i64> = with_read!(db, conn, {
        sqlx::query_scalar(&format!(
            "select user_id from org_member where organization_id = $1 and user_id in ({list})"
        ))
        .bind(actor.org_id)
        .fetch_all(conn)
        .await?
    });
    if let Some(missing) = user_ids.iter().find(|u| !found.contains(u)) {
        return Err(ApiError::field(
            ErrorCode::NotFound,
            "users",
            format!("user {missing} is not a member of this organization"),
        ));
    }
    Ok(())
}

/// Moves projects into (`add`) or out of the workspace. Moving a project in needs
/// `project.change` on it as well.
pub async fn set_projects(
    db: &Db,
    actor: &Actor,
    id: i64,
    project_ids: &[i64],
    add: bool,
) -> ApiResult<()> {
    access::workspace(db, actor, id, Permission::WorkspaceManage).await?;
    if project_ids.is_empty() {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "projects",
            "name at least one project",
        ));
    }
    for p in project_ids {
        let project = access::project(db, actor, *p, Permission::ProjectChange).await?;
        if !add && project.row.workspace_id != Some(id) {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "project",
                format!("project {p} is not in this workspace"),
            ));
        }
    }
    with_tx!(db, tx, {
        for p in project_ids {
            sqlx::query(
                "update project set workspace_id = $1 where id = $2 and organization_id = $3",
            )
            .bind(if add { Some(id) } else { None })
            .bind(p)
            .bind(actor.org_id)
            .execute(&mut *tx)
            .await?;
        }
        audit!(
            tx,
            Prepared::new(
                actor,
                if add {
                    "workspace.projects.add"
                } else {
                    "workspace.projects.remove"
                },
                "workspace",
                id,
                json!({"projects": project_ids}),
            )
        );
        Ok::<_, ApiError>(())
    })
}

/// The projects of a workspace the caller can see.
pub async fn projects(
    db: &Db,
    actor: &Actor,
    id: i64,
) -> ApiResult<Vec<super::projects::ProjectView>> {
    access::workspace(db, actor, id, Permission::WorkspaceView).await?;
    let filter = super::projects::ProjectFilter {
        workspaces: Some(vec![id]),
        ..Default::default()
    };
    Ok(super::projects::list(db, actor, &filter, 0, 10_000)
        .await?
        .1)
}
