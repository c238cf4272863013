//! The caller's notifications of comments (ADR 0051): `/api/notifications` (Label Studio
//! Enterprise has no public API for them; this one is ours).

use axum::{
    Json,
    extract::{OriginalUri, State},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    authz::Actor,
    error::{ApiError, ApiResult, ErrorCode},
    http::{
        AppState,
        extract::{JsonObject, Query, opt_bool, opt_int},
        pagination::{Page, links},
    },
    storage::notifications::{self, Mark, NotificationView},
};

/// Query of the notification list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct NotificationParams {
    /// Page number (from 1).
    pub page: Option<String>,
    /// Items per page (default 30, at most 100).
    pub page_size: Option<String>,
    /// `true`: only the unread ones.
    pub unread: Option<String>,
}

/// A page of notifications.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NotificationPage {
    /// The caller's notifications (all, or the unread ones with `unread=true`).
    pub count: i64,
    /// Unread notifications of the caller.
    pub unread_count: i64,
    /// Next page.
    pub next: Option<String>,
    /// Previous page.
    pub previous: Option<String>,
    /// Unread first, then newest first.
    pub results: Vec<NotificationView>,
}

/// The caller's notifications, unread first, newest first; 404 past the last page.
#[utoipa::path(get, path = "/api/notifications", tag = "reviews", params(NotificationParams), responses((status = 200, body = NotificationPage), (status = 400, body = crate::error::ErrorBody)))]
pub async fn list_notifications(
    State(state): State<AppState>,
    actor: Actor,
    OriginalUri(uri): OriginalUri,
    Query(params): Query<NotificationParams>,
) -> ApiResult<Json<NotificationPage>> {
    let page = Page::new(
        opt_int("page", &params.page)?,
        opt_int("page_size", &params.page_size)?,
        30,
        100,
    )?;
    let unread_only = opt_bool("unread", &params.unread)?.unwrap_or(false);
    let (total, unread) = notifications::count(&state.db, &actor).await?;
    let count = if unread_only { unread } else { total };
    page.check(count)?;
    let results =
        notifications::list(&state.db, &actor, unread_only, page.offset(), page.size).await?;
    let (next, previous) = links(&uri, page, count);
    Ok(Json(NotificationPage {
        count,
        unread_count: unread,
        next,
        previous,
        results,
    }))
}

/// Counts of the caller's notifications.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NotificationCount {
    /// All of them.
    pub total: i64,
    /// The unread ones.
    pub unread: i64,
}

/// How many notifications the caller has, and how many are unread.
#[utoipa::path(get, path = "/api/notifications/count", tag = "reviews", responses((status = 200, body = NotificationCount)))]
pub async fn count_notifications(
    State(state): State<AppState>,
    actor: Actor,
) -> ApiResult<Json<NotificationCount>> {
    let (total, unread) = notifications::count(&state.db, &actor).await?;
    Ok(Json(NotificationCount { total, unread }))
}

/// What was marked read.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Marked {
    /// Notifications that were unread and are now read.
    pub marked: i64,
}

/// Reads a mark-read body: `{"ids": [..]}` or `{"all": true}`.
fn mark_of(body: &serde_json::Map<String, Value>) -> ApiResult<Mark> {
    let bad = |field: &str, m: &str| ApiError::field(ErrorCode::ValidationError, field, m);
    for key in body.keys() {
        if key != "ids" && key != "all" {
            return Err(bad(key, "unknown field; give ids or all"));
        }
    }
    match (body.get("ids"), body.get("all")) {
        (Some(_), Some(_)) => Err(bad("all", "give either ids or all, not both")),
        (Some(Value::Array(ids)), None) => Ok(Mark::Ids(
            ids.iter()
                .map(|v| {
                    v.as_i64()
                        .ok_or_else(|| bad("ids", "must be a list of notification ids"))
                })
                .collect::<ApiResult<_>>()?,
        )),
        (Some(_), None) => Err(bad("ids", "must be a list of notification ids")),
        (None, Some(Value::Bool(true))) => Ok(Mark::All),
        (None, Some(_)) => Err(bad("all", "must be true")),
        (None, None) => Err(bad(
            "ids",
            "give the notification ids to mark read, or {\"all\": true}",
        )),
    }
}

/// Marks the caller's notifications read: `{"ids": [1, 2]}` (ids that are not the caller's are
/// ignored) or `{"all": true}`.
#[utoipa::path(post, path = "/api/notifications/mark-read", tag = "reviews", request_body = Object, responses((status = 200, body = Marked), (status = 400, body = crate::error::ErrorBody)))]
pub async fn mark_read(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Marked>> {
    let mark = mark_of(&body)?;
    let marked = notifications::mark_read(&state.db, &actor, &mark).await?;
    Ok(Json(Marked { marked }))
}

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_notifications))
        .routes(routes!(count_notifications))
        .routes(routes!(mark_read))
}
