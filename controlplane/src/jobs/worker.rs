//! The worker: leases jobs from its queues (highest priority first), runs each with its handler
//! under the job's time limit while renewing the lease, and acknowledges or fails it.
//! Concurrency is bounded by a semaphore (`concurrency` jobs at once: a worker's jobs share its
//! database pool and CPU). On shutdown it stops leasing, lets the jobs in hand finish within the
//! drain time and gives back the rest, so a SIGTERM within the pod's grace period loses nothing;
//! a kill -9 loses nothing either, the leases just run out and the jobs go back to their queues.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::{Failure, Jobs, Leased, QUEUES};

/// What a handler returns: a JSON result, or an error message (the attempt failed).
pub type HandlerResult = Result<Value, String>;
type BoxedHandler =
    Arc<dyn Fn(Job) -> Pin<Box<dyn Future<Output = HandlerResult> + Send>> + Send + Sync>;

/// The job a handler runs, with a way to report progress.
#[derive(Clone)]
pub struct Job {
    /// The leased job.
    pub leased: Leased,
    jobs: Jobs,
}

impl Job {
    /// Reports progress (0–1); shown in the job's API view. Best effort.
    pub async fn progress(&self, p: f64) {
        if let Err(e) = self.jobs.progress(&self.leased, p).await {
            tracing::debug!(job = %self.leased.id, error = %e, "could not record progress");
        }
    }
}

/// Handlers by job kind.
#[derive(Clone, Default)]
pub struct Handlers {
    by_kind: HashMap<String, BoxedHandler>,
}

impl Handlers {
    /// Registers the handler of `kind`.
    pub fn on<F, Fut>(mut self, kind: &str, f: F) -> Self
    where
        F: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.by_kind
            .insert(kind.to_owned(), Arc::new(move |job| Box::pin(f(job))));
        self
    }
}

/// Worker settings.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Queues to take jobs from, highest priority first.
    pub queues: Vec<&'static str>,
    /// Jobs run at once.
    pub concurrency: usize,
    /// Lease length; renewed every third of it.
    pub lease: Duration,
    /// Pause after finding every queue empty.
    pub idle_poll: Duration,
    /// On shutdown, how long jobs in hand may still run before they are given back.
    pub drain: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            queues: QUEUES.to_vec(),
            concurrency: 4,
            lease: super::DEFAULT_LEASE,
            idle_poll: Duration::from_millis(250),
            drain: Duration::from_secs(25),
        }
    }
}

/// Most jobs leased in one round trip.
pub const LEASE_BATCH: usize = 16;

/// Most finished jobs acknowledged in one round trip.
pub const ACK_BATCH: usize = 64;

/// Job metrics of one process.
#[derive(Clone, Debug)]
pub struct JobMetrics {
    processed: IntCounterVec,
    queue: IntGaugeVec,
    org_processed: IntCounterVec,
    organization: IntGaugeVec,
}

impl JobMetrics {
    /// Registers the job metrics in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let processed = IntCounterVec::new(
            Opts::new(
                "verity_jobs_processed_total",
                "Job attempts by queue, kind and outcome (finished, retried, failed, lost, given_back)",
            ),
            &["queue", "kind", "outcome"],
        )?;
        let queue = IntGaugeVec::new(
            Opts::new(
                "verity_jobs_queue",
                "Jobs by queue and state (waiting, scheduled, deferred, running, failed); oldest_waiting_seconds is the age of the oldest waiting job",
            ),
            &["queue", "state"],
        )?;
        let org_processed = IntCounterVec::new(
            Opts::new(
                "verity_jobs_organization_processed_total",
                "Job attempts of an organization by queue and outcome (finished, retried, failed, lost, given_back)",
            ),
            &["organization", "queue", "outcome"],
        )?;
        let organization = IntGaugeVec::new(
            Opts::new(
                "verity_jobs_organization",
                "Jobs of an organization by queue and state (waiting, running, failed, oldest_waiting_seconds); database queue only",
            ),
            &["organization", "queue", "state"],
        )?;
        registry.register(Box::new(processed.clone()))?;
        registry.register(Box::new(queue.clone()))?;
        registry.register(Box::new(org_processed.clone()))?;
        registry.register(Box::new(organization.clone()))?;
        Ok(Self {
            processed,
            queue,
            org_processed,
            organization,
        })
    }

    fn outcome(&self, job: &Leased, outcome: &str) {
        self.processed
            .with_label_values(&[job.queue, job.kind.as_str(), outcome])
            .inc();
        if let Some(org) = job.organization {
            self.org_processed
                .with_label_values(&[org.to_string().as_str(), job.queue, outcome])
                .inc();
        }
    }

    /// Refreshes the queue gauges from the backend.
    pub async fn refresh(&self, jobs: &Jobs) {
        let now = crate::storage::now_micros();
        for q in QUEUES {
            let Ok(s) = jobs.stats(q).await else { continue };
            let set = |state: &str, v: u64| {
                self.queue
                    .with_label_values(&[q, state])
                    .set(i64::try_from(v).unwrap_or(i64::MAX));
            };
            set("waiting", s.waiting);
            set("scheduled", s.scheduled);
            set("deferred", s.deferred);
            set("running", s.running);
            set("failed", s.failed);
            let age = s
                .oldest_waiting_since
                .map_or(0, |t| u64::try_from((now - t) / 1_000_000).unwrap_or(0));
            set("oldest_waiting_seconds", age);
        }
        if let Ok(stats) = jobs.org_stats().await {
            // Organizations without jobs any more drop out instead of keeping their last numbers.
            self.organization.reset();
            for s in stats {
                let org = s.organization.to_string();
                let set = |state: &str, v: u64| {
                    self.organization
                        .with_label_values(&[org.as_str(), s.queue.as_str(), state])
                        .set(i64::try_from(v).unwrap_or(i64::MAX));
                };
                set("waiting", s.waiting);
                set("running", s.running);
                set("failed", s.failed);
                let age = s
                    .oldest_waiting_since
                    .map_or(0, |t| u64::try_from((now - t) / 1_000_000).unwrap_or(0));
                set("oldest_waiting_seconds", age);
            }
        }
    }
}

/// A finished job waiting for its acknowledgement.
struct Finished {
    leased: Leased,
    result: Value,
}

/// Jobs in hand (leased, not yet acknowledged or failed), with when each started running, so
/// that the ones still running at the end of the drain can be given back and the leaser can
/// tell whether the running jobs are short.
#[derive(Clone, Default)]
struct InHand(Arc<std::sync::Mutex<HashMap<String, Held>>>);

/// A job in hand and when it started running (`None` while it waits for a slot).
type Held = (Leased, Option<Instant>);

impl InHand {
    fn insert(&self, job: &Leased) {
        lock(&self.0).insert(job.id.clone(), (job.clone(), None));
    }

    fn started(&self, id: &str) {
        if let Some(entry) = lock(&self.0).get_mut(id) {
            entry.1 = Some(Instant::now());
        }
    }

    fn remove(&self, id: &str) {
        lock(&self.0).remove(id);
    }

    fn remove_all<'a>(&self, ids: impl Iterator<Item = &'a str>) {
        let mut hand = lock(&self.0);
        for id in ids {
            hand.remove(id);
        }
    }

    /// Whether every running job started less than `age` ago (true when none runs).
    fn running_younger_than(&self, age: Duration) -> bool {
        lock(&self.0)
            .values()
            .all(|(_, started)| started.is_none_or(|t| t.elapsed() < age))
    }

    fn drain(&self) -> Vec<Leased> {
        lock(&self.0).drain().map(|(_, (job, _))| job).collect()
    }
}

/// Runs a worker until `stop` turns true (or its sender is gone), then drains. Returns how many
/// jobs it gave back.
///
/// Round trips are shared between jobs: one lease call takes several jobs (at most
/// [`LEASE_BATCH`]), and finished jobs are acknowledged together (at most [`ACK_BATCH`] per
/// call: those that finished while the previous acknowledgement was under way). A slot is a
/// running handler (`concurrency` of them); it is free again once its finished job is handed
/// to the acknowledger, so the next lease overlaps the acknowledgement instead of waiting for
/// it.
///
/// **Leasing ahead.** While every slot is busy with jobs that started less than
/// [`AHEAD_AGE`] ago (short jobs under load), the worker leases up to
/// `min(concurrency, LEASE_BATCH)` more, so that they are in hand when the slots free up
/// instead of a round trip later. A job leased ahead that finds no free slot within
/// [`AHEAD_WAIT`], or is still waiting at shutdown, goes back to the head of its queue; and
/// nothing is leased ahead while a running job is older than `AHEAD_AGE`, so slow jobs never
/// keep a higher-priority job waiting behind jobs this worker holds but does not run.
///
/// A worker holds at most `2 × concurrency` leased jobs that are not finished, plus up to
/// `concurrency + ACK_BATCH` finished ones waiting for their acknowledgement. A job is removed
/// from its queue only by its acknowledgement, after its handler finished. Failed attempts
/// are recorded one by one.
pub async fn run(
    jobs: Jobs,
    handlers: Handlers,
    config: WorkerConfig,
    metrics: Option<JobMetrics>,
    mut stop: watch::Receiver<bool>,
) -> usize {
    let concurrency = config.concurrency.max(1);
    let ahead = concurrency.min(LEASE_BATCH);
    // A permit: a leased job not yet finished (running, or leased ahead and waiting for a slot).
    let permits = Arc::new(Semaphore::new(concurrency + ahead));
    // A slot: a running handler.
    let slots = Arc::new(Semaphore::new(concurrency));
    // Jobs leased and not yet in a slot (nor given back).
    let waiting = Arc::new(AtomicUsize::new(0));
    let handlers = Arc::new(handlers);
    let mut running: JoinSet<()> = JoinSet::new();
    let in_hand = InHand::default();
    // The acknowledger runs in a set of its own: aborting this future (a killed worker) aborts
    // it too, like a kill -9 would.
    let (done_tx, done_rx) = mpsc::channel::<Finished>(concurrency);
    let mut acker: JoinSet<()> = JoinSet::new();
    acker.spawn(acknowledge(
        jobs.clone(),
        metrics.clone(),
        in_hand.clone(),
        done_rx,
    ));
    let mut last_maintenance = tokio::time::Instant::now() - Duration::from_secs(60);
    tracing::info!(queues = ?config.queues, concurrency, backend = jobs.backend(), "worker started");
    // Resolves once `stop` is true or its sender is gone (both mean: stop).
    let mut stopping = false;
    loop {
        if stopping || *stop.borrow() {
            break;
        }
        while running.try_join_next().is_some() {}
        if last_maintenance.elapsed() >= Duration::from_secs(1) {
            last_maintenance = tokio::time::Instant::now();
            match jobs.maintain().await {
                Ok(m) if m.requeued + m.failed > 0 => {
                    tracing::warn!(
                        requeued = m.requeued,
                        failed = m.failed,
                        "jobs whose worker stopped renewing their lease"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "job maintenance failed"),
            }
            if let Some(m) = &metrics {
                m.refresh(&jobs).await;
            }
        }
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.wait_for(|s| *s) => { stopping = true; continue }
        };
        // Registered before looking, so an enqueue between the look and the wait still wakes us.
        let enqueued = super::ENQUEUED.notified();
        tokio::pin!(enqueued);
        enqueued.as_mut().enable();
        // Free capacity beyond this permit is leased in the same round trip, each job with a
        // permit of its own; permits not used go back.
        let mut permit = permit;
        take_more(&permits, &mut permit);
        // While jobs in hand are finishing, a moment's wait for more free slots makes one lease
        // call take several jobs instead of one each (this wait is not made when idle).
        let gather = concurrency.clamp(1, LEASE_BATCH).div_ceil(2);
        let have = permit.num_permits();
        if have < gather && permits.available_permits() + have < concurrency + ahead {
            if let Ok(Ok(more)) = tokio::time::timeout(
                GATHER,
                permits
                    .clone()
                    .acquire_many_owned(u32::try_from(gather - have).unwrap_or(0)),
            )
            .await
            {
                permit.merge(more);
            }
            take_more(&permits, &mut permit);
        }
        // Jobs beyond the free slots would wait for one: leased only while the running jobs
        // are short (see above).
        let free = slots
            .available_permits()
            .saturating_sub(waiting.load(Ordering::Acquire));
        if permit.num_permits() > free && !in_hand.running_younger_than(AHEAD_AGE) {
            if free == 0 {
                drop(permit);
                // Until a slot frees up (the jobs waiting for one get theirs first; a job just
                // spawned may not be waiting yet, so let it run before looking again).
                tokio::select! {
                    s = slots.clone().acquire_owned() => drop(s),
                    _ = stop.wait_for(|s| *s) => stopping = true,
                }
                tokio::task::yield_now().await;
                continue;
            }
            drop(permit.split(permit.num_permits() - free));
        }
        let want = permit.num_permits();
        let leased = match jobs.lease_many(&config.queues, config.lease, want).await {
            Ok(list) if !list.is_empty() => list,
            Ok(_) => {
                drop(permit);
                tokio::select! {
                    _ = tokio::time::sleep(config.idle_poll) => {}
                    _ = &mut enqueued => {}
                    _ = stop.wait_for(|s| *s) => stopping = true,
                }
                continue;
            }
            Err(e) => {
                drop(permit);
                tracing::warn!(error = %e, "leasing a job failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.wait_for(|s| *s) => stopping = true,
                }
                continue;
            }
        };
        for leased in leased {
            let Some(held) = permit.split(1) else {
                // More jobs than asked for: not possible with either backend; the lease of
                // this one runs out and it is retried.
                tracing::error!(job = %leased.id, "the queue handed out more jobs than asked for");
                break;
            };
            in_hand.insert(&leased);
            waiting.fetch_add(1, Ordering::AcqRel);
            let (jobs, handlers, metrics, in_hand, lease, done_tx) = (
                jobs.clone(),
                handlers.clone(),
                metrics.clone(),
                in_hand.clone(),
                config.lease,
                done_tx.clone(),
            );
            let (slots, waiting, mut stop) = (slots.clone(), waiting.clone(), stop.clone());
            running.spawn(async move {
                // A free slot at once, unless this job was leased ahead.
                let slot = tokio::select! {
                    biased;
                    s = slots.acquire_owned() => s.ok(),
                    _ = tokio::time::sleep(AHEAD_WAIT) => None,
                    _ = stop.wait_for(|s| *s) => None,
                };
                waiting.fetch_sub(1, Ordering::AcqRel);
                let Some(slot) = slot else {
                    give_back(&jobs, metrics.as_ref(), &leased).await;
                    in_hand.remove(&leased.id);
                    return;
                };
                in_hand.started(&leased.id);
                match execute(&jobs, &handlers, metrics.as_ref(), &leased, lease).await {
                    Some(Ok(result)) => {
                        // Acknowledged with others; the slot is free once the acknowledger
                        // has taken the job.
                        let sent = done_tx.send(Finished { leased, result }).await;
                        drop((slot, held));
                        if let Err(mpsc::error::SendError(f)) = sent {
                            // The acknowledger is gone (not while this task runs, as the run
                            // holds a sender): acknowledge alone.
                            acknowledge_batch(&jobs, metrics.as_ref(), &in_hand, vec![f]).await;
                        }
                    }
                    Some(Err(error)) => {
                        record_failure(&jobs, metrics.as_ref(), &leased, &error).await;
                        in_hand.remove(&leased.id);
                        drop((slot, held));
                    }
                    None => {
                        in_hand.remove(&leased.id);
                        drop((slot, held));
                    }
                }
            });
        }
        drop(permit);
    }
    // Drain: finish and acknowledge within the drain time, then give the rest back (jobs
    // leased ahead go back at once).
    drop(done_tx);
    let drained = tokio::time::timeout(config.drain, async {
        while running.join_next().await.is_some() {}
        while acker.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    let mut given_back = 0;
    if !drained {
        running.abort_all();
        while running.join_next().await.is_some() {}
        // Jobs that finished are acknowledged, not given back (their senders are gone now, so
        // the acknowledger ends once it has sent what it holds).
        if tokio::time::timeout(ACK_DRAIN, async {
            while acker.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            acker.abort_all();
            tracing::warn!("acknowledging finished jobs took too long; giving them back");
        }
        for job in in_hand.drain() {
            if give_back(&jobs, metrics.as_ref(), &job).await {
                given_back += 1;
            }
        }
    }
    tracing::info!(given_back, "worker stopped");
    given_back
}

/// Adds to `permit` the free permits, up to [`LEASE_BATCH`] in all.
fn take_more(permits: &Arc<Semaphore>, permit: &mut tokio::sync::OwnedSemaphorePermit) {
    let extra = permits
        .available_permits()
        .min(LEASE_BATCH.saturating_sub(permit.num_permits()));
    if extra > 0
        && let Ok(more) = permits
            .clone()
            .try_acquire_many_owned(u32::try_from(extra).unwrap_or(0))
    {
        permit.merge(more);
    }
}

/// Gives a job that did not run back to the head of its queue; `true` if it went back.
async fn give_back(jobs: &Jobs, metrics: Option<&JobMetrics>, job: &Leased) -> bool {
    match jobs.release(job).await {
        Ok(true) => {
            if let Some(m) = metrics {
                m.outcome(job, "given_back");
            }
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::warn!(job = %job.id, error = %e, "could not give a job back; its lease will run out");
            false
        }
    }
}

/// Leasing ahead happens only while every running job started less than this long ago.
const AHEAD_AGE: Duration = Duration::from_millis(20);

/// A job leased ahead goes back to its queue if no slot frees up for it within this time.
const AHEAD_WAIT: Duration = Duration::from_millis(500);

/// Longest wait for more free slots before a lease call (see `run`).
const GATHER: Duration = Duration::from_millis(1);

/// After the drain time, how long finished jobs may still take to be acknowledged.
const ACK_DRAIN: Duration = Duration::from_secs(5);

/// Acknowledges finished jobs as they come, several per round trip, until every sender is gone.
async fn acknowledge(
    jobs: Jobs,
    metrics: Option<JobMetrics>,
    in_hand: InHand,
    mut rx: mpsc::Receiver<Finished>,
) {
    let mut batch = Vec::with_capacity(ACK_BATCH);
    // Waits for one, then takes whatever else is there (up to ACK_BATCH): under load, the jobs
    // that finished while the previous call was under way; idle, a job is acknowledged at once.
    while rx.recv_many(&mut batch, ACK_BATCH).await > 0 {
        acknowledge_batch(
            &jobs,
            metrics.as_ref(),
            &in_hand,
            std::mem::take(&mut batch),
        )
        .await;
    }
}

async fn acknowledge_batch(
    jobs: &Jobs,
    metrics: Option<&JobMetrics>,
    in_hand: &InHand,
    batch: Vec<Finished>,
) {
    let done: Vec<(&Leased, &Value)> = batch.iter().map(|f| (&f.leased, &f.result)).collect();
    let acked = match jobs.complete_many(&done).await {
        Ok(acked) => acked,
        Err(e) => {
            tracing::warn!(jobs = batch.len(), error = %e, "could not acknowledge finished jobs; they may run again");
            vec![false; batch.len()]
        }
    };
    in_hand.remove_all(batch.iter().map(|f| f.leased.id.as_str()));
    if let Some(m) = metrics {
        for (f, ok) in batch.iter().zip(acked) {
            m.outcome(&f.leased, if ok { "finished" } else { "lost" });
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A lease renewal in flight: whether the lease is still ours.
type Renewal<'a> =
    std::pin::Pin<Box<dyn Future<Output = Result<bool, super::JobError>> + Send + 'a>>;

/// Runs one leased job to its end: handler under the time limit, lease renewed meanwhile.
/// `None` when the lease was lost meanwhile (someone else may run the job now).
async fn execute(
    jobs: &Jobs,
    handlers: &Handlers,
    metrics: Option<&JobMetrics>,
    leased: &Leased,
    lease: Duration,
) -> Option<HandlerResult> {
    let Some(handler) = handlers.by_kind.get(&leased.kind).cloned() else {
        // A newer producer than this worker: fail the attempt (it is retried, perhaps by a
        // newer worker).
        return Some(Err(format!(
            "no handler for job kind {:?} in this worker",
            leased.kind
        )));
    };
    let job = Job {
        leased: leased.clone(),
        jobs: jobs.clone(),
    };
    let work = tokio::time::timeout(leased.timeout, handler(job));
    tokio::pin!(work);
    let mut beat = tokio::time::interval(lease / 3);
    // A renewal that waited long (a busy database) is followed by one beat later, not by a
    // burst of the ticks it missed.
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beat.tick().await;
    // The renewal in flight. It runs next to the job rather than instead of it: on SQLite the
    // renewal needs the one writer connection, which the job may hold in a transaction; a
    // renewal awaited on its own would stop polling the job, so the job would never release
    // the writer and the renewal would never get it.
    let mut renewal: Option<Renewal<'_>> = None;
    loop {
        tokio::select! {
            r = &mut work => return Some(match r {
                Ok(r) => r,
                Err(_) => Err(format!("timed out after {} s", leased.timeout.as_secs())),
            }),
            _ = beat.tick(), if renewal.is_none() => {
                renewal = Some(Box::pin(jobs.heartbeat(leased, lease)));
            }
            renewed = async {
                match renewal.as_mut() {
                    Some(r) => r.await,
                    None => std::future::pending().await,
                }
            }, if renewal.is_some() => {
                renewal = None;
                match renewed {
                    Ok(true) => {}
                    Ok(false) => {
                        // Someone else holds it now (our lease ran out); stop working on it.
                        tracing::warn!(job = %leased.id, "lost the lease of a running job; abandoning it");
                        if let Some(m) = metrics { m.outcome(leased, "lost"); }
                        return None;
                    }
                    Err(e) => tracing::warn!(job = %leased.id, error = %e, "could not renew a job's lease"),
                }
            }
        }
    }
}

async fn record_failure(jobs: &Jobs, metrics: Option<&JobMetrics>, leased: &Leased, error: &str) {
    let label = match jobs.fail(leased, error).await {
        Ok(Failure::Retry(after)) => {
            tracing::warn!(job = %leased.id, kind = %leased.kind, %error, retry_in = ?after, "job attempt failed");
            "retried"
        }
        Ok(Failure::Failed) => {
            tracing::error!(job = %leased.id, kind = %leased.kind, %error, "job failed for good");
            "failed"
        }
        Ok(Failure::LeaseLost) => "lost",
        Err(e) => {
            tracing::warn!(job = %leased.id, error = %e, "could not record a failed attempt; the lease will run out");
            "lost"
        }
    };
    if let Some(m) = metrics {
        m.outcome(leased, label);
    }
}
