//! The project's cloud storage settings (`/projects/{id}/settings/storage`, ADR 0056): the
//! source (import) and target (export) storages of a project side by side, as Label Studio lays
//! them out, with Check connection, Sync, Edit and Remove for each, and a form per storage type
//! to connect a new one or change one.
//!
//! Every change goes through the functions of the `/api/storages/…` routes
//! ([`storages::create_storage`], [`storages::update_storage`], [`storages::validate_storage`],
//! [`storages::start_sync`], [`storages::delete_storage`]) with an API body built from the form,
//! so the checks, the outbound policy and the sealing of credentials are the API's. The page
//! needs `storage.manage`, as the API. Credentials are write-only: the form never shows one
//! back, and a credential left empty when editing is left out of the body, which keeps it.

use axum::{
    extract::{Request, State},
    http::StatusCode,
    response::Response,
};
use minijinja::context;
use serde_json::{Map, Value, json};

use super::{
    PageUser, done_param, error_page,
    pages::{csrf_refusal, js, project_header, project_page_user, project_role, read_form},
    redirect, render, user_context,
};
use crate::{
    authz::{Permission, Role},
    error::{ApiError, ErrorCode},
    http::{AppState, routes::storages},
    storage::{projects, storages::Direction},
};

/// Seconds between the reloads of the page while a sync it started runs.
const REFRESH_SECS: u32 = 1;

/// How a form field is entered.
#[derive(Clone, Copy, PartialEq)]
enum Input {
    Text,
    /// A long text (descriptions).
    Area,
    Number,
    Check,
    /// A credential: never shown back; left empty, the stored one stays.
    Secret,
    /// A credential entered as a file's contents (the GCS service-account key).
    SecretArea,
}

/// A field of a storage form: its API name, label, how it is entered, and help.
struct Field {
    name: &'static str,
    label: &'static str,
    input: Input,
    help: &'static str,
}

const fn f(name: &'static str, label: &'static str, input: Input, help: &'static str) -> Field {
    Field {
        name,
        label,
        input,
        help,
    }
}

/// The storage types, as `/api/storages/types` names them.
const KINDS: &[(&str, &str)] = &[
    ("localfiles", "Local files"),
    ("s3", "AWS S3"),
    ("s3s", "AWS S3 (IAM role)"),
    ("gcs", "Google Cloud Storage"),
    ("azure", "Microsoft Azure"),
    ("azure_spi", "Microsoft Azure (service principal)"),
];

/// The fields of storage type `kind` in `direction`, in the order the form shows them (each
/// named as the API's body names it). `None` for an unknown type.
fn fields_of(kind: &str, direction: Direction) -> Option<Vec<Field>> {
    use Input::*;
    let import = direction == Direction::Import;
    let mut fields = vec![
        f("title", "Title", Text, ""),
        f("description", "Description", Area, ""),
    ];
    match kind {
        "localfiles" => fields.push(f(
            "path",
            "Directory",
            Text,
            "An absolute path under the server's local-files root, or one relative to it.",
        )),
        "s3" | "s3s" => {
            fields.extend([
                f("bucket", "Bucket", Text, ""),
                f(
                    "prefix",
                    "Prefix",
                    Text,
                    "A folder of the bucket; empty: the whole bucket.",
                ),
                f("region_name", "Region", Text, "For example us-east-1."),
                f(
                    "s3_endpoint",
                    "S3 endpoint",
                    Text,
                    "An S3-compatible service's URL; empty: AWS.",
                ),
            ]);
            // An `s3s` storage keeps no keys: the server's identity assumes its role (ADR
            // 0054 addendum).
            if kind == "s3" {
                fields.extend([
                    f("aws_access_key_id", "Access key ID", Secret, ""),
                    f("aws_secret_access_key", "Secret access key", Secret, ""),
                    f("aws_session_token", "Session token", Secret, ""),
                ]);
            }
            fields.extend([
                f(
                    "role_arn",
                    "Role ARN",
                    Text,
                    "An IAM role to assume for temporary credentials.",
                ),
                f(
                    "external_id",
                    "External ID",
                    Text,
                    "Sent when assuming the role.",
                ),
            ]);
        }
        "gcs" => fields.extend([
            f("bucket", "Bucket", Text, ""),
            f(
                "prefix",
                "Prefix",
                Text,
                "A folder of the bucket; empty: the whole bucket.",
            ),
            f("google_project_id", "Google Cloud project ID", Text, ""),
            f(
                "gcs_endpoint",
                "GCS endpoint",
                Text,
                "A GCS-compatible service's URL; empty: Google's.",
            ),
            f(
                "google_application_credentials",
                "Service-account key (JSON)",
                SecretArea,
                "The contents of the key file; empty with no key stored: anonymous access.",
            ),
        ]),
        "azure" | "azure_spi" => {
            fields.extend([
                f("container", "Container", Text, ""),
                f(
                    "prefix",
                    "Prefix",
                    Text,
                    "A folder of the container; empty: all of it.",
                ),
                f("account_name", "Storage account", Text, ""),
                f(
                    "azure_endpoint",
                    "Account URL",
                    Text,
                    "Empty: https://<account>.blob.core.windows.net.",
                ),
            ]);
            // An `azure_spi` storage signs in only as its service principal.
            if kind == "azure" {
                fields.push(f("account_key", "Account key", Secret, ""));
            }
            fields.extend([
                f("tenant_id", "Service principal: tenant ID", Text, ""),
                f("client_id", "Service principal: client ID", Text, ""),
                f(
                    "client_secret",
                    "Service principal: client secret",
                    Secret,
                    "",
                ),
            ]);
        }
        _ => return None,
    }
    fields.push(f(
        "regex_filter",
        "File filter (regular expression)",
        Text,
        "Only keys that match; empty: all.",
    ));
    if import {
        fields.push(f(
            "use_blob_urls",
            "Treat every file as a task (media); otherwise files hold tasks as JSON",
            Check,
            "",
        ));
        if kind != "localfiles" {
            fields.extend([
                f("presign", "Serve media through presigned URLs", Check, ""),
                f(
                    "presign_ttl",
                    "Presigned URL lifetime (minutes)",
                    Number,
                    "",
                ),
                f("recursive_scan", "Scan sub-folders too", Check, ""),
            ]);
        }
    } else {
        fields.push(f(
            "can_delete_objects",
            "Delete the exported file when its annotation is deleted",
            Check,
            "",
        ));
    }
    Some(fields)
}

/// The storage types for a selector, in the API's order.
fn kind_list() -> Vec<Value> {
    KINDS
        .iter()
        .map(|(k, t)| json!({"name": k, "title": t}))
        .collect()
}

fn direction_of(text: &str) -> Option<Direction> {
    match text {
        "import" => Some(Direction::Import),
        "export" => Some(Direction::Export),
        _ => None,
    }
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The query of a page as name/value pairs.
fn query_pairs(parts: &axum::http::request::Parts) -> Vec<(String, String)> {
    parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

/// Which storage a form or link names: direction, type and (for an existing one) id. An
/// unknown direction or type is the not-found page's.
struct Target {
    direction: Direction,
    kind: String,
    id: Option<i64>,
}

impl Target {
    fn read(fields: &[(String, String)]) -> Result<Self, ApiError> {
        let direction = direction_of(field(fields, "direction").unwrap_or("import"))
            .ok_or_else(|| ApiError::not_found("storage"))?;
        let kind = field(fields, "type").unwrap_or("localfiles").to_string();
        if fields_of(&kind, direction).is_none() {
            return Err(ApiError::not_found("storage"));
        }
        let id = match field(fields, "storage")
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(s) => Some(s.parse().map_err(|_| ApiError::not_found("storage"))?),
            None => None,
        };
        Ok(Self {
            direction,
            kind,
            id,
        })
    }
}

/// What the list page shows besides the storages.
#[derive(Default)]
struct Notice {
    ok: Option<String>,
    error: Option<String>,
    /// A storage to ask about before removing it.
    confirm: Option<Value>,
    follow_syncs: bool,
}

fn running(status: &str) -> bool {
    matches!(status, "created" | "queued" | "in_progress")
}

/// The project header and the user's role, or the page that refuses them (`storage.manage`).
async fn header(state: &AppState, user: &PageUser, id: i64) -> Result<(Role, Value), Response> {
    let role = project_role(state, user, id, Permission::StorageManage).await?;
    let project = projects::get(&state.db, &user.actor, id)
        .await
        .map_err(|e| error_page(Some(user), &e))?;
    Ok((role, project_header(&project, role)))
}

/// Renders the list of the project's source and target storages.
async fn list_view(
    state: &AppState,
    user: &PageUser,
    id: i64,
    status: StatusCode,
    notice: Notice,
) -> Response {
    let (_, project) = match header(state, user, id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut lists = Vec::new();
    for direction in [Direction::Import, Direction::Export] {
        match storages::project_storages(state, &user.actor, direction, id).await {
            Ok(l) => lists.push(l),
            Err(e) => return error_page(Some(user), &e),
        }
    }
    let refresh = notice.follow_syncs
        && lists
            .iter()
            .flatten()
            .any(|s| running(s["status"].as_str().unwrap_or("")));
    let titles: Map<String, Value> = KINDS
        .iter()
        .map(|(k, t)| (k.to_string(), json!(t)))
        .collect();
    render(
        status,
        "storage.html",
        context! {
            user => user_context(user),
            project => js(&project),
            sources => js(&lists[0]),
            targets => js(&lists[1]),
            kinds => js(&titles),
            kind_list => js(&kind_list()),
            ok => notice.ok,
            error => notice.error,
            confirm => notice.confirm.map(|c| js(&c)),
            refresh => refresh.then_some(REFRESH_SECS),
        },
    )
}

/// `GET /projects/{id}/settings/storage`.
pub(super) async fn storage_page(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let (user, id) = match project_page_user(&state, &parts).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let done = done_param(&parts);
    let notice = Notice {
        follow_syncs: done.as_deref() == Some("sync"),
        ok: done.as_deref().and_then(|d| match d {
            "created" => Some("The storage is connected.".to_string()),
            "saved" => Some("The storage is saved.".to_string()),
            "removed" => Some("The storage is removed.".to_string()),
            "sync" => Some("The sync has started.".to_string()),
            _ => None,
        }),
        ..Notice::default()
    };
    list_view(&state, &user, id, StatusCode::OK, notice).await
}

/// Reads a storage page's form and checks its CSRF token and the user's `storage.manage`.
async fn checked_form(
    state: &AppState,
    request: Request,
) -> Result<(PageUser, i64, Vec<(String, String)>), Response> {
    let (parts, body) = request.into_parts();
    let (user, id) = project_page_user(state, &parts).await?;
    let (_, fields) = read_form::<Vec<(String, String)>>(state, parts, body).await?;
    if let Some(refused) = csrf_refusal(&user, field(&fields, "csrf_token").unwrap_or("")) {
        return Err(refused);
    }
    // Refused before anything is looked at, as the API does.
    project_role(state, &user, id, Permission::StorageManage).await?;
    Ok((user, id, fields))
}

/// The storage a list form names, as the API shows it; only one of project `id`.
async fn named_storage(
    state: &AppState,
    user: &PageUser,
    id: i64,
    target: &Target,
) -> Result<Value, ApiError> {
    let storage = target.id.ok_or_else(|| ApiError::not_found("storage"))?;
    let view =
        storages::get_storage(state, &user.actor, target.direction, &target.kind, storage).await?;
    if view["project"].as_i64() != Some(id) {
        return Err(ApiError::not_found("storage"));
    }
    Ok(view)
}

/// `POST /projects/{id}/settings/storage`: `op=check` checks a storage's connection as
/// `…/validate` does with its id; `op=sync` starts its sync; `op=delete` asks first, then (with
/// `confirmed=1`) removes it.
pub(super) async fn storage_post(State(state): State<AppState>, request: Request) -> Response {
    let (user, id, fields) = match checked_form(&state, request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let target = match Target::read(&fields) {
        Ok(t) => t,
        Err(e) => return error_page(Some(&user), &e),
    };
    let view = match named_storage(&state, &user, id, &target).await {
        Ok(v) => v,
        Err(e) => return error_page(Some(&user), &e),
    };
    let storage = target.id.unwrap_or_default();
    let name = match view["title"].as_str().filter(|t| !t.is_empty()) {
        Some(t) => t.to_string(),
        None => format!("Storage {storage}"),
    };
    let done: Result<Response, ApiError> = match field(&fields, "op").unwrap_or("") {
        "check" => {
            let mut body = Map::new();
            body.insert("id".into(), json!(storage));
            // A directory is looked at again (it may have gone since).
            if let Some(path) = view["path"].as_str() {
                body.insert("path".into(), json!(path));
            }
            match storages::validate_storage(
                &state,
                &user.actor,
                target.direction,
                &target.kind,
                &body,
            )
            .await
            {
                Ok(()) => {
                    let notice = Notice {
                        ok: Some(format!("{name}: the connection works.")),
                        ..Notice::default()
                    };
                    return list_view(&state, &user, id, StatusCode::OK, notice).await;
                }
                Err(e) => Err(e),
            }
        }
        "sync" => {
            storages::start_sync(&state, &user.actor, target.direction, &target.kind, storage)
                .await
                .map(|_| redirect(&format!("/projects/{id}/settings/storage?done=sync")))
        }
        "delete" if field(&fields, "confirmed") == Some("1") => {
            storages::delete_storage(&state, &user.actor, target.direction, &target.kind, storage)
                .await
                .map(|()| redirect(&format!("/projects/{id}/settings/storage?done=removed")))
        }
        "delete" => {
            let mut confirm = view.clone();
            confirm["direction"] = json!(target.direction.as_str());
            confirm["name"] = json!(name);
            let notice = Notice {
                confirm: Some(confirm),
                ..Notice::default()
            };
            return list_view(&state, &user, id, StatusCode::OK, notice).await;
        }
        other => Err(ApiError::field(
            ErrorCode::ValidationError,
            "op",
            format!("unknown form {other:?}"),
        )),
    };
    match done {
        Ok(r) => r,
        Err(e) if e.code.status().is_client_error() && e.code != ErrorCode::NotFound => {
            let notice = Notice {
                error: Some(format!("{name}: {}", e.detail)),
                ..Notice::default()
            };
            list_view(&state, &user, id, e.code.status(), notice).await
        }
        Err(e) => error_page(Some(&user), &e),
    }
}

/// What the storage form shows: the values (never a credential), which credentials are
/// stored, and the outcome of the last post.
struct FormState {
    target: Target,
    values: Map<String, Value>,
    /// Credentials stored (editing), by field name.
    stored: Vec<&'static str>,
    error: Option<String>,
    ok: Option<String>,
}

/// The credentials a storage's view says are stored.
fn stored_secrets(kind: &str, view: &Value) -> Vec<&'static str> {
    let yes = |k: &str| view[k].as_bool() == Some(true);
    match kind {
        "s3" => {
            let mut stored = Vec::new();
            // has_credentials also covers an assumed role alone.
            if yes("has_credentials") && view["role_arn"].is_null() {
                stored.extend(["aws_access_key_id", "aws_secret_access_key"]);
            }
            if yes("has_session_token") {
                stored.push("aws_session_token");
            }
            stored
        }
        "gcs" if yes("has_credentials") => vec!["google_application_credentials"],
        "azure" => {
            let mut stored = Vec::new();
            if yes("has_client_secret") {
                stored.push("client_secret");
            } else if yes("has_credentials") {
                stored.push("account_key");
            }
            stored
        }
        _ => Vec::new(),
    }
}

/// Renders the form to connect or change a storage.
async fn form_view(
    state: &AppState,
    user: &PageUser,
    id: i64,
    status: StatusCode,
    form: FormState,
) -> Response {
    let (_, project) = match header(state, user, id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(spec) = fields_of(&form.target.kind, form.target.direction) else {
        return error_page(Some(user), &ApiError::not_found("storage"));
    };
    let editing = form.target.id.is_some();
    let fields: Vec<Value> = spec
        .iter()
        .map(|f| {
            let secret = matches!(f.input, Input::Secret | Input::SecretArea);
            let input = match f.input {
                Input::Text => "text",
                Input::Area => "area",
                Input::Number => "number",
                Input::Check => "check",
                Input::Secret => "secret",
                Input::SecretArea => "secret_area",
            };
            json!({
                "name": f.name,
                "label": f.label,
                "input": input,
                "help": f.help,
                // Credentials are never rendered back.
                "value": if secret { Value::Null } else { form.values.get(f.name).cloned().unwrap_or(Value::Null) },
                "stored": secret && form.stored.contains(&f.name),
                "editing": editing,
            })
        })
        .collect();
    let kinds = kind_list();
    render(
        status,
        "storage_form.html",
        context! {
            user => user_context(user),
            project => js(&project),
            direction => form.target.direction.as_str(),
            kind => form.target.kind.clone(),
            kind_title => KINDS.iter().find(|(k, _)| *k == form.target.kind).map(|(_, t)| *t),
            kinds => js(&kinds),
            storage => form.target.id,
            fields => js(&fields),
            error => form.error,
            ok => form.ok,
        },
    )
}

/// `GET /projects/{id}/settings/storage/form?direction=…&type=…[&storage=…]`: the form of a new
/// storage of a type, or of a stored one.
pub(super) async fn form_page(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let (user, id) = match project_page_user(&state, &parts).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(r) = project_role(&state, &user, id, Permission::StorageManage).await {
        return r;
    }
    let target = match Target::read(&query_pairs(&parts)) {
        Ok(t) => t,
        Err(e) => return error_page(Some(&user), &e),
    };
    let (values, stored) = if target.id.is_some() {
        match named_storage(&state, &user, id, &target).await {
            Ok(Value::Object(view)) => {
                let stored = stored_secrets(&target.kind, &Value::Object(view.clone()));
                (view, stored)
            }
            Ok(_) => (Map::new(), Vec::new()),
            Err(e) => return error_page(Some(&user), &e),
        }
    } else {
        // The API's defaults for a new storage.
        let mut defaults = Map::new();
        defaults.insert("presign".into(), json!(true));
        defaults.insert("presign_ttl".into(), json!(1));
        (defaults, Vec::new())
    };
    let form = FormState {
        target,
        values,
        stored,
        error: None,
        ok: None,
    };
    form_view(&state, &user, id, StatusCode::OK, form).await
}

/// The API body of a storage form, and the non-secret values as typed (to show again).
fn form_body(
    fields: &[(String, String)],
    target: &Target,
) -> (Map<String, Value>, Map<String, Value>) {
    let mut body = Map::new();
    let mut typed = Map::new();
    let editing = target.id.is_some();
    let clear: Vec<&str> = fields
        .iter()
        .filter(|(k, _)| k == "clear")
        .map(|(_, v)| v.as_str())
        .collect();
    for f in fields_of(&target.kind, target.direction).unwrap_or_default() {
        let given = field(fields, f.name).unwrap_or("");
        match f.input {
            Input::Check => {
                let on = !given.is_empty();
                body.insert(f.name.into(), json!(on));
                typed.insert(f.name.into(), json!(on));
            }
            Input::Secret | Input::SecretArea => {
                if editing && clear.contains(&f.name) {
                    body.insert(f.name.into(), json!(""));
                } else if !given.trim().is_empty() {
                    body.insert(f.name.into(), json!(given));
                }
            }
            Input::Number => {
                typed.insert(f.name.into(), json!(given));
                let given = given.trim();
                if !given.is_empty() {
                    // Not a number: the API's own message says what it takes.
                    let value = given
                        .parse::<i64>()
                        .map(Value::from)
                        .unwrap_or(json!(given));
                    body.insert(f.name.into(), value);
                }
            }
            Input::Text | Input::Area => {
                typed.insert(f.name.into(), json!(given));
                // A new storage leaves out what was left empty (the API's defaults and its
                // "required"); a change sends it, so that emptying a field clears it.
                if editing || !given.trim().is_empty() {
                    body.insert(f.name.into(), json!(given));
                }
            }
        }
    }
    (body, typed)
}

/// `POST /projects/{id}/settings/storage/form`: `op=check` checks the form's storage (as
/// `…/validate`; nothing is saved), `op=save` connects it (`POST /api/storages…`) or saves the
/// change (`PATCH …/{id}`). A refusal shows the API's message with the values as typed
/// (credentials excepted) and changes nothing.
pub(super) async fn form_post(State(state): State<AppState>, request: Request) -> Response {
    let (user, id, fields) = match checked_form(&state, request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let target = match Target::read(&fields) {
        Ok(t) => t,
        Err(e) => return error_page(Some(&user), &e),
    };
    // A change only of a storage of this project; what is stored, for the form's hints.
    let stored = match target.id {
        Some(_) => match named_storage(&state, &user, id, &target).await {
            Ok(view) => stored_secrets(&target.kind, &view),
            Err(e) => return error_page(Some(&user), &e),
        },
        None => Vec::new(),
    };
    let (mut body, typed) = form_body(&fields, &target);
    let check = field(&fields, "op") == Some("check");
    let outcome = match (check, target.id) {
        (true, storage) => {
            match storage {
                Some(s) => body.insert("id".into(), json!(s)),
                None => body.insert("project".into(), json!(id)),
            };
            storages::validate_storage(&state, &user.actor, target.direction, &target.kind, &body)
                .await
                .map(|()| None)
        }
        (false, None) => {
            body.insert("project".into(), json!(id));
            storages::create_storage(&state, &user.actor, target.direction, &target.kind, &body)
                .await
                .map(|_| Some("created"))
        }
        (false, Some(storage)) => storages::update_storage(
            &state,
            &user.actor,
            target.direction,
            &target.kind,
            storage,
            &body,
        )
        .await
        .map(|_| Some("saved")),
    };
    let mut form = FormState {
        target,
        values: typed,
        stored,
        error: None,
        ok: None,
    };
    match outcome {
        Ok(Some(done)) => redirect(&format!("/projects/{id}/settings/storage?done={done}")),
        Ok(None) => {
            form.ok = Some(
                "The connection works. Nothing is saved yet; credentials you typed must be typed again before saving."
                    .to_string(),
            );
            form_view(&state, &user, id, StatusCode::OK, form).await
        }
        Err(e) if e.code.status().is_client_error() && e.code != ErrorCode::NotFound => {
            let status = e.code.status();
            form.error = Some(e.detail);
            form_view(&state, &user, id, status, form).await
        }
        Err(e) => error_page(Some(&user), &e),
    }
}
