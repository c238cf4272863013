//! Receiving imports and running them as jobs. [`Spool`] takes what an import brings (task
//! files, media files, a URL's answer) for both the synchronous request and the job; the
//! `import.tasks` handler (`POST /api/projects/{id}/import?async=true`) runs a stored import as
//! the user who uploaded it, exactly once (the import is marked completed in the transaction
//! that writes its tasks), and announces the new tasks to webhooks as a synchronous import
//! does. Neither writes tasks itself: `storage::tasks::import_opts` is the one importer.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::{
    authz::{Actor, Permission, RequestMeta},
    config::Config,
    domain::label_config::LabelConfig,
    error::{ApiError, ApiResult, ErrorCode},
    jobs::{Jobs, NewJob, worker::Handlers},
    storage::{
        Db, imports,
        tasks::{self, ImportFormat, ImportOptions, ImportSource},
        uploads::StoredUpload,
        users,
    },
    webhooks::{Action, Subject},
};

/// The format of a task file by its name (`None`: not a task file, so a media file).
pub fn task_format(name: &str) -> Option<(ImportFormat, String)> {
    let lower = name.to_ascii_lowercase();
    let ext = lower.rsplit_once('.').map(|(_, e)| e.to_string())?;
    let format = match ext.as_str() {
        "json" | "jsonl" | "ndjson" => ImportFormat::Json,
        "csv" => ImportFormat::Csv,
        "tsv" => ImportFormat::Tsv,
        _ => return None,
    };
    Some((format, format!(".{ext}")))
}

/// File types kept as media tasks (ADR 0032): images, audio, video, text and documents that
/// Label Studio's editor shows. Anything else (an executable, an archive) is refused.
const MEDIA_EXTENSIONS: &[&str] = &[
    "avif", "bmp", "gif", "jpeg", "jpg", "png", "svg", "tif", "tiff", "webp", "aac", "flac", "m4a",
    "mp3", "oga", "ogg", "opus", "wav", "mov", "mp4", "webm", "htm", "html", "md", "txt", "xml",
    "pdf",
];

/// Whether a file that is not a task file may be kept as a media task.
pub fn is_media(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| MEDIA_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
}

/// The task data key a media file's URL goes under (ADR 0032): the one key the label config
/// reads, or Label Studio's `$undefined$` when it reads none.
pub fn media_key(config: Option<&LabelConfig>) -> Result<String, String> {
    let keys: Vec<String> = config
        .map(|c| c.data_keys().into_iter().collect())
        .unwrap_or_default();
    match keys.as_slice() {
        [] => Ok("$undefined$".to_string()),
        [one] => Ok(one.clone()),
        several => Err(format!(
            "the label config reads {} data keys ({}) and an uploaded media file fills one; upload a task file (JSON, CSV, TSV) that names every key instead",
            several.len(),
            several.join(", ")
        )),
    }
}

/// What an import received: task sources spooled or stored, and the files it stored under the
/// project's upload directory, which are removed again unless the import succeeded. Both the
/// request handler and the job of an import run as a job (a URL it fetches) fill one.
pub struct Spool {
    dir: tempfile::TempDir,
    /// What the importer reads.
    pub sources: Vec<ImportSource>,
    bytes: u64,
    limit: u64,
    project: i64,
    data_dir: std::path::PathBuf,
    media_key: Result<String, String>,
    /// Stored names of the files kept under the upload directory.
    stored: Vec<String>,
    /// Set once the import succeeded (or a stored import owns the files): the stored files stay.
    pub keep: bool,
    /// Media files taken (each becomes one task pointing at the stored file).
    media: usize,
}

impl Drop for Spool {
    fn drop(&mut self) {
        if !self.keep {
            crate::storage::uploads::remove_files(
                &self.data_dir,
                self.project,
                std::mem::take(&mut self.stored),
            );
        }
    }
}

impl Spool {
    /// A spool under `<data_dir>/tmp` for an import into `project` of at most `limit` bytes
    /// (`import_max_bytes`); `config` decides the data key of media files.
    pub fn new(
        data_dir: &Path,
        limit: u64,
        project: i64,
        config: Option<&LabelConfig>,
    ) -> ApiResult<Self> {
        let base = data_dir.join("tmp");
        std::fs::create_dir_all(&base).map_err(ApiError::internal)?;
        Ok(Self {
            dir: tempfile::tempdir_in(&base).map_err(ApiError::internal)?,
            sources: Vec::new(),
            bytes: 0,
            limit,
            project,
            data_dir: data_dir.to_path_buf(),
            media_key: media_key(config),
            stored: Vec::new(),
            keep: false,
            media: 0,
        })
    }

    /// A new spooled source of `format`: the caller writes it with [`Spool::write`].
    pub async fn file(
        &mut self,
        format: ImportFormat,
        extension: String,
    ) -> ApiResult<tokio::fs::File> {
        let path = self
            .dir
            .path()
            .join(format!("upload-{}", self.sources.len()));
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(ApiError::internal)?;
        self.sources.push(ImportSource {
            path,
            format,
            extension,
            upload: None,
        });
        Ok(file)
    }

    /// Bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether a media file was taken (not only task files).
    pub fn has_media(&self) -> bool {
        self.media > 0
    }

    /// Appends to a spooled file, counting against the limit (413 `payload_too_large`).
    pub async fn write(&mut self, file: &mut tokio::fs::File, chunk: &[u8]) -> ApiResult<()> {
        self.bytes += chunk.len() as u64;
        if self.bytes > self.limit {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the upload is larger than {} bytes (import_max_bytes); split it into several imports",
                    self.limit
                ),
            ));
        }
        file.write_all(chunk).await.map_err(ApiError::internal)
    }

    /// Stores an uploaded file under the project's upload directory (written to a temporary
    /// file there and renamed into place once complete) and adds it as a source: a task file
    /// is read as tasks, any other file becomes one task whose data points at its URL.
    pub async fn take<S, E>(&mut self, name: &str, stream: S) -> ApiResult<()>
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>>,
        E: std::fmt::Display,
    {
        let format = task_format(name);
        if format.is_none() && !is_media(name) {
            return Err(ApiError::field(
                ErrorCode::InvalidImport,
                "file",
                format!(
                    "{name}: not a file type that can be imported; upload task files (JSON, JSON lines, CSV, TSV) or media (images, audio, video, text, HTML, PDF)"
                ),
            ));
        }
        if format.is_none()
            && let Err(why) = &self.media_key
        {
            return Err(ApiError::field(
                ErrorCode::InvalidImport,
                "file",
                format!("{name}: {why}"),
            ));
        }
        let dir = crate::storage::uploads::project_dir(&self.data_dir, self.project);
        std::fs::create_dir_all(&dir).map_err(ApiError::internal)?;
        let temp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .map_err(ApiError::internal)?;
        let mut file = tokio::fs::File::from_std(temp.reopen().map_err(ApiError::internal)?);
        let mut size = 0i64;
        let mut stream = std::pin::pin!(stream);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request(ErrorCode::InvalidImport, format!("upload interrupted: {e}"))
            })?;
            size += chunk.len() as i64;
            self.write(&mut file, &chunk).await?;
        }
        file.flush().await.map_err(ApiError::internal)?;
        file.sync_all().await.map_err(ApiError::internal)?;
        drop(file);
        let stored = crate::storage::uploads::stored_name(name);
        let path = dir.join(&stored);
        temp.persist(&path).map_err(ApiError::internal)?;
        self.stored.push(stored.clone());
        let upload = Some(StoredUpload {
            file: stored.clone(),
            size,
        });
        match format {
            Some((format, extension)) => self.sources.push(ImportSource {
                path,
                format,
                extension,
                upload,
            }),
            None => {
                self.media += 1;
                let key = self.media_key.clone().unwrap_or_default();
                let task = serde_json::json!({
                    "data": {key: crate::storage::uploads::url(self.project, &stored)}
                });
                let spooled = self
                    .dir
                    .path()
                    .join(format!("upload-{}", self.sources.len()));
                tokio::fs::write(&spooled, task.to_string())
                    .await
                    .map_err(ApiError::internal)?;
                let extension = name
                    .rsplit_once('.')
                    .map(|(_, e)| format!(".{}", e.to_ascii_lowercase()))
                    .unwrap_or_default();
                self.sources.push(ImportSource {
                    path: spooled,
                    format: ImportFormat::Json,
                    extension,
                    upload,
                });
            }
        }
        Ok(())
    }
}

/// How long fetching an import's URL may take.
const URL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Checks an import's URL against the outbound rules (`allow_private_targets`) before anything
/// is fetched: 400 `private_target` or `invalid_import` naming what is wrong.
pub fn check_url(
    allow_private_targets: &str,
    url: &str,
) -> ApiResult<(crate::outbound::TargetPolicy, reqwest::Url)> {
    let policy =
        crate::outbound::TargetPolicy::parse(allow_private_targets).map_err(ApiError::internal)?;
    let parsed = policy.check_url(url.trim()).map_err(|why| {
        if why.contains("private") {
            ApiError::field(ErrorCode::PrivateTarget, "url", why)
        } else {
            ApiError::field(ErrorCode::InvalidImport, "url", why)
        }
    })?;
    Ok((policy, parsed))
}

/// Fetches an import's URL under the outbound rules and stores what it answers like an
/// uploaded file named after the URL's last path segment (a task file by the answer's
/// Content-Type or the name's extension, otherwise a media file). Every failure is a 4xx
/// whose message names the reason (an import run as a job fails with it).
pub async fn fetch_url(allow_private_targets: &str, spool: &mut Spool, url: &str) -> ApiResult<()> {
    let bad = |why: String| ApiError::field(ErrorCode::InvalidImport, "url", why);
    let (policy, parsed) = check_url(allow_private_targets, url)?;
    let client = crate::webhooks::client(std::sync::Arc::new(policy), URL_TIMEOUT);
    let response = client.get(parsed.clone()).send().await.map_err(|e| {
        let why = crate::outbound::describe(&e);
        if why.starts_with("refused") {
            ApiError::field(ErrorCode::PrivateTarget, "url", why)
        } else {
            bad(format!("fetching the URL failed: {why}"))
        }
    })?;
    if !response.status().is_success() {
        return Err(bad(format!(
            "fetching the URL answered {}; check the address",
            response.status()
        )));
    }
    if let Some(len) = response.content_length()
        && len > spool.limit.saturating_sub(spool.bytes)
    {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the URL's content is {len} bytes, more than {} (import_max_bytes)",
                spool.limit
            ),
        ));
    }
    let mut name = parsed
        .path_segments()
        .and_then(|mut s| s.next_back().map(str::to_string))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "download".to_string());
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if task_format(&name).is_none() {
        let by_type = if content_type.starts_with("application/json") {
            Some("json")
        } else if content_type.starts_with("application/x-ndjson")
            || content_type.starts_with("application/jsonl")
        {
            Some("jsonl")
        } else if content_type.starts_with("text/csv") {
            Some("csv")
        } else if content_type.starts_with("text/tab-separated-values") {
            Some("tsv")
        } else {
            None
        };
        if let Some(ext) = by_type {
            name = format!("{name}.{ext}");
        }
    }
    spool
        .take(
            &name,
            response
                .bytes_stream()
                .map(|c| c.map_err(|e| crate::outbound::describe(&e))),
        )
        .await
}

/// Job kind.
pub const KIND: &str = "import.tasks";

/// Enqueues the job of a stored import (queue `high`, as Label Studio runs imports).
pub async fn enqueue(jobs: &Jobs, org: i64, import: i64) -> Result<String, String> {
    let mut job = NewJob::new("high", KIND, json!({"import": import}));
    job.organization = Some(org);
    job.timeout = Duration::from_secs(3600);
    job.max_attempts = 3;
    jobs.enqueue(&job).await.map_err(|e| e.to_string())
}

/// Tells webhooks about imported tasks (and their annotations).
pub async fn announce(
    db: &Db,
    jobs: &Jobs,
    org: i64,
    project: i64,
    created: Vec<i64>,
    annotated: bool,
) {
    if created.is_empty() {
        return;
    }
    crate::webhooks::emit(
        db,
        jobs,
        org,
        Some(project),
        Action::TasksCreated,
        Subject::Tasks(created.clone()),
    )
    .await;
    if annotated {
        crate::webhooks::emit(
            db,
            jobs,
            org,
            Some(project),
            Action::AnnotationsCreated,
            Subject::AnnotationsOfTasks(created),
        )
        .await;
    }
}

/// Registers `import.tasks`; uploads are unpacked under `<data_dir>/tmp`, a URL is fetched
/// under the outbound rules and stored under `<data_dir>/upload` as a synchronous import does.
pub fn register(db: Db, jobs: Jobs, config: Config, handlers: Handlers) -> Handlers {
    handlers.on(KIND, move |job| {
        let (db, jobs, config) = (db.clone(), jobs.clone(), config.clone());
        async move {
            let id = job.leased.payload["import"]
                .as_i64()
                .ok_or("the job has no import id")?;
            let last = job.leased.attempt >= job.leased.max_attempts;
            run(&db, &jobs, &config, id, last).await
        }
    })
}

/// Fails an import with `why` and removes the files it had stored under the upload directory
/// (a failed import leaves neither tasks nor files).
async fn fail(
    db: &Db,
    data_dir: &Path,
    row: &imports::ImportRow,
    why: String,
) -> Result<Value, String> {
    let stored = imports::finish(db, row.id, Err(why.clone()))
        .await
        .map_err(|e| e.detail)?;
    crate::storage::uploads::remove_files(data_dir, row.project_id, stored);
    Ok(json!({"status": "failed", "error": why}))
}

/// What a run imports: the stored files (unpacked into a temporary directory that lives as
/// long as they are read) or the URL's answer, held by a spool that removes the fetched file
/// unless the import commits.
enum Received {
    Stored {
        sources: Vec<ImportSource>,
        _unpacked: tempfile::TempDir,
    },
    Fetched(Spool),
}

impl Received {
    fn sources(&self) -> &[ImportSource] {
        match self {
            Received::Stored { sources, .. } => sources,
            Received::Fetched(spool) => &spool.sources,
        }
    }
}

/// Unpacks a stored import, or fetches its URL (a fetch failure is a 4xx naming the reason).
async fn receive(
    db: &Db,
    config: &Config,
    actor: &Actor,
    row: &imports::ImportRow,
) -> ApiResult<Received> {
    let Some(url) = &row.url else {
        let base = config.data_dir.join("tmp");
        std::fs::create_dir_all(&base).map_err(ApiError::internal)?;
        let dir = tempfile::tempdir_in(&base).map_err(ApiError::internal)?;
        let sources = imports::start(db, row.id, dir.path()).await?;
        return Ok(Received::Stored {
            sources,
            _unpacked: dir,
        });
    };
    // The project's label config now decides the data key of a media file, as it would for a
    // synchronous import made now.
    let project =
        crate::storage::projects::get_row(db, actor, row.project_id, Permission::TaskManage)
            .await?;
    let label_config = project.config();
    let mut spool = Spool::new(
        &config.data_dir,
        config.import_max_bytes,
        row.project_id,
        label_config.as_deref(),
    )?;
    imports::start(db, row.id, spool.dir.path()).await?;
    fetch_url(&config.allow_private_targets, &mut spool, url).await?;
    Ok(Received::Fetched(spool))
}

async fn run(db: &Db, jobs: &Jobs, config: &Config, id: i64, last: bool) -> Result<Value, String> {
    let Some(row) = imports::by_id(db, id).await.map_err(|e| e.detail)? else {
        return Ok(json!({"skipped": "the import is gone"}));
    };
    if row.status == "completed" || row.status == "failed" {
        return Ok(json!({"status": row.status}));
    }
    let data_dir = config.data_dir.as_path();
    // The uploader's rights as they are now: a removal since the upload counts.
    let actor = match row.created_by {
        Some(user) => match users::actor_for_user(db, user)
            .await
            .map_err(|e| e.detail)?
        {
            Some(a) if a.org_id == row.organization_id => a,
            _ => {
                return fail(
                    db,
                    data_dir,
                    &row,
                    "the user who uploaded the import is no longer active in this organization"
                        .into(),
                )
                .await;
            }
        },
        None => Actor::instance(row.organization_id, RequestMeta::default()),
    };
    let options = ImportOptions {
        preannotated_from_fields: row.preannotated_from_fields(),
    };
    let outcome = match receive(db, config, &actor, &row).await {
        Ok(received) => {
            let result = tasks::import_opts(
                db,
                &actor,
                row.project_id,
                received.sources(),
                true,
                tasks::Claim::Import(id),
                &options,
            )
            .await;
            if let (Ok(_), Received::Fetched(mut spool)) = (&result, received) {
                spool.keep = true;
            }
            result
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(mut summary) => {
            let created = summary.task_ids.clone().unwrap_or_default();
            if !row.return_task_ids {
                summary.task_ids = None;
            }
            let mut value = serde_json::to_value(&summary).map_err(|e| e.to_string())?;
            value["task_ids"] = json!(created);
            // The tasks are written: the stored files are theirs now, whatever `finish` answers.
            imports::finish(db, id, Ok(value))
                .await
                .map_err(|e| e.detail)?;
            announce(
                db,
                jobs,
                row.organization_id,
                row.project_id,
                created,
                summary.annotation_count > 0,
            )
            .await;
            Ok(json!({"status": "completed", "task_count": summary.task_count}))
        }
        // A retry after the tasks were written: nothing to do.
        Err(e) if e.code == ErrorCode::Conflict => Ok(json!({"status": "completed"})),
        // The data, the URL or the caller's rights: a retry would fail the same way.
        Err(e) if e.code.status().is_client_error() => fail(db, data_dir, &row, e.detail).await,
        Err(e) if last => fail(db, data_dir, &row, e.detail).await,
        Err(e) => Err(e.detail),
    }
}
