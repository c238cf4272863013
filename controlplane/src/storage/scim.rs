//! SCIM 2.0 provisioning (ADR 0029): provisioning tokens, group mapping settings, and the Users
//! and Groups an organization's identity provider manages.
//!
//! Every organization member is a SCIM User of that organization; members the provider created
//! or adopted have a `scim_user` row with the attributes it last wrote. `active` is the
//! membership's state, so `active=false` revokes access in this organization at once. Group
//! membership drives roles, workspaces and project roles through the mapping settings; only
//! provisioned members are changed by them, never owners.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value, json};

use super::{
    Db,
    audit::{Prepared, audit},
    format_micros,
    groupmap::{GroupMapping, apply_group_mapping, check_mapped_projects, mapped_workspaces},
    now_micros, with_read, with_tx,
};
use crate::{
    auth,
    authz::{Actor, Permission, RequestMeta, Role},
    error::{ApiError, ApiResult},
    scim::resource::{ScimError, ScimResult},
};

impl From<ApiError> for ScimError {
    fn from(e: ApiError) -> Self {
        if let Some(internal) = &e.internal {
            tracing::error!(error = %internal, "SCIM request failed");
        }
        ScimError::status(e.code.status().as_u16(), e.detail)
    }
}

impl From<sqlx::Error> for ScimError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::from(e).into()
    }
}

/// The audit actor of provisioning requests in an organization.
pub fn scim_actor(org_id: i64, meta: RequestMeta) -> Actor {
    Actor {
        user_id: 0,
        org_id,
        role: Role::Admin,
        email: "scim".into(),
        meta,
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens

/// The organization a provisioning token belongs to, if it is current.
pub async fn org_for_token(db: &Db, token: &str) -> ApiResult<Option<i64>> {
    let org: Option<i64> = with_read!(db, conn, {
        sqlx::query_scalar(
            "select organization_id from scim_token where token_hash = $1 and revoked_at is null",
        )
        .bind(auth::hash_token(token))
        .fetch_optional(conn)
        .await?
    });
    Ok(org)
}

/// Issues a new provisioning token for the actor's organization and revokes the previous one.
/// The token is returned once and stored as a hash.
pub async fn rotate_token(db: &Db, actor: &Actor) -> ApiResult<String> {
    actor.require(Permission::OrgManage)?;
    let token = format!("scim_{}", auth::random_secret(48));
    let now = now_micros();
    with_tx!(db, tx, {
        sqlx::query(
            "update scim_token set revoked_at = $1 where organization_id = $2 and revoked_at is null",
        )
        .bind(now)
        .bind(actor.org_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "insert into scim_token (organization_id, token_hash, preview, created_at) values ($1, $2, $3, $4)",
        )
        .bind(actor.org_id)
        .bind(auth::hash_token(&token))
        .bind(auth::preview(&token))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "scim.token.rotate",
                "organization",
                actor.org_id,
                json!({"preview": auth::preview(&token)})
            )
        );
        Ok::<_, ApiError>(())
    })?;
    Ok(token)
}

// ---------------------------------------------------------------------------------------------
// Settings

/// How an organization's SCIM groups map to roles, workspaces and project roles.
pub type ScimSettings = GroupMapping;

/// The organization's mapping settings (defaults when never set).
pub async fn get_settings(db: &Db, actor: &Actor) -> ApiResult<ScimSettings> {
    actor.require(Permission::OrgManage)?;
    load_settings(db, actor.org_id).await
}

async fn load_settings(db: &Db, org_id: i64) -> ApiResult<ScimSettings> {
    let raw: Option<String> = with_read!(db, conn, {
        sqlx::query_scalar("select settings from scim_settings where organization_id = $1")
            .bind(org_id)
            .fetch_optional(conn)
            .await?
    });
    Ok(raw
        .and_then(|r| serde_json::from_str(&r).ok())
        .unwrap_or_default())
}

/// Replaces the mapping settings and applies them to every provisioned member at once.
pub async fn set_settings(
    db: &Db,
    actor: &Actor,
    settings: ScimSettings,
) -> ApiResult<ScimSettings> {
    actor.require(Permission::OrgManage)?;
    settings.check()?;
    let raw = serde_json::to_string(&settings).unwrap_or_default();
    let now = now_micros();
    let org = actor.org_id;
    with_tx!(db, tx, {
        check_mapped_projects!(tx, org, &settings);
        sqlx::query(
            "insert into scim_settings (organization_id, settings, updated_at) values ($1, $2, $3) \
             on conflict (organization_id) do update set settings = excluded.settings, updated_at = excluded.updated_at",
        )
        .bind(org)
        .bind(&raw)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "scim.settings",
                "organization",
                org,
                serde_json::to_value(&settings).unwrap_or_default()
            )
        );
        let users: Vec<i64> = sqlx::query_scalar(
            "select user_id from scim_user where organization_id = $1 and deleted_at is null",
        )
        .bind(org)
        .fetch_all(&mut *tx)
        .await?;
        apply_mappings!(tx, org, &settings, &users, actor);
        Ok::<_, ApiError>(())
    })?;
    Ok(settings)
}

/// Brings the roles, workspace memberships and project roles of `users` (provisioned members
/// of `org`) in line with their SCIM groups and the settings. Owners are left alone. Runs inside
/// `with_tx!`.
macro_rules! apply_mappings {
    ($tx:ident, $org:expr, $settings:expr, $users:expr, $actor:expr) => {{
        let org: i64 = $org;
        let settings: &ScimSettings = $settings;
        let actor: &Actor = $actor;
        let workspaces = mapped_workspaces!($tx, org, settings, actor, "scim");
        for &user in $users {
            let deleted: Option<Option<i64>> = sqlx::query_scalar(
                "select deleted_at from scim_user where organization_id = $1 and user_id = $2",
            )
            .bind(org)
            .bind(user)
            .fetch_optional(&mut *$tx)
            .await?;
            let Some(deleted) = deleted else { continue };
            let groups: Vec<String> = sqlx::query_scalar(
                "select g.display_name from scim_group_member gm join scim_group g on g.id = gm.group_id \
                 where g.organization_id = $1 and gm.user_id = $2",
            )
            .bind(org)
            .bind(user)
            .fetch_all(&mut *$tx)
            .await?;
            apply_group_mapping!($tx, org, settings, &workspaces, user, &groups, deleted.is_none(), actor, "scim");
        }
    }};
}
use apply_mappings;

// ---------------------------------------------------------------------------------------------
// Users

/// A User resource as stored, ready to render.
#[derive(Debug, Clone)]
pub struct UserResource {
    /// User id (the SCIM id).
    pub id: i64,
    /// Writable attributes as last written (synthesized for members never provisioned).
    pub doc: Map<String, Value>,
    /// ETag version.
    pub version: i64,
    /// Created (micros).
    pub created: i64,
    /// Last modified (micros).
    pub modified: i64,
    /// Membership active.
    pub active: bool,
    /// Organization role.
    pub role: Option<Role>,
    /// Groups (id, display name).
    pub groups: Vec<(i64, String)>,
}

#[derive(sqlx::FromRow)]
struct UserDbRow {
    id: i64,
    email: String,
    first_name: String,
    last_name: String,
    role: String,
    joined: i64,
    deactivated_at: Option<i64>,
    doc: Option<String>,
    version: Option<i64>,
    created_at: Option<i64>,
    updated_at: Option<i64>,
}

const USER_SELECT: &str = "select u.id, u.email, u.first_name, u.last_name, m.role, \
     m.created_at as joined, m.deactivated_at, s.doc, s.version, s.created_at, s.updated_at \
     from org_member m join app_user u on u.id = m.user_id \
     left join scim_user s on s.organization_id = m.organization_id and s.user_id = m.user_id \
     where m.organization_id = $1 and (s.deleted_at is null)";

fn user_resource(row: UserDbRow, groups: Vec<(i64, String)>) -> UserResource {
    let doc = row
        .doc
        .as_deref()
        .and_then(|d| serde_json::from_str::<Map<String, Value>>(d).ok())
        .unwrap_or_else(|| {
            // Never provisioned: what Verity knows of the member.
            let mut m = Map::new();
            m.insert("userName".into(), Value::String(row.email.clone()));
            if !row.first_name.is_empty() || !row.last_name.is_empty() {
                m.insert(
                    "name".into(),
                    json!({"givenName": row.first_name, "familyName": row.last_name}),
                );
            }
            m.insert(
                "emails".into(),
                json!([{"value": row.email, "primary": true}]),
            );
            m
        });
    UserResource {
        id: row.id,
        doc,
        version: row.version.unwrap_or(0),
        created: row.created_at.unwrap_or(row.joined),
        modified: row.updated_at.unwrap_or(row.joined),
        active: row.deactivated_at.is_none(),
        role: Role::parse(&row.role),
        groups,
    }
}

async fn groups_of(
    db: &Db,
    org: i64,
    users: &[i64],
) -> ApiResult<HashMap<i64, Vec<(i64, String)>>> {
    let mut out: HashMap<i64, Vec<(i64, String)>> = HashMap::new();
    if users.is_empty() {
        return Ok(out);
    }
    // One user (a GET) is looked up by id; a list reads the organization's memberships once.
    let only = if users.len() == 1 { users[0] } else { 0 };
    let rows: Vec<(i64, i64, String)> = with_read!(db, conn, {
        sqlx::query_as(
            "select gm.user_id, g.id, g.display_name from scim_group_member gm join scim_group g on g.id = gm.group_id \
             where g.organization_id = $1 and ($2 = 0 or gm.user_id = $2) order by g.id",
        )
        .bind(org)
        .bind(only)
        .fetch_all(conn)
        .await?
    });
    let wanted: BTreeSet<i64> = users.iter().copied().collect();
    for (user, gid, name) in rows {
        if wanted.contains(&user) {
            out.entry(user).or_default().push((gid, name));
        }
    }
    Ok(out)
}

/// Every User of the organization (members not deleted through SCIM), by id. With
/// `user_name`, only candidates for `userName eq <user_name>`: a superset of the matches (the
/// caller still applies the whole filter), found through the database instead of by reading
/// every member. Members of several organizations are always candidates, since their
/// username in Verity may differ from what this organization's provider wrote.
pub async fn list_users(
    db: &Db,
    org: i64,
    user_name: Option<&str>,
) -> ApiResult<Vec<UserResource>> {
    let rows: Vec<UserDbRow> = with_read!(db, conn, {
        match user_name {
            None => {
                sqlx::query_as(&format!("{USER_SELECT} order by u.id"))
                    .bind(org)
                    .fetch_all(conn)
                    .await?
            }
            Some(name) => {
                sqlx::query_as(&format!(
                    "{USER_SELECT} and (lower(u.username) = lower($2) or lower(u.email) = lower($2) \
                     or exists (select 1 from org_member o where o.user_id = u.id and o.organization_id <> m.organization_id)) \
                     order by u.id"
                ))
                .bind(org)
                .bind(name)
                .fetch_all(conn)
                .await?
            }
        }
    });
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut groups = groups_of(db, org, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let g = groups.remove(&r.id).unwrap_or_default();
            user_resource(r, g)
        })
        .collect())
}

/// One User.
pub async fn get_user(db: &Db, org: i64, id: i64) -> ScimResult<UserResource> {
    let row: Option<UserDbRow> = with_read!(db, conn, {
        sqlx::query_as(&format!("{USER_SELECT} and m.user_id = $2"))
            .bind(org)
            .bind(id)
            .fetch_optional(conn)
            .await?
    });
    let Some(row) = row else {
        return Err(ScimError::status(
            404,
            format!("no User {id} in this organization"),
        ));
    };
    let mut groups = groups_of(db, org, &[id]).await?;
    Ok(user_resource(row, groups.remove(&id).unwrap_or_default()))
}

/// What the profile fields of a user become from a User document.
struct Profile {
    email: String,
    username: String,
    first_name: String,
    last_name: String,
    active: bool,
}

fn profile(doc: &Map<String, Value>) -> ScimResult<Profile> {
    let user_name = doc
        .get("userName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_string();
    let emails = doc.get("emails").and_then(Value::as_array);
    let email = emails
        .and_then(|e| {
            e.iter()
                .find(|v| v.get("primary") == Some(&Value::Bool(true)))
                .or_else(|| e.first())
        })
        .and_then(|v| v.get("value"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let Some(email) = email else {
        return Err(ScimError::bad(
            "invalidValue",
            "Verity identifies users by email: give the user an email (emails[].value)",
        ));
    };
    if !email.contains('@') || email.len() > 254 {
        return Err(ScimError::bad(
            "invalidValue",
            format!("{email:?} is not a valid email address"),
        ));
    }
    if user_name.len() > 254 {
        return Err(ScimError::bad(
            "invalidValue",
            "userName is longer than 254 characters",
        ));
    }
    let name = doc.get("name");
    let part = |k: &str| {
        name.and_then(|n| n.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .chars()
            .take(150)
            .collect::<String>()
    };
    Ok(Profile {
        email,
        username: user_name,
        first_name: part("givenName"),
        last_name: part("familyName"),
        active: doc.get("active").and_then(Value::as_bool).unwrap_or(true),
    })
}

/// Whether another live User of the organization has this userName (case-insensitive).
async fn user_name_taken(
    db: &Db,
    org: i64,
    user_name: &str,
    except: Option<i64>,
) -> ApiResult<bool> {
    let users = list_users(db, org, Some(user_name)).await?;
    Ok(users.iter().any(|u| {
        Some(u.id) != except
            && u.doc
                .get("userName")
                .and_then(Value::as_str)
                .is_some_and(|n| n.eq_ignore_ascii_case(user_name))
    }))
}

/// Creates (or adopts, for a member never provisioned) a User.
pub async fn create_user(
    db: &Db,
    actor: &Actor,
    doc: Map<String, Value>,
) -> ScimResult<UserResource> {
    let org = actor.org_id;
    let p = profile(&doc)?;
    if user_name_taken(db, org, &p.username, None).await? {
        return Err(uniqueness(format!(
            "userName {:?} is taken in this organization",
            p.username
        )));
    }
    let settings = load_settings(db, org).await?;
    let now = now_micros();
    let raw = Value::Object(doc.clone()).to_string();
    let id = with_tx!(db, tx, {
        // Accounts belong to an organization (the same email elsewhere is another person's
        // account): a member of this one with the email (its own accounts first), else this
        // organization's account of a member removed earlier.
        let existing: Option<(i64,)> = sqlx::query_as(
            "select u.id from app_user u left join org_member m on m.user_id = u.id and m.organization_id = $1 \
             where lower(u.email) = lower($2) and (m.user_id is not null or u.home_organization_id = $1) \
             order by case when m.user_id is not null then 0 else 1 end, \
             case when u.home_organization_id = $1 then 0 else 1 end, u.id limit 1",
        )
        .bind(org)
        .bind(&p.email)
        .fetch_optional(&mut *tx)
        .await?;
        let id = match existing {
            Some((id,)) => {
                let membership: Option<String> = sqlx::query_scalar(
                    "select role from org_member where organization_id = $1 and user_id = $2",
                )
                .bind(org)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                let provisioned: Option<Option<i64>> = sqlx::query_scalar(
                    "select deleted_at from scim_user where organization_id = $1 and user_id = $2",
                )
                .bind(org)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                match (membership, provisioned) {
                    (None, _) => {
                        // Removed from the organization earlier: a member again.
                        sqlx::query(
                            "delete from scim_user where organization_id = $1 and user_id = $2",
                        )
                        .bind(org)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                        sqlx::query("insert into org_member (organization_id, user_id, role, created_at) values ($1, $2, $3, $4)")
                            .bind(org)
                            .bind(id)
                            .bind(settings.default_role().as_str())
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                        id
                    }
                    (Some(_), Some(None)) => {
                        return Err(uniqueness(format!("a User with email {} exists", p.email)));
                    }
                    (Some(role), _) => {
                        if !p.active && role == "owner" {
                            return Err(owner_refused());
                        }
                        // A member never provisioned (or deleted through SCIM) is adopted.
                        sqlx::query(
                            "delete from scim_user where organization_id = $1 and user_id = $2",
                        )
                        .bind(org)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                        // The profile is this organization's to change only when the user
                        // belongs to no other organization.
                        sqlx::query(
                            "update app_user set username = $1, first_name = $2, last_name = $3 where id = $4 \
                             and not exists (select 1 from org_member o where o.user_id = $4 and o.organization_id <> $5)",
                        )
                        .bind(&p.username)
                        .bind(&p.first_name)
                        .bind(&p.last_name)
                        .bind(id)
                        .bind(org)
                        .execute(&mut *tx)
                        .await?;
                        id
                    }
                }
            }
            None => {
                let id: i64 = sqlx::query_scalar(
                    "insert into app_user (email, username, first_name, last_name, password_hash, is_active, \
                     active_organization_id, date_joined, last_activity, home_organization_id) \
                     values ($1, $2, $3, $4, null, true, $5, $6, $6, $5) returning id",
                )
                .bind(&p.email)
                .bind(&p.username)
                .bind(&p.first_name)
                .bind(&p.last_name)
                .bind(org)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query("insert into org_member (organization_id, user_id, role, created_at) values ($1, $2, $3, $4)")
                    .bind(org)
                    .bind(id)
                    .bind(settings.default_role().as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                id
            }
        };
        sqlx::query(
            "insert into scim_user (organization_id, user_id, doc, version, created_at, updated_at) values ($1, $2, $3, 1, $4, $4)",
        )
        .bind(org)
        .bind(id)
        .bind(&raw)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        set_active!(tx, org, id, p.active, now);
        audit!(
            tx,
            Prepared::new(
                actor,
                "scim.user.create",
                "user",
                id,
                json!({"email": p.email, "active": p.active})
            )
        );
        apply_mappings!(tx, org, &settings, &[id], actor);
        Ok::<_, ScimError>(id)
    })?;
    get_user(db, org, id).await
}

fn uniqueness(detail: String) -> ScimError {
    ScimError {
        status: 409,
        scim_type: Some("uniqueness"),
        detail,
    }
}

fn owner_refused() -> ScimError {
    ScimError {
        status: 400,
        scim_type: Some("mutability"),
        detail: "an owner of the organization cannot be deactivated or deleted through SCIM; change the owner in Verity first".into(),
    }
}

/// Sets the membership's active state (deactivation keeps the member and their history).
macro_rules! set_active {
    ($tx:ident, $org:expr, $user:expr, $active:expr, $now:expr) => {{
        if $active {
            sqlx::query("update org_member set deactivated_at = null where organization_id = $1 and user_id = $2")
                .bind($org)
                .bind($user)
                .execute(&mut *$tx)
                .await?;
        } else {
            sqlx::query(
                "update org_member set deactivated_at = $1 where organization_id = $2 and user_id = $3 and deactivated_at is null",
            )
            .bind($now)
            .bind($org)
            .bind($user)
            .execute(&mut *$tx)
            .await?;
            // Browser sessions end at once (API tokens stop working through the membership check).
            sqlx::query("delete from user_session where user_id = $1 and exists \
                         (select 1 from app_user where id = $1 and active_organization_id = $2)")
                .bind($user)
                .bind($org)
                .execute(&mut *$tx)
                .await?;
        }
    }};
}
use set_active;

/// Replaces a User's attributes (PUT, and PATCH after its operations were applied).
/// `if_match`: the ETag the client last saw, when it sent one.
pub async fn replace_user(
    db: &Db,
    actor: &Actor,
    id: i64,
    doc: Map<String, Value>,
    if_match: Option<&str>,
) -> ScimResult<UserResource> {
    let org = actor.org_id;
    let current = get_user(db, org, id).await?;
    check_etag(if_match, current.version)?;
    let p = profile(&doc)?;
    if user_name_taken(db, org, &p.username, Some(id)).await? {
        return Err(uniqueness(format!(
            "userName {:?} is taken in this organization",
            p.username
        )));
    }
    if !p.active && current.role == Some(Role::Owner) {
        return Err(owner_refused());
    }
    let settings = load_settings(db, org).await?;
    let now = now_micros();
    let raw = Value::Object(doc).to_string();
    let version = current.version;
    with_tx!(db, tx, {
        let (email, orgs): (String, i64) = sqlx::query_as(
            "select u.email, (select count(*) from org_member o where o.user_id = u.id) from app_user u where u.id = $1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        if !email.eq_ignore_ascii_case(&p.email) {
            if orgs > 1 {
                return Err(ScimError::bad(
                    "mutability",
                    "this user also belongs to another organization, so their email cannot change through this organization's SCIM",
                ));
            }
            // Taken by a member of this organization or one of its own accounts (another
            // organization's account with that email is another person's).
            let taken: Option<i64> = sqlx::query_scalar(
                "select u.id from app_user u left join org_member m on m.user_id = u.id and m.organization_id = $3 \
                 where lower(u.email) = lower($1) and u.id <> $2 \
                 and (m.user_id is not null or u.home_organization_id = $3) limit 1",
            )
            .bind(&p.email)
            .bind(id)
            .bind(org)
            .fetch_optional(&mut *tx)
            .await?;
            if taken.is_some() {
                return Err(uniqueness(format!("another user has email {}", p.email)));
            }
        }
        if orgs == 1 {
            sqlx::query("update app_user set email = $1, username = $2, first_name = $3, last_name = $4 where id = $5")
                .bind(&p.email)
                .bind(&p.username)
                .bind(&p.first_name)
                .bind(&p.last_name)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        // Optimistic concurrency: the row must still have the version read above.
        let updated = if version == 0 {
            sqlx::query(
                "insert into scim_user (organization_id, user_id, doc, version, created_at, updated_at) values ($1, $2, $3, 1, $4, $4) \
                 on conflict (organization_id, user_id) do nothing",
            )
            .bind(org)
            .bind(id)
            .bind(&raw)
            .bind(now)
            .execute(&mut *tx)
            .await?
        } else {
            sqlx::query(
                "update scim_user set doc = $1, version = version + 1, updated_at = $2 \
                 where organization_id = $3 and user_id = $4 and version = $5 and deleted_at is null",
            )
            .bind(&raw)
            .bind(now)
            .bind(org)
            .bind(id)
            .bind(version)
            .execute(&mut *tx)
            .await?
        };
        if updated.rows_affected() != 1 {
            return Err(ScimError::status(
                412,
                "the User changed while this request was processed; read it again and retry",
            ));
        }
        set_active!(tx, org, id, p.active, now);
        audit!(
            tx,
            Prepared::new(
                actor,
                "scim.user.update",
                "user",
                id,
                json!({"email": p.email, "active": p.active})
            )
        );
        apply_mappings!(tx, org, &settings, &[id], actor);
        Ok::<_, ScimError>(())
    })?;
    get_user(db, org, id).await
}

/// Deletes a User through SCIM: the membership is deactivated and hidden from SCIM, group
/// memberships and mapped workspace and project memberships end; authorship stays.
pub async fn delete_user(
    db: &Db,
    actor: &Actor,
    id: i64,
    if_match: Option<&str>,
) -> ScimResult<()> {
    let org = actor.org_id;
    let current = get_user(db, org, id).await?;
    check_etag(if_match, current.version)?;
    if current.role == Some(Role::Owner) {
        return Err(owner_refused());
    }
    let settings = load_settings(db, org).await?;
    let now = now_micros();
    let raw = Value::Object(current.doc.clone()).to_string();
    with_tx!(db, tx, {
        sqlx::query(
            "insert into scim_user (organization_id, user_id, doc, version, created_at, updated_at, deleted_at) values ($1, $2, $3, 1, $4, $4, $4) \
             on conflict (organization_id, user_id) do update set deleted_at = excluded.deleted_at, version = scim_user.version + 1",
        )
        .bind(org)
        .bind(id)
        .bind(&raw)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // The groups the user leaves change, and their ETags with them.
        sqlx::query(
            "update scim_group set version = version + 1, updated_at = $1 where organization_id = $2 \
             and id in (select group_id from scim_group_member where user_id = $3)",
        )
        .bind(now)
        .bind(org)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "delete from scim_group_member where user_id = $1 and group_id in (select id from scim_group where organization_id = $2)",
        )
        .bind(id)
        .bind(org)
        .execute(&mut *tx)
        .await?;
        set_active!(tx, org, id, false, now);
        audit!(
            tx,
            Prepared::new(actor, "scim.user.delete", "user", id, json!({}))
        );
        apply_mappings!(tx, org, &settings, &[id], actor);
        Ok::<_, ScimError>(())
    })?;
    Ok(())
}

/// The weak ETag of a version.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

fn check_etag(if_match: Option<&str>, version: i64) -> ScimResult<()> {
    let Some(want) = if_match.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(());
    };
    let current = etag(version);
    let ok = want == "*"
        || want
            .split(',')
            .map(str::trim)
            .any(|t| t.trim_start_matches("W/") == current.trim_start_matches("W/"));
    if ok {
        Ok(())
    } else {
        Err(ScimError::status(
            412,
            format!(
                "If-Match {want} does not match the current version {current}; read the resource again"
            ),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Groups

/// A Group resource.
#[derive(Debug, Clone)]
pub struct GroupResource {
    /// Id.
    pub id: i64,
    /// Writable attributes other than members.
    pub doc: Map<String, Value>,
    /// Member user ids.
    pub members: Vec<i64>,
    /// ETag version.
    pub version: i64,
    /// Created (micros).
    pub created: i64,
    /// Last modified (micros).
    pub modified: i64,
}

/// Every Group of the organization.
pub async fn list_groups(db: &Db, org: i64) -> ApiResult<Vec<GroupResource>> {
    load_groups(db, org, None).await
}

/// id, doc, version, created, modified.
type GroupRow = (i64, String, i64, i64, i64);

async fn load_groups(db: &Db, org: i64, only: Option<i64>) -> ApiResult<Vec<GroupResource>> {
    let (rows, members): (Vec<GroupRow>, Vec<(i64, i64)>) = with_read!(db, conn, {
        let rows = sqlx::query_as(
            "select id, doc, version, created_at, updated_at from scim_group \
             where organization_id = $1 and ($2 = 0 or id = $2) order by id",
        )
        .bind(org)
        .bind(only.unwrap_or(0))
        .fetch_all(conn)
        .await?;
        let members = sqlx::query_as(
            "select gm.group_id, gm.user_id from scim_group_member gm join scim_group g on g.id = gm.group_id \
             where g.organization_id = $1 and ($2 = 0 or g.id = $2) order by gm.user_id",
        )
        .bind(org)
        .bind(only.unwrap_or(0))
        .fetch_all(conn)
        .await?;
        (rows, members)
    });
    let mut by_group: HashMap<i64, Vec<i64>> = HashMap::new();
    for (g, u) in members {
        by_group.entry(g).or_default().push(u);
    }
    Ok(rows
        .into_iter()
        .map(|(id, doc, version, created, modified)| GroupResource {
            id,
            doc: serde_json::from_str(&doc).unwrap_or_default(),
            members: by_group.remove(&id).unwrap_or_default(),
            version,
            created,
            modified,
        })
        .collect())
}

/// One Group.
pub async fn get_group(db: &Db, org: i64, id: i64) -> ScimResult<GroupResource> {
    load_groups(db, org, Some(id))
        .await?
        .pop()
        .ok_or_else(|| ScimError::status(404, format!("no Group {id} in this organization")))
}

/// Splits a Group document into its stored attributes and member ids, checking that every
/// member is a User of the organization.
async fn group_parts(
    db: &Db,
    org: i64,
    mut doc: Map<String, Value>,
) -> ScimResult<(String, Map<String, Value>, BTreeSet<i64>)> {
    let name = doc
        .get("displayName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_string();
    if name.len() > 1000 {
        return Err(ScimError::bad(
            "invalidValue",
            "displayName is longer than 1000 characters",
        ));
    }
    let mut ids = BTreeSet::new();
    if let Some(Value::Array(members)) = doc.remove("members") {
        for m in members {
            let value = m.get("value").and_then(Value::as_str).unwrap_or_default();
            let Ok(id) = value.trim().parse::<i64>() else {
                return Err(ScimError::bad(
                    "invalidValue",
                    format!("members[].value {value:?} is not the id of a User"),
                ));
            };
            ids.insert(id);
        }
    }
    if ids.len() > 100_000 {
        return Err(ScimError::bad(
            "tooMany",
            "at most 100000 members per group",
        ));
    }
    if !ids.is_empty() {
        let mut known: BTreeSet<i64> = BTreeSet::new();
        let list: Vec<i64> = ids.iter().copied().collect();
        for chunk in list.chunks(500) {
            let in_list = chunk
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let found: Vec<i64> = with_read!(db, conn, {
                sqlx::query_scalar(&format!(
                    "select m.user_id from org_member m left join scim_user s \
                     on s.organization_id = m.organization_id and s.user_id = m.user_id \
                     where m.organization_id = $1 and s.deleted_at is null and m.user_id in ({in_list})"
                ))
                .bind(org)
                .fetch_all(conn)
                .await?
            });
            known.extend(found);
        }
        if let Some(missing) = ids.iter().find(|i| !known.contains(i)) {
            return Err(ScimError::bad(
                "invalidValue",
                format!("members[].value {missing} is not a User of this organization"),
            ));
        }
    }
    Ok((name, doc, ids))
}

async fn group_name_taken(db: &Db, org: i64, name: &str, except: Option<i64>) -> ApiResult<bool> {
    let found: Option<i64> = with_read!(db, conn, {
        sqlx::query_scalar(
            "select id from scim_group where organization_id = $1 and lower(display_name) = lower($2) and id <> $3",
        )
        .bind(org)
        .bind(name)
        .bind(except.unwrap_or(0))
        .fetch_optional(conn)
        .await?
    });
    Ok(found.is_some())
}

/// A change of groups changes the `groups` of their provisioned members: their versions (and
/// so their ETags) and modification times move on. Runs inside `with_tx!`.
macro_rules! touch_users {
    ($tx:ident, $org:expr, $users:expr) => {{
        let now = now_micros();
        let users: &[i64] = $users;
        for chunk in users.chunks(500) {
            let in_list = chunk
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            sqlx::query(&format!(
                "update scim_user set version = version + 1, updated_at = $1 \
                 where organization_id = $2 and user_id in ({in_list})"
            ))
            .bind(now)
            .bind($org)
            .execute(&mut *$tx)
            .await?;
        }
    }};
}

/// Creates a Group.
pub async fn create_group(
    db: &Db,
    actor: &Actor,
    doc: Map<String, Value>,
) -> ScimResult<GroupResource> {
    let org = actor.org_id;
    let (name, doc, members) = group_parts(db, org, doc).await?;
    if group_name_taken(db, org, &name, None).await? {
        return Err(uniqueness(format!("a Group named {name:?} exists")));
    }
    let settings = load_settings(db, org).await?;
    let now = now_micros();
    let raw = Value::Object(doc).to_string();
    let users: Vec<i64> = members.iter().copied().collect();
    let id = with_tx!(db, tx, {
        let id: i64 = sqlx::query_scalar(
            "insert into scim_group (organization_id, display_name, doc, version, created_at, updated_at) \
             values ($1, $2, $3, 1, $4, $4) returning id",
        )
        .bind(org)
        .bind(&name)
        .bind(&raw)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        for u in &users {
            sqlx::query("insert into scim_group_member (group_id, user_id) values ($1, $2)")
                .bind(id)
                .bind(u)
                .execute(&mut *tx)
                .await?;
        }
        audit!(
            tx,
            Prepared::new(
                actor,
                "scim.group.create",
                "group",
                id,
                json!({"displayName": name, "members": users.len()})
            )
        );
        touch_users!(tx, org, &users);
        apply_mappings!(tx, org, &settings, &users, actor);
        Ok::<_, ScimError>(id)
    })?;
    get_group(db, org, id).await
}

/// Replaces a Group's name and members (PUT, and PATCH after its operations were applied).
pub async fn replace_group(
    db: &Db,
    actor: &Actor,
    id: i64,
    doc: Map<String, Value>,
    if_match: Option<&str>,
) -> ScimResult<GroupResource> {
    let org = actor.org_id;
    let current = get_group(db, org, id).await?;
    check_etag(if_match, current.version)?;
    let (name, doc, members) = group_parts(db, org, doc).await?;
    if group_name_taken(db, org, &name, Some(id)).await? {
        return Err(uniqueness(format!("a Group named {name:?} exists")));
    }
    let settings = load_settings(db, org).await?;
    let now = now_micros();
    let raw = Value::Object(doc).to_string();
    let before: BTreeSet<i64> = current.members.iter().copied().collect();
    let affected: Vec<i64> = before.union(&members).copied().collect();
    let added: Vec<i64> = members.difference(&before).copied().collect();
    let removed: Vec<i64> = before.difference(&members).copied().collect();
    let version = current.version;
    with_tx!(db, tx, {
        let updated = sqlx::query(
            "update scim_group set display_name = $1, doc = $2, version = version + 1, updated_at = $3 \
             where id = $4 and organization_id = $5 and version = $6",
        )
        .bind(&name)
        .bind(&raw)
        .bind(now)
        .bind(id)
        .bind(org)
        .bind(version)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            return Err(ScimError::status(
                412,
                "the Group changed while this request was processed; read it again and retry",
            ));
        }
        for u in &added {
            sqlx::query("insert into scim_group_member (group_id, user_id) values ($1, $2) on conflict do nothing")
                .bind(id)
                .bind(u)
                .execute(&mut *tx)
                .await?;
        }
        for u in &removed {
            sqlx::query("delete from scim_group_member where group_id = $1 and user_id = $2")
                .bind(id)
                .bind(u)
                .execute(&mut *tx)
                .await?;
        }
        audit!(
            tx,
            Prepared::new(
                actor,
                "scim.group.update",
                "group",
                id,
                json!({"displayName": name, "added": added, "removed": removed})
            )
        );
        touch_users!(tx, org, &affected);
        apply_mappings!(tx, org, &settings, &affected, actor);
        Ok::<_, ScimError>(())
    })?;
    get_group(db, org, id).await
}

/// Deletes a Group; its members lose what it granted.
pub async fn delete_group(
    db: &Db,
    actor: &Actor,
    id: i64,
    if_match: Option<&str>,
) -> ScimResult<()> {
    let org = actor.org_id;
    let current = get_group(db, org, id).await?;
    check_etag(if_match, current.version)?;
    let settings = load_settings(db, org).await?;
    let users: Vec<i64> = current.members.clone();
    with_tx!(db, tx, {
        sqlx::query("delete from scim_group where id = $1 and organization_id = $2")
            .bind(id)
            .bind(org)
            .execute(&mut *tx)
            .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "scim.group.delete",
                "group",
                id,
                json!({"members": users.len()})
            )
        );
        touch_users!(tx, org, &users);
        apply_mappings!(tx, org, &settings, &users, actor);
        Ok::<_, ScimError>(())
    })?;
    Ok(())
}

/// ISO time of a micros timestamp, for `meta`.
pub fn iso(micros: i64) -> String {
    format_micros(micros)
}
