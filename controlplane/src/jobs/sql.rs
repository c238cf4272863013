//! The SQL queue backend: the `jobs` table of the control plane's own database (SQLite or
//! PostgreSQL). Every state change is one transaction; on PostgreSQL workers take jobs with
//! `FOR UPDATE SKIP LOCKED`, on SQLite the single writer serializes them. Scheduled and retried
//! jobs are `queued` rows whose `run_at` lies ahead.

use std::time::Duration;

use serde_json::Value;
use sqlx::Row as _;

use super::{Failure, JobError, JobView, Leased, Maintenance, NewJob, QueueStats, State};
use crate::storage::{Db, Dialect, now_micros, with_read, with_tx};

/// Finished jobs are kept this long (their results can be polled), failed ones like RQ's
/// `RQ_FAILED_JOB_TTL`.
const FINISHED_TTL_MICROS: i64 = 7 * 86_400_000_000;
const FAILED_TTL_MICROS: i64 = 30 * 86_400_000_000;

/// The SQL queue.
#[derive(Clone, Debug)]
pub struct SqlQueue {
    db: Db,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

const COLUMNS: &str = "id, queue, kind, state, attempts, max_attempts, organization_id, \
     enqueued_at, started_at, ended_at, progress, result, error, run_at";

fn view(row: &impl RowLike, now: i64) -> Result<JobView, JobError> {
    let state: String = row.text("state")?;
    let mut state = State::parse(&state)
        .ok_or_else(|| JobError::Invalid(format!("unknown job state {state}")))?;
    if state == State::Queued && row.int("run_at")? > now {
        state = State::Scheduled;
    }
    Ok(JobView {
        id: row.text("id")?,
        queue: row.text("queue")?,
        kind: row.text("kind")?,
        state,
        attempts: u32::try_from(row.int("attempts")?).unwrap_or(0),
        max_attempts: u32::try_from(row.int("max_attempts")?).unwrap_or(0),
        organization: row.opt_int("organization_id")?,
        enqueued_at: row.int("enqueued_at")?,
        started_at: row.opt_int("started_at")?,
        ended_at: row.opt_int("ended_at")?,
        progress: row.opt_float("progress")?,
        result: row
            .opt_text("result")?
            .and_then(|t| serde_json::from_str(&t).ok()),
        error: row.opt_text("error")?,
    })
}

/// Column access shared by both engines' rows.
trait RowLike {
    fn text(&self, c: &str) -> Result<String, sqlx::Error>;
    fn opt_text(&self, c: &str) -> Result<Option<String>, sqlx::Error>;
    fn int(&self, c: &str) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, c: &str) -> Result<Option<i64>, sqlx::Error>;
    fn opt_float(&self, c: &str) -> Result<Option<f64>, sqlx::Error>;
}

macro_rules! row_like {
    ($row:ty) => {
        impl RowLike for $row {
            fn text(&self, c: &str) -> Result<String, sqlx::Error> {
                self.try_get(c)
            }
            fn opt_text(&self, c: &str) -> Result<Option<String>, sqlx::Error> {
                self.try_get(c)
            }
            fn int(&self, c: &str) -> Result<i64, sqlx::Error> {
                self.try_get(c)
            }
            fn opt_int(&self, c: &str) -> Result<Option<i64>, sqlx::Error> {
                self.try_get(c)
            }
            fn opt_float(&self, c: &str) -> Result<Option<f64>, sqlx::Error> {
                self.try_get(c)
            }
        }
    };
}
row_like!(sqlx::postgres::PgRow);
row_like!(sqlx::sqlite::SqliteRow);

/// Fails the jobs deferred on the ids in `$failed` (and theirs, transitively): they can never
/// run. A macro so that it expands inside each engine's transaction body of `with_tx!`.
macro_rules! fail_dependents {
    ($tx:ident, $failed:expr, $now:expr) => {{
        let mut pending: Vec<String> = $failed;
        // Bounded: a chain longer than this is not something a producer builds on purpose.
        for _ in 0..1000 {
            let Some(id) = pending.pop() else { break };
            let next: Vec<String> = sqlx::query_scalar(
                "update jobs set state = 'failed', ended_at = $1, error = $2 \
                 where state = 'deferred' and depends_on = $3 returning id",
            )
            .bind($now)
            .bind(format!("dependency {id} failed"))
            .bind(&id)
            .fetch_all(&mut *$tx)
            .await?;
            pending.extend(next);
        }
    }};
}

impl SqlQueue {
    /// A queue in `db` (its migrations create the table).
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub(super) async fn enqueue(&self, id: String, job: &NewJob) -> Result<String, JobError> {
        let now = now_micros();
        let run_at = now + job.delay.map_or(0, micros);
        let payload = job.payload.to_string();
        with_tx!(&self.db, tx, {
            let (state, error) = match &job.depends_on {
                None => ("queued", None),
                Some(dep) => {
                    let st: Option<String> =
                        sqlx::query_scalar("select state from jobs where id = $1")
                            .bind(dep)
                            .fetch_optional(&mut *tx)
                            .await?;
                    match st.as_deref() {
                        None => {
                            return Err(JobError::Invalid(format!(
                                "depends_on: there is no job {dep}"
                            )));
                        }
                        Some("finished") => ("queued", None),
                        Some("failed") => ("failed", Some(format!("dependency {dep} failed"))),
                        Some(_) => ("deferred", None),
                    }
                }
            };
            sqlx::query(
                "insert into jobs (id, organization_id, queue, kind, payload, state, max_attempts, \
                 timeout_ms, run_at, depends_on, enqueued_at, error, ended_at) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 on conflict (id) do nothing",
            )
            .bind(&id)
            .bind(job.organization)
            .bind(job.queue)
            .bind(&job.kind)
            .bind(&payload)
            .bind(state)
            .bind(i64::from(job.max_attempts))
            .bind(i64::try_from(job.timeout.as_millis()).unwrap_or(i64::MAX))
            .bind(run_at)
            .bind(job.depends_on.as_deref())
            .bind(now)
            .bind(error.as_deref())
            .bind((state == "failed").then_some(now))
            .execute(&mut *tx)
            .await?;
            Ok::<_, JobError>(id)
        })
    }

    /// Up to `max` jobs of the first queue (in priority order) that has any, in one
    /// transaction (one statement). Each lease token is a random part shared by the batch and
    /// the job's id, so every job has a token of its own.
    pub(super) async fn lease_many(
        &self,
        queues: &[&'static str],
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Leased>, JobError> {
        let skip_locked = match self.db.dialect() {
            Dialect::Postgres => " for update skip locked",
            Dialect::Sqlite => "",
        };
        let sql = format!(
            "update jobs set state = 'started', attempts = attempts + 1, lease_token = $1 || id, \
             lease_until = $2, started_at = $3, progress = null \
             where id in (select id from jobs where queue = $4 and state = 'queued' and run_at <= $3 \
                          order by run_at, enqueued_at limit $5{skip_locked}) \
             returning id, kind, payload, organization_id, attempts, max_attempts, timeout_ms, \
                       lease_token, run_at, enqueued_at"
        );
        let max = i64::try_from(max.max(1)).unwrap_or(i64::MAX);
        // An idle worker polls several times a second: look on a reader first, so that an
        // empty queue costs no write transaction (SQLite has one writer, shared with the API).
        let now = now_micros();
        let ready: Vec<String> = with_read!(&self.db, conn, {
            let mut ready = Vec::new();
            for queue in queues {
                let found: Option<String> = sqlx::query_scalar(
                    "select id from jobs where queue = $1 and state = 'queued' and run_at <= $2 limit 1",
                )
                .bind(*queue)
                .bind(now)
                .fetch_optional(conn)
                .await?;
                if found.is_some() {
                    ready.push((*queue).to_owned());
                }
            }
            ready
        });
        for queue in queues.iter().filter(|q| ready.iter().any(|r| r == *q)) {
            let token = format!("{}:", super::new_id());
            let now = now_micros();
            let mut leased = with_tx!(&self.db, tx, {
                let rows = sqlx::query(&sql)
                    .bind(&token)
                    .bind(now + micros(lease))
                    .bind(now)
                    .bind(*queue)
                    .bind(max)
                    .fetch_all(&mut *tx)
                    .await?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let payload: String = row.try_get("payload")?;
                    let attempts: i64 = row.try_get("attempts")?;
                    let max_attempts: i64 = row.try_get("max_attempts")?;
                    let timeout_ms: i64 = row.try_get("timeout_ms")?;
                    let order: (i64, i64) = (row.try_get("run_at")?, row.try_get("enqueued_at")?);
                    out.push((
                        order,
                        Leased {
                            id: row.try_get("id")?,
                            queue,
                            kind: row.try_get("kind")?,
                            payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
                            organization: row.try_get("organization_id")?,
                            attempt: u32::try_from(attempts).unwrap_or(u32::MAX),
                            max_attempts: u32::try_from(max_attempts).unwrap_or(1),
                            timeout: Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0)),
                            token: row.try_get("lease_token")?,
                        },
                    ));
                }
                Ok::<_, JobError>(out)
            })?;
            if !leased.is_empty() {
                // RETURNING promises no order: oldest first, as the queue hands them out.
                leased.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
                return Ok(leased.into_iter().map(|(_, l)| l).collect());
            }
        }
        Ok(Vec::new())
    }

    pub(super) async fn heartbeat(&self, job: &Leased, lease: Duration) -> Result<bool, JobError> {
        let until = now_micros() + micros(lease);
        with_tx!(&self.db, tx, {
            let n = sqlx::query(
                "update jobs set lease_until = $1 where id = $2 and lease_token = $3 and state = 'started'",
            )
            .bind(until)
            .bind(&job.id)
            .bind(&job.token)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            Ok::<_, JobError>(n == 1)
        })
    }

    pub(super) async fn progress(&self, job: &Leased, progress: f64) -> Result<(), JobError> {
        with_tx!(&self.db, tx, {
            sqlx::query(
                "update jobs set progress = $1 where id = $2 and lease_token = $3 and state = 'started'",
            )
            .bind(progress)
            .bind(&job.id)
            .bind(&job.token)
            .execute(&mut *tx)
            .await?;
            Ok::<_, JobError>(())
        })
    }

    /// Acknowledges finished jobs in one transaction; `true` for each job whose lease was
    /// still ours, in order.
    pub(super) async fn complete_many(
        &self,
        done: &[(&Leased, &Value)],
    ) -> Result<Vec<bool>, JobError> {
        if done.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_micros();
        with_tx!(&self.db, tx, {
            let mut acked = Vec::with_capacity(done.len());
            for (job, result) in done {
                let n = sqlx::query(
                    "update jobs set state = 'finished', ended_at = $1, result = $2, progress = 1, \
                     lease_token = null, lease_until = null \
                     where id = $3 and lease_token = $4 and state = 'started'",
                )
                .bind(now)
                .bind(result.to_string())
                .bind(&job.id)
                .bind(&job.token)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 1 {
                    // Jobs waiting for this one may run now.
                    sqlx::query(
                        "update jobs set state = 'queued', run_at = $1 where state = 'deferred' and depends_on = $2",
                    )
                    .bind(now)
                    .bind(&job.id)
                    .execute(&mut *tx)
                    .await?;
                }
                acked.push(n == 1);
            }
            Ok::<_, JobError>(acked)
        })
    }

    pub(super) async fn release(&self, job: &Leased) -> Result<bool, JobError> {
        let now = now_micros();
        with_tx!(&self.db, tx, {
            let n = sqlx::query(
                "update jobs set state = 'queued', attempts = attempts - 1, run_at = $1, \
                 lease_token = null, lease_until = null, progress = null \
                 where id = $2 and lease_token = $3 and state = 'started'",
            )
            .bind(now)
            .bind(&job.id)
            .bind(&job.token)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            Ok::<_, JobError>(n == 1)
        })
    }

    pub(super) async fn fail(&self, job: &Leased, error: &str) -> Result<Failure, JobError> {
        let now = now_micros();
        with_tx!(&self.db, tx, {
            let row = sqlx::query(
                "select attempts, max_attempts from jobs where id = $1 and lease_token = $2 and state = 'started'",
            )
            .bind(&job.id)
            .bind(&job.token)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                return Ok::<_, JobError>(Failure::LeaseLost);
            };
            let attempts: i64 = row.try_get("attempts")?;
            let max_attempts: i64 = row.try_get("max_attempts")?;
            if attempts < max_attempts {
                let delay = super::backoff(u32::try_from(attempts).unwrap_or(u32::MAX));
                sqlx::query(
                    "update jobs set state = 'queued', run_at = $1, error = $2, lease_token = null, \
                     lease_until = null, progress = null where id = $3",
                )
                .bind(now + micros(delay))
                .bind(error)
                .bind(&job.id)
                .execute(&mut *tx)
                .await?;
                return Ok(Failure::Retry(delay));
            }
            sqlx::query(
                "update jobs set state = 'failed', ended_at = $1, error = $2, lease_token = null, \
                 lease_until = null where id = $3",
            )
            .bind(now)
            .bind(error)
            .bind(&job.id)
            .execute(&mut *tx)
            .await?;
            fail_dependents!(tx, vec![job.id.clone()], now);
            Ok(Failure::Failed)
        })
    }

    pub(super) async fn maintain(&self) -> Result<Maintenance, JobError> {
        let now = now_micros();
        with_tx!(&self.db, tx, {
            let requeued = sqlx::query(
                "update jobs set state = 'queued', run_at = $1, lease_token = null, lease_until = null, \
                 progress = null, error = 'the worker stopped renewing its lease (it was killed or lost); retried' \
                 where state = 'started' and lease_until < $1 and attempts < max_attempts",
            )
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let failed: Vec<String> = sqlx::query_scalar(
                "update jobs set state = 'failed', ended_at = $1, lease_token = null, lease_until = null, \
                 error = 'the worker stopped renewing its lease on the last attempt' \
                 where state = 'started' and lease_until < $1 returning id",
            )
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            let n_failed = failed.len() as u64;
            fail_dependents!(tx, failed, now);
            sqlx::query(
                "delete from jobs where (state = 'finished' and ended_at < $1) or (state = 'failed' and ended_at < $2)",
            )
            .bind(now - FINISHED_TTL_MICROS)
            .bind(now - FAILED_TTL_MICROS)
            .execute(&mut *tx)
            .await?;
            Ok::<_, JobError>(Maintenance {
                requeued,
                failed: n_failed,
                promoted: 0,
            })
        })
    }

    pub(super) async fn get(&self, id: &str) -> Result<Option<JobView>, JobError> {
        let now = now_micros();
        let sql = format!("select {COLUMNS} from jobs where id = $1");
        with_read!(&self.db, conn, {
            let row = sqlx::query(&sql).bind(id).fetch_optional(conn).await?;
            row.map(|r| view(&r, now)).transpose()
        })
    }

    pub(super) async fn stats(&self, queue: &'static str) -> Result<QueueStats, JobError> {
        // Finished jobs (kept for a week of polling) are left out by the index, so a scrape does
        // not grow with them.
        let now = now_micros();
        with_read!(&self.db, conn, {
            let row = sqlx::query(
                "select \
                   coalesce(sum(case when state = 'queued' and run_at <= $2 then 1 else 0 end), 0) as waiting, \
                   coalesce(sum(case when state = 'queued' and run_at > $2 then 1 else 0 end), 0) as scheduled, \
                   coalesce(sum(case when state = 'deferred' then 1 else 0 end), 0) as deferred, \
                   coalesce(sum(case when state = 'started' then 1 else 0 end), 0) as running, \
                   coalesce(sum(case when state = 'failed' then 1 else 0 end), 0) as failed, \
                   min(case when state = 'queued' and run_at <= $2 then enqueued_at end) as oldest \
                 from jobs where queue = $1 and state in ('queued', 'deferred', 'started', 'failed')",
            )
            .bind(queue)
            .bind(now)
            .fetch_one(conn)
            .await?;
            let count = |c: &str| -> Result<u64, JobError> {
                let n: i64 = row.try_get(c)?;
                Ok(u64::try_from(n).unwrap_or(0))
            };
            Ok(QueueStats {
                queue: queue.to_owned(),
                waiting: count("waiting")?,
                scheduled: count("scheduled")?,
                deferred: count("deferred")?,
                running: count("running")?,
                failed: count("failed")?,
                oldest_waiting_since: row.try_get("oldest")?,
            })
        })
    }

    pub(super) async fn org_stats(&self) -> Result<Vec<super::OrgQueueStats>, JobError> {
        let now = now_micros();
        with_read!(&self.db, conn, {
            let rows = sqlx::query(
                "select organization_id, queue, \
                   coalesce(sum(case when state = 'queued' and run_at <= $1 then 1 else 0 end), 0) as waiting, \
                   coalesce(sum(case when state = 'started' then 1 else 0 end), 0) as running, \
                   coalesce(sum(case when state = 'failed' then 1 else 0 end), 0) as failed, \
                   min(case when state = 'queued' and run_at <= $1 then enqueued_at end) as oldest \
                 from jobs where organization_id is not null and state in ('queued', 'deferred', 'started', 'failed') \
                 group by organization_id, queue order by organization_id, queue",
            )
            .bind(now)
            .fetch_all(conn)
            .await?;
            rows.iter()
                .map(|row| {
                    let count = |c: &str| -> Result<u64, JobError> {
                        let n: i64 = row.try_get(c)?;
                        Ok(u64::try_from(n).unwrap_or(0))
                    };
                    Ok(super::OrgQueueStats {
                        organization: row.try_get("organization_id")?,
                        queue: row.try_get("queue")?,
                        waiting: count("waiting")?,
                        running: count("running")?,
                        failed: count("failed")?,
                        oldest_waiting_since: row.try_get("oldest")?,
                    })
                })
                .collect()
        })
    }

    pub(super) async fn failed(
        &self,
        queue: &'static str,
        limit: u32,
    ) -> Result<Vec<JobView>, JobError> {
        let now = now_micros();
        let sql = format!(
            "select {COLUMNS} from jobs where queue = $1 and state = 'failed' order by ended_at desc, id limit $2"
        );
        with_read!(&self.db, conn, {
            let rows = sqlx::query(&sql)
                .bind(queue)
                .bind(i64::from(limit))
                .fetch_all(conn)
                .await?;
            rows.iter().map(|r| view(r, now)).collect()
        })
    }

    pub(super) async fn requeue(&self, id: &str) -> Result<bool, JobError> {
        let now = now_micros();
        with_tx!(&self.db, tx, {
            let n = sqlx::query(
                "update jobs set state = 'queued', attempts = 0, run_at = $1, ended_at = null, \
                 depends_on = null where id = $2 and state = 'failed'",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            Ok::<_, JobError>(n == 1)
        })
    }

    pub(super) async fn delete(&self, id: &str) -> Result<bool, JobError> {
        with_tx!(&self.db, tx, {
            let n =
                sqlx::query("delete from jobs where id = $1 and state in ('failed', 'finished')")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            Ok::<_, JobError>(n == 1)
        })
    }
}
