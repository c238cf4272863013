//! S3 storages: the bucket client and the `storage.s3.sync` job (ADR 0026).
//!
//! The client is `object_store`'s (the crate that will also serve GCS and Azure) with its HTTP
//! connections built by [`crate::outbound::guarded_builder`], so a storage endpoint obeys the
//! same outbound rules as webhooks: every resolved address and redirect is checked, and private
//! targets are refused unless `allow_private_targets` allows them.
//!
//! An import sync lists the bucket (page by page, as a stream), compares each object's key,
//! entity tag and size with what earlier syncs recorded in `storage_object`, and imports only
//! new or changed objects: with `use_blob_urls` each object becomes a task whose data is its
//! `s3://bucket/key` URL; otherwise each object is a JSON or JSONL file of tasks, streamed to a
//! spool file (never held in memory) and imported in batches of short transactions that also
//! record the objects, so a retried or repeated sync never imports an object version twice.
//! The bucket is never read while a database transaction is open. An object deleted between
//! the listing and the read is counted in the storage's `meta.missing` and skipped. An export
//! sync writes each annotation as `<prefix>/<annotation id>`.

use std::{collections::HashSet, sync::Arc, time::Duration};

use futures::{StreamExt, TryStreamExt};
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    aws::{AmazonS3, AmazonS3Builder},
    client::{HttpClient, HttpConnector},
    path::Path as ObjectPath,
};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::{
    authz::{Actor, Permission, RequestMeta},
    domain::import::JsonSplitter,
    error::{ApiError, ApiResult, ErrorCode},
    jobs::{Jobs, NewJob, worker::Handlers},
    outbound::TargetPolicy,
    secrets::Sealer,
    storage::{
        Db, access,
        s3storages::{self, S3StorageRow},
        storages,
        tasks::{self, Claim, ClaimedObject, ImportFormat, ImportSource},
        users,
    },
};

/// Storage kind in links, jobs and the `storage_object` table.
pub const KIND: &str = "s3";

/// Job kind of a sync (import or export).
pub const SYNC_JOB: &str = "storage.s3.sync";

/// Objects turned into tasks per import transaction with `use_blob_urls`.
const BLOB_BATCH: usize = 500;

/// JSON objects per import transaction, and tasks after which a batch is written early.
const JSON_BATCH_OBJECTS: usize = 200;
const JSON_BATCH_TASKS: usize = 1000;

/// Objects read (or written) at once.
const CONCURRENCY: usize = 8;

/// Largest JSON/JSONL object a sync reads (its tasks are written in one transaction).
const MAX_JSON_OBJECT: u64 = 256 * 1024 * 1024;

/// How to reach a bucket, credentials opened.
#[derive(Clone, Default)]
pub struct Endpoint {
    /// Bucket.
    pub bucket: String,
    /// Region (empty: `us-east-1`).
    pub region: String,
    /// S3-compatible endpoint URL (empty: AWS).
    pub endpoint: String,
    /// Access key id (empty: anonymous requests).
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials (may be empty).
    pub session_token: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Whether `name` is a valid bucket name (lowercase letters, digits, dots and hyphens, 3 to 63
/// characters, starting and ending with a letter or digit).
pub fn valid_bucket(name: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-';
    (3..=63).contains(&name.len())
        && name.chars().all(ok_char)
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Builds `object_store`'s HTTP clients with the outbound guard.
#[derive(Debug)]
struct GuardedConnector {
    policy: Arc<TargetPolicy>,
}

impl HttpConnector for GuardedConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = crate::outbound::guarded_builder(self.policy.clone())
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("verity-storage/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })?;
        Ok(HttpClient::new(client))
    }
}

/// The bucket client of an endpoint. Without credentials requests are anonymous (public
/// buckets); the endpoint URL is checked against the outbound policy before anything else.
pub fn store(endpoint: &Endpoint, policy: Arc<TargetPolicy>) -> ApiResult<AmazonS3> {
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&endpoint.bucket)
        .with_region(if endpoint.region.is_empty() {
            "us-east-1"
        } else {
            endpoint.region.as_str()
        })
        .with_retry(RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(30),
            ..Default::default()
        });
    if !endpoint.endpoint.is_empty() {
        policy.check_url(&endpoint.endpoint).map_err(|why| {
            let code = if why.contains("private, loopback or link-local") {
                ErrorCode::PrivateTarget
            } else {
                ErrorCode::ValidationError
            };
            ApiError::field(code, "s3_endpoint", why)
        })?;
        builder = builder
            .with_endpoint(endpoint.endpoint.trim_end_matches('/'))
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false);
    }
    if endpoint.access_key_id.is_empty() {
        builder = builder.with_skip_signature(true);
    } else {
        builder = builder
            .with_access_key_id(&endpoint.access_key_id)
            .with_secret_access_key(&endpoint.secret_access_key);
        if !endpoint.session_token.is_empty() {
            builder = builder.with_token(&endpoint.session_token);
        }
    }
    builder = builder.with_http_connector(GuardedConnector { policy });
    builder.build().map_err(|e| {
        ApiError::new(
            ErrorCode::ValidationError,
            format!("the S3 settings are not usable: {}", describe(&e)),
        )
    })
}

/// The message of a bucket error with its causes.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// A bucket error as the API reports it: what went wrong in words a user can act on.
fn unreachable(bucket: &str, action: &str, e: &object_store::Error) -> ApiError {
    let text = describe(e);
    let why = if text.contains("private, loopback or link-local") {
        return ApiError::field(ErrorCode::PrivateTarget, "s3_endpoint", text);
    } else if text.contains("NoSuchBucket") {
        format!("bucket {bucket} does not exist")
    } else if text.contains("InvalidAccessKeyId")
        || text.contains("SignatureDoesNotMatch")
        || text.contains("403")
        || matches!(
            e,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        )
    {
        format!(
            "the bucket {bucket} refused the credentials (check aws_access_key_id, aws_secret_access_key and aws_session_token, and that they may {action})"
        )
    } else if matches!(e, object_store::Error::NotFound { .. }) || text.contains("404") {
        format!("bucket {bucket} does not exist or is not visible with these credentials")
    } else {
        format!("cannot {action} bucket {bucket}")
    };
    ApiError {
        internal: Some(text.clone()),
        ..ApiError::new(ErrorCode::StorageUnreachable, format!("{why}: {text}"))
    }
}

fn prefix_path(prefix: &str) -> Option<ObjectPath> {
    let p = prefix.trim_matches('/');
    (!p.is_empty()).then(|| ObjectPath::from(p))
}

/// Checks that the bucket answers a listing of the prefix with these credentials.
pub async fn check(endpoint: &Endpoint, policy: Arc<TargetPolicy>, prefix: &str) -> ApiResult<()> {
    let store = store(endpoint, policy)?;
    let mut listing = store.list(prefix_path(prefix).as_ref());
    match listing.next().await {
        None | Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(unreachable(&endpoint.bucket, "list", &e)),
    }
}

/// The `s3://bucket/key` URL a task carries for an object.
pub fn blob_url(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

/// Bucket and key of an `s3://bucket/key` URL.
pub fn parse_blob_url(uri: &str) -> Option<(String, String)> {
    let rest = uri.trim().strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then(|| (bucket.to_string(), key.to_string()))
}

/// Enqueues the sync of a storage (queue `high`) as job `job_id`, run as `user`.
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
    job.timeout = Duration::from_secs(6 * 3600);
    job.max_attempts = 3;
    jobs.enqueue(&job).await.map_err(ApiError::internal)
}

/// What the sync job needs.
#[derive(Clone)]
struct Context {
    db: Db,
    jobs: Jobs,
    config: crate::config::Config,
    sealer: Arc<Sealer>,
    policy: Arc<TargetPolicy>,
}

/// Counters of a sync, shown as the storage's `meta`.
#[derive(Debug, Default, serde::Serialize)]
struct Counters {
    /// Objects the listing returned under the prefix.
    listed: u64,
    /// Listed objects left out by `recursive_scan` or `regex_filter`.
    filtered: u64,
    /// Objects no earlier sync saw.
    new: u64,
    /// Objects whose entity tag or size changed since they were imported.
    changed: u64,
    /// Objects imported before and unchanged.
    unchanged: u64,
    /// Objects read and imported (or recorded) by this sync.
    imported_objects: u64,
    /// Tasks this sync created.
    tasks: i64,
    /// Export: objects written / deleted.
    written: u64,
    deleted: u64,
    /// Objects that were listed but gone when read (deleted meanwhile): skipped.
    missing: Vec<String>,
    /// Where the sync is: `listing`, `importing`, `exporting`, `done`.
    phase: &'static str,
}

impl Counters {
    fn meta(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or_else(|_| json!({}));
        if let Some(m) = v.get_mut("missing").and_then(Value::as_array_mut) {
            m.truncate(100);
        }
        v["missing_count"] = json!(self.missing.len());
        v
    }
}

/// Registers `storage.s3.sync`.
pub fn register(
    db: Db,
    jobs: Jobs,
    config: crate::config::Config,
    sealer: Arc<Sealer>,
    handlers: Handlers,
) -> Handlers {
    let policy = Arc::new(TargetPolicy::parse(&config.allow_private_targets).unwrap_or_default());
    let ctx = Context {
        db,
        jobs,
        config,
        sealer,
        policy,
    };
    handlers.on(SYNC_JOB, move |job| {
        let ctx = ctx.clone();
        async move {
            let id = job.leased.payload["storage"]
                .as_i64()
                .ok_or("the job has no storage id")?;
            let user = job.leased.payload["user"].as_i64().unwrap_or(0);
            let last = job.leased.attempt >= job.leased.max_attempts;
            let mut counters = Counters::default();
            match sync(&ctx, id, user, &mut counters).await {
                Ok(count) => {
                    counters.phase = "done";
                    s3storages::finish_sync(&ctx.db, id, Ok(count), &counters.meta())
                        .await
                        .map_err(|e| e.detail)?;
                    Ok(json!({"status": "completed", "count": count, "meta": counters.meta()}))
                }
                Err(e) if e.code.status().is_client_error() || last => {
                    s3storages::finish_sync(
                        &ctx.db,
                        id,
                        Err(e.detail.clone()),
                        &counters.meta(),
                    )
                    .await
                    .map_err(|e| e.detail)?;
                    Ok(json!({"status": "failed", "error": e.detail}))
                }
                Err(e) => {
                    tracing::warn!(storage = id, error = %e.detail, internal = ?e.internal, "an S3 storage sync failed; it will be retried");
                    Err(e.detail)
                }
            }
        }
    })
}

/// Runs a sync as the user who asked for it, with their rights as they are now. Answers the
/// tasks created (import) or objects written (export).
async fn sync(ctx: &Context, id: i64, user: i64, counters: &mut Counters) -> ApiResult<i64> {
    let Some(row) = s3storages::by_id(&ctx.db, id).await? else {
        return Ok(0);
    };
    let actor = match user {
        0 => Actor::instance(row.organization_id, RequestMeta::default()),
        u => match users::actor_for_user(&ctx.db, u).await? {
            Some(a) if a.org_id == row.organization_id => a,
            _ => {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "the user who started the sync is no longer active in this organization",
                ));
            }
        },
    };
    let store = store(&row.endpoint(&ctx.sealer)?, ctx.policy.clone())?;
    if row.direction == storages::Direction::Export.as_str() {
        counters.phase = "exporting";
        s3storages::progress(&ctx.db, id, "in_progress", &counters.meta()).await?;
        return export(ctx, &actor, &row, &store, counters).await;
    }
    counters.phase = "listing";
    s3storages::progress(&ctx.db, id, "in_progress", &counters.meta()).await?;
    let pending = list(ctx, &row, &store, counters).await?;
    counters.phase = "importing";
    s3storages::progress(&ctx.db, id, "in_progress", &counters.meta()).await?;
    if row.use_blob_urls {
        import_blobs(ctx, &actor, &row, pending, counters).await?;
    } else {
        import_json(ctx, &actor, &row, &store, pending, counters).await?;
    }
    Ok(counters.tasks)
}

/// An object the listing found new or changed.
#[derive(Debug, Clone)]
struct Pending {
    key: String,
    etag: Option<String>,
    size: i64,
    changed: bool,
}

/// Lists the prefix and answers the objects to import: new ones and changed ones.
async fn list(
    ctx: &Context,
    row: &S3StorageRow,
    store: &AmazonS3,
    counters: &mut Counters,
) -> ApiResult<Vec<Pending>> {
    let known = s3storages::known_objects(&ctx.db, row.id).await?;
    let filter = crate::localfiles::filter(&row.regex_filter)?;
    let prefix = prefix_path(&row.prefix);
    let folder = prefix.as_ref().map(|p| format!("{p}/")).unwrap_or_default();
    let mut listing = store.list(prefix.as_ref());
    let mut pending = Vec::new();
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|e| unreachable(&row.bucket, "list", &e))?;
        counters.listed += 1;
        let key = meta.location.to_string();
        let below = key.strip_prefix(folder.as_str()).unwrap_or(&key);
        if (!row.recursive_scan && below.contains('/'))
            || filter.as_ref().is_some_and(|re| !re.is_match(&key))
        {
            counters.filtered += 1;
            continue;
        }
        let size = i64::try_from(meta.size).unwrap_or(i64::MAX);
        let changed = match known.get(&key) {
            None => false,
            Some((etag, known_size)) if *etag == meta.e_tag && *known_size == Some(size) => {
                counters.unchanged += 1;
                continue;
            }
            Some(_) => true,
        };
        if changed {
            counters.changed += 1;
        } else {
            counters.new += 1;
        }
        pending.push(Pending {
            key,
            etag: meta.e_tag,
            size,
            changed,
        });
        if counters.listed.is_multiple_of(10_000) {
            s3storages::progress(&ctx.db, row.id, "in_progress", &counters.meta()).await?;
        }
    }
    Ok(pending)
}

/// `use_blob_urls`: each new object becomes a task with its `s3://` URL; a changed object
/// keeps its task (the URL is the same and media are read when shown) and only its record is
/// updated.
async fn import_blobs(
    ctx: &Context,
    actor: &Actor,
    row: &S3StorageRow,
    pending: Vec<Pending>,
    counters: &mut Counters,
) -> ApiResult<()> {
    let data_key = storages::data_key(&ctx.db, row.project_id).await?;
    let spool = spool_dir(&ctx.config)?;
    for chunk in pending.chunks(BLOB_BATCH) {
        let (changed, new): (Vec<&Pending>, Vec<&Pending>) = chunk.iter().partition(|p| p.changed);
        let records: Vec<_> = changed
            .iter()
            .map(|p| (p.key.clone(), p.etag.clone(), Some(p.size)))
            .collect();
        s3storages::record_objects(&ctx.db, row.id, &records).await?;
        counters.imported_objects += changed.len() as u64;
        if new.is_empty() {
            continue;
        }
        let file = tempfile::NamedTempFile::new_in(&spool).map_err(ApiError::internal)?;
        {
            let mut out = std::io::BufWriter::new(file.as_file());
            let tasks: Vec<Value> = new
                .iter()
                .map(|p| json!({"data": {data_key.as_str(): blob_url(&row.bucket, &p.key)}}))
                .collect();
            serde_json::to_writer(&mut out, &tasks).map_err(ApiError::internal)?;
            std::io::Write::flush(&mut out).map_err(ApiError::internal)?;
        }
        let objects: Vec<ClaimedObject> = new
            .iter()
            .map(|p| ClaimedObject {
                key: p.key.clone(),
                tasks: 1,
                source: None,
                etag: p.etag.clone(),
                size: Some(p.size),
                replaces: false,
            })
            .collect();
        let sources = [ImportSource {
            path: file.path().to_path_buf(),
            format: ImportFormat::Json,
            extension: ".json".into(),
        }];
        counters.tasks += import(ctx, actor, row, &sources, &objects).await?;
        counters.imported_objects += new.len() as u64;
        s3storages::progress(&ctx.db, row.id, "in_progress", &counters.meta()).await?;
    }
    Ok(())
}

/// An object read to a spool file.
struct Fetched {
    pending: Pending,
    /// `None`: the object was gone when read.
    file: Option<tempfile::NamedTempFile>,
    etag: Option<String>,
    size: i64,
    tasks: usize,
}

/// Reads one JSON/JSONL object to a spool file, counting (and checking) its tasks on the way.
async fn fetch(
    store: &AmazonS3,
    bucket: &str,
    spool: &std::path::Path,
    pending: Pending,
) -> ApiResult<Fetched> {
    let path = ObjectPath::from(pending.key.as_str());
    let result = match store.get(&path).await {
        Ok(r) => r,
        Err(object_store::Error::NotFound { .. }) => {
            return Ok(Fetched {
                pending,
                file: None,
                etag: None,
                size: 0,
                tasks: 0,
            });
        }
        Err(e) => return Err(unreachable(bucket, "read objects of", &e)),
    };
    if result.meta.size > MAX_JSON_OBJECT {
        return Err(ApiError::new(
            ErrorCode::InvalidImport,
            format!(
                "{} is larger than {MAX_JSON_OBJECT} bytes; split it, or set use_blob_urls to make each object a task",
                pending.key
            ),
        ));
    }
    let etag = result.meta.e_tag.clone();
    let size = i64::try_from(result.meta.size).unwrap_or(i64::MAX);
    let file = tempfile::NamedTempFile::new_in(spool).map_err(ApiError::internal)?;
    let mut out = tokio::fs::File::from_std(file.reopen().map_err(ApiError::internal)?);
    let mut splitter = JsonSplitter::new();
    let mut tasks = 0usize;
    let invalid = |key: &str, why: String| {
        ApiError::new(
            ErrorCode::InvalidImport,
            format!(
                "{key} is not a JSON task, list of tasks or JSON lines ({why}); set use_blob_urls to make each object a task, or narrow regex_filter (e.g. .*\\.jsonl?$)"
            ),
        )
    };
    let mut body = result.into_stream();
    loop {
        let chunk = match body.try_next().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(object_store::Error::NotFound { .. }) => {
                return Ok(Fetched {
                    pending,
                    file: None,
                    etag: None,
                    size: 0,
                    tasks: 0,
                });
            }
            Err(e) => return Err(unreachable(bucket, "read objects of", &e)),
        };
        let mut found = Vec::new();
        splitter
            .feed(&chunk, &mut found)
            .map_err(|e| invalid(&pending.key, e.message))?;
        for task in &found {
            serde_json::from_slice::<serde::de::IgnoredAny>(task)
                .map_err(|e| invalid(&pending.key, e.to_string()))?;
        }
        tasks += found.len();
        out.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    splitter
        .finish()
        .map_err(|e| invalid(&pending.key, e.message))?;
    out.flush().await.map_err(ApiError::internal)?;
    Ok(Fetched {
        pending,
        file: Some(file),
        etag,
        size,
        tasks,
    })
}

/// JSON/JSONL objects: read up to `CONCURRENCY` at once to spool files, imported in batches
/// (at most `JSON_BATCH_OBJECTS` objects or about `JSON_BATCH_TASKS` tasks per transaction).
async fn import_json(
    ctx: &Context,
    actor: &Actor,
    row: &S3StorageRow,
    store: &AmazonS3,
    pending: Vec<Pending>,
    counters: &mut Counters,
) -> ApiResult<()> {
    let spool = spool_dir(&ctx.config)?;
    let (bucket, spool_dir) = (row.bucket.clone(), spool.clone());
    let mut reads = futures::stream::iter(pending)
        .map(move |p| {
            let (store, bucket, spool) = (store.clone(), bucket.clone(), spool_dir.clone());
            async move { fetch(&store, &bucket, &spool, p).await }
        })
        .buffered(CONCURRENCY);
    let mut batch: Vec<Fetched> = Vec::new();
    let mut batch_tasks = 0usize;
    loop {
        let next = reads.next().await.transpose()?;
        let done = next.is_none();
        if let Some(fetched) = next {
            match fetched.file {
                None => counters.missing.push(fetched.pending.key),
                Some(_) if fetched.tasks == 0 => {
                    // An empty list: recorded so it is not read again until it changes.
                    s3storages::record_objects(
                        &ctx.db,
                        row.id,
                        &[(
                            fetched.pending.key.clone(),
                            fetched.etag.clone(),
                            Some(fetched.size),
                        )],
                    )
                    .await?;
                    counters.imported_objects += 1;
                }
                Some(_) => {
                    batch_tasks += fetched.tasks;
                    batch.push(fetched);
                }
            }
        }
        if !batch.is_empty()
            && (done || batch.len() >= JSON_BATCH_OBJECTS || batch_tasks >= JSON_BATCH_TASKS)
        {
            let taken = std::mem::take(&mut batch);
            batch_tasks = 0;
            let mut sources = Vec::with_capacity(taken.len());
            let mut objects = Vec::with_capacity(taken.len());
            for (i, f) in taken.iter().enumerate() {
                let Some(file) = &f.file else { continue };
                sources.push(ImportSource {
                    path: file.path().to_path_buf(),
                    format: ImportFormat::Json,
                    extension: if f.pending.key.ends_with(".jsonl") {
                        ".jsonl".into()
                    } else {
                        ".json".into()
                    },
                });
                objects.push(ClaimedObject {
                    key: f.pending.key.clone(),
                    tasks: f.tasks as i64,
                    source: Some(i),
                    etag: f.etag.clone(),
                    size: Some(f.size),
                    replaces: f.pending.changed,
                });
            }
            counters.tasks += import(ctx, actor, row, &sources, &objects).await?;
            counters.imported_objects += objects.len() as u64;
            drop(taken);
            s3storages::progress(&ctx.db, row.id, "in_progress", &counters.meta()).await?;
        }
        if done {
            break;
        }
    }
    Ok(())
}

fn spool_dir(config: &crate::config::Config) -> ApiResult<std::path::PathBuf> {
    let spool = config.data_dir.join("tmp");
    std::fs::create_dir_all(&spool).map_err(ApiError::internal)?;
    Ok(spool)
}

/// Imports spooled sources and records their objects, in one transaction.
async fn import(
    ctx: &Context,
    actor: &Actor,
    row: &S3StorageRow,
    sources: &[ImportSource],
    objects: &[ClaimedObject],
) -> ApiResult<i64> {
    let summary = tasks::import_with(
        &ctx.db,
        actor,
        row.project_id,
        sources,
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
        &ctx.db,
        &ctx.jobs,
        row.organization_id,
        row.project_id,
        created,
        summary.annotation_count > 0,
    )
    .await;
    Ok(summary.task_count)
}

/// The key of an annotation in an export storage.
pub fn export_key(prefix: &str, annotation: i64) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        annotation.to_string()
    } else {
        format!("{prefix}/{annotation}")
    }
}

/// Writes every annotation of the project as `<prefix>/<annotation id>` (the annotation with
/// its task nested, as the local-files export storage writes it); a re-run rewrites the same
/// keys. With `can_delete_objects`, objects written earlier for annotations that no longer
/// exist are deleted. Answers the objects written.
async fn export(
    ctx: &Context,
    actor: &Actor,
    row: &S3StorageRow,
    store: &AmazonS3,
    counters: &mut Counters,
) -> ApiResult<i64> {
    access::project(&ctx.db, actor, row.project_id, Permission::ExportRun).await?;
    let known: HashSet<String> = s3storages::known_objects(&ctx.db, row.id)
        .await?
        .into_keys()
        .collect();
    let mut written: HashSet<String> = HashSet::new();
    let mut after = 0;
    loop {
        let batch = storages::export_batch(&ctx.db, row.project_id, after).await?;
        let Some((last, _)) = batch.last() else {
            break;
        };
        after = *last;
        let (prefix, bucket) = (row.prefix.clone(), row.bucket.clone());
        let results: Vec<(String, Option<String>, Option<i64>)> = futures::stream::iter(batch)
            .map(move |(id, value)| {
                let (store, prefix, bucket) = (store.clone(), prefix.clone(), bucket.clone());
                async move {
                    let key = export_key(&prefix, id);
                    let bytes = serde_json::to_vec(&value).map_err(ApiError::internal)?;
                    let size = bytes.len() as i64;
                    let put = store
                        .put(&ObjectPath::from(key.as_str()), PutPayload::from(bytes))
                        .await
                        .map_err(|e| unreachable(&bucket, "write objects to", &e))?;
                    Ok::<_, ApiError>((key, put.e_tag, Some(size)))
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        counters.written += results.len() as u64;
        written.extend(results.iter().map(|(k, _, _)| k.clone()));
        s3storages::record_objects(&ctx.db, row.id, &results).await?;
        s3storages::progress(&ctx.db, row.id, "in_progress", &counters.meta()).await?;
    }
    if row.can_delete_objects {
        let stale: Vec<String> = known.difference(&written).cloned().collect();
        for chunk in stale.chunks(BLOB_BATCH) {
            let bucket = row.bucket.clone();
            futures::stream::iter(chunk.to_vec())
                .map(move |key| {
                    let (store, bucket) = (store.clone(), bucket.clone());
                    async move {
                        match store.delete(&ObjectPath::from(key.as_str())).await {
                            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                            Err(e) => Err(unreachable(&bucket, "delete objects of", &e)),
                        }
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .try_collect::<Vec<()>>()
                .await?;
            s3storages::forget_objects(&ctx.db, row.id, chunk).await?;
            counters.deleted += chunk.len() as u64;
        }
    }
    Ok(written.len() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        for ok in ["abc", "my-bucket.v2", "a1b"] {
            assert!(valid_bucket(ok), "{ok}");
        }
        for bad in ["ab", "Bucket", "-abc", "abc-", "a_b_c", &"x".repeat(64)] {
            assert!(!valid_bucket(bad), "{bad}");
        }
    }

    #[test]
    fn blob_urls_and_export_keys() {
        assert_eq!(blob_url("b", "x/y.png"), "s3://b/x/y.png");
        assert_eq!(
            parse_blob_url("s3://b/x/y.png"),
            Some(("b".into(), "x/y.png".into()))
        );
        assert_eq!(parse_blob_url("s3://b/"), None);
        assert_eq!(parse_blob_url("/data/local-files/?d=x"), None);
        assert_eq!(export_key("out/", 7), "out/7");
        assert_eq!(export_key("", 7), "7");
    }

    #[tokio::test]
    async fn private_endpoints_are_refused_unless_allowed() {
        let endpoint = Endpoint {
            bucket: "bucket".into(),
            endpoint: "http://127.0.0.1:9".into(),
            ..Default::default()
        };
        let refused = store(&endpoint, Arc::new(TargetPolicy::default())).unwrap_err();
        assert_eq!(refused.code, ErrorCode::PrivateTarget);
        let allowed = TargetPolicy::parse("127.0.0.1").expect("policy");
        assert!(store(&endpoint, Arc::new(allowed)).is_ok());
        // A name that resolves to a private address is refused when connecting.
        let named = Endpoint {
            endpoint: "http://localhost:9".into(),
            ..endpoint
        };
        let err = check(&named, Arc::new(TargetPolicy::default()), "")
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::PrivateTarget, "{}", err.detail);
    }
}
