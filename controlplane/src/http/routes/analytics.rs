//! Organization analytics (ADR 0060): Label Studio Enterprise's KPI API
//! (`label-studio-sdk`'s `analytics.kpis`), over every project the caller can reach.

use axum::{Json, extract::State};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    authz::{Actor, Permission},
    error::ApiResult,
    http::{
        AppState,
        extract::{Path, Query, opt_bool},
    },
    storage::analytics::{self, Granularity, KpiDetail, KpiMetadata},
};

/// The KPIs: their keys, units, what they count and what calculated ones are made of.
#[utoipa::path(get, path = "/api/analytics/kpis", tag = "analytics", responses((status = 200, body = Vec<KpiMetadata>)))]
pub async fn list_kpis(actor: Actor) -> ApiResult<Json<Vec<KpiMetadata>>> {
    actor.require(Permission::OrgView)?;
    Ok(Json(analytics::catalogue()))
}

/// Query of a KPI.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct KpiParams {
    /// The IANA time zone (`UTC`, `Europe/Berlin`) dates are read and intervals cut in.
    /// Required.
    pub tz: Option<String>,
    /// Events from: a date (`2026-12-01`, its midnight in `tz`), a date and time in `tz`, or an
    /// instant with an offset.
    pub start: Option<String>,
    /// Events up to: a date includes the whole day; a date and time is inclusive.
    pub end: Option<String>,
    /// Project ids separated by commas (at most 50); default every project the caller can see.
    pub projects: Option<String>,
    /// User ids separated by commas; default everyone whose events the caller may see.
    pub members: Option<String>,
    /// `hourly`, `daily`, `weekly` (from Monday), `monthly` or `yearly`.
    pub segment_by_time: Option<String>,
    /// One value per person (with `segment_by_time`, a person × interval matrix).
    pub segment_by_user: Option<String>,
    /// One value per project (with `segment_by_time`, a project × interval matrix).
    pub segment_by_project: Option<String>,
    /// With `segment_by_user`: only people with events, highest value first, at most 100,
    /// and `total`, how many there were.
    pub all: Option<String>,
}

/// One KPI, as a total or segmented by time, person or project. Managers and above see
/// everyone's events in their projects; annotators and reviewers their own.
#[utoipa::path(get, path = "/api/analytics/kpis/{kpi_key}", tag = "analytics", params(("kpi_key" = String, Path), KpiParams), responses((status = 200, body = KpiDetail), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_kpi(
    State(state): State<AppState>,
    actor: Actor,
    Path(kpi_key): Path<String>,
    Query(params): Query<KpiParams>,
) -> ApiResult<Json<KpiDetail>> {
    actor.require(Permission::OrgView)?;
    let query = analytics::Query {
        tz: params.tz.unwrap_or_default(),
        start: params.start,
        end: params.end,
        projects: analytics::parse_list("projects", params.projects.as_deref())?,
        members: analytics::parse_list("members", params.members.as_deref())?,
        segment_by_time: params
            .segment_by_time
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(Granularity::parse)
            .transpose()?,
        segment_by_user: opt_bool("segment_by_user", &params.segment_by_user)?.unwrap_or(false),
        segment_by_project: opt_bool("segment_by_project", &params.segment_by_project)?
            .unwrap_or(false),
        all: opt_bool("all", &params.all)?.unwrap_or(false),
    };
    Ok(Json(
        analytics::detail(&state.db, &actor, &kpi_key, query).await?,
    ))
}

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_kpis))
        .routes(routes!(get_kpi))
}
