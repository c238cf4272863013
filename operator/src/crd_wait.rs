//! Waiting for the operator's own CRDs at start. GitOps tools apply the CRDs and the operator's
//! Deployment together, so the operator may start before its CRDs exist or are `Established`;
//! it then waits (with a bounded exponential backoff, saying what it waits for) instead of
//! exiting, and `/readyz` answers not-ready until the CRDs are served.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams};
use kube::{Client, Resource};
use tracing::{info, warn};
use verity_crds::{LabelingProject, Organization, Workspace};

/// The CRDs the operator needs, by name.
pub const REQUIRED: [&str; 3] = [
    "organizations.verity.dev",
    "workspaces.verity.dev",
    "labelingprojects.verity.dev",
];

/// Why one required CRD cannot be used yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gap {
    /// The CRD does not exist.
    Missing(String),
    /// The CRD exists but its `Established` condition is not `True` (the reason, if any).
    NotEstablished(String, String),
    /// The CRD exists but does not serve the version the operator reads.
    VersionNotServed(String),
    /// The CRD looks fine, but listing its resources failed (not served yet, or forbidden).
    NotListable(String, String),
    /// The API server could not be asked (the error).
    Unreachable(String, String),
}

impl Gap {
    fn name(&self) -> &str {
        match self {
            Gap::Missing(n)
            | Gap::NotEstablished(n, _)
            | Gap::VersionNotServed(n)
            | Gap::NotListable(n, _)
            | Gap::Unreachable(n, _) => n,
        }
    }
}

/// Judges one CRD as read from the API server (`None`: it does not exist).
pub fn judge(name: &str, crd: Option<&CustomResourceDefinition>) -> Option<Gap> {
    let Some(crd) = crd else {
        return Some(Gap::Missing(name.to_owned()));
    };
    let established = crd
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Established"));
    match established {
        Some(c) if c.status == "True" => {}
        Some(c) => {
            let why = c.reason.clone().unwrap_or_else(|| c.status.clone());
            return Some(Gap::NotEstablished(name.to_owned(), why));
        }
        None => {
            return Some(Gap::NotEstablished(
                name.to_owned(),
                "no Established condition yet".to_owned(),
            ));
        }
    }
    let served = crd
        .spec
        .versions
        .iter()
        .any(|v| v.name == verity_crds::VERSION && v.served);
    (!served).then(|| Gap::VersionNotServed(name.to_owned()))
}

/// One line for the log: which CRDs are missing, which are not Established, and so on.
pub fn describe(gaps: &[Gap]) -> String {
    let mut parts = Vec::new();
    let group = |label: &str, pick: &dyn Fn(&Gap) -> Option<String>| {
        let names: Vec<String> = gaps.iter().filter_map(pick).collect();
        (!names.is_empty()).then(|| format!("{label}: {}", names.join(", ")))
    };
    parts.extend(group("missing", &|g| {
        matches!(g, Gap::Missing(_)).then(|| g.name().to_owned())
    }));
    parts.extend(group("not Established", &|g| match g {
        Gap::NotEstablished(n, why) => Some(format!("{n} ({why})")),
        _ => None,
    }));
    parts.extend(group(
        &format!("not serving {}", verity_crds::VERSION),
        &|g| matches!(g, Gap::VersionNotServed(_)).then(|| g.name().to_owned()),
    ));
    parts.extend(group("not listable", &|g| match g {
        Gap::NotListable(n, e) => Some(format!("{n} ({e})")),
        _ => None,
    }));
    parts.extend(group("cannot ask the API server", &|g| match g {
        Gap::Unreachable(n, e) => Some(format!("{n} ({e})")),
        _ => None,
    }));
    parts.join("; ")
}

/// The wait before check number `attempt` + 1: `first` doubling up to `cap`.
pub fn delay(attempt: u32, first: Duration, cap: Duration) -> Duration {
    first.saturating_mul(1u32 << attempt.min(16)).min(cap)
}

async fn listable<K>(client: &Client) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Api::<K>::all(client.clone())
        .list_metadata(&ListParams::default().limit(1))
        .await
        .map(|_| ())
}

/// Reads the required CRDs and returns what keeps the operator from using them (empty: ready).
/// When every CRD is Established, each kind is also listed once, so that a CRD the API server
/// does not serve yet, or a kind the operator may not list, is waited for too.
pub async fn check(client: &Client) -> Vec<Gap> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut gaps = Vec::new();
    for name in REQUIRED {
        match api.get_opt(name).await {
            Ok(crd) => gaps.extend(judge(name, crd.as_ref())),
            Err(e) => gaps.push(Gap::Unreachable(name.to_owned(), e.to_string())),
        }
    }
    if !gaps.is_empty() {
        return gaps;
    }
    let lists = [
        (REQUIRED[0], listable::<Organization>(client).await),
        (REQUIRED[1], listable::<Workspace>(client).await),
        (REQUIRED[2], listable::<LabelingProject>(client).await),
    ];
    for (name, result) in lists {
        if let Err(e) = result {
            gaps.push(Gap::NotListable(name.to_owned(), e.to_string()));
        }
    }
    gaps
}

/// Checks until every required CRD is usable, waiting `first` doubling up to `cap` between
/// checks and logging what it waits for. Returns the number of checks made.
pub async fn wait(client: &Client, first: Duration, cap: Duration) -> u32 {
    let mut attempt = 0u32;
    loop {
        let gaps = check(client).await;
        attempt = attempt.saturating_add(1);
        if gaps.is_empty() {
            if attempt > 1 {
                info!(checks = attempt, "the CRDs are Established and served");
            }
            return attempt;
        }
        let next = delay(attempt - 1, first, cap);
        warn!(
            waiting_for = %describe(&gaps),
            retry_in = ?next,
            "waiting for the operator's CRDs (install them: kubectl apply --server-side -f config/crd/)"
        );
        tokio::time::sleep(next).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn crd(name: &str, established: Option<&str>, served: bool) -> CustomResourceDefinition {
        let mut v = json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {"group": "verity.dev", "scope": "Namespaced",
                     "names": {"plural": "x", "kind": "X"},
                     "versions": [{"name": "v1alpha1", "served": served, "storage": true}]},
        });
        if let Some(s) = established {
            v["status"] = json!({"conditions": [
                {"type": "NamesAccepted", "status": "True"},
                {"type": "Established", "status": s, "reason": "Installing"}]});
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn judges_missing_unestablished_and_unserved_crds() {
        let n = REQUIRED[0];
        assert_eq!(judge(n, None), Some(Gap::Missing(n.into())));
        assert_eq!(
            judge(n, Some(&crd(n, None, true))),
            Some(Gap::NotEstablished(
                n.into(),
                "no Established condition yet".into()
            ))
        );
        assert_eq!(
            judge(n, Some(&crd(n, Some("False"), true))),
            Some(Gap::NotEstablished(n.into(), "Installing".into()))
        );
        assert_eq!(
            judge(n, Some(&crd(n, Some("True"), false))),
            Some(Gap::VersionNotServed(n.into()))
        );
        assert_eq!(judge(n, Some(&crd(n, Some("True"), true))), None);
    }

    #[test]
    fn the_log_line_names_every_crd_and_why() {
        let line = describe(&[
            Gap::Missing("organizations.verity.dev".into()),
            Gap::Missing("workspaces.verity.dev".into()),
            Gap::NotEstablished("labelingprojects.verity.dev".into(), "Installing".into()),
        ]);
        assert_eq!(
            line,
            "missing: organizations.verity.dev, workspaces.verity.dev; not Established: labelingprojects.verity.dev (Installing)"
        );
    }

    #[test]
    fn backoff_doubles_and_is_bounded() {
        let s = Duration::from_secs;
        let seq: Vec<u64> = (0..8).map(|a| delay(a, s(1), s(30)).as_secs()).collect();
        assert_eq!(seq, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(delay(u32::MAX, s(1), s(30)), s(30));
    }

    /// A fake API server on which the CRDs appear in stages: absent, then present but not
    /// Established, then Established (and their kinds listable).
    fn staged_client(stage: std::sync::Arc<std::sync::atomic::AtomicU32>) -> Client {
        use http::{Request, Response};
        use kube::client::Body;
        use std::sync::atomic::Ordering;
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let path = req.uri().path().to_owned();
                let now = stage.load(Ordering::SeqCst);
                let not_found = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "NotFound", "code": 404, "metadata": {}, "message": "not found"});
                let (code, body): (u16, Value) = if let Some(name) =
                    path.strip_prefix("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/")
                {
                    match now {
                        0 => (404, not_found),
                        1 => (
                            200,
                            serde_json::to_value(crd(name, Some("False"), true)).unwrap(),
                        ),
                        _ => (
                            200,
                            serde_json::to_value(crd(name, Some("True"), true)).unwrap(),
                        ),
                    }
                } else if path.starts_with("/apis/verity.dev/v1alpha1/") && now >= 2 {
                    (
                        200,
                        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                                 "metadata": {}, "items": []}),
                    )
                } else {
                    (404, not_found)
                };
                let response = Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap();
                send.send_response(response);
            }
        });
        Client::new(service, "default")
    }

    #[tokio::test]
    async fn waits_until_the_crds_are_established_then_returns() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU32, Ordering};
        let stage = Arc::new(AtomicU32::new(0));
        let client = staged_client(stage.clone());
        let gaps = check(&client).await;
        assert_eq!(
            gaps,
            REQUIRED
                .iter()
                .map(|n| Gap::Missing((*n).into()))
                .collect::<Vec<_>>()
        );
        stage.store(1, Ordering::SeqCst);
        assert!(
            check(&client)
                .await
                .iter()
                .all(|g| matches!(g, Gap::NotEstablished(_, why) if why == "Installing"))
        );
        // The wait goes on while nothing changes, and ends once the CRDs are Established.
        stage.store(0, Ordering::SeqCst);
        let waiter = tokio::spawn({
            let client = client.clone();
            async move { wait(&client, Duration::from_millis(5), Duration::from_millis(20)).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiter.is_finished(), "returned while the CRDs are missing");
        stage.store(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(!waiter.is_finished(), "returned before Established");
        stage.store(2, Ordering::SeqCst);
        let checks = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the wait ended")
            .unwrap();
        assert!(checks > 3, "{checks} checks");
        assert!(check(&client).await.is_empty());
    }
}
