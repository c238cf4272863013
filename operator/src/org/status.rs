//! Pure status logic of an Organization: from the live children to a `Verdict`.

use std::collections::BTreeMap;

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

/// The verdict and the number of ready worker pods.
pub fn evaluate(
    live: &BTreeMap<(Kind, String), Value>,
    db_secret: Option<(&str, &str)>,
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
                        format!("StatefulSet {name} is not ready yet"),
                    ),
                    ready_workers,
                );
            }
            _ => {}
        }
    }
    if let Some((name, key)) = db_secret {
        return (
            Verdict::stalled(
                reason::DATABASE_SECRET_MISSING,
                format!(
                    "Secret {name} with key {key} (the PostgreSQL DSN) does not exist in the tenant namespace; create it"
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
        let (v, workers) = evaluate(&live, None);
        assert!(v.ready, "{v:?}");
        assert_eq!(workers, 4);

        live.insert(
            (Kind::Deployment, "worker-default".to_owned()),
            dep(6, 4, 4, 4),
        );
        let (v, _) = evaluate(&live, None);
        assert!(!v.ready && !v.stalled);
        assert_eq!(v.reason, reason::DEPLOYMENTS_NOT_AVAILABLE);
        assert!(v.message.contains("worker-default"), "{}", v.message);

        live.insert(
            (Kind::Deployment, "worker-default".to_owned()),
            dep(4, 4, 5, 4),
        );
        assert!(
            !evaluate(&live, None).0.ready,
            "a newer generation not yet observed is not ready"
        );

        live.insert(
            (Kind::Deployment, "worker-default".to_owned()),
            dep(4, 4, 5, 5),
        );
        live.insert((Kind::StatefulSet, "redis".to_owned()), sts(0));
        assert_eq!(evaluate(&live, None).0.reason, reason::REDIS_NOT_READY);
    }

    #[test]
    fn missing_database_secret_stalls() {
        let live = BTreeMap::from([((Kind::Deployment, "app".to_owned()), dep(1, 1, 1, 1))]);
        let (v, _) = evaluate(&live, Some(("db", "dsn")));
        assert!(v.stalled);
        assert_eq!(v.reason, reason::DATABASE_SECRET_MISSING);
        assert!(v.message.contains("Secret db with key dsn"));
    }

    #[test]
    fn zero_replica_pools_are_ready() {
        let mut d = dep(0, 0, 1, 1);
        d["status"]["conditions"] = json!([]);
        assert!(deployment_ready(&d));
    }
}
