//! Who may do what. Every repository function that reads or changes tenant data takes an
//! [`Actor`] and checks a [`Permission`] against the target resource before it touches a
//! connection (the project, workspace or organization the call is about), so a handler cannot
//! forget the check; handlers have no other way to the database (a test in `tests/` keeps
//! `sqlx` out of `src/http`).
//!
//! Three scopes:
//! - **organization** permissions are checked against the caller's organization role;
//! - **workspace** permissions against the caller's role in the workspace: Owners and Admins
//!   manage every workspace, a Manager manages the workspaces they are a member of;
//! - **project** permissions against the caller's role in the project ([`project_role`]):
//!   Owners and Admins act in every project, a Manager in projects of workspaces they belong to
//!   (or created), Reviewers and Annotators only where they are members of the project or its
//!   workspace. A project membership may carry its own role (annotator or reviewer), which
//!   applies independently of the organization role.
//!
//! The [`ENDPOINTS`] table declares every route's permission; the API documentation is
//! generated from it and the authorization matrix test walks it. Objects of another
//! organization are reported as not found, so their existence is never revealed; a missing
//! permission inside one's own organization is a 403 that names the permission.

use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorCode};

/// An organization role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Annotates tasks of the projects they can see.
    Annotator,
    /// Annotates and reviews.
    Reviewer,
    /// Creates projects and manages the workspaces they belong to.
    Manager,
    /// Organization-wide user management and settings.
    Admin,
    /// Everything, including billing-level settings (audit retention).
    Owner,
}

impl Role {
    /// Every role, least privileged first.
    pub const ALL: [Role; 5] = [
        Role::Annotator,
        Role::Reviewer,
        Role::Manager,
        Role::Admin,
        Role::Owner,
    ];

    /// The lowercase name stored in the database and used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Annotator => "annotator",
            Role::Reviewer => "reviewer",
            Role::Manager => "manager",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    /// Label Studio's two-letter role code (`OW`, `AD`, `MA`, `RE`, `AN`).
    pub fn ls_code(self) -> &'static str {
        match self {
            Role::Annotator => "AN",
            Role::Reviewer => "RE",
            Role::Manager => "MA",
            Role::Admin => "AD",
            Role::Owner => "OW",
        }
    }

    /// Parses a stored or user-supplied role name (case-insensitive; accepts LS codes).
    pub fn parse(s: &str) -> Option<Role> {
        match s.trim().to_ascii_lowercase().as_str() {
            "annotator" | "an" => Some(Role::Annotator),
            "reviewer" | "re" => Some(Role::Reviewer),
            "manager" | "ma" => Some(Role::Manager),
            "admin" | "administrator" | "ad" => Some(Role::Admin),
            "owner" | "ow" => Some(Role::Owner),
            _ => None,
        }
    }

    /// Whether this role may be held as a project-level role.
    pub fn is_project_role(self) -> bool {
        matches!(self, Role::Annotator | Role::Reviewer)
    }
}

/// What a permission is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The caller's organization role.
    Organization,
    /// The caller's role in one workspace.
    Workspace,
    /// The caller's role in one project.
    Project,
}

macro_rules! permissions {
    ($($variant:ident => $name:literal, $scope:ident, $role:ident, $doc:literal;)*) => {
        /// An action that needs a permission.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Permission {
            $(#[doc = $doc] $variant,)*
        }

        impl Permission {
            /// Every permission, for docs and tests.
            pub const ALL: &'static [Permission] = &[$(Permission::$variant,)*];

            /// Stable name used in 403 messages and docs.
            pub fn name(self) -> &'static str {
                match self { $(Permission::$variant => $name,)* }
            }

            /// What the permission is checked against.
            pub fn scope(self) -> Scope {
                match self { $(Permission::$variant => Scope::$scope,)* }
            }

            /// The least privileged role (in the permission's scope) that holds it. Roles are
            /// ordered, so a role holds every permission of the roles below it.
            pub fn minimum_role(self) -> Role {
                match self { $(Permission::$variant => Role::$role,)* }
            }

            /// One line for the docs.
            pub fn description(self) -> &'static str {
                match self { $(Permission::$variant => $doc,)* }
            }
        }
    };
}

permissions! {
    OrgView => "organization.view", Organization, Annotator, "See the organization and its members.";
    OrgManage => "organization.manage", Organization, Admin, "Change organization settings, roles and memberships; deactivate and reactivate members.";
    OrgBilling => "organization.billing", Organization, Owner, "Billing-level settings: audit-log retention.";
    InviteManage => "invitation.manage", Organization, Admin, "Create, list and revoke invitation links.";
    AuditView => "audit.view", Organization, Admin, "Query and export the audit log.";
    JobManage => "job.manage", Organization, Admin, "List failed background jobs; requeue or delete them.";
    WorkspaceCreate => "workspace.create", Organization, Manager, "Create workspaces.";
    ProjectCreate => "project.create", Organization, Manager, "Create projects.";
    WorkspaceView => "workspace.view", Workspace, Annotator, "See a workspace and its members.";
    WorkspaceManage => "workspace.manage", Workspace, Manager, "Change a workspace, its members and its projects.";
    ProjectView => "project.view", Project, Annotator, "See a project, its tasks, predictions and annotations.";
    ProjectChange => "project.change", Project, Manager, "Change project settings and the labeling configuration.";
    ProjectDelete => "project.delete", Project, Manager, "Delete a project.";
    MemberManage => "project.members", Project, Manager, "Add and remove project members, set project roles, pause annotators.";
    TaskManage => "task.manage", Project, Manager, "Import, change and delete tasks; assign them to annotators and reviewers.";
    AnnotationCreate => "annotation.create", Project, Annotator, "Take tasks from the label stream, create annotations and change or delete one's own.";
    AnnotationManage => "annotation.manage", Project, Reviewer, "Change or delete other people's annotations.";
    ReviewCreate => "review.create", Project, Reviewer, "Review other people's annotations (accept, fix and accept, reject), change and delete reviews, take annotations from the review stream.";
    AgreementView => "agreement.view", Project, Reviewer, "Read agreement statistics: task agreement, the annotator matrix, reliability (they compare everyone's annotations, so annotators may not).";
    GroundTruthManage => "ground_truth.manage", Project, Manager, "Mark an annotation as ground truth or clear the mark (the `ground_truth` field of an annotation).";
    PredictionManage => "prediction.manage", Project, Manager, "Create, change and delete predictions.";
    ExportRun => "export.run", Project, Manager, "Export project data.";
    MlManage => "ml.manage", Project, Manager, "Connect, change and disconnect the project's ML backends; start training and batch predictions.";
    StorageManage => "storage.manage", Project, Manager, "Connect, change, validate, sync and disconnect the project's storages (an import sync also needs task.manage, an export sync export.run).";
    WebhookManage => "webhook.manage", Project, Manager, "Create, change and delete the project's webhooks and read their delivery log (organization-wide webhooks need organization.manage).";
}

/// How a caller reaches a project: the facts [`project_role`] decides on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProjectMembership {
    /// The caller created the project.
    pub creator: bool,
    /// The caller is a member of the project's workspace.
    pub workspace_member: bool,
    /// The caller is a member of the project.
    pub project_member: bool,
    /// The project role of that membership, when one was set.
    pub project_role: Option<Role>,
}

/// The caller's role in a project, or `None` when the project is out of their reach.
pub fn project_role(org_role: Role, m: ProjectMembership) -> Option<Role> {
    let from_membership = || {
        if m.project_member {
            Some(m.project_role.unwrap_or(org_role.min(Role::Reviewer)))
        } else {
            None
        }
    };
    match org_role {
        Role::Owner | Role::Admin => Some(org_role),
        Role::Manager if m.workspace_member || m.creator => Some(Role::Manager),
        Role::Manager => from_membership(),
        Role::Annotator | Role::Reviewer => {
            from_membership().or(m.workspace_member.then_some(org_role))
        }
    }
}

/// The caller's role in a workspace, or `None` when it is out of their reach.
pub fn workspace_role(org_role: Role, member: bool) -> Option<Role> {
    match org_role {
        Role::Owner | Role::Admin => Some(org_role),
        _ if member => Some(org_role),
        _ => None,
    }
}

/// Checks a change of someone's organization role: `current` is their role now (`None` for a
/// new member), `new` the role asked for (`None` to deactivate them), `owners_after` the number
/// of active owners the organization would have afterwards. Refuses, with the reason, what
/// would escalate privilege: granting or touching Owner without being one, granting a role
/// above one's own, and leaving the organization without an active owner.
pub fn check_grant(
    actor_role: Role,
    current: Option<Role>,
    new: Option<Role>,
    owners_after: i64,
) -> Result<(), String> {
    if actor_role < Role::Admin {
        return Err(format!(
            "your role ({}) cannot change organization roles; the permission {} is needed",
            actor_role.as_str(),
            Permission::OrgManage.name()
        ));
    }
    if current == Some(Role::Owner) && actor_role != Role::Owner {
        return Err("only an owner can change or deactivate another owner".into());
    }
    if let Some(new) = new {
        if new == Role::Owner && actor_role != Role::Owner {
            return Err("only an owner can grant the owner role".into());
        }
        if new > actor_role {
            return Err(format!(
                "you cannot grant the role {} because it is above your own ({})",
                new.as_str(),
                actor_role.as_str()
            ));
        }
    }
    if owners_after < 1 {
        return Err(
            "this would leave the organization without an active owner; make someone else owner first"
                .into(),
        );
    }
    Ok(())
}

/// Where a request came from, recorded in the audit log.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    /// The request id (`x-request-id`).
    pub request_id: String,
    /// The client address.
    pub client_ip: String,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// Method and route of the request (`PATCH /api/workspaces/{id}`); empty outside HTTP.
    pub route: String,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Actor {
    /// User id (0 for the instance itself: CLI and admin API).
    pub user_id: i64,
    /// The organization the request acts in (the user's active organization).
    pub org_id: i64,
    /// The user's role in that organization.
    pub role: Role,
    /// The user's email (for messages and the audit log).
    pub email: String,
    /// Where the request came from.
    pub meta: RequestMeta,
}

impl Actor {
    /// The instance acting inside one organization as its owner: `verity` CLI commands and the
    /// instance admin API. Audited as `instance`.
    pub fn instance(org_id: i64, meta: RequestMeta) -> Self {
        Self {
            user_id: 0,
            org_id,
            role: Role::Owner,
            email: "instance".into(),
            meta,
        }
    }

    /// Whether the actor's organization role holds `permission` (organization scope).
    pub fn can(&self, permission: Permission) -> bool {
        self.role >= permission.minimum_role()
    }

    /// Fails with 403 naming the permission when the actor's organization role lacks it.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.can(permission) {
            Ok(())
        } else {
            Err(forbidden(self.role, permission, "your role"))
        }
    }

    /// Fails with 403 naming the permission unless `role` (the actor's role in a project or
    /// workspace, `None` when they are not a member) holds it.
    pub fn require_in(&self, role: Option<Role>, permission: Permission) -> Result<(), ApiError> {
        match role {
            Some(r) if r >= permission.minimum_role() => Ok(()),
            Some(r) => Err(forbidden(r, permission, "your role here")),
            None => Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "you are not a member here and lack the permission {}; ask a manager to add you",
                    permission.name()
                ),
            )),
        }
    }
}

fn forbidden(role: Role, permission: Permission, whose: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Forbidden,
        format!(
            "{whose} ({}) lacks the permission {}; ask an administrator of your organization",
            role.as_str(),
            permission.name()
        ),
    )
}

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials.
    Public,
    /// Any signed-in member, acting on themselves.
    SignedIn,
    /// This permission, in the scope the permission declares.
    Needs(Permission),
    /// The author of the target object needs `author`; anyone else needs `others` (both in the
    /// same scope). Checked through [`Access::required`], so what the table says is what the
    /// code enforces.
    AuthorOr {
        /// What the author needs.
        author: Permission,
        /// What everyone else needs.
        others: Permission,
    },
    /// The instance administrator token (`instance_admin_token`).
    InstanceAdmin,
}

impl Access {
    /// The permission a caller needs, given whether they authored the target object (`None`:
    /// no permission check of this kind).
    pub fn required(self, is_author: bool) -> Option<Permission> {
        match self {
            Access::Needs(p) => Some(p),
            Access::AuthorOr { author, others } => Some(if is_author { author } else { others }),
            Access::Public | Access::SignedIn | Access::InstanceAdmin => None,
        }
    }
}

/// An annotator's own statistics (finished tasks, review score) with `project.view`; anyone
/// else's with `agreement.view`.
pub const OWN_STATS: Access = Access::AuthorOr {
    author: Permission::ProjectView,
    others: Permission::AgreementView,
};

/// Changing or deleting an annotation: one's own with `annotation.create`, anyone else's with
/// `annotation.manage`.
pub const CHANGE_ANNOTATION: Access = Access::AuthorOr {
    author: Permission::AnnotationCreate,
    others: Permission::AnnotationManage,
};

/// Changing or deleting a data-manager view: one's own with `project.view`, anyone else's with
/// `task.manage` (ADR 0033).
pub const CHANGE_VIEW: Access = Access::AuthorOr {
    author: Permission::ProjectView,
    others: Permission::TaskManage,
};

/// Changing a comment (ADR 0038): one's own with `project.view`; anyone else's (resolving or
/// reopening it) with `review.create`. The annotation's author may also resolve comments on it.
pub const CHANGE_COMMENT: Access = Access::AuthorOr {
    author: Permission::ProjectView,
    others: Permission::ReviewCreate,
};

/// Deleting a comment (ADR 0038): one's own with `project.view`; anyone else's (moderation) with
/// `project.change`.
pub const DELETE_COMMENT: Access = Access::AuthorOr {
    author: Permission::ProjectView,
    others: Permission::ProjectChange,
};

/// One route and the permission it requires.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// HTTP method.
    pub method: &'static str,
    /// Path as in the OpenAPI document.
    pub path: &'static str,
    /// Required access.
    pub access: Access,
}

const fn ep(method: &'static str, path: &'static str, access: Access) -> Endpoint {
    Endpoint {
        method,
        path,
        access,
    }
}

use Access::{InstanceAdmin, Needs, Public, SignedIn};
use Permission as P;

/// Every endpoint of the API and what it requires. A route without an entry fails the tests.
pub const ENDPOINTS: &[Endpoint] = &[
    // Service and documentation.
    ep("GET", "/health", Public),
    ep("GET", "/livez", Public),
    ep("GET", "/readyz", Public),
    ep("GET", "/metrics", Public),
    ep("GET", "/api/version", Public),
    ep("GET", "/api/openapi.json", Public),
    // The caller's own account and tokens.
    ep("GET", "/api/current-user/whoami", SignedIn),
    ep("GET", "/api/current-user", SignedIn),
    ep("PATCH", "/api/current-user", SignedIn),
    ep("GET", "/api/current-user/token", SignedIn),
    ep("POST", "/api/current-user/reset-token", SignedIn),
    ep("GET", "/api/token", SignedIn),
    ep("POST", "/api/token", SignedIn),
    ep("POST", "/api/token/refresh", Public),
    ep("POST", "/api/token/blacklist", SignedIn),
    ep("POST", "/api/token/rotate", SignedIn),
    ep("POST", "/api/invitations/accept", Public),
    // Organization, members and invitations.
    ep("GET", "/api/organizations", SignedIn),
    ep("GET", "/api/organizations/{id}", Needs(P::OrgView)),
    ep("PATCH", "/api/organizations/{id}", Needs(P::OrgManage)),
    ep(
        "GET",
        "/api/organizations/{id}/memberships",
        Needs(P::OrgView),
    ),
    ep(
        "PATCH",
        "/api/organizations/{id}/memberships",
        Needs(P::OrgManage),
    ),
    ep(
        "POST",
        "/api/organizations/{id}/memberships/bulk",
        Needs(P::OrgManage),
    ),
    ep(
        "GET",
        "/api/organizations/{id}/memberships/{user_pk}",
        Needs(P::OrgView),
    ),
    ep(
        "DELETE",
        "/api/organizations/{id}/memberships/{user_pk}",
        Needs(P::OrgManage),
    ),
    ep("GET", "/api/users", Needs(P::OrgView)),
    ep("POST", "/api/users", Needs(P::OrgManage)),
    ep("GET", "/api/users/{id}", Needs(P::OrgView)),
    ep("PATCH", "/api/users/{id}", Needs(P::OrgManage)),
    ep("DELETE", "/api/users/{id}", Needs(P::OrgManage)),
    ep("GET", "/api/invitations", Needs(P::InviteManage)),
    ep("POST", "/api/invitations", Needs(P::InviteManage)),
    ep("DELETE", "/api/invitations/{id}", Needs(P::InviteManage)),
    ep("GET", "/api/audit-log", Needs(P::AuditView)),
    ep("GET", "/api/audit-log/export", Needs(P::AuditView)),
    // SCIM provisioning settings (the protocol at /scim/v2 takes the provisioning token).
    ep("GET", "/api/scim/settings", Needs(P::OrgManage)),
    ep("POST", "/api/scim/settings", Needs(P::OrgManage)),
    ep("POST", "/api/scim/token", Needs(P::OrgManage)),
    ep("GET", "/api/session-policy", Needs(P::OrgManage)),
    ep("PATCH", "/api/session-policy", Needs(P::OrgManage)),
    ep("GET", "/api/access-policy", Needs(P::OrgManage)),
    ep("PATCH", "/api/access-policy", Needs(P::OrgManage)),
    // SAML single sign-on settings (the protocol pages at /saml/{org}/… are public).
    ep("GET", "/api/saml/settings", Needs(P::OrgManage)),
    ep("POST", "/api/saml/settings", Needs(P::OrgManage)),
    ep("DELETE", "/api/saml/settings", Needs(P::OrgManage)),
    ep(
        "POST",
        "/api/saml/settings/validate-metadata-url",
        Needs(P::OrgManage),
    ),
    // LDAP sign-in settings of the organization.
    ep("GET", "/api/ldap/settings", Needs(P::OrgManage)),
    ep("POST", "/api/ldap/settings", Needs(P::OrgManage)),
    ep("DELETE", "/api/ldap/settings", Needs(P::OrgManage)),
    ep("POST", "/api/ldap/settings/test", Needs(P::OrgManage)),
    // Background jobs.
    ep("GET", "/api/jobs/{id}", Needs(P::OrgView)),
    ep("GET", "/api/jobs", Needs(P::JobManage)),
    ep("POST", "/api/jobs/{id}/requeue", Needs(P::JobManage)),
    ep("DELETE", "/api/jobs/{id}", Needs(P::JobManage)),
    // ML backends.
    ep("GET", "/api/ml", Needs(P::ProjectView)),
    ep("POST", "/api/ml", Needs(P::MlManage)),
    ep("GET", "/api/ml/{id}", Needs(P::ProjectView)),
    ep("PATCH", "/api/ml/{id}", Needs(P::MlManage)),
    ep("DELETE", "/api/ml/{id}", Needs(P::MlManage)),
    ep("POST", "/api/ml/{id}/train", Needs(P::MlManage)),
    ep("POST", "/api/ml/{id}/predict", Needs(P::MlManage)),
    ep("POST", "/api/ml/{id}/predict/test", Needs(P::MlManage)),
    ep("GET", "/api/ml/{id}/versions", Needs(P::MlManage)),
    ep(
        "POST",
        "/api/ml/{id}/interactive-annotating",
        Needs(P::AnnotationCreate),
    ),
    // Storages and media.
    ep("GET", "/api/storages/localfiles", Needs(P::StorageManage)),
    ep("POST", "/api/storages/localfiles", Needs(P::StorageManage)),
    ep(
        "POST",
        "/api/storages/localfiles/validate",
        Needs(P::StorageManage),
    ),
    ep(
        "GET",
        "/api/storages/localfiles/{id}",
        Needs(P::StorageManage),
    ),
    ep(
        "PATCH",
        "/api/storages/localfiles/{id}",
        Needs(P::StorageManage),
    ),
    ep(
        "DELETE",
        "/api/storages/localfiles/{id}",
        Needs(P::StorageManage),
    ),
    ep(
        "POST",
        "/api/storages/localfiles/{id}/sync",
        Needs(P::StorageManage),
    ),
    ep(
        "GET",
        "/api/storages/export/localfiles",
        Needs(P::StorageManage),
    ),
    ep(
        "POST",
        "/api/storages/export/localfiles",
        Needs(P::StorageManage),
    ),
    ep(
        "POST",
        "/api/storages/export/localfiles/validate",
        Needs(P::StorageManage),
    ),
    ep(
        "GET",
        "/api/storages/export/localfiles/{id}",
        Needs(P::StorageManage),
    ),
    ep(
        "PATCH",
        "/api/storages/export/localfiles/{id}",
        Needs(P::StorageManage),
    ),
    ep(
        "DELETE",
        "/api/storages/export/localfiles/{id}",
        Needs(P::StorageManage),
    ),
    ep(
        "POST",
        "/api/storages/export/localfiles/{id}/sync",
        Needs(P::StorageManage),
    ),
    // S3 storages (ADR 0026).
    ep("GET", "/api/storages/s3", Needs(P::StorageManage)),
    ep("POST", "/api/storages/s3", Needs(P::StorageManage)),
    ep("POST", "/api/storages/s3/validate", Needs(P::StorageManage)),
    ep("GET", "/api/storages/s3/{id}", Needs(P::StorageManage)),
    ep("PATCH", "/api/storages/s3/{id}", Needs(P::StorageManage)),
    ep("DELETE", "/api/storages/s3/{id}", Needs(P::StorageManage)),
    ep(
        "POST",
        "/api/storages/s3/{id}/sync",
        Needs(P::StorageManage),
    ),
    ep("GET", "/api/storages/export/s3", Needs(P::StorageManage)),
    ep("POST", "/api/storages/export/s3", Needs(P::StorageManage)),
    ep(
        "POST",
        "/api/storages/export/s3/validate",
        Needs(P::StorageManage),
    ),
    ep(
        "GET",
        "/api/storages/export/s3/{id}",
        Needs(P::StorageManage),
    ),
    ep(
        "PATCH",
        "/api/storages/export/s3/{id}",
        Needs(P::StorageManage),
    ),
    ep(
        "DELETE",
        "/api/storages/export/s3/{id}",
        Needs(P::StorageManage),
    ),
    ep(
        "POST",
        "/api/storages/export/s3/{id}/sync",
        Needs(P::StorageManage),
    ),
    // GCS and Azure Blob storages (ADR 0028).
    ep("GET", "/api/storages/gcs", Needs(P::StorageManage)),
    ep("POST", "/api/storages/gcs", Needs(P::StorageManage)),
    ep(
        "POST",
        "/api/storages/gcs/validate",
        Needs(P::StorageManage),
    ),
    ep("GET", "/api/storages/gcs/{id}", Needs(P::StorageManage)),
    ep("PATCH", "/api/storages/gcs/{id}", Needs(P::StorageManage)),
    ep("DELETE", "/api/storages/gcs/{id}", Needs(P::StorageManage)),
    ep(
        "POST",
        "/api/storages/gcs/{id}/sync",
        Needs(P::StorageManage),
    ),
    ep("GET", "/api/storages/export/gcs", Needs(P::StorageManage)),
    ep("POST", "/api/storages/export/gcs", Needs(P::StorageManage)),
    ep(
        "POST",
        "/api/storages/export/gcs/validate",
        Needs(P::StorageManage),
    ),
    ep(
        "GET",
        "/api/storages/export/gcs/{id}",
        Needs(P::StorageManage),
    ),
    ep(
        "PATCH",
        "/api/storages/export/gcs/{id}",
        Needs(P::StorageManage),
    ),
    ep(
        "DELETE",
        "/api/storages/export/gcs/{id}",
        Needs(P::StorageManage),
    ),
    ep(
        "POST",
        "/api/storages/export/gcs/{id}/sync",
        Needs(P::StorageManage),
    ),
    ep("GET", "/api/storages/azure", Needs(P::StorageManage)),
    ep("POST", "/api/storages/azure", Needs(P::StorageManage)),
    ep(
        "POST",
        "/api/storages/azure/validate",
        Needs(P::StorageManage),
    ),
    ep("GET", "/api/storages/azure/{id}", Needs(P::StorageManage)),
    ep("PATCH", "/api/storages/azure/{id}", Needs(P::StorageManage)),
    ep(
        "DELETE",
        "/api/storages/azure/{id}",
        Needs(P::StorageManage),
    ),
    ep(
        "POST",
        "/api/storages/azure/{id}/sync",
        Needs(P::StorageManage),
    ),
    ep("GET", "/api/storages/export/azure", Needs(P::StorageManage)),
    ep(
        "POST",
        "/api/storages/export/azure",
        Needs(P::StorageManage),
    ),
    ep(
        "POST",
        "/api/storages/export/azure/validate",
        Needs(P::StorageManage),
    ),
    ep(
        "GET",
        "/api/storages/export/azure/{id}",
        Needs(P::StorageManage),
    ),
    ep(
        "PATCH",
        "/api/storages/export/azure/{id}",
        Needs(P::StorageManage),
    ),
    ep(
        "DELETE",
        "/api/storages/export/azure/{id}",
        Needs(P::StorageManage),
    ),
    ep(
        "POST",
        "/api/storages/export/azure/{id}/sync",
        Needs(P::StorageManage),
    ),
    // Label Studio Enterprise's S3-by-IAM-role and Azure-by-service-principal types.
    ep("GET", "/api/storages/s3s", Needs(P::StorageManage)),
    ep("POST", "/api/storages/s3s", Needs(P::StorageManage)),
    ep(
        "POST",
        "/api/storages/s3s/validate",
        Needs(P::StorageManage),
    ),
    ep("GET", "/api/storages/s3s/{id}", Needs(P::StorageManage)),
    ep("PATCH", "/api/storages/s3s/{id}", Needs(P::StorageManage)),
    ep("DELETE", "/api/storages/s3s/{id}", Needs(P::StorageManage)),
    ep(
        "POST",
        "/api/storages/s3s/{id}/sync",
        Needs(P::StorageManage),
    ),
    ep("GET", "/api/storages/export/s3s", Needs(P::StorageManage)),
    ep("POST", "/api/storages/export/s3s", Needs(P::StorageManage)),
    ep(
        "POST",
        "/api/storages/export/s3s/validate",
        Needs(P::StorageManage),
    ),
    ep(
        "GET",
        "/api/storages/export/s3s/{id}",
        Needs(P::StorageManage),
    ),
    ep(
        "PATCH",
        "/api/storages/export/s3s/{id}",
        Needs(P::StorageManage),
    ),
    ep(
        "DELETE",
        "/api/storages/export/s3s/{id}",
        Needs(P::StorageManage),
    ),
    ep(
        "POST",
        "/api/storages/export/s3s/{id}/sync",
        Needs(P::StorageManage),
    ),
    ep("GET", "/api/storages/azure_spi", Needs(P::StorageManage)),
    ep("POST", "/api/storages/azure_spi", Needs(P::StorageManage)),
    ep(
        "POST",
        "/api/storages/azure_spi/validate",
        Needs(P::StorageManage),
    ),
    ep(
        "GET",
        "/api/storages/azure_spi/{id}",
        Needs(P::StorageManage),
    ),
    ep(
        "PATCH",
        "/api/storages/azure_spi/{id}",
        Needs(P::StorageManage),
    ),
    ep(
        "DELETE",
        "/api/storages/azure_spi/{id}",
        Needs(P::StorageManage),
    ),
    ep(
        "POST",
        "/api/storages/azure_spi/{id}/sync",
        Needs(P::StorageManage),
    ),
    ep(
        "GET",
        "/api/storages/export/azure_spi",
        Needs(P::StorageManage),
    ),
    ep(
        "POST",
        "/api/storages/export/azure_spi",
        Needs(P::StorageManage),
    ),
    ep(
        "POST",
        "/api/storages/export/azure_spi/validate",
        Needs(P::StorageManage),
    ),
    ep(
        "GET",
        "/api/storages/export/azure_spi/{id}",
        Needs(P::StorageManage),
    ),
    ep(
        "PATCH",
        "/api/storages/export/azure_spi/{id}",
        Needs(P::StorageManage),
    ),
    ep(
        "DELETE",
        "/api/storages/export/azure_spi/{id}",
        Needs(P::StorageManage),
    ),
    ep(
        "POST",
        "/api/storages/export/azure_spi/{id}/sync",
        Needs(P::StorageManage),
    ),
    // Storage types (static) and every storage of a project.
    ep("GET", "/api/storages/types", SignedIn),
    ep("GET", "/api/storages/export/types", SignedIn),
    ep("GET", "/api/storages", Needs(P::StorageManage)),
    ep("GET", "/api/storages/export", Needs(P::StorageManage)),
    ep("GET", "/api/tasks/{id}/presign", Needs(P::ProjectView)),
    ep("GET", "/data/local-files", SignedIn),
    ep("GET", "/storage-proxy/{token}", Public),
    // Reviews (ADR 0024).
    ep("GET", "/api/annotation-reviews", Needs(P::ProjectView)),
    ep("POST", "/api/annotation-reviews", Needs(P::ReviewCreate)),
    ep("GET", "/api/annotation-reviews/{id}", Needs(P::ProjectView)),
    ep(
        "PATCH",
        "/api/annotation-reviews/{id}",
        Needs(P::ReviewCreate),
    ),
    ep(
        "DELETE",
        "/api/annotation-reviews/{id}",
        Needs(P::ReviewCreate),
    ),
    ep(
        "GET",
        "/api/annotations/{id}/history",
        Needs(P::ProjectView),
    ),
    ep("GET", "/api/comments", Needs(P::ProjectView)),
    ep("POST", "/api/comments", Needs(P::ProjectView)),
    ep("GET", "/api/comments/export", Needs(P::ProjectView)),
    ep("GET", "/api/comments/{id}", Needs(P::ProjectView)),
    ep("PATCH", "/api/comments/{id}", CHANGE_COMMENT),
    ep("DELETE", "/api/comments/{id}", DELETE_COMMENT),
    // One's own notifications of comments (ADR 0051).
    ep("GET", "/api/notifications", SignedIn),
    ep("GET", "/api/notifications/count", SignedIn),
    ep("POST", "/api/notifications/mark-read", SignedIn),
    ep(
        "GET",
        "/api/projects/{id}/review/next",
        Needs(P::ReviewCreate),
    ),
    // Webhooks.
    ep("GET", "/api/webhooks/info", SignedIn),
    ep("GET", "/api/webhooks", Needs(P::WebhookManage)),
    ep("POST", "/api/webhooks", Needs(P::WebhookManage)),
    ep("GET", "/api/webhooks/{id}", Needs(P::WebhookManage)),
    ep("PATCH", "/api/webhooks/{id}", Needs(P::WebhookManage)),
    ep("DELETE", "/api/webhooks/{id}", Needs(P::WebhookManage)),
    ep(
        "GET",
        "/api/webhooks/{id}/deliveries",
        Needs(P::WebhookManage),
    ),
    // Workspaces.
    ep("GET", "/api/workspaces", SignedIn),
    ep("POST", "/api/workspaces", Needs(P::WorkspaceCreate)),
    ep("GET", "/api/workspaces/{id}", Needs(P::WorkspaceView)),
    ep("PATCH", "/api/workspaces/{id}", Needs(P::WorkspaceManage)),
    ep("DELETE", "/api/workspaces/{id}", Needs(P::WorkspaceManage)),
    ep(
        "GET",
        "/api/workspaces/{id}/memberships",
        Needs(P::WorkspaceView),
    ),
    ep(
        "POST",
        "/api/workspaces/{id}/memberships",
        Needs(P::WorkspaceManage),
    ),
    ep(
        "DELETE",
        "/api/workspaces/{id}/memberships",
        Needs(P::WorkspaceManage),
    ),
    ep(
        "POST",
        "/api/workspaces/{id}/memberships/bulk",
        Needs(P::WorkspaceManage),
    ),
    ep(
        "DELETE",
        "/api/workspaces/{id}/memberships/bulk",
        Needs(P::WorkspaceManage),
    ),
    ep(
        "GET",
        "/api/workspaces/{id}/projects",
        Needs(P::WorkspaceView),
    ),
    ep(
        "POST",
        "/api/workspaces/{id}/projects",
        Needs(P::WorkspaceManage),
    ),
    ep(
        "DELETE",
        "/api/workspaces/{id}/projects",
        Needs(P::WorkspaceManage),
    ),
    // Projects.
    ep("GET", "/api/projects", SignedIn),
    ep("POST", "/api/projects", Needs(P::ProjectCreate)),
    ep("POST", "/api/projects/validate", SignedIn),
    ep("POST", "/api/projects/roles", Needs(P::MemberManage)),
    ep("GET", "/api/projects/{id}", Needs(P::ProjectView)),
    ep("PATCH", "/api/projects/{id}", Needs(P::ProjectChange)),
    ep(
        "GET",
        "/api/projects/{id}/metricparam",
        Needs(P::ProjectView),
    ),
    ep(
        "POST",
        "/api/projects/{id}/metricparam",
        Needs(P::ProjectChange),
    ),
    ep(
        "GET",
        "/api/projects/{id}/review-routing-rules",
        Needs(P::ReviewCreate),
    ),
    ep(
        "POST",
        "/api/projects/{id}/review-routing-rules/bulk",
        Needs(P::ProjectChange),
    ),
    ep("DELETE", "/api/projects/{id}", Needs(P::ProjectDelete)),
    ep("POST", "/api/projects/{id}/validate", Needs(P::ProjectView)),
    ep("GET", "/api/projects/{id}/members", Needs(P::ProjectView)),
    ep("POST", "/api/projects/{id}/members", Needs(P::MemberManage)),
    ep(
        "DELETE",
        "/api/projects/{id}/members",
        Needs(P::MemberManage),
    ),
    ep(
        "POST",
        "/api/projects/{id}/members/bulk",
        Needs(P::MemberManage),
    ),
    ep(
        "DELETE",
        "/api/projects/{id}/members/bulk",
        Needs(P::MemberManage),
    ),
    ep(
        "GET",
        "/api/projects/{id}/members/{user_pk}/pauses",
        Needs(P::MemberManage),
    ),
    ep(
        "POST",
        "/api/projects/{id}/members/{user_pk}/pauses",
        Needs(P::MemberManage),
    ),
    ep(
        "GET",
        "/api/projects/{id}/members/{user_pk}/pauses/{pause_pk}",
        Needs(P::MemberManage),
    ),
    ep(
        "PATCH",
        "/api/projects/{id}/members/{user_pk}/pauses/{pause_pk}",
        Needs(P::MemberManage),
    ),
    ep(
        "DELETE",
        "/api/projects/{id}/members/{user_pk}/pauses/{pause_pk}",
        Needs(P::MemberManage),
    ),
    ep("GET", "/api/projects/{id}/next", Needs(P::AnnotationCreate)),
    // Agreement statistics (ADR 0025).
    ep(
        "GET",
        "/api/projects/{id}/stats/total_agreement",
        Needs(P::AgreementView),
    ),
    ep(
        "GET",
        "/api/projects/{id}/stats/IAA",
        Needs(P::AgreementView),
    ),
    ep(
        "GET",
        "/api/projects/{id}/stats/reliability",
        Needs(P::AgreementView),
    ),
    ep(
        "GET",
        "/api/projects/{id}/tasks/{task_pk}/agreement-matrix",
        Needs(P::AgreementView),
    ),
    // Annotator statistics (ADR 0025).
    ep(
        "GET",
        "/api/projects/{id}/stats/agreement_annotator/{user_pk}",
        Needs(P::AgreementView),
    ),
    ep(
        "GET",
        "/api/projects/{id}/stats/agreement_annotators",
        Needs(P::AgreementView),
    ),
    ep(
        "GET",
        "/api/projects/{id}/stats/agreement-groundtruth",
        Needs(P::AgreementView),
    ),
    ep(
        "GET",
        "/api/projects/{id}/users/{user_pk}/stats/agreement-groundtruth",
        Needs(P::AgreementView),
    ),
    ep("GET", "/api/projects/{id}/stats/finished", OWN_STATS),
    ep(
        "GET",
        "/api/projects/{id}/stats/lead_time",
        Needs(P::AgreementView),
    ),
    ep(
        "GET",
        "/api/projects/{id}/stats/label-distribution/structure",
        Needs(P::AgreementView),
    ),
    ep(
        "GET",
        "/api/projects/{id}/stats/label-distribution/counts",
        Needs(P::AgreementView),
    ),
    // Organization KPIs (ADR 0060): every member; the answer covers what they may see.
    ep("GET", "/api/analytics/kpis", Needs(P::OrgView)),
    ep("GET", "/api/analytics/kpis/{kpi_key}", Needs(P::OrgView)),
    ep(
        "GET",
        "/api/projects/{id}/stats/member_performance_rows",
        Needs(P::AgreementView),
    ),
    ep(
        "GET",
        "/api/projects/{id}/stats/member_performance_summary",
        Needs(P::AgreementView),
    ),
    ep(
        "GET",
        "/api/projects/{id}/stats/member_performance_participants",
        Needs(P::AgreementView),
    ),
    ep(
        "GET",
        "/api/projects/{id}/user-stats/review_score",
        Needs(P::AgreementView),
    ),
    ep(
        "GET",
        "/api/projects/{id}/user-stats/{user_pk}/review_score",
        OWN_STATS,
    ),
    ep("GET", "/api/projects/{id}/tasks", Needs(P::ProjectView)),
    ep("DELETE", "/api/projects/{id}/tasks", Needs(P::TaskManage)),
    // Task assignments (manual distribution, ADR 0039).
    ep(
        "GET",
        "/api/projects/{id}/tasks/{task_pk}/assignees",
        Needs(P::TaskManage),
    ),
    ep(
        "POST",
        "/api/projects/{id}/tasks/{task_pk}/assignees",
        Needs(P::TaskManage),
    ),
    ep(
        "PATCH",
        "/api/projects/{id}/tasks/{task_pk}/assignees",
        Needs(P::TaskManage),
    ),
    ep(
        "DELETE",
        "/api/projects/{id}/tasks/{task_pk}/assignees",
        Needs(P::TaskManage),
    ),
    ep(
        "POST",
        "/api/projects/{id}/tasks/assignees",
        Needs(P::TaskManage),
    ),
    ep("POST", "/api/projects/{id}/import", Needs(P::TaskManage)),
    ep(
        "GET",
        "/api/projects/{id}/file-uploads",
        Needs(P::ProjectView),
    ),
    ep(
        "DELETE",
        "/api/projects/{id}/file-uploads",
        Needs(P::TaskManage),
    ),
    ep("GET", "/api/import/file-upload/{id}", Needs(P::ProjectView)),
    ep(
        "PATCH",
        "/api/import/file-upload/{id}",
        Needs(P::TaskManage),
    ),
    ep(
        "DELETE",
        "/api/import/file-upload/{id}",
        Needs(P::TaskManage),
    ),
    ep(
        "GET",
        "/data/upload/{project}/{file}",
        Needs(P::ProjectView),
    ),
    ep(
        "GET",
        "/api/projects/{id}/imports/{import_pk}",
        Needs(P::TaskManage),
    ),
    ep(
        "POST",
        "/api/projects/{id}/import/predictions",
        Needs(P::PredictionManage),
    ),
    ep("GET", "/api/projects/{id}/export", Needs(P::ExportRun)),
    ep(
        "GET",
        "/api/projects/{id}/export/formats",
        Needs(P::ProjectView),
    ),
    ep("GET", "/api/projects/{id}/exports", Needs(P::ExportRun)),
    ep("POST", "/api/projects/{id}/exports", Needs(P::ExportRun)),
    ep(
        "GET",
        "/api/projects/{id}/exports/{export_pk}",
        Needs(P::ExportRun),
    ),
    ep(
        "DELETE",
        "/api/projects/{id}/exports/{export_pk}",
        Needs(P::ExportRun),
    ),
    ep(
        "POST",
        "/api/projects/{id}/exports/{export_pk}/convert",
        Needs(P::ExportRun),
    ),
    ep(
        "GET",
        "/api/projects/{id}/exports/{export_pk}/download",
        Needs(P::ExportRun),
    ),
    ep("GET", "/api/dm/actions", Needs(P::ProjectView)),
    ep("POST", "/api/dm/actions", Needs(P::TaskManage)),
    ep("GET", "/api/dm/columns", Needs(P::ProjectView)),
    ep("GET", "/api/dm/views", Needs(P::ProjectView)),
    ep("POST", "/api/dm/views", Needs(P::ProjectView)),
    ep("GET", "/api/dm/views/{id}", Needs(P::ProjectView)),
    ep("PATCH", "/api/dm/views/{id}", CHANGE_VIEW),
    ep("DELETE", "/api/dm/views/{id}", CHANGE_VIEW),
    ep("DELETE", "/api/dm/views/reset", Needs(P::ProjectView)),
    ep("POST", "/api/dm/views/order", Needs(P::ProjectView)),
    // Tasks, annotations, predictions.
    ep("GET", "/api/tasks", Needs(P::ProjectView)),
    ep("POST", "/api/tasks", Needs(P::TaskManage)),
    ep("GET", "/api/tasks/{id}", Needs(P::ProjectView)),
    ep("PATCH", "/api/tasks/{id}", Needs(P::TaskManage)),
    ep("DELETE", "/api/tasks/{id}", Needs(P::TaskManage)),
    ep("GET", "/api/tasks/{id}/annotations", Needs(P::ProjectView)),
    ep(
        "POST",
        "/api/tasks/{id}/annotations",
        Needs(P::AnnotationCreate),
    ),
    // Drafts (ADR 0044): only ever the caller's own; anyone else's is not found.
    ep("GET", "/api/tasks/{id}/drafts", Needs(P::ProjectView)),
    ep("POST", "/api/tasks/{id}/drafts", Needs(P::AnnotationCreate)),
    ep(
        "GET",
        "/api/tasks/{id}/annotations/{annotation_pk}/drafts",
        Needs(P::ProjectView),
    ),
    ep(
        "POST",
        "/api/tasks/{id}/annotations/{annotation_pk}/drafts",
        Needs(P::AnnotationCreate),
    ),
    ep("GET", "/api/drafts/{id}", Needs(P::ProjectView)),
    ep("PATCH", "/api/drafts/{id}", Needs(P::AnnotationCreate)),
    ep("DELETE", "/api/drafts/{id}", Needs(P::ProjectView)),
    ep("GET", "/api/annotations/{id}", Needs(P::ProjectView)),
    ep("PATCH", "/api/annotations/{id}", CHANGE_ANNOTATION),
    ep("DELETE", "/api/annotations/{id}", CHANGE_ANNOTATION),
    ep(
        "POST",
        "/api/annotations/{id}/convert-to-draft",
        Needs(P::AnnotationCreate),
    ),
    // Bulk labeling and bulk deletion (ADR 0061): Reviewer and above.
    ep("POST", "/api/annotations/bulk", Needs(P::AnnotationManage)),
    ep(
        "POST",
        "/api/annotations/bulk-delete",
        Needs(P::AnnotationManage),
    ),
    ep("GET", "/api/predictions", Needs(P::ProjectView)),
    ep("POST", "/api/predictions", Needs(P::PredictionManage)),
    ep("GET", "/api/predictions/{id}", Needs(P::ProjectView)),
    ep("PATCH", "/api/predictions/{id}", Needs(P::PredictionManage)),
    ep(
        "DELETE",
        "/api/predictions/{id}",
        Needs(P::PredictionManage),
    ),
    // The instance admin API (operator and instance administrators).
    ep("PUT", "/api/admin/organizations/{slug}", InstanceAdmin),
    ep("GET", "/api/admin/organizations/{slug}", InstanceAdmin),
    ep(
        "PUT",
        "/api/admin/organizations/{slug}/workspaces/{key}",
        InstanceAdmin,
    ),
    ep(
        "DELETE",
        "/api/admin/organizations/{slug}/workspaces/{key}",
        InstanceAdmin,
    ),
    ep(
        "PUT",
        "/api/admin/organizations/{slug}/projects/{key}",
        InstanceAdmin,
    ),
    ep(
        "GET",
        "/api/admin/organizations/{slug}/projects/{key}",
        InstanceAdmin,
    ),
    ep(
        "DELETE",
        "/api/admin/organizations/{slug}/projects/{key}",
        InstanceAdmin,
    ),
];

/// Looks up the entry of a route.
pub fn endpoint(method: &str, path: &str) -> Option<&'static Endpoint> {
    ENDPOINTS
        .iter()
        .find(|e| e.method.eq_ignore_ascii_case(method) && e.path == path)
}

/// The Markdown documentation of roles, permissions and endpoints, generated for `docs/api.md`.
pub fn permission_table_markdown() -> String {
    let mut out = String::from("| permission | scope | meaning |");
    for role in Role::ALL {
        out.push_str(&format!(" {} |", role.as_str()));
    }
    out.push_str("\n|---|---|---|");
    for _ in Role::ALL {
        out.push_str("---|");
    }
    out.push('\n');
    for &permission in Permission::ALL {
        let scope = match permission.scope() {
            Scope::Organization => "organization",
            Scope::Workspace => "workspace",
            Scope::Project => "project",
        };
        out.push_str(&format!(
            "| `{}` | {scope} | {} |",
            permission.name(),
            permission.description()
        ));
        for role in Role::ALL {
            out.push_str(if role >= permission.minimum_role() {
                " yes |"
            } else {
                " no |"
            });
        }
        out.push('\n');
    }
    out.push_str("\n| method | path | requires |\n|---|---|---|\n");
    for e in ENDPOINTS {
        let access = match e.access {
            Public => "nothing (public)".to_string(),
            SignedIn => "any signed-in member".to_string(),
            Needs(p) => format!("`{}`", p.name()),
            Access::AuthorOr { author, others } => format!(
                "`{}` for the author, `{}` for anyone else",
                author.name(),
                others.name()
            ),
            InstanceAdmin => "the instance admin token".to_string(),
        };
        out.push_str(&format!("| {} | `{}` | {access} |\n", e.method, e.path));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(role: Role) -> Actor {
        Actor {
            user_id: 1,
            org_id: 1,
            role,
            email: "a@example.com".into(),
            meta: RequestMeta::default(),
        }
    }

    #[test]
    fn roles_are_ordered_and_inherit() {
        assert!(actor(Role::Owner).can(Permission::OrgManage));
        assert!(!actor(Role::Manager).can(Permission::OrgManage));
        assert!(actor(Role::Manager).can(Permission::ProjectCreate));
        assert!(!actor(Role::Reviewer).can(Permission::ProjectCreate));
        assert!(!actor(Role::Admin).can(Permission::OrgBilling));
        assert!(actor(Role::Owner).can(Permission::OrgBilling));
    }

    #[test]
    fn forbidden_names_the_permission() {
        let err = actor(Role::Annotator)
            .require(Permission::OrgManage)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::Forbidden);
        assert!(err.detail.contains("organization.manage"), "{}", err.detail);
        let err = actor(Role::Annotator)
            .require_in(None, Permission::ProjectView)
            .unwrap_err();
        assert!(err.detail.contains("project.view"), "{}", err.detail);
    }

    #[test]
    fn parses_label_studio_codes() {
        assert_eq!(Role::parse("OW"), Some(Role::Owner));
        assert_eq!(Role::parse("Administrator"), Some(Role::Admin));
        assert_eq!(Role::parse("nobody"), None);
    }

    #[test]
    fn project_roles_follow_memberships() {
        let none = ProjectMembership::default();
        let member = |role| ProjectMembership {
            project_member: true,
            project_role: role,
            ..none
        };
        let in_workspace = ProjectMembership {
            workspace_member: true,
            ..none
        };
        let creator = ProjectMembership {
            creator: true,
            ..none
        };
        // Owners and admins reach everything.
        assert_eq!(project_role(Role::Owner, none), Some(Role::Owner));
        assert_eq!(project_role(Role::Admin, none), Some(Role::Admin));
        // Managers manage what is in their workspaces or what they created.
        assert_eq!(project_role(Role::Manager, none), None);
        assert_eq!(
            project_role(Role::Manager, in_workspace),
            Some(Role::Manager)
        );
        assert_eq!(project_role(Role::Manager, creator), Some(Role::Manager));
        // A manager added to someone else's project works there as a reviewer unless told.
        assert_eq!(
            project_role(Role::Manager, member(None)),
            Some(Role::Reviewer)
        );
        assert_eq!(
            project_role(Role::Manager, member(Some(Role::Annotator))),
            Some(Role::Annotator)
        );
        // Annotators and reviewers need a membership; the project role wins, both ways.
        assert_eq!(project_role(Role::Annotator, none), None);
        assert_eq!(project_role(Role::Annotator, creator), None);
        assert_eq!(
            project_role(Role::Annotator, member(None)),
            Some(Role::Annotator)
        );
        assert_eq!(
            project_role(Role::Annotator, member(Some(Role::Reviewer))),
            Some(Role::Reviewer)
        );
        assert_eq!(
            project_role(Role::Reviewer, member(Some(Role::Annotator))),
            Some(Role::Annotator)
        );
        assert_eq!(
            project_role(Role::Reviewer, in_workspace),
            Some(Role::Reviewer)
        );
    }

    #[test]
    fn escalations_are_refused() {
        use Role::*;
        assert!(check_grant(Owner, Some(Annotator), Some(Owner), 2).is_ok());
        assert!(check_grant(Admin, Some(Annotator), Some(Manager), 1).is_ok());
        assert!(check_grant(Admin, Some(Annotator), Some(Admin), 1).is_ok());
        let err = check_grant(Admin, Some(Annotator), Some(Owner), 1).unwrap_err();
        assert!(err.contains("only an owner"), "{err}");
        assert!(check_grant(Admin, Some(Owner), Some(Annotator), 1).is_err());
        assert!(check_grant(Admin, Some(Owner), None, 1).is_err());
        assert!(check_grant(Manager, Some(Annotator), Some(Reviewer), 1).is_err());
        let err = check_grant(Owner, Some(Owner), Some(Admin), 0).unwrap_err();
        assert!(err.contains("without an active owner"), "{err}");
        assert!(check_grant(Owner, Some(Owner), None, 0).is_err());
        assert!(check_grant(Owner, None, Some(Annotator), 1).is_ok());
    }

    #[test]
    fn workspace_roles() {
        assert_eq!(workspace_role(Role::Admin, false), Some(Role::Admin));
        assert_eq!(workspace_role(Role::Manager, false), None);
        assert_eq!(workspace_role(Role::Manager, true), Some(Role::Manager));
        assert_eq!(workspace_role(Role::Annotator, true), Some(Role::Annotator));
    }

    #[test]
    fn every_endpoint_is_declared_once() {
        let mut seen = std::collections::HashSet::new();
        for e in ENDPOINTS {
            assert!(
                seen.insert((e.method, e.path)),
                "{} {} twice",
                e.method,
                e.path
            );
        }
    }
}
