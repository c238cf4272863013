//! The review page (ADR 0043): Label Studio Enterprise's reviewer flow on one page. The server
//! takes the next annotation of the review stream (reserving it, as `GET
//! /api/projects/{id}/review/next` does) and renders it with the task's review history; the
//! form's Accept, Reject and Fix + Accept go through the same review code as
//! `POST /api/annotation-reviews`, then the page shows the next annotation.

use std::collections::HashMap;

use axum::{
    extract::{Request, State},
    http::{StatusCode, header},
    response::Response,
};
use minijinja::context;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    PageUser, error_page,
    pages::{
        js, project_form, project_header, project_page_user, project_role, serde_urlencoded_from,
    },
    redirect, render, user_context,
};
use crate::{
    authz::Permission,
    domain::project::RequeueMode,
    error::{ApiError, ErrorCode},
    http::AppState,
    storage::{
        annotations,
        annotator_stats::{self, Table},
        comments::{self, CommentInput},
        format_micros, now_micros, projects,
        reviews::{self, ReviewFilter, ReviewInput},
        tasks, users,
    },
    webhooks::Action,
};

#[derive(Debug, Deserialize, Default)]
struct ReviewQuery {
    done: Option<String>,
    /// Deep link: review this task's annotations instead of the stream's next one.
    task: Option<String>,
    /// With `task`: this annotation of it.
    annotation: Option<String>,
}

/// The task (and annotation) a review page opened by a link reviews, instead of the stream.
#[derive(Debug, Clone, Copy)]
struct Target {
    task: i64,
    annotation: Option<i64>,
}

/// A number of the address or form, or the refusal naming it.
fn number(name: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            ApiError::field(
                ErrorCode::InvalidQuery,
                name,
                format!("{v:?} is not a number: give a task (and annotation) id"),
            )
        }),
    }
}

fn target(task: Option<&str>, annotation: Option<&str>) -> Result<Option<Target>, ApiError> {
    let annotation = number("annotation", annotation)?;
    Ok(number("task", task)?.map(|task| Target { task, annotation }))
}

/// `GET /projects/{id}/review`: the next annotation to review, for those who may review in the
/// project (403 otherwise, as the API).
pub(super) async fn review_page(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let (user, id) = match project_page_user(&state, &parts).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let query = parts
        .uri
        .query()
        .and_then(serde_urlencoded_from::<ReviewQuery>)
        .unwrap_or_default();
    let target = match target(query.task.as_deref(), query.annotation.as_deref()) {
        Ok(t) => t,
        Err(e) => return error_page(Some(&user), &e),
    };
    let notice = match (query.done.as_deref(), target.is_some()) {
        (Some("accepted"), false) => Some("Accepted. Here is the next annotation."),
        (Some("rejected"), false) => Some("Rejected. Here is the next annotation."),
        (Some("fixed"), false) => Some("Fixed and accepted. Here is the next annotation."),
        (Some("accepted"), true) => Some("Accepted."),
        (Some("rejected"), true) => Some("Rejected."),
        (Some("fixed"), true) => Some("Fixed and accepted."),
        (Some("commented"), _) => Some("Comment added."),
        (Some("resolved"), _) => Some("Comment resolved."),
        (Some("reopened"), _) => Some("Comment reopened."),
        _ => None,
    };
    review_view(&state, &user, id, target, StatusCode::OK, notice, None).await
}

/// The task a link names, with only the annotation to review in it: the one named, else its
/// first submitted one. The task must be this project's and readable by the user (404
/// otherwise, as `GET /api/tasks/{id}`); a task with nothing submitted is refused with what to do.
async fn linked_task(
    state: &AppState,
    user: &PageUser,
    project: i64,
    target: Target,
) -> Result<(tasks::TaskView, Vec<Value>), ApiError> {
    // A task of a project the user cannot see is as absent as one of another project: this page
    // reviews this project's tasks only.
    let mut task = tasks::get(&state.db, &user.actor, target.task)
        .await
        .map_err(|e| match e.code {
            ErrorCode::Forbidden => ApiError::not_found("task"),
            _ => e,
        })?;
    if task.project != project {
        return Err(ApiError::not_found("task"));
    }
    let submitted: Vec<annotations::AnnotationView> = task
        .annotations
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| !a.was_cancelled)
        .collect();
    let others: Vec<Value> = submitted
        .iter()
        .map(|a| {
            json!({
                "id": a.id,
                "author": if a.created_username.is_empty() { "an annotator".to_string() } else { a.created_username.clone() },
                "href": format!("/projects/{project}/review?task={}&annotation={}", task.id, a.id),
            })
        })
        .collect();
    let chosen = match target.annotation {
        Some(a) => submitted
            .into_iter()
            .find(|x| x.id == a)
            .ok_or_else(|| ApiError::not_found("annotation"))?,
        None => submitted.into_iter().next().ok_or_else(|| {
            ApiError::field(
                ErrorCode::NothingToReview,
                "task",
                format!(
                    "task {} has no submitted annotation to review; open another task",
                    target.task
                ),
            )
        })?,
    };
    let mut others = others;
    for o in &mut others {
        o["current"] = json!(o["id"] == json!(chosen.id));
    }
    task.annotations = Some(vec![chosen]);
    Ok((task, others))
}

/// The comments of annotation `annotation` as the review page lists them, oldest first: text,
/// author, time and whether resolved. The annotation's own author is named as the page names
/// them (`author`), so a project that hides annotators does not name them through a comment.
async fn comment_panel(
    state: &AppState,
    user: &PageUser,
    annotation: i64,
    author: &str,
) -> Result<Vec<Value>, ApiError> {
    let listed = comments::list(&state.db, &user.actor, Some(annotation), None).await?;
    if listed.is_empty() {
        return Ok(Vec::new());
    }
    let annotator = annotations::get_row(&state.db, &user.actor, annotation)
        .await?
        .completed_by;
    // Every member may read the organization's members (`GET /api/users`); a name that cannot
    // be read falls back to "a former member".
    let names: HashMap<i64, String> = users::list_users(&state.db, &user.actor)
        .await
        .map(|people| {
            people
                .into_iter()
                .map(|u| {
                    let name = format!("{} {}", u.first_name, u.last_name);
                    let name = match name.trim() {
                        "" => u.email.clone(),
                        n => n.to_string(),
                    };
                    (u.id, name)
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(listed
        .iter()
        .map(|c| {
            let who = match c.created_by {
                Some(by) if by == user.actor.user_id => "You".to_string(),
                Some(by) if Some(by) == annotator => author.to_string(),
                Some(by) => names
                    .get(&by)
                    .cloned()
                    .unwrap_or_else(|| "a former member".to_string()),
                None => "a former member".to_string(),
            };
            json!({
                "id": c.id,
                "text": c.text,
                "who": who,
                "when": format_micros(c.created_at),
                "resolved": c.is_resolved,
                "with_review": c.review.is_some(),
            })
        })
        .collect())
}

/// A short text of a result: per control, its chosen values (choices, labels, text), else the
/// value as JSON.
fn result_summary(result: &Value) -> Vec<Value> {
    let Some(items) = result.as_array() else {
        return Vec::new();
    };
    items
        .iter()
        .map(|item| {
            let name = item["from_name"].as_str().unwrap_or("result");
            let value = &item["value"];
            let listed = [
                "choices",
                "labels",
                "rectanglelabels",
                "polygonlabels",
                "text",
                "taxonomy",
            ]
            .iter()
            .find_map(|key| value.get(*key).and_then(Value::as_array));
            let text = match listed {
                Some(values) => values
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(", "),
                None => value.to_string(),
            };
            json!({"name": name, "text": text})
        })
        .collect()
}

/// Renders the review page: the next annotation of the stream (reserved for the user), or the
/// "nothing to review" message.
async fn review_view(
    state: &AppState,
    user: &PageUser,
    id: i64,
    target: Option<Target>,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
) -> Response {
    let role = match project_role(state, user, id, Permission::ReviewCreate).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let project = match projects::get(&state.db, &user.actor, id).await {
        Ok(p) => p,
        Err(e) => return error_page(Some(user), &e),
    };
    let mut siblings: Vec<Value> = Vec::new();
    let task = match target {
        Some(t) => match linked_task(state, user, id, t).await {
            Ok((task, others)) => {
                siblings = others;
                Some(task)
            }
            Err(e) => return error_page(Some(user), &e),
        },
        None => {
            match reviews::next(&state.db, &user.actor, id, state.config.task_lock_ttl_secs).await {
                Ok(t) => Some(t),
                Err(e) if e.code == ErrorCode::NothingToReview => None,
                Err(e) => return error_page(Some(user), &e),
            }
        }
    };
    // The editor gets the task's bucket URIs as media links, as `review/next` answers them.
    let task = match task {
        Some(t) => match crate::http::routes::tasks::with_resolved_uris(state, t).await {
            Ok(t) => Some(t),
            Err(e) => return error_page(Some(user), &e),
        },
        None => None,
    };
    let mut review = Value::Null;
    if let Some(task) = &task {
        let filter = ReviewFilter {
            project: Some(id),
            task: Some(task.id),
            ordering: Some("created_at".to_string()),
            ..ReviewFilter::default()
        };
        let history = match reviews::list(&state.db, &user.actor, filter).await {
            Ok(h) => h,
            Err(e) => return error_page(Some(user), &e),
        };
        let reviewers: HashMap<i64, String> =
            match annotator_stats::participants(&state.db, &user.actor, id, Table::Reviews).await {
                Ok(people) => people
                    .into_iter()
                    .map(|u| (u.id, u.display_name()))
                    .collect(),
                Err(e) => return error_page(Some(user), &e),
            };
        let history: Vec<Value> = history
            .iter()
            .map(|r| {
                let who = r
                    .created_by
                    .and_then(|by| reviewers.get(&by).cloned())
                    .unwrap_or_else(|| "a former member".to_string());
                let outcome = match (r.accepted, r.result.is_some()) {
                    (true, true) => "fixed and accepted",
                    (true, false) => "accepted",
                    (false, _) => "rejected",
                };
                json!({
                    "who": who,
                    "outcome": outcome,
                    "accepted": r.accepted,
                    "annotation": r.annotation,
                    "when": r.created_at,
                    "comment": r.comment,
                    "reject_action": r.reject_action,
                })
            })
            .collect();
        let annotation = task
            .annotations
            .as_ref()
            .and_then(|a| a.first())
            .map(|a| serde_json::to_value(a).unwrap_or_default())
            .unwrap_or_default();
        let result: Value = annotation["result"].clone();
        let author = match annotation["created_username"].as_str() {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => "an annotator (hidden by the project's settings)".to_string(),
        };
        let comments = match annotation["id"].as_i64() {
            Some(a) => match comment_panel(state, user, a, &author).await {
                Ok(c) => c,
                Err(e) => return error_page(Some(user), &e),
            },
            None => Vec::new(),
        };
        review = json!({
            "task": task.id,
            "annotation": annotation["id"],
            "author": author,
            "created_at": annotation["created_at"],
            "lead_time": annotation["lead_time"].as_f64().map(|t| format!("{t:.1} s")),
            "summary": result_summary(&result),
            "result_json": serde_json::to_string_pretty(&result).unwrap_or_default(),
            "data_json": serde_json::to_string_pretty(&task.data).unwrap_or_default(),
            "task_json": serde_json::to_string(task).unwrap_or_default(),
            "history": history,
            "annotations": siblings,
            "comments": comments,
        });
    }
    let rs = &project.settings.review_settings;
    let editor = !state.config.editor_dir.is_empty();
    let mut response = render(
        status,
        "review.html",
        context! {
            user => user_context(user),
            project => js(&project_header(&project, role)),
            review => js(&review),
            label_config => project.label_config.clone(),
            user_id => user.actor.user_id,
            editor => editor,
            flexible => rs.requeue_rejected_tasks_mode == RequeueMode::Flexible,
            requeue_default => !rs.requeue_rejected_tasks_to_annotator,
            require_comment => rs.require_comment_on_reject,
            instruction => rs.show_instruction.then(|| rs.instruction.clone()).filter(|i| !i.trim().is_empty()),
            started_at => format_micros(now_micros()),
            linked => target.map(|t| t.task),
            notice => notice,
            error => error,
        },
    );
    if editor && task.is_some() {
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            axum::http::HeaderValue::from_static(super::EDITOR_CONTENT_SECURITY_POLICY),
        );
    }
    response
}

/// The review form.
#[derive(Debug, Deserialize, Default)]
pub(super) struct ReviewForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    annotation: String,
    /// `accept`, `reject` or `fix` (the button pressed).
    #[serde(default)]
    action: String,
    #[serde(default)]
    comment: String,
    /// `requeue` or `remove` (projects whose reject mode lets the reviewer choose).
    #[serde(default)]
    reject_action: String,
    /// The fixed result (JSON, filled in by `review.js` from the editor).
    #[serde(default)]
    result: String,
    #[serde(default)]
    started_at: String,
    /// Set when the page was opened on a task by a link: the page comes back to it.
    #[serde(default)]
    task: String,
}

/// The review body of a form, as `POST /api/annotation-reviews` would receive it, or what to fix.
fn review_body(form: &ReviewForm, annotation: i64) -> Result<Map<String, Value>, ApiError> {
    let mut body = Map::new();
    body.insert("annotation".into(), json!(annotation));
    let comment = form.comment.trim();
    if !comment.is_empty() {
        body.insert("comment".into(), json!(comment));
    }
    if !form.started_at.trim().is_empty() {
        body.insert("started_at".into(), json!(form.started_at.trim()));
    }
    match form.action.as_str() {
        "accept" => {
            body.insert("accepted".into(), json!(true));
        }
        "reject" => {
            body.insert("accepted".into(), json!(false));
            if !form.reject_action.is_empty() {
                body.insert("reject_action".into(), json!(form.reject_action));
            }
        }
        "fix" => {
            let result: Value = serde_json::from_str(form.result.trim()).map_err(|_| {
                ApiError::field(
                    ErrorCode::ValidationError,
                    "result",
                    "Fix + Accept needs the changed result from the editor; reload the page with the editor installed, or accept or reject instead",
                )
            })?;
            body.insert("accepted".into(), json!(true));
            body.insert("result".into(), result);
        }
        _ => {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "action",
                "choose Accept, Reject or Fix + Accept",
            ));
        }
    }
    Ok(body)
}

/// The annotation a review-page form names, with the page to come back to: refused (on that
/// page) when the field is not a number or the annotation is not one of this project's, which
/// is all the page reviews.
async fn form_annotation(
    state: &AppState,
    user: &PageUser,
    id: i64,
    back: Option<Target>,
    field: &str,
) -> Result<(i64, Option<Target>), Response> {
    let Ok(annotation) = field.trim().parse::<i64>() else {
        let e = ApiError::field(
            ErrorCode::ValidationError,
            "annotation",
            "the form names no annotation; reload the page",
        );
        return Err(refused(state, user, id, back, e).await);
    };
    let back = back.map(|t| Target {
        annotation: Some(annotation),
        ..t
    });
    match annotations::get_row(&state.db, &user.actor, annotation).await {
        Ok(row) if row.project_id == id => Ok((annotation, back)),
        Ok(_) => Err(refused(state, user, id, back, ApiError::not_found("annotation")).await),
        Err(e) => Err(refused(state, user, id, back, e).await),
    }
}

/// `POST /projects/{id}/review`: reviews the annotation through the same code as the API's
/// `POST /api/annotation-reviews` (permission checks, the project's reject settings, audit,
/// webhooks), then shows the next annotation.
pub(super) async fn review_post(State(state): State<AppState>, request: Request) -> Response {
    let (user, id, _, form) = match project_form::<ReviewForm>(&state, request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let back = match target(Some(&form.task), None) {
        Ok(t) => t,
        Err(e) => return error_page(Some(&user), &e),
    };
    let (annotation, back) = match form_annotation(&state, &user, id, back, &form.annotation).await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let input = match review_body(&form, annotation).and_then(|b| ReviewInput::from_body(&b)) {
        Ok(i) => i,
        Err(e) => return refused(&state, &user, id, back, e).await,
    };
    match reviews::create(&state.db, &user.actor, input).await {
        Ok(created) => {
            crate::http::routes::reviews::emit(
                &state,
                &user.actor,
                &created,
                Action::ReviewCreated,
            )
            .await;
            let done = match (created.accepted, created.result.is_some()) {
                (true, true) => "fixed",
                (true, false) => "accepted",
                (false, _) => "rejected",
            };
            match back {
                Some(t) => redirect(&format!(
                    "/projects/{id}/review?task={}&annotation={annotation}&done={done}",
                    t.task
                )),
                None => redirect(&format!("/projects/{id}/review?done={done}")),
            }
        }
        Err(e) => refused(&state, &user, id, back, e).await,
    }
}

/// The comment forms of the review page: add a comment to the annotation under review, or
/// resolve or reopen one of its comments.
#[derive(Debug, Deserialize, Default)]
pub(super) struct CommentForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    annotation: String,
    /// Set when the page was opened on a task by a link: the page comes back to it.
    #[serde(default)]
    task: String,
    /// `add` (with `text`), `resolve` or `reopen` (with `comment`).
    #[serde(default)]
    action: String,
    #[serde(default)]
    text: String,
    /// The comment to resolve or reopen.
    #[serde(default)]
    comment: String,
}

/// What a comment form asks for.
#[derive(Debug, PartialEq)]
enum CommentAction {
    Add(String),
    Resolve(i64, bool),
}

/// Reads the action of a comment form, or what to fix.
fn comment_action(form: &CommentForm) -> Result<CommentAction, ApiError> {
    let comment = || {
        form.comment.trim().parse::<i64>().map_err(|_| {
            ApiError::field(
                ErrorCode::ValidationError,
                "comment",
                "the form names no comment; reload the page",
            )
        })
    };
    match form.action.as_str() {
        "add" => Ok(CommentAction::Add(form.text.trim().to_string())),
        "resolve" => Ok(CommentAction::Resolve(comment()?, true)),
        "reopen" => Ok(CommentAction::Resolve(comment()?, false)),
        _ => Err(ApiError::field(
            ErrorCode::ValidationError,
            "action",
            "choose Add comment, Resolve or Reopen",
        )),
    }
}

/// `POST /projects/{id}/review/comments`: adds a comment to the annotation under review, or
/// resolves or reopens one of its comments, through the same code as `POST /api/comments` and
/// `PATCH /api/comments/{id}` (who may resolve, audit, the task's comment counters), then shows
/// the same annotation again.
pub(super) async fn comment_post(State(state): State<AppState>, request: Request) -> Response {
    let (user, id, _, form) = match project_form::<CommentForm>(&state, request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    // Only those who may review here use the review page's forms (as its GET).
    if let Err(r) = project_role(&state, &user, id, Permission::ReviewCreate).await {
        return r;
    }
    let back = match target(Some(&form.task), None) {
        Ok(t) => t,
        Err(e) => return error_page(Some(&user), &e),
    };
    let (annotation, back) = match form_annotation(&state, &user, id, back, &form.annotation).await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let done = match comment_action(&form) {
        Err(e) => return refused(&state, &user, id, back, e).await,
        Ok(CommentAction::Add(text)) => {
            let mut body = Map::new();
            body.insert("text".into(), json!(text));
            let made = match CommentInput::from_body(&body) {
                Ok(input) => comments::create(&state.db, &user.actor, annotation, &input).await,
                Err(e) => Err(e),
            };
            match made {
                Ok(_) => "commented",
                Err(e) => return refused(&state, &user, id, back, e).await,
            }
        }
        Ok(CommentAction::Resolve(comment, resolved)) => {
            // Only a comment of the annotation on the page: the form resolves nothing else.
            match comments::get(&state.db, &user.actor, comment).await {
                Ok(c) if c.annotation == Some(annotation) => {}
                Ok(_) => {
                    return refused(&state, &user, id, back, ApiError::not_found("comment")).await;
                }
                Err(e) => return refused(&state, &user, id, back, e).await,
            }
            let input = CommentInput {
                is_resolved: Some(resolved),
                ..CommentInput::default()
            };
            match comments::update(&state.db, &user.actor, comment, &input).await {
                Ok(_) if resolved => "resolved",
                Ok(_) => "reopened",
                Err(e) => return refused(&state, &user, id, back, e).await,
            }
        }
    };
    match back {
        Some(t) => redirect(&format!(
            "/projects/{id}/review?task={}&annotation={annotation}&done={done}#review-comments",
            t.task
        )),
        None => redirect(&format!(
            "/projects/{id}/review?done={done}#review-comments"
        )),
    }
}

/// The page again with what to fix (a client error), or the error page.
async fn refused(
    state: &AppState,
    user: &PageUser,
    id: i64,
    back: Option<Target>,
    e: ApiError,
) -> Response {
    if e.code.status().is_client_error() && e.code != ErrorCode::NotFound {
        review_view(
            state,
            user,
            id,
            back,
            e.code.status(),
            None,
            Some(&e.detail),
        )
        .await
    } else {
        error_page(Some(user), &e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_reads_as_its_chosen_values() {
        let result = json!([
            {"from_name": "sentiment", "value": {"choices": ["Positive", "Neutral"]}},
            {"from_name": "box", "value": {"x": 1}},
        ]);
        assert_eq!(
            result_summary(&result),
            vec![
                json!({"name": "sentiment", "text": "Positive, Neutral"}),
                json!({"name": "box", "text": "{\"x\":1}"}),
            ]
        );
    }

    #[test]
    fn the_form_becomes_the_api_body() {
        let form = |action: &str, result: &str| ReviewForm {
            action: action.into(),
            comment: " wrong label ".into(),
            reject_action: "remove".into(),
            result: result.into(),
            ..ReviewForm::default()
        };
        let reject = review_body(&form("reject", ""), 7).expect("reject");
        assert_eq!(
            Value::Object(reject),
            json!({"annotation": 7, "accepted": false, "comment": "wrong label", "reject_action": "remove"})
        );
        let fix = review_body(&form("fix", "[]"), 7).expect("fix");
        assert_eq!(fix["result"], json!([]));
        assert_eq!(fix["accepted"], json!(true));
        assert!(review_body(&form("fix", ""), 7).is_err());
        assert!(review_body(&form("approve", ""), 7).is_err());
    }
}

super::pages::csrf_forms!(ReviewForm, CommentForm);
