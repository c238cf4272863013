//! The audit log: who changed what, when, from where — one entry per mutating request or
//! authentication event, written by the [`audit!`] macro inside the same transaction as the
//! change it describes, so no change exists without its entry.
//!
//! Entries are append-only (the database refuses updates and deletes, see migration 0003) and
//! tamper-evident: each organization has its own hash chain. An entry's hash covers its fields
//! and the previous entry's hash; `audit_head` holds each chain's last link and is updated in
//! the entry's transaction (its sequence by [`audit!`], its hash by the insert's trigger), which
//! also serializes writers of one chain. [`verify`] walks the
//! chains and reports the first broken link. [`purge`] removes entries older than an
//! organization's retention and records where verification starts ( `audit_anchor`).

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Db, format_micros, now_micros, with_read, with_tx};
use crate::{
    authz::{Actor, Permission, RequestMeta},
    error::{ApiError, ApiResult, ErrorCode},
};

/// The previous hash of a chain's first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The chain of instance-level events (no organization known, e.g. an unknown token).
pub const INSTANCE_CHAIN: i64 = 0;

/// How the audited request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The change was made.
    Ok,
    /// The request was refused (e.g. a privilege escalation attempt).
    Denied,
    /// Authentication failed.
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }
}

/// An entry ready to be chained: everything but its position and hashes.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The chain (organization id, or [`INSTANCE_CHAIN`]).
    pub chain_id: i64,
    /// Organization, if known.
    pub organization_id: Option<i64>,
    /// Acting user (None for the instance and unknown callers).
    pub actor_id: Option<i64>,
    /// Acting user's email, or `instance` / `anonymous`.
    pub actor_email: String,
    /// Dotted action name, e.g. `project.update`.
    pub action: String,
    /// `ok`, `denied` or `failed`.
    pub outcome: &'static str,
    /// Target type, e.g. `project`.
    pub target_type: String,
    /// Target id.
    pub target_id: String,
    /// JSON summary of the change (never secrets).
    pub summary: String,
    /// Request id.
    pub request_id: String,
    /// Client address.
    pub client_ip: String,
    /// User agent.
    pub user_agent: String,
    /// Time (micros).
    pub created_at: i64,
}

impl Prepared {
    /// An entry about `actor` acting on `target_type`/`target_id`.
    pub fn new(
        actor: &Actor,
        action: &str,
        target_type: &str,
        target_id: impl ToString,
        summary: Value,
    ) -> Self {
        Self {
            chain_id: actor.org_id,
            organization_id: Some(actor.org_id),
            actor_id: (actor.user_id != 0).then_some(actor.user_id),
            actor_email: actor.email.clone(),
            action: action.to_string(),
            outcome: Outcome::Ok.as_str(),
            target_type: target_type.to_string(),
            target_id: target_id.to_string(),
            summary: summary.to_string(),
            request_id: actor.meta.request_id.clone(),
            client_ip: actor.meta.client_ip.clone(),
            user_agent: actor.meta.user_agent.clone(),
            created_at: now_micros(),
        }
    }

    /// Marks the entry as a refused or failed attempt.
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome.as_str();
        self
    }

    /// The entry's hash at position `seq` after `prev_hash`.
    pub fn hash(&self, seq: i64, prev_hash: &str) -> String {
        link_hash(
            prev_hash,
            &[
                &seq.to_string(),
                &self.chain_id.to_string(),
                &self
                    .organization_id
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
                &self.actor_id.map(|v| v.to_string()).unwrap_or_default(),
                &self.actor_email,
                &self.action,
                self.outcome,
                &self.target_type,
                &self.target_id,
                &self.summary,
                &self.request_id,
                &self.client_ip,
                &self.user_agent,
                &self.created_at.to_string(),
            ],
        )
    }
}

/// SHA-256 over the previous hash and length-prefixed fields (so no two field lists collide).
fn link_hash(prev_hash: &str, fields: &[&str]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    for field in fields {
        hasher.update(format!("\n{}:", field.len()).as_bytes());
        hasher.update(field.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Appends a [`Prepared`] entry to its chain inside the open transaction `$tx`. Evaluates to
/// `Result<(), sqlx::Error>`-compatible `?` uses, so it must run inside a `with_tx!` body.
#[macro_export]
macro_rules! audit {
    ($tx:ident, $entry:expr) => {{
        let entry: $crate::storage::audit::Prepared = $entry;
        let (seq, prev): (i64, String) = sqlx::query_as(
            "update audit_head set seq = seq + 1 where chain_id = $1 returning seq, hash",
        )
        .bind(entry.chain_id)
        .fetch_one(&mut *$tx)
        .await?;
        let hash = entry.hash(seq, &prev);
        sqlx::query(
            "insert into audit_log (chain_id, seq, organization_id, actor_id, actor_email, action, outcome, \
             target_type, target_id, summary, request_id, client_ip, user_agent, created_at, prev_hash, hash) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(entry.chain_id)
        .bind(seq)
        .bind(entry.organization_id)
        .bind(entry.actor_id)
        .bind(&entry.actor_email)
        .bind(&entry.action)
        .bind(entry.outcome)
        .bind(&entry.target_type)
        .bind(&entry.target_id)
        .bind(&entry.summary)
        .bind(&entry.request_id)
        .bind(&entry.client_ip)
        .bind(&entry.user_agent)
        .bind(entry.created_at)
        .bind(&prev)
        .bind(&hash)
        .execute(&mut *$tx)
        .await?;
        // The insert's trigger (migration 0005) sets audit_head.hash to this entry's hash.
    }};
}

pub use crate::audit;

/// Writes one entry in a transaction of its own: refused attempts (whose change was rolled
/// back) and authentication events.
pub async fn record(db: &Db, entry: Prepared) -> ApiResult<()> {
    with_tx!(db, tx, {
        audit!(tx, entry);
        Ok::<_, ApiError>(())
    })
}

/// An authentication event that belongs to no known organization (instance chain).
pub fn anonymous(meta: &RequestMeta, action: &str, summary: Value) -> Prepared {
    Prepared {
        chain_id: INSTANCE_CHAIN,
        organization_id: None,
        actor_id: None,
        actor_email: "anonymous".into(),
        action: action.to_string(),
        outcome: Outcome::Failed.as_str(),
        target_type: "token".into(),
        target_id: String::new(),
        summary: summary.to_string(),
        request_id: meta.request_id.clone(),
        client_ip: meta.client_ip.clone(),
        user_agent: meta.user_agent.clone(),
        created_at: now_micros(),
    }
}

/// One audit entry as the API shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct EntryRow {
    /// Id.
    pub id: i64,
    /// Position in the organization's chain.
    pub seq: i64,
    /// Organization.
    pub organization_id: Option<i64>,
    /// Acting user.
    pub actor_id: Option<i64>,
    /// Acting user's email.
    pub actor_email: String,
    /// Action, e.g. `project.update`.
    pub action: String,
    /// `ok`, `denied` or `failed`.
    pub outcome: String,
    /// Target type.
    pub target_type: String,
    /// Target id.
    pub target_id: String,
    /// JSON summary of the change.
    #[schema(value_type = Object)]
    #[serde(serialize_with = "raw_json")]
    pub summary: String,
    /// Request id.
    pub request_id: String,
    /// Client address.
    pub client_ip: String,
    /// User agent.
    pub user_agent: String,
    /// Time (micros).
    #[serde(skip)]
    pub created_at: i64,
    /// Previous link.
    pub prev_hash: String,
    /// This link.
    pub hash: String,
}

fn raw_json<S: serde::Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => v.serialize(s),
        Err(_) => s.serialize_str(text),
    }
}

impl EntryRow {
    /// The entry as JSON with an ISO time.
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut v {
            map.insert(
                "created_at".into(),
                Value::String(format_micros(self.created_at)),
            );
        }
        v
    }
}

const ENTRY_COLUMNS: &str = "id, seq, organization_id, actor_id, actor_email, action, outcome, target_type, \
     target_id, summary, request_id, client_ip, user_agent, created_at, prev_hash, hash";

/// Filters of an audit-log query.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Acting user id.
    pub actor_id: Option<i64>,
    /// Exact action, or a prefix ending in `.` (e.g. `project.`).
    pub action: Option<String>,
    /// Target type.
    pub target_type: Option<String>,
    /// Target id (with `target_type`).
    pub target_id: Option<String>,
    /// From (micros, inclusive).
    pub since: Option<i64>,
    /// Until (micros, exclusive).
    pub until: Option<i64>,
    /// Only entries with an id below this (keyset pagination, newest first).
    pub before_id: Option<i64>,
}

fn where_clause(filter: &Filter) -> (String, Vec<FilterArg>) {
    let mut sql = String::from("chain_id = $1");
    let mut args = Vec::new();
    let mut next = 2;
    let mut push = |sql: &mut String, cond: &str, arg: FilterArg| {
        let _ = write!(sql, " and {}", cond.replace('?', &format!("${next}")));
        next += 1;
        args.push(arg);
    };
    if let Some(a) = filter.actor_id {
        push(&mut sql, "actor_id = ?", FilterArg::Int(a));
    }
    if let Some(action) = &filter.action {
        if let Some(prefix) = action.strip_suffix('.') {
            push(
                &mut sql,
                "action like ?",
                FilterArg::Text(format!("{}.%", prefix.replace(['%', '_'], ""))),
            );
        } else {
            push(&mut sql, "action = ?", FilterArg::Text(action.clone()));
        }
    }
    if let Some(t) = &filter.target_type {
        push(&mut sql, "target_type = ?", FilterArg::Text(t.clone()));
    }
    if let Some(t) = &filter.target_id {
        push(&mut sql, "target_id = ?", FilterArg::Text(t.clone()));
    }
    if let Some(s) = filter.since {
        push(&mut sql, "created_at >= ?", FilterArg::Int(s));
    }
    if let Some(u) = filter.until {
        push(&mut sql, "created_at < ?", FilterArg::Int(u));
    }
    if let Some(b) = filter.before_id {
        push(&mut sql, "id < ?", FilterArg::Int(b));
    }
    (sql, args)
}

#[derive(Debug, Clone)]
enum FilterArg {
    Int(i64),
    Text(String),
}

macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut q = $query;
        for arg in $args {
            q = match arg {
                FilterArg::Int(v) => q.bind(*v),
                FilterArg::Text(v) => q.bind(v.clone()),
            };
        }
        q
    }};
}

/// One page of the actor's organization's audit log, newest first. Returns the entries and
/// whether more follow.
pub async fn query(
    db: &Db,
    actor: &Actor,
    filter: &Filter,
    limit: i64,
) -> ApiResult<(Vec<EntryRow>, bool)> {
    actor.require(Permission::AuditView)?;
    let (cond, args) = where_clause(filter);
    let sql = format!(
        "select {ENTRY_COLUMNS} from audit_log where {cond} order by id desc limit {}",
        limit + 1
    );
    let mut rows: Vec<EntryRow> = with_read!(db, conn, {
        let q = sqlx::query_as(&sql).bind(actor.org_id);
        bind_args!(q, &args).fetch_all(conn).await?
    });
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    Ok((rows, more))
}

/// Streams every matching entry of the actor's organization as JSON lines, oldest first, in
/// batches (memory bounded by the batch, not the log).
pub async fn export(
    db: Db,
    actor: Actor,
    filter: Filter,
) -> ApiResult<tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>> {
    actor.require(Permission::AuditView)?;
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let mut after = 0i64;
        loop {
            let (cond, args) = where_clause(&filter);
            let sql = format!(
                "select {ENTRY_COLUMNS} from audit_log where {cond} and id > {after} order by id limit 1000"
            );
            let rows: Result<Vec<EntryRow>, sqlx::Error> = async {
                Ok(with_read!(&db, conn, {
                    let q = sqlx::query_as(&sql).bind(actor.org_id);
                    bind_args!(q, &args).fetch_all(conn).await?
                }))
            }
            .await;
            let rows = match rows {
                Ok(rows) => rows,
                Err(e) => {
                    let _ = sender.send(Err(std::io::Error::other(e))).await;
                    return;
                }
            };
            let Some(last) = rows.last() else { return };
            after = last.id;
            let mut chunk = String::new();
            for row in &rows {
                chunk.push_str(&row.to_json().to_string());
                chunk.push('\n');
            }
            if sender.send(Ok(bytes::Bytes::from(chunk))).await.is_err() {
                return;
            }
        }
    });
    Ok(receiver)
}

/// The first problem [`verify`] found in a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Broken {
    /// The chain (organization id; 0 for instance events).
    pub chain_id: i64,
    /// Sequence number of the first entry that does not verify.
    pub seq: i64,
    /// Its row id.
    pub id: i64,
    /// What is wrong.
    pub reason: String,
}

/// Result of verifying one chain.
#[derive(Debug, Clone, Serialize)]
pub struct ChainReport {
    /// Chain id.
    pub chain_id: i64,
    /// Entries checked.
    pub entries: i64,
    /// The first broken link, if any.
    pub broken: Option<Broken>,
}

#[derive(sqlx::FromRow)]
struct ChainRow {
    #[sqlx(flatten)]
    entry: EntryRow,
    chain_id: i64,
}

/// Walks every chain (or one) from its anchor and reports the first broken link per chain: a
/// gap in the sequence, a previous-hash mismatch, a hash that does not match the fields, or a
/// head that does not point at the last entry.
pub async fn verify(db: &Db, only_chain: Option<i64>) -> ApiResult<Vec<ChainReport>> {
    let heads: Vec<(i64, i64, String)> = with_read!(db, conn, {
        sqlx::query_as("select chain_id, seq, hash from audit_head order by chain_id")
            .fetch_all(conn)
            .await?
    });
    let mut reports = Vec::new();
    for (chain_id, head_seq, head_hash) in heads {
        if only_chain.is_some_and(|c| c != chain_id) {
            continue;
        }
        let anchor: Option<(i64, String)> = with_read!(db, conn, {
            sqlx::query_as("select seq, hash from audit_anchor where chain_id = $1")
                .bind(chain_id)
                .fetch_optional(conn)
                .await?
        });
        let (mut seq, mut prev) = anchor.unwrap_or((0, GENESIS.to_string()));
        let mut entries = 0i64;
        let mut broken = None;
        'chain: loop {
            let rows: Vec<ChainRow> = with_read!(db, conn, {
                sqlx::query_as(&format!(
                    "select {ENTRY_COLUMNS}, chain_id from audit_log where chain_id = $1 and seq > $2 \
                     order by seq limit 2000"
                ))
                .bind(chain_id)
                .bind(seq)
                .fetch_all(conn)
                .await?
            });
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let e = &row.entry;
                let fail = |reason: String| Broken {
                    chain_id,
                    seq: e.seq,
                    id: e.id,
                    reason,
                };
                if e.seq != seq + 1 {
                    broken = Some(fail(format!(
                        "entries {} to {} are missing",
                        seq + 1,
                        e.seq - 1
                    )));
                    break 'chain;
                }
                if e.prev_hash != prev {
                    broken = Some(fail(
                        "its previous-hash does not match the entry before it".into(),
                    ));
                    break 'chain;
                }
                let prepared = Prepared {
                    chain_id: row.chain_id,
                    organization_id: e.organization_id,
                    actor_id: e.actor_id,
                    actor_email: e.actor_email.clone(),
                    action: e.action.clone(),
                    outcome: match e.outcome.as_str() {
                        "ok" => "ok",
                        "denied" => "denied",
                        _ => "failed",
                    },
                    target_type: e.target_type.clone(),
                    target_id: e.target_id.clone(),
                    summary: e.summary.clone(),
                    request_id: e.request_id.clone(),
                    client_ip: e.client_ip.clone(),
                    user_agent: e.user_agent.clone(),
                    created_at: e.created_at,
                };
                if prepared.outcome != e.outcome || prepared.hash(e.seq, &prev) != e.hash {
                    broken = Some(fail("its content does not match its hash".into()));
                    break 'chain;
                }
                seq = e.seq;
                prev = e.hash.clone();
                entries += 1;
            }
        }
        if broken.is_none() && (seq != head_seq || prev != head_hash) {
            broken = Some(Broken {
                chain_id,
                seq: seq + 1,
                id: 0,
                reason: format!(
                    "the chain ends at entry {seq} but its head says {head_seq}: entries were removed"
                ),
            });
        }
        reports.push(ChainReport {
            chain_id,
            entries,
            broken,
        });
    }
    Ok(reports)
}

/// Removes entries older than each organization's `audit_retention_days` (0 keeps forever),
/// anchoring each chain at the last removed link and recording the purge in the chain itself.
/// Returns the number of entries removed.
pub async fn purge(db: &Db, now: i64) -> ApiResult<u64> {
    let orgs: Vec<(i64, i64)> = with_read!(db, conn, {
        sqlx::query_as(
            "select id, audit_retention_days from organization where audit_retention_days > 0",
        )
        .fetch_all(conn)
        .await?
    });
    let mut removed = 0u64;
    for (org_id, days) in orgs {
        let cutoff = now - days * 86_400_000_000;
        // Only what existed when the purge started: its own entries are never its prey.
        let last_seq: i64 = with_read!(db, conn, {
            sqlx::query_scalar("select seq from audit_head where chain_id = $1")
                .bind(org_id)
                .fetch_optional(conn)
                .await?
        })
        .unwrap_or(0);
        // Batches keep each transaction short on a large log.
        loop {
            let done: u64 = with_tx!(db, tx, {
                let last: Option<(i64, String)> = sqlx::query_as(
                    "select seq, hash from audit_log where chain_id = $1 and created_at < $2 and seq <= $3 \
                     and seq <= (select coalesce(min(seq), 0) + 9999 from audit_log where chain_id = $1) \
                     order by seq desc limit 1",
                )
                .bind(org_id)
                .bind(cutoff)
                .bind(last_seq)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((last_seq, last_hash)) = last else {
                    return Ok::<_, ApiError>(0);
                };
                sqlx::query("insert into audit_purge_permit (chain_id) values ($1)")
                    .bind(org_id)
                    .execute(&mut *tx)
                    .await?;
                let deleted =
                    sqlx::query("delete from audit_log where chain_id = $1 and seq <= $2")
                        .bind(org_id)
                        .bind(last_seq)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                sqlx::query("delete from audit_purge_permit where chain_id = $1")
                    .bind(org_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "insert into audit_anchor (chain_id, seq, hash) values ($1, $2, $3) \
                     on conflict (chain_id) do update set seq = excluded.seq, hash = excluded.hash",
                )
                .bind(org_id)
                .bind(last_seq)
                .bind(&last_hash)
                .execute(&mut *tx)
                .await?;
                let actor = Actor::instance(org_id, RequestMeta::default());
                audit!(
                    tx,
                    Prepared::new(
                        &actor,
                        "audit.purge",
                        "audit_log",
                        org_id,
                        serde_json::json!({
                            "removed": deleted,
                            "through_seq": last_seq,
                            "anchor_hash": last_hash,
                            "retention_days": days,
                        }),
                    )
                );
                Ok(deleted)
            })?;
            removed += done;
            if done == 0 {
                break;
            }
        }
    }
    Ok(removed)
}

/// The entries a request wrote (by request id), across organizations: for operators tracing a
/// request id from a log line, and for the test suite's check that every change is audited.
pub async fn entries_for_request(db: &Db, request_id: &str) -> ApiResult<Vec<EntryRow>> {
    Ok(with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {ENTRY_COLUMNS} from audit_log where request_id = $1 order by id"
        ))
        .bind(request_id)
        .fetch_all(conn)
        .await?
    }))
}

/// Fails with a clear message when a filter value is malformed.
pub fn bad_filter(field: &str, message: &str) -> ApiError {
    ApiError::field(ErrorCode::ValidationError, field, message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_depend_on_every_field_and_the_previous_link() {
        let actor = Actor::instance(7, RequestMeta::default());
        let e = Prepared::new(
            &actor,
            "project.update",
            "project",
            3,
            serde_json::json!({"a": 1}),
        );
        let h = e.hash(1, GENESIS);
        assert_eq!(h.len(), 64);
        assert_ne!(h, e.hash(2, GENESIS));
        assert_ne!(h, e.hash(1, &h));
        let mut other = e.clone();
        other.target_id = "4".into();
        assert_ne!(h, other.hash(1, GENESIS));
        // Length prefixes: moving a character between fields changes the hash.
        let mut a = e.clone();
        a.actor_email = "ab".into();
        a.action = "c".into();
        let mut b = e.clone();
        b.actor_email = "a".into();
        b.action = "bc".into();
        assert_ne!(a.hash(1, GENESIS), b.hash(1, GENESIS));
    }

    #[test]
    fn filters_number_their_parameters() {
        let (sql, args) = where_clause(&Filter {
            actor_id: Some(2),
            action: Some("project.".into()),
            before_id: Some(9),
            ..Filter::default()
        });
        assert_eq!(
            sql,
            "chain_id = $1 and actor_id = $2 and action like $3 and id < $4"
        );
        assert_eq!(args.len(), 3);
    }
}
