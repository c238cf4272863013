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
        projects,
    },
};

/// Width of a bar chart's bar area and height of one bar row, in SVG user units.
const BAR_AREA: f64 = 400.0;
const BAR_ROW: i64 = 28;
/// Left margin of the bar area (the names sit there).
const BAR_LEFT: i64 = 180;

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
    fn scores_read_as_percentages() {
        assert_eq!(score(Some(0.5)), "50.0 %");
        assert_eq!(score(None), "–");
    }
}
