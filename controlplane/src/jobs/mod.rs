//! Background jobs: RQ-style named priority queues (`critical`, `high`, `default`, `low`) with
//! reliable delivery, behind one interface over two backends: a table in the control plane's
//! own database (the embedded default: nothing else to run, nothing lost on restart) and Redis
//! in the RQ key layout of ADR 0011 (what the operator deploys; its autoscaler and `rq info`
//! read the queues unchanged). ADR 0013 records the rules.
//!
//! Delivery: a worker *leases* a job for a visibility window and renews the lease while the job
//! runs (heartbeats); a job whose lease runs out (its worker was killed) goes back to its queue.
//! A finished job is acknowledged with the lease's token, so a worker that lost its lease can no
//! longer acknowledge. A failed attempt is retried after an exponential backoff until
//! `max_attempts`, then the job is kept in the failed registry, where an admin can requeue or
//! delete it. Jobs can be scheduled (`delay`) and deferred until another job finished
//! (`depends_on`). Handlers must be idempotent: a job runs at least once, not exactly once.
//!
//! This module never decides who may see a job; callers check that (see `http::routes::jobs`).

pub mod access;
pub mod redis;
pub mod sql;
pub mod worker;

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

/// Wakes this process's idle workers when a job is enqueued here (the embedded default runs
/// producers and workers in one process: a job starts without waiting for the next poll).
/// Workers in other processes poll.
pub(crate) static ENQUEUED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// The queues, highest priority first.
pub const QUEUES: [&str; 4] = ["critical", "high", "default", "low"];

/// How long a lease lasts without a heartbeat. A worker killed mid-job gives its job back after
/// at most this long.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The queue name as `&'static str`, or `None` for an unknown queue.
pub fn queue(name: &str) -> Option<&'static str> {
    QUEUES.into_iter().find(|q| *q == name)
}

/// The delay before retry number `attempt` (1-based count of attempts made so far): 5 s
/// doubling per attempt, at most 10 minutes.
pub fn backoff(attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(16);
    Duration::from_secs(5u64.saturating_mul(1u64 << exp).min(600))
}

/// A job to enqueue.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// One of [`QUEUES`].
    pub queue: &'static str,
    /// What to run (the handler's name, e.g. `export.snapshot`).
    pub kind: String,
    /// The handler's input.
    pub payload: Value,
    /// The organization the job works for (`None`: the instance).
    pub organization: Option<i64>,
    /// Attempts before the job goes to the failed registry (at least 1).
    pub max_attempts: u32,
    /// Longest a single attempt may run.
    pub timeout: Duration,
    /// Run no earlier than this long from now (scheduled job).
    pub delay: Option<Duration>,
    /// Run only after this job finished (deferred job).
    pub depends_on: Option<String>,
    /// A caller-chosen id: enqueuing the same id twice enqueues once (idempotent producers).
    pub id: Option<String>,
}

impl NewJob {
    /// A job with the defaults: 3 attempts, 180 s per attempt (RQ's default timeout), now.
    pub fn new(queue: &'static str, kind: impl Into<String>, payload: Value) -> Self {
        Self {
            queue,
            kind: kind.into(),
            payload,
            organization: None,
            max_attempts: 3,
            timeout: Duration::from_secs(180),
            delay: None,
            depends_on: None,
            id: None,
        }
    }
}

/// A job as a worker holds it.
#[derive(Clone, Debug)]
pub struct Leased {
    /// Job id.
    pub id: String,
    /// Its queue.
    pub queue: &'static str,
    /// Handler name.
    pub kind: String,
    /// Handler input.
    pub payload: Value,
    /// Organization, if any.
    pub organization: Option<i64>,
    /// This attempt's number (1-based).
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Longest this attempt may run.
    pub timeout: Duration,
    /// Proves this lease when renewing or acknowledging.
    pub token: String,
}

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting in its queue.
    Queued,
    /// Waiting for its time (delay or retry backoff).
    Scheduled,
    /// Waiting for the job it depends on.
    Deferred,
    /// Leased by a worker.
    Started,
    /// Done.
    Finished,
    /// Out of attempts (or its dependency failed); in the failed registry.
    Failed,
}

impl State {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Scheduled => "scheduled",
            State::Deferred => "deferred",
            State::Started => "started",
            State::Finished => "finished",
            State::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<State> {
        [
            State::Queued,
            State::Scheduled,
            State::Deferred,
            State::Started,
            State::Finished,
            State::Failed,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// A job as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct JobView {
    /// Job id.
    pub id: String,
    /// Queue.
    pub queue: String,
    /// Handler name.
    pub kind: String,
    /// `queued`, `scheduled`, `deferred`, `started`, `finished` or `failed`.
    #[schema(value_type = String)]
    pub state: State,
    /// Attempts made so far.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Organization id (none for instance jobs).
    pub organization: Option<i64>,
    /// When it was enqueued (UTC microseconds).
    pub enqueued_at: i64,
    /// When its current or last attempt started.
    pub started_at: Option<i64>,
    /// When it finished or failed for good.
    pub ended_at: Option<i64>,
    /// Progress of the running attempt, 0–1, as the handler reports it.
    pub progress: Option<f64>,
    /// The handler's result (finished jobs).
    pub result: Option<Value>,
    /// The last error.
    pub error: Option<String>,
}

/// One queue's numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct QueueStats {
    /// Queue name.
    pub queue: String,
    /// Jobs waiting to run now.
    pub waiting: u64,
    /// Jobs waiting for their time.
    pub scheduled: u64,
    /// Jobs waiting for another job.
    pub deferred: u64,
    /// Jobs leased by workers.
    pub running: u64,
    /// Jobs in the failed registry.
    pub failed: u64,
    /// When the oldest waiting job was enqueued (UTC microseconds).
    pub oldest_waiting_since: Option<i64>,
}

/// One organization's numbers on one queue (the database queue; see [`Jobs::org_stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrgQueueStats {
    /// Organization id.
    pub organization: i64,
    /// Queue name.
    pub queue: String,
    /// Jobs waiting to run now.
    pub waiting: u64,
    /// Jobs leased by workers.
    pub running: u64,
    /// Jobs in the failed registry.
    pub failed: u64,
    /// When the oldest waiting job was enqueued (UTC microseconds).
    pub oldest_waiting_since: Option<i64>,
}

/// What became of a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// It runs again after the backoff.
    Retry(Duration),
    /// Out of attempts: in the failed registry.
    Failed,
    /// The lease was no longer ours (expired and taken over); nothing was changed.
    LeaseLost,
}

/// What one maintenance pass moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// Jobs whose lease expired and that went back to their queue.
    pub requeued: u64,
    /// Jobs whose lease expired on their last attempt (now failed).
    pub failed: u64,
    /// Scheduled jobs whose time came.
    pub promoted: u64,
}

/// Errors of a queue backend.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The database failed.
    #[error("job queue (database): {0}")]
    Database(#[from] sqlx::Error),
    /// Redis failed or refused.
    #[error("job queue (Redis): {0}")]
    Redis(String),
    /// The job or its input is not acceptable.
    #[error("{0}")]
    Invalid(String),
}

impl From<::redis::RedisError> for JobError {
    fn from(e: ::redis::RedisError) -> Self {
        JobError::Redis(e.to_string())
    }
}

/// A job queue: the database table or Redis.
#[derive(Clone)]
pub enum Jobs {
    /// The `jobs` table of the control plane's database.
    Sql(sql::SqlQueue),
    /// Redis in the RQ layout.
    Redis(redis::RedisQueue),
}

macro_rules! dispatch {
    ($self:ident, $q:ident => $e:expr) => {
        match $self {
            Jobs::Sql($q) => $e,
            Jobs::Redis($q) => $e,
        }
    };
}

impl Jobs {
    /// `sql` or `redis`, for logs and metrics.
    pub fn backend(&self) -> &'static str {
        match self {
            Jobs::Sql(_) => "sql",
            Jobs::Redis(_) => "redis",
        }
    }

    /// Enqueues a job and returns its id (the given one when `job.id` is set).
    pub async fn enqueue(&self, job: &NewJob) -> Result<String, JobError> {
        if job.max_attempts == 0 || job.max_attempts > 100 {
            return Err(JobError::Invalid(
                "max_attempts must be between 1 and 100".into(),
            ));
        }
        if job.kind.is_empty() || job.kind.len() > 100 {
            return Err(JobError::Invalid(
                "a job kind must have 1 to 100 characters".into(),
            ));
        }
        let id = match &job.id {
            Some(id) if valid_id(id) => id.clone(),
            Some(_) => {
                return Err(JobError::Invalid(
                    "a job id has 1 to 64 characters of A-Z a-z 0-9 - _ . :".into(),
                ));
            }
            None => new_id(),
        };
        let id = dispatch!(self, q => q.enqueue(id, job).await)?;
        ENQUEUED.notify_waiters();
        Ok(id)
    }

    /// Leases the next job of the first non-empty queue of `queues` (in that order) for `lease`.
    pub async fn lease(
        &self,
        queues: &[&'static str],
        lease: Duration,
    ) -> Result<Option<Leased>, JobError> {
        Ok(self.lease_many(queues, lease, 1).await?.into_iter().next())
    }

    /// Leases up to `max` jobs (at least one) of the first non-empty queue of `queues`, oldest
    /// first, in one round trip (Redis: one script call; database: one statement). Each job has
    /// a lease token of its own.
    pub async fn lease_many(
        &self,
        queues: &[&'static str],
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Leased>, JobError> {
        dispatch!(self, q => q.lease_many(queues, lease, max).await)
    }

    /// Renews a lease; `false` if it is no longer ours.
    pub async fn heartbeat(&self, job: &Leased, lease: Duration) -> Result<bool, JobError> {
        dispatch!(self, q => q.heartbeat(job, lease).await)
    }

    /// Records the progress (0–1) of a running job.
    pub async fn progress(&self, job: &Leased, progress: f64) -> Result<(), JobError> {
        dispatch!(self, q => q.progress(job, progress.clamp(0.0, 1.0)).await)
    }

    /// Acknowledges a finished job; `false` if the lease was no longer ours.
    pub async fn complete(&self, job: &Leased, result: &Value) -> Result<bool, JobError> {
        Ok(self
            .complete_many(&[(job, result)])
            .await?
            .first()
            .copied()
            .unwrap_or(false))
    }

    /// Acknowledges several finished jobs in one round trip (Redis: one script call; database:
    /// one transaction). Each job is checked on its own: the answer says, in order, which were
    /// still ours (`false`: that lease ran out and nothing of that job was changed).
    pub async fn complete_many(&self, done: &[(&Leased, &Value)]) -> Result<Vec<bool>, JobError> {
        dispatch!(self, q => q.complete_many(done).await)
    }

    /// Gives a leased job back to the front of its queue without counting the attempt
    /// (graceful shutdown); `false` if the lease was no longer ours.
    pub async fn release(&self, job: &Leased) -> Result<bool, JobError> {
        dispatch!(self, q => q.release(job).await)
    }

    /// Records a failed attempt: retried after [`backoff`] or, out of attempts, failed.
    pub async fn fail(&self, job: &Leased, error: &str) -> Result<Failure, JobError> {
        let error: String = error.chars().take(2000).collect();
        dispatch!(self, q => q.fail(job, &error).await)
    }

    /// Requeues jobs whose lease expired and promotes scheduled jobs whose time came.
    pub async fn maintain(&self) -> Result<Maintenance, JobError> {
        dispatch!(self, q => q.maintain().await)
    }

    /// One job.
    pub async fn get(&self, id: &str) -> Result<Option<JobView>, JobError> {
        dispatch!(self, q => q.get(id).await)
    }

    /// The numbers of one queue.
    pub async fn stats(&self, queue: &'static str) -> Result<QueueStats, JobError> {
        dispatch!(self, q => q.stats(queue).await)
    }

    /// Per organization and queue: waiting, running and failed jobs. The database queue counts
    /// them; a Redis queue answers none (RQ's layout has no organization, and the operator gives
    /// every organization a Redis of its own, so its queue numbers are the organization's).
    pub async fn org_stats(&self) -> Result<Vec<OrgQueueStats>, JobError> {
        match self {
            Jobs::Sql(q) => q.org_stats().await,
            Jobs::Redis(_) => Ok(Vec::new()),
        }
    }

    /// Failed jobs of a queue, newest first, at most `limit`.
    pub async fn failed(&self, queue: &'static str, limit: u32) -> Result<Vec<JobView>, JobError> {
        dispatch!(self, q => q.failed(queue, limit).await)
    }

    /// Puts a failed job back in its queue with fresh attempts; `false` if it is not failed.
    pub async fn requeue(&self, id: &str) -> Result<bool, JobError> {
        dispatch!(self, q => q.requeue(id).await)
    }

    /// Deletes a failed or finished job; `false` if there is none (or it is still pending).
    pub async fn delete(&self, id: &str) -> Result<bool, JobError> {
        dispatch!(self, q => q.delete(id).await)
    }
}

/// How long [`open_patiently`] waits for Redis at start.
pub const STARTUP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// [`open`], retried while Redis cannot be reached (backoff 0.5 s doubling to 5 s, for up to
/// `patience`): when a pod starts, its DNS, its network policy or Redis itself may be seconds
/// behind, and exiting only turns that into restarts with growing backoff. A setting that cannot
/// work (an unreadable certificate file) fails at once.
pub async fn open_patiently(
    db: &crate::storage::Db,
    config: &crate::config::Config,
    patience: std::time::Duration,
) -> Result<Jobs, JobError> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut delay = std::time::Duration::from_millis(500);
    loop {
        match open(db, config).await {
            Err(JobError::Redis(e)) if tokio::time::Instant::now() + delay < deadline => {
                tracing::warn!(
                    error = %e,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "the job queue (Redis) is not reachable yet; retrying"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// Opens the job queue the configuration names: Redis when `redis_url` is set (TLS, client
/// certificate and ACL user from the configured files), else the database's `jobs` table.
pub async fn open(
    db: &crate::storage::Db,
    config: &crate::config::Config,
) -> Result<Jobs, JobError> {
    if config.redis_url.is_empty() {
        return Ok(Jobs::Sql(sql::SqlQueue::new(db.clone())));
    }
    let read = |what: &str, path: &str| -> Result<Vec<u8>, JobError> {
        if path.is_empty() {
            return Ok(Vec::new());
        }
        std::fs::read(path)
            .map_err(|e| JobError::Invalid(format!("cannot read the Redis {what} {path}: {e}")))
    };
    let settings = redis::RedisSettings {
        url: config.redis_url.clone(),
        username: config.redis_username.clone(),
        password: config.redis_password.clone(),
        ca_pem: read("CA certificate (redis_tls_ca)", &config.redis_tls_ca)?,
        cert_pem: read(
            "client certificate (redis_tls_cert)",
            &config.redis_tls_cert,
        )?,
        key_pem: read("client key (redis_tls_key)", &config.redis_tls_key)?,
    };
    Ok(Jobs::Redis(redis::RedisQueue::connect(&settings).await?))
}

/// The handlers every process that runs jobs registers. `noop` answers its payload (the
/// benchmark, and a deployment's end-to-end check: enqueue one, see it finish); `sleep` waits
/// `{"ms": N}` (at most 10 minutes; drills of kills and drains).
pub fn builtin_handlers() -> worker::Handlers {
    worker::Handlers::default()
        .on("noop", |job| async move { Ok(job.leased.payload) })
        .on("sleep", |job| async move {
            let ms = job.leased.payload["ms"].as_u64().unwrap_or(0).min(600_000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(serde_json::json!({"slept_ms": ms}))
        })
}

/// A new random job id.
pub fn new_id() -> String {
    // A version-4 UUID from the thread's CSPRNG (seeded by the OS), not a `getrandom` system
    // call per id.
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .simple()
        .to_string()
}

/// Checks a caller-chosen job id: 1–64 characters of `[A-Za-z0-9_.:-]` (it names Redis keys).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_and_caps_at_ten_minutes() {
        let secs: Vec<u64> = (1..=9).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 320, 600, 600]);
        assert_eq!(backoff(0).as_secs(), 5);
        assert_eq!(backoff(u32::MAX).as_secs(), 600);
    }

    #[test]
    fn queue_names_and_states_round_trip() {
        assert_eq!(queue("high"), Some("high"));
        assert_eq!(queue("urgent"), None);
        for s in [
            "queued",
            "scheduled",
            "deferred",
            "started",
            "finished",
            "failed",
        ] {
            assert_eq!(State::parse(s).map(State::as_str), Some(s));
        }
        assert!(valid_id("export:42:7") && !valid_id("a b") && !valid_id(""));
        assert!(!valid_id(&"x".repeat(65)));
    }
}
