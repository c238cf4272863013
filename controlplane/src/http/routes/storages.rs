//! Storages and media: Label Studio's `/api/storages/…` API (local files, S3, GCS, Azure Blob,
//! the type list and the listing of every storage of a project), the resolution of a
//! task's media to a signed link (`/api/tasks/{id}/presign`, `/data/local-files/`), and the
//! in-process storage proxy (`/storage-proxy/{token}`). Authorization is in
//! `storage::storages`; the proxy trusts only the link's signature.

use axum::{
    Json,
    extract::State,
    http::{Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    authz::Actor,
    cloud::{CloudType, Provider},
    error::{ApiError, ApiResult, ErrorCode},
    http::{
        AppState,
        extract::{JsonObject, Path, Query, opt_int},
        no_content,
    },
    links::{Link, unix_now},
    localfiles::{self, Root},
    outbound::TargetPolicy,
    storage::{
        cloudstorages::{self, AzureStorageView, CloudView, GcsStorageView, S3StorageView},
        storages::{self, Direction, LocalStorageRow, LocalStorageView},
    },
};

fn root(state: &AppState) -> ApiResult<Root> {
    Root::from_config(&state.config)
}

/// Query of the storage list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct StorageListParams {
    /// The project whose storages to list (required).
    pub project: Option<String>,
}

/// The local-files storages of a project (plain list, oldest first).
#[utoipa::path(get, path = "/api/storages/localfiles", tag = "storages", params(StorageListParams), responses((status = 200, body = Vec<LocalStorageView>)))]
pub async fn list_local(
    State(state): State<AppState>,
    actor: Actor,
    Query(params): Query<StorageListParams>,
) -> ApiResult<Json<Vec<LocalStorageView>>> {
    let project = opt_int("project", &params.project)?.ok_or_else(|| {
        ApiError::field(
            ErrorCode::InvalidQuery,
            "project",
            "this parameter is required",
        )
    })?;
    Ok(Json(
        storages::list(&state.db, &actor, Direction::Import, project).await?,
    ))
}

/// Connects a directory under the server's local-files root: `{"project", "path", "title"?,
/// "description"?, "regex_filter"?, "use_blob_urls"?}`.
#[utoipa::path(post, path = "/api/storages/localfiles", tag = "storages", request_body = Object, responses((status = 201, body = LocalStorageView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn create_local(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<LocalStorageView>)> {
    Ok((
        StatusCode::CREATED,
        Json(storages::create(&state.db, &actor, Direction::Import, root(&state), &body).await?),
    ))
}

/// Checks a storage body (a new storage, or with `id` a change) without saving it.
#[utoipa::path(post, path = "/api/storages/localfiles/validate", tag = "storages", request_body = Object, responses((status = 200, description = "valid"), (status = 400, body = crate::error::ErrorBody)))]
pub async fn validate_local(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    storages::validate(&state.db, &actor, Direction::Import, root(&state), &body).await?;
    Ok(Json(json!({})))
}

/// One local-files storage.
#[utoipa::path(get, path = "/api/storages/localfiles/{id}", tag = "storages", params(("id" = i64, Path)), responses((status = 200, body = LocalStorageView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_local(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<LocalStorageView>> {
    Ok(Json(
        storages::get(&state.db, &actor, Direction::Import, id).await?,
    ))
}

/// Changes a local-files storage.
#[utoipa::path(patch, path = "/api/storages/localfiles/{id}", tag = "storages", params(("id" = i64, Path)), request_body = Object, responses((status = 200, body = LocalStorageView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn update_local(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<LocalStorageView>> {
    Ok(Json(
        storages::update(
            &state.db,
            &actor,
            Direction::Import,
            root(&state),
            id,
            &body,
        )
        .await?,
    ))
}

/// Disconnects a local-files storage (its tasks stay; their media links stop working).
#[utoipa::path(delete, path = "/api/storages/localfiles/{id}", tag = "storages", params(("id" = i64, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_local(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    storages::delete(&state.db, &actor, Direction::Import, id).await?;
    Ok(no_content())
}

/// Starts a sync as a job (queue `high`): files no earlier sync imported become tasks. The
/// answer is the storage with `status: queued` and the job in `last_sync_job`.
#[utoipa::path(post, path = "/api/storages/localfiles/{id}/sync", tag = "storages", params(("id" = i64, Path)), responses((status = 200, body = LocalStorageView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn sync_local(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<LocalStorageView>> {
    Ok(Json(storages::view(
        &local_sync(&state, &actor, Direction::Import, id).await?,
    )))
}

/// Queues the sync of local-files storage `id` of `direction` (what
/// `POST …/localfiles/{id}/sync` and `POST …/export/localfiles/{id}/sync` do).
async fn local_sync(
    state: &AppState,
    actor: &Actor,
    direction: Direction,
    id: i64,
) -> ApiResult<LocalStorageRow> {
    let job_id = uuid::Uuid::new_v4().to_string();
    let row = storages::queue_sync(&state.db, actor, direction, id, &job_id).await?;
    localfiles::enqueue_sync(&state.jobs, row.organization_id, id, actor.user_id, &job_id).await?;
    Ok(row)
}

/// A storage type of the API's paths: local files (`None`) or a bucket provider; anything
/// else is refused as the field `type`.
fn storage_kind(kind: &str) -> ApiResult<Option<CloudType>> {
    if kind == localfiles::KIND {
        return Ok(None);
    }
    CloudType::from_name(kind).map(Some).ok_or_else(|| {
        ApiError::field(
            ErrorCode::ValidationError,
            "type",
            format!("{kind:?} is not a storage type (localfiles, s3, s3s, gcs, azure, azure_spi)"),
        )
    })
}

/// Starts the sync of the storage of type `kind` (`localfiles`, `s3`, `gcs`, `azure`),
/// `direction` and id `id`, exactly as `POST /api/storages[/export]/{kind}/{id}/sync` does;
/// answers the storage as that endpoint does. For the web UI's import and storage pages.
pub async fn start_sync(
    state: &AppState,
    actor: &Actor,
    direction: Direction,
    kind: &str,
    id: i64,
) -> ApiResult<Value> {
    match storage_kind(kind)? {
        None => {
            let row = local_sync(state, actor, direction, id).await?;
            serde_json::to_value(storages::view(&row)).map_err(ApiError::internal)
        }
        Some(provider) => Ok(queue_cloud_sync(state, actor, provider, direction, id)
            .await?
            .view_value()),
    }
}

/// Connects a storage of type `kind` and `direction` from an API body, as
/// `POST /api/storages[/export]/{kind}` does; answers its view.
pub async fn create_storage(
    state: &AppState,
    actor: &Actor,
    direction: Direction,
    kind: &str,
    body: &serde_json::Map<String, Value>,
) -> ApiResult<Value> {
    match storage_kind(kind)? {
        None => {
            let view = storages::create(&state.db, actor, direction, root(state), body).await?;
            serde_json::to_value(view).map_err(ApiError::internal)
        }
        Some(provider) => Ok(cloud_create_row(state, actor, provider, direction, body)
            .await?
            .view_value()),
    }
}

/// Checks a storage body (with `id`, a change of that storage) without saving it, as
/// `POST /api/storages[/export]/{kind}/validate` does.
pub async fn validate_storage(
    state: &AppState,
    actor: &Actor,
    direction: Direction,
    kind: &str,
    body: &serde_json::Map<String, Value>,
) -> ApiResult<()> {
    match storage_kind(kind)? {
        None => storages::validate(&state.db, actor, direction, root(state), body).await,
        Some(provider) => cloud_check(state, actor, provider, direction, body).await,
    }
}

/// One storage as `GET /api/storages[/export]/{kind}/{id}` shows it.
pub async fn get_storage(
    state: &AppState,
    actor: &Actor,
    direction: Direction,
    kind: &str,
    id: i64,
) -> ApiResult<Value> {
    match storage_kind(kind)? {
        None => serde_json::to_value(storages::get(&state.db, actor, direction, id).await?)
            .map_err(ApiError::internal),
        Some(provider) => Ok(
            cloudstorages::get(&state.db, actor, provider, direction, id)
                .await?
                .view_value(),
        ),
    }
}

/// Changes a storage as `PATCH /api/storages[/export]/{kind}/{id}` does (credentials left out
/// of `body` stay); answers its view.
pub async fn update_storage(
    state: &AppState,
    actor: &Actor,
    direction: Direction,
    kind: &str,
    id: i64,
    body: &serde_json::Map<String, Value>,
) -> ApiResult<Value> {
    match storage_kind(kind)? {
        None => {
            let view = storages::update(&state.db, actor, direction, root(state), id, body).await?;
            serde_json::to_value(view).map_err(ApiError::internal)
        }
        Some(provider) => Ok(
            cloud_update_row(state, actor, provider, direction, id, body)
                .await?
                .view_value(),
        ),
    }
}

/// Disconnects a storage as `DELETE /api/storages[/export]/{kind}/{id}` does.
pub async fn delete_storage(
    state: &AppState,
    actor: &Actor,
    direction: Direction,
    kind: &str,
    id: i64,
) -> ApiResult<()> {
    match storage_kind(kind)? {
        None => storages::delete(&state.db, actor, direction, id).await,
        Some(provider) => cloudstorages::delete(&state.db, actor, provider, direction, id).await,
    }
}

/// The local-files export storages of a project (plain list, oldest first).
#[utoipa::path(get, path = "/api/storages/export/localfiles", tag = "storages", params(StorageListParams), responses((status = 200, body = Vec<LocalStorageView>)))]
pub async fn list_local_export(
    State(state): State<AppState>,
    actor: Actor,
    Query(params): Query<StorageListParams>,
) -> ApiResult<Json<Vec<LocalStorageView>>> {
    let project = opt_int("project", &params.project)?.ok_or_else(|| {
        ApiError::field(
            ErrorCode::InvalidQuery,
            "project",
            "this parameter is required",
        )
    })?;
    Ok(Json(
        storages::list(&state.db, &actor, Direction::Export, project).await?,
    ))
}

/// Connects a directory under the server's local-files root as the target of the project's
/// annotations: `{"project", "path", "title"?, "description"?, "can_delete_objects"?}`.
#[utoipa::path(post, path = "/api/storages/export/localfiles", tag = "storages", request_body = Object, responses((status = 201, body = LocalStorageView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn create_local_export(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<LocalStorageView>)> {
    Ok((
        StatusCode::CREATED,
        Json(storages::create(&state.db, &actor, Direction::Export, root(&state), &body).await?),
    ))
}

/// Checks an export storage body (a new one, or with `id` a change) without saving it.
#[utoipa::path(post, path = "/api/storages/export/localfiles/validate", tag = "storages", request_body = Object, responses((status = 200, description = "valid"), (status = 400, body = crate::error::ErrorBody)))]
pub async fn validate_local_export(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    storages::validate(&state.db, &actor, Direction::Export, root(&state), &body).await?;
    Ok(Json(json!({})))
}

/// One local-files export storage.
#[utoipa::path(get, path = "/api/storages/export/localfiles/{id}", tag = "storages", params(("id" = i64, Path)), responses((status = 200, body = LocalStorageView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_local_export(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<LocalStorageView>> {
    Ok(Json(
        storages::get(&state.db, &actor, Direction::Export, id).await?,
    ))
}

/// Changes a local-files export storage.
#[utoipa::path(patch, path = "/api/storages/export/localfiles/{id}", tag = "storages", params(("id" = i64, Path)), request_body = Object, responses((status = 200, body = LocalStorageView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn update_local_export(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<LocalStorageView>> {
    Ok(Json(
        storages::update(
            &state.db,
            &actor,
            Direction::Export,
            root(&state),
            id,
            &body,
        )
        .await?,
    ))
}

/// Disconnects a local-files export storage (files already written stay).
#[utoipa::path(delete, path = "/api/storages/export/localfiles/{id}", tag = "storages", params(("id" = i64, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_local_export(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    storages::delete(&state.db, &actor, Direction::Export, id).await?;
    Ok(no_content())
}

/// Starts an export sync as a job: every annotation of the project is written to the directory
/// as `<annotation id>` (JSON: the annotation with its task).
#[utoipa::path(post, path = "/api/storages/export/localfiles/{id}/sync", tag = "storages", params(("id" = i64, Path)), responses((status = 200, body = LocalStorageView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn sync_local_export(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<LocalStorageView>> {
    Ok(Json(storages::view(
        &local_sync(&state, &actor, Direction::Export, id).await?,
    )))
}

// ---------------------------------------------------------------------------------------------
// Bucket storages: S3, GCS and Azure Blob (import and export), one set of handlers per provider
// and direction generated from the same generic functions (ADR 0028).

/// The outbound rules for the storages of `org`: the server's, narrowed by the organization's
/// storage allow-list (ADR 0053).
async fn policy(state: &AppState, org: i64) -> ApiResult<std::sync::Arc<TargetPolicy>> {
    crate::cloud::org_policy(&state.db, &state.config, org).await
}

fn required_project(params: &StorageListParams) -> ApiResult<i64> {
    opt_int("project", &params.project)?.ok_or_else(|| {
        ApiError::field(
            ErrorCode::InvalidQuery,
            "project",
            "this parameter is required",
        )
    })
}

async fn cloud_list<V: CloudView>(
    state: &AppState,
    actor: &Actor,
    ty: CloudType,
    direction: Direction,
    params: &StorageListParams,
) -> ApiResult<Json<Vec<V>>> {
    let project = required_project(params)?;
    let rows = cloudstorages::list(&state.db, actor, Some(ty), direction, project).await?;
    Ok(Json(rows.iter().map(V::of).collect()))
}

async fn cloud_create<V: CloudView>(
    state: &AppState,
    actor: &Actor,
    ty: CloudType,
    direction: Direction,
    body: &serde_json::Map<String, Value>,
) -> ApiResult<(StatusCode, Json<V>)> {
    let row = cloud_create_row(state, actor, ty, direction, body).await?;
    Ok((StatusCode::CREATED, Json(V::of(&row))))
}

/// Creates a bucket storage under the organization's outbound rules.
async fn cloud_create_row(
    state: &AppState,
    actor: &Actor,
    ty: CloudType,
    direction: Direction,
    body: &serde_json::Map<String, Value>,
) -> ApiResult<cloudstorages::CloudStorageRow> {
    cloudstorages::create(
        &state.db,
        actor,
        &state.sealer,
        &policy(state, actor.org_id).await?,
        &state.config,
        ty,
        direction,
        body,
    )
    .await
}

async fn cloud_validate(
    state: &AppState,
    actor: &Actor,
    ty: CloudType,
    direction: Direction,
    body: &serde_json::Map<String, Value>,
) -> ApiResult<Json<Value>> {
    cloud_check(state, actor, ty, direction, body).await?;
    Ok(Json(json!({})))
}

/// Checks a bucket storage body under the organization's outbound rules.
async fn cloud_check(
    state: &AppState,
    actor: &Actor,
    ty: CloudType,
    direction: Direction,
    body: &serde_json::Map<String, Value>,
) -> ApiResult<()> {
    cloudstorages::validate(
        &state.db,
        actor,
        &state.sealer,
        &policy(state, actor.org_id).await?,
        &state.config,
        ty,
        direction,
        body,
    )
    .await
}

async fn cloud_get<V: CloudView>(
    state: &AppState,
    actor: &Actor,
    ty: CloudType,
    direction: Direction,
    id: i64,
) -> ApiResult<Json<V>> {
    let row = cloudstorages::get(&state.db, actor, ty, direction, id).await?;
    Ok(Json(V::of(&row)))
}

async fn cloud_update<V: CloudView>(
    state: &AppState,
    actor: &Actor,
    ty: CloudType,
    direction: Direction,
    id: i64,
    body: &serde_json::Map<String, Value>,
) -> ApiResult<Json<V>> {
    let row = cloud_update_row(state, actor, ty, direction, id, body).await?;
    Ok(Json(V::of(&row)))
}

/// Changes a bucket storage under the organization's outbound rules.
async fn cloud_update_row(
    state: &AppState,
    actor: &Actor,
    ty: CloudType,
    direction: Direction,
    id: i64,
    body: &serde_json::Map<String, Value>,
) -> ApiResult<cloudstorages::CloudStorageRow> {
    cloudstorages::update(
        &state.db,
        actor,
        &state.sealer,
        &policy(state, actor.org_id).await?,
        &state.config,
        ty,
        direction,
        id,
        body,
    )
    .await
}

async fn cloud_sync<V: CloudView>(
    state: &AppState,
    actor: &Actor,
    ty: CloudType,
    direction: Direction,
    id: i64,
) -> ApiResult<Json<V>> {
    let row = queue_cloud_sync(state, actor, ty, direction, id).await?;
    Ok(Json(V::of(&row)))
}

/// Queues the sync of cloud storage `id` of `provider`.
async fn queue_cloud_sync(
    state: &AppState,
    actor: &Actor,
    ty: CloudType,
    direction: Direction,
    id: i64,
) -> ApiResult<cloudstorages::CloudStorageRow> {
    let job_id = uuid::Uuid::new_v4().to_string();
    let row = cloudstorages::queue_sync(&state.db, actor, ty, direction, id, &job_id).await?;
    crate::cloud::enqueue_sync(
        &state.jobs,
        ty.provider(),
        row.organization_id,
        id,
        actor.user_id,
        &job_id,
    )
    .await?;
    Ok(row)
}

/// The seven handlers of one provider and direction: list, create, validate, get, change,
/// delete, sync. Paths are string tokens so that utoipa reads them as literals.
macro_rules! cloud_storage_handlers {
    (
        $view:ident, $ty:expr, $direction:expr,
        $base:tt, $validate_path:tt, $id_path:tt, $sync_path:tt,
        $list:ident, $create:ident, $validate:ident, $get:ident, $update:ident, $delete:ident,
        $sync:ident
    ) => {
        /// The project's storages of this type (plain list, oldest first). Credentials are
        /// never returned.
        #[utoipa::path(get, path = $base, tag = "storages", params(StorageListParams), responses((status = 200, body = Vec<$view>)))]
        pub async fn $list(
            State(state): State<AppState>,
            actor: Actor,
            Query(params): Query<StorageListParams>,
        ) -> ApiResult<Json<Vec<$view>>> {
            cloud_list::<$view>(&state, &actor, $ty, $direction, &params).await
        }

        /// Connects a bucket (the provider's fields and `project`, `prefix`, `regex_filter`,
        /// `use_blob_urls`, `presign`, `presign_ttl`, `recursive_scan`, `title`, `description`;
        /// export storages: `can_delete_objects`). The bucket must answer a listing with the
        /// credentials (else 400 `storage_unreachable`); credentials are stored sealed.
        #[utoipa::path(post, path = $base, tag = "storages", request_body = Object, responses((status = 201, body = $view), (status = 400, body = crate::error::ErrorBody)))]
        pub async fn $create(
            State(state): State<AppState>,
            actor: Actor,
            JsonObject(body): JsonObject,
        ) -> ApiResult<(StatusCode, Json<$view>)> {
            cloud_create::<$view>(&state, &actor, $ty, $direction, &body).await
        }

        /// Checks a storage body (a new storage, or with `id` a change) and that the bucket
        /// answers, without saving anything.
        #[utoipa::path(post, path = $validate_path, tag = "storages", request_body = Object, responses((status = 200, description = "valid"), (status = 400, body = crate::error::ErrorBody)))]
        pub async fn $validate(
            State(state): State<AppState>,
            actor: Actor,
            JsonObject(body): JsonObject,
        ) -> ApiResult<Json<Value>> {
            cloud_validate(&state, &actor, $ty, $direction, &body).await
        }

        /// One storage.
        #[utoipa::path(get, path = $id_path, tag = "storages", params(("id" = i64, Path)), responses((status = 200, body = $view), (status = 404, body = crate::error::ErrorBody)))]
        pub async fn $get(
            State(state): State<AppState>,
            actor: Actor,
            Path(id): Path<i64>,
        ) -> ApiResult<Json<$view>> {
            cloud_get::<$view>(&state, &actor, $ty, $direction, id).await
        }

        /// Changes a storage; credentials left out stay as they are, `""` clears one.
        #[utoipa::path(patch, path = $id_path, tag = "storages", params(("id" = i64, Path)), request_body = Object, responses((status = 200, body = $view), (status = 400, body = crate::error::ErrorBody)))]
        pub async fn $update(
            State(state): State<AppState>,
            actor: Actor,
            Path(id): Path<i64>,
            JsonObject(body): JsonObject,
        ) -> ApiResult<Json<$view>> {
            cloud_update::<$view>(&state, &actor, $ty, $direction, id, &body).await
        }

        /// Disconnects a storage (tasks and objects already written stay; imported media stop
        /// resolving).
        #[utoipa::path(delete, path = $id_path, tag = "storages", params(("id" = i64, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
        pub async fn $delete(
            State(state): State<AppState>,
            actor: Actor,
            Path(id): Path<i64>,
        ) -> ApiResult<Response> {
            cloudstorages::delete(&state.db, &actor, $ty, $direction, id).await?;
            Ok(no_content())
        }

        /// Starts a sync as a job (queue `high`): an import sync makes tasks of new and changed
        /// objects; an export sync writes every annotation as `<prefix>/<annotation id>` (with
        /// `can_delete_objects`, objects of deleted annotations are removed). The answer is the
        /// storage with `status: queued` and the job in `last_sync_job`.
        #[utoipa::path(post, path = $sync_path, tag = "storages", params(("id" = i64, Path)), responses((status = 200, body = $view), (status = 404, body = crate::error::ErrorBody)))]
        pub async fn $sync(
            State(state): State<AppState>,
            actor: Actor,
            Path(id): Path<i64>,
        ) -> ApiResult<Json<$view>> {
            cloud_sync::<$view>(&state, &actor, $ty, $direction, id).await
        }
    };
}

cloud_storage_handlers!(
    S3StorageView,
    CloudType::S3,
    Direction::Import,
    "/api/storages/s3",
    "/api/storages/s3/validate",
    "/api/storages/s3/{id}",
    "/api/storages/s3/{id}/sync",
    list_s3,
    create_s3,
    validate_s3,
    get_s3,
    update_s3,
    delete_s3,
    sync_s3
);
cloud_storage_handlers!(
    S3StorageView,
    CloudType::S3,
    Direction::Export,
    "/api/storages/export/s3",
    "/api/storages/export/s3/validate",
    "/api/storages/export/s3/{id}",
    "/api/storages/export/s3/{id}/sync",
    list_s3_export,
    create_s3_export,
    validate_s3_export,
    get_s3_export,
    update_s3_export,
    delete_s3_export,
    sync_s3_export
);
cloud_storage_handlers!(
    GcsStorageView,
    CloudType::Gcs,
    Direction::Import,
    "/api/storages/gcs",
    "/api/storages/gcs/validate",
    "/api/storages/gcs/{id}",
    "/api/storages/gcs/{id}/sync",
    list_gcs,
    create_gcs,
    validate_gcs,
    get_gcs,
    update_gcs,
    delete_gcs,
    sync_gcs
);
cloud_storage_handlers!(
    GcsStorageView,
    CloudType::Gcs,
    Direction::Export,
    "/api/storages/export/gcs",
    "/api/storages/export/gcs/validate",
    "/api/storages/export/gcs/{id}",
    "/api/storages/export/gcs/{id}/sync",
    list_gcs_export,
    create_gcs_export,
    validate_gcs_export,
    get_gcs_export,
    update_gcs_export,
    delete_gcs_export,
    sync_gcs_export
);
cloud_storage_handlers!(
    AzureStorageView,
    CloudType::Azure,
    Direction::Import,
    "/api/storages/azure",
    "/api/storages/azure/validate",
    "/api/storages/azure/{id}",
    "/api/storages/azure/{id}/sync",
    list_azure,
    create_azure,
    validate_azure,
    get_azure,
    update_azure,
    delete_azure,
    sync_azure
);
cloud_storage_handlers!(
    AzureStorageView,
    CloudType::Azure,
    Direction::Export,
    "/api/storages/export/azure",
    "/api/storages/export/azure/validate",
    "/api/storages/export/azure/{id}",
    "/api/storages/export/azure/{id}/sync",
    list_azure_export,
    create_azure_export,
    validate_azure_export,
    get_azure_export,
    update_azure_export,
    delete_azure_export,
    sync_azure_export
);

cloud_storage_handlers!(
    S3StorageView,
    CloudType::S3s,
    Direction::Import,
    "/api/storages/s3s",
    "/api/storages/s3s/validate",
    "/api/storages/s3s/{id}",
    "/api/storages/s3s/{id}/sync",
    list_s3s,
    create_s3s,
    validate_s3s,
    get_s3s,
    update_s3s,
    delete_s3s,
    sync_s3s
);
cloud_storage_handlers!(
    S3StorageView,
    CloudType::S3s,
    Direction::Export,
    "/api/storages/export/s3s",
    "/api/storages/export/s3s/validate",
    "/api/storages/export/s3s/{id}",
    "/api/storages/export/s3s/{id}/sync",
    list_s3s_export,
    create_s3s_export,
    validate_s3s_export,
    get_s3s_export,
    update_s3s_export,
    delete_s3s_export,
    sync_s3s_export
);
cloud_storage_handlers!(
    AzureStorageView,
    CloudType::AzureSpi,
    Direction::Import,
    "/api/storages/azure_spi",
    "/api/storages/azure_spi/validate",
    "/api/storages/azure_spi/{id}",
    "/api/storages/azure_spi/{id}/sync",
    list_azure_spi,
    create_azure_spi,
    validate_azure_spi,
    get_azure_spi,
    update_azure_spi,
    delete_azure_spi,
    sync_azure_spi
);
cloud_storage_handlers!(
    AzureStorageView,
    CloudType::AzureSpi,
    Direction::Export,
    "/api/storages/export/azure_spi",
    "/api/storages/export/azure_spi/validate",
    "/api/storages/export/azure_spi/{id}",
    "/api/storages/export/azure_spi/{id}/sync",
    list_azure_spi_export,
    create_azure_spi_export,
    validate_azure_spi_export,
    get_azure_spi_export,
    update_azure_spi_export,
    delete_azure_spi_export,
    sync_azure_spi_export
);

/// A storage type (`/api/storages/types`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct StorageTypeView {
    /// The type's name in paths (`/api/storages/<name>`) and in storages' `type`.
    pub name: &'static str,
    /// What it is called.
    pub title: &'static str,
}

fn storage_types() -> Json<Vec<StorageTypeView>> {
    let mut types = vec![StorageTypeView {
        name: localfiles::KIND,
        title: "Local files",
    }];
    types.extend(CloudType::ALL.into_iter().map(|t| StorageTypeView {
        name: t.name(),
        title: t.title(),
    }));
    Json(types)
}

/// The import storage types this server offers (`localfiles`, `s3`, `s3s`, `gcs`, `azure`,
/// `azure_spi`).
#[utoipa::path(get, path = "/api/storages/types", tag = "storages", responses((status = 200, body = Vec<StorageTypeView>)))]
pub async fn import_types(_actor: Actor) -> Json<Vec<StorageTypeView>> {
    storage_types()
}

/// The export storage types this server offers (`localfiles`, `s3`, `s3s`, `gcs`, `azure`,
/// `azure_spi`).
#[utoipa::path(get, path = "/api/storages/export/types", tag = "storages", responses((status = 200, body = Vec<StorageTypeView>)))]
pub async fn export_types(_actor: Actor) -> Json<Vec<StorageTypeView>> {
    storage_types()
}

async fn all_storages(
    state: &AppState,
    actor: &Actor,
    direction: Direction,
    params: &StorageListParams,
) -> ApiResult<Json<Vec<Value>>> {
    let project = required_project(params)?;
    Ok(Json(
        project_storages(state, actor, direction, project).await?,
    ))
}

/// Every storage of `direction` of `project`, each as its type's view (local files first, then
/// S3, S3 by IAM role (`s3s`), GCS, Azure, Azure by service principal (`azure_spi`); oldest
/// first within a type): what `GET /api/storages` lists.
pub async fn project_storages(
    state: &AppState,
    actor: &Actor,
    direction: Direction,
    project: i64,
) -> ApiResult<Vec<Value>> {
    let local = storages::list(&state.db, actor, direction, project).await?;
    let cloud = cloudstorages::list(&state.db, actor, None, direction, project).await?;
    let mut all: Vec<Value> = local
        .iter()
        .map(|v| serde_json::to_value(v).unwrap_or_default())
        .collect();
    for ty in CloudType::ALL {
        all.extend(
            cloud
                .iter()
                .filter(|r| r.cloud_type() == ty)
                .map(|r| r.view_value()),
        );
    }
    Ok(all)
}

/// Every import storage of a project, of every type (local files first, then `s3`, `s3s`, `gcs`,
/// `azure`, `azure_spi`; oldest first within a type), each with its `type`.
#[utoipa::path(get, path = "/api/storages", tag = "storages", params(StorageListParams), responses((status = 200, description = "the storages, each as its type's view", body = Vec<Object>)))]
pub async fn list_all(
    State(state): State<AppState>,
    actor: Actor,
    Query(params): Query<StorageListParams>,
) -> ApiResult<Json<Vec<Value>>> {
    all_storages(&state, &actor, Direction::Import, &params).await
}

/// Every export storage of a project, of every type, each with its `type`.
#[utoipa::path(get, path = "/api/storages/export", tag = "storages", params(StorageListParams), responses((status = 200, description = "the storages, each as its type's view", body = Vec<Object>)))]
pub async fn list_all_export(
    State(state): State<AppState>,
    actor: Actor,
    Query(params): Query<StorageListParams>,
) -> ApiResult<Json<Vec<Value>>> {
    all_storages(&state, &actor, Direction::Export, &params).await
}

/// A redirect to a fresh signed link of the proxy for `key` of storage `kind`/`storage`.
fn redirect_link(
    state: &AppState,
    actor: &Actor,
    task: Option<i64>,
    (kind, organization, project, storage): (&str, i64, i64, i64),
    key: String,
) -> Response {
    let link = Link {
        organization,
        project,
        task,
        kind: kind.into(),
        storage,
        key,
        expires: unix_now() + state.config.storage_link_ttl_secs.max(1) as i64,
        user: actor.user_id,
    };
    see_other(crate::proxy::url(&state.config, &state.links.sign(&link)))
}

fn see_other(url: String) -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, url),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
    )
        .into_response()
}

/// A redirect to a fresh signed link of a local-files object.
fn redirect(
    state: &AppState,
    actor: &Actor,
    task: Option<i64>,
    row: &LocalStorageRow,
    key: String,
) -> Response {
    redirect_link(
        state,
        actor,
        task,
        (
            localfiles::KIND,
            row.organization_id,
            row.project_id,
            row.id,
        ),
        key,
    )
}

/// A bucket URI of a task (`s3://`, `gs://`, `azure-blob://`): a presigned URL of the bucket
/// (storage `presign`, when the storage has credentials to sign with), or a signed link of the
/// proxy.
async fn resolve_cloud(
    state: &AppState,
    actor: &Actor,
    task: i64,
    (provider, bucket, key): (Provider, String, String),
) -> ApiResult<Option<Response>> {
    let Some(row) =
        cloudstorages::covering_task_object(&state.db, actor, task, provider, &bucket, &key)
            .await?
    else {
        return Ok(None);
    };
    if row.presign {
        let client = row.client(&state.db, &state.config, &state.sealer).await?;
        // S3 presigns anonymous requests too (public buckets); GCS and Azure sign with the
        // storage's key, so without one the proxy serves the object instead.
        if client.signed || provider == Provider::S3 {
            let ttl =
                std::time::Duration::from_secs(row.presign_ttl.clamp(1, 7 * 24 * 60) as u64 * 60);
            let url = client
                .signer
                .signed_url(
                    Method::GET,
                    &object_store::path::Path::from(key.as_str()),
                    ttl,
                )
                .await
                .map_err(|e| {
                    ApiError::new(
                        ErrorCode::StorageUnreachable,
                        format!("cannot presign the object: {}", crate::cloud::describe(&e)),
                    )
                })?;
            return Ok(Some(see_other(url.to_string())));
        }
    }
    Ok(Some(redirect_link(
        state,
        actor,
        Some(task),
        (provider.kind(), row.organization_id, row.project_id, row.id),
        key,
    )))
}

/// Query of the presign endpoint.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PresignParams {
    /// The media URI as the task's data holds it, base64-encoded (standard or URL-safe).
    pub fileuri: Option<String>,
}

/// Resolves a media URI of a task to a short-lived signed link of the storage proxy (303): for
/// anyone who can see the task. The URI must name an object of a storage of the task's project.
#[utoipa::path(get, path = "/api/tasks/{id}/presign", tag = "storages", params(("id" = i64, Path), PresignParams), responses((status = 303, description = "`Location`: the signed link"), (status = 400, body = crate::error::ErrorBody)))]
pub async fn presign(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Query(params): Query<PresignParams>,
) -> ApiResult<Response> {
    // Who may see the task first: a caller who may not learns nothing about the URI.
    crate::storage::access::project_of_task(
        &state.db,
        &actor,
        id,
        crate::authz::Permission::ProjectView,
    )
    .await?;
    let unresolvable = || {
        ApiError::field(
            ErrorCode::InvalidQuery,
            "fileuri",
            "does not name an object of a storage of this task's project",
        )
    };
    let encoded = params.fileuri.unwrap_or_default();
    let encoded = encoded.trim();
    if encoded.is_empty() {
        return Err(ApiError::field(
            ErrorCode::InvalidQuery,
            "fileuri",
            "this parameter is required (the base64 of the media URI)",
        ));
    }
    let decoded = base64::engine::general_purpose::URL_SAFE
        .decode(encoded)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(encoded))
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            ApiError::field(ErrorCode::InvalidQuery, "fileuri", "is not base64 of a URI")
        })?;
    if let Some(media) = crate::cloud::parse_media_url(&decoded) {
        return resolve_cloud(&state, &actor, id, media)
            .await?
            .ok_or_else(unresolvable);
    }
    let relative = localfiles::parse_blob_url(&decoded).ok_or_else(unresolvable)?;
    let root = root(&state)?;
    let (row, key) = storages::covering_task_file(&state.db, &actor, &root, id, &relative)
        .await?
        .ok_or_else(unresolvable)?;
    Ok(redirect(&state, &actor, Some(id), &row, key))
}

/// Query of `/data/local-files/`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct LocalFileParams {
    /// The file's path relative to the server's local-files root.
    pub d: Option<String>,
}

/// Label Studio's local-files URL: a redirect (303) to a signed link of the file, for a caller
/// who can see a project with a local-files storage covering it; 404 otherwise.
#[utoipa::path(get, path = "/data/local-files", tag = "storages", params(LocalFileParams), responses((status = 303, description = "`Location`: the signed link"), (status = 404, body = crate::error::ErrorBody)))]
pub async fn local_file(
    State(state): State<AppState>,
    actor: Actor,
    Query(params): Query<LocalFileParams>,
) -> ApiResult<Response> {
    let d = params.d.unwrap_or_default();
    if d.trim().is_empty() {
        return Err(ApiError::field(
            ErrorCode::InvalidQuery,
            "d",
            "this parameter is required (the file's path under the local-files root)",
        ));
    }
    let root = root(&state)?;
    let not_found = || ApiError::not_found("file");
    let found = match storages::covering_visible_file(&state.db, &actor, &root, &d).await {
        Ok(found) => found,
        // A path that leaves the root answers like a missing file.
        Err(e) if e.code == ErrorCode::PathNotAllowed => None,
        Err(e) => return Err(e),
    };
    let (row, key) = found.ok_or_else(not_found)?;
    Ok(redirect(&state, &actor, None, &row, key))
}

/// The object of a signed link (GET and HEAD; single byte ranges). No credentials: the link is
/// one; expired, changed or foreign links answer 403 `link_expired` / `invalid_link`.
#[utoipa::path(get, path = "/storage-proxy/{token}", tag = "storages", security(()), params(("token" = String, Path)), responses((status = 200, description = "the object"), (status = 206, description = "a byte range"), (status = 403, body = crate::error::ErrorBody), (status = 416, body = crate::error::ErrorBody)))]
pub async fn proxy_object(
    State(state): State<AppState>,
    Path(token): Path<String>,
    parts: axum::http::request::Parts,
) -> Response {
    let client = crate::http::extract::client_ip(&parts, &state.config);
    state
        .proxy()
        .respond(&parts.method, &token, &parts.headers, client)
        .await
}

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_local, create_local))
        .routes(routes!(validate_local))
        .routes(routes!(get_local, update_local, delete_local))
        .routes(routes!(sync_local))
        .routes(routes!(list_local_export, create_local_export))
        .routes(routes!(validate_local_export))
        .routes(routes!(
            get_local_export,
            update_local_export,
            delete_local_export
        ))
        .routes(routes!(sync_local_export))
        .routes(routes!(list_s3, create_s3))
        .routes(routes!(validate_s3))
        .routes(routes!(get_s3, update_s3, delete_s3))
        .routes(routes!(sync_s3))
        .routes(routes!(list_s3_export, create_s3_export))
        .routes(routes!(validate_s3_export))
        .routes(routes!(get_s3_export, update_s3_export, delete_s3_export))
        .routes(routes!(sync_s3_export))
        .routes(routes!(list_gcs, create_gcs))
        .routes(routes!(validate_gcs))
        .routes(routes!(get_gcs, update_gcs, delete_gcs))
        .routes(routes!(sync_gcs))
        .routes(routes!(list_gcs_export, create_gcs_export))
        .routes(routes!(validate_gcs_export))
        .routes(routes!(
            get_gcs_export,
            update_gcs_export,
            delete_gcs_export
        ))
        .routes(routes!(sync_gcs_export))
        .routes(routes!(list_azure, create_azure))
        .routes(routes!(validate_azure))
        .routes(routes!(get_azure, update_azure, delete_azure))
        .routes(routes!(sync_azure))
        .routes(routes!(list_azure_export, create_azure_export))
        .routes(routes!(validate_azure_export))
        .routes(routes!(
            get_azure_export,
            update_azure_export,
            delete_azure_export
        ))
        .routes(routes!(sync_azure_export))
        .routes(routes!(list_s3s, create_s3s))
        .routes(routes!(validate_s3s))
        .routes(routes!(get_s3s, update_s3s, delete_s3s))
        .routes(routes!(sync_s3s))
        .routes(routes!(list_s3s_export, create_s3s_export))
        .routes(routes!(validate_s3s_export))
        .routes(routes!(
            get_s3s_export,
            update_s3s_export,
            delete_s3s_export
        ))
        .routes(routes!(sync_s3s_export))
        .routes(routes!(list_azure_spi, create_azure_spi))
        .routes(routes!(validate_azure_spi))
        .routes(routes!(get_azure_spi, update_azure_spi, delete_azure_spi))
        .routes(routes!(sync_azure_spi))
        .routes(routes!(list_azure_spi_export, create_azure_spi_export))
        .routes(routes!(validate_azure_spi_export))
        .routes(routes!(
            get_azure_spi_export,
            update_azure_spi_export,
            delete_azure_spi_export
        ))
        .routes(routes!(sync_azure_spi_export))
        .routes(routes!(import_types))
        .routes(routes!(export_types))
        .routes(routes!(list_all))
        .routes(routes!(list_all_export))
        .routes(routes!(presign))
        .routes(routes!(local_file))
        .routes(routes!(proxy_object))
}
