//! Tasks: import (streamed, all or nothing), listing with filters, reads, changes, deletes and
//! the label stream (`next`), with counters kept incrementally.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value, value::RawValue};
use tokio::io::AsyncReadExt;

use super::{
    Db, Dialect, access,
    annotations::{self, AnnotationRow, AnnotationView, Kind, raw},
    audit::{Prepared, audit},
    format_micros, now_micros,
    predictions::{self, PredictionRow, PredictionView},
    projects::{self, ProjectRow},
    with_read, with_tx,
};
use crate::{
    authz::{Actor, Permission, Role},
    domain::{
        import::{
            CompletedBy, CsvSplitter, ImportError, ImportedTask, JsonSplitter, normalize_task,
        },
        label_config::LabelConfig,
        project::{ProjectSettings, Sampling, SkipQueue, cohort_target},
    },
    error::{ApiError, ApiResult, ErrorCode},
};

/// Tasks inserted per statement during import: large enough to amortize round trips, small
/// enough to stay far below both engines' bind-parameter limits (14 per task).
const IMPORT_BATCH: usize = 500;

/// Imports at least this large refresh PostgreSQL's planner statistics afterwards.
const ANALYZE_AFTER_TASKS: i64 = 5_000;

/// A task row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskRow {
    /// Id.
    pub id: i64,
    /// Project.
    pub project_id: i64,
    /// Position in the project.
    pub inner_id: i64,
    /// Data JSON.
    pub data: String,
    /// Meta JSON.
    pub meta: String,
    /// Labeled.
    pub is_labeled: bool,
    /// Required distinct annotators.
    pub overlap: i64,
    /// Non-skipped annotations.
    pub total_annotations: i64,
    /// Skipped annotations.
    pub cancelled_annotations: i64,
    /// Predictions.
    pub total_predictions: i64,
    /// Created (micros).
    pub created_at: i64,
    /// Updated (micros).
    pub updated_at: i64,
    /// Last editor.
    pub updated_by: Option<i64>,
    /// Stored task agreement (ADR 0025).
    pub agreement: Option<f64>,
    /// Stored name of the upload the task was made of (ADR 0032).
    #[sqlx(default)]
    pub file_upload: Option<String>,
    /// Comments on the task's annotations (ADR 0051).
    #[sqlx(default)]
    pub comment_count: i64,
    /// Unresolved comments.
    #[sqlx(default)]
    pub unresolved_comment_count: i64,
    /// When a comment was last written or changed (micros).
    #[sqlx(default)]
    pub last_comment_updated_at: Option<i64>,
    /// Who commented: a JSON list of user ids.
    #[sqlx(default)]
    pub comment_authors: String,
}

/// Columns selected into [`TaskRow`] (task aliased `t`).
pub const TASK_COLUMNS: &str = "t.id, t.project_id, t.inner_id, t.data, t.meta, t.is_labeled, t.overlap, \
    t.total_annotations, t.cancelled_annotations, t.total_predictions, t.created_at, t.updated_at, t.updated_by, t.agreement, \
    t.comment_count, t.unresolved_comment_count, t.last_comment_updated_at, t.comment_authors, \
    (select f.file from file_upload f where f.id = t.file_upload_id) as file_upload";

/// The task JSON of Label Studio.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskView {
    /// Id.
    pub id: i64,
    /// Task data.
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
    /// Task meta.
    #[schema(value_type = Object)]
    pub meta: Box<RawValue>,
    /// ISO creation time.
    pub created_at: String,
    /// ISO update time.
    pub updated_at: String,
    /// Labeled.
    pub is_labeled: bool,
    /// Required distinct annotators.
    pub overlap: i64,
    /// Position in the project.
    pub inner_id: i64,
    /// Non-skipped annotations.
    pub total_annotations: i64,
    /// Skipped annotations.
    pub cancelled_annotations: i64,
    /// Predictions.
    pub total_predictions: i64,
    /// Comments on the task's annotations (ADR 0051).
    pub comment_count: i64,
    /// Unresolved comments.
    pub unresolved_comment_count: i64,
    /// ISO time a comment was last written or changed, or null (not shown to annotators).
    pub last_comment_updated_at: Option<String>,
    /// Project id.
    pub project: i64,
    /// Last editor.
    pub updated_by: Option<i64>,
    /// Stored name of the uploaded file the task was made of (ADR 0032), or null.
    pub file_upload: Option<String>,
    /// Ids of the users who commented (not shown to annotators: empty).
    pub comment_authors: Vec<i64>,
    /// Annotations (with `fields=all`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Vec<AnnotationView>>,
    /// Predictions (with `fields=all`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predictions: Option<Vec<PredictionView>>,
    /// The caller's drafts of the task (ADR 0044; task detail, label stream, `fields=all`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drafts: Option<Vec<Value>>,
    /// Whether somebody has a draft of the task (data-manager task list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draft_exists: Option<bool>,
    /// Ids of the users who annotated the task (with `fields=all`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotators: Option<Vec<i64>>,
    /// Lock id (label stream only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unique_lock_id: Option<String>,
    /// Queue name (label stream only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Whether the editor may offer Postpone (label stream only): false for a task handed
    /// back from the caller's postponed drafts (ADR 0003 addendum).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_postpone: Option<bool>,
    /// Reviews accepting an annotation of the task.
    pub reviews_accepted: i64,
    /// Reviews rejecting an annotation of the task.
    pub reviews_rejected: i64,
    /// Reviewed, by the project's `review_settings.review_criteria`.
    pub reviewed: bool,
    /// Who reviewed the task's annotations.
    pub reviewers: Vec<i64>,
    /// How many reviewers.
    pub reviewers_count: i64,
    /// Label Studio's `completed_at`: ISO time of the newest submitted annotation once the task
    /// is labeled, null before (task reads and the task list; absent for annotators blind to
    /// the others' work, ADR 0057).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub completed_at: Option<Option<String>>,
    /// Label Studio's `predictions_score`: the mean score of the task's predictions, null
    /// without scored predictions (task reads and the task list).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    pub predictions_score: Option<Option<f64>>,
    /// Who the task is assigned to (Label Studio Enterprise's assignees, ADR 0039), with each
    /// assignment's state (task reads and the task list): all of them for managers and above,
    /// the caller's own for others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignments: Option<Vec<super::assignments::AssignmentView>>,
    /// Task agreement in [0, 1] (mean pairwise agreement of its annotators' latest
    /// annotations, ADR 0025); absent with fewer than two annotators, outside the data manager
    /// and task reads, and for annotators who see only their own annotations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agreement: Option<f64>,
}

impl TaskRow {
    /// The view without nested objects.
    pub fn view(&self) -> TaskView {
        TaskView {
            id: self.id,
            data: raw(&self.data),
            meta: raw(&self.meta),
            created_at: format_micros(self.created_at),
            updated_at: format_micros(self.updated_at),
            is_labeled: self.is_labeled,
            overlap: self.overlap,
            inner_id: self.inner_id,
            total_annotations: self.total_annotations,
            cancelled_annotations: self.cancelled_annotations,
            total_predictions: self.total_predictions,
            comment_count: self.comment_count,
            unresolved_comment_count: self.unresolved_comment_count,
            last_comment_updated_at: self.last_comment_updated_at.map(format_micros),
            project: self.project_id,
            updated_by: self.updated_by,
            file_upload: self.file_upload.clone(),
            comment_authors: serde_json::from_str(&self.comment_authors).unwrap_or_default(),
            annotations: None,
            predictions: None,
            drafts: None,
            draft_exists: None,
            annotators: None,
            unique_lock_id: None,
            queue: None,
            allow_postpone: None,
            reviews_accepted: 0,
            reviews_rejected: 0,
            reviewed: false,
            reviewers: Vec::new(),
            reviewers_count: 0,
            completed_at: None,
            predictions_score: None,
            assignments: None,
            agreement: None,
        }
    }
}

/// Loads a task of the actor's organization and its project, on which the actor must hold
/// `permission` (404 for other organizations, 403 naming the permission otherwise).
pub async fn get_with_project(
    db: &Db,
    actor: &Actor,
    id: i64,
    permission: Permission,
) -> ApiResult<(TaskRow, access::ProjectAccess)> {
    let row: Option<TaskRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {TASK_COLUMNS} from task t join project p on p.id = t.project_id \
             where t.id = $1 and p.organization_id = $2"
        ))
        .bind(id)
        .bind(actor.org_id)
        .fetch_optional(conn)
        .await?
    });
    let row = row.ok_or_else(|| ApiError::not_found("task"))?;
    let project = access::project(db, actor, row.project_id, permission).await?;
    Ok((row, project))
}

/// Loads a task on which the actor holds `permission` (see [`get_with_project`]).
pub async fn get_row(
    db: &Db,
    actor: &Actor,
    id: i64,
    permission: Permission,
) -> ApiResult<TaskRow> {
    Ok(get_with_project(db, actor, id, permission).await?.0)
}

/// Loads a task by id without an authorization check: only for callers that already checked
/// the task's project.
async fn load_row(db: &Db, id: i64) -> ApiResult<TaskRow> {
    let row: Option<TaskRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {TASK_COLUMNS} from task t where t.id = $1"
        ))
        .bind(id)
        .fetch_optional(conn)
        .await?
    });
    row.ok_or_else(|| ApiError::not_found("task"))
}

/// Whose annotations a caller may read. Annotators are blind to each other's work (overlap
/// and agreement mean nothing otherwise): they see their own annotations only. Reviewers and
/// above see all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visible {
    /// Every annotation.
    All,
    /// Only those completed by this user.
    OnlyOf(i64),
    /// Every annotation, but who wrote the others' is hidden from this user (a reviewer in a
    /// project with `review_settings.anonymize_annotations`, ADR 0024).
    Anonymous(i64),
}

impl Visible {
    /// What `actor` may read in a project: reviewers and above everything; annotators their
    /// own work, unless the project lets annotators see each other's (`annotators_see_others`).
    pub fn for_access(actor: &Actor, access: &access::ProjectAccess) -> Self {
        let settings = access.row.settings();
        let visible = Self::for_role(actor, access.role, settings.annotators_see_others);
        if visible == Visible::All
            && access.role == crate::authz::Role::Reviewer
            && settings.review_settings.anonymize_annotations
        {
            Visible::Anonymous(actor.user_id)
        } else {
            visible
        }
    }

    /// What `actor`, holding `role` in a project with the given setting, may read.
    pub fn for_role(actor: &Actor, role: crate::authz::Role, annotators_see_others: bool) -> Self {
        if role >= crate::authz::Role::Reviewer || annotators_see_others {
            Visible::All
        } else {
            Visible::OnlyOf(actor.user_id)
        }
    }

    /// Whether an annotation completed by `user` is visible.
    pub fn shows(self, user: Option<i64>) -> bool {
        match self {
            Visible::All | Visible::Anonymous(_) => true,
            Visible::OnlyOf(me) => user == Some(me),
        }
    }

    /// Whether task agreement is shown: not to an annotator who sees only their own
    /// annotations (it would tell them how others labeled).
    pub fn shows_agreement(self) -> bool {
        !matches!(self, Visible::OnlyOf(_))
    }

    /// Whether task agreement is shown to the holder of `access`: not to an annotator blind to
    /// others' work ([`Visible::shows_agreement`]), and not to a reviewer when the project's
    /// `review_settings.show_agreement_to_reviewers` is off.
    pub fn shows_agreement_in(self, access: &access::ProjectAccess) -> bool {
        self.shows_agreement()
            && (access.role != Role::Reviewer
                || access
                    .row
                    .settings()
                    .review_settings
                    .show_agreement_to_reviewers)
    }

    /// Whether the author of an annotation completed by `user` is shown.
    pub fn shows_author(self, user: Option<i64>) -> bool {
        match self {
            Visible::Anonymous(me) => user == Some(me),
            _ => true,
        }
    }

    /// The annotation as this caller may see it: with [`Visible::Anonymous`], without its
    /// author (and last editor) unless that is the caller.
    pub fn render(self, row: &AnnotationRow) -> AnnotationView {
        let mut view = row.view();
        if !self.shows_author(view.completed_by) {
            view.completed_by = None;
            view.created_username = String::new();
            view.updated_by = None;
        }
        view
    }
}

/// Attaches annotations (including skips, like Label Studio's task serializer) and predictions;
/// only the annotations `visible` allows, and only their annotators.
pub async fn with_nested(db: &Db, rows: &[TaskRow], visible: Visible) -> ApiResult<Vec<TaskView>> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut anns = annotations::for_tasks(db, &ids, true).await?;
    anns.retain(|a| visible.shows(a.completed_by));
    let preds = predictions::for_tasks(db, &ids).await?;
    let mut by_task: HashMap<i64, Vec<AnnotationRow>> = HashMap::new();
    for a in anns {
        by_task.entry(a.task_id).or_default().push(a);
    }
    let mut preds_by_task: HashMap<i64, Vec<PredictionRow>> = HashMap::new();
    for p in preds {
        preds_by_task.entry(p.task_id).or_default().push(p);
    }
    Ok(rows
        .iter()
        .map(|r| {
            let mut v = r.view();
            let anns = by_task.remove(&r.id).unwrap_or_default();
            // Each annotator once, in the order of their first annotation.
            let mut seen = std::collections::HashSet::new();
            let annotators: Vec<i64> = anns
                .iter()
                .filter_map(|a| a.completed_by)
                .filter(|id| visible.shows_author(Some(*id)) && seen.insert(*id))
                .collect();
            v.annotators = Some(annotators);
            v.annotations = Some(anns.iter().map(|a| visible.render(a)).collect());
            v.predictions = Some(
                preds_by_task
                    .remove(&r.id)
                    .unwrap_or_default()
                    .iter()
                    .map(PredictionRow::view)
                    .collect(),
            );
            v.drafts = Some(Vec::new());
            v
        })
        .collect())
}

/// How long an expired reservation is kept: a submit within this time after it expired is a
/// late submit under strict overlap (ADR 0048); later, it is purged by the next `next`.
pub const EXPIRED_LOCKS_KEPT_MICROS: i64 = 86_400 * 1_000_000;

/// The SQL for how many annotations of task `t` count toward its overlap: ground truth never;
/// skips only when the skip queue does not hand skipped tasks to others (ADR 0003).
pub fn counted_sql(skip_queue: SkipQueue) -> &'static str {
    match skip_queue {
        SkipQueue::RequeueForOthers => "(t.total_annotations - t.ground_truth_annotations)",
        _ => "(t.total_annotations + t.cancelled_annotations - t.ground_truth_annotations)",
    }
}

/// Sets the task payload's `completed_at`, `predictions_score` and `assignments` (ADR 0057)
/// for a caller with `role` in the project who sees annotations as `visible`.
pub async fn attach_payload_values(
    db: &Db,
    views: &mut [TaskView],
    visible: Visible,
    role: Role,
    user: i64,
) -> ApiResult<()> {
    let ids: Vec<i64> = views.iter().map(|v| v.id).collect();
    let (Some(completed), Some(score)) = (
        super::task_columns::scalar_sql("completed_at"),
        super::task_columns::scalar_sql("predictions_score"),
    ) else {
        return Err(ApiError::internal("task columns without completed_at"));
    };
    let mut values: HashMap<i64, (Option<i64>, Option<f64>)> = HashMap::new();
    for chunk in ids.chunks(IMPORT_BATCH) {
        let rows: Vec<(i64, Option<i64>, Option<f64>)> = with_read!(db, conn, {
            sqlx::query_as(&format!(
                "select t.id, {completed}, {score} from task t where t.id in ({})",
                super::assignments::id_list(chunk)
            ))
            .fetch_all(conn)
            .await?
        });
        values.extend(rows.into_iter().map(|(id, c, s)| (id, (c, s))));
    }
    let mut assigned = super::assignments::of_tasks(db, &ids).await?;
    for view in views.iter_mut() {
        let (completed_at, score) = values.remove(&view.id).unwrap_or_default();
        if visible.shows_agreement() {
            view.completed_at = Some(completed_at.map(format_micros));
        }
        view.predictions_score = Some(score);
        let mut mine = assigned.remove(&view.id).unwrap_or_default();
        if role < Role::Manager {
            mine.retain(|a| a.assignee == user);
        }
        view.assignments = Some(mine);
    }
    Ok(())
}

/// Nests `user`'s drafts into `views` (a draft is only ever its user's, ADR 0044).
pub async fn attach_drafts(db: &Db, user: i64, views: &mut [TaskView]) -> ApiResult<()> {
    let ids: Vec<i64> = views.iter().map(|v| v.id).collect();
    let mut drafts = super::drafts::of_tasks(db, user, &ids).await?;
    for v in views.iter_mut() {
        v.drafts = Some(
            drafts
                .remove(&v.id)
                .unwrap_or_default()
                .into_iter()
                .map(|d| serde_json::to_value(d).unwrap_or(Value::Null))
                .collect(),
        );
    }
    Ok(())
}

/// One task with its annotations and predictions.
pub async fn get(db: &Db, actor: &Actor, id: i64) -> ApiResult<TaskView> {
    let (row, project) = get_with_project(db, actor, id, Permission::ProjectView).await?;
    // In a manually distributed project an annotator reads only the tasks assigned to them
    // (as the task list shows them) and those they annotated (a task sent back for rework);
    // another task is not found, as in the list (ADR 0039).
    if project.role == Role::Annotator
        && project.row.settings().assignment_settings.manual()
        && !super::assignments::may_read(db, id, actor.user_id).await?
    {
        return Err(ApiError::not_found("task"));
    }
    let visible = Visible::for_access(actor, &project);
    let mut views = with_nested(db, std::slice::from_ref(&row), visible).await?;
    attach_drafts(db, actor.user_id, &mut views).await?;
    attach_payload_values(db, &mut views, visible, project.role, actor.user_id).await?;
    let criteria = project.row.settings().review_settings.review_criteria;
    super::reviews::attach(db, &mut views, criteria).await?;
    if visible.shows_agreement_in(&project) {
        views[0].agreement = row.agreement;
    }
    hide_comment_details(project.role, &mut views);
    Ok(views.remove(0))
}

// ---------------------------------------------------------------------------------------------
// Import

/// The format of an uploaded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    /// A JSON list, one JSON object, or JSON lines.
    Json,
    /// Comma-separated values with a header row.
    Csv,
    /// Tab-separated values with a header row.
    Tsv,
}

/// The community import response of Label Studio.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ImportSummary {
    /// Tasks created.
    pub task_count: i64,
    /// Annotations created.
    pub annotation_count: i64,
    /// Predictions created.
    pub prediction_count: i64,
    /// Seconds spent.
    pub duration: f64,
    /// The `file_upload` rows of the uploaded files (ADR 0032).
    pub file_upload_ids: Vec<i64>,
    /// Whether the upload was a task list.
    pub could_be_tasks_list: bool,
    /// Formats seen, e.g. `{".json": 1}`.
    #[schema(value_type = Object)]
    pub found_formats: Map<String, Value>,
    /// Data keys of the imported tasks.
    pub data_columns: Vec<String>,
    /// New task ids (with `return_task_ids=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_ids: Option<Vec<i64>>,
}

/// An uploaded file spooled to disk.
#[derive(Debug)]
pub struct ImportSource {
    /// Path of the spooled file.
    pub path: std::path::PathBuf,
    /// Its format.
    pub format: ImportFormat,
    /// Extension for `found_formats`.
    pub extension: String,
    /// The stored upload this source is (or was made of): recorded in `file_upload` by the
    /// import's transaction, and its tasks point at it.
    pub upload: Option<super::uploads::StoredUpload>,
}

/// How an import treats its tasks beyond their content.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Task data fields that become a prediction (`preannotated_from_fields`, ADR 0032).
    pub preannotated_from_fields: Vec<String>,
}

struct PreparedTask {
    /// The upload the task was made of.
    file_upload: Option<i64>,
    /// Author of each inline annotation, resolved while preparing (`None` = the importer).
    authors: Vec<Option<i64>>,
    data: String,
    meta: String,
    overlap: i64,
    is_labeled: bool,
    kind: Kind,
    predictions: i64,
    source: ImportedTask,
}

struct ImportState<'a> {
    config: Option<std::sync::Arc<LabelConfig>>,
    settings: ProjectSettings,
    actor: &'a Actor,
    data_columns: std::collections::BTreeSet<String>,
    users_by_email: HashMap<String, i64>,
    members: HashMap<i64, bool>,
    options: &'a ImportOptions,
}

/// Imports tasks from spooled files in one transaction: one bad task rejects the request with
/// its index and reason and nothing is written. Memory holds at most one batch of tasks.
pub async fn import(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    sources: &[ImportSource],
    return_task_ids: bool,
) -> ApiResult<ImportSummary> {
    import_with(db, actor, project_id, sources, return_task_ids, Claim::None).await
}

/// What an import records in the transaction that writes its tasks, so that it happens once.
#[derive(Debug, Clone, Copy)]
pub enum Claim<'a> {
    /// Nothing (a synchronous import).
    None,
    /// A stored import (`project_import` row) is marked completed.
    Import(i64),
    /// The objects of a storage that the tasks came from (key, tasks made of it) are recorded;
    /// an object recorded already fails the import with `conflict`.
    StorageObjects {
        /// Storage kind (`localfiles`).
        kind: &'a str,
        /// Storage id.
        storage: i64,
        /// The objects.
        objects: &'a [ClaimedObject],
    },
}

/// An object of a storage whose tasks an import writes (`Claim::StorageObjects`).
#[derive(Debug, Clone, Default)]
pub struct ClaimedObject {
    /// Object key.
    pub key: String,
    /// Tasks made of it (ignored when `source` is set).
    pub tasks: i64,
    /// The import source (index into `sources`) it is: its tasks are counted.
    pub source: Option<usize>,
    /// Entity tag the listing showed (bucket storages).
    pub etag: Option<String>,
    /// Size the listing showed (bucket storages).
    pub size: Option<i64>,
    /// A changed object recorded earlier under another entity tag: its record is updated
    /// (`conflict` if this version was recorded already) instead of inserted.
    pub replaces: bool,
}

/// [`import`] for the job of a stored import (`project_import` row `claim`): the row is marked
/// completed in the same transaction that writes the tasks, so a retried job never imports
/// twice (409 `conflict` if it already completed).
pub async fn import_with(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    sources: &[ImportSource],
    return_task_ids: bool,
    claim: Claim<'_>,
) -> ApiResult<ImportSummary> {
    import_opts(
        db,
        actor,
        project_id,
        sources,
        return_task_ids,
        claim,
        &ImportOptions::default(),
    )
    .await
}

/// [`import_with`] with options.
pub async fn import_opts(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    sources: &[ImportSource],
    return_task_ids: bool,
    claim: Claim<'_>,
    options: &ImportOptions,
) -> ApiResult<ImportSummary> {
    let project = projects::get_row(db, actor, project_id, Permission::TaskManage).await?;
    let started = std::time::Instant::now();
    let config = project.config();
    check_preannotated_fields(config.as_deref(), &options.preannotated_from_fields)?;
    let mut state = ImportState {
        config,
        settings: project.settings(),
        actor,
        data_columns: Default::default(),
        users_by_email: HashMap::new(),
        members: HashMap::new(),
        options,
    };
    let mut summary = ImportSummary {
        could_be_tasks_list: false,
        ..Default::default()
    };
    for s in sources {
        let n = summary
            .found_formats
            .get(&s.extension)
            .and_then(Value::as_i64)
            .unwrap_or(0);
        summary
            .found_formats
            .insert(s.extension.clone(), Value::from(n + 1));
    }
    let dialect = db.dialect();
    let mut task_ids: Vec<i64> = Vec::new();
    // Member and email lookups run on the read pool before each batch is written.
    let read_db = db.clone();
    with_tx!(db, tx, {
        crate::storage::annotations::lock_project!(tx, dialect, project_id);
        let (mut next_inner, mut task_number, mut overlapped): (i64, i64, i64) = sqlx::query_as(
            "select next_inner_id, task_number, overlapped_task_number from project where id = $1",
        )
        .bind(project_id)
        .fetch_one(&mut *tx)
        .await?;
        let mut index = 0usize;
        let mut totals = Kind::default();
        let (mut labeled, mut with_useful, mut predictions_total) = (0i64, 0i64, 0i64);
        let mut source_tasks: Vec<i64> = Vec::with_capacity(sources.len());
        for source in sources {
            let tasks_before = summary.task_count;
            let file_upload: Option<i64> = match &source.upload {
                None => None,
                Some(upload) => {
                    let id: i64 = sqlx::query_scalar(
                        "insert into file_upload (organization_id, project_id, file, size, created_by, created_at) \
                         values ($1, $2, $3, $4, $5, $6) returning id",
                    )
                    .bind(actor.org_id)
                    .bind(project_id)
                    .bind(&upload.file)
                    .bind(upload.size)
                    .bind((actor.user_id != 0).then_some(actor.user_id))
                    .bind(now_micros())
                    .fetch_one(&mut *tx)
                    .await?;
                    summary.file_upload_ids.push(id);
                    Some(id)
                }
            };
            let mut file = tokio::fs::File::open(&source.path)
                .await
                .map_err(ApiError::internal)?;
            let mut json = JsonSplitter::new();
            let mut csv = CsvSplitter::new(if source.format == ImportFormat::Tsv {
                b'\t'
            } else {
                b','
            });
            let mut buf = vec![0u8; 256 * 1024];
            let mut pending: Vec<Value> = Vec::new();
            let mut done = false;
            while !done {
                let n = file.read(&mut buf).await.map_err(ApiError::internal)?;
                let mut raw_tasks = Vec::new();
                match source.format {
                    ImportFormat::Json => {
                        if n == 0 {
                            json.finish().map_err(|e| import_error(e, index))?;
                            done = true;
                        } else {
                            json.feed(&buf[..n], &mut raw_tasks)
                                .map_err(|e| import_error(e, index))?;
                        }
                        for bytes in raw_tasks {
                            let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
                                ApiError::bad_request(
                                    ErrorCode::InvalidImport,
                                    format!("task {}: invalid JSON: {e}", index + pending.len()),
                                )
                            })?;
                            pending.push(value);
                        }
                    }
                    ImportFormat::Csv | ImportFormat::Tsv => {
                        csv.feed(&buf[..n], &mut pending)
                            .map_err(|e| import_error(e, index))?;
                        done = n == 0;
                    }
                }
                while pending.len() >= IMPORT_BATCH || (done && !pending.is_empty()) {
                    let take = pending.len().min(IMPORT_BATCH);
                    let batch: Vec<Value> = pending.drain(..take).collect();
                    let mut prepared = Vec::with_capacity(batch.len());
                    for value in batch {
                        let task = normalize_task(index, value).map_err(|e| import_error(e, 0))?;
                        let mut task = prepare_task(
                            &read_db,
                            &mut state,
                            index,
                            task,
                            &mut task_number,
                            &mut overlapped,
                        )
                        .await?;
                        task.file_upload = file_upload;
                        prepared.push(task);
                        index += 1;
                    }
                    let inner_start = next_inner;
                    next_inner += prepared.len() as i64;
                    let ids = insert_tasks!(tx, dialect, project_id, inner_start, &prepared);
                    insert_nested!(tx, dialect, project_id, &ids, &prepared, actor.user_id);
                    for p in &prepared {
                        totals.total += p.kind.total;
                        totals.cancelled += p.kind.cancelled;
                        totals.useful += p.kind.useful;
                        totals.ground_truth += p.kind.ground_truth;
                        labeled += i64::from(p.is_labeled);
                        with_useful += i64::from(p.kind.useful > 0);
                        predictions_total += p.predictions;
                        summary.annotation_count += (p.source.annotations.len()) as i64;
                        summary.prediction_count += p.predictions;
                    }
                    if return_task_ids {
                        task_ids.extend(ids.iter().copied());
                    }
                    summary.task_count += prepared.len() as i64;
                }
            }
            summary.could_be_tasks_list |= source.format == ImportFormat::Json;
            source_tasks.push(summary.task_count - tasks_before);
        }
        if summary.task_count == 0 {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidImport,
                "no tasks found in the upload",
            ));
        }
        sqlx::query(
            "update project set next_inner_id = $1, task_number = $2, overlapped_task_number = $3, \
             finished_task_number = finished_task_number + $4, total_annotations_number = total_annotations_number + $5, \
             skipped_annotations_number = skipped_annotations_number + $6, useful_annotation_number = useful_annotation_number + $7, \
             ground_truth_number = ground_truth_number + $8, num_tasks_with_annotations = num_tasks_with_annotations + $9, \
             total_predictions_number = total_predictions_number + $10, updated_at = $11 where id = $12",
        )
        .bind(next_inner)
        .bind(task_number)
        .bind(overlapped)
        .bind(labeled)
        .bind(totals.total)
        .bind(totals.cancelled)
        .bind(totals.useful)
        .bind(totals.ground_truth)
        .bind(with_useful)
        .bind(predictions_total)
        .bind(now_micros())
        .bind(project_id)
        .execute(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "task.import",
                "project",
                project_id,
                serde_json::json!({
                    "tasks": summary.task_count,
                    "annotations": summary.annotation_count,
                    "predictions": summary.prediction_count,
                }),
            )
        );
        if let Claim::StorageObjects {
            kind,
            storage,
            objects,
        } = claim
        {
            let now = crate::storage::now_micros();
            for object in objects {
                let n = object
                    .source
                    .and_then(|i| source_tasks.get(i).copied())
                    .unwrap_or(object.tasks);
                if object.replaces {
                    let updated = sqlx::query(
                        "update storage_object set etag = $1, size = $2, tasks = tasks + $3 \
                         where storage_kind = $4 and storage_id = $5 and object_key = $6 \
                         and (etag is null or etag <> $1)",
                    )
                    .bind(&object.etag)
                    .bind(object.size)
                    .bind(n)
                    .bind(kind)
                    .bind(storage)
                    .bind(&object.key)
                    .execute(&mut *tx)
                    .await?;
                    if updated.rows_affected() != 1 {
                        return Err(ApiError::new(
                            ErrorCode::Conflict,
                            format!("object {} was imported already in this version", object.key),
                        ));
                    }
                    continue;
                }
                sqlx::query(
                    "insert into storage_object (storage_kind, storage_id, object_key, tasks, created_at, etag, size) \
                     values ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(kind)
                .bind(storage)
                .bind(&object.key)
                .bind(n)
                .bind(now)
                .bind(&object.etag)
                .bind(object.size)
                .execute(&mut *tx)
                .await?;
            }
        }
        if let Claim::Import(import) = claim {
            // The whole summary, in the transaction that marks the import completed: a client
            // polling the import never sees it completed with half a summary.
            let whole = ImportSummary {
                duration: started.elapsed().as_secs_f64(),
                data_columns: state.data_columns.iter().cloned().collect(),
                task_ids: Some(task_ids.clone()),
                ..summary.clone()
            };
            let done = sqlx::query(
                "update project_import set status = 'completed', summary = $1, finished_at = $2 \
                 where id = $3 and status <> 'completed'",
            )
            .bind(serde_json::to_string(&whole).map_err(ApiError::internal)?)
            .bind(crate::storage::now_micros())
            .bind(import)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!("import {import} was already completed"),
                ));
            }
        }
        Ok::<_, ApiError>(())
    })?;
    // A bulk load leaves PostgreSQL's planner statistics stale until autovacuum catches up,
    // and stale statistics turn the per-page lookups into sequential scans. Refreshing them
    // samples a bounded number of rows, so it costs the same for any table size.
    if summary.task_count >= ANALYZE_AFTER_TASKS
        && let Db::Postgres(pool) = db
        && let Err(e) = sqlx::query("analyze task, annotation, prediction")
            .execute(pool)
            .await
    {
        tracing::warn!(error = %e, "refreshing planner statistics after an import failed");
    }
    summary.duration = started.elapsed().as_secs_f64();
    summary.data_columns = state.data_columns.into_iter().collect();
    if return_task_ids {
        summary.task_ids = Some(task_ids);
    }
    Ok(summary)
}

fn import_error(e: ImportError, offset: usize) -> ApiError {
    ApiError::bad_request(
        ErrorCode::InvalidImport,
        format!("task {}: {}", e.index + offset, e.message),
    )
}

/// Checks `preannotated_from_fields` before anything is read (also when an import run as a job
/// is queued): each field names a control tag of the label config (ADR 0032).
pub fn check_preannotated_fields(config: Option<&LabelConfig>, fields: &[String]) -> ApiResult<()> {
    if fields.is_empty() {
        return Ok(());
    }
    let Some(config) = config else {
        return Err(ApiError::field(
            ErrorCode::InvalidQuery,
            "preannotated_from_fields",
            "the project has no label config, so no control tag can take the predictions; set the label config first",
        ));
    };
    for field in fields {
        if !config.controls().iter().any(|c| &c.name == field) {
            let names: Vec<&str> = config.controls().iter().map(|c| c.name.as_str()).collect();
            return Err(ApiError::field(
                ErrorCode::InvalidQuery,
                "preannotated_from_fields",
                format!(
                    "{field:?} is not the name of a control tag of the label config; use one of {names:?}"
                ),
            ));
        }
    }
    Ok(())
}

/// Turns the `preannotated_from_fields` of a task's data into one prediction (ADR 0032): a
/// value that is a list of result objects (or a string holding one as JSON) is taken as it
/// is; any other value becomes one result of the control tag named like the field.
fn preannotate(
    task: &mut ImportedTask,
    config: &LabelConfig,
    fields: &[String],
) -> Result<(), String> {
    let mut result = Vec::new();
    for field in fields {
        let Some(value) = task.data.remove(field) else {
            return Err(format!(
                "data has no field \"{field}\" named in preannotated_from_fields"
            ));
        };
        let parsed = match &value {
            Value::String(s) if s.trim_start().starts_with('[') => {
                serde_json::from_str::<Value>(s).unwrap_or(value.clone())
            }
            _ => value.clone(),
        };
        if let Value::Array(items) = &parsed
            && !items.is_empty()
            && items.iter().all(Value::is_object)
        {
            result.extend(items.iter().cloned());
            continue;
        }
        let control = config
            .controls()
            .iter()
            .find(|c| &c.name == field)
            .ok_or_else(|| format!("{field:?} is not a control tag of the label config"))?;
        let strings = |v: &Value| -> Vec<Value> {
            match v {
                Value::Array(a) => a.clone(),
                Value::String(s) => vec![Value::String(s.clone())],
                other => vec![Value::String(other.to_string())],
            }
        };
        let number = |v: &Value| -> Result<Value, String> {
            match v {
                Value::Number(_) => Ok(v.clone()),
                Value::String(s) => s
                    .trim()
                    .parse::<f64>()
                    .map(Value::from)
                    .map_err(|_| format!("{field}: {s:?} is not a number")),
                _ => Err(format!("{field}: {v} is not a number")),
            }
        };
        let (kind, key, inner) = match control.tag.as_str() {
            "Choices" => ("choices", "choices", Value::Array(strings(&parsed))),
            "Taxonomy" => (
                "taxonomy",
                "taxonomy",
                Value::Array(vec![Value::Array(strings(&parsed))]),
            ),
            "TextArea" => ("textarea", "text", Value::Array(strings(&parsed))),
            "Rating" => ("rating", "rating", number(&parsed)?),
            "Number" => ("number", "number", number(&parsed)?),
            "DateTime" => ("datetime", "datetime", parsed.clone()),
            other => {
                return Err(format!(
                    "{field}: a <{other}> result needs regions; give the field a list of result objects"
                ));
            }
        };
        let mut item = serde_json::json!({
            "from_name": field,
            "type": kind,
            "value": {key: inner},
        });
        if let Some(to) = control.to_names.first() {
            item["to_name"] = Value::String(to.clone());
        }
        result.push(item);
    }
    task.predictions
        .push(crate::domain::import::ImportedPrediction {
            result: Value::Array(result),
            score: None,
            model_version: String::new(),
        });
    Ok(())
}

async fn prepare_task(
    db: &Db,
    state: &mut ImportState<'_>,
    index: usize,
    task: ImportedTask,
    task_number: &mut i64,
    overlapped: &mut i64,
) -> ApiResult<PreparedTask> {
    let fail = |message: String| {
        ApiError::bad_request(ErrorCode::InvalidImport, format!("task {index}: {message}"))
    };
    let mut task = task;
    if !state.options.preannotated_from_fields.is_empty()
        && let Some(config) = &state.config
    {
        preannotate(&mut task, config, &state.options.preannotated_from_fields).map_err(fail)?;
    }
    if let Some(config) = &state.config {
        for key in config.data_keys() {
            if !task.data.contains_key(&key) {
                return Err(fail(format!(
                    "data has no key \"{key}\", which the label config reads as ${key}; add it to every task or change the label config"
                )));
            }
        }
        for (i, a) in task.annotations.iter().enumerate() {
            if !a.result.is_null() {
                config
                    .validate_result(&a.result)
                    .map_err(|e| fail(format!("annotations[{i}]: {e}")))?;
            }
        }
        for (i, p) in task.predictions.iter().enumerate() {
            config
                .validate_result(&p.result)
                .map_err(|e| fail(format!("predictions[{i}]: {e}")))?;
        }
    }
    for key in task.data.keys() {
        if state.data_columns.len() < 1000 {
            state.data_columns.insert(key.clone());
        }
    }
    let mut authors = Vec::with_capacity(task.annotations.len());
    for (i, a) in task.annotations.iter().enumerate() {
        authors.push(match &a.completed_by {
            CompletedBy::Importer => None,
            CompletedBy::Id(id) => {
                if !is_member(db, state, *id).await? {
                    return Err(fail(format!("annotations[{i}].completed_by: user {id} is not in your organization")));
                }
                Some(*id)
            }
            CompletedBy::Email(email) => match resolve_email(db, state, email).await? {
                Some(id) => Some(id),
                None => {
                    return Err(fail(format!("annotations[{i}].completed_by: no user with email {email} in your organization")));
                }
            },
        });
    }
    // Overlap: the cohort percentage of all tasks gets the full overlap, the rest 1.
    *task_number += 1;
    let max = state.settings.maximum_annotations;
    let overlap = if max <= 1 {
        1
    } else if *overlapped < cohort_target(*task_number, state.settings.overlap_cohort_percentage) {
        *overlapped += 1;
        max
    } else {
        1
    };
    let mut kind = Kind::default();
    for a in &task.annotations {
        let k = Kind::of(a.was_cancelled, a.ground_truth, !a.result.is_null());
        kind.total += k.total;
        kind.cancelled += k.cancelled;
        kind.useful += k.useful;
        kind.ground_truth += k.ground_truth;
    }
    let completed = match state.settings.skip_queue {
        SkipQueue::IgnoreSkipped => kind.total + kind.cancelled,
        _ => kind.total,
    };
    Ok(PreparedTask {
        file_upload: None,
        authors,
        data: Value::Object(task.data.clone()).to_string(),
        meta: Value::Object(task.meta.clone()).to_string(),
        overlap,
        is_labeled: completed >= overlap,
        kind,
        predictions: task.predictions.len() as i64,
        source: task,
    })
}

async fn is_member(db: &Db, state: &mut ImportState<'_>, user_id: i64) -> ApiResult<bool> {
    if let Some(known) = state.members.get(&user_id) {
        return Ok(*known);
    }
    let org = state.actor.org_id;
    let found: Option<i64> = with_read!(db, conn, {
        sqlx::query_scalar(
            "select user_id from org_member where organization_id = $1 and user_id = $2",
        )
        .bind(org)
        .bind(user_id)
        .fetch_optional(conn)
        .await?
    });
    state.members.insert(user_id, found.is_some());
    Ok(found.is_some())
}

async fn resolve_email(
    db: &Db,
    state: &mut ImportState<'_>,
    email: &str,
) -> ApiResult<Option<i64>> {
    let key = email.to_lowercase();
    if let Some(id) = state.users_by_email.get(&key) {
        return Ok(Some(*id));
    }
    let org = state.actor.org_id;
    let found: Option<i64> = with_read!(db, conn, {
        sqlx::query_scalar(
            "select u.id from app_user u join org_member m on m.user_id = u.id \
             where m.organization_id = $1 and lower(u.email) = $2 \
             order by (u.home_organization_id = $1) desc, u.id limit 1",
        )
        .bind(org)
        .bind(&key)
        .fetch_optional(conn)
        .await?
    });
    if let Some(id) = found {
        state.users_by_email.insert(key, id);
    }
    Ok(found)
}

/// Inserts prepared tasks with one multi-row statement; evaluates to their ids in order.
macro_rules! insert_tasks {
    ($tx:expr, $dialect:expr, $project_id:expr, $inner_start:expr, $prepared:expr) => {{
        let prepared: &[PreparedTask] = $prepared;
        let dialect: Dialect = $dialect;
        let now = now_micros();
        let mut sql = String::from(
            "insert into task (project_id, inner_id, data, meta, is_labeled, overlap, total_annotations, \
             cancelled_annotations, useful_annotations, ground_truth_annotations, total_predictions, created_at, updated_at, file_upload_id) values ",
        );
        sql.push_str(&dialect.values_list(prepared.len(), 14));
        sql.push_str(" returning id, inner_id");
        let mut q = sqlx::query_as::<_, (i64, i64)>(&sql);
        for (i, p) in prepared.iter().enumerate() {
            q = q
                .bind($project_id)
                .bind($inner_start + i as i64)
                .bind(&p.data)
                .bind(&p.meta)
                .bind(p.is_labeled)
                .bind(p.overlap)
                .bind(p.kind.total)
                .bind(p.kind.cancelled)
                .bind(p.kind.useful)
                .bind(p.kind.ground_truth)
                .bind(p.predictions)
                .bind(now)
                .bind(now)
                .bind(p.file_upload);
        }
        let mut rows: Vec<(i64, i64)> = q.fetch_all(&mut *$tx).await?;
        // RETURNING order is not guaranteed; inner ids are, so sort by them.
        rows.sort_by_key(|r| r.1);
        rows.into_iter().map(|r| r.0).collect::<Vec<i64>>()
    }};
}
use insert_tasks;

/// Inserts the annotations and predictions carried by prepared tasks, one multi-row statement
/// per kind and batch.
macro_rules! insert_nested {
    ($tx:expr, $dialect:expr, $project_id:expr, $ids:expr, $prepared:expr, $importer:expr) => {{
        let prepared: &[PreparedTask] = $prepared;
        let ids: &[i64] = $ids;
        let dialect: Dialect = $dialect;
        let now = now_micros();
        // At most 2,000 rows per statement: 24,000 parameters, under both engines' limits however
        // many annotations a task carries.
        let annotations: Vec<(i64, &crate::domain::import::ImportedAnnotation, i64)> = ids
            .iter()
            .zip(prepared)
            .flat_map(|(task_id, p)| {
                p.source.annotations.iter().zip(&p.authors).map(move |(a, author)| (*task_id, a, author.unwrap_or($importer)))
            })
            .collect();
        for chunk in annotations.chunks(2000) {
            let annotation_rows = chunk.len();
            let sql = format!(
                "insert into annotation (task_id, project_id, result, completed_by, updated_by, was_cancelled, \
                 ground_truth, lead_time, last_action, unique_id, created_at, updated_at) values {}",
                dialect.values_list(annotation_rows, 12)
            );
            let mut q = sqlx::query(&sql);
            for &(task_id, a, author) in chunk {
                {
                    let result = if a.result.is_null() { None } else { Some(a.result.to_string()) };
                    q = q
                        .bind(task_id)
                        .bind($project_id)
                        .bind(result)
                        .bind(author)
                        .bind(author)
                        .bind(a.was_cancelled)
                        .bind(a.ground_truth)
                        .bind(a.lead_time)
                        .bind("imported")
                        .bind(uuid::Uuid::new_v4().to_string())
                        .bind(now)
                        .bind(now);
                }
            }
            q.execute(&mut *$tx).await?;
        }
        // New tasks imported with two or more annotations get their agreement now.
        for (task_id, p) in ids.iter().zip(prepared) {
            if p.source.annotations.len() >= 2 {
                $crate::refresh_task_agreement!($tx, $project_id, *task_id);
            }
        }
        let predictions: Vec<(i64, &crate::domain::import::ImportedPrediction)> = ids
            .iter()
            .zip(prepared)
            .flat_map(|(task_id, p)| p.source.predictions.iter().map(move |pr| (*task_id, pr)))
            .collect();
        for chunk in predictions.chunks(3000) {
            let prediction_rows = chunk.len();
            let sql = format!(
                "insert into prediction (task_id, project_id, result, score, model_version, created_at, updated_at) values {}",
                dialect.values_list(prediction_rows, 7)
            );
            let mut q = sqlx::query(&sql);
            for &(task_id, pr) in chunk {
                {
                    q = q
                        .bind(task_id)
                        .bind($project_id)
                        .bind(pr.result.to_string())
                        .bind(pr.score)
                        .bind(pr.model_version.clone())
                        .bind(now)
                        .bind(now);
                }
            }
            q.execute(&mut *$tx).await?;
        }
    }};
}
use insert_nested;

// ---------------------------------------------------------------------------------------------
// Listing

/// How a task page is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fields {
    /// Task columns only.
    TaskOnly,
    /// With annotations, predictions and drafts.
    All,
}

/// Filters, ordering and selection from the data manager's `query` parameter.
#[derive(Debug, Clone, Default)]
pub struct TaskQuery {
    /// SQL condition over `t` with `$N` placeholders starting at 2 (1 is the project).
    pub condition: String,
    /// String parameters, in placeholder order.
    pub params: Vec<String>,
    /// `order by` clause.
    pub order: String,
    /// What the filters and ordering tell about other people's work (ADR 0055).
    pub reveals: super::task_columns::Reveals,
}

/// Builds a [`TaskQuery`] from the data manager JSON (`filters`, `ordering`, `selectedItems`).
pub fn task_query(dialect: Dialect, query: &Value, only_annotated: bool) -> ApiResult<TaskQuery> {
    let mut q = TaskQuery {
        condition: String::from("true"),
        params: Vec::new(),
        order: "t.id".into(),
        reveals: Default::default(),
    };
    let bad = |m: String| ApiError::field(ErrorCode::InvalidQuery, "query", m);
    if only_annotated {
        q.condition
            .push_str(" and (t.total_annotations + t.cancelled_annotations) > 0");
    }
    if let Some(filters) = query.get("filters").filter(|f| !f.is_null()) {
        let conjunction = match filters
            .get("conjunction")
            .and_then(Value::as_str)
            .unwrap_or("and")
        {
            "and" => " and ",
            "or" => " or ",
            other => {
                return Err(bad(format!(
                    "conjunction must be \"and\" or \"or\", not {other:?}"
                )));
            }
        };
        let items = filters
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut parts = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if let Some(r) = item
                .get("filter")
                .and_then(Value::as_str)
                .map(|n| n.strip_prefix("filter:tasks:").unwrap_or(n))
                .and_then(super::task_columns::reveals)
            {
                q.reveals = q.reveals.union(r);
            }
            parts.push(
                filter_sql(dialect, item, &mut q.params)
                    .map_err(|m| bad(format!("filters.items[{i}]: {m}")))?,
            );
        }
        if !parts.is_empty() {
            q.condition
                .push_str(&format!(" and ({})", parts.join(conjunction)));
        }
    }
    if let Some(sel) = query.get("selectedItems").filter(|s| !s.is_null()) {
        let all = sel.get("all").and_then(Value::as_bool).unwrap_or(false);
        let key = if all { "excluded" } else { "included" };
        let ids: Vec<i64> = sel
            .get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        let list = if ids.is_empty() {
            "0".into()
        } else {
            ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
        };
        if all {
            if !ids.is_empty() {
                q.condition.push_str(&format!(" and t.id not in ({list})"));
            }
        } else {
            q.condition.push_str(&format!(" and t.id in ({list})"));
        }
    }
    if let Some(order) = query
        .get("ordering")
        .and_then(Value::as_array)
        .and_then(|o| o.first())
        .and_then(Value::as_str)
    {
        let (desc, name) = match order.strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, order),
        };
        let name = name.strip_prefix("tasks:").unwrap_or(name);
        if let Some(r) = super::task_columns::reveals(name) {
            q.reveals = q.reveals.union(r);
        }
        let column = column_sql(name)
            .map(str::to_string)
            .or_else(|| dialect_column_sql(dialect, name))
            .or_else(|| super::task_columns::order_sql(name))
            .map(Ok)
            .or_else(|| {
                name.strip_prefix("data.")
                    .map(|key| data_order_sql(dialect, key))
            })
            .ok_or_else(|| {
                bad(format!(
                    "cannot order by {order:?}: order by a task column ({}) or data.<field>",
                    ORDER_COLUMNS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?
            .map_err(bad)?;
        // Tasks without a value (not completed, no prediction, ...) come first in ascending
        // order and last in descending order on both engines (PostgreSQL's own default is the
        // reverse of SQLite's). A column that is never null takes no `nulls` clause: with one,
        // PostgreSQL does not walk an index whose order is the column's (its backward scan
        // gives `desc nulls first`), and sorts every matching task for one page (ADR 0059,
        // addendum of session 23).
        let never_null = ORDER_COLUMNS.iter().any(|&(n, never)| n == name && never);
        let direction = match (desc, never_null) {
            (true, true) => " desc",
            (false, true) => "",
            (true, false) => " desc nulls last",
            (false, false) => " asc nulls first",
        };
        q.order = if name == "id" {
            format!("t.id{direction}")
        } else {
            format!("{column}{direction}, t.id")
        };
    }
    Ok(q)
}

/// The task columns ordering takes (named in its error message), each with whether it is never
/// null (`not null` in both engines' schemas): those are ordered without a `nulls first`/`nulls
/// last` clause so that an index in the column's order can serve the page.
const ORDER_COLUMNS: &[(&str, bool)] = &[
    ("id", NEVER_NULL),
    ("inner_id", NEVER_NULL),
    ("total_annotations", NEVER_NULL),
    ("cancelled_annotations", NEVER_NULL),
    ("total_predictions", NEVER_NULL),
    ("created_at", NEVER_NULL),
    ("updated_at", NEVER_NULL),
    ("is_labeled", NEVER_NULL),
    ("overlap", NEVER_NULL),
    ("agreement", NULLABLE),
    ("comment_count", NEVER_NULL),
    ("unresolved_comment_count", NEVER_NULL),
    ("last_comment_updated_at", NULLABLE),
    ("reviews_accepted", NULLABLE),
    ("reviews_rejected", NULLABLE),
    ("reviewers_count", NULLABLE),
    ("reviewed", NULLABLE),
    ("completed_at", NULLABLE),
    ("annotators", NULLABLE),
    ("reviewers", NULLABLE),
    ("predictions_score", NULLABLE),
    ("ground_truth", NULLABLE),
    ("draft_exists", NULLABLE),
    ("avg_lead_time", NULLABLE),
];
const NEVER_NULL: bool = true;
const NULLABLE: bool = false;

/// Ordering by a top-level field of the task's data (as text). The key goes into the SQL as a
/// literal, so it is held to letters, digits, `_` and `-`.
fn data_order_sql(dialect: Dialect, key: &str) -> Result<String, String> {
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "cannot order by data.{key}: a data field to order by is made of letters, digits, _ and -"
        ));
    }
    Ok(dialect.json_text("t.data", &format!("'{key}'")))
}

fn column_sql(name: &str) -> Option<&'static str> {
    Some(match name {
        "id" => "t.id",
        "inner_id" => "t.inner_id",
        "total_annotations" => "t.total_annotations",
        "cancelled_annotations" => "t.cancelled_annotations",
        "total_predictions" => "t.total_predictions",
        "created_at" => "t.created_at",
        "updated_at" => "t.updated_at",
        "is_labeled" => "t.is_labeled",
        "overlap" => "t.overlap",
        "agreement" => "t.agreement",
        "comment_count" => "t.comment_count",
        "unresolved_comment_count" => "t.unresolved_comment_count",
        "last_comment_updated_at" => "t.last_comment_updated_at",
        "reviews_accepted" => {
            "(select count(*) from annotation_review rv where rv.task_id = t.id and rv.accepted)"
        }
        "reviews_rejected" => {
            "(select count(*) from annotation_review rv where rv.task_id = t.id and not rv.accepted)"
        }
        "reviewers_count" => {
            "(select count(distinct rv.created_by) from annotation_review rv where rv.task_id = t.id)"
        }
        _ => return None,
    })
}

/// Data-manager columns whose SQL depends on the engine: `reviewed` (1 or 0), by the project's
/// `review_settings.review_criteria` (`one`: an accepted review; `all`, the default: every
/// annotation that needs a review has one, and there is at least one; ADR 0024).
fn dialect_column_sql(dialect: Dialect, name: &str) -> Option<String> {
    if name != "reviewed" {
        return None;
    }
    let criteria = match dialect {
        Dialect::Postgres => "(p.settings::jsonb -> 'review_settings' ->> 'review_criteria')",
        Dialect::Sqlite => "json_extract(p.settings, '$.review_settings.review_criteria')",
    };
    let reviewed_annotation =
        "exists (select 1 from annotation_review rv where rv.annotation_id = a.id)";
    Some(format!(
        "(case when (select {criteria} from project p where p.id = t.project_id) = 'one' \
         then (case when exists (select 1 from annotation_review rv where rv.task_id = t.id and rv.accepted) then 1 else 0 end) \
         else (case when exists (select 1 from annotation a where a.task_id = t.id and a.result is not null \
         and (not a.was_cancelled or {reviewed_annotation})) \
         and not exists (select 1 from annotation a where a.task_id = t.id and a.result is not null \
         and not a.was_cancelled and not {reviewed_annotation}) then 1 else 0 end) end)"
    ))
}

/// Whether task `t` is reviewed (1 or 0) by its project's `review_criteria`: the data manager's
/// `reviewed` column, also the export filter `task_filter_options.reviewed`.
pub(crate) fn reviewed_sql(dialect: Dialect) -> String {
    dialect_column_sql(dialect, "reviewed").unwrap_or_default()
}

fn filter_sql(dialect: Dialect, item: &Value, params: &mut Vec<String>) -> Result<String, String> {
    let name = item
        .get("filter")
        .and_then(Value::as_str)
        .ok_or("\"filter\" is required")?;
    let name = name.strip_prefix("filter:tasks:").unwrap_or(name);
    let operator = item
        .get("operator")
        .and_then(Value::as_str)
        .ok_or("\"operator\" is required")?;
    let value = item.get("value").cloned().unwrap_or(Value::Null);
    if name == "comment_authors" {
        return comment_authors_sql(operator, &value);
    }
    if let Some(sql) = super::task_columns::filter_sql(name, operator, &value, params) {
        return sql;
    }
    let (column, numeric) = if let Some(key) = name.strip_prefix("data.") {
        params.push(key.to_string());
        let key = format!("${}", params.len() + 1);
        // A number compares as a number on both engines (a JSON number is never equal to its
        // text on SQLite, and text orders "10" before "9"); fields that are not numbers do
        // not match a numeric comparison.
        let number = item.get("type").and_then(Value::as_str) == Some("Number")
            || value.is_number()
            || value.get("min").is_some_and(Value::is_number);
        let compares = matches!(
            operator,
            "equal"
                | "not_equal"
                | "greater"
                | "greater_or_equal"
                | "less"
                | "less_or_equal"
                | "in"
                | "not_in"
        );
        if number && compares {
            (dialect.json_number("t.data", &key), true)
        } else {
            (dialect.json_text("t.data", &key), false)
        }
    } else {
        let col = column_sql(name)
            .map(str::to_string)
            .or_else(|| dialect_column_sql(dialect, name))
            .or_else(|| super::task_columns::scalar_sql(name))
            .ok_or_else(|| format!("unknown filter column {name:?}"))?;
        (col, true)
    };
    let micros = |v: &Value| -> Option<i64> {
        if matches!(
            name,
            "created_at" | "updated_at" | "last_comment_updated_at" | "completed_at"
        ) {
            v.as_str()
                .and_then(|s| {
                    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .map(|t| (t.unix_timestamp_nanos() / 1000) as i64)
        } else {
            None
        }
    };
    let literal = |v: &Value, params: &mut Vec<String>| -> Result<String, String> {
        if numeric {
            if let Some(m) = micros(v) {
                return Ok(m.to_string());
            }
            match v {
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(if *b { "1".into() } else { "0".into() }),
                // NaN, inf and overflowing values such as 1e400 parse as f64 but are no SQL
                // number: refuse them here rather than fail in the database.
                Value::String(s) => s
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(|f| f.to_string())
                    .ok_or_else(|| format!("{s:?} is not a finite number")),
                _ => Err("value must be a number".into()),
            }
        } else {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            params.push(text);
            Ok(format!("${}", params.len() + 1))
        }
    };
    Ok(match operator {
        "equal" => format!("{column} = {}", literal(&value, params)?),
        "not_equal" => format!(
            "({column} is null or {column} <> {})",
            literal(&value, params)?
        ),
        "greater" => format!("{column} > {}", literal(&value, params)?),
        "greater_or_equal" => format!("{column} >= {}", literal(&value, params)?),
        "less" => format!("{column} < {}", literal(&value, params)?),
        "less_or_equal" => format!("{column} <= {}", literal(&value, params)?),
        "contains" | "not_contains" | "starts_with" | "ends_with" if !numeric => {
            // `%`, `_` and `\` are taken literally, as in the other text filters.
            let text = super::task_columns::escape_like(
                &value.as_str().unwrap_or_default().to_lowercase(),
            );
            let pattern = match operator {
                "starts_with" => format!("{text}%"),
                "ends_with" => format!("%{text}"),
                _ => format!("%{text}%"),
            };
            params.push(pattern);
            let p = format!("${}", params.len() + 1);
            if operator == "not_contains" {
                format!("({column} is null or lower({column}) not like {p} escape '\\')")
            } else {
                format!("lower({column}) like {p} escape '\\'")
            }
        }
        "in" | "not_in" => {
            let min = value.get("min").ok_or("a range needs {\"min\", \"max\"}")?;
            let max = value.get("max").ok_or("a range needs {\"min\", \"max\"}")?;
            let (lo, hi) = (literal(min, params)?, literal(max, params)?);
            if operator == "in" {
                format!("({column} >= {lo} and {column} <= {hi})")
            } else {
                format!("({column} < {lo} or {column} > {hi})")
            }
        }
        "empty" | "exists" | "not_exists" => {
            let empty = match operator {
                "empty" => value.as_bool().unwrap_or(true),
                "not_exists" => true,
                _ => false,
            };
            if empty {
                format!("({column} is null)")
            } else {
                format!("({column} is not null)")
            }
        }
        other => return Err(format!("unsupported operator {other:?} for {name}")),
    })
}

/// The data manager's `comment_authors` filter: tasks on which one of the given users
/// (a user id or a list of them) commented (`contains`, also `equal`), or none of them did
/// (`not_contains`, also `not_equal`).
fn comment_authors_sql(operator: &str, value: &Value) -> Result<String, String> {
    let ids: Vec<i64> = match value {
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_i64().ok_or("comment_authors takes user ids"))
            .collect::<Result<_, _>>()?,
        v => vec![
            v.as_i64()
                .ok_or("comment_authors takes a user id or a list of them")?,
        ],
    };
    if ids.is_empty() {
        return Err("comment_authors needs at least one user id".into());
    }
    // Ids are integers parsed above.
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let exists = format!(
        "exists (select 1 from review_comment c where c.task_id = t.id and c.created_by in ({list}))"
    );
    match operator {
        "contains" | "equal" => Ok(exists),
        "not_contains" | "not_equal" => Ok(format!("not {exists}")),
        other => Err(format!(
            "unsupported operator {other:?} for comment_authors"
        )),
    }
}

/// Whether a holder of `role` sees who commented on tasks and when (`comment_authors`,
/// `last_comment_updated_at`): reviewers and above, not annotators (ADR 0051).
pub fn shows_comment_details(role: Role) -> bool {
    role >= Role::Reviewer
}

/// Blanks what [`shows_comment_details`] hides from `role`.
pub fn hide_comment_details(role: Role, views: &mut [TaskView]) {
    if !shows_comment_details(role) {
        for v in views {
            v.comment_authors.clear();
            v.last_comment_updated_at = None;
        }
    }
}

/// One page of tasks: the rows and the project totals.
pub struct TaskPage {
    /// The tasks.
    pub tasks: Vec<TaskView>,
    /// Tasks matching the query.
    pub total: i64,
    /// Annotations of the project.
    pub total_annotations: i64,
    /// Predictions of the project.
    pub total_predictions: i64,
}

/// Which slice of a task list to render, and how.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Rows to skip.
    pub offset: i64,
    /// Rows to return.
    pub limit: i64,
    /// Nested objects or not.
    pub fields: Fields,
    /// Only ids (the cheap `include=id` path).
    pub ids_only: bool,
}

/// Lists tasks of a project with a data-manager query, offset pagination and rendering choice.
pub async fn list(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    query: &TaskQuery,
    window: Window,
) -> ApiResult<(ProjectRow, TaskPage)> {
    let Window {
        offset,
        limit,
        fields,
        ids_only,
    } = window;
    let access = access::project(db, actor, project_id, Permission::ProjectView).await?;
    let visible = Visible::for_access(actor, &access);
    if access.role == Role::Reviewer
        && !access
            .row
            .settings()
            .review_settings
            .show_data_manager_to_reviewers
    {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "this project does not show its task list to reviewers \
             (review_settings.show_data_manager_to_reviewers): review through the review stream",
        ));
    }
    let shows_agreement = visible.shows_agreement_in(&access);
    if !shows_agreement
        && (query.condition.contains("t.agreement") || query.order.contains("t.agreement"))
    {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "task agreement is not shown to you in this project (annotators who see only their \
             own annotations, or reviewers when review_settings.show_agreement_to_reviewers is off): \
             remove the agreement filter or ordering",
        ));
    }
    if !shows_comment_details(access.role)
        && ["t.last_comment_updated_at", "review_comment c"]
            .iter()
            .any(|c| query.condition.contains(c) || query.order.contains(c))
    {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "who commented and when is not shown to annotators: remove the comment_authors and \
             last_comment_updated_at filters or ordering",
        ));
    }
    match visible {
        Visible::OnlyOf(_) if query.reveals.work => {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "this project shows you only your own annotations: filters and ordering by \
                 completed_at, annotators, reviewers, annotations_results, ground_truth, \
                 draft_exists or avg_lead_time would tell how others labeled; remove them",
            ));
        }
        Visible::Anonymous(_) if query.reveals.authors => {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "this project hides who annotated from reviewers \
                 (review_settings.anonymize_annotations): remove the annotators and reviewers \
                 filters or ordering",
            ));
        }
        _ => {}
    }
    let project = access.row;
    // In a manually distributed project annotators see only the tasks assigned to them.
    let restricted;
    let query = if access.role == Role::Annotator && project.settings().assignment_settings.manual()
    {
        restricted = TaskQuery {
            condition: format!(
                "{} and {}",
                query.condition,
                super::assignments::assigned_sql(actor.user_id, super::assignments::Kind::Annotate)
            ),
            ..query.clone()
        };
        &restricted
    } else {
        query
    };
    let filtered = query.condition != "true";
    let n = query.params.len();
    let (total, rows, ids): (i64, Vec<TaskRow>, Vec<i64>) = with_read!(db, conn, {
        let total = if filtered {
            let sql = format!(
                "select count(*) from task t where t.project_id = $1 and {}",
                query.condition
            );
            let mut q = sqlx::query_scalar::<_, i64>(&sql).bind(project_id);
            for p in &query.params {
                q = q.bind(p);
            }
            q.fetch_one(conn).await?
        } else {
            project.task_number
        };
        let (limit_p, offset_p) = (n + 2, n + 3);
        if ids_only {
            let sql = format!(
                "select t.id from task t where t.project_id = $1 and {} order by {} limit ${limit_p} offset ${offset_p}",
                query.condition, query.order
            );
            let mut q = sqlx::query_scalar::<_, i64>(&sql).bind(project_id);
            for p in &query.params {
                q = q.bind(p);
            }
            (
                total,
                Vec::new(),
                q.bind(limit).bind(offset).fetch_all(conn).await?,
            )
        } else {
            let sql = format!(
                "select {TASK_COLUMNS} from task t where t.project_id = $1 and {} order by {} limit ${limit_p} offset ${offset_p}",
                query.condition, query.order
            );
            let mut q = sqlx::query_as::<_, TaskRow>(&sql).bind(project_id);
            for p in &query.params {
                q = q.bind(p);
            }
            (
                total,
                q.bind(limit).bind(offset).fetch_all(conn).await?,
                Vec::new(),
            )
        }
    });
    let mut tasks = if ids_only {
        ids.into_iter()
            .map(|id| {
                TaskRow {
                    id,
                    project_id,
                    inner_id: 0,
                    data: "{}".into(),
                    meta: "{}".into(),
                    is_labeled: false,
                    overlap: 0,
                    total_annotations: 0,
                    cancelled_annotations: 0,
                    total_predictions: 0,
                    created_at: 0,
                    updated_at: 0,
                    updated_by: None,
                    agreement: None,
                    file_upload: None,
                    comment_count: 0,
                    unresolved_comment_count: 0,
                    last_comment_updated_at: None,
                    comment_authors: String::new(),
                }
                .view()
            })
            .collect()
    } else if fields == Fields::All {
        let mut views = with_nested(db, &rows, visible).await?;
        attach_drafts(db, actor.user_id, &mut views).await?;
        views
    } else {
        rows.iter().map(TaskRow::view).collect()
    };
    if !ids_only {
        let ids: Vec<i64> = tasks.iter().map(|t| t.id).collect();
        let drafted = super::drafts::tasks_with_drafts(db, &ids).await?;
        for t in tasks.iter_mut() {
            t.draft_exists = Some(drafted.contains(&t.id));
        }
        attach_payload_values(db, &mut tasks, visible, access.role, actor.user_id).await?;
        let criteria = project.settings().review_settings.review_criteria;
        super::reviews::attach(db, &mut tasks, criteria).await?;
        if shows_agreement {
            for (view, row) in tasks.iter_mut().zip(&rows) {
                view.agreement = row.agreement;
            }
        }
        hide_comment_details(access.role, &mut tasks);
    }
    let page = TaskPage {
        tasks,
        total,
        total_annotations: project.total_annotations_number,
        total_predictions: project.total_predictions_number,
    };
    Ok((project, page))
}

// ---------------------------------------------------------------------------------------------
// Single-task changes

/// Creates one task (`POST /api/tasks`).
pub async fn create_one(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    data: Map<String, Value>,
    meta: Map<String, Value>,
) -> ApiResult<TaskView> {
    // The import checks task.manage on the project before it reads anything.
    let dir = tempfile::tempdir().map_err(ApiError::internal)?;
    let path = dir.path().join("task.json");
    let body = serde_json::json!([{"data": data, "meta": meta}]).to_string();
    tokio::fs::write(&path, body)
        .await
        .map_err(ApiError::internal)?;
    let summary = import(
        db,
        actor,
        project_id,
        &[ImportSource {
            path,
            format: ImportFormat::Json,
            extension: ".json".into(),
            upload: None,
        }],
        true,
    )
    .await?;
    let id = summary
        .task_ids
        .and_then(|ids| ids.first().copied())
        .ok_or_else(|| ApiError::internal("import returned no id"))?;
    get(db, actor, id).await
}

/// Changes a task's data or meta (`PATCH /api/tasks/{id}`).
pub async fn update(
    db: &Db,
    actor: &Actor,
    id: i64,
    data: Option<Map<String, Value>>,
    meta: Option<Map<String, Value>>,
) -> ApiResult<TaskView> {
    let (row, project) = get_with_project(db, actor, id, Permission::TaskManage).await?;
    let project = project.row;
    if let (Some(data), Some(config)) = (&data, project.config()) {
        for key in config.data_keys() {
            if !data.contains_key(&key) {
                return Err(ApiError::field(
                    ErrorCode::ValidationError,
                    "data",
                    format!("data has no key \"{key}\", which the label config reads as ${key}"),
                ));
            }
        }
    }
    let data_text = data
        .map(|d| Value::Object(d).to_string())
        .unwrap_or(row.data.clone());
    let meta_text = meta
        .map(|m| Value::Object(m).to_string())
        .unwrap_or(row.meta.clone());
    let now = now_micros();
    with_tx!(db, tx, {
        sqlx::query(
            "update task set data = $1, meta = $2, updated_at = $3, updated_by = $4 where id = $5",
        )
        .bind(&data_text)
        .bind(&meta_text)
        .bind(now)
        .bind(actor.user_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "task.update",
                "task",
                id,
                serde_json::json!({"project": row.project_id})
            )
        );
        Ok::<_, ApiError>(())
    })?;
    get(db, actor, id).await
}

/// Ids per statement of a bulk deletion.
pub(crate) const DELETE_BATCH: usize = 1000;

/// Ids named in the audit entry of a bulk deletion.
pub(crate) const AUDIT_IDS: usize = 100;

/// `SQL` tails selecting `ids` (` and id in (…)`) in batches of [`DELETE_BATCH`], or one empty
/// tail for every row when `ids` is `None`: a selection of a million ids is handled in bounded
/// statements (one transaction), never as one giant `IN (…)`.
pub(crate) fn id_conditions(ids: Option<&[i64]>) -> Vec<String> {
    match ids {
        None => vec![String::new()],
        Some(ids) => ids
            .chunks(DELETE_BATCH)
            .map(|chunk| {
                format!(
                    " and id in ({})",
                    chunk
                        .iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                )
            })
            .collect(),
    }
}

/// Deletes the tasks of `$project_id` that `$conditions` select (each a ` and id in (…)` tail,
/// or one empty string for every task) inside `$tx`, taking what they counted off the project's
/// counters; their annotations, predictions, reservations and assignments go with them.
/// Evaluates to the deleted ids (sorted) and the number of tasks deleted.
#[macro_export]
macro_rules! delete_task_rows {
    ($tx:expr, $project_id:expr, $conditions:expr) => {{
            let mut sums = [0i64; 9];
            let mut deleted: Vec<i64> = Vec::new();
            for condition in $conditions {
                let s: (i64, i64, i64, i64, i64, i64, i64, i64, i64) = sqlx::query_as(&format!(
                    "select count(*), cast(coalesce(sum(case when is_labeled then 1 else 0 end), 0) as bigint), cast(coalesce(sum(total_annotations), 0) as bigint), \
                     cast(coalesce(sum(cancelled_annotations), 0) as bigint), cast(coalesce(sum(useful_annotations), 0) as bigint), \
                     cast(coalesce(sum(ground_truth_annotations), 0) as bigint), cast(coalesce(sum(case when useful_annotations > 0 then 1 else 0 end), 0) as bigint), \
                     cast(coalesce(sum(total_predictions), 0) as bigint), cast(coalesce(sum(case when overlap > 1 then 1 else 0 end), 0) as bigint) \
                     from task where project_id = $1{condition}"
                ))
                .bind($project_id)
                .fetch_one(&mut *$tx)
                .await?;
                for (total, part) in sums
                    .iter_mut()
                    .zip([s.0, s.1, s.2, s.3, s.4, s.5, s.6, s.7, s.8])
                {
                    *total += part;
                }
                // Their annotations' objects go from the project's export storages too: the
                // rows are recorded with the deletion, and the write passes delete them (ADR 0058).
                sqlx::query(&format!(
                    "insert into export_change (storage_kind, storage_id, annotation_id, project_id, version, created_at) \
                     select s.kind, s.id, a.id, a.project_id, 1, $2 from annotation a join (\
                     select 'localfiles' as kind, id from local_storage where project_id = $1 and direction = 'export' \
                     union all select provider as kind, id from cloud_storage where project_id = $1 and direction = 'export'\
                     ) s on true where a.project_id = $1 and a.task_id in (select id from task where project_id = $1{condition}) \
                     on conflict (storage_kind, storage_id, annotation_id) do update set version = export_change.version + 1"
                ))
                .bind($project_id)
                .bind($crate::storage::now_micros())
                .execute(&mut *$tx)
                .await?;
                let gone: Vec<i64> = sqlx::query_scalar(&format!(
                    "delete from task where project_id = $1{condition} returning id"
                ))
                .bind($project_id)
                .fetch_all(&mut *$tx)
                .await?;
                deleted.extend(gone);
            }
            deleted.sort_unstable();
            sqlx::query(
                "update project set task_number = task_number - $1, finished_task_number = finished_task_number - $2, \
                 total_annotations_number = total_annotations_number - $3, skipped_annotations_number = skipped_annotations_number - $4, \
                 useful_annotation_number = useful_annotation_number - $5, ground_truth_number = ground_truth_number - $6, \
                 num_tasks_with_annotations = num_tasks_with_annotations - $7, total_predictions_number = total_predictions_number - $8, \
                 overlapped_task_number = overlapped_task_number - $9 where id = $10",
            )
            .bind(sums[0])
            .bind(sums[1])
            .bind(sums[2])
            .bind(sums[3])
            .bind(sums[4])
            .bind(sums[5])
            .bind(sums[6])
            .bind(sums[7])
            .bind(sums[8])
            .bind($project_id)
            .execute(&mut *$tx)
            .await?;
            (deleted, sums[0])
    }};
}

pub use crate::delete_task_rows;

/// Deletes tasks of one project (all of them when `ids` is `None`), subtracting their counters.
pub async fn delete_many(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    ids: Option<&[i64]>,
) -> ApiResult<Vec<i64>> {
    projects::get_row(db, actor, project_id, Permission::TaskManage).await?;
    let dialect = db.dialect();
    let conditions = id_conditions(ids);
    with_tx!(db, tx, {
        crate::storage::annotations::lock_project!(tx, dialect, project_id);
        let (deleted, count) = delete_task_rows!(tx, project_id, &conditions);
        // The audit entry names at most AUDIT_IDS ids: a bulk deletion is one bounded entry.
        let mut summary = serde_json::json!({"deleted": count, "all": ids.is_none()});
        if !deleted.is_empty() || ids.is_some() {
            summary["ids"] = serde_json::json!(deleted.iter().take(AUDIT_IDS).collect::<Vec<_>>());
        }
        if deleted.len() > AUDIT_IDS {
            summary["ids_truncated"] = serde_json::json!(true);
        }
        audit!(
            tx,
            Prepared::new(actor, "task.delete", "project", project_id, summary)
        );
        Ok::<_, ApiError>(deleted)
    })
}

// ---------------------------------------------------------------------------------------------
// Label stream

/// The queue name of a task handed back for rework after a rejection.
const REWORK_QUEUE: &str = "Rework queue";
/// The queue of continuous evaluation's ground-truth tasks (ADR 0057).
const CONTINUOUS_QUEUE: &str = "Continuous evaluation queue";
/// The queue name of a task assigned to the annotator (manual distribution, ADR 0039).
const MANUAL_QUEUE: &str = "Manually assigned queue";
/// The queue of tasks the user postponed, served after every other one but the skipped
/// (ADR 0003 addendum); its tasks come with `allow_postpone: false`.
const POSTPONED_QUEUE: &str = "Postponed draft queue";
/// Leaves out the tasks (`t`) the user (`$2`) has postponed: they come back only after the
/// other queues. One probe of `annotation_draft_task_user` per candidate.
const NOT_POSTPONED: &str = "and not exists (select 1 from annotation_draft pd where pd.task_id = t.id \
     and pd.user_id = $2 and pd.was_postponed)";

/// Deletes a project's reservations that expired longer ago than a late submit is recognised
/// (ADR 0048); `$1` project, `$2` the cut-off time.
const SWEEP_EXPIRED_LOCKS: &str = "delete from task_lock where project_id = $1 and expire_at <= $2";

/// Picks the next task for the actor and reserves it. Inside one transaction that holds the
/// project's row lock (PostgreSQL) or the single writer (SQLite), so two annotators can never
/// both see capacity that only one of them can take: a task is handed to at most `overlap`
/// annotators at once (unexpired reservations + counted annotations < overlap).
pub async fn next(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    default_lock_ttl_secs: i64,
) -> ApiResult<TaskView> {
    let access = access::project(db, actor, project_id, Permission::AnnotationCreate).await?;
    let project = access.row;
    let settings = project.settings();
    // Annotators and reviewers are held to the project's limit and evaluation (ADR 0037);
    // managers and above are not.
    if matches!(access.role, Role::Annotator | Role::Reviewer)
        && super::distribution::automatic_pause(db, actor, &project, &settings).await?
    {
        // The pause is committed: the access check now refuses with its message.
        access::project(db, actor, project_id, Permission::AnnotationCreate).await?;
    }
    let ttl = settings
        .custom_task_lock_ttl
        .unwrap_or(default_lock_ttl_secs);
    let dialect = db.dialect();
    let now = now_micros();
    let user = actor.user_id;
    let counted = counted_sql(settings.skip_queue);
    let order = match (settings.maximum_annotations > 1, settings.sampling) {
        // Breadth first: finish tasks other annotators have started.
        (true, _) => format!("{counted} desc, t.id"),
        (false, Sampling::Uniform) => "random()".to_string(),
        // Active learning: the least certain prediction of the project's model version first;
        // tasks without one after them, in task order.
        (false, Sampling::Uncertainty) => "coalesce((select min(pr.score) from prediction pr \
             where pr.task_id = t.id and pr.model_version = $4), 2.0), t.id"
            .to_string(),
        (false, _) => "t.id".to_string(),
    };
    let uncertainty =
        settings.maximum_annotations <= 1 && settings.sampling == Sampling::Uncertainty;
    // Reserves a task for the user (a new lock id, or the renewed lock) in the transaction.
    macro_rules! reserve {
        ($tx:expr, $task_id:expr) => {{
            let lock_id = uuid::Uuid::new_v4().to_string();
            sqlx::query(
                "insert into task_lock (task_id, user_id, project_id, expire_at, unique_id) values ($1, $2, $3, $4, $5) \
                 on conflict (task_id, user_id) do update set expire_at = excluded.expire_at, unique_id = excluded.unique_id",
            )
            .bind($task_id)
            .bind(user)
            .bind(project_id)
            .bind(now + ttl * 1_000_000)
            .bind(&lock_id)
            .execute(&mut *$tx)
            .await?;
            lock_id
        }};
    }
    // Manual distribution applies to annotators and reviewers; managers and above keep the
    // shared queue (ADR 0039).
    let manual = settings.assignment_settings.manual() && access.role < Role::Manager;
    let picked: Option<(i64, Option<String>, String)> = with_tx!(db, tx, {
        crate::storage::annotations::lock_project!(tx, dialect, project_id);
        // A pause or removal that landed since the check above counts.
        crate::recheck_project_access!(tx, actor, project_id, Permission::AnnotationCreate)?;
        // Expired reservations are kept for a while so that a late submit is recognised as one
        // (strict overlap, ADR 0048); every reader below counts only live ones. On SQLite the
        // sweep is an in-process index probe; on PostgreSQL it is a round trip, made after the
        // commit so that it does not hold the project's lock (below).
        if dialect == Dialect::Sqlite {
            sqlx::query(SWEEP_EXPIRED_LOCKS)
                .bind(project_id)
                .bind(now - EXPIRED_LOCKS_KEPT_MICROS)
                .execute(&mut *tx)
                .await?;
        }
        // 1. A task this user already holds and has not finished; else 1b. rework: an
        // annotation of this user that a reviewer rejected and requeued to them (ADR 0024),
        // which leaves the queue when they change it. One statement, the held task first.
        let own: Option<(i64, Option<String>)> = sqlx::query_as(
            "select task_id, unique_id from (\
             select * from (select l.task_id, l.unique_id, 0 as queue from task_lock l \
             where l.project_id = $1 and l.user_id = $2 and l.expire_at > $3 \
             and not exists (select 1 from annotation a where a.task_id = l.task_id and a.completed_by = $2) \
             and not exists (select 1 from annotation_draft pd where pd.task_id = l.task_id and pd.user_id = $2 \
             and pd.was_postponed) \
             order by l.task_id limit 1) held \
             union all \
             select * from (select a.task_id, cast(null as text) as unique_id, 1 as queue from annotation a \
             where a.project_id = $1 and a.completed_by = $2 \
             and not a.was_cancelled and a.last_action = 'rejected' order by a.task_id limit 1) rework\
             ) own order by queue limit 1",
        )
        .bind(project_id)
        .bind(user)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        match own {
            Some((id, Some(lock))) => {
                return Ok::<_, ApiError>(Some((id, Some(lock), "Task lock".to_string())));
            }
            Some((task_id, None)) => {
                let lock_id = reserve!(tx, task_id);
                return Ok(Some((task_id, Some(lock_id), REWORK_QUEUE.to_string())));
            }
            None => {}
        }
        // 1a. Manual distribution (ADR 0039): annotators get only the tasks assigned to them,
        // in task order, whatever their overlap; nobody else takes them from this stream, so
        // no reservation is needed.
        if manual {
            let assigned =
                super::assignments::assigned_sql(user, super::assignments::Kind::Annotate);
            let mine: Option<i64> = sqlx::query_scalar(&format!(
                "select t.id from task t where t.project_id = $1 and {assigned} \
                 and not exists (select 1 from annotation a where a.task_id = t.id and a.completed_by = $2) \
                 {NOT_POSTPONED} order by t.id limit 1"
            ))
            .bind(project_id)
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(task_id) = mine {
                return Ok(Some((task_id, None, MANUAL_QUEUE.to_string())));
            }
            // Their postponed assigned tasks, the longest postponed first.
            let postponed: Option<i64> = sqlx::query_scalar(&format!(
                "select t.id from annotation_draft d join task t on t.id = d.task_id \
                 where d.project_id = $1 and d.user_id = $2 and d.was_postponed and {assigned} \
                 and not exists (select 1 from annotation a where a.task_id = t.id and a.completed_by = $2) \
                 order by d.updated_at, d.id limit 1"
            ))
            .bind(project_id)
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(task_id) = postponed {
                return Ok(Some((task_id, None, POSTPONED_QUEUE.to_string())));
            }
            if settings.skip_queue != SkipQueue::RequeueForMe {
                return Ok(None);
            }
            // Their own skipped assigned tasks come back last.
            let skipped: Option<i64> = sqlx::query_scalar(&format!(
                "select t.id from task t join annotation a on a.task_id = t.id and a.completed_by = $2 and a.was_cancelled \
                 where t.project_id = $1 and {assigned} order by a.updated_at, t.id limit 1"
            ))
            .bind(project_id)
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?;
            return Ok(skipped.map(|id| (id, None, "Skipped queue".to_string())));
        }
        // 1c. Onboarding: ground-truth tasks first (overlap does not apply to them), while the
        // user has done fewer than the project's onboarding quota, or always with the open
        // source `show_ground_truth_first`. After it, continuous evaluation (ADR 0057): every
        // N-th task the user takes is a ground-truth task with room left (overlap applies).
        let evaluating = settings.annotator_evaluation_enabled
            && (settings.annotator_evaluation_onboarding_tasks > 0
                || settings.annotator_evaluation_continuous_tasks > 0);
        let truth_done: i64 = if evaluating && !settings.show_ground_truth_first {
            sqlx::query_scalar(
                "select count(distinct a.task_id) from annotation a join task t on t.id = a.task_id \
                 where a.project_id = $1 and a.completed_by = $2 and not a.ground_truth \
                 and t.ground_truth_annotations > 0",
            )
            .bind(project_id)
            .bind(user)
            .fetch_one(&mut *tx)
            .await?
        } else {
            0
        };
        let onboarding = settings.show_ground_truth_first
            || (evaluating && truth_done < settings.annotator_evaluation_onboarding_tasks);
        let continuous = !onboarding
            && evaluating
            && !settings.show_ground_truth_first
            && settings.annotator_evaluation_continuous_tasks > 0;
        let mut special: Option<(i64, &str)> = None;
        if onboarding {
            let truth: Option<i64> = sqlx::query_scalar(&format!(
                "select t.id from task t where t.project_id = $1 and t.ground_truth_annotations > 0 \
                 and not exists (select 1 from annotation a where a.task_id = t.id and a.completed_by = $2) \
                 {NOT_POSTPONED} order by t.id limit 1"
            ))
            .bind(project_id)
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?;
            special = truth.map(|id| (id, "Ground truth queue"));
        }
        // A ground-truth task with room left that this user has not done: its annotations
        // other than the ground truth (which makes it labeled) and live reservations are fewer
        // than its overlap.
        let truth_with_room = format!(
            "select t.id from task t where t.project_id = $1 and t.ground_truth_annotations > 0 \
             and not exists (select 1 from annotation a where a.task_id = t.id and a.completed_by = $2) \
             {NOT_POSTPONED} \
             and {counted} + (select count(*) from task_lock l where l.task_id = t.id and l.user_id <> $2 \
             and l.expire_at > $3) < t.overlap order by t.id limit 1"
        );
        if continuous {
            // Tasks taken since onboarding: the regular ones and the ground-truth ones beyond
            // the onboarding quota. The next one is ground truth when it is an N-th.
            let regular: i64 = sqlx::query_scalar(
                "select count(distinct a.task_id) from annotation a join task t on t.id = a.task_id \
                 where a.project_id = $1 and a.completed_by = $2 and t.ground_truth_annotations = 0",
            )
            .bind(project_id)
            .bind(user)
            .fetch_one(&mut *tx)
            .await?;
            let truth_since = (truth_done - settings.annotator_evaluation_onboarding_tasks).max(0);
            let every = settings.annotator_evaluation_continuous_tasks;
            if truth_since < (regular + truth_since + 1) / every {
                let truth: Option<i64> = sqlx::query_scalar(&truth_with_room)
                    .bind(project_id)
                    .bind(user)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                special = truth.map(|id| (id, CONTINUOUS_QUEUE));
            }
        }
        // 1d. Low agreement: a labeled task whose agreement is below the threshold gets one
        // more annotator at a time, up to the allowed extra, the least agreed first.
        if special.is_none()
            && let Some(threshold) = settings.agreement_threshold
        {
            let extra = settings.max_additional_annotators_assignable.unwrap_or(0);
            let low: Option<i64> = sqlx::query_scalar(&format!(
                "select t.id from task t where t.project_id = $1 and t.is_labeled \
                 and t.agreement is not null and t.agreement * 100 < $3 \
                 and not exists (select 1 from annotation a where a.task_id = t.id and a.completed_by = $2) \
                 {NOT_POSTPONED} \
                 and {counted} + (select count(*) from task_lock l where l.task_id = t.id and l.user_id <> $2 \
                 and l.expire_at > $5) < t.overlap + $4 order by t.agreement, t.id limit 1"
            ))
            .bind(project_id)
            .bind(user)
            .bind(threshold)
            .bind(extra)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            special = low.map(|id| (id, "Low agreement queue"));
        }
        if let Some((task_id, queue)) = special {
            let lock_id = reserve!(tx, task_id);
            return Ok(Some((task_id, Some(lock_id), queue.to_string())));
        }
        // 2. A task with capacity left that this user has not annotated. Under continuous
        // evaluation ground-truth tasks come only at its rate (above). `is_labeled = false`
        // rather than `not is_labeled`: SQLite uses the (project_id, is_labeled, id) index only
        // for an equality, and without it the search steps over every labeled task first.
        let truth_apart = if continuous {
            "and t.ground_truth_annotations = 0"
        } else {
            ""
        };
        let eligible = format!(
            "select t.id, {counted} from task t where t.project_id = $1 and t.is_labeled = false {truth_apart} \
             and not exists (select 1 from annotation a where a.task_id = t.id and a.completed_by = $2) \
             {NOT_POSTPONED} \
             and {counted} + (select count(*) from task_lock l where l.task_id = t.id and l.user_id <> $2 \
             and l.expire_at > $3) < t.overlap"
        );
        macro_rules! find {
            ($sql:expr) => {{
                let sql: String = $sql;
                let q = sqlx::query_as::<_, (i64, i64)>(&sql)
                    .bind(project_id)
                    .bind(user)
                    .bind(now);
                if uncertainty {
                    q.bind(&settings.model_version)
                } else {
                    q
                }
                .fetch_optional(&mut *tx)
                .await?
            }};
        }
        let candidate: Option<i64> = if settings.maximum_annotations > 1 {
            // Breadth first in two steps, so that neither reads every open task: first the
            // tasks someone has started (the `task_project_started` index holds only tasks
            // with an annotation or a skip; every task whose count is above 0 is among them),
            // the fullest first; if none of them has a count above 0, every eligible task has
            // none, and the first in task order is the one.
            match find!(format!(
                "{eligible} and t.total_annotations + t.cancelled_annotations > 0 order by {order} limit 1"
            )) {
                Some((id, c)) if c > 0 => Some(id),
                _ => find!(format!("{eligible} order by t.id limit 1")).map(|(id, _)| id),
            }
        } else {
            find!(format!("{eligible} order by {order} limit 1")).map(|(id, _)| id)
        };
        // Under continuous evaluation, the ground-truth tasks still open once the rest is done.
        if candidate.is_none() && continuous {
            let truth: Option<i64> = sqlx::query_scalar(&truth_with_room)
                .bind(project_id)
                .bind(user)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(task_id) = truth {
                let lock_id = reserve!(tx, task_id);
                return Ok(Some((task_id, Some(lock_id), CONTINUOUS_QUEUE.to_string())));
            }
        }
        // 3. The user's postponed tasks, the longest postponed first, while they are unlabeled
        // and have room left (one that reached its overlap meanwhile is not served). From the
        // user's postponed drafts (`annotation_draft_postponed`), not a scan of the tasks.
        if candidate.is_none() {
            let postponed: Option<i64> = sqlx::query_scalar(&format!(
                "select t.id from annotation_draft d join task t on t.id = d.task_id \
                 where d.project_id = $1 and d.user_id = $2 and d.was_postponed and t.is_labeled = false \
                 and not exists (select 1 from annotation a where a.task_id = t.id and a.completed_by = $2) \
                 and {counted} + (select count(*) from task_lock l where l.task_id = t.id and l.user_id <> $2 \
                 and l.expire_at > $3) < t.overlap order by d.updated_at, d.id limit 1"
            ))
            .bind(project_id)
            .bind(user)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(task_id) = postponed {
                let lock_id = reserve!(tx, task_id);
                return Ok(Some((task_id, Some(lock_id), POSTPONED_QUEUE.to_string())));
            }
        }
        let (task_id, queue) = match candidate {
            Some(id) => (
                id,
                if settings.maximum_annotations > 1 {
                    "Breadth first queue"
                } else if uncertainty {
                    "Active learning queue"
                } else {
                    "Sequence queue"
                },
            ),
            None if settings.skip_queue == SkipQueue::RequeueForMe => {
                // 4. The user's own skipped tasks come back last.
                let skipped: Option<i64> = sqlx::query_scalar(
                    "select t.id from task t join annotation a on a.task_id = t.id and a.completed_by = $2 and a.was_cancelled \
                     where t.project_id = $1 and t.is_labeled = false order by a.updated_at, t.id limit 1",
                )
                .bind(project_id)
                .bind(user)
                .fetch_optional(&mut *tx)
                .await?;
                match skipped {
                    Some(id) => (id, "Skipped queue"),
                    None => return Ok(None),
                }
            }
            None => return Ok(None),
        };
        let lock_id = reserve!(tx, task_id);
        Ok(Some((task_id, Some(lock_id), queue.to_string())))
    })?;
    if let Db::Postgres(pool) = db {
        sqlx::query(SWEEP_EXPIRED_LOCKS)
            .bind(project_id)
            .bind(now - EXPIRED_LOCKS_KEPT_MICROS)
            .execute(pool)
            .await?;
    }
    let Some((task_id, lock_id, queue)) = picked else {
        return Err(ApiError::new(
            ErrorCode::NoMoreTasks,
            format!("There are no tasks for {}", actor.email),
        ));
    };
    let row = load_row(db, task_id).await?;
    let mut view = row.view();
    // The label stream shows pre-labels, not other people's work: predictions only.
    view.predictions = Some(
        predictions::for_tasks(db, &[task_id])
            .await?
            .iter()
            .map(PredictionRow::view)
            .collect(),
    );
    view.annotations = Some(Vec::new());
    if queue == REWORK_QUEUE {
        // The annotator reworks their own annotation (and changes it, not a new one).
        let own = annotations::for_tasks(db, &[task_id], false).await?;
        view.annotations = Some(
            own.iter()
                .filter(|a| a.completed_by == Some(user))
                .map(AnnotationRow::view)
                .collect(),
        );
    }
    attach_drafts(db, user, std::slice::from_mut(&mut view)).await?;
    if !settings.show_collab_predictions {
        view.predictions = Some(Vec::new());
    } else if !settings.model_version.is_empty()
        && let Some(preds) = view.predictions.as_mut()
    {
        preds.retain(|p| p.model_version == settings.model_version);
    }
    hide_comment_details(access.role, std::slice::from_mut(&mut view));
    view.unique_lock_id = lock_id;
    view.allow_postpone = Some(queue != POSTPONED_QUEUE);
    view.queue = Some(queue);
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(dialect: Dialect, ordering: &str) -> String {
        task_query(dialect, &serde_json::json!({"ordering": [ordering]}), false)
            .expect("query")
            .order
    }

    /// A never-null column orders without a `nulls` clause (an index in its order serves the
    /// page on PostgreSQL); a nullable one keeps "no value first ascending, last descending".
    #[test]
    fn nulls_clause_only_for_nullable_orders() {
        for dialect in [Dialect::Postgres, Dialect::Sqlite] {
            assert_eq!(order(dialect, "-tasks:id"), "t.id desc");
            assert_eq!(order(dialect, "tasks:id"), "t.id");
            assert_eq!(
                order(dialect, "-tasks:total_annotations"),
                "t.total_annotations desc, t.id"
            );
            assert_eq!(order(dialect, "tasks:inner_id"), "t.inner_id, t.id");
            assert_eq!(
                order(dialect, "-tasks:agreement"),
                "t.agreement desc nulls last, t.id"
            );
            assert_eq!(
                order(dialect, "tasks:last_comment_updated_at"),
                "t.last_comment_updated_at asc nulls first, t.id"
            );
        }
    }
}
