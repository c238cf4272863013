//! Organizations, memberships (roles, deactivation, activity), invitations and the audit log.

use axum::{
    Json,
    body::Body,
    extract::{OriginalUri, State},
    http::{StatusCode, header},
    response::Response,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::exports::tokio_stream_compat::ReceiverStream;
use crate::{
    authz::{Actor, Role},
    body,
    error::{ApiError, ApiResult, ErrorCode},
    http::extract::Path,
    http::{
        AppState,
        extract::{JsonObject, Query, opt_bool, opt_int, request_meta},
        no_content,
        pagination::{DrfPage, Page, links},
    },
    storage::{
        access_policy,
        audit::{self, EntryRow},
        orgs::{self, InvitationView, MemberFilter, MembershipView, OrganizationView, Signup},
        sessions,
        users::UserView,
    },
};

/// The optional `is_active` flag of a membership change.
fn active_field(body: &serde_json::Map<String, Value>) -> ApiResult<Option<bool>> {
    match body.get("is_active") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::field(
            ErrorCode::ValidationError,
            "is_active",
            "must be true or false",
        )),
    }
}

/// The caller's organizations.
#[utoipa::path(get, path = "/api/organizations", tag = "organizations", responses((status = 200, body = Vec<OrganizationView>)))]
pub async fn list_organizations(
    State(state): State<AppState>,
    actor: Actor,
) -> ApiResult<Json<Vec<OrganizationView>>> {
    Ok(Json(orgs::list_mine(&state.db, &actor).await?))
}

/// The caller's organization.
#[utoipa::path(get, path = "/api/organizations/{id}", tag = "organizations", params(("id" = i64, Path)), responses((status = 200, body = OrganizationView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_organization(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<OrganizationView>> {
    Ok(Json(orgs::get(&state.db, &actor, id).await?))
}

/// Changes the organization's title and branding (`product_name`, `logo` as a
/// `data:image/…;base64,…` URL of at most 64 KiB, `accent_color` as `#rrggbb`,
/// `login_redirect_url` as a path on this server; `""` clears one), or (owners) its audit-log
/// retention in days.
#[utoipa::path(patch, path = "/api/organizations/{id}", tag = "organizations", params(("id" = i64, Path)), request_body = Object, responses((status = 200, body = OrganizationView)))]
pub async fn update_organization(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<OrganizationView>> {
    let title = match body.get("title") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "title",
                "must be a string",
            ));
        }
    };
    let retention = match body.get("audit_retention_days") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| {
            ApiError::field(
                ErrorCode::ValidationError,
                "audit_retention_days",
                "must be a whole number of days",
            )
        })?),
    };
    let text = |key: &str| match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(ApiError::field(
            ErrorCode::ValidationError,
            key,
            "must be a string (\"\" clears it)",
        )),
    };
    let brand = orgs::BrandingChanges {
        product_name: text("product_name")?,
        logo: text("logo")?,
        accent_color: text("accent_color")?,
        login_redirect_url: text("login_redirect_url")?,
    };
    Ok(Json(
        orgs::update(&state.db, &actor, id, title, retention, &brand).await?,
    ))
}

/// Query of the membership list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct MembershipParams {
    /// 1-based page.
    pub page: Option<String>,
    /// Page size (default 30, max 100).
    pub page_size: Option<String>,
    /// Only this role.
    pub role: Option<String>,
    /// Email or name contains.
    pub search: Option<String>,
    /// `true`: active members only; `false`: deactivated only.
    pub is_active: Option<String>,
}

/// A page of memberships.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MembershipPage {
    /// Total.
    pub count: i64,
    /// Next page.
    pub next: Option<String>,
    /// Previous page.
    pub previous: Option<String>,
    /// Members.
    pub results: Vec<MembershipView>,
}

/// The organization's members with role and activity (last activity, annotations, reviews).
#[utoipa::path(get, path = "/api/organizations/{id}/memberships", tag = "organizations", params(("id" = i64, Path), MembershipParams), responses((status = 200, body = MembershipPage)))]
pub async fn list_memberships(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    OriginalUri(uri): OriginalUri,
    Query(params): Query<MembershipParams>,
) -> ApiResult<Json<DrfPage<MembershipView>>> {
    let page = Page::new(
        opt_int("page", &params.page)?,
        opt_int("page_size", &params.page_size)?,
        30,
        100,
    )?;
    let role = match params.role.as_deref().filter(|r| !r.is_empty()) {
        None => None,
        Some(r) => Some(Role::parse(r).ok_or_else(|| {
            ApiError::field(
                ErrorCode::InvalidQuery,
                "role",
                format!("{r:?} is not a role"),
            )
        })?),
    };
    let filter = MemberFilter {
        role,
        search: params.search.filter(|s| !s.is_empty()),
        active: opt_bool("is_active", &params.is_active)?,
    };
    let (count, results) =
        orgs::list_memberships(&state.db, &actor, id, &filter, page.offset(), page.size).await?;
    // Label Studio's member pager stops on an empty page, not on 404.
    let (next, previous) = links(&uri, page, count);
    Ok(Json(DrfPage {
        count,
        next,
        previous,
        results,
    }))
}

/// Sets a member's role (`{"user_id", "role"}`); `role: "DI"` deactivates them. Refused and
/// audited when it would escalate privilege or leave no active owner.
#[utoipa::path(patch, path = "/api/organizations/{id}/memberships", tag = "organizations", params(("id" = i64, Path)), request_body = Object, responses((status = 200, body = MembershipView), (status = 403, body = crate::error::ErrorBody)))]
pub async fn update_membership(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<MembershipView>> {
    orgs::get(&state.db, &actor, id).await?;
    let user_id = body::id(&body, "user_id")?;
    let deactivate = body
        .get("role")
        .and_then(Value::as_str)
        .is_some_and(|r| r.eq_ignore_ascii_case("DI") || r.eq_ignore_ascii_case("deactivated"));
    if deactivate {
        orgs::set_member(&state.db, &actor, user_id, None, Some(false)).await?;
    } else {
        let role = body::opt_role(&body, "role")?;
        let active = active_field(&body)?;
        if role.is_none() && active.is_none() {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "role",
                "give a role (or is_active)",
            ));
        }
        orgs::set_member(&state.db, &actor, user_id, role, active).await?;
    }
    Ok(Json(
        orgs::get_membership(&state.db, &actor, id, user_id).await?,
    ))
}

/// Changes many members at once (`{"user_ids": [...], "role"?: ..., "is_active"?: bool}`):
/// all of them or, if any one is refused, none.
#[utoipa::path(post, path = "/api/organizations/{id}/memberships/bulk", tag = "organizations", params(("id" = i64, Path)), request_body = Object, responses((status = 200), (status = 403, body = crate::error::ErrorBody)))]
pub async fn bulk_memberships(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    orgs::get(&state.db, &actor, id).await?;
    let users = body::ids(&body, "user_ids")?;
    let role = body::opt_role(&body, "role")?;
    let active = active_field(&body)?;
    if role.is_none() && active.is_none() {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "role",
            "give a role and/or is_active",
        ));
    }
    orgs::set_roles_bulk(&state.db, &actor, &users, role, active).await?;
    Ok(Json(serde_json::json!({"updated": users.len()})))
}

/// One member with role and activity.
#[utoipa::path(get, path = "/api/organizations/{id}/memberships/{user_pk}", tag = "organizations", params(("id" = i64, Path), ("user_pk" = i64, Path)), responses((status = 200, body = MembershipView)))]
pub async fn get_membership(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, user)): Path<(i64, i64)>,
) -> ApiResult<Json<MembershipView>> {
    Ok(Json(
        orgs::get_membership(&state.db, &actor, id, user).await?,
    ))
}

/// Deactivates a member: their tokens stop working at once; everything they authored keeps
/// its author. Reactivate with PATCH …/memberships `{"user_id", "is_active": true}`.
#[utoipa::path(delete, path = "/api/organizations/{id}/memberships/{user_pk}", tag = "organizations", params(("id" = i64, Path), ("user_pk" = i64, Path)), responses((status = 204)))]
pub async fn delete_membership(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, user)): Path<(i64, i64)>,
) -> ApiResult<Response> {
    orgs::get(&state.db, &actor, id).await?;
    orgs::set_member(&state.db, &actor, user, None, Some(false)).await?;
    Ok(no_content())
}

/// The organization's invitation links (tokens are never shown again).
#[utoipa::path(get, path = "/api/invitations", tag = "organizations", responses((status = 200, body = Vec<InvitationView>)))]
pub async fn list_invitations(
    State(state): State<AppState>,
    actor: Actor,
) -> ApiResult<Json<Vec<InvitationView>>> {
    Ok(Json(orgs::list_invitations(&state.db, &actor).await?))
}

/// Creates a single-use invitation link: `{"role", "workspace"?, "expires_in_hours"? (default
/// 72, max 720)}`. The response carries the token once.
#[utoipa::path(post, path = "/api/invitations", tag = "organizations", request_body = Object, responses((status = 201, body = InvitationView)))]
pub async fn create_invitation(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<InvitationView>)> {
    let role = body::opt_role(&body, "role")?.unwrap_or(Role::Annotator);
    let workspace = match body.get("workspace") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| {
            ApiError::field(
                ErrorCode::ValidationError,
                "workspace",
                "must be a workspace id",
            )
        })?),
    };
    let hours = match body.get("expires_in_hours") {
        None | Some(Value::Null) => 72,
        Some(v) => v.as_i64().ok_or_else(|| {
            ApiError::field(
                ErrorCode::ValidationError,
                "expires_in_hours",
                "must be a whole number of hours",
            )
        })?,
    };
    Ok((
        StatusCode::CREATED,
        Json(orgs::create_invitation(&state.db, &actor, role, workspace, hours).await?),
    ))
}

/// Revokes a pending invitation link.
#[utoipa::path(delete, path = "/api/invitations/{id}", tag = "organizations", params(("id" = i64, Path)), responses((status = 204), (status = 410, body = crate::error::ErrorBody, description = "The invitation is already used or revoked")))]
pub async fn revoke_invitation(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    orgs::revoke_invitation(&state.db, &actor, id).await?;
    Ok(no_content())
}

/// The result of signing up through an invitation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignupView {
    /// The new user.
    pub user: UserView,
    /// Their API token (`Authorization: Token <token>`), shown once.
    pub token: String,
}

/// Signs up through an invitation link (no credentials needed): `{"token", "email",
/// "password", "first_name"?, "last_name"?}`. Used, expired and revoked links answer 410.
#[utoipa::path(post, path = "/api/invitations/accept", tag = "organizations", security(()), request_body = Object, responses((status = 201, body = SignupView), (status = 410, body = crate::error::ErrorBody)))]
pub async fn accept_invitation(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> ApiResult<(StatusCode, Json<SignupView>)> {
    let (parts, body) = request.into_parts();
    let meta = request_meta(&parts, state.config.trust_forwarded_for);
    let request = axum::extract::Request::from_parts(parts, body);
    let JsonObject(body) =
        <JsonObject as axum::extract::FromRequest<AppState>>::from_request(request, &state).await?;
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
    let token = text("token").ok_or_else(|| {
        ApiError::field(
            ErrorCode::ValidationError,
            "token",
            "this field is required",
        )
    })?;
    let email = text("email").ok_or_else(|| {
        ApiError::field(
            ErrorCode::ValidationError,
            "email",
            "this field is required",
        )
    })?;
    let password = text("password").ok_or_else(|| {
        ApiError::field(
            ErrorCode::ValidationError,
            "password",
            "this field is required",
        )
    })?;
    let signup = Signup {
        email,
        password: Some(password),
        first_name: text("first_name").unwrap_or_default(),
        last_name: text("last_name").unwrap_or_default(),
    };
    let (user_id, api_token) = orgs::accept_invitation(&state.db, &meta, &token, &signup).await?;
    let actor = crate::storage::users::actor_for_user(&state.db, user_id)
        .await?
        .ok_or_else(|| ApiError::internal("the new user cannot act"))?;
    Ok((
        StatusCode::CREATED,
        Json(SignupView {
            user: crate::storage::users::get_user(&state.db, &actor, user_id).await?,
            token: api_token,
        }),
    ))
}

/// Query of the audit log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AuditParams {
    /// Acting user id.
    pub actor: Option<String>,
    /// Action (`project.update`), or a prefix ending in `.` (`project.`).
    pub action: Option<String>,
    /// Target type (`project`, `user`, …).
    pub target_type: Option<String>,
    /// Target id.
    pub target_id: Option<String>,
    /// From (ISO 8601, inclusive).
    pub since: Option<String>,
    /// Until (ISO 8601, exclusive).
    pub until: Option<String>,
    /// Entries older than this entry id (the `next_before` of the previous page).
    pub before: Option<String>,
    /// Page size (default 50, max 1000).
    pub page_size: Option<String>,
}

/// A page of audit entries, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// Entries.
    pub results: Vec<Value>,
    /// Pass as `before` for the next page; null on the last page.
    pub next_before: Option<i64>,
}

fn parse_time(name: &str, value: &Option<String>) -> ApiResult<Option<i64>> {
    match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => {
            let parsed =
                time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                    .or_else(|_| {
                        time::Date::parse(
                            v,
                            &time::macros::format_description!("[year]-[month]-[day]"),
                        )
                        .map(|d| d.midnight().assume_utc())
                    })
                    .map_err(|_| {
                        ApiError::field(
                            ErrorCode::InvalidQuery,
                            name,
                            format!("{v:?} is not a date (2026-01-31) or an RFC 3339 time"),
                        )
                    })?;
            Ok(Some((parsed.unix_timestamp_nanos() / 1_000) as i64))
        }
    }
}

fn audit_filter(params: &AuditParams) -> ApiResult<audit::Filter> {
    let text = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    Ok(audit::Filter {
        actor_id: opt_int("actor", &params.actor)?,
        action: text(&params.action),
        target_type: text(&params.target_type),
        target_id: text(&params.target_id),
        since: parse_time("since", &params.since)?,
        until: parse_time("until", &params.until)?,
        before_id: opt_int("before", &params.before)?,
    })
}

/// The organization's audit log, newest first, filtered (Owners and Admins).
#[utoipa::path(get, path = "/api/audit-log", tag = "audit", params(AuditParams), responses((status = 200, body = AuditPage)))]
pub async fn audit_log(
    State(state): State<AppState>,
    actor: Actor,
    Query(params): Query<AuditParams>,
) -> ApiResult<Json<AuditPage>> {
    let filter = audit_filter(&params)?;
    let size = opt_int("page_size", &params.page_size)?
        .unwrap_or(50)
        .clamp(1, 1000);
    let (rows, more) = audit::query(&state.db, &actor, &filter, size).await?;
    let next_before = if more {
        rows.last().map(|r| r.id)
    } else {
        None
    };
    Ok(Json(AuditPage {
        results: rows.iter().map(EntryRow::to_json).collect(),
        next_before,
    }))
}

/// Every matching audit entry as JSON lines, oldest first, streamed.
#[utoipa::path(get, path = "/api/audit-log/export", tag = "audit", params(AuditParams), responses((status = 200, description = "JSON lines", content_type = "application/x-ndjson")))]
pub async fn audit_export(
    State(state): State<AppState>,
    actor: Actor,
    Query(params): Query<AuditParams>,
) -> ApiResult<Response> {
    let filter = audit_filter(&params)?;
    let rx = audit::export(state.db.clone(), actor, filter).await?;
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"audit-log.jsonl\"",
        )
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .map_err(ApiError::internal)
}

fn minutes(body: &serde_json::Map<String, Value>, key: &str) -> ApiResult<Option<i64>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| {
            ApiError::field(
                ErrorCode::ValidationError,
                key,
                "give a whole number of minutes",
            )
        }),
    }
}

/// The organization's session policy: how long browser sessions last (minutes).
#[utoipa::path(get, path = "/api/session-policy", tag = "organizations", responses((status = 200, body = sessions::SessionPolicy)))]
pub async fn get_session_policy(
    State(state): State<AppState>,
    actor: Actor,
) -> ApiResult<Json<sessions::SessionPolicy>> {
    let ttl = state.config.session_ttl_hours.saturating_mul(3600);
    Ok(Json(sessions::get_policy(&state.db, &actor, ttl).await?))
}

/// Changes the session policy (`max_session_age`, `max_time_between_activity`, minutes); it
/// applies to sessions already open too.
#[utoipa::path(patch, path = "/api/session-policy", tag = "organizations", request_body = sessions::SessionPolicy, responses((status = 200, body = sessions::SessionPolicy)))]
pub async fn update_session_policy(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<sessions::SessionPolicy>> {
    if let Some(key) = body
        .keys()
        .find(|k| !matches!(k.as_str(), "max_session_age" | "max_time_between_activity"))
    {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            key,
            "unknown field: give max_session_age and/or max_time_between_activity",
        ));
    }
    let ttl = state.config.session_ttl_hours.saturating_mul(3600);
    Ok(Json(
        sessions::set_policy(
            &state.db,
            &actor,
            minutes(&body, "max_session_age")?,
            minutes(&body, "max_time_between_activity")?,
            ttl,
        )
        .await?,
    ))
}

/// The organization's access policy (ADR 0053): the storage endpoints its storages may
/// connect to and the networks allowed to call its API. Empty lists restrict nothing.
#[utoipa::path(get, path = "/api/access-policy", tag = "organizations", responses((status = 200, body = access_policy::AccessPolicy)))]
pub async fn get_access_policy(
    State(state): State<AppState>,
    actor: Actor,
) -> ApiResult<Json<access_policy::AccessPolicy>> {
    Ok(Json(access_policy::get(&state.db, &actor).await?))
}

/// Changes the access policy: `storage_endpoints` (host names, `*.` suffixes, addresses,
/// networks) and/or `api_networks` (addresses, networks); a given list replaces the old one,
/// `[]` removes the restriction. A list of API networks that leaves out the caller's own
/// address is refused (400), so that nobody locks themselves out.
#[utoipa::path(patch, path = "/api/access-policy", tag = "organizations", request_body = access_policy::AccessPolicy, responses((status = 200, body = access_policy::AccessPolicy), (status = 400, body = crate::error::ErrorBody)))]
pub async fn update_access_policy(
    State(state): State<AppState>,
    actor: Actor,
    request: axum::extract::Request,
) -> ApiResult<Json<access_policy::AccessPolicy>> {
    let (parts, body) = request.into_parts();
    let caller = crate::http::extract::client_ip(&parts, &state.config);
    let request = axum::extract::Request::from_parts(parts, body);
    let JsonObject(body) =
        <JsonObject as axum::extract::FromRequest<AppState>>::from_request(request, &state).await?;
    if let Some(key) = body
        .keys()
        .find(|k| !matches!(k.as_str(), "storage_endpoints" | "api_networks"))
    {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            key,
            "unknown field: give storage_endpoints and/or api_networks",
        ));
    }
    let list = |key: &str| -> ApiResult<Option<Vec<String>>> {
        match body.get(key) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(Vec::new())),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        ApiError::field(ErrorCode::ValidationError, key, "give a list of strings")
                    })
                })
                .collect::<ApiResult<Vec<String>>>()
                .map(Some),
            Some(_) => Err(ApiError::field(
                ErrorCode::ValidationError,
                key,
                "give a list of strings",
            )),
        }
    };
    let storage_endpoints = list("storage_endpoints")?;
    let api_networks = list("api_networks")?;
    Ok(Json(
        set_access_policy(&state, &actor, storage_endpoints, api_networks, caller).await?,
    ))
}

/// Changes the access policy ([`access_policy::set`], with its checks and lock-out guard for
/// `caller`) and drops the cached networks of the organization so that the change applies at
/// once. The API's `PATCH` and the organization settings page both change it here.
pub(crate) async fn set_access_policy(
    state: &AppState,
    actor: &Actor,
    storage_endpoints: Option<Vec<String>>,
    api_networks: Option<Vec<String>>,
    caller: Option<std::net::IpAddr>,
) -> ApiResult<access_policy::AccessPolicy> {
    let policy =
        access_policy::set(&state.db, actor, storage_endpoints, api_networks, caller).await?;
    state.auth_memory.forget_networks(actor.org_id);
    Ok(policy)
}

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_organizations))
        .routes(routes!(get_organization, update_organization))
        .routes(routes!(list_memberships, update_membership))
        .routes(routes!(bulk_memberships))
        .routes(routes!(get_membership, delete_membership))
        .routes(routes!(list_invitations, create_invitation))
        .routes(routes!(revoke_invitation))
        .routes(routes!(accept_invitation))
        .routes(routes!(audit_log))
        .routes(routes!(audit_export))
        .routes(routes!(get_session_policy, update_session_policy))
        .routes(routes!(get_access_policy, update_access_policy))
}
