//! Predictions: model output attached to tasks, used to pre-label them.

use serde::Serialize;
use serde_json::{Map, Value, value::RawValue};

use super::{
    Db, access,
    annotations::raw,
    audit::{Prepared, audit},
    format_micros, now_micros, with_read, with_tx,
};
use crate::{
    authz::{Actor, Permission},
    error::{ApiError, ApiResult, ErrorCode},
    storage::{projects, tasks},
};

/// A prediction row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PredictionRow {
    /// Id.
    pub id: i64,
    /// Task.
    pub task_id: i64,
    /// Project.
    pub project_id: i64,
    /// Result JSON.
    pub result: String,
    /// Score.
    pub score: Option<f64>,
    /// Model version.
    pub model_version: String,
    /// Cluster (uncertainty sampling).
    pub cluster: Option<i64>,
    /// Mislabeling score.
    pub mislabeling: f64,
    /// Created (micros).
    pub created_at: i64,
    /// Updated (micros).
    pub updated_at: i64,
}

/// Columns selected into [`PredictionRow`] (prediction aliased `pr`).
pub const PREDICTION_COLUMNS: &str = "pr.id, pr.task_id, pr.project_id, pr.result, pr.score, pr.model_version, \
    pr.cluster, pr.mislabeling, pr.created_at, pr.updated_at";

/// The prediction JSON of Label Studio.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PredictionView {
    /// Id.
    pub id: i64,
    /// Region items.
    #[schema(value_type = Vec<Object>)]
    pub result: Box<RawValue>,
    /// Score.
    pub score: Option<f64>,
    /// Model version.
    pub model_version: String,
    /// Cluster.
    pub cluster: Option<i64>,
    /// Always null.
    pub neighbors: Option<Value>,
    /// Mislabeling score.
    pub mislabeling: f64,
    /// ISO creation time.
    pub created_at: String,
    /// ISO update time.
    pub updated_at: String,
    /// ML backend id (none yet).
    pub model: Option<i64>,
    /// Prompts run (none).
    pub model_run: Option<i64>,
    /// Task id.
    pub task: i64,
    /// Project id.
    pub project: i64,
    /// Always empty.
    pub created_ago: String,
}

impl PredictionRow {
    /// The API view.
    pub fn view(&self) -> PredictionView {
        PredictionView {
            id: self.id,
            result: raw(&self.result),
            score: self.score,
            model_version: self.model_version.clone(),
            cluster: self.cluster,
            neighbors: None,
            mislabeling: self.mislabeling,
            created_at: format_micros(self.created_at),
            updated_at: format_micros(self.updated_at),
            model: None,
            model_run: None,
            task: self.task_id,
            project: self.project_id,
            created_ago: String::new(),
        }
    }
}

/// A prediction body, type-checked.
#[derive(Debug, Clone)]
pub struct PredictionInput {
    /// Task id.
    pub task: Option<i64>,
    /// Result (array).
    pub result: Option<Value>,
    /// Score.
    pub score: Option<Option<f64>>,
    /// Model version.
    pub model_version: Option<String>,
}

impl PredictionInput {
    /// Reads a Label Studio prediction body; `field_prefix` qualifies messages in bulk imports.
    pub fn from_body(body: &Map<String, Value>, field_prefix: &str) -> ApiResult<Self> {
        let field = |k: &str| format!("{field_prefix}{k}");
        let task = match body.get("task") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
            Some(_) => {
                return Err(ApiError::field(
                    ErrorCode::ValidationError,
                    &field("task"),
                    "must be a task id",
                ));
            }
        };
        // A list of region items, or (for a one-control config) the legacy client's shorthand:
        // a bare value or a value object, expanded against the project's config on create.
        let result = match body.get("result") {
            None => None,
            Some(Value::Null) => {
                return Err(ApiError::field(
                    ErrorCode::ValidationError,
                    &field("result"),
                    "must be a list of region items",
                ));
            }
            Some(v) => Some(v.clone()),
        };
        let score = match body.get("score") {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::Number(n)) => Some(n.as_f64()),
            Some(_) => {
                return Err(ApiError::field(
                    ErrorCode::ValidationError,
                    &field("score"),
                    "must be a number",
                ));
            }
        };
        let model_version = match body.get("model_version") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => {
                return Err(ApiError::field(
                    ErrorCode::ValidationError,
                    &field("model_version"),
                    "must be a string",
                ));
            }
        };
        Ok(Self {
            task,
            result,
            score,
            model_version,
        })
    }
}

fn expand(project: &projects::ProjectRow, result: &Value, field: &str) -> ApiResult<Value> {
    match project.config() {
        Some(config) => config
            .expand_shorthand(result)
            .map_err(|e| ApiError::field(ErrorCode::InvalidResult, field, e.message)),
        None if result.is_array() => Ok(result.clone()),
        None => Err(ApiError::field(
            ErrorCode::ValidationError,
            field,
            "must be a list of region items",
        )),
    }
}

fn validate(project: &projects::ProjectRow, result: &Value, field: &str) -> ApiResult<()> {
    if let Some(config) = project.config() {
        config
            .validate_result(result)
            .map_err(|e| ApiError::field(ErrorCode::InvalidResult, field, e.to_string()))?;
    }
    Ok(())
}

/// Creates predictions for tasks of one project in one transaction (all or nothing).
pub async fn create_many(
    db: &Db,
    actor: &Actor,
    project_id: Option<i64>,
    inputs: Vec<PredictionInput>,
) -> ApiResult<Vec<i64>> {
    let mut projects_seen: Vec<projects::ProjectRow> = Vec::new();
    if let Some(pid) = project_id {
        projects_seen.push(projects::get_row(db, actor, pid, Permission::PredictionManage).await?);
    }
    let mut prepared = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.into_iter().enumerate() {
        let prefix = if project_id.is_some() {
            format!("[{i}].")
        } else {
            String::new()
        };
        let task_id = input.task.ok_or_else(|| {
            ApiError::field(
                ErrorCode::ValidationError,
                &format!("{prefix}task"),
                "this field is required",
            )
        })?;
        let result = input.result.ok_or_else(|| {
            ApiError::field(
                ErrorCode::ValidationError,
                &format!("{prefix}result"),
                "this field is required",
            )
        })?;
        let task = tasks::get_row(db, actor, task_id, Permission::PredictionManage)
            .await
            .map_err(|e| {
                if e.code == ErrorCode::NotFound {
                    ApiError::field(
                        ErrorCode::ValidationError,
                        &format!("{prefix}task"),
                        format!("task {task_id} does not exist"),
                    )
                } else {
                    e
                }
            })?;
        if let Some(pid) = project_id
            && task.project_id != pid
        {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                &format!("{prefix}task"),
                format!("task {task_id} is not in project {pid}"),
            ));
        }
        let project = match projects_seen.iter().find(|p| p.id == task.project_id) {
            Some(p) => p.clone(),
            None => {
                let p = projects::get_row(db, actor, task.project_id, Permission::PredictionManage)
                    .await?;
                projects_seen.push(p.clone());
                p
            }
        };
        let result = expand(&project, &result, &format!("{prefix}result"))?;
        validate(&project, &result, &format!("{prefix}result"))?;
        prepared.push((
            task.id,
            task.project_id,
            result.to_string(),
            input.score.flatten(),
            input.model_version.unwrap_or_default(),
        ));
    }
    let now = now_micros();
    let dialect = db.dialect();
    with_tx!(db, tx, {
        let mut ids = Vec::with_capacity(prepared.len());
        for pid in projects_seen.iter().map(|p| p.id) {
            crate::storage::annotations::lock_project!(tx, dialect, pid);
        }
        for (task_id, project_id, result, score, model_version) in &prepared {
            let id: i64 = sqlx::query_scalar(
                "insert into prediction (task_id, project_id, result, score, model_version, created_at, updated_at) \
                 values ($1, $2, $3, $4, $5, $6, $6) returning id",
            )
            .bind(task_id)
            .bind(project_id)
            .bind(result)
            .bind(score)
            .bind(model_version)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query("update task set total_predictions = total_predictions + 1 where id = $1")
                .bind(task_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("update project set total_predictions_number = total_predictions_number + 1 where id = $1")
                .bind(project_id)
                .execute(&mut *tx)
                .await?;
            ids.push(id);
        }
        for project in &projects_seen {
            let count = prepared.iter().filter(|p| p.1 == project.id).count();
            if count > 0 {
                audit!(
                    tx,
                    Prepared::new(
                        actor,
                        "prediction.create",
                        "project",
                        project.id,
                        serde_json::json!({"predictions": count}),
                    )
                );
            }
        }
        Ok::<_, ApiError>(ids)
    })
}

/// Loads a prediction of the actor's organization on whose project the actor holds
/// `permission`.
pub async fn get_row(
    db: &Db,
    actor: &Actor,
    id: i64,
    permission: Permission,
) -> ApiResult<(PredictionRow, access::ProjectAccess)> {
    let row: Option<PredictionRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {PREDICTION_COLUMNS} from prediction pr join project p on p.id = pr.project_id \
             where pr.id = $1 and p.organization_id = $2"
        ))
        .bind(id)
        .bind(actor.org_id)
        .fetch_optional(conn)
        .await?
    });
    let row = row.ok_or_else(|| ApiError::not_found("prediction"))?;
    let project = access::project(db, actor, row.project_id, permission).await?;
    Ok((row, project))
}

/// Predictions filtered by task or project (the actor's organization only).
pub async fn list(
    db: &Db,
    actor: &Actor,
    task: Option<i64>,
    project: Option<i64>,
    (offset, limit): (i64, i64),
) -> ApiResult<Vec<PredictionView>> {
    if let Some(task) = task {
        tasks::get_row(db, actor, task, Permission::ProjectView).await?;
    }
    if let Some(project) = project {
        access::project(db, actor, project, Permission::ProjectView).await?;
    }
    let visible = access::visible_projects(actor);
    let rows: Vec<PredictionRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {PREDICTION_COLUMNS} from prediction pr join project p on p.id = pr.project_id \
             where p.organization_id = $1 and ($2 = 0 or pr.task_id = $2) and ($3 = 0 or pr.project_id = $3) \
             and {visible} order by pr.id limit $4 offset $5"
        ))
        .bind(actor.org_id)
        .bind(task.unwrap_or(0))
        .bind(project.unwrap_or(0))
        .bind(limit)
        .bind(offset)
        .fetch_all(conn)
        .await?
    });
    Ok(rows.iter().map(PredictionRow::view).collect())
}

/// Updates a prediction's result, score or model version.
pub async fn update(
    db: &Db,
    actor: &Actor,
    id: i64,
    input: PredictionInput,
) -> ApiResult<PredictionView> {
    let (row, access) = get_row(db, actor, id, Permission::PredictionManage).await?;
    let project = access.row;
    let result = match &input.result {
        Some(r) => {
            let r = expand(&project, r, "result")?;
            validate(&project, &r, "result")?;
            r.to_string()
        }
        None => row.result.clone(),
    };
    let score = input.score.unwrap_or(row.score);
    let model_version = input.model_version.unwrap_or(row.model_version.clone());
    let now = now_micros();
    with_tx!(db, tx, {
        sqlx::query("update prediction set result = $1, score = $2, model_version = $3, updated_at = $4 where id = $5")
            .bind(&result)
            .bind(score)
            .bind(&model_version)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "prediction.update",
                "prediction",
                id,
                serde_json::json!({"task": row.task_id, "project": row.project_id})
            )
        );
        Ok::<_, ApiError>(())
    })?;
    Ok(get_row(db, actor, id, Permission::ProjectView)
        .await?
        .0
        .view())
}

/// Deletes a prediction.
pub async fn delete(db: &Db, actor: &Actor, id: i64) -> ApiResult<()> {
    let (row, _) = get_row(db, actor, id, Permission::PredictionManage).await?;
    with_tx!(db, tx, {
        let gone = sqlx::query("delete from prediction where id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if gone.rows_affected() > 0 {
            sqlx::query("update task set total_predictions = total_predictions - 1 where id = $1")
                .bind(row.task_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("update project set total_predictions_number = total_predictions_number - 1 where id = $1")
                .bind(row.project_id)
                .execute(&mut *tx)
                .await?;
        }
        audit!(
            tx,
            Prepared::new(
                actor,
                "prediction.delete",
                "prediction",
                id,
                serde_json::json!({"task": row.task_id, "project": row.project_id})
            )
        );
        Ok::<_, ApiError>(())
    })
}

/// Deletes every prediction of the given tasks of a project (a data-manager action) in one
/// transaction, in batches of bounded statements; returns how many were deleted.
pub async fn delete_for_tasks(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    task_ids: &[i64],
) -> ApiResult<i64> {
    projects::get_row(db, actor, project_id, Permission::PredictionManage).await?;
    with_tx!(db, tx, {
        crate::recheck_project_access!(tx, actor, project_id, Permission::PredictionManage)?;
        let mut deleted = 0i64;
        for chunk in task_ids.chunks(tasks::DELETE_BATCH) {
            let list = chunk
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let n = sqlx::query(&format!(
                "delete from prediction where project_id = $1 and task_id in ({list})"
            ))
            .bind(project_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(&format!(
                "update task set total_predictions = 0 where project_id = $1 and id in ({list})"
            ))
            .bind(project_id)
            .execute(&mut *tx)
            .await?;
            deleted += i64::try_from(n).unwrap_or(i64::MAX);
        }
        sqlx::query(
            "update project set total_predictions_number = total_predictions_number - $1 where id = $2",
        )
        .bind(deleted)
        .bind(project_id)
        .execute(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "prediction.delete",
                "project",
                project_id,
                serde_json::json!({"deleted": deleted, "tasks": task_ids.len(), "task_ids": task_ids.iter().take(tasks::AUDIT_IDS).collect::<Vec<_>>()})
            )
        );
        Ok::<_, ApiError>(deleted)
    })
}

/// Predictions of many tasks at once, ordered by task.
pub async fn for_tasks(db: &Db, task_ids: &[i64]) -> ApiResult<Vec<PredictionRow>> {
    if task_ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = task_ids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    Ok(with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {PREDICTION_COLUMNS} from prediction pr where pr.task_id in ({list}) order by pr.task_id, pr.id"
        ))
        .fetch_all(conn)
        .await?
    }))
}
