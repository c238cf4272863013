//! Browser sessions (ADR 0027): password sign-in with per-account lock-out, server-side
//! sessions with a CSRF token tied to each, sign-out and sign-out everywhere, and setting a
//! password.
//!
//! The cookie value is a random secret stored only as its SHA-256 hash; the CSRF token is a
//! second random value kept with the session (it authorizes nothing without the cookie). Every
//! sign-in, refused sign-in, lock-out and sign-out is audited in the user's organization.
//! This module never decides cookie attributes or renders anything: that is the HTTP layer's.

use serde_json::json;

use super::{
    Db,
    audit::{self, Outcome, Prepared, audit},
    now_micros, with_read, with_tx,
};
use crate::{
    auth,
    authz::{Actor, RequestMeta, Role},
    error::{ApiError, ApiResult, ErrorCode},
};

/// When password sign-in locks an account.
#[derive(Debug, Clone, Copy)]
pub struct Lockout {
    /// Consecutive failed sign-ins that lock the account (0: never locked).
    pub max_failures: u32,
    /// How long a locked account refuses password sign-in, in seconds.
    pub lock_secs: u64,
}

/// A session just opened: the cookie value (shown once) and its CSRF token.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The cookie value.
    pub token: String,
    /// The CSRF token forms and scripts send back.
    pub csrf_token: String,
    /// The signed-in user.
    pub user_id: i64,
    /// Expiry, UTC microseconds.
    pub expires_at: i64,
}

/// A session found by its cookie.
#[derive(Debug, Clone)]
pub struct Session {
    /// Row id.
    pub id: i64,
    /// The CSRF token tied to the session.
    pub csrf_token: String,
}

#[derive(sqlx::FromRow)]
struct Candidate {
    id: i64,
    email: String,
    password_hash: Option<String>,
    is_active: bool,
    failed_logins: i32,
    locked_until: Option<i64>,
    org_id: Option<i64>,
}

/// The message of a refused sign-in: the same for an unknown email and a wrong password.
pub const WRONG_CREDENTIALS: &str = "The email or password is not correct.";

/// The refusal of a locked account.
pub fn locked_error(until: i64, now: i64) -> ApiError {
    let minutes = ((until - now) as f64 / 60_000_000.0).ceil().max(1.0) as i64;
    ApiError::new(
        ErrorCode::AccountLocked,
        format!(
            "This account is locked after too many failed sign-ins. Try again in {minutes} minute{}, or ask an administrator to set a new password.",
            if minutes == 1 { "" } else { "s" }
        ),
    )
}

fn actor_of(c: &Candidate, org_id: i64, meta: &RequestMeta) -> Actor {
    Actor {
        user_id: c.id,
        org_id,
        role: Role::Annotator,
        email: c.email.clone(),
        meta: meta.clone(),
    }
}

/// Signs in with email and password and opens a session of `ttl_secs`. Emails are unique per
/// organization, so one email may name accounts in several organizations: the account whose
/// password matches is signed in. A wrong password counts against every unlocked account of
/// that email; `lockout.max_failures` consecutive failures lock the account for
/// `lockout.lock_secs`. A locked account is refused without its password being checked.
pub async fn sign_in(
    db: &Db,
    meta: &RequestMeta,
    email: &str,
    password: &str,
    lockout: Lockout,
    ttl_secs: i64,
) -> ApiResult<NewSession> {
    let email = email.trim();
    if email.is_empty() || password.is_empty() {
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "Enter your email and password.",
        ));
    }
    let candidates: Vec<Candidate> = with_read!(db, conn, {
        sqlx::query_as(
            "select u.id, u.email, u.password_hash, u.is_active, u.failed_logins, u.locked_until, \
             m.organization_id as org_id \
             from app_user u left join org_member m on m.user_id = u.id \
             and m.organization_id = u.active_organization_id and m.deactivated_at is null \
             where lower(u.email) = lower($1) order by u.id",
        )
        .bind(email)
        .fetch_all(conn)
        .await?
    });
    let now = now_micros();
    let mut locked: Option<i64> = None;
    let mut matched: Option<&Candidate> = None;
    let mut wrong: Vec<&Candidate> = Vec::new();
    for c in &candidates {
        if let Some(until) = c.locked_until.filter(|u| *u > now) {
            locked = Some(locked.map_or(until, |l: i64| l.max(until)));
            continue;
        }
        let ok = c
            .password_hash
            .as_deref()
            .is_some_and(|h| auth::verify_password(password, h));
        if ok && matched.is_none() {
            matched = Some(c);
        } else if !ok {
            wrong.push(c);
        }
    }
    if let Some(c) = matched
        && c.is_active
        && let Some(org_id) = c.org_id
    {
        return open_session(db, meta, c, org_id, ttl_secs, "password").await;
    }
    if let Some(c) = matched {
        // The password is right but the account cannot act: say so only now.
        let actor = actor_of(c, c.org_id.unwrap_or(audit::INSTANCE_CHAIN), meta);
        let entry = Prepared::new(
            &actor,
            "auth.login",
            "user",
            c.id,
            json!({"method": "password", "refused": "deactivated"}),
        )
        .outcome(Outcome::Denied);
        audit::record(db, entry).await?;
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "This account is deactivated; ask an administrator of your organization.",
        ));
    }
    record_failures(db, meta, email, &wrong, lockout, now).await?;
    if let Some(until) = locked {
        return Err(locked_error(until, now));
    }
    Err(ApiError::new(ErrorCode::Unauthenticated, WRONG_CREDENTIALS))
}

/// Counts a failed sign-in against each account, locks those that reach the limit, and audits
/// it all (one entry per account; an unknown email gets one anonymous entry).
async fn record_failures(
    db: &Db,
    meta: &RequestMeta,
    email: &str,
    wrong: &[&Candidate],
    lockout: Lockout,
    now: i64,
) -> ApiResult<()> {
    if wrong.is_empty() {
        let entry = audit::anonymous(
            meta,
            "auth.login_failed",
            json!({"method": "password", "reason": "unknown email", "email": email}),
        );
        return audit::record(db, entry).await;
    }
    let lock_until = now.saturating_add((lockout.lock_secs as i64).saturating_mul(1_000_000));
    with_tx!(db, tx, {
        for c in wrong {
            let failures = c.failed_logins + 1;
            let locks = lockout.max_failures > 0 && failures as u32 >= lockout.max_failures;
            sqlx::query("update app_user set failed_logins = $1, locked_until = $2 where id = $3")
                .bind(if locks { 0 } else { failures })
                .bind(if locks { Some(lock_until) } else { None })
                .bind(c.id)
                .execute(&mut *tx)
                .await?;
            let actor = actor_of(c, c.org_id.unwrap_or(audit::INSTANCE_CHAIN), meta);
            audit!(
                tx,
                Prepared::new(
                    &actor,
                    "auth.login_failed",
                    "user",
                    c.id,
                    json!({"method": "password", "reason": "wrong password", "failures": failures}),
                )
                .outcome(Outcome::Failed)
            );
            if locks {
                audit!(
                    tx,
                    Prepared::new(
                        &actor,
                        "auth.locked",
                        "user",
                        c.id,
                        json!({"failures": failures, "locked_until": super::format_micros(lock_until)}),
                    )
                    .outcome(Outcome::Denied)
                );
            }
        }
        Ok::<_, ApiError>(())
    })
}

async fn open_session(
    db: &Db,
    meta: &RequestMeta,
    c: &Candidate,
    org_id: i64,
    ttl_secs: i64,
    method: &str,
) -> ApiResult<NewSession> {
    let now = now_micros();
    let policy = org_policy(db, org_id).await?;
    let ttl_secs = policy.map_or(ttl_secs, |p| {
        ttl_secs.min(p.max_session_age.saturating_mul(60))
    });
    let session = NewSession {
        token: auth::random_secret(48),
        csrf_token: auth::random_secret(40),
        user_id: c.id,
        expires_at: now.saturating_add(ttl_secs.saturating_mul(1_000_000)),
    };
    let actor = actor_of(c, org_id, meta);
    with_tx!(db, tx, {
        sqlx::query("update app_user set failed_logins = 0, locked_until = null where id = $1")
            .bind(c.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("delete from user_session where user_id = $1 and expires_at <= $2")
            .bind(c.id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let id: i64 = sqlx::query_scalar(
            "insert into user_session (token_hash, user_id, csrf_token, created_at, expires_at, client_ip, user_agent, last_seen_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $4) returning id",
        )
        .bind(auth::hash_token(&session.token))
        .bind(c.id)
        .bind(&session.csrf_token)
        .bind(now)
        .bind(session.expires_at)
        .bind(&meta.client_ip)
        .bind(&meta.user_agent)
        .fetch_one(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                &actor,
                "auth.login",
                "user",
                c.id,
                json!({"method": method, "session": id}),
            )
        );
        Ok::<_, ApiError>(())
    })?;
    Ok(session)
}

/// Opens a session for a user who just proved who they are another way (signing up through an
/// invitation with a new password: `method` "password"; single sign-on: "saml"; a directory: "ldap").
pub async fn open_for_user(
    db: &Db,
    meta: &RequestMeta,
    user_id: i64,
    ttl_secs: i64,
    method: &str,
) -> ApiResult<NewSession> {
    let c: Option<Candidate> = with_read!(db, conn, {
        sqlx::query_as(
            "select u.id, u.email, u.password_hash, u.is_active, u.failed_logins, u.locked_until, \
             m.organization_id as org_id \
             from app_user u left join org_member m on m.user_id = u.id \
             and m.organization_id = u.active_organization_id and m.deactivated_at is null \
             where u.id = $1",
        )
        .bind(user_id)
        .fetch_optional(conn)
        .await?
    });
    let c = c.ok_or_else(|| ApiError::not_found("user"))?;
    let org_id = c
        .org_id
        .filter(|_| c.is_active)
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated, "this account cannot sign in"))?;
    open_session(db, meta, &c, org_id, ttl_secs, method).await
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    session_id: i64,
    csrf_token: String,
    user_id: i64,
    org_id: i64,
    role: String,
    email: String,
    last_seen: i64,
}

/// How often a session's last use is written (a write per request would be wasteful).
const LAST_SEEN_GRANULARITY_MICROS: i64 = 60_000_000;

/// The actor and session behind a session cookie, if the session is current and its user active.
pub async fn actor_for_session(db: &Db, token: &str) -> ApiResult<Option<(Actor, Session)>> {
    let now = now_micros();
    let row: Option<SessionRow> = with_read!(db, conn, {
        sqlx::query_as(
            "select s.id as session_id, s.csrf_token, u.id as user_id, m.organization_id as org_id, m.role, u.email, \
             case when s.last_seen_at > s.created_at then s.last_seen_at else s.created_at end as last_seen \
             from user_session s join app_user u on u.id = s.user_id \
             join org_member m on m.user_id = u.id and m.organization_id = u.active_organization_id \
             left join session_policy p on p.organization_id = m.organization_id \
             where s.token_hash = $1 and s.expires_at > $2 and u.is_active and m.deactivated_at is null \
             and (p.organization_id is null or (s.created_at + p.max_session_age * 60000000 > $2 \
             and (case when s.last_seen_at > s.created_at then s.last_seen_at else s.created_at end) \
             + p.max_time_between_activity * 60000000 > $2))",
        )
        .bind(auth::hash_token(token))
        .bind(now)
        .fetch_optional(conn)
        .await?
    });
    if let Some(r) = &row
        && r.last_seen < now - LAST_SEEN_GRANULARITY_MICROS
    {
        with_tx!(db, tx, {
            sqlx::query("update user_session set last_seen_at = $1 where id = $2")
                .bind(now)
                .bind(r.session_id)
                .execute(&mut *tx)
                .await?;
            Ok::<_, ApiError>(())
        })?;
    }
    Ok(row.and_then(|r| {
        let role = Role::parse(&r.role)?;
        Some((
            Actor {
                user_id: r.user_id,
                org_id: r.org_id,
                role,
                email: r.email,
                meta: RequestMeta::default(),
            },
            Session {
                id: r.session_id,
                csrf_token: r.csrf_token,
            },
        ))
    }))
}

/// Ends one session of the actor (`everywhere`: every session of theirs). Returns how many ended.
pub async fn sign_out(db: &Db, actor: &Actor, session_id: i64, everywhere: bool) -> ApiResult<u64> {
    with_tx!(db, tx, {
        let ended = if everywhere {
            sqlx::query("delete from user_session where user_id = $1")
                .bind(actor.user_id)
                .execute(&mut *tx)
                .await?
        } else {
            sqlx::query("delete from user_session where id = $1 and user_id = $2")
                .bind(session_id)
                .bind(actor.user_id)
                .execute(&mut *tx)
                .await?
        }
        .rows_affected();
        audit!(
            tx,
            Prepared::new(
                actor,
                if everywhere {
                    "auth.logout_all"
                } else {
                    "auth.logout"
                },
                "user",
                actor.user_id,
                json!({"sessions_ended": ended}),
            )
        );
        Ok::<_, ApiError>(ended)
    })
}

/// Sets a user's password (instance administration: the CLI). Clears the lock-out and ends
/// every session of the user, so a reset locks out whoever knew the old password.
pub async fn set_password(db: &Db, by: &Actor, user_id: i64, password: &str) -> ApiResult<()> {
    if password.chars().count() < 8 {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "password",
            "must be at least 8 characters",
        ));
    }
    let hash = auth::hash_password(password).map_err(ApiError::internal)?;
    with_tx!(db, tx, {
        let org: Option<Option<i64>> =
            sqlx::query_scalar("select home_organization_id from app_user where id = $1")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(org) = org else {
            return Err(ApiError::not_found("user"));
        };
        sqlx::query(
            "update app_user set password_hash = $1, failed_logins = 0, locked_until = null where id = $2",
        )
        .bind(&hash)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        let ended = sqlx::query("delete from user_session where user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let mut entry = Prepared::new(
            by,
            "user.set_password",
            "user",
            user_id,
            json!({"sessions_ended": ended}),
        );
        if let Some(org) = org {
            entry.chain_id = org;
            entry.organization_id = Some(org);
        }
        audit!(tx, entry);
        Ok::<_, ApiError>(())
    })
}

/// The id of the user with `email` in organization `org_id` (for the CLI).
pub async fn user_by_email(db: &Db, org_id: i64, email: &str) -> ApiResult<Option<i64>> {
    Ok(with_read!(db, conn, {
        sqlx::query_scalar(
            "select id from app_user where home_organization_id = $1 and lower(email) = lower($2)",
        )
        .bind(org_id)
        .bind(email.trim())
        .fetch_optional(conn)
        .await?
    }))
}

// ---------------------------------------------------------------------------------------------
// Session policy

/// An organization's session policy, in minutes (Label Studio Enterprise's
/// `/api/session-policy/`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SessionPolicy {
    /// A browser session ends this many minutes after sign-in.
    pub max_session_age: i64,
    /// A browser session ends after this many minutes without a request.
    pub max_time_between_activity: i64,
}

/// The organization's own policy, if it set one.
async fn org_policy(db: &Db, org: i64) -> ApiResult<Option<SessionPolicy>> {
    let row: Option<(i64, i64)> = with_read!(db, conn, {
        sqlx::query_as(
            "select max_session_age, max_time_between_activity from session_policy where organization_id = $1",
        )
        .bind(org)
        .fetch_optional(conn)
        .await?
    });
    Ok(row.map(|(a, b)| SessionPolicy {
        max_session_age: a,
        max_time_between_activity: b,
    }))
}

/// The policy in force for the actor's organization: its own, or the instance's session
/// lifetime (`instance_ttl_secs`) with no separate inactivity limit.
pub async fn get_policy(
    db: &Db,
    actor: &Actor,
    instance_ttl_secs: i64,
) -> ApiResult<SessionPolicy> {
    actor.require(crate::authz::Permission::OrgManage)?;
    let instance = (instance_ttl_secs / 60).max(1);
    Ok(org_policy(db, actor.org_id)
        .await?
        .unwrap_or(SessionPolicy {
            max_session_age: instance,
            max_time_between_activity: instance,
        }))
}

/// Changes the organization's policy (fields not given keep their value). Applies to sessions
/// already open as well. The session age cannot exceed the instance's session lifetime.
pub async fn set_policy(
    db: &Db,
    actor: &Actor,
    max_session_age: Option<i64>,
    max_time_between_activity: Option<i64>,
    instance_ttl_secs: i64,
) -> ApiResult<SessionPolicy> {
    let current = get_policy(db, actor, instance_ttl_secs).await?;
    let instance = (instance_ttl_secs / 60).max(1);
    let policy = SessionPolicy {
        max_session_age: max_session_age.unwrap_or(current.max_session_age),
        max_time_between_activity: max_time_between_activity
            .unwrap_or(current.max_time_between_activity),
    };
    if !(5..=instance).contains(&policy.max_session_age) {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "max_session_age",
            format!("give minutes from 5 to {instance} (the instance's session lifetime)"),
        ));
    }
    if !(5..=policy.max_session_age).contains(&policy.max_time_between_activity) {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "max_time_between_activity",
            format!(
                "give minutes from 5 to {} (max_session_age)",
                policy.max_session_age
            ),
        ));
    }
    let org = actor.org_id;
    with_tx!(db, tx, {
        sqlx::query(
            "insert into session_policy (organization_id, max_session_age, max_time_between_activity, updated_at) \
             values ($1, $2, $3, $4) on conflict (organization_id) do update set \
             max_session_age = excluded.max_session_age, \
             max_time_between_activity = excluded.max_time_between_activity, updated_at = excluded.updated_at",
        )
        .bind(org)
        .bind(policy.max_session_age)
        .bind(policy.max_time_between_activity)
        .bind(now_micros())
        .execute(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "session_policy.update",
                "organization",
                org,
                json!({"max_session_age": policy.max_session_age, "max_time_between_activity": policy.max_time_between_activity})
            )
        );
        Ok::<_, ApiError>(())
    })?;
    Ok(policy)
}
