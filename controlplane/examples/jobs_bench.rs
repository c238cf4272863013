//! Job queue throughput: enqueue N no-op jobs, then let W workers (each a `jobs::worker::run`
//! with concurrency C) lease, run and acknowledge them, and report the rates; then N more with
//! the workers running while the producers enqueue (`concurrent`: the rate through the whole
//! system). Run by `bench/jobs/run` (which starts a TLS Redis); numbers go to
//! docs/benchmarks.md.
//!
//!   VERITY_REDIS_URL=rediss://… VERITY_REDIS_TLS_CA=… (as `verity work`) \
//!     cargo run --release -p verity-controlplane --example jobs_bench -- JOBS WORKERS CONCURRENCY [PRODUCERS]
//!   VERITY_DATABASE_URL=sqlite:///tmp/x.db cargo run … (the SQL queue)

use std::time::{Duration, Instant};

use serde_json::json;
use verity_controlplane::config::Config;
use verity_controlplane::jobs::{self, NewJob, worker};
use verity_controlplane::storage::{Db, PoolOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let (n, workers, concurrency, producers) = match args.as_slice() {
        [n, w, c] => (*n, *w, *c, 8),
        [n, w, c, p] if *p > 0 => (*n, *w, *c, *p),
        _ => anyhow::bail!("usage: jobs_bench JOBS WORKERS CONCURRENCY [PRODUCERS (default 8)]"),
    };
    let config = Config::load(None)?;
    let db = Db::connect(
        &config.effective_database_url(),
        &PoolOptions {
            max_connections: 16,
            ..Default::default()
        },
    )
    .await?;
    db.migrate().await?;
    let queue = jobs::open(&db, &config).await?;
    // First the two phases one after the other: enqueue everything, then process it.
    let started = Instant::now();
    produce(&queue, n, 0, producers).await?;
    let enqueue = started.elapsed();
    let started = Instant::now();
    let workers_running = start_workers(&queue, workers, concurrency);
    drain(&queue).await?;
    let process = started.elapsed();
    workers_running.stop().await?;
    // Then both at once, as in production: the workers run while the producers enqueue.
    let workers_running = start_workers(&queue, workers, concurrency);
    let started = Instant::now();
    produce(&queue, n, n, producers).await?;
    drain(&queue).await?;
    let together = started.elapsed();
    workers_running.stop().await?;
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "backend={} jobs={n} workers={workers}x{concurrency} producers={producers} enqueue={:.0}/s process+ack={:.0}/s end-to-end={:.0}/s concurrent={:.0}/s",
        queue.backend(),
        rate(enqueue),
        rate(process),
        rate(enqueue + process),
        rate(together)
    );
    Ok(())
}

/// Enqueues `n` no-op jobs from `producers` concurrent producers (request handlers of one or
/// several app replicas), each waiting for its job to be in the queue before the next.
async fn produce(
    queue: &jobs::Jobs,
    n: usize,
    offset: usize,
    producers: usize,
) -> anyhow::Result<()> {
    let mut running = Vec::new();
    for p in 0..producers {
        let q = queue.clone();
        running.push(tokio::spawn(async move {
            for i in (p..n).step_by(producers) {
                q.enqueue(&NewJob::new("default", "noop", json!({"i": offset + i})))
                    .await?;
            }
            Ok::<_, jobs::JobError>(())
        }));
    }
    for p in running {
        p.await??;
    }
    Ok(())
}

/// Waits until the queue has no waiting and no running job.
async fn drain(queue: &jobs::Jobs) -> anyhow::Result<()> {
    loop {
        let s = queue.stats("default").await?;
        if s.waiting == 0 && s.running == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Workers {
    stop: tokio::sync::watch::Sender<bool>,
    running: Vec<tokio::task::JoinHandle<usize>>,
}

impl Workers {
    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        for r in self.running {
            r.await?;
        }
        Ok(())
    }
}

fn start_workers(queue: &jobs::Jobs, workers: usize, concurrency: usize) -> Workers {
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let running = (0..workers)
        .map(|_| {
            tokio::spawn(worker::run(
                queue.clone(),
                jobs::builtin_handlers(),
                worker::WorkerConfig {
                    queues: vec!["default"],
                    concurrency,
                    idle_poll: Duration::from_millis(5),
                    ..Default::default()
                },
                None,
                stop_rx.clone(),
            ))
        })
        .collect();
    Workers { stop, running }
}
