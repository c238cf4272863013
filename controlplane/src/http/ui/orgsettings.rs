//! The organization's settings pages (`/organization/settings/…`): the access policy (allowed
//! networks and storage endpoints, ADR 0053), the session policy, and single sign-on (SAML,
//! SCIM provisioning, LDAP).
//!
//! Every read and change goes through the function the API's handler calls (`storage::
//! access_policy`, `storage::sessions`, `storage::{saml, scim, ldap}` and the shared helpers of
//! `http::routes`), which check `organization.manage`; so a member without it gets the 403 page
//! and a forged form changes nothing. Secrets (the LDAP service password, SCIM tokens) are never
//! written into a page: the settings say whether one is stored, and a new SCIM token is shown
//! once, right after it is made.

use axum::{
    extract::{Request, State},
    http::{StatusCode, request::Parts},
    response::Response,
};
use minijinja::context;
use serde::Deserialize;

use super::{
    PageUser, error_page,
    pages::{js, signed_in_form},
    redirect, render, user_context,
};
use crate::{
    error::{ApiError, ErrorCode},
    http::{
        AppState,
        extract::client_ip,
        routes::{ldap as ldap_routes, organizations, saml as saml_routes},
    },
    storage::{
        access_policy,
        groupmap::{GroupMapping, ProjectGroup},
        ldap::{self, LdapSettings},
        saml::{self, SamlSettings},
        scim, sessions,
    },
};

/// What a page says after a change.
#[derive(Default)]
struct Outcome {
    notice: Option<String>,
    error: Option<String>,
    /// A SCIM token just made (shown this once).
    scim_token: Option<String>,
    /// What a refused form held, shown again instead of the stored values (name → text, see
    /// `with_typed`; never a secret).
    typed: Vec<(&'static str, String)>,
}

/// The notice of a `?done=` after a saved change.
fn done_notice(parts: &Parts) -> Option<String> {
    let done = super::done_param(parts)?;
    let text = match done.as_str() {
        "access" => "The access policy is saved; it applies at once.",
        "sessions" => "The session policy is saved; it applies to open sessions too.",
        "saml" => "The SAML settings are saved.",
        "saml_deleted" => "Single sign-on with SAML is off.",
        "scim" => "The SCIM group mappings are saved and applied to provisioned members.",
        "ldap" => "The LDAP settings are saved.",
        "ldap_deleted" => "The LDAP settings are removed: directory sign-in is off.",
        _ => return None,
    };
    Some(text.to_string())
}

/// The signed-in user of a settings page request (or the page to answer with).
async fn user_of(state: &AppState, request: Request) -> Result<(PageUser, Parts), Response> {
    let (parts, _) = request.into_parts();
    let user = super::page_user(state, &parts).await?;
    Ok((user, parts))
}

/// The answer to a settings form post: back to the page with `done` on success, the page with
/// the message (and the `typed` values) on a client error (nothing changed), the error page
/// otherwise.
async fn after_post(
    state: &AppState,
    user: &PageUser,
    parts: &Parts,
    section: Section,
    result: Result<&str, ApiError>,
    typed: Vec<(&'static str, String)>,
) -> Response {
    match result {
        Ok(done) => redirect(&format!("{}?done={done}", section.path())),
        Err(e) if e.code.status().is_client_error() && e.code.status() != StatusCode::FORBIDDEN => {
            let outcome = Outcome {
                error: Some(e.detail.clone()),
                typed,
                ..Outcome::default()
            };
            section
                .view(state, user, parts, e.code.status(), outcome)
                .await
        }
        Err(e) => error_page(Some(user), &e),
    }
}

#[derive(Clone, Copy)]
enum Section {
    Access,
    Sessions,
    Sso,
}

impl Section {
    fn path(self) -> &'static str {
        match self {
            Section::Access => "/organization/settings/access",
            Section::Sessions => "/organization/settings/sessions",
            Section::Sso => "/organization/settings/sso",
        }
    }

    async fn view(
        self,
        state: &AppState,
        user: &PageUser,
        parts: &Parts,
        status: StatusCode,
        outcome: Outcome,
    ) -> Response {
        let outcome = Outcome {
            notice: outcome.notice.or_else(|| done_notice(parts)),
            ..outcome
        };
        let shown = match self {
            Section::Access => access_context(state, user, parts).await,
            Section::Sessions => sessions_context(state, user).await,
            Section::Sso => sso_context(state, user).await,
        };
        let mut section = match shown {
            Ok(v) => v,
            Err(e) => return error_page(Some(user), &e),
        };
        if !outcome.typed.is_empty() {
            section = with_typed(section, &outcome.typed);
        }
        render(
            status,
            "org_settings.html",
            context! {
                user => user_context(user),
                section => match self {
                    Section::Access => "access",
                    Section::Sessions => "sessions",
                    Section::Sso => "sso",
                },
                page => section,
                notice => outcome.notice,
                error => outcome.error,
                scim_token => outcome.scim_token,
            },
        )
    }
}

/// The page's values with what a refused form held in their place: `name` replaces a value of
/// the page, `outer.name` one inside the map `outer` (`saml.domain`), the rest of it kept.
fn with_typed(section: minijinja::Value, typed: &[(&'static str, String)]) -> minijinja::Value {
    use std::collections::BTreeMap;
    let mut top: BTreeMap<&str, minijinja::Value> = BTreeMap::new();
    let mut nested: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
    for (key, value) in typed {
        match key.split_once('.') {
            Some((outer, name)) => {
                nested
                    .entry(outer)
                    .or_default()
                    .insert(name, value.as_str());
            }
            None => {
                top.insert(*key, minijinja::Value::from(value.as_str()));
            }
        }
    }
    for (outer, fields) in nested {
        let shown = section
            .get_attr(outer)
            .unwrap_or(minijinja::Value::UNDEFINED);
        // The later map wins where both have a key.
        top.insert(outer, minijinja::value::merge_maps([shown, js(&fields)]));
    }
    minijinja::value::merge_maps([section, js(&top)])
}

/// `GET /organization/settings`: the first settings page.
pub(super) async fn index() -> Response {
    redirect(Section::Access.path())
}

// ---------------------------------------------------------------------------------------------
// Access policy

async fn access_context(
    state: &AppState,
    user: &PageUser,
    parts: &Parts,
) -> Result<minijinja::Value, ApiError> {
    let policy = access_policy::get(&state.db, &user.actor).await?;
    let caller = client_ip(parts, &state.config).map(|ip| ip.to_string());
    Ok(context! {
        storage_endpoints => policy.storage_endpoints.join("\n"),
        api_networks => policy.api_networks.join("\n"),
        caller => caller,
    })
}

/// `GET /organization/settings/access`.
pub(super) async fn access_page(State(state): State<AppState>, request: Request) -> Response {
    match user_of(&state, request).await {
        Ok((user, parts)) => {
            Section::Access
                .view(&state, &user, &parts, StatusCode::OK, Outcome::default())
                .await
        }
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct AccessForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    storage_endpoints: String,
    #[serde(default)]
    api_networks: String,
}

/// One entry a line (blank lines skipped): the lists of the access policy as the API takes them.
fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// `POST /organization/settings/access`: both lists, replaced (an empty box removes the
/// restriction), with the API's checks and its lock-out guard for the address of this request.
pub(super) async fn access_post(State(state): State<AppState>, request: Request) -> Response {
    let (user, parts, form) = match signed_in_form::<AccessForm>(&state, request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let caller = client_ip(&parts, &state.config);
    let result = organizations::set_access_policy(
        &state,
        &user.actor,
        Some(lines(&form.storage_endpoints)),
        Some(lines(&form.api_networks)),
        caller,
    )
    .await
    .map(|_| "access");
    let typed = vec![
        ("storage_endpoints", form.storage_endpoints),
        ("api_networks", form.api_networks),
    ];
    after_post(&state, &user, &parts, Section::Access, result, typed).await
}

// ---------------------------------------------------------------------------------------------
// Session policy

fn instance_ttl(state: &AppState) -> i64 {
    state.config.session_ttl_hours.saturating_mul(3600)
}

async fn sessions_context(state: &AppState, user: &PageUser) -> Result<minijinja::Value, ApiError> {
    let ttl = instance_ttl(state);
    let policy = sessions::get_policy(&state.db, &user.actor, ttl).await?;
    Ok(context! {
        max_session_age => policy.max_session_age,
        max_time_between_activity => policy.max_time_between_activity,
        instance_minutes => (ttl / 60).max(1),
    })
}

/// `GET /organization/settings/sessions`.
pub(super) async fn sessions_page(State(state): State<AppState>, request: Request) -> Response {
    match user_of(&state, request).await {
        Ok((user, parts)) => {
            Section::Sessions
                .view(&state, &user, &parts, StatusCode::OK, Outcome::default())
                .await
        }
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct SessionsForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    max_session_age: String,
    #[serde(default)]
    max_time_between_activity: String,
}

/// A whole number of minutes (the API's message for anything else).
fn minutes_field(value: &str, field: &str) -> Result<i64, ApiError> {
    value.trim().parse::<i64>().map_err(|_| {
        ApiError::field(
            ErrorCode::ValidationError,
            field,
            "give a whole number of minutes",
        )
    })
}

/// `POST /organization/settings/sessions`.
pub(super) async fn sessions_post(State(state): State<AppState>, request: Request) -> Response {
    let (user, parts, form) = match signed_in_form::<SessionsForm>(&state, request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let result = async {
        let age = minutes_field(&form.max_session_age, "max_session_age")?;
        let idle = minutes_field(&form.max_time_between_activity, "max_time_between_activity")?;
        sessions::set_policy(
            &state.db,
            &user.actor,
            Some(age),
            Some(idle),
            instance_ttl(&state),
        )
        .await?;
        Ok("sessions")
    }
    .await;
    let typed = vec![
        ("max_session_age", form.max_session_age),
        ("max_time_between_activity", form.max_time_between_activity),
    ];
    after_post(&state, &user, &parts, Section::Sessions, result, typed).await
}

// ---------------------------------------------------------------------------------------------
// Single sign-on: SAML, SCIM, LDAP

/// The group mappings as the page's text boxes show them (one mapping a line).
fn mapping_text(m: &GroupMapping) -> minijinja::Value {
    let pairs = |list: &[(String, String)]| {
        list.iter()
            .map(|(a, g)| format!("{a}: {g}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let projects = m
        .projects_groups
        .iter()
        .map(|p| format!("{}: {}: {}", p.project_id, p.role, p.group))
        .collect::<Vec<_>>()
        .join("\n");
    context! {
        roles_groups => pairs(&m.roles_groups),
        workspaces_groups => pairs(&m.workspaces_groups),
        projects_groups => projects,
        default_role => m.default_role.clone().unwrap_or_default(),
    }
}

/// Reads the page's mapping boxes: `role: group`, `workspace title: group` and
/// `project id: role: group` lines (the group is everything after the separators). Only the
/// shape is read here; the storage function checks the roles, projects and groups as for the API.
fn parse_mapping(
    prefix: &str,
    roles: &str,
    workspaces: &str,
    projects: &str,
    default_role: &str,
) -> Result<GroupMapping, ApiError> {
    let shape = |field: &str, line: &str, want: &str| {
        ApiError::field(
            ErrorCode::ValidationError,
            field,
            format!(
                "the line {line:?} of the {} mappings is not \"{want}\"",
                prefix.to_ascii_uppercase()
            ),
        )
    };
    let pairs = |field: &str, text: &str, want: &str| -> Result<Vec<(String, String)>, ApiError> {
        lines(text)
            .iter()
            .map(|line| {
                line.split_once(':')
                    .map(|(a, g)| (a.trim().to_string(), g.trim().to_string()))
                    .ok_or_else(|| shape(field, line, want))
            })
            .collect()
    };
    let projects_groups = lines(projects)
        .iter()
        .map(|line| {
            let mut it = line.splitn(3, ':').map(str::trim);
            match (it.next(), it.next(), it.next()) {
                (Some(id), Some(role), Some(group)) => Ok(ProjectGroup {
                    project_id: id
                        .parse()
                        .map_err(|_| shape("projects_groups", line, "project id: role: group"))?,
                    role: role.to_string(),
                    group: group.to_string(),
                }),
                _ => Err(shape("projects_groups", line, "project id: role: group")),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(GroupMapping {
        roles_groups: pairs("roles_groups", roles, "role: group")?,
        workspaces_groups: pairs("workspaces_groups", workspaces, "workspace title: group")?,
        projects_groups,
        default_role: Some(default_role.trim().to_string()).filter(|r| !r.is_empty()),
    })
}

async fn sso_context(state: &AppState, user: &PageUser) -> Result<minijinja::Value, ApiError> {
    let actor = &user.actor;
    let saml_view =
        saml::get_settings(&state.db, actor, saml_routes::urls(state, actor.org_id)).await?;
    let scim_settings = scim::get_settings(&state.db, actor).await?;
    let ldap_settings = ldap::get_settings(&state.db, actor).await?;
    let saml_mapping = mapping_text(&saml_view.settings.mapping());
    let ldap_mapping = mapping_text(&ldap_settings.mapping());
    Ok(context! {
        // The views carry no secrets: the LDAP password is write-only (not serialized), and
        // SCIM tokens are stored as hashes.
        saml => js(&saml_view),
        saml_mapping => saml_mapping,
        scim_mapping => mapping_text(&scim_settings),
        ldap => js(&ldap_settings),
        // What is stored, for the status line and the remove button (a refused form's typed
        // values replace `ldap`).
        ldap_on => ldap_settings.enabled,
        ldap_saved => !ldap_settings.server_uri.is_empty(),
        ldap_domains => ldap_settings.domains.join(", "),
        ldap_mapping => ldap_mapping,
        scim_url => format!("{}/scim/v2", state.config.public_base_url().trim_end_matches('/')),
    })
}

/// `GET /organization/settings/sso`.
pub(super) async fn sso_page(State(state): State<AppState>, request: Request) -> Response {
    match user_of(&state, request).await {
        Ok((user, parts)) => {
            Section::Sso
                .view(&state, &user, &parts, StatusCode::OK, Outcome::default())
                .await
        }
        Err(r) => r,
    }
}

/// The single sign-on forms: `action` says which, the fields are prefixed by the integration.
#[derive(Debug, Deserialize, Default)]
pub(super) struct SsoForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    action: String,
    // SAML
    #[serde(default)]
    saml_domain: String,
    #[serde(default)]
    saml_idp_provider: String,
    #[serde(default)]
    saml_metadata_url: String,
    #[serde(default)]
    saml_metadata_xml: String,
    #[serde(default)]
    saml_mapping_email: String,
    #[serde(default)]
    saml_mapping_first_name: String,
    #[serde(default)]
    saml_mapping_last_name: String,
    #[serde(default)]
    saml_mapping_groups: String,
    #[serde(default)]
    saml_manual_role_management: Option<String>,
    #[serde(default)]
    saml_allow_idp_initiated: Option<String>,
    // LDAP
    #[serde(default)]
    ldap_enabled: Option<String>,
    #[serde(default)]
    ldap_server_uri: String,
    #[serde(default)]
    ldap_start_tls: Option<String>,
    #[serde(default)]
    ldap_ca_certificate: String,
    #[serde(default)]
    ldap_bind_dn: String,
    #[serde(default)]
    ldap_bind_password: String,
    #[serde(default)]
    ldap_user_search_base: String,
    #[serde(default)]
    ldap_user_search_filter: String,
    #[serde(default)]
    ldap_user_dn_template: String,
    #[serde(default)]
    ldap_attr_email: String,
    #[serde(default)]
    ldap_attr_first_name: String,
    #[serde(default)]
    ldap_attr_last_name: String,
    #[serde(default)]
    ldap_group_search_base: String,
    #[serde(default)]
    ldap_group_search_filter: String,
    #[serde(default)]
    ldap_group_name_attr: String,
    #[serde(default)]
    ldap_domains: String,
    #[serde(default)]
    ldap_native_login_disabled: Option<String>,
    // The group mappings of each integration (`saml_`, `scim_`, `ldap_`).
    #[serde(flatten)]
    mappings: std::collections::HashMap<String, String>,
}

impl SsoForm {
    /// What the form of `action` held, to show again when it is refused: every field but the
    /// LDAP service password.
    fn typed(&self) -> Vec<(&'static str, String)> {
        let flag = |v: &Option<String>| String::from(if v.is_some() { "1" } else { "" });
        let mapping = |prefix: &str, keys: [&'static str; 4]| {
            let names = [
                "roles_groups",
                "workspaces_groups",
                "projects_groups",
                "default_role",
            ];
            keys.into_iter()
                .zip(names)
                .map(|(key, name)| {
                    let value = self.mappings.get(&format!("{prefix}_{name}"));
                    (key, value.cloned().unwrap_or_default())
                })
                .collect::<Vec<_>>()
        };
        let mut typed = match self.action.as_str() {
            "saml" => vec![
                ("saml.domain", self.saml_domain.clone()),
                ("saml.idp_provider", self.saml_idp_provider.clone()),
                ("saml.metadata_url", self.saml_metadata_url.clone()),
                ("saml.metadata_xml", self.saml_metadata_xml.clone()),
                ("saml.mapping_email", self.saml_mapping_email.clone()),
                (
                    "saml.mapping_first_name",
                    self.saml_mapping_first_name.clone(),
                ),
                (
                    "saml.mapping_last_name",
                    self.saml_mapping_last_name.clone(),
                ),
                ("saml.mapping_groups", self.saml_mapping_groups.clone()),
                (
                    "saml.manual_role_management",
                    flag(&self.saml_manual_role_management),
                ),
                (
                    "saml.allow_idp_initiated",
                    flag(&self.saml_allow_idp_initiated),
                ),
            ],
            "ldap" => vec![
                ("ldap.enabled", flag(&self.ldap_enabled)),
                ("ldap.server_uri", self.ldap_server_uri.clone()),
                ("ldap.start_tls", flag(&self.ldap_start_tls)),
                ("ldap.ca_certificate", self.ldap_ca_certificate.clone()),
                ("ldap.bind_dn", self.ldap_bind_dn.clone()),
                ("ldap.user_search_base", self.ldap_user_search_base.clone()),
                (
                    "ldap.user_search_filter",
                    self.ldap_user_search_filter.clone(),
                ),
                ("ldap.user_dn_template", self.ldap_user_dn_template.clone()),
                ("ldap.attr_email", self.ldap_attr_email.clone()),
                ("ldap.attr_first_name", self.ldap_attr_first_name.clone()),
                ("ldap.attr_last_name", self.ldap_attr_last_name.clone()),
                (
                    "ldap.group_search_base",
                    self.ldap_group_search_base.clone(),
                ),
                (
                    "ldap.group_search_filter",
                    self.ldap_group_search_filter.clone(),
                ),
                ("ldap.group_name_attr", self.ldap_group_name_attr.clone()),
                (
                    "ldap.native_login_disabled",
                    flag(&self.ldap_native_login_disabled),
                ),
                ("ldap_domains", self.ldap_domains.clone()),
            ],
            _ => Vec::new(),
        };
        typed.extend(match self.action.as_str() {
            "saml" => mapping(
                "saml",
                [
                    "saml_mapping.roles_groups",
                    "saml_mapping.workspaces_groups",
                    "saml_mapping.projects_groups",
                    "saml_mapping.default_role",
                ],
            ),
            "scim" => mapping(
                "scim",
                [
                    "scim_mapping.roles_groups",
                    "scim_mapping.workspaces_groups",
                    "scim_mapping.projects_groups",
                    "scim_mapping.default_role",
                ],
            ),
            "ldap" => mapping(
                "ldap",
                [
                    "ldap_mapping.roles_groups",
                    "ldap_mapping.workspaces_groups",
                    "ldap_mapping.projects_groups",
                    "ldap_mapping.default_role",
                ],
            ),
            _ => Vec::new(),
        });
        typed
    }

    fn mapping(&self, prefix: &str) -> Result<GroupMapping, ApiError> {
        let field = |name: &str| {
            self.mappings
                .get(&format!("{prefix}_{name}"))
                .map(String::as_str)
                .unwrap_or_default()
        };
        parse_mapping(
            prefix,
            field("roles_groups"),
            field("workspaces_groups"),
            field("projects_groups"),
            field("default_role"),
        )
    }

    fn saml(&self) -> Result<SamlSettings, ApiError> {
        let m = self.mapping("saml")?;
        let given = |v: &str| Some(v.trim().to_string()).filter(|v| !v.is_empty());
        Ok(SamlSettings {
            domain: self.saml_domain.trim().to_string(),
            idp_provider: given(&self.saml_idp_provider)
                .unwrap_or_else(|| SamlSettings::default().idp_provider),
            metadata_url: given(&self.saml_metadata_url),
            metadata_xml: given(&self.saml_metadata_xml),
            mapping_email: self.saml_mapping_email.trim().to_string(),
            mapping_first_name: self.saml_mapping_first_name.trim().to_string(),
            mapping_last_name: self.saml_mapping_last_name.trim().to_string(),
            mapping_groups: self.saml_mapping_groups.trim().to_string(),
            roles_groups: m.roles_groups,
            workspaces_groups: m.workspaces_groups,
            projects_groups: m.projects_groups,
            default_role: m.default_role,
            manual_role_management: self.saml_manual_role_management.is_some(),
            allow_idp_initiated: self.saml_allow_idp_initiated.is_some(),
        })
    }

    fn ldap(&self) -> Result<LdapSettings, ApiError> {
        let m = self.mapping("ldap")?;
        let text = |v: &str| v.trim().to_string();
        Ok(LdapSettings {
            enabled: self.ldap_enabled.is_some(),
            server_uri: text(&self.ldap_server_uri),
            start_tls: self.ldap_start_tls.is_some(),
            ca_certificate: text(&self.ldap_ca_certificate),
            bind_dn: text(&self.ldap_bind_dn),
            // An empty box keeps the stored password (the page never shows it).
            bind_password: Some(self.ldap_bind_password.clone()).filter(|p| !p.is_empty()),
            bind_password_set: false,
            user_search_base: text(&self.ldap_user_search_base),
            user_search_filter: text(&self.ldap_user_search_filter),
            user_dn_template: text(&self.ldap_user_dn_template),
            attr_email: text(&self.ldap_attr_email),
            attr_first_name: text(&self.ldap_attr_first_name),
            attr_last_name: text(&self.ldap_attr_last_name),
            group_search_base: text(&self.ldap_group_search_base),
            group_search_filter: text(&self.ldap_group_search_filter),
            group_name_attr: text(&self.ldap_group_name_attr),
            domains: self
                .ldap_domains
                .split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(str::to_string)
                .collect(),
            native_login_disabled: self.ldap_native_login_disabled.is_some(),
            roles_groups: m.roles_groups,
            workspaces_groups: m.workspaces_groups,
            projects_groups: m.projects_groups,
            default_role: m.default_role,
        })
    }
}

/// `POST /organization/settings/sso`: `action` is `saml`, `saml_delete`, `scim`, `scim_token`,
/// `ldap`, `ldap_delete` or `ldap_test`.
pub(super) async fn sso_post(State(state): State<AppState>, request: Request) -> Response {
    let (user, parts, form) = match signed_in_form::<SsoForm>(&state, request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let db = &state.db;
    let actor = &user.actor;
    // The answers that show something on the page rather than going back to it.
    let shown: Result<Option<Outcome>, ApiError> = match form.action.as_str() {
        "scim_token" => scim::rotate_token(db, actor).await.map(|token| {
            Some(Outcome {
                notice: Some(
                    "Give this token to the identity provider now: it is not shown again, and \
                     the previous token no longer works."
                        .into(),
                ),
                scim_token: Some(token),
                ..Outcome::default()
            })
        }),
        "ldap_test" => ldap_routes::run_test(&state, actor).await.map(|report| {
            Some(if report.ok {
                Outcome {
                    notice: Some(format!("The connection works: {}", report.detail)),
                    ..Outcome::default()
                }
            } else {
                Outcome {
                    error: Some(format!("The connection failed: {}", report.detail)),
                    ..Outcome::default()
                }
            })
        }),
        _ => Ok(None),
    };
    match shown {
        Ok(Some(outcome)) => {
            return Section::Sso
                .view(&state, &user, &parts, StatusCode::OK, outcome)
                .await;
        }
        Ok(None) => {}
        Err(e) => return after_post(&state, &user, &parts, Section::Sso, Err(e), Vec::new()).await,
    }
    let result: Result<&str, ApiError> = async {
        match form.action.as_str() {
            "saml" => {
                let settings = form.saml()?;
                saml_routes::save_settings(&state, actor, settings).await?;
                Ok("saml")
            }
            "saml_delete" => {
                saml::delete_settings(db, actor).await?;
                Ok("saml_deleted")
            }
            "scim" => {
                scim::set_settings(db, actor, form.mapping("scim")?).await?;
                Ok("scim")
            }
            "ldap" => {
                ldap::set_settings(db, &state.sealer, actor, form.ldap()?).await?;
                Ok("ldap")
            }
            "ldap_delete" => {
                ldap::delete_settings(db, actor).await?;
                Ok("ldap_deleted")
            }
            other => Err(ApiError::field(
                ErrorCode::ValidationError,
                "action",
                format!("{other:?} is not something this page does"),
            )),
        }
    }
    .await;
    let typed = form.typed();
    after_post(&state, &user, &parts, Section::Sso, result, typed).await
}

super::pages::csrf_forms!(AccessForm, SessionsForm, SsoForm);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_one_entry_a_line() {
        assert_eq!(
            lines(" 10.0.0.0/8 \n\n\r\n192.0.2.1\r\n"),
            vec!["10.0.0.0/8".to_string(), "192.0.2.1".to_string()]
        );
        assert!(lines("  \n").is_empty());
    }

    #[test]
    fn mapping_lines_round_trip_and_bad_shapes_name_the_field() {
        let m = parse_mapping(
            "scim",
            "manager: cn=leads,ou=groups,dc=example\nreviewer:qa",
            "Vision: vision-team",
            "7: Reviewer: qa: east",
            " ",
        )
        .expect("mapping");
        assert_eq!(
            m.roles_groups,
            vec![
                ("manager".into(), "cn=leads,ou=groups,dc=example".into()),
                ("reviewer".into(), "qa".into())
            ]
        );
        assert_eq!(
            m.workspaces_groups,
            vec![("Vision".into(), "vision-team".into())]
        );
        assert_eq!(
            m.projects_groups,
            vec![ProjectGroup {
                project_id: 7,
                role: "Reviewer".into(),
                group: "qa: east".into()
            }]
        );
        assert_eq!(m.default_role, None);
        let shown = mapping_text(&m);
        let again = parse_mapping(
            "scim",
            &shown.get_attr("roles_groups").expect("roles").to_string(),
            &shown
                .get_attr("workspaces_groups")
                .expect("workspaces")
                .to_string(),
            &shown
                .get_attr("projects_groups")
                .expect("projects")
                .to_string(),
            "",
        )
        .expect("again");
        assert_eq!(again, m);
        for (roles, projects, field) in [
            ("no separator", "", "roles_groups"),
            ("", "x: Reviewer: qa", "projects_groups"),
            ("", "7: qa", "projects_groups"),
        ] {
            let e = parse_mapping("ldap", roles, "", projects, "").expect_err("refused");
            assert_eq!(e.code, ErrorCode::ValidationError);
            assert!(
                e.detail.starts_with(&format!("{field}: the line"))
                    && e.detail.contains("of the LDAP mappings"),
                "{}",
                e.detail
            );
            assert!(
                e.validation_errors
                    .as_ref()
                    .is_some_and(|v| v.contains_key(field)),
                "{field}: {:?}",
                e.validation_errors
            );
        }
    }
}
