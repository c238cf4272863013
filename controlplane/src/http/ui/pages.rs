//! The page handlers: sign-in, sign-up, sign-out, projects, the task table and settings.
//!
//! Forms post back to the page they were on. Every form of a signed-in page carries the
//! session's CSRF token; the sign-in and sign-up forms, which come before a session, carry a
//! token that must match the [`FORM_COOKIE`] set with the form (double submit).

use axum::{
    extract::{FromRequest, Request, State},
    http::{StatusCode, header, request::Parts},
    response::Response,
};
use minijinja::context;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    FORM_COOKIE, PageUser, SESSION_COOKIE, cookie_value, error_page, redirect, render, safe_next,
    same_secret, set_cookie, user_context,
};
use crate::{
    auth,
    authz::{Permission, Role},
    error::{ApiError, ErrorCode},
    http::{AppState, extract::request_meta},
    storage::{
        access, orgs, projects,
        sessions::{self, Lockout},
        tasks,
    },
    webhooks::{Action, Subject},
};

/// Projects per page.
const PROJECTS_PER_PAGE: i64 = 30;

/// Labeling configurations a new project can start from: key, name, XML.
pub(super) const TEMPLATES: &[(&str, &str, &str)] = &[
    (
        "text_classification",
        "Text classification",
        "<View>\n  <Text name=\"text\" value=\"$text\"/>\n  <Choices name=\"sentiment\" toName=\"text\" choice=\"single\" showInLine=\"true\">\n    <Choice value=\"Positive\"/>\n    <Choice value=\"Negative\"/>\n    <Choice value=\"Neutral\"/>\n  </Choices>\n</View>",
    ),
    (
        "named_entities",
        "Named entity recognition",
        "<View>\n  <Labels name=\"label\" toName=\"text\">\n    <Label value=\"Person\"/>\n    <Label value=\"Organization\"/>\n    <Label value=\"Location\"/>\n  </Labels>\n  <Text name=\"text\" value=\"$text\"/>\n</View>",
    ),
    (
        "image_boxes",
        "Object detection with bounding boxes",
        "<View>\n  <Image name=\"image\" value=\"$image\"/>\n  <RectangleLabels name=\"label\" toName=\"image\">\n    <Label value=\"Car\"/>\n    <Label value=\"Person\"/>\n  </RectangleLabels>\n</View>",
    ),
];

/// A JSON value as a template value.
pub(super) fn js<T: serde::Serialize>(value: &T) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(value))
}

fn form_token() -> String {
    auth::random_secret(32)
}

/// Parses a url-encoded form body; a body that is not one is a 400 page.
pub(super) async fn read_form<T: serde::de::DeserializeOwned>(
    state: &AppState,
    parts: Parts,
    body: axum::body::Body,
) -> Result<(Parts, T), Response> {
    let copy = Request::from_parts(parts.clone(), body);
    match axum::Form::<T>::from_request(copy, state).await {
        Ok(axum::Form(value)) => Ok((parts, value)),
        Err(rejection) => Err(error_page(
            None,
            &ApiError::new(
                ErrorCode::ValidationError,
                format!("the form could not be read: {}", rejection.body_text()),
            ),
        )),
    }
}

/// A form of a signed-in page: it carries the session's CSRF token.
pub(super) trait CsrfForm: serde::de::DeserializeOwned {
    /// The token the form sent.
    fn csrf_token(&self) -> &str;
}

/// Implements [`CsrfForm`] for forms with a `csrf_token: String` field.
macro_rules! csrf_forms {
    ($($form:ty),+ $(,)?) => {$(
        impl $crate::http::ui::pages::CsrfForm for $form {
            fn csrf_token(&self) -> &str {
                &self.csrf_token
            }
        }
    )+};
}
pub(super) use csrf_forms;

/// Reads the form of a signed-in page and checks its CSRF token ([`read_form`] then
/// [`csrf_refusal`]): the form, or the page to answer with.
pub(super) async fn read_checked_form<T: CsrfForm>(
    state: &AppState,
    user: &PageUser,
    parts: Parts,
    body: axum::body::Body,
) -> Result<(Parts, T), Response> {
    let (parts, form) = read_form::<T>(state, parts, body).await?;
    match csrf_refusal(user, form.csrf_token()) {
        Some(refused) => Err(refused),
        None => Ok((parts, form)),
    }
}

/// The signed-in user of a form post and its form, CSRF-checked (the sign-in page or the
/// refusal otherwise).
pub(super) async fn signed_in_form<T: CsrfForm>(
    state: &AppState,
    request: Request,
) -> Result<(PageUser, Parts, T), Response> {
    let (parts, body) = request.into_parts();
    let user = super::page_user(state, &parts).await?;
    let (parts, form) = read_checked_form::<T>(state, &user, parts, body).await?;
    Ok((user, parts, form))
}

/// The same for a form posted to a `/projects/{id}/…` page, with the project id of its path.
pub(super) async fn project_form<T: CsrfForm>(
    state: &AppState,
    request: Request,
) -> Result<(PageUser, i64, Parts, T), Response> {
    let (parts, body) = request.into_parts();
    let (user, id) = project_page_user(state, &parts).await?;
    let (parts, form) = read_checked_form::<T>(state, &user, parts, body).await?;
    Ok((user, id, parts, form))
}

/// The form CSRF check of a signed-in page: the field must carry the session's token. Returns
/// the refusal page when it does not.
pub(super) fn csrf_refusal(user: &PageUser, given: &str) -> Option<Response> {
    if same_secret(given, &user.session.csrf_token) {
        None
    } else {
        Some(error_page(
            Some(user),
            &ApiError::new(
                ErrorCode::CsrfFailed,
                "This form was not sent from a page of this site, or the page is out of date. Go back, reload the page and try again.",
            ),
        ))
    }
}

/// `/`: the projects when signed in, else the sign-in page.
pub(super) async fn home(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    match super::page_user(&state, &parts).await {
        Ok(_) => redirect("/projects"),
        Err(_) => redirect("/user/login"),
    }
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct LoginQuery {
    next: Option<String>,
    /// The organization whose sign-in link this is: the page shows its branding.
    org: Option<String>,
}

/// The organization of a sign-in link (`?org=<id>`) and its branding, if the value is an id.
async fn login_brand(state: &AppState, org: Option<&str>) -> Option<(i64, orgs::Branding)> {
    let id = org?.trim().parse::<i64>().ok()?;
    let brand = orgs::branding(&state.db, id).await.ok()?;
    Some((id, brand))
}

/// Renders the sign-in form with a fresh form token (set as a cookie as well).
fn login_form(
    state: &AppState,
    parts: &Parts,
    status: StatusCode,
    email: &str,
    next: &str,
    error: Option<&str>,
    brand: Option<&(i64, orgs::Branding)>,
) -> Response {
    let token = form_token();
    let mut response = render(
        status,
        "login.html",
        context! {
            form_token => token.clone(),
            email => email,
            next => next,
            error => error,
            org => brand.map(|(id, _)| *id),
            brand => brand.map(|(id, b)| super::brand_context(*id, b)),
        },
    );
    if let Ok(v) = set_cookie(state, &parts.headers, FORM_COOKIE, &token, Some(3600)).parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// `GET /user/login`.
pub(super) async fn login_page(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    if super::page_user(&state, &parts).await.is_ok() {
        return redirect("/projects");
    }
    let query: LoginQuery = parts
        .uri
        .query()
        .and_then(serde_urlencoded_from)
        .unwrap_or_default();
    let next = safe_next(query.next.as_deref());
    let brand = login_brand(&state, query.org.as_deref()).await;
    login_form(
        &state,
        &parts,
        StatusCode::OK,
        "",
        &next,
        None,
        brand.as_ref(),
    )
}

pub(super) fn serde_urlencoded_from<T: serde::de::DeserializeOwned>(query: &str) -> Option<T> {
    let uri: axum::http::Uri = format!("/?{query}").parse().ok()?;
    axum::extract::Query::<T>::try_from_uri(&uri)
        .ok()
        .map(|q| q.0)
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    org: Option<String>,
    #[serde(default)]
    form_token: String,
}

/// `POST /user/login`: checks the password and opens a session.
pub(super) async fn login(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (parts, form) = match read_form::<LoginForm>(&state, parts, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let next = safe_next(form.next.as_deref());
    let brand = login_brand(&state, form.org.as_deref()).await;
    let cookie = cookie_value(&parts.headers, FORM_COOKIE).unwrap_or_default();
    if !same_secret(&form.form_token, &cookie) {
        return login_form(
            &state,
            &parts,
            StatusCode::FORBIDDEN,
            &form.email,
            &next,
            Some("This form is out of date or was not sent from this site. Please try again."),
            brand.as_ref(),
        );
    }
    let meta = request_meta(&parts, state.config.trust_forwarded_for);
    let lockout = Lockout {
        max_failures: state.config.login_max_failures,
        lock_secs: state.config.login_lockout_secs,
    };
    let ttl = state.config.session_ttl_hours.saturating_mul(3600);
    let signed = crate::http::routes::ldap::sign_in(
        &state,
        &meta,
        &form.email,
        &form.password,
        lockout,
        ttl,
    );
    match signed.await {
        Ok(session) => {
            // The organization signed in to decides where a sign-in without `next` lands.
            let to = match sessions::actor_for_session(&state.db, &session.token).await {
                Ok(Some((actor, _))) => super::landing(&state, actor.org_id, &next).await,
                _ => next,
            };
            signed_in(&state, &parts, &session, &to)
        }
        Err(e) if e.code.status().is_client_error() => login_form(
            &state,
            &parts,
            e.code.status(),
            &form.email,
            &next,
            Some(&e.detail),
            brand.as_ref(),
        ),
        Err(e) => error_page(None, &e),
    }
}

/// Sets the session cookie (and drops the form cookie) and goes to `next`.
fn signed_in(
    state: &AppState,
    parts: &Parts,
    session: &sessions::NewSession,
    next: &str,
) -> Response {
    let mut response = redirect(next);
    let ttl = state.config.session_ttl_hours.saturating_mul(3600);
    for value in [
        set_cookie(
            state,
            &parts.headers,
            SESSION_COOKIE,
            &session.token,
            Some(ttl),
        ),
        set_cookie(state, &parts.headers, FORM_COOKIE, "", None),
    ] {
        if let Ok(v) = value.parse() {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// `GET /user/logout`: asks, because signing out changes state and links must not.
pub(super) async fn logout_page(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    match super::page_user(&state, &parts).await {
        Ok(user) => render(
            StatusCode::OK,
            "logout.html",
            context! { user => user_context(&user) },
        ),
        Err(_) => redirect("/user/login"),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct LogoutForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    everywhere: Option<String>,
}

/// `POST /user/logout`: ends this session, or every session of the user.
pub(super) async fn logout(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let user = match super::page_user(&state, &parts).await {
        Ok(u) => u,
        Err(_) => return redirect("/user/login"),
    };
    let (parts, form) = match read_checked_form::<LogoutForm>(&state, &user, parts, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let everywhere = form.everywhere.is_some_and(|v| !v.is_empty());
    if let Err(e) = sessions::sign_out(&state.db, &user.actor, user.session.id, everywhere).await {
        return error_page(Some(&user), &e);
    }
    let mut response = redirect("/user/login");
    if let Ok(v) = set_cookie(&state, &parts.headers, SESSION_COOKIE, "", None).parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct SignupQuery {
    token: Option<String>,
    /// The spelling of earlier invitation links.
    invitation: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct SignupForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    form_token: String,
}

fn signup_form(
    state: &AppState,
    parts: &Parts,
    status: StatusCode,
    form: &SignupForm,
    error: Option<&str>,
) -> Response {
    let token = form_token();
    let mut response = render(
        status,
        "signup.html",
        context! {
            form_token => token.clone(),
            token => form.token.clone(),
            email => form.email.clone(),
            first_name => form.first_name.clone(),
            last_name => form.last_name.clone(),
            error => error,
        },
    );
    if let Ok(v) = set_cookie(state, &parts.headers, FORM_COOKIE, &token, Some(3600)).parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// `GET /user/signup?token=…`: the invitation's sign-up form.
pub(super) async fn signup_page(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let query: SignupQuery = parts
        .uri
        .query()
        .and_then(serde_urlencoded_from)
        .unwrap_or_default();
    let token = query.token.or(query.invitation).unwrap_or_default();
    if token.is_empty() {
        return error_page(
            None,
            &ApiError::new(
                ErrorCode::InvalidInvitation,
                "Sign-up needs an invitation link; ask an administrator of your organization for one.",
            ),
        );
    }
    let form = SignupForm {
        token,
        ..SignupForm::default()
    };
    signup_form(&state, &parts, StatusCode::OK, &form, None)
}

/// `POST /user/signup`: creates the account from the invitation and signs it in.
pub(super) async fn signup(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (parts, form) = match read_form::<SignupForm>(&state, parts, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let cookie = cookie_value(&parts.headers, FORM_COOKIE).unwrap_or_default();
    if !same_secret(&form.form_token, &cookie) {
        return signup_form(
            &state,
            &parts,
            StatusCode::FORBIDDEN,
            &form,
            Some("This form is out of date or was not sent from this site. Please try again."),
        );
    }
    let meta = request_meta(&parts, state.config.trust_forwarded_for);
    let signup = orgs::Signup {
        email: form.email.trim().to_string(),
        password: Some(form.password.clone()),
        first_name: form.first_name.trim().to_string(),
        last_name: form.last_name.trim().to_string(),
    };
    let user_id = match orgs::accept_invitation(&state.db, &meta, &form.token, &signup).await {
        Ok((user_id, _api_token)) => user_id,
        Err(e) if e.code.status().is_client_error() => {
            return signup_form(&state, &parts, e.code.status(), &form, Some(&e.detail));
        }
        Err(e) => return error_page(None, &e),
    };
    let ttl = state.config.session_ttl_hours.saturating_mul(3600);
    match sessions::open_for_user(&state.db, &meta, user_id, ttl, "password").await {
        Ok(session) => signed_in(&state, &parts, &session, "/projects"),
        Err(e) => error_page(None, &e),
    }
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct PageQuery {
    page: Option<String>,
}

pub(super) fn page_number(parts: &Parts) -> i64 {
    parts
        .uri
        .query()
        .and_then(serde_urlencoded_from::<PageQuery>)
        .and_then(|q| q.page)
        .and_then(|p| p.trim().parse::<i64>().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(1)
}

fn percent(done: i64, total: i64) -> i64 {
    if total <= 0 {
        0
    } else {
        (done.saturating_mul(100) / total).clamp(0, 100)
    }
}

/// Renders the project list (with the create form for those who may create).
async fn projects_view(
    state: &AppState,
    user: &PageUser,
    page: i64,
    status: StatusCode,
    form: Option<(&CreateProjectForm, &str)>,
) -> Response {
    let offset = (page - 1).saturating_mul(PROJECTS_PER_PAGE);
    let (count, list) = match projects::list(
        &state.db,
        &user.actor,
        &projects::ProjectFilter::default(),
        offset,
        PROJECTS_PER_PAGE,
    )
    .await
    {
        Ok(v) => v,
        Err(e) => return error_page(Some(user), &e),
    };
    let rows: Vec<Value> = list
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "title": p.title,
                "description": p.settings.description,
                "tasks": p.task_number,
                "finished": p.finished_task_number,
                "annotations": p.total_annotations_number,
                "percent": percent(p.finished_task_number, p.task_number),
            })
        })
        .collect();
    let pages = ((count + PROJECTS_PER_PAGE - 1) / PROJECTS_PER_PAGE).max(1);
    let templates: Vec<Value> = TEMPLATES
        .iter()
        .map(|(key, name, _)| json!({"key": key, "name": name}))
        .collect();
    let (values, error) = match form {
        Some((f, e)) => (
            json!({"title": f.title, "description": f.description, "template": f.template, "label_config": f.label_config}),
            Some(e.to_string()),
        ),
        None => (json!({"template": TEMPLATES[0].0}), None),
    };
    render(
        status,
        "projects.html",
        context! {
            user => user_context(user),
            projects => js(&rows),
            count => count,
            page => page,
            pages => pages,
            can_create => user.actor.can(Permission::ProjectCreate),
            templates => js(&templates),
            values => js(&values),
            error => error,
        },
    )
}

/// `GET /projects`.
pub(super) async fn projects_page(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let user = match super::page_user(&state, &parts).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    projects_view(&state, &user, page_number(&parts), StatusCode::OK, None).await
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct CreateProjectForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    template: String,
    #[serde(default)]
    label_config: String,
}

/// `POST /projects`: creates a project from a template (or a configuration of one's own).
pub(super) async fn create_project(State(state): State<AppState>, request: Request) -> Response {
    let (user, _, form) = match signed_in_form::<CreateProjectForm>(&state, request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let config = if form.template == "custom" {
        form.label_config.clone()
    } else {
        match TEMPLATES.iter().find(|(key, _, _)| *key == form.template) {
            Some((_, _, xml)) => (*xml).to_string(),
            None => {
                return projects_view(
                    &state,
                    &user,
                    1,
                    StatusCode::BAD_REQUEST,
                    Some((&form, "Choose one of the templates.")),
                )
                .await;
            }
        }
    };
    let mut body = Map::new();
    body.insert("title".into(), Value::String(form.title.trim().to_string()));
    body.insert(
        "description".into(),
        Value::String(form.description.trim().to_string()),
    );
    body.insert("label_config".into(), Value::String(config));
    match projects::create(&state.db, &user.actor, &state.sealer, &body).await {
        Ok(created) => {
            crate::webhooks::emit(
                &state.db,
                &state.jobs,
                user.actor.org_id,
                Some(created.id),
                Action::ProjectCreated,
                Subject::Project(created.id),
            )
            .await;
            redirect(&format!("/projects/{}/data", created.id))
        }
        Err(e) if e.code.status().is_client_error() => {
            projects_view(&state, &user, 1, e.code.status(), Some((&form, &e.detail))).await
        }
        Err(e) => error_page(Some(&user), &e),
    }
}

/// What the project pages' header shows; the navigation offers the pages that `role` (the
/// user's role in the project) may open.
pub(super) fn project_header(p: &projects::ProjectView, role: Role) -> Value {
    json!({
        "id": p.id,
        "title": p.title,
        "tasks": p.task_number,
        "finished": p.finished_task_number,
        "annotations": p.total_annotations_number,
        "percent": percent(p.finished_task_number, p.task_number),
        "can_change": role >= Permission::ProjectChange.minimum_role(),
        "can_review": role >= Permission::ReviewCreate.minimum_role(),
        "can_dashboard": role >= Permission::AgreementView.minimum_role(),
        "can_import": role >= Permission::TaskManage.minimum_role(),
        "can_export": role >= Permission::ExportRun.minimum_role(),
        "can_storage": role >= Permission::StorageManage.minimum_role(),
    })
}

/// The user's role in project `id` (for the navigation), or the page that refuses them when
/// they lack `permission` there, as the API would.
pub(super) async fn project_role(
    state: &AppState,
    user: &PageUser,
    id: i64,
    permission: Permission,
) -> Result<Role, Response> {
    access::project(&state.db, &user.actor, id, permission)
        .await
        .map(|a| a.role)
        .map_err(|e| error_page(Some(user), &e))
}

/// The 404 page of a project path whose `{id}` is not a number.
/// The signed-in user of a `/projects/{id}/…` page and the project id of its path; a path
/// whose id is not a number answers the not-found page.
pub(super) async fn project_page_user(
    state: &AppState,
    parts: &Parts,
) -> Result<(PageUser, i64), Response> {
    let user = super::page_user(state, parts).await?;
    match parts.uri.path().split('/').nth(2).map(str::parse::<i64>) {
        Some(Ok(id)) => Ok((user, id)),
        _ => Err(error_page(Some(&user), &ApiError::not_found("project"))),
    }
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct SettingsForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    label_config: String,
    #[serde(default)]
    expert_instruction: String,
    #[serde(default)]
    show_instruction: Option<String>,
}

fn settings_view(
    user: &PageUser,
    project: &projects::ProjectView,
    role: Role,
    status: StatusCode,
    values: Value,
    error: Option<&str>,
    saved: bool,
) -> Response {
    render(
        status,
        "settings.html",
        context! {
            user => user_context(user),
            project => js(&project_header(project, role)),
            values => js(&values),
            error => error,
            saved => saved,
        },
    )
}

fn current_values(p: &projects::ProjectView) -> Value {
    json!({
        "title": p.title,
        "description": p.settings.description,
        "label_config": p.label_config,
        "expert_instruction": p.settings.expert_instruction,
        "show_instruction": p.settings.show_instruction,
    })
}

/// `GET /projects/{id}/settings`: for those who may change the project (403 otherwise, as the API).
pub(super) async fn settings_page(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let (user, id) = match project_page_user(&state, &parts).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let role = match project_role(&state, &user, id, Permission::ProjectChange).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let project = match projects::get(&state.db, &user.actor, id).await {
        Ok(p) => p,
        Err(e) => return error_page(Some(&user), &e),
    };
    let saved = parts.uri.query().is_some_and(|q| q.contains("saved=1"));
    let values = current_values(&project);
    settings_view(&user, &project, role, StatusCode::OK, values, None, saved)
}

/// `POST /projects/{id}/settings`: applies the form through the same update as the API's PATCH.
pub(super) async fn save_settings(State(state): State<AppState>, request: Request) -> Response {
    let (user, id, _, form) = match project_form::<SettingsForm>(&state, request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let show_instruction = form
        .show_instruction
        .as_deref()
        .is_some_and(|v| !v.is_empty());
    let mut body = Map::new();
    body.insert("title".into(), Value::String(form.title.trim().to_string()));
    body.insert(
        "description".into(),
        Value::String(form.description.clone()),
    );
    body.insert(
        "label_config".into(),
        Value::String(form.label_config.clone()),
    );
    body.insert(
        "expert_instruction".into(),
        Value::String(form.expert_instruction.clone()),
    );
    body.insert("show_instruction".into(), Value::Bool(show_instruction));
    // Fields a custom resource owns are not sent when unchanged, so a Git-managed project's
    // other settings can still be saved here.
    let current = match projects::get(&state.db, &user.actor, id).await {
        Ok(p) => p,
        Err(e) => return error_page(Some(&user), &e),
    };
    let now = current_values(&current);
    for field in &current.managed_fields {
        if body.get(field) == now.get(field) {
            body.remove(field);
        }
    }
    match projects::update(&state.db, &user.actor, &state.sealer, id, &body).await {
        Ok(_) => {
            crate::agreement::after_update(&state.db, &state.jobs, id, &body).await;
            crate::webhooks::emit(
                &state.db,
                &state.jobs,
                user.actor.org_id,
                Some(id),
                Action::ProjectUpdated,
                Subject::Project(id),
            )
            .await;
            redirect(&format!("/projects/{id}/settings?saved=1"))
        }
        Err(e) if e.code.status().is_client_error() && e.code != ErrorCode::NotFound => {
            let values = json!({
                "title": form.title,
                "description": form.description,
                "label_config": form.label_config,
                "expert_instruction": form.expert_instruction,
                "show_instruction": show_instruction,
            });
            let role = match project_role(&state, &user, id, Permission::ProjectView).await {
                Ok(r) => r,
                Err(r) => return r,
            };
            settings_view(
                &user,
                &current,
                role,
                e.code.status(),
                values,
                Some(&e.detail),
                false,
            )
        }
        Err(e) => error_page(Some(&user), &e),
    }
}

/// `GET /projects/{id}/label`: the label stream in Label Studio's editor. The page itself only
/// loads the editor and `label.js`, which takes tasks from `/api/projects/{id}/next` and submits
/// through `/api/tasks/{id}/annotations` with the session cookie and CSRF token.
pub(super) async fn label_page(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let (user, id) = match project_page_user(&state, &parts).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    label_view(&state, &user, id, None).await
}

/// What a deep link into the editor names, in Label Studio's shape
/// `/projects/{id}/data?task=…&annotation=…&region=…` (ADR 0044).
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct DeepLink {
    /// The task to open.
    pub task: i64,
    /// The annotation of that task to select.
    pub annotation: Option<i64>,
    /// The region (result id) of that annotation to select.
    pub region: Option<String>,
}

/// The labeling page: the label stream (`link` is `None`; needs `annotation.create`), or one
/// task named by a deep link (needs what reading the task through the API needs, and answers
/// the API's 404 for a task, or annotation, the caller may not see).
pub(super) async fn label_view(
    state: &AppState,
    user: &PageUser,
    id: i64,
    link: Option<DeepLink>,
) -> Response {
    let needs = if link.is_some() {
        Permission::ProjectView
    } else {
        Permission::AnnotationCreate
    };
    let role = match project_role(state, user, id, needs).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut own_annotation = None;
    if let Some(l) = &link {
        let task = match tasks::get(&state.db, &user.actor, l.task).await {
            Ok(t) if t.project == id => t,
            Ok(_) => return error_page(Some(user), &ApiError::not_found("task")),
            Err(e) => return error_page(Some(user), &e),
        };
        if let Some(a) = l.annotation {
            let listed = task.annotations.as_deref().unwrap_or_default();
            let Some(shown) = listed.iter().find(|x| x.id == a) else {
                return error_page(Some(user), &ApiError::not_found("annotation"));
            };
            // Only its author gets the form that turns it into a draft.
            if shown.completed_by == Some(user.actor.user_id)
                && role >= Permission::AnnotationCreate.minimum_role()
            {
                own_annotation = Some(a);
            }
        }
    }
    let project = match projects::get(&state.db, &user.actor, id).await {
        Ok(p) => p,
        Err(e) => return error_page(Some(user), &e),
    };
    let mut response = render(
        StatusCode::OK,
        "label.html",
        context! {
            user => user_context(user),
            project => js(&project_header(&project, role)),
            editor => !state.config.editor_dir.is_empty(),
            link => link.as_ref().map(js),
            can_annotate => role >= Permission::AnnotationCreate.minimum_role(),
            own_annotation => own_annotation,
        },
    );
    if !state.config.editor_dir.is_empty() {
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            axum::http::HeaderValue::from_static(super::EDITOR_CONTENT_SECURITY_POLICY),
        );
    }
    response
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct ConvertDraftForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    annotation: String,
}

/// `POST /projects/{id}/label/convert-to-draft`: turns the caller's own annotation of this
/// project into their draft through the code of `POST /api/annotations/{id}/convert-to-draft`
/// (anyone else is refused there with `not_author`), then opens its task, where the draft is
/// restored into the editor.
pub(super) async fn convert_draft_post(
    State(state): State<AppState>,
    request: Request,
) -> Response {
    let (user, id, _, form) = match project_form::<ConvertDraftForm>(&state, request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Ok(annotation) = form.annotation.trim().parse::<i64>() else {
        return error_page(Some(&user), &ApiError::not_found("annotation"));
    };
    // An annotation of another project is not one of this page's.
    match crate::storage::annotations::get_row(&state.db, &user.actor, annotation).await {
        Ok(row) if row.project_id == id => {}
        Ok(_) => return error_page(Some(&user), &ApiError::not_found("annotation")),
        Err(e) => return error_page(Some(&user), &e),
    }
    match crate::http::routes::annotations::convert_to_draft(&state, &user.actor, annotation).await
    {
        Ok(draft) => super::redirect(&format!("/projects/{id}/data?task={}", draft.task)),
        Err(e) => error_page(Some(&user), &e),
    }
}

csrf_forms!(
    LogoutForm,
    CreateProjectForm,
    SettingsForm,
    ConvertDraftForm
);
