//! SAML single sign-on pages (ADR 0031): this service provider's metadata, the start of an
//! SP-initiated sign-in, the assertion consumer service, and the "sign in with SSO" step of the
//! sign-in page that finds the organization by the email's domain.
//!
//! A refused response is audited with its reason in the organization's log and shown to the
//! user only as a generic failure, so the page reveals nothing about what was checked.

use axum::{
    extract::{Form, FromRequest, Path, Query, Request, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use minijinja::context;
use serde::Deserialize;

use super::{encode, error_page, redirect, render, safe_next, set_cookie};
use crate::{
    error::{ApiError, ErrorCode},
    http::{AppState, extract::request_meta, routes::saml::urls},
    saml,
    storage::saml as store,
};

/// `GET /saml/{org}/metadata`: this service provider's metadata for the organization's
/// identity provider.
pub(super) async fn metadata(State(state): State<AppState>, Path(org): Path<i64>) -> Response {
    let found = match store::load(&state.db, org).await {
        Ok(Some(found)) => found,
        Ok(None) => return error_page(None, &ApiError::not_found("SAML settings")),
        Err(e) => return error_page(None, &e),
    };
    match saml::sp_metadata(&urls(&state, org).sp(), &found.1) {
        Ok(xml) => (
            [(header::CONTENT_TYPE, "application/samlmetadata+xml")],
            xml,
        )
            .into_response(),
        Err(e) => error_page(None, &e),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct NextQuery {
    next: Option<String>,
}

/// `GET /saml/{org}/login?next=`: sends the browser to the identity provider with an
/// AuthnRequest.
pub(super) async fn login(
    State(state): State<AppState>,
    Path(org): Path<i64>,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    match store::start_login(&state.db, org, &urls(&state, org), &next).await {
        Ok(url) => redirect(&url),
        Err(e) => error_page(None, &e),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct SsoQuery {
    email: Option<String>,
    next: Option<String>,
}

/// `GET /user/login/sso?email=&next=`: finds the organization that signs in the email's domain
/// and continues there. The page moves on by itself (a refresh, not a redirect: the sign-in
/// form's `form-action 'self'` policy would stop a redirect to the identity provider).
pub(super) async fn by_email(State(state): State<AppState>, Query(q): Query<SsoQuery>) -> Response {
    let email = q.email.unwrap_or_default();
    let next = safe_next(q.next.as_deref());
    let org = match store::org_for_email(&state.db, &email).await {
        Ok(org) => org,
        Err(e) => return error_page(None, &e),
    };
    let Some(org) = org else {
        return render(
            StatusCode::NOT_FOUND,
            "error.html",
            context! {
                status => 404,
                title => "Single sign-on",
                message => "No single sign-on is set up for that email's domain. Sign in with your password, or ask an administrator of your organization.",
            },
        );
    };
    let to = format!("/saml/{org}/login?next={}", encode(&next));
    let brand = store_brand(&state, org).await;
    render(
        StatusCode::OK,
        "sso.html",
        context! { to => to, brand => super::brand_context(org, &brand) },
    )
}

/// The branding an organization's single sign-on pages show (none when it cannot be read).
async fn store_brand(state: &AppState, org: i64) -> crate::storage::orgs::Branding {
    crate::storage::orgs::branding(&state.db, org)
        .await
        .unwrap_or_default()
}

#[derive(Debug, Deserialize)]
pub(super) struct AcsForm {
    #[serde(rename = "SAMLResponse", default)]
    saml_response: String,
    #[serde(rename = "RelayState", default)]
    relay_state: String,
}

/// `POST /saml/{org}/acs`: the identity provider's response (HTTP-POST binding). On success
/// the session cookie is set and the browser goes where the sign-in started.
pub(super) async fn acs(
    State(state): State<AppState>,
    Path(org): Path<i64>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let meta = request_meta(&parts, state.config.trust_forwarded_for);
    let form = match Form::<AcsForm>::from_request(Request::from_parts(parts.clone(), body), &state)
        .await
    {
        Ok(Form(f)) => f,
        Err(_) => AcsForm {
            saml_response: String::new(),
            relay_state: String::new(),
        },
    };
    let ttl = state.config.session_ttl_hours.saturating_mul(3600);
    let outcome = if form.saml_response.trim().is_empty() {
        Err(store::Refused {
            reason: "the request carries no SAMLResponse".into(),
        })
    } else {
        store::complete_login(
            &state.db,
            &meta,
            org,
            &urls(&state, org),
            &form.saml_response,
            &form.relay_state,
            ttl,
        )
        .await
    };
    match outcome {
        Ok((session, next)) => {
            let to = super::landing(&state, org, &safe_next(Some(&next))).await;
            let mut response = redirect(&to);
            if let Ok(v) = set_cookie(
                &state,
                &parts.headers,
                super::SESSION_COOKIE,
                &session.token,
                Some(ttl),
            )
            .parse()
            {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
            response
        }
        Err(refused) => {
            tracing::info!(org, reason = %refused.reason, "SAML sign-in refused");
            if let Err(e) = store::audit_refusal(&state.db, &meta, org, &refused.reason).await {
                return error_page(None, &e);
            }
            error_page(
                None,
                &ApiError::new(
                    ErrorCode::Unauthenticated,
                    "Single sign-on did not succeed. Try again from the sign-in page; if it keeps failing, ask an administrator of your organization.",
                ),
            )
        }
    }
}
