//! SCIM provisioning settings of the caller's organization: the group mappings
//! (`/api/scim/settings`, Label Studio Enterprise's path) and the provisioning token
//! (`/api/scim/token`). The SCIM protocol itself is served at `/scim/v2` (`crate::scim`).

use axum::{Json, extract::State};
use serde::Serialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    authz::Actor,
    error::{ApiError, ApiResult, ErrorCode},
    http::{AppState, extract::JsonObject},
    storage::scim::{self, ScimSettings},
};

/// The organization's group mappings.
#[utoipa::path(get, path = "/api/scim/settings", tag = "scim", responses((status = 200, body = ScimSettings)))]
pub async fn get_settings(
    State(state): State<AppState>,
    actor: Actor,
) -> ApiResult<Json<ScimSettings>> {
    Ok(Json(scim::get_settings(&state.db, &actor).await?))
}

/// Replaces the organization's group mappings and applies them to every provisioned member.
#[utoipa::path(post, path = "/api/scim/settings", tag = "scim", request_body = ScimSettings, responses((status = 200, body = ScimSettings)))]
pub async fn set_settings(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<ScimSettings>> {
    let settings: ScimSettings =
        serde_json::from_value(serde_json::Value::Object(body)).map_err(|e| {
            ApiError::new(
                ErrorCode::ValidationError,
                format!(
                    "SCIM settings: {e}; expected roles_groups [[role, group]], workspaces_groups \
                     [[workspace title, group]], projects_groups [{{project_id, group, role}}], default_role"
                ),
            )
        })?;
    Ok(Json(scim::set_settings(&state.db, &actor, settings).await?))
}

/// A new provisioning token (shown once).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScimToken {
    /// Bearer token for `/scim/v2` of this organization; the previous one stops working.
    pub token: String,
}

/// Issues a new SCIM provisioning token and revokes the previous one.
#[utoipa::path(post, path = "/api/scim/token", tag = "scim", responses((status = 200, body = ScimToken)))]
pub async fn rotate_token(
    State(state): State<AppState>,
    actor: Actor,
) -> ApiResult<Json<ScimToken>> {
    Ok(Json(ScimToken {
        token: scim::rotate_token(&state.db, &actor).await?,
    }))
}

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_settings, set_settings))
        .routes(routes!(rotate_token))
}
