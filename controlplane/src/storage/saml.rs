//! SAML single sign-on (ADR 0031): each organization's settings and identity provider
//! metadata, the AuthnRequests awaiting an answer, the assertion ids already used, and what a
//! verified assertion does: find or create the user, apply the group mappings, open a session.
//! The protocol itself (signatures, conditions) is `crate::saml`.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    Db,
    audit::{self, Outcome, Prepared, audit},
    groupmap::{
        GroupMapping, ProjectGroup, apply_group_mapping, bad_setting, check_mapped_projects,
        mapped_workspaces,
    },
    now_micros,
    sessions::{self, NewSession},
    with_read, with_tx,
};
use crate::{
    auth,
    authz::{Actor, Permission, RequestMeta, Role},
    error::{ApiError, ApiResult, ErrorCode},
    saml::{self, IdpInfo, Verified},
};

/// How long an AuthnRequest waits for its answer.
pub const REQUEST_TTL_SECS: i64 = 600;

fn default_email() -> String {
    "Email".into()
}
fn default_first_name() -> String {
    "FirstName".into()
}
fn default_last_name() -> String {
    "LastName".into()
}
fn default_groups() -> String {
    "Groups".into()
}
fn default_provider() -> String {
    "custom".into()
}
fn yes() -> bool {
    true
}

/// The fields [`SamlSettings`] takes (the API refuses others: a misspelt field must not be
/// silently dropped). Not `deny_unknown_fields`: the settings are flattened into the view.
pub const FIELDS: &[&str] = &[
    "domain",
    "idp_provider",
    "metadata_url",
    "metadata_xml",
    "mapping_email",
    "mapping_first_name",
    "mapping_last_name",
    "mapping_groups",
    "roles_groups",
    "workspaces_groups",
    "projects_groups",
    "default_role",
    "manual_role_management",
    "allow_idp_initiated",
];

/// An organization's SAML settings as written (Label Studio Enterprise's field names).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct SamlSettings {
    /// Comma-separated email domains of the organization: a sign-in with such an email goes to
    /// this identity provider, and it may assert only such emails. Required.
    #[serde(default)]
    pub domain: String,
    /// Which identity provider this is (`okta`, `azure`, `google`, `custom`, …); informative.
    #[serde(default = "default_provider")]
    pub idp_provider: String,
    /// Where the identity provider publishes its metadata (fetched when the settings are
    /// saved). One of `metadata_url` and `metadata_xml` is required.
    #[serde(default)]
    pub metadata_url: Option<String>,
    /// The identity provider's metadata XML.
    #[serde(default)]
    pub metadata_xml: Option<String>,
    /// Attribute holding the email (the NameID is used when it is absent).
    #[serde(default = "default_email")]
    pub mapping_email: String,
    /// Attribute holding the first name.
    #[serde(default = "default_first_name")]
    pub mapping_first_name: String,
    /// Attribute holding the last name.
    #[serde(default = "default_last_name")]
    pub mapping_last_name: String,
    /// Attribute holding the user's groups.
    #[serde(default = "default_groups")]
    pub mapping_groups: String,
    /// `[[role, group], …]`: members of the group get the role (the highest wins).
    #[serde(default)]
    pub roles_groups: Vec<(String, String)>,
    /// `[[workspace title, group], …]`.
    #[serde(default)]
    pub workspaces_groups: Vec<(String, String)>,
    /// Project roles by group.
    #[serde(default)]
    pub projects_groups: Vec<ProjectGroup>,
    /// Role of users in no mapped group (`annotator` unless set).
    #[serde(default)]
    pub default_role: Option<String>,
    /// When false, the identity provider is the source of truth for roles: the API refuses
    /// role changes in the organization (409 `managed_by_idp`). True unless set.
    #[serde(default = "yes")]
    pub manual_role_management: bool,
    /// Accept responses the identity provider sends unasked (IdP-initiated sign-in). True
    /// unless set.
    #[serde(default = "yes")]
    pub allow_idp_initiated: bool,
}

impl SamlSettings {
    /// The group mapping part.
    pub fn mapping(&self) -> GroupMapping {
        GroupMapping {
            roles_groups: self.roles_groups.clone(),
            workspaces_groups: self.workspaces_groups.clone(),
            projects_groups: self.projects_groups.clone(),
            default_role: self.default_role.clone(),
        }
    }

    /// The email domains, lower-cased.
    pub fn domains(&self) -> Vec<String> {
        self.domain
            .split(',')
            .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
            .filter(|d| !d.is_empty())
            .collect()
    }
}

/// The URLs of this service provider for one organization.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SpUrls {
    /// Entity id and metadata URL (give it to the identity provider).
    pub metadata_xml_url: String,
    /// Assertion consumer service (HTTP-POST binding).
    pub acs_url: String,
    /// Where a sign-in starts (SP-initiated).
    pub login_url: String,
    /// Single logout URL.
    pub logout_url: String,
}

impl SpUrls {
    /// The URLs under `public_url` for organization `org`.
    pub fn new(public_url: &str, org: i64) -> Self {
        let base = public_url.trim_end_matches('/');
        Self {
            metadata_xml_url: format!("{base}/saml/{org}/metadata"),
            acs_url: format!("{base}/saml/{org}/acs"),
            login_url: format!("{base}/saml/{org}/login"),
            logout_url: format!("{base}/user/logout"),
        }
    }

    /// The protocol view.
    pub fn sp(&self) -> saml::SpConfig {
        saml::SpConfig {
            entity_id: self.metadata_xml_url.clone(),
            acs_url: self.acs_url.clone(),
            slo_url: self.logout_url.clone(),
        }
    }
}

/// The settings as the API shows them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SamlSettingsView {
    /// Whether single sign-on is configured for the organization.
    pub enabled: bool,
    /// The settings (defaults when not configured); `metadata_xml` is the metadata in use.
    #[serde(flatten)]
    pub settings: SamlSettings,
    /// The identity provider's entity id, from its metadata.
    pub idp_entity_id: Option<String>,
    /// The identity provider's sign-on URL, from its metadata.
    pub idp_sso_url: Option<String>,
    /// This service provider's URLs.
    #[serde(flatten)]
    pub urls: SpUrls,
    /// NameID format requested (any: the email comes from `mapping_email` or the NameID).
    pub nameid_format: String,
    /// Whether this build can verify SAML responses (the `saml` build feature).
    pub available: bool,
}

impl Default for SamlSettings {
    fn default() -> Self {
        Self {
            domain: String::new(),
            idp_provider: default_provider(),
            metadata_url: None,
            metadata_xml: None,
            mapping_email: default_email(),
            mapping_first_name: default_first_name(),
            mapping_last_name: default_last_name(),
            mapping_groups: default_groups(),
            roles_groups: Vec::new(),
            workspaces_groups: Vec::new(),
            projects_groups: Vec::new(),
            default_role: None,
            manual_role_management: true,
            allow_idp_initiated: true,
        }
    }
}

/// An organization's stored settings and IdP metadata.
pub async fn load(db: &Db, org: i64) -> ApiResult<Option<(SamlSettings, String)>> {
    let row: Option<(String, String)> = with_read!(db, conn, {
        sqlx::query_as(
            "select settings, idp_metadata from saml_settings where organization_id = $1",
        )
        .bind(org)
        .fetch_optional(conn)
        .await?
    });
    Ok(row.and_then(|(s, xml)| {
        serde_json::from_str::<SamlSettings>(&s)
            .ok()
            .map(|s| (s, xml))
    }))
}

fn view(found: Option<(SamlSettings, String)>, urls: SpUrls) -> SamlSettingsView {
    let enabled = found.is_some();
    let (mut settings, xml) = found.unwrap_or_default();
    let info: Option<IdpInfo> = (!xml.is_empty())
        .then(|| saml::idp_info(&xml).ok())
        .flatten();
    if enabled {
        settings.metadata_xml = Some(xml);
    }
    SamlSettingsView {
        enabled,
        settings,
        idp_entity_id: info.as_ref().map(|i| i.entity_id.clone()),
        idp_sso_url: info.map(|i| i.sso_url),
        urls,
        nameid_format: "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified".into(),
        available: saml::available(),
    }
}

/// The organization's SAML settings (Administrators).
pub async fn get_settings(db: &Db, actor: &Actor, urls: SpUrls) -> ApiResult<SamlSettingsView> {
    actor.require(Permission::OrgManage)?;
    Ok(view(load(db, actor.org_id).await?, urls))
}

fn valid_domain(d: &str) -> bool {
    d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Saves the settings with the IdP metadata `xml` (from `metadata_xml`, or fetched from
/// `metadata_url` by the caller) after checking all of it; nothing changes on a refusal.
pub async fn set_settings(
    db: &Db,
    actor: &Actor,
    mut settings: SamlSettings,
    xml: String,
    urls: SpUrls,
) -> ApiResult<SamlSettingsView> {
    actor.require(Permission::OrgManage)?;
    let domains = settings.domains();
    if domains.is_empty() {
        return Err(bad_setting(
            "domain",
            "name the organization's email domains (comma-separated), e.g. \"example.com\"",
        ));
    }
    if let Some(d) = domains.iter().find(|d| !valid_domain(d)) {
        return Err(bad_setting("domain", format!("{d:?} is not a domain name")));
    }
    for (field, value) in [
        ("mapping_email", &settings.mapping_email),
        ("mapping_first_name", &settings.mapping_first_name),
        ("mapping_last_name", &settings.mapping_last_name),
        ("mapping_groups", &settings.mapping_groups),
    ] {
        if value.trim().is_empty() || value.len() > 1000 {
            return Err(bad_setting(
                field,
                "name the attribute (at most 1000 characters)",
            ));
        }
    }
    let mapping = settings.mapping();
    mapping.check()?;
    saml::idp_info(&xml)?;
    settings.domain = domains.join(",");
    settings.metadata_xml = None;
    let raw = serde_json::to_string(&settings).map_err(ApiError::internal)?;
    let org = actor.org_id;
    let now = now_micros();
    with_tx!(db, tx, {
        check_mapped_projects!(tx, org, &mapping);
        let others: Vec<(i64, String)> = sqlx::query_as(
            "select organization_id, settings from saml_settings where organization_id <> $1",
        )
        .bind(org)
        .fetch_all(&mut *tx)
        .await?;
        for (other, s) in others {
            let Ok(s) = serde_json::from_str::<SamlSettings>(&s) else {
                continue;
            };
            if let Some(d) = s.domains().into_iter().find(|d| domains.contains(d)) {
                return Err(ApiError::field(
                    ErrorCode::Conflict,
                    "domain",
                    format!("the domain {d} already signs in to another organization ({other})"),
                ));
            }
        }
        sqlx::query(
            "insert into saml_settings (organization_id, settings, idp_metadata, updated_at) values ($1, $2, $3, $4) \
             on conflict (organization_id) do update set settings = excluded.settings, \
             idp_metadata = excluded.idp_metadata, updated_at = excluded.updated_at",
        )
        .bind(org)
        .bind(&raw)
        .bind(&xml)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "saml.settings",
                "organization",
                org,
                serde_json::to_value(&settings).unwrap_or_default()
            )
        );
        Ok::<_, ApiError>(())
    })?;
    Ok(view(Some((settings, xml)), urls))
}

/// Turns single sign-on off for the organization (nothing to do when it is off).
pub async fn delete_settings(db: &Db, actor: &Actor) -> ApiResult<()> {
    actor.require(Permission::OrgManage)?;
    let org = actor.org_id;
    with_tx!(db, tx, {
        let n = sqlx::query("delete from saml_settings where organization_id = $1")
            .bind(org)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("delete from saml_request where organization_id = $1")
            .bind(org)
            .execute(&mut *tx)
            .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "saml.settings.delete",
                "organization",
                org,
                json!({"was_on": n > 0})
            )
        );
        Ok::<_, ApiError>(())
    })
}

/// The organization whose SAML settings claim the domain of `email`.
pub async fn org_for_email(db: &Db, email: &str) -> ApiResult<Option<i64>> {
    let Some((_, domain)) = email.trim().rsplit_once('@') else {
        return Ok(None);
    };
    let domain = domain.to_ascii_lowercase();
    let rows: Vec<(i64, String)> = with_read!(db, conn, {
        sqlx::query_as(
            "select organization_id, settings from saml_settings order by organization_id",
        )
        .fetch_all(conn)
        .await?
    });
    Ok(rows.into_iter().find_map(|(org, s)| {
        serde_json::from_str::<SamlSettings>(&s)
            .ok()
            .filter(|s| s.domains().contains(&domain))
            .map(|_| org)
    }))
}

/// Whether role changes in `org` are refused because its identity provider manages them.
pub async fn roles_managed_by_idp(db: &Db, org: i64) -> ApiResult<bool> {
    Ok(load(db, org)
        .await?
        .is_some_and(|(s, _)| !s.manual_role_management))
}

/// The error of a role change refused by [`roles_managed_by_idp`].
pub fn managed_by_idp() -> ApiError {
    ApiError::new(
        ErrorCode::ManagedByIdp,
        "roles in this organization are managed by its identity provider (SAML, manual role management off): change the user's groups there, or turn manual_role_management on",
    )
}

/// Starts an SP-initiated sign-in: the URL that sends the browser to the identity provider.
pub async fn start_login(db: &Db, org: i64, urls: &SpUrls, next: &str) -> ApiResult<String> {
    let (_, xml) = load(db, org)
        .await?
        .ok_or_else(|| ApiError::not_found("SAML settings"))?;
    let relay = auth::random_secret(32);
    let (request_id, url) = saml::authn_request(&urls.sp(), &xml, &relay)?;
    let now = now_micros();
    with_tx!(db, tx, {
        sqlx::query("delete from saml_request where expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "insert into saml_request (relay_state, request_id, organization_id, next, created_at, expires_at) \
             values ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&relay)
        .bind(&request_id)
        .bind(org)
        .bind(next)
        .bind(now)
        .bind(now + REQUEST_TTL_SECS * 1_000_000)
        .execute(&mut *tx)
        .await?;
        Ok::<_, ApiError>(())
    })?;
    Ok(url)
}

/// Why a sign-in was refused: `reason` goes to the audit log only.
#[derive(Debug)]
pub struct Refused {
    /// The reason, for the audit log.
    pub reason: String,
}

fn refused(reason: impl Into<String>) -> Refused {
    Refused {
        reason: reason.into(),
    }
}

impl From<ApiError> for Refused {
    fn from(e: ApiError) -> Self {
        refused(format!("{:?}: {}", e.code, e.detail))
    }
}

impl From<sqlx::Error> for Refused {
    fn from(e: sqlx::Error) -> Self {
        refused(format!("database: {e}"))
    }
}

fn idp_actor(org: i64, meta: &RequestMeta) -> Actor {
    Actor {
        user_id: 0,
        org_id: org,
        role: Role::Admin,
        email: "saml".into(),
        meta: meta.clone(),
    }
}

/// Audits a refused SAML sign-in in the organization's chain.
pub async fn audit_refusal(db: &Db, meta: &RequestMeta, org: i64, reason: &str) -> ApiResult<()> {
    if super::orgs::exists(db, org).await?.is_none() {
        let entry = audit::anonymous(
            meta,
            "auth.login_failed",
            json!({"method": "saml", "organization": org, "reason": "no such organization"}),
        );
        return audit::record(db, entry).await;
    }
    let entry = Prepared::new(
        &idp_actor(org, meta),
        "auth.login_failed",
        "organization",
        org,
        json!({"method": "saml", "reason": reason}),
    )
    .outcome(Outcome::Failed);
    audit::record(db, entry).await
}

/// Completes a sign-in from a posted `SAMLResponse`: verifies it (against the pending request
/// named by `relay_state`, or as an unsolicited response when the organization allows those),
/// refuses replays, finds or creates the user, applies the group mappings and opens a session.
/// Returns the session and where to go next.
pub async fn complete_login(
    db: &Db,
    meta: &RequestMeta,
    org: i64,
    urls: &SpUrls,
    response_b64: &str,
    relay_state: &str,
    ttl_secs: i64,
) -> Result<(NewSession, String), Refused> {
    let (settings, xml) = load(db, org)
        .await?
        .ok_or_else(|| refused("single sign-on is not configured"))?;
    // A pending request is used once, whatever the outcome.
    let pending: Option<(String, String)> = if relay_state.is_empty() {
        None
    } else {
        with_tx!(db, tx, {
            let row: Option<(String, String)> = sqlx::query_as(
                "select request_id, next from saml_request where relay_state = $1 and organization_id = $2 and expires_at > $3",
            )
            .bind(relay_state)
            .bind(org)
            .bind(now_micros())
            .fetch_optional(&mut *tx)
            .await?;
            sqlx::query("delete from saml_request where relay_state = $1")
                .bind(relay_state)
                .execute(&mut *tx)
                .await?;
            Ok::<_, ApiError>(row)
        })?
    };
    let (request_id, next) = match &pending {
        Some((id, next)) => (Some(id.as_str()), next.clone()),
        None if settings.allow_idp_initiated => (None, "/projects".to_string()),
        None => {
            return Err(refused(
                "no pending sign-in matches the RelayState and IdP-initiated sign-in is off",
            ));
        }
    };
    let verified: Verified =
        saml::verify(&urls.sp(), &xml, response_b64, request_id).map_err(refused)?;
    let email = verified
        .attributes
        .get(&settings.mapping_email)
        .and_then(|v| v.first().cloned())
        .or_else(|| verified.name_id.clone().filter(|n| n.contains('@')))
        .ok_or_else(|| {
            refused(format!(
                "the assertion has no {} attribute and its NameID is not an email",
                settings.mapping_email
            ))
        })?;
    let domain = email
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default();
    if !settings.domains().contains(&domain) {
        return Err(refused(format!(
            "the asserted email {email} is not in the organization's domains"
        )));
    }
    let first = |key: &str| {
        verified
            .attributes
            .get(key)
            .and_then(|v| v.first().cloned())
            .unwrap_or_default()
    };
    let first_name = first(&settings.mapping_first_name);
    let last_name = first(&settings.mapping_last_name);
    let groups: Vec<String> = verified
        .attributes
        .get(&settings.mapping_groups)
        .cloned()
        .unwrap_or_default();
    let mapping = settings.mapping();
    let actor = idp_actor(org, meta);
    let now = now_micros();
    let user_id = with_tx!(db, tx, {
        // The replay cache: an assertion id signs in once while it could be valid.
        sqlx::query("delete from saml_assertion_seen where expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let fresh = sqlx::query(
            "insert into saml_assertion_seen (organization_id, assertion_id, expires_at) values ($1, $2, $3) \
             on conflict do nothing",
        )
        .bind(org)
        .bind(&verified.assertion_id)
        .bind(verified.valid_until)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if fresh == 0 {
            return Err(refused(format!(
                "assertion {} was already used (replay)",
                verified.assertion_id
            )));
        }
        // Accounts belong to an organization (the same email elsewhere is another person's
        // account): a member of this one with the email, preferring its own accounts.
        let existing: Option<(i64, Option<i64>, bool)> = sqlx::query_as(
            "select u.id, m.deactivated_at, u.is_active from app_user u \
             join org_member m on m.user_id = u.id and m.organization_id = $1 \
             where lower(u.email) = lower($2) \
             order by case when u.home_organization_id = $1 then 0 else 1 end, u.id limit 1",
        )
        .bind(org)
        .bind(&email)
        .fetch_optional(&mut *tx)
        .await?;
        let user_id = match existing {
            Some((id, deactivated, active)) => {
                if deactivated.is_some() {
                    return Err(refused(format!(
                        "{email} is deactivated in this organization"
                    )));
                }
                if !active {
                    return Err(refused(format!("{email} is a deactivated account")));
                }
                sqlx::query(
                    "update app_user set active_organization_id = $1, \
                     first_name = case when $2 = '' then first_name else $2 end, \
                     last_name = case when $3 = '' then last_name else $3 end, last_activity = $4 where id = $5",
                )
                .bind(org)
                .bind(&first_name)
                .bind(&last_name)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                id
            }
            None => {
                let removed: Option<i64> = sqlx::query_scalar(
                    "select id from app_user where home_organization_id = $1 and lower(email) = lower($2)",
                )
                .bind(org)
                .bind(&email)
                .fetch_optional(&mut *tx)
                .await?;
                if removed.is_some() {
                    return Err(refused(format!(
                        "{email} was removed from this organization; an administrator can add the account again"
                    )));
                }
                let id: i64 = sqlx::query_scalar(
                    "insert into app_user (email, username, first_name, last_name, password_hash, is_active, \
                     active_organization_id, date_joined, last_activity, home_organization_id) \
                     values ($1, $1, $2, $3, null, true, $4, $5, $5, $4) returning id",
                )
                .bind(&email)
                .bind(&first_name)
                .bind(&last_name)
                .bind(org)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                let role = if mapping.manages_roles() {
                    mapping.role_for(&groups)
                } else {
                    mapping.default_role()
                };
                sqlx::query("insert into org_member (organization_id, user_id, role, created_at) values ($1, $2, $3, $4)")
                    .bind(org)
                    .bind(id)
                    .bind(role.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                audit!(
                    tx,
                    Prepared::new(
                        &actor,
                        "saml.user.create",
                        "user",
                        id,
                        json!({"email": email, "role": role.as_str()})
                    )
                );
                id
            }
        };
        let workspaces = mapped_workspaces!(tx, org, &mapping, &actor, "saml");
        apply_group_mapping!(
            tx,
            org,
            &mapping,
            &workspaces,
            user_id,
            &groups,
            true,
            &actor,
            "saml"
        );
        Ok::<_, Refused>(user_id)
    })?;
    let session = sessions::open_for_user(db, meta, user_id, ttl_secs, "saml").await?;
    Ok((session, next))
}
