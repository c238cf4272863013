//! Local-files storage: the path policy (every directory and object must lie under the
//! administrator's `local_files_root`, after `..` and symbolic links are resolved), the listing
//! of a storage's files, the `/data/local-files/?d=` URLs tasks carry, and the `storage.sync`
//! job that turns new files into tasks. It never decides who may act: the storage layer
//! (`storage::storages`) checks the caller before anything here runs.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    authz::{Actor, RequestMeta},
    error::{ApiError, ApiResult, ErrorCode},
    jobs::{Jobs, NewJob, worker::Handlers},
    storage::{
        Db, storages,
        tasks::{self, Claim, ImportFormat, ImportSource},
        users,
    },
};

/// Storage kind in links, jobs and the `storage_object` table.
pub const KIND: &str = "localfiles";

/// Job kind of a sync.
pub const SYNC_JOB: &str = "storage.sync";

/// The prefix of the URL a task carries for a file (Label Studio's).
pub const URL_PREFIX: &str = "/data/local-files/?d=";

/// Files turned into tasks per import transaction (bounds memory and transaction size).
const SYNC_BATCH: usize = 1000;

/// Most files a storage lists; a larger directory needs a narrower `regex_filter` or path.
const MAX_FILES: usize = 1_000_000;

/// Largest JSON task file a sync reads (`use_blob_urls = false`).
const MAX_JSON_FILE: u64 = 256 * 1024 * 1024;

/// The administrator's root, resolved (no symbolic links, absolute).
#[derive(Debug, Clone)]
pub struct Root(PathBuf);

fn not_allowed(message: impl Into<String>) -> ApiError {
    ApiError::field(ErrorCode::PathNotAllowed, "path", message)
}

impl Root {
    /// The root of a configuration; `local_files_disabled` when none is set.
    pub fn from_config(config: &crate::config::Config) -> ApiResult<Self> {
        if config.local_files_root.trim().is_empty() {
            return Err(ApiError::new(
                ErrorCode::LocalFilesDisabled,
                "local-files storage is disabled on this server; an administrator enables it by setting VERITY_LOCAL_FILES_ROOT (local_files_root) to the directory storages may use",
            ));
        }
        let root = std::fs::canonicalize(config.local_files_root.trim()).map_err(|e| {
            ApiError::new(
                ErrorCode::LocalFilesDisabled,
                format!(
                    "local-files storage is unavailable: the configured root {} cannot be opened ({e}); an administrator must fix VERITY_LOCAL_FILES_ROOT",
                    config.local_files_root
                ),
            )
        })?;
        Ok(Self(root))
    }

    /// The resolved root directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Checks a storage directory: absolute (or relative to the root), existing, and under the
    /// root once resolved. Answers its resolved form, which is what is stored.
    pub fn check_dir(&self, path: &str) -> ApiResult<PathBuf> {
        let path = path.trim();
        if path.is_empty() {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "path",
                "this field is required",
            ));
        }
        let given = Path::new(path);
        let joined = if given.is_absolute() {
            given.to_path_buf()
        } else {
            self.0.join(given)
        };
        let resolved = std::fs::canonicalize(&joined).map_err(|_| {
            ApiError::field(
                ErrorCode::ValidationError,
                "path",
                format!("{path} does not exist or cannot be read by the server"),
            )
        })?;
        if !resolved.starts_with(&self.0) {
            return Err(not_allowed(format!(
                "{path} is outside the directory local-files storages may use ({}); symbolic links and .. are resolved before the check",
                self.0.display()
            )));
        }
        if !resolved.is_dir() {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "path",
                format!("{path} is not a directory"),
            ));
        }
        Ok(resolved)
    }

    /// The file `key` (relative, `/`-separated) of the storage directory `dir`, resolved and
    /// checked to stay inside `dir` and the root. `None` when it does not exist.
    pub fn object(&self, dir: &Path, key: &str) -> ApiResult<Option<PathBuf>> {
        let relative = relative_key(key)?;
        let dir = match std::fs::canonicalize(dir) {
            Ok(d) => d,
            Err(_) => return Ok(None),
        };
        if !dir.starts_with(&self.0) {
            return Err(not_allowed(
                "the storage's directory is no longer under the local-files root",
            ));
        }
        let resolved = match std::fs::canonicalize(dir.join(relative)) {
            Ok(p) => p,
            Err(_) => return Ok(None),
        };
        if !resolved.starts_with(&dir) {
            return Err(not_allowed(
                "the object leaves the storage's directory (a symbolic link or ..)",
            ));
        }
        Ok(resolved.is_file().then_some(resolved))
    }

    /// A path given relative to the root (the `d` of `/data/local-files/?d=`), resolved and
    /// checked to stay under the root. `None` when it does not exist.
    pub fn relative(&self, d: &str) -> ApiResult<Option<PathBuf>> {
        let relative = relative_key(d)?;
        let resolved = match std::fs::canonicalize(self.0.join(relative)) {
            Ok(p) => p,
            Err(_) => return Ok(None),
        };
        if !resolved.starts_with(&self.0) {
            return Err(not_allowed("the path leaves the local-files root"));
        }
        Ok(resolved.is_file().then_some(resolved))
    }
}

/// A key as a relative path of plain components: no root, no `..`, no `.`, no empty name.
fn relative_key(key: &str) -> ApiResult<PathBuf> {
    let key = key.trim_start_matches('/');
    let path = Path::new(key);
    if key.is_empty()
        || key.contains('\0')
        || !path.components().all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(not_allowed(format!(
            "{key:?} is not a path inside the storage (.., absolute paths and empty names are refused)"
        )));
    }
    Ok(path.to_path_buf())
}

/// `/`-separated form of a relative path.
fn key_of(relative: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in relative.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?.to_string()),
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

/// The files under `dir` (recursively; a symbolic link counts only while it points inside `dir`)
/// whose key matches `filter`, as sorted `/`-separated keys relative to `dir`. At most
/// [`MAX_FILES`]; a sync walks the directory with [`walk`] instead, a page at a time.
pub fn list(dir: &Path, filter: Option<&regex::Regex>) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut too_many = false;
    walk(dir, filter, &mut |key| {
        out.push(key);
        too_many = out.len() > MAX_FILES;
        !too_many
    })?;
    if too_many {
        return Err(std::io::Error::other(format!(
            "more than {MAX_FILES} files match; narrow the path or regex_filter"
        )));
    }
    Ok(out)
}

/// Walks the files under `dir` as [`list`] finds them and hands each matching key to `found`,
/// in the order of the sorted keys, until `found` answers `false`. Holds the entry names of the
/// folders on the way down to the current one (each folder's sorted, a subfolder placed as its
/// keys sort: by its name followed by `/`), never the tree's keys.
///
/// A symbolic link to a folder inside `dir` is not entered: keys are the files' real paths (as
/// they always were), and every such folder is also reached through real folders, where its
/// keys fall in order. A symbolic link to a file inside `dir` keeps its own name.
pub fn walk(
    dir: &Path,
    filter: Option<&regex::Regex>,
    found: &mut dyn FnMut(String) -> bool,
) -> std::io::Result<()> {
    let dir = std::fs::canonicalize(dir)?;
    walk_dir(&dir, &dir, "", filter, found).map(|_| ())
}

/// One folder of [`walk`]: `current` (a real folder under `top`), whose keys start with
/// `prefix`. Answers `false` once `found` asked to stop.
fn walk_dir(
    top: &Path,
    current: &Path,
    prefix: &str,
    filter: Option<&regex::Regex>,
    found: &mut dyn FnMut(String) -> bool,
) -> std::io::Result<bool> {
    // The files' names, and the subfolders' with `/` after them: sorted, the order of the keys.
    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(current)? {
        let entry = entry?;
        let path = entry.path();
        let Ok(resolved) = std::fs::canonicalize(&path) else {
            continue;
        };
        if !resolved.starts_with(top) {
            continue;
        }
        // A name that is not UTF-8 has no key.
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if resolved.is_dir() {
            if !entry.file_type().is_ok_and(|t| t.is_symlink()) {
                names.push(format!("{name}/"));
            }
        } else if resolved.is_file() {
            names.push(name);
        }
    }
    names.sort_unstable();
    for name in names {
        if let Some(folder) = name.strip_suffix('/') {
            if !walk_dir(
                top,
                &current.join(folder),
                &format!("{prefix}{name}"),
                filter,
                found,
            )? {
                return Ok(false);
            }
            continue;
        }
        let key = format!("{prefix}{name}");
        if filter.is_none_or(|re| re.is_match(&key)) && !found(key) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Compiles a storage's `regex_filter` (empty: every file).
pub fn filter(regex: &str) -> ApiResult<Option<regex::Regex>> {
    if regex.is_empty() {
        return Ok(None);
    }
    regex::Regex::new(regex).map(Some).map_err(|e| {
        ApiError::field(
            ErrorCode::ValidationError,
            "regex_filter",
            format!("not a valid regular expression: {e}"),
        )
    })
}

/// The URL a task carries for the file at `relative` (to the root).
pub fn blob_url(relative: &str) -> String {
    let mut out = String::from(URL_PREFIX);
    for b in relative.bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The root-relative path of a `/data/local-files/?d=…` URL (absolute URLs of it too).
pub fn parse_blob_url(uri: &str) -> Option<String> {
    let at = uri.find("/data/local-files")?;
    let query = uri[at..].split_once('?')?.1;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "d")
        .map(|(_, v)| v.into_owned())
        .filter(|d| !d.is_empty())
}

/// Enqueues the sync of a storage (queue `high`, like imports) as job `job_id`, run as `user`.
pub async fn enqueue_sync(
    jobs: &Jobs,
    org: i64,
    storage: i64,
    user: i64,
    job_id: &str,
) -> ApiResult<String> {
    let mut job = NewJob::new(
        "high",
        SYNC_JOB,
        json!({"kind": KIND, "storage": storage, "user": user}),
    );
    job.organization = Some(org);
    job.id = Some(job_id.to_string());
    job.timeout = Duration::from_secs(3600);
    job.max_attempts = 3;
    jobs.enqueue(&job).await.map_err(ApiError::internal)
}

/// Registers `storage.sync`.
pub fn register(db: Db, jobs: Jobs, config: crate::config::Config, handlers: Handlers) -> Handlers {
    handlers.on(SYNC_JOB, move |job| {
        let (db, jobs, config) = (db.clone(), jobs.clone(), config.clone());
        async move {
            let id = job.leased.payload["storage"]
                .as_i64()
                .ok_or("the job has no storage id")?;
            let user = job.leased.payload["user"].as_i64().unwrap_or(0);
            let last = job.leased.attempt >= job.leased.max_attempts;
            match sync(&db, &jobs, &config, id, user).await {
                Ok(added) => {
                    storages::finish_sync(&db, id, Ok(added))
                        .await
                        .map_err(|e| e.detail)?;
                    Ok(json!({"status": "completed", "tasks": added}))
                }
                Err(e) if e.code.status().is_client_error() || last => {
                    storages::finish_sync(&db, id, Err(e.detail.clone()))
                        .await
                        .map_err(|e| e.detail)?;
                    Ok(json!({"status": "failed", "error": e.detail}))
                }
                Err(e) => {
                    tracing::warn!(storage = id, error = %e.detail, internal = ?e.internal, "a storage sync failed; it will be retried");
                    Err(e.detail)
                }
            }
        }
    })
}

/// Imports the storage's files that no earlier sync imported; answers the number of new
/// tasks. Runs as the user who asked for the sync, with their rights as they are now.
async fn sync(
    db: &Db,
    jobs: &Jobs,
    config: &crate::config::Config,
    id: i64,
    user: i64,
) -> ApiResult<i64> {
    let Some(row) = storages::by_id(db, id).await? else {
        return Ok(0);
    };
    let actor = match user {
        0 => Actor::instance(row.organization_id, RequestMeta::default()),
        u => match users::actor_for_user(db, u).await? {
            Some(a) if a.org_id == row.organization_id => a,
            _ => {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "the user who started the sync is no longer active in this organization",
                ));
            }
        },
    };
    storages::start_sync(db, id).await?;
    let root = Root::from_config(config)?;
    let dir = root.check_dir(&row.path)?;
    if row.direction == "export" {
        let written = export(db, jobs, &actor, &row, &dir).await?;
        // The directory is writable again: changes whose write pass failed for good are taken
        // up.
        crate::exportchanges::requeue(
            db,
            jobs,
            &crate::storage::exportchanges::ExportTarget {
                kind: KIND.to_string(),
                id: row.id,
                organization_id: row.organization_id,
            },
        )
        .await?;
        return Ok(written);
    }
    let filter = filter(&row.regex_filter)?;
    // The directory is walked on a blocking thread that hands keys over a bounded channel; each
    // page of keys is compared with the records of those keys and its new files imported
    // before the walk goes on (ADR 0058): memory holds a page, not the tree.
    let (keys_tx, mut keys_rx) = tokio::sync::mpsc::channel::<std::io::Result<String>>(SYNC_BATCH);
    let walker = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            // A closed channel (the sync failed or was dropped) stops the walk.
            if let Err(e) = walk(&dir, filter.as_ref(), &mut |key| {
                keys_tx.blocking_send(Ok(key)).is_ok()
            }) {
                let _ = keys_tx.blocking_send(Err(e));
            }
        })
    };
    let data_key = storages::data_key(db, row.project_id).await?;
    let spool = config.data_dir.join("tmp");
    std::fs::create_dir_all(&spool).map_err(ApiError::internal)?;
    let mut added = 0i64;
    let mut page: Vec<String> = Vec::with_capacity(SYNC_BATCH);
    loop {
        let next = keys_rx.recv().await;
        let done = next.is_none();
        if let Some(key) = next {
            page.push(key.map_err(|e| {
                ApiError::new(
                    ErrorCode::ValidationError,
                    format!("cannot list {}: {e}", row.path),
                )
            })?);
        }
        if page.len() < SYNC_BATCH && !done {
            continue;
        }
        let keys = std::mem::take(&mut page);
        let known = storages::synced_among(db, KIND, id, &keys).await?;
        let new: Vec<String> = keys.into_iter().filter(|k| !known.contains(k)).collect();
        let place = Place {
            root: &root,
            dir: &dir,
            data_key: &data_key,
            spool: &spool,
        };
        added += import_new(db, jobs, &actor, &row, &place, &new).await?;
        if done {
            break;
        }
    }
    walker.await.map_err(ApiError::internal)?;
    Ok(added)
}

/// Where a sync's files are and where they go.
struct Place<'a> {
    root: &'a Root,
    /// The storage's directory (keys are relative to it).
    dir: &'a Path,
    /// The data key of blob URLs.
    data_key: &'a str,
    /// The directory of spool files.
    spool: &'a Path,
}

/// Imports the new files `new` of a sync page; answers the tasks created.
async fn import_new(
    db: &Db,
    jobs: &Jobs,
    actor: &Actor,
    row: &storages::LocalStorageRow,
    place: &Place<'_>,
    new: &[String],
) -> ApiResult<i64> {
    let Place {
        root,
        dir,
        data_key,
        spool,
    } = *place;
    let mut added = 0i64;
    if row.use_blob_urls {
        for chunk in new.chunks(SYNC_BATCH) {
            let mut tasks = Vec::with_capacity(chunk.len());
            let mut objects = Vec::with_capacity(chunk.len());
            for key in chunk {
                let relative = dir
                    .join(key)
                    .strip_prefix(root.path())
                    .ok()
                    .and_then(key_of)
                    .ok_or_else(|| ApiError::internal("a listed file left the root"))?;
                tasks.push(json!({"data": {data_key: blob_url(&relative)}}));
                objects.push(tasks::ClaimedObject {
                    key: key.clone(),
                    tasks: 1,
                    ..Default::default()
                });
            }
            added += import(db, jobs, actor, row, spool, &Value::Array(tasks), &objects).await?;
        }
    } else {
        for key in new {
            let path = dir.join(key);
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if size > MAX_JSON_FILE {
                return Err(ApiError::new(
                    ErrorCode::InvalidImport,
                    format!(
                        "{key} is larger than {MAX_JSON_FILE} bytes; split it, or set use_blob_urls to make each file a task"
                    ),
                ));
            }
            let bytes = tokio::fs::read(&path).await.map_err(ApiError::internal)?;
            let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidImport,
                    format!(
                        "{key} is not a JSON task or list of tasks ({e}); set use_blob_urls to make each file a task, or narrow regex_filter (e.g. .*\\.json$)"
                    ),
                )
            })?;
            let n = match &value {
                Value::Array(a) => a.len() as i64,
                _ => 1,
            };
            let claimed = [tasks::ClaimedObject {
                key: key.clone(),
                tasks: n,
                ..Default::default()
            }];
            added += import(db, jobs, actor, row, spool, &value, &claimed).await?;
        }
    }
    Ok(added)
}

/// Writes every annotation of the project to the export storage's directory, one file per
/// annotation named by its id (Label Studio's layout), each written to a temporary file and
/// renamed, so a reader never sees half a file. Answers the number of files written.
async fn export(
    db: &Db,
    jobs: &Jobs,
    actor: &Actor,
    row: &storages::LocalStorageRow,
    dir: &Path,
) -> ApiResult<i64> {
    // The user's rights as they are now.
    crate::storage::access::project(
        db,
        actor,
        row.project_id,
        crate::authz::Permission::ExportRun,
    )
    .await?;
    let mut after = 0;
    let mut written = 0i64;
    loop {
        let batch = storages::export_batch(db, row.project_id, after).await?;
        let Some((last, _)) = batch.last() else {
            break;
        };
        after = *last;
        let dir = dir.to_path_buf();
        let read = batch.clone();
        written += tokio::task::spawn_blocking(move || -> std::io::Result<i64> {
            let mut n = 0;
            for (id, value) in batch {
                let mut file = tempfile::NamedTempFile::new_in(&dir)?;
                serde_json::to_writer(&mut file, &value)?;
                file.persist(dir.join(id.to_string()))
                    .map_err(|e| e.error)?;
                n += 1;
            }
            Ok(n)
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| {
            ApiError::new(
                ErrorCode::ValidationError,
                format!("cannot write to {}: {e}", row.path),
            )
        })?;
        // An annotation that changed while this batch was written goes to the storage's write
        // pass (ADR 0052), which writes it as it is then.
        crate::exportchanges::recheck_batch(
            db,
            jobs,
            &crate::storage::exportchanges::ExportTarget {
                kind: KIND.to_string(),
                id: row.id,
                organization_id: row.organization_id,
            },
            row.project_id,
            &read,
        )
        .await?;
    }
    Ok(written)
}

/// Imports one batch of tasks and records the objects they came from, in one transaction.
async fn import(
    db: &Db,
    jobs: &Jobs,
    actor: &Actor,
    row: &storages::LocalStorageRow,
    spool: &Path,
    tasks_json: &Value,
    objects: &[tasks::ClaimedObject],
) -> ApiResult<i64> {
    let file = tempfile::NamedTempFile::new_in(spool).map_err(ApiError::internal)?;
    std::fs::write(file.path(), tasks_json.to_string()).map_err(ApiError::internal)?;
    let sources = [ImportSource {
        path: file.path().to_path_buf(),
        format: ImportFormat::Json,
        extension: ".json".into(),
        upload: None,
    }];
    let summary = tasks::import_with(
        db,
        actor,
        row.project_id,
        &sources,
        true,
        Claim::StorageObjects {
            kind: KIND,
            storage: row.id,
            objects,
        },
    )
    .await?;
    let created = summary.task_ids.clone().unwrap_or_default();
    crate::imports::announce(
        db,
        jobs,
        row.organization_id,
        row.project_id,
        created,
        summary.annotation_count > 0,
    )
    .await;
    Ok(summary.task_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_urls_round_trip() {
        let url = blob_url("images/a cat&dog.jpg");
        assert_eq!(url, "/data/local-files/?d=images/a%20cat%26dog.jpg");
        assert_eq!(
            parse_blob_url(&url).as_deref(),
            Some("images/a cat&dog.jpg")
        );
        assert_eq!(
            parse_blob_url("https://ls.example.com/data/local-files/?d=x/y.png").as_deref(),
            Some("x/y.png")
        );
        assert_eq!(parse_blob_url("s3://bucket/key"), None);
    }

    #[test]
    fn keys_must_be_plain_relative_paths() {
        assert!(relative_key("a/b.jpg").is_ok());
        assert!(relative_key("/a/b.jpg").is_ok(), "a leading / is ignored");
        for bad in ["", "../x", "a/../../x", "./x", "a/b\0"] {
            assert!(relative_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_root_contains_storages_and_objects() {
        let base = tempfile::tempdir().expect("tempdir");
        let root_dir = base.path().join("root");
        std::fs::create_dir_all(root_dir.join("data/sub")).expect("mkdir");
        std::fs::create_dir_all(base.path().join("outside")).expect("mkdir");
        std::fs::write(root_dir.join("data/a.txt"), "a").expect("write");
        std::fs::write(root_dir.join("data/sub/b.txt"), "b").expect("write");
        std::fs::write(base.path().join("outside/secret.txt"), "s").expect("write");
        #[cfg(unix)]
        std::os::unix::fs::symlink(base.path().join("outside"), root_dir.join("data/escape"))
            .expect("symlink");
        let config = crate::config::Config {
            local_files_root: root_dir.display().to_string(),
            ..Default::default()
        };
        let root = Root::from_config(&config).expect("root");
        let dir = root.check_dir("data").expect("relative to the root");
        assert!(root.check_dir(&dir.display().to_string()).is_ok());
        let err = root
            .check_dir(&format!("{}/data/../..", root_dir.display()))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::PathNotAllowed);
        #[cfg(unix)]
        assert_eq!(
            root.check_dir("data/escape").unwrap_err().code,
            ErrorCode::PathNotAllowed
        );
        assert_eq!(
            list(&dir, None).expect("list"),
            vec!["a.txt".to_string(), "sub/b.txt".to_string()],
            "the symbolic link out of the storage is not listed"
        );
        let only_sub = filter("^sub/").expect("regex");
        assert_eq!(
            list(&dir, only_sub.as_ref()).expect("list"),
            vec!["sub/b.txt".to_string()]
        );
        assert!(root.object(&dir, "sub/b.txt").expect("ok").is_some());
        assert!(root.object(&dir, "missing.txt").expect("ok").is_none());
        assert!(root.object(&dir, "../data/a.txt").is_err());
        #[cfg(unix)]
        assert!(root.object(&dir, "escape/secret.txt").is_err());
        let disabled = Root::from_config(&crate::config::Config::default()).unwrap_err();
        assert_eq!(disabled.code, ErrorCode::LocalFilesDisabled);
    }
}
