//! Extractors: the authenticated [`Actor`], JSON bodies and query strings whose rejections use
//! the API's error envelope.

use axum::{
    extract::{FromRequest, FromRequestParts, Request, rejection::JsonRejection},
    http::request::Parts,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::AppState;
use crate::{
    auth,
    authz::Actor,
    error::{ApiError, ErrorCode},
    storage::{now_micros, users},
};

impl FromRequestParts<AppState> for Actor {
    type Rejection = ApiError;

    /// Accepts `Authorization: Token <legacy>`, `Authorization: Bearer <access JWT>` (or a
    /// legacy token), and `X-Api-Key: <legacy or access JWT>`.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let credential = match (header("authorization"), header("x-api-key")) {
            (Some(auth), _) => {
                let (scheme, value) = auth.split_once(' ').unwrap_or((auth, ""));
                match scheme.to_ascii_lowercase().as_str() {
                    "token" | "bearer" => value.trim().to_string(),
                    _ => {
                        return Err(ApiError::unauthenticated(
                            "unsupported Authorization scheme; use \"Token <key>\" or \"Bearer <access token>\"",
                        ));
                    }
                }
            }
            (None, Some(key)) => key.to_string(),
            (None, None) => {
                return Err(ApiError::unauthenticated(
                    "Authentication credentials were not provided. Send \"Authorization: Token <your API token>\".",
                ));
            }
        };
        if credential.is_empty() {
            return Err(ApiError::unauthenticated(
                "the Authorization header has no token",
            ));
        }
        let actor = if auth::looks_like_jwt(&credential) {
            let claims = auth::verify_jwt(
                &state.jwt_key,
                &credential,
                "access",
                now_micros() / 1_000_000,
            )
            .map_err(|e| {
                let hint = if matches!(e, auth::JwtError::WrongType { .. }) {
                    "; a personal access token must first be exchanged at POST /api/token/refresh"
                } else {
                    ""
                };
                ApiError::unauthenticated(format!("{e}{hint}"))
            })?;
            users::actor_for_user(&state.db, claims.user_id).await?
        } else {
            users::actor_for_legacy_token(&state.db, &credential).await?
        };
        let actor = actor.ok_or_else(|| {
            ApiError::unauthenticated("Invalid token, or the user is deactivated.")
        })?;
        Ok(actor)
    }
}

/// A JSON object body; malformed JSON or a non-object is a 400 in the API's envelope.
#[derive(Debug)]
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<Value>::from_request(req, state).await {
            Ok(axum::Json(Value::Object(map))) => Ok(Self(map)),
            Ok(_) => Err(ApiError::bad_request(
                ErrorCode::InvalidJson,
                "the body must be a JSON object",
            )),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// Any JSON body.
#[derive(Debug)]
pub struct JsonValue(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonValue {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Json::<Value>::from_request(req, state)
            .await
            .map(|axum::Json(v)| Self(v))
            .map_err(json_rejection)
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::BytesRejection(_)
            if rejection.status() == http::StatusCode::PAYLOAD_TOO_LARGE =>
        {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                "the request body is larger than the server accepts (max_body_bytes)",
            )
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::bad_request(
            ErrorCode::InvalidJson,
            "send the body as JSON with Content-Type: application/json",
        ),
        other => ApiError::bad_request(
            ErrorCode::InvalidJson,
            format!("invalid JSON body: {}", other.body_text()),
        ),
    }
}

/// Query string parameters; bad values are a 400 naming the parameter.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded_compat::from_str(query)
            .map(Query)
            .map_err(|e| {
                ApiError::bad_request(
                    ErrorCode::InvalidQuery,
                    format!("invalid query string: {e}"),
                )
            })
    }
}

/// Query-string decoding through axum's own deserializer (keeps one dependency).
mod serde_urlencoded_compat {
    use serde::de::DeserializeOwned;

    pub(super) fn from_str<T: DeserializeOwned>(query: &str) -> Result<T, String> {
        let uri: http::Uri = format!("/?{query}")
            .parse()
            .map_err(|e: http::uri::InvalidUri| e.to_string())?;
        axum::extract::Query::<T>::try_from_uri(&uri)
            .map(|q| q.0)
            .map_err(|e| e.body_text())
    }
}

/// Parses an optional integer query value that may be empty.
pub fn opt_int(name: &str, value: &Option<String>) -> Result<Option<i64>, ApiError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            ApiError::field(
                ErrorCode::InvalidQuery,
                name,
                format!("{v:?} is not an integer"),
            )
        }),
    }
}

/// Parses an optional boolean query value (`true`/`false`/`1`/`0`).
pub fn opt_bool(name: &str, value: &Option<String>) -> Result<Option<bool>, ApiError> {
    match value.as_deref().map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v == "true" || v == "1" => Ok(Some(true)),
        Some(v) if v == "false" || v == "0" => Ok(Some(false)),
        Some(v) => Err(ApiError::field(
            ErrorCode::InvalidQuery,
            name,
            format!("{v:?} is not true or false"),
        )),
    }
}
