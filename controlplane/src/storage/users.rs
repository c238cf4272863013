//! Organizations, users, memberships and API tokens.

use serde::Serialize;

use super::{
    Db,
    audit::{self, Outcome, Prepared, audit},
    now_micros, with_read, with_tx,
};
use crate::{
    auth,
    authz::{self, Actor, Permission, RequestMeta, Role},
    error::{ApiError, ApiResult, ErrorCode},
};

/// A user row as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    /// Id.
    pub id: i64,
    /// Email (unique, case-insensitive).
    pub email: String,
    /// Username (defaults to the email).
    pub username: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Whether the user may sign in.
    pub is_active: bool,
    /// Active organization.
    pub active_organization_id: Option<i64>,
    /// Created.
    pub date_joined: i64,
    /// Last request.
    pub last_activity: i64,
}

/// The user JSON of Label Studio (`/api/users`, `whoami`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    /// Id.
    pub id: i64,
    /// Username.
    pub username: String,
    /// Email.
    pub email: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Always null (no avatars yet).
    pub avatar: Option<String>,
    /// Initials shown in the UI.
    pub initials: String,
    /// Phone (empty).
    pub phone: String,
    /// Active organization id.
    pub active_organization: Option<i64>,
    /// Always false.
    pub allow_newsletters: bool,
    /// ISO time the user joined.
    pub date_joined: String,
    /// ISO time of the last request.
    pub last_activity: String,
    /// Whether the account is active.
    pub is_active: bool,
    /// The user's role in the active organization (LS code, e.g. `OW`).
    pub role: Option<String>,
}

impl UserRow {
    /// The API view of the user.
    pub fn view(&self, role: Option<Role>) -> UserView {
        let initials = {
            let f = self.first_name.chars().next();
            let l = self.last_name.chars().next();
            match (f, l) {
                (Some(f), Some(l)) => format!("{f}{l}"),
                _ => self.email.chars().take(2).collect(),
            }
        };
        UserView {
            id: self.id,
            username: self.username.clone(),
            email: self.email.clone(),
            first_name: self.first_name.clone(),
            last_name: self.last_name.clone(),
            avatar: None,
            initials,
            phone: String::new(),
            active_organization: self.active_organization_id,
            allow_newsletters: false,
            date_joined: super::format_micros(self.date_joined),
            last_activity: super::format_micros(self.last_activity),
            is_active: self.is_active,
            role: role.map(|r| r.ls_code().to_string()),
        }
    }
}

const USER_COLUMNS: &str = "u.id, u.email, u.username, u.first_name, u.last_name, u.is_active, \
     u.active_organization_id, u.date_joined, u.last_activity";

/// What a new user gets.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Email.
    pub email: String,
    /// Optional password (hashed before storage).
    pub password: Option<String>,
    /// Role in the organization.
    pub role: Role,
    /// Optional exact legacy token (otherwise one is generated).
    pub token: Option<String>,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Username (defaults to the email).
    pub username: Option<String>,
}

/// Returns the instance's JWT signing key, creating it on first use. It is stored sealed; a key
/// stored in plain text by an older version is sealed in place.
pub async fn signing_key(db: &Db, sealer: &crate::secrets::Sealer) -> ApiResult<Vec<u8>> {
    const PURPOSE: &str = "jwt_signing_key";
    let existing: Option<String> = with_read!(db, conn, {
        sqlx::query_scalar("select value from instance_setting where key = 'jwt_signing_key'")
            .fetch_optional(conn)
            .await?
    });
    if let Some(stored) = existing {
        let key = sealer.open(&stored, PURPOSE).map_err(ApiError::internal)?;
        if !crate::secrets::Sealer::is_sealed(&stored) {
            with_tx!(db, tx, {
                sqlx::query(
                    "update instance_setting set value = $1 where key = 'jwt_signing_key' and value = $2",
                )
                .bind(sealer.seal(&key, PURPOSE))
                .bind(&stored)
                .execute(&mut *tx)
                .await?;
                Ok::<_, ApiError>(())
            })?;
        }
        return Ok(key.into_bytes());
    }
    let candidate = sealer.seal(&auth::random_secret(64), PURPOSE);
    let key: String = with_tx!(db, tx, {
        sqlx::query(
            "insert into instance_setting (key, value) values ('jwt_signing_key', $1) \
             on conflict (key) do nothing",
        )
        .bind(&candidate)
        .execute(&mut *tx)
        .await?;
        let key: String =
            sqlx::query_scalar("select value from instance_setting where key = 'jwt_signing_key'")
                .fetch_one(&mut *tx)
                .await?;
        Ok::<_, ApiError>(key)
    })?;
    Ok(sealer
        .open(&key, PURPOSE)
        .map_err(ApiError::internal)?
        .into_bytes())
}

/// Number of users (bootstrap runs when it is zero).
pub async fn count_users(db: &Db) -> ApiResult<i64> {
    Ok(with_read!(db, conn, {
        sqlx::query_scalar::<_, i64>("select count(*) from app_user")
            .fetch_one(conn)
            .await?
    }))
}

/// The first organization (the one a single-tenant instance serves).
pub async fn default_organization(db: &Db) -> ApiResult<Option<i64>> {
    Ok(with_read!(db, conn, {
        sqlx::query_scalar::<_, i64>("select id from organization order by id limit 1")
            .fetch_optional(conn)
            .await?
    }))
}

/// Creates an organization (instance administration: CLI, bootstrap, admin API) with its
/// audit chain. `slug` is the lowercase DNS label the admin API addresses it by.
pub async fn create_organization(
    db: &Db,
    title: &str,
    slug: Option<&str>,
    managed_by: Option<&str>,
    meta: &RequestMeta,
) -> ApiResult<i64> {
    let title = title.trim();
    if title.is_empty() || title.chars().count() > 1000 {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "title",
            "an organization needs a title of 1 to 1000 characters",
        ));
    }
    if let Some(slug) = slug {
        validate_slug(slug)?;
    }
    let now = now_micros();
    with_tx!(db, tx, {
        if let Some(slug) = slug {
            let taken: Option<i64> =
                sqlx::query_scalar("select id from organization where slug = $1")
                    .bind(slug)
                    .fetch_optional(&mut *tx)
                    .await?;
            if taken.is_some() {
                return Err(ApiError::field(
                    ErrorCode::Conflict,
                    "slug",
                    format!("an organization with the slug {slug:?} already exists"),
                ));
            }
        }
        let id: i64 = sqlx::query_scalar(
            "insert into organization (title, token, created_at, updated_at, slug, managed_by) \
             values ($1, $2, $3, $3, $4, $5) returning id",
        )
        .bind(title)
        .bind(auth::random_secret(40))
        .bind(now)
        .bind(slug)
        .bind(managed_by)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("insert into audit_head (chain_id, seq, hash) values ($1, 0, $2)")
            .bind(id)
            .bind(audit::GENESIS)
            .execute(&mut *tx)
            .await?;
        let actor = Actor::instance(id, meta.clone());
        audit!(
            tx,
            Prepared::new(
                &actor,
                "organization.create",
                "organization",
                id,
                serde_json::json!({"title": title, "slug": slug, "managed_by": managed_by}),
            )
        );
        Ok::<_, ApiError>(id)
    })
}

/// A slug is a lowercase DNS label (what Kubernetes allows as a resource name segment).
pub fn validate_slug(slug: &str) -> ApiResult<()> {
    let ok = !slug.is_empty()
        && slug.len() <= 63
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::field(
            ErrorCode::ValidationError,
            "slug",
            format!(
                "{slug:?} is not a valid slug: use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit"
            ),
        ))
    }
}

/// Creates a user in an organization with a legacy token; returns the user and the token.
/// Instance administration (CLI, bootstrap) calls it without an actor; the API goes through
/// [`create_user`].
pub async fn create_user_in_org(
    db: &Db,
    by: &Actor,
    org_id: i64,
    new: &NewUser,
) -> ApiResult<(UserRow, String)> {
    create_user_with(db, by, org_id, new, None).await
}

/// Checks the fields of a new user (email, password, token) without touching the database.
pub fn validate_new_user(new: &NewUser) -> ApiResult<()> {
    let email = new.email.trim();
    if !email.contains('@') || email.len() > 254 {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "email",
            "enter a valid email address",
        ));
    }
    if new.password.as_ref().is_some_and(|p| p.len() < 8) {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "password",
            "must be at least 8 characters",
        ));
    }
    if new
        .token
        .as_ref()
        .is_some_and(|t| t.len() < 20 || t.chars().any(char::is_whitespace))
    {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "token",
            "a token must be at least 20 characters without spaces",
        ));
    }
    Ok(())
}

/// An invitation a sign-up uses: claimed in the transaction that creates the user.
#[derive(Debug, Clone)]
pub struct InvitationClaim {
    /// The invitation.
    pub id: i64,
    /// The workspace it adds the new user to.
    pub workspace_id: Option<i64>,
    /// Who is signing up (for the audit entry).
    pub meta: crate::authz::RequestMeta,
}

/// [`create_user_in_org`], optionally claiming an invitation in the same transaction: the link is
/// used, the user exists, is in the workspace and both are audited — or nothing happened.
pub(crate) async fn create_user_with(
    db: &Db,
    by: &Actor,
    org_id: i64,
    new: &NewUser,
    invitation: Option<InvitationClaim>,
) -> ApiResult<(UserRow, String)> {
    validate_new_user(new)?;
    let email = new.email.trim().to_string();
    let password_hash = match &new.password {
        Some(p) => Some(auth::hash_password(p).map_err(ApiError::internal)?),
        None => None,
    };
    let token = match &new.token {
        Some(t) => t.clone(),
        None => auth::new_legacy_token(),
    };
    let now = now_micros();
    let username = new.username.clone().unwrap_or_else(|| email.clone());
    let result: ApiResult<UserRow> = with_tx!(db, tx, {
        // Emails are unique per organization: another tenant's users stay invisible.
        let taken: Option<i64> = sqlx::query_scalar(
            "select id from app_user where home_organization_id = $2 and lower(email) = lower($1)",
        )
        .bind(&email)
        .bind(org_id)
        .fetch_optional(&mut *tx)
        .await?;
        if taken.is_some() {
            return Err(ApiError::field(
                ErrorCode::Conflict,
                "email",
                "a user with this email already exists",
            ));
        }
        let token_taken: Option<i64> =
            sqlx::query_scalar("select id from api_token where token_hash = $1")
                .bind(auth::hash_token(&token))
                .fetch_optional(&mut *tx)
                .await?;
        if token_taken.is_some() {
            return Err(ApiError::field(
                ErrorCode::Conflict,
                "token",
                "this token is already in use",
            ));
        }
        let id: i64 = sqlx::query_scalar(
            "insert into app_user (email, username, first_name, last_name, password_hash, is_active, \
             active_organization_id, date_joined, last_activity, home_organization_id) \
             values ($1, $2, $3, $4, $5, true, $6, $7, $7, $6) returning id",
        )
        .bind(&email)
        .bind(&username)
        .bind(&new.first_name)
        .bind(&new.last_name)
        .bind(&password_hash)
        .bind(org_id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("insert into org_member (organization_id, user_id, role, created_at) values ($1, $2, $3, $4)")
            .bind(org_id)
            .bind(id)
            .bind(new.role.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "insert into api_token (user_id, kind, token_hash, jti, preview, created_at) values ($1, 'legacy', $2, null, $3, $4)",
        )
        .bind(id)
        .bind(auth::hash_token(&token))
        .bind(auth::preview(&token))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query_as::<_, UserRow>(&format!(
            "select {USER_COLUMNS} from app_user u where u.id = $1"
        ))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let mut entry = Prepared::new(
            by,
            "user.create",
            "user",
            id,
            serde_json::json!({"email": email, "role": new.role.as_str()}),
        );
        entry.chain_id = org_id;
        entry.organization_id = Some(org_id);
        audit!(tx, entry);
        if let Some(inv) = &invitation {
            // Claimed here, so two sign-ups racing for one link cannot both succeed and a
            // failed sign-up leaves the link unused.
            let claimed = sqlx::query(
                "update invitation set used_at = $1, used_by = $2 where id = $3 and used_at is null \
                 and revoked_at is null and expires_at > $1",
            )
            .bind(now)
            .bind(id)
            .bind(inv.id)
            .execute(&mut *tx)
            .await?;
            if claimed.rows_affected() != 1 {
                return Err(ApiError::new(
                    ErrorCode::InvalidInvitation,
                    "this invitation link was just used or revoked; ask for a new one",
                ));
            }
            if let Some(ws) = inv.workspace_id {
                sqlx::query(
                    "insert into workspace_member (workspace_id, user_id, created_at) values ($1, $2, $3) on conflict do nothing",
                )
                .bind(ws)
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            let mut joined = Actor::instance(org_id, inv.meta.clone());
            joined.user_id = id;
            joined.email = email.clone();
            audit!(
                tx,
                Prepared::new(
                    &joined,
                    "invitation.accept",
                    "invitation",
                    inv.id,
                    serde_json::json!({"role": new.role.as_str(), "workspace": inv.workspace_id, "user": id}),
                )
            );
        }
        Ok(row)
    });
    Ok((result?, token))
}

/// Creates a user in the actor's organization (needs `user.manage`; cannot grant a role above
/// the actor's own).
pub async fn create_user(db: &Db, actor: &Actor, new: &NewUser) -> ApiResult<(UserRow, String)> {
    actor.require(Permission::OrgManage)?;
    if let Err(why) = authz::check_grant(actor.role, None, Some(new.role), 1) {
        return Err(refuse_escalation(
            db,
            actor,
            "user.create",
            0,
            &why,
            serde_json::json!({"email": new.email, "role": new.role.as_str()}),
        )
        .await);
    }
    create_user_in_org(db, actor, actor.org_id, new).await
}

/// Audits a refused privilege change (in its own transaction: the change itself never
/// happened) and returns the error for the caller.
pub async fn refuse_escalation(
    db: &Db,
    actor: &Actor,
    action: &str,
    target: i64,
    why: &str,
    summary: serde_json::Value,
) -> ApiError {
    let mut summary = summary;
    if let serde_json::Value::Object(map) = &mut summary {
        map.insert("refused".into(), serde_json::Value::String(why.to_string()));
    }
    let entry = Prepared::new(actor, action, "user", target, summary).outcome(Outcome::Denied);
    if let Err(e) = audit::record(db, entry).await {
        return e;
    }
    ApiError::new(ErrorCode::PrivilegeEscalation, why.to_string())
}

#[derive(sqlx::FromRow)]
struct ActorRow {
    user_id: i64,
    org_id: i64,
    role: String,
    email: String,
}

fn actor_from(row: ActorRow) -> Option<Actor> {
    Some(Actor {
        user_id: row.user_id,
        org_id: row.org_id,
        role: Role::parse(&row.role)?,
        email: row.email,
        meta: RequestMeta::default(),
    })
}

/// The actor behind a legacy token, if the token and its user are active.
pub async fn actor_for_legacy_token(db: &Db, token: &str) -> ApiResult<Option<Actor>> {
    let row: Option<ActorRow> = with_read!(db, conn, {
        sqlx::query_as(
            "select u.id as user_id, m.organization_id as org_id, m.role, u.email \
             from api_token t join app_user u on u.id = t.user_id \
             join org_member m on m.user_id = u.id and m.organization_id = u.active_organization_id \
             where t.token_hash = $1 and t.kind = 'legacy' and t.revoked_at is null and u.is_active \
             and m.deactivated_at is null",
        )
        .bind(auth::hash_token(token))
        .fetch_optional(conn)
        .await?
    });
    Ok(row.and_then(actor_from))
}

/// The actor behind a verified access token: its user must be active and, when it was
/// exchanged for a personal access token, that token must be neither revoked nor expired.
pub async fn actor_for_access(db: &Db, claims: &auth::Claims) -> ApiResult<Option<Actor>> {
    // Access tokens are always exchanged from a personal access token (checked when verified).
    let Some(pat) = &claims.pat else {
        return Ok(None);
    };
    let row: Option<ActorRow> = with_read!(db, conn, {
        sqlx::query_as(
            "select u.id as user_id, m.organization_id as org_id, m.role, u.email \
             from app_user u join org_member m on m.user_id = u.id and m.organization_id = u.active_organization_id \
             join api_token t on t.user_id = u.id and t.jti = $2 and t.kind = 'pat' and t.revoked_at is null \
             and (t.expires_at is null or t.expires_at > $3) \
             where u.id = $1 and u.is_active and m.deactivated_at is null",
        )
        .bind(claims.user_id)
        .bind(pat)
        .bind(now_micros())
        .fetch_optional(conn)
        .await?
    });
    Ok(row.and_then(actor_from))
}

/// The actor for a user id taken from a verified access token.
pub async fn actor_for_user(db: &Db, user_id: i64) -> ApiResult<Option<Actor>> {
    let row: Option<ActorRow> = with_read!(db, conn, {
        sqlx::query_as(
            "select u.id as user_id, m.organization_id as org_id, m.role, u.email \
             from app_user u join org_member m on m.user_id = u.id and m.organization_id = u.active_organization_id \
             where u.id = $1 and u.is_active and m.deactivated_at is null",
        )
        .bind(user_id)
        .fetch_optional(conn)
        .await?
    });
    Ok(row.and_then(actor_from))
}

/// Whether a personal access token (by `jti`) exists and is not revoked.
pub async fn pat_is_active(db: &Db, jti: &str, user_id: i64) -> ApiResult<bool> {
    let found: Option<i64> = with_read!(db, conn, {
        sqlx::query_scalar(
            "select id from api_token where jti = $1 and user_id = $2 and kind = 'pat' and revoked_at is null",
        )
        .bind(jti)
        .bind(user_id)
        .fetch_optional(conn)
        .await?
    });
    Ok(found.is_some())
}

/// A personal access token as listed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PatView {
    /// The token without its signature (`header.payload`), as Label Studio lists it.
    pub token: String,
    /// ISO creation time.
    pub created_at: String,
    /// ISO expiry time.
    pub expires_at: Option<String>,
    /// The token's id (JWT `jti`), which revokes it; the UI's, not the API's.
    #[serde(skip)]
    pub jti: String,
}

/// Issues a personal access token for the actor, valid `ttl_secs`.
pub async fn create_pat(db: &Db, actor: &Actor, key: &[u8], ttl_secs: i64) -> ApiResult<String> {
    let now = now_micros();
    let claims = auth::Claims {
        pat: None,
        token_type: "refresh".into(),
        iat: now / 1_000_000,
        exp: now / 1_000_000 + ttl_secs,
        jti: uuid::Uuid::new_v4().simple().to_string(),
        user_id: actor.user_id,
    };
    let token = auth::sign_jwt(key, &claims);
    let unsigned = token
        .rsplit_once('.')
        .map_or(token.as_str(), |(head, _)| head)
        .to_string();
    with_tx!(db, tx, {
        sqlx::query(
            "insert into api_token (user_id, kind, token_hash, jti, preview, created_at, expires_at) \
             values ($1, 'pat', $2, $3, $4, $5, $6)",
        )
        .bind(actor.user_id)
        .bind(auth::hash_token(&token))
        .bind(&claims.jti)
        .bind(&unsigned)
        .bind(now)
        .bind(claims.exp * 1_000_000)
        .execute(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "token.create",
                "token",
                &claims.jti,
                serde_json::json!({"kind": "pat", "expires_at": super::format_micros(claims.exp * 1_000_000)})
            )
        );
        Ok::<_, ApiError>(())
    })?;
    Ok(token)
}

#[derive(sqlx::FromRow)]
struct PatRow {
    jti: String,
    preview: String,
    created_at: i64,
    expires_at: Option<i64>,
}

/// Lists the actor's unrevoked, unexpired personal access tokens.
pub async fn list_pats(db: &Db, actor: &Actor) -> ApiResult<Vec<PatView>> {
    let now = now_micros();
    let rows: Vec<PatRow> = with_read!(db, conn, {
        sqlx::query_as(
            "select coalesce(jti, '') as jti, preview, created_at, expires_at from api_token where user_id = $1 and kind = 'pat' \
             and revoked_at is null and (expires_at is null or expires_at > $2) order by id",
        )
        .bind(actor.user_id)
        .bind(now)
        .fetch_all(conn)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|r| PatView {
            token: r.preview,
            created_at: super::format_micros(r.created_at),
            expires_at: r.expires_at.map(super::format_micros),
            jti: r.jti,
        })
        .collect())
}

/// The actor's legacy token as it can still be shown (stored hashed: its first and last
/// characters) and its ISO creation time, if they have one.
pub async fn legacy_token_preview(db: &Db, actor: &Actor) -> ApiResult<Option<(String, String)>> {
    let row: Option<(String, i64)> = with_read!(db, conn, {
        sqlx::query_as(
            "select preview, created_at from api_token where user_id = $1 and kind = 'legacy' \
             and revoked_at is null order by id desc limit 1",
        )
        .bind(actor.user_id)
        .fetch_optional(conn)
        .await?
    });
    Ok(row.map(|(preview, at)| (preview, super::format_micros(at))))
}

/// Revokes the actor's personal access token with this `jti`; false if there was none to revoke.
pub async fn revoke_pat(db: &Db, actor: &Actor, jti: &str) -> ApiResult<bool> {
    let now = now_micros();
    with_tx!(db, tx, {
        let done = sqlx::query(
            "update api_token set revoked_at = $1 where jti = $2 and user_id = $3 and kind = 'pat' and revoked_at is null",
        )
        .bind(now)
        .bind(jti)
        .bind(actor.user_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() > 0 {
            audit!(
                tx,
                Prepared::new(
                    actor,
                    "token.revoke",
                    "token",
                    jti,
                    serde_json::json!({"kind": "pat"})
                )
            );
        }
        Ok::<_, ApiError>(done.rows_affected() > 0)
    })
}

/// Replaces the actor's legacy token with a new one and returns it.
pub async fn reset_legacy_token(db: &Db, actor: &Actor) -> ApiResult<String> {
    let token = auth::new_legacy_token();
    let now = now_micros();
    with_tx!(db, tx, {
        sqlx::query("delete from api_token where user_id = $1 and kind = 'legacy'")
            .bind(actor.user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "insert into api_token (user_id, kind, token_hash, preview, created_at) values ($1, 'legacy', $2, $3, $4)",
        )
        .bind(actor.user_id)
        .bind(auth::hash_token(&token))
        .bind(auth::preview(&token))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "token.reset",
                "user",
                actor.user_id,
                serde_json::json!({"kind": "legacy"})
            )
        );
        Ok::<_, ApiError>(())
    })?;
    Ok(token)
}

#[derive(sqlx::FromRow)]
pub(crate) struct MemberRow {
    id: i64,
    email: String,
    username: String,
    first_name: String,
    last_name: String,
    is_active: bool,
    active_organization_id: Option<i64>,
    date_joined: i64,
    last_activity: i64,
    role: String,
}

/// Columns of a member of organization `m` (user `u`): active means active in that organization.
pub(crate) const MEMBER_COLUMNS: &str = "u.id, u.email, u.username, u.first_name, u.last_name, \
     (u.is_active and m.deactivated_at is null) as is_active, u.active_organization_id, u.date_joined, \
     u.last_activity, m.role";

impl MemberRow {
    pub(crate) fn split(self) -> (UserRow, Option<Role>) {
        let role = Role::parse(&self.role);
        (
            UserRow {
                id: self.id,
                email: self.email,
                username: self.username,
                first_name: self.first_name,
                last_name: self.last_name,
                is_active: self.is_active,
                active_organization_id: self.active_organization_id,
                date_joined: self.date_joined,
                last_activity: self.last_activity,
            },
            role,
        )
    }
}

/// Lists the members of the actor's organization.
pub async fn list_users(db: &Db, actor: &Actor) -> ApiResult<Vec<UserView>> {
    actor.require(Permission::OrgView)?;
    let rows: Vec<MemberRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {MEMBER_COLUMNS} from app_user u join org_member m on m.user_id = u.id \
             where m.organization_id = $1 order by u.id"
        ))
        .bind(actor.org_id)
        .fetch_all(conn)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|r| {
            let (u, role) = r.split();
            u.view(role)
        })
        .collect())
}

/// One member of the actor's organization (404 for anyone else).
pub async fn get_user(db: &Db, actor: &Actor, user_id: i64) -> ApiResult<UserView> {
    if user_id != actor.user_id {
        actor.require(Permission::OrgView)?;
    }
    let row: Option<MemberRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {MEMBER_COLUMNS} from app_user u join org_member m on m.user_id = u.id \
             where m.organization_id = $1 and u.id = $2"
        ))
        .bind(actor.org_id)
        .bind(user_id)
        .fetch_optional(conn)
        .await?
    });
    let (user, role) = row.ok_or_else(|| ApiError::not_found("user"))?.split();
    Ok(user.view(role))
}

/// Changes to a user's profile.
#[derive(Debug, Default, Clone)]
pub struct UserChanges {
    /// New first name.
    pub first_name: Option<String>,
    /// New last name.
    pub last_name: Option<String>,
    /// New username.
    pub username: Option<String>,
    /// Deactivate (`false`) or reactivate (`true`) the membership in the actor's organization.
    pub is_active: Option<bool>,
}

/// Updates a user's profile: oneself, or anyone in the organization with
/// `organization.manage`. Only profiles of users who belong to this organization (their home)
/// can be edited by its administrators.
pub async fn update_user(
    db: &Db,
    actor: &Actor,
    user_id: i64,
    changes: &UserChanges,
) -> ApiResult<UserView> {
    // Existence and tenancy first: another organization's user is a 404.
    get_user(db, actor, user_id).await?;
    if user_id != actor.user_id || changes.is_active.is_some() {
        actor.require(Permission::OrgManage)?;
    }
    if let Some(active) = changes.is_active {
        super::orgs::set_member(db, actor, user_id, None, Some(active)).await?;
    }
    let profile =
        changes.first_name.is_some() || changes.last_name.is_some() || changes.username.is_some();
    if profile {
        with_tx!(db, tx, {
            sqlx::query(
                "update app_user set first_name = coalesce($1, first_name), last_name = coalesce($2, last_name), \
                 username = coalesce($3, username) where id = $4",
            )
            .bind(&changes.first_name)
            .bind(&changes.last_name)
            .bind(&changes.username)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
            audit!(
                tx,
                Prepared::new(
                    actor,
                    "user.update",
                    "user",
                    user_id,
                    serde_json::json!({
                        "first_name": changes.first_name,
                        "last_name": changes.last_name,
                        "username": changes.username,
                    }),
                )
            );
            Ok::<_, ApiError>(())
        })?;
    }
    get_user(db, actor, user_id).await
}

/// Makes `org_id` the actor's active organization: the one their sessions and tokens act in
/// from the next request on. Only an organization the user is an active member of; any other
/// is not found (its existence is not revealed). Audited in both organizations' logs.
pub async fn set_active_organization(db: &Db, actor: &Actor, org_id: i64) -> ApiResult<()> {
    with_tx!(db, tx, {
        let member: Option<String> = sqlx::query_scalar(
            "select role from org_member where organization_id = $1 and user_id = $2 and deactivated_at is null",
        )
        .bind(org_id)
        .bind(actor.user_id)
        .fetch_optional(&mut *tx)
        .await?;
        if member.is_none() {
            return Err(ApiError::field(
                ErrorCode::NotFound,
                "active_organization",
                format!("you are not an active member of an organization with id {org_id}"),
            ));
        }
        sqlx::query("update app_user set active_organization_id = $1 where id = $2")
            .bind(org_id)
            .bind(actor.user_id)
            .execute(&mut *tx)
            .await?;
        let summary = serde_json::json!({"from": actor.org_id, "to": org_id});
        audit!(
            tx,
            Prepared::new(
                actor,
                "user.switch_organization",
                "organization",
                org_id,
                summary.clone()
            )
        );
        if org_id != actor.org_id {
            let mut entering = Prepared::new(
                actor,
                "user.switch_organization",
                "organization",
                org_id,
                summary,
            );
            entering.chain_id = org_id;
            entering.organization_id = Some(org_id);
            audit!(tx, entering);
        }
        Ok::<_, ApiError>(())
    })
}

/// Records that a user made a request (at most about once a minute per user).
pub async fn touch_activity(db: &Db, user_id: i64) -> ApiResult<()> {
    let now = now_micros();
    with_tx!(db, tx, {
        sqlx::query("update app_user set last_activity = $1 where id = $2 and last_activity < $3")
            .bind(now)
            .bind(user_id)
            .bind(now - 60_000_000)
            .execute(&mut *tx)
            .await?;
        Ok::<_, ApiError>(())
    })
}

/// How long a (credential, address) pair is remembered: a credential used again from an
/// address after this long is audited as a new source again. Bounds the `token_source` table.
pub const TOKEN_SOURCE_DAYS: i64 = 90;

/// Forgets (credential, address) pairs first seen before `cutoff` (microseconds).
pub async fn forget_token_sources(db: &Db, cutoff: i64) -> ApiResult<u64> {
    with_tx!(db, tx, {
        let done = sqlx::query("delete from token_source where first_seen < $1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        Ok::<_, ApiError>(done.rows_affected())
    })
}

/// Records that a credential was used from an address; the first use from an address it was
/// not used from in the last [`TOKEN_SOURCE_DAYS`] is an audit entry (`auth.new_source`).
pub async fn note_token_source(db: &Db, actor: &Actor, key: &str) -> ApiResult<()> {
    let ip = actor.meta.client_ip.clone();
    with_tx!(db, tx, {
        let done = sqlx::query(
            "insert into token_source (token_key, client_ip, first_seen) values ($1, $2, $3) \
             on conflict (token_key, client_ip) do nothing",
        )
        .bind(key)
        .bind(&ip)
        .bind(now_micros())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            audit!(
                tx,
                Prepared::new(
                    actor,
                    "auth.new_source",
                    "token",
                    key,
                    serde_json::json!({"client_ip": ip, "user_agent": actor.meta.user_agent}),
                )
            );
        }
        Ok::<_, ApiError>(())
    })
}
