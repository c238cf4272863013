//! The project dashboard page (ADR 0043): the numbers of the dashboards API (project counts,
//! reviews, agreement, the member performance table) with charts drawn on the server as inline
//! SVG, so the page needs no script and no chart library. For the roles that may read the
//! dashboards (`agreement.view`).

use axum::{
    extract::{Request, State},
    http::StatusCode,
    response::Response,
};
use minijinja::context;
use serde_json::{Value, json};

use super::{
    error_page,
    pages::{js, project_header, project_page_user, project_role},
    render, user_context,
};
use crate::{
    authz::Permission,
    http::AppState,
    storage::{
        agreement,
        annotator_stats::{self, MemberRow, Table},
        label_stats::{self, CountRow, CountsQuery},
        projects,
    },
};

/// Width of a bar chart's bar area and height of one bar row, in SVG user units.
const BAR_AREA: f64 = 400.0;
const BAR_ROW: i64 = 28;
/// Left margin of the bar area (the names sit there).
const BAR_LEFT: i64 = 180;

/// Days the "annotations per day" chart shows (today last).
const DAYS: i64 = 30;
/// Width of one day's column and height of the column area, in SVG user units.
pub(super) const DAY_WIDTH: i64 = 20;
pub(super) const DAY_AREA: f64 = 120.0;

/// A number with one decimal, or a dash when absent.
fn score(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{:.1} %", v * 100.0))
}

/// The bars of the "annotations per annotator" chart: label, value, bar width and row offset.
fn bars(rows: &[MemberRow]) -> Vec<Value> {
    let max = rows
        .iter()
        .filter_map(|r| r.finished)
        .max()
        .unwrap_or(0)
        .max(1);
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let finished = r.finished.unwrap_or(0);
            let width = (finished as f64 / max as f64 * BAR_AREA).round() as i64;
            let y = i64::try_from(i).unwrap_or_default() * BAR_ROW;
            json!({
                "name": r.member.display_name(),
                "value": finished,
                "width": width,
                "y": y,
                "text_y": y + BAR_ROW / 2 + 5,
                "value_x": BAR_LEFT + width + 6,
            })
        })
        .collect()
}

/// A day counted from 1970-01-01 as `YYYY-MM-DD`.
fn day_text(day: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(day.saturating_mul(86_400))
        .map(|t| t.date().to_string())
        .unwrap_or_default()
}

/// The columns of an "annotations per day" chart, from `(date, submitted, skipped)`: the date,
/// the counts, and the column's height and offsets (skips stacked on the submitted part).
pub(super) fn day_columns(days: &[(String, i64, i64)]) -> Vec<Value> {
    let max = days.iter().map(|d| d.1 + d.2).max().unwrap_or(0).max(1);
    let height = |n: i64| (n as f64 / max as f64 * DAY_AREA).round() as i64;
    days.iter()
        .enumerate()
        .map(|(i, (date, submitted, skipped))| {
            let (submitted, skipped) = (*submitted, *skipped);
            let (h_sub, h_skip) = (height(submitted), height(skipped));
            json!({
                "date": date,
                "submitted": submitted,
                "skipped": skipped,
                "x": i64::try_from(i).unwrap_or_default() * DAY_WIDTH,
                "sub_y": DAY_AREA as i64 - h_sub,
                "sub_h": h_sub,
                "skip_y": DAY_AREA as i64 - h_sub - h_skip,
                "skip_h": h_skip,
            })
        })
        .collect()
}

/// The label distribution grouped by control: for each, its choices with the annotations'
/// count and share (and the bar's width), and the predictions' count.
fn distribution(rows: &[CountRow]) -> Vec<Value> {
    let mut out: Vec<(String, Vec<Value>)> = Vec::new();
    for r in rows {
        let bar = json!({
            "choice": r.choice,
            "count": r.from_annotations_count,
            "percent": format!("{:.1} %", r.from_annotations_percent),
            "width": (r.from_annotations_percent.clamp(0.0, 100.0) / 100.0 * BAR_AREA).round() as i64,
            "predictions": r.from_predictions_count,
        });
        match out.last_mut() {
            Some((name, list)) if *name == r.dimension_name => list.push(bar),
            _ => out.push((r.dimension_name.clone(), vec![bar])),
        }
    }
    out.into_iter()
        .map(|(name, choices)| {
            let height = i64::try_from(choices.len()).unwrap_or_default() * BAR_ROW;
            json!({"name": name, "choices": choices, "height": height})
        })
        .collect()
}

/// `GET /projects/{id}/dashboard`.
pub(super) async fn dashboard_page(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let (user, id) = match project_page_user(&state, &parts).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let role = match project_role(&state, &user, id, Permission::AgreementView).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let project = match projects::get(&state.db, &user.actor, id).await {
        Ok(p) => p,
        Err(e) => return error_page(Some(&user), &e),
    };
    let actor = &user.actor;
    let annotators =
        match annotator_stats::member_rows(&state.db, actor, id, Table::Annotations, None).await {
            Ok(r) => r,
            Err(e) => return error_page(Some(&user), &e),
        };
    let reviewers =
        match annotator_stats::member_rows(&state.db, actor, id, Table::Reviews, None).await {
            Ok(r) => r,
            Err(e) => return error_page(Some(&user), &e),
        };
    let total_agreement = match agreement::total(&state.db, actor, id).await {
        Ok(t) => t,
        Err(e) => return error_page(Some(&user), &e),
    };
    let days = match annotator_stats::per_day(&state.db, actor, id, DAYS).await {
        Ok(d) => d,
        Err(e) => return error_page(Some(&user), &e),
    };
    let query = CountsQuery {
        limit: Some(1000),
        ..CountsQuery::default()
    };
    let labels = match label_stats::counts(&state.db, actor, id, query).await {
        Ok(c) => c,
        Err(e) => return error_page(Some(&user), &e),
    };
    let sum = |rows: &[MemberRow], f: fn(&MemberRow) -> Option<i64>| -> i64 {
        rows.iter().filter_map(f).sum()
    };
    let percent = if project.task_number > 0 {
        (project.finished_task_number.saturating_mul(100) / project.task_number).clamp(0, 100)
    } else {
        0
    };
    let numbers = json!({
        "tasks": project.task_number,
        "finished": project.finished_task_number,
        "percent": percent,
        "annotations": project.total_annotations_number,
        "skipped": project.skipped_annotations_number,
        "predictions": project.total_predictions_number,
        "reviews": sum(&reviewers, |r| r.reviewed),
        "accepted": sum(&reviewers, |r| r.accepted),
        "fixed": sum(&reviewers, |r| r.fixed_accepted),
        "rejected": sum(&reviewers, |r| r.rejected),
        "agreement": total_agreement.total_agreement.map(|a| score(Some(a))),
        "agreement_tasks": total_agreement.tasks,
    });
    let members: Vec<Value> = annotators
        .iter()
        .map(|r| {
            json!({
                "name": r.member.display_name(),
                "email": r.member.email,
                "finished": r.finished.unwrap_or(0),
                "skipped": r.skipped.unwrap_or(0),
                "accepted": r.accepted.unwrap_or(0),
                "rejected": r.rejected.unwrap_or(0),
                "agreement": score(r.agreement),
                "progress": r.progress.map_or_else(|| "–".to_string(), |p| format!("{p:.0} %")),
                "time_mean": r.time_mean.map_or_else(|| "–".to_string(), |t| format!("{t:.1} s")),
            })
        })
        .collect();
    let review_rows: Vec<Value> = reviewers
        .iter()
        .map(|r| {
            json!({
                "name": r.member.display_name(),
                "reviewed": r.reviewed.unwrap_or(0),
                "accepted": r.accepted.unwrap_or(0),
                "fixed": r.fixed_accepted.unwrap_or(0),
                "rejected": r.rejected.unwrap_or(0),
            })
        })
        .collect();
    let bar_rows = bars(&annotators);
    let chart_height = i64::try_from(bar_rows.len()).unwrap_or_default() * BAR_ROW;
    render(
        StatusCode::OK,
        "dashboard.html",
        context! {
            user => user_context(&user),
            project => js(&project_header(&project, role)),
            numbers => js(&numbers),
            members => js(&members),
            reviewers => js(&review_rows),
            bars => js(&bar_rows),
            days => js(&day_columns(&days.iter().map(|&(d, sub, skip)| (day_text(d), sub, skip)).collect::<Vec<_>>())),
            days_width => DAY_WIDTH * DAYS,
            days_height => DAY_AREA as i64,
            day_bar => DAY_WIDTH - 4,
            labels => js(&distribution(&labels.results)),
            labels_more => labels.next_offset.is_some(),
            chart_height => chart_height,
            chart_width => BAR_LEFT + BAR_AREA as i64 + 60,
            bar_left => BAR_LEFT,
            bar_height => BAR_ROW - 8,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::projects::UserSimple;

    fn row(id: i64, email: &str, finished: Option<i64>) -> MemberRow {
        let member = UserSimple {
            id,
            first_name: String::new(),
            last_name: String::new(),
            email: email.into(),
            avatar: None,
        };
        MemberRow {
            finished,
            ..MemberRow::empty(member, false)
        }
    }

    #[test]
    fn bars_scale_to_the_largest_count() {
        let rows = [
            row(1, "a@x", Some(4)),
            row(2, "b@x", Some(1)),
            row(3, "c@x", None),
        ];
        let b = bars(&rows);
        let widths: Vec<i64> = b
            .iter()
            .map(|v| v["width"].as_i64().unwrap_or(-1))
            .collect();
        assert_eq!(widths, vec![400, 100, 0]);
        assert_eq!(b[1]["y"], json!(BAR_ROW));
        assert_eq!(b[0]["name"], json!("a@x"));
        // Nothing annotated yet: no division by zero, empty bars.
        let none = bars(&[row(1, "a@x", Some(0))]);
        assert_eq!(none[0]["width"], json!(0));
    }

    #[test]
    fn day_columns_stack_skips_on_submitted_and_scale_to_the_busiest_day() {
        // 1970-01-02 and -03: 3 + 1 is the busiest day (full height), 2 + 0 half of it.
        let c = day_columns(&[(day_text(1), 3, 1), (day_text(2), 2, 0)]);
        assert_eq!(c[0]["date"], json!("1970-01-02"));
        assert_eq!(
            (c[0]["sub_h"].clone(), c[0]["skip_h"].clone()),
            (json!(90), json!(30))
        );
        assert_eq!(
            (c[0]["sub_y"].clone(), c[0]["skip_y"].clone()),
            (json!(30), json!(0))
        );
        assert_eq!(
            (c[1]["x"].clone(), c[1]["sub_h"].clone()),
            (json!(DAY_WIDTH), json!(60))
        );
        // No work at all: flat, no division by zero.
        assert_eq!(day_columns(&[(day_text(5), 0, 0)])[0]["sub_h"], json!(0));
    }

    #[test]
    fn distribution_groups_choices_by_control() {
        let row = |dim: &str, choice: &str, n: i64, pct: f64| CountRow {
            dimension_name: dim.into(),
            choice: choice.into(),
            choice_key: format!("{dim}___SEP___{choice}"),
            from_annotations_count: n,
            from_annotations_percent: pct,
            from_predictions_count: 0,
            from_predictions_percent: 0.0,
        };
        let d = distribution(&[
            row("a", "x", 3, 75.0),
            row("a", "y", 1, 25.0),
            row("b", "z", 2, 100.0),
        ]);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0]["choices"][0]["width"], json!(300));
        assert_eq!(d[0]["choices"][1]["percent"], json!("25.0 %"));
        assert_eq!(
            (d[1]["name"].clone(), d[1]["height"].clone()),
            (json!("b"), json!(BAR_ROW))
        );
    }

    #[test]
    fn scores_read_as_percentages() {
        assert_eq!(score(Some(0.5)), "50.0 %");
        assert_eq!(score(None), "–");
    }
}
