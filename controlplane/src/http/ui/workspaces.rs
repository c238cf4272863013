//! The workspace pages: `/workspaces` (the workspaces the user can see, and a create form for
//! those who may create one) and `/workspaces/{id}` (a workspace's projects and members; those
//! who manage it add and remove members and move projects in and out).
//!
//! Reads and changes go through the storage functions of `/api/workspaces` and its
//! memberships and projects, which check `workspace.create`, `workspace.view` and
//! `workspace.manage` (and `project.change` for moving a project) themselves; the pages only
//! hide the controls a role could not use.

use axum::{
    extract::{Request, State},
    http::{StatusCode, request::Parts},
    response::Response,
};
use minijinja::context;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    PageUser, error_page,
    pages::{js, read_checked_form, signed_in_form},
    project_members::user_field,
    redirect, render, user_context,
};
use crate::{
    authz::{Permission, Role},
    error::{ApiError, ErrorCode},
    http::AppState,
    storage::{
        access,
        orgs::{self, MemberFilter},
        projects, workspaces,
    },
};

/// The most organization members (and projects) the add forms offer.
const CANDIDATES: i64 = 1000;

/// Renders the workspace list; `form` is a create form sent back with its error.
async fn list_view(
    state: &AppState,
    user: &PageUser,
    parts: &Parts,
    status: StatusCode,
    form: Option<(&CreateWorkspaceForm, &str)>,
) -> Response {
    let list = match workspaces::list(&state.db, &user.actor, None).await {
        Ok(l) => l,
        Err(e) => return error_page(Some(user), &e),
    };
    let (values, error) = match form {
        Some((f, e)) => (
            json!({"title": f.title, "description": f.description}),
            Some(e.to_string()),
        ),
        None => (json!({}), None),
    };
    let notice = (status == StatusCode::OK
        && super::done_param(parts).as_deref() == Some("deleted"))
    .then_some("The workspace is deleted.");
    render(
        status,
        "workspaces.html",
        context! {
            user => user_context(user),
            notice => notice,
            workspaces => js(&list),
            can_create => user.actor.can(Permission::WorkspaceCreate),
            values => js(&values),
            error => error,
        },
    )
}

/// `GET /workspaces`: all workspaces for owners and admins, one's own for everyone else (as
/// the API's list).
pub(super) async fn workspaces_page(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let user = match super::page_user(&state, &parts).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    list_view(&state, &user, &parts, StatusCode::OK, None).await
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct CreateWorkspaceForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
}

/// `POST /workspaces`: creates a workspace (the creator becomes its first member).
pub(super) async fn create_workspace(State(state): State<AppState>, request: Request) -> Response {
    let (user, parts, form) = match signed_in_form::<CreateWorkspaceForm>(&state, request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut body = Map::new();
    body.insert("title".into(), Value::String(form.title.trim().to_string()));
    body.insert(
        "description".into(),
        Value::String(form.description.trim().to_string()),
    );
    match workspaces::create(&state.db, &user.actor, &body).await {
        Ok(created) => redirect(&format!("/workspaces/{}", created.id)),
        Err(e) if e.code.status().is_client_error() => {
            list_view(
                &state,
                &user,
                &parts,
                e.code.status(),
                Some((&form, &e.detail)),
            )
            .await
        }
        Err(e) => error_page(Some(&user), &e),
    }
}

/// The signed-in user of a `/workspaces/{id}` page and the id of its path; a path whose id is
/// not a number answers the not-found page.
async fn workspace_page_user(state: &AppState, parts: &Parts) -> Result<(PageUser, i64), Response> {
    let user = super::page_user(state, parts).await?;
    match parts.uri.path().split('/').nth(2).map(str::parse::<i64>) {
        Some(Ok(id)) => Ok((user, id)),
        _ => Err(error_page(Some(&user), &ApiError::not_found("workspace"))),
    }
}

/// Renders workspace `id`.
async fn workspace_view(
    state: &AppState,
    user: &PageUser,
    id: i64,
    parts: &Parts,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let db = &state.db;
    let actor = &user.actor;
    let role = match access::workspace(db, actor, id, Permission::WorkspaceView).await {
        Ok(a) => a.role,
        Err(e) => return error_page(Some(user), &e),
    };
    let can_manage = role >= Permission::WorkspaceManage.minimum_role();
    let workspace = match workspaces::get(db, actor, id).await {
        Ok(w) => w,
        Err(e) => return error_page(Some(user), &e),
    };
    let members = match workspaces::members(db, actor, id).await {
        Ok(m) => m,
        Err(e) => return error_page(Some(user), &e),
    };
    let in_projects = match workspaces::projects(db, actor, id).await {
        Ok(p) => p,
        Err(e) => return error_page(Some(user), &e),
    };
    let member_rows: Vec<Value> = members
        .iter()
        .map(|m| {
            let name = format!("{} {}", m.user.first_name, m.user.last_name);
            json!({
                "user_id": m.user.id,
                "email": m.user.email,
                "name": name.trim(),
                "role": m.user.role.as_deref().and_then(Role::parse).map(Role::as_str),
                "is_me": m.user.id == actor.user_id,
            })
        })
        .collect();
    let project_rows: Vec<Value> = in_projects
        .iter()
        .map(|p| json!({"id": p.id, "title": p.title, "tasks": p.task_number}))
        .collect();
    let (candidates, movable) = if can_manage {
        let filter = MemberFilter {
            active: Some(true),
            ..MemberFilter::default()
        };
        let people =
            match orgs::list_memberships(db, actor, actor.org_id, &filter, 0, CANDIDATES).await {
                Ok((_, people)) => people,
                Err(e) => return error_page(Some(user), &e),
            };
        let candidates: Vec<Value> = people
            .into_iter()
            .filter(|p| !members.iter().any(|m| m.user.id == p.user_id))
            .map(|p| json!({"user_id": p.user_id, "email": p.user.email, "role": p.role}))
            .collect();
        let visible = match projects::list(
            db,
            actor,
            &projects::ProjectFilter::default(),
            0,
            CANDIDATES,
        )
        .await
        {
            Ok((_, list)) => list,
            Err(e) => return error_page(Some(user), &e),
        };
        let movable: Vec<Value> = visible
            .iter()
            .filter(|p| p.workspace != Some(id))
            .map(|p| json!({"id": p.id, "title": p.title}))
            .collect();
        (candidates, movable)
    } else {
        (Vec::new(), Vec::new())
    };
    let notice = match super::done_param(parts).as_deref() {
        Some("added") => Some("The member is added to the workspace."),
        Some("removed") => Some("The member is removed from the workspace."),
        Some("project_added") => Some("The project is moved into the workspace."),
        Some("project_removed") => Some("The project is taken out of the workspace."),
        Some("updated") => Some("The workspace is saved."),
        _ => None,
    };
    render(
        status,
        "workspace.html",
        context! {
            user => user_context(user),
            workspace => js(&workspace),
            members => js(&member_rows),
            projects => js(&project_rows),
            candidates => js(&candidates),
            movable => js(&movable),
            can_manage => can_manage,
            notice => notice,
            error => error,
        },
    )
}

/// `GET /workspaces/{id}`: for those who may see the workspace (the API's refusal otherwise).
pub(super) async fn workspace_page(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let (user, id) = match workspace_page_user(&state, &parts).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    workspace_view(&state, &user, id, &parts, StatusCode::OK, None).await
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct WorkspaceForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    project: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    /// The "archived" checkbox (absent when unticked).
    #[serde(default)]
    archived: Option<String>,
}

/// `POST /workspaces/{id}`: `action` is `add_member`, `remove_member`, `add_project`,
/// `remove_project`, `update` (title, description, archived: `PATCH /api/workspaces/{id}`) or
/// `delete` (an empty workspace: `DELETE /api/workspaces/{id}`).
pub(super) async fn workspace_post(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (user, id) = match workspace_page_user(&state, &parts).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (parts, form) = match read_checked_form::<WorkspaceForm>(&state, &user, parts, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let db = &state.db;
    let actor = &user.actor;
    let project_field = || {
        form.project
            .trim()
            .parse::<i64>()
            .map_err(|_| ApiError::field(ErrorCode::ValidationError, "project", "choose a project"))
    };
    let result: Result<&str, ApiError> = async {
        match form.action.as_str() {
            "add_member" | "remove_member" => {
                let member = user_field(&form.user_id)?;
                let add = form.action == "add_member";
                workspaces::set_members(db, actor, id, &[member], add).await?;
                Ok(if add { "added" } else { "removed" })
            }
            "add_project" | "remove_project" => {
                let project = project_field()?;
                let add = form.action == "add_project";
                workspaces::set_projects(db, actor, id, &[project], add).await?;
                Ok(if add {
                    "project_added"
                } else {
                    "project_removed"
                })
            }
            "update" => {
                let mut body = Map::new();
                body.insert("title".into(), Value::String(form.title.trim().to_string()));
                body.insert(
                    "description".into(),
                    Value::String(form.description.trim().to_string()),
                );
                body.insert("is_archived".into(), Value::Bool(form.archived.is_some()));
                workspaces::update(db, actor, id, &body).await?;
                Ok("updated")
            }
            "delete" => {
                workspaces::delete(db, actor, id).await?;
                Ok("deleted")
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
        Ok("deleted") => redirect("/workspaces?done=deleted"),
        Ok(done) => redirect(&format!("/workspaces/{id}?done={done}")),
        Err(e) if e.code.status().is_client_error() => {
            workspace_view(
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

super::pages::csrf_forms!(CreateWorkspaceForm, WorkspaceForm);
