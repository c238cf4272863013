//! Project members, their project roles, and pauses. A project role (annotator or reviewer)
//! applies in that project independently of the member's organization role. A paused member
//! gets no tasks and cannot submit until a manager removes the pause.

use serde::Serialize;
use serde_json::json;

use super::{
    Db, access,
    audit::{Prepared, audit},
    format_micros, now_micros,
    users::{MEMBER_COLUMNS, MemberRow, UserView},
    with_read, with_tx,
    workspaces::check_users,
};
use crate::{
    authz::{Actor, Permission, Role},
    error::{ApiError, ApiResult, ErrorCode},
};

/// A project member.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProjectMemberView {
    /// The user.
    pub user: UserView,
    /// The project role (`annotator` or `reviewer`), or null to follow the organization role.
    pub role: Option<String>,
    /// Whether the member is paused in this project.
    pub paused: bool,
}

#[derive(sqlx::FromRow)]
struct Row {
    #[sqlx(flatten)]
    member: MemberRow,
    project_role: Option<String>,
    paused: bool,
}

/// The project's members.
pub async fn list(db: &Db, actor: &Actor, project_id: i64) -> ApiResult<Vec<ProjectMemberView>> {
    access::project(db, actor, project_id, Permission::ProjectView).await?;
    let rows: Vec<Row> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {MEMBER_COLUMNS}, pm.role as project_role, \
             exists(select 1 from project_pause pp where pp.project_id = pm.project_id and pp.user_id = u.id and pp.deleted_at is null) as paused \
             from project_member pm join app_user u on u.id = pm.user_id \
             join org_member m on m.user_id = u.id and m.organization_id = $2 where pm.project_id = $1 order by u.id"
        ))
        .bind(project_id)
        .bind(actor.org_id)
        .fetch_all(conn)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|r| {
            let (u, role) = r.member.split();
            ProjectMemberView {
                user: u.view(role),
                role: r.project_role,
                paused: r.paused,
            }
        })
        .collect())
}

/// Parses a project role: `annotator`/`reviewer` (or `AN`/`RE`), or null to follow the
/// organization role.
pub fn parse_project_role(value: Option<&serde_json::Value>) -> ApiResult<Option<Role>> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => match Role::parse(s) {
            Some(r) if r.is_project_role() => Ok(Some(r)),
            _ => Err(ApiError::field(
                ErrorCode::ValidationError,
                "role",
                format!("{s:?} is not a project role; use annotator or reviewer"),
            )),
        },
        Some(_) => Err(ApiError::field(
            ErrorCode::ValidationError,
            "role",
            "must be annotator, reviewer or null",
        )),
    }
}

/// Adds members (or sets their project role when they are members already), all or none.
pub async fn add(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    user_ids: &[i64],
    role: Option<Role>,
) -> ApiResult<()> {
    access::project(db, actor, project_id, Permission::MemberManage).await?;
    if role.is_some() && super::saml::roles_managed_by_idp(db, actor.org_id).await? {
        return Err(super::saml::managed_by_idp());
    }
    check_users(db, actor, user_ids).await?;
    let now = now_micros();
    with_tx!(db, tx, {
        for user in user_ids {
            sqlx::query(
                "insert into project_member (project_id, user_id, role, created_at) values ($1, $2, $3, $4) \
                 on conflict (project_id, user_id) do update set role = excluded.role",
            )
            .bind(project_id)
            .bind(user)
            .bind(role.map(Role::as_str))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        audit!(
            tx,
            Prepared::new(
                actor,
                "project.members.add",
                "project",
                project_id,
                json!({"users": user_ids, "role": role.map(Role::as_str)}),
            )
        );
        Ok::<_, ApiError>(())
    })
}

/// Removes members, all or none (absent users are ignored).
pub async fn remove(db: &Db, actor: &Actor, project_id: i64, user_ids: &[i64]) -> ApiResult<()> {
    access::project(db, actor, project_id, Permission::MemberManage).await?;
    check_users(db, actor, user_ids).await?;
    let dialect = db.dialect();
    with_tx!(db, tx, {
        // Serialized with the writes that check membership (the label stream, annotations).
        crate::storage::annotations::lock_project!(tx, dialect, project_id);
        for user in user_ids {
            sqlx::query("delete from project_member where project_id = $1 and user_id = $2")
                .bind(project_id)
                .bind(user)
                .execute(&mut *tx)
                .await?;
            // Their task assignments go with the membership (ADR 0039): added again, they
            // start without assignments rather than with stale ones.
            sqlx::query("delete from task_assignment where project_id = $1 and user_id = $2")
                .bind(project_id)
                .bind(user)
                .execute(&mut *tx)
                .await?;
        }
        audit!(
            tx,
            Prepared::new(
                actor,
                "project.members.remove",
                "project",
                project_id,
                json!({"users": user_ids})
            )
        );
        Ok::<_, ApiError>(())
    })
}

/// A pause of a member in a project.
#[derive(Debug, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct PauseView {
    /// Id.
    pub id: i64,
    /// Project.
    pub project: i64,
    /// Paused user.
    pub user: i64,
    /// `MANUAL` (automatic reasons come with quality workflows).
    pub reason: String,
    /// The message the paused member sees.
    pub verbose_reason: String,
    /// Who paused them.
    pub paused_by: Option<i64>,
    /// ISO creation time.
    #[serde(skip)]
    pub created_at: i64,
    /// When the pause was lifted (micros), if it was.
    #[serde(skip)]
    pub deleted_at: Option<i64>,
}

impl PauseView {
    /// JSON with ISO times.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let serde_json::Value::Object(m) = &mut v {
            m.insert("created_at".into(), json!(format_micros(self.created_at)));
            m.insert(
                "deleted_at".into(),
                json!(self.deleted_at.map(format_micros)),
            );
        }
        v
    }
}

const PAUSE_COLUMNS: &str = "id, project_id as project, user_id as user, reason, verbose_reason, paused_by, created_at, deleted_at";

/// The pauses of a member in a project (lifted ones too when `include_deleted`).
pub async fn pauses(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    user_id: i64,
    include_deleted: bool,
) -> ApiResult<Vec<PauseView>> {
    access::project(db, actor, project_id, Permission::MemberManage).await?;
    check_users(db, actor, &[user_id]).await?;
    let cond = if include_deleted {
        ""
    } else {
        " and deleted_at is null"
    };
    Ok(with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {PAUSE_COLUMNS} from project_pause where project_id = $1 and user_id = $2{cond} order by id"
        ))
        .bind(project_id)
        .bind(user_id)
        .fetch_all(conn)
        .await?
    }))
}

/// Records a pause of `$user` in `$project` inside a write transaction (the project locked) and
/// releases their reservations, so others can take those tasks; evaluates to the pause's id.
/// `$paused_by` is null for the automatic pauses of ADR 0037.
#[macro_export]
macro_rules! record_pause {
    ($tx:expr, $project:expr, $user:expr, $reason:expr, $verbose:expr, $paused_by:expr, $now:expr) => {{
        let id: i64 = sqlx::query_scalar(
            "insert into project_pause (project_id, user_id, reason, verbose_reason, paused_by, created_at) \
             values ($1, $2, $3, $4, $5, $6) returning id",
        )
        .bind($project)
        .bind($user)
        .bind($reason)
        .bind($verbose)
        .bind($paused_by)
        .bind($now)
        .fetch_one(&mut *$tx)
        .await?;
        sqlx::query(
            "delete from task_lock where user_id = $1 and task_id in (select id from task where project_id = $2)",
        )
        .bind($user)
        .bind($project)
        .execute(&mut *$tx)
        .await?;
        id
    }};
}

/// Pauses a member in a project: from now on they get no tasks and cannot submit.
pub async fn pause(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    user_id: i64,
    reason: &str,
    verbose_reason: &str,
) -> ApiResult<PauseView> {
    access::project(db, actor, project_id, Permission::MemberManage).await?;
    check_users(db, actor, &[user_id]).await?;
    let reason = reason.trim().to_ascii_uppercase();
    if reason != "MANUAL" {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "reason",
            "only MANUAL pauses can be created through the API",
        ));
    }
    if verbose_reason.chars().count() > 2000 {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "verbose_reason",
            "at most 2000 characters",
        ));
    }
    let now = now_micros();
    let dialect = db.dialect();
    let id: i64 = with_tx!(db, tx, {
        // Serialized with the writes that check pauses (the label stream, annotations).
        crate::storage::annotations::lock_project!(tx, dialect, project_id);
        let id: i64 = record_pause!(
            tx,
            project_id,
            user_id,
            &reason,
            verbose_reason,
            Some(actor.user_id),
            now
        );
        audit!(
            tx,
            Prepared::new(
                actor,
                "project.members.pause",
                "user",
                user_id,
                json!({"project": project_id, "pause": id, "reason": reason, "verbose_reason": verbose_reason}),
            )
        );
        Ok::<_, ApiError>(id)
    })?;
    let rows = pauses(db, actor, project_id, user_id, true).await?;
    rows.into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| ApiError::internal("pause vanished"))
}

/// One pause of a member (lifted ones too).
pub async fn get_pause(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    user_id: i64,
    pause_id: i64,
) -> ApiResult<PauseView> {
    pauses(db, actor, project_id, user_id, true)
        .await?
        .into_iter()
        .find(|p| p.id == pause_id)
        .ok_or_else(|| ApiError::not_found("pause"))
}

/// Changes the message (or reason) of an active pause.
pub async fn update_pause(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    user_id: i64,
    pause_id: i64,
    verbose_reason: Option<&str>,
) -> ApiResult<PauseView> {
    let current = get_pause(db, actor, project_id, user_id, pause_id).await?;
    if current.deleted_at.is_some() {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "this pause was lifted; create a new one",
        ));
    }
    let Some(text) = verbose_reason else {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "verbose_reason",
            "give the new message (only the message of a pause can change)",
        ));
    };
    {
        if text.chars().count() > 2000 {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "verbose_reason",
                "at most 2000 characters",
            ));
        }
        with_tx!(db, tx, {
            sqlx::query("update project_pause set verbose_reason = $1 where id = $2")
                .bind(text)
                .bind(pause_id)
                .execute(&mut *tx)
                .await?;
            audit!(
                tx,
                Prepared::new(
                    actor,
                    "project.members.pause_update",
                    "user",
                    user_id,
                    json!({"project": project_id, "pause": pause_id, "verbose_reason": text}),
                )
            );
            Ok::<_, ApiError>(())
        })?;
    }
    get_pause(db, actor, project_id, user_id, pause_id).await
}

/// Lifts a pause (kept, marked deleted, for the record).
pub async fn unpause(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    user_id: i64,
    pause_id: i64,
) -> ApiResult<()> {
    access::project(db, actor, project_id, Permission::MemberManage).await?;
    with_tx!(db, tx, {
        let done = sqlx::query(
            "update project_pause set deleted_at = $1 where id = $2 and project_id = $3 and user_id = $4 and deleted_at is null",
        )
        .bind(now_micros())
        .bind(pause_id)
        .bind(project_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(ApiError::not_found("pause"));
        }
        audit!(
            tx,
            Prepared::new(
                actor,
                "project.members.unpause",
                "user",
                user_id,
                json!({"project": project_id, "pause": pause_id}),
            )
        );
        Ok::<_, ApiError>(())
    })
}
