//! `Workspace` (namespaced, in an Organization's namespace): a group of projects, synced into the
//! organization's control plane.

// kube's `KubeSchema` derive copies each struct, `pub` fields and all, into a private function
// body to build its schema; those copies trip `unreachable_pub`, which cannot be silenced on them.
#![allow(unreachable_pub)]
// Several `printcolumn(...)` share `type_ = "string"`; clippy reads them as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A workspace of an organization. It must live in the organization's namespace; the operator
/// creates or updates it in the control plane and archives it when the resource is deleted.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "verity.dev",
    version = "v1alpha1",
    kind = "Workspace",
    plural = "workspaces",
    shortname = "vws",
    category = "verity",
    namespaced,
    status = "WorkspaceStatus",
    derive = "PartialEq",
    doc = "A Verity workspace, synced into its organization's control plane.",
    printcolumn(name = "Key", type_ = "string", json_path = ".status.key"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceSpec {
    /// The key in the control plane (a DNS label). Defaults to the resource name. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.key is immutable").reason(Reason::FieldValueForbidden))]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub key: Option<String>,
    /// Display title.
    #[schemars(length(min = 1, max = 200))]
    pub title: String,
    /// Description.
    #[serde(default)]
    #[schemars(length(max = 2000))]
    pub description: String,
}

/// What the operator observed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, plus `Reconciling` or `Stalled` while they are true.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The workspace key in the control plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The workspace id in the control plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// Last successful sync (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
}

impl Workspace {
    /// The key in the control plane: `spec.key`, else the resource name.
    pub fn key(&self) -> String {
        self.spec
            .key
            .clone()
            .unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }
}
