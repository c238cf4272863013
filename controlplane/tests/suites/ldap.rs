//! LDAP sign-in per organization (ADR 0030) against a real slapd: the private instance
//! `e2e/test-all` starts with `e2e/lib/slapd.sh` (its URLs, CA and accounts in
//! `VERITY_TEST_LDAP_*`). Every test signs in through `/user/login` as a browser does, on both
//! engines. Tests that change the directory use entries only they know (a random suffix).

use std::{collections::HashMap, process::Stdio};

use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use verity_controlplane::{
    authz::{Actor, Role},
    storage::{sessions::WRONG_CREDENTIALS, users},
};

use crate::common::{Backend, Reply, TestApp, new_user};

/// The test directory, from the environment `e2e/lib/slapd.sh` sets.
#[derive(Clone)]
struct Directory {
    ldap_url: String,
    ldaps_url: String,
    ca: String,
    ca_file: String,
    base: String,
    admin_dn: String,
    admin_password: String,
    bind_dn: String,
    bind_password: String,
}

/// The directory, or `None` (with the reason printed) when the environment has none; under CI
/// a missing directory fails the test instead.
fn directory() -> Option<Directory> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let Some(ldap_url) = var("VERITY_TEST_LDAP_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "VERITY_TEST_LDAP_URL is not set: e2e/test-all starts slapd (e2e/lib/slapd.sh) for the LDAP tests"
        );
        eprintln!(
            "skipped: VERITY_TEST_LDAP_URL is not set (source e2e/lib/slapd.sh && slapd_start)"
        );
        return None;
    };
    let need =
        |k: &str| var(k).unwrap_or_else(|| panic!("{k} must be set with VERITY_TEST_LDAP_URL"));
    let ca_file = need("VERITY_TEST_LDAP_CA");
    Some(Directory {
        ldap_url,
        ldaps_url: need("VERITY_TEST_LDAPS_URL"),
        ca: std::fs::read_to_string(&ca_file).expect("read the test CA"),
        ca_file,
        base: need("VERITY_TEST_LDAP_BASE"),
        admin_dn: need("VERITY_TEST_LDAP_ADMIN_DN"),
        admin_password: need("VERITY_TEST_LDAP_ADMIN_PASSWORD"),
        bind_dn: need("VERITY_TEST_LDAP_BIND_DN"),
        bind_password: need("VERITY_TEST_LDAP_BIND_PASSWORD"),
    })
}

impl Directory {
    /// Settings over LDAPS with the test CA; the user filter excludes disabled accounts.
    fn settings(&self, extra: Value) -> Value {
        let mut s = json!({
            "server_uri": self.ldaps_url,
            "ca_certificate": self.ca,
            "bind_dn": self.bind_dn,
            "bind_password": self.bind_password,
            "user_search_base": format!("ou=people,{}", self.base),
            "user_search_filter": "(&(objectClass=inetOrgPerson)(uid={user})(!(employeeType=disabled)))",
            "group_search_base": format!("ou=groups,{}", self.base),
            "group_search_filter": "(member={dn})",
            "domains": ["ldap.verity.test"],
        });
        if let (Some(s), Value::Object(e)) = (s.as_object_mut(), extra) {
            s.extend(e);
        }
        s
    }

    /// Runs `ldapmodify -a` (adds and changes) as the directory manager.
    async fn modify(&self, ldif: &str) {
        let mut child = tokio::process::Command::new("ldapmodify")
            .args([
                "-x",
                "-a",
                "-H",
                &self.ldaps_url,
                "-D",
                &self.admin_dn,
                "-w",
            ])
            .arg(&self.admin_password)
            .env("LDAPTLS_CACERT", &self.ca_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ldapmodify (ldap-utils)");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(ldif.as_bytes()).await.expect("write ldif");
        drop(stdin);
        let out = child.wait_with_output().await.expect("ldapmodify");
        assert!(
            out.status.success(),
            "ldapmodify failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A new person `uid` with `password` (email `<uid>@ldap.verity.test`).
    async fn add_person(&self, uid: &str, password: &str) {
        self.modify(&format!(
            "dn: uid={uid},ou=people,{b}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\ngivenName: Test\nsn: {uid}\nmail: {uid}@ldap.verity.test\nuserPassword: {password}\n",
            b = self.base
        ))
        .await;
    }
}

fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_string()
}

/// An app that may reach the loopback directory (as `VERITY_ALLOW_PRIVATE_TARGETS` would).
async fn app(backend: Backend) -> TestApp {
    TestApp::with_config(backend, |c| c.allow_private_targets = "true".into()).await
}

/// Runs each test on SQLite and PostgreSQL with the directory (skipped without one).
macro_rules! ldap_tests {
    ($(async fn $name:ident($app:ident, $dir:ident) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                async fn run($app: TestApp, $dir: Directory) $body
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    if let Some(d) = directory() { run(app(Backend::Sqlite).await, d).await }
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    if let Some(d) = directory() { run(app(Backend::Postgres).await, d).await }
                }
            }
        )*
    };
}

/// A browser: cookies kept between requests, the sign-in form posted as the page sends it.
#[derive(Default)]
struct Browser {
    cookies: HashMap<String, String>,
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

    async fn sign_in(&mut self, app: &TestApp, login: &str, password: &str) -> Reply {
        self.cookies.clear();
        let page = app
            .send_unchecked(
                Request::get("/user/login")
                    .body(Body::empty())
                    .expect("req"),
            )
            .await;
        self.keep(&page);
        let marker = "name=\"form_token\" value=\"";
        let start = page.text.find(marker).expect("form token") + marker.len();
        let token = page.text[start..]
            .split('"')
            .next()
            .expect("token")
            .to_string();
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("form_token", token.as_str()),
                ("email", login),
                ("password", password),
                ("next", "/projects"),
            ])
            .finish();
        let req = Request::post("/user/login")
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .expect("request");
        let reply = app.send_unchecked(req).await;
        self.keep(&reply);
        reply
    }

    /// `whoami` with the session cookie.
    async fn whoami(&self, app: &TestApp) -> Value {
        let req = Request::get("/api/current-user/whoami")
            .header("cookie", self.cookie_header())
            .body(Body::empty())
            .expect("req");
        app.send(req).await.expect(StatusCode::OK)
    }
}

#[track_caller]
fn assert_signed_in(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    assert!(reply.headers.get_all("set-cookie").iter().any(|c| {
        c.to_str()
            .is_ok_and(|c| c.starts_with("verity_session=") && !c.starts_with("verity_session=;"))
    }));
}

#[track_caller]
fn assert_refused(reply: &Reply, message: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    assert!(
        reply.text.contains(message),
        "{message:?} not in {}",
        reply.text
    );
    assert!(!reply.headers.get_all("set-cookie").iter().any(|c| {
        c.to_str()
            .is_ok_and(|c| c.starts_with("verity_session=") && !c.starts_with("verity_session=;"))
    }));
}

async fn role_of(app: &TestApp, user: i64) -> String {
    app.get(
        &format!("/api/organizations/{}/memberships/{user}", app.org),
        &app.owner,
    )
    .await
    .expect(StatusCode::OK)["role"]
        .as_str()
        .expect("role")
        .to_string()
}

async fn set(app: &TestApp, settings: Value) -> Value {
    app.post("/api/ldap/settings", &app.owner, settings)
        .await
        .expect(StatusCode::OK)
}

ldap_tests! {
    async fn settings_api_validation(app, dir) {
        let path = "/api/ldap/settings";
        let unset = app.get(path, &app.owner).await.expect(StatusCode::OK);
        assert_eq!((unset["enabled"].clone(), unset["bind_password_set"].clone()), (json!(false), json!(false)));
        let report = app.post("/api/ldap/settings/test", &app.owner, json!({})).await.expect(StatusCode::OK);
        assert_eq!(report["ok"], json!(false), "{report}");
        // Plain LDAP without StartTLS would send passwords in the clear: refused.
        let e = app.post(path, &app.owner, dir.settings(json!({"server_uri": dir.ldap_url}))).await
            .expect_error(StatusCode::BAD_REQUEST, "validation_error");
        assert!(e.to_string().contains("server_uri"), "{e}");
        for (bad, field) in [
            (json!({"roles_groups": [["Wizard", "ldap-admins"]]}), "roles_groups"),
            (json!({"roles_groups": [["Owner", "ldap-admins"]]}), "roles_groups"),
            (json!({"default_role": "root"}), "default_role"),
            (json!({"projects_groups": [{"project_id": 999999, "group": "x", "role": "Annotator"}]}), "projects_groups"),
            (json!({"ca_certificate": "not a certificate"}), "ca_certificate"),
            (json!({"user_search_filter": "(uid=alice)"}), "user_search_filter"),
            (json!({"user_search_filter": "(uid={user}"}), "user_search_filter"),
            (json!({"server_uri": "https://ldap.example.com"}), "server_uri"),
            (json!({"domains": ["not a domain"]}), "domains"),
        ] {
            let e = app.post(path, &app.owner, dir.settings(bad.clone())).await
                .expect_error(StatusCode::BAD_REQUEST, "validation_error");
            assert!(e.to_string().contains(field), "{bad}: {e}");
        }
        app.post(path, &app.owner, dir.settings(json!({"unknown_field": 1}))).await
            .expect_error(StatusCode::BAD_REQUEST, "validation_error");
        // The first save needs the service password.
        let mut no_password = dir.settings(json!({}));
        no_password.as_object_mut().expect("object").remove("bind_password");
        app.post(path, &app.owner, no_password.clone()).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
        // Nothing was stored by the refused requests.
        assert_eq!(app.get(path, &app.owner).await.expect(StatusCode::OK), unset);
        // Annotators may not read or change the settings.
        let annotator = app.user("ldap-annotator@example.com", Role::Annotator).await;
        app.get(path, &annotator).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        app.post(path, &annotator, dir.settings(json!({}))).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        // Saved: the password is never returned, in any answer.
        let saved = app.post(path, &app.owner, dir.settings(json!({"start_tls": false}))).await;
        assert!(!saved.text.contains(&dir.bind_password), "{}", saved.text);
        let saved = saved.expect(StatusCode::OK);
        assert_eq!(saved["bind_password_set"], json!(true));
        assert!(saved.get("bind_password").is_none());
        let read = app.get(path, &app.owner).await;
        assert!(!read.text.contains(&dir.bind_password), "{}", read.text);
        let read = read.expect(StatusCode::OK);
        assert_eq!(read["native_login_disabled"], json!(true));
        assert_eq!(read["domains"], json!(["ldap.verity.test"]));
        // Nor does the audit log hold it.
        let log = app.get("/api/audit-log?page_size=200", &app.owner).await;
        assert!(log.text.contains("ldap.settings"), "{}", log.text);
        assert!(!log.text.contains(&dir.bind_password));
        // An update without the password keeps the stored one (the test bind still works).
        set(&app, no_password).await;
        let report = app.post("/api/ldap/settings/test", &app.owner, json!({})).await.expect(StatusCode::OK);
        assert_eq!(report["ok"], json!(true), "{report}");
        // A wrong service password is reported.
        set(&app, dir.settings(json!({"bind_password": "not-the-password"}))).await;
        let report = app.post("/api/ldap/settings/test", &app.owner, json!({})).await.expect(StatusCode::OK);
        assert_eq!(report["ok"], json!(false), "{report}");
        assert!(report["detail"].as_str().expect("detail").contains("refused"), "{report}");
        // A domain routes to one organization only.
        let (_, other_owner) = app.other_org("Other", "ldap-other-owner@example.com").await;
        app.post(path, &other_owner, dir.settings(json!({}))).await.expect_error(StatusCode::CONFLICT, "conflict");
        // Deleted: directory sign-in is off.
        app.delete(path, &app.owner).await.expect(StatusCode::NO_CONTENT);
        assert_eq!(app.get(path, &app.owner).await.expect(StatusCode::OK), unset);
        // Without the administrator's permission, loopback directories are refused like any
        // other private outbound target.
        let strict = TestApp::new(if matches!(app.db, verity_controlplane::storage::Db::Postgres(_)) { Backend::Postgres } else { Backend::Sqlite }).await;
        strict.post(path, &strict.owner, dir.settings(json!({}))).await.expect(StatusCode::OK);
        let report = strict.post("/api/ldap/settings/test", &strict.owner, json!({})).await.expect(StatusCode::OK);
        assert_eq!(report["ok"], json!(false), "{report}");
        assert!(report["detail"].as_str().expect("detail").contains("VERITY_ALLOW_PRIVATE_TARGETS"), "{report}");
    }

    async fn good_password_signs_in_with_groups(app, dir) {
        let labelers_dn = format!("cn=ldap-labelers,ou=groups,{}", dir.base);
        set(&app, dir.settings(json!({
            "roles_groups": [["Administrator", "ldap-admins"], ["Reviewer", labelers_dn]],
            "workspaces_groups": [["Directory labelers", "ldap-labelers"]],
        }))).await;
        let report = app.post("/api/ldap/settings/test", &app.owner, json!({})).await.expect(StatusCode::OK);
        assert_eq!(report["ok"], json!(true), "{report}");
        // Alice (ldap-admins, ldap-labelers) signs in; her account is created.
        let mut alice = Browser::default();
        assert_signed_in(&alice.sign_in(&app, "alice@ldap.verity.test", "Secret-alice-1").await);
        let me = alice.whoami(&app).await;
        assert_eq!(me["email"], json!("alice@ldap.verity.test"));
        assert_eq!(me["first_name"], json!("Alice"));
        assert_eq!(me["last_name"], json!("Liddell"));
        let alice_id = me["id"].as_i64().expect("id");
        assert_eq!(role_of(&app, alice_id).await, "admin");
        // Bob (ldap-labelers, named by its DN in the mapping), the email's case aside; a reviewer.
        let mut bob = Browser::default();
        assert_signed_in(&bob.sign_in(&app, "Bob@LDAP.verity.test", "Secret-bob-1").await);
        let bob_id = bob.whoami(&app).await["id"].as_i64().expect("id");
        assert_eq!(role_of(&app, bob_id).await, "reviewer");
        // The mapped workspace was created with both in it.
        let workspaces = app.get("/api/workspaces", &app.owner).await.expect(StatusCode::OK);
        let ws = workspaces.as_array().expect("list").iter().find(|w| w["title"] == "Directory labelers")
            .expect("workspace created")["id"].as_i64().expect("id");
        let members = app.get(&format!("/api/workspaces/{ws}/memberships"), &app.owner).await.expect(StatusCode::OK).to_string();
        assert!(members.contains("alice@ldap.verity.test") && members.contains("bob@ldap.verity.test"), "{members}");
        // A second sign-in finds the same account.
        let mut again = Browser::default();
        assert_signed_in(&again.sign_in(&app, "alice@ldap.verity.test", "Secret-alice-1").await);
        assert_eq!(again.whoami(&app).await["id"].as_i64(), Some(alice_id));
        // Audited: the creation, and the sign-ins with their method.
        let audit = app.audit_actions(app.org).await;
        assert!(audit.iter().any(|(a, o, t)| a == "user.create" && o == "ok" && *t == alice_id.to_string()));
        assert_eq!(audit.iter().filter(|(a, o, _)| a == "auth.login" && o == "ok").count(), 3);
        let log = app.get("/api/audit-log?page_size=200", &app.owner).await;
        assert!(log.text.contains("\"ldap\""), "{}", log.text);
    }

    async fn refusals_look_alike(app, dir) {
        set(&app, dir.settings(json!({}))).await;
        let mut b = Browser::default();
        // Wrong password, unknown user, disabled user, filter injection: the same answer.
        assert_refused(&b.sign_in(&app, "alice@ldap.verity.test", "not her password").await, WRONG_CREDENTIALS);
        assert_refused(&b.sign_in(&app, "nobody@ldap.verity.test", "Secret-alice-1").await, WRONG_CREDENTIALS);
        assert_refused(&b.sign_in(&app, "carol@ldap.verity.test", "Secret-carol-1").await, WRONG_CREDENTIALS);
        for injection in ["*)(uid=*", "*", "al*", "alice)(uid=*", "*)(|(uid=*"] {
            let login = format!("{injection}@ldap.verity.test");
            assert_refused(&b.sign_in(&app, &login, "Secret-alice-1").await, WRONG_CREDENTIALS);
        }
        // An empty password is not an (unauthenticated) bind.
        assert_eq!(b.sign_in(&app, "alice@ldap.verity.test", "").await.status, StatusCode::UNAUTHORIZED);
        // Nobody was created by any of it; each refusal is audited with its reason.
        let users = app.get("/api/users", &app.owner).await.expect(StatusCode::OK).to_string();
        assert!(!users.contains("ldap.verity.test"), "{users}");
        let audit = app.audit_actions(app.org).await;
        assert!(audit.iter().filter(|(a, o, _)| a == "auth.login_failed" && o == "failed").count() >= 8, "{audit:?}");
        let log = app.get("/api/audit-log?page_size=200", &app.owner).await.text;
        for reason in ["wrong password", "unknown or disabled in the directory"] {
            assert!(log.contains(reason), "{reason} not in {log}");
        }
        // The disabled user is a real entry whose password is right: only the filter keeps her out.
        set(&app, dir.settings(json!({"user_search_filter": "(&(objectClass=inetOrgPerson)(uid={user}))"}))).await;
        assert_signed_in(&b.sign_in(&app, "carol@ldap.verity.test", "Secret-carol-1").await);
    }

    async fn group_change_shows_at_next_sign_in(app, dir) {
        let uid = format!("grp-{}", suffix());
        dir.add_person(&uid, "Group-pass-1").await;
        let group = format!("leads-{uid}");
        dir.modify(&format!(
            "dn: cn={group},ou=groups,{b}\nobjectClass: groupOfNames\ncn: {group}\nmember: cn=admin,{b}\nmember: uid={uid},ou=people,{b}\n",
            b = dir.base
        )).await;
        set(&app, dir.settings(json!({
            "roles_groups": [["Manager", group]],
            "workspaces_groups": [[format!("ws-{uid}"), group]],
        }))).await;
        let mut b = Browser::default();
        assert_signed_in(&b.sign_in(&app, &format!("{uid}@ldap.verity.test"), "Group-pass-1").await);
        let id = b.whoami(&app).await["id"].as_i64().expect("id");
        assert_eq!(role_of(&app, id).await, "manager");
        // The directory drops them from the group: the next sign-in reflects it.
        dir.modify(&format!(
            "dn: cn={group},ou=groups,{b}\nchangetype: modify\ndelete: member\nmember: uid={uid},ou=people,{b}\n",
            b = dir.base
        )).await;
        assert_eq!(role_of(&app, id).await, "manager", "nothing changes before they sign in");
        assert_signed_in(&b.sign_in(&app, &format!("{uid}@ldap.verity.test"), "Group-pass-1").await);
        assert_eq!(role_of(&app, id).await, "annotator");
        let workspaces = app.get("/api/workspaces", &app.owner).await.expect(StatusCode::OK);
        let ws = workspaces.as_array().expect("list").iter().find(|w| w["title"] == json!(format!("ws-{uid}")))
            .expect("workspace")["id"].as_i64().expect("id");
        let members = app.get(&format!("/api/workspaces/{ws}/memberships"), &app.owner).await.expect(StatusCode::OK).to_string();
        assert!(!members.contains(&uid), "{members}");
        // A changed profile is refreshed too; a password changed in the directory is the one
        // that works; an entry removed from the directory cannot sign in.
        dir.modify(&format!(
            "dn: uid={uid},ou=people,{b}\nchangetype: modify\nreplace: givenName\ngivenName: Renamed\n-\nreplace: userPassword\nuserPassword: Group-pass-2\n",
            b = dir.base
        )).await;
        assert_refused(&b.sign_in(&app, &format!("{uid}@ldap.verity.test"), "Group-pass-1").await, WRONG_CREDENTIALS);
        assert_signed_in(&b.sign_in(&app, &format!("{uid}@ldap.verity.test"), "Group-pass-2").await);
        assert_eq!(b.whoami(&app).await["first_name"], json!("Renamed"));
        let mut child = tokio::process::Command::new("ldapdelete")
            .args(["-x", "-H", &dir.ldaps_url, "-D", &dir.admin_dn, "-w", &dir.admin_password])
            .arg(format!("uid={uid},ou=people,{}", dir.base))
            .env("LDAPTLS_CACERT", &dir.ca_file)
            .spawn()
            .expect("ldapdelete");
        assert!(child.wait().await.expect("ldapdelete").success());
        assert_refused(&b.sign_in(&app, &format!("{uid}@ldap.verity.test"), "Group-pass-2").await, WRONG_CREDENTIALS);
    }

    async fn lockout_after_repeated_failures(app, dir) {
        set(&app, dir.settings(json!({}))).await;
        let mut b = Browser::default();
        // Bob's account exists after a first sign-in; then too many wrong passwords lock it.
        assert_signed_in(&b.sign_in(&app, "bob@ldap.verity.test", "Secret-bob-1").await);
        for _ in 0..app.config.login_max_failures {
            assert_refused(&b.sign_in(&app, "bob@ldap.verity.test", "wrong password!").await, WRONG_CREDENTIALS);
        }
        let locked = b.sign_in(&app, "bob@ldap.verity.test", "Secret-bob-1").await;
        assert_eq!(locked.status, StatusCode::LOCKED, "{}", locked.text);
        let locked = b.sign_in(&app, "bob@ldap.verity.test", "Secret-bob-1").await;
        assert_eq!(locked.status, StatusCode::LOCKED, "{}", locked.text);
        let audit = app.audit_actions(app.org).await;
        assert!(audit.iter().any(|(a, o, _)| a == "auth.locked" && o == "denied"), "{audit:?}");
        // When the lock expires, the directory decides again.
        app.sql("update app_user set locked_until = 1 where email = 'bob@ldap.verity.test'").await.expect("sql");
        assert_signed_in(&b.sign_in(&app, "bob@ldap.verity.test", "Secret-bob-1").await);
    }

    async fn starttls_and_ldaps_both_work(app, dir) {
        let mut b = Browser::default();
        // LDAP upgraded with StartTLS.
        set(&app, dir.settings(json!({"server_uri": dir.ldap_url, "start_tls": true}))).await;
        assert_signed_in(&b.sign_in(&app, "alice@ldap.verity.test", "Secret-alice-1").await);
        // LDAPS.
        set(&app, dir.settings(json!({}))).await;
        assert_signed_in(&b.sign_in(&app, "alice@ldap.verity.test", "Secret-alice-1").await);
        // The server certificate is verified: without the test CA (system roots) the directory
        // cannot be used, and the sign-in is refused.
        set(&app, dir.settings(json!({"ca_certificate": ""}))).await;
        let r = b.sign_in(&app, "alice@ldap.verity.test", "Secret-alice-1").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
        assert!(r.text.contains("directory cannot be reached"), "{}", r.text);
        let report = app.post("/api/ldap/settings/test", &app.owner, json!({})).await.expect(StatusCode::OK);
        assert_eq!(report["ok"], json!(false), "{report}");
        // An unusable directory is not the user's failure: it never locks their account.
        for _ in 0..app.config.login_max_failures {
            assert_eq!(b.sign_in(&app, "alice@ldap.verity.test", "Secret-alice-1").await.status, StatusCode::UNAUTHORIZED);
        }
        set(&app, dir.settings(json!({}))).await;
        assert_signed_in(&b.sign_in(&app, "alice@ldap.verity.test", "Secret-alice-1").await);
        set(&app, dir.settings(json!({"ca_certificate": ""}))).await;
        // StartTLS on the LDAPS port, or LDAPS on the plain port, does not fall back to plain text.
        set(&app, dir.settings(json!({"server_uri": dir.ldaps_url.replace("ldaps://", "ldap://"), "start_tls": true}))).await;
        assert_eq!(b.sign_in(&app, "alice@ldap.verity.test", "Secret-alice-1").await.status, StatusCode::UNAUTHORIZED);
        set(&app, dir.settings(json!({"server_uri": dir.ldap_url.replace("ldap://", "ldaps://")}))).await;
        assert_eq!(b.sign_in(&app, "alice@ldap.verity.test", "Secret-alice-1").await.status, StatusCode::UNAUTHORIZED);
    }

    async fn native_login_refused_when_disabled(app, dir) {
        const NATIVE: &str = "native password 1";
        let mut new = new_user("native@ldap.verity.test", Role::Annotator);
        new.password = Some(NATIVE.to_string());
        users::create_user_in_org(&app.db, &Actor::instance(app.org, Default::default()), app.org, &new)
            .await
            .expect("user");
        let mut b = Browser::default();
        assert_signed_in(&b.sign_in(&app, "native@ldap.verity.test", NATIVE).await);
        // Directory sign-in on (native login off by default): the password is refused, saying why.
        set(&app, dir.settings(json!({}))).await;
        assert_refused(&b.sign_in(&app, "native@ldap.verity.test", NATIVE).await, "Password sign-in is turned off");
        assert_refused(&b.sign_in(&app, "native@ldap.verity.test", "not the password").await, WRONG_CREDENTIALS);
        let log = app.get("/api/audit-log?page_size=200", &app.owner).await.text;
        assert!(log.contains("password sign-in disabled"), "{log}");
        // Allowed again: password sign-in works next to the directory.
        set(&app, dir.settings(json!({"native_login_disabled": false}))).await;
        assert_signed_in(&b.sign_in(&app, "native@ldap.verity.test", NATIVE).await);
        assert_signed_in(&b.sign_in(&app, "alice@ldap.verity.test", "Secret-alice-1").await);
        // Directory sign-in off: only the password.
        set(&app, dir.settings(json!({"enabled": false}))).await;
        assert_refused(&b.sign_in(&app, "alice@ldap.verity.test", "Secret-alice-1").await, WRONG_CREDENTIALS);
        assert_signed_in(&b.sign_in(&app, "native@ldap.verity.test", NATIVE).await);
    }

    async fn unknown_logins_take_as_long_as_known_ones(app, dir) {
        // A member with a Verity password, in an organization whose password sign-in is off.
        let mut new = new_user("timing@ldap.verity.test", Role::Annotator);
        new.password = Some("timing password 1".to_string());
        users::create_user_in_org(&app.db, &Actor::instance(app.org, Default::default()), app.org, &new)
            .await
            .expect("user");
        set(&app, dir.settings(json!({}))).await;
        let mut b = Browser::default();
        let mut times: [Vec<std::time::Duration>; 3] = Default::default();
        for _ in 0..3 {
            for (i, login) in ["timing@ldap.verity.test", "nobody-timing@ldap.verity.test", "alice@ldap.verity.test"].iter().enumerate() {
                let started = std::time::Instant::now();
                let r = b.sign_in(&app, login, "a wrong password").await;
                times[i].push(started.elapsed());
                assert_refused(&r, WRONG_CREDENTIALS);
            }
        }
        let medians: Vec<std::time::Duration> = times.iter_mut().map(|t| { t.sort(); t[1] }).collect();
        let (min, max) = (medians.iter().min().expect("min"), medians.iter().max().expect("max"));
        // The same work in each case (a directory bind, a password hash check): the slowest
        // case takes at most twice as long as the fastest, with room for a busy machine.
        assert!(max.as_secs_f64() < 2.0 * min.as_secs_f64() + 0.05, "medians (member, unknown, directory user): {medians:?}");
    }
}
