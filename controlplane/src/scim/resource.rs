//! SCIM resources as JSON documents: the attributes Verity declares (RFC 7643), how a request
//! body is checked against them, filters (RFC 7644 §3.4.2.2, parsed by the `scim_v2` crate)
//! evaluated on a rendered resource, PATCH operations (§3.5.2) applied to one, and the
//! `attributes`/`excludedAttributes` projection (§3.4.2.5). Pure functions; no I/O.

use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, Filter, PatchPath, ValFilter};
use serde_json::{Map, Value};

/// Core schema URN of users.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// Core schema URN of groups.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// A SCIM error: HTTP status, `scimType` (when RFC 7644 §3.12 names one) and a message saying
/// what to fix.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimError {
    /// HTTP status.
    pub status: u16,
    /// `invalidFilter`, `invalidValue`, `invalidPath`, `noTarget`, `mutability`, `uniqueness`,
    /// `invalidSyntax`, `tooMany`.
    pub scim_type: Option<&'static str>,
    /// What went wrong and how to fix it.
    pub detail: String,
}

impl ScimError {
    /// A 400 with a `scimType`.
    pub fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status: 400,
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }

    /// An error with a status and no `scimType`.
    pub fn status(status: u16, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type: None,
            detail: detail.into(),
        }
    }
}

/// Result of this module.
pub type ScimResult<T> = Result<T, ScimError>;

/// Attribute data types used here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// `string`.
    String,
    /// `boolean`.
    Boolean,
    /// `complex`, with sub-attributes.
    Complex,
    /// `reference` to the listed resource types.
    Reference(&'static [&'static str]),
}

/// Mutability of an attribute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mutability {
    /// Set by clients.
    ReadWrite,
    /// Set when created (or first assigned), never changed.
    Immutable,
    /// Set by the server only.
    ReadOnly,
}

/// One attribute of a resource schema.
#[derive(Debug)]
pub struct Attr {
    /// Name as the schema spells it.
    pub name: &'static str,
    /// Type.
    pub kind: Kind,
    /// Multi-valued.
    pub multi: bool,
    /// Required on create and replace.
    pub required: bool,
    /// Mutability.
    pub mutability: Mutability,
    /// Whether values compare case-sensitively.
    pub case_exact: bool,
    /// `server` when the value is unique within the organization.
    pub unique: bool,
    /// Suggested values.
    pub canonical: &'static [&'static str],
    /// Sub-attributes of a complex attribute.
    pub subs: &'static [Attr],
}

const fn simple(name: &'static str, kind: Kind, mutability: Mutability) -> Attr {
    Attr {
        name,
        kind,
        multi: false,
        required: false,
        mutability,
        case_exact: false,
        unique: false,
        canonical: &[],
        subs: &[],
    }
}

const RW: Mutability = Mutability::ReadWrite;
const RO: Mutability = Mutability::ReadOnly;

/// The User schema Verity serves.
pub static USER_ATTRS: &[Attr] = &[
    Attr {
        required: true,
        unique: true,
        ..simple("userName", Kind::String, RW)
    },
    Attr {
        subs: &[
            simple("formatted", Kind::String, RW),
            simple("familyName", Kind::String, RW),
            simple("givenName", Kind::String, RW),
        ],
        ..simple("name", Kind::Complex, RW)
    },
    simple("displayName", Kind::String, RW),
    // Verity identifies users by email, so a User needs one.
    Attr {
        multi: true,
        required: true,
        subs: &[
            Attr {
                required: true,
                ..simple("value", Kind::String, RW)
            },
            Attr {
                canonical: &["work", "home", "other"],
                ..simple("type", Kind::String, RW)
            },
            simple("primary", Kind::Boolean, RW),
        ],
        ..simple("emails", Kind::Complex, RW)
    },
    simple("active", Kind::Boolean, RW),
    Attr {
        multi: true,
        subs: &[
            simple("value", Kind::String, RO),
            simple("$ref", Kind::Reference(&["Group"]), RO),
            simple("display", Kind::String, RO),
        ],
        ..simple("groups", Kind::Complex, RO)
    },
];

/// The Group schema Verity serves.
pub static GROUP_ATTRS: &[Attr] = &[
    Attr {
        required: true,
        unique: true,
        ..simple("displayName", Kind::String, RW)
    },
    Attr {
        multi: true,
        subs: &[
            simple("value", Kind::String, Mutability::Immutable),
            simple("$ref", Kind::Reference(&["User"]), Mutability::Immutable),
        ],
        ..simple("members", Kind::Complex, RW)
    },
];

/// `externalId`, common to every resource (RFC 7643 §3.1): set by the provisioning client.
pub static EXTERNAL_ID: Attr = Attr {
    case_exact: true,
    ..simple("externalId", Kind::String, RW)
};

fn find<'a>(attrs: &'a [Attr], name: &str) -> Option<&'a Attr> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

/// Strips the schema URN a client may prefix an attribute name with
/// (`urn:ietf:params:scim:schemas:core:2.0:User:userName`).
fn strip_urn<'a>(name: &'a str, schema: &str) -> &'a str {
    if name.len() > schema.len() + 1
        && name[..schema.len()].eq_ignore_ascii_case(schema)
        && name.as_bytes()[schema.len()] == b':'
    {
        &name[schema.len() + 1..]
    } else {
        name
    }
}

/// The attribute definition for a top-level name (`externalId` included).
fn top<'a>(attrs: &'a [Attr], name: &str) -> Option<&'a Attr> {
    if name.eq_ignore_ascii_case("externalId") {
        Some(&EXTERNAL_ID)
    } else {
        find(attrs, name)
    }
}

fn check_value(attr: &Attr, value: &Value, path: &str) -> ScimResult<Value> {
    match attr.kind {
        Kind::String | Kind::Reference(_) => match value {
            Value::String(s) => Ok(Value::String(s.clone())),
            _ => Err(ScimError::bad(
                "invalidValue",
                format!("{path} must be a string"),
            )),
        },
        Kind::Boolean => match value {
            Value::Bool(b) => Ok(Value::Bool(*b)),
            // Some identity providers (Entra ID) send booleans as strings in PATCH requests.
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            _ => Err(ScimError::bad(
                "invalidValue",
                format!("{path} must be true or false"),
            )),
        },
        Kind::Complex => {
            let Value::Object(map) = value else {
                return Err(ScimError::bad(
                    "invalidValue",
                    format!("{path} must be an object"),
                ));
            };
            let mut out = Map::new();
            for (key, v) in map {
                let Some(sub) = find(attr.subs, key) else {
                    continue; // unknown sub-attributes are ignored (RFC 7644 §3.3)
                };
                if sub.mutability == RO || v.is_null() {
                    continue;
                }
                out.insert(
                    sub.name.to_string(),
                    check_value(sub, v, &format!("{path}.{}", sub.name))?,
                );
            }
            for sub in attr.subs.iter().filter(|s| s.required) {
                if out
                    .get(sub.name)
                    .and_then(Value::as_str)
                    .is_none_or(|v| v.trim().is_empty())
                {
                    return Err(ScimError::bad(
                        "invalidValue",
                        format!("{path}.{} is required", sub.name),
                    ));
                }
            }
            Ok(Value::Object(out))
        }
    }
}

/// Checks one attribute's value (a whole multi-valued list, or one value) and returns it in
/// canonical form. `Ok(None)`: the value unassigns the attribute (null, empty list).
fn check_attr(attr: &Attr, value: &Value) -> ScimResult<Option<Value>> {
    if value.is_null() {
        return Ok(None);
    }
    if attr.multi {
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            out.push(check_value(attr, item, &format!("{}[{i}]", attr.name))?);
        }
        if out.is_empty() {
            return Ok(None);
        }
        let primaries = out
            .iter()
            .filter(|v| v.get("primary") == Some(&Value::Bool(true)))
            .count();
        if primaries > 1 {
            return Err(ScimError::bad(
                "invalidValue",
                format!("at most one of {} may be primary", attr.name),
            ));
        }
        Ok(Some(Value::Array(out)))
    } else {
        check_value(attr, value, attr.name).map(Some)
    }
}

/// A request body (POST or PUT) reduced to the writable attributes of the schema, with their
/// canonical names. Read-only, unknown and server-set attributes (`id`, `meta`, `schemas`) are
/// dropped, as RFC 7644 §3.3 and §3.5.1 ask.
pub fn from_request(attrs: &[Attr], schema: &str, body: &Value) -> ScimResult<Map<String, Value>> {
    let Value::Object(map) = body else {
        return Err(ScimError::bad(
            "invalidSyntax",
            "the request body must be a JSON object",
        ));
    };
    if let Some(schemas) = map.get("schemas") {
        let ok = schemas
            .as_array()
            .is_some_and(|s| s.iter().any(|v| v.as_str() == Some(schema)));
        if !ok {
            return Err(ScimError::bad(
                "invalidSyntax",
                format!("schemas must list {schema}"),
            ));
        }
    }
    let mut doc = Map::new();
    for (key, value) in map {
        let name = strip_urn(key, schema);
        let Some(attr) = top(attrs, name) else {
            continue;
        };
        if attr.mutability == RO {
            continue;
        }
        if let Some(v) = check_attr(attr, value)? {
            doc.insert(attr.name.to_string(), v);
        }
    }
    check_required(attrs, &doc)?;
    Ok(doc)
}

/// Fails when a required attribute is missing or empty.
pub fn check_required(attrs: &[Attr], doc: &Map<String, Value>) -> ScimResult<()> {
    for attr in attrs.iter().filter(|a| a.required) {
        let present = match doc.get(attr.name) {
            Some(Value::String(s)) => !s.trim().is_empty(),
            Some(Value::Null) | None => false,
            Some(_) => true,
        };
        if !present {
            return Err(ScimError::bad(
                "invalidValue",
                format!("{} is required", attr.name),
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Filters

/// Parses a `filter` query parameter.
pub fn parse_filter(raw: &str) -> ScimResult<Filter> {
    raw.parse::<Filter>().map_err(|e| {
        ScimError::bad(
            "invalidFilter",
            format!("the filter {raw:?} is not valid SCIM filter syntax: {e}"),
        )
    })
}

/// Looks a key up case-insensitively.
fn get_ci<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// The values an attribute path names in a resource: one per element for multi-valued
/// attributes. A path to a multi-valued complex attribute without a sub-attribute compares
/// against its `value` sub-attribute.
fn values_at<'a>(
    resource: &'a Map<String, Value>,
    path: &AttrPath,
    schema: &str,
) -> Vec<&'a Value> {
    let name = match &path.uri {
        Some(uri) if !uri.eq_ignore_ascii_case(schema) => return Vec::new(),
        _ => path.name.as_str(),
    };
    let Some(v) = get_ci(resource, name) else {
        return Vec::new();
    };
    let pick = |item: &'a Value| -> Option<&'a Value> {
        match (&path.sub_attr, item) {
            (Some(sub), Value::Object(m)) => get_ci(m, sub),
            (Some(_), _) => None,
            (None, Value::Object(m)) => get_ci(m, "value"),
            (None, other) => Some(other),
        }
    };
    match v {
        Value::Array(items) => items.iter().filter_map(pick).collect(),
        Value::Object(_) if path.sub_attr.is_some() => pick(v).into_iter().collect(),
        other => vec![other],
    }
}

fn is_case_exact(path: &AttrPath) -> bool {
    path.sub_attr.is_none()
        && (path.name.eq_ignore_ascii_case("id") || path.name.eq_ignore_ascii_case("externalId"))
}

fn compare(value: &Value, op: CompareOp, expected: &CompValue, case_exact: bool) -> bool {
    use std::cmp::Ordering;
    let ordering: Option<Ordering> = match (value, expected) {
        (Value::String(a), CompValue::Str(b)) => {
            let (a, b) = if case_exact {
                (a.clone(), b.clone())
            } else {
                (a.to_lowercase(), b.to_lowercase())
            };
            match op {
                CompareOp::Co => return a.contains(&b),
                CompareOp::Sw => return a.starts_with(&b),
                CompareOp::Ew => return a.ends_with(&b),
                _ => Some(a.cmp(&b)),
            }
        }
        (Value::Bool(a), CompValue::True) => Some(a.cmp(&true)),
        (Value::Bool(a), CompValue::False) => Some(a.cmp(&false)),
        (Value::Number(a), CompValue::Number(b)) => a
            .as_f64()
            .zip(b.as_f64())
            .and_then(|(a, b)| a.partial_cmp(&b)),
        (Value::Null, CompValue::Null) => Some(Ordering::Equal),
        _ => None,
    };
    let Some(ordering) = ordering else {
        return op == CompareOp::Ne;
    };
    match op {
        CompareOp::Eq => ordering == Ordering::Equal,
        CompareOp::Ne => ordering != Ordering::Equal,
        CompareOp::Gt => ordering == Ordering::Greater,
        CompareOp::Ge => ordering != Ordering::Less,
        CompareOp::Lt => ordering == Ordering::Less,
        CompareOp::Le => ordering != Ordering::Greater,
        // Booleans and numbers do not support co/sw/ew (RFC 7644 §3.4.2.2).
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn attr_exp_matches(resource: &Map<String, Value>, exp: &AttrExp, schema: &str) -> bool {
    match exp {
        AttrExp::Present(path) => values_at(resource, path, schema).into_iter().any(present),
        AttrExp::Comparison(path, op, expected) => {
            let values = values_at(resource, path, schema);
            let exact = is_case_exact(path);
            if values.is_empty() {
                // An unassigned attribute is "not equal" to anything.
                return *op == CompareOp::Ne;
            }
            if *op == CompareOp::Ne {
                values
                    .iter()
                    .all(|v| compare(v, CompareOp::Ne, expected, exact))
            } else {
                values
                    .iter()
                    .any(|v| compare(v, op.clone(), expected, exact))
            }
        }
    }
}

fn val_filter_matches(element: &Value, filter: &ValFilter, schema: &str) -> bool {
    let Value::Object(map) = element else {
        return false;
    };
    match filter {
        ValFilter::Attr(exp) => attr_exp_matches(map, exp, schema),
        ValFilter::Not(inner) => !val_filter_matches(element, inner, schema),
        ValFilter::And(items) => items.iter().all(|f| val_filter_matches(element, f, schema)),
        ValFilter::Or(items) => items.iter().any(|f| val_filter_matches(element, f, schema)),
    }
}

/// Whether a rendered resource matches a filter.
pub fn matches(resource: &Map<String, Value>, filter: &Filter, schema: &str) -> bool {
    match filter {
        Filter::Attr(exp) => attr_exp_matches(resource, exp, schema),
        Filter::ValuePath(vp) => {
            let name = vp.attr.name.as_str();
            match get_ci(resource, name) {
                Some(Value::Array(items)) => items
                    .iter()
                    .any(|item| val_filter_matches(item, &vp.filter, schema)),
                Some(one @ Value::Object(_)) => val_filter_matches(one, &vp.filter, schema),
                _ => false,
            }
        }
        Filter::Not(inner) => !matches(resource, inner, schema),
        Filter::And(items) => items.iter().all(|f| matches(resource, f, schema)),
        Filter::Or(items) => items.iter().any(|f| matches(resource, f, schema)),
    }
}

/// A simple `attr eq "value"` filter on one of `names`, so the caller can look it up in the
/// database instead of scanning every resource.
pub fn equality_on<'a>(filter: &'a Filter, names: &[&str]) -> Option<(&'static str, &'a str)> {
    let Filter::Attr(AttrExp::Comparison(path, CompareOp::Eq, CompValue::Str(v))) = filter else {
        return None;
    };
    if path.uri.is_some() {
        return None;
    }
    let full = match &path.sub_attr {
        Some(sub) => format!("{}.{}", path.name, sub),
        None => path.name.clone(),
    };
    for n in names {
        if full.eq_ignore_ascii_case(n) {
            let canonical: &'static str = match n.to_ascii_lowercase().as_str() {
                "username" => "userName",
                "emails.value" | "emails" => "emails.value",
                "displayname" => "displayName",
                "externalid" => "externalId",
                _ => return None,
            };
            return Some((canonical, v.as_str()));
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// PATCH

/// A PATCH operation as received.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `add`.
    Add,
    /// `replace`.
    Replace,
    /// `remove`.
    Remove,
}

/// Parses the PatchOp body into (op, path, value) triples.
pub fn parse_patch(body: &Value) -> ScimResult<Vec<(Op, Option<PatchPath>, Value)>> {
    const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
    let Value::Object(map) = body else {
        return Err(ScimError::bad(
            "invalidSyntax",
            "the request body must be a JSON object",
        ));
    };
    let schemas_ok = map
        .get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|v| v.as_str() == Some(PATCH_SCHEMA)));
    if !schemas_ok {
        return Err(ScimError::bad(
            "invalidSyntax",
            format!("schemas must list {PATCH_SCHEMA}"),
        ));
    }
    let Some(Value::Array(ops)) = get_ci(map, "Operations") else {
        return Err(ScimError::bad(
            "invalidSyntax",
            "Operations must be a list of operations",
        ));
    };
    if ops.is_empty() {
        return Err(ScimError::bad(
            "invalidSyntax",
            "Operations must list at least one operation",
        ));
    }
    if ops.len() > 1000 {
        return Err(ScimError::bad(
            "tooMany",
            "at most 1000 operations per request",
        ));
    }
    let mut out = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let Value::Object(op) = op else {
            return Err(ScimError::bad(
                "invalidSyntax",
                format!("Operations[{i}] must be an object"),
            ));
        };
        let kind = match get_ci(op, "op")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
        {
            Some(k) if k == "add" => Op::Add,
            Some(k) if k == "replace" => Op::Replace,
            Some(k) if k == "remove" => Op::Remove,
            _ => {
                return Err(ScimError::bad(
                    "invalidSyntax",
                    format!("Operations[{i}].op must be add, replace or remove"),
                ));
            }
        };
        let path = match get_ci(op, "path") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) if p.trim().is_empty() => None,
            Some(Value::String(p)) => Some(p.parse::<PatchPath>().map_err(|e| {
                ScimError::bad(
                    "invalidPath",
                    format!("Operations[{i}].path {p:?} is not a valid path: {e}"),
                )
            })?),
            Some(_) => {
                return Err(ScimError::bad(
                    "invalidPath",
                    format!("Operations[{i}].path must be a string"),
                ));
            }
        };
        if kind == Op::Remove && path.is_none() {
            return Err(ScimError::bad(
                "noTarget",
                format!("Operations[{i}]: remove needs a path"),
            ));
        }
        let value = get_ci(op, "value").cloned().unwrap_or(Value::Null);
        if kind != Op::Remove && value.is_null() {
            return Err(ScimError::bad(
                "invalidValue",
                format!("Operations[{i}]: {kind:?} needs a value"),
            ));
        }
        out.push((kind, path, value));
    }
    Ok(out)
}

fn canonical_key(map: &Map<String, Value>, name: &str) -> String {
    map.keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

fn attr_path_name(path: &AttrPath, schema: &str) -> ScimResult<String> {
    if let Some(uri) = &path.uri
        && !uri.eq_ignore_ascii_case(schema)
    {
        return Err(ScimError::bad(
            "invalidPath",
            format!("unknown schema {uri}"),
        ));
    }
    Ok(path.name.clone())
}

/// Applies one operation to `doc` (the writable attributes of a resource, canonical names).
/// The result is checked again by the caller through [`from_request`].
fn apply_one(
    attrs: &[Attr],
    schema: &str,
    doc: &mut Map<String, Value>,
    op: &Op,
    path: Option<&PatchPath>,
    value: &Value,
) -> ScimResult<()> {
    let Some(path) = path else {
        // No path: the value is an object of attributes to add or replace.
        let Value::Object(map) = value else {
            return Err(ScimError::bad(
                "invalidValue",
                "without a path, value must be an object of attributes",
            ));
        };
        for (key, v) in map {
            let name = strip_urn(key, schema);
            // "name.givenName" keys (Entra ID sends them without a path).
            let parsed: PatchPath = name
                .parse()
                .map_err(|e| ScimError::bad("invalidPath", format!("attribute {key:?}: {e}")))?;
            apply_one(attrs, schema, doc, op, Some(&parsed), v)?;
        }
        return Ok(());
    };
    match path {
        PatchPath::Attr(ap) => {
            let name = attr_path_name(ap, schema)?;
            let Some(attr) = top(attrs, &name) else {
                return Err(ScimError::bad(
                    "invalidPath",
                    format!("{name} is not an attribute of this resource"),
                ));
            };
            if attr.mutability == RO {
                return Err(ScimError::bad(
                    "mutability",
                    format!("{} is read-only", attr.name),
                ));
            }
            let key = attr.name.to_string();
            match &ap.sub_attr {
                None => match op {
                    Op::Remove => {
                        doc.remove(&key);
                    }
                    Op::Replace => {
                        doc.insert(key, value.clone());
                    }
                    Op::Add => {
                        if attr.multi {
                            let mut items = match doc.remove(&key) {
                                Some(Value::Array(items)) => items,
                                Some(other) => vec![other],
                                None => Vec::new(),
                            };
                            match value {
                                Value::Array(new) => {
                                    for v in new {
                                        if !items.contains(v) {
                                            items.push(v.clone());
                                        }
                                    }
                                }
                                one => {
                                    if !items.contains(one) {
                                        items.push(one.clone());
                                    }
                                }
                            }
                            doc.insert(key, Value::Array(items));
                        } else if let (Some(Value::Object(old)), Value::Object(new)) =
                            (doc.get_mut(&key), value)
                        {
                            for (k, v) in new {
                                let ck = canonical_key(old, k);
                                old.insert(ck, v.clone());
                            }
                        } else {
                            doc.insert(key, value.clone());
                        }
                    }
                },
                Some(sub) => {
                    let Some(sub_attr) = find(attr.subs, sub) else {
                        return Err(ScimError::bad(
                            "invalidPath",
                            format!("{}.{sub} is not an attribute of this resource", attr.name),
                        ));
                    };
                    if attr.multi {
                        // `emails.value` without a filter: every element.
                        let Some(Value::Array(items)) = doc.get_mut(&key) else {
                            if *op == Op::Remove {
                                return Ok(());
                            }
                            return Err(ScimError::bad(
                                "noTarget",
                                format!("{} has no values to change", attr.name),
                            ));
                        };
                        for item in items.iter_mut() {
                            if let Value::Object(m) = item {
                                set_sub(m, sub_attr.name, op, value);
                            }
                        }
                    } else {
                        let entry = doc.entry(key).or_insert_with(|| Value::Object(Map::new()));
                        if let Value::Object(m) = entry {
                            set_sub(m, sub_attr.name, op, value);
                        }
                    }
                }
            }
        }
        PatchPath::Value(vp) => {
            let name = attr_path_name(&vp.attr, schema)?;
            let Some(attr) = top(attrs, &name).filter(|a| a.multi) else {
                return Err(ScimError::bad(
                    "invalidPath",
                    format!("{name} is not a multi-valued attribute of this resource"),
                ));
            };
            if attr.mutability == RO {
                return Err(ScimError::bad(
                    "mutability",
                    format!("{} is read-only", attr.name),
                ));
            }
            let key = attr.name.to_string();
            let items = match doc.get_mut(&key) {
                Some(Value::Array(items)) => items,
                _ if *op == Op::Remove => return Ok(()),
                _ => {
                    return Err(ScimError::bad(
                        "noTarget",
                        format!("no element of {} matches the path's filter", attr.name),
                    ));
                }
            };
            let hits: Vec<usize> = items
                .iter()
                .enumerate()
                .filter(|(_, item)| val_filter_matches(item, &vp.filter, schema))
                .map(|(i, _)| i)
                .collect();
            if hits.is_empty() && *op != Op::Remove {
                return Err(ScimError::bad(
                    "noTarget",
                    format!("no element of {} matches the path's filter", attr.name),
                ));
            }
            match (&vp.sub_attr, op) {
                (None, Op::Remove) => {
                    for i in hits.into_iter().rev() {
                        items.remove(i);
                    }
                }
                (None, _) => {
                    for i in hits {
                        match (&mut items[i], value) {
                            (Value::Object(old), Value::Object(new)) if *op == Op::Add => {
                                for (k, v) in new {
                                    let ck = canonical_key(old, k);
                                    old.insert(ck, v.clone());
                                }
                            }
                            (slot, v) => *slot = v.clone(),
                        }
                    }
                }
                (Some(sub), _) => {
                    let Some(sub_attr) = find(attr.subs, sub) else {
                        return Err(ScimError::bad(
                            "invalidPath",
                            format!("{}.{sub} is not an attribute of this resource", attr.name),
                        ));
                    };
                    for i in hits {
                        if let Value::Object(m) = &mut items[i] {
                            set_sub(m, sub_attr.name, op, value);
                        }
                    }
                }
            }
            if items.is_empty() {
                doc.remove(&key);
            }
        }
    }
    Ok(())
}

fn set_sub(map: &mut Map<String, Value>, name: &str, op: &Op, value: &Value) {
    let key = canonical_key(map, name);
    match op {
        Op::Remove => {
            map.remove(&key);
        }
        Op::Add | Op::Replace => {
            map.remove(&key);
            map.insert(name.to_string(), value.clone());
        }
    }
}

/// Applies PATCH operations to `doc` and returns the checked result. All operations apply or
/// none does (the caller writes only the returned document).
pub fn apply_patch(
    attrs: &[Attr],
    schema: &str,
    doc: &Map<String, Value>,
    ops: &[(Op, Option<PatchPath>, Value)],
) -> ScimResult<Map<String, Value>> {
    let mut next = doc.clone();
    for (op, path, value) in ops {
        apply_one(attrs, schema, &mut next, op, path.as_ref(), value)?;
    }
    // Mutability of immutable attributes is checked by the caller, which knows the old values.
    let mut body = next.clone();
    body.insert(
        "schemas".into(),
        Value::Array(vec![Value::String(schema.into())]),
    );
    from_request(attrs, schema, &Value::Object(body))
}

// ---------------------------------------------------------------------------------------------
// Projection

/// Applies `attributes` / `excludedAttributes` (comma-separated, possibly `name.sub`) to a
/// rendered resource. `id` and `schemas` are always returned.
pub fn project(
    resource: &mut Map<String, Value>,
    attributes: Option<&str>,
    excluded: Option<&str>,
) {
    let split = |s: &str| -> Vec<(String, Option<String>)> {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                let s = s.rsplit_once(':').map_or(s, |(_, tail)| tail);
                match s.split_once('.') {
                    Some((a, b)) => (a.to_ascii_lowercase(), Some(b.to_ascii_lowercase())),
                    None => (s.to_ascii_lowercase(), None),
                }
            })
            .collect()
    };
    let always = |k: &str| k == "id" || k == "schemas";
    if let Some(list) = attributes.filter(|s| !s.trim().is_empty()) {
        let wanted = split(list);
        resource.retain(|k, v| {
            let lk = k.to_ascii_lowercase();
            if always(&lk) {
                return true;
            }
            let subs: Vec<&String> = wanted
                .iter()
                .filter(|(a, _)| *a == lk)
                .filter_map(|(_, s)| s.as_ref())
                .collect();
            let whole = wanted.iter().any(|(a, s)| *a == lk && s.is_none());
            if whole {
                return true;
            }
            if subs.is_empty() {
                return false;
            }
            let keep_subs = |m: &mut Map<String, Value>| {
                m.retain(|sk, _| subs.iter().any(|s| s.eq_ignore_ascii_case(sk)));
            };
            match v {
                Value::Object(m) => keep_subs(m),
                Value::Array(items) => {
                    for item in items.iter_mut() {
                        if let Value::Object(m) = item {
                            keep_subs(m);
                        }
                    }
                }
                _ => {}
            }
            true
        });
    } else if let Some(list) = excluded.filter(|s| !s.trim().is_empty()) {
        for (a, sub) in split(list) {
            if always(&a) {
                continue;
            }
            let key = canonical_key(resource, &a);
            match sub {
                None => {
                    resource.remove(&key);
                }
                Some(sub) => match resource.get_mut(&key) {
                    Some(Value::Object(m)) => {
                        let sk = canonical_key(m, &sub);
                        m.remove(&sk);
                    }
                    Some(Value::Array(items)) => {
                        for item in items.iter_mut() {
                            if let Value::Object(m) = item {
                                let sk = canonical_key(m, &sub);
                                m.remove(&sk);
                            }
                        }
                    }
                    _ => {}
                },
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Discovery documents

fn attr_json(attr: &Attr) -> Value {
    let kind = match attr.kind {
        Kind::String => "string",
        Kind::Boolean => "boolean",
        Kind::Complex => "complex",
        Kind::Reference(_) => "reference",
    };
    let mutability = match attr.mutability {
        Mutability::ReadWrite => "readWrite",
        Mutability::Immutable => "immutable",
        Mutability::ReadOnly => "readOnly",
    };
    let mut out = serde_json::json!({
        "name": attr.name,
        "type": kind,
        "multiValued": attr.multi,
        "description": "",
        "required": attr.required,
        "caseExact": attr.case_exact,
        "mutability": mutability,
        "returned": "default",
        "uniqueness": if attr.unique { "server" } else { "none" },
    });
    if let Kind::Reference(types) = attr.kind {
        out["referenceTypes"] = serde_json::json!(types);
    }
    if !attr.canonical.is_empty() {
        out["canonicalValues"] = serde_json::json!(attr.canonical);
    }
    if !attr.subs.is_empty() {
        out["subAttributes"] = Value::Array(attr.subs.iter().map(attr_json).collect());
    }
    out
}

/// The `Schema` resource of one schema (RFC 7643 §7).
pub fn schema_json(id: &str, name: &str, attrs: &[Attr], base: &str) -> Value {
    serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": id,
        "name": name,
        "description": format!("{name} as Verity provisions it"),
        "attributes": attrs.iter().map(attr_json).collect::<Vec<_>>(),
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn request_bodies_keep_writable_attributes_in_canonical_form() {
        let doc = from_request(
            USER_ATTRS,
            USER_SCHEMA,
            &json!({
                "schemas": [USER_SCHEMA],
                "id": "99", "meta": {"version": "x"},
                "USERNAME": "ann",
                "name": {"GivenName": "Ann", "bogus": 1},
                "emails": {"value": "ann@example.com", "primary": "True"},
                "active": false,
                "groups": [{"value": "1"}],
                "nickName": "ignored",
                "urn:ietf:params:scim:schemas:core:2.0:User:displayName": "Ann A",
            }),
        )
        .expect("valid");
        assert_eq!(
            Value::Object(doc),
            json!({
                "userName": "ann",
                "name": {"givenName": "Ann"},
                "emails": [{"value": "ann@example.com", "primary": true}],
                "active": false,
                "displayName": "Ann A",
            })
        );
    }

    #[test]
    fn bad_bodies_are_refused_with_a_scim_type() {
        let e = from_request(USER_ATTRS, USER_SCHEMA, &json!({"schemas": [USER_SCHEMA]}))
            .expect_err("userName missing");
        assert_eq!(e.scim_type, Some("invalidValue"));
        let e = from_request(
            USER_ATTRS,
            USER_SCHEMA,
            &json!({"schemas": [USER_SCHEMA], "userName": "a", "active": "maybe"}),
        )
        .expect_err("bad boolean");
        assert!(e.detail.contains("active"), "{}", e.detail);
        let e = from_request(
            USER_ATTRS,
            USER_SCHEMA,
            &json!({"schemas": [GROUP_SCHEMA], "userName": "a"}),
        )
        .expect_err("wrong schema");
        assert_eq!(e.scim_type, Some("invalidSyntax"));
        let e = from_request(
            USER_ATTRS,
            USER_SCHEMA,
            &json!({"userName": "a", "emails": [{"value": "a@x", "primary": true}, {"value": "b@x", "primary": true}]}),
        )
        .expect_err("two primaries");
        assert!(e.detail.contains("primary"));
    }

    #[test]
    fn filters_follow_rfc_7644_semantics() {
        let u = user(json!({
            "id": "7", "userName": "Bjensen", "externalId": "AbC",
            "name": {"givenName": "Barbara"},
            "emails": [{"value": "b@work.example", "type": "work"}, {"value": "b@home.example", "type": "home"}],
            "active": true,
            "meta": {"lastModified": "2026-01-02T00:00:00Z"},
        }));
        let t = |f: &str| matches(&u, &parse_filter(f).expect("parses"), USER_SCHEMA);
        assert!(t(r#"userName eq "bjensen""#)); // caseExact false
        assert!(!t(r#"externalId eq "abc""#)); // caseExact true
        assert!(t(r#"externalId eq "AbC""#));
        assert!(t(r#"emails co "home.example""#));
        assert!(t(r#"emails.value sw "b@w""#));
        assert!(t(r#"emails[type eq "work" and value ew "work.example"]"#));
        assert!(!t(r#"emails[type eq "work" and value ew "home.example"]"#));
        assert!(t(r#"name.givenName pr and not (title pr)"#));
        assert!(t(r#"active eq true"#));
        assert!(!t(r#"active eq false"#));
        assert!(t(r#"userName eq "x" or name.givenName sw "bar""#));
        assert!(t(r#"meta.lastModified gt "2026-01-01T00:00:00Z""#));
        assert!(t(r#"userName ne "other""#));
        assert!(!t(r#"userName ne "BJENSEN""#));
        assert!(t(r#"title ne "x""#));
        assert_eq!(
            parse_filter("userName eq").expect_err("bad").scim_type,
            Some("invalidFilter")
        );
    }

    #[test]
    fn patch_operations_apply_to_the_document() {
        let doc = user(json!({
            "userName": "ann",
            "emails": [{"value": "a@work", "type": "work", "primary": true}, {"value": "a@home", "type": "home"}],
            "name": {"givenName": "Ann"},
        }));
        let ops = parse_patch(&json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "new@work"},
                {"op": "remove", "path": "emails[type eq \"home\"]"},
                {"op": "add", "path": "name.familyName", "value": "Smith"},
                {"op": "replace", "value": {"active": "False", "displayName": "Ann S"}},
            ],
        }))
        .expect("parses");
        let out = apply_patch(USER_ATTRS, USER_SCHEMA, &doc, &ops).expect("applies");
        assert_eq!(
            Value::Object(out),
            json!({
                "userName": "ann",
                "emails": [{"value": "new@work", "type": "work", "primary": true}],
                "name": {"givenName": "Ann", "familyName": "Smith"},
                "active": false,
                "displayName": "Ann S",
            })
        );
        // Group members: add and remove by value.
        let group = user(json!({"displayName": "g", "members": [{"value": "1"}, {"value": "2"}]}));
        let ops = parse_patch(&json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "add", "path": "members", "value": [{"value": "3"}]},
                {"op": "remove", "path": "members[value eq \"1\"]"},
            ],
        }))
        .expect("parses");
        let out = apply_patch(GROUP_ATTRS, GROUP_SCHEMA, &group, &ops).expect("applies");
        assert_eq!(out["members"], json!([{"value": "2"}, {"value": "3"}]));
    }

    #[test]
    fn bad_patches_are_refused_and_change_nothing() {
        let doc = user(json!({"userName": "ann"}));
        let parse = |ops: Value| {
            parse_patch(
                &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops}),
            )
        };
        assert_eq!(
            parse(json!([{"op": "remove"}]))
                .expect_err("no path")
                .scim_type,
            Some("noTarget")
        );
        assert_eq!(
            parse(json!([{"op": "move", "path": "x"}]))
                .expect_err("op")
                .scim_type,
            Some("invalidSyntax")
        );
        assert_eq!(
            parse(json!([{"op": "add", "path": "emails[", "value": 1}]))
                .expect_err("path")
                .scim_type,
            Some("invalidPath")
        );
        let ops = parse(json!([{"op": "replace", "path": "groups", "value": []}])).expect("parses");
        assert_eq!(
            apply_patch(USER_ATTRS, USER_SCHEMA, &doc, &ops)
                .expect_err("ro")
                .scim_type,
            Some("mutability")
        );
        let ops = parse(json!([{"op": "remove", "path": "userName"}])).expect("parses");
        assert_eq!(
            apply_patch(USER_ATTRS, USER_SCHEMA, &doc, &ops)
                .expect_err("required")
                .scim_type,
            Some("invalidValue")
        );
        let ops = parse(
            json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "x"}]),
        )
        .expect("parses");
        assert_eq!(
            apply_patch(USER_ATTRS, USER_SCHEMA, &doc, &ops)
                .expect_err("no target")
                .scim_type,
            Some("noTarget")
        );
    }

    #[test]
    fn projection_keeps_id_and_schemas() {
        let mut r = user(
            json!({"id": "1", "schemas": [USER_SCHEMA], "userName": "a", "name": {"givenName": "A", "familyName": "B"}, "active": true}),
        );
        project(&mut r, Some("name.givenName"), None);
        assert_eq!(
            Value::Object(r.clone()),
            json!({"id": "1", "schemas": [USER_SCHEMA], "name": {"givenName": "A"}})
        );
        let mut r = user(
            json!({"id": "1", "userName": "a", "active": true, "name": {"givenName": "A", "familyName": "B"}}),
        );
        project(&mut r, None, Some("active,name.familyName,id"));
        assert_eq!(
            Value::Object(r),
            json!({"id": "1", "userName": "a", "name": {"givenName": "A"}})
        );
    }

    #[test]
    fn simple_equality_filters_are_recognised_for_indexed_lookups() {
        let f = parse_filter(r#"userName eq "Ann""#).expect("parses");
        assert_eq!(equality_on(&f, &["userName"]), Some(("userName", "Ann")));
        let f = parse_filter(r#"userName co "Ann""#).expect("parses");
        assert_eq!(equality_on(&f, &["userName"]), None);
    }
}
