//! The web UI's sign-in, sessions, CSRF and lock-out, and its pages per role (ADR 0027),
//! driven as a browser would: cookies kept between requests, forms posted url-encoded.

use std::collections::HashMap;

use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use verity_controlplane::{
    authz::{Actor, Role},
    storage::{now_micros, sessions, users},
};

use crate::{
    both_backends,
    common::{Reply, TestApp, new_user},
};

pub(crate) const PASSWORD: &str = "correct horse battery";

/// A cookie jar and the requests a browser would make.
#[derive(Default)]
pub(crate) struct Browser {
    pub(crate) cookies: HashMap<String, String>,
    /// The peer address the server sees (as a real connection's), when set.
    pub(crate) peer: Option<std::net::SocketAddr>,
}

impl Browser {
    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, reply: &Reply) {
        for value in reply.headers.get_all("set-cookie") {
            let value = value.to_str().expect("ascii cookie");
            let (pair, attrs) = value.split_once(';').unwrap_or((value, ""));
            let (name, v) = pair.split_once('=').expect("name=value");
            if v.is_empty() || attrs.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), v.to_string());
            }
        }
    }

    pub(crate) async fn get(&mut self, app: &TestApp, path: &str) -> Reply {
        let mut req = Request::get(path)
            .header("cookie", self.cookie_header())
            .body(Body::empty())
            .expect("request");
        self.connect(&mut req);
        let reply = app.send_unchecked(req).await;
        self.keep(&reply);
        reply
    }

    /// Gives a request the peer address of [`Browser::peer`].
    fn connect(&self, req: &mut Request<Body>) {
        if let Some(peer) = self.peer {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
        }
    }

    pub(crate) async fn post_form(
        &mut self,
        app: &TestApp,
        path: &str,
        fields: &[(&str, &str)],
    ) -> Reply {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let mut req = Request::post(path)
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .expect("request");
        self.connect(&mut req);
        let reply = app.send_unchecked(req).await;
        self.keep(&reply);
        reply
    }

    /// A multipart form post: `text` fields first (in order), then `files` as `file` parts.
    pub(crate) async fn post_multipart(
        &mut self,
        app: &TestApp,
        path: &str,
        text: &[(&str, &str)],
        files: &[(&str, &[u8])],
    ) -> Reply {
        let (content_type, body) = multipart_body(text, files);
        let req = Request::post(path)
            .header("cookie", self.cookie_header())
            .header("content-type", content_type)
            .body(Body::from(body))
            .expect("request");
        let reply = app.send_unchecked(req).await;
        self.keep(&reply);
        reply
    }

    /// An API call with the session cookie (and `csrf` in `X-CSRFToken` when given).
    pub(crate) async fn api(
        &self,
        app: &TestApp,
        method: &str,
        path: &str,
        csrf: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("cookie", self.cookie_header());
        if let Some(c) = csrf {
            req = req.header("x-csrftoken", c);
        }
        let mut req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .expect("request");
        self.connect(&mut req);
        app.send(req).await
    }

    /// Opens the sign-in page and signs in; returns the reply to the form post.
    pub(crate) async fn sign_in(&mut self, app: &TestApp, email: &str, password: &str) -> Reply {
        // A signed-in browser is sent on from the sign-in page: sign in afresh.
        self.cookies.remove("verity_session");
        let page = self.get(app, "/user/login").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let token = hidden(&page.text, "form_token");
        self.post_form(
            app,
            "/user/login",
            &[
                ("form_token", &token),
                ("email", email),
                ("password", password),
                ("next", "/projects"),
            ],
        )
        .await
    }

    /// The CSRF token of the signed-in pages (from the `csrf-token` meta tag of /projects).
    pub(crate) async fn csrf(&mut self, app: &TestApp) -> String {
        let page = self.get(app, "/projects").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        attr_after(&page.text, "name=\"csrf-token\" content=\"")
    }
}

/// A multipart body: `text` fields first (in order), then `files` as `file` parts.
pub(crate) fn multipart_body(text: &[(&str, &str)], files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "verityUiBoundary41";
    let mut body = Vec::new();
    for (name, value) in text {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    for (file, bytes) in files {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub(crate) fn attr_after(html: &str, marker: &str) -> String {
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {html}"))
        + marker.len();
    html[start..].split('"').next().expect("value").to_string()
}

/// The text of the element with id `id` (up to its first tag).
pub(crate) fn number(html: &str, id: &str) -> String {
    attr_after(html, &format!("id=\"{id}\">"))
        .split('<')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The value of the hidden input `name`.
pub(crate) fn hidden(html: &str, name: &str) -> String {
    attr_after(html, &format!("name=\"{name}\" value=\""))
}

fn as_refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

pub(crate) fn location(reply: &Reply) -> String {
    reply
        .headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// A user with a password; returns their API token.
pub(crate) async fn password_user(app: &TestApp, email: &str, role: Role) -> String {
    let mut new = new_user(email, role);
    new.password = Some(PASSWORD.to_string());
    users::create_user_in_org(
        &app.db,
        &Actor::instance(app.org, Default::default()),
        app.org,
        &new,
    )
    .await
    .expect("user")
    .1
}

/// The saved views of project `p`, through the API.
async fn dm_views(app: &TestApp, p: i64) -> Vec<Value> {
    app.get(&format!("/api/dm/views?project={p}"), &app.owner)
        .await
        .expect(StatusCode::OK)
        .as_array()
        .expect("views")
        .clone()
}

/// How many tasks of project `p` have annotations, through the API.
async fn annotated_tasks(app: &TestApp, p: i64) -> i64 {
    app.get(
        &format!("/api/tasks?project={p}&only_annotated=true&include=id"),
        &app.owner,
    )
    .await
    .expect(StatusCode::OK)["total"]
        .as_i64()
        .expect("total")
}

async fn project_count(app: &TestApp) -> i64 {
    app.get("/api/projects", &app.owner)
        .await
        .expect(StatusCode::OK)["count"]
        .as_i64()
        .expect("count")
}

both_backends! {
    async fn the_session_policy_ends_old_and_idle_sessions(app) {
        let member = password_user(&app, "ui-policy@example.com", Role::Annotator).await;
        // Bad policies are refused and change nothing.
        let instance = app.config.session_ttl_hours * 60;
        let before = app.get("/api/session-policy", &app.owner).await.expect(StatusCode::OK);
        assert_eq!(before, json!({"max_session_age": instance, "max_time_between_activity": instance}));
        for body in [
            json!({"max_session_age": 4}),
            json!({"max_session_age": instance + 1}),
            json!({"max_session_age": 30, "max_time_between_activity": 31}),
            json!({"max_session_age": "soon"}),
            json!({"session_age": 30}),
        ] {
            app.patch("/api/session-policy", &app.owner, body.clone()).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        }
        assert_eq!(app.get("/api/session-policy", &app.owner).await.expect(StatusCode::OK), before);
        app.patch("/api/session-policy", &member, json!({"max_session_age": 60})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        // A session opened now, and the policy set afterwards: it applies to it too.
        let mut browser = Browser::default();
        browser.sign_in(&app, "ui-policy@example.com", PASSWORD).await;
        browser.api(&app, "GET", "/api/current-user/whoami", None, None).await.expect(StatusCode::OK);
        let set = app.patch("/api/session-policy", &app.owner, json!({"max_session_age": 120, "max_time_between_activity": 30})).await.expect(StatusCode::OK);
        assert_eq!(set, json!({"max_session_age": 120, "max_time_between_activity": 30}));
        browser.api(&app, "GET", "/api/current-user/whoami", None, None).await.expect(StatusCode::OK);
        let user = "(select id from app_user where email = 'ui-policy@example.com')";
        // Idle for 31 minutes: over.
        let idle = now_micros() - 31 * 60_000_000;
        app.sql(&format!("update user_session set created_at = {idle}, last_seen_at = {idle} where user_id = {user}")).await.expect("backdate");
        browser.api(&app, "GET", "/api/current-user/whoami", None, None).await.expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
        // Active a minute ago but signed in more than two hours ago: over as well.
        browser.sign_in(&app, "ui-policy@example.com", PASSWORD).await;
        browser.api(&app, "GET", "/api/current-user/whoami", None, None).await.expect(StatusCode::OK);
        let old = now_micros() - 121 * 60_000_000;
        let recent = now_micros() - 60_000_000;
        app.sql(&format!("update user_session set created_at = {old}, last_seen_at = {recent} where user_id = {user}")).await.expect("backdate");
        browser.api(&app, "GET", "/api/current-user/whoami", None, None).await.expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
        // A fresh session lasts the policy's age (two hours), not the instance's.
        browser.sign_in(&app, "ui-policy@example.com", PASSWORD).await;
        browser.api(&app, "GET", "/api/current-user/whoami", None, None).await.expect(StatusCode::OK);
        let capped = app.sql(&format!("update user_session set client_ip = client_ip where user_id = {user} and expires_at <= created_at + 7200000000")).await.expect("probe");
        assert_eq!(capped, 1, "the new session ends with the policy's age");
        let audit = app.audit_actions(app.org).await;
        assert!(audit.iter().any(|(a, _, _)| a == "session_policy.update"), "{audit:?}");
    }

    async fn password_sign_in_sessions_csrf_and_sign_out(app) {
        password_user(&app, "ui-manager@example.com", Role::Manager).await;
        let mut browser = Browser::default();
        // Not signed in: the start page and the pages lead to sign-in (coming back afterwards).
        let home = browser.get(&app, "/").await;
        assert_eq!((home.status, location(&home)), (StatusCode::SEE_OTHER, "/user/login".to_string()));
        let projects = browser.get(&app, "/projects").await;
        assert_eq!(location(&projects), "/user/login?next=%2Fprojects");
        // The sign-in page: labelled inputs, strict CSP, no inline script.
        let page = browser.get(&app, "/user/login").await;
        let csp = page.headers.get("content-security-policy").and_then(|v| v.to_str().ok()).expect("csp").to_string();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe"), "{csp}");
        assert!(page.text.contains("<label for=\"email\">") && page.text.contains("<label for=\"password\">"));
        assert!(!page.text.contains("<script>") && !page.text.contains("style="), "inline script or style");
        // Wrong password: refused, no session.
        let wrong = browser.sign_in(&app, "ui-manager@example.com", "not the password").await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.text);
        assert!(wrong.text.contains("The email or password is not correct."));
        assert!(!browser.cookies.contains_key("verity_session"));
        let unknown = browser.sign_in(&app, "nobody@example.com", PASSWORD).await;
        assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
        // A sign-in form posted without the form cookie's token (from another site) is refused.
        let mut other = Browser::default();
        let forged = other.post_form(&app, "/user/login", &[("form_token", "x"), ("email", "ui-manager@example.com"), ("password", PASSWORD)]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        assert!(!other.cookies.contains_key("verity_session"));
        // Right password: a session cookie, HttpOnly and SameSite=Lax, and the projects page.
        let ok = browser.sign_in(&app, "UI-Manager@example.com", PASSWORD).await;
        assert_eq!((ok.status, location(&ok)), (StatusCode::SEE_OTHER, "/projects".to_string()), "{}", ok.text);
        let set = ok.headers.get_all("set-cookie").iter().map(|v| v.to_str().expect("ascii").to_string()).find(|c| c.starts_with("verity_session=")).expect("session cookie");
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/"), "{set}");
        assert!(!set.contains("Secure"), "not Secure over plain HTTP unless configured: {set}");
        let csrf = browser.csrf(&app).await;
        // The API accepts the cookie; unsafe methods need the session's CSRF token.
        let me = browser.api(&app, "GET", "/api/current-user/whoami", None, None).await.expect(StatusCode::OK);
        assert_eq!(me["email"], json!("ui-manager@example.com"));
        let before = project_count(&app).await;
        let body = json!({"title": "From the browser", "label_config": crate::common::TEXT_CONFIG});
        browser.api(&app, "POST", "/api/projects", None, Some(body.clone())).await.expect_error(StatusCode::FORBIDDEN, "csrf_failed");
        browser.api(&app, "POST", "/api/projects", Some("wrong-token"), Some(body.clone())).await.expect_error(StatusCode::FORBIDDEN, "csrf_failed");
        assert_eq!(project_count(&app).await, before, "refused calls change nothing");
        browser.api(&app, "POST", "/api/projects", Some(&csrf), Some(body)).await.expect(StatusCode::CREATED);
        // A forged form post (the browser sends the cookie, but the attacker cannot know the token).
        let forged = browser.post_form(&app, "/projects", &[("csrf_token", "guess"), ("title", "Forged"), ("template", "text_classification")]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        assert_eq!(project_count(&app).await, before + 1);
        // A second browser; "sign out" ends one session, "sign out everywhere" all of them.
        let mut second = Browser::default();
        second.sign_in(&app, "ui-manager@example.com", PASSWORD).await;
        let mut third = Browser::default();
        third.sign_in(&app, "ui-manager@example.com", PASSWORD).await;
        let out = browser.post_form(&app, "/user/logout", &[("csrf_token", &csrf)]).await;
        assert_eq!((out.status, location(&out)), (StatusCode::SEE_OTHER, "/user/login".to_string()));
        assert!(!browser.cookies.contains_key("verity_session"), "the cookie is cleared");
        second.api(&app, "GET", "/api/current-user/whoami", None, None).await.expect(StatusCode::OK);
        let second_csrf = second.csrf(&app).await;
        let forged_out = second.post_form(&app, "/user/logout", &[("csrf_token", "nope"), ("everywhere", "1")]).await;
        assert_eq!(forged_out.status, StatusCode::FORBIDDEN);
        third.api(&app, "GET", "/api/current-user/whoami", None, None).await.expect(StatusCode::OK);
        second.post_form(&app, "/user/logout", &[("csrf_token", &second_csrf), ("everywhere", "1")]).await;
        third.api(&app, "GET", "/api/current-user/whoami", None, None).await.expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
        assert_eq!(location(&third.get(&app, "/projects").await), "/user/login?next=%2Fprojects");
        let actions: Vec<String> = app.audit_actions(app.org).await.into_iter().map(|(a, _, _)| a).collect();
        for expected in ["auth.login", "auth.login_failed", "auth.logout", "auth.logout_all"] {
            assert!(actions.iter().any(|a| a == expected), "{expected} not audited: {actions:?}");
        }
    }

    async fn lock_out_after_repeated_failures(app) {
        password_user(&app, "ui-locked@example.com", Role::Annotator).await;
        let mut browser = Browser::default();
        for _ in 0..app.config.login_max_failures {
            let r = browser.sign_in(&app, "ui-locked@example.com", "wrong password!").await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        }
        // Locked: even the right password is refused, with a message saying what to do.
        let locked = browser.sign_in(&app, "ui-locked@example.com", PASSWORD).await;
        assert_eq!(locked.status, StatusCode::LOCKED, "{}", locked.text);
        assert!(locked.text.contains("locked") && locked.text.contains("minute"), "{}", locked.text);
        assert!(!browser.cookies.contains_key("verity_session"));
        let audit = app.audit_actions(app.org).await;
        assert!(audit.iter().any(|(a, o, _)| a == "auth.locked" && o == "denied"), "{audit:?}");
        assert_eq!(audit.iter().filter(|(a, o, _)| a == "auth.login_failed" && o == "failed").count() as u32, app.config.login_max_failures);
        // The lock ends by itself…
        app.sql("update app_user set locked_until = 1 where email = 'ui-locked@example.com'").await.expect("sql");
        let ok = browser.sign_in(&app, "ui-locked@example.com", PASSWORD).await;
        assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.text);
        // …and a successful sign-in resets the count: one more failure does not lock again.
        let mut other = Browser::default();
        assert_eq!(other.sign_in(&app, "ui-locked@example.com", "wrong again!").await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(other.sign_in(&app, "ui-locked@example.com", PASSWORD).await.status, StatusCode::SEE_OTHER);
        // Setting a password (what `verity user set-password` does) unlocks and ends sessions.
        for _ in 0..app.config.login_max_failures {
            other.sign_in(&app, "ui-locked@example.com", "wrong password!").await;
        }
        assert_eq!(other.sign_in(&app, "ui-locked@example.com", PASSWORD).await.status, StatusCode::LOCKED);
        let id = sessions::user_by_email(&app.db, app.org, "ui-locked@example.com").await.expect("q").expect("user");
        sessions::set_password(&app.db, &Actor::instance(app.org, Default::default()), id, "short").await.expect_err("too short");
        sessions::set_password(&app.db, &Actor::instance(app.org, Default::default()), id, "a new password").await.expect("set");
        browser.api(&app, "GET", "/api/current-user/whoami", None, None).await.expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
        assert_eq!(other.sign_in(&app, "ui-locked@example.com", PASSWORD).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(other.sign_in(&app, "ui-locked@example.com", "a new password").await.status, StatusCode::SEE_OTHER);
        assert!(app.audit_actions(app.org).await.iter().any(|(a, _, _)| a == "user.set_password"));
    }

    async fn sign_up_through_an_invitation_link(app) {
        let invitation = app.post("/api/invitations", &app.owner, json!({"role": "reviewer"})).await.expect(StatusCode::CREATED);
        let url = invitation["invite_url"].as_str().expect("invite_url").to_string();
        assert!(url.starts_with("/user/signup?token="), "{url}");
        let mut browser = Browser::default();
        let page = browser.get(&app, &url).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let fields = |page: &Reply, password: &str| {
            vec![
                ("form_token".to_string(), hidden(&page.text, "form_token")),
                ("token".to_string(), hidden(&page.text, "token")),
                ("email".to_string(), "ui-invited@example.com".to_string()),
                ("first_name".to_string(), "In".to_string()),
                ("last_name".to_string(), "Vited".to_string()),
                ("password".to_string(), password.to_string()),
            ]
        };
        // Bad input is explained and uses nothing up.
        let short = fields(&page, "short");
        let refused = browser.post_form(&app, "/user/signup", &as_refs(&short)).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
        assert!(refused.text.contains("at least 8 characters"));
        let good = fields(&refused, PASSWORD);
        let done = browser.post_form(&app, "/user/signup", &as_refs(&good)).await;
        assert_eq!((done.status, location(&done)), (StatusCode::SEE_OTHER, "/projects".to_string()), "{}", done.text);
        let me = browser.api(&app, "GET", "/api/current-user/whoami", None, None).await.expect(StatusCode::OK);
        assert_eq!((me["email"].clone(), me["role"].clone()), (json!("ui-invited@example.com"), json!("RE")));
        // The new account signs in with its password; the link works once.
        let mut later = Browser::default();
        assert_eq!(later.sign_in(&app, "ui-invited@example.com", PASSWORD).await.status, StatusCode::SEE_OTHER);
        let again = later.get(&app, &url).await;
        let reuse = fields(&again, PASSWORD);
        let used = later.post_form(&app, "/user/signup", &as_refs(&reuse)).await;
        assert_eq!(used.status, StatusCode::GONE);
        assert!(used.text.contains("already used"), "{}", used.text);
        // The older spelling of the link still opens the form.
        let legacy = url.replace("?token=", "?invitation=");
        assert_eq!(Browser::default().get(&app, &legacy).await.status, StatusCode::OK);
    }

    async fn pages_show_each_role_what_the_api_permits(app) {
        let annotator = password_user(&app, "ui-annotator@example.com", Role::Annotator).await;
        password_user(&app, "ui-owner2@example.com", Role::Admin).await;
        let p = app.mk_project(&app.owner, json!({"title": "Visible project"})).await;
        let hidden_project = app.mk_project(&app.owner, json!({"title": "Hidden project"})).await;
        app.add_member(p, &annotator, None).await;
        app.mk_tasks(&app.owner, p, 60).await;
        // The annotator: sees their project only, cannot create, no settings.
        let mut ann = Browser::default();
        ann.sign_in(&app, "ui-annotator@example.com", PASSWORD).await;
        let list = ann.get(&app, "/projects").await;
        assert!(list.text.contains("Visible project") && !list.text.contains("Hidden project"), "{}", list.text);
        assert!(!list.text.contains("Create a project"));
        let data = ann.get(&app, &format!("/projects/{p}/data")).await;
        assert_eq!(data.status, StatusCode::OK, "{}", data.text);
        assert!(!data.text.contains("/settings\""), "no settings link for an annotator");
        assert_eq!(ann.get(&app, &format!("/projects/{p}/settings")).await.status, StatusCode::FORBIDDEN);
        // A project out of reach answers as the API does.
        let api = app.get(&format!("/api/projects/{hidden_project}"), &annotator).await.status;
        assert_eq!(ann.get(&app, &format!("/projects/{hidden_project}/data")).await.status, api);
        let (_, stranger) = app.other_org("Other org", "ui-stranger@example.com").await;
        let foreign = app.mk_project(&stranger, json!({"title": "Foreign project"})).await;
        assert_eq!(ann.get(&app, &format!("/projects/{foreign}/data")).await.status, StatusCode::NOT_FOUND);
        let csrf = ann.csrf(&app).await;
        let refused = ann.post_form(&app, &format!("/projects/{p}/settings"), &[("csrf_token", &csrf), ("title", "Taken over"), ("label_config", crate::common::TEXT_CONFIG)]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert_eq!(app.project(p).await["title"], json!("Visible project"));
        let made = ann.post_form(&app, "/projects", &[("csrf_token", &csrf), ("title", "Not allowed"), ("template", "text_classification")]).await;
        assert_eq!(made.status, StatusCode::FORBIDDEN);
        // The task table pages on the server: 50 rows, then 10.
        assert_eq!(data.text.matches("<td class=\"data\">").count(), 50);
        assert!(data.text.contains("Page 1 of 2") && data.text.contains("60 tasks"), "{}", data.text);
        let second = ann.get(&app, &format!("/projects/{p}/data?page=2")).await;
        assert_eq!(second.text.matches("<td class=\"data\">").count(), 10);
        // An admin creates a project from a template, sees it listed, and changes its settings.
        let mut admin = Browser::default();
        admin.sign_in(&app, "ui-owner2@example.com", PASSWORD).await;
        let csrf = admin.csrf(&app).await;
        let bad = admin.post_form(&app, "/projects", &[("csrf_token", &csrf), ("title", "x"), ("template", "text_classification")]).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(bad.text.contains("title"), "{}", bad.text);
        let created = admin.post_form(&app, "/projects", &[("csrf_token", &csrf), ("title", "Entities"), ("description", "people and places"), ("template", "named_entities")]).await;
        assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.text);
        let id: i64 = location(&created).trim_start_matches("/projects/").trim_end_matches("/data").parse().expect("id");
        let project = app.project(id).await;
        assert!(project["label_config"].as_str().expect("config").contains("<Labels name=\"label\""));
        assert_eq!(project["description"], json!("people and places"));
        assert!(admin.get(&app, "/projects").await.text.contains("Entities"));
        let data = admin.get(&app, &format!("/projects/{id}/data")).await;
        assert!(data.text.contains(&format!("/projects/{id}/settings\"")));
        let settings = admin.get(&app, &format!("/projects/{id}/settings")).await;
        assert_eq!(settings.status, StatusCode::OK);
        assert!(settings.text.contains("<label for=\"label_config\">"));
        let invalid = admin.post_form(&app, &format!("/projects/{id}/settings"), &[("csrf_token", &csrf), ("title", "Entities"), ("label_config", "<View><Bogus/></View>")]).await;
        assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
        assert!(invalid.text.contains("Bogus"), "{}", invalid.text);
        let config = project["label_config"].as_str().expect("config").to_string();
        let saved = admin.post_form(&app, &format!("/projects/{id}/settings"), &[("csrf_token", &csrf), ("title", "Entities v2"), ("label_config", &config), ("expert_instruction", "<p>Mark names</p>"), ("show_instruction", "1")]).await;
        assert_eq!((saved.status, location(&saved)), (StatusCode::SEE_OTHER, format!("/projects/{id}/settings?saved=1")));
        let after = app.project(id).await;
        assert_eq!((after["title"].clone(), after["expert_instruction"].clone(), after["show_instruction"].clone()), (json!("Entities v2"), json!("<p>Mark names</p>"), json!(true)));
        // Static assets are embedded.
        let css = admin.get(&app, "/static/app.css").await;
        assert_eq!(css.status, StatusCode::OK);
        assert!(css.headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/css")));
        assert_eq!(admin.get(&app, "/static/nothing.js").await.status, StatusCode::NOT_FOUND);
    }

    async fn data_manager_page_tabs_filters_columns_and_actions(app) {
        let manager = password_user(&app, "dm-manager@example.com", Role::Manager).await;
        let annotator = password_user(&app, "dm-annotator@example.com", Role::Annotator).await;
        // A manager's own project: they hold task.manage there.
        let p = app.mk_project(&manager, json!({"title": "Reviews"})).await;
        app.add_member(p, &annotator, None).await;
        let tasks = app.mk_tasks(&app.owner, p, 8).await;
        for t in &tasks[..3] {
            app.post(&format!("/api/tasks/{t}/annotations"), &app.owner, json!({"result": crate::common::choice("pos")})).await.expect(StatusCode::CREATED);
        }
        let page_path = format!("/projects/{p}/data");
        let mut mgr = Browser::default();
        mgr.sign_in(&app, "dm-manager@example.com", PASSWORD).await;
        let csrf = mgr.csrf(&app).await;
        let first = mgr.get(&app, &page_path).await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.text);
        assert!(first.text.contains("All tasks") && first.text.contains("8 tasks"), "{}", first.text);
        assert!(first.text.contains("id=\"dm-actions\"") && first.text.contains("Delete annotations"), "{}", first.text);
        // A form without the session's token changes nothing.
        let forged = mgr.post_form(&app, &page_path, &[("csrf_token", "forged"), ("op", "add_tab"), ("title", "Forged")]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        assert!(dm_views(&app, p).await.is_empty());
        // A tab is added through the views API's storage, and filtered.
        let added = mgr.post_form(&app, &page_path, &[("csrf_token", &csrf), ("op", "add_tab"), ("title", "Annotated")]).await;
        assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.text);
        let listed = dm_views(&app, p).await;
        assert_eq!(listed.len(), 1);
        let v = listed[0]["id"].as_i64().expect("view id");
        assert_eq!(listed[0]["data"]["title"], json!("Annotated"));
        assert_eq!(location(&added), format!("{page_path}?view={v}"));
        let filter = |op: &'static str, value: &'static str| -> Vec<(String, String)> {
            [("csrf_token", csrf.as_str()), ("op", "filters"), ("view", &v.to_string()), ("conjunction", "and"),
             ("filter", "total_annotations"), ("operator", op), ("value", value), ("value_max", ""),
             ("filter", ""), ("operator", "equal"), ("value", ""), ("value_max", "")]
                .iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
        };
        let applied = mgr.post_form(&app, &page_path, &as_refs(&filter("greater", "0"))).await;
        assert_eq!(applied.status, StatusCode::SEE_OTHER, "{}", applied.text);
        let tab = mgr.get(&app, &format!("{page_path}?view={v}")).await;
        assert!(tab.text.contains("3 tasks"), "{}", tab.text);
        let api = app.get(&format!("/api/tasks?view={v}&include=id"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(api["total"], json!(3), "the page and the API apply the same filters");
        // A bad filter shows the task list's message by the form and saves nothing.
        let bad = mgr.post_form(&app, &page_path, &as_refs(&filter("greater", "many"))).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(bad.text.contains("id=\"filter-error\"") && bad.text.contains("is not a finite number"), "{}", bad.text);
        assert!(bad.text.contains("value=\"many\""), "the form keeps what was sent");
        assert_eq!(dm_views(&app, p).await[0]["data"]["filters"]["items"][0]["value"], json!("0"));
        // Ordering by a column header, both ways.
        let ids_in = |html: &str| -> Vec<i64> {
            html.split("name=\"task\" value=\"").skip(1).filter_map(|s| s.split('"').next()?.parse().ok()).collect()
        };
        let desc = mgr.get(&app, &format!("{page_path}?view={v}&ordering=-id")).await;
        assert_eq!(ids_in(&desc.text), vec![tasks[2], tasks[1], tasks[0]]);
        assert!(desc.text.contains("aria-sort=\"descending\""));
        assert!(desc.text.contains(&format!("data?view={v}&amp;ordering=id\">ID ▼</a>")), "{}", desc.text);
        assert_eq!(ids_in(&mgr.get(&app, &format!("{page_path}?view={v}&ordering=id")).await.text), vec![tasks[0], tasks[1], tasks[2]]);
        assert_eq!(mgr.get(&app, &format!("{page_path}?view={v}&ordering=nonsense")).await.status, StatusCode::BAD_REQUEST);
        // A data field's header sorts too (ADR 0055).
        let by_text = mgr.get(&app, &format!("{page_path}?view={v}&ordering=-data.text")).await;
        assert_eq!(ids_in(&by_text.text), vec![tasks[2], tasks[1], tasks[0]], "{}", by_text.text);
        assert!(by_text.text.contains(&format!("data?view={v}&amp;ordering=data.text\">")), "{}", by_text.text);
        // Columns: the tab's hiddenColumns decide.
        assert!(!tab.text.contains("Inner ID</a></th>") && tab.text.contains("Predictions</a></th>"));
        let cols = mgr.post_form(&app, &page_path, &[("csrf_token", &csrf), ("op", "columns"), ("view", &v.to_string()), ("show", "id"), ("show", "data.text"), ("show", "inner_id")]).await;
        assert_eq!(cols.status, StatusCode::SEE_OTHER, "{}", cols.text);
        let hidden = dm_views(&app, p).await[0]["data"]["hiddenColumns"]["explore"].clone();
        assert!(hidden.as_array().expect("hidden").contains(&json!("tasks:total_predictions")), "{hidden}");
        let tab = mgr.get(&app, &format!("{page_path}?view={v}")).await;
        assert!(tab.text.contains("Inner ID</a></th>") && !tab.text.contains("Predictions</a></th>"), "{}", tab.text);
        assert_eq!(dm_views(&app, p).await[0]["data"]["filters"]["items"][0]["operator"], json!("greater"), "filters kept");
        // Rename.
        let renamed = mgr.post_form(&app, &page_path, &[("csrf_token", &csrf), ("op", "rename_tab"), ("view", &v.to_string()), ("title", "Has annotations")]).await;
        assert_eq!(renamed.status, StatusCode::SEE_OTHER);
        assert_eq!(dm_views(&app, p).await[0]["data"]["title"], json!("Has annotations"));
        // The annotator: the tasks, no actions; the manager's tab is not theirs to change.
        let mut ann = Browser::default();
        ann.sign_in(&app, "dm-annotator@example.com", PASSWORD).await;
        let ann_csrf = ann.csrf(&app).await;
        let seen = ann.get(&app, &format!("{page_path}?view={v}")).await;
        assert_eq!(seen.status, StatusCode::OK, "{}", seen.text);
        assert!(seen.text.contains("Has annotations") && seen.text.contains("3 tasks"), "{}", seen.text);
        assert!(!seen.text.contains("dm-actions") && !seen.text.contains("name=\"task\""), "{}", seen.text);
        assert!(!seen.text.contains("dm-rename-tab") && !seen.text.contains("dm-filters"));
        assert!(app.get(&format!("/api/dm/actions?project={p}"), &annotator).await.expect(StatusCode::OK).as_array().expect("actions").is_empty());
        let run = ann.post_form(&app, &page_path, &[("csrf_token", &ann_csrf), ("op", "action"), ("action", "delete_tasks_annotations"), ("task", &tasks[0].to_string()), ("confirmed", "1")]).await;
        assert_eq!(run.status, StatusCode::FORBIDDEN, "{}", run.text);
        let rename = ann.post_form(&app, &page_path, &[("csrf_token", &ann_csrf), ("op", "rename_tab"), ("view", &v.to_string()), ("title", "Mine")]).await;
        assert_eq!(rename.status, StatusCode::FORBIDDEN, "{}", rename.text);
        let refilter = ann.post_form(&app, &page_path, &[("csrf_token", &ann_csrf), ("op", "filters"), ("view", &v.to_string()), ("filter", "id"), ("operator", "greater"), ("value", "0"), ("value_max", "")]).await;
        assert_eq!(refilter.status, StatusCode::FORBIDDEN);
        assert!(refilter.text.contains("id=\"dm-error\""), "the refusal is shown: {}", refilter.text);
        assert_eq!(annotated_tasks(&app, p).await, 3);
        assert_eq!(dm_views(&app, p).await[0]["data"]["title"], json!("Has annotations"));
        // An action asks first, then runs through the actions API's code.
        let ask = mgr.post_form(&app, &page_path, &[("csrf_token", &csrf), ("op", "action"), ("view", &v.to_string()), ("action", "delete_tasks_annotations"), ("task", &tasks[0].to_string())]).await;
        assert_eq!(ask.status, StatusCode::OK);
        assert!(ask.text.contains("id=\"dm-confirm\"") && ask.text.contains("1 selected task."), "{}", ask.text);
        assert_eq!(annotated_tasks(&app, p).await, 3);
        let done = mgr.post_form(&app, &page_path, &[("csrf_token", &csrf), ("op", "action"), ("view", &v.to_string()), ("action", "delete_tasks_annotations"), ("task", &tasks[0].to_string()), ("ordering", "-id"), ("confirmed", "1")]).await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.text);
        assert!(done.text.contains("aria-sort=\"descending\""), "the ordering shown is kept");
        assert!(done.text.contains("Deleted 1 annotations") && done.text.contains("2 tasks"), "{}", done.text);
        assert_eq!(annotated_tasks(&app, p).await, 2);
        let none = mgr.post_form(&app, &page_path, &[("csrf_token", &csrf), ("op", "action"), ("view", &v.to_string()), ("action", "delete_tasks_annotations"), ("confirmed", "1")]).await;
        assert_eq!(none.status, StatusCode::BAD_REQUEST);
        let all = mgr.post_form(&app, &page_path, &[("csrf_token", &csrf), ("op", "action"), ("view", &v.to_string()), ("action", "delete_tasks_annotations"), ("all", "1"), ("confirmed", "1")]).await;
        assert!(all.text.contains("Deleted 2 annotations") && all.text.contains("0 tasks"), "{}", all.text);
        assert_eq!(annotated_tasks(&app, p).await, 0);
        assert_eq!(app.get(&format!("/api/tasks?project={p}&include=id"), &app.owner).await.expect(StatusCode::OK)["total"], json!(8), "tasks stay");
        // Deleting the tab; the audit log has every change.
        let deleted = mgr.post_form(&app, &page_path, &[("csrf_token", &csrf), ("op", "delete_tab"), ("view", &v.to_string())]).await;
        assert_eq!((deleted.status, location(&deleted)), (StatusCode::SEE_OTHER, page_path.clone()));
        assert!(dm_views(&app, p).await.is_empty());
        let audit: Vec<String> = app.audit_actions(app.org).await.into_iter().map(|(a, _, _)| a).collect();
        for action in ["view.create", "view.update", "view.delete"] {
            assert!(audit.iter().any(|a| a == action), "{action} in {audit:?}");
        }
    }

    async fn data_manager_filters_offer_the_column_catalogue(app) {
        let manager = password_user(&app, "dmc-manager@example.com", Role::Manager).await;
        let annotator = password_user(&app, "dmc-annotator@example.com", Role::Annotator).await;
        let p = app.mk_project(&manager, json!({"title": "Catalogue"})).await;
        app.add_member(p, &annotator, None).await;
        let tasks = app.mk_tasks(&app.owner, p, 4).await;
        for t in &tasks[..2] {
            app.post(&format!("/api/tasks/{t}/annotations"), &app.owner, json!({"result": crate::common::choice("pos")})).await.expect(StatusCode::CREATED);
        }
        app.post(&format!("/api/tasks/{}/annotations", tasks[2]), &manager, json!({"result": crate::common::choice("neg")})).await.expect(StatusCode::CREATED);
        let (owner_id, manager_id) = (app.user_id(&app.owner).await, app.user_id(&manager).await);
        let page_path = format!("/projects/{p}/data");
        let mut mgr = Browser::default();
        mgr.sign_in(&app, "dmc-manager@example.com", PASSWORD).await;
        let csrf = mgr.csrf(&app).await;
        let page = mgr.get(&app, &page_path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        // The picker offers exactly the catalogue's columns, each with the input that fits it.
        let offered = |html: &str| -> Vec<String> {
            let form = html.split("id=\"filter-1\"").nth(1).and_then(|s| s.split("</select>").next()).unwrap_or_default().to_string();
            form.split("<option value=\"").skip(2).filter_map(|s| s.split('"').next().map(str::to_string)).collect()
        };
        let catalogue: Vec<String> = app.get(&format!("/api/dm/columns?project={p}"), &manager).await.expect(StatusCode::OK)["columns"]
            .as_array().expect("columns").iter()
            .filter(|c| c["parent"].is_null() && c["id"] != json!("data"))
            .map(|c| c["id"].as_str().expect("id").to_string())
            .collect();
        let mut expected = catalogue.clone();
        expected.push("data.text".into());
        assert_eq!(offered(&page.text), expected);
        for name in ["completed_at", "annotators", "reviewers", "annotations_results", "predictions_results", "predictions_model_versions", "predictions_score", "ground_truth", "draft_exists", "avg_lead_time"] {
            assert!(catalogue.iter().any(|c| c == name), "{name} in {catalogue:?}");
        }
        for (name, input, operators) in [
            ("annotators", "user", "contains not_contains exists not_exists"),
            ("completed_at", "datetime", "equal not_equal greater greater_or_equal less less_or_equal in not_in empty"),
            ("ground_truth", "boolean", "equal not_equal"),
            ("avg_lead_time", "number", "equal not_equal greater greater_or_equal less less_or_equal in not_in empty"),
            ("annotations_results", "text", "contains not_contains starts_with ends_with equal not_equal exists not_exists"),
        ] {
            let option = format!("<option value=\"{name}\" data-input=\"{input}\" data-operators=\"{operators}\"");
            assert!(page.text.contains(&option), "{option} in {}", page.text);
        }
        assert!(page.text.contains(&format!("<option value=\"{owner_id}\">")), "the people of the organization are offered: {}", page.text);
        // Filtering by an annotator, then by an annotation result, shows the right tasks.
        let post = |rows: &[(&str, &str, &str, &str)], view: Option<i64>| -> Vec<(String, String)> {
            let mut f = vec![("csrf_token".to_string(), csrf.clone()), ("op".into(), "filters".into()), ("conjunction".into(), "and".into())];
            if let Some(v) = view {
                f.push(("view".into(), v.to_string()));
            }
            for (c, o, v, m) in rows {
                for (k, x) in [("filter", c), ("operator", o), ("value", v), ("value_max", m)] {
                    f.push((k.to_string(), x.to_string()));
                }
            }
            f
        };
        let owner = owner_id.to_string();
        let by_owner = mgr.post_form(&app, &page_path, &as_refs(&post(&[("annotators", "contains", &owner, "")], None))).await;
        assert_eq!(by_owner.status, StatusCode::SEE_OTHER, "{}", by_owner.text);
        let v = dm_views(&app, p).await[0]["id"].as_i64().expect("view");
        assert_eq!(dm_views(&app, p).await[0]["data"]["filters"]["items"][0]["value"], json!(owner_id), "a person is stored as a user id");
        let shown = mgr.get(&app, &format!("{page_path}?view={v}")).await;
        assert!(shown.text.contains("2 tasks"), "{}", shown.text);
        assert!(shown.text.contains(&format!("<option value=\"{owner_id}\" selected>")), "the chosen person comes back selected");
        let manager_s = manager_id.to_string();
        mgr.post_form(&app, &page_path, &as_refs(&post(&[("annotators", "contains", &manager_s, "")], Some(v)))).await;
        assert!(mgr.get(&app, &format!("{page_path}?view={v}")).await.text.contains("1 task<"));
        let by_result = mgr.post_form(&app, &page_path, &as_refs(&post(&[("annotations_results", "contains", "pos", "")], Some(v)))).await;
        assert_eq!(by_result.status, StatusCode::SEE_OTHER, "{}", by_result.text);
        assert!(mgr.get(&app, &format!("{page_path}?view={v}")).await.text.contains("2 tasks"));
        // A time from the datetime input is stored as RFC 3339 (UTC) and shown back in the input.
        let timed = mgr.post_form(&app, &page_path, &as_refs(&post(&[("completed_at", "in", "2000-01-01T00:00", "2999-12-31T23:59")], Some(v)))).await;
        assert_eq!(timed.status, StatusCode::SEE_OTHER, "{}", timed.text);
        assert_eq!(dm_views(&app, p).await[0]["data"]["filters"]["items"][0]["value"], json!({"min": "2000-01-01T00:00:00Z", "max": "2999-12-31T23:59:00Z"}));
        let shown = mgr.get(&app, &format!("{page_path}?view={v}")).await;
        assert!(shown.text.contains("3 tasks") && shown.text.contains("value=\"2000-01-01T00:00:00\""), "{}", shown.text);
        // A blind annotator is offered nothing that tells how others labeled, and posting such a
        // column anyway is refused with a message and saves nothing.
        let mut ann = Browser::default();
        ann.sign_in(&app, "dmc-annotator@example.com", PASSWORD).await;
        let ann_csrf = ann.csrf(&app).await;
        let own = ann.post_form(&app, &page_path, &[("csrf_token", &ann_csrf), ("op", "add_tab"), ("title", "Mine")]).await;
        assert_eq!(own.status, StatusCode::SEE_OTHER, "{}", own.text);
        let own_path = location(&own);
        let own_view: i64 = own_path.rsplit('=').next().and_then(|s| s.parse().ok()).expect("view id");
        let seen = ann.get(&app, &own_path).await;
        let theirs: Vec<String> = app.get(&format!("/api/dm/columns?project={p}"), &annotator).await.expect(StatusCode::OK)["columns"]
            .as_array().expect("columns").iter()
            .filter(|c| c["parent"].is_null() && c["id"] != json!("data"))
            .map(|c| c["id"].as_str().expect("id").to_string())
            .chain(["data.text".to_string()])
            .collect();
        assert_eq!(offered(&seen.text), theirs);
        for hidden in ["annotators", "annotations_results", "completed_at", "agreement", "comment_authors"] {
            assert!(!theirs.iter().any(|c| c == hidden), "{hidden} is not offered to a blind annotator");
        }
        assert!(theirs.iter().any(|c| c == "predictions_score"));
        let refused = ann.post_form(&app, &page_path, &[("csrf_token", &ann_csrf), ("op", "filters"), ("view", &own_view.to_string()), ("filter", "annotators"), ("operator", "contains"), ("value", &owner), ("value_max", "")]).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
        assert!(refused.text.contains("id=\"filter-error\"") && refused.text.contains("cannot filter by"), "{}", refused.text);
        let mine = app.get(&format!("/api/dm/views/{own_view}"), &app.owner).await.expect(StatusCode::OK);
        assert!(mine["data"]["filters"].is_null(), "nothing saved: {mine}");
    }

    async fn review_page_opens_a_task_linked_from_the_data_manager(app) {
        let manager = password_user(&app, "rl-manager@example.com", Role::Manager).await;
        let reviewer = password_user(&app, "rl-reviewer@example.com", Role::Reviewer).await;
        let annotator = password_user(&app, "rl-annotator@example.com", Role::Annotator).await;
        let p = app.mk_project(&manager, json!({"title": "Linked reviews"})).await;
        app.add_member(p, &reviewer, None).await;
        app.add_member(p, &annotator, None).await;
        let tasks = app.mk_tasks(&app.owner, p, 3).await;
        let annotate = |token: String, label: &'static str| {
            let app = &app;
            let t = tasks[1];
            async move {
                app.post(&format!("/api/tasks/{t}/annotations"), &token, json!({"result": crate::common::choice(label)})).await.expect(StatusCode::CREATED)["id"].as_i64().expect("id")
            }
        };
        let first = annotate(app.owner.clone(), "pos").await;
        let second = annotate(manager.clone(), "neg").await;
        let data_path = format!("/projects/{p}/data");
        let link = format!("/projects/{p}/review?task={}", tasks[1]);
        // The data manager offers "Review task" on tasks with annotations, to reviewers only.
        let mut rev = Browser::default();
        rev.sign_in(&app, "rl-reviewer@example.com", PASSWORD).await;
        let dm = rev.get(&app, &data_path).await;
        assert_eq!(dm.status, StatusCode::OK, "{}", dm.text);
        assert!(dm.text.contains(&format!("<a href=\"{}\" class=\"dm-review\">Review task {}</a>", escaped(&link), tasks[1])), "{}", dm.text);
        assert!(!dm.text.contains(&format!("review?task={}\"", tasks[0])), "a task without annotations has nothing to review");
        let mut ann = Browser::default();
        ann.sign_in(&app, "rl-annotator@example.com", PASSWORD).await;
        let ann_dm = ann.get(&app, &data_path).await;
        assert_eq!(ann_dm.status, StatusCode::OK);
        assert!(!ann_dm.text.contains("dm-review") && !ann_dm.text.contains("Review</th>"), "{}", ann_dm.text);
        assert_eq!(ann.get(&app, &link).await.status, StatusCode::FORBIDDEN);
        // The link opens the task's first submitted annotation and lists the others.
        let page = rev.get(&app, &link).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert!(page.text.contains("id=\"review-linked\""), "{}", page.text);
        assert!(page.text.contains(&format!("<span id=\"review-annotation\">{first}</span>")), "{}", page.text);
        assert!(page.text.contains(&format!("annotation={second}\">Annotation {second}")), "{}", page.text);
        let other = rev.get(&app, &format!("{link}&annotation={second}")).await;
        assert!(other.text.contains(&format!("<span id=\"review-annotation\">{second}</span>")), "{}", other.text);
        // Accepting through the form reviews it and comes back to the same task.
        let csrf = rev.csrf(&app).await;
        let task = tasks[1].to_string();
        let second_s = second.to_string();
        let accepted = rev.post_form(&app, &format!("/projects/{p}/review"), &[("csrf_token", &csrf), ("annotation", &second_s), ("action", "accept"), ("task", &task)]).await;
        assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{}", accepted.text);
        assert_eq!(location(&accepted), format!("{link}&annotation={second}&done=accepted"));
        let reviews = app.get(&format!("/api/annotation-reviews?annotation={second}"), &app.owner).await.expect(StatusCode::OK);
        assert_eq!(reviews.as_array().map(Vec::len), Some(1), "{reviews}");
        assert_eq!(reviews[0]["accepted"], json!(true));
        let back = rev.get(&app, &location(&accepted)).await;
        assert!(back.text.contains("id=\"review-notice\">Accepted.") && back.text.contains("accepted annotation"), "{}", back.text);
        // A refused review stays on the linked annotation and says why; nothing is stored.
        app.patch(&format!("/api/projects/{p}"), &manager, json!({"review_settings": {"require_comment_on_reject": true}})).await.expect(StatusCode::OK);
        let first_s = first.to_string();
        let refused = rev.post_form(&app, &format!("/projects/{p}/review"), &[("csrf_token", &csrf), ("annotation", &first_s), ("action", "reject"), ("task", &task)]).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
        assert!(refused.text.contains("id=\"review-error\"") && refused.text.contains(&format!("<span id=\"review-annotation\">{first}</span>")), "{}", refused.text);
        assert_eq!(app.get(&format!("/api/annotation-reviews?annotation={first}"), &app.owner).await.expect(StatusCode::OK), json!([]));
        // Bad links: not a number (400), a task of another project or an annotation of another
        // task (404), a task with nothing submitted (404 with what to do).
        assert_eq!(rev.get(&app, &format!("/projects/{p}/review?task=first")).await.status, StatusCode::BAD_REQUEST);
        let elsewhere = app.mk_project(&app.owner, json!({"title": "Elsewhere"})).await;
        let foreign = app.mk_tasks(&app.owner, elsewhere, 1).await[0];
        assert_eq!(rev.get(&app, &format!("/projects/{p}/review?task={foreign}")).await.status, StatusCode::NOT_FOUND);
        assert_eq!(rev.get(&app, &format!("{link}&annotation=999999")).await.status, StatusCode::NOT_FOUND);
        let empty = rev.get(&app, &format!("/projects/{p}/review?task={}", tasks[0])).await;
        assert_eq!(empty.status, StatusCode::NOT_FOUND);
        assert!(empty.text.contains("no submitted annotation to review"), "{}", empty.text);
    }

    async fn review_page_lists_adds_and_resolves_comments(app) {
        let manager = password_user(&app, "rc-manager@example.com", Role::Manager).await;
        let reviewer = password_user(&app, "rc-reviewer@example.com", Role::Reviewer).await;
        let annotator = password_user(&app, "rc-annotator@example.com", Role::Annotator).await;
        let p = app.mk_project(&manager, json!({"title": "Commented reviews"})).await;
        app.add_member(p, &reviewer, None).await;
        app.add_member(p, &annotator, None).await;
        let tasks = app.mk_tasks(&app.owner, p, 2).await;
        let mut ids = Vec::new();
        for t in &tasks {
            let made = app.post(&format!("/api/tasks/{t}/annotations"), &annotator, json!({"result": crate::common::choice("pos")})).await.expect(StatusCode::CREATED);
            ids.push(made["id"].as_i64().expect("id"));
        }
        let (first, second) = (ids[0], ids[1]);
        // Comments written through the API: by the annotation's author and by a manager.
        let asked = app.post("/api/comments", &annotator, json!({"annotation": first, "text": "Is <this> right?"})).await.expect(StatusCode::CREATED);
        let noted = app.post("/api/comments", &manager, json!({"annotation": first, "text": "Check the span"})).await.expect(StatusCode::CREATED);
        let elsewhere = app.post("/api/comments", &manager, json!({"annotation": second, "text": "On the other task"})).await.expect(StatusCode::CREATED);
        let comments_of = |a: i64| {
            let app = &app;
            async move { app.get(&format!("/api/comments?annotation={a}"), &app.owner).await.expect(StatusCode::OK) }
        };
        // The stream's page shows the comments of the annotation under review, escaped, named.
        let mut rev = Browser::default();
        rev.sign_in(&app, "rc-reviewer@example.com", PASSWORD).await;
        let page = rev.get(&app, &format!("/projects/{p}/review")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert!(page.text.contains(&format!("<span id=\"review-annotation\">{first}</span>")), "{}", page.text);
        assert!(page.text.contains(&format!("Comments on annotation {first}")), "{}", page.text);
        assert!(page.text.contains(&format!("id=\"comment-{}\"", asked["id"])) && page.text.contains(&format!("id=\"comment-{}\"", noted["id"])), "{}", page.text);
        assert!(page.text.contains(&escaped("Is <this> right?")) && !page.text.contains("Is <this>"), "{}", page.text);
        assert!(page.text.contains(&format!("<strong>{}</strong>", escaped("rc-manager@example.com"))), "{}", page.text);
        assert!(!page.text.contains("On the other task"), "only this annotation's comments");
        assert!(page.text.contains("value=\"resolve\"") && page.text.contains("id=\"review-comment-form\""), "{}", page.text);
        // Adding one from the stream: stored as the reviewer's, the page comes back with it.
        let csrf = rev.csrf(&app).await;
        let first_s = first.to_string();
        let path = format!("/projects/{p}/review/comments");
        let added = rev.post_form(&app, &path, &[("csrf_token", &csrf), ("annotation", &first_s), ("action", "add"), ("text", "  Looks fine to me  ")]).await;
        assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.text);
        assert_eq!(location(&added), format!("/projects/{p}/review?done=commented#review-comments"));
        let listed = comments_of(first).await;
        assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");
        assert_eq!(listed[2]["text"], json!("Looks fine to me"));
        assert_eq!(listed[2]["created_by"], json!(app.user_id(&reviewer).await));
        let again = rev.get(&app, &format!("/projects/{p}/review?done=commented")).await;
        assert!(again.text.contains("id=\"review-notice\">Comment added.") && again.text.contains("<strong>You</strong>") && again.text.contains("Looks fine to me"), "{}", again.text);
        // Refused: a forged form, an empty text, an unknown action; nothing is stored.
        let forged = rev.post_form(&app, &path, &[("csrf_token", "guess"), ("annotation", &first_s), ("action", "add"), ("text", "forged")]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
        let empty = rev.post_form(&app, &path, &[("csrf_token", &csrf), ("annotation", &first_s), ("action", "add"), ("text", "   ")]).await;
        assert_eq!(empty.status, StatusCode::BAD_REQUEST, "{}", empty.text);
        assert!(empty.text.contains("id=\"review-error\"") && empty.text.contains("must not be empty"), "{}", empty.text);
        let odd = rev.post_form(&app, &path, &[("csrf_token", &csrf), ("annotation", &first_s), ("action", "shout"), ("text", "hey")]).await;
        assert_eq!(odd.status, StatusCode::BAD_REQUEST, "{}", odd.text);
        assert_eq!(comments_of(first).await.as_array().map(Vec::len), Some(3));
        // Resolving from a page opened by link comes back to that task; reopening undoes it.
        let task = tasks[0].to_string();
        let asked_id = asked["id"].to_string();
        let resolved = rev.post_form(&app, &path, &[("csrf_token", &csrf), ("annotation", &first_s), ("task", &task), ("action", "resolve"), ("comment", &asked_id)]).await;
        assert_eq!(resolved.status, StatusCode::SEE_OTHER, "{}", resolved.text);
        assert_eq!(location(&resolved), format!("/projects/{p}/review?task={task}&annotation={first}&done=resolved#review-comments"));
        assert_eq!(comments_of(first).await[0]["is_resolved"], json!(true));
        let shown = rev.get(&app, &format!("/projects/{p}/review?task={task}&annotation={first}&done=resolved")).await;
        assert!(shown.text.contains("Comment resolved.") && shown.text.contains(&format!("id=\"comment-{asked_id}\" class=\"resolved\"")) && shown.text.contains("value=\"reopen\""), "{}", shown.text);
        let reopened = rev.post_form(&app, &path, &[("csrf_token", &csrf), ("annotation", &first_s), ("task", &task), ("action", "reopen"), ("comment", &asked_id)]).await;
        assert_eq!(reopened.status, StatusCode::SEE_OTHER, "{}", reopened.text);
        assert_eq!(comments_of(first).await[0]["is_resolved"], json!(false));
        // A comment of another annotation is not resolved through this one's form.
        let other_id = elsewhere["id"].to_string();
        let crossed = rev.post_form(&app, &path, &[("csrf_token", &csrf), ("annotation", &first_s), ("action", "resolve"), ("comment", &other_id)]).await;
        assert_eq!(crossed.status, StatusCode::NOT_FOUND, "{}", crossed.text);
        assert_eq!(comments_of(second).await[0]["is_resolved"], json!(false));
        // Annotators may not use the review page's forms, even with a valid token.
        let mut ann = Browser::default();
        ann.sign_in(&app, "rc-annotator@example.com", PASSWORD).await;
        let ann_csrf = ann.csrf(&app).await;
        let by_annotator = ann.post_form(&app, &path, &[("csrf_token", &ann_csrf), ("annotation", &first_s), ("action", "add"), ("text", "let me in")]).await;
        assert_eq!(by_annotator.status, StatusCode::FORBIDDEN, "{}", by_annotator.text);
        let by_annotator = ann.post_form(&app, &path, &[("csrf_token", &ann_csrf), ("annotation", &first_s), ("action", "resolve"), ("comment", &asked_id)]).await;
        assert_eq!(by_annotator.status, StatusCode::FORBIDDEN, "{}", by_annotator.text);
        let after = comments_of(first).await;
        assert_eq!(after.as_array().map(Vec::len), Some(3), "{after}");
        assert_eq!(after[0]["is_resolved"], json!(false));
    }

    async fn dashboard_draws_annotations_per_day_and_the_label_distribution(app) {
        let annotator = password_user(&app, "dd-annotator@example.com", Role::Annotator).await;
        let reviewer = password_user(&app, "dd-reviewer@example.com", Role::Reviewer).await;
        let p = app.mk_project(&app.owner, json!({"title": "Per day"})).await;
        app.add_member(p, &annotator, None).await;
        app.add_member(p, &reviewer, None).await;
        let tasks = app.mk_tasks(&app.owner, p, 4).await;
        let mut ids = Vec::new();
        for (t, label) in tasks.iter().zip(["pos", "pos", "neg"]) {
            let a = app.post(&format!("/api/tasks/{t}/annotations"), &annotator, json!({"result": crate::common::choice(label)})).await.expect(StatusCode::CREATED);
            ids.push(a["id"].as_i64().expect("id"));
        }
        app.post(&format!("/api/tasks/{}/annotations", tasks[3]), &annotator, json!({"result": [], "was_cancelled": true})).await.expect(StatusCode::CREATED);
        // One annotation was made three days ago, one 40 days ago (outside the chart's 30 days).
        let day = 86_400_000_000_i64;
        app.sql(&format!("update annotation set created_at = created_at - {} where id = {}", 3 * day, ids[0])).await.expect("backdate");
        app.sql(&format!("update annotation set created_at = created_at - {} where id = {}", 40 * day, ids[1])).await.expect("backdate");
        let date = |days_ago: i64| {
            (time::OffsetDateTime::now_utc() - time::Duration::days(days_ago)).date().to_string()
        };
        let mut rev = Browser::default();
        rev.sign_in(&app, "dd-reviewer@example.com", PASSWORD).await;
        let dash = rev.get(&app, &format!("/projects/{p}/dashboard")).await;
        assert_eq!(dash.status, StatusCode::OK, "{}", dash.text);
        // Thirty day columns; the table lists the days with work: today one submitted and one
        // skipped, three days ago one submitted; the 40-day-old one is not in the chart.
        let chart = dash.text.split("id=\"dashboard-days\"").nth(1).and_then(|s| s.split("</svg>").next()).expect("chart");
        assert_eq!(chart.matches("<rect class=\"track\"").count(), 30, "{chart}");
        assert_eq!(chart.matches("<rect class=\"submitted\"").count(), 2, "{chart}");
        assert_eq!(chart.matches("<rect class=\"skipped\"").count(), 1, "{chart}");
        assert!(chart.contains(&format!("<title>{}: 1 submitted, 1 skipped</title>", date(0))), "{chart}");
        let table = dash.text.split("id=\"dashboard-days-table\"").nth(1).and_then(|s| s.split("</table>").next()).expect("table");
        let rows: Vec<&str> = table.matches("<tr><th scope=\"row\">").collect();
        assert_eq!(rows.len(), 2, "{table}");
        assert!(table.contains(&format!("<th scope=\"row\">{}</th><td>1</td><td>1</td>", date(0))), "{table}");
        assert!(table.contains(&format!("<th scope=\"row\">{}</th><td>1</td><td>0</td>", date(3))), "{table}");
        // The label distribution counts every annotation's choices, whenever made: pos 2, neg 1.
        let labels = dash.text.split("id=\"labels-heading\"").nth(1).and_then(|s| s.split("</section>").next()).expect("labels");
        assert!(labels.contains("<h4 id=\"labels-1\">sentiment</h4>"), "{labels}");
        assert_eq!(labels.matches("<rect class=\"bar choice-bar\"").count(), 2, "{labels}");
        assert!(labels.contains("<tr><th scope=\"row\">pos</th><td>2</td><td>66.7 %</td><td>0</td></tr>"), "{labels}");
        assert!(labels.contains("<tr><th scope=\"row\">neg</th><td>1</td><td>33.3 %</td><td>0</td></tr>"), "{labels}");
        assert!(!dash.text.contains("style=") && !dash.text.contains("<script>"), "inline style or script");
        // A project whose configuration has nothing to count says so.
        let free = app.mk_project(&app.owner, json!({"title": "Free text", "label_config":
            "<View><Text name=\"text\" value=\"$text\"/><TextArea name=\"note\" toName=\"text\"/></View>"})).await;
        app.add_member(free, &reviewer, None).await;
        let empty = rev.get(&app, &format!("/projects/{free}/dashboard")).await;
        assert_eq!(empty.status, StatusCode::OK, "{}", empty.text);
        assert!(empty.text.contains("No label counts"), "{}", empty.text);
    }

    async fn review_page_reviews_the_stream_and_the_dashboard_counts(app) {
        let annotator = password_user(&app, "rv-annotator@example.com", Role::Annotator).await;
        let reviewer = password_user(&app, "rv-reviewer@example.com", Role::Reviewer).await;
        let p = app.mk_project(&app.owner, json!({"title": "To review", "review_settings": {
            "requeue_rejected_tasks_mode": "flexible", "require_comment_on_reject": true}})).await;
        app.add_member(p, &annotator, None).await;
        app.add_member(p, &reviewer, None).await;
        let tasks = app.mk_tasks(&app.owner, p, 2).await;
        let review_path = format!("/projects/{p}/review");
        let dashboard_path = format!("/projects/{p}/dashboard");
        let mut rev = Browser::default();
        rev.sign_in(&app, "rv-reviewer@example.com", PASSWORD).await;
        let csrf = rev.csrf(&app).await;
        // The dashboard before any work; its charts are SVG with a title, no inline style.
        let dash = rev.get(&app, &dashboard_path).await;
        assert_eq!(dash.status, StatusCode::OK, "{}", dash.text);
        assert_eq!((number(&dash.text, "n-tasks"), number(&dash.text, "n-annotations")), ("2".to_string(), "0".to_string()));
        assert!(dash.text.contains("<svg class=\"progress-chart\" role=\"img\"") && dash.text.contains("<title id=\"progress-title\">0 of 2 tasks finished"), "{}", dash.text);
        assert!(!dash.text.contains("style=") && !dash.text.contains("<script>"), "inline style or script");
        assert!(!dash.headers.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default().contains("unsafe"));
        // Nothing submitted yet: nothing to review.
        let empty = rev.get(&app, &review_path).await;
        assert_eq!(empty.status, StatusCode::OK, "{}", empty.text);
        assert!(empty.text.contains("Nothing to review") && !empty.text.contains("review-form"), "{}", empty.text);
        let mut ann_ids = Vec::new();
        for (t, label) in tasks.iter().zip(["pos", "neg"]) {
            let a = app.post(&format!("/api/tasks/{t}/annotations"), &annotator, json!({"result": crate::common::choice(label), "lead_time": 3.5})).await.expect(StatusCode::CREATED);
            ann_ids.push(a["id"].as_i64().expect("id"));
        }
        // The annotator has neither page nor link; the reviewer has both links.
        let mut ann = Browser::default();
        ann.sign_in(&app, "rv-annotator@example.com", PASSWORD).await;
        let data = ann.get(&app, &format!("/projects/{p}/data")).await;
        assert!(!data.text.contains(&format!("{review_path}\"")) && !data.text.contains(&format!("{dashboard_path}\"")), "{}", data.text);
        assert_eq!(ann.get(&app, &review_path).await.status, StatusCode::FORBIDDEN);
        assert_eq!(ann.get(&app, &dashboard_path).await.status, StatusCode::FORBIDDEN);
        let ann_csrf = ann.csrf(&app).await;
        let sneaky = ann.post_form(&app, &review_path, &[("csrf_token", &ann_csrf), ("annotation", &ann_ids[0].to_string()), ("action", "accept")]).await;
        assert_eq!(sneaky.status, StatusCode::FORBIDDEN);
        let data = rev.get(&app, &format!("/projects/{p}/data")).await;
        assert!(data.text.contains(&format!("{review_path}\"")) && data.text.contains(&format!("{dashboard_path}\"")), "{}", data.text);
        // The dashboard counts the annotations.
        let dash = rev.get(&app, &dashboard_path).await;
        assert_eq!((number(&dash.text, "n-annotations"), number(&dash.text, "n-finished")), ("2".to_string(), "2 (100%)".to_string()));
        assert_eq!(dash.text.matches("<rect class=\"bar\"").count(), 1, "one annotator, one bar");
        assert!(dash.text.contains("rv-annotator@example.com"), "{}", dash.text);
        // The review page shows the first annotation of the stream, with the project's reject options.
        let page = rev.get(&app, &review_path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert!(page.text.contains(&format!("<span id=\"review-task\">{}</span>", tasks[0])), "{}", page.text);
        assert_eq!(hidden(&page.text, "annotation"), ann_ids[0].to_string());
        assert!(page.text.contains("<dt>sentiment</dt><dd>pos</dd>") && page.text.contains("No reviews of this task yet"), "{}", page.text);
        assert!(page.text.contains("<label for=\"review-comment\">") && page.text.contains("id=\"reject-remove\""), "{}", page.text);
        // Forged, or without the required comment: refused, nothing stored.
        let forged = rev.post_form(&app, &review_path, &[("csrf_token", "guess"), ("annotation", &ann_ids[0].to_string()), ("action", "accept")]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        let bare = rev.post_form(&app, &review_path, &[("csrf_token", &csrf), ("annotation", &ann_ids[0].to_string()), ("action", "reject")]).await;
        assert_eq!(bare.status, StatusCode::BAD_REQUEST, "{}", bare.text);
        assert!(bare.text.contains("requires a comment") && bare.text.contains(&format!("<span id=\"review-task\">{}</span>", tasks[0])), "{}", bare.text);
        let shared = &app;
        let reviews = |a: i64| async move { shared.get(&format!("/api/annotation-reviews?annotation={a}"), &shared.owner).await.expect(StatusCode::OK) };
        assert_eq!(reviews(ann_ids[0]).await, json!([]));
        // Reject with a comment (send back), then the next annotation; accept it.
        let rejected = rev.post_form(&app, &review_path, &[("csrf_token", &csrf), ("annotation", &ann_ids[0].to_string()), ("action", "reject"), ("comment", "wrong label"), ("reject_action", "requeue")]).await;
        assert_eq!((rejected.status, location(&rejected)), (StatusCode::SEE_OTHER, format!("{review_path}?done=rejected")), "{}", rejected.text);
        let stored = reviews(ann_ids[0]).await;
        assert_eq!((stored[0]["accepted"].clone(), stored[0]["comment"].clone(), stored[0]["reject_action"].clone()), (json!(false), json!("wrong label"), json!("requeue")));
        let next = rev.get(&app, &format!("{review_path}?done=rejected")).await;
        assert!(next.text.contains("Rejected.") && next.text.contains(&format!("<span id=\"review-task\">{}</span>", tasks[1])), "{}", next.text);
        let accepted = rev.post_form(&app, &review_path, &[("csrf_token", &csrf), ("annotation", &ann_ids[1].to_string()), ("action", "accept")]).await;
        assert_eq!(location(&accepted), format!("{review_path}?done=accepted"));
        assert_eq!(reviews(ann_ids[1]).await[0]["accepted"], json!(true));
        assert!(rev.get(&app, &review_path).await.text.contains("Nothing to review"));
        // The annotator reworks the rejected annotation: it is back, with its review history.
        app.patch(&format!("/api/annotations/{}", ann_ids[0]), &annotator, json!({"result": crate::common::choice("neg")})).await.expect(StatusCode::OK);
        let again = rev.get(&app, &review_path).await;
        assert!(again.text.contains("<dt>sentiment</dt><dd>neg</dd>"), "{}", again.text);
        let history = again.text.split("id=\"review-history\"").nth(1).expect("history");
        assert!(history.contains("rv-reviewer@example.com</strong> rejected") && history.contains("<blockquote>wrong label</blockquote>"), "{history}");
        // A fix without the editor's result is explained, not stored.
        let fix = rev.post_form(&app, &review_path, &[("csrf_token", &csrf), ("annotation", &ann_ids[0].to_string()), ("action", "fix")]).await;
        assert_eq!(fix.status, StatusCode::BAD_REQUEST);
        assert_eq!(reviews(ann_ids[0]).await.as_array().map(Vec::len), Some(1));
        // An annotation of another project is not reviewed through this page.
        let other = app.mk_project(&app.owner, json!({})).await;
        app.add_member(other, &reviewer, None).await;
        let other_task = app.mk_tasks(&app.owner, other, 1).await[0];
        let foreign = app.post(&format!("/api/tasks/{other_task}/annotations"), &app.owner, json!({"result": crate::common::choice("pos")})).await.expect(StatusCode::CREATED);
        let foreign_id = foreign["id"].as_i64().expect("id");
        let wrong = rev.post_form(&app, &review_path, &[("csrf_token", &csrf), ("annotation", &foreign_id.to_string()), ("action", "accept")]).await;
        assert_eq!(wrong.status, StatusCode::NOT_FOUND);
        assert_eq!(reviews(foreign_id).await, json!([]));
        // The dashboard now shows the reviews.
        let dash = rev.get(&app, &dashboard_path).await;
        assert_eq!((number(&dash.text, "n-reviews"), number(&dash.text, "n-accepted"), number(&dash.text, "n-rejected")), ("2".to_string(), "1".to_string(), "1".to_string()));
        let audit: Vec<String> = app.audit_actions(app.org).await.into_iter().map(|(a, _, _)| a).collect();
        assert_eq!(audit.iter().filter(|a| a.as_str() == "review.create").count(), 2, "{audit:?}");
    }
}

/// `session_cookie_secure` marks the cookie Secure, and a trusted proxy's
/// `X-Forwarded-Proto: https` does too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_cookie_is_secure_when_configured_or_behind_https() {
    for (secure, trust, proto, expect) in [
        (true, false, "", true),
        (false, true, "https", true),
        (false, false, "https", false),
    ] {
        let app = TestApp::with_config(crate::common::Backend::Sqlite, |c| {
            c.session_cookie_secure = secure;
            c.trust_forwarded_for = trust;
        })
        .await;
        password_user(&app, "ui-secure@example.com", Role::Annotator).await;
        let mut browser = Browser::default();
        let page = browser.get(&app, "/user/login").await;
        let token = hidden(&page.text, "form_token");
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("form_token", token.as_str()),
                ("email", "ui-secure@example.com"),
                ("password", PASSWORD),
            ])
            .finish();
        let mut req = Request::post("/user/login")
            .header("cookie", browser.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded");
        if !proto.is_empty() {
            req = req.header("x-forwarded-proto", proto);
        }
        let reply = app
            .send_unchecked(req.body(Body::from(body)).expect("req"))
            .await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
        let set = reply
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().expect("ascii").to_string())
            .find(|c| c.starts_with("verity_session="))
            .expect("cookie");
        assert_eq!(
            set.contains("; Secure"),
            expect,
            "{secure} {trust} {proto}: {set}"
        );
    }
}

/// The labeling page loads the editor from `editor_dir` (and only the editor's own files from
/// there), under a policy that still allows scripts from this server only; without an editor it
/// says what to install. Only those who may annotate in the project get it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn labeling_page_serves_the_installed_editor() {
    let editor = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        editor.path().join("main.js"),
        "window.LabelStudio = function () {};",
    )
    .expect("js");
    std::fs::write(editor.path().join("main.css"), "body {}").expect("css");
    std::fs::write(editor.path().join("secret.txt"), "not served").expect("other");
    for installed in [false, true] {
        let dir = editor.path().display().to_string();
        let app = TestApp::with_config(crate::common::Backend::Sqlite, |c| {
            if installed {
                c.editor_dir = dir;
            }
        })
        .await;
        let annotator = password_user(&app, "ui-labeler@example.com", Role::Annotator).await;
        password_user(&app, "ui-outsider@example.com", Role::Annotator).await;
        let p = app.mk_project(&app.owner, json!({})).await;
        app.add_member(p, &annotator, None).await;
        let mut browser = Browser::default();
        browser
            .sign_in(&app, "ui-labeler@example.com", PASSWORD)
            .await;
        let page = browser.get(&app, &format!("/projects/{p}/label")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let csp = page
            .headers
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .expect("csp")
            .to_string();
        assert!(csp.contains("script-src 'self';"), "{csp}");
        let script = browser.get(&app, "/static/editor/main.js").await;
        if installed {
            assert!(
                page.text
                    .contains("<script src=\"/static/editor/main.js\">")
                    && page.text.contains("/static/label.js"),
                "{}",
                page.text
            );
            assert!(csp.contains("style-src 'self' 'unsafe-inline'"), "{csp}");
            assert_eq!(script.status, StatusCode::OK);
            assert_eq!(script.text, "window.LabelStudio = function () {};");
        } else {
            assert!(
                page.text.contains("not installed") && !page.text.contains("/static/label.js"),
                "{}",
                page.text
            );
            assert!(!csp.contains("unsafe"), "{csp}");
            assert_eq!(script.status, StatusCode::NOT_FOUND);
        }
        assert_eq!(
            browser.get(&app, "/static/editor/secret.txt").await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            browser.get(&app, "/static/label.js").await.status,
            StatusCode::OK
        );
        let mut outsider = Browser::default();
        outsider
            .sign_in(&app, "ui-outsider@example.com", PASSWORD)
            .await;
        assert_eq!(
            outsider
                .get(&app, &format!("/projects/{p}/label"))
                .await
                .status,
            StatusCode::FORBIDDEN
        );
    }
}

/// The value of the read-only input that shows a token once.
fn shown_token(html: &str) -> String {
    attr_after(html, "id=\"new-token\" type=\"text\" readonly value=\"")
}

/// An API call with `Authorization: <scheme> <token>`.
async fn call_as(
    app: &TestApp,
    scheme: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Reply {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("{scheme} {token}"));
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .expect("request");
    app.send_unchecked(req).await
}

both_backends! {
    async fn account_page_edits_the_name_and_manages_tokens(app) {
        let legacy = password_user(&app, "ui-account@example.com", Role::Annotator).await;
        let mut browser = Browser::default();
        // Not signed in: sent to sign in first.
        assert_eq!(location(&browser.get(&app, "/user/account").await), "/user/login?next=%2Fuser%2Faccount");
        browser.sign_in(&app, "ui-account@example.com", PASSWORD).await;
        let page = browser.get(&app, "/user/account").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert!(page.text.contains("ui-account@example.com") && page.text.contains("No personal access tokens."));
        assert!(page.text.contains(&format!("<code id=\"legacy-preview\">{}…", &legacy[..4])), "the legacy token's preview");
        assert!(page.text.contains("href=\"/user/account\""), "the header links the account page");
        let csrf = hidden(&page.text, "csrf_token");
        // The name: a forged post changes nothing; a valid one is the API's PATCH.
        let forged = browser.post_form(&app, "/user/account", &[("csrf_token", "guess"), ("action", "profile"), ("first_name", "Eve")]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        let saved = browser.post_form(&app, "/user/account", &[("csrf_token", &csrf), ("action", "profile"), ("first_name", " Ada "), ("last_name", "Lovelace")]).await;
        assert_eq!((saved.status, location(&saved)), (StatusCode::SEE_OTHER, "/user/account?done=profile".to_string()));
        let me = app.get("/api/current-user", &legacy).await.expect(StatusCode::OK);
        assert_eq!((me["first_name"].clone(), me["last_name"].clone()), (json!("Ada"), json!("Lovelace")));
        let long = "x".repeat(151);
        let refused = browser.post_form(&app, "/user/account", &[("csrf_token", &csrf), ("action", "profile"), ("first_name", &long), ("last_name", "")]).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert!(number(&refused.text, "account-error").contains("at most 150 characters"), "{}", refused.text);
        let me = app.get("/api/current-user", &legacy).await.expect(StatusCode::OK);
        assert_eq!((me["first_name"].clone(), me["last_name"].clone()), (json!("Ada"), json!("Lovelace")), "a refused change writes nothing");
        // A personal access token: shown once, usable against the API, listed, then revoked.
        let created = browser.post_form(&app, "/user/account", &[("csrf_token", &csrf), ("action", "create_token")]).await;
        assert_eq!(created.status, StatusCode::OK, "{}", created.text);
        let pat = shown_token(&created.text);
        let access = call_as(&app, "Token", &legacy, "POST", "/api/token/refresh", Some(json!({"refresh": pat}))).await.expect(StatusCode::OK)["access"].as_str().expect("access").to_string();
        let whoami = call_as(&app, "Bearer", &access, "GET", "/api/current-user/whoami", None).await.expect(StatusCode::OK);
        assert_eq!(whoami["email"], json!("ui-account@example.com"));
        let listed = browser.get(&app, "/user/account").await;
        assert!(listed.text.contains("1 active token") && !listed.text.contains(&pat), "listed, never shown again");
        let jti = hidden(&listed.text, "jti");
        let unknown = browser.post_form(&app, "/user/account", &[("csrf_token", &csrf), ("action", "revoke_token"), ("jti", "not-a-token")]).await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        let revoked = browser.post_form(&app, "/user/account", &[("csrf_token", &csrf), ("action", "revoke_token"), ("jti", &jti)]).await;
        assert_eq!(location(&revoked), "/user/account?done=revoked");
        call_as(&app, "Token", &legacy, "POST", "/api/token/refresh", Some(json!({"refresh": pat}))).await.expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
        assert!(browser.get(&app, "/user/account").await.text.contains("No personal access tokens."));
        // Someone else's token cannot be revoked from here.
        let other = app.user("ui-account-other@example.com", Role::Annotator).await;
        let theirs = app.post("/api/token", &other, json!({})).await.expect(StatusCode::CREATED)["token"].as_str().expect("token").to_string();
        let their_jti: String = {
            let payload = theirs.split('.').nth(1).expect("payload");
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64");
            serde_json::from_slice::<Value>(&bytes).expect("claims")["jti"].as_str().expect("jti").to_string()
        };
        let foreign = browser.post_form(&app, "/user/account", &[("csrf_token", &csrf), ("action", "revoke_token"), ("jti", &their_jti)]).await;
        assert_eq!(foreign.status, StatusCode::NOT_FOUND);
        call_as(&app, "Token", &other, "POST", "/api/token/refresh", Some(json!({"refresh": theirs}))).await.expect(StatusCode::OK);
        // Resetting the legacy token: the old one stops working, the new one works.
        let reset = browser.post_form(&app, "/user/account", &[("csrf_token", &csrf), ("action", "reset_token")]).await;
        assert_eq!(reset.status, StatusCode::OK);
        let fresh = shown_token(&reset.text);
        app.get("/api/current-user/whoami", &legacy).await.expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
        app.get("/api/current-user/whoami", &fresh).await.expect(StatusCode::OK);
        let actions: Vec<String> = app.audit_actions(app.org).await.into_iter().map(|(a, _, _)| a).collect();
        for expected in ["user.update", "token.create", "token.revoke"] {
            assert!(actions.iter().any(|a| a == expected), "{expected} not audited: {actions:?}");
        }
    }
}

both_backends! {
    async fn members_page_lists_people_and_changes_roles_as_the_api_allows(app) {
        let admin = password_user(&app, "ui-people-admin@example.com", Role::Admin).await;
        let annotator = password_user(&app, "ui-people-an@example.com", Role::Annotator).await;
        let target = app.user_id(&annotator).await;
        let owner_id = app.user_id(&app.owner).await;
        let membership = |id: i64| {
            let app = &app;
            async move { app.get(&format!("/api/organizations/{}/memberships/{id}", app.org), &app.owner).await.expect(StatusCode::OK) }
        };
        // An annotator sees the people, read-only, and cannot post changes.
        let mut an = Browser::default();
        an.sign_in(&app, "ui-people-an@example.com", PASSWORD).await;
        let page = an.get(&app, "/organization").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert!(page.text.contains("ui-people-admin@example.com") && page.text.contains("Last activity"));
        assert!(!page.text.contains("Change role") && !page.text.contains("Invite someone") && !page.text.contains("Deactivate"), "no controls for an annotator");
        let an_csrf = attr_after(&page.text, "name=\"csrf-token\" content=\"");
        let refused = an.post_form(&app, "/organization", &[("csrf_token", &an_csrf), ("action", "role"), ("user_id", &target.to_string()), ("role", "admin")]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        let refused = an.post_form(&app, "/organization", &[("csrf_token", &an_csrf), ("action", "invite"), ("role", "annotator")]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert_eq!(membership(target).await["role"], json!("annotator"));
        // An admin changes roles, but not an owner's and never to owner.
        let mut ad = Browser::default();
        ad.sign_in(&app, "ui-people-admin@example.com", PASSWORD).await;
        let page = ad.get(&app, "/organization").await;
        assert!(page.text.contains(&format!("id=\"role-{target}\"")), "controls for a member");
        assert!(!page.text.contains(&format!("id=\"role-{owner_id}\"")), "no controls for an owner's row");
        assert!(!page.text.contains("<option value=\"owner\""), "an admin is not offered the owner role");
        let csrf = hidden(&page.text, "csrf_token");
        let forged = ad.post_form(&app, "/organization", &[("csrf_token", "guess"), ("action", "role"), ("user_id", &target.to_string()), ("role", "reviewer")]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        let changed = ad.post_form(&app, "/organization", &[("csrf_token", &csrf), ("action", "role"), ("user_id", &target.to_string()), ("role", "reviewer")]).await;
        assert_eq!((changed.status, location(&changed)), (StatusCode::SEE_OTHER, "/organization?done=role".to_string()), "{}", changed.text);
        assert_eq!(membership(target).await["role"], json!("reviewer"));
        let escalate = ad.post_form(&app, "/organization", &[("csrf_token", &csrf), ("action", "role"), ("user_id", &target.to_string()), ("role", "owner")]).await;
        assert_eq!(escalate.status, StatusCode::FORBIDDEN);
        assert!(number(&escalate.text, "members-error").contains("only an owner can grant the owner role"), "{}", escalate.text);
        let demote_owner = ad.post_form(&app, "/organization", &[("csrf_token", &csrf), ("action", "role"), ("user_id", &owner_id.to_string()), ("role", "annotator")]).await;
        assert_eq!(demote_owner.status, StatusCode::FORBIDDEN);
        assert_eq!(membership(owner_id).await["role"], json!("owner"));
        let bad = ad.post_form(&app, "/organization", &[("csrf_token", &csrf), ("action", "role"), ("user_id", &target.to_string()), ("role", "boss")]).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        // Deactivate: the member's session stops working; reactivate brings them back.
        let off = ad.post_form(&app, "/organization", &[("csrf_token", &csrf), ("action", "deactivate"), ("user_id", &target.to_string())]).await;
        assert_eq!(location(&off), "/organization?done=deactivated");
        assert_eq!(membership(target).await["is_active"], json!(false));
        assert_eq!(location(&an.get(&app, "/organization").await), "/user/login?next=%2Forganization");
        let listed = ad.get(&app, "/organization").await;
        assert!(listed.text.contains("aria-label=\"Reactivate ui-people-an@example.com\""));
        let on = ad.post_form(&app, "/organization", &[("csrf_token", &csrf), ("action", "reactivate"), ("user_id", &target.to_string())]).await;
        assert_eq!(location(&on), "/organization?done=reactivated");
        assert_eq!(membership(target).await["is_active"], json!(true));
        // An invitation link: shown once, opens the sign-up form, and can be revoked.
        let invited = ad.post_form(&app, "/organization", &[("csrf_token", &csrf), ("action", "invite"), ("role", "reviewer")]).await;
        assert_eq!(invited.status, StatusCode::OK, "{}", invited.text);
        let url = attr_after(&invited.text, "id=\"invite-url\" type=\"text\" readonly value=\"").replace("&#x2f;", "/").replace("&amp;", "&");
        assert!(url.starts_with("/user/signup?token="), "{url}");
        assert_eq!(Browser::default().get(&app, &url).await.status, StatusCode::OK);
        let pending = app.get("/api/invitations", &admin).await.expect(StatusCode::OK);
        let invitation = pending.as_array().expect("list").iter().find(|i| i["status"] == json!("pending")).expect("pending").clone();
        assert_eq!(invitation["role"], json!("reviewer"));
        let page = ad.get(&app, "/organization").await;
        assert!(page.text.contains("Pending invitation links"));
        let revoke = ad.post_form(&app, "/organization", &[("csrf_token", &csrf), ("action", "revoke_invitation"), ("invitation", &invitation["id"].to_string())]).await;
        assert_eq!(location(&revoke), "/organization?done=revoked");
        let after = app.get("/api/invitations", &admin).await.expect(StatusCode::OK);
        assert!(after.as_array().expect("list").iter().all(|i| i["status"] != json!("pending")), "{after}");
        let actions: Vec<String> = app.audit_actions(app.org).await.into_iter().map(|(a, _, _)| a).collect();
        for expected in ["member.role", "member.deactivate", "member.reactivate", "invitation.create"] {
            assert!(actions.iter().any(|a| a == expected), "{expected} not audited: {actions:?}");
        }
    }
}

both_backends! {
    async fn organization_switcher_changes_the_active_organization(app) {
        let token = password_user(&app, "ui-switch@example.com", Role::Admin).await;
        let me = app.user_id(&token).await;
        password_user(&app, "ui-single@example.com", Role::Annotator).await;
        let (second, second_owner) = app.other_org("Second org", "ui-second-owner@example.com").await;
        let (third, _) = app.other_org("Third org", "ui-third-owner@example.com").await;
        app.mk_project(&app.owner, json!({"title": "First org project"})).await;
        app.mk_project(&second_owner, json!({"title": "Second org project"})).await;
        app.sql(&format!("insert into org_member (organization_id, user_id, role, created_at) values ({second}, {me}, 'owner', 0)")).await.expect("second membership");
        // One organization: no switcher.
        let mut single = Browser::default();
        single.sign_in(&app, "ui-single@example.com", PASSWORD).await;
        assert!(!single.get(&app, "/projects").await.text.contains("id=\"org-switch\""));
        // Two: the header offers both, the active one chosen.
        let mut browser = Browser::default();
        browser.sign_in(&app, "ui-switch@example.com", PASSWORD).await;
        let page = browser.get(&app, "/projects").await;
        assert!(page.text.contains("id=\"org-switch\"") && page.text.contains(">Second org</option>"), "{}", page.text);
        assert!(page.text.contains(&format!("<option value=\"{}\" selected>", app.org)));
        assert!(page.text.contains("First org project") && !page.text.contains("Second org project"));
        let csrf = attr_after(&page.text, "name=\"csrf-token\" content=\"");
        // Refused: a forged form, an organization one is not a member of, not an id.
        let forged = browser.post_form(&app, "/user/organization", &[("csrf_token", "guess"), ("organization", &second.to_string())]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        let foreign = browser.post_form(&app, "/user/organization", &[("csrf_token", &csrf), ("organization", &third.to_string())]).await;
        assert_eq!(foreign.status, StatusCode::NOT_FOUND);
        app.patch("/api/current-user", &token, json!({"active_organization": third})).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        app.patch("/api/current-user", &token, json!({"active_organization": "second"})).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        assert_eq!(app.get("/api/current-user", &token).await.expect(StatusCode::OK)["active_organization"], json!(app.org));
        // Switching: the pages now show the other organization's projects and role.
        let switched = browser.post_form(&app, "/user/organization", &[("csrf_token", &csrf), ("organization", &second.to_string())]).await;
        assert_eq!((switched.status, location(&switched)), (StatusCode::SEE_OTHER, "/projects".to_string()), "{}", switched.text);
        let page = browser.get(&app, "/projects").await;
        assert!(page.text.contains("Second org project") && !page.text.contains("First org project"), "{}", page.text);
        assert!(page.text.contains("(owner)"), "the role in the chosen organization");
        let whoami = browser.api(&app, "GET", "/api/current-user", None, None).await.expect(StatusCode::OK);
        assert_eq!(whoami["active_organization"], json!(second));
        // And back through the API, as Label Studio's frontend does it.
        let back = app.patch("/api/current-user", &token, json!({"active_organization": app.org})).await.expect(StatusCode::OK);
        assert_eq!(back["active_organization"], json!(app.org));
        assert!(browser.get(&app, "/projects").await.text.contains("First org project"));
        // A deactivated membership cannot be switched to.
        app.sql(&format!("update org_member set deactivated_at = 1 where organization_id = {second} and user_id = {me}")).await.expect("deactivate");
        app.patch("/api/current-user", &token, json!({"active_organization": second})).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        assert!(!browser.get(&app, "/projects").await.text.contains("id=\"org-switch\""), "no longer offered");
        for org in [app.org, second] {
            let actions: Vec<String> = app.audit_actions(org).await.into_iter().map(|(a, _, _)| a).collect();
            assert!(actions.iter().any(|a| a == "user.switch_organization"), "not audited in {org}: {actions:?}");
        }
    }
}

/// A data URL of `bytes` as `mime`.
fn data_url(mime: &str, bytes: &[u8]) -> String {
    use base64::Engine as _;
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

both_backends! {
    async fn organization_branding_is_validated_and_shown(app) {
        let org = app.org;
        let path = format!("/api/organizations/{org}");
        let admin = password_user(&app, "ui-brand-admin@example.com", Role::Admin).await;
        let manager = app.user("ui-brand-manager@example.com", Role::Manager).await;
        let png = data_url("image/png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR-tiny");
        let mut big = b"\x89PNG\r\n\x1a\n".to_vec();
        big.resize(64 * 1024 + 1, 0);
        // Bad values: 400, naming the field, and nothing changes.
        for (field, value) in [
            ("accent_color", json!("red")),
            ("accent_color", json!("#fff")),
            ("accent_color", json!("#12345g")),
            ("logo", json!(data_url("image/svg+xml", b"<svg/>"))),
            ("logo", json!(data_url("image/png", b"GIF89a not a png"))),
            ("logo", json!(data_url("image/png", &big))),
            ("logo", json!("https://example.com/logo.png")),
            ("login_redirect_url", json!("https://evil.example/")),
            ("login_redirect_url", json!("//evil.example")),
            ("login_redirect_url", json!("/\\evil.example")),
            ("login_redirect_url", json!("projects")),
            ("product_name", json!("x".repeat(51))),
            ("product_name", json!(5)),
        ] {
            let refused = app.patch(&path, &admin, json!({field: value, "title": "Renamed"})).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
            assert!(refused["validation_errors"][field].is_array(), "{field}: {refused}");
        }
        let before = app.get(&path, &app.owner).await.expect(StatusCode::OK);
        assert_eq!((before["product_name"].clone(), before["logo"].clone(), before["accent_color"].clone(), before["login_redirect_url"].clone()), (json!(""), json!(""), json!(""), json!("")));
        assert_ne!(before["title"], json!("Renamed"), "a refused change writes nothing");
        // Admin roles only.
        app.patch(&path, &manager, json!({"product_name": "Mine"})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        let set = app.patch(&path, &admin, json!({"product_name": "Acme Label", "logo": png, "accent_color": "#7a1f5c", "login_redirect_url": "/organization"})).await.expect(StatusCode::OK);
        assert_eq!((set["product_name"].clone(), set["logo"].clone(), set["accent_color"].clone(), set["login_redirect_url"].clone()), (json!("Acme Label"), json!(png), json!("#7a1f5c"), json!("/organization")));
        // Every page of the organization shows it; the colour comes from a stylesheet of this server.
        let mut browser = Browser::default();
        let signed = browser.sign_in(&app, "ui-brand-admin@example.com", PASSWORD).await;
        assert_eq!(location(&signed), "/organization", "a sign-in lands on the organization's login redirect");
        let page = browser.get(&app, "/projects").await;
        assert!(page.text.contains("<span id=\"product-name\">Acme Label</span>") && page.text.contains("· Acme Label</title>"), "{}", page.text);
        assert!(page.text.contains("<img class=\"logo\" src=\"data:image"), "the logo inline as a data URL");
        assert!(page.text.contains(&format!("href=\"/brand/{org}/accent.css\"")));
        let csp = page.headers.get("content-security-policy").and_then(|v| v.to_str().ok()).expect("csp").to_string();
        assert!(csp.contains("img-src 'self' data:") && !csp.contains("unsafe"), "{csp}");
        let css = browser.get(&app, &format!("/brand/{org}/accent.css")).await;
        assert_eq!(css.status, StatusCode::OK);
        assert!(css.text.contains("--accent: #7a1f5c; --accent-fg: #ffffff; --accent-text: #7a1f5c; --accent-edge: #7a1f5c;"), "{}", css.text);
        // A pale accent is accepted: text on it turns black, and links and outlined buttons
        // use a darker shade of it that reads at 4.5:1 (ADR 0056).
        app.patch(&path, &admin, json!({"accent_color": "#FFE680"})).await.expect(StatusCode::OK);
        let pale = browser.get(&app, &format!("/brand/{org}/accent.css")).await.text;
        assert!(pale.contains("--accent: #ffe680; --accent-fg: #000000; --accent-text: #"), "{pale}");
        assert!(!pale.contains("--accent-text: #ffe680"), "{pale}");
        // ... and a filled button gets a darker edge, so it stands out from the page at 3:1.
        assert!(pale.contains("--accent-edge: #") && !pale.contains("--accent-edge: #ffe680"), "{pale}");
        app.patch(&path, &admin, json!({"accent_color": "#7a1f5c"})).await.expect(StatusCode::OK);
        assert!(browser.get(&app, "/organization").await.text.contains("Acme Label"));
        // The sign-in page of the organization's link shows it; the plain one does not.
        let mut anonymous = Browser::default();
        let branded = anonymous.get(&app, &format!("/user/login?org={org}")).await;
        assert!(branded.text.contains("Sign in to Acme Label") && branded.text.contains(&format!("href=\"/brand/{org}/accent.css\"")), "{}", branded.text);
        let plain = anonymous.get(&app, "/user/login").await;
        assert!(!plain.text.contains("Acme Label") && plain.text.contains("<span id=\"product-name\">Verity</span>"));
        assert_eq!(anonymous.get(&app, "/brand/999999/accent.css").await.text, "", "nothing for an unknown organization");
        // An explicit destination still wins over the redirect.
        anonymous.get(&app, "/user/login").await;
        let token = hidden(&anonymous.get(&app, "/user/login?next=%2Fuser%2Faccount").await.text, "form_token");
        let to = anonymous.post_form(&app, "/user/login", &[("form_token", &token), ("email", "ui-brand-admin@example.com"), ("password", PASSWORD), ("next", "/user/account")]).await;
        assert_eq!(location(&to), "/user/account");
        // "" clears every field.
        app.patch(&path, &admin, json!({"product_name": "", "logo": "", "accent_color": "", "login_redirect_url": ""})).await.expect(StatusCode::OK);
        let page = browser.get(&app, "/projects").await;
        assert!(page.text.contains("<span id=\"product-name\">Verity</span>") && !page.text.contains("accent.css") && !page.text.contains("class=\"logo\""));
        assert_eq!(location(&Browser::default().sign_in(&app, "ui-brand-admin@example.com", PASSWORD).await), "/projects");
        let audit: Vec<String> = app.audit_actions(org).await.into_iter().map(|(a, _, _)| a).collect();
        assert!(audit.iter().filter(|a| a.as_str() == "organization.update").count() >= 2, "{audit:?}");
    }
}

/// Text as the templates write it (HTML-escaped), to find an API message in a page.
pub(crate) fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
        .replace('/', "&#x2f;")
}

/// How many tasks project `p` has, through the API.
pub(crate) async fn task_total(app: &TestApp, p: i64) -> i64 {
    app.get(&format!("/api/tasks?project={p}&include=id"), &app.owner)
        .await
        .expect(StatusCode::OK)["total"]
        .as_i64()
        .expect("total")
}

/// Reloads `path` (a page that follows a job) until it no longer reloads itself (the job has
/// ended); answers the last page.
pub(crate) async fn follow(browser: &mut Browser, app: &TestApp, path: &str) -> Reply {
    for _ in 0..500 {
        let page = browser.get(app, path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        if !page.text.contains("http-equiv=\"refresh\"") {
            return page;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{path} kept following a job");
}

both_backends! {
    // The import page: files go through the API's importer (task files at once, media as a
    // job the page follows), a bad file shows the API's message and imports nothing, a form
    // without the session's token is refused, and only roles with task.manage see or use it.
    async fn import_page_uploads_through_the_api_importer(app) {
        password_user(&app, "io-admin@example.com", Role::Admin).await;
        let annotator = password_user(&app, "io-annotator@example.com", Role::Annotator).await;
        let p = app.mk_project(&app.owner, json!({"title": "Imports", "label_config": crate::common::TEXT_CONFIG})).await;
        app.add_member(p, &annotator, None).await;
        let mut admin = Browser::default();
        admin.sign_in(&app, "io-admin@example.com", PASSWORD).await;
        let csrf = admin.csrf(&app).await;
        let data = admin.get(&app, &format!("/projects/{p}/data")).await;
        assert!(data.text.contains(&format!("href=\"/projects/{p}/data/import\" id=\"dm-import\"")), "{}", data.text);
        assert!(data.text.contains(&format!("href=\"/projects/{p}/data/export\" id=\"dm-export\"")));
        let page = admin.get(&app, &format!("/projects/{p}/data/import")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert!(page.text.contains("enctype=\"multipart/form-data\"") && page.text.contains("id=\"no-storages\""), "{}", page.text);
        let import_path = format!("/projects/{p}/data/import");

        // A CSV file: imported while the page waits, the result shown.
        let csv = b"text\nhello\n\"two, words\"\n";
        let done = admin.post_multipart(&app, &import_path, &[("csrf_token", &csrf), ("url", "")], &[("first.csv", csv)]).await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.text);
        assert!(done.text.contains("id=\"import-result\">Imported 2 tasks"), "{}", done.text);
        assert_eq!(task_total(&app, p).await, 2);
        let listed = admin.get(&app, &format!("/projects/{p}/data")).await;
        assert!(listed.text.contains("two, words"), "{}", listed.text);

        // A bad task file: the API's own message, nothing imported.
        let bad: &[u8] = br#"[{"text": "fine"}, 7]"#;
        let (content_type, body) = multipart_body(&[], &[("bad.json", bad)]);
        let api = app.post_raw(&format!("/api/projects/{p}/import"), &app.owner, &content_type, body).await;
        let message = api.expect_error(StatusCode::BAD_REQUEST, "invalid_import")["detail"].as_str().expect("detail").to_string();
        let refused = admin.post_multipart(&app, &import_path, &[("csrf_token", &csrf)], &[("bad.json", bad)]).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
        assert!(refused.text.contains(&escaped(&message)), "{message} in {}", refused.text);
        assert!(refused.text.contains("id=\"import-error\""));
        // A file type the API does not import, and a form with nothing to import.
        let exe = admin.post_multipart(&app, &import_path, &[("csrf_token", &csrf)], &[("tool.exe", b"MZ")]).await;
        assert_eq!(exe.status, StatusCode::BAD_REQUEST);
        assert!(exe.text.contains("tool.exe: not a file type that can be imported"), "{}", exe.text);
        let empty = admin.post_multipart(&app, &import_path, &[("csrf_token", &csrf), ("url", "")], &[("", b"")]).await;
        assert_eq!(empty.status, StatusCode::BAD_REQUEST);
        assert!(empty.text.contains("Choose one or more files"), "{}", empty.text);
        let both = admin.post_multipart(&app, &import_path, &[("csrf_token", &csrf), ("url", "https://example.com/t.json")], &[("more.csv", csv)]).await;
        assert_eq!(both.status, StatusCode::BAD_REQUEST);
        assert!(both.text.contains("not both"), "{}", both.text);
        // CSRF: a wrong token, or a file sent before any token, is refused before anything is stored.
        let forged = admin.post_multipart(&app, &import_path, &[("csrf_token", "forged")], &[("more.csv", csv)]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        assert!(forged.text.contains("not sent from a page of this site"), "{}", forged.text);
        let tokenless = admin.post_multipart(&app, &import_path, &[], &[("more.csv", csv)]).await;
        assert_eq!(tokenless.status, StatusCode::FORBIDDEN);
        assert_eq!(task_total(&app, p).await, 2, "nothing imported by refused forms");

        // A media file runs as a job: the page follows it (reloading) until it has ended.
        let queued = admin.post_multipart(&app, &import_path, &[("csrf_token", &csrf)], &[("note.txt", b"a text file")]).await;
        assert_eq!(queued.status, StatusCode::SEE_OTHER, "{}", queued.text);
        let status_path = location(&queued);
        assert!(status_path.starts_with(&format!("/projects/{p}/data/import/")), "{status_path}");
        let waiting = admin.get(&app, &status_path).await;
        assert_eq!(waiting.status, StatusCode::OK, "{}", waiting.text);
        assert!(waiting.text.contains("http-equiv=\"refresh\"") && waiting.text.contains("data-status=\"created\""), "{}", waiting.text);
        let _worker = crate::webhooks::start_worker(&app);
        let ended = follow(&mut admin, &app, &status_path).await;
        assert!(ended.text.contains("data-status=\"completed\"") && ended.text.contains("imported 1 task "), "{}", ended.text);
        assert_eq!(task_total(&app, p).await, 3);
        // A job that fails shows the importer's message; nothing of it is imported.
        let failing = admin.post_multipart(&app, &import_path, &[("csrf_token", &csrf)], &[("bad.json", bad), ("other.txt", b"text")]).await;
        assert_eq!(failing.status, StatusCode::SEE_OTHER, "{}", failing.text);
        let failed = follow(&mut admin, &app, &location(&failing)).await;
        assert!(failed.text.contains("data-status=\"failed\"") && failed.text.contains("id=\"import-error\""), "{}", failed.text);
        assert!(failed.text.contains(&escaped(&message)), "{message} in {}", failed.text);
        assert_eq!(task_total(&app, p).await, 3);

        // An annotator: no links, and the pages and forms answer 403 as the API does.
        let mut ann = Browser::default();
        ann.sign_in(&app, "io-annotator@example.com", PASSWORD).await;
        let ann_csrf = ann.csrf(&app).await;
        let data = ann.get(&app, &format!("/projects/{p}/data")).await;
        assert_eq!(data.status, StatusCode::OK);
        assert!(!data.text.contains("/data/import") && !data.text.contains("/data/export"), "{}", data.text);
        assert_eq!(ann.get(&app, &import_path).await.status, StatusCode::FORBIDDEN);
        assert_eq!(ann.get(&app, &status_path).await.status, StatusCode::FORBIDDEN);
        let tried = ann.post_multipart(&app, &import_path, &[("csrf_token", &ann_csrf)], &[("mine.csv", csv)]).await;
        assert_eq!(tried.status, StatusCode::FORBIDDEN);
        assert!(tried.text.contains("task.manage"), "{}", tried.text);
        assert_eq!(ann.get(&app, &format!("/projects/{p}/data/export")).await.status, StatusCode::FORBIDDEN);
        let snap = ann.post_form(&app, &format!("/projects/{p}/data/export"), &[("csrf_token", &ann_csrf), ("op", "snapshot")]).await;
        assert_eq!(snap.status, StatusCode::FORBIDDEN);
        let sync = ann.post_form(&app, &format!("/projects/{p}/data/import/sync"), &[("csrf_token", &ann_csrf), ("type", "localfiles"), ("storage", "1")]).await;
        assert_eq!(sync.status, StatusCode::FORBIDDEN);
        assert_eq!(task_total(&app, p).await, 3);
        assert_eq!(app.get(&format!("/api/projects/{p}/exports"), &app.owner).await.expect(StatusCode::OK), json!([]));
    }

    // The export page: the project's formats (those that do not fit disabled, with the reason),
    // a direct download through the API, and snapshots created, followed, downloaded and
    // deleted through the snapshot API's code; forms without the session's token are refused.
    async fn export_page_downloads_and_manages_snapshots(app) {
        password_user(&app, "ex-admin@example.com", Role::Admin).await;
        let p = app.mk_project(&app.owner, json!({"title": "Exports", "label_config": crate::common::TEXT_CONFIG})).await;
        app.mk_tasks(&app.owner, p, 3).await;
        let mut admin = Browser::default();
        admin.sign_in(&app, "ex-admin@example.com", PASSWORD).await;
        let csrf = admin.csrf(&app).await;
        let export_path = format!("/projects/{p}/data/export");
        let page = admin.get(&app, &export_path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert!(page.text.contains("id=\"format-JSON\" name=\"exportType\" value=\"JSON\" checked"), "{}", page.text);
        // COCO does not fit a text project: disabled, with the refusal an export would answer.
        let coco = app.get(&format!("/api/projects/{p}/export?exportType=COCO"), &app.owner).await;
        assert_eq!(coco.status, StatusCode::BAD_REQUEST);
        let reason = coco.body["detail"].as_str().expect("detail").to_string();
        assert!(page.text.contains("id=\"format-COCO\" name=\"exportType\" value=\"COCO\" disabled"), "{}", page.text);
        assert!(page.text.contains(&format!("id=\"reason-COCO\">Not available: {}", escaped(&reason))), "{reason} in {}", page.text);
        assert!(page.text.contains("id=\"no-snapshots\""));
        // The download form goes to the API's export, which takes the session cookie.
        assert!(page.text.contains(&format!("action=\"/api/projects/{p}/export\"")));
        let file = admin.get(&app, &format!("/api/projects/{p}/export?exportType=JSON&download_all_tasks=true")).await;
        assert_eq!(file.status, StatusCode::OK, "{}", file.text);
        assert_eq!(file.body.as_array().map(Vec::len), Some(3), "{}", file.text);

        // CSRF: refused, nothing created.
        let forged = admin.post_form(&app, &export_path, &[("csrf_token", "forged"), ("op", "snapshot")]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        assert_eq!(app.get(&format!("/api/projects/{p}/exports"), &app.owner).await.expect(StatusCode::OK), json!([]));
        // A snapshot: created, followed until written, downloaded.
        let made = admin.post_form(&app, &export_path, &[("csrf_token", &csrf), ("op", "snapshot"), ("title", "Weekly")]).await;
        assert_eq!((made.status, location(&made)), (StatusCode::SEE_OTHER, export_path.clone()), "{}", made.text);
        let listed = app.get(&format!("/api/projects/{p}/exports"), &app.owner).await.expect(StatusCode::OK);
        let sid = listed[0]["id"].as_i64().expect("snapshot id");
        assert_eq!(listed[0]["title"], json!("Weekly"));
        let waiting = admin.get(&app, &export_path).await;
        assert!(waiting.text.contains("http-equiv=\"refresh\"") && waiting.text.contains("data-status=\"created\""), "{}", waiting.text);
        assert!(!waiting.text.contains("class=\"download\""), "no download before it is written");
        let _worker = crate::webhooks::start_worker(&app);
        let written = follow(&mut admin, &app, &export_path).await;
        assert!(written.text.contains("data-status=\"completed\""), "{}", written.text);
        let link = format!("/api/projects/{p}/exports/{sid}/download?exportType=JSON");
        assert!(written.text.contains(&format!("href=\"{link}\" class=\"download\"")), "{}", written.text);
        let downloaded = admin.get(&app, &link).await;
        assert_eq!(downloaded.status, StatusCode::OK);
        assert_eq!(downloaded.body.as_array().map(Vec::len), Some(3), "{}", downloaded.text);
        // A second snapshot of only annotated tasks has none.
        admin.post_form(&app, &export_path, &[("csrf_token", &csrf), ("op", "snapshot"), ("only_with_annotations", "1")]).await;
        follow(&mut admin, &app, &export_path).await;
        let listed = app.get(&format!("/api/projects/{p}/exports"), &app.owner).await.expect(StatusCode::OK);
        let second = listed.as_array().expect("list").iter().find(|s| s["id"] != json!(sid)).expect("second snapshot")["id"].as_i64().expect("id");
        let only_annotated = admin.get(&app, &format!("/api/projects/{p}/exports/{second}/download?exportType=JSON")).await;
        assert_eq!(only_annotated.body, json!([]), "{}", only_annotated.text);
        // Delete: gone from the API too; a snapshot that does not exist is a 404.
        let deleted = admin.post_form(&app, &export_path, &[("csrf_token", &csrf), ("op", "delete"), ("snapshot", &sid.to_string())]).await;
        assert_eq!(deleted.status, StatusCode::SEE_OTHER);
        app.get(&format!("/api/projects/{p}/exports/{sid}"), &app.owner).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        let again = admin.post_form(&app, &export_path, &[("csrf_token", &csrf), ("op", "delete"), ("snapshot", &sid.to_string())]).await;
        assert_eq!(again.status, StatusCode::NOT_FOUND);
        let audit = app.audit_actions(app.org).await;
        assert!(audit.iter().any(|(a, _, _)| a.contains("export")), "{audit:?}");
    }
}

/// The import page lists the project's source storages and starts their sync as the API does,
/// then follows it until it has ended.
async fn import_page_syncs_storages(backend: crate::common::Backend) {
    let base = tempfile::tempdir().expect("tempdir");
    let root = base.path().join("root");
    std::fs::create_dir_all(root.join("json")).expect("mkdir");
    std::fs::write(
        root.join("json/tasks.json"),
        json!([{"text": "from storage 1"}, {"text": "from storage 2"}]).to_string(),
    )
    .expect("write");
    let root_text = root.display().to_string();
    let app = TestApp::with_config(backend, move |c| c.local_files_root = root_text).await;
    password_user(&app, "sync-admin@example.com", Role::Admin).await;
    let p = app
        .mk_project(
            &app.owner,
            json!({"label_config": crate::common::TEXT_CONFIG}),
        )
        .await;
    let storage = app
        .post(
            "/api/storages/localfiles",
            &app.owner,
            json!({"project": p, "title": "Shared drive", "path": root.join("json").display().to_string()}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_i64()
        .expect("id");
    let mut admin = Browser::default();
    admin
        .sign_in(&app, "sync-admin@example.com", PASSWORD)
        .await;
    let csrf = admin.csrf(&app).await;
    let import_path = format!("/projects/{p}/data/import");
    let page = admin.get(&app, &import_path).await;
    assert!(
        page.text
            .contains(&format!("data-storage=\"localfiles-{storage}\""))
            && page.text.contains("Shared drive"),
        "{}",
        page.text
    );
    let sync_path = format!("/projects/{p}/data/import/sync");
    // Refused: a forged form, and a storage that is not this project's.
    let forged = admin
        .post_form(
            &app,
            &sync_path,
            &[
                ("csrf_token", "forged"),
                ("type", "localfiles"),
                ("storage", &storage.to_string()),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let other = admin
        .post_form(
            &app,
            &sync_path,
            &[
                ("csrf_token", &csrf),
                ("type", "s3"),
                ("storage", &storage.to_string()),
            ],
        )
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(task_total(&app, p).await, 0);
    let started = admin
        .post_form(
            &app,
            &sync_path,
            &[
                ("csrf_token", &csrf),
                ("type", "localfiles"),
                ("storage", &storage.to_string()),
            ],
        )
        .await;
    assert_eq!(
        (started.status, location(&started)),
        (StatusCode::SEE_OTHER, format!("{import_path}?sync=1"))
    );
    let queued = admin.get(&app, &format!("{import_path}?sync=1")).await;
    assert!(
        queued.text.contains("http-equiv=\"refresh\"") && queued.text.contains(">queued"),
        "{}",
        queued.text
    );
    let _worker = crate::webhooks::start_worker(&app);
    let synced = follow(&mut admin, &app, &format!("{import_path}?sync=1")).await;
    assert!(synced.text.contains(">completed"), "{}", synced.text);
    assert_eq!(task_total(&app, p).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn import_page_syncs_storages_sqlite() {
    import_page_syncs_storages(crate::common::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn import_page_syncs_storages_postgres() {
    import_page_syncs_storages(crate::common::Backend::Postgres).await;
}

/// The cell texts of task `id`'s row in the data manager's table (tags stripped).
fn row_cells(html: &str, id: i64) -> Vec<String> {
    let marker = format!("title=\"Open task {id} in the editor\">");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("row {id} in {html}"))
        + marker.len();
    let row = html[start..].split("</tr>").next().unwrap_or_default();
    let first = row
        .split("</td>")
        .next()
        .unwrap_or_default()
        .replace("</a>", "");
    let mut cells = vec![first.trim().to_string()];
    for cell in row.split("</td>").skip(1) {
        if let Some((_, text)) = cell.split_once('>') {
            cells.push(text.trim().to_string());
        }
    }
    cells
}

both_backends! {
    async fn data_manager_draws_the_catalogue_columns_as_cells(app) {
        let manager = password_user(&app, "dm-cells-manager@example.com", Role::Manager).await;
        let annotator = password_user(&app, "dm-cells-an@example.com", Role::Annotator).await;
        let p = app.mk_project(&manager, json!({"title": "Cells"})).await;
        app.add_member(p, &annotator, None).await;
        let tasks = app.mk_tasks(&app.owner, p, 2).await;
        let annotation = app.post(&format!("/api/tasks/{}/annotations", tasks[0]), &annotator, json!({"result": crate::common::choice("pos")})).await.expect(StatusCode::CREATED)["id"].as_i64().expect("id");
        app.post("/api/predictions", &app.owner, json!({"task": tasks[0], "result": crate::common::choice("pos"), "score": 0.75, "model_version": "m1"})).await.expect(StatusCode::CREATED);
        app.post(&format!("/api/tasks/{}/drafts", tasks[1]), &manager, json!({"result": crate::common::choice("neg")})).await.expect(StatusCode::CREATED);
        app.post("/api/comments", &manager, json!({"annotation": annotation, "text": "Looks right"})).await.expect(StatusCode::CREATED);
        let page_path = format!("/projects/{p}/data");
        let mut mgr = Browser::default();
        mgr.sign_in(&app, "dm-cells-manager@example.com", PASSWORD).await;
        let csrf = mgr.csrf(&app).await;
        let added = mgr.post_form(&app, &page_path, &[("csrf_token", &csrf), ("op", "add_tab"), ("title", "Everything")]).await;
        assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.text);
        let v = dm_views(&app, p).await[0]["id"].as_i64().expect("view id");
        // The new columns are offered as toggles and hidden until a tab shows them.
        let before = mgr.get(&app, &format!("{page_path}?view={v}")).await;
        for column in ["completed_at", "annotators", "predictions_score", "reviewers", "draft_exists", "comment_authors", "overlap"] {
            assert!(before.text.contains(&format!("value=\"{column}\"")), "{column} is a column toggle");
        }
        assert!(!before.text.contains("Annotated by</a></th>"));
        let mut fields = vec![("csrf_token", csrf.as_str()), ("op", "columns")];
        let view = v.to_string();
        fields.push(("view", &view));
        for column in ["id", "completed_at", "annotators", "predictions_score", "reviewers", "draft_exists", "comment_authors", "overlap"] {
            fields.push(("show", column));
        }
        let cols = mgr.post_form(&app, &page_path, &fields).await;
        assert_eq!(cols.status, StatusCode::SEE_OTHER, "{}", cols.text);
        let page = mgr.get(&app, &format!("{page_path}?view={v}")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        for header in ["Completed</a></th>", "Annotated by</a></th>", "Prediction score</a></th>", "Reviewers</a></th>", "Drafts</a></th>", "Overlap</a></th>", ">Comment authors</th>"] {
            assert!(page.text.contains(header), "{header}: {}", page.text);
        }
        let task = app.get(&format!("/api/tasks/{}", tasks[0]), &app.owner).await.expect(StatusCode::OK);
        let completed = task["completed_at"].as_str().expect("completed_at").to_string();
        assert_eq!(
            row_cells(&page.text, tasks[0])[..8],
            [tasks[0].to_string(), completed, "dm-cells-an@example.com".into(), "0.75".into(), String::new(), "no".into(), "dm-cells-manager@example.com".into(), "1".into()],
        );
        assert_eq!(
            row_cells(&page.text, tasks[1])[..8],
            [tasks[1].to_string(), String::new(), String::new(), String::new(), String::new(), "yes".into(), String::new(), "1".into()],
        );
        // Ordering by a new column works from its header.
        let ordered = mgr.get(&app, &format!("{page_path}?view={v}&ordering=-predictions_score")).await;
        assert_eq!(ordered.status, StatusCode::OK, "{}", ordered.text);
        // An annotator gets exactly the columns the catalogue offers them: none that tell of
        // others' work or of who commented (ADR 0051, 0057).
        let catalogue = app.get(&format!("/api/dm/columns?project={p}"), &annotator).await.expect(StatusCode::OK);
        let offered: Vec<&str> = catalogue["columns"].as_array().expect("columns").iter().filter_map(|c| c["id"].as_str()).collect();
        let mut ann = Browser::default();
        ann.sign_in(&app, "dm-cells-an@example.com", PASSWORD).await;
        let seen = ann.get(&app, &format!("{page_path}?view={v}")).await;
        assert_eq!(seen.status, StatusCode::OK, "{}", seen.text);
        for (column, header) in [("completed_at", "Completed"), ("annotators", "Annotated by"), ("predictions_score", "Prediction score"), ("reviewers", "Reviewers"), ("draft_exists", "Drafts"), ("comment_authors", "Comment authors"), ("overlap", "Overlap")] {
            assert_eq!(seen.text.contains(&format!("{header}</a></th>")) || seen.text.contains(&format!(">{header}</th>")), offered.contains(&column), "{column}: {}", seen.text);
        }
        assert!(!offered.contains(&"comment_authors"));
        assert!(!seen.text.contains("dm-cells-manager@example.com"), "{}", seen.text);
    }

    async fn data_manager_draws_results_ground_truth_lead_time_and_model_versions_as_cells(app) {
        let manager = password_user(&app, "dm-nested-manager@example.com", Role::Manager).await;
        let annotator = password_user(&app, "dm-nested-an@example.com", Role::Annotator).await;
        let p = app.mk_project(&manager, json!({"title": "Nested cells"})).await;
        app.add_member(p, &annotator, None).await;
        let tasks = app.mk_tasks(&app.owner, p, 3).await;
        let work = [
            (tasks[0], &annotator, json!({"result": crate::common::choice("pos"), "lead_time": 12.0})),
            (tasks[0], &manager, json!({"result": crate::common::choice("neg"), "lead_time": 7.0, "ground_truth": true})),
            // A skip counts for neither the results nor the lead time.
            (tasks[1], &annotator, json!({"result": [], "was_cancelled": true, "lead_time": 99.0})),
        ];
        for (task, who, body) in work {
            app.post(&format!("/api/tasks/{task}/annotations"), who, body).await.expect(StatusCode::CREATED);
        }
        for (result, version) in [("pos", "model-a"), ("neg", "model-b"), ("pos", "model-a")] {
            app.post("/api/predictions", &app.owner, json!({"task": tasks[0], "result": crate::common::choice(result), "score": 0.5, "model_version": version})).await.expect(StatusCode::CREATED);
        }
        let page_path = format!("/projects/{p}/data");
        let mut mgr = Browser::default();
        mgr.sign_in(&app, "dm-nested-manager@example.com", PASSWORD).await;
        let csrf = mgr.csrf(&app).await;
        let added = mgr.post_form(&app, &page_path, &[("csrf_token", &csrf), ("op", "add_tab"), ("title", "Nested")]).await;
        assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.text);
        let v = dm_views(&app, p).await[0]["id"].as_i64().expect("view id");
        let columns = ["annotations_results", "ground_truth", "avg_lead_time", "predictions_results", "predictions_model_versions"];
        let before = mgr.get(&app, &format!("{page_path}?view={v}")).await;
        for column in columns {
            assert!(before.text.contains(&format!("value=\"{column}\"")), "{column} is a column toggle");
        }
        assert!(!before.text.contains("Annotation results</th>"), "hidden until a tab shows it");
        let view = v.to_string();
        let mut fields = vec![("csrf_token", csrf.as_str()), ("op", "columns"), ("view", view.as_str()), ("show", "id")];
        for column in columns {
            fields.push(("show", column));
        }
        let cols = mgr.post_form(&app, &page_path, &fields).await;
        assert_eq!(cols.status, StatusCode::SEE_OTHER, "{}", cols.text);
        let page = mgr.get(&app, &format!("{page_path}?view={v}")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        for header in ["Annotation results</th>", "Ground truth</a></th>", "Lead time</a></th>", "Prediction results</th>", "Prediction model versions</th>"] {
            assert!(page.text.contains(header), "{header}: {}", page.text);
        }
        assert_eq!(row_cells(&page.text, tasks[0])[..6], [tasks[0].to_string(), "pos | neg".into(), "yes".into(), "9.5 s".into(), "pos | neg | pos".into(), "model-a, model-b".into()]);
        assert_eq!(row_cells(&page.text, tasks[1])[..6], [tasks[1].to_string(), String::new(), "no".into(), String::new(), String::new(), String::new()]);
        assert_eq!(row_cells(&page.text, tasks[2])[..6], [tasks[2].to_string(), String::new(), "no".into(), String::new(), String::new(), String::new()]);
        // Ordering by lead time and ground truth works from the headers.
        for ordering in ["-avg_lead_time", "ground_truth"] {
            let ordered = mgr.get(&app, &format!("{page_path}?view={v}&ordering={ordering}")).await;
            assert_eq!(ordered.status, StatusCode::OK, "{}", ordered.text);
        }
        let ordered = mgr.get(&app, &format!("{page_path}?view={v}&ordering=-avg_lead_time")).await;
        let first_row = ordered.text.find(&format!("Open task {} in the editor", tasks[0])).expect("row");
        let other_row = ordered.text.find(&format!("Open task {} in the editor", tasks[2])).expect("row");
        assert!(first_row < other_row, "the task with the longest lead time first");
        // An annotator gets only the columns the catalogue offers them, with only their own work.
        let catalogue = app.get(&format!("/api/dm/columns?project={p}"), &annotator).await.expect(StatusCode::OK);
        let offered: Vec<&str> = catalogue["columns"].as_array().expect("columns").iter().filter_map(|c| c["id"].as_str()).collect();
        let mut ann = Browser::default();
        ann.sign_in(&app, "dm-nested-an@example.com", PASSWORD).await;
        let seen = ann.get(&app, &format!("{page_path}?view={v}")).await;
        assert_eq!(seen.status, StatusCode::OK, "{}", seen.text);
        for (column, header) in [("annotations_results", "Annotation results"), ("ground_truth", "Ground truth"), ("avg_lead_time", "Lead time")] {
            assert_eq!(seen.text.contains(&format!("{header}</a></th>")) || seen.text.contains(&format!(">{header}</th>")), offered.contains(&column), "{column}: {}", seen.text);
        }
        if offered.contains(&"annotations_results") {
            assert_eq!(row_cells(&seen.text, tasks[0])[1], "pos", "the annotator's own result only");
        }
    }
}
