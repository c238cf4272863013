//! Dashboards of a project (ADR 0036): the label distribution and the member performance
//! tables, in the shapes `label-studio-sdk`'s `projects.stats` client reads. Read-only; the
//! roles that may read agreement statistics.

use axum::{Json, extract::State};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    authz::Actor,
    error::{ApiError, ApiResult, ErrorCode},
    http::{
        AppState,
        extract::{Path, Query, opt_int},
    },
    storage::{
        annotator_stats::{self as stats, MemberRow, Table},
        label_stats::{self, Counts, CountsQuery, PIPE, Structure},
        projects::UserSimple,
    },
};

/// The dimensions (control tags) of a project's label distribution and their choice keys.
#[utoipa::path(get, path = "/api/projects/{id}/stats/label-distribution/structure", tag = "dashboards", params(("id" = i64, Path)), responses((status = 200, body = Structure), (status = 404, body = crate::error::ErrorBody)))]
pub async fn label_distribution_structure(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<Structure>> {
    Ok(Json(label_stats::structure(&state.db, &actor, id).await?))
}

/// Query of the label distribution counts.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct CountsParams {
    /// Keys `<control>___SEP___<choice>` joined by `___PIPE___`; then no paging.
    pub choice_keys: Option<String>,
    /// A JSON data-manager filter plan (`{"conjunction": "and", "items": [...]}`, at most 20
    /// items, no nesting) selecting the tasks counted; then every key, no paging.
    pub filters: Option<String>,
    /// Keys per page (1–1000, default 100).
    pub limit: Option<String>,
    /// Offset into the structure's keys.
    pub offset: Option<String>,
}

/// Counts and percentages of labels in annotations and predictions.
#[utoipa::path(get, path = "/api/projects/{id}/stats/label-distribution/counts", tag = "dashboards", params(("id" = i64, Path), CountsParams), responses((status = 200, body = Counts), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn label_distribution_counts(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Query(params): Query<CountsParams>,
) -> ApiResult<Json<Counts>> {
    let filters = match params.filters.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => {
            let plan: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                ApiError::field(
                    ErrorCode::InvalidQuery,
                    "filters",
                    format!("must be a JSON filter plan: {e}"),
                )
            })?;
            // An empty plan is no filter, as in Label Studio.
            let empty = plan
                .get("items")
                .and_then(serde_json::Value::as_array)
                .is_some_and(Vec::is_empty);
            (!empty).then_some(plan)
        }
    };
    let query = CountsQuery {
        choice_keys: params
            .choice_keys
            .as_deref()
            .filter(|k| !k.is_empty())
            .map(|k| k.split(PIPE).map(str::to_string).collect()),
        filters,
        limit: opt_int("limit", &params.limit)?,
        offset: opt_int("offset", &params.offset)?,
    };
    Ok(Json(
        label_stats::counts(&state.db, &actor, id, query).await?,
    ))
}

/// Query of the member performance tables.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct MembersParams {
    /// `annotations` (default) or `reviews`.
    pub table: Option<String>,
    /// User ids separated by commas; default every participant.
    pub ids: Option<String>,
    /// A row field to sort by (`finished`, `agreement`, `member`, ...); `-` first for
    /// descending. Nulls sort last either way; ties by user id.
    pub ordering: Option<String>,
    /// 1-based page.
    pub page: Option<String>,
    /// Rows per page, 1–100 (default 20).
    pub page_size: Option<String>,
}

/// One page of member rows.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct MemberRows {
    /// Rows in all pages.
    pub count: usize,
    /// This page.
    pub page: i64,
    /// Rows per page.
    pub page_size: i64,
    /// The rows.
    pub results: Vec<MemberRow>,
}

/// The totals of a member table.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct MemberSummary {
    /// Counts summed over the members, scores and times averaged over the members that have
    /// one (`time_total` summed), and `members`, their number.
    #[schema(value_type = Object)]
    pub summary: serde_json::Map<String, serde_json::Value>,
}

async fn member_table(
    state: &AppState,
    actor: &Actor,
    id: i64,
    params: &MembersParams,
) -> ApiResult<(Table, Vec<MemberRow>)> {
    let table = Table::parse(params.table.as_deref())?;
    let ids = match params.ids.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(stats::parse_ids(Some(text))?),
    };
    let rows = stats::member_rows(&state.db, actor, id, table, ids.as_deref()).await?;
    Ok((table, rows))
}

fn sort_rows(rows: Vec<MemberRow>, ordering: Option<&str>) -> ApiResult<Vec<MemberRow>> {
    let Some(ordering) = ordering.map(str::trim).filter(|o| !o.is_empty()) else {
        return Ok(rows);
    };
    let (descending, field) = match ordering.strip_prefix('-') {
        Some(f) => (true, f),
        None => (false, ordering),
    };
    let key = |row: &MemberRow| -> ApiResult<Option<serde_json::Value>> {
        if field == "member" {
            return Ok(Some(serde_json::Value::String(row.member.email.clone())));
        }
        let value = serde_json::to_value(row).map_err(ApiError::internal)?;
        match value.get(field) {
            Some(serde_json::Value::Null) => Ok(None),
            Some(v) if v.is_number() || v.is_boolean() => Ok(Some(v.clone())),
            _ => Err(ApiError::field(
                ErrorCode::InvalidQuery,
                "ordering",
                format!("cannot sort by {field:?}; use member or a numeric field of the rows"),
            )),
        }
    };
    let mut keyed = Vec::with_capacity(rows.len());
    for row in rows {
        keyed.push((key(&row)?, row));
    }
    let cmp_value = |a: &serde_json::Value, b: &serde_json::Value| match (a, b) {
        (serde_json::Value::String(x), serde_json::Value::String(y)) => x.cmp(y),
        (serde_json::Value::Bool(x), serde_json::Value::Bool(y)) => x.cmp(y),
        _ => a
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&b.as_f64().unwrap_or(0.0)),
    };
    // Nulls last either way; ties by user id.
    keyed.sort_by(|(a, ra), (b, rb)| {
        let by = match (a, b) {
            (Some(x), Some(y)) if descending => cmp_value(y, x),
            (Some(x), Some(y)) => cmp_value(x, y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        };
        by.then(ra.member.id.cmp(&rb.member.id))
    });
    Ok(keyed.into_iter().map(|(_, row)| row).collect())
}

/// One page of the members dashboard's table: per member, what they annotated and how it was
/// reviewed, their agreement, ground truth, progress and times (`table=annotations`), or what
/// they reviewed (`table=reviews`).
#[utoipa::path(get, path = "/api/projects/{id}/stats/member_performance_rows", tag = "dashboards", params(("id" = i64, Path), MembersParams), responses((status = 200, body = MemberRows), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn member_performance_rows(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Query(params): Query<MembersParams>,
) -> ApiResult<Json<MemberRows>> {
    let page = opt_int("page", &params.page)?.unwrap_or(1);
    let page_size = opt_int("page_size", &params.page_size)?.unwrap_or(20);
    if page < 1 {
        return Err(ApiError::field(
            ErrorCode::InvalidQuery,
            "page",
            "must be 1 or more",
        ));
    }
    if !(1..=100).contains(&page_size) {
        return Err(ApiError::field(
            ErrorCode::InvalidQuery,
            "page_size",
            "must be between 1 and 100",
        ));
    }
    let (_, rows) = member_table(&state, &actor, id, &params).await?;
    let rows = sort_rows(rows, params.ordering.as_deref())?;
    let count = rows.len();
    let start = usize::try_from((page - 1).saturating_mul(page_size)).unwrap_or(usize::MAX);
    let results = rows
        .into_iter()
        .skip(start)
        .take(usize::try_from(page_size).unwrap_or_default())
        .collect();
    Ok(Json(MemberRows {
        count,
        page,
        page_size,
        results,
    }))
}

/// The totals row of the members dashboard's table.
#[utoipa::path(get, path = "/api/projects/{id}/stats/member_performance_summary", tag = "dashboards", params(("id" = i64, Path), MembersParams), responses((status = 200, body = MemberSummary), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn member_performance_summary(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Query(params): Query<MembersParams>,
) -> ApiResult<Json<MemberSummary>> {
    let (table, rows) = member_table(&state, &actor, id, &params).await?;
    let values: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| serde_json::to_value(r).map_err(ApiError::internal))
        .collect::<ApiResult<_>>()?;
    let counts: &[&str] = match table {
        Table::Annotations => &[
            "finished",
            "skipped",
            "accepted",
            "fixed_accepted",
            "rejected",
        ],
        Table::Reviews => &["reviewed", "accepted", "fixed_accepted", "rejected"],
    };
    let averages: &[&str] = match table {
        Table::Annotations => &[
            "review_score",
            "performance_score",
            "agreement",
            "ground_truth",
            "evaluation_score",
            "progress",
            "time_mean",
            "time_median",
        ],
        Table::Reviews => &[],
    };
    let mut summary = serde_json::Map::new();
    summary.insert("members".into(), serde_json::json!(rows.len()));
    for field in counts {
        let total: i64 = values.iter().filter_map(|v| v[*field].as_i64()).sum();
        summary.insert((*field).into(), serde_json::json!(total));
    }
    for field in averages {
        let present: Vec<f64> = values.iter().filter_map(|v| v[*field].as_f64()).collect();
        let mean =
            (!present.is_empty()).then(|| present.iter().sum::<f64>() / present.len() as f64);
        summary.insert((*field).into(), serde_json::json!(mean));
    }
    if table == Table::Annotations {
        let total: f64 = values.iter().filter_map(|v| v["time_total"].as_f64()).sum();
        summary.insert("time_total".into(), serde_json::json!(total));
    }
    Ok(Json(MemberSummary { summary }))
}

/// Query of the participants list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ParticipantsParams {
    /// `annotations` (default: who annotated) or `reviews` (who reviewed).
    pub table: Option<String>,
}

/// The people of a member table, for its member picker.
#[utoipa::path(get, path = "/api/projects/{id}/stats/member_performance_participants", tag = "dashboards", params(("id" = i64, Path), ParticipantsParams), responses((status = 200, body = Vec<UserSimple>), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn member_performance_participants(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    Query(params): Query<ParticipantsParams>,
) -> ApiResult<Json<Vec<UserSimple>>> {
    let table = Table::parse(params.table.as_deref())?;
    Ok(Json(
        stats::participants(&state.db, &actor, id, table).await?,
    ))
}

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(label_distribution_structure))
        .routes(routes!(label_distribution_counts))
        .routes(routes!(member_performance_rows))
        .routes(routes!(member_performance_summary))
        .routes(routes!(member_performance_participants))
}
