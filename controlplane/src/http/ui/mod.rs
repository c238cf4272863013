//! The web UI (ADR 0027): server-rendered pages at Label Studio's paths, the session cookie, CSRF
//! tokens and the static assets, all embedded in the binary.
//!
//! Pages reach data only through the storage layer with the signed-in [`Actor`], exactly as the
//! API's handlers do, so a page can never show or change more than the API would allow that
//! user. Every page is served with a strict Content-Security-Policy (no inline script or style),
//! so all behaviour lives in files under `/static/`.

mod account;
mod analytics;
mod bulk;
mod colour;
mod dashboard;
mod data;
mod io;
mod members;
mod notifications;
mod orgsettings;
mod pages;
mod project_members;
mod review;
mod sso;
mod storage_settings;
mod workspaces;

use std::sync::OnceLock;

use axum::{
    Router,
    body::Body,
    extract::{Path as AxumPath, Request},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use sha2::{Digest, Sha256};

use super::AppState;
use crate::{
    authz::Actor,
    error::ApiError,
    storage::{orgs, sessions},
};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "verity_session";
/// Name of the cookie that carries the sign-in and sign-up forms' CSRF token (before a session
/// exists).
pub const FORM_COOKIE: &str = "verity_form";

/// The policy every page is served with: only this origin's scripts, styles and connections,
/// no plugins, no framing, forms only to this origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The pages and static assets.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::home))
        .route("/user/login", get(pages::login_page).post(pages::login))
        .route("/user/logout", get(pages::logout_page).post(pages::logout))
        .route("/user/signup", get(pages::signup_page).post(pages::signup))
        .route(
            "/user/account",
            get(account::account_page).post(account::account_post),
        )
        .route(
            "/user/organization",
            axum::routing::post(account::switch_organization),
        )
        .route(
            "/organization",
            get(members::members_page).post(members::members_post),
        )
        .route("/organization/settings", get(orgsettings::index))
        .route(
            "/organization/settings/access",
            get(orgsettings::access_page).post(orgsettings::access_post),
        )
        .route(
            "/organization/settings/sessions",
            get(orgsettings::sessions_page).post(orgsettings::sessions_post),
        )
        .route(
            "/organization/settings/sso",
            get(orgsettings::sso_page).post(orgsettings::sso_post),
        )
        .route(
            "/notifications",
            get(notifications::notifications_page).post(notifications::notifications_post),
        )
        .route("/user/login/sso", get(sso::by_email))
        .route("/saml/{org}/metadata", get(sso::metadata))
        .route("/saml/{org}/login", get(sso::login))
        .route("/saml/{org}/acs", axum::routing::post(sso::acs))
        .route(
            "/workspaces",
            get(workspaces::workspaces_page).post(workspaces::create_workspace),
        )
        .route(
            "/workspaces/{id}",
            get(workspaces::workspace_page).post(workspaces::workspace_post),
        )
        .route(
            "/projects",
            get(pages::projects_page).post(pages::create_project),
        )
        .route(
            "/projects/{id}/data",
            get(data::data_page).post(data::data_post),
        )
        .route(
            "/projects/{id}/data/import",
            get(io::import_page)
                .post(io::import_post)
                // Uploads are streamed to disk and capped by import_max_bytes, as the API's.
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            "/projects/{id}/data/import/sync",
            axum::routing::post(io::sync_post),
        )
        .route(
            "/projects/{id}/data/import/predictions",
            axum::routing::post(io::predictions_post),
        )
        .route(
            "/projects/{id}/data/import/{import}",
            get(io::import_status_page),
        )
        .route(
            "/projects/{id}/data/export",
            get(io::export_page).post(io::export_post),
        )
        .route(
            "/projects/{id}/settings",
            get(pages::settings_page).post(pages::save_settings),
        )
        .route(
            "/projects/{id}/settings/storage",
            get(storage_settings::storage_page).post(storage_settings::storage_post),
        )
        .route(
            "/projects/{id}/settings/storage/form",
            get(storage_settings::form_page).post(storage_settings::form_post),
        )
        .route(
            "/projects/{id}/members",
            get(project_members::members_page).post(project_members::members_post),
        )
        .route("/projects/{id}/label", get(pages::label_page))
        .route(
            "/projects/{id}/label/convert-to-draft",
            axum::routing::post(pages::convert_draft_post),
        )
        .route(
            "/projects/{id}/review",
            get(review::review_page).post(review::review_post),
        )
        .route(
            "/projects/{id}/review/comments",
            axum::routing::post(review::comment_post),
        )
        .route("/projects/{id}/dashboard", get(dashboard::dashboard_page))
        .route("/analytics", get(analytics::analytics_page))
        .route("/brand/{org}/accent.css", get(accent_css))
        .route("/static/{file}", get(static_file))
        .route("/static/editor/{file}", get(editor_file))
        .layer(middleware::from_fn(security_headers))
}

/// Security headers of every page and asset.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    // A page may set a policy of its own (the labeling page); the strict one otherwise.
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The embedded static files: name, content type, bytes.
const STATIC_FILES: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../../ui/static/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../ui/static/app.js"),
    ),
    (
        "label.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../ui/static/label.js"),
    ),
    (
        "review.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../ui/static/review.js"),
    ),
];

/// The policy of the labeling and review pages: Label Studio's editor sets styles at run time and draws
/// images through `blob:` URLs, so styles may be inline there; scripts stay `'self'` only.
pub const EDITOR_CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; media-src 'self' blob:; \
     worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Files of the editor directory (`editor_dir`), by name; nothing else there is served.
async fn editor_file(
    axum::extract::State(state): axum::extract::State<AppState>,
    AxumPath(file): AxumPath<String>,
) -> Response {
    let content_type = match file.as_str() {
        "main.js" => "text/javascript; charset=utf-8",
        "main.css" => "text/css; charset=utf-8",
        "LICENSE" | "main.js.LICENSE.txt" => "text/plain; charset=utf-8",
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    if state.config.editor_dir.is_empty() {
        return (
            StatusCode::NOT_FOUND,
            "the labeling editor is not installed (editor_dir)",
        )
            .into_response();
    }
    let path = std::path::Path::new(&state.config.editor_dir).join(&file);
    match tokio::fs::read(&path).await {
        Ok(bytes) => Response::builder()
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CACHE_CONTROL, "public, max-age=86400")
            .body(Body::from(bytes))
            .unwrap_or_default(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "an editor file cannot be read");
            (
                StatusCode::NOT_FOUND,
                "the labeling editor is not installed (editor_dir)",
            )
                .into_response()
        }
    }
}

async fn static_file(AxumPath(file): AxumPath<String>) -> Response {
    match STATIC_FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => Response::builder()
            .header(header::CONTENT_TYPE, *content_type)
            .header(header::CACHE_CONTROL, "public, max-age=3600")
            .body(Body::from(*body))
            .unwrap_or_default(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

/// The templates, parsed once. A template that does not parse fails the first page (and the
/// test that renders them all), never silently.
fn templates() -> &'static minijinja::Environment<'static> {
    static ENV: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = minijinja::Environment::new();
        for (name, source) in [
            ("base.html", include_str!("../../../ui/templates/base.html")),
            (
                "account.html",
                include_str!("../../../ui/templates/account.html"),
            ),
            (
                "login.html",
                include_str!("../../../ui/templates/login.html"),
            ),
            (
                "signup.html",
                include_str!("../../../ui/templates/signup.html"),
            ),
            (
                "logout.html",
                include_str!("../../../ui/templates/logout.html"),
            ),
            (
                "projects.html",
                include_str!("../../../ui/templates/projects.html"),
            ),
            ("data.html", include_str!("../../../ui/templates/data.html")),
            (
                "confirm.html",
                include_str!("../../../ui/templates/confirm.html"),
            ),
            (
                "settings.html",
                include_str!("../../../ui/templates/settings.html"),
            ),
            ("sso.html", include_str!("../../../ui/templates/sso.html")),
            (
                "members.html",
                include_str!("../../../ui/templates/members.html"),
            ),
            (
                "project_members.html",
                include_str!("../../../ui/templates/project_members.html"),
            ),
            (
                "workspaces.html",
                include_str!("../../../ui/templates/workspaces.html"),
            ),
            (
                "workspace.html",
                include_str!("../../../ui/templates/workspace.html"),
            ),
            (
                "error.html",
                include_str!("../../../ui/templates/error.html"),
            ),
            (
                "label.html",
                include_str!("../../../ui/templates/label.html"),
            ),
            (
                "project_nav.html",
                include_str!("../../../ui/templates/project_nav.html"),
            ),
            (
                "review.html",
                include_str!("../../../ui/templates/review.html"),
            ),
            (
                "dashboard.html",
                include_str!("../../../ui/templates/dashboard.html"),
            ),
            (
                "import.html",
                include_str!("../../../ui/templates/import.html"),
            ),
            (
                "import_status.html",
                include_str!("../../../ui/templates/import_status.html"),
            ),
            (
                "export.html",
                include_str!("../../../ui/templates/export.html"),
            ),
            (
                "notifications.html",
                include_str!("../../../ui/templates/notifications.html"),
            ),
            (
                "org_settings.html",
                include_str!("../../../ui/templates/org_settings.html"),
            ),
            (
                "analytics.html",
                include_str!("../../../ui/templates/analytics.html"),
            ),
            (
                "day_columns.html",
                include_str!("../../../ui/templates/day_columns.html"),
            ),
            (
                "day_rows.html",
                include_str!("../../../ui/templates/day_rows.html"),
            ),
            (
                "storage.html",
                include_str!("../../../ui/templates/storage.html"),
            ),
            (
                "storage_form.html",
                include_str!("../../../ui/templates/storage_form.html"),
            ),
        ] {
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "a UI template does not parse");
            }
        }
        env
    })
}

/// Renders a template with `status`.
fn render(status: StatusCode, name: &str, context: minijinja::Value) -> Response {
    let html = templates()
        .get_template(name)
        .and_then(|t| t.render(context));
    match html {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "rendering a page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "the page could not be rendered; the server log has the reason",
            )
                .into_response()
        }
    }
}

/// The value of the session cookie of a request, if it carries one.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    cookie_value(headers, SESSION_COOKIE)
}

/// The value of cookie `name`.
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
        .filter(|v| !v.is_empty())
}

/// Whether two secrets are equal, compared through their digests so that the time taken does
/// not depend on how much of a guess is right. An empty expected value never matches.
pub fn same_secret(given: &str, expected: &str) -> bool {
    !expected.is_empty() && Sha256::digest(given.as_bytes()) == Sha256::digest(expected.as_bytes())
}

/// Whether cookies set on this request must be `Secure`.
fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    state.config.session_cookie_secure
        || (state.config.trust_forwarded_for
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https")))
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, path `/`, Secure when [`secure`] says so;
/// `max_age` None deletes the cookie.
fn set_cookie(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
    value: &str,
    max_age_secs: Option<i64>,
) -> String {
    let mut c = cookie::Cookie::build((name.to_string(), value.to_string()))
        .path("/")
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .secure(secure(state, headers));
    c = match max_age_secs {
        Some(secs) => c.max_age(time::Duration::seconds(secs)),
        None => c.max_age(time::Duration::ZERO),
    };
    c.build().to_string()
}

/// The signed-in user of a page request, with their session.
struct PageUser {
    actor: Actor,
    session: sessions::Session,
    /// The organizations the user may switch between (id, title), for the header.
    orgs: Vec<(i64, String)>,
    /// The branding of the active organization.
    brand: orgs::Branding,
    /// Unread notifications, for the header (ADR 0051).
    unread_notifications: i64,
}

/// The user behind the request's session cookie, or the response that sends them to sign in.
async fn page_user(
    state: &AppState,
    parts: &axum::http::request::Parts,
) -> Result<PageUser, Response> {
    let to_login = || {
        let next = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        redirect(&format!("/user/login?next={}", encode(&next)))
    };
    let Some(cookie) = session_cookie(&parts.headers) else {
        return Err(to_login());
    };
    match sessions::actor_for_session(&state.db, &cookie).await {
        Ok(Some((mut actor, session))) => {
            actor.meta = super::extract::request_meta(parts, state.config.trust_forwarded_for);
            if let Err(e) = super::extract::check_client(parts, state, &mut actor).await {
                return Err(error_page(None, &e));
            }
            let mine = match orgs::list_mine(&state.db, &actor).await {
                Ok(list) => list,
                Err(e) => return Err(error_page(None, &e)),
            };
            let brand = mine
                .iter()
                .find(|o| o.id == actor.org_id)
                .map(orgs::OrganizationView::branding)
                .unwrap_or_default();
            let unread_notifications =
                match crate::storage::notifications::count(&state.db, &actor).await {
                    Ok((_, unread)) => unread,
                    Err(e) => return Err(error_page(None, &e)),
                };
            Ok(PageUser {
                unread_notifications,
                actor,
                session,
                orgs: mine.into_iter().map(|o| (o.id, o.title)).collect(),
                brand,
            })
        }
        Ok(None) => Err(to_login()),
        Err(e) => Err(error_page(None, &e)),
    }
}

/// The `done=` of a page's query: what the post before the redirect changed, for the page's
/// notice.
fn done_param(parts: &axum::http::request::Parts) -> Option<String> {
    parts.uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "done")
            .map(|(_, v)| v.into_owned())
    })
}

/// A 303 to `to`.
fn redirect(to: &str) -> Response {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, to)
        .body(Body::empty())
        .unwrap_or_default()
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Where to go after signing in: a path on this site only (no `//host` or `scheme:`), else `/projects`.
fn safe_next(next: Option<&str>) -> String {
    match next.map(str::trim) {
        Some(n) if crate::storage::orgs::is_same_site_path(n) => n.to_string(),
        _ => "/projects".to_string(),
    }
}

/// An error page for an API error (its status and message).
fn error_page(user: Option<&PageUser>, e: &ApiError) -> Response {
    let status = e.code.status();
    if status.is_server_error() {
        tracing::error!(code = ?e.code, detail = %e.detail, internal = ?e.internal, "a page failed");
    }
    render(
        status,
        "error.html",
        minijinja::context! {
            user => user.map(user_context),
            status => status.as_u16(),
            title => status.canonical_reason().unwrap_or("Error"),
            message => e.detail.clone(),
        },
    )
}

/// What every signed-in page shows about the user.
fn user_context(user: &PageUser) -> minijinja::Value {
    let orgs: Vec<minijinja::Value> = user
        .orgs
        .iter()
        .map(|(id, title)| minijinja::context! { id => *id, title => title.clone() })
        .collect();
    minijinja::context! {
        email => user.actor.email.clone(),
        role => user.actor.role.as_str(),
        csrf_token => user.session.csrf_token.clone(),
        org_id => user.actor.org_id,
        orgs => orgs,
        brand => brand_context(user.actor.org_id, &user.brand),
        unread_notifications => user.unread_notifications,
        // The organization settings link (the pages refuse others anyway).
        can_manage_org => user.actor.can(crate::authz::Permission::OrgManage),
    }
}

/// What the header shows of an organization's branding (ADR 0045).
fn brand_context(org_id: i64, brand: &orgs::Branding) -> minijinja::Value {
    minijinja::context! {
        org_id => org_id,
        product_name => brand.product_name.clone(),
        logo => brand.logo.clone(),
        accent => !brand.accent_color.is_empty(),
    }
}

/// `/brand/{org}/accent.css`: the organization's accent colour as a stylesheet, so that pages
/// keep `style-src 'self'` (no inline style), with the text colours derived from it (ADR 0056).
/// Empty for an organization without one (or none).
async fn accent_css(
    axum::extract::State(state): axum::extract::State<AppState>,
    AxumPath(org): AxumPath<i64>,
) -> Response {
    let css = match orgs::branding(&state.db, org).await {
        // Validated as #rrggbb when stored; the text colours derived from it meet AA contrast.
        Ok(b) => colour::parse_hex(&b.accent_color)
            .map(colour::accent_stylesheet)
            .unwrap_or_default(),
        Err(e) => return error_page(None, &e),
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "text/css; charset=utf-8")
        .body(Body::from(css))
        .unwrap_or_default()
}

/// Where a sign-in into organization `org_id` lands: `next` when it was asked for, else the
/// organization's `login_redirect_url` (a same-site path, checked again here), else `/projects`.
async fn landing(state: &AppState, org_id: i64, next: &str) -> String {
    if next != "/projects" {
        return next.to_string();
    }
    match orgs::branding(&state.db, org_id).await {
        Ok(b) if !b.login_redirect_url.is_empty() => safe_next(Some(&b.login_redirect_url)),
        _ => next.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        let env = templates();
        for name in [
            "base.html",
            "account.html",
            "login.html",
            "signup.html",
            "logout.html",
            "projects.html",
            "data.html",
            "confirm.html",
            "settings.html",
            "error.html",
            "label.html",
            "project_nav.html",
            "review.html",
            "dashboard.html",
            "members.html",
            "project_members.html",
            "workspaces.html",
            "workspace.html",
            "import.html",
            "import_status.html",
            "export.html",
            "notifications.html",
            "org_settings.html",
            "analytics.html",
            "day_columns.html",
            "day_rows.html",
            "storage.html",
            "storage_form.html",
        ] {
            assert!(env.get_template(name).is_ok(), "{name} does not parse");
        }
    }

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/projects/3/data")), "/projects/3/data");
        assert_eq!(safe_next(Some("//evil.example")), "/projects");
        assert_eq!(safe_next(Some("https://evil.example")), "/projects");
        assert_eq!(safe_next(Some("/\\evil.example")), "/projects");
        for sneaky in [
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r//evil.example",
            "/ /evil.example",
        ] {
            assert_eq!(safe_next(Some(sneaky)), "/projects", "{sneaky:?}");
        }
        assert_eq!(safe_next(None), "/projects");
    }

    #[test]
    fn secrets_compare_by_value_and_never_empty() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abd", "abc"));
        assert!(!same_secret("", ""));
    }
}
