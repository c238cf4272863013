//! The one error type every handler returns, the table of stable error codes, and the one place
//! where errors become HTTP responses.
//!
//! The body keeps Label Studio's envelope (`id`, `status_code`, `version`, `detail`,
//! `validation_errors`) so existing clients parse it, and adds `code`, a stable machine-readable
//! identifier from [`ErrorCode`]. Internal errors carry their cause only into the log, never
//! into the response.

use std::collections::BTreeMap;

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;

/// Stable error codes. Clients may match on these strings; never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not valid JSON or not the expected shape.
    InvalidJson,
    /// A field has a wrong value; `validation_errors` names it.
    ValidationError,
    /// The labeling configuration is invalid.
    InvalidLabelConfig,
    /// An annotation or prediction result does not match the labeling configuration.
    InvalidResult,
    /// An imported file or task is invalid.
    InvalidImport,
    /// A query parameter is invalid.
    InvalidQuery,
    /// No credentials, or credentials that are not valid.
    Unauthenticated,
    /// Authenticated, but the role lacks the permission named in `detail`.
    Forbidden,
    /// The object does not exist (or belongs to another organization).
    NotFound,
    /// The page number is past the last page.
    InvalidPage,
    /// The label stream has no task left for the caller.
    NoMoreTasks,
    /// The review stream has no annotation left for the caller to review.
    NothingToReview,
    /// A reviewer cannot review their own annotation.
    SelfReview,
    /// Only the author of an annotation may do this with it (turn it into a draft): the draft
    /// would be the caller's own.
    NotAuthor,
    /// The project requires a comment when an annotation is rejected
    /// (`review_settings.require_comment_on_reject`).
    CommentRequired,
    /// A user named for a task assignment is not a project member whose role may do that work
    /// (annotate for `AN`, review for `RE`); `detail` names the user.
    InvalidAssignee,
    /// A review routing rule is invalid (ADR 0057): `validation_errors` names the rule and
    /// field (`rules[2].reviewers`); nothing was replaced.
    InvalidRoutingRule,
    /// Bulk labeling (ADR 0061) cannot write this project's results: a control tag of its
    /// labeling configuration is not a whole-task Choices, DateTime, Number, Rating, Taxonomy
    /// or TextArea (`detail` names it). The project's `config_suitable_for_bulk_annotation`
    /// says so beforehand.
    ConfigNotSuitableForBulk,
    /// The task already has the annotations its overlap asks for (`strict_task_overlap`), for
    /// example because the caller's reservation expired and others finished it.
    OverlapReached,
    /// The object already exists or conflicts with the current state.
    Conflict,
    /// The field is declared in a custom resource and owned by Git; change it there.
    ManagedByGit,
    /// Roles are managed by the organization's identity provider (SAML with manual role
    /// management off): change the user's groups there.
    ManagedByIdp,
    /// This build of Verity lacks the feature (SAML needs the `saml` build feature).
    NotBuilt,
    /// The caller is paused in this project; `detail` says why.
    Paused,
    /// The change would escalate privilege or remove the last owner.
    PrivilegeEscalation,
    /// An invitation link is unknown, used, expired or revoked.
    InvalidInvitation,
    /// Password sign-in is locked after too many failed attempts; `detail` says for how long.
    AccountLocked,
    /// A request made with the session cookie lacks the session's CSRF token
    /// (`X-CSRFToken` header or `csrf_token` form field), or carries a wrong one.
    CsrfFailed,
    /// The request body is larger than the configured limit.
    PayloadTooLarge,
    /// Too many requests: the caller's budget is spent; `Retry-After` says when to retry.
    RateLimited,
    /// A URL points at a private, loopback or link-local address that the administrator has not
    /// allowed (`allow_private_targets`).
    PrivateTarget,
    /// A storage endpoint is not in the organization's storage allow-list (ADR 0053): its
    /// host name is not listed and its address lies in no listed network.
    EndpointNotAllowed,
    /// The storage proxy refused to fetch from an endpoint the organization's storage
    /// allow-list no longer allows (ADR 0053).
    EndpointRefused,
    /// The caller's address is not in the networks the organization allows to call the API
    /// (ADR 0053).
    ClientNotAllowed,
    /// An ML backend could not be connected: its health check or setup failed (`detail` says
    /// what it answered).
    MlBackendUnreachable,
    /// An ML backend failed a request made on the caller's behalf (timed out, answered an error
    /// or an answer that does not fit).
    MlBackendFailed,
    /// Local-files storages are off: the administrator has not set `local_files_root`
    /// (`VERITY_LOCAL_FILES_ROOT`).
    LocalFilesDisabled,
    /// A storage path or object lies outside what the administrator allows (outside
    /// `local_files_root`, or leaving it through `..` or a symbolic link).
    PathNotAllowed,
    /// A storage's bucket could not be used: it does not exist, the credentials are refused,
    /// or its endpoint does not answer (`detail` says which and what it answered).
    StorageUnreachable,
    /// A media link was changed or not issued by this deployment.
    InvalidLink,
    /// A media link's lifetime is over; ask the API for a fresh one.
    LinkExpired,
    /// The requested byte range lies outside the object.
    RangeNotSatisfiable,
    /// The object is larger than the storage proxy sends in one response
    /// (`storage_proxy_max_bytes`); ask for byte ranges.
    ObjectTooLarge,
    /// The export format does not fit the project's label config (e.g. YOLO without
    /// RectangleLabels); `GET /api/projects/{id}/export/formats` says which fit.
    ExportFormatUnsupported,
    /// The HTTP method is not allowed on this path.
    MethodNotAllowed,
    /// The request took longer than the configured timeout.
    Timeout,
    /// The server failed; the `id` identifies the log line.
    Internal,
    /// A dependency (the database) is not available.
    Unavailable,
}

impl ErrorCode {
    /// The HTTP status that goes with the code.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidJson
            | ErrorCode::ValidationError
            | ErrorCode::InvalidLabelConfig
            | ErrorCode::InvalidResult
            | ErrorCode::InvalidImport
            | ErrorCode::InvalidQuery
            | ErrorCode::PrivateTarget
            | ErrorCode::EndpointNotAllowed
            | ErrorCode::LocalFilesDisabled
            | ErrorCode::PathNotAllowed
            | ErrorCode::MlBackendUnreachable
            | ErrorCode::StorageUnreachable
            | ErrorCode::CommentRequired
            | ErrorCode::ExportFormatUnsupported
            | ErrorCode::InvalidAssignee
            | ErrorCode::InvalidRoutingRule
            | ErrorCode::ConfigNotSuitableForBulk => StatusCode::BAD_REQUEST,
            ErrorCode::InvalidLink | ErrorCode::LinkExpired | ErrorCode::CsrfFailed => {
                StatusCode::FORBIDDEN
            }
            ErrorCode::AccountLocked => StatusCode::LOCKED,
            ErrorCode::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::ObjectTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::MlBackendFailed => StatusCode::BAD_GATEWAY,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden
            | ErrorCode::EndpointRefused
            | ErrorCode::ClientNotAllowed
            | ErrorCode::Paused
            | ErrorCode::PrivilegeEscalation
            | ErrorCode::SelfReview
            | ErrorCode::NotAuthor => StatusCode::FORBIDDEN,
            ErrorCode::InvalidInvitation => StatusCode::GONE,
            ErrorCode::NotFound
            | ErrorCode::InvalidPage
            | ErrorCode::NoMoreTasks
            | ErrorCode::NothingToReview => StatusCode::NOT_FOUND,
            ErrorCode::Conflict
            | ErrorCode::OverlapReached
            | ErrorCode::ManagedByGit
            | ErrorCode::ManagedByIdp => StatusCode::CONFLICT,
            ErrorCode::NotBuilt => StatusCode::NOT_IMPLEMENTED,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Timeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// An error a handler returns.
#[derive(Debug, thiserror::Error)]
#[error("{code:?}: {detail}")]
pub struct ApiError {
    /// Stable code.
    pub code: ErrorCode,
    /// Human-readable message that says what to fix.
    pub detail: String,
    /// Per-field messages for validation errors.
    pub validation_errors: Option<BTreeMap<String, Vec<String>>>,
    /// Logged, never sent.
    pub internal: Option<String>,
}

/// Result alias for handlers and repository functions.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            validation_errors: None,
            internal: None,
        }
    }

    /// 404 for a kind of object.
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// 400 on one field, in Label Studio's `validation_errors` shape.
    pub fn field(code: ErrorCode, field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut errors = BTreeMap::new();
        errors.insert(field.to_string(), vec![message.clone()]);
        Self {
            code,
            detail: format!("{field}: {message}"),
            validation_errors: Some(errors),
            internal: None,
        }
    }

    /// 400 with a bare message.
    pub fn bad_request(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::new(code, detail)
    }

    /// 401.
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, detail)
    }

    /// 500 with a cause that is logged only.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self {
            code: ErrorCode::Internal,
            detail: "internal server error; the request id identifies the log entry".into(),
            validation_errors: None,
            internal: Some(cause.to_string()),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::PoolTimedOut => Self {
                code: ErrorCode::Unavailable,
                detail: "the database is busy; retry shortly".into(),
                validation_errors: None,
                internal: Some(err.to_string()),
            },
            // A unique value taken by a request that committed first (two requests racing to
            // create the same thing): the caller's conflict, not a server failure.
            sqlx::Error::Database(e) if e.is_unique_violation() => Self {
                code: ErrorCode::Conflict,
                detail: "this conflicts with an object created at the same time (a value that must be unique is taken); read the current state and retry".into(),
                validation_errors: None,
                internal: Some(err.to_string()),
            },
            // An object referenced by the change was deleted at the same time.
            sqlx::Error::Database(e) if e.is_foreign_key_violation() => Self {
                code: ErrorCode::Conflict,
                detail: "an object this change refers to was deleted at the same time; read the current state and retry".into(),
                validation_errors: None,
                internal: Some(err.to_string()),
            },
            _ => Self::internal(err),
        }
    }
}

impl From<crate::storage::StorageError> for ApiError {
    fn from(err: crate::storage::StorageError) -> Self {
        Self::internal(err)
    }
}

/// The JSON error body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Request id (also in the `x-request-id` response header).
    pub id: String,
    /// The HTTP status code.
    pub status_code: u16,
    /// Server version.
    pub version: &'static str,
    /// Stable error code.
    pub code: ErrorCode,
    /// What went wrong and what to do.
    pub detail: String,
    /// Always null (Label Studio compatibility).
    pub exc_info: Option<String>,
    /// Per-field messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_errors: Option<BTreeMap<String, Vec<String>>>,
}

tokio::task_local! {
    /// The id of the request being served, for error bodies.
    pub static REQUEST_ID: String;
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let id = REQUEST_ID.try_with(Clone::clone).unwrap_or_default();
        if status.is_server_error() {
            tracing::error!(code = ?self.code, internal = ?self.internal, "request failed");
        }
        let body = ErrorBody {
            id,
            status_code: status.as_u16(),
            version: crate::VERSION,
            code: self.code,
            detail: self.detail,
            exc_info: None,
            validation_errors: self.validation_errors,
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert("www-authenticate", http::HeaderValue::from_static("Token"));
        }
        response
    }
}
