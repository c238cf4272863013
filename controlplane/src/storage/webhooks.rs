//! Webhooks, their outbox of events and their delivery log (ADR 0015).
//!
//! A project's webhooks are managed by whoever holds `webhook.manage` in the project; an
//! organization-wide webhook (no project) needs `organization.manage`. Another organization's
//! webhooks are not found.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{
    Db, access,
    annotations::{ANNOTATION_COLUMNS, AnnotationRow},
    audit::{Prepared, audit},
    format_micros, now_micros,
    tasks::{TASK_COLUMNS, TaskRow},
    with_read, with_tx,
};
use crate::{
    authz::{Actor, Permission},
    body,
    error::{ApiError, ApiResult, ErrorCode},
    secrets::Sealer,
    webhooks::{Action, TargetPolicy},
};

/// What a webhook's sealed secret is bound to.
const SECRET_PURPOSE: &str = "webhook.secret";

/// At most this many custom headers per webhook.
pub const MAX_HEADERS: usize = 10;

/// Delivery log entries kept per webhook (older ones are removed).
pub const LOG_KEPT: i64 = 500;

/// Headers a webhook cannot set: the transport's own and the signature's.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "trailer",
];

/// A stored webhook.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WebhookRow {
    id: i64,
    organization_id: i64,
    project_id: Option<i64>,
    url: String,
    send_payload: bool,
    send_for_all_actions: bool,
    headers: String,
    actions: String,
    is_active: bool,
    consecutive_failures: i64,
    created_at: i64,
    updated_at: i64,
}

const COLUMNS: &str = "w.id, w.organization_id, w.project_id, w.url, w.send_payload, w.send_for_all_actions, \
    w.headers, w.actions, w.is_active, w.consecutive_failures, w.created_at, w.updated_at";

/// A webhook as the API shows it. The signing secret is shown once, when it is made.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    /// Id.
    pub id: i64,
    /// Organization.
    pub organization: i64,
    /// Project (`null`: every project of the organization).
    pub project: Option<i64>,
    /// Where events are sent.
    pub url: String,
    /// Send the objects (`false`: only `{"action": …}`).
    pub send_payload: bool,
    /// Every event (`false`: only those in `actions`).
    pub send_for_all_actions: bool,
    /// Extra request headers.
    #[schema(value_type = Object)]
    pub headers: Value,
    /// The subscribed events when `send_for_all_actions` is false.
    pub actions: Vec<String>,
    /// Deliveries happen only while active.
    pub is_active: bool,
    /// Failed deliveries since the last successful one.
    pub consecutive_failures: i64,
    /// Whether a signing secret is set (always, in Verity).
    pub secret_is_set: bool,
    /// The signing secret: only in the answer that created or rotated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// ISO creation time.
    pub created_at: String,
    /// ISO update time.
    pub updated_at: String,
}

impl WebhookRow {
    fn view(&self, secret: Option<String>) -> WebhookView {
        WebhookView {
            id: self.id,
            organization: self.organization_id,
            project: self.project_id,
            url: self.url.clone(),
            send_payload: self.send_payload,
            send_for_all_actions: self.send_for_all_actions,
            headers: serde_json::from_str(&self.headers).unwrap_or_else(|_| json!({})),
            actions: serde_json::from_str(&self.actions).unwrap_or_default(),
            is_active: self.is_active,
            consecutive_failures: self.consecutive_failures,
            secret_is_set: true,
            secret,
            created_at: format_micros(self.created_at),
            updated_at: format_micros(self.updated_at),
        }
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::field(ErrorCode::ValidationError, field, message)
}

/// The fields of a create or update body.
#[derive(Debug, Default)]
struct Input {
    url: Option<String>,
    send_payload: Option<bool>,
    send_for_all_actions: Option<bool>,
    headers: Option<String>,
    actions: Option<Vec<Action>>,
    is_active: Option<bool>,
    secret: Option<String>,
    rotate_secret: bool,
}

impl Input {
    fn parse(body: &Map<String, Value>, policy: &TargetPolicy) -> ApiResult<Self> {
        let url = match body::opt_text(body, "url", 2048)? {
            Some(u) => Some(
                policy
                    .check_url(u.trim())
                    .map_err(|why| {
                        let code = if why.contains("ALLOW_PRIVATE_TARGETS") {
                            ErrorCode::PrivateTarget
                        } else {
                            ErrorCode::ValidationError
                        };
                        ApiError::field(code, "url", why)
                    })?
                    .to_string(),
            ),
            None => None,
        };
        let headers = match body.get("headers") {
            None | Some(Value::Null) => None,
            Some(Value::Object(h)) => Some(check_headers(h)?),
            Some(_) => {
                return Err(invalid(
                    "headers",
                    "must be an object of header names to string values",
                ));
            }
        };
        let actions = match body.get("actions") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for item in items {
                    let name = item.as_str().unwrap_or_default();
                    let action = Action::parse(name).ok_or_else(|| {
                        invalid(
                            "actions",
                            format!(
                                "unknown event {item}; GET /api/webhooks/info lists the events"
                            ),
                        )
                    })?;
                    if !out.contains(&action) {
                        out.push(action);
                    }
                }
                Some(out)
            }
            Some(_) => return Err(invalid("actions", "must be a list of event names")),
        };
        let secret = body::opt_text(body, "secret", 256)?;
        if let Some(s) = &secret
            && s.chars().count() < 16
        {
            return Err(invalid(
                "secret",
                "must have at least 16 characters (or leave it out to get a generated one)",
            ));
        }
        Ok(Self {
            url,
            send_payload: body::opt_bool(body, "send_payload")?,
            send_for_all_actions: body::opt_bool(body, "send_for_all_actions")?,
            headers,
            actions,
            is_active: body::opt_bool(body, "is_active")?,
            secret,
            rotate_secret: body::opt_bool(body, "rotate_secret")?.unwrap_or(false),
        })
    }
}

fn check_headers(h: &Map<String, Value>) -> ApiResult<String> {
    if h.len() > MAX_HEADERS {
        return Err(invalid("headers", format!("at most {MAX_HEADERS} headers")));
    }
    for (name, value) in h {
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_name {
            return Err(invalid(
                "headers",
                format!("{name:?} is not a header name (letters, digits, - and _)"),
            ));
        }
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("x-verity-") {
            return Err(invalid(
                "headers",
                format!("{name} is set by Verity and cannot be overridden"),
            ));
        }
        let Some(v) = value.as_str() else {
            return Err(invalid(
                "headers",
                format!("the value of {name} must be a string"),
            ));
        };
        if http::HeaderValue::from_str(v).is_err() || v.len() > 4096 {
            return Err(invalid(
                "headers",
                format!("the value of {name} is not a valid header value"),
            ));
        }
    }
    serde_json::to_string(h).map_err(ApiError::internal)
}

fn actions_text(actions: &[Action]) -> String {
    Value::from(actions.iter().map(|a| a.name()).collect::<Vec<_>>()).to_string()
}

/// Organization-only events cannot be chosen by a project's webhook.
fn check_scope(project: Option<i64>, actions: &[Action]) -> ApiResult<()> {
    if project.is_some()
        && let Some(a) = actions.iter().find(|a| a.organization_only())
    {
        return Err(invalid(
            "actions",
            format!(
                "{} is sent to organization-wide webhooks only (create the webhook without a project)",
                a.name()
            ),
        ));
    }
    Ok(())
}

/// Who may manage webhooks of `project` (or organization-wide ones).
async fn authorize(db: &Db, actor: &Actor, project: Option<i64>) -> ApiResult<()> {
    match project {
        Some(p) => access::project(db, actor, p, Permission::WebhookManage)
            .await
            .map(drop),
        None => actor.require(Permission::OrgManage),
    }
}

fn new_secret() -> String {
    crate::auth::random_secret(32)
}

/// Creates a webhook.
pub async fn create(
    db: &Db,
    actor: &Actor,
    sealer: &Sealer,
    policy: &TargetPolicy,
    body: &Map<String, Value>,
) -> ApiResult<WebhookView> {
    let project = match body.get("project") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or_else(|| invalid("project", "must be a project id or null"))?,
        ),
    };
    authorize(db, actor, project).await?;
    let input = Input::parse(body, policy)?;
    let url = input
        .url
        .ok_or_else(|| invalid("url", "this field is required"))?;
    let actions = input.actions.unwrap_or_default();
    check_scope(project, &actions)?;
    let secret = input.secret.unwrap_or_else(new_secret);
    let now = now_micros();
    let id: i64 = with_tx!(db, tx, {
        let id: i64 = sqlx::query_scalar(
            "insert into webhook (organization_id, project_id, url, send_payload, send_for_all_actions, headers, actions, \
             is_active, secret, created_by, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) returning id",
        )
        .bind(actor.org_id)
        .bind(project)
        .bind(&url)
        .bind(input.send_payload.unwrap_or(true))
        .bind(input.send_for_all_actions.unwrap_or(true))
        .bind(input.headers.as_deref().unwrap_or("{}"))
        .bind(actions_text(&actions))
        .bind(input.is_active.unwrap_or(true))
        .bind(sealer.seal(&secret, SECRET_PURPOSE))
        .bind((actor.user_id != 0).then_some(actor.user_id))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "webhook.create",
                "webhook",
                id,
                json!({"project": project, "url": super::url_without_query(&url)}),
            )
        );
        Ok::<_, ApiError>(id)
    })?;
    Ok(load(db, actor.org_id, id).await?.view(Some(secret)))
}

async fn load(db: &Db, org: i64, id: i64) -> ApiResult<WebhookRow> {
    let row: Option<WebhookRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {COLUMNS} from webhook w where w.id = $1 and w.organization_id = $2"
        ))
        .bind(id)
        .bind(org)
        .fetch_optional(conn)
        .await?
    });
    row.ok_or_else(|| ApiError::not_found("webhook"))
}

/// Loads a webhook the actor may manage.
async fn get_row(db: &Db, actor: &Actor, id: i64) -> ApiResult<WebhookRow> {
    let row = load(db, actor.org_id, id).await?;
    authorize(db, actor, row.project_id).await?;
    Ok(row)
}

/// One webhook.
pub async fn get(db: &Db, actor: &Actor, id: i64) -> ApiResult<WebhookView> {
    Ok(get_row(db, actor, id).await?.view(None))
}

/// Which webhooks a list shows.
#[derive(Debug, Clone, Copy)]
pub enum Listing {
    /// Every webhook the caller manages.
    All,
    /// The organization-wide ones.
    Organization,
    /// Those of one project.
    Project(i64),
}

/// Webhooks, oldest first.
pub async fn list(db: &Db, actor: &Actor, which: Listing) -> ApiResult<Vec<WebhookView>> {
    let (condition, bind) = match which {
        Listing::Project(p) => {
            authorize(db, actor, Some(p)).await?;
            ("w.project_id = $2", p)
        }
        Listing::Organization => {
            authorize(db, actor, None).await?;
            ("w.project_id is null", 0)
        }
        Listing::All => ("($2 = $2)", 0),
    };
    let rows: Vec<WebhookRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {COLUMNS} from webhook w where w.organization_id = $1 and {condition} order by w.id"
        ))
        .bind(actor.org_id)
        .bind(bind)
        .fetch_all(conn)
        .await?
    });
    if !matches!(which, Listing::All) || actor.can(Permission::OrgManage) {
        return Ok(rows.iter().map(|r| r.view(None)).collect());
    }
    // Below admin: the webhooks of the projects the caller manages.
    let mut managed = std::collections::HashMap::new();
    let mut out = Vec::new();
    for row in rows {
        let Some(p) = row.project_id else { continue };
        let ok = match managed.get(&p) {
            Some(ok) => *ok,
            None => {
                let ok = access::project(db, actor, p, Permission::WebhookManage)
                    .await
                    .is_ok();
                managed.insert(p, ok);
                ok
            }
        };
        if ok {
            out.push(row.view(None));
        }
    }
    Ok(out)
}

/// Changes a webhook (`rotate_secret: true` makes a new signing secret and answers it once).
pub async fn update(
    db: &Db,
    actor: &Actor,
    sealer: &Sealer,
    policy: &TargetPolicy,
    id: i64,
    body: &Map<String, Value>,
) -> ApiResult<WebhookView> {
    let current = get_row(db, actor, id).await?;
    if body.contains_key("project")
        && body.get("project").and_then(Value::as_i64) != current.project_id
    {
        return Err(invalid(
            "project",
            "a webhook cannot move to another project; create a new one",
        ));
    }
    let input = Input::parse(body, policy)?;
    if let Some(actions) = &input.actions {
        check_scope(current.project_id, actions)?;
    }
    let new_secret = if input.rotate_secret {
        Some(new_secret())
    } else {
        input.secret.clone()
    };
    let shown = input.rotate_secret.then(|| new_secret.clone()).flatten();
    let now = now_micros();
    let changed: Vec<&str> = [
        ("url", input.url.is_some()),
        ("send_payload", input.send_payload.is_some()),
        ("send_for_all_actions", input.send_for_all_actions.is_some()),
        ("headers", input.headers.is_some()),
        ("actions", input.actions.is_some()),
        ("is_active", input.is_active.is_some()),
        ("secret", new_secret.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    with_tx!(db, tx, {
        sqlx::query(
            "update webhook set url = coalesce($1, url), send_payload = coalesce($2, send_payload), \
             send_for_all_actions = coalesce($3, send_for_all_actions), headers = coalesce($4, headers), \
             actions = coalesce($5, actions), is_active = coalesce($6, is_active), secret = coalesce($7, secret), \
             consecutive_failures = case when $6 then 0 else consecutive_failures end, updated_at = $8 \
             where id = $9",
        )
        .bind(&input.url)
        .bind(input.send_payload)
        .bind(input.send_for_all_actions)
        .bind(&input.headers)
        .bind(input.actions.as_deref().map(actions_text))
        .bind(input.is_active)
        .bind(new_secret.as_deref().map(|s| sealer.seal(s, SECRET_PURPOSE)))
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "webhook.update",
                "webhook",
                id,
                json!({"project": current.project_id, "changed": changed}),
            )
        );
        Ok::<_, ApiError>(())
    })?;
    Ok(load(db, actor.org_id, id).await?.view(shown))
}

/// Deletes a webhook with its pending events and delivery log.
pub async fn delete(db: &Db, actor: &Actor, id: i64) -> ApiResult<()> {
    let current = get_row(db, actor, id).await?;
    with_tx!(db, tx, {
        sqlx::query("delete from webhook_delivery where webhook_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("delete from webhook_event where webhook_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("delete from webhook where id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "webhook.delete",
                "webhook",
                id,
                json!({"project": current.project_id, "url": super::url_without_query(&current.url)}),
            )
        );
        Ok::<_, ApiError>(())
    })
}

/// One delivery attempt as the API shows it.
#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DeliveryView {
    /// Id.
    pub id: i64,
    /// The event (also sent as `X-Verity-Delivery`; the same for every attempt of it).
    pub event: i64,
    /// Event name.
    pub action: String,
    /// Attempt number (1-based).
    pub attempt: i64,
    /// Whether the receiver answered 2xx.
    pub ok: bool,
    /// The receiver's status code (none when no answer came).
    pub status_code: Option<i64>,
    /// Time to the answer or the failure.
    pub latency_ms: i64,
    /// The first KiB of the answer.
    pub response_excerpt: String,
    /// Why the attempt failed.
    pub error: String,
    /// ISO time of the attempt.
    #[sqlx(skip)]
    pub created_at: String,
    /// When it will be retried, if it will.
    #[sqlx(skip)]
    pub next_attempt_at: Option<String>,
    #[serde(skip)]
    #[schema(ignore)]
    created_micros: i64,
}

/// The latest delivery attempts of a webhook, newest first.
pub async fn deliveries(
    db: &Db,
    actor: &Actor,
    id: i64,
    limit: i64,
) -> ApiResult<Vec<DeliveryView>> {
    get_row(db, actor, id).await?;
    let mut rows: Vec<DeliveryView> = with_read!(db, conn, {
        sqlx::query_as(
            "select id, event_id as event, action, attempt, ok, status_code, latency_ms, response_excerpt, error, \
             created_at as created_micros from webhook_delivery where webhook_id = $1 order by id desc limit $2",
        )
        .bind(id)
        .bind(limit.clamp(1, LOG_KEPT))
        .fetch_all(conn)
        .await?
    });
    let pending: Vec<(i64, i64)> = with_read!(db, conn, {
        sqlx::query_as(
            "select id, next_attempt_at from webhook_event where webhook_id = $1 and attempts > 0",
        )
        .bind(id)
        .fetch_all(conn)
        .await?
    });
    for r in &mut rows {
        r.created_at = format_micros(r.created_micros);
    }
    // The retry time belongs to the newest attempt of each pending event.
    for (event, at) in pending {
        if let Some(r) = rows.iter_mut().find(|r| r.event == event) {
            r.next_attempt_at = Some(format_micros(at));
        }
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------------------------
// The outbox (no actor: called after an authorized change, and by delivery passes)

/// A webhook that subscribes to an event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Subscriber {
    /// Webhook id.
    pub id: i64,
    /// Whether it wants the objects.
    pub send_payload: bool,
    send_for_all_actions: bool,
    actions: String,
}

/// The active webhooks of `org` (organization-wide, and `project`'s) subscribed to `action`.
pub async fn subscribed(
    db: &Db,
    org: i64,
    project: Option<i64>,
    action: &str,
) -> ApiResult<Vec<Subscriber>> {
    let rows: Vec<Subscriber> = with_read!(db, conn, {
        sqlx::query_as(
            "select id, send_payload, send_for_all_actions, actions from webhook \
             where organization_id = $1 and is_active and (project_id is null or project_id = $2) order by id",
        )
        .bind(org)
        .bind(project.unwrap_or(-1))
        .fetch_all(conn)
        .await?
    });
    let quoted = format!("\"{action}\"");
    Ok(rows
        .into_iter()
        .filter(|s| s.send_for_all_actions || s.actions.contains(&quoted))
        .collect())
}

/// Records events (webhook id, body) of one action, in order.
pub async fn add_events(db: &Db, action: &str, events: &[(i64, String)]) -> ApiResult<()> {
    let now = now_micros();
    with_tx!(db, tx, {
        for (hook, body) in events {
            sqlx::query(
                "insert into webhook_event (webhook_id, action, body, next_attempt_at, created_at) values ($1, $2, $3, $4, $4)",
            )
            .bind(hook)
            .bind(action)
            .bind(body)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        Ok::<_, ApiError>(())
    })
}

/// Takes (or extends) the delivery claim of a webhook; `false` if another pass holds it.
pub async fn claim(db: &Db, webhook: i64, for_how_long: Duration) -> ApiResult<bool> {
    let now = now_micros();
    let until = now + for_how_long.as_micros() as i64;
    let n = with_tx!(db, tx, {
        let r = sqlx::query(
            "update webhook set claimed_until = $1 where id = $2 and (claimed_until is null or claimed_until < $3)",
        )
        .bind(until)
        .bind(webhook)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        Ok::<_, ApiError>(r.rows_affected())
    })?;
    Ok(n > 0)
}

/// Lets go of the claim.
pub async fn release(db: &Db, webhook: i64) -> ApiResult<()> {
    with_tx!(db, tx, {
        sqlx::query("update webhook set claimed_until = null where id = $1")
            .bind(webhook)
            .execute(&mut *tx)
            .await?;
        Ok::<_, ApiError>(())
    })
}

/// A pending event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    /// Id (the delivery id receivers see).
    pub id: i64,
    /// Webhook.
    pub webhook_id: i64,
    /// Event name.
    pub action: String,
    /// Request body.
    pub body: String,
    /// Attempts so far.
    pub attempts: i64,
    /// Not before this time (micros).
    pub next_attempt_at: i64,
}

/// The oldest pending event of a webhook.
pub async fn next_event(db: &Db, webhook: i64) -> ApiResult<Option<EventRow>> {
    Ok(with_read!(db, conn, {
        sqlx::query_as(
            "select id, webhook_id, action, body, attempts, next_attempt_at from webhook_event \
             where webhook_id = $1 order by id limit 1",
        )
        .bind(webhook)
        .fetch_optional(conn)
        .await?
    }))
}

/// Whether a webhook has an event due now.
pub async fn has_due(db: &Db, webhook: i64) -> ApiResult<bool> {
    Ok(next_event(db, webhook)
        .await?
        .is_some_and(|e| e.next_attempt_at <= now_micros()))
}

/// Webhooks with a due event and no live claim (see `webhooks::sweep`).
pub async fn stranded(db: &Db) -> ApiResult<Vec<i64>> {
    let now = now_micros();
    Ok(with_read!(db, conn, {
        sqlx::query_scalar(
            "select w.id from webhook w where (w.claimed_until is null or w.claimed_until < $1) \
             and exists(select 1 from webhook_event e where e.webhook_id = w.id and e.next_attempt_at <= $1 \
             and e.id = (select min(f.id) from webhook_event f where f.webhook_id = w.id))",
        )
        .bind(now)
        .fetch_all(conn)
        .await?
    }))
}

/// Where and how to send a webhook's events.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Target {
    /// URL.
    pub url: String,
    /// Custom headers (a JSON object).
    pub headers: String,
    /// Signing secret.
    pub secret: String,
    /// Whether it is active.
    pub is_active: bool,
}

/// The delivery target of a webhook (none if it was deleted), its secret opened.
pub async fn target(db: &Db, sealer: &Sealer, webhook: i64) -> ApiResult<Option<Target>> {
    let found: Option<Target> = with_read!(db, conn, {
        sqlx::query_as("select url, headers, secret, is_active from webhook where id = $1")
            .bind(webhook)
            .fetch_optional(conn)
            .await?
    });
    found
        .map(|mut t| {
            t.secret = sealer
                .open(&t.secret, SECRET_PURPOSE)
                .map_err(ApiError::internal)?;
            Ok(t)
        })
        .transpose()
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// 2xx answer.
    pub ok: bool,
    /// Status code, if any answer.
    pub status_code: Option<i64>,
    /// Latency.
    pub latency_ms: i64,
    /// Answer excerpt.
    pub excerpt: String,
    /// Failure.
    pub error: String,
    /// Retry time (micros); `None` with `ok = false` gives the event up.
    pub retry_at: Option<i64>,
}

/// Logs an attempt and settles the event: delivered or given up (removed from the outbox), or
/// kept for its retry.
pub async fn record_attempt(
    db: &Db,
    event: &EventRow,
    attempt: u32,
    r: &AttemptRecord,
) -> ApiResult<()> {
    let now = now_micros();
    with_tx!(db, tx, {
        sqlx::query(
            "insert into webhook_delivery (webhook_id, event_id, action, attempt, ok, status_code, latency_ms, \
             response_excerpt, error, created_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(event.webhook_id)
        .bind(event.id)
        .bind(&event.action)
        .bind(i64::from(attempt))
        .bind(r.ok)
        .bind(r.status_code)
        .bind(r.latency_ms)
        .bind(&r.excerpt)
        .bind(&r.error)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        match r.retry_at {
            Some(at) if !r.ok => {
                sqlx::query(
                    "update webhook_event set attempts = $1, next_attempt_at = $2 where id = $3",
                )
                .bind(i64::from(attempt))
                .bind(at)
                .bind(event.id)
                .execute(&mut *tx)
                .await?;
            }
            _ => {
                sqlx::query("delete from webhook_event where id = $1")
                    .bind(event.id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query(
            "update webhook set consecutive_failures = case when $1 then 0 else consecutive_failures + 1 end where id = $2",
        )
        .bind(r.ok)
        .bind(event.webhook_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "delete from webhook_delivery where webhook_id = $1 and id <= \
             (select id from webhook_delivery where webhook_id = $1 order by id desc limit 1 offset $2)",
        )
        .bind(event.webhook_id)
        .bind(LOG_KEPT)
        .execute(&mut *tx)
        .await?;
        Ok::<_, ApiError>(())
    })
}

// ---------------------------------------------------------------------------------------------
// Payload objects

/// The project object of a payload (with its counters).
pub async fn project_json(db: &Db, org: i64, id: i64) -> ApiResult<Value> {
    let row = super::projects::load(db, org, id).await?;
    serde_json::to_value(row.view()).map_err(ApiError::internal)
}

/// Task objects, in the order of `ids` (deleted ones left out).
pub async fn tasks_json(db: &Db, ids: &[i64]) -> ApiResult<Vec<Value>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let rows: Vec<TaskRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {TASK_COLUMNS} from task t where t.id in ({list}) order by t.id"
        ))
        .fetch_all(conn)
        .await?
    });
    rows.iter()
        .map(|r| serde_json::to_value(r.view()).map_err(ApiError::internal))
        .collect()
}

/// An annotation object and its task's.
pub async fn annotation_json(db: &Db, id: i64) -> ApiResult<(Value, Value)> {
    let row: Option<AnnotationRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {ANNOTATION_COLUMNS} from annotation a left join app_user u on u.id = a.completed_by where a.id = $1"
        ))
        .bind(id)
        .fetch_optional(conn)
        .await?
    });
    let row = row.ok_or_else(|| ApiError::not_found("annotation"))?;
    let annotation = serde_json::to_value(row.view()).map_err(ApiError::internal)?;
    let task = tasks_json(db, &[row.task_id])
        .await?
        .into_iter()
        .next()
        .unwrap_or(Value::Null);
    Ok((annotation, task))
}

/// The annotations of some tasks.
pub async fn annotations_of_tasks_json(db: &Db, task_ids: &[i64]) -> ApiResult<Vec<Value>> {
    annotations_json_where(db, "a.task_id", task_ids).await
}

/// Some annotations, by id.
pub async fn annotations_json(db: &Db, ids: &[i64]) -> ApiResult<Vec<Value>> {
    annotations_json_where(db, "a.id", ids).await
}

/// The annotations whose `column` is one of `ids`, oldest first, as the API shows them.
async fn annotations_json_where(db: &Db, column: &str, ids: &[i64]) -> ApiResult<Vec<Value>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let rows: Vec<AnnotationRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {ANNOTATION_COLUMNS} from annotation a left join app_user u on u.id = a.completed_by \
             where {column} in ({list}) order by a.id"
        ))
        .fetch_all(conn)
        .await?
    });
    rows.iter()
        .map(|r| serde_json::to_value(r.view()).map_err(ApiError::internal))
        .collect()
}
