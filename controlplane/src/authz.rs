//! Who may do what. Every repository function that reads or changes tenant data takes an
//! [`Actor`] and calls [`Actor::require`] (and scopes its SQL to `actor.org_id`) before it
//! touches a connection, so a handler cannot forget the check.
//!
//! The role → permission table below is the single source of truth; the API documentation of
//! roles is generated from it. Objects of another organization are reported as not found, so
//! their existence is never revealed; a missing permission inside one's own organization is a
//! 403 that names the permission.

use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorCode};

/// An organization role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Annotates tasks of the projects they can see.
    Annotator,
    /// Annotates and reviews.
    Reviewer,
    /// Creates and manages projects.
    Manager,
    /// Organization-wide user management and settings.
    Admin,
    /// Everything.
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
        match s.to_ascii_lowercase().as_str() {
            "annotator" | "an" => Some(Role::Annotator),
            "reviewer" | "re" => Some(Role::Reviewer),
            "manager" | "ma" => Some(Role::Manager),
            "admin" | "administrator" | "ad" => Some(Role::Admin),
            "owner" | "ow" => Some(Role::Owner),
            _ => None,
        }
    }
}

/// An action that needs a permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// See projects, tasks, predictions and annotations.
    ProjectView,
    /// Create projects.
    ProjectCreate,
    /// Change project settings and the labeling configuration.
    ProjectChange,
    /// Delete projects.
    ProjectDelete,
    /// Import, change and delete tasks.
    TaskManage,
    /// Create annotations and change or delete one's own.
    AnnotationCreate,
    /// Change or delete other people's annotations.
    AnnotationManage,
    /// Create, change and delete predictions.
    PredictionManage,
    /// Export project data.
    ExportRun,
    /// See the members of the organization.
    UserView,
    /// Create users and change other users.
    UserManage,
}

impl Permission {
    /// Every permission, for docs and tests.
    pub const ALL: [Permission; 11] = [
        Permission::ProjectView,
        Permission::ProjectCreate,
        Permission::ProjectChange,
        Permission::ProjectDelete,
        Permission::TaskManage,
        Permission::AnnotationCreate,
        Permission::AnnotationManage,
        Permission::PredictionManage,
        Permission::ExportRun,
        Permission::UserView,
        Permission::UserManage,
    ];

    /// Stable name used in 403 messages and docs.
    pub fn name(self) -> &'static str {
        match self {
            Permission::ProjectView => "project.view",
            Permission::ProjectCreate => "project.create",
            Permission::ProjectChange => "project.change",
            Permission::ProjectDelete => "project.delete",
            Permission::TaskManage => "task.manage",
            Permission::AnnotationCreate => "annotation.create",
            Permission::AnnotationManage => "annotation.manage",
            Permission::PredictionManage => "prediction.manage",
            Permission::ExportRun => "export.run",
            Permission::UserView => "user.view",
            Permission::UserManage => "user.manage",
        }
    }

    /// The least privileged organization role that holds this permission. Roles are ordered,
    /// so a role holds every permission of the roles below it.
    pub fn minimum_role(self) -> Role {
        match self {
            Permission::ProjectView | Permission::AnnotationCreate | Permission::UserView => {
                Role::Annotator
            }
            Permission::AnnotationManage => Role::Reviewer,
            Permission::ProjectCreate
            | Permission::ProjectChange
            | Permission::ProjectDelete
            | Permission::TaskManage
            | Permission::PredictionManage
            | Permission::ExportRun => Role::Manager,
            Permission::UserManage => Role::Admin,
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Actor {
    /// User id.
    pub user_id: i64,
    /// The organization the request acts in (the user's active organization).
    pub org_id: i64,
    /// The user's role in that organization.
    pub role: Role,
    /// The user's email (for messages).
    pub email: String,
}

impl Actor {
    /// Whether the actor holds `permission`.
    pub fn can(&self, permission: Permission) -> bool {
        self.role >= permission.minimum_role()
    }

    /// Fails with 403 naming the permission when the actor lacks it.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.can(permission) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "your role ({}) lacks the permission {}; ask an administrator of your organization",
                    self.role.as_str(),
                    permission.name()
                ),
            ))
        }
    }
}

/// A Markdown table of roles and permissions, generated for the docs.
pub fn permission_table_markdown() -> String {
    let mut out = String::from("| permission |");
    for role in Role::ALL {
        out.push_str(&format!(" {} |", role.as_str()));
    }
    out.push_str("\n|---|");
    for _ in Role::ALL {
        out.push_str("---|");
    }
    out.push('\n');
    for permission in Permission::ALL {
        out.push_str(&format!("| `{}` |", permission.name()));
        for role in Role::ALL {
            out.push_str(if role >= permission.minimum_role() {
                " yes |"
            } else {
                " no |"
            });
        }
        out.push('\n');
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
        }
    }

    #[test]
    fn roles_are_ordered_and_inherit() {
        assert!(actor(Role::Owner).can(Permission::UserManage));
        assert!(!actor(Role::Manager).can(Permission::UserManage));
        assert!(actor(Role::Annotator).can(Permission::AnnotationCreate));
        assert!(!actor(Role::Annotator).can(Permission::AnnotationManage));
        assert!(!actor(Role::Reviewer).can(Permission::ProjectCreate));
    }

    #[test]
    fn forbidden_names_the_permission() {
        let err = actor(Role::Annotator)
            .require(Permission::ProjectDelete)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::Forbidden);
        assert!(err.detail.contains("project.delete"), "{}", err.detail);
    }

    #[test]
    fn parses_label_studio_codes() {
        assert_eq!(Role::parse("OW"), Some(Role::Owner));
        assert_eq!(Role::parse("Administrator"), Some(Role::Admin));
        assert_eq!(Role::parse("nobody"), None);
    }
}
