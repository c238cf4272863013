//! LDAP sign-in settings of the caller's organization (`/api/ldap/settings`, ADR 0030), and the
//! dispatch of browser sign-ins between the organization's directory and password sign-in.

use axum::{Json, extract::State, response::Response};
use serde::Serialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    authz::{Actor, Permission, RequestMeta},
    error::{ApiError, ApiResult, ErrorCode},
    http::{AppState, extract::JsonObject, no_content},
    outbound::TargetPolicy,
    storage::{
        ldap::{self, LdapSettings},
        sessions::{Lockout, NewSession},
    },
};

fn policy(state: &AppState) -> ApiResult<TargetPolicy> {
    TargetPolicy::parse(&state.config.allow_private_targets).map_err(ApiError::internal)
}

/// Signs in a browser: through the directory of the organization the login routes to (its
/// email domain, or an account in an organization with LDAP on), else with the password.
pub async fn sign_in(
    state: &AppState,
    meta: &RequestMeta,
    login: &str,
    password: &str,
    lockout: Lockout,
    ttl_secs: i64,
) -> ApiResult<NewSession> {
    let policy = policy(state)?;
    ldap::sign_in(
        &state.db,
        &state.sealer,
        &policy,
        meta,
        login,
        password,
        lockout,
        ttl_secs,
    )
    .await
}

/// The organization's directory settings (the service password is never returned); LDAP off
/// with the defaults when none are saved.
#[utoipa::path(get, path = "/api/ldap/settings", tag = "ldap", responses((status = 200, body = LdapSettings)))]
pub async fn get_settings(
    State(state): State<AppState>,
    actor: Actor,
) -> ApiResult<Json<LdapSettings>> {
    Ok(Json(ldap::get_settings(&state.db, &actor).await?))
}

/// Replaces the organization's directory settings. `bind_password` may be omitted to keep the
/// stored one.
#[utoipa::path(post, path = "/api/ldap/settings", tag = "ldap", request_body = LdapSettings, responses((status = 200, body = LdapSettings)))]
pub async fn set_settings(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<LdapSettings>> {
    // Who may change the settings is answered before what is wrong with them.
    actor.require(Permission::OrgManage)?;
    let settings: LdapSettings =
        serde_json::from_value(serde_json::Value::Object(body)).map_err(|e| {
            ApiError::new(
                ErrorCode::ValidationError,
                format!(
                    "LDAP settings: {e}; expected server_uri, start_tls, ca_certificate, bind_dn, \
                     bind_password, user_search_base, user_search_filter or user_dn_template, \
                     attr_email/attr_first_name/attr_last_name, group_search_base, group_search_filter, \
                     group_name_attr, domains, native_login_disabled, enabled, roles_groups, \
                     workspaces_groups, projects_groups, default_role"
                ),
            )
        })?;
    Ok(Json(
        ldap::set_settings(&state.db, &state.sealer, &actor, settings).await?,
    ))
}

/// Removes the organization's directory settings: directory sign-in is off (accounts stay).
#[utoipa::path(delete, path = "/api/ldap/settings", tag = "ldap", responses((status = 204)))]
pub async fn delete_settings(State(state): State<AppState>, actor: Actor) -> ApiResult<Response> {
    ldap::delete_settings(&state.db, &actor).await?;
    Ok(no_content())
}

/// What a bind with the stored service account did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LdapTestReport {
    /// Whether the TLS connection and the service bind worked.
    pub ok: bool,
    /// What happened (why not, when `ok` is false).
    pub detail: String,
}

/// Connects to the directory with the stored settings and binds as the service account.
#[utoipa::path(post, path = "/api/ldap/settings/test", tag = "ldap", responses((status = 200, body = LdapTestReport)))]
pub async fn test_settings(
    State(state): State<AppState>,
    actor: Actor,
) -> ApiResult<Json<LdapTestReport>> {
    Ok(Json(run_test(&state, &actor).await?))
}

/// Binds with the stored settings under the outbound target rules (the API's test and the
/// organization settings page's "Test the connection").
pub(crate) async fn run_test(state: &AppState, actor: &Actor) -> ApiResult<LdapTestReport> {
    let policy = policy(state)?;
    let result = ldap::test_settings(&state.db, &state.sealer, &policy, actor).await?;
    Ok(match result {
        Ok(detail) => LdapTestReport { ok: true, detail },
        Err(detail) => LdapTestReport { ok: false, detail },
    })
}

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_settings, set_settings, delete_settings))
        .routes(routes!(test_settings))
}
