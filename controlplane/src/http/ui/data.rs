//! The data manager page, `/projects/{id}/data` (ADR 0040): the project's saved views as tabs,
//! each tab's filters, ordering and visible columns, a page of tasks and the bulk actions.
//!
//! Everything goes through the code of the API: tabs through the storage functions of
//! `/api/dm/views`, the task page through [`tasks::task_query`] and [`tasks::list`] as
//! `/api/tasks` does, actions through the handler code of `POST /api/dm/actions`. The page is
//! plain forms and links; nothing needs script.

use std::collections::HashMap;

use axum::{
    extract::{Request, State},
    http::StatusCode,
    response::Response,
};
use minijinja::context;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    PageUser, encode, error_page,
    pages::{
        DeepLink, csrf_refusal, js, label_view, project_header, project_page_user, read_form,
        serde_urlencoded_from,
    },
    redirect, render, user_context,
};
use crate::{
    authz::Permission,
    error::{ApiError, ErrorCode},
    http::{AppState, routes::tasks::ActionView},
    storage::{
        access, projects,
        tasks::{self, Visible},
        views::{self, ViewRow},
    },
};

/// Rows of the task table per page.
const TASKS_PER_PAGE: i64 = 50;

/// Up to this many members, a person filter's value is a list of everyone; beyond, a search
/// field that asks the membership list (`GET /api/organizations/{id}/memberships?search=`) as
/// one types, so a page of an organization with thousands of people stays small.
const PEOPLE_LISTED_MAX: usize = 1000;

/// The columns of the task table: id, title, hidden unless a tab shows it, and whether the
/// column is shown only to those the column catalogue offers it to
/// (`task_columns::offered`: what it reveals of others' work, comment details by role).
const TASK_COLUMNS: &[(&str, &str, bool, bool)] = &[
    ("id", "ID", false, false),
    ("inner_id", "Inner ID", true, false),
    ("total_annotations", "Annotations", false, false),
    ("cancelled_annotations", "Skipped", false, false),
    ("total_predictions", "Predictions", false, false),
    ("is_labeled", "Labeled", false, false),
    ("completed_at", "Completed", true, true),
    ("annotators", "Annotated by", true, true),
    ("annotations_results", "Annotation results", true, true),
    ("ground_truth", "Ground truth", true, true),
    ("avg_lead_time", "Lead time", true, true),
    ("predictions_score", "Prediction score", true, true),
    ("predictions_results", "Prediction results", true, true),
    (
        "predictions_model_versions",
        "Prediction model versions",
        true,
        true,
    ),
    ("agreement", "Agreement", true, true),
    ("reviewers", "Reviewers", true, true),
    ("reviews_accepted", "Accepted reviews", true, false),
    ("reviews_rejected", "Rejected reviews", true, false),
    ("reviewed", "Reviewed", true, false),
    ("draft_exists", "Drafts", true, true),
    ("comment_count", "Comments", true, false),
    (
        "unresolved_comment_count",
        "Unresolved comments",
        true,
        false,
    ),
    ("last_comment_updated_at", "Commented at", true, true),
    ("comment_authors", "Comment authors", true, true),
    ("overlap", "Overlap", true, true),
    ("created_at", "Created", true, false),
    ("updated_at", "Updated", true, false),
];

/// The columns whose cells list people (user ids in the task list's answer).
const PEOPLE_COLUMNS: &[&str] = &["annotators", "reviewers", "comment_authors"];

/// The columns drawn from the page's annotations and predictions, which the task list reads
/// (two queries for the whole page) only when one of these is shown.
const NESTED_COLUMNS: &[&str] = &[
    "annotators",
    "annotations_results",
    "ground_truth",
    "avg_lead_time",
    "predictions_results",
    "predictions_model_versions",
];

/// The words of a result list (Label Studio's `result`): per region, the strings of its value
/// (choices, labels, text, taxonomy paths), joined; numbers such as coordinates are left out.
fn result_words(result: &Value) -> Vec<String> {
    fn strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) if !s.is_empty() => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
            _ => {}
        }
    }
    let mut words = Vec::new();
    for item in result.as_array().into_iter().flatten() {
        if let Some(value) = item.get("value").and_then(Value::as_object) {
            for v in value.values() {
                strings(v, &mut words);
            }
        }
    }
    words
}

/// A cell of the [`NESTED_COLUMNS`] other than `annotators`, from the task's `annotations`
/// and `predictions` (those the caller may see), or `None` for other columns.
fn nested_cell(task: &Value, column: &str) -> Option<String> {
    let list = |key: &str| -> Vec<Value> {
        task.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    // Submitted annotations, as the filters count them: not skipped, with a result.
    let submitted = || -> Vec<Value> {
        list("annotations")
            .into_iter()
            .filter(|a| {
                !a.get("was_cancelled")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    && a.get("result").is_some_and(|r| !r.is_null())
            })
            .collect()
    };
    let results = |items: Vec<Value>| -> String {
        items
            .iter()
            .map(|a| result_words(a.get("result").unwrap_or(&Value::Null)).join(", "))
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" | ")
    };
    Some(match column {
        "annotations_results" => results(submitted()),
        "predictions_results" => results(list("predictions")),
        "predictions_model_versions" => {
            let mut versions: Vec<String> = Vec::new();
            for p in list("predictions") {
                let v = p.get("model_version").and_then(Value::as_str).unwrap_or("");
                if !v.is_empty() && !versions.iter().any(|s| s == v) {
                    versions.push(v.to_string());
                }
            }
            versions.join(", ")
        }
        "ground_truth" => {
            let any = list("annotations")
                .iter()
                .any(|a| a.get("ground_truth").and_then(Value::as_bool) == Some(true));
            if any { "yes" } else { "no" }.to_string()
        }
        "avg_lead_time" => {
            let times: Vec<f64> = submitted()
                .iter()
                .filter_map(|a| a.get("lead_time").and_then(Value::as_f64))
                .collect();
            if times.is_empty() {
                String::new()
            } else {
                format!("{:.1} s", times.iter().sum::<f64>() / times.len() as f64)
            }
        }
        _ => return None,
    })
}

/// The filter operators of Label Studio's format that the task list runs: id and label.
const OPERATORS: &[(&str, &str)] = &[
    ("equal", "is"),
    ("not_equal", "is not"),
    ("contains", "contains"),
    ("not_contains", "does not contain"),
    ("starts_with", "starts with"),
    ("ends_with", "ends with"),
    ("greater", "is greater than"),
    ("greater_or_equal", "is at least"),
    ("less", "is less than"),
    ("less_or_equal", "is at most"),
    ("in", "is between"),
    ("not_in", "is not between"),
    ("empty", "is empty"),
    ("exists", "exists"),
    ("not_exists", "does not exist"),
];

/// A column of the table.
#[derive(Debug, Clone)]
struct Column {
    /// `id`, `data.text`, … (`data` alone: the whole task data, when the labeling
    /// configuration names no keys).
    id: String,
    title: String,
    default_hidden: bool,
}

impl Column {
    /// The task columns, and data fields whose name the task list orders by (letters, digits,
    /// `_`, `-`; ADR 0055); not the whole task data.
    fn sortable(&self) -> bool {
        match self.id.strip_prefix("data.") {
            Some(key) => key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            None => {
                self.id != "data"
                    && crate::storage::task_columns::CATALOGUE
                        .iter()
                        .find(|(name, ..)| *name == self.id)
                        .is_none_or(|(.., orders)| *orders)
            }
        }
    }
}

/// The project's columns: the data keys of its labeling configuration after the id, then the
/// task columns. The columns marked so in [`TASK_COLUMNS`] are kept only when `offered` says
/// the catalogue offers them (annotators who see only their own work get no agreement, as in
/// the API, and annotators no comment details, ADR 0051).
fn columns(project: &projects::ProjectView, offered: &dyn Fn(&str) -> bool) -> Vec<Column> {
    let mut out = Vec::new();
    for (id, title, hidden, checked) in TASK_COLUMNS {
        if *checked && !offered(id) {
            continue;
        }
        out.push(Column {
            id: (*id).to_string(),
            title: (*title).to_string(),
            default_hidden: *hidden,
        });
        if *id == "id" {
            if project.data_types.is_empty() {
                out.push(Column {
                    id: "data".into(),
                    title: "Data".into(),
                    default_hidden: false,
                });
            }
            for key in project.data_types.keys() {
                out.push(Column {
                    id: format!("data.{key}"),
                    title: key.clone(),
                    default_hidden: false,
                });
            }
        }
    }
    out
}

/// A column the filter picker offers: the server's catalogue (`GET /api/dm/columns`) as the
/// caller may use it, then the project's data fields.
#[derive(Debug, Clone, serde::Serialize)]
struct FilterColumn {
    id: String,
    title: String,
    /// Label Studio's filter type: `Number`, `Datetime`, `Boolean`, `String`, `List`.
    kind: String,
    /// The value input that fits: `number`, `datetime`, `boolean`, `user` or `text`.
    input: &'static str,
    /// The operators the task list runs on this column.
    operators: &'static [&'static str],
}

/// The columns the filter picker offers `visible`/`access`: exactly the catalogue's, in its
/// order, then `data.<field>` per data field of the labeling configuration.
fn filter_columns(
    project: &projects::ProjectView,
    visible: Visible,
    access: &access::ProjectAccess,
) -> Vec<FilterColumn> {
    use crate::storage::task_columns::{CATALOGUE, offered, operators};
    let mut out: Vec<FilterColumn> = CATALOGUE
        .iter()
        .filter(|(name, ..)| offered(name, visible, access))
        .map(|(name, title, kind, ..)| FilterColumn {
            id: (*name).to_string(),
            title: (*title).to_string(),
            kind: (*kind).to_string(),
            input: match (*name, *kind) {
                (_, "Number") => "number",
                (_, "Datetime") => "datetime",
                (_, "Boolean") => "boolean",
                ("annotators" | "reviewers" | "comment_authors", _) => "user",
                _ => "text",
            },
            operators: operators(name, kind),
        })
        .collect();
    for (key, kind) in &project.data_types {
        let kind = if kind.as_str() == Some("Number") {
            "Number"
        } else {
            "String"
        };
        out.push(FilterColumn {
            id: format!("data.{key}"),
            title: format!("data: {key}"),
            kind: kind.to_string(),
            input: if kind == "Number" { "number" } else { "text" },
            operators: operators("", kind),
        });
    }
    out
}

/// A `datetime-local` input's value (`2026-01-31T10:00`, taken as UTC), a date alone, or an
/// RFC 3339 time, as the RFC 3339 time the task list compares; other text is kept for the
/// task list to refuse with its message.
fn rfc3339_utc(text: &str) -> String {
    use time::{OffsetDateTime, PrimitiveDateTime, format_description::well_known::Rfc3339};
    let t = text.trim();
    if OffsetDateTime::parse(t, &Rfc3339).is_ok() {
        return t.to_string();
    }
    let local = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let local_secs =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let date = time::macros::format_description!("[year]-[month]-[day]");
    let parsed = PrimitiveDateTime::parse(t, &local)
        .or_else(|_| PrimitiveDateTime::parse(t, &local_secs))
        .or_else(|_| time::Date::parse(t, &date).map(|d| d.midnight()));
    match parsed
        .ok()
        .and_then(|p| p.assume_utc().format(&Rfc3339).ok())
    {
        Some(v) => v,
        None => t.to_string(),
    }
}

/// A stored RFC 3339 time as a `datetime-local` input's value in UTC; other text unchanged.
fn datetime_input(text: &str) -> String {
    use time::{OffsetDateTime, UtcOffset, format_description::well_known::Rfc3339};
    let shown = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    OffsetDateTime::parse(text.trim(), &Rfc3339)
        .ok()
        .and_then(|t| t.to_offset(UtcOffset::UTC).format(&shown).ok())
        .unwrap_or_else(|| text.to_string())
}

/// The query string of the page.
#[derive(Debug, Deserialize, Default)]
pub(super) struct DataQuery {
    view: Option<String>,
    page: Option<String>,
    ordering: Option<String>,
    /// Deep link: open this task in the editor (Label Studio's `?task=`).
    task: Option<String>,
    /// With `task`: select this annotation.
    annotation: Option<String>,
    /// With `annotation`: select this region.
    region: Option<String>,
    /// `1`: start the label stream (Label Studio's `?labeling=1`).
    labeling: Option<String>,
}

/// One row of the filter form.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct FilterRow {
    filter: String,
    operator: String,
    value: String,
    value_max: String,
}

/// What a render shows besides the tasks: a result, an error and the filter form as sent.
#[derive(Default)]
struct Notice {
    message: Option<String>,
    error: Option<String>,
    filter_error: Option<String>,
    submitted: Option<(String, Vec<FilterRow>)>,
}

/// The text of a filter value in the form.
fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A stored filter item as a row of the form.
fn filter_row(item: &Value) -> FilterRow {
    let name = item.get("filter").and_then(Value::as_str).unwrap_or("");
    let value = item.get("value").cloned().unwrap_or(Value::Null);
    let (value, value_max) = match (&value, value.get("min"), value.get("max")) {
        (Value::Object(_), Some(min), Some(max)) => (value_text(min), value_text(max)),
        _ => (value_text(&value), String::new()),
    };
    FilterRow {
        filter: name
            .strip_prefix("filter:tasks:")
            .unwrap_or(name)
            .to_string(),
        operator: item
            .get("operator")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        value,
        value_max,
    }
}

/// A row of the form as a stored filter item (Label Studio's shape), typed as its column
/// takes it: yes/no as booleans, people as user ids, times as RFC 3339.
fn filter_item(row: &FilterRow, columns: &[FilterColumn]) -> Value {
    let column = columns.iter().find(|c| c.id == row.filter);
    let kind = column.map_or("String", |c| c.kind.as_str());
    let input = column.map_or("text", |c| c.input);
    let typed = |s: &str| -> Value {
        match (input, s.trim()) {
            ("boolean", "true" | "yes") => Value::Bool(true),
            ("boolean", "false" | "no") => Value::Bool(false),
            ("user", t) => t
                .parse::<i64>()
                .map_or_else(|_| Value::String(t.to_string()), Value::from),
            ("datetime", t) => Value::String(rfc3339_utc(t)),
            ("text", _) => Value::String(s.to_string()),
            (_, t) => Value::String(t.to_string()),
        }
    };
    let value = match row.operator.as_str() {
        "in" | "not_in" => json!({"min": typed(&row.value), "max": typed(&row.value_max)}),
        "empty" => Value::Bool(!matches!(row.value.trim(), "false" | "no")),
        "exists" | "not_exists" => Value::Null,
        _ => typed(&row.value),
    };
    json!({
        "filter": format!("filter:tasks:{}", row.filter),
        "operator": row.operator,
        "type": kind,
        "value": value,
    })
}

/// A person as the filters name them: "First Last (email)", or the email alone.
fn person_label(u: &crate::storage::users::UserView) -> String {
    let name = format!("{} {}", u.first_name, u.last_name);
    match name.trim() {
        "" => u.email.clone(),
        name => format!("{name} ({})", u.email),
    }
}

/// Replaces the value of each person filter in `rows` that is an email with the id of the
/// organization's member who has it (case-insensitive); refuses an email nobody has.
async fn people_by_email(
    state: &AppState,
    user: &PageUser,
    columns: &[FilterColumn],
    rows: &mut [FilterRow],
) -> Result<(), ApiError> {
    let is_email = |r: &FilterRow| {
        r.value.contains('@')
            && columns
                .iter()
                .any(|c| c.id == r.filter && c.input == "user")
    };
    if !rows.iter().any(is_email) {
        return Ok(());
    }
    let users = crate::storage::users::list_users(&state.db, &user.actor).await?;
    for row in rows.iter_mut().filter(|r| is_email(r)) {
        let email = row.value.trim();
        let found = users.iter().find(|u| u.email.eq_ignore_ascii_case(email));
        match found {
            Some(u) => row.value = u.id.to_string(),
            None => {
                return Err(ApiError::field(
                    ErrorCode::InvalidQuery,
                    "value",
                    format!(
                        "no member of this organization has the email {email:?}: type a \
                         member's email or user id, or pick a person from the suggestions"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The rows of the filter form from the posted fields (in document order: every row sends
/// `filter`, `operator`, `value` and `value_max`). Rows without a column are dropped.
fn posted_rows(fields: &[(String, String)]) -> Vec<FilterRow> {
    let all = |name: &str| -> Vec<String> {
        fields
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let (filters, operators, values, maxima) = (
        all("filter"),
        all("operator"),
        all("value"),
        all("value_max"),
    );
    filters
        .iter()
        .enumerate()
        .map(|(i, f)| FilterRow {
            filter: f.trim().to_string(),
            operator: operators.get(i).cloned().unwrap_or_default(),
            value: values.get(i).cloned().unwrap_or_default(),
            value_max: maxima.get(i).cloned().unwrap_or_default(),
        })
        .filter(|r| !r.filter.is_empty())
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The `hiddenColumns.explore` of a tab, as column ids, when it has one.
fn hidden_of(data: &Value) -> Option<Vec<String>> {
    data.pointer("/hiddenColumns/explore")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|s| s.strip_prefix("tasks:").unwrap_or(s).to_string())
                .collect()
        })
}

/// A task's cell of `column`, as text; `people` names the users of the people columns.
fn cell(task: &Value, column: &str, people: &HashMap<i64, String>) -> String {
    let clip = |s: String| -> String {
        if s.chars().count() > 160 {
            format!("{}…", s.chars().take(160).collect::<String>())
        } else {
            s
        }
    };
    if column == "data" {
        return clip(task.get("data").map(Value::to_string).unwrap_or_default());
    }
    if let Some(key) = column.strip_prefix("data.") {
        return clip(task.pointer("/data").and_then(|d| d.get(key)).map_or_else(
            String::new,
            |v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        ));
    }
    if let Some(text) = nested_cell(task, column) {
        return clip(text);
    }
    if PEOPLE_COLUMNS.contains(&column) {
        let ids = task.get(column).and_then(Value::as_array);
        return clip(
            ids.into_iter()
                .flatten()
                .filter_map(Value::as_i64)
                .map(|id| {
                    people
                        .get(&id)
                        .cloned()
                        .unwrap_or_else(|| format!("user {id}"))
                })
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    match task.get(column) {
        None | Some(Value::Null) => String::new(),
        Some(Value::Bool(b)) => if *b { "yes" } else { "no" }.to_string(),
        Some(Value::Number(n)) if column == "predictions_score" => {
            n.as_f64().map(|f| format!("{f:.2}")).unwrap_or_default()
        }
        Some(Value::Number(n)) if column == "agreement" => n
            .as_f64()
            .map(|f| format!("{:.0}%", f * 100.0))
            .unwrap_or_default(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The page's link with `view`, `ordering` and `page`.
fn data_href(project: i64, view: Option<i64>, ordering: Option<&str>, page: Option<i64>) -> String {
    let mut parts = Vec::new();
    if let Some(v) = view {
        parts.push(format!("view={v}"));
    }
    if let Some(o) = ordering {
        parts.push(format!("ordering={}", encode(o)));
    }
    if let Some(p) = page {
        parts.push(format!("page={p}"));
    }
    if parts.is_empty() {
        format!("/projects/{project}/data")
    } else {
        format!("/projects/{project}/data?{}", parts.join("&"))
    }
}

/// Whether `role` holds `permission`.
fn holds(role: crate::authz::Role, permission: Permission) -> bool {
    role >= permission.minimum_role()
}

/// Parses the query string; an unreadable one is as if absent.
fn data_query(parts: &axum::http::request::Parts) -> DataQuery {
    parts
        .uri
        .query()
        .and_then(serde_urlencoded_from)
        .unwrap_or_default()
}

/// A number from a form or query, or the refusal naming it.
fn int(name: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            ApiError::field(
                ErrorCode::InvalidQuery,
                name,
                format!("{v:?} is not a number"),
            )
        }),
    }
}

/// Renders the page for `query` with `notice`.
async fn data_view(
    state: &AppState,
    user: &PageUser,
    id: i64,
    query: &DataQuery,
    status: StatusCode,
    notice: Notice,
) -> Response {
    let actor = &user.actor;
    let project = match projects::get(&state.db, actor, id).await {
        Ok(p) => p,
        Err(e) => return error_page(Some(user), &e),
    };
    let access = match access::project(&state.db, actor, id, Permission::ProjectView).await {
        Ok(a) => a,
        Err(e) => return error_page(Some(user), &e),
    };
    let role = access.role;
    let visible = Visible::for_access(actor, &access);
    let tabs = match views::list(&state.db, actor, id).await {
        Ok(t) => t,
        Err(e) => return error_page(Some(user), &e),
    };
    let wanted = match int("view", query.view.as_deref()) {
        Ok(v) => v,
        Err(e) => return error_page(Some(user), &e),
    };
    let current: Option<&ViewRow> = match wanted {
        Some(v) => match tabs.iter().find(|t| t.id == v) {
            Some(t) => Some(t),
            None => return error_page(Some(user), &ApiError::not_found("view")),
        },
        None => tabs.first(),
    };
    let data: Value = current
        .and_then(|t| serde_json::from_str(&t.data).ok())
        .unwrap_or_else(|| json!({}));
    let columns = columns(&project, &|name| {
        crate::storage::task_columns::offered(name, visible, &access)
    });
    let hidden = hidden_of(&data);
    let shown: Vec<&Column> = columns
        .iter()
        .filter(|c| match &hidden {
            Some(h) => !h.contains(&c.id),
            None => !c.default_hidden,
        })
        .collect();
    let ordering = query
        .ordering
        .clone()
        .filter(|o| !o.is_empty())
        .or_else(|| {
            data.pointer("/ordering/0")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    let query_json = json!({
        "filters": data.get("filters"),
        "ordering": ordering.as_ref().map(|o| vec![o.clone()]),
    });
    let task_query = match tasks::task_query(state.db.dialect(), &query_json, false) {
        Ok(q) => q,
        Err(e) => return error_page(Some(user), &e),
    };
    let page = int("page", query.page.as_deref())
        .ok()
        .flatten()
        .filter(|p| *p >= 1)
        .unwrap_or(1);
    let window = tasks::Window {
        offset: (page - 1).saturating_mul(TASKS_PER_PAGE),
        limit: TASKS_PER_PAGE,
        // Who annotated, the results, ground truth, lead time and model versions are read with
        // the page's annotations and predictions, so only when such a column is shown.
        fields: if shown
            .iter()
            .any(|c| NESTED_COLUMNS.contains(&c.id.as_str()))
        {
            tasks::Fields::All
        } else {
            tasks::Fields::TaskOnly
        },
        ids_only: false,
    };
    let (_, listed) = match tasks::list(&state.db, actor, id, &task_query, window).await {
        Ok(v) => v,
        Err(e) => return error_page(Some(user), &e),
    };
    // The organization's people by id, for the people columns (and the filters' user inputs).
    let users = match crate::storage::users::list_users(&state.db, actor).await {
        Ok(u) => u,
        Err(e) => return error_page(Some(user), &e),
    };
    let people: HashMap<i64, String> = users
        .iter()
        .map(|u| {
            let name = format!("{} {}", u.first_name, u.last_name);
            let name = name.trim();
            (
                u.id,
                if name.is_empty() {
                    u.email.clone()
                } else {
                    name.to_string()
                },
            )
        })
        .collect();
    // "Review this task" for those who may review here (reviewers and above, as
    // `POST /api/annotation-reviews`), on tasks with something submitted.
    let can_review = holds(role, Permission::ReviewCreate);
    let rows: Vec<Value> = listed
        .tasks
        .iter()
        .map(|t| {
            let v = serde_json::to_value(t).unwrap_or(Value::Null);
            let cells: Vec<Value> = shown
                .iter()
                .map(|c| json!({"data": c.id.starts_with("data"), "text": cell(&v, &c.id, &people)}))
                .collect();
            let review = (can_review && t.total_annotations > 0)
                .then(|| format!("/projects/{id}/review?task={}", t.id));
            json!({"id": t.id, "cells": cells, "href": format!("/projects/{id}/data?task={}", t.id), "review_href": review})
        })
        .collect();
    let view_id = current.map(|t| t.id);
    let ordering_now = ordering.as_deref().unwrap_or("");
    let headers: Vec<Value> = shown
        .iter()
        .map(|c| {
            let (sort, next) = if ordering_now == c.id {
                ("ascending", format!("-{}", c.id))
            } else if ordering_now.strip_prefix('-') == Some(c.id.as_str()) {
                ("descending", c.id.clone())
            } else {
                ("none", c.id.clone())
            };
            json!({
                "id": c.id,
                "title": c.title,
                "sort": sort,
                "href": c.sortable().then(|| data_href(id, view_id, Some(&next), None)),
            })
        })
        .collect();
    let can_manage = holds(role, Permission::TaskManage);
    let tab_list: Vec<Value> = tabs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let d: Value = serde_json::from_str(&t.data).unwrap_or_else(|_| json!({}));
            json!({
                "id": t.id,
                "title": d.get("title").and_then(Value::as_str).filter(|s| !s.is_empty())
                    .map_or_else(|| format!("Tab {}", i + 1), str::to_string),
                "href": data_href(id, Some(t.id), None, None),
                "current": Some(t.id) == view_id,
                "can_change": t.user_id == Some(actor.user_id) || can_manage,
            })
        })
        .collect();
    let current_tab = tab_list
        .iter()
        .find(|t| t["current"] == json!(true))
        .cloned();
    let (conjunction, mut filter_rows) = match notice.submitted {
        Some((c, rows)) => (c, rows),
        None => (
            data.pointer("/filters/conjunction")
                .and_then(Value::as_str)
                .unwrap_or("and")
                .to_string(),
            data.pointer("/filters/items")
                .and_then(Value::as_array)
                .map(|items| items.iter().map(filter_row).collect())
                .unwrap_or_default(),
        ),
    };
    filter_rows.push(FilterRow::default());
    let offered = filter_columns(&project, visible, &access);
    let all_operators: Vec<&str> = OPERATORS.iter().map(|(k, _)| *k).collect();
    let filters_shown: Vec<Value> = filter_rows
        .iter()
        .map(|f| {
            let column = offered.iter().find(|c| c.id == f.filter);
            let input = column.map_or("text", |c| c.input);
            let value = match input {
                "datetime" => datetime_input(&f.value),
                _ => f.value.clone(),
            };
            let value_max = match input {
                "datetime" => datetime_input(&f.value_max),
                _ => f.value_max.clone(),
            };
            // Who a person filter's id is, beside the search field of a large organization.
            let person = (input == "user")
                .then(|| f.value.trim().parse::<i64>().ok())
                .flatten()
                .and_then(|id| users.iter().find(|u| u.id == id))
                .map(person_label);
            json!({
                "filter": f.filter,
                "operator": f.operator,
                "value": value,
                "value_max": value_max,
                "person": person,
                "input": input,
                "operators": column.map_or(all_operators.clone(), |c| c.operators.to_vec()),
            })
        })
        .collect();
    let people_search = (users.len() > PEOPLE_LISTED_MAX)
        .then(|| format!("/api/organizations/{}/memberships", actor.org_id));
    let members: Vec<Value> =
        if people_search.is_none() && offered.iter().any(|c| c.input == "user") {
            users
                .iter()
                .map(|u| json!({"id": u.id.to_string(), "label": person_label(u)}))
                .collect()
        } else {
            Vec::new()
        };
    let filter_columns: Vec<Value> = offered
        .iter()
        .map(|c| json!({"id": c.id, "title": c.title, "input": c.input, "operators": c.operators.join(" ")}))
        .collect();
    let column_toggles: Vec<Value> = columns
        .iter()
        .map(|c| json!({"id": c.id, "title": c.title, "shown": shown.iter().any(|s| s.id == c.id)}))
        .collect();
    let actions = match crate::http::routes::tasks::available_actions(state, actor, id).await {
        Ok(a) => a,
        Err(e) => return error_page(Some(user), &e),
    };
    // Bulk labeling (Reviewer and above) and assigning (`task.manage`), ADR 0061.
    let bulk_fields: Vec<Value> = if holds(role, Permission::AnnotationManage) {
        access
            .row
            .config()
            .map(|c| super::bulk::label_fields(&c))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let assignees: Vec<Value> = if holds(role, Permission::TaskManage) {
        match crate::storage::members::list(&state.db, actor, id).await {
            Ok(members) => members
                .iter()
                .filter(|m| !m.paused)
                .map(|m| json!({"id": m.user.id, "label": person_label(&m.user)}))
                .collect(),
            Err(e) => return error_page(Some(user), &e),
        }
    } else {
        Vec::new()
    };
    let selectable = !actions.is_empty() || !bulk_fields.is_empty();
    let operators: Vec<Value> = OPERATORS
        .iter()
        .map(|(k, t)| json!({"id": k, "title": t}))
        .collect();
    let pages = ((listed.total + TASKS_PER_PAGE - 1) / TASKS_PER_PAGE).max(1);
    render(
        status,
        "data.html",
        context! {
            user => user_context(user),
            project => js(&project_header(&project, role)),
            tabs => js(&tab_list),
            tab => js(&current_tab),
            view => view_id,
            ordering => ordering_now,
            ordering_override => query.ordering.as_deref().filter(|o| !o.is_empty()),
            headers => js(&headers),
            tasks => js(&rows),
            total => listed.total,
            page => page,
            pages => pages,
            prev_href => (page > 1).then(|| data_href(id, view_id, query.ordering.as_deref().filter(|o| !o.is_empty()), Some(page - 1))),
            next_href => (page < pages).then(|| data_href(id, view_id, query.ordering.as_deref().filter(|o| !o.is_empty()), Some(page + 1))),
            conjunction => conjunction,
            filters => js(&filters_shown),
            members => js(&members),
            people_search => people_search,
            filter_columns => js(&filter_columns),
            operators => js(&operators),
            column_toggles => js(&column_toggles),
            actions => js(&actions),
            bulk_fields => js(&bulk_fields),
            assignees => js(&assignees),
            can_assign => holds(role, Permission::TaskManage),
            selectable => selectable,
            can_review => can_review,
            message => notice.message,
            error => notice.error,
            filter_error => notice.filter_error,
        },
    )
}

/// `GET /projects/{id}/data`.
pub(super) async fn data_page(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let (user, id) = match project_page_user(&state, &parts).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let query = data_query(&parts);
    if query.labeling.as_deref() == Some("1") {
        return label_view(&state, &user, id, None).await;
    }
    match deep_link(&query) {
        Ok(Some(link)) => label_view(&state, &user, id, Some(link)).await,
        Ok(None) => data_view(&state, &user, id, &query, StatusCode::OK, Notice::default()).await,
        Err(e) => error_page(Some(&user), &e),
    }
}

/// The task, annotation and region a `?task=…` address names, if it names a task.
fn deep_link(query: &DataQuery) -> Result<Option<DeepLink>, ApiError> {
    let Some(task) = int("task", query.task.as_deref())? else {
        return Ok(None);
    };
    Ok(Some(DeepLink {
        task,
        annotation: int("annotation", query.annotation.as_deref())?,
        region: query
            .region
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string),
    }))
}

/// The tab named by the form's `view`, checked to be one of this project's.
async fn posted_tab(
    state: &AppState,
    user: &PageUser,
    project: i64,
    fields: &[(String, String)],
) -> Result<Option<ViewRow>, ApiError> {
    match int("view", field(fields, "view"))? {
        Some(v) => Ok(Some(
            views::for_query(&state.db, &user.actor, v, Some(project)).await?,
        )),
        None => Ok(None),
    }
}

/// Saves `data` into `tab`, or into a new tab when there is none; returns the tab's id.
async fn save_tab(
    state: &AppState,
    user: &PageUser,
    project: i64,
    tab: Option<&ViewRow>,
    data: Value,
) -> Result<i64, ApiError> {
    match tab {
        Some(t) => Ok(views::update(&state.db, &user.actor, t.id, data).await?.id),
        None => Ok(views::create(&state.db, &user.actor, project, data)
            .await?
            .id),
    }
}

fn tab_data(tab: Option<&ViewRow>) -> Map<String, Value> {
    tab.and_then(|t| serde_json::from_str::<Map<String, Value>>(&t.data).ok())
        .unwrap_or_else(|| {
            let mut m = Map::new();
            m.insert("title".into(), Value::String("Default".into()));
            m
        })
}

/// `POST /projects/{id}/data`: the page's forms, told apart by `op`: `add_tab`, `rename_tab`,
/// `delete_tab`, `filters`, `columns` and `action`.
pub(super) async fn data_post(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (user, id) = match project_page_user(&state, &parts).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (parts, fields) = match read_form::<Vec<(String, String)>>(&state, parts, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Some(refused) = csrf_refusal(&user, field(&fields, "csrf_token").unwrap_or("")) {
        return refused;
    }
    let mut query = data_query(&parts);
    let tab = match posted_tab(&state, &user, id, &fields).await {
        Ok(t) => t,
        Err(e) => return error_page(Some(&user), &e),
    };
    if let Some(t) = &tab {
        query.view = Some(t.id.to_string());
    }
    // The ordering the page was showing, so that the page shown after an action keeps it.
    if field(&fields, "op") == Some("action")
        && let Some(o) = field(&fields, "ordering").filter(|o| !o.is_empty())
    {
        query.ordering = Some(o.to_string());
    }
    let fail = |e: ApiError, notice: Notice| {
        let query = &query;
        let user = &user;
        let state = &state;
        async move {
            if e.code.status().is_server_error() || e.code == ErrorCode::NotFound {
                return error_page(Some(user), &e);
            }
            let notice = Notice {
                error: notice.filter_error.is_none().then(|| e.detail.clone()),
                ..notice
            };
            data_view(state, user, id, query, e.code.status(), notice).await
        }
    };
    let op = field(&fields, "op").unwrap_or("");
    match op {
        "add_tab" => {
            let title = field(&fields, "title").unwrap_or("").trim().to_string();
            let title = if title.is_empty() {
                "New tab".to_string()
            } else {
                title
            };
            match views::create(&state.db, &user.actor, id, json!({"title": title})).await {
                Ok(row) => redirect(&data_href(id, Some(row.id), None, None)),
                Err(e) => fail(e, Notice::default()).await,
            }
        }
        "rename_tab" => {
            let Some(t) = &tab else {
                return fail(no_tab(), Notice::default()).await;
            };
            let title = field(&fields, "title").unwrap_or("").trim().to_string();
            if title.is_empty() {
                let e =
                    ApiError::field(ErrorCode::ValidationError, "title", "Give the tab a name.");
                return fail(e, Notice::default()).await;
            }
            let mut data = tab_data(Some(t));
            data.insert("title".into(), Value::String(title));
            match views::update(&state.db, &user.actor, t.id, Value::Object(data)).await {
                Ok(_) => redirect(&data_href(id, Some(t.id), None, None)),
                Err(e) => fail(e, Notice::default()).await,
            }
        }
        "delete_tab" => {
            let Some(t) = &tab else {
                return fail(no_tab(), Notice::default()).await;
            };
            match views::delete(&state.db, &user.actor, t.id).await {
                Ok(()) => redirect(&data_href(id, None, None, None)),
                Err(e) => fail(e, Notice::default()).await,
            }
        }
        "filters" => {
            let project = match projects::get(&state.db, &user.actor, id).await {
                Ok(p) => p,
                Err(e) => return error_page(Some(&user), &e),
            };
            let access =
                match access::project(&state.db, &user.actor, id, Permission::ProjectView).await {
                    Ok(a) => a,
                    Err(e) => return error_page(Some(&user), &e),
                };
            let offered =
                filter_columns(&project, Visible::for_access(&user.actor, &access), &access);
            let rows = posted_rows(&fields);
            let conjunction = field(&fields, "conjunction").unwrap_or("and").to_string();
            // A column the picker does not offer this user is refused before anything is saved.
            if let Some(row) = rows
                .iter()
                .find(|r| !offered.iter().any(|c| c.id == r.filter))
            {
                let e = ApiError::field(
                    ErrorCode::InvalidQuery,
                    "filter",
                    format!(
                        "you cannot filter by {:?} in this project: choose one of the columns \
                         the filter list offers",
                        row.filter
                    ),
                );
                let notice = Notice {
                    filter_error: Some(e.detail.clone()),
                    submitted: Some((conjunction, rows.clone())),
                    ..Notice::default()
                };
                return fail(e, notice).await;
            }
            // A person typed as an email (the search field of a large organization without
            // script) is looked up among the organization's members.
            let mut rows = rows;
            if let Err(e) = people_by_email(&state, &user, &offered, &mut rows).await {
                let notice = Notice {
                    filter_error: Some(e.detail.clone()),
                    submitted: Some((conjunction, rows.clone())),
                    ..Notice::default()
                };
                return fail(e, notice).await;
            }
            let items: Vec<Value> = rows.iter().map(|r| filter_item(r, &offered)).collect();
            let mut data = tab_data(tab.as_ref());
            data.insert(
                "filters".into(),
                json!({"conjunction": conjunction, "items": items}),
            );
            if let Some(o) = field(&fields, "ordering").filter(|o| !o.is_empty()) {
                data.insert("ordering".into(), json!([o]));
            }
            match save_tab(&state, &user, id, tab.as_ref(), Value::Object(data)).await {
                Ok(v) => redirect(&data_href(id, Some(v), None, None)),
                Err(e) if e.code == ErrorCode::Forbidden => fail(e, Notice::default()).await,
                Err(e) => {
                    let notice = Notice {
                        filter_error: Some(e.detail.clone()),
                        submitted: Some((conjunction, rows)),
                        ..Notice::default()
                    };
                    fail(e, notice).await
                }
            }
        }
        "columns" => {
            let project = match projects::get(&state.db, &user.actor, id).await {
                Ok(p) => p,
                Err(e) => return error_page(Some(&user), &e),
            };
            let shown: Vec<&str> = fields
                .iter()
                .filter(|(k, _)| k == "show")
                .map(|(_, v)| v.as_str())
                .collect();
            let hidden: Vec<String> = columns(&project, &|_| true)
                .iter()
                .filter(|c| !shown.contains(&c.id.as_str()))
                .map(|c| format!("tasks:{}", c.id))
                .collect();
            let mut data = tab_data(tab.as_ref());
            let mut hidden_columns = data
                .get("hiddenColumns")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            hidden_columns.insert("explore".into(), json!(hidden));
            data.insert("hiddenColumns".into(), Value::Object(hidden_columns));
            match save_tab(&state, &user, id, tab.as_ref(), Value::Object(data)).await {
                Ok(v) => redirect(&data_href(id, Some(v), None, None)),
                Err(e) => fail(e, Notice::default()).await,
            }
        }
        "action" => run_action(&state, &user, id, tab.as_ref(), &query, &fields).await,
        other => {
            let e = ApiError::field(
                ErrorCode::ValidationError,
                "op",
                format!("unknown form {other:?}"),
            );
            fail(e, Notice::default()).await
        }
    }
}

fn no_tab() -> ApiError {
    ApiError::field(ErrorCode::ValidationError, "view", "Choose a tab first.")
}

/// Runs a bulk action: asks first when the action has a confirmation, then runs it through the
/// code of `POST /api/dm/actions` and shows the page with the result.
async fn run_action(
    state: &AppState,
    user: &PageUser,
    id: i64,
    tab: Option<&ViewRow>,
    query: &DataQuery,
    fields: &[(String, String)],
) -> Response {
    let action = field(fields, "action").unwrap_or("").to_string();
    let all = field(fields, "all").is_some_and(|v| !v.is_empty());
    let ids: Vec<i64> = fields
        .iter()
        .filter(|(k, _)| k == "task")
        .filter_map(|(_, v)| v.trim().parse().ok())
        .collect();
    let refuse = |status: StatusCode, message: String| async move {
        data_view(
            state,
            user,
            id,
            query,
            status,
            Notice {
                error: Some(message),
                ..Notice::default()
            },
        )
        .await
    };
    if !all && ids.is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Select some tasks (or all tasks of the tab) first.".into(),
        )
        .await;
    }
    match field(fields, "bulk") {
        Some("label") => return bulk_label(state, user, id, tab, query, all, &ids, fields).await,
        Some("assign") => return bulk_assign(state, user, id, tab, query, all, &ids, fields).await,
        _ => {}
    }
    let offered: Vec<ActionView> =
        match crate::http::routes::tasks::available_actions(state, &user.actor, id).await {
            Ok(a) => a,
            Err(e) => return error_page(Some(user), &e),
        };
    let confirmed = field(fields, "confirmed").is_some_and(|v| v == "1");
    if let Some(spec) = offered.iter().find(|a| a.id == action)
        && !spec.dialog.is_null()
        && !confirmed
    {
        let project = match projects::get(&state.db, &user.actor, id).await {
            Ok(p) => p,
            Err(e) => return error_page(Some(user), &e),
        };
        let role = match super::pages::project_role(state, user, id, Permission::ProjectView).await
        {
            Ok(r) => r,
            Err(r) => return r,
        };
        return render(
            StatusCode::OK,
            "confirm.html",
            context! {
                user => user_context(user),
                project => js(&project_header(&project, role)),
                action => js(spec),
                view => tab.map(|t| t.id),
                ordering => query.ordering.as_deref().filter(|o| !o.is_empty()),
                all => all,
                ids => ids,
                back => data_href(id, tab.map(|t| t.id), query.ordering.as_deref().filter(|o| !o.is_empty()), None),
            },
        );
    }
    let body = selection(all, &ids);
    let outcome =
        crate::http::routes::tasks::perform_action(state, &user.actor, id, tab, &action, &body)
            .await
            .map(|result| {
                result
                    .get("detail")
                    .and_then(Value::as_str)
                    .unwrap_or("Done.")
                    .to_string()
            });
    after_bulk(state, user, id, query, outcome).await
}

/// The page after an action or a bulk form: its message, or the refusal (a 4xx with the reason
/// shown).
async fn after_bulk(
    state: &AppState,
    user: &PageUser,
    id: i64,
    query: &DataQuery,
    outcome: Result<String, ApiError>,
) -> Response {
    match outcome {
        Ok(message) => {
            data_view(
                state,
                user,
                id,
                query,
                StatusCode::OK,
                Notice {
                    message: Some(message),
                    ..Notice::default()
                },
            )
            .await
        }
        Err(e) if e.code.status().is_client_error() && e.code != ErrorCode::NotFound => {
            data_view(
                state,
                user,
                id,
                query,
                e.code.status(),
                Notice {
                    error: Some(e.detail),
                    ..Notice::default()
                },
            )
            .await
        }
        Err(e) => error_page(Some(user), &e),
    }
}

/// The data-manager body selecting the form's tasks: all of the tab, or the ticked ones.
fn selection(all: bool, ids: &[i64]) -> Map<String, Value> {
    let mut body = Map::new();
    let selected = if all {
        json!({"all": true, "excluded": []})
    } else {
        json!({"all": false, "included": ids})
    };
    body.insert("selectedItems".into(), selected);
    body
}

/// "Label selected tasks": the form's answers become one annotation per selected task through
/// the code of `POST /api/annotations/bulk/` (ADR 0061).
#[allow(clippy::too_many_arguments)]
async fn bulk_label(
    state: &AppState,
    user: &PageUser,
    id: i64,
    tab: Option<&ViewRow>,
    query: &DataQuery,
    all: bool,
    ids: &[i64],
    fields: &[(String, String)],
) -> Response {
    let outcome = async {
        let access =
            access::project(&state.db, &user.actor, id, Permission::AnnotationManage).await?;
        crate::storage::bulk::check_suitable(&access.row)?;
        let config = access
            .row
            .config()
            .ok_or_else(|| ApiError::internal("a suitable project has a configuration"))?;
        let result = super::bulk::label_result(&config, fields)?;
        let task_ids = if all {
            crate::http::routes::annotations::selected_tasks(
                state,
                &user.actor,
                id,
                &selection(true, &[]),
                tab,
            )
            .await?
        } else {
            ids.to_vec()
        };
        let input = crate::storage::annotations::AnnotationInput {
            result: Some(result),
            ..Default::default()
        };
        let done =
            crate::http::routes::annotations::label(state, &user.actor, id, &task_ids, &input)
                .await?;
        let (n, left) = (done.created.len(), done.left_alone.len());
        let labeled = format!("Labeled {n} task{}.", if n == 1 { "" } else { "s" });
        Ok(if left > 0 {
            format!(
                "{labeled} {left} left alone (you have annotated them already, or they are full)."
            )
        } else {
            labeled
        })
    }
    .await;
    after_bulk(state, user, id, query, outcome).await
}

/// "Assign to annotators": the ticked people are added as annotators of the selected tasks
/// through the code of `POST /api/projects/{id}/tasks/assignees`.
#[allow(clippy::too_many_arguments)]
async fn bulk_assign(
    state: &AppState,
    user: &PageUser,
    id: i64,
    tab: Option<&ViewRow>,
    query: &DataQuery,
    all: bool,
    ids: &[i64],
    fields: &[(String, String)],
) -> Response {
    let outcome = async {
        let people: Vec<i64> = fields
            .iter()
            .filter(|(k, _)| k == "assignee")
            .map(|(_, v)| {
                v.trim().parse::<i64>().map_err(|_| {
                    ApiError::field(
                        ErrorCode::ValidationError,
                        "assignee",
                        format!("{v:?} is not a person of this project"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        if people.is_empty() {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "assignee",
                "Tick the annotators to assign.",
            ));
        }
        access::project(&state.db, &user.actor, id, Permission::TaskManage).await?;
        let task_ids = if all {
            crate::http::routes::tasks::selected_task_ids(
                state,
                &user.actor,
                id,
                &selection(true, &[]),
                tab,
            )
            .await?
        } else {
            ids.to_vec()
        };
        let made = crate::storage::assignments::assign(
            &state.db,
            &user.actor,
            id,
            &task_ids,
            crate::storage::assignments::Kind::Annotate,
            &people,
            crate::storage::assignments::Change::Add,
        )
        .await?;
        Ok(format!(
            "Assigned {} annotator{} to {} task{}: {made} new assignments.",
            people.len(),
            if people.len() == 1 { "" } else { "s" },
            task_ids.len(),
            if task_ids.len() == 1 { "" } else { "s" }
        ))
    }
    .await;
    after_bulk(state, user, id, query, outcome).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<FilterColumn> {
        let col = |id: &str, kind: &str, input: &'static str| FilterColumn {
            id: id.into(),
            title: id.into(),
            kind: kind.into(),
            input,
            operators: &[],
        };
        vec![
            col("id", "Number", "number"),
            col("is_labeled", "Boolean", "boolean"),
            col("data.text", "String", "text"),
            col("annotators", "List", "user"),
            col("completed_at", "Datetime", "datetime"),
        ]
    }

    #[test]
    fn form_rows_round_trip_through_stored_items() {
        let rows = [
            FilterRow {
                filter: "id".into(),
                operator: "in".into(),
                value: "2".into(),
                value_max: "5".into(),
            },
            FilterRow {
                filter: "is_labeled".into(),
                operator: "equal".into(),
                value: "yes".into(),
                value_max: String::new(),
            },
            FilterRow {
                filter: "data.text".into(),
                operator: "contains".into(),
                value: " two words".into(),
                value_max: String::new(),
            },
        ];
        let items: Vec<Value> = rows.iter().map(|r| filter_item(r, &cols())).collect();
        assert_eq!(
            items[0],
            json!({"filter": "filter:tasks:id", "operator": "in", "type": "Number", "value": {"min": "2", "max": "5"}})
        );
        assert_eq!(items[1]["value"], json!(true));
        assert_eq!(items[2]["value"], json!(" two words"));
        let back = filter_row(&items[0]);
        assert_eq!(
            (
                back.filter.as_str(),
                back.value.as_str(),
                back.value_max.as_str()
            ),
            ("id", "2", "5")
        );
        assert_eq!(filter_row(&items[1]).value, "true");
    }

    #[test]
    fn posted_rows_pair_fields_in_order_and_drop_empty_rows() {
        let f = |k: &str, v: &str| (k.to_string(), v.to_string());
        let fields = vec![
            f("filter", "id"),
            f("operator", "greater"),
            f("value", "3"),
            f("value_max", ""),
            f("filter", ""),
            f("operator", "equal"),
            f("value", ""),
            f("value_max", ""),
        ];
        let rows = posted_rows(&fields);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].operator.as_str(), rows[0].value.as_str()),
            ("greater", "3")
        );
    }

    #[test]
    fn people_take_user_ids_and_times_become_rfc3339() {
        let row = |filter: &str, operator: &str, value: &str, max: &str| FilterRow {
            filter: filter.into(),
            operator: operator.into(),
            value: value.into(),
            value_max: max.into(),
        };
        let people = filter_item(&row("annotators", "contains", "7", ""), &cols());
        assert_eq!(people["value"], json!(7));
        assert_eq!(people["type"], json!("List"));
        let range = filter_item(
            &row("completed_at", "in", "2026-01-31T10:00", "2026-02-01"),
            &cols(),
        );
        assert_eq!(
            range["value"],
            json!({"min": "2026-01-31T10:00:00Z", "max": "2026-02-01T00:00:00Z"})
        );
        assert_eq!(
            datetime_input("2026-01-31T10:00:00Z"),
            "2026-01-31T10:00:00"
        );
        assert_eq!(rfc3339_utc("yesterday"), "yesterday");
    }

    #[test]
    fn nested_cells_read_the_words_of_results_and_count_submitted_work_only() {
        let region =
            |value: Value| json!({"from_name": "x", "to_name": "y", "type": "t", "value": value});
        let task = json!({
            "annotations": [
                {"was_cancelled": false, "ground_truth": false, "lead_time": 4.0,
                 "result": [region(json!({"choices": ["pos"]})), region(json!({"x": 1.5, "labels": ["Car", "Red"], "text": ["a b"]}))]},
                {"was_cancelled": true, "ground_truth": false, "lead_time": 100.0, "result": [region(json!({"choices": ["skip"]}))]},
                {"was_cancelled": false, "ground_truth": true, "lead_time": 5.0, "result": [region(json!({"taxonomy": [["A", "B"]]}))]},
            ],
            "predictions": [
                {"model_version": "v2", "result": [region(json!({"choices": ["neg"]}))]},
                {"model_version": "", "result": []},
                {"model_version": "v2", "result": [region(json!({"choices": ["pos"]}))]},
                {"model_version": "v1", "result": []},
            ],
        });
        let cell = |c: &str| nested_cell(&task, c).expect(c);
        assert_eq!(cell("annotations_results"), "pos, Car, Red, a b | A, B");
        assert_eq!(cell("predictions_results"), "neg | pos");
        assert_eq!(cell("predictions_model_versions"), "v2, v1");
        assert_eq!(cell("ground_truth"), "yes");
        assert_eq!(cell("avg_lead_time"), "4.5 s");
        assert_eq!(nested_cell(&task, "annotators"), None, "a people column");
        let empty = json!({"annotations": [], "predictions": []});
        assert_eq!(
            [
                "annotations_results",
                "predictions_results",
                "predictions_model_versions",
                "ground_truth",
                "avg_lead_time"
            ]
            .map(|c| nested_cell(&empty, c).expect(c)),
            ["", "", "", "no", ""].map(String::from)
        );
    }
}
