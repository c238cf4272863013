//! A project's members page (`/projects/{id}/members`): the members with their project role and
//! whether they are paused; for those who may manage members, adding an organization member,
//! changing a project role, removing a member, and pausing or unpausing one.
//!
//! Reads and changes go through the storage functions of `/api/projects/{id}/members` and
//! `/api/projects/{id}/members/{user_pk}/pauses`, which check `project.view` and
//! `project.members` themselves; the page only hides the controls a role could not use.

use axum::{
    extract::{Request, State},
    http::{StatusCode, request::Parts},
    response::Response,
};
use minijinja::context;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    PageUser, error_page,
    pages::{js, project_form, project_header, project_page_user, project_role},
    redirect, render, user_context,
};
use crate::{
    authz::{Permission, Role},
    error::{ApiError, ErrorCode},
    http::AppState,
    storage::{
        members,
        orgs::{self, MemberFilter},
        projects,
    },
};

/// The most organization members the add form offers.
const CANDIDATES: i64 = 1000;

/// Renders the members page of project `id`.
async fn members_view(
    state: &AppState,
    user: &PageUser,
    id: i64,
    parts: &Parts,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let db = &state.db;
    let actor = &user.actor;
    let role = match project_role(state, user, id, Permission::ProjectView).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let project = match projects::get(db, actor, id).await {
        Ok(p) => p,
        Err(e) => return error_page(Some(user), &e),
    };
    let list = match members::list(db, actor, id).await {
        Ok(l) => l,
        Err(e) => return error_page(Some(user), &e),
    };
    let can_manage = role >= Permission::MemberManage.minimum_role();
    let mut rows: Vec<Value> = Vec::with_capacity(list.len());
    for m in &list {
        // What a paused member is told, for those who may read pauses.
        let pause_reason = if can_manage && m.paused {
            match members::pauses(db, actor, id, m.user.id, false).await {
                Ok(p) => p
                    .into_iter()
                    .map(|p| p.verbose_reason)
                    .filter(|r| !r.is_empty())
                    .collect::<Vec<_>>()
                    .join("; "),
                Err(e) => return error_page(Some(user), &e),
            }
        } else {
            String::new()
        };
        let name = format!("{} {}", m.user.first_name, m.user.last_name);
        let org_role = m
            .user
            .role
            .as_deref()
            .and_then(Role::parse)
            .map(Role::as_str);
        rows.push(json!({
            "user_id": m.user.id,
            "email": m.user.email,
            "name": name.trim(),
            "org_role": org_role,
            "role": m.role,
            "paused": m.paused,
            "pause_reason": pause_reason,
            "is_me": m.user.id == actor.user_id,
        }));
    }
    // The organization's active members who are not in the project yet, for the add form.
    let candidates: Vec<Value> = if can_manage {
        let filter = MemberFilter {
            active: Some(true),
            ..MemberFilter::default()
        };
        match orgs::list_memberships(db, actor, actor.org_id, &filter, 0, CANDIDATES).await {
            Ok((_, people)) => people
                .into_iter()
                .filter(|p| !list.iter().any(|m| m.user.id == p.user_id))
                .map(|p| json!({"user_id": p.user_id, "email": p.user.email, "role": p.role}))
                .collect(),
            Err(e) => return error_page(Some(user), &e),
        }
    } else {
        Vec::new()
    };
    let done = super::done_param(parts);
    let notice = match done.as_deref() {
        Some("added") => Some("The member is added to the project."),
        Some("role") => Some("The project role is changed."),
        Some("removed") => Some("The member is removed from the project."),
        Some("paused") => Some("The member is paused: they get no tasks and cannot submit."),
        Some("unpaused") => Some("The pause is lifted."),
        _ => None,
    };
    render(
        status,
        "project_members.html",
        context! {
            user => user_context(user),
            project => js(&project_header(&project, role)),
            members => js(&rows),
            candidates => js(&candidates),
            can_manage => can_manage,
            notice => notice,
            error => error,
        },
    )
}

/// `GET /projects/{id}/members`: whoever may see the project sees its members (as the API's
/// list); managers (in the project) and up also get the controls.
pub(super) async fn members_page(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let (user, id) = match project_page_user(&state, &parts).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    members_view(&state, &user, id, &parts, StatusCode::OK, None).await
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct ProjectMembersForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    verbose_reason: String,
}

/// The `user_id` field as an id.
pub(super) fn user_field(value: &str) -> Result<i64, ApiError> {
    value
        .trim()
        .parse::<i64>()
        .map_err(|_| ApiError::field(ErrorCode::ValidationError, "user_id", "choose a member"))
}

/// The `role` field: empty follows the organization role, else a project role (as the API's).
fn project_role_field(value: &str) -> Result<Option<Role>, ApiError> {
    match value.trim() {
        "" => Ok(None),
        r => members::parse_project_role(Some(&Value::String(r.to_string()))),
    }
}

/// `POST /projects/{id}/members`: `action` is `add`, `role`, `remove`, `pause` or `unpause`.
pub(super) async fn members_post(State(state): State<AppState>, request: Request) -> Response {
    let (user, id, parts, form) = match project_form::<ProjectMembersForm>(&state, request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let db = &state.db;
    let actor = &user.actor;
    let result: Result<&str, ApiError> = async {
        let member = user_field(&form.user_id)?;
        match form.action.as_str() {
            "add" | "role" => {
                let role = project_role_field(&form.role)?;
                members::add(db, actor, id, &[member], role).await?;
                Ok(if form.action == "add" {
                    "added"
                } else {
                    "role"
                })
            }
            "remove" => {
                members::remove(db, actor, id, &[member]).await?;
                Ok("removed")
            }
            "pause" => {
                members::pause(db, actor, id, member, "MANUAL", form.verbose_reason.trim()).await?;
                Ok("paused")
            }
            "unpause" => {
                let active = members::pauses(db, actor, id, member, false).await?;
                if active.is_empty() {
                    return Err(ApiError::field(
                        ErrorCode::ValidationError,
                        "user_id",
                        "this member is not paused",
                    ));
                }
                for p in active {
                    members::unpause(db, actor, id, member, p.id).await?;
                }
                Ok("unpaused")
            }
            other => Err(ApiError::field(
                ErrorCode::ValidationError,
                "action",
                format!("{other:?} is not something this page does"),
            )),
        }
    }
    .await;
    match result {
        Ok(done) => redirect(&format!("/projects/{id}/members?done={done}")),
        Err(e) if e.code.status().is_client_error() => {
            members_view(
                &state,
                &user,
                id,
                &parts,
                e.code.status(),
                Some(e.detail.clone()),
            )
            .await
        }
        Err(e) => error_page(Some(&user), &e),
    }
}

super::pages::csrf_forms!(ProjectMembersForm);
