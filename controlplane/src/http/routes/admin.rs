//! The instance admin API (`/api/admin/*`): organizations by slug, and the workspaces and
//! projects the operator declares from custom resources, by key. Authenticated with the
//! instance admin token, never with a user's token. Every call is idempotent.

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    body,
    error::ApiResult,
    http::extract::Path,
    http::{
        AppState,
        extract::{InstanceAdmin, JsonObject},
        no_content,
    },
    storage::admin::{
        self, AdminOrganization, AdminProject, AdminWorkspace, Change, OrganizationSpec,
    },
};

/// Marks a response whose call found everything as declared and wrote nothing
/// (`x-verity-unchanged: true`), so callers such as the operator can tell.
fn mark(change: Change, mut response: Response) -> Response {
    if change == Change::Unchanged {
        response.headers_mut().insert(
            "x-verity-unchanged",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    response
}

/// Creates the organization with this slug, with its owner (`{"title", "owner_email",
/// "owner_token"?, "managed_by"?}`), or updates its title. 201 with the owner's token when
/// created, 200 otherwise.
#[utoipa::path(put, path = "/api/admin/organizations/{slug}", tag = "admin", security(("bearer" = [])), params(("slug" = String, Path)), request_body = Object, responses((status = 200, body = AdminOrganization), (status = 201, body = AdminOrganization)))]
pub async fn put_organization(
    State(state): State<AppState>,
    InstanceAdmin(meta): InstanceAdmin,
    Path(slug): Path<String>,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let spec = OrganizationSpec {
        title: body::opt_string(&body, "title")?.unwrap_or_else(|| slug.clone()),
        owner_email: body::opt_string(&body, "owner_email")?.unwrap_or_default(),
        owner_token: body::opt_string(&body, "owner_token")?,
        managed_by: body::opt_string(&body, "managed_by")?,
    };
    let (org, change) = admin::put_organization(&state.db, &meta, &slug, &spec).await?;
    let status = if change == Change::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(mark(change, (status, Json(org)).into_response()))
}

/// The organization with this slug.
#[utoipa::path(get, path = "/api/admin/organizations/{slug}", tag = "admin", security(("bearer" = [])), params(("slug" = String, Path)), responses((status = 200, body = AdminOrganization), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_organization(
    State(state): State<AppState>,
    _admin: InstanceAdmin,
    Path(slug): Path<String>,
) -> ApiResult<Json<AdminOrganization>> {
    Ok(Json(admin::get_organization(&state.db, &slug).await?))
}

/// Creates or updates (and un-archives) a workspace (`{"title", "description"?,
/// "managed_by"?}`).
#[utoipa::path(put, path = "/api/admin/organizations/{slug}/workspaces/{key}", tag = "admin", security(("bearer" = [])), params(("slug" = String, Path), ("key" = String, Path)), request_body = Object, responses((status = 200, body = AdminWorkspace)))]
pub async fn put_workspace(
    State(state): State<AppState>,
    InstanceAdmin(meta): InstanceAdmin,
    Path((slug, key)): Path<(String, String)>,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let title = body::opt_string(&body, "title")?.unwrap_or_else(|| key.clone());
    let description = body::opt_string(&body, "description")?.unwrap_or_default();
    let managed_by = body::opt_string(&body, "managed_by")?;
    let (ws, change) = admin::put_workspace(
        &state.db,
        &meta,
        &slug,
        &key,
        &title,
        &description,
        managed_by.as_deref(),
    )
    .await?;
    Ok(mark(change, Json(ws).into_response()))
}

/// Archives a workspace (idempotent; its projects stay).
#[utoipa::path(delete, path = "/api/admin/organizations/{slug}/workspaces/{key}", tag = "admin", security(("bearer" = [])), params(("slug" = String, Path), ("key" = String, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn archive_workspace(
    State(state): State<AppState>,
    InstanceAdmin(meta): InstanceAdmin,
    Path((slug, key)): Path<(String, String)>,
) -> ApiResult<Response> {
    let change = admin::archive_workspace(&state.db, &meta, &slug, &key).await?;
    Ok(mark(change, no_content()))
}

/// Creates or updates (and un-archives) a project: `{"workspace": key, "title",
/// "label_config"?, "description"?, "expert_instruction"?, "settings"?: {…}, "managed_by"?}`.
/// Every field given becomes owned by Git (the regular API answers 409 `managed_by_git`).
#[utoipa::path(put, path = "/api/admin/organizations/{slug}/projects/{key}", tag = "admin", security(("bearer" = [])), params(("slug" = String, Path), ("key" = String, Path)), request_body = Object, responses((status = 200, body = AdminProject), (status = 400, body = crate::error::ErrorBody)))]
pub async fn put_project(
    State(state): State<AppState>,
    InstanceAdmin(meta): InstanceAdmin,
    Path((slug, key)): Path<(String, String)>,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let (project, change) =
        admin::put_project(&state.db, &state.sealer, &meta, &slug, &key, &body).await?;
    Ok(mark(change, Json(project).into_response()))
}

/// A project with fresh progress counters.
#[utoipa::path(get, path = "/api/admin/organizations/{slug}/projects/{key}", tag = "admin", security(("bearer" = [])), params(("slug" = String, Path), ("key" = String, Path)), responses((status = 200, body = AdminProject), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_project(
    State(state): State<AppState>,
    _admin: InstanceAdmin,
    Path((slug, key)): Path<(String, String)>,
) -> ApiResult<Json<AdminProject>> {
    Ok(Json(admin::get_project(&state.db, &slug, &key).await?))
}

/// Archives a project (idempotent; its data stays).
#[utoipa::path(delete, path = "/api/admin/organizations/{slug}/projects/{key}", tag = "admin", security(("bearer" = [])), params(("slug" = String, Path), ("key" = String, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn archive_project(
    State(state): State<AppState>,
    InstanceAdmin(meta): InstanceAdmin,
    Path((slug, key)): Path<(String, String)>,
) -> ApiResult<Response> {
    let change = admin::archive_project(&state.db, &meta, &slug, &key).await?;
    Ok(mark(change, no_content()))
}

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_organization, get_organization))
        .routes(routes!(put_workspace, archive_workspace))
        .routes(routes!(put_project, get_project, archive_project))
}
