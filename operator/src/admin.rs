//! Client of an organization's control-plane admin API (`/api/admin/*`, bearer token). It only
//! speaks HTTP; what to send is decided by the Workspace and LabelingProject controllers.
//! The token is never logged or put into an error.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A failed call, classified so that the condition reason tells a person what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection (DNS, refused, timeout).
    #[error("control plane at {url} is unreachable: {message}")]
    Unreachable {
        /// Base URL.
        url: String,
        /// The transport error.
        message: String,
    },
    /// The admin token was refused (401/403) or the admin API is disabled (404 on everything).
    #[error("control plane at {url} refused the operator's admin token (HTTP {status})")]
    Unauthorized {
        /// Base URL.
        url: String,
        /// HTTP status.
        status: u16,
    },
    /// The request was refused as invalid (400/422), e.g. a bad label config.
    #[error("control plane rejected {what}: {detail}")]
    Rejected {
        /// What was sent.
        what: String,
        /// The API's `detail`.
        detail: String,
        /// The API's stable `code`.
        code: String,
    },
    /// Anything else (5xx, unexpected status or body).
    #[error("control plane error on {what}: HTTP {status}: {detail}")]
    Server {
        /// What was sent.
        what: String,
        /// HTTP status.
        status: u16,
        /// The API's `detail` or the body.
        detail: String,
    },
}

impl ClientError {
    /// The condition reason / metrics category of the error.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "ControlPlaneUnreachable",
            Self::Unauthorized { .. } => "ControlPlaneUnauthorized",
            Self::Rejected { code, .. }
                if code.contains("label_config") || code.contains("config") =>
            {
                "InvalidLabelConfig"
            }
            Self::Rejected { .. } => "RejectedByControlPlane",
            Self::Server { .. } => "ControlPlaneError",
        }
    }
    /// Whether retrying without a spec change can help.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Rejected { .. })
    }
}

/// `PUT /api/admin/organizations/{slug}` body.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct OrganizationParams {
    /// Display title.
    pub title: String,
    /// Owner e-mail.
    pub owner_email: String,
    /// `Organization/<name>`.
    pub managed_by: String,
    /// The owner's first API token; used only when the organization (or its owner) is created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_token: Option<String>,
}

/// `PUT …/workspaces/{key}` body.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct WorkspaceParams {
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// `Workspace/<namespace>/<name>`.
    pub managed_by: String,
}

/// A workspace as the control plane reports it.
#[derive(Deserialize, Debug, Clone, PartialEq)]
pub struct WorkspaceView {
    /// Id.
    pub id: i64,
    /// Key.
    pub key: String,
}

/// `PUT …/projects/{key}` body; fields left `None` are not sent and so not owned by Git.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct ProjectParams {
    /// Workspace key.
    pub workspace: String,
    /// Title.
    pub title: String,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Label config XML.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_config: Option<String>,
    /// Instructions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expert_instruction: Option<String>,
    /// Label Studio project settings (snake_case keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings: Option<Value>,
    /// `LabelingProject/<namespace>/<name>`.
    pub managed_by: String,
}

/// Progress counters of a project.
#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Tasks.
    #[serde(default)]
    pub task_number: i64,
    /// Annotations.
    #[serde(default)]
    pub total_annotations_number: i64,
    /// Tasks with annotations.
    #[serde(default)]
    pub num_tasks_with_annotations: i64,
    /// Finished tasks.
    #[serde(default)]
    pub finished_task_number: i64,
    /// Predictions.
    #[serde(default)]
    pub total_predictions_number: i64,
    /// Completion 0..1.
    #[serde(default)]
    pub completion: f64,
}

/// A project as the control plane reports it.
#[derive(Deserialize, Debug, Clone, PartialEq)]
pub struct ProjectView {
    /// Id.
    pub id: i64,
    /// Key.
    pub key: String,
    /// Fields owned by Git.
    #[serde(default)]
    pub managed_fields: Vec<String>,
    /// Progress.
    #[serde(default)]
    pub counts: Counts,
}

/// A client bound to one control plane and token.
#[derive(Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("base", &self.base)
            .field("token", &"<redacted>")
            .finish()
    }
}

fn seg(s: &str) -> String {
    // Slugs and keys are DNS labels (validated by the CRD schema); refuse anything else rather
    // than build a surprising path.
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

impl AdminClient {
    /// A client for `base` (e.g. `http://app.tenant.svc:8080`) with a bounded timeout.
    pub fn new(http: reqwest::Client, base: &str, token: &str) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    /// The shared HTTP client the operator uses for every control plane.
    pub fn http() -> reqwest::Client {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap_or_default()
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
        what: &str,
    ) -> Result<Option<T>, ClientError> {
        let is_write = method == Method::PUT;
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            message: e.to_string(),
        })?;
        let status = resp.status();
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let text = resp.text().await.map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            message: e.to_string(),
        })?;
        if status.is_success() {
            return serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| ClientError::Server {
                    what: what.to_owned(),
                    status: status.as_u16(),
                    detail: format!("unexpected response body: {e}"),
                });
        }
        let err: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let detail = err["detail"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| text.chars().take(300).collect());
        let code = err["code"].as_str().unwrap_or_default().to_owned();
        Err(match status.as_u16() {
            401 | 403 => ClientError::Unauthorized {
                url: self.base.clone(),
                status: status.as_u16(),
            },
            // Reads and archives of something unknown are answered with "nothing"; a write
            // naming something unknown (e.g. a project's workspace) is a rejected request.
            404 if !is_write => return Ok(None),
            404 => ClientError::Rejected {
                what: what.to_owned(),
                detail,
                code,
            },
            400 | 409 | 422 => ClientError::Rejected {
                what: what.to_owned(),
                detail,
                code,
            },
            s => ClientError::Server {
                what: what.to_owned(),
                status: s,
                detail,
            },
        })
    }

    fn missing(what: &str) -> ClientError {
        ClientError::Unauthorized {
            url: format!("(admin API answered 404 to {what}: is VERITY_INSTANCE_ADMIN_TOKEN set?)"),
            status: 404,
        }
    }

    /// Creates or updates the organization (200 or 201).
    pub async fn put_organization(
        &self,
        slug: &str,
        p: &OrganizationParams,
    ) -> Result<(), ClientError> {
        let what = format!("organization {slug}");
        let path = format!("/api/admin/organizations/{}", seg(slug));
        match self.call::<Value>(Method::PUT, &path, Some(p), &what).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(Self::missing(&what)),
            // Creating an organization names nothing that could be missing: a 404 here means
            // the admin API itself is off.
            Err(ClientError::Rejected { code, .. }) if code == "not_found" || code.is_empty() => {
                Err(Self::missing(&what))
            }
            Err(e) => Err(e),
        }
    }

    /// Creates, updates or un-archives a workspace.
    pub async fn put_workspace(
        &self,
        slug: &str,
        key: &str,
        p: &WorkspaceParams,
    ) -> Result<WorkspaceView, ClientError> {
        let what = format!("workspace {key}");
        self.call(
            Method::PUT,
            &format!(
                "/api/admin/organizations/{}/workspaces/{}",
                seg(slug),
                seg(key)
            ),
            Some(p),
            &what,
        )
        .await?
        .ok_or_else(|| Self::missing(&what))
    }

    /// Archives a workspace (missing is fine).
    pub async fn delete_workspace(&self, slug: &str, key: &str) -> Result<(), ClientError> {
        self.call::<Value>(
            Method::DELETE,
            &format!(
                "/api/admin/organizations/{}/workspaces/{}",
                seg(slug),
                seg(key)
            ),
            None::<&()>,
            key,
        )
        .await
        .map(|_| ())
    }

    /// Creates or updates a project.
    pub async fn put_project(
        &self,
        slug: &str,
        key: &str,
        p: &ProjectParams,
    ) -> Result<ProjectView, ClientError> {
        let what = format!("project {key}");
        self.call(
            Method::PUT,
            &format!(
                "/api/admin/organizations/{}/projects/{}",
                seg(slug),
                seg(key)
            ),
            Some(p),
            &what,
        )
        .await?
        .ok_or_else(|| Self::missing(&what))
    }

    /// Reads a project with fresh counts; `None` if unknown.
    pub async fn get_project(
        &self,
        slug: &str,
        key: &str,
    ) -> Result<Option<ProjectView>, ClientError> {
        self.call(
            Method::GET,
            &format!(
                "/api/admin/organizations/{}/projects/{}",
                seg(slug),
                seg(key)
            ),
            None::<&()>,
            key,
        )
        .await
    }

    /// Archives a project (missing is fine).
    pub async fn delete_project(&self, slug: &str, key: &str) -> Result<(), ClientError> {
        self.call::<Value>(
            Method::DELETE,
            &format!(
                "/api/admin/organizations/{}/projects/{}",
                seg(slug),
                seg(key)
            ),
            None::<&()>,
            key,
        )
        .await
        .map(|_| ())
    }
}
