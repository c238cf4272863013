//! Webhooks: Label Studio's `/api/webhooks` API (what `label-studio-sdk`'s `client.webhooks`
//! calls) and the delivery log. Authorization is in `storage::webhooks`.

use axum::{Json, extract::State, http::StatusCode, response::Response};
use serde::Deserialize;
use serde_json::Value;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    authz::Actor,
    error::{ApiError, ApiResult, ErrorCode},
    http::extract::Path,
    http::{
        AppState,
        extract::{JsonObject, Query, opt_bool, opt_int},
        no_content,
    },
    storage::webhooks::{self, DeliveryView, Listing, WebhookView},
    webhooks::{TargetPolicy, info},
};

fn policy(state: &AppState) -> ApiResult<TargetPolicy> {
    TargetPolicy::parse(&state.config.allow_private_targets).map_err(ApiError::internal)
}

/// Query of the webhook list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct WebhookListParams {
    /// A project's webhooks; `null` for the organization-wide ones; absent: every webhook the
    /// caller manages.
    pub project: Option<String>,
}

/// Webhooks (plain list, oldest first).
#[utoipa::path(get, path = "/api/webhooks", tag = "webhooks", params(WebhookListParams), responses((status = 200, body = Vec<WebhookView>)))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    actor: Actor,
    Query(params): Query<WebhookListParams>,
) -> ApiResult<Json<Vec<WebhookView>>> {
    let which = match params.project.as_deref().map(str::trim) {
        None | Some("") => Listing::All,
        Some("null") | Some("None") => Listing::Organization,
        Some(_) => Listing::Project(opt_int("project", &params.project)?.unwrap_or_default()),
    };
    Ok(Json(webhooks::list(&state.db, &actor, which).await?))
}

/// Creates a webhook: `{"url", "project"?, "send_payload"?, "send_for_all_actions"?,
/// "headers"?, "actions"?, "is_active"?, "secret"?}`. The answer carries the signing secret
/// (generated unless given) once.
#[utoipa::path(post, path = "/api/webhooks", tag = "webhooks", request_body = Object, responses((status = 201, body = WebhookView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn create_webhook(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<WebhookView>)> {
    let policy = policy(&state)?;
    Ok((
        StatusCode::CREATED,
        Json(webhooks::create(&state.db, &actor, &state.sealer, &policy, &body).await?),
    ))
}

/// Query of the event list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct InfoParams {
    /// Only the events organization-wide webhooks alone can subscribe to.
    #[serde(rename = "organization-only")]
    #[param(rename = "organization-only")]
    pub organization_only: Option<String>,
}

/// Every event: `{NAME: {name, description, key, organization-only}}`.
#[utoipa::path(get, path = "/api/webhooks/info", tag = "webhooks", params(InfoParams), responses((status = 200, body = Object)))]
pub async fn webhook_info(
    _actor: Actor,
    Query(params): Query<InfoParams>,
) -> ApiResult<Json<Value>> {
    let only = opt_bool("organization-only", &params.organization_only)?.unwrap_or(false);
    Ok(Json(info(only)))
}

/// One webhook.
#[utoipa::path(get, path = "/api/webhooks/{id}", tag = "webhooks", params(("id" = i64, Path)), responses((status = 200, body = WebhookView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_webhook(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<WebhookView>> {
    Ok(Json(webhooks::get(&state.db, &actor, id).await?))
}

/// Changes a webhook; `{"rotate_secret": true}` makes a new signing secret, answered once.
#[utoipa::path(patch, path = "/api/webhooks/{id}", tag = "webhooks", params(("id" = i64, Path)), request_body = Object, responses((status = 200, body = WebhookView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn update_webhook(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<WebhookView>> {
    let policy = policy(&state)?;
    Ok(Json(
        webhooks::update(&state.db, &actor, &state.sealer, &policy, id, &body).await?,
    ))
}

/// Deletes a webhook (its undelivered events and its delivery log go with it).
#[utoipa::path(delete, path = "/api/webhooks/{id}", tag = "webhooks", params(("id" = i64, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    webhooks::delete(&state.db, &actor, id).await?;
    Ok(no_content())
}

/// Query of the delivery log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeliveryParams {
    /// At most this many (default 100, at most 500).
    pub limit: Option<String>,
}

/// The delivery log: the latest attempts, newest first (status, latency, the first KiB of the
/// answer, the error, and the retry time of an event still pending).
#[utoipa::path(get, path = "/api/webhooks/{id}/deliveries", tag = "webhooks", params(("id" = i64, Path), DeliveryParams), responses((status = 200, body = Vec<DeliveryView>)))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Query(params): Query<DeliveryParams>,
) -> ApiResult<Json<Vec<DeliveryView>>> {
    let limit = opt_int("limit", &params.limit)?.unwrap_or(100);
    if !(1..=webhooks::LOG_KEPT).contains(&limit) {
        return Err(ApiError::field(
            ErrorCode::InvalidQuery,
            "limit",
            format!("must be between 1 and {}", webhooks::LOG_KEPT),
        ));
    }
    Ok(Json(
        webhooks::deliveries(&state.db, &actor, id, limit).await?,
    ))
}

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(webhook_info))
        .routes(routes!(get_webhook, update_webhook, delete_webhook))
        .routes(routes!(list_deliveries))
}
