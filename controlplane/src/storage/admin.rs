//! The instance admin API's repository: organizations addressed by slug, and the workspaces
//! and projects that the operator declares from custom resources, addressed by key (the
//! resource's name). Every call is idempotent, and a call that changes nothing writes nothing
//! (the operator reconciles periodically). Fields the resource declares are recorded as owned
//! by Git; the regular API refuses to change them.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{
    Db,
    access::{WORKSPACE_COLUMNS, WorkspaceRow},
    audit::{Prepared, audit},
    now_micros, projects,
    users::{self, NewUser},
    with_read, with_tx,
};
use crate::{
    authz::{Actor, RequestMeta, Role},
    domain::project::{self as settings_rules, ProjectSettings},
    error::{ApiError, ApiResult, ErrorCode},
};

/// An organization as the admin API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminOrganization {
    /// Id.
    pub id: i64,
    /// Slug.
    pub slug: String,
    /// Title.
    pub title: String,
    /// Owning custom resource.
    pub managed_by: Option<String>,
    /// The owner's API token: only in the response that created the organization.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_token: Option<String>,
}

#[derive(sqlx::FromRow)]
struct OrgRow {
    id: i64,
    slug: Option<String>,
    title: String,
    managed_by: Option<String>,
}

async fn org_by_slug(db: &Db, slug: &str) -> ApiResult<Option<OrgRow>> {
    Ok(with_read!(db, conn, {
        sqlx::query_as("select id, slug, title, managed_by from organization where slug = $1")
            .bind(slug)
            .fetch_optional(conn)
            .await?
    }))
}

/// The organization with this slug.
pub async fn get_organization(db: &Db, slug: &str) -> ApiResult<AdminOrganization> {
    let row = org_by_slug(db, slug)
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;
    Ok(AdminOrganization {
        id: row.id,
        slug: row.slug.unwrap_or_default(),
        title: row.title,
        managed_by: row.managed_by,
        owner_token: None,
    })
}

/// What an organization should look like.
#[derive(Debug, Clone)]
pub struct OrganizationSpec {
    /// Title.
    pub title: String,
    /// Email of the owner created with the organization.
    pub owner_email: String,
    /// Exact owner token (otherwise generated).
    pub owner_token: Option<String>,
    /// Owning custom resource.
    pub managed_by: Option<String>,
}

/// What a declarative call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Created the object.
    Created,
    /// Changed it.
    Updated,
    /// Found it as declared and wrote nothing.
    Unchanged,
}

/// Creates the organization (with its owner) or brings title and owner reference up to date.
pub async fn put_organization(
    db: &Db,
    meta: &RequestMeta,
    slug: &str,
    spec: &OrganizationSpec,
) -> ApiResult<(AdminOrganization, Change)> {
    users::validate_slug(slug)?;
    let owner = NewUser {
        email: spec.owner_email.clone(),
        password: None,
        role: Role::Owner,
        token: spec.owner_token.clone(),
        first_name: String::new(),
        last_name: String::new(),
        username: None,
    };
    if let Some(row) = org_by_slug(db, slug).await? {
        // An organization whose owner could not be made (a failed earlier call) gets one now:
        // repeating the declaration converges.
        let owners: i64 = with_read!(db, conn, {
            sqlx::query_scalar(
                "select count(*) from org_member where organization_id = $1 and role = 'owner' and deactivated_at is null",
            )
            .bind(row.id)
            .fetch_one(conn)
            .await?
        });
        if owners == 0 && !spec.owner_email.trim().is_empty() {
            let by = Actor::instance(row.id, meta.clone());
            let (_, token) = users::create_user_in_org(db, &by, row.id, &owner).await?;
            let mut view = get_organization(db, slug).await?;
            view.owner_token = Some(token);
            return Ok((view, Change::Updated));
        }
        let changed = row.title != spec.title || row.managed_by != spec.managed_by;
        if changed {
            if spec.title.trim().is_empty() {
                return Err(ApiError::field(
                    ErrorCode::ValidationError,
                    "title",
                    "an organization needs a title",
                ));
            }
            let actor = Actor::instance(row.id, meta.clone());
            with_tx!(db, tx, {
                sqlx::query("update organization set title = $1, managed_by = $2, updated_at = $3 where id = $4")
                    .bind(&spec.title)
                    .bind(&spec.managed_by)
                    .bind(now_micros())
                    .bind(row.id)
                    .execute(&mut *tx)
                    .await?;
                audit!(
                    tx,
                    Prepared::new(
                        &actor,
                        "organization.update",
                        "organization",
                        row.id,
                        json!({"title": spec.title, "managed_by": spec.managed_by})
                    )
                );
                Ok::<_, ApiError>(())
            })?;
        }
        let change = if changed {
            Change::Updated
        } else {
            Change::Unchanged
        };
        return Ok((get_organization(db, slug).await?, change));
    }
    if spec.owner_email.trim().is_empty() {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "owner_email",
            "a new organization needs its owner's email",
        ));
    }
    // The owner's fields are checked before the organization exists, so a bad owner does not
    // leave an organization behind.
    users::validate_new_user(&owner)?;
    let org_id = match users::create_organization(
        db,
        &spec.title,
        Some(slug),
        spec.managed_by.as_deref(),
        meta,
    )
    .await
    {
        Ok(id) => id,
        // Two creators raced; the other one won, which is the same outcome.
        Err(e) if e.code == ErrorCode::Conflict => {
            return Ok((get_organization(db, slug).await?, Change::Unchanged));
        }
        Err(e) => return Err(e),
    };
    let by = Actor::instance(org_id, meta.clone());
    let (_, token) = users::create_user_in_org(db, &by, org_id, &owner).await?;
    let mut view = get_organization(db, slug).await?;
    view.owner_token = Some(token);
    Ok((view, Change::Created))
}

async fn org_id(db: &Db, slug: &str) -> ApiResult<i64> {
    Ok(org_by_slug(db, slug)
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?
        .id)
}

/// A workspace as the admin API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminWorkspace {
    /// Id.
    pub id: i64,
    /// Key.
    pub key: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Archived.
    pub is_archived: bool,
    /// Owning custom resource.
    pub managed_by: Option<String>,
}

fn workspace_view(row: WorkspaceRow) -> AdminWorkspace {
    AdminWorkspace {
        id: row.id,
        key: row.key.unwrap_or_default(),
        title: row.title,
        description: row.description,
        is_archived: row.is_archived,
        managed_by: row.managed_by,
    }
}

async fn workspace_by_key(db: &Db, org: i64, key: &str) -> ApiResult<Option<WorkspaceRow>> {
    Ok(with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {WORKSPACE_COLUMNS} from workspace w where w.organization_id = $1 and w.key = $2"
        ))
        .bind(org)
        .bind(key)
        .fetch_optional(conn)
        .await?
    }))
}

/// Creates or updates (and un-archives) the workspace with this key.
pub async fn put_workspace(
    db: &Db,
    meta: &RequestMeta,
    slug: &str,
    key: &str,
    title: &str,
    description: &str,
    managed_by: Option<&str>,
) -> ApiResult<(AdminWorkspace, Change)> {
    users::validate_slug(key).map_err(|_| {
        ApiError::field(
            ErrorCode::ValidationError,
            "key",
            format!("{key:?} is not a valid key: use a lowercase DNS label"),
        )
    })?;
    if title.trim().is_empty() || title.chars().count() > 1000 {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "title",
            "a workspace needs a title of 1 to 1000 characters",
        ));
    }
    let org = org_id(db, slug).await?;
    let actor = Actor::instance(org, meta.clone());
    let current = workspace_by_key(db, org, key).await?;
    let unchanged = current.as_ref().is_some_and(|w| {
        w.title == title
            && w.description == description
            && !w.is_archived
            && w.managed_by.as_deref() == managed_by
    });
    if !unchanged {
        let now = now_micros();
        with_tx!(db, tx, {
            let id: i64 = match &current {
                Some(w) => {
                    sqlx::query(
                        "update workspace set title = $1, description = $2, is_archived = false, managed_by = $3, \
                         updated_at = $4 where id = $5",
                    )
                    .bind(title)
                    .bind(description)
                    .bind(managed_by)
                    .bind(now)
                    .bind(w.id)
                    .execute(&mut *tx)
                    .await?;
                    w.id
                }
                None => {
                    sqlx::query_scalar(
                        "insert into workspace (organization_id, key, title, description, managed_by, created_at, updated_at) \
                         values ($1, $2, $3, $4, $5, $6, $6) returning id",
                    )
                    .bind(org)
                    .bind(key)
                    .bind(title)
                    .bind(description)
                    .bind(managed_by)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?
                }
            };
            audit!(
                tx,
                Prepared::new(
                    &actor,
                    if current.is_some() {
                        "workspace.update"
                    } else {
                        "workspace.create"
                    },
                    "workspace",
                    id,
                    json!({"key": key, "title": title, "managed_by": managed_by}),
                )
            );
            Ok::<_, ApiError>(())
        })?;
    }
    let row = workspace_by_key(db, org, key)
        .await?
        .ok_or_else(|| ApiError::internal("workspace vanished"))?;
    let change = match (&current, unchanged) {
        (_, true) => Change::Unchanged,
        (Some(_), false) => Change::Updated,
        (None, false) => Change::Created,
    };
    Ok((workspace_view(row), change))
}

/// Archives the workspace with this key (its projects stay; idempotent).
pub async fn archive_workspace(
    db: &Db,
    meta: &RequestMeta,
    slug: &str,
    key: &str,
) -> ApiResult<Change> {
    let org = org_id(db, slug).await?;
    let row = workspace_by_key(db, org, key)
        .await?
        .ok_or_else(|| ApiError::not_found("workspace"))?;
    if row.is_archived {
        return Ok(Change::Unchanged);
    }
    let actor = Actor::instance(org, meta.clone());
    with_tx!(db, tx, {
        sqlx::query("update workspace set is_archived = true, updated_at = $1 where id = $2")
            .bind(now_micros())
            .bind(row.id)
            .execute(&mut *tx)
            .await?;
        audit!(
            tx,
            Prepared::new(
                &actor,
                "workspace.archive",
                "workspace",
                row.id,
                json!({"key": key})
            )
        );
        Ok::<_, ApiError>(Change::Updated)
    })
}

/// Progress counters of a project.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProjectCounts {
    /// Tasks.
    pub task_number: i64,
    /// Non-skipped annotations.
    pub total_annotations_number: i64,
    /// Tasks with at least one useful annotation.
    pub num_tasks_with_annotations: i64,
    /// Completed tasks.
    pub finished_task_number: i64,
    /// Predictions.
    pub total_predictions_number: i64,
    /// Completed tasks / tasks (0 when there are none).
    pub completion: f64,
}

/// A project as the admin API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminProject {
    /// Id.
    pub id: i64,
    /// Key.
    pub key: String,
    /// Workspace key.
    pub workspace: Option<String>,
    /// Title.
    pub title: String,
    /// Archived.
    pub is_archived: bool,
    /// Owning custom resource.
    pub managed_by: Option<String>,
    /// Fields owned by that resource.
    pub managed_fields: Vec<String>,
    /// Progress.
    pub counts: ProjectCounts,
}

async fn project_id_by_key(db: &Db, org: i64, key: &str) -> ApiResult<Option<i64>> {
    Ok(with_read!(db, conn, {
        sqlx::query_scalar("select id from project where organization_id = $1 and admin_key = $2")
            .bind(org)
            .bind(key)
            .fetch_optional(conn)
            .await?
    }))
}

async fn project_view(db: &Db, org: i64, id: i64, key: &str) -> ApiResult<AdminProject> {
    let row = projects::load(db, org, id).await?;
    let workspace: Option<String> = match row.workspace_id {
        Some(ws) => with_read!(db, conn, {
            sqlx::query_scalar("select key from workspace where id = $1")
                .bind(ws)
                .fetch_optional(conn)
                .await?
        })
        .flatten(),
        None => None,
    };
    let completion = if row.task_number > 0 {
        row.finished_task_number as f64 / row.task_number as f64
    } else {
        0.0
    };
    Ok(AdminProject {
        id: row.id,
        key: key.to_string(),
        workspace,
        title: row.title.clone(),
        is_archived: row.is_archived,
        managed_by: row.managed_by.clone(),
        managed_fields: row.managed_fields(),
        counts: ProjectCounts {
            task_number: row.task_number,
            total_annotations_number: row.total_annotations_number,
            num_tasks_with_annotations: row.num_tasks_with_annotations,
            finished_task_number: row.finished_task_number,
            total_predictions_number: row.total_predictions_number,
            completion,
        },
    })
}

/// The project with this key, with fresh counters.
pub async fn get_project(db: &Db, slug: &str, key: &str) -> ApiResult<AdminProject> {
    let org = org_id(db, slug).await?;
    let id = project_id_by_key(db, org, key)
        .await?
        .ok_or_else(|| ApiError::not_found("project"))?;
    project_view(db, org, id, key).await
}

/// Fields of a project body that are not settings.
const TOP_FIELDS: [&str; 4] = ["workspace", "title", "label_config", "managed_by"];

/// Creates or updates (and un-archives) the project with this key from a declared body:
/// `workspace` (a workspace key), `title`, optional `label_config`, `description`,
/// `expert_instruction`, `settings` (Label Studio project fields) and `managed_by`. Every field
/// given is recorded as owned by Git.
pub async fn put_project(
    db: &Db,
    sealer: &crate::secrets::Sealer,
    meta: &RequestMeta,
    slug: &str,
    key: &str,
    body: &Map<String, Value>,
) -> ApiResult<(AdminProject, Change)> {
    users::validate_slug(key).map_err(|_| {
        ApiError::field(
            ErrorCode::ValidationError,
            "key",
            format!("{key:?} is not a valid key: use a lowercase DNS label"),
        )
    })?;
    let org = org_id(db, slug).await?;
    let actor = Actor::instance(org, meta.clone());
    let workspace_key = match body.get("workspace") {
        Some(Value::String(k)) if !k.is_empty() => k.clone(),
        _ => {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "workspace",
                "name the workspace (its key) the project belongs to",
            ));
        }
    };
    let workspace = workspace_by_key(db, org, &workspace_key)
        .await?
        .ok_or_else(|| {
            ApiError::field(
                ErrorCode::ValidationError,
                "workspace",
                format!("workspace {workspace_key:?} does not exist; apply the Workspace first"),
            )
        })?;
    let managed_by = match body.get("managed_by") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "managed_by",
                "must be a string",
            ));
        }
    };
    // One flat Label Studio body: top-level fields plus the declared settings.
    let mut flat = Map::new();
    for (k, v) in body {
        if k == "settings" {
            let Value::Object(settings) = v else {
                return Err(ApiError::field(
                    ErrorCode::ValidationError,
                    "settings",
                    "must be an object of project settings",
                ));
            };
            for (sk, sv) in settings {
                if TOP_FIELDS.contains(&sk.as_str()) {
                    return Err(ApiError::field(
                        ErrorCode::ValidationError,
                        &format!("settings.{sk}"),
                        "is not a setting; declare it at the top level",
                    ));
                }
                flat.insert(sk.clone(), sv.clone());
            }
        } else if k != "workspace" && k != "managed_by" {
            flat.insert(k.clone(), v.clone());
        }
    }
    let known = settings_rules::setting_keys();
    if let Some(unknown) = flat
        .keys()
        .find(|k| *k != "title" && *k != "label_config" && !known.contains(k))
    {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            unknown,
            "is not a project field Verity knows",
        ));
    }
    let mut managed: Vec<String> = flat.keys().cloned().collect();
    managed.push("workspace".into());
    managed.sort();
    let managed_json = Value::from(managed.clone()).to_string();
    flat.insert("workspace".into(), Value::from(workspace.id));
    let existing = project_id_by_key(db, org, key).await?;
    let mut change = Change::Unchanged;
    let id = match existing {
        None => {
            let created = projects::create(db, &actor, sealer, &flat).await?;
            with_tx!(db, tx, {
                sqlx::query("update project set admin_key = $1, managed_by = $2, managed_fields = $3 where id = $4")
                    .bind(key)
                    .bind(&managed_by)
                    .bind(&managed_json)
                    .bind(created.id)
                    .execute(&mut *tx)
                    .await?;
                Ok::<_, ApiError>(())
            })?;
            change = Change::Created;
            created.id
        }
        Some(id) => {
            let current = projects::load(db, org, id).await?;
            let settings: ProjectSettings =
                settings_rules::merge_settings(&current.settings(), &flat)
                    .map_err(|(f, m)| ApiError::field(ErrorCode::ValidationError, &f, m))?;
            let same = current.title
                == flat
                    .get("title")
                    .and_then(Value::as_str)
                    .unwrap_or(&current.title)
                && current.label_config
                    == flat
                        .get("label_config")
                        .and_then(Value::as_str)
                        .unwrap_or(&current.label_config)
                && current.settings() == settings
                && current.workspace_id == Some(workspace.id)
                && !current.is_archived
                && current.managed_by == managed_by
                && current.managed_fields() == managed;
            if !same {
                change = Change::Updated;
                projects::apply_update(db, &actor, sealer, current, &flat).await?;
                with_tx!(db, tx, {
                    sqlx::query(
                        "update project set is_archived = false, managed_by = $1, managed_fields = $2 where id = $3",
                    )
                    .bind(&managed_by)
                    .bind(&managed_json)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    Ok::<_, ApiError>(())
                })?;
            }
            id
        }
    };
    Ok((project_view(db, org, id, key).await?, change))
}

/// Archives the project with this key (its data stays; idempotent).
pub async fn archive_project(
    db: &Db,
    meta: &RequestMeta,
    slug: &str,
    key: &str,
) -> ApiResult<Change> {
    let org = org_id(db, slug).await?;
    let id = project_id_by_key(db, org, key)
        .await?
        .ok_or_else(|| ApiError::not_found("project"))?;
    let row = projects::load(db, org, id).await?;
    if row.is_archived {
        return Ok(Change::Unchanged);
    }
    let actor = Actor::instance(org, meta.clone());
    with_tx!(db, tx, {
        sqlx::query("update project set is_archived = true, updated_at = $1 where id = $2")
            .bind(now_micros())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        audit!(
            tx,
            Prepared::new(
                &actor,
                "project.archive",
                "project",
                id,
                json!({"key": key})
            )
        );
        Ok::<_, ApiError>(Change::Updated)
    })
}
