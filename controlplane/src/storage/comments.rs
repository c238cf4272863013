//! Comments on annotations (ADR 0038), Label Studio Enterprise's `/api/comments`: written on
//! their own or with a review (ADR 0024), optionally about one region (`region_ref`),
//! resolved and reopened. Who may do what:
//! - everyone who may see the annotation (annotators only their own, unless the project lets
//!   them see others', ADR 0014) may read its comments and comment on it;
//! - the author of a comment may change its text and delete it; managers and above may delete
//!   anyone's (moderation);
//! - resolving and reopening is for the comment's author, the annotation's author, and
//!   reviewers and above.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{
    Db, access,
    annotations::{self, AnnotationRow},
    audit::{Prepared, audit},
    now_micros,
    reviews::iso,
    tasks::Visible,
    with_read, with_tx,
};
use crate::{
    authz::{Actor, Permission, Role},
    error::{ApiError, ApiResult, ErrorCode},
};

/// Recounts the comments of task `$task_id` into its counters (`comment_count`,
/// `unresolved_comment_count`, `last_comment_updated_at`, `comment_authors`) inside the write
/// transaction `$tx` that changed them (ADR 0051). Reads that task's comments only.
#[macro_export]
macro_rules! refresh_task_comments {
    ($tx:expr, $task_id:expr) => {{
        let task_id: i64 = $task_id;
        let (count, unresolved, last): (i64, i64, Option<i64>) = sqlx::query_as(
            "select count(*), coalesce(sum(case when is_resolved then 0 else 1 end), 0), \
             max(updated_at) from review_comment where task_id = $1",
        )
        .bind(task_id)
        .fetch_one(&mut *$tx)
        .await?;
        let authors: Vec<i64> = sqlx::query_scalar(
            "select distinct created_by from review_comment where task_id = $1 \
             and created_by is not null order by created_by",
        )
        .bind(task_id)
        .fetch_all(&mut *$tx)
        .await?;
        sqlx::query(
            "update task set comment_count = $1, unresolved_comment_count = $2, \
             last_comment_updated_at = $3, comment_authors = $4 where id = $5",
        )
        .bind(count)
        .bind(unresolved)
        .bind(last)
        .bind(serde_json::Value::from(authors).to_string())
        .bind(task_id)
        .execute(&mut *$tx)
        .await?;
    }};
}

pub use crate::refresh_task_comments;

/// Longest comment text, in bytes.
pub const MAX_TEXT: usize = 65_536;

/// A comment as Label Studio Enterprise shows it.
#[derive(Debug, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct CommentRow {
    /// Id.
    pub id: i64,
    /// Text.
    pub text: String,
    /// The annotation.
    #[sqlx(rename = "annotation_id")]
    pub annotation: Option<i64>,
    /// The review it was written with, if any.
    #[sqlx(rename = "review_id")]
    pub review: Option<i64>,
    /// Project.
    #[sqlx(rename = "project_id")]
    pub project: i64,
    /// Task.
    #[sqlx(rename = "task_id")]
    pub task: i64,
    /// Author.
    pub created_by: Option<i64>,
    /// Resolved.
    pub is_resolved: bool,
    /// When it was resolved (ISO), or null.
    #[sqlx(skip)]
    pub resolved_at: Option<String>,
    #[serde(skip)]
    #[sqlx(rename = "resolved_at")]
    resolved_micros: Option<i64>,
    /// The region it is about: `{"regionId", "controlName"}`, or null.
    #[sqlx(skip)]
    #[schema(value_type = Option<Object>)]
    pub region_ref: Option<Value>,
    #[serde(skip)]
    #[sqlx(rename = "region_ref")]
    region_text: Option<String>,
    /// Free classifications of the comment, or null.
    #[sqlx(skip)]
    #[schema(value_type = Option<Object>)]
    pub classifications: Option<Value>,
    #[serde(skip)]
    #[sqlx(rename = "classifications")]
    classifications_text: Option<String>,
    /// Always null (drafts take no comments here).
    #[sqlx(skip)]
    pub draft: Option<i64>,
    /// ISO creation time.
    #[serde(serialize_with = "iso")]
    #[schema(value_type = String)]
    pub created_at: i64,
    /// ISO update time.
    #[serde(serialize_with = "iso")]
    #[schema(value_type = String)]
    pub updated_at: i64,
}

impl CommentRow {
    fn finish(mut self) -> Self {
        self.resolved_at = self.resolved_micros.map(super::format_micros);
        self.region_ref = self
            .region_text
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok());
        self.classifications = self
            .classifications_text
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok());
        self
    }
}

const COLUMNS: &str = "c.id, c.text, c.annotation_id, c.review_id, c.project_id, c.task_id, c.created_by, \
    c.is_resolved, c.resolved_at, c.region_ref, c.classifications, c.created_at, c.updated_at";

/// What a comment body may set.
#[derive(Debug, Default)]
pub struct CommentInput {
    /// The text.
    pub text: Option<String>,
    /// The region reference (`null` clears it).
    pub region_ref: Option<Option<Value>>,
    /// Classifications (`null` clears them).
    pub classifications: Option<Option<Value>>,
    /// Resolved or not.
    pub is_resolved: Option<bool>,
}

impl CommentInput {
    /// Reads a comment body; 400 naming the first bad field.
    pub fn from_body(body: &Map<String, Value>) -> ApiResult<Self> {
        let bad = |f: &str, m: &str| {
            Err(ApiError::field(
                ErrorCode::ValidationError,
                f,
                m.to_string(),
            ))
        };
        let mut input = CommentInput::default();
        for (key, value) in body {
            match (key.as_str(), value) {
                ("text", Value::String(t)) => {
                    if t.trim().is_empty() {
                        return bad("text", "must not be empty");
                    }
                    if t.len() > MAX_TEXT {
                        return bad("text", "must be at most 65536 bytes");
                    }
                    input.text = Some(t.clone());
                }
                ("text", _) => return bad("text", "must be a string"),
                ("region_ref", Value::Null) => input.region_ref = Some(None),
                ("region_ref", Value::Object(_)) => input.region_ref = Some(Some(value.clone())),
                ("region_ref", _) => {
                    return bad(
                        "region_ref",
                        "must be an object like {\"regionId\": \"…\", \"controlName\": \"…\"} or null",
                    );
                }
                ("classifications", Value::Null) => input.classifications = Some(None),
                ("classifications", Value::Object(_) | Value::Array(_)) => {
                    input.classifications = Some(Some(value.clone()));
                }
                ("classifications", _) => {
                    return bad("classifications", "must be an object, a list or null");
                }
                ("is_resolved", Value::Bool(b)) => input.is_resolved = Some(*b),
                ("is_resolved", _) => return bad("is_resolved", "must be true or false"),
                // Read by the caller, or shown back by clients.
                (
                    "annotation" | "draft" | "id" | "project" | "task" | "created_by"
                    | "created_at" | "updated_at" | "resolved_at" | "review",
                    _,
                ) => {}
                (other, _) => {
                    return bad(
                        other,
                        "unknown field; a comment has text, region_ref, classifications and is_resolved",
                    );
                }
            }
        }
        for (field, v) in [
            ("region_ref", &input.region_ref),
            ("classifications", &input.classifications),
        ] {
            if let Some(Some(v)) = v
                && v.to_string().len() > 16_384
            {
                return bad(field, "must be at most 16384 bytes of JSON");
            }
        }
        Ok(input)
    }
}

/// The annotation a comment is about, checked visible to the caller, with the caller's role
/// in its project.
async fn annotation_for(db: &Db, actor: &Actor, id: i64) -> ApiResult<(AnnotationRow, Role)> {
    let row = annotations::load_row(db, actor, id).await?;
    let project = access::project(db, actor, row.project_id, Permission::ProjectView).await?;
    if !Visible::for_access(actor, &project).shows(row.completed_by) {
        return Err(ApiError::not_found("annotation"));
    }
    Ok((row, project.role))
}

async fn load(db: &Db, actor: &Actor, id: i64) -> ApiResult<(CommentRow, AnnotationRow, Role)> {
    let row: Option<CommentRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {COLUMNS} from review_comment c join project p on p.id = c.project_id \
             where c.id = $1 and p.organization_id = $2"
        ))
        .bind(id)
        .bind(actor.org_id)
        .fetch_optional(conn)
        .await?
    });
    let row = row.ok_or_else(|| ApiError::not_found("comment"))?;
    let annotation = row
        .annotation
        .ok_or_else(|| ApiError::not_found("comment"))?;
    let (ann, role) = annotation_for(db, actor, annotation).await.map_err(|e| {
        if e.code == ErrorCode::NotFound {
            ApiError::not_found("comment")
        } else {
            e
        }
    })?;
    Ok((row.finish(), ann, role))
}

/// One comment the caller may see.
pub async fn get(db: &Db, actor: &Actor, id: i64) -> ApiResult<CommentRow> {
    Ok(load(db, actor, id).await?.0)
}

/// Comments on an annotation, or in the projects given, that the caller may see; oldest first.
pub async fn list(
    db: &Db,
    actor: &Actor,
    annotation: Option<i64>,
    project: Option<i64>,
) -> ApiResult<Vec<CommentRow>> {
    let (project_id, annotation) = match (annotation, project) {
        (Some(a), _) => (annotation_for(db, actor, a).await?.0.project_id, Some(a)),
        (None, Some(p)) => (p, None),
        (None, None) => {
            return Err(ApiError::field(
                ErrorCode::InvalidQuery,
                "annotation",
                "give annotation=<id> or projects=<project id>",
            ));
        }
    };
    let access = access::project(db, actor, project_id, Permission::ProjectView).await?;
    let visible = Visible::for_access(actor, &access);
    let rows: Vec<(CommentRow, Option<i64>)> = with_read!(db, conn, {
        let rows: Vec<CommentRow> = sqlx::query_as(&format!(
            "select {COLUMNS} from review_comment c where c.project_id = $1 \
             and ($2 = 0 or c.annotation_id = $2) order by c.id"
        ))
        .bind(project_id)
        .bind(annotation.unwrap_or(0))
        .fetch_all(conn)
        .await?;
        let authors: Vec<(i64, Option<i64>)> = sqlx::query_as(
            "select c.id, a.completed_by from review_comment c join annotation a on a.id = c.annotation_id \
             where c.project_id = $1",
        )
        .bind(project_id)
        .fetch_all(conn)
        .await?;
        let authors: std::collections::HashMap<i64, Option<i64>> = authors.into_iter().collect();
        rows.into_iter()
            .map(|c| {
                let author = authors.get(&c.id).copied().flatten();
                (c, author)
            })
            .collect()
    });
    Ok(rows
        .into_iter()
        .filter(|(_, author)| visible.shows(*author))
        .map(|(c, _)| c.finish())
        .collect())
}

/// Comments on annotation `annotation` (which the caller may see).
pub async fn create(
    db: &Db,
    actor: &Actor,
    annotation: i64,
    input: &CommentInput,
) -> ApiResult<CommentRow> {
    let (ann, _) = annotation_for(db, actor, annotation).await?;
    let Some(text) = input.text.as_deref() else {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "text",
            "this field is required",
        ));
    };
    let now = now_micros();
    let resolved = input.is_resolved.unwrap_or(false);
    let to_text = |v: &Option<Option<Value>>| v.clone().flatten().map(|v| v.to_string());
    let id: i64 = with_tx!(db, tx, {
        crate::recheck_project_access!(tx, actor, ann.project_id, Permission::ProjectView)?;
        let id: i64 = sqlx::query_scalar(
            "insert into review_comment (project_id, task_id, annotation_id, text, created_by, \
             is_resolved, resolved_at, region_ref, classifications, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) returning id",
        )
        .bind(ann.project_id)
        .bind(ann.task_id)
        .bind(ann.id)
        .bind(text)
        .bind(actor.user_id)
        .bind(resolved)
        .bind(resolved.then_some(now))
        .bind(to_text(&input.region_ref))
        .bind(to_text(&input.classifications))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        refresh_task_comments!(tx, ann.task_id);
        crate::notify_comment!(
            tx,
            ann.project_id,
            ann.task_id,
            ann.id,
            ann.completed_by,
            id,
            actor.user_id,
            now
        );
        audit!(
            tx,
            Prepared::new(
                actor,
                "comment.create",
                "annotation",
                ann.id,
                json!({"comment": id, "project": ann.project_id})
            )
        );
        Ok::<_, ApiError>(id)
    })?;
    get(db, actor, id).await
}

/// Changes a comment: its author changes text, region and classifications; its author, the
/// annotation's author and reviewers and above resolve or reopen it.
pub async fn update(
    db: &Db,
    actor: &Actor,
    id: i64,
    input: &CommentInput,
) -> ApiResult<CommentRow> {
    let (row, ann, role) = load(db, actor, id).await?;
    let own = row.created_by == Some(actor.user_id);
    let forbidden = |what: &str| Err(ApiError::new(ErrorCode::Forbidden, what.to_string()));
    if (input.text.is_some() || input.region_ref.is_some() || input.classifications.is_some())
        && !own
    {
        return forbidden("only the author of a comment may change it");
    }
    if input.is_resolved.is_some()
        && !(own || ann.completed_by == Some(actor.user_id))
        && let Some(needed) = crate::authz::CHANGE_COMMENT.required(false)
    {
        actor.require_in(Some(role), needed)?;
    }
    let now = now_micros();
    let to_text = |v: &Option<Value>| v.as_ref().map(Value::to_string);
    with_tx!(db, tx, {
        crate::recheck_project_access!(tx, actor, ann.project_id, Permission::ProjectView)?;
        if let Some(text) = &input.text {
            sqlx::query("update review_comment set text = $1 where id = $2")
                .bind(text)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(r) = &input.region_ref {
            sqlx::query("update review_comment set region_ref = $1 where id = $2")
                .bind(to_text(r))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(c) = &input.classifications {
            sqlx::query("update review_comment set classifications = $1 where id = $2")
                .bind(to_text(c))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(resolved) = input.is_resolved
            && resolved != row.is_resolved
        {
            sqlx::query(
                "update review_comment set is_resolved = $1, resolved_at = $2 where id = $3",
            )
            .bind(resolved)
            .bind(resolved.then_some(now))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("update review_comment set updated_at = $1 where id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        refresh_task_comments!(tx, row.task);
        audit!(
            tx,
            Prepared::new(
                actor,
                "comment.update",
                "annotation",
                ann.id,
                json!({"comment": id, "is_resolved": input.is_resolved})
            )
        );
        Ok::<_, ApiError>(())
    })?;
    get(db, actor, id).await
}

/// Deletes a comment: its author, or managers and above (moderation).
pub async fn delete(db: &Db, actor: &Actor, id: i64) -> ApiResult<()> {
    let (row, ann, role) = load(db, actor, id).await?;
    if row.created_by != Some(actor.user_id)
        && let Some(needed) = crate::authz::DELETE_COMMENT.required(false)
    {
        actor.require_in(Some(role), needed)?;
    }
    with_tx!(db, tx, {
        sqlx::query("delete from review_comment where id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        refresh_task_comments!(tx, row.task);
        audit!(
            tx,
            Prepared::new(
                actor,
                "comment.delete",
                "annotation",
                ann.id,
                json!({"comment": id})
            )
        );
        Ok::<_, ApiError>(())
    })
}

/// The columns of the comment export (`GET /api/comments/export`).
pub const EXPORT_COLUMNS: [&str; 14] = [
    "id",
    "project",
    "task",
    "annotation",
    "review",
    "text",
    "region_ref",
    "classifications",
    "is_resolved",
    "resolved_at",
    "created_by",
    "created_by_email",
    "created_at",
    "updated_at",
];

/// Most projects one export names.
pub const MAX_EXPORT_PROJECTS: usize = 100;

/// The comments of the given projects (or of one annotation) that the caller may see, as CSV
/// with a header row ([`EXPORT_COLUMNS`]), oldest first per project; times in UTC. Cells that
/// a spreadsheet would run as formulas are made text, as in task exports.
pub async fn export_csv(
    db: &Db,
    actor: &Actor,
    projects: &[i64],
    annotation: Option<i64>,
) -> ApiResult<Vec<u8>> {
    let mut rows = Vec::new();
    if let Some(a) = annotation {
        rows.extend(list(db, actor, Some(a), None).await?);
        rows.retain(|c| projects.is_empty() || projects.contains(&c.project));
    } else {
        if projects.is_empty() {
            return Err(ApiError::field(
                ErrorCode::InvalidQuery,
                "projects",
                "give projects=<project id>[,<project id>…] or annotation=<id>",
            ));
        }
        for &p in projects {
            rows.extend(list(db, actor, None, Some(p)).await?);
        }
    }
    let mut user_ids: Vec<i64> = rows.iter().filter_map(|c| c.created_by).collect();
    user_ids.sort_unstable();
    user_ids.dedup();
    let emails: std::collections::HashMap<i64, String> = if user_ids.is_empty() {
        Default::default()
    } else {
        // Ids are integers from our own rows.
        let list = user_ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let found: Vec<(i64, String)> = with_read!(db, conn, {
            sqlx::query_as(&format!(
                "select id, email from app_user where id in ({list})"
            ))
            .fetch_all(conn)
            .await?
        });
        found.into_iter().collect()
    };
    let json_cell = |v: &Option<Value>| v.as_ref().map(Value::to_string).unwrap_or_default();
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    let mut out = super::export::csv_line(EXPORT_COLUMNS.iter().copied(), b',', true);
    for c in &rows {
        let cells = [
            c.id.to_string(),
            c.project.to_string(),
            c.task.to_string(),
            opt(c.annotation),
            opt(c.review),
            c.text.clone(),
            json_cell(&c.region_ref),
            json_cell(&c.classifications),
            c.is_resolved.to_string(),
            c.resolved_at.clone().unwrap_or_default(),
            opt(c.created_by),
            c.created_by
                .and_then(|u| emails.get(&u).cloned())
                .unwrap_or_default(),
            super::format_micros(c.created_at),
            super::format_micros(c.updated_at),
        ];
        out.extend(super::export::csv_line(
            cells.iter().map(String::as_str),
            b',',
            true,
        ));
    }
    Ok(out)
}
