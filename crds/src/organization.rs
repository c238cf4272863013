//! `Organization` (cluster-scoped): one tenant, reconciled into an isolated stack in a namespace
//! of its own. Field docs become the CRD's `description`s, so they are written for the person
//! who runs `kubectl explain organization.spec`.

// kube's `KubeSchema` derive copies each struct, `pub` fields and all, into a private function
// body to build its schema; those copies trip `unreachable_pub`, which cannot be silenced on them.
#![allow(unreachable_pub)]
// Several `printcolumn(...)` share `type_ = "string"`; clippy reads them as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One tenant of Verity. The operator creates the namespace `spec.namespace` and in it the
/// control plane, worker pools, a TLS-only Redis and a storage proxy, isolated by
/// NetworkPolicies, a ResourceQuota and PodSecurity `restricted`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "verity.dev",
    version = "v1alpha1",
    kind = "Organization",
    plural = "organizations",
    shortname = "org",
    category = "verity",
    status = "OrganizationStatus",
    derive = "PartialEq",
    doc = "A Verity tenant: an isolated stack in a namespace of its own.",
    printcolumn(name = "Namespace", type_ = "string", json_path = ".spec.namespace"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Workers", type_ = "integer", json_path = ".status.readyWorkers", description = "Ready worker pods over all queues"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 40").message("an Organization name must be at most 40 characters (it names objects in the tenant namespace)")
)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationSpec {
    /// The tenant namespace the operator creates and manages. Immutable: moving a tenant is a
    /// migration, not an edit. If it exists already, the operator uses it only when it carries
    /// the label `verity.dev/adopt: <organization name>`; `default`, `kube-*` and the
    /// operator's own namespace are refused.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.namespace is immutable; create a new Organization to move a tenant").reason(Reason::FieldValueForbidden))]
    #[x_kube(validation = Rule::new("self != 'default' && !self.startsWith('kube-')").message("spec.namespace must not be default or kube-*: an Organization gets a namespace of its own").reason(Reason::FieldValueForbidden))]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: String,
    /// Display name in the control plane. Defaults to the resource name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// E-mail of the organization's owner; the control plane creates this user if missing.
    #[schemars(length(min = 3, max = 254))]
    pub owner_email: String,
    /// What happens to the tenant namespace when the Organization is deleted. `Retain` (default)
    /// keeps the namespace and everything in it; `Delete` lets Kubernetes garbage-collect it.
    /// The external PostgreSQL database is never deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// The `verity` container image used by the app, workers and storage proxy.
    #[serde(default)]
    pub image: ImageSpec,
    /// The control-plane `app` Deployment (`verity serve`).
    #[serde(default)]
    pub app: AppSpec,
    /// RQ-style worker pools, one Deployment per queue (`verity work --queues <q>`).
    #[serde(default)]
    pub workers: WorkersSpec,
    /// The tenant's Redis (TLS only, client certificates required).
    #[serde(default)]
    pub redis: RedisSpec,
    /// The storage proxy Deployment (`verity storage-proxy`).
    #[serde(default)]
    pub storage_proxy: StorageProxySpec,
    /// The cloud identity the app, workers and storage proxy use for the tenant's object
    /// storages (the base identity that assumes an S3 storage's IAM role).
    #[serde(default, skip_serializing_if = "StorageSpec::is_empty")]
    pub storage: StorageSpec,
    /// The existing PostgreSQL database of this tenant.
    pub database: DatabaseSpec,
    /// Network isolation: who may reach the tenant, and where the tenant may connect.
    #[serde(default)]
    pub network: NetworkSpec,
    /// The tenant namespace's ResourceQuota and LimitRange.
    #[serde(default)]
    pub quota: QuotaSpec,
}

/// What deleting the Organization does to its namespace.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the namespace and everything in it (the operator removes its owner references).
    #[default]
    Retain,
    /// Garbage-collect the namespace and everything in it.
    Delete,
}

/// A container image.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Image repository.
    #[serde(default = "default_repository")]
    pub repository: String,
    /// Image tag. Changing it rolls out a new version; the app runs migrations before serving.
    #[serde(default = "default_tag")]
    pub tag: String,
    /// Kubernetes image pull policy.
    #[serde(default = "default_pull_policy")]
    #[schemars(regex(pattern = r"^(Always|IfNotPresent|Never)$"))]
    pub pull_policy: String,
}

impl Default for ImageSpec {
    fn default() -> Self {
        Self {
            repository: default_repository(),
            tag: default_tag(),
            pull_policy: default_pull_policy(),
        }
    }
}

fn default_repository() -> String {
    "ghcr.io/verity-dev/verity".into()
}
fn default_tag() -> String {
    env!("CARGO_PKG_VERSION").into()
}
fn default_pull_policy() -> String {
    "IfNotPresent".into()
}

/// The control-plane Deployment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppSpec {
    /// Replicas when autoscaling is off.
    #[serde(default = "default_app_replicas")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 50").message("spec.app.replicas must be between 1 and 50"))]
    pub replicas: i32,
    /// Container resources. Defaults to 250m/256Mi requests and 1 CPU/1Gi limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Optional HorizontalPodAutoscaler on CPU utilisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AppAutoscaling>,
    /// The address users reach the control plane at (e.g. `https://label.example.com`), behind
    /// whatever Ingress or Gateway the platform provides. SAML single sign-on builds its entity
    /// id and assertion consumer URL on it; set it before connecting an identity provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')").message("spec.app.publicUrl must be an http or https URL"))]
    pub public_url: Option<String>,
}

impl Default for AppSpec {
    fn default() -> Self {
        Self {
            replicas: default_app_replicas(),
            resources: None,
            autoscaling: None,
            public_url: None,
        }
    }
}

fn default_app_replicas() -> i32 {
    2
}

/// HorizontalPodAutoscaler bounds for the app.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("autoscaling.minReplicas must not exceed maxReplicas"))]
pub struct AppAutoscaling {
    /// Lower bound.
    #[x_kube(validation = Rule::new("self >= 1").message("autoscaling.minReplicas must be at least 1"))]
    pub min_replicas: i32,
    /// Upper bound.
    #[x_kube(validation = Rule::new("self <= 100").message("autoscaling.maxReplicas must be at most 100"))]
    pub max_replicas: i32,
    /// Target average CPU utilisation in percent.
    #[serde(default = "default_cpu_target")]
    #[x_kube(validation = Rule::new("self >= 10 && self <= 100").message("targetCPUUtilizationPercentage must be between 10 and 100"))]
    #[serde(rename = "targetCPUUtilizationPercentage")]
    pub target_cpu_utilization_percentage: i32,
}

fn default_cpu_target() -> i32 {
    75
}

/// The queues of the RQ-style worker pools, highest priority first.
pub const QUEUES: [&str; 4] = ["critical", "high", "default", "low"];

/// One worker pool per queue. A queue left out gets its default replicas (`default`: 4, the
/// others: 1).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkersSpec {
    /// The `critical` queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<QueueSpec>,
    /// The `high` queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<QueueSpec>,
    /// The `default` queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<QueueSpec>,
    /// The `low` queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<QueueSpec>,
}

impl WorkersSpec {
    /// The spec of one queue's pool, if given.
    pub fn queue(&self, name: &str) -> Option<&QueueSpec> {
        match name {
            "critical" => self.critical.as_ref(),
            "high" => self.high.as_ref(),
            "default" => self.default.as_ref(),
            "low" => self.low.as_ref(),
            _ => None,
        }
    }

    /// The fixed replicas of one queue's pool: the spec's, else the reference chart's default.
    /// For an autoscaled pool see [`WorkersSpec::autoscaling`] and `status.workers`.
    pub fn replicas(&self, name: &str) -> i32 {
        self.queue(name)
            .and_then(|q| q.replicas)
            .unwrap_or(if name == "default" { 4 } else { 1 })
    }

    /// The autoscaling settings of one queue's pool, if it is autoscaled.
    pub fn autoscaling(&self, name: &str) -> Option<&QueueAutoscaling> {
        self.queue(name).and_then(|q| q.autoscaling.as_ref())
    }
}

/// One worker pool.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.replicas) || !has(self.autoscaling)").message("set either replicas or autoscaling for a worker pool, not both (with autoscaling the operator sets the replicas)"))]
pub struct QueueSpec {
    /// Worker replicas (0 to 200). Defaults to 4 for `default` and 1 for the other queues.
    /// Leave unset when `autoscaling` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 200").message("worker replicas must be between 0 and 200"))]
    pub replicas: Option<i32>,
    /// Container resources. Defaults to 100m/256Mi requests and 1 CPU/1Gi limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Scale this pool on its queue's depth and oldest-job age, between `minReplicas` and
    /// `maxReplicas`. The operator reads the queue from the tenant's Redis itself (no KEDA or
    /// metrics adapter) and writes its decision to `status.workers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<QueueAutoscaling>,
}

/// Queue-driven autoscaling of one worker pool. Scaling up is immediate; scaling down waits until
/// every recommendation of the last `scaleDownDelaySeconds` was lower, so a pool does not flap.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("workers autoscaling.minReplicas must not exceed maxReplicas"))]
pub struct QueueAutoscaling {
    /// Replicas of an idle pool (0 stops the pool while its queue is empty).
    #[x_kube(validation = Rule::new("self >= 0 && self <= 200").message("workers autoscaling.minReplicas must be between 0 and 200"))]
    pub min_replicas: i32,
    /// Upper bound.
    #[x_kube(validation = Rule::new("self >= 1 && self <= 200").message("workers autoscaling.maxReplicas must be between 1 and 200"))]
    pub max_replicas: i32,
    /// Jobs (waiting plus running) one worker is expected to keep up with: the pool gets
    /// ceil(jobs / this) replicas.
    #[serde(default = "default_jobs_per_replica")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 100000").message("workers autoscaling.targetJobsPerReplica must be between 1 and 100000"))]
    pub target_jobs_per_replica: i32,
    /// When the oldest waiting job has waited longer than this, the pool grows by one replica
    /// beyond what the depth asks for (at most once per this interval), up to `maxReplicas`.
    #[serde(default = "default_max_job_age")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 86400").message("workers autoscaling.maxOldestJobAgeSeconds must be between 1 and 86400"))]
    pub max_oldest_job_age_seconds: i32,
    /// How long the pool keeps its size after the load drops before it shrinks.
    #[serde(default = "default_scale_down_delay")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 86400").message("workers autoscaling.scaleDownDelaySeconds must be between 0 and 86400"))]
    pub scale_down_delay_seconds: i32,
}

fn default_jobs_per_replica() -> i32 {
    10
}
fn default_max_job_age() -> i32 {
    60
}
fn default_scale_down_delay() -> i32 {
    300
}

/// The tenant's Redis.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.renewBeforeDays < self.certificateValidityDays").message("redis.renewBeforeDays must be smaller than certificateValidityDays"))]
#[x_kube(validation = Rule::new("self.storage == oldSelf.storage && has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)").message("spec.redis.storage and spec.redis.storageClassName are immutable (a StatefulSet's volume claim cannot change); to grow the volume, expand the PersistentVolumeClaim data-redis-0 in the tenant namespace if its storage class allows it").reason(Reason::FieldValueForbidden))]
pub struct RedisSpec {
    /// Image of the Redis server (must support TLS).
    #[serde(default = "default_redis_image")]
    pub image: String,
    /// Size of the persistent volume. Immutable.
    #[serde(default = "default_redis_storage")]
    pub storage: Quantity,
    /// Storage class of the volume; the cluster default if unset. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Container resources. Defaults to 100m/256Mi requests and 1 CPU/1Gi limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Validity of the server and client certificates the operator issues, in days.
    #[serde(default = "default_validity")]
    #[x_kube(validation = Rule::new("self >= 2 && self <= 825").message("certificateValidityDays must be between 2 and 825"))]
    pub certificate_validity_days: i32,
    /// Certificates are re-issued (and Redis, app and workers restarted) this many days
    /// before they expire.
    #[serde(default = "default_renew_before")]
    #[x_kube(validation = Rule::new("self >= 1").message("renewBeforeDays must be at least 1"))]
    pub renew_before_days: i32,
}

impl Default for RedisSpec {
    fn default() -> Self {
        Self {
            image: default_redis_image(),
            storage: default_redis_storage(),
            storage_class_name: None,
            resources: None,
            certificate_validity_days: default_validity(),
            renew_before_days: default_renew_before(),
        }
    }
}

fn default_redis_image() -> String {
    "docker.io/library/redis:7.4".into()
}
fn default_redis_storage() -> Quantity {
    Quantity("1Gi".into())
}
fn default_validity() -> i32 {
    90
}
fn default_renew_before() -> i32 {
    30
}

/// The storage proxy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageProxySpec {
    /// Replicas of `verity storage-proxy`. Defaults to 0: the app serves media links itself
    /// (`/storage-proxy/` in-process); a separate proxy pays off once media lives in object
    /// storage, which the app and proxy reach through `network.storageEndpoints` (private) or
    /// `network.publicEgress` (public).
    #[serde(default = "default_proxy_replicas")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 50").message("storageProxy.replicas must be between 0 and 50"))]
    pub replicas: i32,
    /// Container resources. Defaults to 100m/128Mi requests and 1 CPU/512Mi limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for StorageProxySpec {
    fn default() -> Self {
        Self {
            replicas: default_proxy_replicas(),
            resources: None,
        }
    }
}

fn default_proxy_replicas() -> i32 {
    0
}

/// The server-wide cloud identity of the tenant's storages. Storages that carry their own keys
/// do not need it; an S3 storage that names only an IAM role (`role_arn`) assumes the role with
/// it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// A Secret in the tenant namespace holding the base AWS identity (an access key, and a
    /// session token when the key is temporary), given to `verity serve`, `verity work` and
    /// `verity storage-proxy` as `VERITY_AWS_ACCESS_KEY_ID`, `VERITY_AWS_SECRET_ACCESS_KEY` and
    /// `VERITY_AWS_SESSION_TOKEN`. Pods read it when they start: after rotating the key,
    /// restart them (`kubectl rollout restart deployment -n <namespace>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_credentials_secret_ref: Option<AwsCredentialsSecretRef>,
    /// The STS endpoint roles are assumed at (`VERITY_AWS_STS_ENDPOINT`), e.g. a regional or
    /// VPC endpoint. Unset: the storage's own S3 endpoint if it has one, else
    /// `https://sts.<region>.amazonaws.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')").message("spec.storage.awsStsEndpoint must be an http or https URL"))]
    #[schemars(length(max = 2048))]
    pub aws_sts_endpoint: Option<String>,
    /// The Microsoft Entra authority Azure service principals sign in at
    /// (`VERITY_AZURE_AUTHORITY_HOST`); `https://login.microsoftonline.com` if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')").message("spec.storage.azureAuthorityHost must be an http or https URL"))]
    #[schemars(length(max = 2048))]
    pub azure_authority_host: Option<String>,
    /// GCS storages without a service-account key sign with the Google service account of the
    /// tenant's pods (GKE Workload Identity), whose tokens come from the metadata server
    /// (`VERITY_GCS_WORKLOAD_IDENTITY`). The operator opens egress to the metadata server
    /// (169.254.169.254, port 80) for the app, the workers and the storage proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs_workload_identity: Option<GcsWorkloadIdentity>,
}

/// GKE Workload Identity of the tenant's pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcsWorkloadIdentity {
    /// The Google service account the Kubernetes service accounts `verity-app`,
    /// `verity-worker` and `verity-storage-proxy` act as (their `iam.gke.io/gcp-service-account`
    /// annotation). Leave unset when IAM grants the Kubernetes service accounts directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 254),
        regex(pattern = r"^[a-z][-a-z0-9]*@[-a-z0-9.]+\.gserviceaccount\.com$")
    )]
    pub gcp_service_account: Option<String>,
}

impl StorageSpec {
    /// Whether nothing is set (the field is then left out of the serialized spec).
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// The keys of a Secret in the tenant namespace that hold an AWS access key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsCredentialsSecretRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key of the access key id.
    #[serde(default = "default_access_key_id_key")]
    #[schemars(length(min = 1, max = 253))]
    pub access_key_id_key: String,
    /// Key of the secret access key.
    #[serde(default = "default_secret_access_key_key")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_access_key_key: String,
    /// Key of the session token of a temporary key. Optional in the Secret: when the key is
    /// absent, no session token is given.
    #[serde(default = "default_session_token_key")]
    #[schemars(length(min = 1, max = 253))]
    pub session_token_key: String,
}

fn default_access_key_id_key() -> String {
    "access-key-id".into()
}
fn default_secret_access_key_key() -> String {
    "secret-access-key".into()
}
fn default_session_token_key() -> String {
    "session-token".into()
}

/// The tenant's existing PostgreSQL. The operator only reads the reference; it never creates,
/// changes or deletes the database.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// A Secret in the tenant namespace holding the DSN (`postgres://…`).
    pub secret_ref: SecretKeyRef,
    /// Where the database is, for the egress NetworkPolicy.
    pub endpoint: NetworkEndpoint,
    /// A Secret in the tenant namespace holding the CA certificates (PEM) the database server's
    /// certificate must chain to. When set, the control plane connects with TLS and checks the
    /// certificate and host name (`sslmode=verify-full`; a DSN with a weaker `sslmode` is
    /// refused at start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<CaSecretRef>,
}

/// A key of a Secret in the tenant namespace holding PEM certificates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaSecretRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in the Secret.
    #[serde(default = "default_ca_key")]
    pub key: String,
}

fn default_ca_key() -> String {
    "ca.crt".into()
}

/// A key of a Secret in the tenant namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in the Secret.
    #[serde(default = "default_dsn_key")]
    pub key: String,
}

fn default_dsn_key() -> String {
    "dsn".into()
}

/// A network destination: an IP block and TCP ports.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkEndpoint {
    /// CIDR, e.g. `10.20.0.0/16` or `192.0.2.7/32`.
    #[x_kube(validation = Rule::new("isCIDR(self)").message("must be a CIDR such as 10.0.0.0/16"))]
    #[schemars(length(max = 64))]
    pub cidr: String,
    /// TCP ports.
    #[schemars(length(min = 1, max = 16))]
    pub ports: Vec<i32>,
}

/// Network isolation settings. Everything not allowed here is denied.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// Namespaces (by name) whose pods may reach the app and the storage proxy, typically the
    /// ingress controller's.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub ingress_from_namespaces: Vec<String>,
    /// Private object-storage endpoints (and STS or identity endpoints inside the cluster) the
    /// app, the workers and the storage proxy may connect to; each is also passed to the
    /// control plane's guard against private targets (`VERITY_ALLOW_PRIVATE_TARGETS`).
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub storage_endpoints: Vec<NetworkEndpoint>,
    /// Private destinations the app and the workers may send webhooks (and ML-backend calls)
    /// to. Each is opened in the NetworkPolicy and passed to the control plane's guard against
    /// private targets (`VERITY_ALLOW_PRIVATE_TARGETS`), which refuses every other private,
    /// loopback and link-local address.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub outbound_endpoints: Vec<NetworkEndpoint>,
    /// Let the app, the workers and the storage proxy reach public addresses (everything but
    /// private, loopback, link-local and shared ranges) on TCP 80 and 443, where webhook
    /// receivers, public buckets and STS usually are. Off by default: nothing leaves the
    /// tenant that is not declared.
    #[serde(default)]
    pub public_egress: bool,
}

/// ResourceQuota and LimitRange of the tenant namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaSpec {
    /// ResourceQuota `hard` limits (e.g. `requests.cpu`, `limits.memory`, `pods`).
    #[serde(default = "default_quota_hard")]
    pub hard: BTreeMap<String, Quantity>,
    /// LimitRange default limits for containers that declare none.
    #[serde(default = "default_container_limits")]
    pub default_limits: BTreeMap<String, Quantity>,
    /// LimitRange default requests for containers that declare none.
    #[serde(default = "default_container_requests")]
    pub default_requests: BTreeMap<String, Quantity>,
}

impl Default for QuotaSpec {
    fn default() -> Self {
        Self {
            hard: default_quota_hard(),
            default_limits: default_container_limits(),
            default_requests: default_container_requests(),
        }
    }
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
        .collect()
}
fn default_quota_hard() -> BTreeMap<String, Quantity> {
    quantities(&[
        ("requests.cpu", "16"),
        ("requests.memory", "32Gi"),
        ("limits.cpu", "32"),
        ("limits.memory", "64Gi"),
        ("pods", "100"),
        ("persistentvolumeclaims", "10"),
        ("services.loadbalancers", "0"),
        ("services.nodeports", "0"),
    ])
}
fn default_container_limits() -> BTreeMap<String, Quantity> {
    quantities(&[("cpu", "1"), ("memory", "1Gi")])
}
fn default_container_requests() -> BTreeMap<String, Quantity> {
    quantities(&[("cpu", "100m"), ("memory", "128Mi")])
}

/// What the operator observed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, plus `Reconciling` or `Stalled` while they are true.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The tenant namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The control plane's in-cluster URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_url: Option<String>,
    /// Ready worker pods over all queues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_workers: Option<i32>,
    /// When the current Redis certificates expire (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates_not_after: Option<String>,
    /// The autoscaler's state of each autoscaled worker pool (written by the operator's
    /// autoscaler, not by the reconcile).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["queue".into()]))]
    pub workers: Vec<WorkerPoolStatus>,
}

/// What the autoscaler decided for one worker pool.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerPoolStatus {
    /// The queue (`critical`, `high`, `default`, `low`).
    pub queue: String,
    /// Replicas the autoscaler chose; the pool's Deployment is set to this.
    pub replicas: i32,
    /// When the autoscaler last changed `replicas` (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<String>,
    /// Why it last changed `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_reason: Option<String>,
    /// Set while the queue cannot be read (the pool then keeps its size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_error: Option<String>,
}
