//! The organization's people page (`/organization`, Label Studio's path): members with their
//! role and last activity, role changes, deactivation and reactivation, and invitation links.
//!
//! Reads and changes go through the storage functions of `/api/organizations/{id}/memberships`
//! and `/api/invitations`, which check `organization.view`, `organization.manage` and
//! `invitation.manage` and the escalation rules themselves; the page only hides the controls a
//! role could not use.

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
    pages::{js, page_number, serde_urlencoded_from, signed_in_form},
    redirect, render, user_context,
};
use crate::{
    authz::{Permission, Role},
    error::{ApiError, ErrorCode},
    http::AppState,
    storage::orgs::{self, InvitationView, MemberFilter},
};

/// Members per page.
const MEMBERS_PER_PAGE: i64 = 50;

/// How long an invitation link made on this page lasts (the API's default).
const INVITATION_HOURS: i64 = 72;

#[derive(Debug, Deserialize, Default)]
pub(super) struct MembersQuery {
    search: Option<String>,
    done: Option<String>,
}

/// What the page says after a change.
#[derive(Default)]
struct Outcome {
    notice: Option<&'static str>,
    error: Option<String>,
    invitation: Option<InvitationView>,
}

/// Renders the people page.
async fn members_view(
    state: &AppState,
    user: &PageUser,
    parts: &Parts,
    status: StatusCode,
    outcome: Outcome,
) -> Response {
    let actor = &user.actor;
    let query: MembersQuery = parts
        .uri
        .query()
        .and_then(serde_urlencoded_from)
        .unwrap_or_default();
    let search = query
        .search
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let page = page_number(parts);
    let org = match orgs::get(&state.db, actor, actor.org_id).await {
        Ok(o) => o,
        Err(e) => return error_page(Some(user), &e),
    };
    let filter = MemberFilter {
        search: search.clone(),
        ..MemberFilter::default()
    };
    let offset = (page - 1).saturating_mul(MEMBERS_PER_PAGE);
    let (count, members) = match orgs::list_memberships(
        &state.db,
        actor,
        actor.org_id,
        &filter,
        offset,
        MEMBERS_PER_PAGE,
    )
    .await
    {
        Ok(v) => v,
        Err(e) => return error_page(Some(user), &e),
    };
    let can_manage = actor.can(Permission::OrgManage);
    let can_invite = actor.can(Permission::InviteManage);
    // The roles this user may grant (authz::check_grant refuses the rest anyway).
    let grantable: Vec<&str> = Role::ALL
        .iter()
        .filter(|r| **r <= actor.role)
        .map(|r| r.as_str())
        .collect();
    let rows: Vec<Value> = members
        .iter()
        .map(|m| {
            let name = format!("{} {}", m.user.first_name, m.user.last_name);
            json!({
                "user_id": m.user_id,
                "email": m.user.email,
                "name": name.trim(),
                "role": m.role,
                "is_active": m.is_active,
                "last_activity": m.last_activity,
                "annotations": m.annotations_count,
                "projects": m.projects_count,
                "is_me": m.user_id == actor.user_id,
                // Owners are changed by owners only.
                "can_change": can_manage && (m.role != Role::Owner.as_str() || actor.role == Role::Owner),
            })
        })
        .collect();
    let invitations = if can_invite {
        match orgs::list_invitations(&state.db, actor).await {
            Ok(list) => list.into_iter().filter(|i| i.status == "pending").collect(),
            Err(e) => return error_page(Some(user), &e),
        }
    } else {
        Vec::new()
    };
    let pages = ((count + MEMBERS_PER_PAGE - 1) / MEMBERS_PER_PAGE).max(1);
    let notice = outcome.notice.or(match query.done.as_deref() {
        Some("role") => Some("The role is changed."),
        Some("deactivated") => Some("The member is deactivated: they can no longer sign in here."),
        Some("reactivated") => Some("The member is active again."),
        Some("revoked") => Some("The invitation link is revoked."),
        _ => None,
    });
    render(
        status,
        "members.html",
        context! {
            user => user_context(user),
            org => js(&org),
            members => js(&rows),
            count => count,
            page => page,
            pages => pages,
            search_q => search.as_deref().map(super::encode),
            search => search,
            can_manage => can_manage,
            can_invite => can_invite,
            roles => grantable,
            invitations => js(&invitations),
            invitation => outcome.invitation.map(|i| js(&i)),
            notice => notice,
            error => outcome.error,
        },
    )
}

/// `GET /organization`: every member sees the list (`organization.view`); admins and owners
/// also get the controls.
pub(super) async fn members_page(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let user = match super::page_user(&state, &parts).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    members_view(&state, &user, &parts, StatusCode::OK, Outcome::default()).await
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct MembersForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    invitation: String,
}

fn id_field(value: &str, field: &str) -> Result<i64, ApiError> {
    value
        .trim()
        .parse::<i64>()
        .map_err(|_| ApiError::field(ErrorCode::ValidationError, field, "must be an id"))
}

fn role_field(value: &str) -> Result<Role, ApiError> {
    Role::parse(value).ok_or_else(|| {
        ApiError::field(
            ErrorCode::ValidationError,
            "role",
            format!("{value:?} is not a role"),
        )
    })
}

/// `POST /organization`: `action` is `role`, `deactivate`, `reactivate`, `invite` or
/// `revoke_invitation`.
pub(super) async fn members_post(State(state): State<AppState>, request: Request) -> Response {
    let (user, parts, form) = match signed_in_form::<MembersForm>(&state, request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let db = &state.db;
    let actor = &user.actor;
    let result: Result<Result<&str, InvitationView>, ApiError> = async {
        match form.action.as_str() {
            "role" => {
                let id = id_field(&form.user_id, "user_id")?;
                let role = role_field(&form.role)?;
                orgs::set_member(db, actor, id, Some(role), None).await?;
                Ok(Ok("role"))
            }
            "deactivate" | "reactivate" => {
                let id = id_field(&form.user_id, "user_id")?;
                let active = form.action == "reactivate";
                orgs::set_member(db, actor, id, None, Some(active)).await?;
                Ok(Ok(if active { "reactivated" } else { "deactivated" }))
            }
            "invite" => {
                let role = role_field(&form.role)?;
                let invitation =
                    orgs::create_invitation(db, actor, role, None, INVITATION_HOURS).await?;
                Ok(Err(invitation))
            }
            "revoke_invitation" => {
                let id = id_field(&form.invitation, "invitation")?;
                orgs::revoke_invitation(db, actor, id).await?;
                Ok(Ok("revoked"))
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
        Ok(Ok(done)) => redirect(&format!("/organization?done={done}")),
        Ok(Err(invitation)) => {
            let outcome = Outcome {
                notice: Some(
                    "Send this link to the person you invite; it works once and is not shown again.",
                ),
                invitation: Some(invitation),
                ..Outcome::default()
            };
            members_view(&state, &user, &parts, StatusCode::OK, outcome).await
        }
        Err(e) if e.code.status().is_client_error() => {
            let outcome = Outcome {
                error: Some(e.detail.clone()),
                ..Outcome::default()
            };
            members_view(&state, &user, &parts, e.code.status(), outcome).await
        }
        Err(e) => error_page(Some(&user), &e),
    }
}

super::pages::csrf_forms!(MembersForm);
