//! `LabelingProject` (namespaced, in an Organization's namespace): a labeling project whose
//! declared fields are owned by Git, and whose status reports progress read back from the
//! control plane.

// kube's `KubeSchema` derive copies each struct, `pub` fields and all, into a private function
// body to build its schema; those copies trip `unreachable_pub`, which cannot be silenced on them.
#![allow(unreachable_pub)]
// Several `printcolumn(...)` share `type_ = "string"`; clippy reads them as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A labeling project. Every field set here is owned by Git: the control-plane API refuses to
/// change it (HTTP 409, code `managed_by_git`). Deleting the resource archives the project.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "verity.dev",
    version = "v1alpha1",
    kind = "LabelingProject",
    plural = "labelingprojects",
    shortname = "lp",
    category = "verity",
    namespaced,
    status = "LabelingProjectStatus",
    derive = "PartialEq",
    doc = "A Verity labeling project, synced into its organization's control plane.",
    printcolumn(name = "Workspace", type_ = "string", json_path = ".spec.workspace"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Tasks", type_ = "integer", json_path = ".status.tasks"),
    printcolumn(
        name = "Annotations",
        type_ = "integer",
        json_path = ".status.annotations"
    ),
    printcolumn(
        name = "Completion",
        type_ = "string",
        json_path = ".status.completionPercent"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct LabelingProjectSpec {
    /// The key of the Workspace this project belongs to (a Workspace in the same namespace).
    /// Required and immutable.
    #[x_kube(validation = Rule::new("self.size() > 0").message("spec.workspace must name the project's Workspace").reason(Reason::FieldValueRequired))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.workspace is immutable; a project cannot move between workspaces").reason(Reason::FieldValueForbidden))]
    #[schemars(length(max = 63))]
    pub workspace: String,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The Label Studio labeling configuration (`<View>…</View>`). The control plane validates it;
    /// an invalid config shows as `Ready=False` with reason `InvalidLabelConfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 262144))]
    pub label_config: Option<String>,
    /// Instructions shown to annotators (HTML allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expert_instruction: Option<String>,
    /// Label Studio project settings. Only the settings given here are owned by Git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<ProjectSettings>,
}

/// Label Studio project settings; every one is optional.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectSettings {
    /// Annotations per task before it counts as finished (overlap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 100").message("maximumAnnotations must be between 1 and 100"))]
    pub maximum_annotations: Option<i32>,
    /// Whether annotators may skip tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show_skip_button: Option<bool>,
    /// Task sampling order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<Sampling>,
    /// Whether the instructions are shown before labeling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show_instruction: Option<bool>,
    /// Whether an annotation without results may be submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_empty_annotation: Option<bool>,
    /// Annotations needed before ML training starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("minAnnotationsToStartTraining must not be negative"))]
    pub min_annotations_to_start_training: Option<i32>,
    /// Whether annotation history is shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show_annotation_history: Option<bool>,
    /// Whether pre-annotations are revealed interactively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reveal_preannotations_interactively: Option<bool>,
    /// Whether collaborators' predictions are shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show_collab_predictions: Option<bool>,
    /// Project colour, `#rrggbb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^#[0-9A-Fa-f]{6}$"))]
    pub color: Option<String>,
}

/// Label Studio's task sampling modes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Sampling {
    /// Tasks in import order.
    #[serde(rename = "Sequential sampling")]
    Sequential,
    /// Tasks in random order.
    #[serde(rename = "Uniform sampling")]
    Uniform,
    /// Tasks by uncertainty of predictions.
    #[serde(rename = "Uncertainty sampling")]
    Uncertainty,
}

/// What the operator observed, including progress read back from the control plane.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelingProjectStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, plus `Reconciling` or `Stalled` while they are true.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The project id in the control plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<i64>,
    /// Tasks in the project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<i64>,
    /// Submitted annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<i64>,
    /// Tasks with at least one annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks_with_annotations: Option<i64>,
    /// Finished tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_tasks: Option<i64>,
    /// Predictions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictions: Option<i64>,
    /// Finished tasks over all tasks, as a percentage with one decimal (e.g. `"42.5%"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_percent: Option<String>,
    /// The fields the control plane reports as owned by Git.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_fields: Vec<String>,
    /// Last successful sync with the control plane (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
}

impl LabelingProject {
    /// The key in the control plane: `spec.key`, else the resource name.
    pub fn key(&self) -> String {
        self.spec
            .key
            .clone()
            .unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }
}
