//! SCIM 2.0 service provider at `/scim/v2` (RFC 7643, RFC 7644; ADR 0029): Users and Groups of
//! one organization, authenticated by that organization's provisioning token, with filters,
//! pagination, PATCH, ETags and the discovery endpoints.

pub mod resource;

use axum::{
    Router,
    body::Bytes,
    extract::{FromRequestParts, Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{any, get, post},
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{
    authz::Actor,
    http::{
        AppState,
        extract::{audit_failed_sign_in, request_meta},
    },
    storage::scim::{self as store, GroupResource, UserResource},
};
use resource::{GROUP_ATTRS, GROUP_SCHEMA, ScimError, ScimResult, USER_ATTRS, USER_SCHEMA};

const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const CONTENT_TYPE: &str = "application/scim+json";
/// Largest page a list returns.
const MAX_COUNT: usize = 1000;

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = Value::String(t.to_string());
        }
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        scim_json(status, &body, None, None)
    }
}

fn scim_json(
    status: StatusCode,
    body: &Value,
    etag: Option<&str>,
    location: Option<&str>,
) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    if let Some(v) = etag.and_then(|e| HeaderValue::from_str(e).ok()) {
        headers.insert(header::ETAG, v);
    }
    if let Some(v) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        headers.insert(header::LOCATION, v);
    }
    response
}

/// A request authenticated by an organization's provisioning token.
pub struct Scim {
    actor: Actor,
    base: String,
}

impl FromRequestParts<AppState> for Scim {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ScimError> {
        let unauthorized = || {
            ScimError::status(
                401,
                "send the organization's SCIM provisioning token as `Authorization: Bearer <token>` \
                 (`verity org scim-token` or POST /api/scim/token issues one)",
            )
        };
        let meta = request_meta(parts, state.config.trust_forwarded_for);
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| {
                scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token")
            })
            .map(|(_, t)| t.trim())
            .filter(|t| !t.is_empty());
        let org = match token {
            Some(t) => store::org_for_token(&state.db, t).await?,
            None => None,
        };
        let Some(org) = org else {
            // Failed attempts are audited like the API's (at most one entry per address every
            // 10 s).
            audit_failed_sign_in(
                state,
                &meta,
                "auth.failed",
                "SCIM request without a current provisioning token",
            )
            .await;
            return Err(unauthorized());
        };
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost");
        let scheme = parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .filter(|p| *p == "https" || *p == "http")
            .unwrap_or("http");
        Ok(Scim {
            actor: store::scim_actor(org, meta),
            base: format!("{scheme}://{host}/scim/v2"),
        })
    }
}

/// The SCIM routes (outside the OpenAPI document: SCIM describes itself at `/Schemas`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/scim/v2/ServiceProviderConfig",
            get(service_provider_config),
        )
        .route("/scim/v2/ResourceTypes", get(resource_types))
        .route("/scim/v2/ResourceTypes/{id}", get(resource_type))
        .route("/scim/v2/Schemas", get(schemas))
        .route("/scim/v2/Schemas/{id}", get(schema))
        .route("/scim/v2/Users", get(list_users).post(create_user))
        .route(
            "/scim/v2/Users/{id}",
            get(get_user)
                .put(put_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route("/scim/v2/Groups", get(list_groups).post(create_group))
        .route(
            "/scim/v2/Groups/{id}",
            get(get_group)
                .put(put_group)
                .patch(patch_group)
                .delete(delete_group),
        )
        .route("/scim/v2/Users/.search", post(search_users))
        .route("/scim/v2/Groups/.search", post(search_groups))
        .route("/scim/v2/.search", post(search_all))
        .route("/scim/v2", any(no_endpoint))
        .route("/scim/v2/{*rest}", any(no_endpoint))
}

fn body_json(bytes: &Bytes) -> ScimResult<Value> {
    serde_json::from_slice(bytes)
        .map_err(|e| ScimError::bad("invalidSyntax", format!("the body is not valid JSON: {e}")))
}

fn parse_id(raw: &str, kind: &str) -> ScimResult<i64> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ScimError::status(404, format!("no {kind} {raw:?} in this organization")))
}

/// The SCIM id of a group: ids are unique across resource types (RFC 7643 §3.1), and users
/// keep their Verity user id, so groups carry a prefix.
fn group_id(id: i64) -> String {
    format!("group-{id}")
}

fn parse_group_id(raw: &str) -> ScimResult<i64> {
    raw.strip_prefix("group-")
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|id| *id > 0)
        .ok_or_else(|| ScimError::status(404, format!("no Group {raw:?} in this organization")))
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

// ---------------------------------------------------------------------------------------------
// Rendering

fn render_user(u: &UserResource, base: &str) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("schemas".into(), json!([USER_SCHEMA]));
    out.insert("id".into(), Value::String(u.id.to_string()));
    for (k, v) in &u.doc {
        out.insert(k.clone(), v.clone());
    }
    // `active` is the membership's state. A provider that never set it (or removed it) sees
    // it only once the member is deactivated, from here or in Verity.
    if u.doc.contains_key("active") || !u.active {
        out.insert("active".into(), Value::Bool(u.active));
    }
    if !u.groups.is_empty() {
        out.insert(
            "groups".into(),
            Value::Array(
                u.groups
                    .iter()
                    .map(|(id, name)| {
                        json!({"value": group_id(*id), "$ref": format!("{base}/Groups/{}", group_id(*id)), "display": name})
                    })
                    .collect(),
            ),
        );
    }
    out.insert(
        "meta".into(),
        json!({
            "resourceType": "User",
            "created": store::iso(u.created),
            "lastModified": store::iso(u.modified),
            "location": format!("{base}/Users/{}", u.id),
            "version": store::etag(u.version),
        }),
    );
    out
}

fn render_group(g: &GroupResource, base: &str) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("schemas".into(), json!([GROUP_SCHEMA]));
    out.insert("id".into(), Value::String(group_id(g.id)));
    for (k, v) in &g.doc {
        out.insert(k.clone(), v.clone());
    }
    if !g.members.is_empty() {
        out.insert(
            "members".into(),
            Value::Array(
                g.members
                    .iter()
                    .map(
                        |id| json!({"value": id.to_string(), "$ref": format!("{base}/Users/{id}")}),
                    )
                    .collect(),
            ),
        );
    }
    out.insert(
        "meta".into(),
        json!({
            "resourceType": "Group",
            "created": store::iso(g.created),
            "lastModified": store::iso(g.modified),
            "location": format!("{base}/Groups/{}", group_id(g.id)),
            "version": store::etag(g.version),
        }),
    );
    out
}

/// The writable part of a rendered group (what PATCH operations act on).
fn group_doc(g: &GroupResource) -> Map<String, Value> {
    let mut doc = g.doc.clone();
    if !g.members.is_empty() {
        doc.insert(
            "members".into(),
            Value::Array(
                g.members
                    .iter()
                    .map(|id| json!({"value": id.to_string()}))
                    .collect(),
            ),
        );
    }
    doc
}

// ---------------------------------------------------------------------------------------------
// Lists

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    filter: Option<String>,
    start_index: Option<String>,
    count: Option<String>,
    attributes: Option<String>,
    excluded_attributes: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetQuery {
    attributes: Option<String>,
    excluded_attributes: Option<String>,
}

fn page(q: &ListQuery) -> ScimResult<(usize, usize)> {
    let int = |raw: &Option<String>, name: &str| -> ScimResult<Option<i64>> {
        raw.as_deref()
            .map(|v| {
                v.trim().parse::<i64>().map_err(|_| {
                    ScimError::bad("invalidValue", format!("{name} must be an integer"))
                })
            })
            .transpose()
    };
    // RFC 7644 §3.4.2.4: startIndex below 1 means 1; a negative count means 0.
    let start = int(&q.start_index, "startIndex")?.unwrap_or(1).max(1) as usize;
    let count = int(&q.count, "count")?
        .unwrap_or(100)
        .clamp(0, MAX_COUNT as i64) as usize;
    Ok((start, count))
}

fn parsed_filter(q: &ListQuery) -> ScimResult<Option<scim_v2::filter::Filter>> {
    q.filter
        .as_deref()
        .filter(|f| !f.trim().is_empty())
        .map(resource::parse_filter)
        .transpose()
}

fn list_response(
    items: Vec<Map<String, Value>>,
    q: &ListQuery,
    schema: &str,
) -> ScimResult<Response> {
    let (start, count) = page(q)?;
    let filter = parsed_filter(q)?;
    let matching: Vec<Map<String, Value>> = items
        .into_iter()
        .filter(|r| {
            filter
                .as_ref()
                .is_none_or(|f| resource::matches(r, f, schema))
        })
        .collect();
    let total = matching.len();
    let resources: Vec<Value> = matching
        .into_iter()
        .skip(start - 1)
        .take(count)
        .map(|mut r| {
            resource::project(
                &mut r,
                q.attributes.as_deref(),
                q.excluded_attributes.as_deref(),
            );
            Value::Object(r)
        })
        .collect();
    let body = json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    });
    Ok(scim_json(StatusCode::OK, &body, None, None))
}

/// The Users a list or search considers: for `userName eq "…"` (what identity providers send
/// before creating a user) only the database's candidates, otherwise every User.
async fn users_for(state: &AppState, scim: &Scim, q: &ListQuery) -> ScimResult<Response> {
    let filter = parsed_filter(q)?;
    let user_name = filter
        .as_ref()
        .and_then(|f| resource::equality_on(f, &["userName"]))
        .map(|(_, v)| v.to_string());
    let users = store::list_users(&state.db, scim.actor.org_id, user_name.as_deref()).await?;
    let items = users.iter().map(|u| render_user(u, &scim.base)).collect();
    list_response(items, q, USER_SCHEMA)
}

fn one(
    status: StatusCode,
    mut r: Map<String, Value>,
    version: i64,
    attributes: Option<&str>,
    excluded: Option<&str>,
    created: bool,
) -> Response {
    let location = r
        .get("meta")
        .and_then(|m| m.get("location"))
        .and_then(Value::as_str)
        .map(str::to_string);
    resource::project(&mut r, attributes, excluded);
    let etag = store::etag(version);
    scim_json(
        status,
        &Value::Object(r),
        Some(&etag),
        location.as_deref().filter(|_| created),
    )
}

/// 304 when the client already has this version (`If-None-Match`).
fn not_modified(headers: &HeaderMap, version: i64) -> Option<Response> {
    let sent = headers.get(header::IF_NONE_MATCH)?.to_str().ok()?;
    let current = store::etag(version);
    sent.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == current.trim_start_matches("W/"))
        .then(|| {
            let mut r = StatusCode::NOT_MODIFIED.into_response();
            if let Ok(v) = HeaderValue::from_str(&current) {
                r.headers_mut().insert(header::ETAG, v);
            }
            r
        })
}

async fn no_endpoint() -> ScimError {
    ScimError::status(404, "no such SCIM endpoint; see /scim/v2/ResourceTypes")
}

/// The body of `POST …/.search` (RFC 7644 §3.4.3): the list parameters in JSON.
fn search_query(bytes: &Bytes) -> ScimResult<ListQuery> {
    let body = body_json(bytes)?;
    let Value::Object(map) = &body else {
        return Err(ScimError::bad(
            "invalidSyntax",
            "the search request must be a JSON object",
        ));
    };
    let text = |key: &str| -> ScimResult<Option<String>> {
        match map
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
        {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Array(items)) => Ok(Some(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            )),
            Some(_) => Err(ScimError::bad(
                "invalidValue",
                format!("{key} has the wrong type"),
            )),
        }
    };
    Ok(ListQuery {
        filter: text("filter")?,
        start_index: text("startIndex")?,
        count: text("count")?,
        attributes: text("attributes")?,
        excluded_attributes: text("excludedAttributes")?,
    })
}

async fn search_users(
    State(state): State<AppState>,
    scim: Scim,
    body: Bytes,
) -> ScimResult<Response> {
    let q = search_query(&body)?;
    users_for(&state, &scim, &q).await
}

async fn search_groups(
    State(state): State<AppState>,
    scim: Scim,
    body: Bytes,
) -> ScimResult<Response> {
    let q = search_query(&body)?;
    let groups = store::list_groups(&state.db, scim.actor.org_id).await?;
    let items = groups.iter().map(|g| render_group(g, &scim.base)).collect();
    list_response(items, &q, GROUP_SCHEMA)
}

/// Search at the root: Users, then Groups.
async fn search_all(
    State(state): State<AppState>,
    scim: Scim,
    body: Bytes,
) -> ScimResult<Response> {
    let q = search_query(&body)?;
    let users = store::list_users(&state.db, scim.actor.org_id, None).await?;
    let groups = store::list_groups(&state.db, scim.actor.org_id).await?;
    let items = users
        .iter()
        .map(|u| render_user(u, &scim.base))
        .chain(groups.iter().map(|g| render_group(g, &scim.base)))
        .collect();
    list_response(items, &q, "")
}

// ---------------------------------------------------------------------------------------------
// Users

async fn list_users(
    State(state): State<AppState>,
    scim: Scim,
    Query(q): Query<ListQuery>,
) -> ScimResult<Response> {
    users_for(&state, &scim, &q).await
}

async fn get_user(
    State(state): State<AppState>,
    scim: Scim,
    Path(id): Path<String>,
    Query(q): Query<GetQuery>,
    headers: HeaderMap,
) -> ScimResult<Response> {
    let id = parse_id(&id, "User")?;
    let u = store::get_user(&state.db, scim.actor.org_id, id).await?;
    if let Some(r) = not_modified(&headers, u.version) {
        return Ok(r);
    }
    Ok(one(
        StatusCode::OK,
        render_user(&u, &scim.base),
        u.version,
        q.attributes.as_deref(),
        q.excluded_attributes.as_deref(),
        false,
    ))
}

async fn create_user(
    State(state): State<AppState>,
    scim: Scim,
    body: Bytes,
) -> ScimResult<Response> {
    let doc = resource::from_request(USER_ATTRS, USER_SCHEMA, &body_json(&body)?)?;
    let u = store::create_user(&state.db, &scim.actor, doc).await?;
    Ok(one(
        StatusCode::CREATED,
        render_user(&u, &scim.base),
        u.version,
        None,
        None,
        true,
    ))
}

async fn put_user(
    State(state): State<AppState>,
    scim: Scim,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult<Response> {
    let id = parse_id(&id, "User")?;
    let doc = resource::from_request(USER_ATTRS, USER_SCHEMA, &body_json(&body)?)?;
    let u = store::replace_user(
        &state.db,
        &scim.actor,
        id,
        doc,
        if_match(&headers).as_deref(),
    )
    .await?;
    Ok(one(
        StatusCode::OK,
        render_user(&u, &scim.base),
        u.version,
        None,
        None,
        false,
    ))
}

async fn patch_user(
    State(state): State<AppState>,
    scim: Scim,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult<Response> {
    let id = parse_id(&id, "User")?;
    let ops = resource::parse_patch(&body_json(&body)?)?;
    let current = store::get_user(&state.db, scim.actor.org_id, id).await?;
    let mut doc = current.doc.clone();
    if doc.contains_key("active") || !current.active {
        doc.insert("active".into(), Value::Bool(current.active));
    }
    let next = resource::apply_patch(USER_ATTRS, USER_SCHEMA, &doc, &ops)?;
    // The version read here guards the write: a concurrent change makes it fail with 412.
    let guard = if_match(&headers).unwrap_or_else(|| store::etag(current.version));
    let u = store::replace_user(&state.db, &scim.actor, id, next, Some(&guard)).await?;
    Ok(one(
        StatusCode::OK,
        render_user(&u, &scim.base),
        u.version,
        None,
        None,
        false,
    ))
}

async fn delete_user(
    State(state): State<AppState>,
    scim: Scim,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ScimResult<Response> {
    let id = parse_id(&id, "User")?;
    store::delete_user(&state.db, &scim.actor, id, if_match(&headers).as_deref()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------------
// Groups

async fn list_groups(
    State(state): State<AppState>,
    scim: Scim,
    Query(q): Query<ListQuery>,
) -> ScimResult<Response> {
    let groups = store::list_groups(&state.db, scim.actor.org_id).await?;
    let items = groups.iter().map(|g| render_group(g, &scim.base)).collect();
    list_response(items, &q, GROUP_SCHEMA)
}

async fn get_group(
    State(state): State<AppState>,
    scim: Scim,
    Path(id): Path<String>,
    Query(q): Query<GetQuery>,
    headers: HeaderMap,
) -> ScimResult<Response> {
    let id = parse_group_id(&id)?;
    let g = store::get_group(&state.db, scim.actor.org_id, id).await?;
    if let Some(r) = not_modified(&headers, g.version) {
        return Ok(r);
    }
    Ok(one(
        StatusCode::OK,
        render_group(&g, &scim.base),
        g.version,
        q.attributes.as_deref(),
        q.excluded_attributes.as_deref(),
        false,
    ))
}

async fn create_group(
    State(state): State<AppState>,
    scim: Scim,
    body: Bytes,
) -> ScimResult<Response> {
    let doc = resource::from_request(GROUP_ATTRS, GROUP_SCHEMA, &body_json(&body)?)?;
    let g = store::create_group(&state.db, &scim.actor, doc).await?;
    Ok(one(
        StatusCode::CREATED,
        render_group(&g, &scim.base),
        g.version,
        None,
        None,
        true,
    ))
}

async fn put_group(
    State(state): State<AppState>,
    scim: Scim,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult<Response> {
    let id = parse_group_id(&id)?;
    let doc = resource::from_request(GROUP_ATTRS, GROUP_SCHEMA, &body_json(&body)?)?;
    let g = store::replace_group(
        &state.db,
        &scim.actor,
        id,
        doc,
        if_match(&headers).as_deref(),
    )
    .await?;
    Ok(one(
        StatusCode::OK,
        render_group(&g, &scim.base),
        g.version,
        None,
        None,
        false,
    ))
}

async fn patch_group(
    State(state): State<AppState>,
    scim: Scim,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult<Response> {
    let id = parse_group_id(&id)?;
    let ops = resource::parse_patch(&body_json(&body)?)?;
    let current = store::get_group(&state.db, scim.actor.org_id, id).await?;
    let next = resource::apply_patch(GROUP_ATTRS, GROUP_SCHEMA, &group_doc(&current), &ops)?;
    let guard = if_match(&headers).unwrap_or_else(|| store::etag(current.version));
    let g = store::replace_group(&state.db, &scim.actor, id, next, Some(&guard)).await?;
    Ok(one(
        StatusCode::OK,
        render_group(&g, &scim.base),
        g.version,
        None,
        None,
        false,
    ))
}

async fn delete_group(
    State(state): State<AppState>,
    scim: Scim,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ScimResult<Response> {
    let id = parse_group_id(&id)?;
    store::delete_group(&state.db, &scim.actor, id, if_match(&headers).as_deref()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------------
// Discovery

async fn service_provider_config(scim: Scim) -> Response {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://example.invalid/verity/docs/scim.md",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_COUNT},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Provisioning token",
            "description": "The organization's SCIM provisioning token as a bearer token",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{}/ServiceProviderConfig", scim.base),
        },
    });
    scim_json(StatusCode::OK, &body, None, None)
}

fn resource_type_json(id: &str, base: &str) -> Option<Value> {
    let (endpoint, schema) = match id {
        "User" => ("/Users", USER_SCHEMA),
        "Group" => ("/Groups", GROUP_SCHEMA),
        _ => return None,
    };
    Some(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": id,
        "name": id,
        "endpoint": endpoint,
        "description": format!("{id}s of the organization"),
        "schema": schema,
        "schemaExtensions": [],
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{id}")},
    }))
}

fn discovery_list(resources: Vec<Value>) -> Response {
    let body = json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    });
    scim_json(StatusCode::OK, &body, None, None)
}

async fn resource_types(scim: Scim) -> Response {
    discovery_list(
        ["User", "Group"]
            .iter()
            .filter_map(|id| resource_type_json(id, &scim.base))
            .collect(),
    )
}

async fn resource_type(scim: Scim, Path(id): Path<String>) -> ScimResult<Response> {
    resource_type_json(&id, &scim.base)
        .map(|b| scim_json(StatusCode::OK, &b, None, None))
        .ok_or_else(|| {
            ScimError::status(
                404,
                format!("no resource type {id:?}; there are User and Group"),
            )
        })
}

fn schema_docs(base: &str) -> Vec<Value> {
    vec![
        resource::schema_json(USER_SCHEMA, "User", USER_ATTRS, base),
        resource::schema_json(GROUP_SCHEMA, "Group", GROUP_ATTRS, base),
    ]
}

async fn schemas(scim: Scim) -> Response {
    discovery_list(schema_docs(&scim.base))
}

async fn schema(scim: Scim, Path(id): Path<String>) -> ScimResult<Response> {
    schema_docs(&scim.base)
        .into_iter()
        .find(|s| s["id"].as_str() == Some(id.as_str()))
        .map(|b| scim_json(StatusCode::OK, &b, None, None))
        .ok_or_else(|| ScimError::status(404, format!("no schema {id:?}")))
}
