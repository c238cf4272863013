//! Data-manager views (tabs): saved filters, ordering and display settings of a project. Owns
//! the `dm_view` table; it never runs the filters itself (the task list does, see
//! [`super::tasks::task_query`]).

use serde::Serialize;
use serde_json::{Value, json};

use super::{
    Db, access,
    audit::{Prepared, audit},
    format_micros, now_micros, tasks, with_read, with_tx,
};
use crate::{
    authz::{Actor, Permission},
    error::{ApiError, ApiResult, ErrorCode},
};

/// A stored view.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ViewRow {
    /// Id.
    pub id: i64,
    /// Project.
    pub project_id: i64,
    /// Creator.
    pub user_id: Option<i64>,
    /// Position among the project's tabs.
    pub position: i64,
    /// The client's JSON.
    pub data: String,
    /// Creation time (UTC microseconds).
    pub created_at: i64,
    /// Last change (UTC microseconds).
    pub updated_at: i64,
}

const COLUMNS: &str = "id, project_id, user_id, position, data, created_at, updated_at";

/// A view as the API shows it (Label Studio's `View`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ViewView {
    /// Id.
    pub id: i64,
    /// Project.
    pub project: i64,
    /// Who created the view.
    pub user: Option<i64>,
    /// Position among the project's tabs.
    pub order: i64,
    /// Free JSON: `title`, `type`, `filters` (`{conjunction, items: [{filter, operator, type,
    /// value}]}`), `ordering`, `hiddenColumns`, …
    #[schema(value_type = Object)]
    pub data: Value,
    /// `data.filters` in Label Studio's filter-group shape (read-only here).
    #[schema(value_type = Object, nullable = true)]
    pub filter_group: Value,
    /// `data.ordering`.
    #[schema(value_type = Vec<String>)]
    pub ordering: Value,
    /// Always null: a selection is not stored.
    #[schema(value_type = Object, nullable = true)]
    pub selected_items: Value,
    /// Never locked.
    pub is_locked: bool,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

impl ViewRow {
    /// The API shape.
    pub fn view(&self) -> ViewView {
        let data: Value = serde_json::from_str(&self.data).unwrap_or_else(|_| json!({}));
        ViewView {
            id: self.id,
            project: self.project_id,
            user: self.user_id,
            order: self.position,
            filter_group: filter_group(data.get("filters")),
            ordering: data.get("ordering").cloned().unwrap_or_else(|| json!([])),
            data,
            selected_items: Value::Null,
            is_locked: false,
            created_at: format_micros(self.created_at),
            updated_at: format_micros(self.updated_at),
        }
    }

    /// The view's filters and ordering, as the task list's query JSON.
    pub fn query(&self) -> Value {
        let data: Value = serde_json::from_str(&self.data).unwrap_or_else(|_| json!({}));
        json!({"filters": data.get("filters"), "ordering": data.get("ordering")})
    }
}

/// Label Studio's `filter_group` shape of `data.filters`: `{conjunction, filters: [{column,
/// operator, type, value}]}`.
fn filter_group(filters: Option<&Value>) -> Value {
    let Some(filters) = filters.filter(|f| f.is_object()) else {
        return Value::Null;
    };
    let items: Vec<Value> = filters
        .get("items")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    json!({"column": i.get("filter"), "operator": i.get("operator"),
                        "type": i.get("type"), "value": i.get("value")})
                })
                .collect()
        })
        .unwrap_or_default();
    json!({"conjunction": filters.get("conjunction").and_then(Value::as_str).unwrap_or("and"), "filters": items})
}

/// Checks a view's `data`: an object whose `filters` and `ordering` the task list accepts.
fn validate(db: &Db, data: &Value) -> ApiResult<()> {
    if !data.is_object() {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "data",
            "must be a JSON object (title, filters, ordering, …)",
        ));
    }
    let query = json!({"filters": data.get("filters"), "ordering": data.get("ordering")});
    tasks::task_query(db.dialect(), &query, false).map_err(|e| {
        ApiError::field(
            ErrorCode::ValidationError,
            "data",
            format!("filters or ordering are not valid: {}", e.detail),
        )
    })?;
    Ok(())
}

/// The views of a project, in tab order.
pub async fn list(db: &Db, actor: &Actor, project_id: i64) -> ApiResult<Vec<ViewRow>> {
    access::project(db, actor, project_id, Permission::ProjectView).await?;
    Ok(with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {COLUMNS} from dm_view where project_id = $1 order by position, id"
        ))
        .bind(project_id)
        .fetch_all(conn)
        .await?
    }))
}

/// Creates a view, last among the project's tabs.
pub async fn create(db: &Db, actor: &Actor, project_id: i64, data: Value) -> ApiResult<ViewRow> {
    access::project(db, actor, project_id, Permission::ProjectView).await?;
    validate(db, &data)?;
    let now = now_micros();
    let text = data.to_string();
    with_tx!(db, tx, {
        crate::recheck_project_access!(tx, actor, project_id, Permission::ProjectView)?;
        let row: ViewRow = sqlx::query_as(&format!(
            "insert into dm_view (organization_id, project_id, user_id, position, data, created_at, updated_at) \
             values ($1, $2, $3, (select coalesce(max(position) + 1, 0) from dm_view where project_id = $2), $4, $5, $5) \
             returning {COLUMNS}"
        ))
        .bind(actor.org_id)
        .bind(project_id)
        .bind(actor.user_id)
        .bind(&text)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "view.create",
                "view",
                row.id,
                json!({"project": project_id, "title": data.get("title")})
            )
        );
        Ok::<_, ApiError>(row)
    })
}

async fn load(db: &Db, actor: &Actor, id: i64) -> ApiResult<ViewRow> {
    let row: Option<ViewRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {COLUMNS} from dm_view where id = $1 and organization_id = $2"
        ))
        .bind(id)
        .bind(actor.org_id)
        .fetch_optional(conn)
        .await?
    });
    row.ok_or_else(|| ApiError::not_found("view"))
}

/// One view.
pub async fn get(db: &Db, actor: &Actor, id: i64) -> ApiResult<ViewRow> {
    let row = load(db, actor, id).await?;
    access::project(db, actor, row.project_id, Permission::ProjectView).await?;
    Ok(row)
}

/// Loads a view the caller may change: their own with `project.view`, anyone's with
/// `task.manage` (the route table's `authz::CHANGE_VIEW`).
async fn for_change(db: &Db, actor: &Actor, id: i64) -> ApiResult<ViewRow> {
    let row = load(db, actor, id).await?;
    let permission = crate::authz::CHANGE_VIEW
        .required(row.user_id == Some(actor.user_id))
        .unwrap_or(Permission::TaskManage);
    access::project(db, actor, row.project_id, permission).await?;
    Ok(row)
}

/// Replaces a view's data (Label Studio's PATCH replaces `data` as a whole).
pub async fn update(db: &Db, actor: &Actor, id: i64, data: Value) -> ApiResult<ViewRow> {
    for_change(db, actor, id).await?;
    validate(db, &data)?;
    let now = now_micros();
    with_tx!(db, tx, {
        let row: Option<ViewRow> = sqlx::query_as(&format!(
            "update dm_view set data = $1, updated_at = $2 where id = $3 returning {COLUMNS}"
        ))
        .bind(data.to_string())
        .bind(now)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let row = row.ok_or_else(|| ApiError::not_found("view"))?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "view.update",
                "view",
                id,
                json!({"project": row.project_id})
            )
        );
        Ok::<_, ApiError>(row)
    })
}

/// Deletes a view.
pub async fn delete(db: &Db, actor: &Actor, id: i64) -> ApiResult<()> {
    let row = for_change(db, actor, id).await?;
    with_tx!(db, tx, {
        sqlx::query("delete from dm_view where id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "view.delete",
                "view",
                id,
                json!({"project": row.project_id})
            )
        );
        Ok::<_, ApiError>(())
    })
}

/// Deletes the caller's own views of a project (everyone's views stay); returns how many.
pub async fn reset(db: &Db, actor: &Actor, project_id: i64) -> ApiResult<u64> {
    access::project(db, actor, project_id, Permission::ProjectView).await?;
    with_tx!(db, tx, {
        let n = sqlx::query("delete from dm_view where project_id = $1 and user_id = $2")
            .bind(project_id)
            .bind(actor.user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        audit!(
            tx,
            Prepared::new(
                actor,
                "view.reset",
                "project",
                project_id,
                json!({"deleted": n})
            )
        );
        Ok::<_, ApiError>(n)
    })
}

/// Puts the given views first, in the given order (the others keep theirs, after them).
/// Another member's view may be moved only with `task.manage`.
pub async fn order(db: &Db, actor: &Actor, project_id: i64, ids: &[i64]) -> ApiResult<()> {
    let access = access::project(db, actor, project_id, Permission::ProjectView).await?;
    let rows = list(db, actor, project_id).await?;
    for id in ids {
        let Some(row) = rows.iter().find(|r| r.id == *id) else {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "ids",
                format!("view {id} is not a view of project {project_id}"),
            ));
        };
        if row.user_id != Some(actor.user_id) {
            actor.require_in(Some(access.role), Permission::TaskManage)?;
        }
    }
    let mut seen = std::collections::HashSet::new();
    if !ids.iter().all(|id| seen.insert(*id)) {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "ids",
            "a view id appears twice",
        ));
    }
    let rest = rows.iter().map(|r| r.id).filter(|id| !seen.contains(id));
    let sequence: Vec<i64> = ids.iter().copied().chain(rest).collect();
    with_tx!(db, tx, {
        for (position, id) in sequence.iter().enumerate() {
            sqlx::query("update dm_view set position = $1 where id = $2 and project_id = $3")
                .bind(position as i64)
                .bind(id)
                .bind(project_id)
                .execute(&mut *tx)
                .await?;
        }
        audit!(
            tx,
            Prepared::new(
                actor,
                "view.order",
                "project",
                project_id,
                json!({"ids": ids})
            )
        );
        Ok::<_, ApiError>(())
    })
}

/// The view a task list or an action names, checked to belong to `project` when one is given.
pub async fn for_query(
    db: &Db,
    actor: &Actor,
    id: i64,
    project: Option<i64>,
) -> ApiResult<ViewRow> {
    let row = get(db, actor, id).await?;
    if let Some(p) = project
        && p != row.project_id
    {
        return Err(ApiError::field(
            ErrorCode::InvalidQuery,
            "view",
            format!("view {id} belongs to project {}, not {p}", row.project_id),
        ));
    }
    Ok(row)
}
