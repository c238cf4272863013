//! Notifications of comments (ADR 0051), written in the transaction of the comment that causes
//! them. Who is told of a comment on an annotation:
//! - the first comment on it: the project's users holding Reviewer or above in it (its
//!   members, the members of its workspace and its creator, by their role in the project);
//! - a later one (a reply): those who commented on the annotation before;
//! - in both cases the annotation's author;
//! - never the comment's own author.
//!
//! A user lists their own notifications (unread first, newest first), counts the unread ones and
//! marks them read; notifications of projects they no longer reach are not shown.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{Value, json};

use super::{
    Db, access,
    audit::{Prepared, audit},
    format_micros, now_micros, with_read, with_tx,
};
use crate::{
    authz::{self, Actor, ProjectMembership, Role},
    error::{ApiError, ApiResult, ErrorCode},
};

/// The first comment on an annotation.
pub const KIND_COMMENT: &str = "comment";
/// A comment on an annotation that already had comments.
pub const KIND_REPLY: &str = "reply";

/// A project user who may be told of a first comment: `(user, organization role, creator,
/// workspace member, project member, project role)`.
pub type Candidate = (i64, String, bool, bool, bool, Option<String>);

/// The SQL selecting the [`Candidate`]s of project `$1`: its members, its workspace's members
/// and its creator, active in its organization.
pub const CANDIDATES_SQL: &str = "select m.user_id, m.role, coalesce(p.created_by = m.user_id, false), \
    exists(select 1 from workspace_member wm where wm.workspace_id = p.workspace_id and wm.user_id = m.user_id), \
    (pm.user_id is not null), pm.role \
    from project p join org_member m on m.organization_id = p.organization_id and m.deactivated_at is null \
    left join project_member pm on pm.project_id = p.id and pm.user_id = m.user_id \
    where p.id = $1 and (pm.user_id is not null or p.created_by = m.user_id \
    or exists(select 1 from workspace_member wm where wm.workspace_id = p.workspace_id and wm.user_id = m.user_id))";

/// Who is told of a comment by `author` on an annotation by `annotation_author`: `earlier` are
/// the authors of the annotation's earlier comments (none: this is the first), `candidates` the
/// project's users (read only for a first comment). Answers the kind and the users, sorted.
pub fn recipients(
    author: i64,
    annotation_author: Option<i64>,
    earlier: &[Option<i64>],
    candidates: &[Candidate],
) -> (&'static str, Vec<i64>) {
    let first = earlier.is_empty();
    let mut to: BTreeSet<i64> = if first {
        candidates
            .iter()
            .filter(|(_, role, creator, in_workspace, member, project_role)| {
                let Some(org_role) = Role::parse(role) else {
                    return false;
                };
                let membership = ProjectMembership {
                    creator: *creator,
                    workspace_member: *in_workspace,
                    project_member: *member,
                    project_role: project_role.as_deref().and_then(Role::parse),
                };
                authz::project_role(org_role, membership).is_some_and(|r| r >= Role::Reviewer)
            })
            .map(|c| c.0)
            .collect()
    } else {
        earlier.iter().flatten().copied().collect()
    };
    to.extend(annotation_author);
    to.remove(&author);
    (
        if first { KIND_COMMENT } else { KIND_REPLY },
        to.into_iter().collect(),
    )
}

/// Writes the notifications of comment `$comment` (just inserted by `$author` on annotation
/// `$annotation` of task `$task` in project `$project`, written by `$annotation_author`)
/// inside the comment's transaction `$tx`.
#[macro_export]
macro_rules! notify_comment {
    ($tx:expr, $project:expr, $task:expr, $annotation:expr, $annotation_author:expr, $comment:expr, $author:expr, $now:expr) => {{
        let (project, comment, author): (i64, i64, i64) = ($project, $comment, $author);
        let earlier: Vec<Option<i64>> = sqlx::query_scalar(
            "select created_by from review_comment where annotation_id = $1 and id <> $2",
        )
        .bind($annotation)
        .bind(comment)
        .fetch_all(&mut *$tx)
        .await?;
        let candidates: Vec<$crate::storage::notifications::Candidate> = if earlier.is_empty() {
            sqlx::query_as($crate::storage::notifications::CANDIDATES_SQL)
                .bind(project)
                .fetch_all(&mut *$tx)
                .await?
        } else {
            Vec::new()
        };
        let (kind, users) = $crate::storage::notifications::recipients(
            author,
            $annotation_author,
            &earlier,
            &candidates,
        );
        for user in users {
            sqlx::query(
                "insert into notification (user_id, project_id, task_id, annotation_id, comment_id, \
                 kind, created_by, is_read, created_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(user)
            .bind(project)
            .bind($task)
            .bind($annotation)
            .bind(comment)
            .bind(kind)
            .bind(author)
            .bind(false)
            .bind($now)
            .execute(&mut *$tx)
            .await?;
        }
    }};
}

pub use crate::notify_comment;

/// A notification as its user sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NotificationView {
    /// Id.
    pub id: i64,
    /// `comment` (the first comment on an annotation) or `reply`.
    pub kind: String,
    /// Read.
    pub is_read: bool,
    /// ISO creation time.
    pub created_at: String,
    /// ISO time it was marked read, or null.
    pub read_at: Option<String>,
    /// Project.
    pub project: i64,
    /// Project title.
    pub project_title: String,
    /// Task.
    pub task: i64,
    /// Annotation.
    pub annotation: Option<i64>,
    /// Comment.
    pub comment: Option<i64>,
    /// The comment's text (its first 200 characters).
    pub text: String,
    /// The region the comment is about, or null.
    #[schema(value_type = Option<Object>)]
    pub region_ref: Option<Value>,
    /// Who commented.
    pub created_by: Option<i64>,
    /// Their email.
    pub created_by_email: Option<String>,
    /// The page showing the annotation (and region) in the data manager.
    pub link: String,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    kind: String,
    is_read: bool,
    created_at: i64,
    read_at: Option<i64>,
    project_id: i64,
    title: String,
    task_id: i64,
    annotation_id: Option<i64>,
    comment_id: Option<i64>,
    text: Option<String>,
    region_ref: Option<String>,
    created_by: Option<i64>,
    email: Option<String>,
}

/// The data manager link of a comment: its task, annotation and region.
pub fn link(project: i64, task: i64, annotation: Option<i64>, region: Option<&Value>) -> String {
    let mut out = format!("/projects/{project}/data?task={task}");
    if let Some(a) = annotation {
        out.push_str(&format!("&annotation={a}"));
        if let Some(r) = region
            .and_then(|r| r.get("regionId"))
            .and_then(Value::as_str)
        {
            let encoded: String = url::form_urlencoded::byte_serialize(r.as_bytes()).collect();
            out.push_str(&format!("&region={encoded}"));
        }
    }
    out
}

impl Row {
    fn view(self) -> NotificationView {
        let region_ref: Option<Value> = self
            .region_ref
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok());
        let text: String = self.text.unwrap_or_default().chars().take(200).collect();
        NotificationView {
            link: link(
                self.project_id,
                self.task_id,
                self.annotation_id,
                region_ref.as_ref(),
            ),
            id: self.id,
            kind: self.kind,
            is_read: self.is_read,
            created_at: format_micros(self.created_at),
            read_at: self.read_at.map(format_micros),
            project: self.project_id,
            project_title: self.title,
            task: self.task_id,
            annotation: self.annotation_id,
            comment: self.comment_id,
            text,
            region_ref,
            created_by: self.created_by,
            created_by_email: self.email,
        }
    }
}

/// The condition (over `notification n` and `project p`) on the caller's own notifications in
/// projects of their organization they still reach.
fn mine(actor: &Actor) -> String {
    format!(
        "n.user_id = {} and p.organization_id = {} and {}",
        actor.user_id,
        actor.org_id,
        access::visible_projects(actor)
    )
}

/// `(total, unread)` notifications of the caller.
pub async fn count(db: &Db, actor: &Actor) -> ApiResult<(i64, i64)> {
    Ok(with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select count(*), coalesce(sum(case when n.is_read then 0 else 1 end), 0) \
             from notification n join project p on p.id = n.project_id where {}",
            mine(actor)
        ))
        .fetch_one(conn)
        .await?
    }))
}

/// One page of the caller's notifications, unread first, newest first; `unread_only` keeps the
/// unread ones.
pub async fn list(
    db: &Db,
    actor: &Actor,
    unread_only: bool,
    offset: i64,
    limit: i64,
) -> ApiResult<Vec<NotificationView>> {
    let unread = if unread_only {
        " and not n.is_read"
    } else {
        ""
    };
    let rows: Vec<Row> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select n.id, n.kind, n.is_read, n.created_at, n.read_at, n.project_id, p.title, n.task_id, \
             n.annotation_id, n.comment_id, c.text, c.region_ref, n.created_by, u.email \
             from notification n join project p on p.id = n.project_id \
             left join review_comment c on c.id = n.comment_id \
             left join app_user u on u.id = n.created_by \
             where {}{unread} order by n.is_read, n.id desc limit $1 offset $2",
            mine(actor)
        ))
        .bind(limit)
        .bind(offset)
        .fetch_all(conn)
        .await?
    });
    Ok(rows.into_iter().map(Row::view).collect())
}

/// Which notifications to mark read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// These (the caller's; others are ignored).
    Ids(Vec<i64>),
    /// All of the caller's.
    All,
}

/// Most ids one call marks.
pub const MAX_MARK: usize = 1_000;

/// Marks the caller's notifications read; answers how many changed.
pub async fn mark_read(db: &Db, actor: &Actor, mark: &Mark) -> ApiResult<i64> {
    let which = match mark {
        Mark::All => String::new(),
        Mark::Ids(ids) if ids.is_empty() => {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "ids",
                "give at least one notification id, or {\"all\": true}",
            ));
        }
        Mark::Ids(ids) if ids.len() > MAX_MARK => {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "ids",
                format!("at most {MAX_MARK} ids at a time; use {{\"all\": true}} for all"),
            ));
        }
        // Ids are integers parsed from the body.
        Mark::Ids(ids) => format!(
            " and id in ({})",
            ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
        ),
    };
    let now = now_micros();
    with_tx!(db, tx, {
        let marked = sqlx::query(&format!(
            "update notification set is_read = $1, read_at = $2 where user_id = $3 and not is_read{which}"
        ))
        .bind(true)
        .bind(now)
        .bind(actor.user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let marked = i64::try_from(marked).unwrap_or(i64::MAX);
        audit!(
            tx,
            Prepared::new(
                actor,
                "notification.read",
                "user",
                actor.user_id,
                json!({"marked": marked, "all": *mark == Mark::All}),
            )
        );
        Ok::<_, ApiError>(marked)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(user: i64, role: &str, member: bool, project_role: Option<&str>) -> Candidate {
        (
            user,
            role.into(),
            false,
            false,
            member,
            project_role.map(str::to_string),
        )
    }

    #[test]
    fn first_comments_go_to_reviewers_and_the_annotator_replies_to_commenters() {
        let people = [
            candidate(1, "annotator", true, None),
            candidate(2, "reviewer", true, None),
            candidate(3, "annotator", true, Some("reviewer")),
            candidate(4, "manager", true, Some("annotator")),
            candidate(5, "owner", false, None),
        ];
        // A first comment by the reviewer 2 on annotator 1's work: reviewers and above but 2, and 1.
        assert_eq!(
            recipients(2, Some(1), &[], &people),
            (KIND_COMMENT, vec![1, 3, 5])
        );
        // A reply by 1: those who commented before (2 and 3, some twice), not 1 itself.
        assert_eq!(
            recipients(1, Some(1), &[Some(2), Some(3), Some(2), None], &people),
            (KIND_REPLY, vec![2, 3])
        );
    }

    #[test]
    fn links_point_at_the_region() {
        let region = json!({"regionId": "a b", "controlName": "label"});
        assert_eq!(
            link(3, 7, Some(9), Some(&region)),
            "/projects/3/data?task=7&annotation=9&region=a+b"
        );
        assert_eq!(link(3, 7, None, None), "/projects/3/data?task=7");
    }
}
