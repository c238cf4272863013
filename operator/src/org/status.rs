//! Pure status logic of an Organization: from the live children to a `Verdict`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::Value;
use verity_crds::conditions::Verdict;

use crate::resources::Kind;

/// Reasons of the Organization's `Ready` condition (documented in docs/operations).
pub mod reason {
    /// Everything is applied and available.
    pub const RECONCILED: &str = "Reconciled";
    /// Deployments are rolling out or not yet available.
    pub const DEPLOYMENTS_NOT_AVAILABLE: &str = "DeploymentsNotAvailable";
    /// The Redis StatefulSet is not ready.
    pub const REDIS_NOT_READY: &str = "RedisNotReady";
    /// The namespace belongs to another Organization.
    pub const NAMESPACE_CONFLICT: &str = "NamespaceConflict";
    /// The namespace exists, was not made by Verity and carries no adoption label for this
    /// Organization.
    pub const NAMESPACE_NOT_OWNED: &str = "NamespaceNotOwned";
    /// The namespace is `default`, `kube-*` or the operator's own.
    pub const NAMESPACE_RESERVED: &str = "NamespaceReserved";
    /// The namespace is being deleted.
    pub const NAMESPACE_TERMINATING: &str = "NamespaceTerminating";
    /// The database DSN Secret does not exist.
    pub const DATABASE_SECRET_MISSING: &str = "DatabaseSecretMissing";
    /// The Secret of `spec.storage.awsCredentialsSecretRef` does not exist.
    pub const STORAGE_CREDENTIALS_SECRET_MISSING: &str = "StorageCredentialsSecretMissing";
}

/// A Secret the spec names that is not in the tenant namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingSecret<'a> {
    /// The condition reason (`DatabaseSecretMissing`, `StorageCredentialsSecretMissing`).
    pub reason: &'static str,
    /// Secret name.
    pub name: &'a str,
    /// The keys it must hold.
    pub keys: Vec<&'a str>,
    /// What it holds, for the message.
    pub what: &'static str,
}

fn condition_true(obj: &Value, type_: &str) -> bool {
    obj["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == type_ && c["status"] == "True")
    })
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// Whether a Deployment has rolled out its current spec and is available.
pub fn deployment_ready(d: &Value) -> bool {
    let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let s = &d["status"];
    int(&s["observedGeneration"]) >= int(&d["metadata"]["generation"])
        && int(&s["updatedReplicas"]) >= want
        && int(&s["availableReplicas"]) >= want
        && int(&s["replicas"]) == want
        && (want == 0 || condition_true(d, "Available"))
}

/// Whether a StatefulSet has rolled out and all its replicas are ready.
pub fn statefulset_ready(s: &Value) -> bool {
    let want = s["spec"]["replicas"].as_i64().unwrap_or(1);
    let st = &s["status"];
    int(&st["observedGeneration"]) >= int(&s["metadata"]["generation"])
        && int(&st["readyReplicas"]) >= want
        && st["currentRevision"] == st["updateRevision"]
}

/// The claim of the Redis StatefulSet's only pod (volume claim template `data`).
pub const REDIS_CLAIM: &str = "data-redis-0";

/// The annotation that marks the cluster's default StorageClass.
const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";

/// Why the Redis claim is not bound, for the `RedisNotReady` message; `None` when it is bound.
/// `classes` are the cluster's StorageClasses (`None`: they could not be read, so nothing is said
/// about them), `events` the claim's Events (any order).
pub fn unbound_claim(
    claim: &PersistentVolumeClaim,
    classes: Option<&[StorageClass]>,
    events: &[Event],
) -> Option<String> {
    let phase = claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending");
    if phase == "Bound" {
        return None;
    }
    let name = claim.metadata.name.as_deref().unwrap_or(REDIS_CLAIM);
    let mut msg = format!("PersistentVolumeClaim {name} is unbound ({phase})");
    let names: Vec<&str> = classes
        .unwrap_or_default()
        .iter()
        .filter_map(|c| c.metadata.name.as_deref())
        .collect();
    let available = if names.is_empty() {
        "the cluster has none".to_owned()
    } else {
        format!("the cluster has {}", names.join(", "))
    };
    let class = claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref());
    match (class, classes) {
        (Some(""), _) => msg.push_str(
            ": it asks for no StorageClass (\"\"), so only a PersistentVolume created for it can bind it",
        ),
        (_, None) => {}
        (None, Some(classes)) => {
            let has_default = classes.iter().any(|c| {
                c.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                    .is_some_and(|v| v == "true")
            });
            if !has_default {
                msg.push_str(&format!(
                    ": it names no StorageClass and the cluster has no default StorageClass ({available}). \
                     Mark one as default (kubectl annotate storageclass <name> {DEFAULT_CLASS_ANNOTATION}=true), \
                     create a PersistentVolume for the claim, or create the Organization with \
                     spec.redis.storageClassName (immutable)"
                ));
            }
        }
        (Some(c), _) if !names.contains(&c) => msg.push_str(&format!(
            ": StorageClass {c} (spec.redis.storageClassName) does not exist ({available}). \
             Create it, or create the Organization with an existing class (the field is immutable)"
        )),
        (Some(_), _) => {}
    }
    let when = |e: &Event| {
        e.last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or(e.event_time.as_ref().map(|t| t.0))
            .or(e.first_timestamp.as_ref().map(|t| t.0))
    };
    if let Some(e) = events.iter().max_by_key(|e| when(e)) {
        msg.push_str(&format!(
            "; the claim's latest event: {}: {}",
            e.reason.as_deref().unwrap_or("-"),
            e.message.as_deref().unwrap_or("").trim()
        ));
    }
    Some(msg)
}

/// The verdict and the number of ready worker pods. `missing` names a Secret of the spec that
/// does not exist; `redis_claim` explains an unready Redis (see
/// [`unbound_claim`]).
pub fn evaluate(
    live: &BTreeMap<(Kind, String), Value>,
    missing: Option<&MissingSecret<'_>>,
    redis_claim: Option<&str>,
) -> (Verdict, i32) {
    let mut waiting = Vec::new();
    let mut ready_workers = 0;
    for ((kind, name), obj) in live {
        match kind {
            Kind::Deployment => {
                if name.starts_with("worker-") {
                    ready_workers +=
                        i32::try_from(int(&obj["status"]["readyReplicas"])).unwrap_or(0);
                }
                if !deployment_ready(obj) {
                    waiting.push(name.clone());
                }
            }
            Kind::StatefulSet if !statefulset_ready(obj) => {
                return (
                    Verdict::progressing(
                        reason::REDIS_NOT_READY,
                        match redis_claim {
                            Some(why) => format!("StatefulSet {name} is not ready: {why}"),
                            None => format!("StatefulSet {name} is not ready yet"),
                        },
                    ),
                    ready_workers,
                );
            }
            _ => {}
        }
    }
    if let Some(m) = missing {
        let keys = match m.keys.as_slice() {
            [one] => format!("key {one}"),
            [first @ .., last] => format!("keys {} and {last}", first.join(", ")),
            [] => "its keys".to_owned(),
        };
        return (
            Verdict::stalled(
                m.reason,
                format!(
                    "Secret {} with {keys} ({}) does not exist in the tenant namespace; create it",
                    m.name, m.what
                ),
            ),
            ready_workers,
        );
    }
    if !waiting.is_empty() {
        return (
            Verdict::progressing(
                reason::DEPLOYMENTS_NOT_AVAILABLE,
                format!(
                    "waiting for Deployments to roll out and become available: {}",
                    waiting.join(", ")
                ),
            ),
            ready_workers,
        );
    }
    (
        Verdict::ready(
            reason::RECONCILED,
            "every component is applied and available",
        ),
        ready_workers,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dep(replicas: i64, available: i64, generation: i64, observed: i64) -> Value {
        json!({
            "metadata": {"generation": generation},
            "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "replicas": replicas, "updatedReplicas": available,
                       "availableReplicas": available, "readyReplicas": available,
                       "conditions": [{"type": "Available", "status": if available >= replicas {"True"} else {"False"}}]},
        })
    }
    fn sts(ready: i64) -> Value {
        json!({"metadata": {"generation": 1}, "spec": {"replicas": 1},
               "status": {"observedGeneration": 1, "readyReplicas": ready, "currentRevision": "a", "updateRevision": "a"}})
    }

    #[test]
    fn ready_only_when_everything_rolled_out() {
        let mut live = BTreeMap::from([
            ((Kind::Deployment, "app".to_owned()), dep(2, 2, 1, 1)),
            (
                (Kind::Deployment, "worker-default".to_owned()),
                dep(4, 4, 3, 3),
            ),
            ((Kind::StatefulSet, "redis".to_owned()), sts(1)),
        ]);
        let (v, workers) = evaluate(&live, None, None);
        assert!(v.ready, "{v:?}");
        assert_eq!(workers, 4);

        live.insert(
            (Kind::Deployment, "worker-default".to_owned()),
            dep(6, 4, 4, 4),
        );
        let (v, _) = evaluate(&live, None, None);
        assert!(!v.ready && !v.stalled);
        assert_eq!(v.reason, reason::DEPLOYMENTS_NOT_AVAILABLE);
        assert!(v.message.contains("worker-default"), "{}", v.message);

        live.insert(
            (Kind::Deployment, "worker-default".to_owned()),
            dep(4, 4, 5, 4),
        );
        assert!(
            !evaluate(&live, None, None).0.ready,
            "a newer generation not yet observed is not ready"
        );

        live.insert(
            (Kind::Deployment, "worker-default".to_owned()),
            dep(4, 4, 5, 5),
        );
        live.insert((Kind::StatefulSet, "redis".to_owned()), sts(0));
        assert_eq!(
            evaluate(&live, None, None).0.reason,
            reason::REDIS_NOT_READY
        );
    }

    #[test]
    fn missing_database_secret_stalls() {
        let live = BTreeMap::from([((Kind::Deployment, "app".to_owned()), dep(1, 1, 1, 1))]);
        let missing = MissingSecret {
            reason: reason::DATABASE_SECRET_MISSING,
            name: "db",
            keys: vec!["dsn"],
            what: "the PostgreSQL DSN",
        };
        let (v, _) = evaluate(&live, Some(&missing), None);
        assert!(v.stalled);
        assert_eq!(v.reason, reason::DATABASE_SECRET_MISSING);
        assert!(
            v.message
                .contains("Secret db with key dsn (the PostgreSQL DSN)")
        );
    }

    #[test]
    fn missing_storage_credentials_secret_stalls_and_names_the_keys() {
        let live = BTreeMap::from([((Kind::Deployment, "app".to_owned()), dep(1, 1, 1, 1))]);
        let missing = MissingSecret {
            reason: reason::STORAGE_CREDENTIALS_SECRET_MISSING,
            name: "aws",
            keys: vec!["id", "secret"],
            what: "the storages' base AWS identity",
        };
        let (v, _) = evaluate(&live, Some(&missing), None);
        assert!(v.stalled && !v.ready);
        assert_eq!(v.reason, reason::STORAGE_CREDENTIALS_SECRET_MISSING);
        assert!(
            v.message.contains("Secret aws with keys id and secret"),
            "{}",
            v.message
        );
    }

    fn claim(class: Option<&str>, phase: &str) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": REDIS_CLAIM, "namespace": "t"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                     "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": phase},
        }))
        .unwrap()
    }
    fn class(name: &str, default: bool) -> StorageClass {
        let annotations = if default {
            json!({DEFAULT_CLASS_ANNOTATION: "true"})
        } else {
            json!({})
        };
        serde_json::from_value(
            json!({"metadata": {"name": name, "annotations": annotations},
                                      "provisioner": "example.com/x"}),
        )
        .unwrap()
    }
    fn event(reason: &str, message: &str, at: &str) -> Event {
        serde_json::from_value(json!({"metadata": {"name": format!("e-{at}")},
            "involvedObject": {"kind": "PersistentVolumeClaim", "name": REDIS_CLAIM},
            "reason": reason, "message": message, "type": "Warning", "lastTimestamp": at}))
        .unwrap()
    }

    #[test]
    fn an_unbound_redis_claim_says_why() {
        assert_eq!(unbound_claim(&claim(None, "Bound"), Some(&[]), &[]), None);
        // No class named, no default class: the message says so and what to do.
        let events = [
            event("FailedBinding", "old news", "2026-01-01T00:00:00Z"),
            event(
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set",
                "2026-01-01T00:05:00Z",
            ),
        ];
        let m = unbound_claim(
            &claim(None, "Pending"),
            Some(&[class("slow", false)]),
            &events,
        )
        .unwrap();
        assert!(
            m.starts_with("PersistentVolumeClaim data-redis-0 is unbound (Pending)"),
            "{m}"
        );
        assert!(
            m.contains("no default StorageClass (the cluster has slow)"),
            "{m}"
        );
        assert!(m.contains("spec.redis.storageClassName"), "{m}");
        assert!(
            m.ends_with("latest event: FailedBinding: no persistent volumes available for this claim and no storage class is set"),
            "{m}"
        );
        // With a default class, no word about defaults; the event still explains.
        let m = unbound_claim(
            &claim(None, "Pending"),
            Some(&[class("std", true)]),
            &events[..1],
        )
        .unwrap();
        assert!(!m.contains("default"), "{m}");
        assert!(m.contains("FailedBinding: old news"), "{m}");
        // A named class that does not exist.
        let m = unbound_claim(&claim(Some("fast"), "Pending"), Some(&[]), &[]).unwrap();
        assert!(m.contains("StorageClass fast (spec.redis.storageClassName) does not exist (the cluster has none)"), "{m}");
        // A named class that exists: only the claim's state and events.
        let m = unbound_claim(
            &claim(Some("fast"), "Pending"),
            Some(&[class("fast", false)]),
            &[],
        )
        .unwrap();
        assert_eq!(m, "PersistentVolumeClaim data-redis-0 is unbound (Pending)");
        // StorageClasses that could not be read: nothing is claimed about them.
        let m = unbound_claim(&claim(None, "Pending"), None, &[]).unwrap();
        assert_eq!(m, "PersistentVolumeClaim data-redis-0 is unbound (Pending)");
    }

    #[test]
    fn redis_not_ready_carries_the_claims_story() {
        let live = BTreeMap::from([((Kind::StatefulSet, "redis".to_owned()), sts(0))]);
        let (v, _) = evaluate(
            &live,
            None,
            Some("PersistentVolumeClaim data-redis-0 is unbound (Pending)"),
        );
        assert_eq!(v.reason, reason::REDIS_NOT_READY);
        assert_eq!(
            v.message,
            "StatefulSet redis is not ready: PersistentVolumeClaim data-redis-0 is unbound (Pending)"
        );
        assert_eq!(
            evaluate(&live, None, None).0.message,
            "StatefulSet redis is not ready yet"
        );
    }

    #[test]
    fn zero_replica_pools_are_ready() {
        let mut d = dep(0, 0, 1, 1);
        d["status"]["conditions"] = json!([]);
        assert!(deployment_ready(&d));
    }
}
