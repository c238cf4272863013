//! Import storages of a project (Label Studio's `/api/storages/…`); so far local files. Managed
//! by whoever holds `storage.manage` in the project; another organization's storages are not
//! found. Also answers, without an actor, where a signed link's object lives (the link is the
//! authority there; `links` checked it) and which storage covers a file for a caller resolving
//! `/data/local-files/?d=`.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{
    Db, access,
    audit::{Prepared, audit},
    format_micros, now_micros, with_read, with_tx,
};
use crate::{
    authz::{Actor, Permission},
    body,
    error::{ApiError, ApiResult, ErrorCode},
    localfiles::{self, Root},
};

/// Which way a storage goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A source: its files become tasks (`/api/storages/localfiles`).
    Import,
    /// A target: annotations are written to it (`/api/storages/export/localfiles`).
    Export,
}

impl Direction {
    /// `import` or `export`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Import => "import",
            Direction::Export => "export",
        }
    }
}

/// A stored local-files storage.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LocalStorageRow {
    /// Id.
    pub id: i64,
    /// Organization.
    pub organization_id: i64,
    /// Project.
    pub project_id: i64,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Resolved absolute directory.
    pub path: String,
    /// Regular expression over keys (empty: all).
    pub regex_filter: String,
    /// Each file a task (true) or JSON files of tasks (false).
    pub use_blob_urls: bool,
    /// `import` or `export`.
    pub direction: String,
    /// Export: delete an annotation's file with the annotation.
    pub can_delete_objects: bool,
    /// Sync state.
    pub status: String,
    /// Why the last sync failed.
    pub traceback: Option<String>,
    /// End of the last sync (micros).
    pub last_sync: Option<i64>,
    /// Tasks the last sync added.
    pub last_sync_count: Option<i64>,
    /// Job of the last sync.
    pub last_sync_job: Option<String>,
    /// Created (micros).
    pub created_at: i64,
    /// Updated (micros).
    pub updated_at: i64,
}

const COLUMNS: &str = "s.id, s.organization_id, s.project_id, s.title, s.description, s.path, \
    s.regex_filter, s.use_blob_urls, s.direction, s.can_delete_objects, s.status, s.traceback, s.last_sync, s.last_sync_count, \
    s.last_sync_job, s.created_at, s.updated_at";

/// A local-files storage as the API shows it (Label Studio's fields).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LocalStorageView {
    /// Id.
    pub id: i64,
    /// Always `localfiles`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Project.
    pub project: i64,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// The directory (resolved, absolute).
    pub path: String,
    /// Only files whose path (relative to `path`) matches this regular expression.
    pub regex_filter: Option<String>,
    /// Each file becomes a task whose data is its URL (`true`), or JSON files hold tasks
    /// (import storages).
    pub use_blob_urls: bool,
    /// Export storages: delete an annotation's file when the annotation is deleted.
    pub can_delete_objects: bool,
    /// `initialized`, `queued`, `in_progress`, `completed` or `failed`.
    pub status: String,
    /// Why the last sync failed.
    pub traceback: Option<String>,
    /// ISO time the last sync ended.
    pub last_sync: Option<String>,
    /// Tasks the last sync added.
    pub last_sync_count: Option<i64>,
    /// The job of the last sync (`GET /api/jobs/{id}`).
    pub last_sync_job: Option<String>,
    /// Always true.
    pub synchronizable: bool,
    /// ISO creation time.
    pub created_at: String,
    /// ISO update time.
    pub updated_at: String,
}

impl LocalStorageRow {
    fn view(&self) -> LocalStorageView {
        LocalStorageView {
            id: self.id,
            kind: localfiles::KIND,
            project: self.project_id,
            title: self.title.clone(),
            description: self.description.clone(),
            path: self.path.clone(),
            regex_filter: (!self.regex_filter.is_empty()).then(|| self.regex_filter.clone()),
            use_blob_urls: self.use_blob_urls,
            can_delete_objects: self.can_delete_objects,
            status: self.status.clone(),
            traceback: self.traceback.clone(),
            last_sync: self.last_sync.map(format_micros),
            last_sync_count: self.last_sync_count,
            last_sync_job: self.last_sync_job.clone(),
            synchronizable: true,
            created_at: format_micros(self.created_at),
            updated_at: format_micros(self.updated_at),
        }
    }
}

/// The checked fields of a create, update or validate body.
#[derive(Debug, Default)]
struct Input {
    title: Option<String>,
    description: Option<String>,
    path: Option<String>,
    regex_filter: Option<String>,
    use_blob_urls: Option<bool>,
    can_delete_objects: Option<bool>,
}

impl Input {
    fn parse(body: &Map<String, Value>, root: &Root) -> ApiResult<Self> {
        let path = match body::opt_text(body, "path", 4096)? {
            Some(p) => Some(root.check_dir(&p)?.display().to_string()),
            None => None,
        };
        let regex_filter = body::opt_text(body, "regex_filter", 1024)?;
        if let Some(r) = &regex_filter {
            localfiles::filter(r)?;
        }
        Ok(Self {
            title: body::opt_text(body, "title", 2048)?,
            description: body::opt_text(body, "description", 10_000)?,
            path,
            regex_filter,
            use_blob_urls: body::opt_bool(body, "use_blob_urls")?,
            can_delete_objects: body::opt_bool(body, "can_delete_objects")?,
        })
    }
}

fn project_of(body: &Map<String, Value>) -> ApiResult<i64> {
    body::id(body, "project")
}

async fn authorize(db: &Db, actor: &Actor, project: i64) -> ApiResult<()> {
    access::project(db, actor, project, Permission::StorageManage)
        .await
        .map(drop)
}

/// Creates a local-files storage (the path must lie under the root).
pub async fn create(
    db: &Db,
    actor: &Actor,
    direction: Direction,
    root: ApiResult<Root>,
    body: &Map<String, Value>,
) -> ApiResult<LocalStorageView> {
    let project = project_of(body)?;
    authorize(db, actor, project).await?;
    let input = Input::parse(body, &root?)?;
    let path = input.path.ok_or_else(|| {
        ApiError::field(ErrorCode::ValidationError, "path", "this field is required")
    })?;
    let now = now_micros();
    let id: i64 = with_tx!(db, tx, {
        let id: i64 = sqlx::query_scalar(
            "insert into local_storage (organization_id, project_id, title, description, path, regex_filter, \
             use_blob_urls, created_at, updated_at, direction, can_delete_objects) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10) returning id",
        )
        .bind(actor.org_id)
        .bind(project)
        .bind(input.title.as_deref().unwrap_or(""))
        .bind(input.description.as_deref().unwrap_or(""))
        .bind(&path)
        .bind(input.regex_filter.as_deref().unwrap_or(""))
        .bind(input.use_blob_urls.unwrap_or(false))
        .bind(now)
        .bind(direction.as_str())
        .bind(input.can_delete_objects.unwrap_or(false))
        .fetch_one(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "storage.create",
                "local_storage",
                id,
                json!({"project": project, "path": path, "direction": direction.as_str()}),
            )
        );
        Ok::<_, ApiError>(id)
    })?;
    Ok(load(db, actor.org_id, direction, id).await?.view())
}

/// Checks a storage body without saving anything (Label Studio's `validate`). With an `id`,
/// the body is a change of that storage.
pub async fn validate(
    db: &Db,
    actor: &Actor,
    direction: Direction,
    root: ApiResult<Root>,
    body: &Map<String, Value>,
) -> ApiResult<()> {
    match body.get("id").and_then(Value::as_i64) {
        Some(id) => drop(get_row(db, actor, direction, id).await?),
        None => authorize(db, actor, project_of(body)?).await?,
    }
    let input = Input::parse(body, &root?)?;
    if input.path.is_none() && !body.contains_key("id") {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "path",
            "this field is required",
        ));
    }
    Ok(())
}

async fn load(db: &Db, org: i64, direction: Direction, id: i64) -> ApiResult<LocalStorageRow> {
    let row: Option<LocalStorageRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {COLUMNS} from local_storage s where s.id = $1 and s.organization_id = $2 and s.direction = $3"
        ))
        .bind(id)
        .bind(org)
        .bind(direction.as_str())
        .fetch_optional(conn)
        .await?
    });
    row.ok_or_else(|| ApiError::not_found("storage"))
}

async fn get_row(
    db: &Db,
    actor: &Actor,
    direction: Direction,
    id: i64,
) -> ApiResult<LocalStorageRow> {
    let row = load(db, actor.org_id, direction, id).await?;
    authorize(db, actor, row.project_id).await?;
    Ok(row)
}

/// One storage.
pub async fn get(
    db: &Db,
    actor: &Actor,
    direction: Direction,
    id: i64,
) -> ApiResult<LocalStorageView> {
    Ok(get_row(db, actor, direction, id).await?.view())
}

/// The storages of a project, oldest first.
pub async fn list(
    db: &Db,
    actor: &Actor,
    direction: Direction,
    project: i64,
) -> ApiResult<Vec<LocalStorageView>> {
    authorize(db, actor, project).await?;
    let rows: Vec<LocalStorageRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {COLUMNS} from local_storage s where s.project_id = $1 and s.organization_id = $2 \
             and s.direction = $3 order by s.id"
        ))
        .bind(project)
        .bind(actor.org_id)
        .bind(direction.as_str())
        .fetch_all(conn)
        .await?
    });
    Ok(rows.iter().map(LocalStorageRow::view).collect())
}

/// Changes a storage.
pub async fn update(
    db: &Db,
    actor: &Actor,
    direction: Direction,
    root: ApiResult<Root>,
    id: i64,
    body: &Map<String, Value>,
) -> ApiResult<LocalStorageView> {
    let current = get_row(db, actor, direction, id).await?;
    if body
        .get("project")
        .is_some_and(|p| p.as_i64() != Some(current.project_id))
    {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "project",
            "a storage cannot move to another project; create a new one",
        ));
    }
    let input = Input::parse(body, &root?)?;
    let changed: Vec<&str> = [
        ("title", input.title.is_some()),
        ("description", input.description.is_some()),
        ("path", input.path.is_some()),
        ("regex_filter", input.regex_filter.is_some()),
        ("use_blob_urls", input.use_blob_urls.is_some()),
        ("can_delete_objects", input.can_delete_objects.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    with_tx!(db, tx, {
        sqlx::query(
            "update local_storage set title = coalesce($1, title), description = coalesce($2, description), \
             path = coalesce($3, path), regex_filter = coalesce($4, regex_filter), \
             use_blob_urls = coalesce($5, use_blob_urls), updated_at = $6, \
             can_delete_objects = coalesce($8, can_delete_objects) where id = $7",
        )
        .bind(&input.title)
        .bind(&input.description)
        .bind(&input.path)
        .bind(&input.regex_filter)
        .bind(input.use_blob_urls)
        .bind(now_micros())
        .bind(id)
        .bind(input.can_delete_objects)
        .execute(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "storage.update",
                "local_storage",
                id,
                json!({"project": current.project_id, "changed": changed}),
            )
        );
        Ok::<_, ApiError>(())
    })?;
    Ok(load(db, actor.org_id, direction, id).await?.view())
}

/// Deletes a storage (its tasks stay, as in Label Studio; their links stop working).
pub async fn delete(db: &Db, actor: &Actor, direction: Direction, id: i64) -> ApiResult<()> {
    let current = get_row(db, actor, direction, id).await?;
    delete_storage(
        db,
        actor,
        ("local_storage", "local_storage"),
        localfiles::KIND,
        id,
        current.project_id,
    )
    .await
}

/// Deletes storage `id` from its `table` (`local_storage`, `cloud_storage`) with the records of
/// the objects its syncs saw (`kind`), audited as `entity`, in one transaction. The caller
/// checked access.
pub(super) async fn delete_storage(
    db: &Db,
    actor: &Actor,
    (table, entity): (&'static str, &'static str),
    kind: &str,
    id: i64,
    project_id: i64,
) -> ApiResult<()> {
    with_tx!(db, tx, {
        sqlx::query("delete from storage_object where storage_kind = $1 and storage_id = $2")
            .bind(kind)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("delete from export_change where storage_kind = $1 and storage_id = $2")
            .bind(kind)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("delete from {table} where id = $1"))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "storage.delete",
                entity,
                id,
                json!({"project": project_id}),
            )
        );
        Ok::<_, ApiError>(())
    })
}

/// Marks a storage queued for a sync run by job `job_id` (audited); the caller enqueues the
/// job with that id afterwards.
pub async fn queue_sync(
    db: &Db,
    actor: &Actor,
    direction: Direction,
    id: i64,
    job_id: &str,
) -> ApiResult<LocalStorageRow> {
    let current = get_row(db, actor, direction, id).await?;
    mark_sync_queued(
        db,
        actor,
        ("local_storage", "local_storage"),
        direction,
        id,
        current.project_id,
        job_id,
    )
    .await?;
    load(db, actor.org_id, direction, id).await
}

/// Marks storage `id` of `table` (`local_storage`, `cloud_storage`) queued for a sync run by
/// job `job_id`, audited as `entity`, after checking that the actor may do what the sync does: importing makes
/// tasks, exporting writes the project's annotations out.
pub(super) async fn mark_sync_queued(
    db: &Db,
    actor: &Actor,
    (table, entity): (&'static str, &'static str),
    direction: Direction,
    id: i64,
    project_id: i64,
    job_id: &str,
) -> ApiResult<()> {
    let needs = match direction {
        Direction::Import => Permission::TaskManage,
        Direction::Export => Permission::ExportRun,
    };
    access::project(db, actor, project_id, needs).await?;
    with_tx!(db, tx, {
        sqlx::query(&format!(
            "update {table} set status = 'queued', traceback = null, last_sync_job = $1, updated_at = $2 \
             where id = $3"
        ))
        .bind(job_id)
        .bind(now_micros())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "storage.sync",
                entity,
                id,
                json!({"project": project_id, "job": job_id}),
            )
        );
        Ok::<_, ApiError>(())
    })
}

/// The view of a row (for the sync answer).
pub fn view(row: &LocalStorageRow) -> LocalStorageView {
    row.view()
}

/// A storage by id, without an authorization check: for the sync job, which acts as the user
/// who started it (the import checks their rights).
pub async fn by_id(db: &Db, id: i64) -> ApiResult<Option<LocalStorageRow>> {
    Ok(with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {COLUMNS} from local_storage s where s.id = $1"
        ))
        .bind(id)
        .fetch_optional(conn)
        .await?
    }))
}

/// A sync started.
pub async fn start_sync(db: &Db, id: i64) -> ApiResult<()> {
    with_tx!(db, tx, {
        sqlx::query("update local_storage set status = 'in_progress' where id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        Ok::<_, ApiError>(())
    })
}

/// A sync ended: the tasks it added, or why it failed.
pub async fn finish_sync(db: &Db, id: i64, outcome: Result<i64, String>) -> ApiResult<()> {
    let (status, count, traceback) = match outcome {
        Ok(n) => ("completed", Some(n), None),
        Err(why) => ("failed", None, Some(why)),
    };
    with_tx!(db, tx, {
        sqlx::query(
            "update local_storage set status = $1, last_sync_count = coalesce($2, last_sync_count), \
             traceback = $3, last_sync = $4 where id = $5",
        )
        .bind(status)
        .bind(count)
        .bind(traceback)
        .bind(now_micros())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        Ok::<_, ApiError>(())
    })
}

/// Which of `keys` earlier syncs of a storage imported (one query per 500 keys).
pub async fn synced_among(
    db: &Db,
    kind: &str,
    id: i64,
    keys: &[String],
) -> ApiResult<std::collections::HashSet<String>> {
    let mut known = std::collections::HashSet::with_capacity(keys.len());
    for chunk in keys.chunks(500) {
        let list = (0..chunk.len())
            .map(|i| format!("${}", i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "select object_key from storage_object where storage_kind = $1 and storage_id = $2 \
             and object_key in ({list})"
        );
        let found: Vec<String> = with_read!(db, conn, {
            let mut query = sqlx::query_scalar(&sql).bind(kind).bind(id);
            for key in chunk {
                query = query.bind(key);
            }
            query.fetch_all(conn).await?
        });
        known.extend(found);
    }
    Ok(known)
}

/// The data key a file's URL goes under: the first object tag's `$value` of the project's
/// labeling configuration (Label Studio's choice), else `image`.
pub async fn data_key(db: &Db, project: i64) -> ApiResult<String> {
    let config: Option<String> = with_read!(db, conn, {
        sqlx::query_scalar("select label_config from project where id = $1")
            .bind(project)
            .fetch_optional(conn)
            .await?
    });
    let key = config
        .and_then(|c| crate::domain::label_config::LabelConfig::parse(&c).ok())
        .and_then(|c| {
            c.objects()
                .iter()
                .find_map(|o| o.value.strip_prefix('$').map(str::to_string))
        })
        .filter(|k| !k.is_empty() && !k.contains('.') && !k.contains('['));
    Ok(key.unwrap_or_else(|| "image".into()))
}

/// Where a signed link points: the directory of the link's storage, if the storage still
/// exists. `Err(invalid_link)` when the storage belongs to another organization or project
/// than the link says. No actor: the link's signature is the authority.
pub async fn link_target(db: &Db, link: &crate::links::Link) -> ApiResult<Option<String>> {
    if link.kind != localfiles::KIND {
        return Err(crate::links::LinkError::Invalid.into());
    }
    let Some(row) = by_id(db, link.storage).await? else {
        return Ok(None);
    };
    if row.direction != Direction::Import.as_str()
        || row.organization_id != link.organization
        || row.project_id != link.project
    {
        return Err(crate::links::LinkError::Invalid.into());
    }
    Ok(Some(row.path))
}

/// A storage of the task's project covering a root-relative file, for a caller who may see
/// the task: the storage row and the key inside it. `None` when no storage covers it.
pub async fn covering_task_file(
    db: &Db,
    actor: &Actor,
    root: &Root,
    task: i64,
    relative: &str,
) -> ApiResult<Option<(LocalStorageRow, String)>> {
    let access = access::project_of_task(db, actor, task, Permission::ProjectView).await?;
    let rows: Vec<LocalStorageRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {COLUMNS} from local_storage s where s.project_id = $1 and s.direction = 'import' order by s.id"
        ))
        .bind(access.row.id)
        .fetch_all(conn)
        .await?
    });
    cover(root, rows, relative)
}

/// A local-files storage of project `project` covering a root-relative file (an export reading
/// its tasks' media; the caller checked access to the project).
pub async fn covering_project_file(
    db: &Db,
    project: i64,
    root: &Root,
    relative: &str,
) -> ApiResult<Option<(LocalStorageRow, String)>> {
    let rows: Vec<LocalStorageRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {COLUMNS} from local_storage s where s.project_id = $1 and s.direction = 'import' order by s.id"
        ))
        .bind(project)
        .fetch_all(conn)
        .await?
    });
    cover(root, rows, relative)
}

/// A storage of a project the caller can see covering a root-relative file (Label Studio's
/// `/data/local-files/?d=`). `None` when there is none: the caller learns nothing about files
/// of projects they cannot see.
pub async fn covering_visible_file(
    db: &Db,
    actor: &Actor,
    root: &Root,
    relative: &str,
) -> ApiResult<Option<(LocalStorageRow, String)>> {
    let rows: Vec<LocalStorageRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {COLUMNS} from local_storage s join project p on p.id = s.project_id \
             where s.organization_id = $1 and p.organization_id = $1 and s.direction = 'import' and {} \
             order by s.id",
            access::visible_projects(actor)
        ))
        .bind(actor.org_id)
        .fetch_all(conn)
        .await?
    });
    cover(root, rows, relative)
}

fn cover(
    root: &Root,
    rows: Vec<LocalStorageRow>,
    relative: &str,
) -> ApiResult<Option<(LocalStorageRow, String)>> {
    let Some(file) = root.relative(relative)? else {
        return Ok(None);
    };
    for row in rows {
        let Ok(dir) = std::fs::canonicalize(&row.path) else {
            continue;
        };
        if let Ok(key) = file.strip_prefix(&dir) {
            let key = key
                .components()
                .filter_map(|c| c.as_os_str().to_str())
                .collect::<Vec<_>>()
                .join("/");
            if !key.is_empty() {
                return Ok(Some((row, key)));
            }
        }
    }
    Ok(None)
}

/// Annotations of a project written per batch by an export storage.
pub const EXPORT_BATCH: i64 = 500;

/// One batch of a project's annotations (ids above `after`, in id order) as an export storage
/// writes them: the annotation with its task nested (Label Studio's annotation serializer with
/// the task expanded). No actor: the export job checked its user's rights when it was queued
/// and checks them again before each run.
pub async fn export_batch(db: &Db, project: i64, after: i64) -> ApiResult<Vec<(i64, Value)>> {
    use super::annotations::{ANNOTATION_COLUMNS, AnnotationRow};
    let rows: Vec<AnnotationRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {ANNOTATION_COLUMNS} from annotation a left join app_user u on u.id = a.completed_by \
             where a.project_id = $1 and a.id > $2 order by a.id limit $3"
        ))
        .bind(project)
        .bind(after)
        .bind(EXPORT_BATCH)
        .fetch_all(conn)
        .await?
    });
    export_values(db, project, rows).await
}

/// The annotations `ids` of a project as they are now, in the form an export storage writes
/// them (the same as [`export_batch`]); an id that is gone (or of another project) is left
/// out. At most [`EXPORT_BATCH`] ids a call.
pub async fn export_annotations(
    db: &Db,
    project: i64,
    ids: &[i64],
) -> ApiResult<Vec<(i64, Value)>> {
    use super::annotations::{ANNOTATION_COLUMNS, AnnotationRow};
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // Integers of our own, so inlining them is safe and keeps one statement.
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let rows: Vec<AnnotationRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {ANNOTATION_COLUMNS} from annotation a left join app_user u on u.id = a.completed_by \
             where a.project_id = $1 and a.id in ({list}) order by a.id"
        ))
        .bind(project)
        .fetch_all(conn)
        .await?
    });
    export_values(db, project, rows).await
}

/// Annotation rows with their tasks nested, as export storages write them.
async fn export_values(
    db: &Db,
    project: i64,
    rows: Vec<super::annotations::AnnotationRow>,
) -> ApiResult<Vec<(i64, Value)>> {
    use super::tasks::{TASK_COLUMNS, TaskRow};
    let mut tasks: std::collections::HashMap<i64, Value> = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let view = row.view();
        let task_id = row.task_id;
        if let std::collections::hash_map::Entry::Vacant(slot) = tasks.entry(task_id) {
            let task: Option<TaskRow> = with_read!(db, conn, {
                sqlx::query_as(&format!(
                    "select {TASK_COLUMNS} from task t where t.id = $1 and t.project_id = $2"
                ))
                .bind(task_id)
                .bind(project)
                .fetch_optional(conn)
                .await?
            });
            let value = task
                .map(|t| serde_json::to_value(t.view()))
                .transpose()
                .map_err(ApiError::internal)?
                .unwrap_or(Value::Null);
            slot.insert(value);
        }
        let mut value = serde_json::to_value(&view).map_err(ApiError::internal)?;
        value["task"] = tasks.get(&task_id).cloned().unwrap_or(Value::Null);
        value["project"] = json!(project);
        out.push((view.id, value));
    }
    Ok(out)
}
