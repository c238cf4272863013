//! The notifications page (`/notifications`, ADR 0051): the signed-in user's notifications of
//! comments, unread first, each with a link to the annotation (and region) in the data manager;
//! marking one or all read. Reads and changes go through the storage functions of
//! `/api/notifications`.

use axum::{
    extract::{Request, State},
    http::StatusCode,
    response::Response,
};
use minijinja::context;
use serde::Deserialize;

use super::{
    error_page,
    pages::{js, page_number, signed_in_form},
    redirect, render, user_context,
};
use crate::{
    error::{ApiError, ErrorCode},
    http::AppState,
    storage::notifications::{self, Mark},
};

/// Notifications per page.
const PAGE_SIZE: i64 = 50;

/// `GET /notifications`.
pub(super) async fn notifications_page(
    State(state): State<AppState>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let user = match super::page_user(&state, &parts).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let page = page_number(&parts);
    let (total, unread) = match notifications::count(&state.db, &user.actor).await {
        Ok(v) => v,
        Err(e) => return error_page(Some(&user), &e),
    };
    let offset = (page - 1).saturating_mul(PAGE_SIZE);
    let list = match notifications::list(&state.db, &user.actor, false, offset, PAGE_SIZE).await {
        Ok(v) => v,
        Err(e) => return error_page(Some(&user), &e),
    };
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    render(
        StatusCode::OK,
        "notifications.html",
        context! {
            user => user_context(&user),
            notifications => js(&list),
            total => total,
            unread => unread,
            page => page,
            pages => pages,
        },
    )
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct NotificationsForm {
    #[serde(default)]
    csrf_token: String,
    /// `read` (with `id`) or `read_all`.
    #[serde(default)]
    action: String,
    #[serde(default)]
    id: String,
}

/// `POST /notifications`: marks one notification, or all, read.
pub(super) async fn notifications_post(
    State(state): State<AppState>,
    request: Request,
) -> Response {
    let (user, _, form) = match signed_in_form::<NotificationsForm>(&state, request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mark = match (form.action.as_str(), form.id.trim().parse::<i64>()) {
        ("read_all", _) => Mark::All,
        ("read", Ok(id)) => Mark::Ids(vec![id]),
        _ => {
            return error_page(
                Some(&user),
                &ApiError::field(
                    ErrorCode::ValidationError,
                    "action",
                    "mark one notification read (with its id) or all of them",
                ),
            );
        }
    };
    match notifications::mark_read(&state.db, &user.actor, &mark).await {
        Ok(_) => redirect("/notifications"),
        Err(e) => error_page(Some(&user), &e),
    }
}

super::pages::csrf_forms!(NotificationsForm);
