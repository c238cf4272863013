//! Group mappings shared by the identity integrations (SCIM, SAML, LDAP): which organization
//! role, workspaces and project roles the members of a named group get.
//!
//! An integration learns a user's groups its own way (SCIM Group resources, a SAML assertion's
//! groups attribute, an LDAP group search) and hands the names to [`apply_group_mapping!`],
//! which brings the user's role and memberships in line inside the caller's transaction. Group
//! names compare without regard to case. Owners are never changed by a mapping.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::{
    authz::Role,
    error::{ApiError, ApiResult, ErrorCode},
};

/// One project mapping: members of `group` join project `project_id` with `role`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ProjectGroup {
    /// Project id (of this organization).
    pub project_id: i64,
    /// Group name.
    pub group: String,
    /// `Inherit` (the organization role), `Annotator` or `Reviewer`.
    pub role: String,
}

/// How an organization's groups map to roles, workspaces and project roles.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupMapping {
    /// `[[role, group], …]`: members of the group get the role (the highest one wins). When
    /// empty, the integration does not manage roles.
    #[serde(default)]
    pub roles_groups: Vec<(String, String)>,
    /// `[[workspace title, group], …]`: members of the group are members of the workspace
    /// (created when missing).
    #[serde(default)]
    pub workspaces_groups: Vec<(String, String)>,
    /// Project roles by group.
    #[serde(default)]
    pub projects_groups: Vec<ProjectGroup>,
    /// Role of users in no mapped group (and of new users when roles are not mapped):
    /// `annotator` unless set.
    #[serde(default)]
    pub default_role: Option<String>,
}

/// A 400 naming the setting at fault.
pub fn bad_setting(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::field(ErrorCode::ValidationError, field, message)
}

/// A role a group may grant (never Owner).
pub fn mapped_role(name: &str, field: &str) -> ApiResult<Role> {
    match Role::parse(name) {
        Some(Role::Owner) => Err(bad_setting(
            field,
            "Owner cannot be granted through a group; owners are managed in Verity",
        )),
        Some(r) => Ok(r),
        None => Err(bad_setting(
            field,
            format!("unknown role {name:?}: use Annotator, Reviewer, Manager or Administrator"),
        )),
    }
}

/// `Inherit` → Some(None); Annotator/Reviewer → Some(Some(role)); anything else → None.
pub fn project_role(name: &str) -> Option<Option<Role>> {
    match name.trim().to_ascii_lowercase().as_str() {
        "inherit" => Some(None),
        "annotator" | "an" => Some(Some(Role::Annotator)),
        "reviewer" | "re" => Some(Some(Role::Reviewer)),
        _ => None,
    }
}

impl GroupMapping {
    /// The role of a user in no mapped group.
    pub fn default_role(&self) -> Role {
        self.default_role
            .as_deref()
            .and_then(Role::parse)
            .unwrap_or(Role::Annotator)
    }

    /// Whether the mapping sets roles (otherwise roles stay as they are, after the first).
    pub fn manages_roles(&self) -> bool {
        !self.roles_groups.is_empty()
    }

    /// The role the groups grant: the highest mapped one, or the default role.
    pub fn role_for(&self, groups: &[String]) -> Role {
        self.roles_groups
            .iter()
            .filter(|(_, g)| in_groups(groups, g))
            .filter_map(|(r, _)| Role::parse(r))
            .filter(|r| *r != Role::Owner)
            .max()
            .unwrap_or_else(|| self.default_role())
    }

    /// The projects the mapping names (each must exist in the organization).
    pub fn project_ids(&self) -> BTreeSet<i64> {
        self.projects_groups.iter().map(|p| p.project_id).collect()
    }

    /// Refuses unknown roles, empty group names and oversized mappings.
    pub fn check(&self) -> ApiResult<()> {
        for (role, group) in &self.roles_groups {
            mapped_role(role, "roles_groups")?;
            if group.trim().is_empty() {
                return Err(bad_setting("roles_groups", "a group name is empty"));
            }
        }
        for (title, group) in &self.workspaces_groups {
            if title.trim().is_empty() || title.len() > 1000 || group.trim().is_empty() {
                return Err(bad_setting(
                    "workspaces_groups",
                    "each entry needs a workspace title (at most 1000 characters) and a group name",
                ));
            }
        }
        for p in &self.projects_groups {
            if p.group.trim().is_empty() {
                return Err(bad_setting("projects_groups", "a group name is empty"));
            }
            if project_role(&p.role).is_none() {
                return Err(bad_setting(
                    "projects_groups",
                    format!(
                        "unknown project role {:?}: use Inherit, Annotator or Reviewer",
                        p.role
                    ),
                ));
            }
        }
        if let Some(r) = &self.default_role {
            mapped_role(r, "default_role")?;
        }
        let entries =
            self.roles_groups.len() + self.workspaces_groups.len() + self.projects_groups.len();
        if entries > 1000 {
            return Err(bad_setting("roles_groups", "at most 1000 mappings in all"));
        }
        Ok(())
    }
}

/// Whether `group` is one of `groups` (compared without regard to case).
pub fn in_groups(groups: &[String], group: &str) -> bool {
    groups.iter().any(|g| g.eq_ignore_ascii_case(group))
}

/// Checks, inside a transaction, that every project a mapping names belongs to `org`.
macro_rules! check_mapped_projects {
    ($tx:ident, $org:expr, $mapping:expr) => {{
        let org: i64 = $org;
        for project in $mapping.project_ids() {
            let found: Option<i64> =
                sqlx::query_scalar("select id from project where id = $1 and organization_id = $2")
                    .bind(project)
                    .bind(org)
                    .fetch_optional(&mut *$tx)
                    .await?;
            if found.is_none() {
                return Err($crate::storage::groupmap::bad_setting(
                    "projects_groups",
                    format!("project {project} does not exist in this organization"),
                )
                .into());
            }
        }
    }};
}
pub(crate) use check_mapped_projects;

/// The ids of the workspaces a mapping names, each with its group, creating the missing ones
/// (marked `managed_by = $source`). Runs inside `with_tx!`; evaluates to `Vec<(i64, String)>`.
macro_rules! mapped_workspaces {
    ($tx:ident, $org:expr, $mapping:expr, $actor:expr, $source:expr) => {{
        let org: i64 = $org;
        let source: &str = $source;
        let mut workspaces: Vec<(i64, String)> = Vec::new();
        for (title, group) in &$mapping.workspaces_groups {
            let existing: Option<i64> = sqlx::query_scalar(
                "select id from workspace where organization_id = $1 and title = $2 and not is_personal order by id limit 1",
            )
            .bind(org)
            .bind(title)
            .fetch_optional(&mut *$tx)
            .await?;
            let id = match existing {
                Some(id) => id,
                None => {
                    let id: i64 = sqlx::query_scalar(
                        "insert into workspace (organization_id, title, description, managed_by, created_at, updated_at) \
                         values ($1, $2, '', $3, $4, $4) returning id",
                    )
                    .bind(org)
                    .bind(title)
                    .bind(source)
                    .bind($crate::storage::now_micros())
                    .fetch_one(&mut *$tx)
                    .await?;
                    $crate::audit!(
                        $tx,
                        $crate::storage::audit::Prepared::new(
                            $actor,
                            "workspace.create",
                            "workspace",
                            id,
                            serde_json::json!({"title": title, "by": source})
                        )
                    );
                    id
                }
            };
            workspaces.push((id, group.clone()));
        }
        workspaces
    }};
}
pub(crate) use mapped_workspaces;

/// Brings one user's organization role, workspace memberships and project roles in line with
/// the groups they are in (`$groups: &[String]`) under `$mapping`, given the workspaces from
/// [`mapped_workspaces!`]. `$live = false` (a de-provisioned user) removes what the mapping
/// grants and leaves the role. Owners and non-members are left alone. Role changes are audited
/// as `member.role` with `by = $source`. Runs inside `with_tx!`.
macro_rules! apply_group_mapping {
    ($tx:ident, $org:expr, $mapping:expr, $workspaces:expr, $user:expr, $groups:expr, $live:expr, $actor:expr, $source:expr) => {{
        let org: i64 = $org;
        let mapping: &$crate::storage::groupmap::GroupMapping = $mapping;
        let workspaces: &[(i64, String)] = $workspaces;
        let user: i64 = $user;
        let groups: &[String] = $groups;
        let live: bool = $live;
        let source: &str = $source;
        let now = $crate::storage::now_micros();
        let current: Option<String> = sqlx::query_scalar(
            "select role from org_member where organization_id = $1 and user_id = $2",
        )
        .bind(org)
        .bind(user)
        .fetch_optional(&mut *$tx)
        .await?;
        let current = current.as_deref().map($crate::authz::Role::parse);
        if let Some(current) = current
            && current != Some($crate::authz::Role::Owner)
        {
            let in_group =
                |g: &str| live && $crate::storage::groupmap::in_groups(groups, g);
            if live && mapping.manages_roles() {
                let role = mapping.role_for(groups);
                if Some(role) != current {
                    sqlx::query("update org_member set role = $1 where organization_id = $2 and user_id = $3")
                        .bind(role.as_str())
                        .bind(org)
                        .bind(user)
                        .execute(&mut *$tx)
                        .await?;
                    $crate::audit!(
                        $tx,
                        $crate::storage::audit::Prepared::new(
                            $actor,
                            "member.role",
                            "user",
                            user,
                            serde_json::json!({"from_role": current.map($crate::authz::Role::as_str), "to_role": role.as_str(), "by": source})
                        )
                    );
                }
            }
            let mut want_ws: std::collections::BTreeMap<i64, bool> = std::collections::BTreeMap::new();
            for (ws, group) in workspaces {
                let e = want_ws.entry(*ws).or_insert(false);
                *e = *e || in_group(group);
            }
            for (ws, want) in want_ws {
                if want {
                    sqlx::query("insert into workspace_member (workspace_id, user_id, created_at) values ($1, $2, $3) on conflict do nothing")
                        .bind(ws)
                        .bind(user)
                        .bind(now)
                        .execute(&mut *$tx)
                        .await?;
                } else {
                    sqlx::query("delete from workspace_member where workspace_id = $1 and user_id = $2")
                        .bind(ws)
                        .bind(user)
                        .execute(&mut *$tx)
                        .await?;
                }
            }
            // Per project: None = not a member; Some(None) = member with the organization
            // role; Some(Some(r)) = member with project role r (the highest mapped one).
            let mut want_projects: std::collections::BTreeMap<i64, Option<Option<$crate::authz::Role>>> =
                std::collections::BTreeMap::new();
            for p in &mapping.projects_groups {
                let e = want_projects.entry(p.project_id).or_insert(None);
                if in_group(&p.group) {
                    let role = $crate::storage::groupmap::project_role(&p.role).unwrap_or(None);
                    *e = Some(match (*e, role) {
                        (Some(Some(a)), Some(b)) => Some(a.max(b)),
                        (Some(Some(a)), None) => Some(a),
                        (_, r) => r,
                    });
                }
            }
            for (project, want) in want_projects {
                match want {
                    Some(role) => {
                        sqlx::query(
                            "insert into project_member (project_id, user_id, role, created_at) values ($1, $2, $3, $4) \
                             on conflict (project_id, user_id) do update set role = excluded.role",
                        )
                        .bind(project)
                        .bind(user)
                        .bind(role.map($crate::authz::Role::as_str))
                        .bind(now)
                        .execute(&mut *$tx)
                        .await?;
                    }
                    None => {
                        sqlx::query("delete from project_member where project_id = $1 and user_id = $2")
                            .bind(project)
                            .bind(user)
                            .execute(&mut *$tx)
                            .await?;
                    }
                }
            }
        }
    }};
}
pub(crate) use apply_group_mapping;

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> GroupMapping {
        GroupMapping {
            roles_groups: vec![
                ("Reviewer".into(), "qa".into()),
                ("Manager".into(), "Leads".into()),
            ],
            default_role: Some("annotator".into()),
            ..GroupMapping::default()
        }
    }

    #[test]
    fn the_highest_mapped_role_wins_and_names_ignore_case() {
        let m = mapping();
        assert_eq!(m.role_for(&["QA".into()]), Role::Reviewer);
        assert_eq!(m.role_for(&["qa".into(), "leads".into()]), Role::Manager);
        assert_eq!(m.role_for(&["other".into()]), Role::Annotator);
        assert_eq!(m.role_for(&[]), Role::Annotator);
    }

    #[test]
    fn owner_and_unknown_roles_are_refused() {
        let mut m = mapping();
        m.roles_groups.push(("Owner".into(), "root".into()));
        assert!(m.check().is_err());
        let mut m = mapping();
        m.roles_groups.push(("Wizard".into(), "x".into()));
        assert!(m.check().is_err());
        let mut m = mapping();
        m.projects_groups.push(ProjectGroup {
            project_id: 1,
            group: "g".into(),
            role: "Manager".into(),
        });
        assert!(m.check().is_err());
        assert!(mapping().check().is_ok());
    }
}
