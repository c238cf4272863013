//! Review routing rules (ADR 0057): per project an ordered list of rules, each naming the
//! reviewers that get the annotations it matches. The first rule whose conditions hold for an
//! annotation decides; an annotation no rule matches goes to every reviewer. The review stream
//! ([`super::reviews::next`]) reads them through [`stream_condition`]; managers and above are
//! not routed.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    Db, Dialect, access,
    assignments::id_list,
    audit::{Prepared, audit},
    format_micros, now_micros, with_read, with_tx,
};
use crate::{
    authz::{self, Actor, Permission, ProjectMembership, Role},
    error::{ApiError, ApiResult, ErrorCode},
};

/// Most rules a project may have.
pub const MAX_RULES: usize = 100;
/// Most users or labels one rule may name.
pub const MAX_ITEMS: usize = 1000;
/// Longest label value or rule name, in characters.
pub const MAX_TEXT: usize = 200;

/// One rule as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RoutingRule {
    /// Id (new ids each time the list is replaced).
    pub id: i64,
    /// Place in the list, from 0: the first matching rule decides.
    pub position: i64,
    /// A name for people.
    pub name: String,
    /// Matches annotations by these users; empty: by anyone.
    pub annotators: Vec<i64>,
    /// Matches annotations whose result holds one of these label values (a Choices, Labels,
    /// Taxonomy or other control value); empty: any result.
    pub labels: Vec<String>,
    /// The reviewers who get what the rule matches.
    pub reviewers: Vec<i64>,
    /// Who wrote the list.
    pub created_by: Option<i64>,
    /// When the list was written (ISO).
    pub created_at: String,
}

/// One rule as a bulk replace sends it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleInput {
    /// A name for people (optional).
    #[serde(default)]
    pub name: Option<String>,
    /// Annotators whose annotations match (optional; empty: anyone).
    #[serde(default)]
    pub annotators: Option<Vec<i64>>,
    /// Label values of which the result must hold one (optional; empty: any).
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// Reviewers who get the matched annotations (required, at least one).
    #[serde(default)]
    pub reviewers: Option<Vec<i64>>,
}

/// The body of `POST /api/projects/{id}/review-routing-rules/bulk/`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkInput {
    /// The new ordered list; it replaces the old one whole. `[]` removes every rule.
    pub rules: Vec<RuleInput>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    position: i64,
    name: String,
    annotators: String,
    labels: String,
    reviewers: String,
    created_by: Option<i64>,
    created_at: i64,
}

impl Row {
    fn view(self) -> RoutingRule {
        RoutingRule {
            id: self.id,
            position: self.position,
            name: self.name,
            annotators: serde_json::from_str(&self.annotators).unwrap_or_default(),
            labels: serde_json::from_str(&self.labels).unwrap_or_default(),
            reviewers: serde_json::from_str(&self.reviewers).unwrap_or_default(),
            created_by: self.created_by,
            created_at: format_micros(self.created_at),
        }
    }
}

async fn rows(db: &Db, project_id: i64) -> ApiResult<Vec<RoutingRule>> {
    let rows: Vec<Row> = with_read!(db, conn, {
        sqlx::query_as(
            "select id, position, name, annotators, labels, reviewers, created_by, created_at \
             from review_routing_rule where project_id = $1 order by position",
        )
        .bind(project_id)
        .fetch_all(conn)
        .await?
    });
    Ok(rows.into_iter().map(Row::view).collect())
}

/// The project's rules in order (`ordering`: `position`, the default, or `-position`). Who may
/// review the project may read them; they say who reviews what.
pub async fn list(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    ordering: Option<&str>,
) -> ApiResult<Vec<RoutingRule>> {
    access::project(db, actor, project_id, Permission::ReviewCreate).await?;
    let descending = match ordering.map(str::trim).filter(|o| !o.is_empty()) {
        None | Some("position") => false,
        Some("-position") => true,
        Some(other) => {
            return Err(ApiError::field(
                ErrorCode::InvalidQuery,
                "ordering",
                format!("cannot order by {other:?}; use position or -position"),
            ));
        }
    };
    let mut found = rows(db, project_id).await?;
    if descending {
        found.reverse();
    }
    Ok(found)
}

fn bad(index: usize, field: &str, message: impl Into<String>) -> ApiError {
    ApiError::field(
        ErrorCode::InvalidRoutingRule,
        &format!("rules[{index}].{field}"),
        message,
    )
}

/// A rule checked for shape: `(name, annotators, labels, reviewers)`, the lists without repeats.
type Checked = (String, Vec<i64>, Vec<String>, Vec<i64>);

fn check_shape(index: usize, rule: RuleInput) -> ApiResult<Checked> {
    let name = rule.name.unwrap_or_default().trim().to_string();
    if name.chars().count() > MAX_TEXT {
        return Err(bad(index, "name", format!("at most {MAX_TEXT} characters")));
    }
    let dedup_ids = |mut ids: Vec<i64>| {
        let mut seen = std::collections::BTreeSet::new();
        ids.retain(|id| seen.insert(*id));
        ids
    };
    let annotators = dedup_ids(rule.annotators.unwrap_or_default());
    let reviewers = dedup_ids(rule.reviewers.unwrap_or_default());
    if reviewers.is_empty() {
        return Err(bad(
            index,
            "reviewers",
            "name at least one reviewer (user ids of reviewers of this project)",
        ));
    }
    for (field, list) in [("annotators", &annotators), ("reviewers", &reviewers)] {
        if list.len() > MAX_ITEMS {
            return Err(bad(index, field, format!("at most {MAX_ITEMS} users")));
        }
    }
    let mut labels: Vec<String> = Vec::new();
    for label in rule.labels.unwrap_or_default() {
        if label.is_empty() || label.chars().count() > MAX_TEXT {
            return Err(bad(
                index,
                "labels",
                format!("each label value must have 1 to {MAX_TEXT} characters"),
            ));
        }
        if !labels.contains(&label) {
            labels.push(label);
        }
    }
    if labels.len() > MAX_ITEMS {
        return Err(bad(index, "labels", format!("at most {MAX_ITEMS} labels")));
    }
    Ok((name, annotators, labels, reviewers))
}

/// Replaces the project's rules with `input` in one transaction: every rule is checked first
/// (shape, then that each reviewer may review the project and each annotator may annotate
/// it), and one bad rule leaves the old list in place. Answers the new list.
pub async fn replace(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    input: BulkInput,
) -> ApiResult<Vec<RoutingRule>> {
    let project = access::project(db, actor, project_id, Permission::ProjectChange)
        .await?
        .row;
    if input.rules.len() > MAX_RULES {
        return Err(ApiError::field(
            ErrorCode::InvalidRoutingRule,
            "rules",
            format!("at most {MAX_RULES} rules per project"),
        ));
    }
    let checked: Vec<Checked> = input
        .rules
        .into_iter()
        .enumerate()
        .map(|(i, r)| check_shape(i, r))
        .collect::<ApiResult<_>>()?;
    let mut people: Vec<i64> = checked
        .iter()
        .flat_map(|c| c.1.iter().chain(c.3.iter()).copied())
        .collect();
    people.sort_unstable();
    people.dedup();
    let dialect = db.dialect();
    let now = now_micros();
    with_tx!(db, tx, {
        // Serialized with member changes, so a removal cannot slip between check and write.
        crate::storage::annotations::lock_project!(tx, dialect, project_id);
        let facts: Vec<(i64, String, Option<String>, bool, bool)> = sqlx::query_as(&format!(
            "select m.user_id, m.role, pm.role, (pm.user_id is not null), \
             exists(select 1 from workspace_member wm where wm.workspace_id = $2 and wm.user_id = m.user_id) \
             from org_member m left join project_member pm on pm.project_id = $3 and pm.user_id = m.user_id \
             where m.organization_id = $1 and m.deactivated_at is null and m.user_id in ({})",
            id_list(&people)
        ))
        .bind(actor.org_id)
        .bind(project.workspace_id)
        .bind(project_id)
        .fetch_all(&mut *tx)
        .await?;
        let role_of = |user: i64| {
            facts.iter().find(|f| f.0 == user).and_then(
                |(_, org_role, project_role, is_member, in_workspace)| {
                    let membership = ProjectMembership {
                        creator: project.created_by == Some(user),
                        workspace_member: *in_workspace,
                        project_member: *is_member,
                        project_role: project_role.as_deref().and_then(Role::parse),
                    };
                    authz::project_role(Role::parse(org_role)?, membership)
                },
            )
        };
        for (i, (_, annotators, _, reviewers)) in checked.iter().enumerate() {
            for (field, list, needs, work) in [
                ("reviewers", reviewers, Permission::ReviewCreate, "review"),
                (
                    "annotators",
                    annotators,
                    Permission::AnnotationCreate,
                    "annotate",
                ),
            ] {
                if let Some(user) = list
                    .iter()
                    .find(|u| role_of(**u).is_none_or(|r| r < needs.minimum_role()))
                {
                    return Err(bad(
                        i,
                        field,
                        format!(
                            "user {user} is not a member of this project with a role that may \
                             {work} ({} or above); add them to the project first",
                            needs.minimum_role().as_str()
                        ),
                    ));
                }
            }
        }
        sqlx::query("delete from review_routing_rule where project_id = $1")
            .bind(project_id)
            .execute(&mut *tx)
            .await?;
        for (position, (name, annotators, labels, reviewers)) in checked.iter().enumerate() {
            sqlx::query(
                "insert into review_routing_rule (project_id, position, name, annotators, labels, \
                 reviewers, created_by, created_at) values ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(project_id)
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .bind(name)
            .bind(json!(annotators).to_string())
            .bind(json!(labels).to_string())
            .bind(json!(reviewers).to_string())
            .bind(actor.user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        audit!(
            tx,
            Prepared::new(
                actor,
                "project.review_routing_rules.replace",
                "project",
                project_id,
                json!({"rules": checked.len()})
            )
        );
        Ok::<_, ApiError>(())
    })?;
    rows(db, project_id).await
}

/// A string as an SQL literal (single quotes doubled).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// SQL condition over annotation `a`: its result holds one of `labels` as a control value
/// (an element of, or the whole of, a value of a region's `value` object).
fn labels_sql(dialect: Dialect, labels: &[String]) -> String {
    let each: Vec<String> = labels
        .iter()
        .map(|label| match dialect {
            Dialect::Sqlite => literal(label),
            Dialect::Postgres => format!(
                "jsonb_path_exists(a.result::jsonb, '$[*].value.*[*] ? (@ == $l)', \
                 jsonb_build_object('l', {}::text))",
                literal(label)
            ),
        })
        .collect();
    match dialect {
        Dialect::Sqlite => format!(
            "exists (select 1 from json_tree(a.result) j where j.type = 'text' \
             and j.fullkey like '$[%].value.%' and j.atom in ({}))",
            each.join(", ")
        ),
        Dialect::Postgres => format!("({})", each.join(" or ")),
    }
}

/// SQL condition over annotation `a` (binding nothing) that keeps what the rules route to
/// `reviewer`, or `None` when routing does not apply to them (no rules, or a manager and
/// above). Values come from stored, checked rules: ids are numbers and labels are quoted.
pub async fn stream_condition(
    db: &Db,
    project_id: i64,
    reviewer: i64,
    role: Role,
) -> ApiResult<Option<String>> {
    if role >= Role::Manager {
        return Ok(None);
    }
    let rules = rows(db, project_id).await?;
    if rules.is_empty() {
        return Ok(None);
    }
    let dialect = db.dialect();
    let mut sql = String::from("(case");
    for rule in &rules {
        let mut when: Vec<String> = Vec::new();
        if !rule.annotators.is_empty() {
            when.push(format!("a.completed_by in ({})", id_list(&rule.annotators)));
        }
        if !rule.labels.is_empty() {
            when.push(labels_sql(dialect, &rule.labels));
        }
        let when = if when.is_empty() {
            "1 = 1".to_string()
        } else {
            when.join(" and ")
        };
        let routed = if rule.reviewers.contains(&reviewer) {
            "1 = 1"
        } else {
            "1 = 0"
        };
        sql.push_str(&format!(" when {when} then {routed}"));
    }
    sql.push_str(" else 1 = 1 end)");
    Ok(Some(sql))
}
