//! SCIM 2.0 provisioning (ADR 0029): the provisioning token, Users and Groups with filters,
//! pagination, PATCH and ETags, de-provisioning that revokes access at once, group mappings to
//! roles, workspaces and project roles, and bad requests that change nothing.

use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use verity_controlplane::authz::Role;

use crate::{
    both_backends,
    common::{Reply, TestApp},
};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

async fn scim(app: &TestApp, method: &str, path: &str, token: &str, body: Option<Value>) -> Reply {
    scim_with(app, method, path, token, body, &[]).await
}

async fn scim_with(
    app: &TestApp,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "verity.test")
        .header("authorization", format!("Bearer {token}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let request = match body {
        Some(v) => b
            .header("content-type", "application/scim+json")
            .body(Body::from(v.to_string())),
        None => b.body(Body::empty()),
    }
    .expect("request");
    app.send(request).await
}

#[track_caller]
fn scim_error(reply: &Reply, status: StatusCode, scim_type: Option<&str>) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(
        reply.body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"]),
        "{}",
        reply.text
    );
    assert_eq!(reply.body["status"], json!(status.as_u16().to_string()));
    if let Some(t) = scim_type {
        assert_eq!(reply.body["scimType"], json!(t), "{}", reply.text);
    }
    assert!(
        reply.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{}",
        reply.text
    );
}

async fn token(app: &TestApp) -> String {
    app.post("/api/scim/token", &app.owner, json!({}))
        .await
        .expect(StatusCode::OK)["token"]
        .as_str()
        .expect("token")
        .to_string()
}

fn new_user(user_name: &str, email: &str) -> Value {
    json!({
        "schemas": [USER],
        "userName": user_name,
        "name": {"givenName": "Given", "familyName": "Family"},
        "emails": [{"value": email, "type": "work", "primary": true}],
        "active": true,
    })
}

async fn create_user(app: &TestApp, t: &str, user_name: &str, email: &str) -> Value {
    scim(
        app,
        "POST",
        "/scim/v2/Users",
        t,
        Some(new_user(user_name, email)),
    )
    .await
    .expect(StatusCode::CREATED)
}

async fn role_of(app: &TestApp, user: &str) -> (String, bool) {
    let m = app
        .get(
            &format!("/api/organizations/{}/memberships/{user}", app.org),
            &app.owner,
        )
        .await
        .expect(StatusCode::OK);
    (
        m["role"].as_str().expect("role").to_string(),
        m["is_active"].as_bool().expect("active"),
    )
}

both_backends! {
    async fn provisioning_tokens_authenticate_only_scim(app) {
        // No token, a user's API token, a made-up token: 401 in SCIM's error format.
        let none = scim(&app, "GET", "/scim/v2/Users", "", None).await;
        scim_error(&none, StatusCode::UNAUTHORIZED, None);
        let api_token = scim(&app, "GET", "/scim/v2/Users", &app.owner, None).await;
        scim_error(&api_token, StatusCode::UNAUTHORIZED, None);
        // Only organization managers issue tokens.
        let annotator = app.user("ann@example.com", Role::Annotator).await;
        app.post("/api/scim/token", &annotator, json!({}))
            .await
            .expect_error(StatusCode::FORBIDDEN, "forbidden");
        let first = token(&app).await;
        let users = scim(&app, "GET", "/scim/v2/Users", &first, None).await.expect(StatusCode::OK);
        assert_eq!(users["totalResults"], json!(2), "owner and annotator: {users}");
        // The provisioning token is not an API token.
        app.get("/api/projects", &first).await.expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
        // Rotating revokes the previous token.
        let second = token(&app).await;
        scim_error(&scim(&app, "GET", "/scim/v2/Users", &first, None).await, StatusCode::UNAUTHORIZED, None);
        scim(&app, "GET", "/scim/v2/Users", &second, None).await.expect(StatusCode::OK);
        // Another organization's token sees only its own members.
        let (other, other_owner) = app.other_org("Other", "boss@other.example").await;
        let _ = other;
        let other_token = app.post("/api/scim/token", &other_owner, json!({})).await.expect(StatusCode::OK)["token"]
            .as_str().expect("token").to_string();
        let theirs = scim(&app, "GET", "/scim/v2/Users", &other_token, None).await.expect(StatusCode::OK);
        assert_eq!(theirs["totalResults"], json!(1));
        assert_eq!(theirs["Resources"][0]["userName"], json!("boss@other.example"));
        let mine_id = app.user_id(&annotator).await;
        scim_error(
            &scim(&app, "GET", &format!("/scim/v2/Users/{mine_id}"), &other_token, None).await,
            StatusCode::NOT_FOUND,
            None,
        );
        // The same email in two organizations is two accounts: provisioning it in the other
        // organization makes that organization's own account, and changes nothing here.
        let twin = scim(&app, "POST", "/scim/v2/Users", &other_token, Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "twin", "emails": [{"value": "ann@example.com", "primary": true}],
        }))).await.expect(StatusCode::CREATED);
        assert!(twin["id"].is_string(), "{twin}");
        assert_ne!(twin["id"], json!(mine_id.to_string()), "{twin}");
        let again = scim(&app, "GET", &format!("/scim/v2/Users/{mine_id}"), &second, None).await.expect(StatusCode::OK);
        assert_eq!(again["emails"][0]["value"], json!("ann@example.com"));
        assert_eq!(scim(&app, "GET", "/scim/v2/Users", &other_token, None).await.expect(StatusCode::OK)["totalResults"], json!(2));
        // Discovery documents.
        let spc = scim(&app, "GET", "/scim/v2/ServiceProviderConfig", &second, None).await.expect(StatusCode::OK);
        assert_eq!(spc["patch"]["supported"], json!(true));
        assert_eq!(spc["etag"]["supported"], json!(true));
        let types = scim(&app, "GET", "/scim/v2/ResourceTypes", &second, None).await.expect(StatusCode::OK);
        assert_eq!(types["totalResults"], json!(2));
        let schema = scim(&app, "GET", &format!("/scim/v2/Schemas/{USER}"), &second, None).await.expect(StatusCode::OK);
        assert!(schema["attributes"].as_array().expect("attributes").iter().any(|a| a["name"] == "userName"));
        let actions: Vec<String> = app.audit_actions(app.org).await.into_iter().map(|a| a.0).collect();
        assert_eq!(actions.iter().filter(|a| *a == "scim.token.rotate").count(), 2, "{actions:?}");
    }

    async fn users_are_provisioned_found_changed_and_deprovisioned(app) {
        let t = token(&app).await;
        let created = scim(&app, "POST", "/scim/v2/Users", &t, Some(new_user("jdoe", "jdoe@example.com"))).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let id = created.body["id"].as_str().expect("id").to_string();
        assert_eq!(
            created.headers.get("location").and_then(|v| v.to_str().ok()),
            Some(format!("http://verity.test/scim/v2/Users/{id}").as_str())
        );
        assert_eq!(created.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/scim+json"));
        let etag = created.headers.get("etag").and_then(|v| v.to_str().ok()).expect("etag").to_string();
        assert_eq!(created.body["meta"]["version"], json!(etag));
        assert_eq!(created.body["name"]["givenName"], json!("Given"));
        assert_eq!(role_of(&app, &id).await, ("annotator".into(), true));
        // The same email again, or the same userName: 409 uniqueness.
        let dup = scim(&app, "POST", "/scim/v2/Users", &t, Some(new_user("other", "JDOE@example.com"))).await;
        scim_error(&dup, StatusCode::CONFLICT, Some("uniqueness"));
        let dup = scim(&app, "POST", "/scim/v2/Users", &t, Some(new_user("JDoe", "x@example.com"))).await;
        scim_error(&dup, StatusCode::CONFLICT, Some("uniqueness"));
        // An existing member is adopted by email; their API token keeps working while active.
        let member = app.user("member@example.com", Role::Reviewer).await;
        let member_id = app.user_id(&member).await.to_string();
        // Before it is provisioned, a member's userName is their email (what a provider looks
        // up before creating).
        let seen = scim(&app, "GET", "/scim/v2/Users?filter=userName%20eq%20%22Member@Example.com%22", &t, None)
            .await
            .expect(StatusCode::OK);
        assert_eq!(seen["totalResults"], json!(1), "{seen}");
        assert_eq!(seen["Resources"][0]["id"], json!(member_id));
        let adopted = create_user(&app, &t, "member", "member@example.com").await;
        assert_eq!(adopted["id"], json!(member_id));
        assert_eq!(role_of(&app, &member_id).await, ("reviewer".into(), true));
        // Filters and pagination.
        for i in 0..5 {
            create_user(&app, &t, &format!("bulk{i}"), &format!("bulk{i}@corp.example")).await;
        }
        let list = |q: &str| {
            let app = &app;
            let t = t.clone();
            let path = format!("/scim/v2/Users?{q}");
            async move { scim(app, "GET", &path, &t, None).await.expect(StatusCode::OK) }
        };
        let found = list("filter=userName%20eq%20%22member%22").await;
        assert_eq!(found["Resources"][0]["id"], json!(member_id), "{found}");
        let found = list("filter=userName%20eq%20%22JDOE%22").await;
        assert_eq!(found["totalResults"], json!(1));
        assert_eq!(found["Resources"][0]["id"], json!(id));
        let found = list("filter=emails%20co%20%22corp.example%22%20and%20userName%20sw%20%22bulk%22").await;
        assert_eq!(found["totalResults"], json!(5));
        let page = list("filter=emails%20co%20%22corp.example%22&startIndex=2&count=2").await;
        assert_eq!(page["totalResults"], json!(5));
        assert_eq!(page["startIndex"], json!(2));
        assert_eq!(page["itemsPerPage"], json!(2));
        assert_eq!(page["Resources"][0]["userName"], json!("bulk1"));
        let none = list("filter=userName%20eq%20%22nobody%22").await;
        assert_eq!(none["totalResults"], json!(0));
        assert_eq!(none["Resources"], json!([]));
        let projected = list("filter=userName%20eq%20%22jdoe%22&attributes=emails").await;
        let r = projected["Resources"][0].as_object().expect("resource");
        assert!(r.contains_key("emails") && r.contains_key("id") && !r.contains_key("name"), "{r:?}");
        let bad = scim(&app, "GET", "/scim/v2/Users?filter=userName%20eq", &t, None).await;
        scim_error(&bad, StatusCode::BAD_REQUEST, Some("invalidFilter"));
        // If-None-Match with the current version: 304.
        let cached = scim_with(&app, "GET", &format!("/scim/v2/Users/{id}"), &t, None, &[("if-none-match", &etag)]).await;
        assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
        // PATCH (Entra ID's string booleans) deactivates the member: their token stops at once.
        let off = scim(&app, "PATCH", &format!("/scim/v2/Users/{member_id}"), &t, Some(json!({
            "schemas": [PATCH],
            "Operations": [{"op": "Replace", "path": "active", "value": "False"}],
        }))).await.expect(StatusCode::OK);
        assert_eq!(off["active"], json!(false));
        app.get("/api/projects", &member).await.expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
        assert_eq!(role_of(&app, &member_id).await, ("reviewer".into(), false));
        let on = scim(&app, "PATCH", &format!("/scim/v2/Users/{member_id}"), &t, Some(json!({
            "schemas": [PATCH],
            "Operations": [{"op": "replace", "value": {"active": true, "name.familyName": "Renamed"}}],
        }))).await.expect(StatusCode::OK);
        assert_eq!(on["name"]["familyName"], json!("Renamed"));
        app.get("/api/projects", &member).await.expect(StatusCode::OK);
        // PUT replaces the attributes; an outdated If-Match is refused and changes nothing.
        let current = scim(&app, "GET", &format!("/scim/v2/Users/{id}"), &t, None).await;
        let v1 = current.headers.get("etag").and_then(|v| v.to_str().ok()).expect("etag").to_string();
        let mut replaced = new_user("jdoe", "jdoe@example.com");
        replaced["displayName"] = json!("Jane Doe");
        let put = scim_with(&app, "PUT", &format!("/scim/v2/Users/{id}"), &t, Some(replaced.clone()), &[("if-match", &v1)])
            .await
            .expect(StatusCode::OK);
        assert_eq!(put["displayName"], json!("Jane Doe"));
        replaced["displayName"] = json!("Stale");
        let stale = scim_with(&app, "PUT", &format!("/scim/v2/Users/{id}"), &t, Some(replaced), &[("if-match", &v1)]).await;
        scim_error(&stale, StatusCode::PRECONDITION_FAILED, None);
        let now = scim(&app, "GET", &format!("/scim/v2/Users/{id}"), &t, None).await.expect(StatusCode::OK);
        assert_eq!(now["displayName"], json!("Jane Doe"));
        // DELETE: gone from SCIM, membership deactivated, the user's history kept.
        let del = scim(&app, "DELETE", &format!("/scim/v2/Users/{member_id}"), &t, None).await;
        assert_eq!(del.status, StatusCode::NO_CONTENT, "{}", del.text);
        scim_error(&scim(&app, "GET", &format!("/scim/v2/Users/{member_id}"), &t, None).await, StatusCode::NOT_FOUND, None);
        app.get("/api/projects", &member).await.expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
        assert!(!role_of(&app, &member_id).await.1);
        // Created again later: the same account comes back.
        let back = create_user(&app, &t, "member", "member@example.com").await;
        assert_eq!(back["id"], json!(member_id));
        assert_eq!(back["active"], json!(true));
        let actions: Vec<String> = app.audit_actions(app.org).await.into_iter().map(|a| a.0).collect();
        for a in ["scim.user.create", "scim.user.update", "scim.user.delete"] {
            assert!(actions.iter().any(|x| x == a), "{a} not audited: {actions:?}");
        }
    }

    async fn groups_drive_roles_workspaces_and_project_roles(app) {
        let t = token(&app).await;
        let project = app.mk_project(&app.owner, json!({"title": "Project P"})).await;
        let settings = app.post("/api/scim/settings", &app.owner, json!({
            "roles_groups": [["Manager", "Leads"], ["Reviewer", "QA"]],
            "workspaces_groups": [["Team A", "Leads"]],
            "projects_groups": [{"project_id": project, "group": "QA", "role": "Reviewer"}],
        })).await.expect(StatusCode::OK);
        assert_eq!(settings["roles_groups"], json!([["Manager", "Leads"], ["Reviewer", "QA"]]));
        assert_eq!(app.get("/api/scim/settings", &app.owner).await.expect(StatusCode::OK), settings);
        let a = create_user(&app, &t, "a", "a@example.com").await["id"].as_str().expect("id").to_string();
        let b = create_user(&app, &t, "b", "b@example.com").await["id"].as_str().expect("id").to_string();
        let leads = scim(&app, "POST", "/scim/v2/Groups", &t, Some(json!({
            "schemas": [GROUP], "displayName": "leads", "members": [{"value": a}],
        }))).await.expect(StatusCode::CREATED);
        let leads_id = leads["id"].as_str().expect("id").to_string();
        assert_eq!(leads["members"][0]["value"], json!(a));
        assert_eq!(leads["members"][0]["$ref"], json!(format!("http://verity.test/scim/v2/Users/{a}")));
        assert_eq!(role_of(&app, &a).await.0, "manager");
        let workspaces = app.get("/api/workspaces", &app.owner).await.expect(StatusCode::OK);
        let ws = workspaces.as_array().expect("list").iter().find(|w| w["title"] == "Team A").expect("workspace created")["id"]
            .as_i64().expect("id");
        let ws_path = format!("/api/workspaces/{ws}/memberships");
        assert!(app.get(&ws_path, &app.owner).await.expect(StatusCode::OK).to_string().contains("a@example.com"));
        // The user's groups are listed on the User.
        let user_a = scim(&app, "GET", &format!("/scim/v2/Users/{a}"), &t, None).await.expect(StatusCode::OK);
        assert_eq!(user_a["groups"][0]["display"], json!("leads"));
        // A User's groups are part of it: joining a group changes its ETag.
        let b_before = scim(&app, "GET", &format!("/scim/v2/Users/{b}"), &t, None).await;
        let b_etag = b_before.headers.get("etag").and_then(|v| v.to_str().ok()).expect("etag").to_string();
        // QA by PATCH: b becomes a reviewer and a project reviewer.
        let qa = scim(&app, "POST", "/scim/v2/Groups", &t, Some(json!({"schemas": [GROUP], "displayName": "QA"})))
            .await.expect(StatusCode::CREATED)["id"].as_str().expect("id").to_string();
        scim(&app, "PATCH", &format!("/scim/v2/Groups/{qa}"), &t, Some(json!({
            "schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": b}, {"value": a}]}],
        }))).await.expect(StatusCode::OK);
        assert_eq!(role_of(&app, &b).await.0, "reviewer");
        let b_after = scim(&app, "GET", &format!("/scim/v2/Users/{b}"), &t, None).await;
        assert_ne!(b_after.headers.get("etag").and_then(|v| v.to_str().ok()), Some(b_etag.as_str()));
        assert_eq!(b_after.body["groups"][0]["display"], json!("QA"));
        assert_eq!(role_of(&app, &a).await.0, "manager", "the highest mapped role wins");
        let members = app.get(&format!("/api/projects/{project}/members"), &app.owner).await.expect(StatusCode::OK).to_string();
        assert!(members.contains("b@example.com"), "{members}");
        // Removing a from leads: back to the next mapped role, out of the workspace.
        scim(&app, "PATCH", &format!("/scim/v2/Groups/{leads_id}"), &t, Some(json!({
            "schemas": [PATCH], "Operations": [{"op": "remove", "path": format!("members[value eq \"{a}\"]")}],
        }))).await.expect(StatusCode::OK);
        assert_eq!(role_of(&app, &a).await.0, "reviewer");
        assert!(!app.get(&ws_path, &app.owner).await.expect(StatusCode::OK).to_string().contains("a@example.com"));
        // Deleting QA: both fall back to the default role and leave the project.
        let del = scim(&app, "DELETE", &format!("/scim/v2/Groups/{qa}"), &t, None).await;
        assert_eq!(del.status, StatusCode::NO_CONTENT);
        assert_eq!(role_of(&app, &a).await.0, "annotator");
        assert_eq!(role_of(&app, &b).await.0, "annotator");
        let members = app.get(&format!("/api/projects/{project}/members"), &app.owner).await.expect(StatusCode::OK).to_string();
        assert!(!members.contains("b@example.com"), "{members}");
        // Group filters.
        let found = scim(&app, "GET", "/scim/v2/Groups?filter=displayName%20eq%20%22LEADS%22", &t, None).await.expect(StatusCode::OK);
        assert_eq!(found["totalResults"], json!(1));
    }

    async fn bad_provisioning_requests_change_nothing(app) {
        let t = token(&app).await;
        let a = create_user(&app, &t, "a", "a@example.com").await;
        let id = a["id"].as_str().expect("id").to_string();
        let before = scim(&app, "GET", &format!("/scim/v2/Users/{id}"), &t, None).await.expect(StatusCode::OK);
        // A bad operation in the middle: none of the operations apply.
        let bad = scim(&app, "PATCH", &format!("/scim/v2/Users/{id}"), &t, Some(json!({
            "schemas": [PATCH],
            "Operations": [
                {"op": "replace", "path": "displayName", "value": "changed"},
                {"op": "replace", "path": "emails[type eq \"home\"].value", "value": "x@example.com"},
            ],
        }))).await;
        scim_error(&bad, StatusCode::BAD_REQUEST, Some("noTarget"));
        assert_eq!(scim(&app, "GET", &format!("/scim/v2/Users/{id}"), &t, None).await.expect(StatusCode::OK), before);
        for (body, scim_type) in [
            (json!({"schemas": [USER], "name": {"givenName": "x"}}), "invalidValue"),
            (json!({"schemas": [USER], "userName": "nomail"}), "invalidValue"),
            (json!({"schemas": [GROUP], "userName": "x@example.com"}), "invalidSyntax"),
            (json!({"schemas": [USER], "userName": "y@example.com", "active": "perhaps"}), "invalidValue"),
        ] {
            let r = scim(&app, "POST", "/scim/v2/Users", &t, Some(body)).await;
            scim_error(&r, StatusCode::BAD_REQUEST, Some(scim_type));
        }
        let not_json = app.send(Request::builder().method("POST").uri("/scim/v2/Users")
            .header("authorization", format!("Bearer {t}")).body(Body::from("{")).expect("request")).await;
        scim_error(&not_json, StatusCode::BAD_REQUEST, Some("invalidSyntax"));
        let users = scim(&app, "GET", "/scim/v2/Users", &t, None).await.expect(StatusCode::OK);
        assert_eq!(users["totalResults"], json!(2), "nothing was created: {users}");
        // A group naming a non-member: refused, no group.
        let g = scim(&app, "POST", "/scim/v2/Groups", &t, Some(json!({
            "schemas": [GROUP], "displayName": "g", "members": [{"value": id}, {"value": "999999"}],
        }))).await;
        scim_error(&g, StatusCode::BAD_REQUEST, Some("invalidValue"));
        let groups = scim(&app, "GET", "/scim/v2/Groups", &t, None).await.expect(StatusCode::OK);
        assert_eq!(groups["totalResults"], json!(0));
        // The owner cannot be deactivated or deleted through SCIM.
        let owner_id = app.user_id(&app.owner).await;
        let off = scim(&app, "PATCH", &format!("/scim/v2/Users/{owner_id}"), &t, Some(json!({
            "schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": false}],
        }))).await;
        scim_error(&off, StatusCode::BAD_REQUEST, Some("mutability"));
        scim_error(&scim(&app, "DELETE", &format!("/scim/v2/Users/{owner_id}"), &t, None).await, StatusCode::BAD_REQUEST, Some("mutability"));
        app.get("/api/projects", &app.owner).await.expect(StatusCode::OK);
        // Read-only attributes cannot be patched; unknown ids are 404.
        let ro = scim(&app, "PATCH", &format!("/scim/v2/Users/{id}"), &t, Some(json!({
            "schemas": [PATCH], "Operations": [{"op": "add", "path": "groups", "value": [{"value": "1"}]}],
        }))).await;
        scim_error(&ro, StatusCode::BAD_REQUEST, Some("mutability"));
        scim_error(&scim(&app, "GET", "/scim/v2/Users/abc", &t, None).await, StatusCode::NOT_FOUND, None);
        // Settings: unknown roles, Owner, another organization's project.
        let (_, other_owner) = app.other_org("Other", "boss@other.example").await;
        let foreign = app.mk_project(&other_owner, json!({"title": "theirs"})).await;
        for body in [
            json!({"roles_groups": [["Wizard", "g"]]}),
            json!({"roles_groups": [["Owner", "g"]]}),
            json!({"projects_groups": [{"project_id": foreign, "group": "g", "role": "Reviewer"}]}),
            json!({"projects_groups": [{"project_id": foreign, "group": "g", "role": "Boss"}]}),
            json!({"roles_group": []}),
        ] {
            app.post("/api/scim/settings", &app.owner, body).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        }
        assert_eq!(app.get("/api/scim/settings", &app.owner).await.expect(StatusCode::OK)["roles_groups"], json!([]));
    }
}
