//! Wiring: configuration, telemetry, leader election, the three controllers and the HTTP
//! endpoints, all stopped by one shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use kube::Resource;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tracing::{info, warn};
use verity_crds::{LabelingProject, Organization, Workspace};

use crate::error::Error;
use crate::http::{self, Health};
use crate::lease::{self, LeaseConfig};
use crate::metrics::Metrics;
use crate::org::build::ORG_LABEL;
use crate::{Backoff, Context, org, sync};

/// Operator settings (parsed by `main` from flags and environment variables).
#[derive(Clone, Debug)]
pub struct Config {
    /// Address of `/metrics`, `/livez`, `/readyz`.
    pub http_addr: SocketAddr,
    /// Whether to run only while holding the Lease.
    pub leader_elect: bool,
    /// Namespace of the Lease.
    pub lease_namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// Identity in the Lease.
    pub identity: String,
    /// Overrides every Organization's control-plane URL (tests and development only).
    pub control_plane_url: Option<String>,
    /// Reconciles running at once per controller.
    pub concurrency: u16,
    /// Refresh interval of LabelingProject progress.
    pub progress_interval: Duration,
    /// How often the worker autoscaler reads the queues.
    pub queue_poll_interval: Duration,
    /// Overrides every Organization's Redis address (tests and development only).
    pub redis_addr: Option<String>,
    /// The operator's own namespace.
    pub operator_namespace: String,
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The controllers' error policy: exponential backoff per object, under the same key that a
/// successful reconcile resets ([`crate::backoff_key`]).
pub fn error_policy<K: Resource<DynamicType = ()>>(
    obj: Arc<K>,
    err: &Error,
    ctx: Arc<Context>,
) -> Action {
    let key = crate::backoff_key(obj.as_ref());
    let delay = ctx.backoff.next(&key);
    warn!(object = %key, error = %err, category = err.category(), retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

fn org_of<K: Resource>(obj: K) -> Option<ObjectRef<Organization>> {
    obj.meta()
        .labels
        .as_ref()?
        .get(ORG_LABEL)
        .map(|n| ObjectRef::new(n))
}

/// Runs until a shutdown signal (or, with leader election, until the lease is lost).
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let client = crate::client::from_env().await?;
    let metrics = Metrics::new()?;
    let ready = Arc::new(AtomicBool::new(false));
    let health = Health {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut http_stop = stop_rx.clone();
    let server = tokio::spawn(http::serve(cfg.http_addr, health, async move {
        let _ = http_stop.wait_for(|s| *s).await;
    }));

    // GitOps tools apply the CRDs and this Deployment together: wait for the CRDs (not ready
    // meanwhile, alive all along) instead of exiting.
    tokio::select! {
        _ = crate::crd_wait::wait(&client, Duration::from_secs(1), Duration::from_secs(30)) => {}
        _ = shutdown_signal() => {
            let _ = stop_tx.send(true);
            server.await??;
            return Ok(());
        }
    }

    let lease_cfg = LeaseConfig::new(
        cfg.lease_namespace.clone(),
        cfg.lease_name.clone(),
        cfg.identity.clone(),
    );
    lease_cfg.validate().map_err(anyhow::Error::msg)?;
    let mut lost_lease: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = if cfg
        .leader_elect
    {
        info!(lease = %lease_cfg.name, namespace = %lease_cfg.namespace, "waiting for the lease");
        ready.store(true, Ordering::Relaxed); // a standby is healthy
        tokio::select! {
            lost = lease::acquire(client.clone(), lease_cfg.clone()) => Box::pin(lost),
            _ = shutdown_signal() => { let _ = stop_tx.send(true); server.await??; return Ok(()); }
        }
    } else {
        Box::pin(std::future::pending())
    };

    let reporter = Reporter {
        controller: "verity-operator".into(),
        instance: Some(cfg.identity.clone()),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        metrics: metrics.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        backoff: Backoff::default(),
        http: crate::admin::AdminClient::http(),
        control_plane_url: cfg.control_plane_url.clone(),
        progress_interval: cfg.progress_interval,
        readiness: crate::Readiness::default(),
        operator_namespace: cfg.operator_namespace.clone(),
        redis_addr: cfg.redis_addr.clone(),
        autoscale: crate::autoscale::Registry::default(),
    });

    // Children are watched metadata-only and mapped back to their Organization by label: that
    // works for every child, including those without an owner reference (Retain policy).
    let managed = watcher::Config::default().labels(&format!(
        "app.kubernetes.io/managed-by={},{ORG_LABEL}",
        org::build::MANAGER
    ));
    let ccfg = controller::Config::default()
        .concurrency(cfg.concurrency)
        .debounce(Duration::from_millis(500));
    let mut stop_org = stop_rx.clone();
    let orgs_controller = Controller::new(
        Api::<Organization>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .watches(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        managed.clone(),
        org_of,
    )
    // A namespace offered for adoption (`verity.dev/adopt=<org>`) wakes that Organization, so
    // labelling a refused namespace takes effect at once.
    .watches(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        watcher::Config::default().labels(org::namespace::ADOPT_LABEL),
        |ns| {
            ns.metadata
                .labels
                .as_ref()?
                .get(org::namespace::ADOPT_LABEL)
                .map(|n| ObjectRef::new(n))
        },
    )
    .watches(
        Api::<PartialObjectMeta<Deployment>>::all(client.clone()),
        managed.clone(),
        org_of,
    )
    .watches(
        Api::<PartialObjectMeta<StatefulSet>>::all(client.clone()),
        managed.clone(),
        org_of,
    )
    .watches(
        Api::<PartialObjectMeta<Service>>::all(client.clone()),
        managed.clone(),
        org_of,
    )
    .watches(
        Api::<PartialObjectMeta<ConfigMap>>::all(client.clone()),
        managed.clone(),
        org_of,
    )
    .watches(
        Api::<PartialObjectMeta<Secret>>::all(client.clone()),
        managed.clone(),
        org_of,
    )
    .watches(
        Api::<PartialObjectMeta<ServiceAccount>>::all(client.clone()),
        managed.clone(),
        org_of,
    )
    .watches(
        Api::<PartialObjectMeta<k8s_openapi::api::networking::v1::NetworkPolicy>>::all(
            client.clone(),
        ),
        managed.clone(),
        org_of,
    )
    .watches(
        Api::<PartialObjectMeta<k8s_openapi::api::policy::v1::PodDisruptionBudget>>::all(
            client.clone(),
        ),
        managed.clone(),
        org_of,
    )
    .watches(
        Api::<PartialObjectMeta<k8s_openapi::api::core::v1::ResourceQuota>>::all(client.clone()),
        managed.clone(),
        org_of,
    )
    .watches(
        Api::<PartialObjectMeta<k8s_openapi::api::core::v1::LimitRange>>::all(client.clone()),
        managed.clone(),
        org_of,
    )
    .watches(
        Api::<PartialObjectMeta<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>>::all(
            client.clone(),
        ),
        managed,
        org_of,
    )
    .with_config(ccfg.clone());
    // Organizations have no finalizer, so a deleted one gets no last reconcile: forget it in
    // the objects gauge once the controller's cache no longer has it.
    let org_store = orgs_controller.store();
    let autoscaler = crate::autoscale::run(
        ctx.clone(),
        org_store.clone(),
        cfg.queue_poll_interval,
        stop_rx.clone(),
    );
    let mut stop_prune = stop_rx.clone();
    let prune_ctx = ctx.clone();
    let pruner = async move {
        // An empty cache before the first list would forget everything.
        tokio::select! {
            r = org_store.wait_until_ready() => if r.is_err() { return },
            _ = stop_prune.wait_for(|s| *s) => return,
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                _ = stop_prune.wait_for(|s| *s) => break,
            }
            let exists = |name: &str| {
                org_store
                    .get(&kube::runtime::reflector::ObjectRef::new(name))
                    .is_some()
            };
            prune_ctx
                .readiness
                .retain(&prune_ctx.metrics, "Organization", exists);
            prune_ctx.autoscale.retain(exists);
        }
    };
    let orgs = orgs_controller
        .graceful_shutdown_on(async move {
            let _ = stop_org.wait_for(|s| *s).await;
        })
        .run(org::reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    let mut stop_ws = stop_rx.clone();
    let workspaces = Controller::new(
        Api::<Workspace>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .with_config(ccfg.clone())
    .graceful_shutdown_on(async move {
        let _ = stop_ws.wait_for(|s| *s).await;
    })
    .run(sync::reconcile_workspace, error_policy, ctx.clone())
    .for_each(|_| async {});
    let mut stop_lp = stop_rx.clone();
    let projects = Controller::new(
        Api::<LabelingProject>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .with_config(ccfg)
    .graceful_shutdown_on(async move {
        let _ = stop_lp.wait_for(|s| *s).await;
    })
    .run(sync::reconcile_project, error_policy, ctx.clone())
    .for_each(|_| async {});
    ready.store(true, Ordering::Relaxed);
    info!("controllers running");

    let controllers = async { tokio::join!(orgs, workspaces, projects, pruner, autoscaler) };
    tokio::pin!(controllers);
    let lost = tokio::select! {
        // The lease first: a replica thawed after its renew deadline must stop before its
        // controllers get another turn.
        biased;
        _ = &mut lost_lease => true,
        _ = &mut controllers => false,
        _ = shutdown_signal() => false,
    };
    if lost {
        // No drain: once the renew deadline has passed, another replica may take the lease
        // soon, and nothing of this one may act after that. Returning drops every controller
        // (reconciles in flight are cancelled; they are idempotent) and the process exits.
        anyhow::bail!("lost the leader lease; exiting so that a fresh replica takes over");
    }
    // One signal fans out to every controller and the HTTP server; reconciles in flight finish.
    let _ = stop_tx.send(true);
    // The lease is still renewed while reconciles in flight finish: a drain longer than the
    // renew deadline must not let a standby take over while this replica still writes.
    tokio::select! {
        biased;
        _ = &mut lost_lease => {
            anyhow::bail!("lost the leader lease while draining; exiting so that a fresh replica takes over");
        }
        _ = tokio::time::timeout(Duration::from_secs(20), &mut controllers) => {}
    }
    if cfg.leader_elect {
        lease::release(client.clone(), &lease_cfg).await;
    }
    server.await??;
    info!("stopped");
    Ok(())
}
