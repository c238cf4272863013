//! Data-manager columns that are read from a task's annotations, reviews, predictions and drafts
//! rather than from the task row (ADR 0055): `completed_at`, `annotators`, `reviewers`,
//! `annotations_results`, `predictions_results`, `predictions_score`,
//! `predictions_model_versions`, `ground_truth`, `draft_exists`, `avg_lead_time`. Each is a
//! correlated sub-query on an indexed `task_id`, so a filter or an ordering costs one index probe
//! per task the other conditions leave.
//!
//! What a column reveals decides who may use it: an annotator blind to the others' work must
//! not learn from a filter what the others labeled, and an anonymized reviewer must not learn
//! who labeled ([`Reveals`]).

use serde_json::Value;

/// What filtering or ordering by a column tells about other people's work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reveals {
    /// The content or timing of annotations (who they are by aside).
    pub work: bool,
    /// Who annotated or reviewed.
    pub authors: bool,
}

impl Reveals {
    /// Both kinds at once.
    pub fn union(self, other: Reveals) -> Reveals {
        Reveals {
            work: self.work || other.work,
            authors: self.authors || other.authors,
        }
    }
}

/// The columns of this module, for error messages.
pub const NAMES: &[&str] = &[
    "completed_at",
    "annotators",
    "reviewers",
    "annotations_results",
    "predictions_results",
    "predictions_score",
    "predictions_model_versions",
    "ground_truth",
    "draft_exists",
    "avg_lead_time",
];

/// Annotations that count for a task's completion: submitted (not skipped) ones.
const SUBMITTED: &str = "ad.task_id = t.id and not ad.was_cancelled and ad.result is not null";

/// What a column reveals; `None` for names this module does not know.
pub fn reveals(name: &str) -> Option<Reveals> {
    let (work, authors) = match name {
        "completed_at"
        | "annotations_results"
        | "ground_truth"
        | "avg_lead_time"
        | "draft_exists" => (true, false),
        "annotators" | "reviewers" => (true, true),
        "predictions_results" | "predictions_score" | "predictions_model_versions" => {
            (false, false)
        }
        _ => return None,
    };
    Some(Reveals { work, authors })
}

/// The SQL value of a column that has one per task (numbers and times), for filters and
/// ordering; `None` for the list and text columns and names this module does not know.
pub fn scalar_sql(name: &str) -> Option<String> {
    Some(match name {
        // Label Studio's `completed_at`: when the latest annotation was made, once the task is
        // labeled.
        "completed_at" => format!(
            "(case when t.is_labeled then (select max(ad.created_at) from annotation ad where {SUBMITTED}) end)"
        ),
        "predictions_score" => {
            "(select avg(pd.score) from prediction pd where pd.task_id = t.id)".into()
        }
        "avg_lead_time" => {
            format!("(select avg(ad.lead_time) from annotation ad where {SUBMITTED})")
        }
        "ground_truth" => "(case when exists (select 1 from annotation ad where ad.task_id = t.id \
             and ad.ground_truth) then 1 else 0 end)"
            .into(),
        "draft_exists" => {
            "(case when exists (select 1 from annotation_draft dd where dd.task_id = t.id) \
             then 1 else 0 end)"
                .into()
        }
        _ => return None,
    })
}

/// What a column's ordering sorts by, where it is not [`scalar_sql`]: the number of annotators
/// or reviewers.
pub fn order_sql(name: &str) -> Option<String> {
    scalar_sql(name).or_else(|| {
        Some(match name {
            "annotators" => format!(
                "(select count(distinct ad.completed_by) from annotation ad where {SUBMITTED})"
            ),
            "reviewers" => "(select count(distinct rd.created_by) from annotation_review rd \
                 where rd.task_id = t.id)"
                .into(),
            _ => return None,
        })
    })
}

/// A filter on one of the list or text columns (`annotators`, `reviewers`: user ids;
/// `annotations_results`, `predictions_results`, `predictions_model_versions`: text), or
/// `None` when `name` is none of them.
pub fn filter_sql(
    name: &str,
    operator: &str,
    value: &Value,
    params: &mut Vec<String>,
) -> Option<Result<String, String>> {
    let (rows, people) = match name {
        "annotators" => (
            format!("annotation ad where {SUBMITTED}"),
            Some("ad.completed_by"),
        ),
        "reviewers" => (
            "annotation_review rd where rd.task_id = t.id".to_string(),
            Some("rd.created_by"),
        ),
        "annotations_results" => (format!("annotation ad where {SUBMITTED}"), None),
        "predictions_results" | "predictions_model_versions" => {
            ("prediction pd where pd.task_id = t.id".to_string(), None)
        }
        _ => return None,
    };
    Some(match people {
        Some(column) => people_sql(name, &rows, column, operator, value),
        None => {
            let column = match name {
                "annotations_results" => "ad.result",
                "predictions_results" => "pd.result",
                _ => "pd.model_version",
            };
            text_sql(name, &rows, column, operator, value, params)
        }
    })
}

/// Tasks where one of the given users (an id or a list of ids) is among the people of `rows`
/// (`contains`, `equal`), or none is (`not_contains`, `not_equal`); `empty`/`exists`/
/// `not_exists` ask whether there is anyone at all.
fn people_sql(
    name: &str,
    rows: &str,
    column: &str,
    operator: &str,
    value: &Value,
) -> Result<String, String> {
    if let Some(sql) = presence_sql(rows, operator, value) {
        return Ok(sql);
    }
    let ids: Vec<i64> = match value {
        Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_i64()
                    .ok_or_else(|| format!("{name} takes user ids, not {v}"))
            })
            .collect::<Result<_, _>>()?,
        v => vec![
            v.as_i64()
                .ok_or_else(|| format!("{name} takes a user id or a list of them, not {v}"))?,
        ],
    };
    if ids.is_empty() {
        return Err(format!("{name} needs at least one user id"));
    }
    // Ids are integers parsed above.
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let exists = format!("exists (select 1 from {rows} and {column} in ({list}))");
    match operator {
        "contains" | "equal" | "in_list" => Ok(exists),
        "not_contains" | "not_equal" | "not_in_list" => Ok(format!("not {exists}")),
        other => Err(format!(
            "unsupported operator {other:?} for {name}; use contains, not_contains, equal, \
             not_equal, exists or not_exists"
        )),
    }
}

/// Tasks with a row of `rows` whose text `column` contains (starts with, ends with, equals) the
/// value, case-insensitively, or with none (`not_contains`, `not_equal`).
fn text_sql(
    name: &str,
    rows: &str,
    column: &str,
    operator: &str,
    value: &Value,
    params: &mut Vec<String>,
) -> Result<String, String> {
    if let Some(sql) = presence_sql(rows, operator, value) {
        return Ok(sql);
    }
    let text = match value {
        Value::String(s) => s.to_lowercase(),
        Value::Number(n) => n.to_string(),
        other => return Err(format!("{name} takes a text value, not {other}")),
    };
    let (pattern, negated) = match operator {
        "contains" => (format!("%{}%", escape_like(&text)), false),
        "not_contains" => (format!("%{}%", escape_like(&text)), true),
        "starts_with" => (format!("{}%", escape_like(&text)), false),
        "ends_with" => (format!("%{}", escape_like(&text)), false),
        "equal" => (escape_like(&text), false),
        "not_equal" => (escape_like(&text), true),
        other => {
            return Err(format!(
                "unsupported operator {other:?} for {name}; use contains, not_contains, \
                 starts_with, ends_with, equal, not_equal, exists or not_exists"
            ));
        }
    };
    params.push(pattern);
    let exists = format!(
        "exists (select 1 from {rows} and lower({column}) like ${} escape '\\')",
        params.len() + 1
    );
    Ok(if negated {
        format!("not {exists}")
    } else {
        exists
    })
}

/// `exists`, `not_exists` and `empty` (true: none; false: some) on the rows of a column.
fn presence_sql(rows: &str, operator: &str, value: &Value) -> Option<String> {
    let none = match operator {
        "exists" => false,
        "not_exists" => true,
        "empty" => value.as_bool().unwrap_or(true),
        _ => return None,
    };
    let exists = format!("exists (select 1 from {rows})");
    Some(if none {
        format!("not {exists}")
    } else {
        exists
    })
}

/// `%`, `_` and `\` taken literally in a `like ... escape '\'` pattern.
pub(crate) fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Whether the catalogue offers column `name` to a caller who reads `visible` with `access`:
/// exactly the columns whose filters and ordering the task list would run for them (an
/// annotator blind to the others' work gets nothing that reveals it, an anonymized reviewer
/// nothing that names authors, annotators no comment details). `GET /api/dm/columns` and the
/// data manager page both ask this, so neither offers what the other refuses.
pub fn offered(
    name: &str,
    visible: super::tasks::Visible,
    access: &super::access::ProjectAccess,
) -> bool {
    use super::tasks::Visible;
    let reveals = reveals(name).unwrap_or_default();
    match name {
        "agreement" => visible.shows_agreement_in(access),
        "last_comment_updated_at" | "comment_authors" => {
            super::tasks::shows_comment_details(access.role)
        }
        _ => match visible {
            Visible::OnlyOf(_) => !reveals.work,
            Visible::Anonymous(_) => !reveals.authors,
            Visible::All => true,
        },
    }
}

/// The filter operators the task list runs on a catalogue column of Label Studio type `kind`
/// (or a data field of that type): people columns take user ids, the text columns read from
/// related rows match text, numbers and times compare, yes/no columns are equal or not.
pub fn operators(name: &str, kind: &str) -> &'static [&'static str] {
    const PEOPLE: &[&str] = &["contains", "not_contains", "exists", "not_exists"];
    const COMMENTERS: &[&str] = &["contains", "not_contains"];
    const RELATED_TEXT: &[&str] = &[
        "contains",
        "not_contains",
        "starts_with",
        "ends_with",
        "equal",
        "not_equal",
        "exists",
        "not_exists",
    ];
    const ORDERED: &[&str] = &[
        "equal",
        "not_equal",
        "greater",
        "greater_or_equal",
        "less",
        "less_or_equal",
        "in",
        "not_in",
        "empty",
    ];
    const YES_NO: &[&str] = &["equal", "not_equal"];
    const TEXT: &[&str] = &[
        "contains",
        "not_contains",
        "starts_with",
        "ends_with",
        "equal",
        "not_equal",
        "empty",
    ];
    match name {
        "annotators" | "reviewers" => PEOPLE,
        "comment_authors" => COMMENTERS,
        "annotations_results" | "predictions_results" | "predictions_model_versions" => {
            RELATED_TEXT
        }
        _ => match kind {
            "Number" | "Datetime" => ORDERED,
            "Boolean" => YES_NO,
            _ => TEXT,
        },
    }
}

/// The data manager's column catalogue (`GET /api/dm/columns`): id, title, Label Studio's
/// filter type, help, shown in a new tab, orders.
pub const CATALOGUE: &[(&str, &str, &str, &str, bool, bool)] = &[
    ("id", "ID", "Number", "Task id", true, true),
    (
        "inner_id",
        "Inner ID",
        "Number",
        "Task number inside the project",
        false,
        true,
    ),
    (
        "completed_at",
        "Completed",
        "Datetime",
        "When the newest submitted annotation was made",
        true,
        true,
    ),
    (
        "total_annotations",
        "Annotations",
        "Number",
        "Submitted annotations",
        true,
        true,
    ),
    (
        "cancelled_annotations",
        "Cancelled",
        "Number",
        "Skipped annotations",
        true,
        true,
    ),
    (
        "total_predictions",
        "Predictions",
        "Number",
        "Predictions of the task",
        true,
        true,
    ),
    (
        "annotators",
        "Annotated by",
        "List",
        "Users who submitted an annotation",
        true,
        true,
    ),
    (
        "annotations_results",
        "Annotation results",
        "String",
        "The annotations' results as text",
        false,
        false,
    ),
    (
        "predictions_score",
        "Prediction score",
        "Number",
        "Average prediction score",
        false,
        true,
    ),
    (
        "predictions_model_versions",
        "Prediction model versions",
        "String",
        "Model versions of the predictions",
        false,
        false,
    ),
    (
        "predictions_results",
        "Prediction results",
        "String",
        "The predictions' results as text",
        false,
        false,
    ),
    (
        "agreement",
        "Agreement",
        "Number",
        "Task agreement between annotators",
        false,
        true,
    ),
    (
        "reviewers",
        "Reviewers",
        "List",
        "Users who reviewed an annotation",
        false,
        true,
    ),
    (
        "reviews_accepted",
        "Accepted",
        "Number",
        "Accepted reviews",
        false,
        true,
    ),
    (
        "reviews_rejected",
        "Rejected",
        "Number",
        "Rejected reviews",
        false,
        true,
    ),
    (
        "reviewed",
        "Reviewed",
        "Boolean",
        "Reviewed by the project's review criteria",
        false,
        true,
    ),
    (
        "ground_truth",
        "Ground truth",
        "Boolean",
        "Has a ground-truth annotation",
        false,
        true,
    ),
    (
        "draft_exists",
        "Drafts",
        "Boolean",
        "Has a draft",
        false,
        true,
    ),
    (
        "avg_lead_time",
        "Lead time",
        "Number",
        "Average time spent per annotation (seconds)",
        false,
        true,
    ),
    (
        "comment_count",
        "Comments",
        "Number",
        "Comments on the task",
        false,
        true,
    ),
    (
        "unresolved_comment_count",
        "Unresolved comments",
        "Number",
        "Comments not resolved",
        false,
        true,
    ),
    (
        "last_comment_updated_at",
        "Last comment",
        "Datetime",
        "When a comment was last written or changed",
        false,
        true,
    ),
    (
        "comment_authors",
        "Comment authors",
        "List",
        "Users who commented",
        false,
        false,
    ),
    (
        "created_at",
        "Created",
        "Datetime",
        "When the task was created",
        false,
        true,
    ),
    (
        "updated_at",
        "Updated",
        "Datetime",
        "When the task was last changed",
        false,
        true,
    ),
    (
        "is_labeled",
        "Labeled",
        "Boolean",
        "Has enough annotations",
        false,
        true,
    ),
    (
        "overlap",
        "Overlap",
        "Number",
        "Annotations the task needs",
        false,
        true,
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_take_wildcards_literally() {
        assert_eq!(escape_like("50%_a\\b"), "50\\%\\_a\\\\b");
        let mut params = Vec::new();
        let sql = filter_sql(
            "annotations_results",
            "contains",
            &Value::from("Cat%"),
            &mut params,
        )
        .expect("known column")
        .expect("valid filter");
        assert!(
            sql.starts_with("exists (select 1 from annotation ad"),
            "{sql}"
        );
        assert_eq!(params, vec!["%cat\\%%".to_string()]);
    }

    #[test]
    fn people_filters_take_ids_only() {
        let mut params = Vec::new();
        let ok = filter_sql(
            "annotators",
            "not_contains",
            &serde_json::json!([3, 4]),
            &mut params,
        )
        .expect("known column")
        .expect("valid");
        assert!(
            ok.starts_with("not exists") && ok.contains("in (3,4)"),
            "{ok}"
        );
        let bad = filter_sql("reviewers", "contains", &Value::from("x"), &mut params)
            .expect("known column");
        assert!(bad.is_err());
        assert!(params.is_empty());
    }

    #[test]
    fn what_columns_reveal() {
        assert_eq!(
            reveals("annotators"),
            Some(Reveals {
                work: true,
                authors: true
            })
        );
        assert_eq!(reveals("predictions_score"), Some(Reveals::default()));
        assert_eq!(reveals("id"), None);
        for name in NAMES {
            assert!(reveals(name).is_some(), "{name}");
        }
    }
}
