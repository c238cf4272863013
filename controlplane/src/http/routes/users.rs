//! Users, the current user, API tokens and organizations.

use axum::{Json, extract::State, http::StatusCode, response::Response};
use serde::Serialize;
use serde_json::Value;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth,
    authz::{Actor, Role},
    error::{ApiError, ApiResult, ErrorCode},
    http::extract::Path,
    http::{
        AppState,
        extract::{JsonObject, request_meta},
        no_content,
    },
    storage::{
        audit, now_micros,
        users::{self, NewUser, PatView, UserChanges, UserView},
    },
};

/// The caller.
#[utoipa::path(get, path = "/api/current-user/whoami", tag = "users", responses((status = 200, body = UserView), (status = 401, body = crate::error::ErrorBody)))]
pub async fn whoami(State(state): State<AppState>, actor: Actor) -> ApiResult<Json<UserView>> {
    Ok(Json(
        users::get_user(&state.db, &actor, actor.user_id).await?,
    ))
}

/// The caller (Label Studio Enterprise path).
#[utoipa::path(get, path = "/api/current-user", tag = "users", responses((status = 200, body = UserView)))]
pub async fn current_user(
    State(state): State<AppState>,
    actor: Actor,
) -> ApiResult<Json<UserView>> {
    Ok(Json(
        users::get_user(&state.db, &actor, actor.user_id).await?,
    ))
}

/// The profile changes of a `PATCH` body (also the account page's form), validated.
pub(crate) fn changes_from(body: &serde_json::Map<String, Value>) -> ApiResult<UserChanges> {
    let text = |key: &str| -> ApiResult<Option<String>> {
        match body.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.chars().count() <= 150 => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::field(
                ErrorCode::ValidationError,
                key,
                "must be a string of at most 150 characters",
            )),
        }
    };
    let is_active = match body.get("is_active") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "is_active",
                "must be true or false",
            ));
        }
    };
    Ok(UserChanges {
        first_name: text("first_name")?,
        last_name: text("last_name")?,
        username: text("username")?,
        is_active,
    })
}

/// Updates the caller's profile (`first_name`, `last_name`, `username`) and/or switches their
/// active organization (`active_organization`: the id of an organization they are an active
/// member of; their sessions and tokens act in it from the next request on).
#[utoipa::path(patch, path = "/api/current-user", tag = "users", request_body = Object, responses((status = 200, body = UserView), (status = 404, body = crate::error::ErrorBody, description = "Not an active member of that organization")))]
pub async fn update_current_user(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<UserView>> {
    let mut changes = changes_from(&body)?;
    changes.is_active = None;
    let switch_to = match body.get("active_organization") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| {
            ApiError::field(
                ErrorCode::ValidationError,
                "active_organization",
                "must be the id of one of your organizations",
            )
        })?),
    };
    if let Some(org) = switch_to {
        users::set_active_organization(&state.db, &actor, org).await?;
    }
    Ok(Json(
        users::update_user(&state.db, &actor, actor.user_id, &changes).await?,
    ))
}

/// Legacy tokens are stored hashed, so they cannot be shown again.
#[utoipa::path(get, path = "/api/current-user/token", tag = "tokens", responses((status = 400, body = crate::error::ErrorBody)))]
pub async fn get_token(_actor: Actor) -> ApiResult<Json<Value>> {
    Err(ApiError::bad_request(
        ErrorCode::ValidationError,
        "API tokens are stored hashed and cannot be shown again; POST /api/current-user/reset-token issues a new one",
    ))
}

/// `{"token": "..."}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    /// The token.
    pub token: String,
}

/// Replaces the caller's legacy token.
#[utoipa::path(post, path = "/api/current-user/reset-token", tag = "tokens", responses((status = 201, body = TokenView)))]
pub async fn reset_token(
    State(state): State<AppState>,
    actor: Actor,
) -> ApiResult<(StatusCode, Json<TokenView>)> {
    let token = users::reset_legacy_token(&state.db, &actor).await?;
    Ok((StatusCode::CREATED, Json(TokenView { token })))
}

/// The caller's personal access tokens (signature stripped).
#[utoipa::path(get, path = "/api/token", tag = "tokens", responses((status = 200, body = Vec<PatView>)))]
pub async fn list_tokens(
    State(state): State<AppState>,
    actor: Actor,
) -> ApiResult<Json<Vec<PatView>>> {
    Ok(Json(users::list_pats(&state.db, &actor).await?))
}

/// Creates a personal access token (a JWT refresh token).
#[utoipa::path(post, path = "/api/token", tag = "tokens", responses((status = 201, body = TokenView)))]
pub async fn create_token(
    State(state): State<AppState>,
    actor: Actor,
) -> ApiResult<(StatusCode, Json<TokenView>)> {
    let token = users::create_pat(
        &state.db,
        &actor,
        &state.jwt_key,
        state.config.pat_ttl_days * 86_400,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(TokenView { token })))
}

fn refresh_field(body: &serde_json::Map<String, Value>) -> ApiResult<String> {
    match body.get("refresh") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(ApiError::field(
            ErrorCode::ValidationError,
            "refresh",
            "this field is required",
        )),
    }
}

async fn verify_refresh(state: &AppState, token: &str) -> ApiResult<auth::Claims> {
    let claims = auth::verify_jwt(&state.jwt_key, token, "refresh", now_micros() / 1_000_000)
        .map_err(|e| ApiError::unauthenticated(format!("Token is invalid or expired: {e}")))?;
    if !users::pat_is_active(&state.db, &claims.jti, claims.user_id).await? {
        return Err(ApiError::unauthenticated("Token is blacklisted"));
    }
    Ok(claims)
}

/// `{"access": "..."}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccessView {
    /// A short-lived access token for `Authorization: Bearer`.
    pub access: String,
}

/// Exchanges a personal access token for a short-lived access token.
#[utoipa::path(post, path = "/api/token/refresh", tag = "tokens", security(()), request_body = Object, responses((status = 200, body = AccessView), (status = 401, body = crate::error::ErrorBody)))]
pub async fn refresh_token(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<AccessView>> {
    let claims = verify_refresh(&state, &refresh_field(&body)?).await?;
    let Some(mut actor) = users::actor_for_user(&state.db, claims.user_id).await? else {
        return Err(ApiError::unauthenticated("the user is deactivated"));
    };
    actor.meta = request_meta(&parts, state.config.trust_forwarded_for);
    let now = now_micros() / 1_000_000;
    let access = auth::Claims {
        token_type: "access".into(),
        iat: now,
        exp: now + auth::ACCESS_TOKEN_TTL_SECS,
        jti: uuid::Uuid::new_v4().simple().to_string(),
        user_id: claims.user_id,
        pat: Some(claims.jti.clone()),
    };
    // Exchanging a personal access token is a sign-in.
    audit::record(
        &state.db,
        audit::Prepared::new(
            &actor,
            "auth.refresh",
            "token",
            &claims.jti,
            serde_json::json!({"access_expires_in": auth::ACCESS_TOKEN_TTL_SECS}),
        ),
    )
    .await?;
    Ok(Json(AccessView {
        access: auth::sign_jwt(&state.jwt_key, &access),
    }))
}

/// Revokes a personal access token.
#[utoipa::path(post, path = "/api/token/blacklist", tag = "tokens", request_body = Object, responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn blacklist_token(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let token = refresh_field(&body)?;
    let claims = auth::verify_jwt(&state.jwt_key, &token, "refresh", 0)
        .map_err(|e| ApiError::field(ErrorCode::ValidationError, "refresh", e.to_string()))?;
    if claims.user_id != actor.user_id || !users::revoke_pat(&state.db, &actor, &claims.jti).await?
    {
        return Err(ApiError::not_found("active token"));
    }
    Ok(no_content())
}

/// `{"refresh": "..."}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RefreshView {
    /// A new personal access token.
    pub refresh: String,
}

/// Replaces a personal access token with a new one.
#[utoipa::path(post, path = "/api/token/rotate", tag = "tokens", request_body = Object, responses((status = 200, body = RefreshView)))]
pub async fn rotate_token(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<RefreshView>> {
    let claims = verify_refresh(&state, &refresh_field(&body)?).await?;
    if claims.user_id != actor.user_id {
        return Err(ApiError::not_found("active token"));
    }
    users::revoke_pat(&state.db, &actor, &claims.jti).await?;
    let refresh = users::create_pat(
        &state.db,
        &actor,
        &state.jwt_key,
        state.config.pat_ttl_days * 86_400,
    )
    .await?;
    Ok(Json(RefreshView { refresh }))
}

/// Members of the caller's organization.
#[utoipa::path(get, path = "/api/users", tag = "users", responses((status = 200, body = Vec<UserView>)))]
pub async fn list_users(
    State(state): State<AppState>,
    actor: Actor,
) -> ApiResult<Json<Vec<UserView>>> {
    Ok(Json(users::list_users(&state.db, &actor).await?))
}

/// Creates a user in the caller's organization (`role` defaults to annotator).
#[utoipa::path(post, path = "/api/users", tag = "users", request_body = Object, responses((status = 201, body = UserView)))]
pub async fn create_user(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
    let email = text("email").ok_or_else(|| {
        ApiError::field(
            ErrorCode::ValidationError,
            "email",
            "this field is required",
        )
    })?;
    let role = match text("role") {
        None => Role::Annotator,
        Some(r) => Role::parse(&r).ok_or_else(|| {
            ApiError::field(
                ErrorCode::ValidationError,
                "role",
                "must be owner, admin, manager, reviewer or annotator",
            )
        })?,
    };
    let new = NewUser {
        email,
        password: text("password"),
        role,
        token: None,
        first_name: text("first_name").unwrap_or_default(),
        last_name: text("last_name").unwrap_or_default(),
        username: text("username"),
    };
    let (user, _) = users::create_user(&state.db, &actor, &new).await?;
    Ok((
        StatusCode::CREATED,
        Json(users::get_user(&state.db, &actor, user.id).await?),
    ))
}

/// One member of the caller's organization.
#[utoipa::path(get, path = "/api/users/{id}", tag = "users", params(("id" = i64, Path)), responses((status = 200, body = UserView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_user(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<UserView>> {
    Ok(Json(users::get_user(&state.db, &actor, id).await?))
}

/// Updates a member's profile.
#[utoipa::path(patch, path = "/api/users/{id}", tag = "users", params(("id" = i64, Path)), request_body = Object, responses((status = 200, body = UserView)))]
pub async fn update_user(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<UserView>> {
    Ok(Json(
        users::update_user(&state.db, &actor, id, &changes_from(&body)?).await?,
    ))
}

/// Deactivates a member (their annotations keep their author).
#[utoipa::path(delete, path = "/api/users/{id}", tag = "users", params(("id" = i64, Path)), responses((status = 204)))]
pub async fn delete_user(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    if id == actor.user_id {
        return Err(ApiError::bad_request(
            ErrorCode::ValidationError,
            "you cannot deactivate yourself",
        ));
    }
    users::update_user(
        &state.db,
        &actor,
        id,
        &UserChanges {
            is_active: Some(false),
            ..Default::default()
        },
    )
    .await?;
    Ok(no_content())
}

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(whoami))
        .routes(routes!(current_user, update_current_user))
        .routes(routes!(get_token))
        .routes(routes!(reset_token))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(refresh_token))
        .routes(routes!(blacklist_token))
        .routes(routes!(rotate_token))
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user, delete_user))
}
