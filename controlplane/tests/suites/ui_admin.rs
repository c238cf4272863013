//! The organization settings pages of the web UI (`/organization/settings/…`): the access
//! policy, the session policy and single sign-on (SAML, SCIM, LDAP), driven as a browser would.
//! Every change is checked through the API afterwards; bad input shows the API's message and
//! changes nothing; members without `organization.manage`, forged posts and posts without the
//! CSRF token change nothing; secrets never appear in a page.

use std::net::SocketAddr;

use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use verity_controlplane::authz::Role;

use crate::{
    both_backends,
    common::{Reply, TestApp},
    ui::{Browser, PASSWORD, escaped, hidden, location, password_user},
};

/// A signed-in browser of a new user with `role`, connecting from `peer` when given.
async fn signed_in(app: &TestApp, email: &str, role: Role, peer: Option<&str>) -> Browser {
    password_user(app, email, role).await;
    let mut browser = Browser {
        peer: peer.map(|p| p.parse::<SocketAddr>().expect("peer")),
        ..Browser::default()
    };
    let reply = browser.sign_in(app, email, PASSWORD).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    browser
}

/// Posts `fields` to a settings page with the browser's CSRF token (taken from that page).
async fn post(browser: &mut Browser, app: &TestApp, path: &str, fields: &[(&str, &str)]) -> Reply {
    let page = browser.get(app, path).await;
    let csrf = if page.status == StatusCode::OK {
        hidden(&page.text, "csrf_token")
    } else {
        browser.csrf(app).await
    };
    let mut all = vec![("csrf_token", csrf.as_str())];
    all.extend_from_slice(fields);
    browser.post_form(app, path, &all).await
}

/// The error page of a refused request (status and no settings form).
#[track_caller]
fn refused_page(reply: &Reply, status: StatusCode) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert!(
        !reply.text.contains("name=\"api_networks\"")
            && !reply.text.contains("name=\"max_session_age\"")
            && !reply.text.contains("name=\"ldap_server_uri\""),
        "a refused page shows no settings form: {}",
        reply.text
    );
}

/// The access policy through the API, as the browser (its session and address) sees it.
async fn access_policy(browser: &Browser, app: &TestApp) -> Value {
    browser
        .api(app, "GET", "/api/access-policy", None, None)
        .await
        .expect(StatusCode::OK)
}

/// The session policy through the API.
async fn session_policy(app: &TestApp) -> Value {
    app.get("/api/session-policy", &app.owner)
        .await
        .expect(StatusCode::OK)
}

const ACCESS: &str = "/organization/settings/access";
const SESSIONS: &str = "/organization/settings/sessions";
const SSO: &str = "/organization/settings/sso";

both_backends! {
    async fn access_policy_page_views_edits_and_refuses(app) {
        let mut admin = signed_in(&app, "uia-admin@example.com", Role::Admin, Some("127.0.0.2:40000")).await;
        // The settings are linked from the nav and the people page, for admins.
        let people = admin.get(&app, "/organization").await;
        assert!(people.text.contains("id=\"org-settings-link\"") && people.text.contains("id=\"members-settings-link\""), "{}", people.text);
        let index = admin.get(&app, "/organization/settings").await;
        assert_eq!(location(&index), ACCESS);
        let page = admin.get(&app, ACCESS).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert!(page.text.contains("<code>127.0.0.2</code>"), "the page names the caller's address: {}", page.text);
        assert!(page.text.contains("<label for=\"api_networks\">") && page.text.contains("<label for=\"storage_endpoints\">"));
        let empty = json!({"storage_endpoints": [], "api_networks": []});
        assert_eq!(access_policy(&admin, &app).await, empty);

        // A bad network: the API's message on the page, nothing changed.
        let bad = post(&mut admin, &app, ACCESS, &[("api_networks", "127.0.0.0/24\n10.0.0.0/33"), ("storage_endpoints", "")]).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
        assert!(bad.text.contains("id=\"settings-error\"") && bad.text.contains("10.0.0.0&#x2f;33") && bad.text.contains("is neither an address nor a network"), "{}", bad.text);
        // The box keeps what was typed, to be corrected.
        assert!(bad.text.contains(&format!("{}</textarea>", escaped("127.0.0.0/24\n10.0.0.0/33"))), "{}", bad.text);
        assert_eq!(access_policy(&admin, &app).await, empty);
        // A bad storage endpoint too.
        let bad = post(&mut admin, &app, ACCESS, &[("api_networks", ""), ("storage_endpoints", "http://minio")]).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
        assert!(bad.text.contains("id=\"settings-error\""), "{}", bad.text);
        assert_eq!(access_policy(&admin, &app).await, empty);
        // A list that leaves out the admin's own address is refused, as by the API.
        let lockout = post(&mut admin, &app, ACCESS, &[("api_networks", "10.9.0.0/16"), ("storage_endpoints", "")]).await;
        assert_eq!(lockout.status, StatusCode::BAD_REQUEST, "{}", lockout.text);
        assert!(lockout.text.contains("127.0.0.2") && lockout.text.contains("lock you out"), "{}", lockout.text);
        assert_eq!(access_policy(&admin, &app).await, empty);

        // A good policy: saved, shown, in effect.
        let saved = post(&mut admin, &app, ACCESS, &[("api_networks", " 127.0.0.0/24 \n\n10.9.0.0/16\n"), ("storage_endpoints", "minio.example.com\n*.s3.amazonaws.com")]).await;
        assert_eq!((saved.status, location(&saved)), (StatusCode::SEE_OTHER, format!("{ACCESS}?done=access")), "{}", saved.text);
        let policy = access_policy(&admin, &app).await;
        assert_eq!(policy["api_networks"], json!(["127.0.0.0/24", "10.9.0.0/16"]), "{policy}");
        assert_eq!(policy["storage_endpoints"].as_array().map(Vec::len), Some(2), "{policy}");
        let shown = admin.get(&app, &format!("{ACCESS}?done=access")).await;
        assert!(shown.text.contains("id=\"settings-notice\"") && shown.text.contains(&escaped("127.0.0.0/24\n10.9.0.0/16")), "{}", shown.text);
        // The same session from an address outside the list is refused at once.
        let elsewhere = Browser { cookies: admin.cookies.clone(), peer: Some("192.0.2.7:40000".parse().expect("peer")) };
        let mut elsewhere = elsewhere;
        refused_page(&elsewhere.get(&app, ACCESS).await, StatusCode::FORBIDDEN);

        // Without the CSRF token: refused, nothing changed.
        let forged = admin.post_form(&app, ACCESS, &[("api_networks", ""), ("storage_endpoints", "")]).await;
        refused_page(&forged, StatusCode::FORBIDDEN);
        assert_eq!(access_policy(&admin, &app).await, policy);

        // A manager: no link, a 403 page, and a post with their own token changes nothing.
        let mut manager = signed_in(&app, "uia-manager@example.com", Role::Manager, Some("127.0.0.3:40000")).await;
        let projects = manager.get(&app, "/projects").await;
        assert!(!projects.text.contains("org-settings-link"), "{}", projects.text);
        let people = manager.get(&app, "/organization").await;
        assert!(!people.text.contains("members-settings-link"));
        refused_page(&manager.get(&app, ACCESS).await, StatusCode::FORBIDDEN);
        let by_manager = post(&mut manager, &app, ACCESS, &[("api_networks", ""), ("storage_endpoints", "")]).await;
        refused_page(&by_manager, StatusCode::FORBIDDEN);
        assert_eq!(access_policy(&admin, &app).await, policy);

        // Empty boxes remove both restrictions.
        let cleared = post(&mut admin, &app, ACCESS, &[("api_networks", ""), ("storage_endpoints", "")]).await;
        assert_eq!(cleared.status, StatusCode::SEE_OTHER, "{}", cleared.text);
        assert_eq!(access_policy(&admin, &app).await, empty);
        let audit = app.audit_actions(app.org).await;
        assert!(audit.iter().any(|(a, _, _)| a == "access_policy.update"), "{audit:?}");
    }

    async fn session_policy_page_views_edits_and_refuses(app) {
        let instance = app.config.session_ttl_hours * 60;
        let before = json!({"max_session_age": instance, "max_time_between_activity": instance});
        assert_eq!(session_policy(&app).await, before);
        let mut owner = signed_in(&app, "uia-owner@example.com", Role::Owner, None).await;
        let page = owner.get(&app, SESSIONS).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert!(page.text.contains(&format!("id=\"max_session_age\" name=\"max_session_age\" type=\"number\" min=\"1\" max=\"{instance}\" required value=\"{instance}\"")), "{}", page.text);
        // Bad values: the API's message, nothing changed.
        for (age, idle, message) in [
            ("4", "4", None),
            (&*(instance + 1).to_string(), "30", None),
            ("30", "31", None),
            ("soon", "30", Some("give a whole number of minutes")),
        ] {
            let bad = post(&mut owner, &app, SESSIONS, &[("max_session_age", age), ("max_time_between_activity", idle)]).await;
            assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{age}/{idle}: {}", bad.text);
            assert!(bad.text.contains("id=\"settings-error\""), "{}", bad.text);
            if let Some(m) = message {
                assert!(bad.text.contains(m), "{}", bad.text);
            }
            assert!(bad.text.contains(&format!("required value=\"{age}\"")), "the typed value is kept: {}", bad.text);
            assert_eq!(session_policy(&app).await, before);
        }
        // A good policy: saved and in effect through the API.
        let saved = post(&mut owner, &app, SESSIONS, &[("max_session_age", "120"), ("max_time_between_activity", "30")]).await;
        assert_eq!((saved.status, location(&saved)), (StatusCode::SEE_OTHER, format!("{SESSIONS}?done=sessions")), "{}", saved.text);
        let set = json!({"max_session_age": 120, "max_time_between_activity": 30});
        assert_eq!(session_policy(&app).await, set);
        let shown = owner.get(&app, &format!("{SESSIONS}?done=sessions")).await;
        assert!(shown.text.contains("required value=\"120\"") && shown.text.contains("required value=\"30\"") && shown.text.contains("id=\"settings-notice\""), "{}", shown.text);
        // No CSRF token; a reviewer's page and post: refused, nothing changed.
        refused_page(&owner.post_form(&app, SESSIONS, &[("max_session_age", "60"), ("max_time_between_activity", "60")]).await, StatusCode::FORBIDDEN);
        let mut reviewer = signed_in(&app, "uia-reviewer@example.com", Role::Reviewer, None).await;
        refused_page(&reviewer.get(&app, SESSIONS).await, StatusCode::FORBIDDEN);
        refused_page(&post(&mut reviewer, &app, SESSIONS, &[("max_session_age", "60"), ("max_time_between_activity", "60")]).await, StatusCode::FORBIDDEN);
        assert_eq!(session_policy(&app).await, set);
    }

    async fn sso_page_saml_settings_refuse_bad_input(app) {
        let mut admin = signed_in(&app, "uia-saml@example.com", Role::Admin, None).await;
        let page = admin.get(&app, SSO).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        // This service provider's URLs for the identity provider.
        assert!(page.text.contains(&escaped(&format!("/saml/{}/metadata", app.org))) && page.text.contains(&escaped(&format!("/saml/{}/acs", app.org))), "{}", page.text);
        assert!(page.text.contains("id=\"saml-status\">Off."), "{}", page.text);
        let off = app.get("/api/saml/settings", &app.owner).await.expect(StatusCode::OK);
        assert_eq!(off["enabled"], json!(false));
        let saml = |domain: &'static str, xml: &'static str| {
            vec![
                ("action", "saml"), ("saml_domain", domain), ("saml_idp_provider", "okta"),
                ("saml_metadata_url", ""), ("saml_metadata_xml", xml),
                ("saml_mapping_email", "email"), ("saml_mapping_first_name", "first"),
                ("saml_mapping_last_name", "last"), ("saml_mapping_groups", "groups"),
                ("saml_roles_groups", ""), ("saml_workspaces_groups", ""), ("saml_projects_groups", ""),
                ("saml_default_role", ""), ("saml_allow_idp_initiated", "1"),
            ]
        };
        for (fields, message) in [
            (saml("example.com", ""), "give the identity provider"),
            (saml("", "<EntityDescriptor/>"), "name the organization"),
            (saml("not a domain", "<EntityDescriptor/>"), "is not a domain name"),
        ] {
            let bad = post(&mut admin, &app, SSO, &fields).await;
            assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
            assert!(bad.text.contains("id=\"settings-error\"") && bad.text.contains(message), "{message}: {}", bad.text);
        }
        let mut bad_mapping = saml("example.com", "<EntityDescriptor/>");
        bad_mapping.retain(|(k, _)| *k != "saml_roles_groups");
        bad_mapping.push(("saml_roles_groups", "no separator here"));
        let bad = post(&mut admin, &app, SSO, &bad_mapping).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
        assert!(bad.text.contains("role: group"), "{}", bad.text);
        let still = app.get("/api/saml/settings", &app.owner).await.expect(StatusCode::OK);
        assert_eq!(still, off, "nothing changed");
        // An annotator: refused, even with their own CSRF token.
        let mut annotator = signed_in(&app, "uia-saml-ann@example.com", Role::Annotator, None).await;
        refused_page(&annotator.get(&app, SSO).await, StatusCode::FORBIDDEN);
        refused_page(&post(&mut annotator, &app, SSO, &[("action", "saml_delete")]).await, StatusCode::FORBIDDEN);
    }

    async fn sso_page_scim_tokens_and_mappings(app) {
        let mut admin = signed_in(&app, "uia-scim@example.com", Role::Admin, None).await;
        let page = admin.get(&app, SSO).await;
        assert!(page.text.contains(&escaped("/scim/v2")) && !page.text.contains("id=\"scim-token\""), "{}", page.text);
        // A new token is shown once and works for SCIM; the page never shows it again.
        let made = post(&mut admin, &app, SSO, &[("action", "scim_token")]).await;
        assert_eq!(made.status, StatusCode::OK, "{}", made.text);
        let token = crate::ui::attr_after(&made.text, "id=\"scim-token\" type=\"text\" readonly value=\"");
        assert!(token.starts_with("scim_"), "{token}");
        let scim_users = |token: String| {
            let app = &app;
            async move {
                let req = Request::get("/scim/v2/Users").header("authorization", format!("Bearer {token}")).body(Body::empty()).expect("request");
                app.send_unchecked(req).await.status
            }
        };
        assert_eq!(scim_users(token.clone()).await, StatusCode::OK);
        let again = admin.get(&app, SSO).await;
        assert!(!again.text.contains(&token) && !again.text.contains("id=\"scim-token\""));
        // A second token replaces the first.
        let second = post(&mut admin, &app, SSO, &[("action", "scim_token")]).await;
        let second = crate::ui::attr_after(&second.text, "id=\"scim-token\" type=\"text\" readonly value=\"");
        assert_ne!(second, token);
        assert_eq!(scim_users(token.clone()).await, StatusCode::UNAUTHORIZED);
        assert_eq!(scim_users(second.clone()).await, StatusCode::OK);

        // Group mappings: saved as the API has them, shown back one a line.
        let scim_settings = || async { app.get("/api/scim/settings", &app.owner).await.expect(StatusCode::OK) };
        let before = scim_settings().await;
        let saved = post(&mut admin, &app, SSO, &[
            ("action", "scim"),
            ("scim_roles_groups", "manager: labeling-leads\nreviewer: qa"),
            ("scim_workspaces_groups", "Vision: vision-team"),
            ("scim_projects_groups", ""),
            ("scim_default_role", "annotator"),
        ]).await;
        assert_eq!((saved.status, location(&saved)), (StatusCode::SEE_OTHER, format!("{SSO}?done=scim")), "{}", saved.text);
        let after = scim_settings().await;
        assert_eq!(after["roles_groups"], json!([["manager", "labeling-leads"], ["reviewer", "qa"]]), "{after}");
        assert_eq!(after["workspaces_groups"], json!([["Vision", "vision-team"]]), "{after}");
        assert_eq!(after["default_role"], json!("annotator"), "{after}");
        let shown = admin.get(&app, SSO).await;
        assert!(shown.text.contains("manager: labeling-leads\nreviewer: qa"), "{}", shown.text);
        // A role that is none, a line without its separator: the message, nothing changed.
        for (roles, message) in [("wizard: magicians", "wizard"), ("just-a-group", "role: group")] {
            let bad = post(&mut admin, &app, SSO, &[("action", "scim"), ("scim_roles_groups", roles)]).await;
            assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
            assert!(bad.text.contains("id=\"settings-error\"") && bad.text.contains(message), "{}", bad.text);
            assert_eq!(scim_settings().await, after);
        }
        assert_ne!(before, after);
        // Without the CSRF token, or from a manager: no token is made.
        refused_page(&admin.post_form(&app, SSO, &[("action", "scim_token")]).await, StatusCode::FORBIDDEN);
        let mut manager = signed_in(&app, "uia-scim-manager@example.com", Role::Manager, None).await;
        let by_manager = post(&mut manager, &app, SSO, &[("action", "scim_token")]).await;
        refused_page(&by_manager, StatusCode::FORBIDDEN);
        assert!(!by_manager.text.contains("scim_"), "{}", by_manager.text);
        assert_eq!(scim_users(second).await, StatusCode::OK, "the token still works");
    }

    async fn sso_page_ldap_settings_keep_the_password_secret(app) {
        let mut admin = signed_in(&app, "uia-ldap@example.com", Role::Owner, None).await;
        // Signed in before password sign-in is turned off for the organization.
        let mut manager = signed_in(&app, "uia-ldap-manager@example.com", Role::Manager, None).await;
        let page = admin.get(&app, SSO).await;
        assert!(page.text.contains("id=\"ldap-password-state\">not set<"), "{}", page.text);
        let secret = "bind-secret-Zq81x";
        let ldap = |password: &'static str, uri: &'static str| {
            vec![
                ("action", "ldap"), ("ldap_enabled", "1"), ("ldap_server_uri", uri),
                ("ldap_ca_certificate", ""), ("ldap_bind_dn", "cn=verity,dc=corp,dc=example"),
                ("ldap_bind_password", password), ("ldap_user_search_base", "ou=people,dc=corp,dc=example"),
                ("ldap_user_search_filter", "(uid={user})"), ("ldap_user_dn_template", ""),
                ("ldap_attr_email", "mail"), ("ldap_attr_first_name", "givenName"), ("ldap_attr_last_name", "sn"),
                ("ldap_group_search_base", ""), ("ldap_group_search_filter", "(member={dn})"), ("ldap_group_name_attr", "cn"),
                ("ldap_domains", "corp.example.com"), ("ldap_native_login_disabled", "1"),
                ("ldap_roles_groups", "reviewer: qa"), ("ldap_workspaces_groups", ""), ("ldap_projects_groups", ""), ("ldap_default_role", ""),
            ]
        };
        let settings = || async { app.get("/api/ldap/settings", &app.owner).await.expect(StatusCode::OK) };
        let unset = settings().await;
        // Plain LDAP without StartTLS is refused with the API's message; nothing saved.
        let bad = post(&mut admin, &app, SSO, &ldap(secret, "ldap://ldap.corp.example")).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
        assert!(bad.text.contains("id=\"settings-error\"") && !bad.text.contains(secret), "{}", bad.text);
        assert_eq!(settings().await, unset);
        // Saved: the API has the settings and knows a password is set; the page says "set" only.
        let saved = post(&mut admin, &app, SSO, &ldap(secret, "ldaps://ldap.corp.example")).await;
        assert_eq!((saved.status, location(&saved)), (StatusCode::SEE_OTHER, format!("{SSO}?done=ldap")), "{}", saved.text);
        let stored = settings().await;
        assert_eq!((stored["server_uri"].as_str(), stored["bind_password_set"].as_bool(), stored["enabled"].as_bool()), (Some("ldaps://ldap.corp.example"), Some(true), Some(true)), "{stored}");
        assert_eq!(stored["domains"], json!(["corp.example.com"]));
        assert_eq!(stored["roles_groups"], json!([["reviewer", "qa"]]));
        let shown = admin.get(&app, SSO).await;
        assert!(shown.text.contains("id=\"ldap-password-state\">set<") && !shown.text.contains(secret), "{}", shown.text);
        assert!(shown.text.contains("name=\"ldap_bind_password\" type=\"password\" autocomplete=\"new-password\" value=\"\""));
        // Saving again with an empty password box keeps the stored password.
        let kept = post(&mut admin, &app, SSO, &ldap("", "ldaps://ldap2.corp.example")).await;
        assert_eq!(kept.status, StatusCode::SEE_OTHER, "{}", kept.text);
        let stored = settings().await;
        assert_eq!((stored["server_uri"].as_str(), stored["bind_password_set"].as_bool()), (Some("ldaps://ldap2.corp.example"), Some(true)), "{stored}");
        // The connection test reports its failure on the page (no directory there).
        let tested = post(&mut admin, &app, SSO, &[("action", "ldap_test")]).await;
        assert!(tested.text.contains("id=\"settings-error\"") && !tested.text.contains(secret), "{}", tested.text);
        // Without the CSRF token, or from a manager: nothing removed.
        refused_page(&admin.post_form(&app, SSO, &[("action", "ldap_delete")]).await, StatusCode::FORBIDDEN);
        refused_page(&post(&mut manager, &app, SSO, &[("action", "ldap_delete")]).await, StatusCode::FORBIDDEN);
        refused_page(&post(&mut manager, &app, SSO, &ldap("other-password", "ldaps://evil.example")).await, StatusCode::FORBIDDEN);
        assert_eq!(settings().await, stored);
        // Removed by the owner.
        let removed = post(&mut admin, &app, SSO, &[("action", "ldap_delete")]).await;
        assert_eq!(location(&removed), format!("{SSO}?done=ldap_deleted"), "{}", removed.text);
        assert_eq!(settings().await["bind_password_set"], json!(false));
        let audit = app.audit_actions(app.org).await;
        assert!(audit.iter().any(|(a, _, _)| a.starts_with("ldap.")), "{audit:?}");
    }

    async fn sso_forms_refused_show_what_was_typed_but_no_password(app) {
        let mut admin = signed_in(&app, "uia-typed@example.com", Role::Admin, None).await;
        // SAML: a domain that is none is refused; the page shows the typed values again (not
        // the stored, empty ones) and the error, and nothing is saved.
        let saml_before = app.get("/api/saml/settings", &app.owner).await.expect(StatusCode::OK);
        let bad = post(&mut admin, &app, SSO, &[
            ("action", "saml"), ("saml_domain", "not a domain"), ("saml_idp_provider", "typed-provider"),
            ("saml_metadata_url", ""), ("saml_metadata_xml", "<EntityDescriptor/>"),
            ("saml_mapping_email", "typed-mail-attr"), ("saml_mapping_first_name", ""),
            ("saml_mapping_last_name", ""), ("saml_mapping_groups", "typed-groups-attr"),
            ("saml_roles_groups", "reviewer: typed-qa"), ("saml_workspaces_groups", ""), ("saml_projects_groups", ""),
            ("saml_default_role", ""), ("saml_allow_idp_initiated", "1"),
        ]).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
        assert!(bad.text.contains("is not a domain name"), "{}", bad.text);
        for shown in [
            "id=\"saml_domain\" name=\"saml_domain\" type=\"text\" value=\"not a domain\"",
            "value=\"typed-provider\"",
            "value=\"typed-mail-attr\"",
            "value=\"typed-groups-attr\"",
            "reviewer: typed-qa</textarea>",
            "&lt;EntityDescriptor&#x2f;&gt;</textarea>",
            "name=\"saml_allow_idp_initiated\" value=\"1\" checked",
        ] {
            assert!(bad.text.contains(shown), "{shown}: {}", bad.text);
        }
        assert!(!bad.text.contains("name=\"saml_manual_role_management\" value=\"1\" checked"), "{}", bad.text);
        assert_eq!(app.get("/api/saml/settings", &app.owner).await.expect(StatusCode::OK), saml_before, "nothing saved");
        // A page loaded again shows the stored values, not the refused ones.
        let again = admin.get(&app, SSO).await;
        assert!(!again.text.contains("typed-provider") && !again.text.contains("typed-qa"), "{}", again.text);

        // SCIM: a role that is none; the typed mapping is shown again.
        let bad = post(&mut admin, &app, SSO, &[("action", "scim"), ("scim_roles_groups", "wizard: typed-magicians"), ("scim_default_role", "typed-role")]).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
        assert!(bad.text.contains("wizard: typed-magicians</textarea>") && bad.text.contains("value=\"typed-role\""), "{}", bad.text);

        // LDAP: plain ldap:// without StartTLS is refused; the typed values come back, the
        // password does not (its box stays empty), and the status still says what is stored.
        let secret = "typed-secret-Kp3v";
        let bad = post(&mut admin, &app, SSO, &[
            ("action", "ldap"), ("ldap_enabled", "1"), ("ldap_server_uri", "ldap://typed.corp.example"),
            ("ldap_bind_dn", "cn=typed,dc=corp"), ("ldap_bind_password", secret),
            ("ldap_user_search_filter", "(uid={user})"), ("ldap_domains", "typed.example.com"),
            ("ldap_roles_groups", "reviewer: typed-ldap-qa"),
        ]).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
        assert!(bad.text.contains("id=\"settings-error\""), "{}", bad.text);
        for shown in [
            "value=\"ldap:&#x2f;&#x2f;typed.corp.example\"",
            "value=\"cn=typed,dc=corp\"",
            "value=\"typed.example.com\"",
            "reviewer: typed-ldap-qa</textarea>",
            "name=\"ldap_enabled\" value=\"1\" checked",
            "name=\"ldap_bind_password\" type=\"password\" autocomplete=\"new-password\" value=\"\"",
            "id=\"ldap-status\">Off.",
        ] {
            assert!(bad.text.contains(shown), "{shown}: {}", bad.text);
        }
        assert!(!bad.text.contains(secret), "the password is never shown: {}", bad.text);
        assert!(!bad.text.contains("id=\"ldap-delete\""), "nothing stored to remove: {}", bad.text);
        let ldap = app.get("/api/ldap/settings", &app.owner).await.expect(StatusCode::OK);
        assert_eq!((ldap["server_uri"].as_str(), ldap["bind_password_set"].as_bool()), (Some(""), Some(false)), "{ldap}");
    }
}
