//! Tenancy: organizations that never see each other, invitations, deactivation, tokens,
//! escalation attempts, pausing, workspaces, the audit log and the instance admin API — on
//! both database backends.

use http::StatusCode;
use serde_json::{Value, json};
use verity_controlplane::{
    authz::Role,
    storage::{audit, now_micros},
};

use crate::{
    both_backends,
    common::{Backend, TEXT_CONFIG, TestApp, choice},
};

fn id(v: &Value) -> i64 {
    v["id"].as_i64().expect("id")
}

both_backends! {
    async fn tenants_with_the_same_names_stay_apart(app) {
        let (org_b, owner_b) = app.other_org("Twin", "owner-b@example.com").await;
        // The same email in both organizations: two unrelated accounts, no conflict.
        let alice_a = app.user("alice@same.test", Role::Annotator).await;
        let alice_b = app.user_in(org_b, "alice@same.test", Role::Annotator).await;
        assert_ne!(app.user_id(&alice_a).await, app.user_id(&alice_b).await);
        let mut projects = Vec::new();
        for token in [&app.owner, &owner_b] {
            let p = app.mk_project(token, json!({"title": "Sentiment"})).await;
            let ids = app.mk_tasks(token, p, 3).await;
            app.post(&format!("/api/tasks/{}/annotations", ids[0]), token, json!({"result": choice("pos")})).await.expect(StatusCode::CREATED);
            app.post("/api/predictions", token, json!({"task": ids[1], "result": choice("neg")})).await.expect(StatusCode::CREATED);
            app.post("/api/workspaces", token, json!({"title": "Team"})).await.expect(StatusCode::CREATED);
            projects.push((p, ids));
        }
        let (pa, tasks_a) = &projects[0];
        let (pb, tasks_b) = &projects[1];
        let ids_of = |v: &Value, key: &str| -> Vec<i64> {
            v[key].as_array().map(|a| a.iter().filter_map(|x| x["id"].as_i64()).collect()).unwrap_or_default()
        };
        // Lists, searches and counts.
        let list = app.get("/api/projects?title=Sentiment", &app.owner).await.expect(StatusCode::OK);
        assert_eq!(list["count"], json!(1));
        assert_eq!(ids_of(&list, "results"), vec![*pa]);
        let tasks = app.get(&format!("/api/projects/{pa}/tasks?page_size=100"), &app.owner).await.expect(StatusCode::OK);
        assert!(ids_of(&tasks, "tasks").iter().all(|t| tasks_a.contains(t)));
        let users = app.get("/api/users", &app.owner).await.expect(StatusCode::OK);
        let user_ids: Vec<i64> = users.as_array().expect("users").iter().filter_map(|u| u["id"].as_i64()).collect();
        assert!(!user_ids.contains(&app.user_id(&alice_b).await));
        assert!(!user_ids.contains(&app.user_id(&owner_b).await));
        let members = app.get(&format!("/api/organizations/{}/memberships?search=alice", app.org), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(members["count"], json!(1));
        let workspaces = app.get("/api/workspaces", &app.owner).await.expect(StatusCode::OK);
        assert_eq!(workspaces.as_array().expect("list").len(), 1);
        let orgs = app.get("/api/organizations", &app.owner).await.expect(StatusCode::OK);
        assert_eq!(orgs.as_array().expect("list").len(), 1);
        let project = app.project(*pa).await;
        assert_eq!((project["task_number"].clone(), project["total_annotations_number"].clone()), (json!(3), json!(1)));
        // Exports carry only the organization's own tasks.
        let export = app.get(&format!("/api/projects/{pa}/export?download_all_tasks=true"), &app.owner).await.expect(StatusCode::OK);
        let exported: Vec<i64> = export.as_array().expect("tasks").iter().filter_map(|t| t["id"].as_i64()).collect();
        assert_eq!(&exported, tasks_a);
        // The audit log shows only the organization's own entries.
        let log = app.get("/api/audit-log?page_size=1000", &app.owner).await.expect(StatusCode::OK);
        assert!(log["results"].as_array().expect("entries").iter().all(|e| e["organization_id"] == json!(app.org)));
        // Errors about the other organization's objects are the errors of objects that do
        // not exist, word for word.
        for (theirs, none) in [
            (format!("/api/projects/{pb}"), "/api/projects/999999".to_string()),
            (format!("/api/tasks/{}", tasks_b[0]), "/api/tasks/999999".to_string()),
            (format!("/api/projects/{pb}/export"), "/api/projects/999999/export".to_string()),
            (format!("/api/organizations/{org_b}"), "/api/organizations/999999".to_string()),
        ] {
            let a = app.get(&theirs, &app.owner).await.expect_error(StatusCode::NOT_FOUND, "not_found");
            let b = app.get(&none, &app.owner).await.expect_error(StatusCode::NOT_FOUND, "not_found");
            assert_eq!(a["detail"], b["detail"], "{theirs}");
        }
        let a = app.post("/api/predictions", &app.owner, json!({"task": tasks_b[0], "result": choice("pos")})).await.expect(StatusCode::BAD_REQUEST);
        let b = app.post("/api/predictions", &app.owner, json!({"task": 999999, "result": choice("pos")})).await.expect(StatusCode::BAD_REQUEST);
        assert_eq!(a["detail"].as_str().map(|d| d.replace(&tasks_b[0].to_string(), "N")), b["detail"].as_str().map(|d| d.replace("999999", "N")));
        // Nothing of B changed.
        let b_project = app.get(&format!("/api/projects/{pb}"), &owner_b).await.expect(StatusCode::OK);
        assert_eq!(b_project["task_number"], json!(3));
    }

    async fn invitations_are_single_use_expiring_and_revocable(app) {
        let ws = id(&app.post("/api/workspaces", &app.owner, json!({"title": "Reviewers"})).await.expect(StatusCode::CREATED));
        let inv = app.post("/api/invitations", &app.owner, json!({"role": "reviewer", "workspace": ws, "expires_in_hours": 24})).await.expect(StatusCode::CREATED);
        let token = inv["token"].as_str().expect("token").to_string();
        assert!(inv["invite_url"].as_str().expect("url").contains(&token));
        // Listing never shows the token again.
        let listed = app.get("/api/invitations", &app.owner).await.expect(StatusCode::OK);
        assert!(!listed.to_string().contains(&token));
        assert_eq!(listed[0]["status"], json!("pending"));
        let signup = json!({"token": token, "email": "new@example.com", "password": "long enough password"});
        let joined = app.post("/api/invitations/accept", "", signup.clone()).await.expect(StatusCode::CREATED);
        assert_eq!(joined["user"]["role"], json!("RE"));
        let new_token = joined["token"].as_str().expect("token").to_string();
        let me = app.get("/api/current-user/whoami", &new_token).await.expect(StatusCode::OK);
        assert_eq!(me["active_organization"], json!(app.org));
        let members = app.get(&format!("/api/workspaces/{ws}/memberships"), &app.owner).await.expect(StatusCode::OK);
        assert!(members.to_string().contains("new@example.com"));
        // Used once: a second sign-up is refused and creates nobody.
        let again = json!({"token": signup["token"], "email": "second@example.com", "password": "long enough password"});
        let e = app.post("/api/invitations/accept", "", again).await.expect_error(StatusCode::GONE, "invalid_invitation");
        assert!(e["detail"].as_str().expect("d").contains("already used"));
        assert!(!app.get("/api/users", &app.owner).await.text.contains("second@example.com"));
        // Revoked.
        let inv2 = app.post("/api/invitations", &app.owner, json!({"role": "annotator"})).await.expect(StatusCode::CREATED);
        app.delete(&format!("/api/invitations/{}", id(&inv2)), &app.owner).await.expect(StatusCode::NO_CONTENT);
        let e = app.post("/api/invitations/accept", "", json!({"token": inv2["token"], "email": "r@example.com", "password": "long enough password"})).await.expect_error(StatusCode::GONE, "invalid_invitation");
        assert!(e["detail"].as_str().expect("d").contains("revoked"));
        // Expired (time passes in the database).
        let inv3 = app.post("/api/invitations", &app.owner, json!({"role": "annotator", "expires_in_hours": 1})).await.expect(StatusCode::CREATED);
        app.sql(&format!("update invitation set expires_at = {} where id = {}", now_micros() - 1, id(&inv3))).await.expect("backdate");
        let e = app.post("/api/invitations/accept", "", json!({"token": inv3["token"], "email": "x@example.com", "password": "long enough password"})).await.expect_error(StatusCode::GONE, "invalid_invitation");
        assert!(e["detail"].as_str().expect("d").contains("expired"));
        let e = app.post("/api/invitations/accept", "", json!({"token": "inv_nonsense", "email": "x@example.com", "password": "long enough password"})).await.expect_error(StatusCode::GONE, "invalid_invitation");
        assert!(e["detail"].as_str().expect("d").contains("not valid"));
        // A bad sign-up (short password) does not use the link up.
        let inv4 = app.post("/api/invitations", &app.owner, json!({"role": "annotator"})).await.expect(StatusCode::CREATED);
        app.post("/api/invitations/accept", "", json!({"token": inv4["token"], "email": "y@example.com", "password": "short"})).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        app.post("/api/invitations/accept", "", json!({"token": inv4["token"], "email": "y@example.com", "password": "long enough password"})).await.expect(StatusCode::CREATED);
        // Nobody invites above their own role, and an admin cannot invite an owner.
        let admin = app.user("admin@example.com", Role::Admin).await;
        app.post("/api/invitations", &admin, json!({"role": "owner"})).await.expect_error(StatusCode::FORBIDDEN, "privilege_escalation");
        let manager = app.user("manager@example.com", Role::Manager).await;
        app.post("/api/invitations", &manager, json!({"role": "annotator"})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        let actions: Vec<String> = app.audit_actions(app.org).await.into_iter().map(|a| a.0).collect();
        for needed in ["invitation.create", "invitation.accept", "invitation.revoke", "user.create"] {
            assert!(actions.iter().any(|a| a == needed), "no {needed} in {actions:?}");
        }
    }

    async fn deactivation_removes_access_and_keeps_authorship(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let ids = app.mk_tasks(&app.owner, p, 2).await;
        let ann = app.user("ann@example.com", Role::Annotator).await;
        let ann_id = app.user_id(&ann).await;
        app.add_member(p, &ann, None).await;
        let a = app.post(&format!("/api/tasks/{}/annotations", ids[0]), &ann, json!({"result": choice("pos")})).await.expect(StatusCode::CREATED);
        let pat = app.post("/api/token", &ann, json!({})).await.expect(StatusCode::CREATED)["token"].as_str().expect("pat").to_string();
        let access = app.post("/api/token/refresh", "", json!({"refresh": pat})).await.expect(StatusCode::OK)["access"].as_str().expect("access").to_string();
        let bearer = |t: &str| http::Request::get("/api/current-user/whoami").header("authorization", format!("Bearer {t}")).body(axum::body::Body::empty()).expect("req");
        app.send(bearer(&access)).await.expect(StatusCode::OK);
        app.delete(&format!("/api/users/{ann_id}"), &app.owner).await.expect(StatusCode::NO_CONTENT);
        // At once: the legacy token, the access token and the PAT exchange all stop working.
        app.get("/api/current-user/whoami", &ann).await.expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
        app.send(bearer(&access)).await.expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
        app.post("/api/token/refresh", "", json!({"refresh": pat})).await.expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
        // Their work keeps its author.
        let kept = app.get(&format!("/api/annotations/{}", id(&a)), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(kept["completed_by"], json!(ann_id));
        let member = app.get(&format!("/api/organizations/{}/memberships/{ann_id}", app.org), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(member["is_active"], json!(false));
        assert_eq!(member["annotations_count"], json!(1));
        // Reactivation restores access.
        app.patch(&format!("/api/organizations/{}/memberships", app.org), &app.owner, json!({"user_id": ann_id, "is_active": true})).await.expect(StatusCode::OK);
        app.get("/api/current-user/whoami", &ann).await.expect(StatusCode::OK);
        app.send(bearer(&access)).await.expect(StatusCode::OK);
        let actions: Vec<String> = app.audit_actions(app.org).await.into_iter().map(|a| a.0).collect();
        assert!(actions.contains(&"member.deactivate".to_string()) && actions.contains(&"member.reactivate".to_string()), "{actions:?}");
    }

    async fn member_activity_is_tracked_per_organization(app) {
        let ann = app.user("busy@example.com", Role::Annotator).await;
        app.sql("update app_user set last_activity = 0 where email = 'busy@example.com'").await.expect("backdate");
        let p = app.mk_project(&app.owner, json!({})).await;
        let ids = app.mk_tasks(&app.owner, p, 2).await;
        app.add_member(p, &ann, None).await;
        for t in &ids {
            app.post(&format!("/api/tasks/{t}/annotations"), &ann, json!({"result": choice("pos")})).await.expect(StatusCode::CREATED);
        }
        let id = app.user_id(&ann).await;
        let member = app.get(&format!("/api/organizations/{}/memberships/{id}", app.org), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(member["annotations_count"], json!(2));
        assert_eq!(member["projects_count"], json!(1));
        assert!(!member["last_activity"].as_str().expect("time").starts_with("1970"), "{member}");
        // Another organization sees none of it.
        let (org_b, owner_b) = app.other_org("Elsewhere", "b@example.com").await;
        app.get(&format!("/api/organizations/{org_b}/memberships/{id}"), &owner_b).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    }

    async fn personal_access_tokens_expire_and_revoke(app) {
        let pat = app.post("/api/token", &app.owner, json!({})).await.expect(StatusCode::CREATED)["token"].as_str().expect("pat").to_string();
        let listed = app.get("/api/token", &app.owner).await.expect(StatusCode::OK);
        assert_eq!(listed.as_array().expect("list").len(), 1);
        let access = app.post("/api/token/refresh", "", json!({"refresh": pat})).await.expect(StatusCode::OK)["access"].as_str().expect("a").to_string();
        let whoami = |t: &str| http::Request::get("/api/current-user/whoami").header("authorization", format!("Bearer {t}")).body(axum::body::Body::empty()).expect("req");
        app.send(whoami(&access)).await.expect(StatusCode::OK);
        // Expiry recorded with the token ends its access tokens too.
        app.sql(&format!("update api_token set expires_at = {} where kind = 'pat'", now_micros() - 1)).await.expect("expire");
        app.send(whoami(&access)).await.expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
        assert_eq!(app.get("/api/token", &app.owner).await.expect(StatusCode::OK), json!([]));
        // Revocation works at once.
        let pat2 = app.post("/api/token", &app.owner, json!({})).await.expect(StatusCode::CREATED)["token"].as_str().expect("pat").to_string();
        let access2 = app.post("/api/token/refresh", "", json!({"refresh": pat2})).await.expect(StatusCode::OK)["access"].as_str().expect("a").to_string();
        app.send(whoami(&access2)).await.expect(StatusCode::OK);
        app.post("/api/token/blacklist", &app.owner, json!({"refresh": pat2})).await.expect(StatusCode::NO_CONTENT);
        app.send(whoami(&access2)).await.expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
        app.post("/api/token/refresh", "", json!({"refresh": pat2})).await.expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    }

    async fn privilege_escalations_are_refused_and_audited(app) {
        let owner_id = app.user_id(&app.owner).await;
        let admin = app.user("admin@example.com", Role::Admin).await;
        let ann = app.user("ann@example.com", Role::Annotator).await;
        let ann_id = app.user_id(&ann).await;
        let org = app.org;
        let memberships = format!("/api/organizations/{org}/memberships");
        // An admin granting owner, or touching an owner.
        let e = app.patch(&memberships, &admin, json!({"user_id": ann_id, "role": "owner"})).await.expect_error(StatusCode::FORBIDDEN, "privilege_escalation");
        assert!(e["detail"].as_str().expect("d").contains("only an owner"));
        app.patch(&memberships, &admin, json!({"user_id": owner_id, "role": "annotator"})).await.expect_error(StatusCode::FORBIDDEN, "privilege_escalation");
        app.delete(&format!("{memberships}/{owner_id}"), &admin).await.expect_error(StatusCode::FORBIDDEN, "privilege_escalation");
        // Removing the last owner, even by that owner.
        let e = app.patch(&memberships, &app.owner, json!({"user_id": owner_id, "role": "admin"})).await.expect_error(StatusCode::FORBIDDEN, "privilege_escalation");
        assert!(e["detail"].as_str().expect("d").contains("without an active owner"));
        // Bulk changes are all or nothing: one refused member refuses the request.
        let rev = app.user("rev@example.com", Role::Reviewer).await;
        let rev_id = app.user_id(&rev).await;
        app.post(&format!("{memberships}/bulk"), &admin, json!({"user_ids": [rev_id, owner_id], "role": "manager"})).await.expect_error(StatusCode::FORBIDDEN, "privilege_escalation");
        assert_eq!(app.get(&format!("{memberships}/{rev_id}"), &app.owner).await.expect(StatusCode::OK)["role"], json!("reviewer"));
        app.post(&format!("{memberships}/bulk"), &admin, json!({"user_ids": [rev_id, ann_id], "role": "manager"})).await.expect(StatusCode::OK);
        assert_eq!(app.get(&format!("{memberships}/{ann_id}"), &app.owner).await.expect(StatusCode::OK)["role"], json!("manager"));
        // A second owner makes demoting the first possible.
        app.patch(&memberships, &app.owner, json!({"user_id": rev_id, "role": "owner"})).await.expect(StatusCode::OK);
        app.patch(&memberships, &rev, json!({"user_id": owner_id, "role": "admin"})).await.expect(StatusCode::OK);
        // A manager touching a workspace it does not manage.
        let ws = id(&app.post("/api/workspaces", &rev, json!({"title": "Not theirs"})).await.expect(StatusCode::CREATED));
        app.patch(&format!("/api/workspaces/{ws}"), &ann, json!({"title": "Mine now"})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        app.post(&format!("/api/workspaces/{ws}/memberships"), &ann, json!({"user": ann_id})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        // Every refusal is on the record.
        let denied: Vec<(String, String, String)> = app.audit_actions(org).await.into_iter().filter(|a| a.1 == "denied").collect();
        assert!(denied.len() >= 7, "{denied:?}");
        assert!(denied.iter().any(|a| a.0 == "access.denied" && a.2 == ws.to_string()), "{denied:?}");
        // Retrying the same forbidden change in a loop is one entry, not one per attempt.
        let count = |entries: Vec<(String, String, String)>| entries.iter().filter(|a| a.0 == "access.denied" && a.2 == ws.to_string()).count();
        let before = count(app.audit_actions(org).await);
        for _ in 0..5 {
            app.patch(&format!("/api/workspaces/{ws}"), &ann, json!({"title": "Mine now"})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        }
        assert_eq!(count(app.audit_actions(org).await), before, "repeats within 10 s are not recorded again");
        // Another request on the same target is its own entry, and names the request.
        app.delete(&format!("/api/workspaces/{ws}"), &ann).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        assert_eq!(count(app.audit_actions(org).await), before + 1);
        let page = app.get("/api/audit-log?action=access.denied", &app.owner).await.expect(StatusCode::OK);
        let requests: Vec<String> = page["results"].as_array().expect("results").iter().map(|e| e["summary"]["request"].as_str().unwrap_or_default().to_string()).collect();
        assert!(requests.iter().any(|r| r == "DELETE /api/workspaces/{id}"), "{requests:?}");
        // The same refusal by another member is recorded.
        let other = app.user("other-ann@example.com", Role::Annotator).await;
        app.patch(&format!("/api/workspaces/{ws}"), &other, json!({"title": "Mine now"})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        assert_eq!(count(app.audit_actions(org).await), before + 2);
    }

    async fn paused_annotators_get_no_work(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        let ids = app.mk_tasks(&app.owner, p, 3).await;
        let ann = app.user("ann@example.com", Role::Annotator).await;
        let ann_id = app.user_id(&ann).await;
        app.add_member(p, &ann, None).await;
        app.get(&format!("/api/projects/{p}/next"), &ann).await.expect(StatusCode::OK);
        let pause = app.post(&format!("/api/projects/{p}/members/{ann_id}/pauses"), &app.owner, json!({"reason": "MANUAL", "verbose_reason": "Please re-read the guidelines"})).await.expect(StatusCode::CREATED);
        let e = app.get(&format!("/api/projects/{p}/next"), &ann).await.expect_error(StatusCode::FORBIDDEN, "paused");
        assert!(e["detail"].as_str().expect("d").contains("Please re-read the guidelines"));
        app.post(&format!("/api/tasks/{}/annotations", ids[0]), &ann, json!({"result": choice("pos")})).await.expect_error(StatusCode::FORBIDDEN, "paused");
        assert_eq!(app.project(p).await["total_annotations_number"], json!(0));
        // The pause released the reservation: someone else can take that task now.
        let other = app.user("other@example.com", Role::Annotator).await;
        app.add_member(p, &other, None).await;
        assert_eq!(app.get(&format!("/api/projects/{p}/next"), &other).await.expect(StatusCode::OK)["id"], json!(ids[0]));
        // Annotators cannot pause or unpause anyone.
        app.post(&format!("/api/projects/{p}/members/{ann_id}/pauses"), &other, json!({"reason": "MANUAL"})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        let listed = app.get(&format!("/api/projects/{p}/members/{ann_id}/pauses"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(listed.as_array().expect("pauses").len(), 1);
        let members = app.get(&format!("/api/projects/{p}/members"), &app.owner).await.expect(StatusCode::OK);
        assert!(members.as_array().expect("m").iter().any(|m| m["user"]["id"] == json!(ann_id) && m["paused"] == json!(true)));
        app.delete(&format!("/api/projects/{p}/members/{ann_id}/pauses/{}", id(&pause)), &app.owner).await.expect(StatusCode::NO_CONTENT);
        app.get(&format!("/api/projects/{p}/next"), &ann).await.expect(StatusCode::OK);
        app.post(&format!("/api/tasks/{}/annotations", ids[1]), &ann, json!({"result": choice("pos")})).await.expect(StatusCode::CREATED);
        // Only manual pauses are made by hand.
        app.post(&format!("/api/projects/{p}/members/{ann_id}/pauses"), &app.owner, json!({"reason": "ANNOTATION_LIMIT"})).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
    }

    async fn project_roles_apply_per_project(app) {
        let p1 = app.mk_project(&app.owner, json!({"title": "One"})).await;
        let p2 = app.mk_project(&app.owner, json!({"title": "Two"})).await;
        let t1 = app.mk_tasks(&app.owner, p1, 1).await;
        let t2 = app.mk_tasks(&app.owner, p2, 1).await;
        let ann = app.user("ann@example.com", Role::Annotator).await;
        let ann_id = app.user_id(&ann).await;
        // A reviewer in project one, an annotator in project two.
        app.post("/api/projects/roles", &app.owner, json!({"project": p1, "user": ann_id, "role": "reviewer"})).await.expect(StatusCode::CREATED);
        app.add_member(p2, &ann, None).await;
        let owner_ann1 = app.post(&format!("/api/tasks/{}/annotations", t1[0]), &app.owner, json!({"result": choice("pos")})).await.expect(StatusCode::CREATED);
        let owner_ann2 = app.post(&format!("/api/tasks/{}/annotations", t2[0]), &app.owner, json!({"result": choice("pos")})).await.expect(StatusCode::CREATED);
        app.patch(&format!("/api/annotations/{}", id(&owner_ann1)), &ann, json!({"result": choice("neg")})).await.expect(StatusCode::OK);
        app.patch(&format!("/api/annotations/{}", id(&owner_ann2)), &ann, json!({"result": choice("neg")})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        // Project roles are annotator or reviewer only.
        app.post("/api/projects/roles", &app.owner, json!({"project": p1, "user": ann_id, "role": "manager"})).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        // Removing the membership removes the access.
        app.delete(&format!("/api/projects/{p2}/members?user={ann_id}"), &app.owner).await.expect(StatusCode::NO_CONTENT);
        app.get(&format!("/api/projects/{p2}"), &ann).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        // Bulk membership changes are all or nothing: one unknown user changes nobody.
        let rev = app.user("rev@example.com", Role::Reviewer).await;
        let rev_id = app.user_id(&rev).await;
        app.post(&format!("/api/projects/{p2}/members/bulk"), &app.owner, json!({"users": [rev_id, 987654]})).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        assert_eq!(app.get(&format!("/api/projects/{p2}/members"), &app.owner).await.expect(StatusCode::OK), json!([]));
        app.post(&format!("/api/projects/{p2}/members/bulk"), &app.owner, json!({"users": [rev_id, ann_id]})).await.expect(StatusCode::OK);
        assert_eq!(app.get(&format!("/api/projects/{p2}/members"), &app.owner).await.expect(StatusCode::OK).as_array().expect("m").len(), 2);
    }

    async fn workspaces_delegate_management(app) {
        let m1 = app.user("m1@example.com", Role::Manager).await;
        let m2 = app.user("m2@example.com", Role::Manager).await;
        let ann = app.user("ann@example.com", Role::Annotator).await;
        let ann_id = app.user_id(&ann).await;
        let w1 = id(&app.post("/api/workspaces", &m1, json!({"title": "Team one"})).await.expect(StatusCode::CREATED));
        let w2 = id(&app.post("/api/workspaces", &m2, json!({"title": "Team two"})).await.expect(StatusCode::CREATED));
        // Each manager sees and manages their own workspace only.
        assert_eq!(app.get("/api/workspaces", &m1).await.expect(StatusCode::OK).as_array().expect("w").len(), 1);
        app.get(&format!("/api/workspaces/{w2}"), &m1).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        let p = app.mk_project(&m1, json!({"workspace": w1})).await;
        app.post("/api/projects", &m1, json!({"title": "x", "workspace": w2})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        app.get(&format!("/api/projects/{p}"), &m2).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        // Workspace members reach its projects.
        app.get(&format!("/api/projects/{p}"), &ann).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        app.post(&format!("/api/workspaces/{w1}/memberships"), &m1, json!({"user": ann_id})).await.expect(StatusCode::CREATED);
        app.get(&format!("/api/projects/{p}"), &ann).await.expect(StatusCode::OK);
        assert_eq!(app.get(&format!("/api/workspaces/{w1}/projects"), &ann).await.expect(StatusCode::OK).as_array().expect("p").len(), 1);
        // Admins manage every workspace; a workspace with projects is not deleted.
        let admin = app.user("admin@example.com", Role::Admin).await;
        app.patch(&format!("/api/workspaces/{w1}"), &admin, json!({"title": "Renamed"})).await.expect(StatusCode::OK);
        app.delete(&format!("/api/workspaces/{w1}"), &admin).await.expect_error(StatusCode::CONFLICT, "conflict");
        app.delete(&format!("/api/workspaces/{w2}"), &admin).await.expect(StatusCode::NO_CONTENT);
        // The project list filters by workspace.
        let listed = app.get(&format!("/api/projects?workspaces={w1}"), &m1).await.expect(StatusCode::OK);
        assert_eq!(listed["count"], json!(1));
    }

    async fn audit_log_is_append_only_and_tamper_evident(app) {
        let p = app.mk_project(&app.owner, json!({})).await;
        app.mk_tasks(&app.owner, p, 2).await;
        app.patch(&format!("/api/projects/{p}"), &app.owner, json!({"title": "Renamed"})).await.expect(StatusCode::OK);
        let reports = audit::verify(&app.db, None).await.expect("verify");
        assert!(reports.iter().all(|r| r.broken.is_none()), "{reports:?}");
        assert!(reports.iter().any(|r| r.chain_id == app.org && r.entries >= 3));
        // The database refuses to change or remove entries.
        let e = app.sql("update audit_log set summary = '{}' where action = 'project.update'").await.expect_err("update refused");
        assert!(e.contains("append-only"), "{e}");
        let e = app.sql("delete from audit_log").await.expect_err("delete refused");
        assert!(e.contains("append-only"), "{e}");
        // Someone who gets past the database's refusal is still caught by the hash chain.
        match app.db {
            verity_controlplane::storage::Db::Postgres(_) => app.sql("alter table audit_log disable trigger audit_log_append_only").await.expect("disable"),
            verity_controlplane::storage::Db::Sqlite { .. } => app.sql("drop trigger audit_log_no_update").await.expect("drop"),
        };
        let seq: Vec<(String, String, String)> = app.audit_actions(app.org).await;
        let position = seq.iter().position(|a| a.0 == "project.update").expect("entry") as i64 + 1;
        app.sql("update audit_log set summary = '{\"fields\":[]}' where action = 'project.update'").await.expect("tamper");
        let reports = audit::verify(&app.db, Some(app.org)).await.expect("verify");
        let broken = reports[0].broken.clone().expect("tampering detected");
        assert_eq!(broken.seq, position);
        assert!(broken.reason.contains("hash"), "{}", broken.reason);
    }

    async fn audit_log_filters_exports_and_retention(app) {
        let admin = app.user("admin@example.com", Role::Admin).await;
        let admin_id = app.user_id(&admin).await;
        let p = app.mk_project(&admin, json!({})).await;
        for i in 0..5 {
            app.patch(&format!("/api/projects/{p}"), &admin, json!({"title": format!("Title {i}")})).await.expect(StatusCode::OK);
        }
        let updates = app.get(&format!("/api/audit-log?action=project.update&actor={admin_id}"), &app.owner).await.expect(StatusCode::OK);
        let entries = updates["results"].as_array().expect("entries");
        assert_eq!(entries.len(), 5);
        assert!(entries.iter().all(|e| e["actor_email"] == json!("admin@example.com") && e["target_id"] == json!(p.to_string())));
        let first = &entries[0];
        for key in ["request_id", "client_ip", "user_agent", "created_at", "hash", "prev_hash", "summary"] {
            assert!(first.get(key).is_some(), "entry without {key}: {first}");
        }
        // Pages, newest first.
        let page1 = app.get("/api/audit-log?action=project.&page_size=2", &app.owner).await.expect(StatusCode::OK);
        let before = page1["next_before"].as_i64().expect("more");
        let page2 = app.get(&format!("/api/audit-log?action=project.&page_size=2&before={before}"), &app.owner).await.expect(StatusCode::OK);
        assert!(id(&page2["results"][0]) < id(&page1["results"][1]));
        let later = app.get("/api/audit-log?since=2999-01-01", &app.owner).await.expect(StatusCode::OK);
        assert_eq!(later["results"], json!([]));
        app.get("/api/audit-log?since=yesterday", &app.owner).await.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        // Annotators and managers do not read it.
        let manager = app.user("m@example.com", Role::Manager).await;
        app.get("/api/audit-log", &manager).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        // Export: JSON lines, oldest first, every entry once.
        let reply = app.get("/api/audit-log/export", &app.owner).await;
        assert_eq!(reply.status, StatusCode::OK);
        let lines: Vec<Value> = reply.text.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
        let total = app.audit_actions(app.org).await.len();
        assert_eq!(lines.len(), total);
        assert!(lines.windows(2).all(|w| id(&w[0]) < id(&w[1])));
        // Retention is a billing-level setting: owners only.
        app.patch(&format!("/api/organizations/{}", app.org), &admin, json!({"audit_retention_days": 1})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        app.patch(&format!("/api/organizations/{}", app.org), &app.owner, json!({"audit_retention_days": 1})).await.expect(StatusCode::OK);
        // Two days later the purge removes everything older than a day, and the chain still
        // verifies from its anchor.
        let removed = audit::purge(&app.db, now_micros() + 2 * 86_400_000_000).await.expect("purge");
        assert!(removed as usize >= total);
        let left = app.audit_actions(app.org).await;
        assert_eq!(left.iter().map(|a| a.0.as_str()).collect::<Vec<_>>(), vec!["audit.purge"]);
        let reports = audit::verify(&app.db, Some(app.org)).await.expect("verify");
        assert!(reports[0].broken.is_none(), "{reports:?}");
        app.patch(&format!("/api/projects/{p}"), &admin, json!({"title": "After the purge"})).await.expect(StatusCode::OK);
        assert!(audit::verify(&app.db, Some(app.org)).await.expect("verify")[0].broken.is_none());
    }
}

async fn admin_app(backend: Backend) -> TestApp {
    TestApp::with_config(backend, |c| {
        c.instance_admin_token = "instance-admin-token-for-tests-0123456789".into();
    })
    .await
}

async fn admin_call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> crate::common::Reply {
    let mut builder = http::Request::builder().method(method).uri(path);
    if !token.is_empty() {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let request = match body {
        Some(b) => builder
            .header("content-type", "application/json")
            .body(axum::body::Body::from(b.to_string())),
        None => builder.body(axum::body::Body::empty()),
    }
    .expect("request");
    app.send(request).await
}

async fn admin_api(backend: Backend) {
    let app = admin_app(backend).await;
    let token = "instance-admin-token-for-tests-0123456789";
    let org = "/api/admin/organizations/acme";
    // Wrong or missing token.
    admin_call(&app, "GET", org, "wrong", None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    admin_call(&app, "GET", org, &app.owner, None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    admin_call(&app, "GET", org, token, None)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    // Create the organization: its owner's token comes back once.
    let created = admin_call(&app, "PUT", org, token, Some(json!({"title": "Acme", "owner_email": "owner@acme.test", "managed_by": "Organization/acme"}))).await.expect(StatusCode::CREATED);
    let owner = created["owner_token"]
        .as_str()
        .expect("owner token")
        .to_string();
    let again = admin_call(&app, "PUT", org, token, Some(json!({"title": "Acme", "owner_email": "owner@acme.test", "managed_by": "Organization/acme"}))).await.expect(StatusCode::OK);
    assert!(again.get("owner_token").is_none());
    let org_id = created["id"].as_i64().expect("id");
    admin_call(
        &app,
        "PUT",
        "/api/admin/organizations/Not_A_Slug",
        token,
        Some(json!({"title": "x", "owner_email": "a@b.c"})),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    // Workspace and project, declared.
    let ws = admin_call(
        &app,
        "PUT",
        &format!("{org}/workspaces/labeling"),
        token,
        Some(json!({"title": "Labeling", "managed_by": "Workspace/acme/labeling"})),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(ws["key"], json!("labeling"));
    let declared = json!({"workspace": "labeling", "title": "Reviews", "label_config": TEXT_CONFIG, "expert_instruction": "Be careful", "settings": {"maximum_annotations": 2, "show_skip_button": false}, "managed_by": "LabelingProject/acme/reviews"});
    let project = admin_call(
        &app,
        "PUT",
        &format!("{org}/projects/reviews"),
        token,
        Some(declared.clone()),
    )
    .await
    .expect(StatusCode::OK);
    let pid = id(&project);
    assert_eq!(project["workspace"], json!("labeling"));
    assert_eq!(project["counts"]["task_number"], json!(0));
    let managed: Vec<String> =
        serde_json::from_value(project["managed_fields"].clone()).expect("fields");
    assert!(
        managed.contains(&"label_config".to_string())
            && managed.contains(&"maximum_annotations".to_string()),
        "{managed:?}"
    );
    // Applying the same declaration again writes nothing.
    let before = app.audit_actions(org_id).await.len();
    admin_call(
        &app,
        "PUT",
        &format!("{org}/projects/reviews"),
        token,
        Some(declared.clone()),
    )
    .await
    .expect(StatusCode::OK);
    admin_call(
        &app,
        "PUT",
        &format!("{org}/workspaces/labeling"),
        token,
        Some(json!({"title": "Labeling", "managed_by": "Workspace/acme/labeling"})),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(app.audit_actions(org_id).await.len(), before);
    // The organization's owner works through the regular API; Git-owned fields are refused.
    let seen = app
        .get(&format!("/api/projects/{pid}"), &owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(seen["maximum_annotations"], json!(2));
    assert_eq!(seen["managed_by"], json!("LabelingProject/acme/reviews"));
    let e = app
        .patch(
            &format!("/api/projects/{pid}"),
            &owner,
            json!({"label_config": "<View></View>"}),
        )
        .await
        .expect_error(StatusCode::CONFLICT, "managed_by_git");
    assert!(
        e["detail"]
            .as_str()
            .expect("d")
            .contains("LabelingProject/acme/reviews")
    );
    app.patch(
        &format!("/api/projects/{pid}"),
        &owner,
        json!({"maximum_annotations": 5}),
    )
    .await
    .expect_error(StatusCode::CONFLICT, "managed_by_git");
    app.delete(&format!("/api/projects/{pid}"), &owner)
        .await
        .expect_error(StatusCode::CONFLICT, "managed_by_git");
    // Sending the declared value back is no change; undeclared fields stay editable.
    app.patch(
        &format!("/api/projects/{pid}"),
        &owner,
        json!({"title": "Reviews", "show_instruction": true}),
    )
    .await
    .expect(StatusCode::OK);
    // Progress reads back through the admin API.
    app.mk_tasks(&owner, pid, 4).await;
    let fresh = admin_call(&app, "GET", &format!("{org}/projects/reviews"), token, None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(fresh["counts"]["task_number"], json!(4));
    // A changed declaration is applied; an invalid one is refused with the reason.
    let mut changed = declared.clone();
    changed["settings"]["maximum_annotations"] = json!(3);
    admin_call(
        &app,
        "PUT",
        &format!("{org}/projects/reviews"),
        token,
        Some(changed),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(
        app.get(&format!("/api/projects/{pid}"), &owner)
            .await
            .expect(StatusCode::OK)["maximum_annotations"],
        json!(3)
    );
    let mut broken = declared.clone();
    broken["label_config"] = json!("<View><Choices name=\"c\" toName=\"missing\"/></View>");
    admin_call(
        &app,
        "PUT",
        &format!("{org}/projects/reviews"),
        token,
        Some(broken),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_label_config");
    let mut orphan = declared.clone();
    orphan["workspace"] = json!("nowhere");
    admin_call(
        &app,
        "PUT",
        &format!("{org}/projects/other"),
        token,
        Some(orphan),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    // Archiving hides the project from lists and keeps its data.
    admin_call(
        &app,
        "DELETE",
        &format!("{org}/projects/reviews"),
        token,
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    admin_call(
        &app,
        "DELETE",
        &format!("{org}/projects/reviews"),
        token,
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/projects", &owner)
            .await
            .expect(StatusCode::OK)["count"],
        json!(0)
    );
    assert_eq!(
        app.get("/api/projects?archived=true", &owner)
            .await
            .expect(StatusCode::OK)["count"],
        json!(1)
    );
    admin_call(
        &app,
        "DELETE",
        &format!("{org}/workspaces/labeling"),
        token,
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    admin_call(
        &app,
        "DELETE",
        &format!("{org}/projects/never"),
        token,
        None,
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_api_sqlite() {
    admin_api(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_api_postgres() {
    admin_api(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_api_is_off_without_a_token() {
    let app = TestApp::new(Backend::Sqlite).await;
    admin_call(
        &app,
        "GET",
        "/api/admin/organizations/acme",
        "anything",
        None,
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found");
}

/// `verity org create` prints a working owner token; `verity audit verify` passes an intact
/// log and names the first broken link of a tampered one (exit code 1).
/// Authentication events in the audit log: a token's first use from each address (not its
/// repeats), failed sign-ins at most once per address per 10 s, and the bounded memory of
/// (token, address) pairs.
async fn auth_events(backend: Backend) {
    let app = TestApp::with_config(backend, |c| c.trust_forwarded_for = true).await;
    let from = |ip: &str, token: &str| {
        http::Request::builder()
            .uri("/api/projects")
            .header("authorization", format!("Token {token}"))
            .header("x-forwarded-for", ip)
            .body(axum::body::Body::empty())
            .expect("request")
    };
    let count = |entries: &[(String, String, String)], action: &str| {
        entries.iter().filter(|(a, _, _)| a == action).count()
    };
    let before = count(&app.audit_actions(app.org).await, "auth.new_source");
    for ip in ["203.0.113.5", "203.0.113.5", "203.0.113.6", "203.0.113.5"] {
        app.send_unchecked(from(ip, &app.owner))
            .await
            .expect(StatusCode::OK);
    }
    let entries = app.audit_actions(app.org).await;
    assert_eq!(
        count(&entries, "auth.new_source") - before,
        2,
        "one entry per new address, none for repeats: {entries:?}"
    );

    let failed_before = count(
        &app.audit_actions(audit::INSTANCE_CHAIN).await,
        "auth.failed",
    );
    for ip in [
        "198.51.100.1",
        "198.51.100.1",
        "198.51.100.1",
        "198.51.100.2",
    ] {
        app.send_unchecked(from(ip, "not-a-valid-token-0123456789"))
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    let failed = count(
        &app.audit_actions(audit::INSTANCE_CHAIN).await,
        "auth.failed",
    );
    assert_eq!(
        failed - failed_before,
        2,
        "a flood from one address is one entry per 10 s"
    );

    // The (token, address) table is bounded by age.
    let remembered = |app: &TestApp| {
        let db = app.db.clone();
        async move {
            verity_controlplane::storage::users::forget_token_sources(&db, 0)
                .await
                .expect("forget nothing");
            match &db {
                verity_controlplane::storage::Db::Postgres(pool) => {
                    sqlx::query_scalar::<_, i64>("select count(*) from token_source")
                        .fetch_one(pool)
                        .await
                }
                verity_controlplane::storage::Db::Sqlite { write, .. } => {
                    sqlx::query_scalar::<_, i64>("select count(*) from token_source")
                        .fetch_one(write)
                        .await
                }
            }
            .expect("count")
        }
    };
    let n = remembered(&app).await;
    assert!(n >= 2, "{n}");
    let gone = verity_controlplane::storage::users::forget_token_sources(&app.db, now_micros() + 1)
        .await
        .expect("forget");
    assert_eq!(i64::try_from(gone).expect("count"), n);
    assert_eq!(remembered(&app).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auth_events_are_audited_sqlite() {
    auth_events(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auth_events_are_audited_postgres() {
    auth_events(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_creates_organizations_and_verifies_the_audit_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("cli.db").display());
    let verity = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_verity"))
            .args(args)
            .args(["--database-url", &url, "--data-dir"])
            .arg(dir.path())
            .env_remove("VERITY_CONFIG")
            .output()
            .expect("run verity")
    };
    let out = verity(&[
        "org",
        "create",
        "--name",
        "Acme Labs",
        "--owner-email",
        "boss@acme.test",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(token.len() >= 20, "{token:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("slug acme-labs"));
    // The slug is taken now.
    let again = verity(&[
        "org",
        "create",
        "--name",
        "Acme Labs",
        "--owner-email",
        "x@acme.test",
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    // The token works against a server on the same database.
    let db = verity_controlplane::storage::Db::connect(&url, &Default::default())
        .await
        .expect("connect");
    let actor = verity_controlplane::storage::users::actor_for_legacy_token(&db, &token)
        .await
        .expect("lookup")
        .expect("an owner");
    assert_eq!(actor.role, Role::Owner);
    let ok = verity(&["audit", "verify"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains(&format!(
        "organization {}: 2 entries verified",
        actor.org_id
    )));
    // Tamper with the second entry behind the database's back.
    if let verity_controlplane::storage::Db::Sqlite { write, .. } = &db {
        sqlx::query("drop trigger audit_log_no_update")
            .execute(write)
            .await
            .expect("drop trigger");
        sqlx::query(
            "update audit_log set actor_email = 'someone-else' where seq = 2 and chain_id = $1",
        )
        .bind(actor.org_id)
        .execute(write)
        .await
        .expect("tamper");
    }
    db.close().await;
    let broken = verity(&["audit", "verify"]);
    assert_eq!(broken.status.code(), Some(1));
    let report = String::from_utf8_lossy(&broken.stdout);
    assert!(
        report.contains("BROKEN") && report.contains("first broken link at entry 2"),
        "{report}"
    );
}

async fn ownerless_organizations_converge(backend: Backend) {
    let app = admin_app(backend).await;
    let token = "instance-admin-token-for-tests-0123456789";
    let path = "/api/admin/organizations/fixme";
    // A bad owner is refused before anything exists.
    admin_call(
        &app,
        "PUT",
        path,
        token,
        Some(json!({"title": "Fix me", "owner_email": "owner@fixme.test", "owner_token": "short"})),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    admin_call(&app, "GET", path, token, None)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    // An organization left without an owner (an earlier failure) gets one on the next call.
    let created = admin_call(
        &app,
        "PUT",
        path,
        token,
        Some(json!({"title": "Fix me", "owner_email": "owner@fixme.test"})),
    )
    .await
    .expect(StatusCode::CREATED);
    let org = created["id"].as_i64().expect("id");
    app.sql(&format!(
        "delete from org_member where organization_id = {org}"
    ))
    .await
    .expect("remove the owner");
    app.sql(&format!("delete from api_token where user_id in (select id from app_user where home_organization_id = {org})")).await.expect("tokens");
    app.sql(&format!(
        "delete from app_user where home_organization_id = {org}"
    ))
    .await
    .expect("users");
    let repaired = admin_call(
        &app,
        "PUT",
        path,
        token,
        Some(json!({"title": "Fix me", "owner_email": "owner@fixme.test"})),
    )
    .await
    .expect(StatusCode::OK);
    let owner = repaired["owner_token"]
        .as_str()
        .expect("a new owner token")
        .to_string();
    let me = app
        .get("/api/current-user/whoami", &owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(me["email"], json!("owner@fixme.test"));
    // Converged: the next call changes nothing.
    let again = admin_call(
        &app,
        "PUT",
        path,
        token,
        Some(json!({"title": "Fix me", "owner_email": "owner@fixme.test"})),
    )
    .await
    .expect(StatusCode::OK);
    assert!(again.get("owner_token").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownerless_organizations_converge_sqlite() {
    ownerless_organizations_converge(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownerless_organizations_converge_postgres() {
    ownerless_organizations_converge(Backend::Postgres).await;
}
