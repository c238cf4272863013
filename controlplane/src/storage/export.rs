//! Streaming export of a project's tasks as JSON, JSON_MIN, CSV, TSV or one of the converter
//! formats (YOLO, YOLO_OBB, COCO, VOC; `crate::domain::convert`).
//!
//! Tasks are read in keyset pages of [`PAGE`] and written to a bounded channel that the HTTP
//! body drains, so memory is bounded by one page whatever the project's size, and a slow client
//! slows the reader instead of filling memory.

use std::collections::BTreeSet;

use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::{
    Db, Dialect,
    projects::ProjectRow,
    tasks::{self, TASK_COLUMNS, TaskRow},
    with_read,
};
use crate::{
    domain::convert::{Converter, Schema, Target},
    error::{ApiError, ApiResult, ErrorCode},
};

/// Tasks per page read from the database.
const PAGE: i64 = 500;

/// Converter output passed on before the page ends once it reaches this size (1 MiB).
const FLUSH: usize = 1 << 20;

/// Export formats offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// Label Studio's full task JSON.
    Json,
    /// One flat object per annotation.
    JsonMin,
    /// Comma-separated, one row per annotation.
    Csv,
    /// Tab-separated, one row per annotation.
    Tsv,
    /// The converter's older CSV layout, one row per region (`crate::domain::csv_old`).
    CsvOld,
    /// One of the converter's formats (YOLO, YOLO_OBB, COCO, VOC, BRUSH_TO_NUMPY,
    /// BRUSH_TO_PNG, BRUSH_TO_COCO, ASR_MANIFEST: a zip archive; CONLL2003).
    Converted(Target),
}

impl ExportFormat {
    /// Parses `exportType` (case-insensitive).
    pub fn parse(s: &str) -> ApiResult<Self> {
        match s.to_ascii_uppercase().as_str() {
            "JSON" => Ok(Self::Json),
            "JSON_MIN" => Ok(Self::JsonMin),
            "CSV" => Ok(Self::Csv),
            "TSV" => Ok(Self::Tsv),
            "CSV_OLD" => Ok(Self::CsvOld),
            "YOLO" => Ok(Self::Converted(Target::Yolo)),
            "YOLO_OBB" => Ok(Self::Converted(Target::YoloObb)),
            "COCO" => Ok(Self::Converted(Target::Coco)),
            "VOC" => Ok(Self::Converted(Target::Voc)),
            "CONLL2003" => Ok(Self::Converted(Target::Conll2003)),
            "BRUSH_TO_NUMPY" => Ok(Self::Converted(Target::BrushNumpy)),
            "BRUSH_TO_PNG" => Ok(Self::Converted(Target::BrushPng)),
            "BRUSH_TO_COCO" => Ok(Self::Converted(Target::BrushCoco)),
            "ASR_MANIFEST" => Ok(Self::Converted(Target::AsrManifest)),
            "YOLO_WITH_IMAGES" => Ok(Self::Converted(Target::YoloImages)),
            "YOLO_OBB_WITH_IMAGES" => Ok(Self::Converted(Target::YoloObbImages)),
            "COCO_WITH_IMAGES" => Ok(Self::Converted(Target::CocoImages)),
            other => Err(ApiError::field(
                ErrorCode::InvalidQuery,
                "exportType",
                format!(
                    "{other} is not supported; use JSON, JSON_MIN, CSV, CSV_OLD, TSV, YOLO, YOLO_WITH_IMAGES, YOLO_OBB, YOLO_OBB_WITH_IMAGES, COCO, COCO_WITH_IMAGES, VOC, CONLL2003, BRUSH_TO_NUMPY, BRUSH_TO_PNG, BRUSH_TO_COCO or ASR_MANIFEST"
                ),
            )),
        }
    }

    /// Label Studio's name of the format.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "JSON",
            Self::JsonMin => "JSON_MIN",
            Self::Csv => "CSV",
            Self::Tsv => "TSV",
            Self::CsvOld => "CSV_OLD",
            Self::Converted(t) => t.name(),
        }
    }

    /// Every format, in Label Studio's order (`CSV_OLD` last: Label Studio does not list it).
    pub const ALL: [ExportFormat; 17] = [
        Self::Json,
        Self::JsonMin,
        Self::Csv,
        Self::Tsv,
        Self::Converted(Target::Conll2003),
        Self::Converted(Target::Coco),
        Self::Converted(Target::CocoImages),
        Self::Converted(Target::Voc),
        Self::Converted(Target::Yolo),
        Self::Converted(Target::YoloImages),
        Self::Converted(Target::YoloObb),
        Self::Converted(Target::YoloObbImages),
        Self::Converted(Target::BrushNumpy),
        Self::Converted(Target::BrushPng),
        Self::Converted(Target::BrushCoco),
        Self::Converted(Target::AsrManifest),
        Self::CsvOld,
    ];

    /// Refuses a format that does not fit the project's label config (400
    /// `export_format_unsupported`, saying what the format needs), as Label Studio offers only
    /// the formats its converter supports for the config.
    pub fn check(self, project: &ProjectRow) -> ApiResult<()> {
        let Self::Converted(target) = self else {
            return Ok(());
        };
        Schema::parse(&project.label_config)
            .fits(target)
            .map_err(|why| {
                ApiError::new(
                    ErrorCode::ExportFormatUnsupported,
                    format!(
                        "project {} cannot be exported as {}: {why}",
                        project.id,
                        target.name()
                    ),
                )
            })
    }

    /// File extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Json | Self::JsonMin => "json",
            Self::Csv | Self::CsvOld => "csv",
            Self::Tsv => "tsv",
            Self::Converted(Target::Conll2003) => "conll",
            Self::Converted(_) => "zip",
        }
    }

    /// Content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json | Self::JsonMin => "application/json",
            Self::Csv | Self::CsvOld => "text/csv; charset=utf-8",
            Self::Tsv => "text/tab-separated-values; charset=utf-8",
            Self::Converted(Target::Conll2003) => "text/plain; charset=utf-8",
            Self::Converted(_) => "application/zip",
        }
    }
}

/// Which tasks to export.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Include tasks without annotations.
    pub all_tasks: bool,
    /// Only these task ids.
    pub ids: Option<Vec<i64>>,
    /// CSV/TSV: write cells that start like a spreadsheet formula as they are, instead of
    /// neutralising them (see [`csv_line`]).
    pub keep_formulas: bool,
    /// `task_filter_options.reviewed`: only reviewed tasks (`Some(true)`), only tasks not
    /// reviewed (`Some(false)`), by the project's `review_criteria`.
    pub reviewed: Option<bool>,
}

impl Selection {
    fn condition(&self, dialect: Dialect) -> String {
        let mut c = String::new();
        if let Some(reviewed) = self.reviewed {
            let want = if reviewed { 1 } else { 0 };
            c.push_str(&format!(" and {} = {want}", tasks::reviewed_sql(dialect)));
        }
        if !self.all_tasks {
            c.push_str(" and (t.total_annotations + t.cancelled_annotations) > 0");
        }
        if let Some(ids) = &self.ids {
            let list = if ids.is_empty() {
                "0".into()
            } else {
                ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
            };
            c.push_str(&format!(" and t.id in ({list})"));
        }
        c
    }
}

async fn page(db: &Db, project_id: i64, after: i64, condition: &str) -> ApiResult<Vec<TaskRow>> {
    Ok(with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {TASK_COLUMNS} from task t where t.project_id = $1 and t.id > $2{condition} order by t.id limit $3"
        ))
        .bind(project_id)
        .bind(after)
        .bind(PAGE)
        .fetch_all(conn)
        .await?
    }))
}

type Chunk = Result<Bytes, std::io::Error>;

/// Starts producing the export in the background and returns the receiving end of its chunks.
pub fn start(
    db: Db,
    project: ProjectRow,
    format: ExportFormat,
    selection: Selection,
    media: MediaFiles,
) -> mpsc::Receiver<Chunk> {
    // Four pages in flight at most: enough to keep the socket busy, small enough to bound memory.
    let (tx, rx) = mpsc::channel::<Chunk>(4);
    tokio::spawn(async move {
        let result = produce(&db, &project, format, &selection, &media, &tx).await;
        if let Err(e) = result {
            tracing::error!(project = project.id, error = ?e, "export failed");
            let _ = tx
                .send(Err(std::io::Error::other(
                    "export failed; see the server log",
                )))
                .await;
        }
    });
    rx
}

async fn send(tx: &mpsc::Sender<Chunk>, bytes: Vec<u8>) -> ApiResult<()> {
    // A closed channel means the client went away: stop reading.
    tx.send(Ok(Bytes::from(bytes)))
        .await
        .map_err(|_| ApiError::new(ErrorCode::Timeout, "client disconnected"))
}

async fn produce(
    db: &Db,
    project: &ProjectRow,
    format: ExportFormat,
    selection: &Selection,
    media: &MediaFiles,
    tx: &mpsc::Sender<Chunk>,
) -> ApiResult<()> {
    let condition = selection.condition(db.dialect());
    if let ExportFormat::Converted(target) = format {
        return produce_converted(db, project, target, &condition, media, tx).await;
    }
    let neutralize = !selection.keep_formulas;
    if format == ExportFormat::CsvOld {
        return produce_csv_old(db, project.id, &condition, neutralize, tx).await;
    }
    let controls = controls(project);
    let columns = if matches!(format, ExportFormat::Csv | ExportFormat::Tsv) {
        Some(csv_columns(db, project.id, &condition, &controls).await?)
    } else {
        None
    };
    let mut after = 0i64;
    let mut first = true;
    match format {
        ExportFormat::Json | ExportFormat::JsonMin => send(tx, b"[".to_vec()).await?,
        ExportFormat::Csv | ExportFormat::Tsv => {
            let sep = if format == ExportFormat::Csv {
                b','
            } else {
                b'\t'
            };
            let cols = columns.as_deref().unwrap_or_default();
            send(
                tx,
                csv_line(cols.iter().map(String::as_str), sep, neutralize),
            )
            .await?;
        }
        ExportFormat::Converted(_) | ExportFormat::CsvOld => {}
    }
    loop {
        let rows = page(db, project.id, after, &condition).await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        // Exports need export.run (managers and above), who see every annotation.
        let views = tasks::with_nested(db, &rows, tasks::Visible::All).await?;
        let mut reviews = if format == ExportFormat::Json {
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            super::reviews::export_briefs(db, &ids).await?
        } else {
            Default::default()
        };
        let mut out = Vec::with_capacity(rows.len() * 256);
        for view in views {
            let mut task = serde_json::to_value(&view).map_err(ApiError::internal)?;
            match format {
                ExportFormat::Json => {
                    if let Some(obj) = task.as_object_mut() {
                        for key in ["annotators", "is_labeled", "overlap"] {
                            obj.remove(key);
                        }
                        // Label Studio Enterprise nests each annotation's reviews.
                        if let Some(anns) = obj.get_mut("annotations").and_then(Value::as_array_mut)
                        {
                            for ann in anns.iter_mut().filter_map(Value::as_object_mut) {
                                let id = ann.get("id").and_then(Value::as_i64).unwrap_or(0);
                                let list = reviews.remove(&id).unwrap_or_default();
                                ann.insert("reviews".into(), Value::Array(list));
                            }
                        }
                    }
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    serde_json::to_writer(&mut out, &task).map_err(ApiError::internal)?;
                }
                ExportFormat::JsonMin | ExportFormat::Csv | ExportFormat::Tsv => {
                    for row in min_rows(&task) {
                        if format == ExportFormat::JsonMin {
                            if !first {
                                out.push(b',');
                            }
                            first = false;
                            serde_json::to_writer(&mut out, &row).map_err(ApiError::internal)?;
                        } else {
                            let sep = if format == ExportFormat::Csv {
                                b','
                            } else {
                                b'\t'
                            };
                            let cols = columns.as_deref().unwrap_or_default();
                            let cells: Vec<String> =
                                cols.iter().map(|c| cell(row.get(c))).collect();
                            out.extend(csv_line(cells.iter().map(String::as_str), sep, neutralize));
                        }
                    }
                }
                ExportFormat::Converted(_) | ExportFormat::CsvOld => {}
            }
        }
        send(tx, out).await?;
        if (rows.len() as i64) < PAGE {
            break;
        }
    }
    if matches!(format, ExportFormat::Json | ExportFormat::JsonMin) {
        send(tx, b"]".to_vec()).await?;
    }
    Ok(())
}

/// `CSV_OLD`: a first pass over the tasks collects the columns (bounded by their number), the
/// second writes one row per region.
async fn produce_csv_old(
    db: &Db,
    project_id: i64,
    condition: &str,
    neutralize: bool,
    tx: &mpsc::Sender<Chunk>,
) -> ApiResult<()> {
    let mut columns = crate::domain::csv_old::Columns::default();
    for pass in 0..2 {
        if pass == 1 {
            let header = csv_line(
                columns.header().iter().map(String::as_str),
                b',',
                neutralize,
            );
            send(tx, header).await?;
        }
        let mut after = 0i64;
        loop {
            let rows = page(db, project_id, after, condition).await?;
            let Some(last) = rows.last() else { break };
            after = last.id;
            let views = tasks::with_nested(db, &rows, tasks::Visible::All).await?;
            let mut out = Vec::new();
            for view in views {
                let task = serde_json::to_value(&view).map_err(ApiError::internal)?;
                if pass == 0 {
                    columns.add_task(&task);
                    continue;
                }
                for cells in columns.rows(&task) {
                    out.extend(csv_line(cells.iter().map(String::as_str), b',', neutralize));
                }
            }
            send(tx, out).await?;
            if (rows.len() as i64) < PAGE {
                break;
            }
        }
    }
    Ok(())
}

/// The current UTC time as the converter stamps files (year, month, day, hour, minute, second).
pub(crate) fn stamp() -> (i32, u8, u8, u8, u8, u8) {
    let now = time::OffsetDateTime::now_utc();
    (
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
    )
}

/// A converter format: the tasks' export JSON, page by page, through the converter (twice for
/// COCO, whose images come before its categories). Memory: a page, the categories and the
/// zip's directory.
async fn produce_converted(
    db: &Db,
    project: &ProjectRow,
    target: Target,
    condition: &str,
    media: &MediaFiles,
    tx: &mpsc::Sender<Chunk>,
) -> ApiResult<()> {
    let mut conv = Converter::new(target, &project.label_config, stamp())
        .map_err(|e| ApiError::new(ErrorCode::ExportFormatUnsupported, e.to_string()))?;
    for pass in 0..conv.passes() {
        let mut out = Vec::new();
        conv.start(pass, &mut out).map_err(ApiError::internal)?;
        send(tx, out).await?;
        let mut after = 0i64;
        loop {
            let rows = page(db, project.id, after, condition).await?;
            let Some(last) = rows.last() else { break };
            after = last.id;
            let views = tasks::with_nested(db, &rows, tasks::Visible::All).await?;
            let mut out = Vec::with_capacity(rows.len() * 64);
            for view in views {
                let task = serde_json::to_value(&view).map_err(ApiError::internal)?;
                convert_task(
                    db,
                    media,
                    project.id,
                    &mut conv,
                    &task,
                    &mut out,
                    &mut ChannelSink(tx),
                    ApiError::internal,
                )
                .await?;
                // Brush masks and images are large: pass a task's files on rather than a page's.
                if out.len() >= FLUSH {
                    send(tx, std::mem::take(&mut out)).await?;
                }
            }
            send(tx, out).await?;
            if (rows.len() as i64) < PAGE {
                break;
            }
        }
    }
    let mut out = Vec::new();
    log_missing(project.id, &conv);
    conv.finish(&mut out).map_err(ApiError::internal)?;
    send(tx, out).await
}

/// Where [`convert_task`] passes a converter's output on while it copies a large image.
pub(crate) trait Sink {
    /// The sink's error.
    type Error;
    /// Takes the next bytes.
    fn put(&mut self, bytes: Vec<u8>) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// The direct export's channel to the HTTP body.
struct ChannelSink<'a>(&'a mpsc::Sender<Chunk>);

impl Sink for ChannelSink<'_> {
    type Error = ApiError;
    fn put(&mut self, bytes: Vec<u8>) -> impl Future<Output = ApiResult<()>> + Send {
        send(self.0, bytes)
    }
}

/// Runs one task through the converter with what it reads from media: the audio's duration
/// (ASR manifest), the image copied into the archive (`*_WITH_IMAGES`, read in 64 KiB pieces,
/// `sink` taking `out` whenever it holds [`FLUSH`] bytes, so an image is never held whole). An
/// image that cannot be read is left out, logged and counted in the archive comment; one that
/// fails while it is being copied stops the export (its entry is half written).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn convert_task<S: Sink>(
    db: &Db,
    media: &MediaFiles,
    project: i64,
    conv: &mut Converter,
    task: &Value,
    out: &mut Vec<u8>,
    sink: &mut S,
    fail: impl Fn(String) -> S::Error,
) -> Result<(), S::Error> {
    use tokio::io::AsyncReadExt;
    if let Some((entry, url)) = conv.image_of(task) {
        match media.open(db, project, &url).await {
            Some(mut file) => {
                conv.image_begin(&entry, out)
                    .map_err(|e| fail(e.to_string()))?;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = file
                        .read(&mut buf)
                        .await
                        .map_err(|e| fail(format!("reading the image {url}: {e}")))?;
                    if n == 0 {
                        break;
                    }
                    conv.image_write(&buf[..n], out);
                    if out.len() >= FLUSH {
                        sink.put(std::mem::take(out)).await?;
                    }
                }
                conv.image_end(out).map_err(|e| fail(e.to_string()))?;
            }
            None => {
                let id = task.get("id").cloned().unwrap_or(Value::Null);
                conv.image_missing(&id, &url);
                if conv.images_missing() <= 20 {
                    tracing::warn!(project, task = %id, url, "export: the task's image cannot be read; it is left out of the archive");
                }
            }
        }
    }
    let duration = media.duration_of(db, project, conv, task).await;
    conv.task_with_duration(task, duration, out)
        .map_err(|e| fail(e.to_string()))
}

/// Logs how many images an archive with images lacks (the first ones were logged one by one).
pub(crate) fn log_missing(project: i64, conv: &Converter) {
    let missing = conv.images_missing();
    if missing > 0 {
        tracing::warn!(
            project,
            missing,
            "export: images that could not be read were left out of the archive"
        );
    }
}

/// Where exports read the media of tasks, for what a format needs from the files themselves
/// (the ASR manifest's durations, the images of the `*_WITH_IMAGES` archives): files this server
/// serves (uploads under the data directory, files of the project's local-files storages) and,
/// for images, objects of the project's bucket storages (`s3://`, `gs://`, `azure-blob://`).
/// Other URLs (`http(s)://` anywhere) are not read (ADR 0046 addendum).
#[derive(Clone, Default)]
pub struct MediaFiles {
    data_dir: Option<std::path::PathBuf>,
    root: Option<crate::localfiles::Root>,
    /// The server's configuration, for the bucket storages' credentials and outbound rules.
    config: Option<std::sync::Arc<crate::config::Config>>,
    /// Bucket clients by storage id, made once per export (see [`MediaFiles::fresh`]).
    buckets: BucketClients,
}

/// Bucket clients of one export, by storage id.
type BucketClients = std::sync::Arc<
    std::sync::Mutex<std::collections::HashMap<i64, std::sync::Arc<dyn object_store::ObjectStore>>>,
>;

impl std::fmt::Debug for MediaFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaFiles")
            .field("data_dir", &self.data_dir)
            .field("root", &self.root)
            .field("buckets", &self.config.is_some())
            .finish()
    }
}

/// A task's media opened for reading: a file, or an object of a bucket as it streams in.
pub type MediaReader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

impl MediaFiles {
    /// The media of a server with this configuration.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            data_dir: Some(config.data_dir.clone()),
            root: crate::localfiles::Root::from_config(config).ok(),
            config: Some(std::sync::Arc::new(config.clone())),
            buckets: BucketClients::default(),
        }
    }

    /// The same media with no bucket client kept yet: one export's, so that a long-lived copy
    /// (the job worker's) never keeps a client past the export that made it (credentials and
    /// the organization's allow-list are read again by the next).
    pub fn fresh(&self) -> Self {
        Self {
            buckets: BucketClients::default(),
            ..self.clone()
        }
    }

    /// The file behind a task's media URL of project `project`, when this server serves it:
    /// `/data/upload/<project>/<file>` or `/data/local-files/?d=<path>` covered by one of the
    /// project's local-files storages.
    pub async fn path(&self, db: &Db, project: i64, url: &str) -> Option<std::path::PathBuf> {
        if let Some(rest) = url.strip_prefix("/data/upload/") {
            let (p, file) = rest.split_once('/')?;
            if p.parse::<i64>().ok()? != project || !super::uploads::valid_name(file) {
                return None;
            }
            return Some(super::uploads::project_dir(self.data_dir.as_ref()?, project).join(file));
        }
        let query = url
            .strip_prefix("/data/local-files")?
            .trim_start_matches('/')
            .strip_prefix('?')?;
        let d = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "d")?
            .1
            .into_owned();
        let root = self.root.as_ref()?;
        super::storages::covering_project_file(db, project, root, &d)
            .await
            .ok()??;
        root.relative(&d).ok()?
    }

    /// The media behind a task's URL opened for reading: a file this server serves (see
    /// [`MediaFiles::path`]), or an object `s3://`, `gs://`, `azure-blob://` of a bucket storage
    /// of the project holding it (its bucket and prefix, as the storage proxy decides), read with
    /// that storage's credentials under its organization's outbound rules and streamed, never
    /// held whole. `None` when it cannot be read (no such file or storage, object missing,
    /// access refused; the reason is logged at debug level).
    pub async fn open(&self, db: &Db, project: i64, url: &str) -> Option<MediaReader> {
        if let Some((provider, bucket, key)) = crate::cloud::parse_media_url(url) {
            return match self.open_object(db, project, provider, &bucket, &key).await {
                Ok(reader) => reader,
                Err(why) => {
                    tracing::debug!(project, url, why, "export: cannot read the bucket object");
                    None
                }
            };
        }
        let path = self.path(db, project, url).await?;
        let file = tokio::fs::File::open(path).await.ok()?;
        Some(Box::new(file))
    }

    /// The object `bucket`/`key` of a bucket storage of `project`: `Ok(None)` when no storage of
    /// the project holds it, `Err` (why) when it cannot be read.
    async fn open_object(
        &self,
        db: &Db,
        project: i64,
        provider: crate::cloud::Provider,
        bucket: &str,
        key: &str,
    ) -> Result<Option<MediaReader>, String> {
        let Some(config) = self.config.as_deref() else {
            return Ok(None);
        };
        let Some(row) =
            super::cloudstorages::covering_project_object(db, project, provider, bucket, key)
                .await
                .map_err(|e| e.detail)?
        else {
            return Ok(None);
        };
        let known = self
            .buckets
            .lock()
            .ok()
            .and_then(|b| b.get(&row.id).cloned());
        let store = match known {
            Some(store) => store,
            None => {
                let sealer =
                    crate::secrets::Sealer::for_config(config).map_err(|e| e.to_string())?;
                let store = row
                    .client(db, config, &sealer)
                    .await
                    .map_err(|e| e.detail)?
                    .store;
                if let Ok(mut b) = self.buckets.lock() {
                    b.insert(row.id, store.clone());
                }
                store
            }
        };
        let got = store
            .get_opts(
                &object_store::path::Path::from(key),
                object_store::GetOptions::default(),
            )
            .await
            .map_err(|e| crate::cloud::describe(&e))?;
        let stream = futures::StreamExt::map(got.into_stream(), |chunk| {
            chunk.map_err(std::io::Error::other)
        });
        Ok(Some(Box::new(tokio_util::io::StreamReader::new(stream))))
    }

    /// The duration of a task's audio when the converter reads one (ASR manifest) and it is a
    /// WAV file this server serves; `None` otherwise.
    pub async fn duration_of(
        &self,
        db: &Db,
        project: i64,
        conv: &Converter,
        task: &Value,
    ) -> Option<f64> {
        use tokio::io::AsyncReadExt;
        let url = conv.media_url(task)?;
        let path = self.path(db, project, &url).await?;
        let file = tokio::fs::File::open(path).await.ok()?;
        let mut head = Vec::new();
        file.take(crate::domain::media::WAV_HEAD as u64)
            .read_to_end(&mut head)
            .await
            .ok()?;
        crate::domain::media::wav_duration(&head)
    }
}

/// The flat rows of one task: one per annotation (or one with the data alone).
pub(crate) fn min_rows(task: &Value) -> Vec<Map<String, Value>> {
    let mut base = Map::new();
    base.insert("id".into(), task.get("id").cloned().unwrap_or(Value::Null));
    if let Some(Value::Object(data)) = task.get("data") {
        for (k, v) in data {
            base.insert(k.clone(), v.clone());
        }
    }
    let annotations = task
        .get("annotations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if annotations.is_empty() {
        return vec![base];
    }
    annotations
        .iter()
        .map(|a| {
            let mut row = base.clone();
            if let Some(items) = a.get("result").and_then(Value::as_array) {
                let mut grouped: Map<String, Value> = Map::new();
                for item in items {
                    let (Some(from), Some(kind)) = (
                        item.get("from_name").and_then(Value::as_str),
                        item.get("type").and_then(Value::as_str),
                    ) else {
                        continue;
                    };
                    let value = item.get("value").cloned().unwrap_or(Value::Null);
                    let simple = value.get(kind).cloned();
                    let entry = grouped
                        .entry(from.to_string())
                        .or_insert(Value::Array(Vec::new()));
                    if let Value::Array(list) = entry {
                        list.push(match simple {
                            Some(v) if value.as_object().is_some_and(|o| o.len() == 1) => v,
                            _ => value,
                        });
                    }
                }
                for (from, values) in grouped {
                    // A single classification collapses to its label, as Label Studio's JSON_MIN does.
                    let collapsed = match values {
                        Value::Array(mut list) if list.len() == 1 => match list.remove(0) {
                            Value::Array(mut inner) if inner.len() == 1 => inner.remove(0),
                            other => other,
                        },
                        other => other,
                    };
                    row.insert(from, collapsed);
                }
            }
            for (k, from) in [
                ("annotator", "completed_by"),
                ("annotation_id", "id"),
                ("created_at", "created_at"),
                ("updated_at", "updated_at"),
                ("lead_time", "lead_time"),
            ] {
                row.insert(k.into(), a.get(from).cloned().unwrap_or(Value::Null));
            }
            row
        })
        .collect()
}

async fn csv_columns(
    db: &Db,
    project_id: i64,
    condition: &str,
    controls: &[String],
) -> ApiResult<Vec<String>> {
    // A first pass collects the data keys, bounded by the number of distinct keys, not tasks.
    let mut keys: BTreeSet<String> = BTreeSet::new();
    let mut after = 0;
    loop {
        let rows = page(db, project_id, after, condition).await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        for r in &rows {
            if let Ok(m) = serde_json::from_str::<Map<String, Value>>(&r.data) {
                for k in m.keys() {
                    if keys.len() < 1000 {
                        keys.insert(k.clone());
                    }
                }
            }
        }
        if (rows.len() as i64) < PAGE {
            break;
        }
    }
    Ok(column_order(keys, controls))
}

/// The CSV/TSV columns: the data keys in order, then the label config's controls, then the
/// annotation's fields (shared by the direct export and a snapshot's conversion, so both give
/// the same file).
pub(crate) fn column_order(keys: BTreeSet<String>, controls: &[String]) -> Vec<String> {
    let mut cols: Vec<String> = keys.into_iter().collect();
    for c in controls {
        if !cols.contains(c) {
            cols.push(c.clone());
        }
    }
    for fixed in [
        "annotator",
        "annotation_id",
        "created_at",
        "id",
        "lead_time",
        "updated_at",
    ] {
        if !cols.iter().any(|c| c == fixed) {
            cols.push(fixed.to_string());
        }
    }
    cols
}

/// The names of the controls of a project's label config (CSV/TSV columns).
pub(crate) fn controls(project: &ProjectRow) -> Vec<String> {
    project
        .config()
        .map(|c| c.controls().iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default()
}

pub(crate) fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

pub(crate) fn csv_line<'a>(
    cells: impl Iterator<Item = &'a str>,
    sep: u8,
    neutralize: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, c) in cells.enumerate() {
        if i > 0 {
            out.push(sep);
        }
        // Spreadsheet formula injection (OWASP "CSV injection"): a cell that starts with
        // = + - @ (or a tab or carriage return) is run as a formula by spreadsheet programs;
        // a leading ' makes it text. `keep_formulas` turns this off for tools that need raw data.
        let c: std::borrow::Cow<'_, str> =
            if neutralize && c.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                format!("'{c}").into()
            } else {
                c.into()
            };
        let needs_quotes = c
            .bytes()
            .any(|b| b == sep || b == b'"' || b == b'\n' || b == b'\r');
        if needs_quotes {
            out.push(b'"');
            out.extend(c.replace('"', "\"\"").bytes());
            out.push(b'"');
        } else {
            out.extend(c.bytes());
        }
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(
            csv_line(["a", "b,c", "d\"e"].into_iter(), b',', true),
            b"a,\"b,c\",\"d\"\"e\"\n".to_vec()
        );
        assert_eq!(
            csv_line(["a", "b,c"].into_iter(), b'\t', true),
            b"a\tb,c\n".to_vec()
        );
    }

    #[test]
    fn json_min_collapses_single_choices() {
        let task = json!({"id": 5, "data": {"text": "hi"}, "annotations": [
            {"id": 9, "completed_by": 1, "created_at": "c", "updated_at": "u", "lead_time": 2.0,
             "result": [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["pos"]}}]}]});
        let rows = min_rows(&task);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["sentiment"], json!("pos"));
        assert_eq!(rows[0]["text"], json!("hi"));
        assert_eq!(rows[0]["annotation_id"], json!(9));
        assert_eq!(
            min_rows(&json!({"id": 1, "data": {"a": 1}, "annotations": []})).len(),
            1
        );
    }
}
