//! The Workspace and LabelingProject controllers: they upsert what the resources declare into
//! the organization's control plane through its admin API, archive it on deletion (the only
//! finalizers of the operator: the control-plane rows live outside Kubernetes), and read
//! project progress back into status, at most every `progress_interval`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use verity_crds::conditions::{self, Verdict};
use verity_crds::project::ProjectSettings;
use verity_crds::{
    LabelingProject, LabelingProjectStatus, Organization, Workspace, WorkspaceStatus,
};

use crate::Context;
use crate::admin::{AdminClient, OrganizationParams, ProjectParams, WorkspaceParams};
use crate::error::Error;
use crate::org::build::{
    ADMIN_TOKEN_KEY, APP_SECRET, MANAGER, ORG_LABEL, OWNER_SECRET, control_plane_url,
};

/// Finalizer that archives the workspace or project in the control plane.
pub const FINALIZER: &str = "verity.dev/archive";
/// How long a synced Workspace (or unchanged project spec) goes without a full re-sync.
const RESYNC: Duration = Duration::from_secs(600);

/// Reasons of the Ready condition of Workspaces and LabelingProjects.
pub mod reason {
    /// In sync with the control plane.
    pub const SYNCED: &str = "Synced";
    /// The namespace belongs to no Organization.
    pub const ORGANIZATION_NOT_FOUND: &str = "OrganizationNotFound";
    /// The organization's generated admin token is not there yet.
    pub const CONTROL_PLANE_NOT_READY: &str = "ControlPlaneNotReady";
    /// The project's Workspace does not exist or has not been synced yet.
    pub const WORKSPACE_NOT_READY: &str = "WorkspaceNotReady";
}

/// Where and how to reach an organization's control plane.
struct Target {
    org: Organization,
    client: AdminClient,
    /// From the Organization's `verity-owner` Secret, when it exists.
    owner_token: Option<String>,
}

enum Resolved {
    Found(Box<Target>),
    NotReady(Verdict),
}

async fn resolve(ctx: &Context, namespace: &str) -> Result<Resolved, Error> {
    let ns = Api::<Namespace>::all(ctx.client.clone())
        .get_opt(namespace)
        .await
        .map_err(|e| Error::kube_on("get", "Namespace", namespace, e))?;
    let org_name = ns.as_ref().and_then(|n| n.labels().get(ORG_LABEL).cloned());
    let org = match &org_name {
        Some(n) => Api::<Organization>::all(ctx.client.clone())
            .get_opt(n)
            .await
            .map_err(|e| Error::kube_on("get", "Organization", n, e))?,
        None => None,
    };
    let Some(org) = org.filter(|o| o.spec.namespace == namespace) else {
        return Ok(Resolved::NotReady(Verdict::stalled(
            reason::ORGANIZATION_NOT_FOUND,
            format!(
                "namespace {namespace} is not the namespace of any Organization; create the resource in its Organization's spec.namespace"
            ),
        )));
    };
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), namespace)
        .get_opt(APP_SECRET)
        .await
        .map_err(|e| Error::kube_on("get", "Secret", APP_SECRET, e))?;
    let token = secret.and_then(|s| s.data).and_then(|d| {
        d.get(ADMIN_TOKEN_KEY)
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
    });
    let Some(token) = token else {
        return Ok(Resolved::NotReady(Verdict::progressing(
            reason::CONTROL_PLANE_NOT_READY,
            format!(
                "Organization {} has not generated its admin token Secret yet",
                org.name_any()
            ),
        )));
    };
    let url = ctx
        .control_plane_url
        .clone()
        .unwrap_or_else(|| control_plane_url(namespace));
    let client = AdminClient::new(ctx.http.clone(), &url, &token);
    let owner_token = Api::<Secret>::namespaced(ctx.client.clone(), namespace)
        .get_opt(OWNER_SECRET)
        .await
        .map_err(|e| Error::kube_on("get", "Secret", OWNER_SECRET, e))?
        .and_then(|s| s.data)
        .and_then(|d| {
            d.get("token")
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        });
    Ok(Resolved::Found(Box::new(Target {
        org,
        client,
        owner_token,
    })))
}

async fn ensure_organization(t: &Target) -> Result<(), Error> {
    let name = t.org.name_any();
    let params = OrganizationParams {
        title: t.org.spec.title.clone().unwrap_or_else(|| name.clone()),
        owner_email: t.org.spec.owner_email.clone(),
        managed_by: format!("Organization/{name}"),
        owner_token: t.owner_token.clone(),
    };
    Ok(t.client.put_organization(&name, &params).await?)
}

fn seconds_since(rfc3339: Option<&String>) -> Option<u64> {
    let t: Timestamp = rfc3339?.parse().ok()?;
    u64::try_from(Timestamp::now().as_second() - t.as_second()).ok()
}

fn fresh(
    generation: Option<i64>,
    observed: Option<i64>,
    conds: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    last_sync: Option<&String>,
    within: Duration,
) -> Option<Duration> {
    if generation != observed || !conditions::is_ready(conds) {
        return None;
    }
    let age = seconds_since(last_sync)?;
    within
        .as_secs()
        .checked_sub(age)
        .filter(|left| *left > 0)
        .map(Duration::from_secs)
}

async fn patch_status<K>(
    ctx: &Context,
    obj: &K,
    kind: &'static str,
    status: Value,
) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let name = obj.name_any();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let body = json!({ "apiVersion": format!("{}/{}", verity_crds::GROUP, verity_crds::VERSION), "kind": kind, "status": status });
    api.patch_status(
        &name,
        &crate::resources::apply_params(MANAGER),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| Error::kube_on("patch-status", kind, &name, e))?;
    ctx.metrics.api_call(kind, "patch-status");
    Ok(())
}

fn finalizer_error(e: kube::runtime::finalizer::Error<Error>) -> Error {
    match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        kube::runtime::finalizer::Error::AddFinalizer(e)
        | kube::runtime::finalizer::Error::RemoveFinalizer(e) => {
            Error::kube_on("patch-finalizer", "CustomResource", "", e)
        }
        other => Error::Finalizer {
            message: other.to_string(),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Workspace

/// The controller name in metrics.
pub const WORKSPACE_CONTROLLER: &str = "workspace";

/// Reconciles one Workspace.
pub async fn reconcile_workspace(ws: Arc<Workspace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let ns = ws.namespace().unwrap_or_default();
    let api: Api<Workspace> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, ws.clone(), |event| async {
        match event {
            FinalizerEvent::Apply(ws) => apply_workspace(&ws, &ctx).await,
            FinalizerEvent::Cleanup(ws) => {
                archive(&ctx, &ws.namespace().unwrap_or_default(), |c, slug| {
                    let key = ws.key();
                    async move { c.delete_workspace(&slug, &key).await }
                })
                .await
            }
        }
    })
    .await
    .map_err(finalizer_error);
    finish(
        &ctx,
        WORKSPACE_CONTROLLER,
        &crate::backoff_key(ws.as_ref()),
        started,
        result,
        |v| {
            let ctx = ctx.clone();
            let ws = ws.clone();
            async move { workspace_status(&ctx, &ws, &v, None, None).await }
        },
    )
    .await
}

async fn finish<F, Fut>(
    ctx: &Context,
    controller: &str,
    key: &str,
    started: Instant,
    result: Result<Action, Error>,
    on_error: F,
) -> Result<Action, Error>
where
    F: FnOnce(Verdict) -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>>,
{
    ctx.metrics.reconciled(
        controller,
        started.elapsed().as_secs_f64(),
        result.as_ref().err().map(Error::category),
    );
    match result {
        Ok(a) => {
            ctx.backoff.reset(key);
            Ok(a)
        }
        Err(e) => {
            let terminal = matches!(&e, Error::ControlPlane(c) if c.is_terminal());
            let v = if terminal {
                Verdict::stalled(e.category(), e.to_string())
            } else {
                Verdict::progressing(e.category(), format!("{e}; retrying with backoff"))
            };
            if let Err(se) = on_error(v).await {
                tracing::warn!(%key, error = %se, "could not record the failure in status");
            }
            if terminal {
                // Retrying cannot help until the spec changes; the spec change triggers us.
                Ok(Action::await_change())
            } else {
                Err(e)
            }
        }
    }
}

async fn archive<F, Fut>(ctx: &Context, namespace: &str, call: F) -> Result<Action, Error>
where
    F: FnOnce(AdminClient, String) -> Fut,
    Fut: std::future::Future<Output = Result<(), crate::admin::ClientError>>,
{
    match resolve(ctx, namespace).await? {
        // The Organization (or its token) is gone: nothing left to archive in.
        Resolved::NotReady(_) => Ok(Action::await_change()),
        Resolved::Found(t) => {
            call(t.client.clone(), t.org.name_any()).await?;
            Ok(Action::await_change())
        }
    }
}

async fn apply_workspace(ws: &Workspace, ctx: &Context) -> Result<Action, Error> {
    let st = ws.status.clone().unwrap_or_default();
    if let Some(left) = fresh(
        ws.metadata.generation,
        st.observed_generation,
        &st.conditions,
        st.last_sync_time.as_ref(),
        RESYNC,
    ) {
        return Ok(Action::requeue(left));
    }
    let target = match resolve(ctx, &ws.namespace().unwrap_or_default()).await? {
        Resolved::NotReady(v) => {
            workspace_status(ctx, ws, &v, None, None).await?;
            return Ok(Action::requeue(Duration::from_secs(if v.stalled {
                60
            } else {
                10
            })));
        }
        Resolved::Found(t) => t,
    };
    ensure_organization(&target).await?;
    let params = WorkspaceParams {
        title: ws.spec.title.clone(),
        description: ws.spec.description.clone(),
        managed_by: format!(
            "Workspace/{}/{}",
            ws.namespace().unwrap_or_default(),
            ws.name_any()
        ),
    };
    let view = target
        .client
        .put_workspace(&target.org.name_any(), &ws.key(), &params)
        .await?;
    let v = Verdict::ready(
        reason::SYNCED,
        format!("workspace {} is in sync with the control plane", view.key),
    );
    workspace_status(
        ctx,
        ws,
        &v,
        Some(view.id),
        Some(Timestamp::now().to_string()),
    )
    .await?;
    Ok(Action::requeue(RESYNC))
}

async fn workspace_status(
    ctx: &Context,
    ws: &Workspace,
    v: &Verdict,
    id: Option<i64>,
    synced: Option<String>,
) -> Result<(), Error> {
    let prev = ws.status.clone().unwrap_or_default();
    let key = format!("{}/{}", ws.namespace().unwrap_or_default(), ws.name_any());
    let gone = ws.metadata.deletion_timestamp.is_some();
    ctx.readiness
        .set(&ctx.metrics, "Workspace", &key, (!gone).then_some(v.ready));
    let next = WorkspaceStatus {
        observed_generation: ws.metadata.generation,
        conditions: conditions::merge(
            &prev.conditions,
            v,
            ws.metadata.generation,
            Timestamp::now(),
        ),
        key: Some(ws.key()),
        id: id.or(prev.id),
        last_sync_time: synced.or(prev.last_sync_time.clone()),
    };
    if next == prev {
        return Ok(());
    }
    patch_status(
        ctx,
        ws,
        "Workspace",
        serde_json::to_value(next).unwrap_or_default(),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// LabelingProject

/// The controller name in metrics.
pub const PROJECT_CONTROLLER: &str = "labelingproject";

/// Label Studio's snake_case settings object for the settings the resource declares.
pub fn settings_json(s: &ProjectSettings) -> Value {
    let mut m = serde_json::Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_owned(), v);
        }
    };
    put(
        "maximum_annotations",
        s.maximum_annotations.map(Value::from),
    );
    put("show_skip_button", s.show_skip_button.map(Value::from));
    put(
        "sampling",
        s.sampling.and_then(|x| serde_json::to_value(x).ok()),
    );
    put("show_instruction", s.show_instruction.map(Value::from));
    put(
        "enable_empty_annotation",
        s.enable_empty_annotation.map(Value::from),
    );
    put(
        "min_annotations_to_start_training",
        s.min_annotations_to_start_training.map(Value::from),
    );
    put(
        "show_annotation_history",
        s.show_annotation_history.map(Value::from),
    );
    put(
        "reveal_preannotations_interactively",
        s.reveal_preannotations_interactively.map(Value::from),
    );
    put(
        "show_collab_predictions",
        s.show_collab_predictions.map(Value::from),
    );
    put("color", s.color.clone().map(Value::from));
    Value::Object(m)
}

/// The admin-API body for a LabelingProject: exactly the fields the resource declares.
pub fn project_params(lp: &LabelingProject) -> ProjectParams {
    let s = &lp.spec;
    ProjectParams {
        workspace: s.workspace.clone(),
        title: s.title.clone(),
        description: s.description.clone(),
        label_config: s.label_config.clone(),
        expert_instruction: s.expert_instruction.clone(),
        settings: s
            .settings
            .as_ref()
            .map(settings_json)
            .filter(|v| v.as_object().is_some_and(|o| !o.is_empty())),
        managed_by: format!(
            "LabelingProject/{}/{}",
            lp.namespace().unwrap_or_default(),
            lp.name_any()
        ),
    }
}

/// Completion as shown in status: one decimal and a percent sign.
pub fn completion_percent(completion: f64) -> String {
    format!(
        "{:.1}%",
        (completion.clamp(0.0, 1.0) * 1000.0).round() / 10.0
    )
}

/// Reconciles one LabelingProject.
pub async fn reconcile_project(
    lp: Arc<LabelingProject>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let ns = lp.namespace().unwrap_or_default();
    let api: Api<LabelingProject> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, lp.clone(), |event| async {
        match event {
            FinalizerEvent::Apply(lp) => apply_project(&lp, &ctx).await,
            FinalizerEvent::Cleanup(lp) => {
                archive(&ctx, &lp.namespace().unwrap_or_default(), |c, slug| {
                    let key = lp.key();
                    async move { c.delete_project(&slug, &key).await }
                })
                .await
            }
        }
    })
    .await
    .map_err(finalizer_error);
    finish(
        &ctx,
        PROJECT_CONTROLLER,
        &crate::backoff_key(lp.as_ref()),
        started,
        result,
        |v| {
            let ctx = ctx.clone();
            let lp = lp.clone();
            async move { project_status(&ctx, &lp, &v, None).await }
        },
    )
    .await
}

async fn apply_project(lp: &LabelingProject, ctx: &Context) -> Result<Action, Error> {
    let st = lp.status.clone().unwrap_or_default();
    if let Some(left) = fresh(
        lp.metadata.generation,
        st.observed_generation,
        &st.conditions,
        st.last_sync_time.as_ref(),
        ctx.progress_interval,
    ) {
        return Ok(Action::requeue(left));
    }
    let target = match resolve(ctx, &lp.namespace().unwrap_or_default()).await? {
        Resolved::NotReady(v) => {
            project_status(ctx, lp, &v, None).await?;
            return Ok(Action::requeue(Duration::from_secs(if v.stalled {
                60
            } else {
                10
            })));
        }
        Resolved::Found(t) => t,
    };
    let slug = target.org.name_any();
    let spec_synced = lp.metadata.generation == st.observed_generation
        && conditions::is_ready(&st.conditions)
        && seconds_since(st.last_sync_time.as_ref()).is_some_and(|s| s < RESYNC.as_secs());
    // Unchanged spec, synced recently: only read progress back (no write to the control plane).
    let view = match spec_synced {
        true => target.client.get_project(&slug, &lp.key()).await?,
        false => None,
    };
    let view = match view {
        Some(v) => v,
        None => {
            // Applied together (one file, a GitOps sync), the project may come before its
            // Workspace is in the control plane: wait for the Workspace instead of sending a
            // write it would reject. (Progress reads of a synced project skip this list.)
            if let Some(v) = workspace_pending(ctx, lp).await? {
                project_status(ctx, lp, &v, None).await?;
                return Ok(Action::requeue(Duration::from_secs(5)));
            }
            ensure_organization(&target).await?;
            target
                .client
                .put_project(&slug, &lp.key(), &project_params(lp))
                .await?
        }
    };
    let v = Verdict::ready(
        reason::SYNCED,
        format!("project {} is in sync with the control plane", view.key),
    );
    project_status(ctx, lp, &v, Some(view)).await?;
    Ok(Action::requeue(ctx.progress_interval))
}

/// Why the project's Workspace (same namespace, key `spec.workspace`) is not ready to hold it,
/// or `None` once it is synced.
async fn workspace_pending(ctx: &Context, lp: &LabelingProject) -> Result<Option<Verdict>, Error> {
    let ns = lp.namespace().unwrap_or_default();
    let api: Api<Workspace> = Api::namespaced(ctx.client.clone(), &ns);
    let list = api
        .list(&kube::api::ListParams::default())
        .await
        .map_err(|e| Error::kube_on("list", "Workspace", &ns, e))?;
    Ok(workspace_verdict(&list.items, &lp.spec.workspace, &ns))
}

/// The waiting verdict for a project of workspace `key` among `workspaces`, if it must wait.
pub fn workspace_verdict(workspaces: &[Workspace], key: &str, ns: &str) -> Option<Verdict> {
    match workspaces.iter().find(|w| w.key() == key) {
        None => Some(Verdict::progressing(
            reason::WORKSPACE_NOT_READY,
            format!("waiting for a Workspace with key {key:?} in namespace {ns}; apply it"),
        )),
        Some(w)
            if w.metadata.deletion_timestamp.is_some()
                || !w
                    .status
                    .as_ref()
                    .is_some_and(|s| conditions::is_ready(&s.conditions)) =>
        {
            Some(Verdict::progressing(
                reason::WORKSPACE_NOT_READY,
                format!(
                    "waiting for Workspace {} (key {key:?}) to be synced to the control plane",
                    w.name_any()
                ),
            ))
        }
        Some(_) => None,
    }
}

async fn project_status(
    ctx: &Context,
    lp: &LabelingProject,
    v: &Verdict,
    view: Option<crate::admin::ProjectView>,
) -> Result<(), Error> {
    let prev = lp.status.clone().unwrap_or_default();
    let key = format!("{}/{}", lp.namespace().unwrap_or_default(), lp.name_any());
    let gone = lp.metadata.deletion_timestamp.is_some();
    ctx.readiness.set(
        &ctx.metrics,
        "LabelingProject",
        &key,
        (!gone).then_some(v.ready),
    );
    let mut next = LabelingProjectStatus {
        observed_generation: lp.metadata.generation,
        conditions: conditions::merge(
            &prev.conditions,
            v,
            lp.metadata.generation,
            Timestamp::now(),
        ),
        ..prev.clone()
    };
    if let Some(view) = view {
        next.project_id = Some(view.id);
        next.tasks = Some(view.counts.task_number);
        next.annotations = Some(view.counts.total_annotations_number);
        next.tasks_with_annotations = Some(view.counts.num_tasks_with_annotations);
        next.finished_tasks = Some(view.counts.finished_task_number);
        next.predictions = Some(view.counts.total_predictions_number);
        next.completion_percent = Some(completion_percent(view.counts.completion));
        next.managed_fields = view.managed_fields;
        // The sync time alone changing is not worth a write every refresh: it is refreshed when
        // something else changes, or once per re-sync period.
        let stale =
            seconds_since(prev.last_sync_time.as_ref()).is_none_or(|s| s >= RESYNC.as_secs());
        let changed = LabelingProjectStatus {
            last_sync_time: None,
            ..next.clone()
        } != LabelingProjectStatus {
            last_sync_time: None,
            ..prev.clone()
        };
        if stale || changed {
            next.last_sync_time = Some(Timestamp::now().to_string());
        }
    }
    if next == prev {
        return Ok(());
    }
    patch_status(
        ctx,
        lp,
        "LabelingProject",
        serde_json::to_value(next).unwrap_or_default(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use verity_crds::LabelingProjectSpec;
    use verity_crds::project::Sampling;

    fn workspace(name: &str, key: Option<&str>, ready: Option<bool>) -> Workspace {
        let mut v = serde_json::json!({
            "apiVersion": "verity.dev/v1alpha1", "kind": "Workspace",
            "metadata": {"name": name, "namespace": "tenant-acme"},
            "spec": {"title": name},
        });
        if let Some(k) = key {
            v["spec"]["key"] = k.into();
        }
        if let Some(r) = ready {
            v["status"] = serde_json::json!({"conditions": [{
                "type": "Ready", "status": if r { "True" } else { "False" }, "reason": "x",
                "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z",
            }]});
        }
        serde_json::from_value(v).unwrap()
    }

    /// Applied in one go, a project waits (and is retried) until its Workspace is synced,
    /// instead of being rejected by the control plane and stalling for good.
    #[test]
    fn a_project_waits_for_its_workspace() {
        let wait = |ws: &[Workspace]| workspace_verdict(ws, "vision", "tenant-acme");
        let v = wait(&[]).expect("no workspace: wait");
        assert_eq!(v.reason, reason::WORKSPACE_NOT_READY);
        assert!(!v.stalled);
        assert!(v.message.contains("\"vision\""), "{}", v.message);
        assert!(
            wait(&[workspace("vision", None, None)]).is_some(),
            "not synced yet"
        );
        assert!(wait(&[workspace("vision", None, Some(false))]).is_some());
        assert!(wait(&[workspace("vision", None, Some(true))]).is_none());
        // The key, not the resource name, is what a project names.
        assert!(wait(&[workspace("cv", Some("vision"), Some(true))]).is_none());
        assert!(wait(&[workspace("vision", Some("other"), Some(true))]).is_some());
    }

    #[test]
    fn only_declared_fields_are_sent() {
        let mut lp = LabelingProject::new(
            "cats",
            LabelingProjectSpec {
                workspace: "vision".into(),
                key: None,
                title: "Cats".into(),
                description: None,
                label_config: Some("<View/>".into()),
                expert_instruction: None,
                settings: Some(ProjectSettings {
                    maximum_annotations: Some(2),
                    sampling: Some(Sampling::Uniform),
                    ..Default::default()
                }),
            },
        );
        lp.metadata.namespace = Some("tenant".into());
        let body = serde_json::to_value(project_params(&lp)).unwrap();
        assert_eq!(
            body,
            json!({
                "workspace": "vision", "title": "Cats", "label_config": "<View/>",
                "settings": {"maximum_annotations": 2, "sampling": "Uniform sampling"},
                "managed_by": "LabelingProject/tenant/cats",
            })
        );
        lp.spec.settings = Some(ProjectSettings::default());
        assert!(
            serde_json::to_value(project_params(&lp))
                .unwrap()
                .get("settings")
                .is_none(),
            "no empty settings object"
        );
    }

    #[test]
    fn completion_is_a_rounded_percentage() {
        assert_eq!(completion_percent(0.0), "0.0%");
        assert_eq!(completion_percent(0.4256), "42.6%");
        assert_eq!(completion_percent(1.0), "100.0%");
        assert_eq!(completion_percent(3.0), "100.0%");
    }
}
