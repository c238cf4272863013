//! Pure rules of the annotation domain: labeling-config parsing, project settings, import
//! formats, task completion. Nothing here does I/O; no sqlx, no axum.

pub mod brush;
pub mod contours;
pub mod convert;
pub mod csv_old;
pub mod import;
pub mod label_config;
pub mod media;
pub mod project;
#[cfg(test)]
mod proptests;
pub mod tokenize;
pub mod zip;
