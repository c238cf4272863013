//! Typed reads of fields of a JSON request body (Label Studio's endpoints take loose JSON
//! objects). Every function answers 400 `validation_error` naming the field and saying what it
//! must be; absent and `null` fields are `None` where a field is optional.

use serde_json::{Map, Value};

use crate::authz::Role;
use crate::error::{ApiError, ApiResult, ErrorCode};

fn invalid(key: &str, message: impl Into<String>) -> ApiError {
    ApiError::field(ErrorCode::ValidationError, key, message)
}

/// An optional string.
pub fn opt_string(body: &Map<String, Value>, key: &str) -> ApiResult<Option<String>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(key, "must be a string")),
    }
}

/// An optional string of at most `max` characters.
pub fn opt_text(body: &Map<String, Value>, key: &str, max: usize) -> ApiResult<Option<String>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
        Some(_) => Err(invalid(
            key,
            format!("must be a string of at most {max} characters"),
        )),
    }
}

/// An optional boolean.
pub fn opt_bool(body: &Map<String, Value>, key: &str) -> ApiResult<Option<bool>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid(key, "must be true or false")),
    }
}

/// A required integer id.
pub fn id(body: &Map<String, Value>, key: &str) -> ApiResult<i64> {
    body.get(key)
        .and_then(Value::as_i64)
        .ok_or_else(|| invalid(key, "this field is required and must be an id"))
}

/// A required list of integer ids.
pub fn ids(body: &Map<String, Value>, key: &str) -> ApiResult<Vec<i64>> {
    match body.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_i64()
                    .ok_or_else(|| invalid(key, "must be a list of ids"))
            })
            .collect(),
        _ => Err(invalid(
            key,
            "this field is required and must be a list of ids",
        )),
    }
}

/// An optional organization role (`owner` … `annotator`, or Label Studio's `OW` … `AN`).
pub fn opt_role(body: &Map<String, Value>, key: &str) -> ApiResult<Option<Role>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Role::parse(s).map(Some).ok_or_else(|| {
            invalid(
                key,
                format!("{s:?} is not a role; use owner, admin, manager, reviewer or annotator (or OW, AD, MA, RE, AN)"),
            )
        }),
        Some(_) => Err(invalid(key, "must be a role name")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn message(e: ApiError) -> String {
        e.validation_errors
            .and_then(|m| m.get("x").and_then(|v| v.first().cloned()))
            .unwrap_or_default()
    }

    #[test]
    fn fields_read_what_they_say_and_name_what_is_wrong() {
        let b = body(json!({"s": "hi", "n": null, "t": true, "i": 7, "l": [1, 2], "r": "AN"}));
        assert_eq!(opt_string(&b, "s").ok(), Some(Some("hi".into())));
        assert_eq!(opt_string(&b, "n").ok(), Some(None));
        assert_eq!(opt_string(&b, "missing").ok(), Some(None));
        assert_eq!(opt_text(&b, "s", 2).ok(), Some(Some("hi".into())));
        assert_eq!(opt_bool(&b, "t").ok(), Some(Some(true)));
        assert_eq!(id(&b, "i").ok(), Some(7));
        assert_eq!(ids(&b, "l").ok(), Some(vec![1, 2]));
        assert_eq!(opt_role(&b, "r").ok(), Some(Some(Role::Annotator)));

        let bad = body(json!({"x": 1.5}));
        let m = |r: ApiResult<()>| r.err().map(message).unwrap_or_default();
        assert_eq!(m(opt_string(&bad, "x").map(drop)), "must be a string");
        assert_eq!(m(opt_bool(&bad, "x").map(drop)), "must be true or false");
        assert_eq!(
            m(id(&bad, "x").map(drop)),
            "this field is required and must be an id"
        );
        assert_eq!(
            m(ids(&bad, "x").map(drop)),
            "this field is required and must be a list of ids"
        );
        assert_eq!(m(opt_role(&bad, "x").map(drop)), "must be a role name");
        let long = body(json!({"x": "abc"}));
        assert_eq!(
            m(opt_text(&long, "x", 2).map(drop)),
            "must be a string of at most 2 characters"
        );
        assert!(m(opt_role(&long, "x").map(drop)).starts_with("\"abc\" is not a role"));
        assert_eq!(
            m(ids(&body(json!({"x": [1, "2"]})), "x").map(drop)),
            "must be a list of ids"
        );
    }
}
