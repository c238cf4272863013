//! The Redis queue backend, in RQ's key layout (ADR 0011) so that the operator's autoscaler
//! and `rq info` read it unchanged: `rq:queues` (set of queue keys), `rq:queue:<q>` (list of
//! waiting job ids, oldest first), `rq:job:<id>` (hash), and per queue the registries
//! `rq:wip:<q>` (leased; score = lease expiry), `rq:scheduled:<q>` (score = run time),
//! `rq:deferred:<q>`, `rq:finished:<q>` and `rq:failed:<q>` (score = when the record expires),
//! plus `rq:job:<id>:dependents`. Scores are Unix seconds, as RQ writes them.
//!
//! Every state change is one Lua script, so it is atomic; a lease is proven by a random token
//! kept in the job hash. Connections are TLS only, with the component's client certificate and
//! ACL user (the operator issues both; see ADR 0012). The jobs are Verity's (their payload is
//! JSON, not a pickled call), so `rq worker` cannot run them; RQ's monitoring can read them.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands as _, Script};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{Failure, JobError, JobView, Leased, Maintenance, NewJob, QueueStats, State};
use crate::storage::{format_micros, now_micros};

/// Finished jobs are kept this long, failed ones like RQ's `RQ_FAILED_JOB_TTL`.
const FINISHED_TTL_SECS: i64 = 7 * 86_400;
const FAILED_TTL_SECS: i64 = 30 * 86_400;

/// How to reach Redis.
#[derive(Clone, Default)]
pub struct RedisSettings {
    /// `rediss://host:port/db` (plain `redis://` is refused).
    pub url: String,
    /// ACL user.
    pub username: String,
    /// Its password.
    pub password: String,
    /// PEM of the CA that signed the server certificate.
    pub ca_pem: Vec<u8>,
    /// PEM of the client certificate.
    pub cert_pem: Vec<u8>,
    /// PEM of the client key.
    pub key_pem: Vec<u8>,
}

/// Credentials are never printed.
impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &self.url)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The Redis queue.
#[derive(Clone)]
pub struct RedisQueue {
    conn: ConnectionManager,
    scripts: &'static Scripts,
    enqueuer: mpsc::Sender<Enqueue>,
}

/// One producer's job on its way to the enqueuer.
struct Enqueue {
    id: String,
    job: NewJob,
    answer: oneshot::Sender<Result<String, JobError>>,
}

/// Most jobs leased in one script call (its registry update passes them all to one command).
const LEASE_MAX: usize = 1000;

/// Most jobs acknowledged in one script call (likewise).
const ACK_CHUNK: usize = 1000;

/// Most jobs enqueued in one script call.
const ENQUEUE_BATCH: usize = 64;

/// Enqueues the jobs that producers of this process hand over, several per round trip: it
/// waits for one, then takes whatever else is waiting (up to [`ENQUEUE_BATCH`]), so idle it
/// sends a job at once and under load the jobs that came while the previous call was under
/// way. Every producer waits for its own answer, so an enqueue still returns only once its job
/// is in Redis. Ends when every handle of the queue is gone.
async fn enqueuer(
    conn: ConnectionManager,
    script: &'static Script,
    mut rx: mpsc::Receiver<Enqueue>,
) {
    let mut batch = Vec::with_capacity(ENQUEUE_BATCH);
    while rx.recv_many(&mut batch, ENQUEUE_BATCH).await > 0 {
        let (now_us, now_str) = now();
        let mut call = script.prepare_invoke();
        call.arg(now_us)
            .arg(&now_str)
            .arg(now_us / 1_000_000 + FAILED_TTL_SECS)
            .arg(FAILED_TTL_SECS);
        for Enqueue { id, job, .. } in &batch {
            let dep = job.depends_on.as_deref().unwrap_or_default();
            call.key(job_key(id))
                .key(key("queue", job.queue))
                .key(key("scheduled", job.queue))
                .key(key("deferred", job.queue))
                .key(key("failed", job.queue))
                .key("rq:queues")
                .key(job_key(if dep.is_empty() { id } else { dep }))
                .key(format!("{}:dependents", job_key(dep)))
                .arg(id)
                .arg(job.queue)
                .arg(&job.kind)
                .arg(job.payload.to_string())
                .arg(job.organization.map(|o| o.to_string()).unwrap_or_default())
                .arg(job.max_attempts)
                .arg(i64::try_from(job.timeout.as_millis()).unwrap_or(i64::MAX))
                .arg(job.delay.map_or(0, micros))
                .arg(dep);
        }
        let mut conn = conn.clone();
        let answers: Result<Vec<i64>, _> = call.invoke_async(&mut conn).await;
        match answers {
            Ok(answers) if answers.len() == batch.len() => {
                for (Enqueue { id, job, answer }, code) in batch.drain(..).zip(answers) {
                    let _ = answer.send(if code < 0 {
                        Err(JobError::Invalid(format!(
                            "depends_on: there is no job {}",
                            job.depends_on.unwrap_or_default()
                        )))
                    } else {
                        Ok(id)
                    });
                }
            }
            other => {
                let e = match other {
                    Err(e) => e.to_string(),
                    Ok(a) => format!(
                        "enqueued {} of {} jobs: unexpected answer",
                        a.len(),
                        batch.len()
                    ),
                };
                for Enqueue { answer, .. } in batch.drain(..) {
                    let _ = answer.send(Err(JobError::Redis(e.clone())));
                }
            }
        }
    }
}

struct Scripts {
    enqueue: Script,
    lease: Script,
    heartbeat: Script,
    progress: Script,
    complete: Script,
    release: Script,
    fail: Script,
    maintain: Script,
    requeue: Script,
    delete: Script,
}

/// Shared Lua: fail every job deferred on `root` (transitively) and put it in its failed
/// registry. Expects `now_us` and `failed_until` in scope.
const FAIL_DEPENDENTS: &str = r"
local function fail_dependents(root, now_us, failed_until, ttl)
  local stack = {root}
  local n = 0
  while #stack > 0 and n < 1000 do
    n = n + 1
    local cur = table.remove(stack)
    local dk = 'rq:job:' .. cur .. ':dependents'
    for _, d in ipairs(redis.call('SMEMBERS', dk)) do
      local dj = 'rq:job:' .. d
      if redis.call('HGET', dj, 'status') == 'deferred' then
        local dq = redis.call('HGET', dj, 'origin')
        redis.call('ZREM', 'rq:deferred:' .. dq, d)
        redis.call('HSET', dj, 'status', 'failed', 'exc_info', 'dependency ' .. cur .. ' failed', 'ended_us', now_us)
        redis.call('ZADD', 'rq:failed:' .. dq, failed_until, d)
        redis.call('EXPIRE', dj, ttl)
        table.insert(stack, d)
      end
    end
    redis.call('DEL', dk)
  end
end
";

fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        // Enqueues a batch of jobs, in order, each on its own terms (answers 1: enqueued, 0: the
        // id exists already, -1: its dependency does not exist; nothing is written for it).
        // Queued jobs are appended per queue at the end, in one RPUSH each, and each queue is
        // named in `rq:queues` once per batch: the script's cost is mostly per Redis call.
        // `verity_deps` says whether a job has dependents ('0': none yet; set to '1' when a job
        // is deferred on it), so acknowledging a job without dependents reads no dependents set.
        // KEYS: per job: job, queue, scheduled, deferred, failed, rq:queues, dependency job,
        //       its dependents
        // ARGV: now_us, now_str, failed_until, failed_ttl, then per job: id, queue, kind,
        //       payload, org, max_attempts, timeout_ms, delay_us, depends_on
        enqueue: Script::new(
            r"
local out, queued, order, named = {}, {}, {}, {}
local now_us, now_str, failed_until, failed_ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = tonumber(now_us)
for i = 1, #KEYS / 8 do
  local k = 8 * (i - 1)
  local a = 4 + 9 * (i - 1)
  local jk, qk, sk, dk, fk, qs, depk, depsk = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4],
    KEYS[k + 5], KEYS[k + 6], KEYS[k + 7], KEYS[k + 8]
  local id, queue, kind, payload, org = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
  local max_attempts, timeout_ms, delay_us, dep = ARGV[a + 6], ARGV[a + 7], ARGV[a + 8], ARGV[a + 9]
  local status = 'queued'
  if redis.call('EXISTS', jk) == 1 then
    out[i] = 0
  else
    if dep ~= '' then
      local ds = redis.call('HGET', depk, 'status')
      if not ds then status = nil
      elseif ds == 'failed' then status = 'failed'
      elseif ds ~= 'finished' then status = 'deferred' end
    end
    if not status then
      out[i] = -1
    else
      if status == 'queued' and tonumber(delay_us) > 0 then status = 'scheduled' end
      redis.call('HSET', jk, 'status', status, 'origin', queue, 'description', kind,
        'verity_kind', kind, 'verity_payload', payload, 'verity_org', org,
        'max_attempts', max_attempts, 'attempts', 0, 'timeout', math.floor(tonumber(timeout_ms) / 1000),
        'timeout_ms', timeout_ms, 'created_at', now_str, 'enqueued_at', now_str, 'enqueued_us', now_us,
        'depends_on', dep, 'verity_deps', '0')
      if not named[qk] then
        named[qk] = true
        redis.call('SADD', qs, qk)
      end
      if status == 'queued' then
        if not queued[qk] then
          queued[qk] = {}
          table.insert(order, qk)
        end
        table.insert(queued[qk], id)
      elseif status == 'scheduled' then
        redis.call('ZADD', sk, (now + tonumber(delay_us)) / 1000000, id)
      elseif status == 'deferred' then
        redis.call('ZADD', dk, now / 1000000, id)
        redis.call('SADD', depsk, id)
        redis.call('HSET', depk, 'verity_deps', '1')
      else
        redis.call('HSET', jk, 'exc_info', 'dependency ' .. dep .. ' failed', 'ended_us', now_us)
        redis.call('ZADD', fk, failed_until, id)
        redis.call('EXPIRE', jk, failed_ttl)
      end
      out[i] = 1
    end
  end
end
for _, qk in ipairs(order) do
  redis.call('RPUSH', qk, unpack(queued[qk]))
end
return out
",
        ),
        // Takes up to `max` jobs off the head of the queue (LPOP with a count; an id whose job
        // is gone is dropped) and registers them as started, in one ZADD. The n-th job's lease
        // token is the call's random nonce followed by `:n`.
        // KEYS: queue, wip   ARGV: now_us, expiry_s, now_str, max, nonce
        lease: Script::new(
            r"
local out, started = {}, {}
local n = 0
local max = tonumber(ARGV[4])
while n < max do
  local ids = redis.call('LPOP', KEYS[1], max - n)
  if not ids then break end
  for _, id in ipairs(ids) do
    local j = 'rq:job:' .. id
    local f = redis.call('HMGET', j, 'status', 'verity_kind', 'verity_payload', 'verity_org',
      'max_attempts', 'timeout_ms', 'attempts')
    if f[1] then
      n = n + 1
      local token = ARGV[5] .. ':' .. n
      local attempts = tostring((tonumber(f[7]) or 0) + 1)
      redis.call('HSET', j, 'status', 'started', 'attempts', attempts, 'lease_token', token,
        'started_us', ARGV[1], 'started_at', ARGV[3], 'progress', '')
      table.insert(started, ARGV[2])
      table.insert(started, id)
      for _, v in ipairs({id, f[2] or '', f[3] or '', f[4] or '', attempts, f[5] or '', f[6] or '', token}) do
        table.insert(out, v)
      end
    end
  end
end
if #started > 0 then
  redis.call('ZADD', KEYS[2], unpack(started))
end
return out
",
        ),
        // KEYS: job, wip   ARGV: id, token, expiry_s
        heartbeat: Script::new(
            r"
if redis.call('HGET', KEYS[1], 'lease_token') ~= ARGV[2] or redis.call('HGET', KEYS[1], 'status') ~= 'started' then return 0 end
redis.call('ZADD', KEYS[2], 'XX', ARGV[3], ARGV[1])
return 1
",
        ),
        // KEYS: job   ARGV: token, progress
        progress: Script::new(
            r"
if redis.call('HGET', KEYS[1], 'lease_token') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[2])
return 1
",
        ),
        // Acknowledges a batch of finished jobs; each is checked and changed on its own (a lost
        // lease refuses that job only) and answers 1 or 0, in order. The registries are
        // changed once per registry at the end (one ZREM and one ZADD each). A job whose
        // `verity_deps` is '0' has no dependents to release; one without the field (enqueued
        // by an older version) is looked at.
        // KEYS: per job: job, wip, finished, dependents
        // ARGV: now_us, now_str, ttl, finished_until, then per job: id, token, result
        complete: Script::new(
            r"
local out, done, order = {}, {}, {}
local now_us, now_str, ttl, expires = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
for i = 1, #KEYS / 4 do
  local jk, wip, fin, deps = KEYS[4 * i - 3], KEYS[4 * i - 2], KEYS[4 * i - 1], KEYS[4 * i]
  local id, token, result = ARGV[3 * i + 2], ARGV[3 * i + 3], ARGV[3 * i + 4]
  local cur = redis.call('HMGET', jk, 'lease_token', 'status', 'verity_deps')
  if cur[1] ~= token or cur[2] ~= 'started' then
    out[i] = 0
  else
    redis.call('HSET', jk, 'status', 'finished', 'ended_us', now_us, 'ended_at', now_str,
      'result', result, 'progress', '1', 'lease_token', '')
    redis.call('EXPIRE', jk, ttl)
    local reg = wip .. ' ' .. fin
    if not done[reg] then
      done[reg] = {wip = wip, fin = fin, ids = {}, scored = {}}
      table.insert(order, reg)
    end
    table.insert(done[reg].ids, id)
    table.insert(done[reg].scored, expires)
    table.insert(done[reg].scored, id)
    if cur[3] ~= '0' then
      local ds = redis.call('SMEMBERS', deps)
      for _, d in ipairs(ds) do
        local dj = 'rq:job:' .. d
        if redis.call('HGET', dj, 'status') == 'deferred' then
          local dq = redis.call('HGET', dj, 'origin')
          redis.call('ZREM', 'rq:deferred:' .. dq, d)
          redis.call('HSET', dj, 'status', 'queued', 'enqueued_at', now_str, 'enqueued_us', now_us)
          redis.call('RPUSH', 'rq:queue:' .. dq, d)
        end
      end
      if #ds > 0 then redis.call('DEL', deps) end
    end
    out[i] = 1
  end
end
for _, reg in ipairs(order) do
  local r = done[reg]
  redis.call('ZREM', r.wip, unpack(r.ids))
  redis.call('ZADD', r.fin, unpack(r.scored))
end
return out
",
        ),
        // KEYS: job, wip, queue   ARGV: id, token
        release: Script::new(
            r"
if redis.call('HGET', KEYS[1], 'lease_token') ~= ARGV[2] or redis.call('HGET', KEYS[1], 'status') ~= 'started' then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'attempts', -1)
redis.call('HSET', KEYS[1], 'status', 'queued', 'lease_token', '', 'progress', '')
redis.call('LPUSH', KEYS[3], ARGV[1])
return 1
",
        ),
        // KEYS: job, wip, scheduled, failed
        // ARGV: id, token, now_us, error, base_us, cap_us, failed_until, failed_ttl
        fail: Script::new(&format!(
            "{FAIL_DEPENDENTS}{}",
            r"
if redis.call('HGET', KEYS[1], 'lease_token') ~= ARGV[2] or redis.call('HGET', KEYS[1], 'status') ~= 'started' then return {'lost'} end
redis.call('ZREM', KEYS[2], ARGV[1])
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts'))
local max = tonumber(redis.call('HGET', KEYS[1], 'max_attempts'))
if attempts < max then
  local delay = tonumber(ARGV[5]) * (2 ^ math.min(attempts - 1, 16))
  delay = math.min(delay, tonumber(ARGV[6]))
  redis.call('HSET', KEYS[1], 'status', 'scheduled', 'exc_info', ARGV[4], 'lease_token', '', 'progress', '')
  redis.call('ZADD', KEYS[3], (tonumber(ARGV[3]) + delay) / 1000000, ARGV[1])
  return {'retry', tostring(delay)}
end
redis.call('HSET', KEYS[1], 'status', 'failed', 'exc_info', ARGV[4], 'lease_token', '', 'ended_us', ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[7], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[8])
fail_dependents(ARGV[1], ARGV[3], ARGV[7], ARGV[8])
return {'failed'}
"
        )),
        // KEYS: queue, wip, scheduled, failed, finished
        // ARGV: now_us, failed_until, failed_ttl, now_str
        maintain: Script::new(&format!(
            "{FAIL_DEPENDENTS}{}",
            r"
local now_s = tonumber(ARGV[1]) / 1000000
local requeued, failed, promoted = 0, 0, 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now_s, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', KEYS[2], id)
  local j = 'rq:job:' .. id
  if redis.call('EXISTS', j) == 1 then
    local attempts = tonumber(redis.call('HGET', j, 'attempts'))
    local max = tonumber(redis.call('HGET', j, 'max_attempts'))
    if attempts < max then
      redis.call('HSET', j, 'status', 'queued', 'lease_token', '', 'progress', '',
        'exc_info', 'the worker stopped renewing its lease (it was killed or lost); retried')
      redis.call('RPUSH', KEYS[1], id)
      requeued = requeued + 1
    else
      redis.call('HSET', j, 'status', 'failed', 'lease_token', '', 'ended_us', ARGV[1],
        'exc_info', 'the worker stopped renewing its lease on the last attempt')
      redis.call('ZADD', KEYS[4], ARGV[2], id)
      redis.call('EXPIRE', j, ARGV[3])
      fail_dependents(id, ARGV[1], ARGV[2], ARGV[3])
      failed = failed + 1
    end
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now_s, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', KEYS[3], id)
  local j = 'rq:job:' .. id
  if redis.call('EXISTS', j) == 1 then
    redis.call('HSET', j, 'status', 'queued')
    redis.call('RPUSH', KEYS[1], id)
    promoted = promoted + 1
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now_s)
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now_s)
return {requeued, failed, promoted}
"
        )),
        // KEYS: job, queue, failed   ARGV: id, now_us, now_str
        requeue: Script::new(
            r"
if redis.call('HGET', KEYS[1], 'status') ~= 'failed' then return 0 end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('PERSIST', KEYS[1])
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', 0, 'enqueued_us', ARGV[2], 'enqueued_at', ARGV[3], 'depends_on', '')
redis.call('HDEL', KEYS[1], 'ended_us', 'ended_at')
redis.call('RPUSH', KEYS[2], ARGV[1])
return 1
",
        ),
        // KEYS: job, failed, finished   ARGV: id
        delete: Script::new(
            r"
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'failed' and st ~= 'finished' then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[1], KEYS[1] .. ':dependents')
return 1
",
        ),
    })
}

fn job_key(id: &str) -> String {
    format!("rq:job:{id}")
}

fn key(registry: &str, queue: &str) -> String {
    format!("rq:{registry}:{queue}")
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Microseconds since the epoch as the seconds of a registry's score.
fn seconds(us: i64) -> String {
    format!(
        "{}.{:06}",
        us.div_euclid(1_000_000),
        us.rem_euclid(1_000_000)
    )
}

/// The time now as (microseconds, RQ's `%Y-%m-%dT%H:%M:%S.%fZ` string).
fn now() -> (i64, String) {
    let us = now_micros();
    (us, format_micros(us))
}

impl RedisQueue {
    /// Connects (TLS with client certificate, then the ACL user) and checks the connection.
    pub async fn connect(settings: &RedisSettings) -> Result<Self, JobError> {
        if !settings.url.starts_with("rediss://") {
            return Err(JobError::Invalid(format!(
                "the Redis URL must use TLS (rediss://), got {}",
                settings.url.split('@').next_back().unwrap_or_default()
            )));
        }
        let certs = redis::TlsCertificates {
            client_tls: (!settings.cert_pem.is_empty()).then(|| redis::ClientTlsConfig {
                client_cert: settings.cert_pem.clone(),
                client_key: settings.key_pem.clone(),
            }),
            root_cert: (!settings.ca_pem.is_empty()).then(|| settings.ca_pem.clone()),
        };
        let mut info: redis::ConnectionInfo =
            redis::IntoConnectionInfo::into_connection_info(settings.url.as_str())?;
        let mut rinfo = info.redis_settings().clone();
        if !settings.username.is_empty() {
            rinfo = rinfo.set_username(&settings.username);
        }
        if !settings.password.is_empty() {
            rinfo = rinfo.set_password(&settings.password);
        }
        info = info.set_redis_settings(rinfo);
        let client = redis::Client::build_with_tls(info, certs)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(2);
        let mut conn = ConnectionManager::new_with_config(client, config).await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        let scripts = scripts();
        let (enqueuer_tx, enqueuer_rx) = mpsc::channel(ENQUEUE_BATCH * 4);
        tokio::spawn(enqueuer(conn.clone(), &scripts.enqueue, enqueuer_rx));
        Ok(Self {
            conn,
            scripts,
            enqueuer: enqueuer_tx,
        })
    }

    pub(super) async fn enqueue(&self, id: String, job: &NewJob) -> Result<String, JobError> {
        if let Some(dep) = &job.depends_on
            && !super::valid_id(dep)
        {
            return Err(JobError::Invalid(format!(
                "depends_on: there is no job {dep}"
            )));
        }
        let (answer, answered) = oneshot::channel();
        let request = Enqueue {
            id,
            job: job.clone(),
            answer,
        };
        if self.enqueuer.send(request).await.is_err() {
            return Err(JobError::Redis("the enqueuer stopped".into()));
        }
        answered
            .await
            .map_err(|_| JobError::Redis("the enqueuer stopped".into()))?
    }

    /// Up to `max` jobs in one round trip, all from the first queue (in priority order) that
    /// has any. Each gets a lease token of its own.
    pub(super) async fn lease_many(
        &self,
        queues: &[&'static str],
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Leased>, JobError> {
        const FIELDS: usize = 8;
        let max = max.clamp(1, LEASE_MAX);
        let mut conn = self.conn.clone();
        for queue in queues {
            let (now_us, now_str) = now();
            let mut call = self.scripts.lease.key(key("queue", queue));
            call.key(key("wip", queue))
                .arg(now_us)
                .arg(seconds(now_us + micros(lease)))
                .arg(&now_str)
                .arg(max)
                .arg(super::new_id());
            let flat: Vec<String> = call.invoke_async(&mut conn).await?;
            if flat.is_empty() {
                continue;
            }
            return Ok(flat
                .chunks(FIELDS)
                .filter(|f| f.len() == FIELDS)
                .map(|f| Leased {
                    id: f[0].clone(),
                    queue,
                    kind: f[1].clone(),
                    payload: serde_json::from_str(&f[2]).unwrap_or(Value::Null),
                    organization: f[3].parse().ok(),
                    attempt: f[4].parse().unwrap_or(1),
                    max_attempts: f[5].parse().unwrap_or(1),
                    timeout: Duration::from_millis(f[6].parse().unwrap_or(180_000)),
                    token: f[7].clone(),
                })
                .collect());
        }
        Ok(Vec::new())
    }

    pub(super) async fn heartbeat(&self, job: &Leased, lease: Duration) -> Result<bool, JobError> {
        let mut conn = self.conn.clone();
        let expiry = (now_micros() + micros(lease)) as f64 / 1e6;
        let ok: i64 = self
            .scripts
            .heartbeat
            .key(job_key(&job.id))
            .key(key("wip", job.queue))
            .arg(&job.id)
            .arg(&job.token)
            .arg(expiry)
            .invoke_async(&mut conn)
            .await?;
        Ok(ok == 1)
    }

    pub(super) async fn progress(&self, job: &Leased, progress: f64) -> Result<(), JobError> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .scripts
            .progress
            .key(job_key(&job.id))
            .arg(&job.token)
            .arg(progress)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Acknowledges finished jobs in one round trip (one script call); `true` for each job
    /// whose lease was still ours, in order.
    pub(super) async fn complete_many(
        &self,
        done: &[(&Leased, &Value)],
    ) -> Result<Vec<bool>, JobError> {
        if done.len() > ACK_CHUNK {
            let mut acked = Vec::with_capacity(done.len());
            for chunk in done.chunks(ACK_CHUNK) {
                acked.extend(Box::pin(self.complete_many(chunk)).await?);
            }
            return Ok(acked);
        }
        if done.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let (now_us, now_str) = now();
        let mut call = self.scripts.complete.prepare_invoke();
        call.arg(now_us)
            .arg(&now_str)
            .arg(FINISHED_TTL_SECS)
            .arg(now_us / 1_000_000 + FINISHED_TTL_SECS);
        for (job, result) in done {
            call.key(job_key(&job.id))
                .key(key("wip", job.queue))
                .key(key("finished", job.queue))
                .key(format!("{}:dependents", job_key(&job.id)))
                .arg(&job.id)
                .arg(&job.token)
                .arg(result.to_string());
        }
        let acked: Vec<i64> = call.invoke_async(&mut conn).await?;
        if acked.len() != done.len() {
            return Err(JobError::Redis(format!(
                "acknowledged {} of {} jobs: unexpected answer",
                acked.len(),
                done.len()
            )));
        }
        Ok(acked.into_iter().map(|a| a == 1).collect())
    }

    pub(super) async fn release(&self, job: &Leased) -> Result<bool, JobError> {
        let mut conn = self.conn.clone();
        let ok: i64 = self
            .scripts
            .release
            .key(job_key(&job.id))
            .key(key("wip", job.queue))
            .key(key("queue", job.queue))
            .arg(&job.id)
            .arg(&job.token)
            .invoke_async(&mut conn)
            .await?;
        Ok(ok == 1)
    }

    pub(super) async fn fail(&self, job: &Leased, error: &str) -> Result<Failure, JobError> {
        let mut conn = self.conn.clone();
        let now_us = now_micros();
        let out: Vec<String> = self
            .scripts
            .fail
            .key(job_key(&job.id))
            .key(key("wip", job.queue))
            .key(key("scheduled", job.queue))
            .key(key("failed", job.queue))
            .arg(&job.id)
            .arg(&job.token)
            .arg(now_us)
            .arg(error)
            .arg(micros(super::backoff(1)))
            .arg(micros(super::backoff(u32::MAX)))
            .arg(now_us / 1_000_000 + FAILED_TTL_SECS)
            .arg(FAILED_TTL_SECS)
            .invoke_async(&mut conn)
            .await?;
        Ok(match out.first().map(String::as_str) {
            Some("retry") => Failure::Retry(Duration::from_micros(
                out.get(1)
                    .and_then(|d| d.parse::<f64>().ok())
                    .map_or(0, |d| d as u64),
            )),
            Some("failed") => Failure::Failed,
            _ => Failure::LeaseLost,
        })
    }

    pub(super) async fn maintain(&self) -> Result<Maintenance, JobError> {
        let mut conn = self.conn.clone();
        let mut total = Maintenance::default();
        for queue in super::QUEUES {
            let (now_us, now_str) = now();
            let counts: Vec<u64> = self
                .scripts
                .maintain
                .key(key("queue", queue))
                .key(key("wip", queue))
                .key(key("scheduled", queue))
                .key(key("failed", queue))
                .key(key("finished", queue))
                .arg(now_us)
                .arg(now_us / 1_000_000 + FAILED_TTL_SECS)
                .arg(FAILED_TTL_SECS)
                .arg(&now_str)
                .invoke_async(&mut conn)
                .await?;
            total.requeued += counts.first().copied().unwrap_or(0);
            total.failed += counts.get(1).copied().unwrap_or(0);
            total.promoted += counts.get(2).copied().unwrap_or(0);
        }
        Ok(total)
    }

    pub(super) async fn get(&self, id: &str) -> Result<Option<JobView>, JobError> {
        if !super::valid_id(id) {
            return Ok(None);
        }
        let mut conn = self.conn.clone();
        let h: HashMap<String, String> = conn.hgetall(job_key(id)).await?;
        Ok(view(id, &h))
    }

    pub(super) async fn stats(&self, queue: &'static str) -> Result<QueueStats, JobError> {
        let mut conn = self.conn.clone();
        let (waiting, head, scheduled, deferred, running, failed): (
            u64,
            Option<String>,
            u64,
            u64,
            u64,
            u64,
        ) = redis::pipe()
            .llen(key("queue", queue))
            .lindex(key("queue", queue), 0)
            .zcard(key("scheduled", queue))
            .zcard(key("deferred", queue))
            .zcard(key("wip", queue))
            .zcard(key("failed", queue))
            .query_async(&mut conn)
            .await?;
        let oldest_waiting_since = match head {
            Some(id) => {
                let us: Option<i64> = conn.hget(job_key(&id), "enqueued_us").await?;
                us
            }
            None => None,
        };
        Ok(QueueStats {
            queue: queue.to_owned(),
            waiting,
            scheduled,
            deferred,
            running,
            failed,
            oldest_waiting_since,
        })
    }

    pub(super) async fn failed(
        &self,
        queue: &'static str,
        limit: u32,
    ) -> Result<Vec<JobView>, JobError> {
        let mut conn = self.conn.clone();
        let stop = isize::try_from(limit)
            .unwrap_or(isize::MAX)
            .saturating_sub(1);
        let ids: Vec<String> = conn.zrevrange(key("failed", queue), 0, stop).await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let h: HashMap<String, String> = conn.hgetall(job_key(&id)).await?;
            if let Some(v) = view(&id, &h) {
                out.push(v);
            }
        }
        Ok(out)
    }

    pub(super) async fn requeue(&self, id: &str) -> Result<bool, JobError> {
        let Some(job) = self.get(id).await? else {
            return Ok(false);
        };
        let Some(queue) = super::queue(&job.queue) else {
            return Ok(false);
        };
        let mut conn = self.conn.clone();
        let (now_us, now_str) = now();
        let ok: i64 = self
            .scripts
            .requeue
            .key(job_key(id))
            .key(key("queue", queue))
            .key(key("failed", queue))
            .arg(id)
            .arg(now_us)
            .arg(&now_str)
            .invoke_async(&mut conn)
            .await?;
        Ok(ok == 1)
    }

    pub(super) async fn delete(&self, id: &str) -> Result<bool, JobError> {
        let Some(job) = self.get(id).await? else {
            return Ok(false);
        };
        let Some(queue) = super::queue(&job.queue) else {
            return Ok(false);
        };
        let mut conn = self.conn.clone();
        let ok: i64 = self
            .scripts
            .delete
            .key(job_key(id))
            .key(key("failed", queue))
            .key(key("finished", queue))
            .arg(id)
            .invoke_async(&mut conn)
            .await?;
        Ok(ok == 1)
    }
}

fn view(id: &str, h: &HashMap<String, String>) -> Option<JobView> {
    let get = |k: &str| h.get(k).filter(|v| !v.is_empty());
    let state = State::parse(get("status")?)?;
    let int = |k: &str| get(k).and_then(|v| v.parse::<i64>().ok());
    Some(JobView {
        id: id.to_owned(),
        queue: get("origin").cloned().unwrap_or_default(),
        kind: get("verity_kind").cloned().unwrap_or_default(),
        state,
        attempts: int("attempts")
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0),
        max_attempts: int("max_attempts")
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0),
        organization: int("verity_org"),
        enqueued_at: int("enqueued_us").unwrap_or(0),
        started_at: int("started_us"),
        ended_at: int("ended_us"),
        progress: get("progress").and_then(|v| v.parse().ok()),
        result: get("result").and_then(|v| serde_json::from_str(v).ok()),
        error: get("exc_info").cloned(),
    })
}
