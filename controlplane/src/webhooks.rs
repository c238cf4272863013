//! Webhooks: Label Studio's events and payloads, delivered through the job queue.
//!
//! A change that a webhook subscribes to writes one event per subscribed webhook into an outbox
//! (`webhook_event`) and enqueues a `webhook.deliver` job for that webhook. A delivery pass
//! claims the webhook (one pass per webhook at a time), sends its pending events oldest first,
//! and stops at the first failure: that event is retried after a backoff and the later ones
//! wait behind it, so a receiver sees a webhook's events in the order they happened. Every
//! attempt lands in the delivery log. Requests are signed (HMAC-SHA256 over the timestamp and
//! the body) and go only to public addresses unless `allow_private_targets` says otherwise:
//! the check runs on the resolved addresses of every connection, redirects included (ADR 0015).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use crate::{
    jobs::{Jobs, NewJob, worker::Handlers},
    storage::{Db, now_micros, webhooks as store},
};

/// The job kind of a delivery pass.
pub const JOB_KIND: &str = "webhook.deliver";

/// Instances of one event beyond this many are sent in several requests (Label Studio's
/// `WEBHOOK_BATCH_SIZE`).
pub const BATCH_SIZE: usize = 5000;

/// The longest response excerpt kept in the delivery log.
pub const EXCERPT_BYTES: usize = 1024;

macro_rules! actions {
    ($($variant:ident => $name:literal, $key:literal, $org_only:literal, $doc:literal;)*) => {
        /// A webhook event.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Action {
            $(#[doc = $doc] $variant,)*
        }

        impl Action {
            /// Every event.
            pub const ALL: &'static [Action] = &[$(Action::$variant,)*];

            /// The wire name (`TASKS_CREATED`).
            pub fn name(self) -> &'static str {
                match self { $(Action::$variant => $name,)* }
            }

            /// The payload key that carries the changed objects.
            pub fn key(self) -> &'static str {
                match self { $(Action::$variant => $key,)* }
            }

            /// Only organization-wide webhooks can subscribe.
            pub fn organization_only(self) -> bool {
                match self { $(Action::$variant => $org_only,)* }
            }

            /// One line for people.
            pub fn description(self) -> &'static str {
                match self { $(Action::$variant => $doc,)* }
            }
        }
    };
}

actions! {
    ProjectCreated => "PROJECT_CREATED", "project", true, "A project was created.";
    ProjectUpdated => "PROJECT_UPDATED", "project", false, "A project's settings changed.";
    ProjectDeleted => "PROJECT_DELETED", "project", true, "A project was deleted.";
    TasksCreated => "TASKS_CREATED", "tasks", false, "Tasks were created (one task or an import).";
    TasksDeleted => "TASKS_DELETED", "tasks", false, "Tasks were deleted.";
    AnnotationCreated => "ANNOTATION_CREATED", "annotation", false, "An annotation was submitted.";
    AnnotationsCreated => "ANNOTATIONS_CREATED", "annotation", false, "Annotations were created in bulk (tasks imported with annotations).";
    AnnotationUpdated => "ANNOTATION_UPDATED", "annotation", false, "An annotation was changed.";
    AnnotationsDeleted => "ANNOTATIONS_DELETED", "annotations", false, "Annotations were deleted.";
    ReviewCreated => "REVIEW_CREATED", "review", false, "An annotation was reviewed (accepted, fixed and accepted, or rejected).";
    ReviewUpdated => "REVIEW_UPDATED", "review", false, "A review was changed.";
    ReviewsDeleted => "REVIEWS_DELETED", "reviews", false, "Reviews were deleted.";
}

impl Action {
    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL.iter().copied().find(|a| a.name() == name)
    }
}

/// `GET /api/webhooks/info`: every event with its name, description and payload key.
pub fn info(organization_only: bool) -> Value {
    let mut out = Map::new();
    for a in Action::ALL {
        if organization_only && !a.organization_only() {
            continue;
        }
        out.insert(
            a.name().to_string(),
            json!({"name": a.name(), "description": a.description(), "key": a.key(), "organization-only": a.organization_only()}),
        );
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------------
// Where requests may go: the rules shared by every outgoing request (`outbound`).

pub use crate::outbound::{TargetPolicy, describe, is_public};

/// An HTTP client for webhook deliveries and ML backends: [`crate::outbound::guarded_builder`]
/// with a timeout (at most 5 s to connect).
pub fn client(policy: Arc<TargetPolicy>, timeout: Duration) -> reqwest::Client {
    crate::outbound::guarded_builder(policy)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("verity-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Signatures

/// The signature header: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub const SIGNATURE_HEADER: &str = "X-Verity-Signature";

/// The signature of `body` sent at `timestamp` (Unix seconds) with `secret`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

// ---------------------------------------------------------------------------------------------
// Emitting events

/// What an event is about.
#[derive(Clone, Debug)]
pub enum Subject {
    /// A project (created or updated).
    Project(i64),
    /// A deleted project.
    ProjectDeleted(i64),
    /// New tasks.
    Tasks(Vec<i64>),
    /// Deleted tasks.
    TasksDeleted(Vec<i64>),
    /// One annotation (created or updated).
    Annotation(i64),
    /// The annotations of these (new) tasks.
    AnnotationsOfTasks(Vec<i64>),
    /// These (new) annotations, with their tasks.
    Annotations(Vec<i64>),
    /// Deleted annotations.
    AnnotationsDeleted(Vec<i64>),
    /// A review (created or updated): its JSON, and the annotation it is about.
    Review {
        /// The review as the API shows it.
        review: Value,
        /// The reviewed annotation.
        annotation: i64,
    },
    /// Deleted reviews.
    ReviewsDeleted(Vec<i64>),
}

/// Records `action` for every active webhook of `org` (and `project`) that subscribes to it and
/// starts their delivery. The change already happened, so this never fails the request: a
/// failure is logged (events are best effort between commit and outbox, ADR 0015). Events
/// that change annotations also bring the project's export storages up to date (ADR 0052):
/// every path that changes annotations emits one of them.
pub async fn emit(
    db: &Db,
    jobs: &Jobs,
    org: i64,
    project: Option<i64>,
    action: Action,
    subject: Subject,
) {
    crate::exportchanges::note(db, jobs, project, action, &subject).await;
    if let Err(e) = try_emit(db, jobs, org, project, action, subject).await {
        tracing::warn!(error = %e, action = action.name(), org, "recording a webhook event failed");
    }
}

async fn try_emit(
    db: &Db,
    jobs: &Jobs,
    org: i64,
    project: Option<i64>,
    action: Action,
    subject: Subject,
) -> Result<(), String> {
    let hooks = store::subscribed(db, org, project, action.name())
        .await
        .map_err(|e| e.detail)?;
    if hooks.is_empty() {
        return Ok(());
    }
    let bodies = if hooks.iter().any(|h| h.send_payload) {
        payloads(db, org, project, action, &subject)
            .await
            .map_err(|e| e.detail)?
    } else {
        vec![Value::Null]
    };
    let mut events = Vec::new();
    for hook in &hooks {
        for body in &bodies {
            let text = if hook.send_payload {
                body.to_string()
            } else {
                json!({"action": action.name()}).to_string()
            };
            events.push((hook.id, text));
            if !hook.send_payload {
                // One request per event when only the action is sent.
                break;
            }
        }
    }
    store::add_events(db, action.name(), &events)
        .await
        .map_err(|e| e.detail)?;
    for hook in hooks {
        start(jobs, hook.id, None).await?;
    }
    Ok(())
}

/// Enqueues a delivery pass for `webhook`, at once or after `delay` (a retry's backoff; the id
/// makes the timer of one retry idempotent).
async fn start(
    jobs: &Jobs,
    webhook: i64,
    retry: Option<(i64, u32, Duration)>,
) -> Result<(), String> {
    let mut job = NewJob::new("high", JOB_KIND, json!({"webhook": webhook}));
    job.max_attempts = 5;
    job.timeout = Duration::from_secs(600);
    if let Some((event, attempt, delay)) = retry {
        job.delay = Some(delay);
        job.id = Some(format!("webhook-{webhook}-{event}-{attempt}"));
    }
    jobs.enqueue(&job)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The request bodies of one event: one, or several when more than [`BATCH_SIZE`] objects.
async fn payloads(
    db: &Db,
    org: i64,
    project: Option<i64>,
    action: Action,
    subject: &Subject,
) -> crate::error::ApiResult<Vec<Value>> {
    let project_json = match (subject, project) {
        (Subject::ProjectDeleted(id), _) => Some(json!({"id": id})),
        (_, Some(p)) => Some(store::project_json(db, org, p).await?),
        (_, None) => None,
    };
    let base = |key: &str, value: Value| {
        let mut m = Map::new();
        m.insert("action".into(), json!(action.name()));
        m.insert(key.into(), value);
        if let Some(p) = &project_json {
            m.entry("project").or_insert_with(|| p.clone());
        }
        m
    };
    let key = action.key();
    Ok(match subject {
        Subject::Project(_) | Subject::ProjectDeleted(_) => {
            vec![Value::Object(base(
                key,
                project_json.clone().unwrap_or(Value::Null),
            ))]
        }
        Subject::Tasks(ids) => {
            let mut out = Vec::new();
            for chunk in ids.chunks(BATCH_SIZE) {
                out.push(Value::Object(base(
                    key,
                    Value::Array(store::tasks_json(db, chunk).await?),
                )));
            }
            out
        }
        Subject::TasksDeleted(ids)
        | Subject::AnnotationsDeleted(ids)
        | Subject::ReviewsDeleted(ids) => ids
            .chunks(BATCH_SIZE)
            .map(|chunk| {
                Value::Object(base(
                    key,
                    chunk.iter().map(|id| json!({"id": id})).collect(),
                ))
            })
            .collect(),
        Subject::Annotation(id) => {
            let (annotation, task) = store::annotation_json(db, *id).await?;
            let mut m = base(key, annotation);
            m.insert("task".into(), task);
            vec![Value::Object(m)]
        }
        Subject::Review { review, annotation } => {
            let (annotation, task) = store::annotation_json(db, *annotation).await?;
            let mut m = base(key, review.clone());
            m.insert("annotation".into(), annotation);
            m.insert("task".into(), task);
            vec![Value::Object(m)]
        }
        Subject::AnnotationsOfTasks(task_ids) => {
            let mut out = Vec::new();
            for chunk in task_ids.chunks(BATCH_SIZE) {
                let annotations = store::annotations_of_tasks_json(db, chunk).await?;
                if annotations.is_empty() {
                    continue;
                }
                let mut m = base(key, Value::Array(annotations));
                m.insert(
                    "task".into(),
                    Value::Array(store::tasks_json(db, chunk).await?),
                );
                out.push(Value::Object(m));
            }
            out
        }
        Subject::Annotations(ids) => {
            let mut out = Vec::new();
            for chunk in ids.chunks(BATCH_SIZE) {
                let annotations = store::annotations_json(db, chunk).await?;
                if annotations.is_empty() {
                    continue;
                }
                let mut tasks: Vec<i64> = annotations
                    .iter()
                    .filter_map(|a| a["task"].as_i64())
                    .collect();
                tasks.sort_unstable();
                tasks.dedup();
                let mut m = base(key, Value::Array(annotations));
                m.insert(
                    "task".into(),
                    Value::Array(store::tasks_json(db, &tasks).await?),
                );
                out.push(Value::Object(m));
            }
            out
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Delivering

/// How deliveries behave (from the configuration).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Time limit of one request.
    pub timeout: Duration,
    /// Attempts per event before it is given up.
    pub max_attempts: u32,
    /// The first retry's delay; it doubles per attempt, at most one hour.
    pub retry_base: Duration,
}

impl Settings {
    /// The delay after `attempts` failed attempts.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(20);
        self.retry_base
            .saturating_mul(1u32 << exp)
            .min(Duration::from_secs(3600))
    }
}

/// What delivery passes need: the database, the queue, the guarded client and the settings.
#[derive(Clone)]
pub struct Delivery {
    db: Db,
    jobs: Jobs,
    sealer: Arc<crate::secrets::Sealer>,
    client: reqwest::Client,
    settings: Settings,
}

impl Delivery {
    /// Delivery as the configuration says.
    pub fn new(
        db: Db,
        jobs: Jobs,
        sealer: Arc<crate::secrets::Sealer>,
        config: &crate::config::Config,
    ) -> Result<Self, String> {
        let policy = Arc::new(TargetPolicy::parse(&config.allow_private_targets)?);
        let settings = Settings {
            timeout: Duration::from_millis(config.webhook_timeout_ms.max(1)),
            max_attempts: config.webhook_max_attempts.max(1),
            retry_base: Duration::from_millis(config.webhook_retry_base_ms.max(1)),
        };
        Ok(Self {
            db,
            jobs,
            sealer,
            client: client(policy, settings.timeout),
            settings,
        })
    }

    /// Registers the delivery handler.
    pub fn register(self, handlers: Handlers) -> Handlers {
        handlers.on(JOB_KIND, move |job| {
            let d = self.clone();
            async move {
                let webhook = job.leased.payload["webhook"]
                    .as_i64()
                    .ok_or("the job has no webhook id")?;
                d.pass(webhook).await
            }
        })
    }

    /// One delivery pass over a webhook's pending events.
    pub async fn pass(&self, webhook: i64) -> Result<Value, String> {
        let mut sent = 0u64;
        loop {
            let claim_for = self.settings.timeout + Duration::from_secs(30);
            if !store::claim(&self.db, webhook, claim_for)
                .await
                .map_err(|e| e.detail)?
            {
                // Another pass holds it; it re-checks for new events after it lets go.
                return Ok(json!({"sent": sent, "claimed": false}));
            }
            let outcome = self.deliver_due(webhook, &mut sent).await;
            store::release(&self.db, webhook)
                .await
                .map_err(|e| e.detail)?;
            outcome?;
            // An event recorded while we held the claim found it taken: look once more.
            if !store::has_due(&self.db, webhook)
                .await
                .map_err(|e| e.detail)?
            {
                return Ok(json!({"sent": sent, "claimed": true}));
            }
        }
    }

    async fn deliver_due(&self, webhook: i64, sent: &mut u64) -> Result<(), String> {
        loop {
            let Some(event) = store::next_event(&self.db, webhook)
                .await
                .map_err(|e| e.detail)?
            else {
                return Ok(());
            };
            let now = now_micros();
            if event.next_attempt_at > now {
                let wait = Duration::from_micros((event.next_attempt_at - now) as u64);
                return start(
                    &self.jobs,
                    webhook,
                    Some((event.id, event.attempts as u32, wait)),
                )
                .await;
            }
            let Some(target) = store::target(&self.db, &self.sealer, webhook)
                .await
                .map_err(|e| e.detail)?
            else {
                return Ok(());
            };
            store::claim(
                &self.db,
                webhook,
                self.settings.timeout + Duration::from_secs(30),
            )
            .await
            .map_err(|e| e.detail)?;
            let attempt = event.attempts as u32 + 1;
            let result = if target.is_active {
                self.send(&target, &event, attempt).await
            } else {
                Attempt::failed(0, "the webhook was deactivated before delivery".into())
            };
            let give_up = !target.is_active || attempt >= self.settings.max_attempts;
            let retry_at = (!result.ok && !give_up)
                .then(|| now_micros() + self.settings.backoff(attempt).as_micros() as i64);
            store::record_attempt(
                &self.db,
                &event,
                attempt,
                &store::AttemptRecord {
                    ok: result.ok,
                    status_code: result.status,
                    latency_ms: result.latency_ms,
                    excerpt: result.excerpt,
                    error: result.error,
                    retry_at,
                },
            )
            .await
            .map_err(|e| e.detail)?;
            if result.ok {
                *sent += 1;
            } else if retry_at.is_some() {
                // Later events wait behind this one; the next loop schedules the retry.
                continue;
            }
        }
    }

    async fn send(&self, target: &store::Target, event: &store::EventRow, attempt: u32) -> Attempt {
        let timestamp = now_micros() / 1_000_000;
        let mut request = self
            .client
            .post(&target.url)
            .header("content-type", "application/json");
        let headers: Map<String, Value> = serde_json::from_str(&target.headers).unwrap_or_default();
        {
            for (name, value) in &headers {
                if let Some(v) = value.as_str() {
                    request = request.header(name.as_str(), v);
                }
            }
        }
        let request = request
            .header(
                SIGNATURE_HEADER,
                signature(&target.secret, timestamp, event.body.as_bytes()),
            )
            .header("X-Verity-Event", event.action.as_str())
            .header("X-Verity-Delivery", event.id.to_string())
            .header("X-Verity-Attempt", attempt.to_string())
            .body(event.body.clone());
        let started = Instant::now();
        let response = request.send().await;
        let elapsed = |s: Instant| s.elapsed().as_millis() as i64;
        match response {
            Err(e) => Attempt::failed(elapsed(started), describe(&e)),
            Ok(mut r) => {
                let status = r.status();
                let mut excerpt = Vec::new();
                let mut read_error = None;
                while excerpt.len() < EXCERPT_BYTES {
                    match r.chunk().await {
                        Ok(Some(c)) => excerpt.extend_from_slice(&c),
                        Ok(None) => break,
                        Err(e) => {
                            read_error = Some(describe(&e));
                            break;
                        }
                    }
                }
                excerpt.truncate(EXCERPT_BYTES);
                let excerpt = String::from_utf8_lossy(&excerpt).into_owned();
                let ok = status.is_success();
                Attempt {
                    ok,
                    status: Some(i64::from(status.as_u16())),
                    latency_ms: elapsed(started),
                    excerpt,
                    error: if ok {
                        String::new()
                    } else {
                        read_error.unwrap_or_else(|| format!("the receiver answered {status}"))
                    },
                }
            }
        }
    }
}

struct Attempt {
    ok: bool,
    status: Option<i64>,
    latency_ms: i64,
    excerpt: String,
    error: String,
}

impl Attempt {
    fn failed(latency_ms: i64, error: String) -> Self {
        Self {
            ok: false,
            status: None,
            latency_ms,
            excerpt: String::new(),
            error,
        }
    }
}

/// Starts a pass for every webhook with due events that no pass holds: events recorded just
/// before a crash (between the outbox and the queue) are not stranded. `verity serve` runs it
/// every minute.
pub async fn sweep(db: &Db, jobs: &Jobs) -> Result<usize, String> {
    let hooks = store::stranded(db).await.map_err(|e| e.detail)?;
    for &h in &hooks {
        start(jobs, h, None).await?;
    }
    Ok(hooks.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_refused_unless_allowed() {
        let none = TargetPolicy::parse("").expect("default");
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!none.permits(ip.parse().expect(ip)), "{ip} must be refused");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(none.permits(ip.parse().expect(ip)), "{ip} is public");
        }
        let all = TargetPolicy::parse("true").expect("true");
        assert!(all.permits("127.0.0.1".parse().expect("ip")));
        let some = TargetPolicy::parse("127.0.0.2, 10.0.0.0/8").expect("list");
        assert!(some.permits("127.0.0.2".parse().expect("ip")));
        assert!(some.permits("10.9.9.9".parse().expect("ip")));
        assert!(!some.permits("127.0.0.3".parse().expect("ip")));
        assert!(TargetPolicy::parse("not-a-network").is_err());
    }

    #[test]
    fn urls_are_checked_before_resolution() {
        let none = TargetPolicy::default();
        assert!(none.check_url("https://hooks.example.com/x").is_ok());
        for bad in [
            "ftp://example.com/",
            "http://127.0.0.1:8080/",
            "http://[::1]/",
            "http://0x7f.1/",
            "http://user:pw@example.com/",
            "not a url",
        ] {
            assert!(none.check_url(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn signatures_cover_timestamp_and_body() {
        let a = signature("secret", 1_700_000_000, b"{}");
        assert!(a.starts_with("t=1700000000,v1="), "{a}");
        assert_eq!(a.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(a, signature("secret", 1_700_000_001, b"{}"));
        assert_ne!(a, signature("secret", 1_700_000_000, b"{ }"));
        assert_ne!(a, signature("other", 1_700_000_000, b"{}"));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let s = Settings {
            timeout: Duration::from_secs(1),
            max_attempts: 5,
            retry_base: Duration::from_millis(100),
        };
        let ms: Vec<u128> = (1..=4).map(|a| s.backoff(a).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800]);
        assert_eq!(s.backoff(100), Duration::from_secs(3600));
    }

    #[test]
    fn organization_only_events_are_marked() {
        let info = info(true);
        let names: Vec<&String> = info.as_object().expect("object").keys().collect();
        assert_eq!(names, ["PROJECT_CREATED", "PROJECT_DELETED"]);
        assert_eq!(Action::parse("TASKS_CREATED"), Some(Action::TasksCreated));
        assert_eq!(Action::parse("TASK_CREATED"), None);
    }
}
