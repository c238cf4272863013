//! Projects: settings, labeling configuration and the counters kept incrementally by the task,
//! annotation and prediction repositories.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex},
};

use serde::Serialize;
use serde_json::{Map, Value};

use super::{
    Db, access,
    audit::{Prepared, audit},
    format_micros, now_micros, with_read, with_tx,
};
use crate::{
    authz::{Actor, Permission},
    body,
    domain::{
        label_config::LabelConfig,
        project::{self, ProjectSettings, SkipQueue},
    },
    error::{ApiError, ApiResult, ErrorCode},
    secrets::Sealer,
};

/// The default labeling configuration of a new project (Label Studio's).
pub const DEFAULT_LABEL_CONFIG: &str = "<View></View>";

/// A project row with its creator.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProjectRow {
    /// Id.
    pub id: i64,
    /// Organization.
    pub organization_id: i64,
    /// Title.
    pub title: String,
    /// Settings JSON.
    pub settings: String,
    /// Labeling configuration XML.
    pub label_config: String,
    /// Creator id.
    pub created_by: Option<i64>,
    /// Creator email.
    pub creator_email: Option<String>,
    /// Creator first name.
    pub creator_first_name: Option<String>,
    /// Creator last name.
    pub creator_last_name: Option<String>,
    /// Created (micros).
    pub created_at: i64,
    /// Updated (micros).
    pub updated_at: i64,
    /// Tasks.
    pub task_number: i64,
    /// Labeled tasks.
    pub finished_task_number: i64,
    /// Non-skipped annotations.
    pub total_annotations_number: i64,
    /// Tasks with at least one useful annotation.
    pub num_tasks_with_annotations: i64,
    /// Non-skipped, non-ground-truth annotations with a result.
    pub useful_annotation_number: i64,
    /// Ground-truth annotations.
    pub ground_truth_number: i64,
    /// Skipped annotations.
    pub skipped_annotations_number: i64,
    /// Predictions.
    pub total_predictions_number: i64,
    /// Workspace.
    pub workspace_id: Option<i64>,
    /// Archived projects are hidden from lists and take no work.
    pub is_archived: bool,
    /// The custom resource that owns the declared fields (`LabelingProject/ns/name`).
    pub managed_by: Option<String>,
    /// JSON list of the fields owned by that resource.
    pub managed_fields: String,
}

/// Columns selected into [`ProjectRow`] (the query aliases the project table `p`).
pub const PROJECT_COLUMNS: &str = "p.id, p.organization_id, p.title, p.settings, p.label_config, p.created_by, \
     u.email as creator_email, u.first_name as creator_first_name, u.last_name as creator_last_name, \
     p.created_at, p.updated_at, p.task_number, p.finished_task_number, p.total_annotations_number, \
     p.num_tasks_with_annotations, p.useful_annotation_number, p.ground_truth_number, \
     p.skipped_annotations_number, p.total_predictions_number, p.workspace_id, p.is_archived, \
     p.managed_by, p.managed_fields";

/// A nested user (Label Studio's `UserSimple`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserSimple {
    /// Id.
    pub id: i64,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Email.
    pub email: String,
    /// Always null.
    pub avatar: Option<String>,
}

impl UserSimple {
    /// The name pages show: first and last name, or the email when both are empty.
    pub fn display_name(&self) -> String {
        let name = format!("{} {}", self.first_name, self.last_name);
        match name.trim() {
            "" => self.email.clone(),
            n => n.to_string(),
        }
    }
}

/// The project JSON of Label Studio.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProjectView {
    /// Id.
    pub id: i64,
    /// Title.
    pub title: String,
    /// Labeling configuration XML.
    pub label_config: String,
    /// Settings (flattened).
    #[serde(flatten)]
    pub settings: ProjectSettings,
    /// Creator.
    pub created_by: Option<UserSimple>,
    /// ISO creation time.
    pub created_at: String,
    /// ISO update time.
    pub updated_at: String,
    /// Organization id.
    pub organization: i64,
    /// Workspace id.
    pub workspace: Option<i64>,
    /// Whether the project is archived.
    pub is_archived: bool,
    /// The custom resource that owns some fields (`LabelingProject/<namespace>/<name>`).
    pub managed_by: Option<String>,
    /// The fields owned by that resource; the API refuses to change them.
    pub managed_fields: Vec<String>,
    /// Tasks.
    pub task_number: i64,
    /// Labeled tasks.
    pub finished_task_number: i64,
    /// Non-skipped annotations.
    pub total_annotations_number: i64,
    /// Tasks with at least one useful annotation.
    pub num_tasks_with_annotations: i64,
    /// Non-skipped, non-ground-truth annotations with a result.
    pub useful_annotation_number: i64,
    /// Ground-truth annotations.
    pub ground_truth_number: i64,
    /// Skipped annotations.
    pub skipped_annotations_number: i64,
    /// Predictions.
    pub total_predictions_number: i64,
    /// Tasks left to label.
    pub queue_total: i64,
    /// Derived from the labeling configuration.
    #[schema(value_type = Object)]
    pub parsed_label_config: Value,
    /// Task data keys and their object types.
    #[schema(value_type = Object)]
    pub data_types: Map<String, Value>,
    /// Whether the configuration has control tags.
    pub config_has_control_tags: bool,
    /// Whether bulk labeling can write this configuration's results (ADR 0061): its control
    /// tags are all whole-task Choices, DateTime, Number, Rating, Taxonomy or TextArea.
    pub config_suitable_for_bulk_annotation: bool,
    /// Whether the project has tasks.
    pub ready: bool,
}

/// Parsed labeling configurations by their text: every annotation, prediction and agreement
/// update checks against its project's configuration, and parsing the XML each time costs more
/// than the rest of the check. Bounded; emptied when full (configurations change rarely, so
/// the few live ones come back at once).
static PARSED_CONFIGS: LazyLock<Mutex<HashMap<String, Arc<LabelConfig>>>> =
    LazyLock::new(Mutex::default);

/// Most configurations [`PARSED_CONFIGS`] keeps.
const PARSED_CONFIGS_MAX: usize = 256;

/// `xml` parsed, from the cache when it was parsed before; `None` when it does not parse.
pub fn parsed_config(xml: &str) -> Option<Arc<LabelConfig>> {
    if let Some(hit) = PARSED_CONFIGS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(xml)
    {
        return Some(Arc::clone(hit));
    }
    let parsed = Arc::new(LabelConfig::parse(xml).ok()?);
    let mut cache = PARSED_CONFIGS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if cache.len() >= PARSED_CONFIGS_MAX {
        cache.clear();
    }
    cache.insert(xml.to_owned(), Arc::clone(&parsed));
    Some(parsed)
}

impl ProjectRow {
    /// Parsed settings (stored settings were validated on write).
    pub fn settings(&self) -> ProjectSettings {
        serde_json::from_str(&self.settings).unwrap_or_default()
    }

    /// The fields owned by a custom resource.
    pub fn managed_fields(&self) -> Vec<String> {
        serde_json::from_str(&self.managed_fields).unwrap_or_default()
    }

    /// The parsed labeling configuration (stored configurations were validated on write),
    /// shared through [`parsed_config`]'s cache.
    pub fn config(&self) -> Option<Arc<LabelConfig>> {
        parsed_config(&self.label_config)
    }

    /// The API view. Secrets in the settings are write-only: never shown.
    pub fn view(&self) -> ProjectView {
        let config = self.config();
        let mut settings = self.settings();
        settings.task_data_password = None;
        ProjectView {
            id: self.id,
            title: self.title.clone(),
            label_config: self.label_config.clone(),
            settings,
            created_by: self.created_by.map(|id| UserSimple {
                id,
                first_name: self.creator_first_name.clone().unwrap_or_default(),
                last_name: self.creator_last_name.clone().unwrap_or_default(),
                email: self.creator_email.clone().unwrap_or_default(),
                avatar: None,
            }),
            created_at: format_micros(self.created_at),
            updated_at: format_micros(self.updated_at),
            organization: self.organization_id,
            workspace: self.workspace_id,
            is_archived: self.is_archived,
            managed_by: self.managed_by.clone(),
            managed_fields: self.managed_fields(),
            task_number: self.task_number,
            finished_task_number: self.finished_task_number,
            total_annotations_number: self.total_annotations_number,
            num_tasks_with_annotations: self.num_tasks_with_annotations,
            useful_annotation_number: self.useful_annotation_number,
            ground_truth_number: self.ground_truth_number,
            skipped_annotations_number: self.skipped_annotations_number,
            total_predictions_number: self.total_predictions_number,
            queue_total: self.task_number - self.finished_task_number,
            parsed_label_config: config
                .as_deref()
                .map_or(Value::Object(Map::new()), LabelConfig::parsed),
            data_types: config
                .as_deref()
                .map(LabelConfig::data_types)
                .unwrap_or_default(),
            config_has_control_tags: config.as_deref().is_some_and(LabelConfig::has_controls),
            config_suitable_for_bulk_annotation: config
                .as_deref()
                .is_some_and(|c| c.bulk_unsuitable().is_none()),
            ready: self.task_number > 0,
        }
    }
}

/// What the sealed `task_data_password` of a project is bound to.
pub const TASK_DATA_PASSWORD_PURPOSE: &str = "project.task_data_password";

/// Settings as stored: the ML-backend password sealed.
fn stored_settings(sealer: &Sealer, settings: &ProjectSettings) -> ApiResult<String> {
    let mut settings = settings.clone();
    if let Some(p) = &settings.task_data_password
        && !Sealer::is_sealed(p)
    {
        settings.task_data_password = Some(sealer.seal(p, TASK_DATA_PASSWORD_PURPOSE));
    }
    serde_json::to_string(&settings).map_err(ApiError::internal)
}

/// Seals `task_data_password` values stored in plain text by an older version; answers how many.
pub async fn seal_legacy_secrets(db: &Db, sealer: &Sealer) -> ApiResult<u64> {
    let rows: Vec<(i64, String)> = with_read!(db, conn, {
        sqlx::query_as(
            "select id, settings from project where settings like '%\"task_data_password\":\"%'",
        )
        .fetch_all(conn)
        .await?
    });
    let mut sealed = 0;
    for (id, text) in rows {
        let settings: ProjectSettings = serde_json::from_str(&text).unwrap_or_default();
        if settings
            .task_data_password
            .as_deref()
            .is_none_or(Sealer::is_sealed)
        {
            continue;
        }
        let stored = stored_settings(sealer, &settings)?;
        with_tx!(db, tx, {
            // Only if unchanged since read: a concurrent update wrote sealed settings itself.
            sqlx::query("update project set settings = $1 where id = $2 and settings = $3")
                .bind(&stored)
                .bind(id)
                .bind(&text)
                .execute(&mut *tx)
                .await?;
            Ok::<_, ApiError>(())
        })?;
        sealed += 1;
    }
    Ok(sealed)
}

/// Parses and validates a labeling configuration, as a 400 naming the tag and attribute.
pub fn parse_label_config(xml: &str) -> ApiResult<LabelConfig> {
    LabelConfig::parse(xml).map_err(|e| {
        let location = match &e.attribute {
            Some(attr) => format!("<{}> attribute {attr}", e.tag),
            None => format!("<{}>", e.tag),
        };
        ApiError::field(
            ErrorCode::InvalidLabelConfig,
            "label_config",
            format!("{location}: {}", e.message),
        )
    })
}

fn settings_error((field, message): project::SettingError) -> ApiError {
    ApiError::field(ErrorCode::ValidationError, &field, message)
}

/// Creates a project from a Label Studio project body.
pub async fn create(
    db: &Db,
    actor: &Actor,
    sealer: &Sealer,
    body: &Map<String, Value>,
) -> ApiResult<ProjectView> {
    actor.require(Permission::ProjectCreate)?;
    // Where it goes is an authorization question: answered before the body's validity.
    let workspace_id = workspace_field(db, actor, body).await?;
    let title = body::opt_string(body, "title")?.unwrap_or_default();
    project::validate_title(&title).map_err(settings_error)?;
    let label_config =
        body::opt_string(body, "label_config")?.unwrap_or_else(|| DEFAULT_LABEL_CONFIG.to_string());
    parse_label_config(&label_config)?;
    let settings =
        project::merge_settings(&ProjectSettings::default(), body).map_err(settings_error)?;
    let settings_json = stored_settings(sealer, &settings)?;
    let now = now_micros();
    let id: i64 = with_tx!(db, tx, {
        let id: i64 = sqlx::query_scalar(
            "insert into project (organization_id, title, settings, label_config, created_by, created_at, updated_at, workspace_id) \
             values ($1, $2, $3, $4, $5, $6, $6, $7) returning id",
        )
        .bind(actor.org_id)
        .bind(&title)
        .bind(&settings_json)
        .bind(&label_config)
        .bind((actor.user_id != 0).then_some(actor.user_id))
        .bind(now)
        .bind(workspace_id)
        .fetch_one(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "project.create",
                "project",
                id,
                serde_json::json!({"title": title, "workspace": workspace_id}),
            )
        );
        Ok::<_, ApiError>(id)
    })?;
    Ok(load(db, actor.org_id, id).await?.view())
}

/// The `workspace` of a create or update body, checked: the caller must manage it.
async fn workspace_field(
    db: &Db,
    actor: &Actor,
    body: &Map<String, Value>,
) -> ApiResult<Option<i64>> {
    match body.get("workspace") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let id = v.as_i64().ok_or_else(|| {
                ApiError::field(
                    ErrorCode::ValidationError,
                    "workspace",
                    "must be a workspace id",
                )
            })?;
            let ws = access::workspace(db, actor, id, Permission::WorkspaceManage).await?;
            if ws.row.is_archived {
                return Err(ApiError::field(
                    ErrorCode::ValidationError,
                    "workspace",
                    "this workspace is archived; unarchive it or choose another",
                ));
            }
            Ok(Some(id))
        }
    }
}

/// Loads a project of the actor's organization on which the actor holds `permission` (404
/// for other organizations, 403 naming the permission otherwise).
pub async fn get_row(
    db: &Db,
    actor: &Actor,
    id: i64,
    permission: Permission,
) -> ApiResult<ProjectRow> {
    Ok(access::project(db, actor, id, permission).await?.row)
}

/// One project.
pub async fn get(db: &Db, actor: &Actor, id: i64) -> ApiResult<ProjectView> {
    Ok(get_row(db, actor, id, Permission::ProjectView)
        .await?
        .view())
}

/// Filters of the project list.
#[derive(Debug, Default, Clone)]
pub struct ProjectFilter {
    /// Only these ids.
    pub ids: Option<Vec<i64>>,
    /// Title contains (case-insensitive).
    pub title: Option<String>,
    /// Only projects of these workspaces.
    pub workspaces: Option<Vec<i64>>,
    /// Archived projects too (`Some(true)`: only archived).
    pub archived: Option<bool>,
}

/// One page of the actor's projects, newest first, and the total count.
pub async fn list(
    db: &Db,
    actor: &Actor,
    filter: &ProjectFilter,
    offset: i64,
    limit: i64,
) -> ApiResult<(i64, Vec<ProjectView>)> {
    let mut conditions = format!(
        "p.organization_id = $1 and {}",
        access::visible_projects(actor)
    );
    match filter.archived {
        Some(true) => conditions.push_str(" and p.is_archived"),
        Some(false) | None => conditions.push_str(" and not p.is_archived"),
    }
    if let Some(ws) = &filter.workspaces {
        let list = if ws.is_empty() {
            "0".to_string()
        } else {
            ws.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
        };
        conditions.push_str(&format!(" and p.workspace_id in ({list})"));
    }
    if let Some(ids) = &filter.ids {
        // ids are parsed integers, so inlining them cannot inject SQL.
        let list = if ids.is_empty() {
            "0".to_string()
        } else {
            ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
        };
        conditions.push_str(&format!(" and p.id in ({list})"));
    }
    // $2 is always referenced so both engines see the same parameter list.
    conditions.push_str(" and ($2 = '' or lower(p.title) like '%' || lower($2) || '%')");
    let title = filter.title.clone().unwrap_or_default();
    let (count, rows): (i64, Vec<ProjectRow>) = with_read!(db, conn, {
        let count: i64 = sqlx::query_scalar(&format!(
            "select count(*) from project p where {conditions}"
        ))
        .bind(actor.org_id)
        .bind(&title)
        .fetch_one(conn)
        .await?;
        let rows = sqlx::query_as(&format!(
            "select {PROJECT_COLUMNS} from project p left join app_user u on u.id = p.created_by \
             where {conditions} order by p.created_at desc, p.id desc limit $3 offset $4"
        ))
        .bind(actor.org_id)
        .bind(&title)
        .bind(limit)
        .bind(offset)
        .fetch_all(conn)
        .await?;
        (count, rows)
    });
    Ok((count, rows.iter().map(ProjectRow::view).collect()))
}

/// Applies a Label Studio PATCH body: title, labeling configuration and settings. Changing the
/// overlap settings recomputes task overlap and completion in the same transaction.
pub async fn update(
    db: &Db,
    actor: &Actor,
    sealer: &Sealer,
    id: i64,
    body: &Map<String, Value>,
) -> ApiResult<ProjectView> {
    let current = get_row(db, actor, id, Permission::ProjectChange).await?;
    refuse_managed_changes(&current, body)?;
    apply_update(db, actor, sealer, current, body).await
}

/// Applies a validated change to a loaded project (the caller checked the permission): the API
/// after refusing Git-owned fields, the admin API for the operator that owns them.
pub(crate) async fn apply_update(
    db: &Db,
    actor: &Actor,
    sealer: &Sealer,
    current: ProjectRow,
    body: &Map<String, Value>,
) -> ApiResult<ProjectView> {
    let id = current.id;
    let workspace_id = if body.contains_key("workspace") {
        workspace_field(db, actor, body).await?
    } else {
        current.workspace_id
    };
    let title = match body::opt_string(body, "title")? {
        Some(t) => {
            project::validate_title(&t).map_err(settings_error)?;
            t
        }
        None => current.title.clone(),
    };
    let label_config = match body::opt_string(body, "label_config")? {
        Some(xml) => {
            parse_label_config(&xml)?;
            xml
        }
        None => current.label_config.clone(),
    };
    // Validated on what was read (a clear 400 before any write); applied below onto the
    // project as it is inside the transaction, so a concurrent change of other fields is kept.
    project::merge_settings(&current.settings(), body).map_err(settings_error)?;
    let title_given = body.contains_key("title");
    let config_given = body.contains_key("label_config");
    let dialect = db.dialect();
    let now = now_micros();
    with_tx!(db, tx, {
        crate::storage::annotations::lock_project!(tx, dialect, id);
        let fresh: (String, String, String, i64) = sqlx::query_as(
            "select title, label_config, settings, task_number from project where id = $1 and organization_id = $2",
        )
        .bind(id)
        .bind(actor.org_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ApiError::not_found("project"))?;
        let title = if title_given { title.clone() } else { fresh.0 };
        let config_changed = config_given && label_config.as_str() != fresh.1.as_str();
        let label_config = if config_given {
            label_config.clone()
        } else {
            fresh.1
        };
        let old: ProjectSettings = serde_json::from_str(&fresh.2).unwrap_or_default();
        let task_number = fresh.3;
        let settings = project::merge_settings(&old, body).map_err(settings_error)?;
        let settings_json = stored_settings(sealer, &settings)?;
        let overlap_changed = old.maximum_annotations != settings.maximum_annotations
            || old.overlap_cohort_percentage != settings.overlap_cohort_percentage;
        let completion_changed = overlap_changed || old.skip_queue != settings.skip_queue;
        sqlx::query(
            "update project set title = $1, label_config = $2, settings = $3, updated_at = $4, workspace_id = $7 \
             where id = $5 and organization_id = $6",
        )
        .bind(&title)
        .bind(&label_config)
        .bind(&settings_json)
        .bind(now)
        .bind(id)
        .bind(actor.org_id)
        .bind(workspace_id)
        .execute(&mut *tx)
        .await?;
        if config_changed || old.control_weights != settings.control_weights {
            // What agreement is measured on changed: every task's stored value is stale until
            // the `agreement.refresh` job has recomputed it (ADRs 0025, 0035).
            crate::mark_agreement_stale!(tx, id);
        }
        if crate::storage::distribution::RULE_SETTINGS
            .iter()
            .any(|k| body.contains_key(*k))
        {
            // The pause rules changed: automatic pauses are lifted, and set again at each
            // member's next request for a task where they still apply (ADR 0037).
            crate::lift_automatic_pauses!(tx, id, now);
        }
        audit!(
            tx,
            Prepared::new(
                actor,
                "project.update",
                "project",
                id,
                serde_json::json!({"fields": body.keys().collect::<Vec<_>>()}),
            )
        );
        if overlap_changed {
            // A settings change is the one place that touches every task of a project, as in
            // Label Studio; it is a single statement, never a scan in application memory.
            let max = settings.maximum_annotations;
            let target = project::cohort_target(task_number, settings.overlap_cohort_percentage);
            if max == 1 || settings.overlap_cohort_percentage >= 100 {
                sqlx::query("update task set overlap = $1 where project_id = $2")
                    .bind(max)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            } else {
                sqlx::query("update task set overlap = 1 where project_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                // Tasks with the most annotations keep the full overlap first.
                sqlx::query(
                    "update task set overlap = $1 where id in (select id from task where project_id = $2 \
                     order by total_annotations desc, id limit $3)",
                )
                .bind(max)
                .bind(id)
                .bind(target)
                .execute(&mut *tx)
                .await?;
            }
            let overlapped = if max > 1 { target.min(task_number) } else { 0 };
            sqlx::query("update project set overlapped_task_number = $1 where id = $2")
                .bind(overlapped)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        if completion_changed {
            let completed = completed_expression(settings.skip_queue);
            sqlx::query(&format!(
                "update task set is_labeled = ({completed} >= overlap) where project_id = $1"
            ))
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "update project set finished_task_number = \
                 (select count(*) from task where project_id = $1 and is_labeled) where id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        Ok::<_, ApiError>(())
    })?;
    Ok(load(db, actor.org_id, id).await?.view())
}

/// Loads a project by id within an organization, without an authorization check: for callers
/// that checked already (or the instance admin API).
pub(crate) async fn load(db: &Db, org_id: i64, id: i64) -> ApiResult<ProjectRow> {
    let row: Option<ProjectRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {PROJECT_COLUMNS} from project p left join app_user u on u.id = p.created_by \
             where p.id = $1 and p.organization_id = $2"
        ))
        .bind(id)
        .bind(org_id)
        .fetch_optional(conn)
        .await?
    });
    row.ok_or_else(|| ApiError::not_found("project"))
}

/// SQL expression over a task row: the annotations that count toward its completion.
pub fn completed_expression(skip_queue: SkipQueue) -> &'static str {
    match skip_queue {
        SkipQueue::IgnoreSkipped => "(total_annotations + cancelled_annotations)",
        _ => "total_annotations",
    }
}

/// Deletes a project with its tasks, annotations and predictions.
pub async fn delete(db: &Db, actor: &Actor, id: i64) -> ApiResult<()> {
    let current = get_row(db, actor, id, Permission::ProjectDelete).await?;
    if let Some(owner) = &current.managed_by {
        return Err(ApiError::new(
            ErrorCode::ManagedByGit,
            format!(
                "this project is declared by the custom resource {owner}; delete it there (the operator archives it)"
            ),
        ));
    }
    with_tx!(db, tx, {
        sqlx::query("delete from project where id = $1 and organization_id = $2")
            .bind(id)
            .bind(actor.org_id)
            .execute(&mut *tx)
            .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "project.delete",
                "project",
                id,
                serde_json::json!({"title": current.title, "tasks": current.task_number}),
            )
        );
        Ok::<_, ApiError>(())
    })
}

/// Refuses a change to a field that a custom resource declares (owned by Git). Sending the
/// current value back is not a change, so clients that PATCH whole objects keep working.
pub fn refuse_managed_changes(current: &ProjectRow, body: &Map<String, Value>) -> ApiResult<()> {
    let Some(owner) = &current.managed_by else {
        return Ok(());
    };
    let managed = current.managed_fields();
    if managed.is_empty() {
        return Ok(());
    }
    let view = serde_json::to_value(current.view()).map_err(ApiError::internal)?;
    let changed: Vec<&str> = managed
        .iter()
        .filter(|field| match body.get(field.as_str()) {
            None => false,
            Some(value) => view.get(field.as_str()) != Some(value),
        })
        .map(String::as_str)
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::ManagedByGit,
        format!(
            "{} {} declared by the custom resource {owner} and owned by Git; change {} in the resource, not through the API",
            changed.join(", "),
            if changed.len() == 1 { "is" } else { "are" },
            if changed.len() == 1 { "it" } else { "them" },
        ),
    ))
}
