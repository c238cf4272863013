//! Every route of the API, one module per resource. Each handler carries its OpenAPI
//! description, so the document is generated from the code that serves it.

pub mod admin;
pub mod annotations;
pub mod exports;
pub mod imports;
pub mod jobs;
pub mod members;
pub mod meta;
pub mod organizations;
pub mod predictions;
pub mod projects;
pub mod tasks;
pub mod users;
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
        .merge(imports::router())
        .merge(annotations::router())
        .merge(predictions::router())
        .merge(exports::router())
        .merge(organizations::router())
        .merge(workspaces::router())
        .merge(members::router())
        .merge(admin::router())
        .merge(jobs::router())
        .merge(webhooks::router())
}

/// The OpenAPI document as pretty JSON (committed under `docs/openapi.json`).
pub fn openapi_json() -> String {
    let (_, mut doc) = router().split_for_parts();
    doc.info.version = crate::VERSION.to_string();
    doc.to_pretty_json().unwrap_or_default()
}
