//! Queue-driven autoscaling of the worker pools, done by the operator itself (no KEDA, no
//! metrics adapter). Every `--queue-poll-interval` the autoscaler reads the autoscaled queues of
//! each Organization from its Redis (TLS, the tenant's client certificate), decides with
//! [`decide`], and records the decision in `status.workers` under a field manager of its own.
//! The status change wakes the Organization controller, whose builder sets the pool's
//! Deployment to `status.workers[].replicas` (so the Deployment still has one writer).
//! Nothing is written while the decision and the error state stay the same.

pub mod decide;
pub mod probe;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use kube::api::{Api, Patch};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource as _, ResourceExt as _};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::{info, warn};
use verity_crds::Organization;
use verity_crds::organization::{QUEUES, WorkerPoolStatus};

use crate::Context;
use crate::error::Error;
use crate::org::build;
use decide::{Observation, Window, recommend};
use probe::{Endpoint, ProbeError, QueueStats};

/// The field manager of `status.workers`.
pub const FIELD_MANAGER: &str = "verity-operator-autoscaler";
/// Bound of one probe (connect, handshake, two round trips).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Probes running at once.
const PROBE_CONCURRENCY: usize = 16;

/// The Redis endpoint of every Organization with an autoscaled pool, kept current by the
/// Organization reconcile (which has the tenant's certificates at hand).
#[derive(Default)]
pub struct Registry {
    endpoints: Mutex<HashMap<String, Endpoint>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Endpoint>> {
        self.endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records (or, with `None`, forgets) the endpoint of an Organization.
    pub fn set(&self, org: &str, endpoint: Option<Endpoint>) {
        let mut map = self.lock();
        match endpoint {
            Some(e) => map.insert(org.to_owned(), e),
            None => map.remove(org),
        };
    }

    /// Forgets Organizations for which `exists` is false.
    pub fn retain(&self, exists: impl Fn(&str) -> bool) {
        self.lock().retain(|name, _| exists(name));
    }

    fn get(&self, org: &str) -> Option<Endpoint> {
        self.lock().get(org).cloned()
    }
}

/// Whether any pool of the Organization is autoscaled.
pub fn autoscaled(org: &Organization) -> bool {
    QUEUES
        .iter()
        .any(|q| org.spec.workers.autoscaling(q).is_some())
}

/// The endpoint of an Organization's Redis: the in-cluster Service, or `addr_override` (tests
/// and development) while still verifying the in-cluster name.
pub fn endpoint(
    namespace: &str,
    material: &build::Material,
    addr_override: Option<&str>,
) -> Endpoint {
    let server_name = format!("redis.{namespace}.svc");
    Endpoint {
        addr: addr_override.map_or_else(
            || format!("{server_name}:{}", build::REDIS_PORT),
            str::to_owned,
        ),
        server_name,
        ca_pem: material.ca_cert.clone(),
        cert_pem: material.operator.cert.clone(),
        key_pem: material.operator.key.clone(),
        username: "operator".into(),
        password: material.operator.password.clone(),
    }
}

/// The scale-down windows of every autoscaled pool, owned by the loop.
#[derive(Default)]
pub struct Windows {
    by_pool: HashMap<(String, String), Window>,
}

/// The `status.workers` an Organization should have after one reading of its queues.
pub fn plan(
    org: &Organization,
    reading: &Result<BTreeMap<String, QueueStats>, ProbeError>,
    windows: &mut Windows,
    now: Instant,
    wall: OffsetDateTime,
) -> Vec<WorkerPoolStatus> {
    let name = org.name_any();
    let previous = org
        .status
        .as_ref()
        .map(|s| s.workers.as_slice())
        .unwrap_or_default();
    let mut out = Vec::new();
    for q in QUEUES {
        let Some(spec) = org.spec.workers.autoscaling(q) else {
            continue;
        };
        let prev = previous.iter().find(|w| w.queue == q);
        let current = build::worker_replicas(org, q);
        let mut entry = WorkerPoolStatus {
            queue: q.to_owned(),
            replicas: current,
            last_scale_time: prev.and_then(|p| p.last_scale_time.clone()),
            last_scale_reason: prev.and_then(|p| p.last_scale_reason.clone()),
            metrics_error: None,
        };
        match reading {
            Err(e) => entry.metrics_error = Some(format!("{e}; keeping {current} replicas")),
            Ok(stats) => {
                let s = stats.get(q).cloned().unwrap_or_default();
                let obs = Observation {
                    waiting: s.waiting,
                    running: s.running,
                    oldest_age: s
                        .oldest_enqueued_at
                        .map(|t| Duration::try_from(wall - t).unwrap_or(Duration::ZERO)),
                };
                let limit = time::Duration::seconds(i64::from(spec.max_oldest_job_age_seconds));
                let age_step_allowed = entry
                    .last_scale_time
                    .as_deref()
                    .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
                    .is_none_or(|t| wall - t >= limit);
                let rec = recommend(spec, current, &obs, age_step_allowed);
                let delay =
                    Duration::from_secs(u64::try_from(spec.scale_down_delay_seconds).unwrap_or(0));
                let decided = windows
                    .by_pool
                    .entry((name.clone(), q.to_owned()))
                    .or_insert_with(|| Window::seeded(now, current))
                    .decide(now, delay, current, rec.replicas);
                if decided != current {
                    let held = if decided == rec.replicas {
                        String::new()
                    } else {
                        format!(
                            " (held at {decided}, the highest size asked for in the last {} s)",
                            delay.as_secs()
                        )
                    };
                    entry.replicas = decided;
                    entry.last_scale_time = wall.format(&Rfc3339).ok();
                    entry.last_scale_reason =
                        Some(format!("{current} -> {decided}: {}{held}", rec.reason));
                }
            }
        }
        out.push(entry);
    }
    out
}

async fn write(
    ctx: &Context,
    org: &Organization,
    workers: &[WorkerPoolStatus],
) -> Result<(), Error> {
    let name = org.name_any();
    let api: Api<Organization> = Api::all(ctx.client.clone());
    let body = json!({
        "apiVersion": Organization::api_version(&()),
        "kind": Organization::kind(&()),
        // An empty list is left out, so that SSA removes the entries this manager owned.
        "status": if workers.is_empty() { json!({}) } else { json!({ "workers": workers }) },
    });
    api.patch_status(
        &name,
        &crate::resources::apply_params(FIELD_MANAGER),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| Error::kube_on("patch-status", "Organization", &name, e))?;
    ctx.metrics.api_call("Organization", "patch-status");
    Ok(())
}

/// One pass over every Organization in the cache.
pub async fn tick(ctx: &Context, store: &Store<Organization>, windows: &mut Windows) {
    let orgs = store.state();
    let readings: Vec<_> = futures::stream::iter(orgs.into_iter().filter_map(|org| {
        let endpoint = autoscaled(&org)
            .then(|| ctx.autoscale.get(&org.name_any()))
            .flatten();
        let had = org.status.as_ref().is_some_and(|s| !s.workers.is_empty());
        (endpoint.is_some() || had).then_some((org, endpoint))
    }))
    .map(|(org, endpoint)| async move {
        let reading = match &endpoint {
            Some(ep) => {
                let queues: Vec<&str> = QUEUES
                    .into_iter()
                    .filter(|q| org.spec.workers.autoscaling(q).is_some())
                    .collect();
                Some(probe::probe(ep, &queues, PROBE_TIMEOUT).await)
            }
            None => None,
        };
        (org, reading)
    })
    .buffer_unordered(PROBE_CONCURRENCY)
    .collect()
    .await;

    let now = Instant::now();
    let wall = OffsetDateTime::now_utc();
    for (org, reading) in readings {
        let name = org.name_any();
        let previous = org
            .status
            .as_ref()
            .map(|s| s.workers.clone())
            .unwrap_or_default();
        let next = match &reading {
            // Not (or no longer) autoscaled, or not reconciled yet: give the entries up.
            None if !autoscaled(&org) => Vec::new(),
            None => continue,
            Some(r) => {
                ctx.metrics
                    .queue_probe(r.as_ref().err().map(ProbeError::category));
                plan(&org, r, windows, now, wall)
            }
        };
        if next == previous {
            continue;
        }
        for (p, n) in next
            .iter()
            .map(|n| (previous.iter().find(|p| p.queue == n.queue), n))
        {
            let was = p.map_or(n.replicas, |p| p.replicas);
            if n.replicas != was {
                ctx.metrics.worker_scaled(&n.queue, n.replicas > was);
                info!(organization = %name, queue = %n.queue, from = was, to = n.replicas, reason = n.last_scale_reason.as_deref().unwrap_or_default(), "scaling worker pool");
            }
            if n.metrics_error.is_some()
                && n.metrics_error != p.and_then(|p| p.metrics_error.clone())
            {
                warn!(organization = %name, queue = %n.queue, error = n.metrics_error.as_deref().unwrap_or_default(), "cannot read the queue; the pool keeps its size");
            }
        }
        if let Err(e) = write(ctx, &org, &next).await {
            warn!(organization = %name, error = %e, "could not record the autoscaler's decision");
        }
    }
    // Forget the windows of pools that are gone or no longer autoscaled.
    windows.by_pool.retain(|(org, queue), _| {
        store
            .get(&ObjectRef::new(org))
            .is_some_and(|o| o.spec.workers.autoscaling(queue).is_some())
    });
}

/// Runs [`tick`] every `interval` until `stop` turns true.
pub async fn run(
    ctx: Arc<Context>,
    store: Store<Organization>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    tokio::select! {
        r = store.wait_until_ready() => if r.is_err() { return },
        _ = stop.wait_for(|s| *s) => return,
    }
    let mut windows = Windows::default();
    loop {
        tick(&ctx, &store, &mut windows).await;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(workers: serde_json::Value, status: serde_json::Value) -> Organization {
        serde_json::from_value(json!({
            "apiVersion": "verity.dev/v1alpha1", "kind": "Organization",
            "metadata": {"name": "acme"},
            "spec": {
                "namespace": "tenant-acme", "ownerEmail": "owner@acme.test",
                "database": {"secretRef": {"name": "db"}, "endpoint": {"cidr": "10.0.0.0/8", "ports": [5432]}},
                "workers": workers,
            },
            "status": status,
        }))
        .expect("organization")
    }

    fn reading(pairs: &[(&str, u64, u64)]) -> Result<BTreeMap<String, QueueStats>, ProbeError> {
        Ok(pairs
            .iter()
            .map(|(q, waiting, running)| {
                (
                    (*q).to_owned(),
                    QueueStats {
                        waiting: *waiting,
                        running: *running,
                        oldest_enqueued_at: None,
                    },
                )
            })
            .collect())
    }

    #[test]
    fn plan_scales_autoscaled_pools_and_leaves_the_others_out() {
        let o = org(
            json!({"default": {"autoscaling": {"minReplicas": 1, "maxReplicas": 5, "scaleDownDelaySeconds": 0}}, "low": {"replicas": 2}}),
            json!({}),
        );
        let mut w = Windows::default();
        let wall = OffsetDateTime::now_utc();
        let out = plan(
            &o,
            &reading(&[("default", 30, 5)]),
            &mut w,
            Instant::now(),
            wall,
        );
        assert_eq!(out.len(), 1, "only autoscaled pools have an entry");
        assert_eq!(out[0].queue, "default");
        assert_eq!(out[0].replicas, 4);
        assert_eq!(
            out[0].last_scale_reason.as_deref(),
            Some("1 -> 4: 35 jobs (30 waiting, 5 running) at 10 per replica")
        );
        assert_eq!(out[0].last_scale_time, wall.format(&Rfc3339).ok());
        assert!(out[0].metrics_error.is_none());
    }

    #[test]
    fn plan_keeps_the_size_and_the_history_when_the_queue_cannot_be_read() {
        let o = org(
            json!({"default": {"autoscaling": {"minReplicas": 1, "maxReplicas": 5}}}),
            json!({"workers": [{"queue": "default", "replicas": 3, "lastScaleTime": "2026-01-01T00:00:00Z", "lastScaleReason": "1 -> 3: load"}]}),
        );
        let err = Err(ProbeError::Connect {
            addr: "redis.tenant-acme.svc:6379".into(),
            kind: std::io::ErrorKind::ConnectionRefused,
        });
        let out = plan(
            &o,
            &err,
            &mut Windows::default(),
            Instant::now(),
            OffsetDateTime::now_utc(),
        );
        assert_eq!(out[0].replicas, 3);
        assert_eq!(out[0].last_scale_reason.as_deref(), Some("1 -> 3: load"));
        let msg = out[0].metrics_error.as_deref().unwrap_or_default();
        assert!(
            msg.starts_with("cannot connect to Redis at redis.tenant-acme.svc:6379"),
            "{msg}"
        );
        assert!(msg.ends_with("keeping 3 replicas"), "{msg}");
    }

    #[test]
    fn an_unchanged_load_plans_the_same_status_so_nothing_is_written() {
        let o = org(
            json!({"default": {"autoscaling": {"minReplicas": 1, "maxReplicas": 5}}}),
            json!({"workers": [{"queue": "default", "replicas": 2, "lastScaleTime": "2026-01-01T00:00:00Z", "lastScaleReason": "1 -> 2: load"}]}),
        );
        let out = plan(
            &o,
            &reading(&[("default", 15, 0)]),
            &mut Windows::default(),
            Instant::now(),
            OffsetDateTime::now_utc(),
        );
        assert_eq!(
            out,
            o.status
                .as_ref()
                .map(|s| s.workers.clone())
                .unwrap_or_default()
        );
    }

    #[test]
    fn endpoints_verify_the_in_cluster_name_even_when_overridden() {
        let m = build::Material {
            session_key: String::new(),
            admin_token: String::new(),
            owner_token: String::new(),
            ca_cert: "CA".into(),
            ca_key: "CA-KEY".into(),
            ca_not_after: String::new(),
            server_cert: String::new(),
            server_key: String::new(),
            app: build::RedisUser {
                cert: "APP-CERT".into(),
                key: "APP-KEY".into(),
                password: "app-pw".into(),
            },
            worker: build::RedisUser {
                cert: "W-CERT".into(),
                key: "W-KEY".into(),
                password: "w-pw".into(),
            },
            operator: build::RedisUser {
                cert: "CERT".into(),
                key: "KEY".into(),
                password: "op-pw".into(),
            },
            not_after: String::new(),
        };
        let e = endpoint("tenant-a", &m, None);
        assert_eq!(e.addr, "redis.tenant-a.svc:6379");
        assert_eq!(e.server_name, "redis.tenant-a.svc");
        let e = endpoint("tenant-a", &m, Some("127.0.0.1:7000"));
        assert_eq!(e.addr, "127.0.0.1:7000");
        assert_eq!(e.server_name, "redis.tenant-a.svc");
        assert!(
            !format!("{e:?}").contains("KEY"),
            "Debug never shows the key"
        );
    }
}
