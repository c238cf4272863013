//! Label distribution of a project (ADR 0036): how often each label of each control tag was
//! given, in annotations and in predictions, in the shapes `label-studio-sdk`'s
//! `projects.stats.label_distribution_structure` / `label_distribution_counts` read.
//!
//! A *dimension* is a control tag (`from_name`). Its *choices* are its declared labels and
//! every value seen in results. A result item counts once for each distinct label it carries: a
//! Choices item with two choices counts for both; a rectangle labeled "Car" counts once for
//! "Car". Ratings count their value ("4"), taxonomy paths their path joined by " / ". Skipped
//! annotations do not count. Percentages are of the dimension's total, so a single-label
//! dimension's rows add up to 100.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use super::{Db, access, tasks, with_read};
use crate::{
    authz::{Actor, Permission},
    domain::label_config::LabelConfig,
    error::{ApiError, ApiResult, ErrorCode},
};

/// Separates a dimension's name from a choice in a flat key.
pub const SEP: &str = "___SEP___";
/// Separates flat keys in the `choice_keys` query parameter.
pub const PIPE: &str = "___PIPE___";

/// Rows read per query while counting (memory stays bounded by a page, not the project).
const PAGE: i64 = 1000;

/// One control tag in the structure.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Dimension {
    /// The control's `name` (results' `from_name`).
    pub name: String,
    /// The result type (`choices`, `rectanglelabels`, ...).
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub kind: String,
    /// Declared and observed choices, sorted.
    pub choices: Vec<String>,
    /// `<name>___SEP___<choice>` for each choice.
    pub choice_keys: Vec<String>,
    /// Why the control has no distribution (free text, numbers, dates), else null.
    pub unsupported_reason: Option<String>,
}

/// `GET /api/projects/{id}/stats/label-distribution/structure`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Structure {
    /// Every control of the labeling configuration (and any other `from_name` seen in results).
    pub dimensions: Vec<Dimension>,
    /// Every choice key of every supported dimension, in order.
    pub choice_keys: Vec<String>,
    /// Whether the project has a prediction.
    pub has_predictions: bool,
    /// Whether `counts` accepts `filters` that apply to predictions (always: a filter selects
    /// tasks, and their annotations and predictions are counted).
    pub prediction_filters_supported: bool,
}

/// One choice's counts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CountRow {
    /// The dimension (control name).
    pub dimension_name: String,
    /// The choice.
    pub choice: String,
    /// `<dimension>___SEP___<choice>`.
    pub choice_key: String,
    /// Result items of annotations carrying it.
    pub from_annotations_count: i64,
    /// In percent of the dimension's annotation total (0 when the total is 0).
    pub from_annotations_percent: f64,
    /// Result items of predictions carrying it.
    pub from_predictions_count: i64,
    /// In percent of the dimension's prediction total.
    pub from_predictions_percent: f64,
}

/// Totals per dimension.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Totals {
    /// Annotation counts summed per dimension.
    pub annotation_totals_by_dimension: BTreeMap<String, i64>,
    /// Prediction counts summed per dimension.
    pub prediction_totals_by_dimension: BTreeMap<String, i64>,
}

/// `GET /api/projects/{id}/stats/label-distribution/counts`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Counts {
    /// The requested choices.
    pub results: Vec<CountRow>,
    /// Totals of every dimension.
    pub totals: Totals,
    /// The offset of the next page in limit/offset mode; null at the end, with `choice_keys`,
    /// and with `filters`.
    pub next_offset: Option<i64>,
}

/// What `counts` should answer.
#[derive(Debug, Default)]
pub struct CountsQuery {
    /// Explicit keys (then no paging).
    pub choice_keys: Option<Vec<String>>,
    /// A data-manager filter plan selecting tasks (then every key, no paging).
    pub filters: Option<Value>,
    /// Page size in limit/offset mode (default 100, at most 1000).
    pub limit: Option<i64>,
    /// Page offset.
    pub offset: Option<i64>,
}

/// How a control's results are counted, or why not.
fn support(tag: &str) -> Result<(), &'static str> {
    if tag == "Choices" || tag == "Taxonomy" || tag == "Rating" || tag.ends_with("Labels") {
        Ok(())
    } else {
        Err("its values are free-form (text, numbers, dates or shapes without labels)")
    }
}

/// The distinct labels of one result item.
fn labels_of(item: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let kind = item.get("type").and_then(Value::as_str).unwrap_or_default();
    let Some(value) = item.get("value").and_then(|v| v.get(kind)) else {
        return out;
    };
    let mut push = |v: &Value| match v {
        Value::String(s) => {
            out.insert(s.clone());
        }
        Value::Number(n) => {
            out.insert(n.to_string());
        }
        Value::Array(path) => {
            let parts: Vec<String> = path
                .iter()
                .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_string))
                .collect();
            out.insert(parts.join(" / "));
        }
        _ => {}
    };
    match value {
        Value::Array(items) => items.iter().for_each(&mut push),
        other => push(other),
    }
    out
}

/// Counts per `(dimension, choice)` and the types seen, over the result JSON of rows of
/// `table` (`annotation` or `prediction`) of the project's tasks matching `query`.
struct Tally {
    counts: BTreeMap<(String, String), i64>,
    kinds: BTreeMap<String, String>,
}

async fn tally(
    db: &Db,
    project_id: i64,
    table: &str,
    query: Option<&tasks::TaskQuery>,
) -> ApiResult<Tally> {
    let skip = if table == "annotation" {
        " and not r.was_cancelled"
    } else {
        ""
    };
    let condition = query.map_or_else(|| "true".to_string(), |q| q.condition.clone());
    let params: &[String] = query.map_or(&[], |q| &q.params);
    let next = params.len() + 2;
    // Driven by the (project_id, id) index of the counted table: each page is one range of it,
    // and the task row is joined only for a filter (a join driven from `task` would visit every
    // task of the project for each page).
    let join = if query.is_some() {
        " join task t on t.id = r.task_id"
    } else {
        ""
    };
    let sql = format!(
        "select r.id, r.result from {table} r{join} \
         where r.project_id = $1 and r.result is not null{skip} and ({condition}) \
         and r.id > ${next} order by r.id limit ${}",
        next + 1
    );
    let mut out = Tally {
        counts: BTreeMap::new(),
        kinds: BTreeMap::new(),
    };
    let mut after = 0i64;
    loop {
        let rows: Vec<(i64, String)> = with_read!(db, conn, {
            let mut q = sqlx::query_as(&sql).bind(project_id);
            for p in params {
                q = q.bind(p);
            }
            q.bind(after).bind(PAGE).fetch_all(conn).await?
        });
        let Some((last, _)) = rows.last() else {
            return Ok(out);
        };
        after = *last;
        for (_, result) in &rows {
            let Ok(Value::Array(items)) = serde_json::from_str::<Value>(result) else {
                continue;
            };
            for item in &items {
                let Some(from) = item.get("from_name").and_then(Value::as_str) else {
                    continue;
                };
                if let Some(kind) = item.get("type").and_then(Value::as_str) {
                    out.kinds
                        .entry(from.to_string())
                        .or_insert_with(|| kind.to_string());
                }
                for label in labels_of(item) {
                    *out.counts.entry((from.to_string(), label)).or_default() += 1;
                }
            }
        }
        if (rows.len() as i64) < PAGE {
            return Ok(out);
        }
    }
}

fn build_structure(
    config: Option<&LabelConfig>,
    seen: &[&Tally],
    has_predictions: bool,
) -> Structure {
    let mut dims: BTreeMap<String, (String, BTreeSet<String>, Option<String>)> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    if let Some(config) = config {
        for c in config.controls() {
            let reason = support(&c.tag).err().map(str::to_string);
            let choices = if reason.is_none() {
                c.labels.iter().cloned().collect()
            } else {
                BTreeSet::new()
            };
            order.push(c.name.clone());
            dims.insert(
                c.name.clone(),
                (c.tag.to_ascii_lowercase(), choices, reason),
            );
        }
    }
    for tally in seen {
        for (dim, choice) in tally.counts.keys() {
            let entry = dims.entry(dim.clone()).or_insert_with(|| {
                order.push(dim.clone());
                let kind = tally.kinds.get(dim).cloned().unwrap_or_default();
                (kind, BTreeSet::new(), None)
            });
            if entry.2.is_none() {
                entry.1.insert(choice.clone());
            }
        }
    }
    let mut all_keys = Vec::new();
    let dimensions = order
        .into_iter()
        .filter_map(|name| {
            let (kind, choices, reason) = dims.remove(&name)?;
            let choices: Vec<String> = choices.into_iter().collect();
            let choice_keys: Vec<String> =
                choices.iter().map(|c| format!("{name}{SEP}{c}")).collect();
            all_keys.extend(choice_keys.iter().cloned());
            Some(Dimension {
                name,
                kind,
                choices,
                choice_keys,
                unsupported_reason: reason,
            })
        })
        .collect();
    Structure {
        dimensions,
        choice_keys: all_keys,
        has_predictions,
        prediction_filters_supported: true,
    }
}

async fn has_predictions(db: &Db, project_id: i64) -> ApiResult<bool> {
    Ok(with_read!(db, conn, {
        sqlx::query_scalar::<_, i64>("select count(*) from prediction where project_id = $1")
            .bind(project_id)
            .fetch_one(conn)
            .await?
    }) > 0)
}

/// The dimensions and choice keys of a project.
pub async fn structure(db: &Db, actor: &Actor, project_id: i64) -> ApiResult<Structure> {
    let project = access::project(db, actor, project_id, Permission::AgreementView).await?;
    let annotations = tally(db, project_id, "annotation", None).await?;
    let predictions = tally(db, project_id, "prediction", None).await?;
    Ok(build_structure(
        project.row.config().as_deref(),
        &[&annotations, &predictions],
        has_predictions(db, project_id).await?,
    ))
}

/// Counts and percentages of the requested choices.
pub async fn counts(
    db: &Db,
    actor: &Actor,
    project_id: i64,
    query: CountsQuery,
) -> ApiResult<Counts> {
    let project = access::project(db, actor, project_id, Permission::AgreementView).await?;
    let filter = match &query.filters {
        Some(plan) => Some(filter_plan(db, plan)?),
        None => None,
    };
    let annotations = tally(db, project_id, "annotation", filter.as_ref()).await?;
    let predictions = tally(db, project_id, "prediction", filter.as_ref()).await?;
    let structure = build_structure(
        project.row.config().as_deref(),
        &[&annotations, &predictions],
        false,
    );
    let totals = |t: &Tally| {
        let mut by: BTreeMap<String, i64> = BTreeMap::new();
        for ((dim, _), n) in &t.counts {
            *by.entry(dim.clone()).or_default() += n;
        }
        by
    };
    let (ann_totals, pred_totals) = (totals(&annotations), totals(&predictions));
    let (keys, next_offset) = match (&query.choice_keys, &filter) {
        (Some(keys), _) => (keys.clone(), None),
        (None, Some(_)) => (structure.choice_keys.clone(), None),
        (None, None) => {
            let limit = query.limit.unwrap_or(100);
            let offset = query.offset.unwrap_or(0);
            if !(1..=1000).contains(&limit) {
                return Err(ApiError::field(
                    ErrorCode::InvalidQuery,
                    "limit",
                    "must be between 1 and 1000",
                ));
            }
            if offset < 0 {
                return Err(ApiError::field(
                    ErrorCode::InvalidQuery,
                    "offset",
                    "must not be negative",
                ));
            }
            let all = &structure.choice_keys;
            let start = usize::try_from(offset).unwrap_or(usize::MAX).min(all.len());
            let end = start
                .saturating_add(usize::try_from(limit).unwrap_or_default())
                .min(all.len());
            let next = (end < all.len()).then_some(end as i64);
            (all[start..end].to_vec(), next)
        }
    };
    let percent = |n: i64, total: i64| {
        if total > 0 {
            n as f64 * 100.0 / total as f64
        } else {
            0.0
        }
    };
    let mut results = Vec::with_capacity(keys.len());
    for key in keys {
        let Some((dim, choice)) = key.split_once(SEP) else {
            return Err(ApiError::field(
                ErrorCode::InvalidQuery,
                "choice_keys",
                format!("{key:?} is not of the form <control>{SEP}<choice>"),
            ));
        };
        let k = (dim.to_string(), choice.to_string());
        let a = annotations.counts.get(&k).copied().unwrap_or(0);
        let p = predictions.counts.get(&k).copied().unwrap_or(0);
        results.push(CountRow {
            dimension_name: k.0.clone(),
            choice: k.1.clone(),
            choice_key: key.clone(),
            from_annotations_count: a,
            from_annotations_percent: percent(a, ann_totals.get(dim).copied().unwrap_or(0)),
            from_predictions_count: p,
            from_predictions_percent: percent(p, pred_totals.get(dim).copied().unwrap_or(0)),
        });
    }
    Ok(Counts {
        results,
        totals: Totals {
            annotation_totals_by_dimension: ann_totals,
            prediction_totals_by_dimension: pred_totals,
        },
        next_offset,
    })
}

/// A filter plan (the data manager's `{"conjunction", "items"}`) as a task condition. Label
/// Studio Enterprise allows only `and` and no nested filters here; so do we.
fn filter_plan(db: &Db, plan: &Value) -> ApiResult<tasks::TaskQuery> {
    let bad = |m: &str| ApiError::field(ErrorCode::InvalidQuery, "filters", m.to_string());
    let Value::Object(obj) = plan else {
        return Err(bad(
            "must be a JSON object {\"conjunction\": \"and\", \"items\": [...]}",
        ));
    };
    if obj
        .get("conjunction")
        .and_then(Value::as_str)
        .is_some_and(|c| c != "and")
    {
        return Err(bad("conjunction must be \"and\""));
    }
    let items = obj.get("items").and_then(Value::as_array);
    if items.is_some_and(|i| i.len() > 20) {
        return Err(bad("at most 20 filter items"));
    }
    if items.is_some_and(|i| i.iter().any(|f| f.get("child_filters").is_some())) {
        return Err(bad("nested child_filters are not allowed"));
    }
    tasks::task_query(db.dialect(), &serde_json::json!({"filters": plan}), false)
}
