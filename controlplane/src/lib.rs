//! Verity's control plane: the Label-Studio-compatible annotation API (`verity serve`), its
//! database migrations and administration commands.
//!
//! Layers: [`http`] (routes, extractors, error mapping) → [`storage`] (one set of repository
//! code over PostgreSQL and SQLite, authorization at its boundary) → [`domain`] (pure rules).

pub mod agreement;
pub mod auth;
pub mod authz;
pub mod body;
pub mod cli;
pub mod cloud;
pub mod config;
pub mod domain;
pub mod error;
pub mod exportchanges;
pub mod exports;
pub mod gce;
pub mod http;
pub mod imports;
pub mod jobs;
pub mod ldap;
pub mod links;
pub mod localfiles;
pub mod ml;
pub mod outbound;
pub mod proxy;
pub mod saml;
pub mod scim;
pub mod secrets;
pub mod server;
pub mod storage;
pub mod sts;
pub mod webhooks;

/// The version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
