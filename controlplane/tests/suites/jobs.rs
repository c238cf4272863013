//! The job queue contract, run on all three backends: the SQL queue on SQLite and on
//! PostgreSQL, and Redis (real `redis-server`, TLS with client certificates, ACL user).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use verity_controlplane::jobs::redis::RedisQueue;
use verity_controlplane::jobs::sql::SqlQueue;
use verity_controlplane::jobs::worker::{self, Handlers, WorkerConfig};
use verity_controlplane::jobs::{Failure, JobError, Jobs, NewJob, State};

use crate::common::redis::{TlsRedis, other_ca_client};
use crate::common::{Backend, TestApp};

const SHORT: Duration = Duration::from_millis(300);

fn job(queue: &'static str, kind: &str) -> NewJob {
    NewJob::new(queue, kind, json!({"n": 1}))
}

async fn state(jobs: &Jobs, id: &str) -> State {
    jobs.get(id)
        .await
        .expect("get")
        .expect("the job exists")
        .state
}

/// Everything the queue promises, on one backend.
async fn contract(jobs: Jobs) {
    // Priority across queues, FIFO within one; payload and organization round-trip.
    let d1 = jobs
        .enqueue(&NewJob {
            organization: Some(7),
            ..job("default", "a")
        })
        .await
        .expect("enqueue");
    let d2 = jobs.enqueue(&job("default", "b")).await.expect("enqueue");
    let c1 = jobs.enqueue(&job("critical", "c")).await.expect("enqueue");
    let s = jobs.stats("default").await.expect("stats");
    assert_eq!((s.waiting, s.running), (2, 0));
    assert!(s.oldest_waiting_since.is_some());
    let queues = ["critical", "high", "default", "low"];
    let first = jobs
        .lease(&queues, SHORT * 10)
        .await
        .expect("lease")
        .expect("a job");
    assert_eq!(first.id, c1, "critical first");
    let second = jobs
        .lease(&queues, SHORT * 10)
        .await
        .expect("lease")
        .expect("a job");
    assert_eq!(
        (second.id.as_str(), second.organization),
        (d1.as_str(), Some(7))
    );
    assert_eq!(second.payload, json!({"n": 1}));
    assert_eq!(second.attempt, 1);
    assert_eq!(state(&jobs, &d1).await, State::Started);
    assert_eq!(jobs.stats("default").await.expect("stats").running, 1);
    // Acknowledged with a result; progress is visible while it runs.
    jobs.progress(&second, 0.5).await.expect("progress");
    assert_eq!(
        jobs.get(&d1).await.expect("get").expect("job").progress,
        Some(0.5)
    );
    assert!(
        jobs.complete(&second, &json!({"ok": true}))
            .await
            .expect("complete")
    );
    let done = jobs.get(&d1).await.expect("get").expect("job");
    assert_eq!(
        (done.state, done.result),
        (State::Finished, Some(json!({"ok": true})))
    );
    assert!(jobs.complete(&first, &json!(null)).await.expect("complete"));

    // A lease that runs out (the worker was killed) puts the job back; the old holder can no
    // longer renew or acknowledge, the new one can.
    let lost = jobs
        .lease(&["default"], SHORT)
        .await
        .expect("lease")
        .expect("a job");
    assert_eq!(lost.id, d2);
    tokio::time::sleep(SHORT * 2).await;
    let m = jobs.maintain().await.expect("maintain");
    assert_eq!(m.requeued, 1);
    assert_eq!(state(&jobs, &d2).await, State::Queued);
    let again = jobs
        .lease(&["default"], SHORT * 10)
        .await
        .expect("lease")
        .expect("a job");
    assert_eq!((again.id.as_str(), again.attempt), (d2.as_str(), 2));
    assert!(!jobs.heartbeat(&lost, SHORT).await.expect("heartbeat"));
    assert!(!jobs.complete(&lost, &json!(1)).await.expect("complete"));
    assert_eq!(
        jobs.fail(&lost, "x").await.expect("fail"),
        Failure::LeaseLost
    );
    assert!(jobs.heartbeat(&again, SHORT * 10).await.expect("heartbeat"));
    // Given back on shutdown: not counted as an attempt, first in line again.
    assert!(jobs.release(&again).await.expect("release"));
    let back = jobs
        .lease(&["default"], SHORT * 10)
        .await
        .expect("lease")
        .expect("a job");
    assert_eq!((back.id.as_str(), back.attempt), (d2.as_str(), 2));

    // A failed attempt is retried after the backoff (scheduled meanwhile); out of attempts, the
    // job is in the failed registry, from which an admin requeues or deletes it.
    match jobs.fail(&back, "boom").await.expect("fail") {
        Failure::Retry(after) => assert_eq!(after, Duration::from_secs(10), "second attempt: 10 s"),
        other => panic!("expected a retry, got {other:?}"),
    }
    let view = jobs.get(&d2).await.expect("get").expect("job");
    assert_eq!(
        (view.state, view.error.as_deref()),
        (State::Scheduled, Some("boom"))
    );
    assert_eq!(jobs.stats("default").await.expect("stats").scheduled, 1);
    assert!(
        jobs.lease(&["default"], SHORT)
            .await
            .expect("lease")
            .is_none(),
        "not before its time"
    );
    let once = jobs
        .enqueue(&NewJob {
            max_attempts: 1,
            ..job("low", "once")
        })
        .await
        .expect("enqueue");
    let l = jobs
        .lease(&["low"], SHORT * 10)
        .await
        .expect("lease")
        .expect("a job");
    assert_eq!(
        jobs.fail(&l, "bad input").await.expect("fail"),
        Failure::Failed
    );
    let failed = jobs.failed("low", 10).await.expect("failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(
        (failed[0].id.as_str(), failed[0].state),
        (once.as_str(), State::Failed)
    );
    assert_eq!(jobs.stats("low").await.expect("stats").failed, 1);
    assert!(jobs.requeue(&once).await.expect("requeue"));
    assert!(
        !jobs.requeue(&once).await.expect("requeue"),
        "only failed jobs"
    );
    let l = jobs
        .lease(&["low"], SHORT * 10)
        .await
        .expect("lease")
        .expect("requeued");
    assert_eq!((l.id.as_str(), l.attempt), (once.as_str(), 1));
    assert_eq!(
        jobs.fail(&l, "still bad").await.expect("fail"),
        Failure::Failed
    );
    assert!(jobs.delete(&once).await.expect("delete"));
    assert!(jobs.get(&once).await.expect("get").is_none());
    assert!(
        !jobs.delete(&d2).await.expect("delete"),
        "a pending job is not deleted"
    );

    // Scheduled: not before its time, then promoted.
    let later = jobs
        .enqueue(&NewJob {
            delay: Some(SHORT),
            ..job("high", "later")
        })
        .await
        .expect("enqueue");
    assert_eq!(state(&jobs, &later).await, State::Scheduled);
    assert!(jobs.lease(&["high"], SHORT).await.expect("lease").is_none());
    tokio::time::sleep(SHORT * 2).await;
    jobs.maintain().await.expect("maintain");
    let l = jobs
        .lease(&["high"], SHORT * 10)
        .await
        .expect("lease")
        .expect("due now");
    assert_eq!(l.id, later);
    assert!(jobs.complete(&l, &json!(null)).await.expect("complete"));

    // Deferred: runs after its dependency finished; fails when it failed.
    let parent = jobs.enqueue(&job("high", "parent")).await.expect("enqueue");
    let child = jobs
        .enqueue(&NewJob {
            depends_on: Some(parent.clone()),
            ..job("high", "child")
        })
        .await
        .expect("enqueue");
    assert_eq!(state(&jobs, &child).await, State::Deferred);
    let p = jobs
        .lease(&["high"], SHORT * 10)
        .await
        .expect("lease")
        .expect("parent");
    assert_eq!(p.id, parent);
    assert!(
        jobs.lease(&["high"], SHORT).await.expect("lease").is_none(),
        "the child waits"
    );
    assert!(jobs.complete(&p, &json!(null)).await.expect("complete"));
    let c = jobs
        .lease(&["high"], SHORT * 10)
        .await
        .expect("lease")
        .expect("child");
    assert_eq!(c.id, child);
    assert!(jobs.complete(&c, &json!(null)).await.expect("complete"));
    let doomed = jobs
        .enqueue(&NewJob {
            max_attempts: 1,
            ..job("high", "doomed")
        })
        .await
        .expect("enqueue");
    let orphan = jobs
        .enqueue(&NewJob {
            depends_on: Some(doomed.clone()),
            ..job("high", "orphan")
        })
        .await
        .expect("enqueue");
    let grandchild = jobs
        .enqueue(&NewJob {
            depends_on: Some(orphan.clone()),
            ..job("high", "grandchild")
        })
        .await
        .expect("enqueue");
    let d = jobs
        .lease(&["high"], SHORT * 10)
        .await
        .expect("lease")
        .expect("doomed");
    assert_eq!(jobs.fail(&d, "no").await.expect("fail"), Failure::Failed);
    for id in [&orphan, &grandchild] {
        let v = jobs.get(id).await.expect("get").expect("job");
        assert_eq!(v.state, State::Failed, "{id}");
        assert!(v.error.is_some_and(|e| e.contains("failed")));
    }
    let e = jobs
        .enqueue(&NewJob {
            depends_on: Some("no-such-job".into()),
            ..job("high", "x")
        })
        .await
        .expect_err("unknown dependency");
    assert!(matches!(e, JobError::Invalid(m) if m.contains("no-such-job")));

    // Idempotent producers: the same id enqueues once.
    let a = jobs
        .enqueue(&NewJob {
            id: Some("export:1:1".into()),
            ..job("low", "same")
        })
        .await
        .expect("enqueue");
    let b = jobs
        .enqueue(&NewJob {
            id: Some("export:1:1".into()),
            ..job("low", "same")
        })
        .await
        .expect("enqueue");
    assert_eq!(a, b);
    assert_eq!(jobs.stats("low").await.expect("stats").waiting, 1);
    assert!(
        jobs.enqueue(&NewJob {
            id: Some("bad id".into()),
            ..job("low", "x")
        })
        .await
        .is_err()
    );
    let l = jobs
        .lease(&["low"], SHORT * 10)
        .await
        .expect("lease")
        .expect("job");
    assert!(jobs.complete(&l, &json!(null)).await.expect("complete"));
}

/// The worker runtime: bounded concurrency, retries, time limits, drain.
async fn worker_runs_jobs(jobs: Jobs) {
    let ran = Arc::new(AtomicUsize::new(0));
    let at_once = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (r, a, p) = (ran.clone(), at_once.clone(), peak.clone());
    let handlers = Handlers::default()
        .on("sleep", move |job| {
            let (r, a, p) = (r.clone(), a.clone(), p.clone());
            async move {
                let now = a.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                job.progress(0.5).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                a.fetch_sub(1, Ordering::SeqCst);
                r.fetch_add(1, Ordering::SeqCst);
                Ok(json!({"slept": 100}))
            }
        })
        .on("boom", |_job| async { Err("always fails".to_string()) })
        .on("hang", |_job| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(json!(null))
        });
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(
            jobs.enqueue(&job("default", "sleep"))
                .await
                .expect("enqueue"),
        );
    }
    let boom = jobs
        .enqueue(&NewJob {
            max_attempts: 1,
            ..job("default", "boom")
        })
        .await
        .expect("enqueue");
    let hang = jobs
        .enqueue(&NewJob {
            max_attempts: 1,
            timeout: Duration::from_millis(300),
            ..job("critical", "hang")
        })
        .await
        .expect("enqueue");
    let unknown = jobs
        .enqueue(&NewJob {
            max_attempts: 1,
            ..job("low", "from-a-newer-version")
        })
        .await
        .expect("enqueue");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let config = WorkerConfig {
        concurrency: 3,
        idle_poll: Duration::from_millis(20),
        drain: Duration::from_secs(5),
        ..WorkerConfig::default()
    };
    let w = tokio::spawn(worker::run(jobs.clone(), handlers, config, None, stop_rx));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ran.load(Ordering::SeqCst) < 8 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker did not run 8 jobs"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let settle = tokio::time::Instant::now() + Duration::from_secs(10);
    while state(&jobs, &unknown).await != State::Failed
        || state(&jobs, &hang).await != State::Failed
    {
        assert!(
            tokio::time::Instant::now() < settle,
            "failures not recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);
    assert_eq!(w.await.expect("worker"), 0, "nothing left to give back");
    assert!(peak.load(Ordering::SeqCst) <= 3, "at most 3 at once");
    assert!(peak.load(Ordering::SeqCst) >= 2, "jobs ran concurrently");
    for id in &ids {
        let v = jobs.get(id).await.expect("get").expect("job");
        assert_eq!(
            (v.state, v.result),
            (State::Finished, Some(json!({"slept": 100})))
        );
    }
    let err = |id: &str| {
        let jobs = jobs.clone();
        let id = id.to_owned();
        async move {
            jobs.get(&id)
                .await
                .expect("get")
                .expect("job")
                .error
                .unwrap_or_default()
        }
    };
    assert_eq!(err(&boom).await, "always fails");
    assert!(
        err(&hang).await.contains("timed out"),
        "{}",
        err(&hang).await
    );
    assert!(
        err(&unknown).await.contains("no handler"),
        "{}",
        err(&unknown).await
    );

    // Drain: a job still running when the drain time is up is given back, not lost.
    let slow = jobs
        .enqueue(&NewJob {
            timeout: Duration::from_secs(3600),
            ..job("low", "hang")
        })
        .await
        .expect("enqueue");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let handlers = Handlers::default().on("hang", |_job| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(json!(null))
    });
    let config = WorkerConfig {
        drain: Duration::from_millis(200),
        idle_poll: Duration::from_millis(20),
        ..WorkerConfig::default()
    };
    let w = tokio::spawn(worker::run(jobs.clone(), handlers, config, None, stop_rx));
    let started = tokio::time::Instant::now() + Duration::from_secs(10);
    while state(&jobs, &slow).await != State::Started {
        assert!(
            tokio::time::Instant::now() < started,
            "the slow job did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);
    assert_eq!(
        w.await.expect("worker"),
        1,
        "the running job was given back"
    );
    let v = jobs.get(&slow).await.expect("get").expect("job");
    assert_eq!((v.state, v.attempts), (State::Queued, 0));
}

async fn sql_jobs(backend: Backend) -> (TestApp, Jobs) {
    let app = TestApp::new(backend).await;
    let jobs = Jobs::Sql(SqlQueue::new(app.db.clone()));
    (app, jobs)
}

async fn redis_jobs(redis: &TlsRedis) -> Jobs {
    Jobs::Redis(
        RedisQueue::connect(&redis.settings())
            .await
            .expect("connect to TLS Redis"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queue_contract_sqlite() {
    let (_app, jobs) = sql_jobs(Backend::Sqlite).await;
    contract(jobs.clone()).await;
    worker_runs_jobs(jobs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queue_contract_postgres() {
    let (_app, jobs) = sql_jobs(Backend::Postgres).await;
    contract(jobs.clone()).await;
    worker_runs_jobs(jobs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queue_contract_redis() {
    let redis = TlsRedis::start();
    let jobs = redis_jobs(&redis).await;
    contract(jobs.clone()).await;
    worker_runs_jobs(jobs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_requires_tls_a_client_certificate_and_the_user() {
    let redis = TlsRedis::start();
    // Plain redis:// is refused by the client before anything is sent.
    let mut s = redis.settings();
    s.url = format!("redis://127.0.0.1:{}/0", redis.port);
    assert!(
        matches!(RedisQueue::connect(&s).await, Err(JobError::Invalid(m)) if m.contains("rediss://"))
    );
    // No client certificate: the server refuses the handshake.
    let mut s = redis.settings();
    s.cert_pem.clear();
    s.key_pem.clear();
    assert!(
        RedisQueue::connect(&s).await.is_err(),
        "no client certificate"
    );
    // Another CA's client certificate.
    let (_, foreign) = other_ca_client();
    let mut s = redis.settings();
    s.cert_pem = foreign.cert.into_bytes();
    s.key_pem = foreign.key.into_bytes();
    assert!(
        RedisQueue::connect(&s).await.is_err(),
        "a foreign certificate"
    );
    // The right certificate but a wrong password, or no user at all (default user is off).
    let mut s = redis.settings();
    s.password = "wrong".into();
    assert!(RedisQueue::connect(&s).await.is_err(), "a wrong password");
    let mut s = redis.settings();
    s.username.clear();
    s.password.clear();
    assert!(RedisQueue::connect(&s).await.is_err(), "no user");
    // A server certificate from another CA is not trusted.
    let (other_ca, _) = other_ca_client();
    let mut s = redis.settings();
    s.ca_pem = other_ca.into_bytes();
    assert!(
        RedisQueue::connect(&s).await.is_err(),
        "an untrusted server"
    );
    redis_jobs(&redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_jobs_survive_a_redis_crash() {
    let mut redis = TlsRedis::start();
    let jobs = redis_jobs(&redis).await;
    let queued = jobs
        .enqueue(&job("default", "keep"))
        .await
        .expect("enqueue");
    let running = jobs
        .enqueue(&job("default", "keep"))
        .await
        .expect("enqueue");
    let l = jobs
        .lease(&["default"], SHORT)
        .await
        .expect("lease")
        .expect("job");
    assert_eq!(l.id, queued);
    let _ = running;
    redis.crash_and_restart();
    let jobs = redis_jobs(&redis).await;
    let s = jobs.stats("default").await.expect("stats");
    assert_eq!(
        (s.waiting, s.running),
        (1, 1),
        "both jobs are still there after kill -9; log: {}",
        std::fs::read_to_string(redis.dir.join("redis.log")).unwrap_or_default()
    );
    tokio::time::sleep(SHORT * 2).await;
    assert_eq!(jobs.maintain().await.expect("maintain").requeued, 1);
    assert_eq!(jobs.stats("default").await.expect("stats").waiting, 2);
}

/// A `verity work` process, its probes on `port`.
struct WorkProcess {
    child: std::process::Child,
}

impl WorkProcess {
    fn start(data_dir: &std::path::Path, port: u16, env: &[(String, String)]) -> Self {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_verity"))
            .args(["work", "--queues", "critical,default", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .env("VERITY_DATA_DIR", data_dir)
            .env("VERITY_WORKER_LEASE_SECS", "2")
            .env("VERITY_WORKER_DRAIN_SECS", "1")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start verity work");
        Self { child }
    }

    fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn sigterm(&mut self) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait")
    }
}

impl Drop for WorkProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get_text(port: u16, path: &str) -> Option<(u16, String)> {
    let r = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .ok()?;
    Some((r.status().as_u16(), r.text().await.ok()?))
}

async fn wait_for(what: &str, secs: u64, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !ok().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// kill -9 of a worker mid-job loses nothing (the job runs again elsewhere); SIGTERM gives the
/// job in hand back; the worker answers its probes and reports the queues in /metrics.
async fn work_process_drill(jobs: Jobs, data_dir: &std::path::Path, env: Vec<(String, String)>) {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port")
    };
    let quick = jobs
        .enqueue(&NewJob::new("critical", "noop", json!({"hello": "worker"})))
        .await
        .expect("enqueue");
    let long = jobs
        .enqueue(&NewJob::new("default", "sleep", json!({"ms": 600_000})))
        .await
        .expect("enqueue");
    let port = free();
    let mut first = WorkProcess::start(data_dir, port, &env);
    wait_for("the worker's /readyz", 30, async || {
        get_text(port, "/readyz")
            .await
            .is_some_and(|(s, _)| s == 200)
    })
    .await;
    wait_for("the noop job", 30, async || {
        state(&jobs, &quick).await == State::Finished
    })
    .await;
    assert_eq!(
        jobs.get(&quick).await.expect("get").expect("job").result,
        Some(json!({"hello": "worker"}))
    );
    wait_for("the sleep job to start", 30, async || {
        state(&jobs, &long).await == State::Started
    })
    .await;
    let metrics = get_text(port, "/metrics").await.expect("metrics").1;
    assert!(
        metrics.contains("verity_jobs_queue{queue=\"default\",state=\"running\"} 1"),
        "{metrics}"
    );
    first.kill_9();
    // A second worker takes the job over once the dead one's lease (2 s) ran out.
    let port2 = free();
    let mut second = WorkProcess::start(data_dir, port2, &env);
    wait_for("the job's second attempt", 30, async || {
        jobs.get(&long)
            .await
            .ok()
            .flatten()
            .is_some_and(|v| v.state == State::Started && v.attempts == 2)
    })
    .await;
    // SIGTERM: the drain (1 s) ends before the job does, so it is given back, attempt uncounted.
    assert!(second.sigterm().success(), "a clean exit");
    let v = jobs.get(&long).await.expect("get").expect("job");
    assert_eq!((v.state, v.attempts), (State::Queued, 1), "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verity_work_on_sqlite_survives_kill_9_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("verity.db").display());
    let db = verity_controlplane::storage::Db::connect(&url, &Default::default())
        .await
        .expect("connect");
    db.migrate().await.expect("migrate");
    let jobs = Jobs::Sql(SqlQueue::new(db));
    work_process_drill(jobs, dir.path(), Vec::new()).await;
}

fn redis_env(dir: &std::path::Path, redis: &TlsRedis) -> Vec<(String, String)> {
    let files = |name: &str, pem: &str| {
        let p = dir.join(name);
        std::fs::write(&p, pem).expect("write pem");
        p.display().to_string()
    };
    let s = redis.settings();
    vec![
        ("VERITY_REDIS_URL".to_string(), s.url.clone()),
        ("VERITY_REDIS_USERNAME".to_string(), s.username.clone()),
        ("VERITY_REDIS_PASSWORD".to_string(), s.password.clone()),
        (
            "VERITY_REDIS_TLS_CA".to_string(),
            files("ca.crt", &redis.ca),
        ),
        (
            "VERITY_REDIS_TLS_CERT".to_string(),
            files("tls.crt", &redis.client.cert),
        ),
        (
            "VERITY_REDIS_TLS_KEY".to_string(),
            files("tls.key", &redis.client.key),
        ),
    ]
}

/// Redis not reachable yet when `verity work` starts (a pod's DNS or network policy a few
/// seconds behind): it waits instead of exiting, and serves once Redis is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verity_work_waits_for_redis_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut redis = TlsRedis::start();
    let env = redis_env(dir.path(), &redis);
    redis.stop();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let mut work = WorkProcess::start(dir.path(), port, &env);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        work.child.try_wait().expect("try_wait").is_none(),
        "verity work exited while Redis was down instead of waiting for it"
    );
    redis.launch();
    wait_for("the worker's /readyz once Redis is up", 30, async || {
        get_text(port, "/readyz")
            .await
            .is_some_and(|(s, _)| s == 200)
    })
    .await;
    assert!(work.sigterm().success(), "a clean exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verity_work_on_redis_survives_kill_9_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = TlsRedis::start();
    let env = redis_env(dir.path(), &redis);
    let jobs = redis_jobs(&redis).await;
    work_process_drill(jobs, dir.path(), env).await;
}

crate::both_backends! {
    async fn job_api(app) {
        use http::StatusCode;
        use verity_controlplane::authz::Role;
        let jobs = Jobs::Sql(SqlQueue::new(app.db.clone()));
        let mine = jobs.enqueue(&NewJob { organization: Some(app.org), max_attempts: 1, ..job("low", "import") }).await.expect("enqueue");
        let l = jobs.lease(&["low"], SHORT * 10).await.expect("lease").expect("job");
        assert_eq!(jobs.fail(&l, "the file is not UTF-8").await.expect("fail"), Failure::Failed);
        let path = format!("/api/jobs/{mine}");
        let v = app.get(&path, &app.owner).await.expect(StatusCode::OK);
        assert_eq!((v["state"].as_str(), v["error"].as_str(), v["attempts"].as_u64()), (Some("failed"), Some("the file is not UTF-8"), Some(1)));
        // Members see their organization's jobs; only admins see the registry and change it.
        let annotator = app.user("ann@example.com", Role::Annotator).await;
        app.get(&path, &annotator).await.expect(StatusCode::OK);
        app.get("/api/jobs?queue=low&state=failed", &annotator).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        app.post(&format!("{path}/requeue"), &annotator, json!({})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        // Another organization's job is not found, like a missing one.
        let (_, other_owner) = app.other_org("Globex", "owner@globex.test").await;
        app.get(&path, &other_owner).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        app.post(&format!("{path}/requeue"), &other_owner, json!({})).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        app.get("/api/jobs/no-such-job", &app.owner).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        let listed = app.get("/api/jobs?queue=low&state=failed", &app.owner).await.expect(StatusCode::OK);
        assert_eq!(listed.as_array().map(|a| a.iter().filter(|j| j["id"] == json!(mine)).count()), Some(1));
        assert_eq!(app.get("/api/jobs?queue=low&state=failed", &other_owner).await.expect(StatusCode::OK), json!([]));
        app.get("/api/jobs?queue=urgent&state=failed", &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        app.get("/api/jobs?queue=low&state=queued", &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        app.get("/api/jobs?queue=low&state=failed&limit=0", &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        // Requeue: back in the queue with fresh attempts; a second requeue is a conflict.
        let v = app.post(&format!("{path}/requeue"), &app.owner, json!({})).await.expect(StatusCode::OK);
        assert_eq!((v["state"].as_str(), v["attempts"].as_u64()), (Some("queued"), Some(0)));
        app.post(&format!("{path}/requeue"), &app.owner, json!({})).await.expect_error(StatusCode::CONFLICT, "conflict");
        app.delete(&path, &app.owner).await.expect_error(StatusCode::CONFLICT, "conflict");
        let l = jobs.lease(&["low"], SHORT * 10).await.expect("lease").expect("job");
        assert!(jobs.complete(&l, &json!({"tasks": 3})).await.expect("complete"));
        assert_eq!(app.get(&path, &annotator).await.expect(StatusCode::OK)["result"], json!({"tasks": 3}));
        app.delete(&path, &app.owner).await.expect(StatusCode::NO_CONTENT);
        app.get(&path, &app.owner).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        let actions: Vec<String> = app.audit_actions(app.org).await.into_iter().map(|(a, _, _)| a).collect();
        assert!(actions.iter().any(|a| a == "job.requeue") && actions.iter().any(|a| a == "job.delete"), "{actions:?}");
    }
}

/// Per-organization job metrics on the database queue: waiting, running and failed jobs and the
/// oldest waiting job's age per organization and queue, and attempts by outcome; an
/// organization whose jobs are gone drops out of the gauges.
async fn job_metrics_per_organization(backend: Backend) {
    let app = TestApp::new(backend).await;
    let jobs = Jobs::Sql(SqlQueue::new(app.db.clone()));
    let for_org = |org: i64, kind: &str| NewJob {
        organization: Some(org),
        ..NewJob::new("low", kind, json!({}))
    };
    for _ in 0..3 {
        jobs.enqueue(&for_org(41, "noop")).await.expect("enqueue");
    }
    jobs.enqueue(&for_org(42, "noop")).await.expect("enqueue");
    let registry = prometheus::Registry::new();
    let metrics = worker::JobMetrics::new(&registry).expect("metrics");
    let text = || {
        let mut out = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&registry.gather(), &mut out)
            .expect("encode");
        out
    };
    metrics.refresh(&jobs).await;
    let t = text();
    for line in [
        r#"verity_jobs_organization{organization="41",queue="low",state="waiting"} 3"#,
        r#"verity_jobs_organization{organization="42",queue="low",state="waiting"} 1"#,
        r#"verity_jobs_organization{organization="41",queue="low",state="failed"} 0"#,
    ] {
        assert!(t.contains(line), "{line} missing from\n{t}");
    }
    // A worker runs them all: attempts are counted per organization, and the waiting gauges
    // fall to nothing.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let config = WorkerConfig {
        queues: vec!["low"],
        idle_poll: Duration::from_millis(20),
        ..WorkerConfig::default()
    };
    let run = tokio::spawn(worker::run(
        jobs.clone(),
        verity_controlplane::jobs::builtin_handlers(),
        config,
        Some(metrics.clone()),
        stop_rx,
    ));
    for _ in 0..300 {
        if text().contains(r#"verity_jobs_organization_processed_total{organization="41",outcome="finished",queue="low"} 3"#)
            && text().contains(r#"verity_jobs_organization_processed_total{organization="42",outcome="finished",queue="low"} 1"#)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);
    run.await.expect("worker");
    let t = text();
    assert!(
        t.contains(r#"verity_jobs_organization_processed_total{organization="41",outcome="finished",queue="low"} 3"#),
        "{t}"
    );
    metrics.refresh(&jobs).await;
    assert!(!text().contains("verity_jobs_organization{"), "{}", text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn job_metrics_per_organization_sqlite() {
    job_metrics_per_organization(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn job_metrics_per_organization_postgres() {
    job_metrics_per_organization(Backend::Postgres).await;
}

/// Several jobs leased in one round trip: at most the number asked for, oldest first, from the
/// first queue in priority order that has any, each with a lease token of its own that
/// acknowledges only that job. Acknowledged in one round trip too: each job of the batch is
/// checked on its own, so a job whose lease ran out (and went to another worker) is refused and
/// left as it is, while the others of the batch finish and release their dependents.
async fn lease_and_acknowledge_in_batches(jobs: &Jobs) {
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            jobs.enqueue(&NewJob::new("low", "noop", json!({"i": i})))
                .await
                .expect("enqueue"),
        );
    }
    let urgent = jobs
        .enqueue(&NewJob::new("high", "noop", json!({})))
        .await
        .expect("enqueue");
    let lease = Duration::from_secs(30);
    let first = jobs
        .lease_many(&["high", "low"], lease, 3)
        .await
        .expect("lease");
    assert_eq!(
        first.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
        vec![urgent]
    );
    let batch = jobs
        .lease_many(&["high", "low"], lease, 3)
        .await
        .expect("lease");
    assert_eq!(
        batch.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
        ids[..3].to_vec()
    );
    let tokens: std::collections::BTreeSet<_> = batch.iter().map(|j| j.token.clone()).collect();
    assert_eq!(tokens.len(), 3, "one token per job");
    assert!(
        batch
            .iter()
            .all(|j| j.attempt == 1 && j.payload["i"].is_number())
    );
    assert_eq!(jobs.stats("low").await.expect("stats").running, 3);
    let rest = jobs.lease_many(&["low"], lease, 10).await.expect("lease");
    assert_eq!(rest.len(), 2);
    assert!(
        jobs.lease_many(&["low"], lease, 10)
            .await
            .expect("lease")
            .is_empty()
    );
    // A token acknowledges its own job only.
    let mut stolen = batch[0].clone();
    stolen.token = batch[1].token.clone();
    assert!(!jobs.complete(&stolen, &json!({})).await.expect("complete"));
    assert_eq!(state(jobs, &batch[0].id).await, State::Started);
    assert!(
        jobs.complete_many(&[])
            .await
            .expect("nothing to acknowledge")
            .is_empty()
    );

    // A batch with one lost lease: only that job is refused (and stays with its new holder).
    let parent = jobs
        .enqueue(&NewJob::new("critical", "noop", json!({"p": 1})))
        .await
        .expect("enqueue");
    let child = jobs
        .enqueue(&NewJob {
            depends_on: Some(parent.clone()),
            ..NewJob::new("critical", "noop", json!({"c": 1}))
        })
        .await
        .expect("enqueue");
    let short = jobs
        .enqueue(&NewJob::new("critical", "noop", json!({"s": 1})))
        .await
        .expect("enqueue");
    let p = jobs
        .lease(&["critical"], lease)
        .await
        .expect("lease")
        .expect("parent");
    assert_eq!(p.id, parent);
    let lost = jobs
        .lease(&["critical"], SHORT)
        .await
        .expect("lease")
        .expect("short");
    assert_eq!(lost.id, short);
    tokio::time::sleep(SHORT * 2).await;
    assert_eq!(jobs.maintain().await.expect("maintain").requeued, 1);
    let taken_over = jobs
        .lease(&["critical"], lease)
        .await
        .expect("lease")
        .expect("short again");
    assert_eq!(
        (taken_over.id.as_str(), taken_over.attempt),
        (short.as_str(), 2)
    );
    let (r0, r1, r2) = (json!({"n": 0}), json!({"n": 1}), json!({"n": 2}));
    let acked = jobs
        .complete_many(&[(&batch[0], &r0), (&lost, &r1), (&p, &r2)])
        .await
        .expect("complete");
    assert_eq!(acked, vec![true, false, true]);
    let v = jobs.get(&batch[0].id).await.expect("get").expect("job");
    assert_eq!((v.state, v.result), (State::Finished, Some(r0)));
    let v = jobs.get(&short).await.expect("get").expect("job");
    assert_eq!(
        (v.state, v.attempts, v.result),
        (State::Started, 2, None),
        "the lost job is left to its new holder"
    );
    assert_eq!(state(jobs, &parent).await, State::Finished);
    assert_eq!(
        state(jobs, &child).await,
        State::Queued,
        "released by the batch"
    );
    let c = jobs
        .lease(&["critical"], lease)
        .await
        .expect("lease")
        .expect("child");
    assert_eq!(c.id, child);
    let null = json!(null);
    let all: Vec<(&verity_controlplane::jobs::Leased, &serde_json::Value)> = batch[1..]
        .iter()
        .chain(&rest)
        .chain(&first)
        .chain([&c, &taken_over])
        .map(|j| (j, &null))
        .collect();
    let acked = jobs.complete_many(&all).await.expect("complete");
    assert_eq!(acked, vec![true; all.len()]);
    for (job, _) in &all {
        assert_eq!(state(jobs, &job.id).await, State::Finished);
    }
    for q in ["critical", "high", "low"] {
        let s = jobs.stats(q).await.expect("stats");
        assert_eq!((s.waiting, s.running), (0, 0), "{q}");
    }
}

/// Many producers at once (Redis sends their jobs together in one script call): each job is
/// enqueued once with its own payload, a repeated id once, and a job whose dependency does not
/// exist is refused alone, with the others of its batch enqueued.
async fn concurrent_enqueues(jobs: &Jobs) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let jobs = jobs.clone();
        tasks.spawn(async move {
            let base = NewJob::new("default", "ok", json!({"i": i}));
            let job = match i {
                7 => NewJob {
                    depends_on: Some("nobody".into()),
                    ..base
                },
                11 | 12 => NewJob {
                    id: Some("same-id".into()),
                    ..base
                },
                _ => base,
            };
            (i, jobs.enqueue(&job).await)
        });
    }
    let mut ids = std::collections::BTreeMap::new();
    for (i, r) in tasks.join_all().await {
        match (i, r) {
            (7, Err(JobError::Invalid(m))) => assert!(m.contains("nobody"), "{m}"),
            (7, other) => panic!("an unknown dependency was accepted: {other:?}"),
            (i, r) => {
                ids.insert(i, r.expect("enqueue"));
            }
        }
    }
    assert_eq!(
        (ids[&11].as_str(), ids[&12].as_str()),
        ("same-id", "same-id")
    );
    let distinct: std::collections::BTreeSet<_> = ids.values().cloned().collect();
    assert_eq!(distinct.len(), 38);
    assert_eq!(jobs.stats("default").await.expect("stats").waiting, 38);
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let batch = jobs
            .lease_many(&["default"], Duration::from_secs(30), 16)
            .await
            .expect("lease");
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 16);
        for l in &batch {
            let i = l.payload["i"].as_i64().expect("payload");
            if l.id != "same-id" {
                assert_eq!(ids[&i], l.id, "job {i} has its own payload");
            }
            assert!(seen.insert(l.id.clone()), "{} leased twice", l.id);
        }
        let null = json!(null);
        let done: Vec<_> = batch.iter().map(|l| (l, &null)).collect();
        assert!(
            jobs.complete_many(&done)
                .await
                .expect("complete")
                .iter()
                .all(|a| *a)
        );
    }
    assert_eq!(seen, distinct);
}

/// Handlers for the batch tests: `ok` finishes, `fail` fails its attempt, `stuck-first` hangs on
/// its first attempt and finishes on the next, `gated` waits for a permit of `gate`. Every call
/// is counted per job id.
fn counting_handlers(
    calls: Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>,
    gate: Arc<tokio::sync::Semaphore>,
) -> Handlers {
    let count = move |calls: &Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>,
                      id: &str| {
        *calls
            .lock()
            .expect("lock")
            .entry(id.to_owned())
            .or_default() += 1;
    };
    let (c1, c2, c3, c4) = (calls.clone(), calls.clone(), calls.clone(), calls);
    Handlers::default()
        .on("ok", move |job| {
            count(&c1, &job.leased.id);
            async move { Ok(json!({"done": job.leased.payload})) }
        })
        .on("fail", move |job| {
            count(&c2, &job.leased.id);
            async move { Err("this one fails".to_string()) }
        })
        .on("stuck-first", move |job| {
            count(&c3, &job.leased.id);
            async move {
                if job.leased.attempt == 1 {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                Ok(json!({"attempt": job.leased.attempt}))
            }
        })
        .on("gated", move |job| {
            count(&c4, &job.leased.id);
            let gate = gate.clone();
            async move {
                gate.acquire().await.expect("gate").forget();
                Ok(json!(null))
            }
        })
}

fn one_queue(queue: &'static str, concurrency: usize, lease: Duration) -> WorkerConfig {
    WorkerConfig {
        queues: vec![queue],
        concurrency,
        lease,
        idle_poll: Duration::from_millis(20),
        drain: Duration::from_secs(5),
    }
}

/// The worker's batches: acknowledgements of a batch where one job failed retry only that
/// one; a worker never holds more unacknowledged leases than its free slots; a worker killed
/// with several jobs in hand loses none of them, each runs exactly once more.
async fn worker_batches(jobs: &Jobs) {
    type Calls = Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>;
    let calls: Calls = Arc::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let calls_of = |id: &str| calls.lock().expect("lock").get(id).copied().unwrap_or(0);

    // One failure among finished jobs: only it is retried.
    let mut oks = Vec::new();
    for i in 0..7 {
        oks.push(
            jobs.enqueue(&NewJob::new("low", "ok", json!({"i": i})))
                .await
                .expect("enqueue"),
        );
    }
    let failing = jobs
        .enqueue(&NewJob::new("low", "fail", json!({})))
        .await
        .expect("enqueue");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let w = tokio::spawn(worker::run(
        jobs.clone(),
        counting_handlers(calls.clone(), gate.clone()),
        one_queue("low", 8, Duration::from_secs(30)),
        None,
        stop_rx,
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut settled = state(jobs, &failing).await == State::Scheduled;
        for id in &oks {
            settled &= state(jobs, id).await == State::Finished;
        }
        if settled {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the batch did not settle"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);
    assert_eq!(w.await.expect("worker"), 0);
    for (i, id) in oks.iter().enumerate() {
        let v = jobs.get(id).await.expect("get").expect("job");
        assert_eq!(
            (v.state, v.attempts, v.result),
            (State::Finished, 1, Some(json!({"done": {"i": i}})))
        );
        assert_eq!(calls_of(id), 1, "each finished job ran once");
    }
    let v = jobs.get(&failing).await.expect("get").expect("job");
    assert_eq!(
        (v.state, v.attempts, v.error.as_deref()),
        (State::Scheduled, 1, Some("this one fails")),
        "only the failed job waits for its retry"
    );
    assert_eq!(calls_of(&failing), 1);
    assert_eq!(jobs.stats("low").await.expect("stats").scheduled, 1);

    // Slots: 3 of them, 10 jobs that wait at a gate. Jobs leased ahead of the busy slots
    // (while the running jobs were young) go back to their queue when no slot frees up for
    // them, without spending an attempt, and nothing more is leased ahead while the running
    // jobs are older than that; a slot is free again once its finished job is handed over for
    // acknowledgement.
    let mut gated = Vec::new();
    for _ in 0..10 {
        gated.push(
            jobs.enqueue(&NewJob::new("high", "gated", json!({})))
                .await
                .expect("enqueue"),
        );
    }
    let started = || gated.iter().map(|id| calls_of(id) as usize).sum::<usize>();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let w = tokio::spawn(worker::run(
        jobs.clone(),
        counting_handlers(calls.clone(), gate.clone()),
        one_queue("high", 3, Duration::from_secs(30)),
        None,
        stop_rx,
    ));
    wait_for("3 gated jobs to start", 30, async || started() == 3).await;
    wait_for("the jobs leased ahead to go back", 30, async || {
        jobs.stats("high")
            .await
            .is_ok_and(|s| (s.running, s.waiting) == (3, 7))
    })
    .await;
    // A second look a moment later: the running jobs are old now, so none is leased ahead.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = jobs.stats("high").await.expect("stats");
    assert_eq!(
        (s.running, s.waiting),
        (3, 7),
        "nothing is leased ahead of slots busy with old jobs"
    );
    gate.add_permits(1);
    wait_for("a fourth gated job to start", 30, async || started() == 4).await;
    assert_eq!(
        jobs.stats("high").await.expect("stats").waiting,
        6,
        "one slot came back, one job more was leased"
    );
    wait_for("the first gated job's acknowledgement", 30, async || {
        jobs.stats("high")
            .await
            .is_ok_and(|s| (s.running, s.waiting) == (3, 6))
    })
    .await;
    assert_eq!(started(), 4);
    gate.add_permits(100);
    wait_for("every gated job", 30, async || {
        jobs.stats("high")
            .await
            .is_ok_and(|s| s.waiting == 0 && s.running == 0)
    })
    .await;
    assert_eq!(started(), 10, "each ran once");
    for id in &gated {
        let v = jobs.get(id).await.expect("get").expect("job");
        assert_eq!(
            (v.state, v.attempts),
            (State::Finished, 1),
            "a job given back spent no attempt"
        );
    }
    let _ = stop_tx.send(true);
    assert_eq!(w.await.expect("worker"), 0);

    // A worker killed (its task aborted: no drain, no acknowledgement, no give-back) with four
    // jobs in hand: after their leases run out, another worker runs each exactly once more.
    let lease = Duration::from_secs(1);
    let mut stuck = Vec::new();
    for _ in 0..4 {
        stuck.push(
            jobs.enqueue(&NewJob::new("critical", "stuck-first", json!({})))
                .await
                .expect("enqueue"),
        );
    }
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let killed = tokio::spawn(worker::run(
        jobs.clone(),
        counting_handlers(calls.clone(), gate.clone()),
        one_queue("critical", 4, lease),
        None,
        stop_rx,
    ));
    wait_for("4 jobs in hand", 30, async || {
        stuck.iter().all(|id| calls_of(id) == 1)
    })
    .await;
    killed.abort();
    assert!(killed.await.is_err_and(|e| e.is_cancelled()));
    let s = jobs.stats("critical").await.expect("stats");
    assert_eq!(
        (s.running, s.waiting),
        (4, 0),
        "the killed worker's leases are still there"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let w = tokio::spawn(worker::run(
        jobs.clone(),
        counting_handlers(calls.clone(), gate.clone()),
        one_queue("critical", 4, lease),
        None,
        stop_rx,
    ));
    for id in &stuck {
        wait_for("the retried job", 30, async || {
            state(jobs, id).await == State::Finished
        })
        .await;
    }
    let _ = stop_tx.send(true);
    assert_eq!(w.await.expect("worker"), 0);
    for id in &stuck {
        let v = jobs.get(id).await.expect("get").expect("job");
        assert_eq!(
            (v.attempts, v.result),
            (2, Some(json!({"attempt": 2}))),
            "{id}"
        );
        assert_eq!(calls_of(id), 2, "{id}: run once more, exactly");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_delivery_sqlite() {
    let (_app, jobs) = sql_jobs(Backend::Sqlite).await;
    concurrent_enqueues(&jobs).await;
    lease_and_acknowledge_in_batches(&jobs).await;
    worker_batches(&jobs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_delivery_postgres() {
    let (_app, jobs) = sql_jobs(Backend::Postgres).await;
    concurrent_enqueues(&jobs).await;
    lease_and_acknowledge_in_batches(&jobs).await;
    worker_batches(&jobs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_delivery_redis() {
    let redis = TlsRedis::start();
    let jobs = redis_jobs(&redis).await;
    concurrent_enqueues(&jobs).await;
    lease_and_acknowledge_in_batches(&jobs).await;
    worker_batches(&jobs).await;
}

/// On SQLite the lease renewal needs the one writer connection. A job that holds the writer in a
/// transaction when its renewal falls due must go on running (and release the writer), rather
/// than wait for a renewal that waits for it: a 100,000-object storage sync stopped this way
/// (the worker awaited the renewal without polling the job, every renewal timed out, and the
/// ticks it missed started the next one at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_holding_the_sqlite_writer_when_its_lease_is_renewed_finishes() {
    let (app, jobs) = sql_jobs(Backend::Sqlite).await;
    let db = app.db.clone();
    let handlers = Handlers::default().on("hold", move |_job| {
        let db = db.clone();
        async move {
            let verity_controlplane::storage::Db::Sqlite { write, .. } = &db else {
                return Err("not SQLite".to_string());
            };
            let mut tx = write.begin().await.map_err(|e| e.to_string())?;
            // The lease is 1.5 s, renewed every 0.5 s: the writer stays taken across a renewal.
            tokio::time::sleep(Duration::from_millis(800)).await;
            sqlx::query("select 1")
                .execute(&mut *tx)
                .await
                .map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())?;
            Ok(json!("released"))
        }
    });
    let id = jobs
        .enqueue(&job("default", "hold"))
        .await
        .expect("enqueue");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let config = WorkerConfig {
        concurrency: 1,
        lease: Duration::from_millis(1500),
        idle_poll: Duration::from_millis(20),
        drain: Duration::from_secs(5),
        ..WorkerConfig::default()
    };
    let w = tokio::spawn(worker::run(jobs.clone(), handlers, config, None, stop_rx));
    // Well under the pool's 30 s acquire timeout, which the renewal waited for before.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while state(&jobs, &id).await != State::Finished {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job holding the writer did not finish: its lease renewal waited for it"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(true);
    assert_eq!(w.await.expect("worker"), 0);
    let v = jobs.get(&id).await.expect("get").expect("job");
    assert_eq!(v.result, Some(json!("released")));
}
