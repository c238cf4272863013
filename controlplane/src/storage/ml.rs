//! ML backends connected to projects (ADR 0017), and the predictions they make.
//!
//! Managing a project's backends takes `ml.manage` (Manager); listing them takes `project.view`;
//! interactive pre-annotation takes `annotation.create`. The basic-auth password is sealed at
//! rest and never answered (`basic_auth_pass_is_set` says whether one is stored).

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{
    Db, access,
    audit::{Prepared, audit},
    format_micros, now_micros,
    tasks::{TASK_COLUMNS, TaskRow},
    with_read, with_tx,
};
use crate::{
    authz::{Actor, Permission},
    error::{ApiError, ApiResult, ErrorCode},
    secrets::Sealer,
    webhooks::TargetPolicy,
};

/// What a backend's sealed password is bound to.
const PASSWORD_PURPOSE: &str = "ml_backend.basic_auth_pass";

/// Longest per-request time limit a backend may ask for, in seconds.
pub const MAX_TIMEOUT_SECS: f64 = 600.0;

/// A stored backend.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MlBackendRow {
    pub id: i64,
    pub organization_id: i64,
    pub project_id: i64,
    pub url: String,
    pub title: String,
    pub description: String,
    pub state: String,
    pub error_message: Option<String>,
    pub is_interactive: bool,
    pub auth_method: String,
    pub basic_auth_user: Option<String>,
    pub basic_auth_pass: Option<String>,
    pub extra_params: String,
    pub model_version: String,
    pub auto_update: bool,
    pub timeout: f64,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, organization_id, project_id, url, title, description, state, error_message, is_interactive, \
     auth_method, basic_auth_user, basic_auth_pass, extra_params, model_version, auto_update, timeout, created_at, updated_at";

/// A backend as the API shows it (Label Studio's `MLBackend`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MlBackendView {
    pub id: i64,
    pub project: i64,
    pub url: String,
    pub title: String,
    pub description: String,
    /// `CO` connected, `DI` disconnected, `ER` error, `TR` training, `PR` predicting.
    pub state: String,
    pub readable_state: String,
    pub error_message: Option<String>,
    pub is_interactive: bool,
    /// `NONE` or `BASIC_AUTH`.
    pub auth_method: String,
    pub basic_auth_user: Option<String>,
    /// Whether a password is stored (it is never shown).
    pub basic_auth_pass_is_set: bool,
    #[schema(value_type = Object)]
    pub extra_params: Value,
    pub model_version: String,
    pub auto_update: bool,
    /// Seconds a prediction request may take.
    pub timeout: f64,
    pub created_at: String,
    pub updated_at: String,
}

impl MlBackendRow {
    /// The API view (no password).
    pub fn view(&self) -> MlBackendView {
        MlBackendView {
            id: self.id,
            project: self.project_id,
            url: self.url.clone(),
            title: self.title.clone(),
            description: self.description.clone(),
            state: self.state.clone(),
            readable_state: readable_state(&self.state).to_string(),
            error_message: self.error_message.clone(),
            is_interactive: self.is_interactive,
            auth_method: self.auth_method.clone(),
            basic_auth_user: self.basic_auth_user.clone(),
            basic_auth_pass_is_set: self.basic_auth_pass.is_some(),
            extra_params: serde_json::from_str(&self.extra_params).unwrap_or_else(|_| json!({})),
            model_version: self.model_version.clone(),
            auto_update: self.auto_update,
            timeout: self.timeout,
            created_at: format_micros(self.created_at),
            updated_at: format_micros(self.updated_at),
        }
    }

    /// How to reach the backend as stored (its password opened).
    pub fn connection(&self, sealer: &Sealer) -> ApiResult<Candidate> {
        Ok(Candidate {
            url: self.url.clone(),
            credentials: self.credentials(sealer)?,
            extra_params: serde_json::from_str(&self.extra_params).unwrap_or_else(|_| json!({})),
            timeout: self.timeout,
        })
    }

    /// Basic-auth credentials, the password opened.
    pub fn credentials(&self, sealer: &Sealer) -> ApiResult<Option<(String, String)>> {
        if self.auth_method != "BASIC_AUTH" {
            return Ok(None);
        }
        let user = self.basic_auth_user.clone().unwrap_or_default();
        let pass = match &self.basic_auth_pass {
            Some(p) => sealer
                .open(p, PASSWORD_PURPOSE)
                .map_err(ApiError::internal)?,
            None => String::new(),
        };
        Ok(Some((user, pass)))
    }
}

fn readable_state(state: &str) -> &'static str {
    match state {
        "CO" => "Connected",
        "ER" => "Error",
        "TR" => "Training",
        "PR" => "Predicting",
        _ => "Disconnected",
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::field(ErrorCode::ValidationError, field, message)
}

/// A create or update body, type-checked. Absent fields are `None`.
#[derive(Debug, Default, Clone)]
pub struct Input {
    pub url: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub is_interactive: Option<bool>,
    pub auth_method: Option<String>,
    pub basic_auth_user: Option<Option<String>>,
    pub basic_auth_pass: Option<Option<String>>,
    pub extra_params: Option<String>,
    pub auto_update: Option<bool>,
    pub timeout: Option<f64>,
}

impl Input {
    /// Reads a Label Studio ML backend body.
    pub fn parse(body: &Map<String, Value>, policy: &TargetPolicy) -> ApiResult<Self> {
        let string = |k: &str| -> ApiResult<Option<String>> {
            match body.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
                Some(_) => Err(invalid(k, "must be a string")),
            }
        };
        let boolean = |k: &str| -> ApiResult<Option<bool>> {
            match body.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Bool(b)) => Ok(Some(*b)),
                Some(_) => Err(invalid(k, "must be true or false")),
            }
        };
        let optional_string = |k: &str| -> ApiResult<Option<Option<String>>> {
            match body.get(k) {
                None => Ok(None),
                Some(Value::Null) => Ok(Some(None)),
                Some(Value::String(s)) if s.is_empty() => Ok(Some(None)),
                Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
                Some(_) => Err(invalid(k, "must be a string")),
            }
        };
        let url = match string("url")? {
            Some(u) => {
                let u = u.trim_end_matches('/').to_string();
                policy.check_url(&u).map_err(|why| {
                    let code = if why.contains("ALLOW_PRIVATE_TARGETS") {
                        ErrorCode::PrivateTarget
                    } else {
                        ErrorCode::ValidationError
                    };
                    ApiError::field(code, "url", why)
                })?;
                Some(u)
            }
            None => None,
        };
        let title = string("title")?;
        if let Some(t) = &title
            && (t.is_empty() || t.chars().count() > 500)
        {
            return Err(invalid("title", "must be 1 to 500 characters"));
        }
        let auth_method = string("auth_method")?;
        if let Some(m) = &auth_method
            && m != "NONE"
            && m != "BASIC_AUTH"
        {
            return Err(invalid("auth_method", "must be NONE or BASIC_AUTH"));
        }
        let extra_params = match body.get("extra_params") {
            None => None,
            Some(Value::Null) => Some("{}".to_string()),
            Some(v @ Value::Object(_)) => Some(v.to_string()),
            Some(_) => return Err(invalid("extra_params", "must be a JSON object")),
        };
        let timeout = match body.get("timeout") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_f64() {
                Some(t) if t > 0.0 && t <= MAX_TIMEOUT_SECS => Some(t),
                _ => {
                    return Err(invalid(
                        "timeout",
                        format!("must be more than 0 and at most {MAX_TIMEOUT_SECS} seconds"),
                    ));
                }
            },
            Some(_) => return Err(invalid("timeout", "must be a number of seconds")),
        };
        Ok(Self {
            url,
            title,
            description: string("description")?,
            is_interactive: boolean("is_interactive")?,
            auth_method,
            basic_auth_user: optional_string("basic_auth_user")?,
            basic_auth_pass: optional_string("basic_auth_pass")?,
            extra_params,
            auto_update: boolean("auto_update")?,
            timeout,
        })
    }
}

/// The connection a new or changed backend will have: what [`crate::ml`] checks before it is
/// stored (health and setup).
#[derive(Debug, Clone)]
pub struct Candidate {
    pub url: String,
    pub credentials: Option<(String, String)>,
    pub extra_params: Value,
    pub timeout: f64,
}

/// Checks the actor may manage the project's backends; answers the project.
pub async fn authorize(
    db: &Db,
    actor: &Actor,
    project: i64,
) -> ApiResult<super::projects::ProjectRow> {
    Ok(access::project(db, actor, project, Permission::MlManage)
        .await?
        .row)
}

async fn load(db: &Db, org: i64, id: i64) -> ApiResult<MlBackendRow> {
    let row: Option<MlBackendRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {COLUMNS} from ml_backend where id = $1 and organization_id = $2"
        ))
        .bind(id)
        .bind(org)
        .fetch_optional(conn)
        .await?
    });
    row.ok_or_else(|| ApiError::not_found("ML backend"))
}

/// A backend by id, for a job (no actor).
pub async fn by_id(db: &Db, id: i64) -> ApiResult<Option<MlBackendRow>> {
    Ok(with_read!(db, conn, {
        sqlx::query_as(&format!("select {COLUMNS} from ml_backend where id = $1"))
            .bind(id)
            .fetch_optional(conn)
            .await?
    }))
}

/// A backend whose project the actor holds `permission` in.
pub async fn get_row(
    db: &Db,
    actor: &Actor,
    id: i64,
    permission: Permission,
) -> ApiResult<(MlBackendRow, super::projects::ProjectRow)> {
    let row = load(db, actor.org_id, id).await?;
    let project = access::project(db, actor, row.project_id, permission)
        .await?
        .row;
    Ok((row, project))
}

/// The backends of a project (oldest first).
pub async fn list(db: &Db, actor: &Actor, project: i64) -> ApiResult<Vec<MlBackendRow>> {
    access::project(db, actor, project, Permission::ProjectView).await?;
    project_backends(db, project).await
}

/// The backends of a project, for jobs and triggers (no actor).
pub async fn project_backends(db: &Db, project: i64) -> ApiResult<Vec<MlBackendRow>> {
    Ok(with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {COLUMNS} from ml_backend where project_id = $1 order by id"
        ))
        .bind(project)
        .fetch_all(conn)
        .await?
    }))
}

/// What a new backend starts with, after its health and setup answered.
pub async fn create(
    db: &Db,
    actor: &Actor,
    sealer: &Sealer,
    project: i64,
    input: &Input,
    model_version: &str,
) -> ApiResult<MlBackendView> {
    let url = input
        .url
        .clone()
        .ok_or_else(|| invalid("url", "this field is required"))?;
    let now = now_micros();
    let pass = input
        .basic_auth_pass
        .clone()
        .flatten()
        .map(|p| sealer.seal(&p, PASSWORD_PURPOSE));
    let id: i64 = with_tx!(db, tx, {
        crate::recheck_project_access!(tx, actor, project, Permission::MlManage)?;
        let id: i64 = sqlx::query_scalar(
            "insert into ml_backend (organization_id, project_id, url, title, description, state, is_interactive, auth_method, \
             basic_auth_user, basic_auth_pass, extra_params, model_version, auto_update, timeout, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, 'CO', $6, $7, $8, $9, $10, $11, $12, $13, $14, $14) returning id",
        )
        .bind(actor.org_id)
        .bind(project)
        .bind(&url)
        .bind(input.title.as_deref().unwrap_or("default"))
        .bind(input.description.as_deref().unwrap_or(""))
        .bind(input.is_interactive.unwrap_or(false))
        .bind(input.auth_method.as_deref().unwrap_or("NONE"))
        .bind(input.basic_auth_user.clone().flatten())
        .bind(pass)
        .bind(input.extra_params.as_deref().unwrap_or("{}"))
        .bind(model_version)
        .bind(input.auto_update.unwrap_or(true))
        .bind(input.timeout.unwrap_or(100.0))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "ml_backend.create",
                "ml_backend",
                id,
                json!({"project": project, "url": super::url_without_query(&url)}),
            )
        );
        Ok::<_, ApiError>(id)
    })?;
    Ok(load(db, actor.org_id, id).await?.view())
}

/// The connection a backend would have after `input` is applied (to check before storing).
pub fn candidate(row: &MlBackendRow, input: &Input, sealer: &Sealer) -> ApiResult<Candidate> {
    let method = input.auth_method.as_deref().unwrap_or(&row.auth_method);
    let credentials = if method == "BASIC_AUTH" {
        let user = match &input.basic_auth_user {
            Some(u) => u.clone().unwrap_or_default(),
            None => row.basic_auth_user.clone().unwrap_or_default(),
        };
        let pass = match &input.basic_auth_pass {
            Some(p) => p.clone().unwrap_or_default(),
            None => match &row.basic_auth_pass {
                Some(p) => sealer
                    .open(p, PASSWORD_PURPOSE)
                    .map_err(ApiError::internal)?,
                None => String::new(),
            },
        };
        Some((user, pass))
    } else {
        None
    };
    Ok(Candidate {
        url: input.url.clone().unwrap_or_else(|| row.url.clone()),
        credentials,
        extra_params: serde_json::from_str(
            input.extra_params.as_deref().unwrap_or(&row.extra_params),
        )
        .unwrap_or_else(|_| json!({})),
        timeout: input.timeout.unwrap_or(row.timeout),
    })
}

/// Applies a PATCH body (its connection already checked when it changed).
pub async fn update(
    db: &Db,
    actor: &Actor,
    sealer: &Sealer,
    id: i64,
    input: &Input,
    model_version: Option<&str>,
) -> ApiResult<MlBackendView> {
    let (row, _) = get_row(db, actor, id, Permission::MlManage).await?;
    let pass = match &input.basic_auth_pass {
        None => row.basic_auth_pass.clone(),
        Some(None) => None,
        Some(Some(p)) => Some(sealer.seal(p, PASSWORD_PURPOSE)),
    };
    let user = match &input.basic_auth_user {
        None => row.basic_auth_user.clone(),
        Some(u) => u.clone(),
    };
    let now = now_micros();
    with_tx!(db, tx, {
        crate::recheck_project_access!(tx, actor, row.project_id, Permission::MlManage)?;
        sqlx::query(
            "update ml_backend set url = $1, title = $2, description = $3, is_interactive = $4, auth_method = $5, \
             basic_auth_user = $6, basic_auth_pass = $7, extra_params = $8, auto_update = $9, timeout = $10, \
             model_version = $11, state = $12, error_message = $13, updated_at = $14 where id = $15",
        )
        .bind(input.url.as_deref().unwrap_or(&row.url))
        .bind(input.title.as_deref().unwrap_or(&row.title))
        .bind(input.description.as_deref().unwrap_or(&row.description))
        .bind(input.is_interactive.unwrap_or(row.is_interactive))
        .bind(input.auth_method.as_deref().unwrap_or(&row.auth_method))
        .bind(user)
        .bind(pass)
        .bind(input.extra_params.as_deref().unwrap_or(&row.extra_params))
        .bind(input.auto_update.unwrap_or(row.auto_update))
        .bind(input.timeout.unwrap_or(row.timeout))
        .bind(model_version.unwrap_or(&row.model_version))
        .bind(if model_version.is_some() { "CO" } else { row.state.as_str() })
        .bind(if model_version.is_some() { None } else { row.error_message.clone() })
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "ml_backend.update",
                "ml_backend",
                id,
                json!({"project": row.project_id, "url": super::url_without_query(input.url.as_deref().unwrap_or(&row.url))}),
            )
        );
        Ok::<_, ApiError>(())
    })?;
    Ok(load(db, actor.org_id, id).await?.view())
}

/// Disconnects a backend. Its predictions stay (they no longer name it).
pub async fn delete(db: &Db, actor: &Actor, id: i64) -> ApiResult<()> {
    let (row, _) = get_row(db, actor, id, Permission::MlManage).await?;
    with_tx!(db, tx, {
        crate::recheck_project_access!(tx, actor, row.project_id, Permission::MlManage)?;
        sqlx::query("update prediction set ml_backend_id = null where ml_backend_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("delete from ml_backend where id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "ml_backend.delete",
                "ml_backend",
                id,
                json!({"project": row.project_id}),
            )
        );
        Ok::<_, ApiError>(())
    })
}

/// Audits an action on a backend that changes nothing here yet (a training or a batch
/// prediction started on the queue).
pub async fn audit_started(
    db: &Db,
    actor: &Actor,
    row: &MlBackendRow,
    action: &str,
    job: &str,
) -> ApiResult<()> {
    with_tx!(db, tx, {
        audit!(
            tx,
            Prepared::new(
                actor,
                action,
                "ml_backend",
                row.id,
                json!({"project": row.project_id, "job": job}),
            )
        );
        Ok::<_, ApiError>(())
    })
}

/// Records a backend's state (and error, or model version) as a job or a call found it.
pub async fn set_state(
    db: &Db,
    id: i64,
    state: &str,
    error: Option<&str>,
    model_version: Option<&str>,
) -> ApiResult<()> {
    let error = error.map(|e| e.chars().take(2000).collect::<String>());
    with_tx!(db, tx, {
        sqlx::query(
            "update ml_backend set state = $1, error_message = $2, model_version = coalesce($3, model_version), \
             updated_at = $4 where id = $5",
        )
        .bind(state)
        .bind(error)
        .bind(model_version)
        .bind(now_micros())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        Ok::<_, ApiError>(())
    })
}

/// Claims a backend for one training until `until` (UTC microseconds): `false` while another
/// training holds an unexpired claim.
pub async fn claim_training(db: &Db, id: i64, until: i64) -> ApiResult<bool> {
    let now = now_micros();
    with_tx!(db, tx, {
        let done = sqlx::query(
            "update ml_backend set training_until = $1 where id = $2 and (training_until is null or training_until < $3)",
        )
        .bind(until)
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        Ok::<_, ApiError>(done.rows_affected() == 1)
    })
}

/// Ends a training's claim.
pub async fn release_training(db: &Db, id: i64) -> ApiResult<()> {
    with_tx!(db, tx, {
        sqlx::query("update ml_backend set training_until = null where id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        Ok::<_, ApiError>(())
    })
}

/// Counts a submitted or updated annotation towards automatic training: answers the backends
/// whose count reached `every` (their count starts again from zero).
pub async fn count_towards_training(db: &Db, project: i64, every: i64) -> ApiResult<Vec<i64>> {
    let every = every.max(1);
    with_tx!(db, tx, {
        sqlx::query(
            "update ml_backend set annotations_since_training = annotations_since_training + 1 where project_id = $1",
        )
        .bind(project)
        .execute(&mut *tx)
        .await?;
        let due: Vec<i64> = sqlx::query_scalar(
            "select id from ml_backend where project_id = $1 and annotations_since_training >= $2 order by id",
        )
        .bind(project)
        .bind(every)
        .fetch_all(&mut *tx)
        .await?;
        if !due.is_empty() {
            sqlx::query(
                "update ml_backend set annotations_since_training = 0 where project_id = $1 and annotations_since_training >= $2",
            )
            .bind(project)
            .bind(every)
            .execute(&mut *tx)
            .await?;
        }
        Ok::<_, ApiError>(due)
    })
}

/// Up to `limit` tasks of the project, after task `after`, without a prediction of
/// `model_version` (the ones a batch prediction still has to do), as task objects.
pub async fn tasks_without_version(
    db: &Db,
    project: i64,
    model_version: &str,
    after: i64,
    limit: i64,
) -> ApiResult<Vec<Value>> {
    let rows: Vec<TaskRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {TASK_COLUMNS} from task t where t.project_id = $1 and t.id > $2 \
             and not exists (select 1 from prediction p where p.task_id = t.id and p.model_version = $3) \
             order by t.id limit $4"
        ))
        .bind(project)
        .bind(after)
        .bind(model_version)
        .bind(limit)
        .fetch_all(conn)
        .await?
    });
    rows.iter()
        .map(|r| serde_json::to_value(r.view()).map_err(ApiError::internal))
        .collect()
}

/// Task `task` of the project as a task object when it has no prediction of `model_version`
/// from `backend` (what a lazy prediction on opening it would have to do), else `None`.
pub async fn task_without_version(
    db: &Db,
    project: i64,
    task: i64,
    backend: i64,
    model_version: &str,
) -> ApiResult<Option<Value>> {
    let row: Option<TaskRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {TASK_COLUMNS} from task t where t.id = $1 and t.project_id = $2 \
             and not exists (select 1 from prediction p where p.task_id = t.id \
             and p.model_version = $3 and p.ml_backend_id = $4)"
        ))
        .bind(task)
        .bind(project)
        .bind(model_version)
        .bind(backend)
        .fetch_optional(conn)
        .await?
    });
    row.map(|r| serde_json::to_value(r.view()).map_err(ApiError::internal))
        .transpose()
}

/// The project's first task, as a task object.
pub async fn first_task(db: &Db, project: i64) -> ApiResult<Option<Value>> {
    let row: Option<TaskRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {TASK_COLUMNS} from task t where t.project_id = $1 order by t.id limit 1"
        ))
        .bind(project)
        .fetch_optional(conn)
        .await?
    });
    row.map(|r| serde_json::to_value(r.view()).map_err(ApiError::internal))
        .transpose()
}

/// One task object for a prediction request (`None` if it is not in the project).
pub async fn task_json(db: &Db, project: i64, task: i64) -> ApiResult<Option<Value>> {
    let row: Option<TaskRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {TASK_COLUMNS} from task t where t.id = $1 and t.project_id = $2"
        ))
        .bind(task)
        .bind(project)
        .fetch_optional(conn)
        .await?
    });
    row.map(|r| serde_json::to_value(r.view()).map_err(ApiError::internal))
        .transpose()
}

/// A prediction a backend made, checked against the project's labeling config.
#[derive(Debug, Clone)]
pub struct Made {
    pub task: i64,
    pub result: Value,
    pub score: Option<f64>,
    pub model_version: String,
}

/// Stores a backend's predictions in one transaction. A task that got a prediction of the same
/// model version from the same backend meanwhile (a retried job) is not given a second one.
pub async fn store_predictions(db: &Db, backend: &MlBackendRow, made: &[Made]) -> ApiResult<usize> {
    let now = now_micros();
    let dialect = db.dialect();
    let project = backend.project_id;
    with_tx!(db, tx, {
        crate::storage::annotations::lock_project!(tx, dialect, project);
        let mut stored = 0usize;
        for m in made {
            let exists: Option<i64> = sqlx::query_scalar(
                "select p.id from prediction p join task t on t.id = p.task_id \
                 where p.task_id = $1 and t.project_id = $2 and p.model_version = $3 and p.ml_backend_id = $4 limit 1",
            )
            .bind(m.task)
            .bind(project)
            .bind(&m.model_version)
            .bind(backend.id)
            .fetch_optional(&mut *tx)
            .await?;
            let in_project: Option<i64> =
                sqlx::query_scalar("select id from task where id = $1 and project_id = $2")
                    .bind(m.task)
                    .bind(project)
                    .fetch_optional(&mut *tx)
                    .await?;
            if exists.is_some() || in_project.is_none() {
                continue;
            }
            sqlx::query(
                "insert into prediction (task_id, project_id, result, score, model_version, ml_backend_id, created_at, updated_at) \
                 values ($1, $2, $3, $4, $5, $6, $7, $7)",
            )
            .bind(m.task)
            .bind(project)
            .bind(m.result.to_string())
            .bind(m.score)
            .bind(&m.model_version)
            .bind(backend.id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("update task set total_predictions = total_predictions + 1 where id = $1")
                .bind(m.task)
                .execute(&mut *tx)
                .await?;
            stored += 1;
        }
        if stored > 0 {
            sqlx::query("update project set total_predictions_number = total_predictions_number + $1 where id = $2")
                .bind(i64::try_from(stored).unwrap_or(i64::MAX))
                .bind(project)
                .execute(&mut *tx)
                .await?;
        }
        Ok::<_, ApiError>(stored)
    })
}

/// Sets the project's `model_version` (the predictions that pre-label and that uncertainty
/// sampling reads) when it was empty or named the backend's previous version.
pub async fn follow_model_version(
    db: &Db,
    project: i64,
    previous: &str,
    current: &str,
) -> ApiResult<()> {
    with_tx!(db, tx, {
        let settings: Option<String> =
            sqlx::query_scalar("select settings from project where id = $1")
                .bind(project)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(text) = settings else {
            return Ok(());
        };
        let mut map: Map<String, Value> = serde_json::from_str(&text).unwrap_or_default();
        let now = map
            .get("model_version")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if now.is_empty() || now == previous {
            map.insert("model_version".into(), Value::String(current.to_string()));
            sqlx::query("update project set settings = $1 where id = $2 and settings = $3")
                .bind(Value::Object(map).to_string())
                .bind(project)
                .bind(&text)
                .execute(&mut *tx)
                .await?;
        }
        Ok::<_, ApiError>(())
    })
}
