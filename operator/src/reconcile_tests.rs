//! Reconciles driven against a scripted API server (`tower-test`), for the paths the e2e on a
//! real cluster cannot provoke on demand: API errors and their backoff, and the reset of that
//! backoff by a later success, through the same error policy the controllers run.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};
use verity_crds::{LabelingProject, Organization, Workspace};

use crate::error::Error;
use crate::{Backoff, Context, org, run};

/// How the fake API server answers `GET /api/v1/namespaces/<ns>`.
#[derive(Clone, Copy, Debug)]
enum NamespaceAnswer {
    /// 500 Internal Server Error.
    Fail,
    /// 403 Forbidden.
    Forbidden,
    /// A namespace that belongs to somebody else (refused without a write).
    Foreign,
}

/// One request the fake server saw: method, path and body.
type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

fn status_json(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("scripted {reason}"), "reason": reason, "code": code})
}

/// A client whose API server answers namespace reads from `script` (one entry per read), echoes
/// status patches and accepts Events; every request is recorded in the returned log.
fn scripted_client(script: Vec<NamespaceAnswer>) -> (Client, Seen) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        let mut script = script.into_iter();
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().to_string();
            let path = req.uri().path().to_owned();
            let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            log.lock()
                .unwrap()
                .push((method.clone(), path.clone(), body.clone()));
            let (code, reply) = if method == "GET" && path.starts_with("/api/v1/namespaces/") {
                match script.next() {
                    Some(NamespaceAnswer::Fail) => (500, status_json(500, "InternalError")),
                    Some(NamespaceAnswer::Forbidden) => (403, status_json(403, "Forbidden")),
                    Some(NamespaceAnswer::Foreign) | None => (
                        200,
                        json!({"apiVersion": "v1", "kind": "Namespace",
                               "metadata": {"name": "payments", "labels": {"team": "payments"}}}),
                    ),
                }
            } else if method == "PATCH" && path.ends_with("/status") {
                let mut obj = serde_json::to_value(organization().as_ref()).unwrap();
                obj["status"] = body["status"].clone();
                (200, obj)
            } else if method == "POST" && path.contains("/events") {
                (201, body.clone())
            } else {
                (404, status_json(404, "NotFound"))
            };
            let response = Response::builder()
                .status(StatusCode::from_u16(code).unwrap())
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap();
            send.send_response(response);
        }
    });
    (Client::new(service, "default"), seen)
}

fn context(client: Client) -> Arc<Context> {
    Arc::new(Context {
        client: client.clone(),
        metrics: crate::metrics::Metrics::new().unwrap(),
        recorder: Recorder::new(
            client,
            Reporter {
                controller: "test".into(),
                instance: None,
            },
        ),
        backoff: Backoff::default(),
        http: crate::admin::AdminClient::http(),
        control_plane_url: None,
        progress_interval: Duration::from_secs(60),
        readiness: crate::Readiness::default(),
        operator_namespace: "verity-system".into(),
        redis_addr: None,
        autoscale: crate::autoscale::Registry::default(),
    })
}

fn organization() -> Arc<Organization> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "verity.dev/v1alpha1", "kind": "Organization",
            "metadata": {"name": "acme", "generation": 1, "uid": "u-1"},
            "spec": {"namespace": "payments", "ownerEmail": "o@acme.test",
                     "database": {"secretRef": {"name": "db"}, "endpoint": {"cidr": "10.0.0.0/8", "ports": [5432]}}},
        }))
        .unwrap(),
    )
}

/// One turn of the controller: reconcile, and on failure the error policy's next delay.
async fn turn(org: &Arc<Organization>, ctx: &Arc<Context>) -> Result<Action, Action> {
    match org::reconcile(org.clone(), ctx.clone()).await {
        Ok(a) => Ok(a),
        Err(e) => Err(run::error_policy(org.clone(), &e, ctx.clone())),
    }
}

fn last_status_reason(seen: &Seen) -> Option<String> {
    seen.lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(m, p, _)| m == "PATCH" && p.ends_with("/status"))
        .and_then(|(_, _, b)| {
            b["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")
                .map(|c| c["reason"].as_str().unwrap_or_default().to_owned())
        })
}

#[tokio::test]
async fn backoff_grows_on_api_errors_and_a_success_resets_it() {
    use NamespaceAnswer::{Fail, Foreign};
    let (client, seen) = scripted_client(vec![Fail, Fail, Fail, Foreign, Fail]);
    let ctx = context(client);
    let org = organization();
    let secs = |s| Action::requeue(Duration::from_secs(s));
    assert_eq!(turn(&org, &ctx).await, Err(secs(2)));
    assert_eq!(
        last_status_reason(&seen).as_deref(),
        Some("KubernetesApiError"),
        "the failure is recorded in status"
    );
    assert_eq!(turn(&org, &ctx).await, Err(secs(4)));
    assert_eq!(turn(&org, &ctx).await, Err(secs(8)));
    // A successful reconcile (the namespace is refused: a verdict, not an error) resets it.
    assert_eq!(turn(&org, &ctx).await, Ok(secs(300)));
    assert_eq!(
        last_status_reason(&seen).as_deref(),
        Some("NamespaceNotOwned")
    );
    assert_eq!(
        turn(&org, &ctx).await,
        Err(secs(2)),
        "the success reset the backoff of this very object"
    );
    // The refusal wrote nothing but status and Events: no apply, no create.
    let writes: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(m, p, _)| m != "GET" && !p.ends_with("/status") && !p.contains("/events"))
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
}

#[tokio::test]
async fn forbidden_is_reported_as_such() {
    let (client, seen) = scripted_client(vec![NamespaceAnswer::Forbidden]);
    let ctx = context(client);
    let org = organization();
    let err = org::reconcile(org, ctx).await.unwrap_err();
    assert!(matches!(err, Error::Kube { .. }));
    assert_eq!(err.category(), "Forbidden");
    assert_eq!(last_status_reason(&seen).as_deref(), Some("Forbidden"));
}

#[tokio::test]
async fn kinds_of_the_same_name_back_off_separately() {
    let (client, _seen) = scripted_client(vec![]);
    let ctx = context(client);
    let err = || Error::Finalizer {
        message: "scripted".into(),
    };
    let meta = json!({"name": "cats", "namespace": "t", "generation": 1});
    let ws: Arc<Workspace> = Arc::new(
        serde_json::from_value(
            json!({"apiVersion": "verity.dev/v1alpha1", "kind": "Workspace",
            "metadata": meta, "spec": {"title": "Cats"}}),
        )
        .unwrap(),
    );
    let lp: Arc<LabelingProject> = Arc::new(
        serde_json::from_value(
            json!({"apiVersion": "verity.dev/v1alpha1", "kind": "LabelingProject",
            "metadata": meta, "spec": {"workspace": "w", "title": "Cats"}}),
        )
        .unwrap(),
    );
    let secs = |s| Action::requeue(Duration::from_secs(s));
    assert_eq!(run::error_policy(ws.clone(), &err(), ctx.clone()), secs(2));
    assert_eq!(run::error_policy(ws.clone(), &err(), ctx.clone()), secs(4));
    assert_eq!(
        run::error_policy(lp.clone(), &err(), ctx.clone()),
        secs(2),
        "a LabelingProject named like a Workspace has its own counter"
    );
    ctx.backoff.reset(&crate::backoff_key(ws.as_ref()));
    assert_eq!(run::error_policy(ws, &err(), ctx.clone()), secs(2));
    assert_eq!(run::error_policy(lp, &err(), ctx), secs(4));
}
