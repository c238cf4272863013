//! The web UI's membership pages (issue 15): a project's members (add, project role, remove,
//! pause and unpause) and the workspaces (list, create, members), each driven as a browser
//! would and checked through the API afterwards.

use http::StatusCode;
use serde_json::{Value, json};
use verity_controlplane::authz::Role;

use crate::{
    both_backends,
    common::TestApp,
    ui::{Browser, PASSWORD, attr_after, hidden, location, number, password_user},
};

/// The project's members through the API: (user id, project role, paused).
async fn project_members(app: &TestApp, p: i64) -> Vec<(i64, Value, bool)> {
    app.get(&format!("/api/projects/{p}/members"), &app.owner)
        .await
        .expect(StatusCode::OK)
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["user"]["id"].as_i64().expect("id"),
                m["role"].clone(),
                m["paused"].as_bool().expect("paused"),
            )
        })
        .collect()
}

/// The active pauses of `user` in project `p` through the API.
async fn active_pauses(app: &TestApp, p: i64, user: i64) -> Vec<Value> {
    app.get(
        &format!("/api/projects/{p}/members/{user}/pauses"),
        &app.owner,
    )
    .await
    .expect(StatusCode::OK)
    .as_array()
    .expect("pauses")
    .clone()
}

both_backends! {
    async fn project_members_page_adds_pauses_and_removes_as_the_api_allows(app) {
        let manager = password_user(&app, "ui-pm-manager@example.com", Role::Manager).await;
        let annotator = password_user(&app, "ui-pm-an@example.com", Role::Annotator).await;
        let target_token = app.user("ui-pm-target@example.com", Role::Annotator).await;
        let target = app.user_id(&target_token).await;
        let an_id = app.user_id(&annotator).await;
        let (_, stranger_token) = app.other_org("Elsewhere", "ui-pm-stranger@example.com").await;
        let stranger = app.user_id(&stranger_token).await;
        // The manager created the project (so they manage it); the annotator is a member.
        let p = app.mk_project(&manager, json!({"title": "Members page"})).await;
        let hidden_project = app.mk_project(&app.owner, json!({"title": "Not theirs"})).await;
        app.add_member(p, &annotator, None).await;
        let path = format!("/projects/{p}/members");
        let before = project_members(&app, p).await;

        // An annotator sees the list, without controls, and a forged post changes nothing.
        let mut an = Browser::default();
        an.sign_in(&app, "ui-pm-an@example.com", PASSWORD).await;
        let page = an.get(&app, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert!(page.text.contains("ui-pm-an@example.com") && page.text.contains("id=\"project-members\""), "{}", page.text);
        assert!(page.text.contains(&format!("href=\"/projects/{p}/members\">Members</a>")), "the project navigation links the page");
        for control in ["Add a member", "Remove", "Pause", "Set role", "name=\"action\""] {
            assert!(!page.text.contains(control), "no {control:?} for an annotator");
        }
        let an_csrf = attr_after(&page.text, "name=\"csrf-token\" content=\"");
        let (target_s, an_s) = (target.to_string(), an_id.to_string());
        for fields in [
            vec![("action", "add"), ("user_id", target_s.as_str()), ("role", "")],
            vec![("action", "pause"), ("user_id", an_s.as_str()), ("verbose_reason", "x")],
            vec![("action", "remove"), ("user_id", an_s.as_str())],
        ] {
            let mut fields = fields;
            fields.push(("csrf_token", an_csrf.as_str()));
            let refused = an.post_form(&app, &path, &fields).await;
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{fields:?}: {}", refused.text);
            assert!(number(&refused.text, "project-members-error").contains("project.members"), "{}", refused.text);
        }
        assert_eq!(project_members(&app, p).await, before, "nothing changed");
        assert!(active_pauses(&app, p, an_id).await.is_empty());
        // A project the annotator cannot see: the API's refusal, as a page.
        let api = app.get(&format!("/api/projects/{hidden_project}/members"), &annotator).await.status;
        let refused = an.get(&app, &format!("/projects/{hidden_project}/members")).await;
        assert_eq!(refused.status, api);
        assert!(refused.status == StatusCode::NOT_FOUND || refused.status == StatusCode::FORBIDDEN, "{}", refused.status);
        assert!(!refused.text.contains("Not theirs"));

        // The manager gets the controls, with the organization members to add.
        let mut mg = Browser::default();
        mg.sign_in(&app, "ui-pm-manager@example.com", PASSWORD).await;
        let page = mg.get(&app, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert!(page.text.contains(&format!("<option value=\"{target}\">ui-pm-target@example.com (annotator)</option>")), "{}", page.text);
        assert!(!page.text.contains(&format!("<option value=\"{an_id}\">")), "members already in are not offered");
        assert!(!page.text.contains("ui-pm-stranger@example.com"), "nobody from another organization is offered");
        assert!(page.text.contains("aria-label=\"Pause ui-pm-an@example.com\""));
        let csrf = hidden(&page.text, "csrf_token");

        // Without the session's CSRF token: refused, nothing added.
        let forged = mg.post_form(&app, &path, &[("csrf_token", "guess"), ("action", "add"), ("user_id", &target.to_string())]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        let missing = mg.post_form(&app, &path, &[("action", "add"), ("user_id", &target.to_string())]).await;
        assert_eq!(missing.status, StatusCode::FORBIDDEN);
        assert_eq!(project_members(&app, p).await, before);

        // Bad input: a clear error on the page, nothing changed.
        let bad_id = mg.post_form(&app, &path, &[("csrf_token", &csrf), ("action", "add"), ("user_id", "someone")]).await;
        assert_eq!(bad_id.status, StatusCode::BAD_REQUEST);
        assert!(number(&bad_id.text, "project-members-error").contains("user_id"), "{}", bad_id.text);
        let outsider = mg.post_form(&app, &path, &[("csrf_token", &csrf), ("action", "add"), ("user_id", &stranger.to_string())]).await;
        assert_eq!(outsider.status, StatusCode::NOT_FOUND);
        assert!(number(&outsider.text, "project-members-error").contains(&format!("user {stranger} is not a member of this organization")), "{}", outsider.text);
        let unknown = mg.post_form(&app, &path, &[("csrf_token", &csrf), ("action", "add"), ("user_id", "987654")]).await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        let bad_role = mg.post_form(&app, &path, &[("csrf_token", &csrf), ("action", "add"), ("user_id", &target.to_string()), ("role", "manager")]).await;
        assert_eq!(bad_role.status, StatusCode::BAD_REQUEST);
        assert!(number(&bad_role.text, "project-members-error").contains("not a project role"), "{}", bad_role.text);
        let bad_action = mg.post_form(&app, &path, &[("csrf_token", &csrf), ("action", "promote"), ("user_id", &target.to_string())]).await;
        assert_eq!(bad_action.status, StatusCode::BAD_REQUEST);
        assert_eq!(project_members(&app, p).await, before, "nothing changed");

        // Add with a project role, then change it.
        let added = mg.post_form(&app, &path, &[("csrf_token", &csrf), ("action", "add"), ("user_id", &target.to_string()), ("role", "reviewer")]).await;
        assert_eq!((added.status, location(&added)), (StatusCode::SEE_OTHER, format!("{path}?done=added")), "{}", added.text);
        assert!(project_members(&app, p).await.contains(&(target, json!("reviewer"), false)));
        let page = mg.get(&app, &location(&added)).await;
        assert!(page.text.contains("The member is added to the project."));
        assert!(page.text.contains(&format!("id=\"project-member-{target}\"")));
        let changed = mg.post_form(&app, &path, &[("csrf_token", &csrf), ("action", "role"), ("user_id", &target.to_string()), ("role", "")]).await;
        assert_eq!(location(&changed), format!("{path}?done=role"));
        assert!(project_members(&app, p).await.contains(&(target, Value::Null, false)));

        // Pause with a reason, through the pauses API: the member sees the reason; unpause lifts it.
        let paused = mg.post_form(&app, &path, &[("csrf_token", &csrf), ("action", "pause"), ("user_id", &target.to_string()), ("verbose_reason", "Please reread the guidelines")]).await;
        assert_eq!(location(&paused), format!("{path}?done=paused"), "{}", paused.text);
        let pauses = active_pauses(&app, p, target).await;
        assert_eq!(pauses.len(), 1);
        assert_eq!((pauses[0]["reason"].clone(), pauses[0]["verbose_reason"].clone()), (json!("MANUAL"), json!("Please reread the guidelines")));
        assert!(project_members(&app, p).await.contains(&(target, Value::Null, true)));
        app.get(&format!("/api/projects/{p}/next"), &target_token).await.expect_error(StatusCode::FORBIDDEN, "paused");
        let page = mg.get(&app, &path).await;
        assert!(page.text.contains("Please reread the guidelines") && page.text.contains("aria-label=\"Unpause ui-pm-target@example.com\""), "{}", page.text);
        // The annotator's view says paused, without the controls.
        let an_page = an.get(&app, &path).await;
        assert!(an_page.text.contains("paused") && !an_page.text.contains("Unpause"));
        let long = "x".repeat(2001);
        let too_long = mg.post_form(&app, &path, &[("csrf_token", &csrf), ("action", "pause"), ("user_id", &an_id.to_string()), ("verbose_reason", &long)]).await;
        assert_eq!(too_long.status, StatusCode::BAD_REQUEST);
        assert!(active_pauses(&app, p, an_id).await.is_empty());
        let unpaused = mg.post_form(&app, &path, &[("csrf_token", &csrf), ("action", "unpause"), ("user_id", &target.to_string())]).await;
        assert_eq!(location(&unpaused), format!("{path}?done=unpaused"));
        assert!(active_pauses(&app, p, target).await.is_empty());
        assert!(project_members(&app, p).await.contains(&(target, Value::Null, false)));
        let again = mg.post_form(&app, &path, &[("csrf_token", &csrf), ("action", "unpause"), ("user_id", &target.to_string())]).await;
        assert_eq!(again.status, StatusCode::BAD_REQUEST);
        assert!(number(&again.text, "project-members-error").contains("not paused"));

        // Remove.
        let removed = mg.post_form(&app, &path, &[("csrf_token", &csrf), ("action", "remove"), ("user_id", &target.to_string())]).await;
        assert_eq!(location(&removed), format!("{path}?done=removed"));
        assert!(project_members(&app, p).await.iter().all(|(id, _, _)| *id != target));
        assert_eq!(project_members(&app, p).await, before);
        let actions: Vec<String> = app.audit_actions(app.org).await.into_iter().map(|(a, _, _)| a).collect();
        for expected in ["project.members.add", "project.members.pause", "project.members.unpause", "project.members.remove"] {
            assert!(actions.iter().any(|a| a == expected), "{expected} not audited: {actions:?}");
        }
    }
}

/// The members of workspace `w` through the API (user ids).
async fn workspace_members(app: &TestApp, w: i64) -> Vec<i64> {
    app.get(&format!("/api/workspaces/{w}/memberships"), &app.owner)
        .await
        .expect(StatusCode::OK)
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["user"]["id"].as_i64().expect("id"))
        .collect()
}

/// The workspaces of the organization through the API (ids).
async fn workspace_ids(app: &TestApp) -> Vec<i64> {
    app.get("/api/workspaces", &app.owner)
        .await
        .expect(StatusCode::OK)
        .as_array()
        .expect("workspaces")
        .iter()
        .map(|w| w["id"].as_i64().expect("id"))
        .collect()
}

both_backends! {
    async fn workspace_pages_create_and_change_members_as_the_api_allows(app) {
        let manager = password_user(&app, "ui-ws-manager@example.com", Role::Manager).await;
        let annotator = password_user(&app, "ui-ws-an@example.com", Role::Annotator).await;
        let manager_id = app.user_id(&manager).await;
        let an_id = app.user_id(&annotator).await;
        let (_, stranger_token) = app.other_org("Elsewhere", "ui-ws-stranger@example.com").await;
        let stranger = app.user_id(&stranger_token).await;
        let p = app.mk_project(&manager, json!({"title": "Moved around"})).await;
        let others = app.post("/api/workspaces", &app.owner, json!({"title": "Owners only"})).await.expect(StatusCode::CREATED)["id"].as_i64().expect("id");

        // The manager creates a workspace on the list page (linked from the main navigation).
        let mut mg = Browser::default();
        mg.sign_in(&app, "ui-ws-manager@example.com", PASSWORD).await;
        let list = mg.get(&app, "/workspaces").await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.text);
        assert!(list.text.contains("<a href=\"/workspaces\">Workspaces</a>") && list.text.contains("Create a workspace"));
        assert!(!list.text.contains("Owners only"), "a manager sees only their own workspaces");
        let csrf = hidden(&list.text, "csrf_token");
        let before = workspace_ids(&app).await;
        let untitled = mg.post_form(&app, "/workspaces", &[("csrf_token", &csrf), ("title", "  "), ("description", "kept")]).await;
        assert_eq!(untitled.status, StatusCode::BAD_REQUEST);
        assert!(number(&untitled.text, "workspace-error").contains("a workspace needs a title"), "{}", untitled.text);
        assert!(untitled.text.contains("value=\"kept\""), "the form comes back filled in");
        let forged = mg.post_form(&app, "/workspaces", &[("csrf_token", "guess"), ("title", "Forged")]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        assert_eq!(workspace_ids(&app).await, before, "nothing created");
        let created = mg.post_form(&app, "/workspaces", &[("csrf_token", &csrf), ("title", "Team A"), ("description", "The A team")]).await;
        assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.text);
        let w: i64 = location(&created).strip_prefix("/workspaces/").expect("workspace path").parse().expect("id");
        let api = app.get(&format!("/api/workspaces/{w}"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!((api["title"].clone(), api["description"].clone()), (json!("Team A"), json!("The A team")));
        assert_eq!(workspace_members(&app, w).await, vec![manager_id], "the creator is its first member");
        let path = format!("/workspaces/{w}");
        let page = mg.get(&app, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert!(page.text.contains("Team A") && page.text.contains(&format!("<option value=\"{an_id}\">ui-ws-an@example.com (annotator)</option>")), "{}", page.text);
        assert!(!page.text.contains("ui-ws-stranger@example.com"));

        // Bad input: an error on the page, nothing changed.
        let bad = mg.post_form(&app, &path, &[("csrf_token", &csrf), ("action", "add_member"), ("user_id", "x")]).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        let outsider = mg.post_form(&app, &path, &[("csrf_token", &csrf), ("action", "add_member"), ("user_id", &stranger.to_string())]).await;
        assert_eq!(outsider.status, StatusCode::NOT_FOUND);
        assert!(number(&outsider.text, "workspace-error").contains("is not a member of this organization"), "{}", outsider.text);
        let no_token = mg.post_form(&app, &path, &[("action", "add_member"), ("user_id", &an_id.to_string())]).await;
        assert_eq!(no_token.status, StatusCode::FORBIDDEN);
        assert_eq!(workspace_members(&app, w).await, vec![manager_id]);

        // Add the annotator; move the project in.
        let added = mg.post_form(&app, &path, &[("csrf_token", &csrf), ("action", "add_member"), ("user_id", &an_id.to_string())]).await;
        assert_eq!(location(&added), format!("{path}?done=added"), "{}", added.text);
        assert_eq!(workspace_members(&app, w).await, vec![manager_id, an_id]);
        let moved = mg.post_form(&app, &path, &[("csrf_token", &csrf), ("action", "add_project"), ("project", &p.to_string())]).await;
        assert_eq!(location(&moved), format!("{path}?done=project_added"), "{}", moved.text);
        assert_eq!(app.project(p).await["workspace"], json!(w));
        let page = mg.get(&app, &location(&moved)).await;
        assert!(page.text.contains(&format!("id=\"workspace-project-{p}\"")) && page.text.contains("The project is moved into the workspace."));

        // The annotator sees the workspace and its projects, without controls; forged posts are refused.
        let mut an = Browser::default();
        an.sign_in(&app, "ui-ws-an@example.com", PASSWORD).await;
        let list = an.get(&app, "/workspaces").await;
        assert!(list.text.contains("Team A") && !list.text.contains("Create a workspace") && !list.text.contains("Owners only"), "{}", list.text);
        let page = an.get(&app, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert!(page.text.contains("Moved around") && page.text.contains("ui-ws-manager@example.com"));
        for control in ["name=\"action\"", "Remove", "Take out", "Add to the workspace"] {
            assert!(!page.text.contains(control), "no {control:?} for an annotator");
        }
        let an_csrf = attr_after(&page.text, "name=\"csrf-token\" content=\"");
        let refused = an.post_form(&app, &path, &[("csrf_token", &an_csrf), ("action", "remove_member"), ("user_id", &manager_id.to_string())]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
        assert!(number(&refused.text, "workspace-error").contains("workspace.manage"), "{}", refused.text);
        let refused = an.post_form(&app, "/workspaces", &[("csrf_token", &an_csrf), ("title", "Mine")]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert_eq!(workspace_members(&app, w).await, vec![manager_id, an_id]);
        assert_eq!(workspace_ids(&app).await.len(), before.len() + 1);
        // A workspace they are not in: the API's refusal.
        let api_status = app.get(&format!("/api/workspaces/{others}"), &annotator).await.status;
        let hidden_ws = an.get(&app, &format!("/workspaces/{others}")).await;
        assert_eq!(hidden_ws.status, api_status);
        assert!(!hidden_ws.text.contains("Owners only"));
        assert_eq!(an.get(&app, "/workspaces/nope").await.status, StatusCode::NOT_FOUND);

        // Settings: the annotator cannot change or delete it; the manager renames and archives
        // it, and cannot delete it while a project is in it.
        let refused = an.post_form(&app, &path, &[("csrf_token", &an_csrf), ("action", "update"), ("title", "Taken")]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
        let refused = an.post_form(&app, &path, &[("csrf_token", &an_csrf), ("action", "delete")]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
        assert!(!an.get(&app, &path).await.text.contains("workspace-delete"), "no settings for an annotator");
        let page = mg.get(&app, &path).await;
        assert!(page.text.contains("id=\"workspace-title\" name=\"title\" value=\"Team A\"") && page.text.contains("id=\"workspace-delete\""), "{}", page.text);
        let blank = mg.post_form(&app, &path, &[("csrf_token", &csrf), ("action", "update"), ("title", " "), ("archived", "on")]).await;
        assert_eq!(blank.status, StatusCode::BAD_REQUEST);
        assert!(number(&blank.text, "workspace-error").contains("a workspace needs a title"), "{}", blank.text);
        let api = app.get(&format!("/api/workspaces/{w}"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!((api["title"].clone(), api["is_archived"].clone()), (json!("Team A"), json!(false)), "nothing changed");
        let saved = mg.post_form(&app, &path, &[("csrf_token", &csrf), ("action", "update"), ("title", "Team A2"), ("description", "Renamed"), ("archived", "on")]).await;
        assert_eq!(location(&saved), format!("{path}?done=updated"), "{}", saved.text);
        let api = app.get(&format!("/api/workspaces/{w}"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!((api["title"].clone(), api["description"].clone(), api["is_archived"].clone()), (json!("Team A2"), json!("Renamed"), json!(true)));
        let page = mg.get(&app, &location(&saved)).await;
        assert!(page.text.contains("The workspace is saved.") && page.text.contains("(archived)") && page.text.contains(" checked>"), "{}", page.text);
        // Unticked, the box un-archives it.
        let saved = mg.post_form(&app, &path, &[("csrf_token", &csrf), ("action", "update"), ("title", "Team A2"), ("description", "Renamed")]).await;
        assert_eq!(location(&saved), format!("{path}?done=updated"));
        assert_eq!(app.get(&format!("/api/workspaces/{w}"), &app.owner).await.expect(StatusCode::OK)["is_archived"], json!(false));
        let full = mg.post_form(&app, &path, &[("csrf_token", &csrf), ("action", "delete")]).await;
        assert_eq!(full.status, StatusCode::CONFLICT, "{}", full.text);
        assert!(number(&full.text, "workspace-error").contains("still has 1 project"), "{}", full.text);
        app.get(&format!("/api/workspaces/{w}"), &app.owner).await.expect(StatusCode::OK);

        // Take the project out, remove the annotator.
        let out = mg.post_form(&app, &path, &[("csrf_token", &csrf), ("action", "remove_project"), ("project", &p.to_string())]).await;
        assert_eq!(location(&out), format!("{path}?done=project_removed"));
        assert_eq!(app.project(p).await["workspace"], Value::Null);
        let removed = mg.post_form(&app, &path, &[("csrf_token", &csrf), ("action", "remove_member"), ("user_id", &an_id.to_string())]).await;
        assert_eq!(location(&removed), format!("{path}?done=removed"));
        assert_eq!(workspace_members(&app, w).await, vec![manager_id]);
        let actions: Vec<String> = app.audit_actions(app.org).await.into_iter().map(|(a, _, _)| a).collect();
        for expected in ["workspace.create", "workspace.update", "workspace.members.add", "workspace.members.remove", "workspace.projects.add", "workspace.projects.remove"] {
            assert!(actions.iter().any(|a| a == expected), "{expected} not audited: {actions:?}");
        }
        // Empty now: deleted, back to the list.
        let deleted = mg.post_form(&app, &path, &[("csrf_token", &csrf), ("action", "delete")]).await;
        assert_eq!(location(&deleted), "/workspaces?done=deleted", "{}", deleted.text);
        app.get(&format!("/api/workspaces/{w}"), &app.owner).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        let list = mg.get(&app, &location(&deleted)).await;
        assert!(list.text.contains("The workspace is deleted.") && !list.text.contains("Team A2"), "{}", list.text);
    }
}
