//! Organization analytics (ADR 0060): Label Studio Enterprise's KPI API over every project the
//! caller can reach, for the cross-project annotator and reviewer dashboards.
//!
//! A KPI counts or sums events (an annotation submitted or skipped, a review made, a task
//! created), each with its time, project and person. Every KPI is additive over those three, so
//! one grouped query per KPI source answers any segmentation: the rows are grouped by project,
//! person and (for time segmentation) quarter hour in UTC, and the segments are made from them
//! here. Quarter hours are exact for every time zone: all UTC offsets in use are whole quarters.
//!
//! Who sees what: in a project where the caller's role is manager or above, everyone's events;
//! elsewhere (annotators and reviewers) only their own.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::{Timestamp, ToSpan, Zoned, civil, tz::TimeZone};
use serde::Serialize;

use super::{Db, access, with_read};
use crate::{
    authz::{self, Actor, ProjectMembership, Role},
    error::{ApiError, ApiResult, ErrorCode},
};

/// Projects one request may name (Label Studio Enterprise's limit).
pub const MAX_PROJECTS: usize = 50;
/// Time intervals one answer may have (per user or project row).
pub const MAX_INTERVALS: usize = 10_000;
/// Members a `segment_by_user` answer with `all=true` lists at most.
pub const ALL_MEMBERS_CAP: usize = 100;
/// A quarter hour in microseconds: the grain of time segmentation.
const QUARTER_MICROS: i64 = 900_000_000;

/// Where a KPI's events come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// `annotation a`, by `completed_by`, at `created_at`.
    Annotations,
    /// `annotation_review r`, by the reviewer, at `created_at`.
    Reviews,
    /// `task t`, by nobody, at `created_at`.
    Tasks,
}

impl Source {
    fn base_class(self) -> &'static str {
        match self {
            Source::Annotations => "AnnotationKPI",
            Source::Reviews => "ReviewKPI",
            Source::Tasks => "TaskKPI",
        }
    }

    fn date_column(self) -> &'static str {
        match self {
            Source::Annotations => "annotation.created_at",
            Source::Reviews => "annotation_review.created_at",
            Source::Tasks => "task.created_at",
        }
    }
}

/// How a KPI's events make a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggregation {
    /// The number of events.
    Count,
    /// The sum of a value over the events.
    Sum,
    /// The mean of a value over the events that have one.
    Avg,
    /// `numerator / denominator` of two other KPIs (both counts or sums).
    Ratio(&'static str, &'static str),
}

/// One KPI of the catalogue.
struct Kpi {
    key: &'static str,
    label: &'static str,
    source: Source,
    aggregation: Aggregation,
    /// SQL condition on the source's alias selecting the events.
    filter: &'static str,
    /// SQL value summed or averaged (`1` for counts).
    value: &'static str,
    unit: &'static str,
}

/// The catalogue, in the order `GET /api/analytics/kpis/` lists it.
const CATALOGUE: &[Kpi] = &[
    Kpi {
        key: "annotations_submitted",
        label: "Submitted annotations",
        source: Source::Annotations,
        aggregation: Aggregation::Count,
        filter: "not a.was_cancelled",
        value: "1",
        unit: "count",
    },
    Kpi {
        key: "annotations_skipped",
        label: "Skipped tasks",
        source: Source::Annotations,
        aggregation: Aggregation::Count,
        filter: "a.was_cancelled",
        value: "1",
        unit: "count",
    },
    Kpi {
        key: "time_annotating",
        label: "Time annotating",
        source: Source::Annotations,
        aggregation: Aggregation::Sum,
        filter: "a.lead_time is not null",
        value: "a.lead_time",
        unit: "seconds",
    },
    Kpi {
        key: "average_annotation_time",
        label: "Average time per submitted annotation",
        source: Source::Annotations,
        aggregation: Aggregation::Avg,
        filter: "not a.was_cancelled and a.lead_time is not null",
        value: "a.lead_time",
        unit: "seconds",
    },
    Kpi {
        key: "reviews_total",
        label: "Reviews",
        source: Source::Reviews,
        aggregation: Aggregation::Count,
        filter: "1 = 1",
        value: "1",
        unit: "count",
    },
    Kpi {
        key: "reviews_accepted",
        label: "Accepted annotations (including fixed and accepted)",
        source: Source::Reviews,
        aggregation: Aggregation::Count,
        filter: "r.accepted",
        value: "1",
        unit: "count",
    },
    Kpi {
        key: "reviews_fixed_accepted",
        label: "Fixed and accepted annotations",
        source: Source::Reviews,
        aggregation: Aggregation::Count,
        filter: "r.accepted and r.result is not null",
        value: "1",
        unit: "count",
    },
    Kpi {
        key: "reviews_rejected",
        label: "Rejected annotations",
        source: Source::Reviews,
        aggregation: Aggregation::Count,
        filter: "not r.accepted",
        value: "1",
        unit: "count",
    },
    Kpi {
        key: "tasks_reviewed",
        label: "Reviewed tasks (counted at their first review)",
        source: Source::Reviews,
        aggregation: Aggregation::Count,
        filter: "r.id = (select min(r2.id) from annotation_review r2 where r2.task_id = r.task_id)",
        value: "1",
        unit: "count",
    },
    Kpi {
        key: "review_accept_rate",
        label: "Accept rate of reviews",
        source: Source::Reviews,
        aggregation: Aggregation::Ratio("reviews_accepted", "reviews_total"),
        filter: "",
        value: "",
        unit: "ratio",
    },
    Kpi {
        key: "tasks_created",
        label: "Created tasks",
        source: Source::Tasks,
        aggregation: Aggregation::Count,
        filter: "1 = 1",
        value: "1",
        unit: "count",
    },
];

fn find(key: &str) -> Option<&'static Kpi> {
    CATALOGUE.iter().find(|k| k.key == key)
}

/// One KPI's description, as `GET /api/analytics/kpis/` lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KpiMetadata {
    /// The KPI's key, for `GET /api/analytics/kpis/{kpi_key}`.
    pub key: String,
    /// Its name for people.
    pub label: String,
    /// What kind of events it counts: `AnnotationKPI`, `ReviewKPI`, `TaskKPI` or
    /// `CalculatedKPI`.
    pub base_class: String,
    /// `count`, `sum` or `avg` over the events; `ratio` for a calculated KPI.
    pub aggregation_method: String,
    /// For a calculated KPI: `{"type": "ratio", "numerator": key, "denominator": key}`.
    #[schema(value_type = Option<Object>)]
    pub calculation_formula: Option<serde_json::Value>,
    /// The time the events are dated and filtered by.
    pub date_column: String,
    /// The KPIs a calculated KPI is made of.
    pub depends_on_kpis: Vec<String>,
    /// Calculated from other KPIs.
    pub is_calculated: bool,
    /// Always false: no KPI here is a label without a value.
    pub is_label_type: bool,
    /// Whether the value is a fraction (`unit` is `ratio`).
    pub percentage: bool,
    /// `count`, `seconds` or `ratio`.
    pub unit: String,
}

/// The catalogue of KPIs.
pub fn catalogue() -> Vec<KpiMetadata> {
    CATALOGUE
        .iter()
        .map(|k| {
            let (method, formula, depends) = match k.aggregation {
                Aggregation::Count => ("count", None, vec![]),
                Aggregation::Sum => ("sum", None, vec![]),
                Aggregation::Avg => ("avg", None, vec![]),
                Aggregation::Ratio(n, d) => (
                    "ratio",
                    Some(serde_json::json!({"type": "ratio", "numerator": n, "denominator": d})),
                    vec![n.to_string(), d.to_string()],
                ),
            };
            KpiMetadata {
                key: k.key.into(),
                label: k.label.into(),
                base_class: if formula.is_some() {
                    "CalculatedKPI".into()
                } else {
                    k.source.base_class().into()
                },
                aggregation_method: method.into(),
                is_calculated: formula.is_some(),
                calculation_formula: formula,
                date_column: k.source.date_column().into(),
                depends_on_kpis: depends,
                is_label_type: false,
                percentage: k.unit == "ratio",
                unit: k.unit.into(),
            }
        })
        .collect()
}

/// Time granularity of `segment_by_time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// Hours of the time zone's clock.
    Hourly,
    /// Days from midnight.
    Daily,
    /// Weeks from Monday midnight.
    Weekly,
    /// Calendar months.
    Monthly,
    /// Calendar years.
    Yearly,
}

impl Granularity {
    /// Parses `hourly`, `daily`, `weekly`, `monthly` or `yearly`.
    pub fn parse(text: &str) -> ApiResult<Self> {
        Ok(match text.trim() {
            "hourly" => Self::Hourly,
            "daily" => Self::Daily,
            "weekly" => Self::Weekly,
            "monthly" => Self::Monthly,
            "yearly" => Self::Yearly,
            other => {
                return Err(ApiError::field(
                    ErrorCode::InvalidQuery,
                    "segment_by_time",
                    format!(
                        "{other:?} is not a granularity; use hourly, daily, weekly, monthly or yearly"
                    ),
                ));
            }
        })
    }

    /// The start of the interval holding `at`.
    fn floor(self, at: &Zoned) -> Result<Zoned, jiff::Error> {
        let day = at.start_of_day()?;
        match self {
            Self::Hourly => at
                .datetime()
                .with()
                .minute(0)
                .second(0)
                .subsec_nanosecond(0)
                .build()?
                .to_zoned(at.time_zone().clone()),
            Self::Daily => Ok(day),
            Self::Weekly => {
                let back = i64::from(at.weekday().to_monday_zero_offset());
                day.date()
                    .checked_sub(back.days())?
                    .to_zoned(at.time_zone().clone())
            }
            Self::Monthly => day.date().first_of_month().to_zoned(at.time_zone().clone()),
            Self::Yearly => day.date().first_of_year().to_zoned(at.time_zone().clone()),
        }
    }

    /// The start of the interval after the one starting at `start`.
    fn next(self, start: &Zoned) -> Result<Zoned, jiff::Error> {
        let tz = start.time_zone().clone();
        let date = start.date();
        match self {
            // Absolute hours: the repeated hour of a fall-back day is an interval of its own.
            Self::Hourly => start.checked_add(1.hour()),
            Self::Daily => date.checked_add(1.day())?.to_zoned(tz),
            Self::Weekly => date.checked_add(1.week())?.to_zoned(tz),
            Self::Monthly => date.checked_add(1.month())?.to_zoned(tz),
            Self::Yearly => date.checked_add(1.year())?.to_zoned(tz),
        }
    }
}

/// A `GET /api/analytics/kpis/{kpi_key}` request.
#[derive(Debug, Default)]
pub struct Query {
    /// The time zone dates are read and intervals cut in (IANA name).
    pub tz: String,
    /// Events from (inclusive); a date or a date and time in `tz`, or an instant with an offset.
    pub start: Option<String>,
    /// Events up to; a date includes the whole day, a date and time is inclusive.
    pub end: Option<String>,
    /// Only these projects (at most [`MAX_PROJECTS`]); default every project in reach.
    pub projects: Option<Vec<i64>>,
    /// Only these people's events; default everyone's in reach.
    pub members: Option<Vec<i64>>,
    /// Cut into intervals.
    pub segment_by_time: Option<Granularity>,
    /// One value per person.
    pub segment_by_user: bool,
    /// One value per project.
    pub segment_by_project: bool,
    /// With `segment_by_user`: the people with events, most first, at most
    /// [`ALL_MEMBERS_CAP`], and their total number.
    pub all: bool,
}

/// A KPI's total.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KpiValue {
    /// The unit.
    pub unit: String,
    /// The value; null when undefined (a mean or ratio of nothing).
    pub value: Option<f64>,
}

/// A person in a segmented answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KpiUser {
    /// User id.
    pub user_id: i64,
    /// Email.
    pub user_email: String,
    /// Username.
    pub username: String,
}

/// A project in a segmented answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KpiProject {
    /// Project id.
    pub project_id: i64,
    /// Title.
    pub project_name: String,
    /// Workspace id (0 for none).
    pub workspace_id: i64,
    /// Workspace title.
    pub workspace_name: String,
}

/// Values per interval.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TimeSeries {
    /// Each interval's start, with the time zone's offset.
    pub interval_start: Vec<String>,
    /// One value per interval.
    pub values: Vec<Option<f64>>,
}

/// Values per person.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ByUser {
    /// With `all=true`: how many people had events before the list was capped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    /// The people.
    pub users: Vec<KpiUser>,
    /// One value per person.
    pub values: Vec<Option<f64>>,
}

/// Values per project.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ByProject {
    /// The projects.
    pub projects: Vec<KpiProject>,
    /// One value per project.
    pub values: Vec<Option<f64>>,
}

/// Values per person and interval: `values[person][interval]`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Matrix {
    /// Each interval's start.
    pub interval_start: Vec<String>,
    /// The people.
    pub users: Vec<KpiUser>,
    /// One row per person.
    pub values: Vec<Vec<Option<f64>>>,
}

/// Values per project and interval: `values[project][interval]`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProjectMatrix {
    /// Each interval's start.
    pub interval_start: Vec<String>,
    /// The projects.
    pub projects: Vec<KpiProject>,
    /// One row per project.
    pub values: Vec<Vec<Option<f64>>>,
}

/// A KPI's answer; which field is set follows `segmentation`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KpiDetail {
    /// The KPI.
    pub kpi_key: String,
    /// Its name.
    pub kpi_label: String,
    /// `none`, `time`, `user`, `project`, `matrix` (time × user) or `project_matrix`
    /// (time × project).
    pub segmentation: String,
    /// The unit.
    pub unit: String,
    /// Without segmentation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<KpiValue>,
    /// `segment_by_time` alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_series: Option<TimeSeries>,
    /// `segment_by_user` alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_user: Option<ByUser>,
    /// `segment_by_project` alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_project: Option<ByProject>,
    /// `segment_by_time` with `segment_by_user`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matrix: Option<Matrix>,
    /// `segment_by_time` with `segment_by_project`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_matrix: Option<ProjectMatrix>,
}

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::field(ErrorCode::InvalidQuery, field, message)
}

/// Parses `tz` as an IANA time zone.
pub fn time_zone(name: &str) -> ApiResult<TimeZone> {
    let name = name.trim();
    if name.is_empty() {
        return Err(bad(
            "tz",
            "tz is required: an IANA time zone name such as UTC or Europe/Berlin",
        ));
    }
    TimeZone::get(name).map_err(|_| {
        bad(
            "tz",
            format!(
                "{name:?} is not a known time zone; use an IANA name such as UTC or Europe/Berlin"
            ),
        )
    })
}

/// Reads a date bound: an instant with an offset (`2026-12-05T10:00:00Z`), a date and time in
/// `tz`, or a date in `tz` (its midnight; with `end_of_day`, the next midnight).
fn bound(field: &str, text: &str, tz: &TimeZone, end_of_day: bool) -> ApiResult<i64> {
    let text = text.trim();
    let invalid = || {
        bad(
            field,
            format!(
                "{text:?} is not a date or date and time; use e.g. 2026-12-05, 2026-12-05T14:30 \
                 or 2026-12-05T14:30:00Z"
            ),
        )
    };
    // A date alone is `YYYY-MM-DD`; anything longer has a time.
    let is_date = text.len() == 10 && !text.contains(['T', 't', ' ']);
    let instant = if is_date {
        let date: civil::Date = text.parse().map_err(|_| invalid())?;
        let date = if end_of_day {
            date.checked_add(1.day()).map_err(|_| invalid())?
        } else {
            date
        };
        date.to_zoned(tz.clone())
            .map_err(|_| invalid())?
            .timestamp()
    } else if let Ok(ts) = text.parse::<Timestamp>() {
        ts
    } else if let Ok(dt) = text.parse::<civil::DateTime>() {
        dt.to_zoned(tz.clone()).map_err(|_| invalid())?.timestamp()
    } else {
        return Err(invalid());
    };
    let micros = instant.as_microsecond();
    // A date and time given as the end is inclusive.
    Ok(if end_of_day && !is_date {
        micros + 1
    } else {
        micros
    })
}

/// A project in reach and whether the caller sees everyone's events in it.
struct Reach {
    info: KpiProject,
    everyone: bool,
}

#[derive(sqlx::FromRow)]
struct ReachRow {
    id: i64,
    title: String,
    workspace_id: Option<i64>,
    workspace_name: Option<String>,
    created_by: Option<i64>,
    member_role: Option<String>,
    is_member: bool,
    in_workspace: bool,
}

/// The projects of the caller's organization they can see (those of `only`, when given; one
/// they cannot see is "not found").
async fn reach(db: &Db, actor: &Actor, only: Option<&[i64]>) -> ApiResult<Vec<Reach>> {
    let u = actor.user_id;
    let only_sql = match only {
        Some(ids) => format!(
            " and p.id in ({})",
            ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
        ),
        None => String::new(),
    };
    let rows: Vec<ReachRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select p.id, p.title, p.workspace_id, w.title as workspace_name, p.created_by, \
             pm.role as member_role, (pm.user_id is not null) as is_member, \
             exists(select 1 from workspace_member wm where wm.workspace_id = p.workspace_id and wm.user_id = {u}) as in_workspace \
             from project p left join workspace w on w.id = p.workspace_id \
             left join project_member pm on pm.project_id = p.id and pm.user_id = {u} \
             where p.organization_id = $1 and {visible}{only_sql} order by p.id",
            visible = access::visible_projects(actor),
        ))
        .bind(actor.org_id)
        .fetch_all(conn)
        .await?
    });
    let mut found = Vec::with_capacity(rows.len());
    for r in rows {
        let role = authz::project_role(
            actor.role,
            ProjectMembership {
                creator: r.created_by == Some(u),
                workspace_member: r.in_workspace,
                project_member: r.is_member,
                project_role: r.member_role.as_deref().and_then(Role::parse),
            },
        );
        let Some(role) = role else { continue };
        found.push(Reach {
            info: KpiProject {
                project_id: r.id,
                project_name: r.title,
                workspace_id: r.workspace_id.unwrap_or(0),
                workspace_name: r.workspace_name.unwrap_or_default(),
            },
            everyone: role >= Role::Manager,
        });
    }
    if let Some(ids) = only {
        let seen: BTreeSet<i64> = found.iter().map(|r| r.info.project_id).collect();
        if let Some(missing) = ids.iter().find(|id| !seen.contains(id)) {
            return Err(ApiError::field(
                ErrorCode::NotFound,
                "projects",
                format!("project {missing} not found"),
            ));
        }
    }
    Ok(found)
}

/// The projects whose events the caller can see some of (for a project filter's choices).
pub async fn projects_in_reach(db: &Db, actor: &Actor) -> ApiResult<Vec<KpiProject>> {
    Ok(reach(db, actor, None)
        .await?
        .into_iter()
        .map(|r| r.info)
        .collect())
}

/// Summed value and number of events per (project, person, quarter hour).
type Cells = HashMap<(i64, Option<i64>, i64), (f64, i64)>;

/// Reads one base KPI's events grouped by project, person and (when `by_time`) quarter hour.
async fn cells(
    db: &Db,
    kpi: &Kpi,
    projects: &[i64],
    range: (Option<i64>, Option<i64>),
    by_time: bool,
) -> ApiResult<Cells> {
    if projects.is_empty() {
        return Ok(Cells::new());
    }
    let (table, alias, person) = match kpi.source {
        Source::Annotations => ("annotation", "a", "a.completed_by"),
        Source::Reviews => ("annotation_review", "r", "r.created_by"),
        Source::Tasks => ("task", "t", "cast(null as bigint)"),
    };
    let ids = projects
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let quarter = if by_time {
        format!("{alias}.created_at / {QUARTER_MICROS}")
    } else {
        "cast(0 as bigint)".to_string()
    };
    let sql = format!(
        "select {alias}.project_id, {person}, {quarter}, \
         coalesce(sum(cast({value} as double precision)), cast(0 as double precision)), count({value}) \
         from {table} {alias} where {alias}.project_id in ({ids}) and ({filter}) \
         and {alias}.created_at >= $1 and {alias}.created_at < $2 \
         group by 1, 2, 3",
        value = kpi.value,
        filter = kpi.filter,
    );
    let rows: Vec<(i64, Option<i64>, i64, f64, i64)> = with_read!(db, conn, {
        sqlx::query_as(&sql)
            .bind(range.0.unwrap_or(i64::MIN))
            .bind(range.1.unwrap_or(i64::MAX))
            .fetch_all(conn)
            .await?
    });
    Ok(rows
        .into_iter()
        .map(|(p, u, q, sum, n)| ((p, u, q), (sum, n)))
        .collect())
}

/// Sum and count of a base KPI in one segment.
#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    sum: f64,
    n: i64,
}

/// A KPI's accumulated parts: one base KPI, or the numerator and denominator of a ratio.
#[derive(Debug, Clone, Copy, Default)]
struct Parts {
    main: Acc,
    denominator: Acc,
}

impl Parts {
    fn value(self, aggregation: Aggregation) -> Option<f64> {
        match aggregation {
            Aggregation::Count => Some(self.main.n as f64),
            Aggregation::Sum => Some(self.main.sum),
            Aggregation::Avg => (self.main.n > 0).then(|| self.main.sum / self.main.n as f64),
            Aggregation::Ratio(..) => {
                (self.denominator.sum > 0.0).then(|| self.main.sum / self.denominator.sum)
            }
        }
    }
}

/// Answers one KPI for the caller.
pub async fn detail(db: &Db, actor: &Actor, key: &str, q: Query) -> ApiResult<KpiDetail> {
    let kpi = find(key).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!("no KPI named {key:?}; GET /api/analytics/kpis/ lists them"),
        )
    })?;
    let tz = time_zone(&q.tz)?;
    if let Some(p) = &q.projects
        && p.len() > MAX_PROJECTS
    {
        return Err(bad(
            "projects",
            format!(
                "at most {MAX_PROJECTS} projects per request ({} given)",
                p.len()
            ),
        ));
    }
    if q.segment_by_user && q.segment_by_project {
        return Err(bad(
            "segment_by_project",
            "segment by user or by project, not both (each can be combined with segment_by_time)",
        ));
    }
    if kpi.source == Source::Tasks && (q.segment_by_user || q.members.is_some()) {
        let field = if q.segment_by_user {
            "segment_by_user"
        } else {
            "members"
        };
        return Err(bad(
            field,
            format!(
                "{} are not made by a person: they cannot be segmented or filtered by user",
                kpi.key
            ),
        ));
    }
    let start = q
        .start
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(|s| bound("start", s, &tz, false))
        .transpose()?;
    let end = q
        .end
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(|s| bound("end", s, &tz, true))
        .transpose()?;
    if let (Some(s), Some(e)) = (start, end)
        && e <= s
    {
        return Err(bad("end", "end must be after start"));
    }
    let reach = reach(db, actor, q.projects.as_deref()).await?;
    let ids: Vec<i64> = reach.iter().map(|r| r.info.project_id).collect();
    let everyone: BTreeSet<i64> = reach
        .iter()
        .filter(|r| r.everyone)
        .map(|r| r.info.project_id)
        .collect();
    let members: Option<BTreeSet<i64>> = q.members.as_ref().map(|m| m.iter().copied().collect());
    let by_time = q.segment_by_time.is_some();
    // The base KPIs to read: the KPI itself, or a ratio's two parts.
    let parts: Vec<(&Kpi, bool)> = match kpi.aggregation {
        Aggregation::Ratio(n, d) => vec![
            (
                find(n).ok_or_else(|| ApiError::internal("ratio numerator"))?,
                false,
            ),
            (
                find(d).ok_or_else(|| ApiError::internal("ratio denominator"))?,
                true,
            ),
        ],
        _ => vec![(kpi, false)],
    };
    // (project, person, quarter) → parts, keeping only what the caller may see.
    let mut merged: BTreeMap<(i64, Option<i64>, i64), Parts> = BTreeMap::new();
    for (base, is_denominator) in parts {
        for ((p, u, quarter), (sum, n)) in cells(db, base, &ids, (start, end), by_time).await? {
            let own = u == Some(actor.user_id);
            if !everyone.contains(&p) && !own {
                continue;
            }
            if let Some(m) = &members
                && !u.is_some_and(|u| m.contains(&u))
            {
                continue;
            }
            let entry = merged.entry((p, u, quarter)).or_default();
            let acc = if is_denominator {
                &mut entry.denominator
            } else {
                &mut entry.main
            };
            // Counts are sums of ones, so ratios of counts divide sums.
            acc.sum += if base.aggregation == Aggregation::Count {
                n as f64
            } else {
                sum
            };
            acc.n += n;
        }
    }
    let intervals = match q.segment_by_time {
        Some(g) => Some(intervals(g, &tz, start, end, &merged)?),
        None => None,
    };
    let starts: &[i64] = intervals.as_ref().map_or(&[], |i| i.1.as_slice());
    let interval_of = |quarter: i64| -> usize {
        let at = quarter * QUARTER_MICROS;
        starts.partition_point(|s| *s <= at).saturating_sub(1)
    };
    let mut answer = KpiDetail {
        kpi_key: kpi.key.into(),
        kpi_label: kpi.label.into(),
        segmentation: "none".into(),
        unit: kpi.unit.into(),
        total: None,
        time_series: None,
        by_user: None,
        by_project: None,
        matrix: None,
        project_matrix: None,
    };
    let add = |into: &mut Parts, from: &Parts| {
        into.main.sum += from.main.sum;
        into.main.n += from.main.n;
        into.denominator.sum += from.denominator.sum;
        into.denominator.n += from.denominator.n;
    };
    let agg = kpi.aggregation;
    if q.segment_by_user {
        let mut per: BTreeMap<i64, Vec<Parts>> = BTreeMap::new();
        let width = intervals.as_ref().map_or(1, |i| i.0.len());
        for ((_, u, quarter), parts) in &merged {
            let Some(u) = u else { continue };
            let row = per
                .entry(*u)
                .or_insert_with(|| vec![Parts::default(); width]);
            let i = if by_time { interval_of(*quarter) } else { 0 };
            add(&mut row[i], parts);
        }
        // The people listed: those asked for, in that order; else everyone with events (the
        // caller alone when they see only their own); `all` ranks them and caps the list.
        let mut order: Vec<i64> = match &q.members {
            Some(m) => m.clone(),
            None => per.keys().copied().collect(),
        };
        let mut total = None;
        if q.all {
            let score = |u: &i64| {
                per.get(u)
                    .map(|row| {
                        let mut all = Parts::default();
                        row.iter().for_each(|p| add(&mut all, p));
                        all.value(agg).unwrap_or(f64::MIN)
                    })
                    .unwrap_or(f64::MIN)
            };
            order.retain(|u| per.contains_key(u));
            order.sort_by(|a, b| score(b).total_cmp(&score(a)).then(a.cmp(b)));
            total = Some(order.len() as i64);
            order.truncate(ALL_MEMBERS_CAP);
        }
        let users = users(db, actor, &order).await?;
        let rows: Vec<Vec<Option<f64>>> = users
            .iter()
            .map(|user| match per.get(&user.user_id) {
                Some(row) => row.iter().map(|p| p.value(agg)).collect(),
                None => vec![Parts::default().value(agg); width],
            })
            .collect();
        match &intervals {
            Some((labels, _)) => {
                answer.segmentation = "matrix".into();
                answer.matrix = Some(Matrix {
                    interval_start: labels.clone(),
                    users,
                    values: rows,
                });
            }
            None => {
                answer.segmentation = "user".into();
                answer.by_user = Some(ByUser {
                    total,
                    users,
                    values: rows.into_iter().map(|r| r[0]).collect(),
                });
            }
        }
    } else if q.segment_by_project {
        let width = intervals.as_ref().map_or(1, |i| i.0.len());
        let mut per: BTreeMap<i64, Vec<Parts>> = BTreeMap::new();
        for ((p, _, quarter), parts) in &merged {
            let row = per
                .entry(*p)
                .or_insert_with(|| vec![Parts::default(); width]);
            let i = if by_time { interval_of(*quarter) } else { 0 };
            add(&mut row[i], parts);
        }
        let projects: Vec<KpiProject> = reach.into_iter().map(|r| r.info).collect();
        let rows: Vec<Vec<Option<f64>>> = projects
            .iter()
            .map(|p| match per.get(&p.project_id) {
                Some(row) => row.iter().map(|x| x.value(agg)).collect(),
                None => vec![Parts::default().value(agg); width],
            })
            .collect();
        match &intervals {
            Some((labels, _)) => {
                answer.segmentation = "project_matrix".into();
                answer.project_matrix = Some(ProjectMatrix {
                    interval_start: labels.clone(),
                    projects,
                    values: rows,
                });
            }
            None => {
                answer.segmentation = "project".into();
                answer.by_project = Some(ByProject {
                    projects,
                    values: rows.into_iter().map(|r| r[0]).collect(),
                });
            }
        }
    } else if let Some((labels, _)) = &intervals {
        let mut row = vec![Parts::default(); labels.len()];
        for ((_, _, quarter), parts) in &merged {
            add(&mut row[interval_of(*quarter)], parts);
        }
        answer.segmentation = "time".into();
        answer.time_series = Some(TimeSeries {
            interval_start: labels.clone(),
            values: row.iter().map(|p| p.value(agg)).collect(),
        });
    } else {
        let mut all = Parts::default();
        merged.values().for_each(|p| add(&mut all, p));
        answer.total = Some(KpiValue {
            unit: kpi.unit.into(),
            value: all.value(agg),
        });
    }
    Ok(answer)
}

/// The intervals of a time segmentation: their starts as text (RFC 3339 with the zone's
/// offset) and as microseconds. From the interval holding `start` (else the first event) to
/// the one holding `end` (else now, or the last event when it is later).
fn intervals(
    g: Granularity,
    tz: &TimeZone,
    start: Option<i64>,
    end: Option<i64>,
    merged: &BTreeMap<(i64, Option<i64>, i64), Parts>,
) -> ApiResult<(Vec<String>, Vec<i64>)> {
    let first_event = merged.keys().map(|k| k.2 * QUARTER_MICROS).min();
    let last_event = merged.keys().map(|k| k.2 * QUARTER_MICROS).max();
    let now = super::now_micros();
    let last = match end {
        Some(e) => e - 1,
        None => last_event.map_or(now, |l| l.max(now)),
    };
    let first = start.or(first_event).unwrap_or(last).min(last);
    let zoned = |micros: i64| -> ApiResult<Zoned> {
        Timestamp::from_microsecond(micros)
            .map(|t| t.to_zoned(tz.clone()))
            .map_err(|e| bad("start", format!("out of range: {e}")))
    };
    let too_many = || {
        bad(
            "segment_by_time",
            format!(
                "more than {MAX_INTERVALS} intervals; choose a coarser segment_by_time or a shorter range"
            ),
        )
    };
    let mut at = g
        .floor(&zoned(first)?)
        .map_err(|e| bad("start", e.to_string()))?;
    let mut labels = Vec::new();
    let mut starts = Vec::new();
    while at.timestamp().as_microsecond() <= last {
        if labels.len() == MAX_INTERVALS {
            return Err(too_many());
        }
        labels.push(at.timestamp().display_with_offset(at.offset()).to_string());
        starts.push(at.timestamp().as_microsecond());
        at = g.next(&at).map_err(|_| too_many())?;
    }
    Ok((labels, starts))
}

/// The named people of the caller's organization, in the order given (unknown ids left out).
async fn users(db: &Db, actor: &Actor, ids: &[i64]) -> ApiResult<Vec<KpiUser>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let rows: Vec<(i64, String, String)> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select u.id, u.email, u.username from app_user u \
             where u.id in ({list}) and exists (select 1 from org_member om \
             where om.user_id = u.id and om.organization_id = $1)"
        ))
        .bind(actor.org_id)
        .fetch_all(conn)
        .await?
    });
    let by_id: HashMap<i64, KpiUser> = rows
        .into_iter()
        .map(|(id, email, username)| {
            (
                id,
                KpiUser {
                    user_id: id,
                    user_email: email,
                    username,
                },
            )
        })
        .collect();
    Ok(ids.iter().filter_map(|id| by_id.get(id).cloned()).collect())
}

/// Parses a list of ids separated by commas (`projects`, `members`); empty is none.
pub fn parse_list(field: &str, text: Option<&str>) -> ApiResult<Option<Vec<i64>>> {
    let text = text.map(str::trim).unwrap_or_default();
    if text.is_empty() {
        return Ok(None);
    }
    let mut ids = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let id: i64 = part.parse().map_err(|_| {
            bad(
                field,
                format!("{part:?} is not an id; give ids separated by commas, e.g. {field}=3,7"),
            )
        })?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(Some(ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(tz: &TimeZone, text: &str) -> Zoned {
        text.parse::<civil::DateTime>()
            .expect("value")
            .to_zoned(tz.clone())
            .expect("value")
    }

    #[test]
    fn intervals_follow_the_zone_calendar() {
        let tz = TimeZone::get("America/New_York").expect("value");
        let z = at(&tz, "2026-03-08T15:20");
        // Weekly from Monday midnight; 2026-03-08 is a Sunday.
        let w = Granularity::Weekly.floor(&z).expect("value");
        assert_eq!(w.date().to_string(), "2026-03-02");
        assert_eq!(w.time().hour(), 0);
        // The day of the spring change is 23 hours long.
        let d = Granularity::Daily.floor(&z).expect("value");
        let next = Granularity::Daily.next(&d).expect("value");
        assert_eq!(
            next.timestamp().as_second() - d.timestamp().as_second(),
            23 * 3600
        );
        let m = Granularity::Monthly.floor(&z).expect("value");
        assert_eq!(m.date().to_string(), "2026-03-01");
        let y = Granularity::Yearly
            .next(&Granularity::Yearly.floor(&z).expect("value"))
            .expect("value");
        assert_eq!(y.date().to_string(), "2027-01-01");
        // Hours of a zone half an hour off UTC start at its half hours.
        let india = TimeZone::get("Asia/Kolkata").expect("value");
        let h = Granularity::Hourly
            .floor(&at(&india, "2026-01-01T10:59"))
            .expect("value");
        assert_eq!(h.timestamp().as_second() % 3600, 1800);
    }

    #[test]
    fn bounds_read_dates_in_the_zone() {
        let tz = TimeZone::get("Europe/Berlin").expect("value");
        let start = bound("start", "2026-12-05", &tz, false).expect("value");
        let end = bound("end", "2026-12-05", &tz, true).expect("value");
        assert_eq!(end - start, 86_400_000_000);
        assert_eq!(
            start,
            "2026-12-04T23:00:00Z"
                .parse::<Timestamp>()
                .expect("value")
                .as_microsecond()
        );
        let exact = bound("end", "2026-12-05T10:00:00Z", &tz, true).expect("value");
        assert_eq!(
            exact,
            "2026-12-05T10:00:00Z"
                .parse::<Timestamp>()
                .expect("value")
                .as_microsecond()
                + 1
        );
        assert!(bound("start", "yesterday", &tz, false).is_err());
        assert!(time_zone("Mars/Olympus").is_err());
        assert!(time_zone("").is_err());
    }

    #[test]
    fn lists_parse_and_refuse() {
        assert_eq!(parse_list("projects", Some(" ")).expect("value"), None);
        assert_eq!(
            parse_list("projects", Some("3, 7,3")).expect("value"),
            Some(vec![3, 7])
        );
        assert!(parse_list("members", Some("3,x")).is_err());
    }

    #[test]
    fn ratios_and_means_of_nothing_are_undefined() {
        assert_eq!(Parts::default().value(Aggregation::Avg), None);
        assert_eq!(Parts::default().value(Aggregation::Ratio("a", "b")), None);
        assert_eq!(Parts::default().value(Aggregation::Count), Some(0.0));
        for k in CATALOGUE {
            if let Aggregation::Ratio(n, d) = k.aggregation {
                assert!(find(n).is_some() && find(d).is_some(), "{}", k.key);
            }
        }
    }
}
