//! ML backends (ADR 0017): Label Studio's model-server protocol (`/health`, `/setup`,
//! `/predict`, `/webhook`, `/versions`), batch predictions and training as jobs on the queue,
//! and automatic training after submitted annotations.
//!
//! Every request goes through the same guarded client as webhooks (no private targets unless
//! `allow_private_targets` permits them, also after DNS and on redirects), with a time limit per
//! call and a cap on the size of an answer. A slow or dead backend never holds an annotator up
//! longer than the interactive limit, and batch work runs on the queue with retries.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    domain::label_config::LabelConfig,
    error::{ApiError, ApiResult, ErrorCode},
    jobs::{Jobs, NewJob, worker::Handlers},
    storage::{
        Db,
        ml::{self as store, Candidate, Made, MlBackendRow},
        projects::ProjectRow,
    },
    webhooks::{TargetPolicy, describe},
};

/// Job kind: predictions for every task of a project that has none of the backend's current
/// model version.
pub const PREDICT_KIND: &str = "ml.predict";
/// Job kind: training (`START_TRAINING` to the backend's `/webhook`), then a version check.
pub const TRAIN_KIND: &str = "ml.train";

/// Largest answer read from a backend.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// Time limit of `/health`, `/setup` and `/versions`.
pub const SHORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time limit of an interactive pre-annotation (an annotator waits for it).
pub const INTERACTIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time limit of a lazy prediction made when a task is opened
/// (`evaluate_predictions_automatically`): the annotator waits for it.
pub const LAZY_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a backend that failed is left out of lazy predictions, so that a dead backend
/// costs an annotator one wait, not one per task.
pub const LAZY_BACKOFF_MICROS: i64 = 60_000_000;
/// Tasks per `/predict` request of a batch, unless `POST /api/ml/{id}/predict?batch_size=`
/// says otherwise.
pub const BATCH_SIZE: i64 = 32;
/// The largest `batch_size` accepted: a backend's answer for a batch is capped at
/// [`MAX_RESPONSE_BYTES`], and one batch is stored in one transaction.
pub const MAX_BATCH_SIZE: i64 = 1000;

/// The outgoing client of ML backends.
#[derive(Clone)]
pub struct Connector {
    client: reqwest::Client,
}

impl Connector {
    /// A connector under the configured target policy. A policy that does not parse (start-up
    /// refuses it already, in webhook delivery) refuses every private target.
    pub fn new(config: &crate::config::Config) -> Self {
        let policy = TargetPolicy::parse(&config.allow_private_targets).unwrap_or_default();
        Self {
            client: crate::webhooks::client(
                Arc::new(policy),
                Duration::from_secs_f64(store::MAX_TIMEOUT_SECS),
            ),
        }
    }

    /// A connection to one backend.
    pub fn to<'a>(&'a self, candidate: &'a Candidate) -> Connection<'a> {
        Connection {
            client: &self.client,
            candidate,
        }
    }
}

/// Calls to one backend.
pub struct Connection<'a> {
    client: &'a reqwest::Client,
    candidate: &'a Candidate,
}

/// Label Studio's project id on the wire: `"<id>.<created_at in unix seconds>"`.
pub fn wire_project(project: &ProjectRow) -> String {
    format!("{}.{}", project.id, project.created_at / 1_000_000)
}

impl Connection<'_> {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<(u16, Value), String> {
        // The protocol's path goes after the backend's own path, before its query string.
        let mut url = reqwest::Url::parse(&self.candidate.url)
            .map_err(|e| format!("the URL does not parse: {e}"))?;
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}{path}"));
        let mut request = self
            .client
            .request(method, url)
            .timeout(timeout)
            .header("accept", "application/json");
        if let Some((user, pass)) = &self.candidate.credentials {
            request = request.basic_auth(user, Some(pass));
        }
        if let Some(b) = body {
            request = request.json(b);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| format!("{path}: {}", describe(&e.without_url())))?;
        let status = response.status().as_u16();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("{path}: {}", describe(&e.without_url())))?
        {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(format!(
                    "{path} answered more than {} MiB",
                    MAX_RESPONSE_BYTES / (1024 * 1024)
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }

    fn failed(path: &str, status: u16, body: &Value) -> String {
        let detail = body
            .get("error")
            .or_else(|| body.get("detail"))
            .or_else(|| body.get("status"))
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .unwrap_or_default();
        let mut text = format!("{path} answered {status}");
        if !detail.is_empty() {
            text.push_str(": ");
            text.extend(detail.chars().take(300));
        }
        text
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<(), String> {
        let (status, body) = self
            .call(reqwest::Method::GET, "/health", None, SHORT_TIMEOUT)
            .await?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(Self::failed("/health", status, &body))
        }
    }

    /// `POST /setup`: answers the model version.
    pub async fn setup(&self, project: &ProjectRow) -> Result<String, String> {
        let body = json!({
            "project": wire_project(project),
            "schema": project.label_config,
            // Verity hands no user's token to a model server (ADR 0017): a backend that reads
            // data from the API is given its own token by whoever runs it.
            "hostname": "",
            "access_token": "",
            "extra_params": self.candidate.extra_params,
        });
        let (status, answer) = self
            .call(reqwest::Method::POST, "/setup", Some(&body), SHORT_TIMEOUT)
            .await?;
        if !(200..300).contains(&status) {
            return Err(Self::failed("/setup", status, &answer));
        }
        Ok(version_text(&answer["model_version"]))
    }

    /// `POST /predict` for some tasks, with an interactive `context` or none.
    pub async fn predict(
        &self,
        project: &ProjectRow,
        tasks: &[Value],
        context: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value, String> {
        let body = json!({
            "tasks": tasks,
            "project": wire_project(project),
            "label_config": project.label_config,
            "params": {"login": null, "password": null, "context": context},
        });
        let (status, answer) = self
            .call(reqwest::Method::POST, "/predict", Some(&body), timeout)
            .await?;
        if !(200..300).contains(&status) {
            return Err(Self::failed("/predict", status, &answer));
        }
        Ok(answer)
    }

    /// `POST /webhook` with `START_TRAINING`.
    pub async fn train(&self, project: Value, timeout: Duration) -> Result<Value, String> {
        let body = json!({"action": "START_TRAINING", "project": project});
        let (status, answer) = self
            .call(reqwest::Method::POST, "/webhook", Some(&body), timeout)
            .await?;
        if !(200..300).contains(&status) {
            return Err(Self::failed("/webhook", status, &answer));
        }
        Ok(answer)
    }

    /// `GET /versions`; `None` when the backend does not offer it (404).
    pub async fn versions(&self) -> Result<Option<Vec<String>>, String> {
        let (status, answer) = self
            .call(reqwest::Method::GET, "/versions", None, SHORT_TIMEOUT)
            .await?;
        if status == 404 {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            return Err(Self::failed("/versions", status, &answer));
        }
        Ok(Some(
            answer["versions"]
                .as_array()
                .map(|v| v.iter().map(version_text).collect())
                .unwrap_or_default(),
        ))
    }
}

fn version_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Reads a `/predict` answer for `tasks` (in order) into predictions: each item of `results`
/// is a prediction object (`{"result", "score", "model_version"}`), a list of them, or null;
/// results may use the one-control shorthand. Items whose result does not fit the labeling
/// config are left out and counted in the second value.
pub fn read_predictions(
    config: Option<&LabelConfig>,
    tasks: &[Value],
    answer: &Value,
    default_version: &str,
) -> Result<(Vec<Made>, Vec<String>), String> {
    let results = answer
        .get("results")
        .and_then(Value::as_array)
        .ok_or("the answer has no \"results\" list")?;
    if results.len() != tasks.len() {
        return Err(format!(
            "the answer has {} results for {} tasks",
            results.len(),
            tasks.len()
        ));
    }
    let version_of_answer = answer
        .get("model_version")
        .map(version_text)
        .filter(|v| !v.is_empty());
    let mut made = Vec::new();
    let mut rejected = Vec::new();
    for (task, item) in tasks.iter().zip(results) {
        let task_id = task["id"].as_i64().unwrap_or_default();
        let items: Vec<&Value> = match item {
            Value::Null => Vec::new(),
            Value::Array(list) => list.iter().collect(),
            other => vec![other],
        };
        for p in items {
            let (raw, score, version) = match p {
                Value::Object(o) if o.contains_key("result") => (
                    o["result"].clone(),
                    o.get("score").and_then(Value::as_f64),
                    o.get("model_version").map(version_text),
                ),
                other => (other.clone(), None, None),
            };
            let version = version
                .filter(|v| !v.is_empty())
                .or_else(|| version_of_answer.clone())
                .unwrap_or_else(|| default_version.to_string());
            let result = match config {
                Some(c) => match c.expand_shorthand(&raw).and_then(|r| {
                    c.validate_result(&r)?;
                    Ok(r)
                }) {
                    Ok(r) => r,
                    Err(e) => {
                        rejected.push(format!("task {task_id}: {e}"));
                        continue;
                    }
                },
                None => raw,
            };
            made.push(Made {
                task: task_id,
                result,
                score: score.filter(|s| s.is_finite()),
                model_version: version,
            });
        }
    }
    Ok((made, rejected))
}

/// Checks a backend before it is stored: `/health`, then `/setup` (which answers its model
/// version). A failure is a 400 `ml_backend_unreachable` saying what the backend answered.
pub async fn check(
    connector: &Connector,
    candidate: &Candidate,
    project: &ProjectRow,
) -> ApiResult<String> {
    let connection = connector.to(candidate);
    let unreachable = |why: String| {
        ApiError::field(
            ErrorCode::MlBackendUnreachable,
            "url",
            format!("the ML backend at {} cannot be used: {why}", candidate.url),
        )
    };
    connection.health().await.map_err(unreachable)?;
    connection.setup(project).await.map_err(unreachable)
}

/// Enqueues a batch prediction of a backend (tasks without its current version), `batch_size`
/// tasks per `/predict` request.
pub async fn enqueue_predict(
    jobs: &Jobs,
    backend: &MlBackendRow,
    batch_size: i64,
) -> Result<String, String> {
    let payload =
        json!({"backend": backend.id, "project": backend.project_id, "batch_size": batch_size});
    enqueue_for(jobs, backend, "low", PREDICT_KIND, 5, payload).await
}

/// Enqueues a training of a backend. Its attempts also wait out a training of the same backend
/// still running (5 s, 10 s, … apart).
pub async fn enqueue_train(jobs: &Jobs, backend: &MlBackendRow) -> Result<String, String> {
    let payload = json!({"backend": backend.id, "project": backend.project_id});
    enqueue_for(jobs, backend, "default", TRAIN_KIND, 10, payload).await
}

async fn enqueue_for(
    jobs: &Jobs,
    backend: &MlBackendRow,
    queue: &'static str,
    kind: &str,
    max_attempts: u32,
    payload: Value,
) -> Result<String, String> {
    let mut job = NewJob::new(queue, kind, payload);
    job.organization = Some(backend.organization_id);
    job.timeout = Duration::from_secs(3600);
    job.max_attempts = max_attempts;
    jobs.enqueue(&job).await.map_err(|e| e.to_string())
}

/// After an annotation was submitted or updated: when the project trains automatically
/// (`start_training_on_annotation_update`) and holds at least `min_annotations_to_start_training`
/// annotations, counts it towards each backend's next training and starts the trainings that
/// are due (every `train_every_annotations`). Best effort: the annotation stands either way.
pub async fn after_annotation(db: &Db, jobs: &Jobs, project: &ProjectRow) {
    let settings = project.settings();
    if !settings.start_training_on_annotation_update
        || project.total_annotations_number < settings.min_annotations_to_start_training
    {
        return;
    }
    let due = match store::count_towards_training(db, project.id, settings.train_every_annotations)
        .await
    {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(project = project.id, error = %e.detail, "could not count towards training");
            return;
        }
    };
    for id in due {
        if let Ok(Some(backend)) = store::by_id(db, id).await
            && let Err(e) = enqueue_train(jobs, &backend).await
        {
            tracing::warn!(backend = id, error = %e, "could not enqueue training");
        }
    }
}

/// Lazy predictions (the project setting `evaluate_predictions_automatically`): before task
/// `task` is shown (opened by id, or handed out by the label stream), each of the project's
/// backends that has no prediction of its current model version for it is asked for one, and
/// the answer is stored as batch predictions are. Best effort and bounded: each backend has
/// [`LAZY_TIMEOUT`] (or its own shorter timeout); one that fails is marked `ER` with the
/// reason and left out for [`LAZY_BACKOFF_MICROS`], and the task is shown without its
/// prediction.
pub async fn predict_on_open(
    db: &Db,
    connector: &Connector,
    sealer: &crate::secrets::Sealer,
    project: &ProjectRow,
    task: i64,
) {
    if !project.settings().evaluate_predictions_automatically {
        return;
    }
    let backends = match store::project_backends(db, project.id).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(project = project.id, error = %e.detail, "lazy predictions: could not list the backends");
            return;
        }
    };
    let now = crate::storage::now_micros();
    for backend in backends {
        if backend.state == "ER" && now - backend.updated_at < LAZY_BACKOFF_MICROS {
            continue;
        }
        let found =
            store::task_without_version(db, project.id, task, backend.id, &backend.model_version)
                .await;
        let task_json = match found {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(task, error = %e.detail, "lazy predictions: could not read the task");
                return;
            }
        };
        let tasks = [task_json];
        let timeout = LAZY_TIMEOUT.min(Duration::from_secs_f64(
            backend.timeout.clamp(0.1, store::MAX_TIMEOUT_SECS),
        ));
        let outcome = match backend.connection(sealer) {
            Ok(candidate) => connector
                .to(&candidate)
                .predict(project, &tasks, None, timeout)
                .await
                .and_then(|answer| {
                    read_predictions(
                        project.config().as_deref(),
                        &tasks,
                        &answer,
                        &backend.model_version,
                    )
                }),
            Err(e) => Err(e.detail),
        };
        match outcome {
            Ok((made, rejected)) => {
                if let Some(first) = rejected.first() {
                    tracing::warn!(backend = backend.id, task, first = %first, "a lazy prediction that does not fit the labeling config was left out");
                }
                if let Err(e) = store::store_predictions(db, &backend, &made).await {
                    tracing::warn!(backend = backend.id, task, error = %e.detail, "lazy predictions: could not store");
                }
            }
            Err(e) => {
                tracing::warn!(backend = backend.id, task, error = %e, "lazy prediction failed; the task is shown without it");
                let why = format!("lazy prediction of task {task}: {e}");
                let _ = store::set_state(db, backend.id, "ER", Some(&why), None).await;
            }
        }
    }
}

/// What the job handlers need.
#[derive(Clone)]
pub struct Runner {
    db: Db,
    jobs: Jobs,
    sealer: Arc<crate::secrets::Sealer>,
    connector: Connector,
}

impl Runner {
    /// Handlers as the configuration says.
    pub fn new(
        db: Db,
        jobs: Jobs,
        sealer: Arc<crate::secrets::Sealer>,
        config: &crate::config::Config,
    ) -> Result<Self, String> {
        TargetPolicy::parse(&config.allow_private_targets)?;
        Ok(Self {
            db,
            jobs,
            sealer,
            connector: Connector::new(config),
        })
    }

    /// Registers `ml.predict` and `ml.train`.
    pub fn register(self, handlers: Handlers) -> Handlers {
        let predict = self.clone();
        handlers
            .on(PREDICT_KIND, move |job| {
                let r = predict.clone();
                async move {
                    let id = job.leased.payload["backend"]
                        .as_i64()
                        .ok_or("the job has no backend id")?;
                    // Jobs enqueued before batch sizes existed carry none.
                    let batch = job.leased.payload["batch_size"]
                        .as_i64()
                        .unwrap_or(BATCH_SIZE)
                        .clamp(1, MAX_BATCH_SIZE);
                    r.predict_all(id, batch, &job).await
                }
            })
            .on(TRAIN_KIND, move |job| {
                let r = self.clone();
                async move {
                    let id = job.leased.payload["backend"]
                        .as_i64()
                        .ok_or("the job has no backend id")?;
                    r.train(id).await
                }
            })
    }

    async fn backend(
        &self,
        id: i64,
    ) -> Result<Option<(MlBackendRow, ProjectRow, Candidate)>, String> {
        let Some(row) = store::by_id(&self.db, id).await.map_err(|e| e.detail)? else {
            return Ok(None);
        };
        let project = crate::storage::projects::load(&self.db, row.organization_id, row.project_id)
            .await
            .map_err(|e| e.detail)?;
        let candidate = row.connection(&self.sealer).map_err(|e| e.detail)?;
        Ok(Some((row, project, candidate)))
    }

    /// Predicts every task of the project that has no prediction of the backend's current
    /// model version, a batch at a time (each batch stored in one transaction, so a retry goes
    /// on where the last attempt stopped).
    pub async fn predict_all(
        &self,
        id: i64,
        batch: i64,
        job: &crate::jobs::worker::Job,
    ) -> Result<Value, String> {
        let Some((row, project, candidate)) = self.backend(id).await? else {
            return Ok(json!({"skipped": "the backend was disconnected"}));
        };
        let config = project.config();
        let connection = self.connector.to(&candidate);
        let timeout = Duration::from_secs_f64(row.timeout.clamp(1.0, store::MAX_TIMEOUT_SECS));
        let version = row.model_version.clone();
        let (mut after, mut stored, mut rejected) = (0i64, 0usize, 0usize);
        let _ = store::set_state(&self.db, id, "PR", None, None).await;
        loop {
            let tasks = store::tasks_without_version(&self.db, project.id, &version, after, batch)
                .await
                .map_err(|e| e.detail)?;
            let Some(last) = tasks.last().and_then(|t| t["id"].as_i64()) else {
                break;
            };
            after = last;
            let outcome = connection
                .predict(&project, &tasks, None, timeout)
                .await
                .and_then(|answer| read_predictions(config.as_deref(), &tasks, &answer, &version));
            let (made, bad) = match outcome {
                Ok(x) => x,
                Err(e) => {
                    let _ = store::set_state(&self.db, id, "ER", Some(&e), None).await;
                    return Err(e);
                }
            };
            rejected += bad.len();
            if let Some(first) = bad.first() {
                tracing::warn!(backend = id, rejected = bad.len(), first = %first, "predictions that do not fit the labeling config were left out");
            }
            stored += store::store_predictions(&self.db, &row, &made)
                .await
                .map_err(|e| e.detail)?;
            job.progress(0.0).await;
        }
        let _ = store::set_state(&self.db, id, "CO", None, None).await;
        Ok(json!({"stored": stored, "rejected": rejected, "model_version": version}))
    }

    /// Trains: `START_TRAINING` to `/webhook`, then `/setup` for the model version. A new
    /// version becomes the backend's (and the project's, when it followed the old one), and
    /// with `auto_update` the predictions are refreshed in the background. One training of a
    /// backend runs at a time: a second one fails its attempt and is retried later, so versions
    /// are read and written in order.
    pub async fn train(&self, id: i64) -> Result<Value, String> {
        let Some((row, _, _)) = self.backend(id).await? else {
            return Ok(json!({"skipped": "the backend was disconnected"}));
        };
        let timeout = Duration::from_secs_f64(row.timeout.clamp(1.0, store::MAX_TIMEOUT_SECS));
        let until = crate::storage::now_micros()
            + i64::try_from((timeout * 2 + SHORT_TIMEOUT + Duration::from_secs(60)).as_micros())
                .unwrap_or(i64::MAX / 2);
        if !store::claim_training(&self.db, id, until)
            .await
            .map_err(|e| e.detail)?
        {
            return Err(
                "another training of this backend is running; this one runs after it".into(),
            );
        }
        let outcome = self.train_claimed(id, timeout).await;
        let _ = store::release_training(&self.db, id).await;
        outcome
    }

    async fn train_claimed(&self, id: i64, timeout: Duration) -> Result<Value, String> {
        // Read under the claim: no other training changes the version meanwhile.
        let Some((row, project, candidate)) = self.backend(id).await? else {
            return Ok(json!({"skipped": "the backend was disconnected"}));
        };
        let connection = self.connector.to(&candidate);
        let _ = store::set_state(&self.db, id, "TR", None, None).await;
        let project_json = serde_json::to_value(project.view()).unwrap_or(Value::Null);
        let trained = match connection.train(project_json, timeout).await {
            Ok(a) => a,
            Err(e) => {
                let _ = store::set_state(&self.db, id, "ER", Some(&e), None).await;
                return Err(e);
            }
        };
        let version = match connection.setup(&project).await {
            Ok(v) => v,
            Err(e) => {
                let _ = store::set_state(&self.db, id, "ER", Some(&e), None).await;
                return Err(e);
            }
        };
        let changed = !version.is_empty() && version != row.model_version;
        store::set_state(
            &self.db,
            id,
            "CO",
            None,
            changed.then_some(version.as_str()),
        )
        .await
        .map_err(|e| e.detail)?;
        let mut refresh = None;
        if changed {
            store::follow_model_version(&self.db, project.id, &row.model_version, &version)
                .await
                .map_err(|e| e.detail)?;
            if row.auto_update {
                let mut updated = row.clone();
                updated.model_version = version.clone();
                refresh = Some(enqueue_predict(&self.jobs, &updated, BATCH_SIZE).await?);
            }
        }
        Ok(
            json!({"model_version": version, "changed": changed, "refresh_job": refresh, "answer": trained}),
        )
    }
}
