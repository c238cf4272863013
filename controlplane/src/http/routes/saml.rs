//! SAML single sign-on settings of the caller's organization, at Label Studio Enterprise's
//! paths (`/api/saml/settings`, `/api/saml/settings/validate-metadata-url`). The protocol
//! endpoints (metadata, login, ACS) are pages: `http::ui::sso`.

use std::{sync::Arc, time::Duration};

use axum::{Json, extract::State, http::StatusCode};
use serde::Serialize;
use serde_json::Value;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    authz::{Actor, Permission},
    error::{ApiError, ApiResult, ErrorCode},
    http::{AppState, extract::JsonObject},
    outbound::TargetPolicy,
    saml,
    storage::saml::{self as store, SamlSettings, SamlSettingsView, SpUrls},
};

/// Largest metadata document read from a URL.
const MAX_METADATA_BYTES: usize = 1024 * 1024;

/// The service provider URLs of the caller's organization.
pub fn urls(state: &AppState, org: i64) -> SpUrls {
    SpUrls::new(&state.config.public_base_url(), org)
}

/// Fetches an identity provider's metadata under the outbound target rules.
async fn fetch_metadata(state: &AppState, url: &str) -> ApiResult<String> {
    let field = |m: String| ApiError::field(ErrorCode::ValidationError, "metadata_url", m);
    let policy = TargetPolicy::parse(&state.config.allow_private_targets).unwrap_or_default();
    let parsed = policy.check_url(url).map_err(|m| {
        let code = if m.contains("private") || m.contains("allow") {
            ErrorCode::PrivateTarget
        } else {
            ErrorCode::ValidationError
        };
        ApiError::field(code, "metadata_url", m)
    })?;
    let client = crate::webhooks::client(Arc::new(policy), Duration::from_secs(10));
    let mut response = client.get(parsed).send().await.map_err(|e| {
        field(format!(
            "the metadata URL could not be read: {}",
            crate::outbound::describe(&e)
        ))
    })?;
    if !response.status().is_success() {
        return Err(field(format!(
            "the metadata URL answered HTTP {}",
            response.status().as_u16()
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        field(format!(
            "the metadata URL could not be read: {}",
            crate::outbound::describe(&e)
        ))
    })? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_METADATA_BYTES {
            return Err(field("the metadata is larger than 1 MiB".into()));
        }
    }
    String::from_utf8(body).map_err(|_| field("the metadata is not UTF-8 text".into()))
}

/// The organization's SAML settings, with this service provider's URLs for the identity
/// provider.
#[utoipa::path(get, path = "/api/saml/settings", tag = "saml", responses((status = 200, body = SamlSettingsView)))]
pub async fn get_settings(
    State(state): State<AppState>,
    actor: Actor,
) -> ApiResult<Json<SamlSettingsView>> {
    let urls = urls(&state, actor.org_id);
    Ok(Json(store::get_settings(&state.db, &actor, urls).await?))
}

/// Sets up (or replaces) single sign-on for the organization. The metadata comes from
/// `metadata_xml`, or is fetched from `metadata_url` now.
#[utoipa::path(post, path = "/api/saml/settings", tag = "saml", request_body = SamlSettings, responses((status = 200, body = SamlSettingsView)))]
pub async fn set_settings(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<SamlSettingsView>> {
    actor.require(Permission::OrgManage)?;
    if let Some(key) = body.keys().find(|k| !store::FIELDS.contains(&k.as_str())) {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            key,
            format!(
                "unknown field {key:?}; the settings are: {}",
                store::FIELDS.join(", ")
            ),
        ));
    }
    let settings: SamlSettings = serde_json::from_value(Value::Object(body)).map_err(|e| {
        ApiError::new(
            ErrorCode::ValidationError,
            format!(
                "SAML settings: {e}; expected domain, metadata_url or metadata_xml, mapping_email, \
                 mapping_first_name, mapping_last_name, mapping_groups, roles_groups, workspaces_groups, \
                 projects_groups, default_role, manual_role_management, allow_idp_initiated"
            ),
        )
    })?;
    Ok(Json(save_settings(&state, &actor, settings).await?))
}

/// Saves SAML settings: the metadata is `metadata_xml`, else fetched from `metadata_url` now
/// (under the outbound target rules). The API's `POST` and the organization settings page
/// both save here.
pub(crate) async fn save_settings(
    state: &AppState,
    actor: &Actor,
    settings: SamlSettings,
) -> ApiResult<SamlSettingsView> {
    actor.require(Permission::OrgManage)?;
    let xml = match (
        settings
            .metadata_xml
            .as_deref()
            .map(str::trim)
            .filter(|x| !x.is_empty()),
        settings
            .metadata_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty()),
    ) {
        (Some(xml), _) => xml.to_string(),
        (None, Some(url)) => fetch_metadata(state, url).await?,
        (None, None) => {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "metadata_xml",
                "give the identity provider's metadata as metadata_xml or metadata_url",
            ));
        }
    };
    let urls = urls(state, actor.org_id);
    store::set_settings(&state.db, actor, settings, xml, urls).await
}

/// Turns single sign-on off for the organization.
#[utoipa::path(delete, path = "/api/saml/settings", tag = "saml", responses((status = 204)))]
pub async fn delete_settings(State(state): State<AppState>, actor: Actor) -> ApiResult<StatusCode> {
    store::delete_settings(&state.db, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a metadata URL says.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MetadataCheck {
    /// The identity provider's entity id.
    pub entity_id: String,
    /// Its HTTP-Redirect sign-on URL.
    pub sso_url: String,
}

/// The body of a metadata URL check.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct MetadataUrl {
    /// The identity provider's metadata URL.
    pub metadata_url: String,
}

/// Fetches and checks an identity provider's metadata URL without saving anything.
#[utoipa::path(post, path = "/api/saml/settings/validate-metadata-url", tag = "saml", request_body = MetadataUrl, responses((status = 200, body = MetadataCheck)))]
pub async fn validate_metadata_url(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<MetadataCheck>> {
    actor.require(Permission::OrgManage)?;
    let url = body
        .get("metadata_url")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            ApiError::field(
                ErrorCode::ValidationError,
                "metadata_url",
                "give metadata_url",
            )
        })?;
    let xml = fetch_metadata(&state, url).await?;
    let info = saml::idp_info(&xml)?;
    Ok(Json(MetadataCheck {
        entity_id: info.entity_id,
        sso_url: info.sso_url,
    }))
}

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_settings, set_settings, delete_settings))
        .routes(routes!(validate_metadata_url))
}
