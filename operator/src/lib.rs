//! `verity-operator`: reconciles Verity's custom resources into tenant-isolated stacks.
//!
//! Layout: `org/` (the Organization controller: pure builders, certificates, status),
//! `resources` (apply/compare/prune, the only writer of children), `sync` (Workspace and
//! LabelingProject into the control plane, via `admin`), `lease` (leader election), `http`
//! (`/metrics`, `/livez`, `/readyz`), `client` (the Kubernetes client, logging API server
//! warnings), `crd_wait` (waiting for the CRDs at start), `run` (wiring). Nothing here logs
//! secret material.

pub mod admin;
pub mod autoscale;
pub mod client;
pub mod crd_wait;
pub mod error;
pub mod http;
pub mod lease;
pub mod metrics;
pub mod org;
pub mod resources;
pub mod run;
pub mod sync;

#[cfg(test)]
mod reconcile_tests;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::Client;
use kube::runtime::events::Recorder;

/// Shared state of every controller.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Metrics.
    pub metrics: metrics::Metrics,
    /// Event recorder.
    pub recorder: Recorder,
    /// Per-object retry backoff.
    pub backoff: Backoff,
    /// HTTP client for control planes.
    pub http: reqwest::Client,
    /// Overrides the in-cluster control-plane URL of every Organization (tests, development).
    pub control_plane_url: Option<String>,
    /// How often LabelingProject progress is refreshed from the control plane.
    pub progress_interval: Duration,
    /// Last known Ready state of every reconciled resource, for the objects gauge.
    pub readiness: Readiness,
    /// The operator's own namespace (NetworkPolicies let its pods reach the app and Redis).
    pub operator_namespace: String,
    /// Overrides the Redis address of every Organization (tests, development).
    pub redis_addr: Option<String>,
    /// Redis endpoints of Organizations with autoscaled worker pools.
    pub autoscale: autoscale::Registry,
}

/// Last known Ready state per resource (`kind`, `namespace/name`), exported as a gauge.
#[derive(Default)]
pub struct Readiness {
    states: Mutex<HashMap<(&'static str, String), bool>>,
}

impl Readiness {
    /// Records the Ready state of one resource (`None`: it is gone) and updates the gauge.
    pub fn set(
        &self,
        metrics: &metrics::Metrics,
        kind: &'static str,
        key: &str,
        ready: Option<bool>,
    ) {
        let mut map = self
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match ready {
            Some(r) => map.insert((kind, key.to_owned()), r),
            None => map.remove(&(kind, key.to_owned())),
        };
        Self::publish(&map, metrics, kind);
    }

    /// Forgets the resources of `kind` for which `exists` is false (deleted without a last
    /// reconcile, e.g. Organizations, which have no finalizer) and updates the gauge.
    pub fn retain(
        &self,
        metrics: &metrics::Metrics,
        kind: &'static str,
        exists: impl Fn(&str) -> bool,
    ) {
        let mut map = self
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|(k, key), _| *k != kind || exists(key));
        Self::publish(&map, metrics, kind);
    }

    fn publish(
        map: &HashMap<(&'static str, String), bool>,
        metrics: &metrics::Metrics,
        kind: &'static str,
    ) {
        let (t, f) = map
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .fold(
                (0, 0),
                |(t, f), (_, r)| if *r { (t + 1, f) } else { (t, f + 1) },
            );
        metrics.set_objects(kind, t, f);
    }
}

/// The key of an object in [`Backoff`]: kind, namespace and name, so that the error policy and
/// the reset after a successful reconcile agree, and a Workspace and a LabelingProject of the
/// same name keep separate counters.
pub fn backoff_key<K: kube::Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}

/// Exponential per-object backoff for failed reconciles: 2 s doubling to 5 min, reset on success.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Records a failure of `key` and returns how long to wait before the next attempt.
    pub fn next(&self, key: &str) -> Duration {
        let mut map = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        let secs = 2u64.saturating_mul(1u64 << (*n - 1).min(8)).min(300);
        Duration::from_secs(secs)
    }

    /// Forgets the failures of `key`.
    pub fn reset(&self, key: &str) {
        let mut map = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_gauge_forgets_deleted_objects() {
        let metrics = metrics::Metrics::new().expect("metrics");
        let r = Readiness::default();
        r.set(&metrics, "Organization", "a", Some(true));
        r.set(&metrics, "Organization", "b", Some(false));
        r.set(&metrics, "Workspace", "ns/w", Some(true));
        let value = |kind: &str, state: &str| {
            metrics
                .render()
                .lines()
                .find(|l| {
                    l.starts_with("verity_operator_objects{")
                        && l.contains(&format!("kind=\"{kind}\""))
                        && l.contains(&format!("ready=\"{state}\""))
                })
                .and_then(|l| l.rsplit(' ').next().map(str::to_string))
        };
        assert_eq!(value("Organization", "False").as_deref(), Some("1"));
        // "b" is gone from the cluster; other kinds are untouched.
        r.retain(&metrics, "Organization", |name| name == "a");
        assert_eq!(value("Organization", "False").as_deref(), Some("0"));
        assert_eq!(value("Organization", "True").as_deref(), Some("1"));
        assert_eq!(value("Workspace", "True").as_deref(), Some("1"));
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let b = Backoff::default();
        let seq: Vec<u64> = (0..10).map(|_| b.next("a").as_secs()).collect();
        assert_eq!(seq, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(b.next("b").as_secs(), 2, "keys are independent");
        b.reset("a");
        assert_eq!(b.next("a").as_secs(), 2);
    }
}
