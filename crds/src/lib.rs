//! The Kubernetes API contract of Verity (group `verity.dev`, version `v1alpha1`).
//!
//! The custom resource types (`Organization`, `Workspace`, `LabelingProject`) land here with the
//! operator issue; until then this crate only fixes the API group and version every other crate
//! refers to. It must never depend on the control plane.

/// The API group of every Verity custom resource.
pub const GROUP: &str = "verity.dev";
/// The served and stored version of every Verity custom resource.
pub const VERSION: &str = "v1alpha1";
