//! Leader election with a `coordination.k8s.io/v1` Lease. Only the holder runs controllers.
//! Acquisition and renewal use optimistic concurrency (`resourceVersion`), so two replicas
//! can never both believe they hold the lease. On losing it the process exits (fail-stop, as
//! kube-controller-manager does) and its replacement starts from a clean cache.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
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
    /// How long a lease is valid without renewal.
    pub duration: Duration,
    /// How often the holder renews (and candidates retry).
    pub renew_every: Duration,
}

/// What a candidate should do with the current lease.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it or it expired: take it.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds a valid lease: wait.
    Wait,
}

/// Pure decision from the observed lease.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder == me {
        return Decision::Renew;
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    let expired = match &spec.renew_time {
        Some(MicroTime(t)) => now.as_second() - t.as_second() > duration,
        None => true,
    };
    if holder.is_empty() || expired {
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
pub async fn try_hold(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let current = api.get_opt(&cfg.name).await?;
    match decide(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        &cfg.identity,
        now,
    ) {
        Decision::Wait => Ok(false),
        Decision::Acquire | Decision::Renew => {
            let spec = spec_for(cfg, current.as_ref().and_then(|l| l.spec.as_ref()), now);
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

/// Blocks until this replica holds the lease, then keeps renewing it in the background; the
/// returned future resolves when the lease is lost.
pub async fn acquire(client: Client, cfg: LeaseConfig) -> impl std::future::Future<Output = ()> {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    loop {
        match try_hold(&api, &cfg).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => warn!(error = %e, lease = %cfg.name, "leader election attempt failed"),
        }
        tokio::time::sleep(cfg.renew_every).await;
    }
    info!(lease = %cfg.name, identity = %cfg.identity, "became leader");
    async move {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(cfg.renew_every).await;
            match try_hold(&api, &cfg).await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => {
                    warn!(lease = %cfg.name, "lost the lease to another replica");
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "lease renewal failed");
                    if last_ok.elapsed() >= cfg.duration {
                        warn!(lease = %cfg.name, "could not renew the lease in time");
                        return;
                    }
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
        let now = Timestamp::from_second(1000).unwrap();
        assert_eq!(decide(None, "a", now), Decision::Acquire);
        assert_eq!(decide(Some(&spec("a", 999)), "a", now), Decision::Renew);
        assert_eq!(decide(Some(&spec("b", 990)), "a", now), Decision::Wait);
        assert_eq!(
            decide(Some(&spec("b", 980)), "a", now),
            Decision::Acquire,
            "expired after 15 s"
        );
        assert_eq!(
            decide(Some(&spec("", 999)), "a", now),
            Decision::Acquire,
            "released"
        );
    }
}
