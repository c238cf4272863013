//! The "cluster resources" set: applies the objects a reconcile wants, with server-side apply
//! under one field manager, skips objects that already match, and deletes labelled objects the
//! reconcile no longer produces. This is the only module that writes children to the API.
//!
//! "Already matches" means two things: the live object carries the hash of exactly the body the
//! operator would apply now ([`APPLIED_ANNOTATION`]), and every field of that body has the same
//! value in the live object (fields added by defaulting or by other managers are ignored). The
//! hash is what makes removals reach live objects: a field, label or owner reference the
//! builders stop setting changes the hash, so the body is applied again, and server-side apply
//! removes what this field manager owned and no longer sends. The value comparison is what
//! restores a child someone edited. A reconcile with nothing to change makes no write call.

use std::collections::{BTreeMap, BTreeSet};

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::metrics::Metrics;

/// Annotation holding the hash of the last body the operator applied to an object.
pub const APPLIED_ANNOTATION: &str = "verity.dev/applied-hash";

/// The kinds the operator creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// core/v1 Namespace (cluster-scoped).
    Namespace,
    /// core/v1 ResourceQuota.
    ResourceQuota,
    /// core/v1 LimitRange.
    LimitRange,
    /// networking.k8s.io/v1 NetworkPolicy.
    NetworkPolicy,
    /// core/v1 ServiceAccount.
    ServiceAccount,
    /// core/v1 Secret (never pruned: generated secrets outlive spec changes).
    Secret,
    /// core/v1 ConfigMap.
    ConfigMap,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// core/v1 Service.
    Service,
    /// apps/v1 Deployment.
    Deployment,
    /// policy/v1 PodDisruptionBudget.
    PodDisruptionBudget,
    /// autoscaling/v2 HorizontalPodAutoscaler.
    HorizontalPodAutoscaler,
}

impl Kind {
    /// Every namespaced kind, in apply order.
    pub const NAMESPACED: [Kind; 11] = [
        Kind::ResourceQuota,
        Kind::LimitRange,
        Kind::NetworkPolicy,
        Kind::ServiceAccount,
        Kind::Secret,
        Kind::ConfigMap,
        Kind::StatefulSet,
        Kind::Service,
        Kind::Deployment,
        Kind::PodDisruptionBudget,
        Kind::HorizontalPodAutoscaler,
    ];

    /// The API resource of the kind.
    pub fn api_resource(self) -> ApiResource {
        let (group, version, kind, plural) = match self {
            Kind::Namespace => ("", "v1", "Namespace", "namespaces"),
            Kind::ResourceQuota => ("", "v1", "ResourceQuota", "resourcequotas"),
            Kind::LimitRange => ("", "v1", "LimitRange", "limitranges"),
            Kind::NetworkPolicy => (
                "networking.k8s.io",
                "v1",
                "NetworkPolicy",
                "networkpolicies",
            ),
            Kind::ServiceAccount => ("", "v1", "ServiceAccount", "serviceaccounts"),
            Kind::Secret => ("", "v1", "Secret", "secrets"),
            Kind::ConfigMap => ("", "v1", "ConfigMap", "configmaps"),
            Kind::StatefulSet => ("apps", "v1", "StatefulSet", "statefulsets"),
            Kind::Service => ("", "v1", "Service", "services"),
            Kind::Deployment => ("apps", "v1", "Deployment", "deployments"),
            Kind::PodDisruptionBudget => (
                "policy",
                "v1",
                "PodDisruptionBudget",
                "poddisruptionbudgets",
            ),
            Kind::HorizontalPodAutoscaler => (
                "autoscaling",
                "v2",
                "HorizontalPodAutoscaler",
                "horizontalpodautoscalers",
            ),
        };
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
    }

    /// The kind's name, for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::ResourceQuota => "ResourceQuota",
            Kind::LimitRange => "LimitRange",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::ServiceAccount => "ServiceAccount",
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
            Kind::StatefulSet => "StatefulSet",
            Kind::Service => "Service",
            Kind::Deployment => "Deployment",
            Kind::PodDisruptionBudget => "PodDisruptionBudget",
            Kind::HorizontalPodAutoscaler => "HorizontalPodAutoscaler",
        }
    }

    /// Whether orphans of this kind are deleted. Secrets are not: they hold generated material
    /// (and, under `Retain`, data that must outlive the Organization).
    pub fn pruned(self) -> bool {
        !matches!(self, Kind::Secret | Kind::Namespace)
    }
}

/// One object a reconcile wants to exist: a complete server-side-apply body.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// Its kind.
    pub kind: Kind,
    /// The apply body (`apiVersion`, `kind`, `metadata.name`, …).
    pub body: Value,
}

impl Desired {
    /// Wraps an apply body and stamps it with its own hash ([`APPLIED_ANNOTATION`]).
    pub fn new(kind: Kind, mut body: Value) -> Self {
        if let Some(a) = body
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
        {
            a.remove(APPLIED_ANNOTATION);
        }
        let hash = body_hash(&body);
        if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            let annotations = meta
                .entry("annotations")
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            if let Some(a) = annotations.as_object_mut() {
                a.insert(APPLIED_ANNOTATION.to_owned(), Value::String(hash));
            }
        }
        Self { kind, body }
    }
    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.body["metadata"]["name"].as_str().unwrap_or_default()
    }
}

/// The hash of an apply body (JSON objects serialise with sorted keys, so equal bodies hash
/// equally).
fn body_hash(body: &Value) -> String {
    let digest = Sha256::digest(body.to_string().as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether every field of `want` has the same value in `have`. Objects compare key by key
/// (extra keys in `have` are fine); arrays must have the same length and match element-wise.
pub fn is_subset(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w.iter().all(|(k, wv)| match h.get(k) {
            Some(hv) => is_subset(wv, hv),
            // An empty object or list we set may be omitted by the server.
            None => {
                matches!(wv, Value::Object(o) if o.is_empty())
                    || matches!(wv, Value::Array(a) if a.is_empty())
            }
        }),
        (Value::Array(w), Value::Array(h)) => {
            w.len() == h.len() && w.iter().zip(h).all(|(a, b)| is_subset(a, b))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => want == have,
    }
}

/// Whether a live object was last applied from this very body (same [`APPLIED_ANNOTATION`])
/// and still has everything the body sets. `apiVersion` and `kind` are not compared: list
/// responses leave them out of their items.
pub fn matches(body: &Value, live: &Value) -> bool {
    let hash = |v: &Value| {
        v.pointer("/metadata/annotations")
            .and_then(|a| a.get(APPLIED_ANNOTATION))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    if hash(body).is_none() || hash(body) != hash(live) {
        return false;
    }
    match body.as_object() {
        Some(b) => b
            .iter()
            .filter(|(k, _)| *k != "apiVersion" && *k != "kind")
            .all(|(k, v)| is_subset(v, &live[k.as_str()])),
        None => false,
    }
}

/// The parameters of every server-side apply by `manager`: forced (the operator owns the fields
/// it sets) and with strict field validation, so that a field the API server does not know (a
/// misspelt or misplaced one in a builder) fails the apply instead of being dropped with a
/// warning.
pub fn apply_params(manager: &str) -> PatchParams {
    PatchParams::apply(manager).force().validation_strict()
}

/// What one apply pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Objects created or changed.
    pub applied: Vec<String>,
    /// Objects deleted as no longer desired.
    pub pruned: Vec<String>,
    /// The live objects after the pass, by kind and name (for status).
    pub live: BTreeMap<(Kind, String), Value>,
}

/// Applies `desired` into `namespace` (plus the cluster-scoped Namespace object) and prunes the
/// objects matching `selector` that are not desired.
pub async fn reconcile_set(
    client: &Client,
    metrics: &Metrics,
    namespace: &str,
    selector: &str,
    desired: &[Desired],
) -> Result<Outcome, Error> {
    let pp = apply_params(crate::org::build::MANAGER);
    let mut out = Outcome::default();
    // The Namespace first: everything else lives in it.
    for d in desired.iter().filter(|d| d.kind == Kind::Namespace) {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &d.kind.api_resource());
        let live = api
            .get_opt(d.name())
            .await
            .map_err(|e| Error::kube("get", d.kind, d.name(), e))?;
        let live = live.map(|o| serde_json::to_value(o).unwrap_or_default());
        let obj = apply_if_needed(&api, metrics, &pp, d, live.as_ref(), &mut out).await?;
        out.live.insert((d.kind, d.name().to_owned()), obj);
    }
    for kind in Kind::NAMESPACED {
        let ar = kind.api_resource();
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
        let listed = api
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| Error::kube("list", kind, namespace, e))?;
        metrics.api_call(kind.as_str(), "list");
        let mut live: BTreeMap<String, Value> = listed
            .items
            .into_iter()
            .map(|o| (o.name_any(), serde_json::to_value(o).unwrap_or_default()))
            .collect();
        let mut wanted = BTreeSet::new();
        for d in desired.iter().filter(|d| d.kind == kind) {
            wanted.insert(d.name().to_owned());
            let obj = apply_if_needed(&api, metrics, &pp, d, live.get(d.name()), &mut out).await?;
            out.live.insert((kind, d.name().to_owned()), obj);
        }
        if kind.pruned() {
            live.retain(|name, _| !wanted.contains(name));
            for name in live.keys() {
                match api.delete(name, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(Error::kube("delete", kind, name, e)),
                }
                metrics.api_call(kind.as_str(), "delete");
                out.pruned.push(format!("{}/{name}", kind.as_str()));
            }
        }
    }
    Ok(out)
}

async fn apply_if_needed(
    api: &Api<DynamicObject>,
    metrics: &Metrics,
    pp: &PatchParams,
    d: &Desired,
    live: Option<&Value>,
    out: &mut Outcome,
) -> Result<Value, Error> {
    if let Some(live) = live
        && matches(&d.body, live)
    {
        return Ok(live.clone());
    }
    let applied = api
        .patch(d.name(), pp, &Patch::Apply(&d.body))
        .await
        .map_err(|e| Error::kube("apply", d.kind, d.name(), e))?;
    metrics.api_call(d.kind.as_str(), "apply");
    out.applied
        .push(format!("{}/{}", d.kind.as_str(), d.name()));
    Ok(serde_json::to_value(applied).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn applies_are_forced_and_strict() {
        let pp = apply_params("m");
        assert!(pp.force);
        assert_eq!(pp.field_manager.as_deref(), Some("m"));
        assert!(matches!(
            pp.field_validation,
            Some(kube::api::ValidationDirective::Strict)
        ));
    }

    #[test]
    fn subset_ignores_defaults_but_sees_edits() {
        let want = json!({"spec": {"replicas": 2, "template": {"containers": [{"name": "a", "ports": [{"containerPort": 80}]}]}}});
        let live = json!({"spec": {"replicas": 2, "progressDeadlineSeconds": 600,
            "template": {"containers": [{"name": "a", "terminationMessagePath": "/dev/x", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}});
        assert!(is_subset(&want, &live));
        let edited = json!({"spec": {"replicas": 3, "template": {"containers": [{"name": "a", "ports": [{"containerPort": 80}]}]}}});
        assert!(!is_subset(&want, &edited));
        let extra_container = json!({"spec": {"replicas": 2, "template": {"containers": [{"name": "a", "ports": [{"containerPort": 80}]}, {"name": "b"}]}}});
        assert!(
            !is_subset(&want, &extra_container),
            "a list we own must match in length"
        );
        assert!(
            !is_subset(&json!({"a": 1}), &json!({})),
            "a missing field is a difference"
        );
        assert!(
            is_subset(&json!({"a": {}}), &json!({})),
            "an empty object may be dropped by the server"
        );
    }

    #[test]
    fn a_dropped_field_is_a_difference() {
        // Live: applied from a body with an owner reference (deletionPolicy: Delete).
        let with_owner = Desired::new(
            Kind::Namespace,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t",
                "labels": {"a": "1"}, "ownerReferences": [{"uid": "u1", "name": "org"}]}}),
        );
        let mut live = with_owner.body.clone();
        live["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!("t");
        assert!(matches(&with_owner.body, &live), "unchanged body matches");
        // Desired now: no owner reference (deletionPolicy: Retain). Every key of the new body is
        // still present in the live object, so only the hash can tell them apart.
        let without_owner = Desired::new(
            Kind::Namespace,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t", "labels": {"a": "1"}}}),
        );
        let mut unstamped = without_owner.body.clone();
        unstamped["metadata"]
            .as_object_mut()
            .map(|m| m.remove("annotations"));
        assert!(is_subset(&unstamped["metadata"], &live["metadata"]));
        assert!(
            !matches(&without_owner.body, &live),
            "dropping the owner reference must be applied"
        );
        // A dropped label likewise.
        let fewer_labels = Desired::new(
            Kind::Namespace,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t", "labels": {},
                "ownerReferences": [{"uid": "u1", "name": "org"}]}}),
        );
        assert!(!matches(&fewer_labels.body, &live));
        // An object applied by an older operator (no hash) is applied once.
        let mut old = live.clone();
        old["metadata"]["annotations"] = json!({});
        assert!(!matches(&with_owner.body, &old));
    }

    #[test]
    fn the_hash_ignores_a_stale_hash_in_the_input() {
        let a = Desired::new(
            Kind::ConfigMap,
            json!({"metadata": {"name": "c", "annotations": {"x": "1"}}, "data": {"k": "v"}}),
        );
        let b = Desired::new(Kind::ConfigMap, a.body.clone());
        assert_eq!(a.body, b.body, "re-wrapping a stamped body changes nothing");
        let c = Desired::new(
            Kind::ConfigMap,
            json!({"metadata": {"name": "c", "annotations": {"x": "1"}}, "data": {"k": "w"}}),
        );
        assert_ne!(
            a.body["metadata"]["annotations"][APPLIED_ANNOTATION],
            c.body["metadata"]["annotations"][APPLIED_ANNOTATION]
        );
    }
}
