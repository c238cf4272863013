//! The account page (`/user/account`): the signed-in user's name, legacy API token and
//! personal access tokens.
//!
//! Every change goes through the storage function the API's own handler calls
//! (`PATCH /api/current-user`, `POST /api/current-user/reset-token`, `POST /api/token`,
//! `POST /api/token/blacklist`), so the page can never do more than the API. A new token is
//! shown once, in the answer to the form that created it, and never put into an address.

use axum::{
    extract::{Request, State},
    http::StatusCode,
    response::Response,
};
use minijinja::context;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    PageUser, error_page,
    pages::{js, serde_urlencoded_from, signed_in_form},
    redirect, render, user_context,
};
use crate::{
    error::{ApiError, ErrorCode},
    http::{AppState, routes::users::changes_from},
    storage::users,
};

/// What the page says above its sections after a change.
struct Outcome<'a> {
    status: StatusCode,
    notice: Option<&'a str>,
    error: Option<String>,
    /// A token just issued: what it is and its value, shown this once.
    new_token: Option<(&'a str, String)>,
}

impl Outcome<'_> {
    fn ok() -> Self {
        Self {
            status: StatusCode::OK,
            notice: None,
            error: None,
            new_token: None,
        }
    }
}

/// Renders the account page for `user`.
async fn account_view(state: &AppState, user: &PageUser, outcome: Outcome<'_>) -> Response {
    let me = match users::get_user(&state.db, &user.actor, user.actor.user_id).await {
        Ok(me) => me,
        Err(e) => return error_page(Some(user), &e),
    };
    let legacy = match users::legacy_token_preview(&state.db, &user.actor).await {
        Ok(v) => v,
        Err(e) => return error_page(Some(user), &e),
    };
    let pats = match users::list_pats(&state.db, &user.actor).await {
        Ok(v) => v,
        Err(e) => return error_page(Some(user), &e),
    };
    let tokens: Vec<Value> = pats
        .iter()
        .map(|p| json!({"jti": p.jti, "created_at": p.created_at, "expires_at": p.expires_at}))
        .collect();
    render(
        outcome.status,
        "account.html",
        context! {
            user => user_context(user),
            me => js(&me),
            legacy => legacy.map(|(preview, created)| json!({"preview": preview, "created_at": created})).map(|v| js(&v)),
            tokens => js(&tokens),
            notice => outcome.notice,
            error => outcome.error,
            new_token => outcome.new_token.map(|(kind, value)| json!({"kind": kind, "value": value})).map(|v| js(&v)),
            pat_ttl_days => state.config.pat_ttl_days,
        },
    )
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct AccountQuery {
    done: Option<String>,
}

/// `GET /user/account`.
pub(super) async fn account_page(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let user = match super::page_user(&state, &parts).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let done: AccountQuery = parts
        .uri
        .query()
        .and_then(serde_urlencoded_from)
        .unwrap_or_default();
    let notice = match done.done.as_deref() {
        Some("profile") => Some("Your name is saved."),
        Some("revoked") => Some("The token is revoked; it no longer works."),
        _ => None,
    };
    let outcome = Outcome {
        notice,
        ..Outcome::ok()
    };
    account_view(&state, &user, outcome).await
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct AccountForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    jti: String,
}

/// `POST /user/account`: `action` is `profile`, `reset_token`, `create_token` or `revoke_token`.
pub(super) async fn account_post(State(state): State<AppState>, request: Request) -> Response {
    let (user, _, form) = match signed_in_form::<AccountForm>(&state, request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let db = &state.db;
    let actor = &user.actor;
    let result = match form.action.as_str() {
        "profile" => {
            let mut body = Map::new();
            body.insert(
                "first_name".into(),
                Value::String(form.first_name.trim().into()),
            );
            body.insert(
                "last_name".into(),
                Value::String(form.last_name.trim().into()),
            );
            match changes_from(&body) {
                Ok(changes) => users::update_user(db, actor, actor.user_id, &changes)
                    .await
                    .map(|_| None),
                Err(e) => Err(e),
            }
        }
        "reset_token" => users::reset_legacy_token(db, actor)
            .await
            .map(|t| Some(("API token", t))),
        "create_token" => users::create_pat(
            db,
            actor,
            &state.jwt_key,
            state.config.pat_ttl_days * 86_400,
        )
        .await
        .map(|t| Some(("Personal access token", t))),
        "revoke_token" => match users::revoke_pat(db, actor, form.jti.trim()).await {
            Ok(true) => Ok(None),
            Ok(false) => Err(ApiError::not_found("active token")),
            Err(e) => Err(e),
        },
        other => Err(ApiError::field(
            ErrorCode::ValidationError,
            "action",
            format!("{other:?} is not something this page does"),
        )),
    };
    match result {
        Ok(Some(new_token)) => {
            let outcome = Outcome {
                notice: Some("Copy the token now: it is not shown again."),
                new_token: Some(new_token),
                ..Outcome::ok()
            };
            account_view(&state, &user, outcome).await
        }
        Ok(None) if form.action == "profile" => redirect("/user/account?done=profile"),
        Ok(None) => redirect("/user/account?done=revoked"),
        Err(e) if e.code.status().is_client_error() => {
            let outcome = Outcome {
                status: e.code.status(),
                error: Some(e.detail.clone()),
                ..Outcome::ok()
            };
            account_view(&state, &user, outcome).await
        }
        Err(e) => error_page(Some(&user), &e),
    }
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct SwitchForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    organization: String,
}

/// `POST /user/organization`: the header's organization switcher; the same change as
/// `PATCH /api/current-user {"active_organization": id}`. Goes to the projects, which are now
/// the chosen organization's.
pub(super) async fn switch_organization(
    State(state): State<AppState>,
    request: Request,
) -> Response {
    let (user, _, form) = match signed_in_form::<SwitchForm>(&state, request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Ok(org) = form.organization.trim().parse::<i64>() else {
        return error_page(
            Some(&user),
            &ApiError::field(
                ErrorCode::ValidationError,
                "organization",
                "choose one of your organizations",
            ),
        );
    };
    match users::set_active_organization(&state.db, &user.actor, org).await {
        Ok(()) => redirect("/projects"),
        Err(e) => error_page(Some(&user), &e),
    }
}

super::pages::csrf_forms!(AccountForm, SwitchForm);
