//! Every route of the API, one module per resource. Each handler carries its OpenAPI
//! description, so the document is generated from the code that serves it.

pub mod admin;
pub mod agreement;
pub mod analytics;
pub mod annotations;
pub mod assignments;
pub mod dashboards;
pub mod drafts;
pub mod exports;
pub mod imports;
pub mod jobs;
pub mod ldap;
pub mod members;
pub mod meta;
pub mod ml;
pub mod notifications;
pub mod organizations;
pub mod predictions;
pub mod projects;
pub mod reviews;
pub mod saml;
pub mod scim;
pub mod storages;
pub mod tasks;
pub mod uploads;
pub mod users;
pub mod views;
pub mod webhooks;
pub mod workspaces;

use utoipa::{
    Modify, OpenApi,
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_axum::router::OpenApiRouter;

use super::AppState;
use crate::error::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Verity control plane API",
        description = "Label Studio compatible annotation API. Errors use the ErrorBody envelope with a stable `code`.",
        license(name = "Apache-2.0")
    ),
    components(schemas(ErrorBody)),
    modifiers(&Security),
    security(("token" = []), ("bearer" = []))
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "Legacy API token: `Token <key>`",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// All routes with their OpenAPI description.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(meta::router())
        .merge(users::router())
        .merge(projects::router())
        .merge(tasks::router())
        .merge(assignments::router())
        .merge(views::router())
        .merge(imports::router())
        .merge(uploads::router())
        .merge(annotations::router())
        .merge(drafts::router())
        .merge(reviews::router())
        .merge(notifications::router())
        .merge(predictions::router())
        .merge(exports::router())
        .merge(organizations::router())
        .merge(workspaces::router())
        .merge(members::router())
        .merge(admin::router())
        .merge(jobs::router())
        .merge(webhooks::router())
        .merge(ml::router())
        .merge(storages::router())
        .merge(agreement::router())
        .merge(dashboards::router())
        .merge(analytics::router())
        .merge(saml::router())
        .merge(scim::router())
        .merge(ldap::router())
}

/// The OpenAPI document as pretty JSON (committed under `docs/openapi.json`).
pub fn openapi_json() -> String {
    let (_, mut doc) = router().split_for_parts();
    doc.info.version = crate::VERSION.to_string();
    let mut doc = serde_json::to_value(&doc).unwrap_or_default();
    declare_errors(&mut doc);
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// Declares the error answers that every operation of a kind can give, in the ErrorBody
/// envelope, where the operation does not describe them itself: 400 and 404 wherever the caller
/// sends parameters or a body (a malformed value; an id that names nothing), 413 for bodies,
/// 409 for writes (a concurrent change or a unique name taken), 401 and 403 for authenticated
/// operations, 429 for every `/api/` operation (rate limits). So a client, and the fuzzer in the
/// test command, can rely on the document listing every status the server answers.
fn declare_errors(doc: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let error = |description: &str| {
        json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        })
    };
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        let path_has_params = item
            .get("parameters")
            .is_some_and(|p| p.as_array().is_some_and(|a| !a.is_empty()));
        for (method, operation) in item.iter_mut() {
            let write = matches!(method.as_str(), "post" | "put" | "patch" | "delete");
            if !write && method != "get" {
                continue;
            }
            let Some(operation) = operation.as_object_mut() else {
                continue;
            };
            let public = operation
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|s| {
                    s.iter()
                        .all(|requirement| requirement.as_object().is_some_and(|r| r.is_empty()))
                });
            let has_params = path_has_params
                || operation
                    .get("parameters")
                    .and_then(Value::as_array)
                    .is_some_and(|p| !p.is_empty());
            let has_body = operation.contains_key("requestBody");
            let mut add = Vec::new();
            if has_params || has_body {
                add.push((
                    "400",
                    "The request is invalid; `code` and `detail` say what to fix.",
                ));
                add.push(("404", "Nothing the caller may see has this id."));
            }
            if has_body {
                add.push(("413", "The body is larger than the server accepts."));
            }
            if write {
                add.push((
                    "409",
                    "A concurrent change or a name already taken; retry or pick another.",
                ));
            }
            if !public {
                add.push(("401", "No valid credentials."));
                add.push((
                    "403",
                    "The caller lacks the permission this operation needs.",
                ));
            }
            if path.starts_with("/api/") {
                add.push((
                    "429",
                    "Rate limited; retry after the `Retry-After` seconds.",
                ));
            }
            let responses = operation.entry("responses").or_insert_with(|| json!({}));
            if let Some(responses) = responses.as_object_mut() {
                for (status, description) in add {
                    responses
                        .entry(status)
                        .or_insert_with(|| error(description));
                }
            }
        }
    }
}
