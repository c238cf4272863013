//! The Organization controller: dereference (namespace ownership, existing secret material) →
//! build (pure) → apply and prune → status. Children are watched metadata-only by label, so a
//! deleted or edited child triggers a reconcile that restores it.

pub mod build;
pub mod certs;
pub mod namespace;
pub mod status;

#[cfg(test)]
mod build_tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};
use verity_crds::conditions::{self, Verdict};
use verity_crds::{Organization, OrganizationStatus};

use crate::Context;
use crate::error::Error;
use crate::resources;

/// The controller name in metrics and events.
pub const CONTROLLER: &str = "organization";

/// Reconciles one Organization; on failure records `Ready=False` with the error's category.
pub async fn reconcile(org: Arc<Organization>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&org, &ctx).await;
    let category = result.as_ref().err().map(Error::category);
    ctx.metrics
        .reconciled(CONTROLLER, started.elapsed().as_secs_f64(), category);
    match result {
        Ok(action) => {
            ctx.backoff.reset(&crate::backoff_key(org.as_ref()));
            Ok(action)
        }
        Err(e) => {
            let verdict = Verdict::progressing(e.category(), format!("{e}; retrying with backoff"));
            if let Err(status_err) = write_status(&org, &ctx, &verdict, None).await {
                warn!(organization = %org.name_any(), error = %status_err, "could not record the failure in status");
            }
            Err(e)
        }
    }
}

/// Whether the tenant namespace holds the Secret `name` (one that the Organization names and
/// the operator does not make).
async fn secret_exists(secrets: &Api<Secret>, name: &str) -> Result<bool, Error> {
    Ok(secrets
        .get_metadata_opt(name)
        .await
        .map_err(|e| Error::kube_on("get", "Secret", name, e))?
        .is_some())
}

async fn reconcile_inner(org: &Organization, ctx: &Context) -> Result<Action, Error> {
    let name = org.name_any();
    let ns = org.spec.namespace.as_str();
    let client = &ctx.client;

    // Dereference: the namespace must be ours, offered to us, or not exist yet.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut existing_ns = namespaces
        .get_opt(ns)
        .await
        .map_err(|e| Error::kube_on("get", "Namespace", ns, e))?;
    match namespace::ownership(
        ns,
        existing_ns.as_ref().map(|n| n.labels()),
        &name,
        &ctx.operator_namespace,
    ) {
        namespace::Ownership::Refused { reason, message } => {
            let v = Verdict::stalled(reason, message);
            write_status(org, ctx, &v, None).await?;
            return Ok(Action::requeue(Duration::from_secs(300)));
        }
        namespace::Ownership::Absent => {
            // Created (not applied): if someone else creates it first, the create fails and
            // the next reconcile judges their namespace like any other.
            existing_ns = Some(create_namespace(ctx, ns, &name).await?);
        }
        namespace::Ownership::Ours => {}
        namespace::Ownership::Adopt => {
            info!(organization = %name, namespace = %ns, "adopting a namespace offered with {}", namespace::ADOPT_LABEL);
            publish(
                ctx,
                org,
                EventType::Normal,
                "NamespaceAdopted",
                &format!(
                    "adopted namespace {ns} (labelled {}={name})",
                    namespace::ADOPT_LABEL
                ),
            )
            .await;
        }
    }
    if let Some(n) = &existing_ns
        && n.metadata.deletion_timestamp.is_some()
    {
        let v = Verdict::progressing(
            status::reason::NAMESPACE_TERMINATING,
            format!("namespace {ns} is being deleted; it will be re-created when it is gone"),
        );
        write_status(org, ctx, &v, None).await?;
        return Ok(Action::requeue(Duration::from_secs(5)));
    }

    // Existing secret material (reused until due for renewal).
    let mut existing = BTreeMap::new();
    let mut db_secret_present = false;
    let mut ca_secret_present = true;
    let mut aws_secret_present = true;
    if existing_ns.is_some() {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        let listed = secrets
            .list(&ListParams::default().labels(&build::selector(&name)))
            .await
            .map_err(|e| Error::kube_on("list", "Secret", ns, e))?;
        for s in listed.items {
            let data = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                .collect();
            let not_after = s
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(certs::NOT_AFTER_ANNOTATION))
                .cloned();
            existing.insert(
                s.metadata.name.unwrap_or_default(),
                certs::ExistingSecret { data, not_after },
            );
        }
        let db = &org.spec.database.secret_ref;
        db_secret_present = secret_exists(&secrets, &db.name).await?;
        if let Some(ca) = &org.spec.database.ca_secret_ref {
            ca_secret_present = secret_exists(&secrets, &ca.name).await?;
        }
        if let Some(aws) = &org.spec.storage.aws_credentials_secret_ref {
            aws_secret_present = secret_exists(&secrets, &aws.name).await?;
        }
    }
    let policy = certs::Policy {
        validity_days: i64::from(org.spec.redis.certificate_validity_days),
        renew_before_days: i64::from(org.spec.redis.renew_before_days),
    };
    let (material, issued) = certs::material(
        &name,
        ns,
        &existing,
        policy,
        time::OffsetDateTime::now_utc(),
    )?;
    if issued && !existing.is_empty() {
        info!(organization = %name, "issued new Redis certificates; Redis, app and workers roll");
        publish(
            ctx,
            org,
            EventType::Normal,
            "CertificatesIssued",
            "issued new Redis server and client certificates",
        )
        .await;
    }

    let desired = build::build(org, &material, &ctx.operator_namespace);
    let outcome =
        resources::reconcile_set(client, &ctx.metrics, ns, &build::selector(&name), &desired)
            .await?;
    if !outcome.applied.is_empty() || !outcome.pruned.is_empty() {
        info!(organization = %name, applied = ?outcome.applied, pruned = ?outcome.pruned, "reconciled children");
    }
    if !outcome.pruned.is_empty() {
        publish(
            ctx,
            org,
            EventType::Normal,
            "Pruned",
            &format!(
                "deleted objects no longer desired: {}",
                outcome.pruned.join(", ")
            ),
        )
        .await;
    }

    ctx.autoscale.set(
        &name,
        crate::autoscale::autoscaled(org)
            .then(|| crate::autoscale::endpoint(ns, &material, ctx.redis_addr.as_deref())),
    );

    let db = &org.spec.database.secret_ref;
    let ca = org.spec.database.ca_secret_ref.as_ref();
    let aws = org.spec.storage.aws_credentials_secret_ref.as_ref();
    let missing = if !db_secret_present {
        Some(status::MissingSecret {
            reason: status::reason::DATABASE_SECRET_MISSING,
            name: &db.name,
            keys: vec![&db.key],
            what: "the PostgreSQL DSN",
        })
    } else if let Some(ca) = ca.filter(|_| !ca_secret_present) {
        Some(status::MissingSecret {
            reason: status::reason::DATABASE_SECRET_MISSING,
            name: &ca.name,
            keys: vec![&ca.key],
            what: "the CA certificates of spec.database.caSecretRef",
        })
    } else {
        aws.filter(|_| !aws_secret_present)
            .map(|aws| status::MissingSecret {
                reason: status::reason::STORAGE_CREDENTIALS_SECRET_MISSING,
                name: &aws.name,
                keys: vec![&aws.access_key_id_key, &aws.secret_access_key_key],
                what: "the storages' base AWS identity of spec.storage.awsCredentialsSecretRef",
            })
    };
    let redis_claim = match outcome
        .live
        .get(&(resources::Kind::StatefulSet, "redis".to_owned()))
    {
        Some(sts) if !status::statefulset_ready(sts) => redis_claim_problem(ctx, ns).await,
        _ => None,
    };
    let (verdict, ready_workers) =
        status::evaluate(&outcome.live, missing.as_ref(), redis_claim.as_deref());
    let extra = Extra {
        ready_workers,
        not_after: material.not_after.clone(),
    };
    write_status(org, ctx, &verdict, Some(extra)).await?;

    Ok(if verdict.ready {
        Action::requeue(Duration::from_secs(300))
    } else {
        Action::requeue(Duration::from_secs(if verdict.stalled { 30 } else { 15 }))
    })
}

/// Why Redis's claim is unbound, if it is (see [`status::unbound_claim`]). Read only while the
/// StatefulSet is not ready; a failed read only loses the explanation, never the reconcile.
async fn redis_claim_problem(ctx: &Context, ns: &str) -> Option<String> {
    use k8s_openapi::api::core::v1::{Event as CoreEvent, PersistentVolumeClaim};
    use k8s_openapi::api::storage::v1::StorageClass;
    let client = &ctx.client;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let claim = match claims.get_opt(status::REDIS_CLAIM).await {
        Ok(Some(c)) => c,
        Ok(None) => return None,
        Err(e) => {
            warn!(namespace = %ns, error = %e, "could not read the Redis claim");
            return None;
        }
    };
    if claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound") {
        return None;
    }
    let classes = Api::<StorageClass>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(|e| warn!(error = %e, "could not list StorageClasses"))
        .ok();
    let events = Api::<CoreEvent>::namespaced(client.clone(), ns)
        .list(&ListParams::default().fields(&format!(
            "involvedObject.kind=PersistentVolumeClaim,involvedObject.name={}",
            status::REDIS_CLAIM
        )))
        .await
        .map(|l| l.items)
        .unwrap_or_else(|e| {
            warn!(namespace = %ns, error = %e, "could not list the Redis claim's events");
            Vec::new()
        });
    status::unbound_claim(&claim, classes.as_deref(), &events)
}

/// Creates the tenant namespace with the labels that mark it as this Organization's. The rest
/// (PodSecurity labels, owner reference) is applied with everything else.
async fn create_namespace(ctx: &Context, ns: &str, org: &str) -> Result<Namespace, Error> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let body = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(ns.to_owned()),
            labels: Some(build::base_labels(org)),
            ..kube::api::ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let pp = kube::api::PostParams {
        field_manager: Some(build::MANAGER.to_owned()),
        ..kube::api::PostParams::default()
    };
    let created = api
        .create(&pp, &body)
        .await
        .map_err(|e| Error::kube_on("create", "Namespace", ns, e))?;
    ctx.metrics.api_call("Namespace", "create");
    info!(organization = %org, namespace = %ns, "created the tenant namespace");
    Ok(created)
}

struct Extra {
    ready_workers: i32,
    not_after: String,
}

/// Writes status if (and only if) it differs from what is there, and publishes an Event when
/// the `Ready` condition changes.
async fn write_status(
    org: &Organization,
    ctx: &Context,
    verdict: &Verdict,
    extra: Option<Extra>,
) -> Result<(), Error> {
    let previous = org.status.clone().unwrap_or_default();
    let mut next = previous.clone();
    next.observed_generation = org.metadata.generation;
    next.conditions = conditions::merge(
        &previous.conditions,
        verdict,
        org.metadata.generation,
        Timestamp::now(),
    );
    ctx.readiness.set(
        &ctx.metrics,
        "Organization",
        &org.name_any(),
        Some(verdict.ready),
    );
    next.namespace = Some(org.spec.namespace.clone());
    next.control_plane_url = Some(build::control_plane_url(&org.spec.namespace));
    if let Some(x) = extra {
        next.ready_workers = Some(x.ready_workers);
        next.certificates_not_after = Some(x.not_after);
    }
    if next == previous {
        return Ok(());
    }
    // `workers` belongs to the autoscaler's field manager; leaving it out keeps it untouched.
    next.workers = Vec::new();
    let name = org.name_any();
    let api: Api<Organization> = Api::all(ctx.client.clone());
    let body = json!({
        "apiVersion": format!("{}/{}", verity_crds::GROUP, verity_crds::VERSION),
        "kind": "Organization",
        "status": OrganizationStatus { ..next.clone() },
    });
    api.patch_status(
        &name,
        &crate::resources::apply_params(build::MANAGER),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| Error::kube_on("patch-status", "Organization", &name, e))?;
    ctx.metrics.api_call("Organization", "patch-status");
    let was = conditions::find(&previous.conditions, conditions::ConditionType::Ready);
    let changed = was.is_none_or(|c| {
        c.reason != verdict.reason || c.status != if verdict.ready { "True" } else { "False" }
    });
    if changed {
        let type_ = if verdict.ready || !verdict.stalled {
            EventType::Normal
        } else {
            EventType::Warning
        };
        publish(ctx, org, type_, &verdict.reason, &verdict.message).await;
    }
    Ok(())
}

async fn publish(ctx: &Context, org: &Organization, type_: EventType, reason: &str, note: &str) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &org.object_ref(&())).await {
        warn!(organization = %org.name_any(), error = %e, "could not publish event");
    }
}
