//! Every object the builders produce, applied (server-side dry run) to a real API server with the
//! operator's own apply parameters: none may be refused by strict field validation, and none may
//! draw a warning (an unknown field, a PodSecurity violation, a deprecated API). And the other
//! way round: a misspelt field is refused, naming the field, and reported as `Invalid`.
//!
//! Needs a cluster with the CRDs installed: runs when `VERITY_OPERATOR_TEST_KUBECONFIG` names a
//! kubeconfig (e2e/operator/test sets it), and is skipped otherwise.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use time::OffsetDateTime;
use verity_crds::Organization;
use verity_operator::client::warning_text;
use verity_operator::error::Error;
use verity_operator::org::build::{self, MANAGER};
use verity_operator::org::certs::{self, Policy};
use verity_operator::resources::{Desired, Kind, apply_params};

type Warnings = Arc<Mutex<Vec<String>>>;

/// A client for the test's kubeconfig that records the API server's warnings.
async fn client() -> Option<(Client, Warnings)> {
    let path = std::env::var("VERITY_OPERATOR_TEST_KUBECONFIG").ok()?;
    let kubeconfig = Kubeconfig::read_from(&path).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    let warnings: Warnings = Arc::default();
    let seen = warnings.clone();
    let layer = tower::util::MapResponseLayer::new(move |r: http::Response<_>| {
        for v in r.headers().get_all(http::header::WARNING) {
            seen.lock()
                .expect("warnings")
                .push(warning_text(&String::from_utf8_lossy(v.as_bytes())));
        }
        r
    });
    let client = kube::client::ClientBuilder::try_from(config)
        .expect("client")
        .with_layer(&layer)
        .build();
    Some((client, warnings))
}

/// The sample Organization, pointed at `ns`, plus every optional part switched on.
fn organizations(ns: &str) -> Vec<Organization> {
    let sample = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config/samples/2-organization.yaml"),
    )
    .expect("sample");
    let mut orgs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&sample) {
        let v: Value = serde_yaml::with::singleton_map_recursive::deserialize(doc).expect("yaml");
        if v["kind"] == "Organization" {
            let mut v = v;
            v["spec"]["namespace"] = json!(ns);
            v["metadata"]["uid"] = json!("00000000-0000-0000-0000-000000000001");
            orgs.push(serde_json::from_value::<Organization>(v.clone()).expect("org"));
            // Everything optional: deletionPolicy Delete (owner references), app autoscaling
            // (HPA), a storage class, quota and resources, the storages' base identity, public
            // egress and storage endpoints.
            v["spec"]["deletionPolicy"] = json!("Delete");
            v["spec"]["storage"] = json!({"awsCredentialsSecretRef": {"name": "aws"},
                "awsStsEndpoint": "https://sts.example.test", "azureAuthorityHost": "https://login.example.test",
                "gcsWorkloadIdentity": {"gcpServiceAccount": "verity@acme.iam.gserviceaccount.com"}});
            v["spec"]["network"] = json!({"publicEgress": true,
                "storageEndpoints": [{"cidr": "192.0.2.0/24", "ports": [443]}]});
            v["spec"]["app"] = json!({"autoscaling": {"minReplicas": 2, "maxReplicas": 5}});
            v["spec"]["redis"] = json!({"storageClassName": "fast", "storage": "2Gi"});
            orgs.push(serde_json::from_value::<Organization>(v).expect("org with every option"));
        }
    }
    assert_eq!(orgs.len(), 2, "the sample holds one Organization");
    orgs
}

fn material(org: &str, ns: &str) -> build::Material {
    let policy = Policy {
        validity_days: 90,
        renew_before_days: 30,
    };
    certs::material(org, ns, &BTreeMap::new(), policy, OffsetDateTime::now_utc())
        .expect("certificates")
        .0
}

fn api(client: &Client, d: &Desired, ns: &str) -> Api<DynamicObject> {
    let ar = d.kind.api_resource();
    if d.kind == Kind::Namespace {
        Api::all_with(client.clone(), &ar)
    } else {
        Api::namespaced_with(client.clone(), ns, &ar)
    }
}

/// Creates a namespace for the dry runs (labelled `verity-test=strict-apply`).
async fn throwaway_namespace(client: &Client, test: &str) -> String {
    let name = format!("strict-apply-{test}-{}", std::process::id());
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(json!({"metadata": {"name": name,
        "labels": {"verity-test": "strict-apply"}}}))
    .expect("namespace");
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("create namespace {name}: {e}"),
    }
    name
}

async fn delete_namespace(client: &Client, name: &str) {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::background()).await;
}

#[tokio::test]
async fn every_built_object_passes_strict_validation_without_warnings() {
    let Some((client, warnings)) = client().await else {
        eprintln!("skipped: VERITY_OPERATOR_TEST_KUBECONFIG is not set");
        return;
    };
    let ns = throwaway_namespace(&client, "objects").await;
    let pp = apply_params(MANAGER).dry_run();
    let (mut applied, mut problems) = (0, Vec::new());
    for org in organizations(&ns) {
        let name = org.metadata.name.clone().unwrap_or_default();
        for d in build::build(&org, &material(&name, &ns), "verity-system") {
            let before = warnings.lock().unwrap().len();
            let what = format!("{} {}", d.kind.as_str(), d.name());
            match api(&client, &d, &ns)
                .patch(d.name(), &pp, &Patch::Apply(&d.body))
                .await
            {
                Ok(_) => applied += 1,
                Err(e) => problems.push(format!("{what} refused: {e}")),
            }
            let new: Vec<String> = warnings.lock().unwrap()[before..].to_vec();
            if !new.is_empty() {
                problems.push(format!("{what} drew warnings: {new:?}"));
            }
        }
    }
    delete_namespace(&client, &ns).await;
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(applied > 60, "only {applied} objects");
    eprintln!("{applied} objects applied (dry run, strict) without refusal or warning");
}

#[tokio::test]
async fn a_misspelt_field_is_refused() {
    let Some((client, warnings)) = client().await else {
        eprintln!("skipped: VERITY_OPERATOR_TEST_KUBECONFIG is not set");
        return;
    };
    let ns = throwaway_namespace(&client, "misspelt").await;
    let org = organizations(&ns).remove(0);
    let desired = build::build(&org, &material("acme", &ns), "verity-system");
    let mut app = desired
        .into_iter()
        .find(|d| d.kind == Kind::Deployment && d.name() == "app")
        .expect("the app Deployment");
    app.body["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
    let api = api(&client, &app, &ns);
    let strict = api
        .patch(
            "app",
            &apply_params(MANAGER).dry_run(),
            &Patch::Apply(&app.body),
        )
        .await;
    // Server-side apply refuses it without strict validation too: its typed patch fails on a
    // field the schema does not declare (the API server answers 500; still reported as Invalid).
    let lenient = kube::api::PatchParams::apply(MANAGER).force().dry_run();
    let lenient = api.patch("app", &lenient, &Patch::Apply(&app.body)).await;
    delete_namespace(&client, &ns).await;
    match strict {
        Err(kube::Error::Api(s)) => {
            assert!(
                s.message.contains("imagePullPolicyy"),
                "the error names the field: {}",
                s.message
            );
            let e = Error::kube("apply", Kind::Deployment, "app", kube::Error::Api(s));
            assert_eq!(e.category(), "Invalid", "{e}");
        }
        other => panic!("a misspelt field was accepted: {other:?}"),
    }
    match lenient {
        Err(e @ kube::Error::Api(_)) => {
            let category = Error::kube("apply", Kind::Deployment, "app", e).category();
            assert_eq!(category, "Invalid");
        }
        other => panic!("accepted without strict validation: {other:?}"),
    }
    assert!(
        warnings.lock().unwrap().is_empty(),
        "{:?}",
        warnings.lock().unwrap()
    );
}
