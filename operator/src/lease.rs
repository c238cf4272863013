//! Leader election with a `coordination.k8s.io/v1` Lease. Only the holder runs controllers.
//!
//! The rules are client-go's, and they are what keeps two leaders from ever overlapping:
//! - Writes use optimistic concurrency (`resourceVersion`), so of two candidates racing for a
//!   free lease exactly one wins.
//! - Expiry is judged on the candidate's own monotonic clock, never by comparing its wall clock
//!   with the holder's `renewTime`: a candidate takes the lease only after it has seen the same
//!   record, unchanged, for the lease's whole duration. Clock skew between nodes cannot shorten
//!   that wait.
//! - The holder gives up after `renew_deadline` (shorter than the lease) without a successful
//!   renewal, counted from the start of its last successful request, which is before the
//!   apiserver stored it and so before any candidate started counting. The caller then stops
//!   at once (the process exits; its replacement starts from a clean cache), so the holder is
//!   gone before anyone else may take over.
//! - On a clean shutdown the holder releases the lease, so a standby takes over without
//!   waiting for expiry.
//!
//! ADR 0012 says why this is written here rather than taken from a crate.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::time::Instant;
use tracing::{info, warn};

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a lease stays valid without renewal (written into the Lease).
    pub duration: Duration,
    /// How long the holder keeps trying to renew before it gives up; shorter than `duration`.
    pub renew_deadline: Duration,
    /// How often the holder renews and candidates look again.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// The defaults of kube-controller-manager: 15 s lease, 10 s renew deadline, 2 s retry.
    pub fn new(namespace: String, name: String, identity: String) -> Self {
        Self {
            namespace,
            name,
            identity,
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// Refuses settings under which a holder could still act after a candidate took over.
    pub fn validate(&self) -> Result<(), String> {
        if self.renew_deadline >= self.duration {
            return Err(format!(
                "the renew deadline ({:?}) must be shorter than the lease duration ({:?})",
                self.renew_deadline, self.duration
            ));
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err(format!(
                "the retry period ({:?}) must be positive and shorter than the renew deadline ({:?})",
                self.retry_period, self.renew_deadline
            ));
        }
        Ok(())
    }
}

/// What a candidate should do with the current lease.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, or its holder has not renewed it for a whole lease duration: take it.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds a lease that may still be valid: wait.
    Wait,
}

/// The last lease record this replica saw and when (on its own monotonic clock) it first saw
/// it. The record is the holder, its renew time and duration: it changes on every renewal.
#[derive(Debug, Default)]
pub struct Observation {
    record: Option<(String, Option<String>, Option<i32>)>,
    since: Option<Instant>,
}

impl Observation {
    /// Records what was read at `now` and returns for how long the same record has been seen.
    pub fn observe(&mut self, spec: Option<&LeaseSpec>, now: Instant) -> Duration {
        let record = spec.map(|s| {
            (
                s.holder_identity.clone().unwrap_or_default(),
                s.renew_time.as_ref().map(|MicroTime(t)| t.to_string()),
                s.lease_duration_seconds,
            )
        });
        if self.since.is_none() || record != self.record {
            self.record = record;
            self.since = Some(now);
        }
        self.since.map_or(Duration::ZERO, |t| now.duration_since(t))
    }
}

/// Pure decision from the observed lease and how long it has been seen unchanged.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, unchanged_for: Duration) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder == me {
        return Decision::Renew;
    }
    let duration =
        Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(15)).unwrap_or(15));
    if holder.is_empty() || unchanged_for > duration {
        Decision::Acquire
    } else {
        Decision::Wait
    }
}

fn spec_for(cfg: &LeaseConfig, previous: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
    let ours =
        previous.is_some_and(|p| p.holder_identity.as_deref() == Some(cfg.identity.as_str()));
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(i32::try_from(cfg.duration.as_secs()).unwrap_or(15)),
        acquire_time: if ours {
            previous.and_then(|p| p.acquire_time.clone())
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if ours { transitions } else { transitions + 1 }),
        ..LeaseSpec::default()
    }
}

/// One attempt to acquire or renew. `Ok(true)` if we hold the lease afterwards.
pub async fn try_hold(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    seen: &mut Observation,
) -> Result<bool, kube::Error> {
    let current = api.get_opt(&cfg.name).await?;
    let spec = current.as_ref().and_then(|l| l.spec.as_ref());
    let unchanged_for = seen.observe(spec, Instant::now());
    match decide(spec, &cfg.identity, unchanged_for) {
        Decision::Wait => Ok(false),
        Decision::Acquire | Decision::Renew => {
            let spec = spec_for(cfg, spec, Timestamp::now());
            let result = match current {
                None => {
                    let lease = Lease {
                        metadata: ObjectMeta {
                            name: Some(cfg.name.clone()),
                            ..ObjectMeta::default()
                        },
                        spec: Some(spec),
                    };
                    api.create(&PostParams::default(), &lease).await
                }
                Some(mut lease) => {
                    // `resourceVersion` is kept: a concurrent write makes this a 409.
                    lease.spec = Some(spec);
                    api.replace(&cfg.name, &PostParams::default(), &lease).await
                }
            };
            match result {
                Ok(_) => Ok(true),
                // Someone else won the race (create or resourceVersion conflict).
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Gives the lease up if this replica holds it (clean shutdown), so a standby need not wait
/// for it to expire. Best effort: a failure only means the standby waits.
pub async fn release(client: Client, cfg: &LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => info!(lease = %cfg.name, "released the lease"),
        Err(e) => warn!(lease = %cfg.name, error = %e, "could not release the lease"),
    }
}

/// Blocks until this replica holds the lease, then keeps renewing it in the background; the
/// returned future resolves when the lease is lost or could not be renewed within the renew
/// deadline. The caller must stop acting as leader immediately when it resolves.
pub async fn acquire(client: Client, cfg: LeaseConfig) -> impl std::future::Future<Output = ()> {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut seen = Observation::default();
    let mut renewed_at;
    loop {
        let started = Instant::now();
        match try_hold(&api, &cfg, &mut seen).await {
            Ok(true) => {
                renewed_at = started;
                break;
            }
            Ok(false) => {}
            Err(e) => warn!(error = %e, lease = %cfg.name, "leader election attempt failed"),
        }
        tokio::time::sleep(cfg.retry_period).await;
    }
    info!(lease = %cfg.name, identity = %cfg.identity, "became leader");
    async move {
        loop {
            tokio::time::sleep(cfg.retry_period).await;
            let deadline = renewed_at + cfg.renew_deadline;
            let started = Instant::now();
            match tokio::time::timeout_at(deadline, try_hold(&api, &cfg, &mut seen)).await {
                Ok(Ok(true)) => renewed_at = started,
                Ok(Ok(false)) => {
                    warn!(lease = %cfg.name, "lost the lease to another replica");
                    return;
                }
                Ok(Err(e)) => {
                    warn!(error = %e, lease = %cfg.name, "lease renewal failed");
                    if Instant::now() >= deadline {
                        warn!(lease = %cfg.name, "could not renew the lease within the renew deadline");
                        return;
                    }
                }
                Err(_) => {
                    warn!(lease = %cfg.name, "could not renew the lease within the renew deadline");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decisions() {
        let s = Duration::from_secs;
        assert_eq!(decide(None, "a", s(0)), Decision::Acquire);
        assert_eq!(decide(Some(&spec("a", 999)), "a", s(0)), Decision::Renew);
        assert_eq!(decide(Some(&spec("b", 990)), "a", s(10)), Decision::Wait);
        assert_eq!(
            decide(Some(&spec("b", 980)), "a", s(16)),
            Decision::Acquire,
            "unchanged for longer than the lease"
        );
        assert_eq!(
            decide(Some(&spec("", 999)), "a", s(0)),
            Decision::Acquire,
            "released"
        );
    }

    #[test]
    fn expiry_is_measured_on_the_local_clock() {
        // The holder's renewTime is far in the past by our wall clock (a skewed node), but we
        // have only just seen this record: a candidate waits a whole lease duration.
        let mut seen = Observation::default();
        let old = spec("b", 1);
        let t0 = Instant::now();
        let d = seen.observe(Some(&old), t0);
        assert_eq!(decide(Some(&old), "a", d), Decision::Wait);
        let d = seen.observe(Some(&old), t0 + Duration::from_secs(14));
        assert_eq!(decide(Some(&old), "a", d), Decision::Wait);
        // A renewal (new renewTime) restarts the count.
        let renewed = spec("b", 2);
        let d = seen.observe(Some(&renewed), t0 + Duration::from_secs(15));
        assert_eq!(d, Duration::ZERO);
        assert_eq!(decide(Some(&renewed), "a", d), Decision::Wait);
        let d = seen.observe(Some(&renewed), t0 + Duration::from_secs(31));
        assert_eq!(decide(Some(&renewed), "a", d), Decision::Acquire);
    }

    #[test]
    fn the_renew_deadline_is_shorter_than_the_lease() {
        let mut c = LeaseConfig::new("ns".into(), "l".into(), "me".into());
        assert!(c.validate().is_ok());
        c.renew_deadline = c.duration;
        assert!(c.validate().is_err());
        c.renew_deadline = Duration::from_secs(10);
        c.retry_period = Duration::from_secs(10);
        assert!(c.validate().is_err());
    }
}
