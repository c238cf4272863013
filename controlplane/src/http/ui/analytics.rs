//! The organization's performance page (`/analytics`, ADR 0060): the KPI API's numbers per
//! person across the projects in the caller's reach, for a date range in a time zone, with a
//! chart of annotations per day (or week or month for longer ranges). Everything comes from
//! [`analytics::detail`], so each role sees exactly what the API shows it: managers and above
//! everyone in their projects, annotators and reviewers themselves.

use std::collections::BTreeMap;

use axum::{
    extract::{Query, Request, State},
    http::StatusCode,
    response::Response,
};
use jiff::{ToSpan, Zoned, civil};
use minijinja::context;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    dashboard::{DAY_AREA, DAY_WIDTH, day_columns},
    error_page,
    pages::js,
    render, user_context,
};
use crate::{
    authz::Actor,
    error::{ApiError, ApiResult},
    http::AppState,
    storage::{
        Db,
        analytics::{self, Granularity, KpiDetail},
    },
};

/// Days the page shows when no range is chosen (today last).
const DEFAULT_DAYS: i64 = 30;

/// The page's form.
#[derive(Debug, Default, Deserialize)]
pub(super) struct AnalyticsQuery {
    #[serde(default)]
    start: String,
    #[serde(default)]
    end: String,
    #[serde(default)]
    tz: String,
    #[serde(default)]
    project: String,
}

/// The per-person KPIs of the tables, in column order.
const PERSON_KPIS: [&str; 8] = [
    "annotations_submitted",
    "annotations_skipped",
    "time_annotating",
    "average_annotation_time",
    "reviews_total",
    "reviews_accepted",
    "reviews_fixed_accepted",
    "reviews_rejected",
];

/// Intervals for a range of `days`: days up to two months, weeks up to two years, else months.
fn granularity(days: i64) -> Granularity {
    if days <= 62 {
        Granularity::Daily
    } else if days <= 731 {
        Granularity::Weekly
    } else {
        Granularity::Monthly
    }
}

/// Seconds as hours and minutes, or seconds under a minute.
fn duration(seconds: f64) -> String {
    let s = seconds.round() as i64;
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{} h {} min", s / 3600, (s % 3600) / 60)
    }
}

fn query(tz: &str, start: &str, end: &str, project: Option<i64>) -> analytics::Query {
    analytics::Query {
        tz: tz.to_string(),
        start: Some(start.to_string()),
        end: Some(end.to_string()),
        projects: project.map(|p| vec![p]),
        ..analytics::Query::default()
    }
}

/// What the page shows for a valid form.
struct Numbers {
    people: Vec<Value>,
    columns: Vec<Value>,
    every: &'static str,
}

async fn numbers(db: &Db, actor: &Actor, q: (&str, &str, &str, Option<i64>)) -> ApiResult<Numbers> {
    let (tz, start, end, project) = q;
    // The range's length in days picks the chart's intervals.
    analytics::time_zone(tz)?;
    let day = |text: &str, field: &str| -> ApiResult<civil::Date> {
        text.parse().map_err(|_| {
            ApiError::field(
                crate::error::ErrorCode::InvalidQuery,
                field,
                format!("{text:?} is not a date (YYYY-MM-DD)"),
            )
        })
    };
    let (from, to) = (day(start, "start")?, day(end, "end")?);
    let days = i64::from((to - from).get_days()) + 1;
    let g = granularity(days);
    let mut per: BTreeMap<i64, (String, [Option<f64>; 8])> = BTreeMap::new();
    for (i, key) in PERSON_KPIS.iter().enumerate() {
        let mut q = query(tz, start, end, project);
        q.segment_by_user = true;
        let answer = analytics::detail(db, actor, key, q).await?;
        let Some(by) = answer.by_user else { continue };
        for (u, v) in by.users.into_iter().zip(by.values) {
            let name = if u.username.is_empty() {
                u.user_email.clone()
            } else {
                format!("{} ({})", u.username, u.user_email)
            };
            per.entry(u.user_id).or_insert_with(|| (name, [None; 8])).1[i] = v;
        }
    }
    let people = per
        .into_values()
        .map(|(name, v)| {
            let n = |i: usize| v[i].unwrap_or(0.0).round() as i64;
            let rate = (n(4) > 0).then(|| format!("{:.0} %", n(5) as f64 * 100.0 / n(4) as f64));
            json!({
                "name": name,
                "submitted": n(0),
                "skipped": n(1),
                "time": duration(v[2].unwrap_or(0.0)),
                "mean": v[3].map_or_else(|| "–".to_string(), |m| format!("{m:.1} s")),
                "annotated": n(0) + n(1) > 0,
                "reviews": n(4),
                "accepted": n(5),
                "fixed": n(6),
                "rejected": n(7),
                "rate": rate.unwrap_or_else(|| "–".to_string()),
                "reviewed": n(4) > 0,
            })
        })
        .collect();
    let series = |answer: KpiDetail| -> Vec<(String, i64)> {
        answer
            .time_series
            .map(|t| {
                t.interval_start
                    .into_iter()
                    .zip(t.values)
                    .map(|(s, v)| (s.chars().take(10).collect(), v.unwrap_or(0.0) as i64))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut by_time = query(tz, start, end, project);
    by_time.segment_by_time = Some(g);
    let submitted = series(analytics::detail(db, actor, "annotations_submitted", by_time).await?);
    let mut by_time = query(tz, start, end, project);
    by_time.segment_by_time = Some(g);
    let skipped = series(analytics::detail(db, actor, "annotations_skipped", by_time).await?);
    let columns: Vec<(String, i64, i64)> = submitted
        .into_iter()
        .zip(skipped)
        .map(|((date, sub), (_, skip))| (date, sub, skip))
        .collect();
    Ok(Numbers {
        people,
        columns: day_columns(&columns),
        every: match g {
            Granularity::Daily => "day",
            Granularity::Weekly => "week (from Monday)",
            _ => "month",
        },
    })
}

/// `GET /analytics`.
pub(super) async fn analytics_page(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let user = match super::page_user(&state, &parts).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let form = Query::<AnalyticsQuery>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let tz = match form.tz.trim() {
        "" => "UTC".to_string(),
        t => t.to_string(),
    };
    // Defaults: the last 30 days, today last, in the chosen zone (UTC when it is unknown; the
    // error says so below).
    let today = analytics::time_zone(&tz)
        .map(|z| Zoned::now().with_time_zone(z).date())
        .unwrap_or_else(|_| Zoned::now().date());
    let end = match form.end.trim() {
        "" => today.to_string(),
        e => e.to_string(),
    };
    let start = match form.start.trim() {
        "" => today
            .checked_sub((DEFAULT_DAYS - 1).days())
            .map(|d| d.to_string())
            .unwrap_or_else(|_| today.to_string()),
        s => s.to_string(),
    };
    let project: Option<i64> = form.project.trim().parse().ok();
    let projects = match analytics::projects_in_reach(&state.db, &user.actor).await {
        Ok(p) => p,
        Err(e) => return error_page(Some(&user), &e),
    };
    let (numbers, error) = match numbers(&state.db, &user.actor, (&tz, &start, &end, project)).await
    {
        Ok(n) => (Some(n), None),
        Err(e) if e.code.status().is_client_error() => (None, Some(e.detail)),
        Err(e) => return error_page(Some(&user), &e),
    };
    let (people, columns, every) = match numbers {
        Some(n) => (n.people, n.columns, n.every),
        None => (vec![], vec![], "day"),
    };
    let width = DAY_WIDTH * i64::try_from(columns.len()).unwrap_or_default();
    render(
        StatusCode::OK,
        "analytics.html",
        context! {
            user => user_context(&user),
            tz => tz,
            start => start,
            end => end,
            project => project,
            projects => js(&projects),
            error => error,
            people => js(&people),
            days => js(&columns),
            every => every,
            days_width => width.max(DAY_WIDTH),
            days_height => DAY_AREA as i64,
            day_bar => DAY_WIDTH - 4,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_ranges_get_coarser_intervals() {
        assert_eq!(granularity(1), Granularity::Daily);
        assert_eq!(granularity(62), Granularity::Daily);
        assert_eq!(granularity(63), Granularity::Weekly);
        assert_eq!(granularity(800), Granularity::Monthly);
    }

    #[test]
    fn durations_read_in_the_largest_unit() {
        assert_eq!(duration(12.4), "12 s");
        assert_eq!(duration(125.0), "2 min 5 s");
        assert_eq!(duration(7_380.0), "2 h 3 min");
    }
}
