//! LDAP sign-in per organization (ADR 0030): the directory settings an organization's
//! administrators keep (the service password sealed, never returned), the email domains that
//! route sign-ins to it, and the sign-in itself — the directory decides, the account and its
//! membership are created on the first good bind, and the profile, role, workspaces and project
//! roles follow the directory's groups at every sign-in.
//!
//! Failed directory sign-ins count against the local account's lock-out like password ones,
//! and an unknown login is refused with the same message after the same directory work (see
//! `crate::ldap`). Every outcome is audited in the organization's chain with its reason.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    Db,
    audit::{self, Outcome, Prepared, audit},
    groupmap::{
        GroupMapping, ProjectGroup, apply_group_mapping, check_mapped_projects, mapped_workspaces,
    },
    now_micros,
    sessions::{self, Lockout, NewSession, WRONG_CREDENTIALS},
    users, with_read, with_tx,
};
use crate::{
    auth,
    authz::{Actor, Permission, RequestMeta, Role},
    error::{ApiError, ApiResult, ErrorCode},
    ldap::{self as client, DirectoryConfig, Verdict},
    outbound::TargetPolicy,
    secrets::Sealer,
};

/// A password hash that no sign-in matches, checked when an account has none (equal work).
static EQUALIZER: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| auth::hash_password(&auth::random_secret(32)).unwrap_or_default());

/// Sealing purpose of the service account's password.
const PASSWORD_PURPOSE: &str = "ldap.bind_password";

fn default_true() -> bool {
    true
}
fn default_user_filter() -> String {
    "(uid={user})".into()
}
fn default_group_filter() -> String {
    "(member={dn})".into()
}
fn default_mail() -> String {
    "mail".into()
}
fn default_given() -> String {
    "givenName".into()
}
fn default_sn() -> String {
    "sn".into()
}
fn default_cn() -> String {
    "cn".into()
}

/// An organization's directory settings. `bind_password` is write-only: it is stored sealed,
/// never returned (`bind_password_set` says whether one is stored), and kept when a later
/// update omits it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LdapSettings {
    /// Directory sign-in is on.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// `ldaps://host[:port]`, or `ldap://host[:port]` with `start_tls` (plain LDAP is refused).
    pub server_uri: String,
    /// Upgrade `ldap://` connections with StartTLS (required for `ldap://`).
    #[serde(default)]
    pub start_tls: bool,
    /// PEM CA certificate(s) the server certificate must chain to; system roots when empty.
    #[serde(default)]
    pub ca_certificate: String,
    /// The service account Verity binds as to search (empty: anonymous search is not
    /// supported; set one).
    pub bind_dn: String,
    /// The service account's password (write-only).
    #[serde(default, skip_serializing)]
    pub bind_password: Option<String>,
    /// Whether a service password is stored (read-only; ignored on input).
    #[serde(default)]
    pub bind_password_set: bool,
    /// Base DN of the user search.
    #[serde(default)]
    pub user_search_base: String,
    /// User search filter; `{login}` is the login as typed and `{user}` the part before `@`,
    /// both escaped (RFC 4515). Exclude disabled accounts here, e.g.
    /// `(&(uid={user})(!(employeeType=disabled)))`.
    #[serde(default = "default_user_filter")]
    pub user_search_filter: String,
    /// A DN template instead of the search, e.g. `uid={user},ou=people,dc=example,dc=com`
    /// (values escaped per RFC 4514); the filter still applies to the entry.
    #[serde(default)]
    pub user_dn_template: String,
    /// Attribute with the user's email.
    #[serde(default = "default_mail")]
    pub attr_email: String,
    /// Attribute with the first name.
    #[serde(default = "default_given")]
    pub attr_first_name: String,
    /// Attribute with the last name.
    #[serde(default = "default_sn")]
    pub attr_last_name: String,
    /// Base DN of the group search (no groups read when empty).
    #[serde(default)]
    pub group_search_base: String,
    /// Group search filter; `{dn}` is the user's DN (escaped).
    #[serde(default = "default_group_filter")]
    pub group_search_filter: String,
    /// Attribute naming a group in the mappings (its full DN is accepted too).
    #[serde(default = "default_cn")]
    pub group_name_attr: String,
    /// Email domains whose sign-ins go to this directory (each to one organization only).
    #[serde(default)]
    pub domains: Vec<String>,
    /// Refuse password sign-in of this organization's members while directory sign-in is on.
    #[serde(default = "default_true")]
    pub native_login_disabled: bool,
    /// `[[role, group], …]`: members of the group get the role (the highest wins). When empty,
    /// the directory does not manage roles.
    #[serde(default)]
    pub roles_groups: Vec<(String, String)>,
    /// `[[workspace title, group], …]`: members of the group are members of the workspace
    /// (created when missing).
    #[serde(default)]
    pub workspaces_groups: Vec<(String, String)>,
    /// Project roles by group.
    #[serde(default)]
    pub projects_groups: Vec<ProjectGroup>,
    /// Role of new users (and of users in no mapped group when roles are mapped): `annotator`
    /// unless set.
    #[serde(default)]
    pub default_role: Option<String>,
}

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::field(ErrorCode::ValidationError, field, message)
}

fn normalize_domain(d: &str) -> String {
    d.trim().trim_start_matches('@').to_ascii_lowercase()
}

impl LdapSettings {
    /// What an organization without saved settings has: LDAP off, the defaults.
    pub fn unset() -> Self {
        Self {
            enabled: false,
            server_uri: String::new(),
            start_tls: false,
            ca_certificate: String::new(),
            bind_dn: String::new(),
            bind_password: None,
            bind_password_set: false,
            user_search_base: String::new(),
            user_search_filter: default_user_filter(),
            user_dn_template: String::new(),
            attr_email: default_mail(),
            attr_first_name: default_given(),
            attr_last_name: default_sn(),
            group_search_base: String::new(),
            group_search_filter: default_group_filter(),
            group_name_attr: default_cn(),
            domains: Vec::new(),
            native_login_disabled: true,
            roles_groups: Vec::new(),
            workspaces_groups: Vec::new(),
            projects_groups: Vec::new(),
            default_role: None,
        }
    }

    /// The group mapping part of the settings (shared with SCIM and SAML).
    pub fn mapping(&self) -> GroupMapping {
        GroupMapping {
            roles_groups: self.roles_groups.clone(),
            workspaces_groups: self.workspaces_groups.clone(),
            projects_groups: self.projects_groups.clone(),
            default_role: self.default_role.clone(),
        }
    }

    /// Checks every field; trims and normalizes in place.
    pub fn check(&mut self) -> ApiResult<()> {
        self.server_uri = self.server_uri.trim().to_string();
        client::check_uri(&self.server_uri, self.start_tls).map_err(|e| bad("server_uri", e))?;
        if !self.ca_certificate.trim().is_empty() {
            client::parse_ca(&self.ca_certificate).map_err(|e| bad("ca_certificate", e))?;
        }
        if self.bind_dn.trim().is_empty() {
            return Err(bad(
                "bind_dn",
                "set the DN of the service account Verity binds as to search the directory",
            ));
        }
        if self.user_dn_template.trim().is_empty() {
            if self.user_search_base.trim().is_empty() {
                return Err(bad(
                    "user_search_base",
                    "set the base DN of the user search (or a user_dn_template)",
                ));
            }
            if !self.user_search_filter.contains("{login}")
                && !self.user_search_filter.contains("{user}")
            {
                return Err(bad(
                    "user_search_filter",
                    "the filter must contain {login} or {user}, e.g. (uid={user})",
                ));
            }
        } else if !self.user_dn_template.contains("{login}")
            && !self.user_dn_template.contains("{user}")
        {
            return Err(bad(
                "user_dn_template",
                "the template must contain {login} or {user}, e.g. uid={user},ou=people,dc=example,dc=com",
            ));
        }
        for (field, filter) in [
            ("user_search_filter", &self.user_search_filter),
            ("group_search_filter", &self.group_search_filter),
        ] {
            let sample = filter
                .replace("{login}", "x")
                .replace("{user}", "x")
                .replace("{dn}", "x");
            if !filter.trim().is_empty() && ldap3::parse_filter(&sample).is_err() {
                return Err(bad(
                    field,
                    format!("{filter:?} is not an LDAP filter (RFC 4515), e.g. (uid={{user}})"),
                ));
            }
        }
        for (field, attr) in [
            ("attr_email", &self.attr_email),
            ("attr_first_name", &self.attr_first_name),
            ("attr_last_name", &self.attr_last_name),
            ("group_name_attr", &self.group_name_attr),
        ] {
            if attr.is_empty() || !attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(bad(field, "an attribute name (letters, digits, -)"));
            }
        }
        let mut domains = Vec::new();
        for d in &self.domains {
            let d = normalize_domain(d);
            if d.is_empty()
                || d.len() > 253
                || !d.contains('.')
                || !d
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            {
                return Err(bad(
                    "domains",
                    format!("{d:?} is not an email domain such as example.com"),
                ));
            }
            if !domains.contains(&d) {
                domains.push(d);
            }
        }
        self.domains = domains;
        self.mapping().check()?;
        Ok(())
    }

    fn directory(&self, bind_password: String) -> DirectoryConfig {
        DirectoryConfig {
            uri: self.server_uri.clone(),
            start_tls: self.start_tls,
            ca_pem: self.ca_certificate.clone(),
            bind_dn: self.bind_dn.clone(),
            bind_password,
            user_search_base: self.user_search_base.clone(),
            user_search_filter: self.user_search_filter.clone(),
            user_dn_template: self.user_dn_template.clone(),
            attr_email: self.attr_email.clone(),
            attr_first_name: self.attr_first_name.clone(),
            attr_last_name: self.attr_last_name.clone(),
            group_search_base: self.group_search_base.clone(),
            group_search_filter: self.group_search_filter.clone(),
            group_name_attr: self.group_name_attr.clone(),
        }
    }
}

#[derive(sqlx::FromRow)]
struct SettingsRow {
    settings: String,
    bind_password: Option<String>,
}

/// The stored settings and the sealed password of an organization.
async fn load(db: &Db, org: i64) -> ApiResult<Option<(LdapSettings, Option<String>)>> {
    let row: Option<SettingsRow> = with_read!(db, conn, {
        sqlx::query_as(
            "select settings, bind_password from ldap_settings where organization_id = $1",
        )
        .bind(org)
        .fetch_optional(conn)
        .await?
    });
    Ok(row.and_then(|r| {
        let mut s: LdapSettings = serde_json::from_str(&r.settings).ok()?;
        s.bind_password = None;
        s.bind_password_set = r.bind_password.is_some();
        Some((s, r.bind_password))
    }))
}

/// The organization's directory settings (off, with the defaults, when none are saved).
pub async fn get_settings(db: &Db, actor: &Actor) -> ApiResult<LdapSettings> {
    actor.require(Permission::OrgManage)?;
    Ok(load(db, actor.org_id)
        .await?
        .map_or_else(LdapSettings::unset, |(s, _)| s))
}

/// Replaces the organization's directory settings.
pub async fn set_settings(
    db: &Db,
    sealer: &Sealer,
    actor: &Actor,
    mut settings: LdapSettings,
) -> ApiResult<LdapSettings> {
    actor.require(Permission::OrgManage)?;
    settings.check()?;
    let org = actor.org_id;
    let previous = load(db, org).await?;
    let sealed = match settings.bind_password.take() {
        Some(p) if !p.is_empty() => Some(sealer.seal(&p, PASSWORD_PURPOSE)),
        _ => previous.and_then(|(_, p)| p),
    };
    if sealed.is_none() {
        return Err(bad(
            "bind_password",
            "set the service account's password (it is stored sealed and never shown again)",
        ));
    }
    settings.bind_password_set = true;
    let mut stored = settings.clone();
    stored.bind_password = None;
    let raw = serde_json::to_string(&stored).map_err(ApiError::internal)?;
    let now = now_micros();
    with_tx!(db, tx, {
        check_mapped_projects!(tx, org, settings.mapping());
        for d in &settings.domains {
            let owner: Option<i64> =
                sqlx::query_scalar("select organization_id from ldap_domain where domain = $1")
                    .bind(d)
                    .fetch_optional(&mut *tx)
                    .await?;
            if owner.is_some_and(|o| o != org) {
                return Err(ApiError::field(
                    ErrorCode::Conflict,
                    "domains",
                    format!("{d} already routes sign-ins to another organization's directory"),
                ));
            }
        }
        sqlx::query("delete from ldap_domain where organization_id = $1")
            .bind(org)
            .execute(&mut *tx)
            .await?;
        for d in &settings.domains {
            sqlx::query("insert into ldap_domain (domain, organization_id) values ($1, $2)")
                .bind(d)
                .bind(org)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "insert into ldap_settings (organization_id, enabled, native_login_disabled, settings, bind_password, updated_at) \
             values ($1, $2, $3, $4, $5, $6) on conflict (organization_id) do update set enabled = excluded.enabled, \
             native_login_disabled = excluded.native_login_disabled, settings = excluded.settings, \
             bind_password = excluded.bind_password, updated_at = excluded.updated_at",
        )
        .bind(org)
        .bind(settings.enabled)
        .bind(settings.native_login_disabled)
        .bind(&raw)
        .bind(&sealed)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "ldap.settings",
                "organization",
                org,
                serde_json::to_value(&stored).unwrap_or_default()
            )
        );
        Ok::<_, ApiError>(())
    })?;
    Ok(settings)
}

/// Removes the organization's directory settings, if any (directory sign-in off; accounts stay).
pub async fn delete_settings(db: &Db, actor: &Actor) -> ApiResult<()> {
    actor.require(Permission::OrgManage)?;
    let org = actor.org_id;
    with_tx!(db, tx, {
        let gone = sqlx::query("delete from ldap_settings where organization_id = $1")
            .bind(org)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("delete from ldap_domain where organization_id = $1")
            .bind(org)
            .execute(&mut *tx)
            .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "ldap.settings.delete",
                "organization",
                org,
                json!({"existed": gone > 0})
            )
        );
        Ok::<_, ApiError>(())
    })
}

/// Binds with the stored service account and reports what happened (`Err` text: why not).
pub async fn test_settings(
    db: &Db,
    sealer: &Sealer,
    policy: &TargetPolicy,
    actor: &Actor,
) -> ApiResult<Result<String, String>> {
    actor.require(Permission::OrgManage)?;
    let result = match load(db, actor.org_id).await? {
        Some((settings, sealed)) => {
            let password = match sealed {
                Some(s) => sealer
                    .open(&s, PASSWORD_PURPOSE)
                    .map_err(ApiError::internal)?,
                None => String::new(),
            };
            client::test_connection(&settings.directory(password), policy).await
        }
        None => Err("No LDAP settings are saved for this organization.".to_string()),
    };
    let entry = Prepared::new(
        actor,
        "ldap.settings.test",
        "organization",
        actor.org_id,
        json!({"ok": result.is_ok(), "detail": result.as_ref().map_or_else(|e| e.clone(), |m| m.clone())}),
    );
    audit::record(db, entry).await?;
    Ok(result)
}

// ---------------------------------------------------------------------------------------------
// Sign-in

/// The organization whose directory decides a sign-in with `login`: the one its email domain
/// routes to, else the first organization with directory sign-in on that an account with this
/// email is an active member of.
async fn route(db: &Db, login: &str) -> ApiResult<Option<i64>> {
    let domain = login
        .rsplit_once('@')
        .map(|(_, d)| normalize_domain(d))
        .unwrap_or_default();
    let org: Option<i64> = with_read!(db, conn, {
        let by_domain: Option<i64> = sqlx::query_scalar(
            "select d.organization_id from ldap_domain d join ldap_settings s \
             on s.organization_id = d.organization_id where d.domain = $1 and s.enabled",
        )
        .bind(&domain)
        .fetch_optional(conn)
        .await?;
        match by_domain {
            Some(o) => Some(o),
            None => sqlx::query_scalar(
                "select m.organization_id from app_user u join org_member m on m.user_id = u.id \
                     join ldap_settings s on s.organization_id = m.organization_id \
                     where lower(u.email) = lower($1) and s.enabled and m.deactivated_at is null \
                     order by m.organization_id limit 1",
            )
            .bind(login)
            .fetch_optional(conn)
            .await?,
        }
    });
    Ok(org)
}

#[derive(sqlx::FromRow)]
struct Account {
    id: i64,
    password_hash: Option<String>,
    is_active: bool,
    failed_logins: i32,
    locked_until: Option<i64>,
    deactivated_at: Option<i64>,
}

/// The member of `org` with `email`, if any.
async fn account(db: &Db, org: i64, email: &str) -> ApiResult<Option<Account>> {
    if email.is_empty() {
        return Ok(None);
    }
    Ok(with_read!(db, conn, {
        sqlx::query_as(
            "select u.id, u.password_hash, u.is_active, u.failed_logins, u.locked_until, m.deactivated_at \
             from app_user u join org_member m on m.user_id = u.id and m.organization_id = $1 \
             where lower(u.email) = lower($2) order by u.id limit 1",
        )
        .bind(org)
        .bind(email)
        .fetch_optional(conn)
        .await?
    }))
}

fn ldap_actor(org: i64, meta: &RequestMeta) -> Actor {
    Actor {
        user_id: 0,
        org_id: org,
        role: Role::Admin,
        email: "ldap".into(),
        meta: meta.clone(),
    }
}

fn user_actor(org: i64, user: i64, email: &str, meta: &RequestMeta) -> Actor {
    Actor {
        user_id: user,
        org_id: org,
        role: Role::Annotator,
        email: email.to_string(),
        meta: meta.clone(),
    }
}

/// Audits a refused directory sign-in in the organization's chain.
async fn refused(
    db: &Db,
    org: i64,
    meta: &RequestMeta,
    login: &str,
    user: Option<i64>,
    reason: &str,
    detail: Option<&str>,
) -> ApiResult<()> {
    let summary = json!({"method": "ldap", "reason": reason, "login": login, "detail": detail});
    let mut entry = match user {
        Some(id) => Prepared::new(
            &user_actor(org, id, login, meta),
            "auth.login_failed",
            "user",
            id,
            summary,
        ),
        None => audit::anonymous(meta, "auth.login_failed", summary),
    }
    .outcome(Outcome::Failed);
    entry.chain_id = org;
    entry.organization_id = Some(org);
    audit::record(db, entry).await
}

/// Counts a failed sign-in against the account and locks it at the limit (audited).
async fn count_failure(
    db: &Db,
    org: i64,
    meta: &RequestMeta,
    login: &str,
    a: &Account,
    lockout: Lockout,
    reason: &str,
) -> ApiResult<()> {
    let now = now_micros();
    let failures = a.failed_logins + 1;
    let locks = lockout.max_failures > 0 && failures as u32 >= lockout.max_failures;
    let lock_until = now.saturating_add((lockout.lock_secs as i64).saturating_mul(1_000_000));
    let actor = user_actor(org, a.id, login, meta);
    with_tx!(db, tx, {
        sqlx::query("update app_user set failed_logins = $1, locked_until = $2 where id = $3")
            .bind(if locks { 0 } else { failures })
            .bind(if locks { Some(lock_until) } else { None })
            .bind(a.id)
            .execute(&mut *tx)
            .await?;
        audit!(
            tx,
            Prepared::new(
                &actor,
                "auth.login_failed",
                "user",
                a.id,
                json!({"method": "ldap", "reason": reason, "failures": failures}),
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
                    a.id,
                    json!({"failures": failures, "locked_until": super::format_micros(lock_until)}),
                )
                .outcome(Outcome::Denied)
            );
        }
        Ok::<_, ApiError>(())
    })
}

fn wrong() -> ApiError {
    ApiError::new(ErrorCode::Unauthenticated, WRONG_CREDENTIALS)
}

fn locked_now(a: &Account, now: i64) -> Option<i64> {
    a.locked_until.filter(|u| *u > now)
}

/// Signs in with `login` and `password`: through the directory of the organization the login
/// routes to, else with the account's password ([`sessions::sign_in`]).
#[allow(clippy::too_many_arguments)]
pub async fn sign_in(
    db: &Db,
    sealer: &Sealer,
    policy: &TargetPolicy,
    meta: &RequestMeta,
    login: &str,
    password: &str,
    lockout: Lockout,
    ttl_secs: i64,
) -> ApiResult<NewSession> {
    let login = login.trim();
    if login.is_empty() || password.is_empty() {
        return sessions::sign_in(db, meta, login, password, lockout, ttl_secs).await;
    }
    let Some(org) = route(db, login).await? else {
        return sessions::sign_in(db, meta, login, password, lockout, ttl_secs).await;
    };
    let Some((settings, sealed)) = load(db, org).await? else {
        return sessions::sign_in(db, meta, login, password, lockout, ttl_secs).await;
    };
    let now = now_micros();
    // A locked account is refused before its password goes anywhere.
    let local = account(db, org, login).await?;
    if let Some(until) = local.as_ref().and_then(|a| locked_now(a, now)) {
        refused(
            db,
            org,
            meta,
            login,
            local.as_ref().map(|a| a.id),
            "locked",
            None,
        )
        .await?;
        return Err(sessions::locked_error(until, now));
    }
    let bind_password = match sealed {
        Some(s) => sealer
            .open(&s, PASSWORD_PURPOSE)
            .map_err(ApiError::internal)?,
        None => String::new(),
    };
    let verdict =
        client::authenticate(&settings.directory(bind_password), policy, login, password).await;
    let user = match verdict {
        Verdict::Accepted(user) => user,
        other => {
            let (reason, detail, email) = match &other {
                Verdict::WrongPassword { email } => ("wrong password", None, email.clone()),
                Verdict::UnknownUser => {
                    ("unknown or disabled in the directory", None, String::new())
                }
                Verdict::Unavailable(e) => {
                    ("directory unavailable", Some(e.clone()), String::new())
                }
                Verdict::Accepted(_) => unreachable!("handled above"),
            };
            if let Some(e) = &detail {
                tracing::warn!(org, error = %e, "LDAP sign-in could not use the directory");
            }
            if !settings.native_login_disabled {
                // Password sign-in is allowed too: it decides (and counts the failure).
                refused(db, org, meta, login, None, reason, detail.as_deref()).await?;
                return sessions::sign_in(db, meta, login, password, lockout, ttl_secs).await;
            }
            let target = match local {
                Some(a) => Some(a),
                None if !email.is_empty() => account(db, org, &email).await?,
                None => None,
            };
            // A member who typed their Verity password is told why it does not work here.
            // Without a stored password the same hashing work is done anyway, so the answer
            // time does not tell whether a Verity account with a password exists.
            let native_ok = match target.as_ref().and_then(|a| a.password_hash.as_deref()) {
                Some(h) => auth::verify_password(password, h),
                None => {
                    let _ = auth::verify_password(password, &EQUALIZER);
                    false
                }
            };
            if native_ok {
                let a = target.as_ref().map(|a| a.id);
                refused(db, org, meta, login, a, "password sign-in disabled", None).await?;
                return Err(ApiError::new(
                    ErrorCode::Unauthenticated,
                    "Password sign-in is turned off for your organization: sign in with your directory (LDAP) account and password.",
                ));
            }
            if detail.is_some() {
                // The directory's outage is not the user's failure: audited, not counted.
                let a = target.as_ref().map(|a| a.id);
                refused(db, org, meta, login, a, reason, detail.as_deref()).await?;
                return Err(ApiError::new(
                    ErrorCode::Unauthenticated,
                    "Your organization's directory cannot be reached; try again later or ask an administrator.",
                ));
            }
            match &target {
                Some(a) => count_failure(db, org, meta, login, a, lockout, reason).await?,
                None => refused(db, org, meta, login, None, reason, None).await?,
            }
            return Err(wrong());
        }
    };
    // The directory accepted the password.
    let email = if !user.email.trim().is_empty() {
        user.email.trim().to_string()
    } else if login.contains('@') {
        login.to_string()
    } else {
        refused(
            db,
            org,
            meta,
            login,
            None,
            "no email in the directory entry",
            None,
        )
        .await?;
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            format!(
                "Your directory entry has no email address (attribute {}); ask an administrator.",
                settings.attr_email
            ),
        ));
    };
    let existing = match account(db, org, &email).await? {
        Some(a) => Some(a),
        None if !email.eq_ignore_ascii_case(login) => None,
        None => local,
    };
    let actor = ldap_actor(org, meta);
    let user_id = match existing {
        Some(a) => {
            if let Some(until) = locked_now(&a, now) {
                refused(db, org, meta, login, Some(a.id), "locked", None).await?;
                return Err(sessions::locked_error(until, now));
            }
            if !a.is_active || a.deactivated_at.is_some() {
                refused(db, org, meta, login, Some(a.id), "deactivated", None).await?;
                return Err(ApiError::new(
                    ErrorCode::Unauthenticated,
                    "This account is deactivated; ask an administrator of your organization.",
                ));
            }
            a.id
        }
        None => {
            let new = users::NewUser {
                email: email.clone(),
                password: None,
                role: settings.mapping().default_role(),
                token: None,
                first_name: user.first_name.clone(),
                last_name: user.last_name.clone(),
                username: None,
            };
            users::create_user_in_org(db, &actor, org, &new).await?.0.id
        }
    };
    refresh(db, org, user_id, &user, &settings, &actor).await?;
    sessions::open_for_user(db, meta, user_id, ttl_secs, "ldap").await
}

/// Brings the profile, the active organization, the role, workspaces and project roles of
/// `user_id` in line with the directory. Owners keep their role.
async fn refresh(
    db: &Db,
    org: i64,
    user_id: i64,
    user: &client::DirectoryUser,
    settings: &LdapSettings,
    actor: &Actor,
) -> ApiResult<()> {
    with_tx!(db, tx, {
        // The profile is this organization's to change only when the user belongs to no other.
        sqlx::query(
            "update app_user set first_name = $1, last_name = $2 where id = $4 \
             and not exists (select 1 from org_member o where o.user_id = $4 and o.organization_id <> $3)",
        )
        .bind(&user.first_name)
        .bind(&user.last_name)
        .bind(org)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("update app_user set active_organization_id = $1 where id = $2")
            .bind(org)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let mapping = settings.mapping();
        let workspaces = mapped_workspaces!(tx, org, &mapping, actor, "ldap");
        apply_group_mapping!(
            tx,
            org,
            &mapping,
            &workspaces,
            user_id,
            &user.groups,
            true,
            actor,
            "ldap"
        );
        Ok::<_, ApiError>(())
    })
}
