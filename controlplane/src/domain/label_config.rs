//! Labeling-config parsing and result validation for Label Studio compatible projects.
//!
//! This module owns three things:
//!
//! * parsing a project's `label_config` XML into object tags (what the task data is shown
//!   with), control tags (what annotators produce) and their declared labels, with error
//!   messages that name the offending tag and attribute and say what to change;
//! * the derived, read-only project fields Label Studio exposes: `data_types` and
//!   `parsed_label_config`, plus the set of task `data` keys a config reads;
//! * checking an annotation or prediction `result` array against a parsed config.
//!
//! It is pure: it never does I/O, never touches the database or HTTP layers (no sqlx, no
//! axum), and holds no global state. Callers decide what to do with the errors.
//!
//! Decisions that differ from a naive reading of Label Studio (kept for the ADR):
//!
//! * The root element must be `<View>` (any letter case). An XML declaration and comments
//!   around it are fine; any other root element is rejected.
//! * Tag names and attribute names are matched case-insensitively, as the Label Studio
//!   editor does; canonical tag names are reported.
//! * `<Relations>` without `name`/`toName` is a helper tag (its usual form), not a control.
//! * `<Chat>` and `<ReactCode>` are self-referencing: one tag is both an object and a
//!   control, so sharing a name with itself is not a duplicate.
//! * Names built by `<Repeater>` (`item_{{idx}}`) match result names with digits in place
//!   of the index flag.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// A parsed labeling config.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelConfig {
    objects: Vec<ObjectTag>,
    controls: Vec<ControlTag>,
    object_meta: Vec<ObjectMeta>,
    control_meta: Vec<ControlMeta>,
    /// `(key, canonical tag)` pairs in document order, as Label Studio derives `data_types`.
    data_type_sources: Vec<(String, String)>,
    /// Placeholders that `<Repeater>` replaces with an item index.
    index_flags: Vec<String>,
}

/// A tag that shows task data (`<Text>`, `<Image>`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectTag {
    pub name: String,
    /// Canonical tag name, e.g. `"Text"`.
    pub tag: String,
    /// The data reference as written, e.g. `"$text"` (`valueList` when `value` is absent).
    pub value: String,
}

/// A tag that produces results (`<Choices>`, `<RectangleLabels>`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct ControlTag {
    pub name: String,
    /// Canonical tag name, e.g. `"Choices"`.
    pub tag: String,
    pub to_names: Vec<String>,
    /// Declared `<Label>`/`<Choice>`/`<Relation>` values (the `alias` when one is set).
    pub labels: Vec<String>,
    /// Labels come from task data or the annotator, so undeclared labels are allowed.
    pub dynamic_labels: bool,
}

/// Why a labeling config was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// Canonical tag name (or the tag as written when it is unknown).
    pub tag: String,
    pub attribute: Option<String>,
    pub message: String,
}

/// Why a `result` array was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("result item {index}: {message}")]
pub struct ResultError {
    pub index: usize,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Shows task data; needs `name` and `value`.
    Object,
    /// Produces results; needs `name` and `toName`.
    Control,
    /// Both an object and a control under one name.
    SelfReferencing,
    /// Layout, styling and child helper tags.
    Visual,
}

/// Every tag the Label Studio editor registers, with its canonical spelling.
const TAGS: &[(&str, Kind)] = &[
    // Object tags.
    ("Audio", Kind::Object),
    ("AudioPlus", Kind::Object),
    ("HyperText", Kind::Object),
    ("Image", Kind::Object),
    ("List", Kind::Object),
    ("Object3D", Kind::Object),
    ("Paragraphs", Kind::Object),
    ("Pdf", Kind::Object),
    ("Table", Kind::Object),
    ("Text", Kind::Object),
    ("TimeSeries", Kind::Object),
    ("Video", Kind::Object),
    // Tags that are their own target.
    ("Chat", Kind::SelfReferencing),
    ("ReactCode", Kind::SelfReferencing),
    // Control tags.
    ("Bitmask", Kind::Control),
    ("BitmaskLabels", Kind::Control),
    ("Brush", Kind::Control),
    ("BrushLabels", Kind::Control),
    ("Choices", Kind::Control),
    ("Cube", Kind::Control),
    ("CubeLabels", Kind::Control),
    ("DateTime", Kind::Control),
    ("Ellipse", Kind::Control),
    ("EllipseLabels", Kind::Control),
    ("HyperTextLabels", Kind::Control),
    ("KeyPoint", Kind::Control),
    ("KeyPointLabels", Kind::Control),
    ("Labels", Kind::Control),
    ("MagicWand", Kind::Control),
    ("Number", Kind::Control),
    ("OcrLabels", Kind::Control),
    ("Pairwise", Kind::Control),
    ("ParagraphLabels", Kind::Control),
    ("Polygon", Kind::Control),
    ("PolygonLabels", Kind::Control),
    ("Ranker", Kind::Control),
    ("Rating", Kind::Control),
    ("Rectangle", Kind::Control),
    ("RectangleLabels", Kind::Control),
    ("Relations", Kind::Control),
    ("Taxonomy", Kind::Control),
    ("TextArea", Kind::Control),
    ("TimelineLabels", Kind::Control),
    ("TimeSeriesLabels", Kind::Control),
    ("Vector", Kind::Control),
    ("VectorLabels", Kind::Control),
    ("VideoRectangle", Kind::Control),
    ("VideoVector", Kind::Control),
    ("VideoVectorLabels", Kind::Control),
    // Visual and helper tags.
    ("Bucket", Kind::Visual),
    ("Channel", Kind::Visual),
    ("Choice", Kind::Visual),
    ("Collapse", Kind::Visual),
    ("Filter", Kind::Visual),
    ("Header", Kind::Visual),
    ("Label", Kind::Visual),
    ("Markdown", Kind::Visual),
    ("Panel", Kind::Visual),
    ("Relation", Kind::Visual),
    ("Repeater", Kind::Visual),
    ("Shortcut", Kind::Visual),
    ("Style", Kind::Visual),
    ("View", Kind::Visual),
];

/// Tags whose children declare a control's labels.
const LABEL_CHILD_TAGS: &[&str] = &["Label", "Choice", "Relation"];

/// Geometry tools whose regions a plain `<Labels>` control can label ("merged" regions).
const GEOMETRY_TAGS: &[&str] = &[
    "Bitmask",
    "Brush",
    "Cube",
    "Ellipse",
    "KeyPoint",
    "MagicWand",
    "Polygon",
    "Rectangle",
    "Vector",
    "VideoVector",
];

/// Default placeholder `<Repeater>` replaces with the item index.
const DEFAULT_INDEX_FLAG: &str = "{{idx}}";

fn lookup_tag(raw: &str) -> Option<(&'static str, Kind)> {
    TAGS.iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(raw))
        .copied()
}

#[derive(Debug, Clone, PartialEq)]
struct ObjectMeta {
    value_type: Option<String>,
    /// The data reference came from `valueList` rather than `value`.
    from_value_list: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct ControlMeta {
    /// Attributes of each declared label, keyed by label, in declaration order.
    labels_attrs: Vec<(String, Map<String, Value>)>,
    conditionals: Option<Value>,
    attrs: BTreeMap<String, String>,
}

/// Attribute lookup that ignores letter case, as the editor does.
fn attr<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> Option<&'a str> {
    node.attributes()
        .find(|a| a.name().eq_ignore_ascii_case(name))
        .map(|a| a.value())
}

fn non_empty_attr<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> Option<&'a str> {
    attr(node, name).filter(|v| !v.trim().is_empty())
}

fn position(doc: &roxmltree::Document<'_>, node: roxmltree::Node<'_, '_>) -> String {
    let pos = doc.text_pos_at(node.range().start);
    format!("line {}, column {}", pos.row, pos.col)
}

fn config_error(tag: &str, attribute: Option<&str>, message: String) -> ConfigError {
    ConfigError {
        tag: tag.to_owned(),
        attribute: attribute.map(str::to_owned),
        message,
    }
}

/// The data key a `$reference` reads: `$text` -> `text`, `$a.b` -> `a`, `$rows[{{idx}}]` -> `rows`.
fn top_data_key(reference: &str) -> Option<String> {
    let rest = match reference.strip_prefix('$') {
        Some(rest) => rest,
        None => {
            let start = reference.find('$')?;
            &reference[start + 1..]
        }
    };
    let key: String = rest
        .chars()
        .take_while(|c| *c != '.' && *c != '[' && !c.is_whitespace())
        .collect();
    (!key.is_empty()).then_some(key)
}

/// Label Studio's `data_types` key: the whole reference after `$`, or the first `$word`
/// found inside a template string.
fn data_type_key(reference: &str) -> Option<String> {
    if reference.len() > 1 && reference.starts_with('$') {
        return Some(reference[1..].to_owned());
    }
    let start = reference.find('$')?;
    let key: String = reference[start + 1..]
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!key.is_empty()).then_some(key)
}

impl LabelConfig {
    /// Parses and checks a labeling config.
    pub fn parse(xml: &str) -> Result<LabelConfig, ConfigError> {
        if xml.trim().is_empty() {
            return Err(config_error(
                "View",
                None,
                "label config is empty; the smallest valid config is <View></View>".to_owned(),
            ));
        }
        let doc = roxmltree::Document::parse(xml).map_err(|e| {
            config_error(
                "View",
                None,
                format!("label config is not well-formed XML: {e}; fix the markup and retry"),
            )
        })?;
        let root = doc.root_element();
        let root_name = root.tag_name().name();
        if !root_name.eq_ignore_ascii_case("View") {
            return Err(config_error(
                root_name,
                None,
                format!(
                    "the root tag must be <View>, found <{root_name}>; wrap the config in <View>...</View>"
                ),
            ));
        }

        let mut config = LabelConfig {
            objects: Vec::new(),
            controls: Vec::new(),
            object_meta: Vec::new(),
            control_meta: Vec::new(),
            data_type_sources: Vec::new(),
            index_flags: Vec::new(),
        };
        // Every named tag in document order: (name, canonical tag, is self-referencing).
        let mut named: Vec<(String, &'static str, bool)> = Vec::new();
        // Filter tags point at controls; checked once every name is known.
        let mut filters: Vec<(String, String)> = Vec::new();

        for node in root.descendants().filter(|n| n.is_element()) {
            let raw = node.tag_name().name();
            let Some((tag, kind)) = lookup_tag(raw) else {
                return Err(config_error(
                    raw,
                    None,
                    format!(
                        "unknown tag <{raw}> at {}; use a Label Studio tag such as <View>, <Text>, <Image>, <Choices> or <Labels>",
                        position(&doc, node)
                    ),
                ));
            };
            let at = position(&doc, node);

            if let Some(value) = non_empty_attr(node, "value")
                && non_empty_attr(node, "name").is_some()
                && let Some(key) = data_type_key(value)
            {
                config.data_type_sources.push((key, tag.to_owned()));
            }

            match kind {
                Kind::Object => {
                    let name = require_attr(node, tag, "name", &at)?;
                    let (value, from_value_list) = match non_empty_attr(node, "value") {
                        Some(v) => (v, false),
                        None => match non_empty_attr(node, "valueList") {
                            Some(v) => (v, true),
                            None => {
                                return Err(config_error(
                                    tag,
                                    Some("value"),
                                    format!(
                                        "<{tag} name=\"{name}\"> at {at} needs a value attribute naming the task data to show, e.g. value=\"$text\""
                                    ),
                                ));
                            }
                        },
                    };
                    config.push_object(name, tag, value, from_value_list, node);
                    named.push((name.to_owned(), tag, false));
                }
                Kind::SelfReferencing => {
                    let name = require_attr(node, tag, "name", &at)?;
                    let (value, from_value_list) = match non_empty_attr(node, "value") {
                        Some(v) => (v, false),
                        None => match non_empty_attr(node, "valueList") {
                            Some(v) => (v, true),
                            None => (non_empty_attr(node, "data").unwrap_or(""), false),
                        },
                    };
                    if tag == "Chat" && value.is_empty() {
                        return Err(config_error(
                            tag,
                            Some("value"),
                            format!(
                                "<Chat name=\"{name}\"> at {at} needs a value attribute naming the task's message list, e.g. value=\"$chat\""
                            ),
                        ));
                    }
                    if tag == "ReactCode"
                        && let Some(key) = data_type_key(value)
                    {
                        config.data_type_sources.push((key, tag.to_owned()));
                    }
                    config.push_object(name, tag, value, from_value_list, node);
                    let mut to_names = vec![name.to_owned()];
                    if let Some(to) = non_empty_attr(node, "toName") {
                        for part in split_names(to) {
                            if !to_names.contains(&part) {
                                to_names.push(part);
                            }
                        }
                    }
                    config.push_control(name, tag, to_names, node);
                    named.push((name.to_owned(), tag, true));
                }
                Kind::Control => {
                    if tag == "Relations"
                        && (non_empty_attr(node, "name").is_none()
                            || non_empty_attr(node, "toName").is_none())
                    {
                        continue;
                    }
                    let name = require_attr(node, tag, "name", &at)?;
                    let Some(to) = non_empty_attr(node, "toName") else {
                        return Err(config_error(
                            tag,
                            Some("toName"),
                            format!(
                                "<{tag} name=\"{name}\"> at {at} needs a toName attribute naming the object tag it labels, e.g. toName=\"text\""
                            ),
                        ));
                    };
                    config.push_control(name, tag, split_names(to), node);
                    named.push((name.to_owned(), tag, false));
                }
                Kind::Visual => {
                    if LABEL_CHILD_TAGS.contains(&tag) {
                        config.attach_label(node, tag, &at)?;
                    } else if tag == "Repeater" {
                        let flag = non_empty_attr(node, "indexFlag").unwrap_or(DEFAULT_INDEX_FLAG);
                        if !config.index_flags.iter().any(|f| f == flag) {
                            config.index_flags.push(flag.to_owned());
                        }
                    } else if tag == "Filter"
                        && let Some(to) = non_empty_attr(node, "toName")
                    {
                        filters.push((to.to_owned(), at));
                    }
                }
            }
        }

        // Names must be unique across object and control tags.
        for (i, (name, tag, _)) in named.iter().enumerate() {
            if let Some((_, first_tag, _)) = named[..i].iter().find(|(n, _, _)| n == name) {
                return Err(config_error(
                    tag,
                    Some("name"),
                    format!(
                        "name \"{name}\" is used by both <{first_tag}> and <{tag}>; every object and control tag needs a unique name"
                    ),
                ));
            }
        }

        for control in &config.controls {
            for to_name in &control.to_names {
                if config.objects.iter().any(|o| &o.name == to_name) {
                    continue;
                }
                let known: Vec<&str> = config.objects.iter().map(|o| o.name.as_str()).collect();
                return Err(config_error(
                    &control.tag,
                    Some("toName"),
                    format!(
                        "<{} name=\"{}\"> has toName=\"{to_name}\" but no object tag has that name; use one of {known:?}",
                        control.tag, control.name
                    ),
                ));
            }
        }
        for (to, at) in filters {
            for target in split_names(&to) {
                if !named.iter().any(|(n, _, _)| *n == target) {
                    return Err(config_error(
                        "Filter",
                        Some("toName"),
                        format!(
                            "<Filter> at {at} has toName=\"{target}\" but no tag has that name; point it at a control such as <Labels> or <Choices>"
                        ),
                    ));
                }
            }
        }
        Ok(config)
    }

    fn push_object(
        &mut self,
        name: &str,
        tag: &str,
        value: &str,
        from_value_list: bool,
        node: roxmltree::Node<'_, '_>,
    ) {
        self.objects.push(ObjectTag {
            name: name.to_owned(),
            tag: tag.to_owned(),
            value: value.to_owned(),
        });
        self.object_meta.push(ObjectMeta {
            value_type: attr(node, "valueType").map(str::to_owned),
            from_value_list,
        });
    }

    fn push_control(
        &mut self,
        name: &str,
        tag: &str,
        to_names: Vec<String>,
        node: roxmltree::Node<'_, '_>,
    ) {
        let attrs: BTreeMap<String, String> = node
            .attributes()
            .map(|a| (a.name().to_owned(), a.value().to_owned()))
            .collect();
        let is_true = |key: &str| attr(node, key).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let dynamic_labels = attr(node, "value").is_some_and(|v| v.len() > 1 && v.starts_with('$'))
            || non_empty_attr(node, "apiUrl").is_some()
            || is_true("userLabels")
            || is_true("allowCustom");
        let conditionals = if is_true("perRegion") {
            [
                ("whenTagName", "tag"),
                ("whenLabelValue", "label"),
                ("whenChoiceValue", "choice"),
            ]
            .iter()
            .find_map(|(key, kind)| {
                non_empty_attr(node, key).map(|v| serde_json::json!({ "type": kind, "name": v }))
            })
        } else {
            None
        };
        self.controls.push(ControlTag {
            name: name.to_owned(),
            tag: tag.to_owned(),
            to_names,
            labels: Vec::new(),
            dynamic_labels,
        });
        self.control_meta.push(ControlMeta {
            labels_attrs: Vec::new(),
            conditionals,
            attrs,
        });
    }

    /// Records a `<Label>`, `<Choice>` or `<Relation>` on its nearest enclosing control.
    fn attach_label(
        &mut self,
        node: roxmltree::Node<'_, '_>,
        tag: &str,
        at: &str,
    ) -> Result<(), ConfigError> {
        let owner = node.ancestors().skip(1).find_map(|a| {
            let (_, kind) = lookup_tag(a.tag_name().name())?;
            if !matches!(kind, Kind::Control | Kind::SelfReferencing) {
                return None;
            }
            let name = non_empty_attr(a, "name")?;
            self.controls.iter().rposition(|c| c.name == name)
        });
        let Some(index) = owner else {
            // Label Studio ignores label tags outside a control (e.g. under a bare <Relations>).
            return Ok(());
        };
        let Some(label) = non_empty_attr(node, "alias")
            .or_else(|| non_empty_attr(node, "value"))
            .or_else(|| non_empty_attr(node, "valueList"))
        else {
            let control = &self.controls[index];
            return Err(config_error(
                tag,
                Some("value"),
                format!(
                    "<{tag}> at {at} inside <{} name=\"{}\"> needs a value attribute (the label text)",
                    control.tag, control.name
                ),
            ));
        };
        let attrs: Map<String, Value> = node
            .attributes()
            .map(|a| (a.name().to_owned(), Value::String(a.value().to_owned())))
            .collect();
        let meta = &mut self.control_meta[index];
        if let Some(slot) = meta.labels_attrs.iter_mut().find(|(l, _)| l == label) {
            slot.1 = attrs;
        } else {
            meta.labels_attrs.push((label.to_owned(), attrs));
            self.controls[index].labels.push(label.to_owned());
        }
        Ok(())
    }

    pub fn objects(&self) -> &[ObjectTag] {
        &self.objects
    }

    pub fn controls(&self) -> &[ControlTag] {
        &self.controls
    }

    /// Whether any tag can produce results (Label Studio's default `<View></View>` cannot).
    pub fn has_controls(&self) -> bool {
        !self.controls.is_empty()
    }

    /// Task `data` keys the object tags read (`$text` -> "text"; for "$a.b" the top key "a").
    pub fn data_keys(&self) -> BTreeSet<String> {
        self.objects
            .iter()
            .filter_map(|o| top_data_key(&o.value))
            .collect()
    }

    /// Label Studio's `data_types`: every named tag reading task data, keyed by the data
    /// reference after `$` (`{"text": "Text"}`). A `<Video>` wins over later tags reading
    /// the same key, and dynamic-label controls (`<Choices value="$options">`) appear too.
    pub fn data_types(&self) -> Map<String, Value> {
        let mut out = Map::new();
        for (key, tag) in &self.data_type_sources {
            if out.get(key).and_then(Value::as_str) == Some("Video") {
                continue;
            }
            out.insert(key.clone(), Value::String(tag.clone()));
        }
        out
    }

    /// Label Studio's `parsed_label_config`: `{control_name: {"type", "to_name", "inputs",
    /// "labels", "labels_attrs"}}`, plus `"conditionals"` and `"dynamic_labels"` when set.
    pub fn parsed(&self) -> Value {
        let mut out = Map::new();
        for (control, meta) in self.controls.iter().zip(&self.control_meta) {
            let inputs: Vec<Value> = control
                .to_names
                .iter()
                .filter_map(|to| {
                    let i = self.objects.iter().position(|o| &o.name == to)?;
                    let (object, object_meta) = (&self.objects[i], &self.object_meta[i]);
                    let mut input = Map::new();
                    input.insert("type".to_owned(), Value::String(object.tag.clone()));
                    input.insert(
                        "valueType".to_owned(),
                        object_meta
                            .value_type
                            .clone()
                            .map_or(Value::Null, Value::String),
                    );
                    let key = if object_meta.from_value_list {
                        "valueList"
                    } else {
                        "value"
                    };
                    input.insert(
                        key.to_owned(),
                        Value::String(object.value.trim_start_matches('$').to_owned()),
                    );
                    Some(Value::Object(input))
                })
                .collect();
            let labels_attrs: Map<String, Value> = meta
                .labels_attrs
                .iter()
                .map(|(label, attrs)| (label.clone(), Value::Object(attrs.clone())))
                .collect();
            let mut entry = Map::new();
            entry.insert("type".to_owned(), Value::String(control.tag.clone()));
            entry.insert(
                "to_name".to_owned(),
                Value::Array(
                    control
                        .to_names
                        .iter()
                        .cloned()
                        .map(Value::String)
                        .collect(),
                ),
            );
            entry.insert("inputs".to_owned(), Value::Array(inputs));
            entry.insert(
                "labels".to_owned(),
                Value::Array(control.labels.iter().cloned().map(Value::String).collect()),
            );
            entry.insert("labels_attrs".to_owned(), Value::Object(labels_attrs));
            if let Some(conditionals) = &meta.conditionals {
                entry.insert("conditionals".to_owned(), conditionals.clone());
            }
            if control.dynamic_labels {
                entry.insert("dynamic_labels".to_owned(), Value::Bool(true));
            }
            out.insert(control.name.clone(), Value::Object(entry));
        }
        Value::Object(out)
    }

    /// Expands the shorthand that Label Studio's legacy client accepts for a config with one
    /// control into the full region form: a bare value (`"positive"`, `4`) or a value object
    /// (`{"choices": ["positive"]}`) becomes `[{"from_name", "to_name", "type", "value"}]`; a
    /// single region object becomes a list of one. A list is returned as it is. Region-based
    /// controls (boxes, spans) have no shorthand for bare values.
    pub fn expand_shorthand(&self, result: &Value) -> Result<Value, ResultError> {
        let fail = |message: String| ResultError { index: 0, message };
        match result {
            Value::Array(_) => return Ok(result.clone()),
            Value::Object(o) if o.contains_key("from_name") => {
                return Ok(Value::Array(vec![result.clone()]));
            }
            _ => {}
        }
        let [control] = self.controls.as_slice() else {
            return Err(fail(format!(
                "result must be a JSON array of items; the shorthand ({}) needs a config with exactly one control, this one has {}",
                json_kind(result),
                self.controls.len()
            )));
        };
        let Some(to_name) = control.to_names.first() else {
            return Err(fail(format!("control {:?} has no toName", control.name)));
        };
        let kind = control.tag.to_ascii_lowercase();
        let value = match result {
            Value::Object(_) => result.clone(),
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                let key = match kind.as_str() {
                    "textarea" => "text",
                    other => other,
                };
                match kind.as_str() {
                    "choices" | "labels" | "textarea" => {
                        serde_json::json!({ key: [result.clone()] })
                    }
                    "taxonomy" => serde_json::json!({ key: [[result.clone()]] }),
                    "rating" | "number" | "datetime" => serde_json::json!({ key: result.clone() }),
                    _ => {
                        return Err(fail(format!(
                            "a bare value cannot stand for a {} result; send the region items",
                            control.tag
                        )));
                    }
                }
            }
            other => {
                return Err(fail(format!(
                    "result must be a JSON array of items, got {}",
                    json_kind(other)
                )));
            }
        };
        Ok(serde_json::json!([{
            "from_name": control.name,
            "to_name": to_name,
            "type": kind,
            "value": value,
        }]))
    }

    /// Validate an annotation/prediction `result` (must be a JSON array) against the config.
    pub fn validate_result(&self, result: &Value) -> Result<(), ResultError> {
        let Some(items) = result.as_array() else {
            return Err(ResultError {
                index: 0,
                message: format!(
                    "result must be a JSON array of items, got {}",
                    json_kind(result)
                ),
            });
        };
        let region_ids: Vec<&str> = items
            .iter()
            .filter(|item| item.get("type").and_then(Value::as_str) != Some("relation"))
            .filter_map(|item| item.get("id").and_then(Value::as_str))
            .collect();
        for (index, item) in items.iter().enumerate() {
            self.validate_item(item, items, &region_ids)
                .map_err(|message| ResultError { index, message })?;
        }
        Ok(())
    }

    fn validate_item(
        &self,
        item: &Value,
        items: &[Value],
        region_ids: &[&str],
    ) -> Result<(), String> {
        let Some(obj) = item.as_object() else {
            return Err(format!(
                "each result item must be a JSON object, got {}",
                json_kind(item)
            ));
        };
        if let Some(id) = obj.get("id")
            && !(id.is_string() || id.is_number())
        {
            return Err(format!("id must be a string, got {}", json_kind(id)));
        }
        let ty = match obj.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(other) => return Err(format!("type must be a string, got {}", json_kind(other))),
            None => {
                return Err(
                    "type is missing; set it to the result type, e.g. \"choices\"".to_owned(),
                );
            }
        };
        if ty == "relation" {
            return validate_relation(obj, region_ids);
        }

        let from_name = match obj.get("from_name") {
            Some(Value::String(n)) => n.as_str(),
            Some(other) => {
                return Err(format!(
                    "from_name must be a string, got {}",
                    json_kind(other)
                ));
            }
            None => {
                return Err("from_name is missing; set it to the name of a control tag".to_owned());
            }
        };
        let Some(ci) = self
            .controls
            .iter()
            .position(|c| self.names_match(&c.name, from_name))
        else {
            return Err(format!(
                "from_name \"{from_name}\" is not a control in the label config"
            ));
        };
        let control = &self.controls[ci];

        let to_name = match obj.get("to_name") {
            Some(Value::String(n)) => n.as_str(),
            Some(other) => {
                return Err(format!(
                    "to_name must be a string, got {}",
                    json_kind(other)
                ));
            }
            None => {
                return Err(format!(
                    "to_name is missing; set it to one of {:?} (the toName of \"{}\")",
                    control.to_names, control.name
                ));
            }
        };
        if !self.to_name_ok(control, to_name) {
            return Err(format!(
                "to_name \"{to_name}\" is not a target of control \"{}\"; expected one of {:?}",
                control.name, control.to_names
            ));
        }

        let accepted = self.accepted_types(ci);
        let Some(&(_, rule)) = accepted.iter().find(|(t, _)| *t == ty) else {
            if accepted.is_empty() {
                return Err(format!(
                    "<{}> \"{}\" produces only relation items; use type \"relation\" with from_id and to_id",
                    control.tag, control.name
                ));
            }
            let names: Vec<&str> = accepted.iter().map(|(t, _)| *t).collect();
            return Err(format!(
                "type \"{ty}\" is not produced by <{}> \"{}\"; expected {}",
                control.tag,
                control.name,
                one_of(&names)
            ));
        };

        let value = match obj.get("value") {
            Some(Value::Object(v)) => v,
            Some(other) => {
                return Err(format!(
                    "value must be a JSON object, got {}",
                    json_kind(other)
                ));
            }
            None => {
                return Err(format!(
                    "value is missing; a \"{ty}\" item needs a value object"
                ));
            }
        };
        let shares_id = obj.get("id").is_some_and(|id| {
            items
                .iter()
                .filter(|other| other.get("id") == Some(id))
                .count()
                > 1
        });
        self.check_value(ci, ty, rule, value, shares_id)
    }

    /// Names match exactly, or via a `<Repeater>` index flag standing for digits.
    fn names_match(&self, declared: &str, actual: &str) -> bool {
        if declared == actual {
            return true;
        }
        self.index_flags
            .iter()
            .any(|flag| declared.contains(flag.as_str()) && matches_indexed(declared, flag, actual))
    }

    fn to_name_ok(&self, control: &ControlTag, to_name: &str) -> bool {
        let known = |n: &str| control.to_names.iter().any(|t| self.names_match(t, n));
        if known(to_name) {
            return true;
        }
        // Multi-object controls (Pairwise) join their targets with commas.
        if to_name.contains(',') {
            return split_names(to_name).iter().all(|n| known(n));
        }
        // The SDK writes Pairwise results with to_name set to the control itself.
        control.tag == "Pairwise" && to_name == control.name
    }

    /// Result types a control can emit, each with the rule that checks its value.
    fn accepted_types(&self, ci: usize) -> Vec<(&'static str, Rule)> {
        let control = &self.controls[ci];
        let tag = control.tag.as_str();
        let mut out: Vec<(&'static str, Rule)> = Vec::new();
        let primary = match tag {
            "Chat" => Some("chatmessage"),
            "Relations" => None,
            _ => TYPE_RULES
                .iter()
                .find(|(t, _)| t.eq_ignore_ascii_case(tag))
                .map(|(t, _)| *t),
        };
        if let Some(t) = primary
            && let Some(rule) = rule_for(t)
        {
            out.push((t, rule));
        }
        // A `<Shape>Labels` region can be stored as the plain shape when it has no label.
        if let Some(shape) = tag
            .strip_suffix("Labels")
            .filter(|s| GEOMETRY_TAGS.contains(s))
        {
            let plain = shape.to_ascii_lowercase();
            if let Some((t, rule)) = TYPE_RULES.iter().find(|(t, _)| *t == plain) {
                out.push((t, rule.with_optional_labels(labeled_type(shape))));
            }
        }
        if tag == "MagicWand" {
            out.push(("brush", Rule::Brush { labels: None }));
        }
        if tag == "Labels" {
            let shares_object =
                |other: &ControlTag| other.to_names.iter().any(|t| control.to_names.contains(t));
            let mut merged: Vec<&'static str> = Vec::new();
            for other in self
                .controls
                .iter()
                .filter(|o| GEOMETRY_TAGS.contains(&o.tag.as_str()))
            {
                if shares_object(other) {
                    let shape = if other.tag == "MagicWand" {
                        "Brush"
                    } else {
                        other.tag.as_str()
                    };
                    merged.push(labeled_type(shape));
                }
            }
            for object in self
                .objects
                .iter()
                .filter(|o| control.to_names.contains(&o.name))
            {
                match object.tag.as_str() {
                    "HyperText" => merged.push("hypertextlabels"),
                    "Paragraphs" => merged.push("paragraphlabels"),
                    "TimeSeries" => merged.push("timeserieslabels"),
                    _ => {}
                }
            }
            for t in merged {
                if out.iter().any(|(seen, _)| *seen == t) {
                    continue;
                }
                if let Some(rule) = rule_for(t) {
                    out.push((t, rule));
                }
            }
        }
        out
    }

    /// Labels a control may use: its own, or, when it declares none (e.g. `<VideoRectangle>`
    /// paired with `<Labels>`), those of controls sharing its objects. `None` means any.
    fn allowed_labels(&self, ci: usize) -> Option<BTreeSet<&str>> {
        let control = &self.controls[ci];
        if control.dynamic_labels {
            return None;
        }
        if !control.labels.is_empty() {
            return Some(control.labels.iter().map(String::as_str).collect());
        }
        let mut allowed = BTreeSet::new();
        for other in &self.controls {
            if other.name == control.name
                || !other.to_names.iter().any(|t| control.to_names.contains(t))
            {
                continue;
            }
            if other.dynamic_labels {
                return None;
            }
            allowed.extend(other.labels.iter().map(String::as_str));
        }
        Some(allowed)
    }

    fn check_labels(&self, ci: usize, key: &str, labels: &[&str]) -> Result<(), String> {
        let Some(allowed) = self.allowed_labels(ci) else {
            return Ok(());
        };
        let control = &self.controls[ci];
        for label in labels {
            if !allowed.contains(label) {
                let declared: Vec<&str> = allowed.iter().copied().collect();
                return Err(format!(
                    "value.{key} uses \"{label}\", which <{}> \"{}\" does not declare; expected {}",
                    control.tag,
                    control.name,
                    one_of(&declared)
                ));
            }
        }
        Ok(())
    }

    fn check_value(
        &self,
        ci: usize,
        ty: &str,
        rule: Rule,
        value: &Map<String, Value>,
        shares_id: bool,
    ) -> Result<(), String> {
        let control = &self.controls[ci];
        match rule {
            Rule::Choices => {
                // Nested choices (`allowNested`) are stored as root-to-leaf paths.
                let Some(choices) = value.get("choices").and_then(Value::as_array) else {
                    return Err(match value.get("choices") {
                        Some(other) => format!("value.choices must be a list of strings, got {}", json_kind(other)),
                        None => "value.choices is missing; expected a list of strings".to_owned(),
                    });
                };
                let mut labels = Vec::new();
                for choice in choices {
                    match choice {
                        Value::String(c) => labels.push(c.as_str()),
                        Value::Array(path) if path.iter().all(Value::is_string) => {
                            labels.extend(path.iter().filter_map(Value::as_str));
                        }
                        other => {
                            return Err(format!(
                                "value.choices must be a list of strings (or of string paths for nested choices), found {other}"
                            ));
                        }
                    }
                }
                self.check_labels(ci, "choices", &labels)
            }
            Rule::Span { key, offsets, instant } => {
                // A labels item sharing its id with a geometry item carries the geometry instead.
                if !(ty == "labels" && shares_id) {
                    span_bound(value, "start")?;
                    span_bound(value, "end")?;
                }
                if offsets {
                    optional_non_negative_int(value, "startOffset")?;
                    optional_non_negative_int(value, "endOffset")?;
                }
                if instant {
                    match value.get("instant") {
                        Some(Value::Bool(_)) => {}
                        Some(other) => return Err(format!("value.instant must be true or false, got {}", json_kind(other))),
                        None => return Err("value.instant is missing; set it to true for a single point, false for a range".to_owned()),
                    }
                }
                self.check_label_key(ci, value, ty, key)
            }
            Rule::Rect { labels } => {
                for field in ["x", "y", "width", "height"] {
                    percent(value, field)?;
                }
                optional_rotation(value)?;
                self.check_optional_label_key(ci, value, ty, labels)
            }
            Rule::Polygon { labels } => {
                let Some(points) = value.get("points") else {
                    return Err("value.points is missing; expected a list of [x, y] pairs".to_owned());
                };
                let Some(points) = points.as_array() else {
                    return Err(format!("value.points must be a list of [x, y] pairs, got {}", json_kind(points)));
                };
                for (i, point) in points.iter().enumerate() {
                    let pair = point.as_array().filter(|p| p.len() == 2 && p.iter().all(Value::is_number));
                    match pair {
                        Some(p) if p.iter().all(|n| n.as_f64().is_some_and(|f| f <= 100.0)) => {}
                        Some(_) => return Err(format!("value.points[{i}] has a coordinate above 100 (coordinates are percentages)")),
                        None => return Err(format!("value.points[{i}] must be an [x, y] pair of numbers, got {point}")),
                    }
                }
                if let Some(closed) = value.get("closed")
                    && !closed.is_boolean()
                {
                    return Err(format!("value.closed must be true or false, got {}", json_kind(closed)));
                }
                self.check_optional_label_key(ci, value, ty, labels)
            }
            Rule::Ellipse { labels } => {
                for field in ["x", "y", "radiusX", "radiusY"] {
                    percent(value, field)?;
                }
                optional_rotation(value)?;
                self.check_optional_label_key(ci, value, ty, labels)
            }
            Rule::KeyPoint { labels } => {
                percent(value, "x")?;
                percent(value, "y")?;
                if value.contains_key("width") {
                    number(value, "width")?;
                }
                self.check_optional_label_key(ci, value, ty, labels)
            }
            Rule::Brush { labels } => {
                let format = match value.get("format") {
                    None => "rle",
                    Some(Value::String(f)) => f.as_str(),
                    Some(other) => return Err(format!("value.format must be a string such as \"rle\", got {}", json_kind(other))),
                };
                if format == "rle" {
                    let rle = value.get("rle").and_then(Value::as_array);
                    let valid = rle.is_some_and(|r| {
                        !r.is_empty() && r.iter().all(|b| b.as_u64().is_some_and(|b| b <= 255))
                    });
                    if !valid {
                        return Err("value.rle must be a non-empty list of byte values (0-255) when value.format is \"rle\"".to_owned());
                    }
                }
                self.check_optional_label_key(ci, value, ty, labels)
            }
            Rule::Bitmask { labels } => {
                required_string(value, "imageDataURL")?;
                self.check_optional_label_key(ci, value, ty, labels)
            }
            Rule::Vector { labels } => {
                vertices(value, "value.vertices")?;
                self.check_optional_label_key(ci, value, ty, labels)
            }
            Rule::VideoRectangle => {
                let sequence = sequence(value)?;
                for (i, frame) in sequence.iter().enumerate() {
                    let Some(frame) = frame.as_object() else {
                        return Err(format!("value.sequence[{i}] must be an object, got {}", json_kind(frame)));
                    };
                    integer(frame, "frame").map_err(|e| format!("value.sequence[{i}]: {e}"))?;
                    for field in ["x", "y", "width", "height"] {
                        percent(frame, field).map_err(|e| format!("value.sequence[{i}]: {e}"))?;
                    }
                    for field in ["time", "rotation"] {
                        if frame.contains_key(field) {
                            number(frame, field).map_err(|e| format!("value.sequence[{i}]: {e}"))?;
                        }
                    }
                }
                video_header(value)?;
                self.check_optional_label_key(ci, value, ty, Some("labels"))
            }
            Rule::VideoVector { labels_required } => {
                let sequence = sequence(value)?;
                for (i, frame) in sequence.iter().enumerate() {
                    let Some(frame) = frame.as_object() else {
                        return Err(format!("value.sequence[{i}] must be an object, got {}", json_kind(frame)));
                    };
                    integer(frame, "frame").map_err(|e| format!("value.sequence[{i}]: {e}"))?;
                    vertices(frame, &format!("value.sequence[{i}].vertices"))?;
                }
                video_header(value)?;
                if labels_required {
                    self.check_label_key(ci, value, ty, "labels")
                } else {
                    self.check_optional_label_key(ci, value, ty, Some("labels"))
                }
            }
            Rule::Timeline => {
                let ranges = value.get("ranges").and_then(Value::as_array);
                let Some(ranges) = ranges.filter(|r| !r.is_empty()) else {
                    return Err("value.ranges must be a non-empty list of {\"start\", \"end\"} frame ranges".to_owned());
                };
                for (i, range) in ranges.iter().enumerate() {
                    let Some(range) = range.as_object() else {
                        return Err(format!("value.ranges[{i}] must be an object, got {}", json_kind(range)));
                    };
                    for field in ["start", "end"] {
                        number(range, field).map_err(|e| format!("value.ranges[{i}]: {e}"))?;
                    }
                }
                self.check_label_key(ci, value, ty, "timelinelabels")
            }
            Rule::TextArea => match value.get("text") {
                Some(Value::String(_)) => Ok(()),
                Some(Value::Array(lines)) if lines.iter().all(Value::is_string) => Ok(()),
                Some(other) => Err(format!("value.text must be a string or a list of strings, got {other}")),
                None => Err("value.text is missing; expected a list of strings, e.g. {\"text\": [\"...\"]}".to_owned()),
            },
            Rule::Rating => {
                let Some(rating) = value.get("rating") else {
                    return Err("value.rating is missing; expected a whole number".to_owned());
                };
                let whole = rating.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0);
                let max = control_attr(&self.control_meta[ci], "maxRating")
                    .and_then(|m| m.trim().parse::<f64>().ok())
                    .unwrap_or(5.0);
                match whole {
                    Some(r) if r <= max => Ok(()),
                    Some(r) => Err(format!("value.rating {r} is above maxRating {max} of <Rating> \"{}\"", control.name)),
                    None => Err(format!("value.rating must be a whole number from 0 to {max}, got {rating}")),
                }
            }
            Rule::Number => number(value, "number").map(|_| ()),
            Rule::DateTime => required_string(value, "datetime"),
            Rule::Taxonomy => {
                let Some(paths) = value.get("taxonomy").and_then(Value::as_array) else {
                    return Err("value.taxonomy must be a list of paths, each a list of strings from root to leaf".to_owned());
                };
                let mut labels = Vec::new();
                for (i, path) in paths.iter().enumerate() {
                    let steps = path.as_array().filter(|p| p.iter().all(Value::is_string));
                    let Some(steps) = steps else {
                        return Err(format!("value.taxonomy[{i}] must be a list of strings, got {path}"));
                    };
                    labels.extend(steps.iter().filter_map(Value::as_str));
                }
                self.check_labels(ci, "taxonomy", &labels)
            }
            Rule::Pairwise => match value.get("selected") {
                Some(Value::String(s)) if s == "left" || s == "right" => Ok(()),
                Some(other) => Err(format!("value.selected must be \"left\" or \"right\", got {other}")),
                None => Err("value.selected is missing; expected \"left\" or \"right\"".to_owned()),
            },
            Rule::Ranker => match value.get("ranker") {
                Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(()),
                Some(Value::Object(buckets)) => {
                    for (bucket, items) in buckets {
                        let ok = items.as_array().is_some_and(|i| i.iter().all(Value::is_string));
                        if !ok {
                            return Err(format!("value.ranker.{bucket} must be a list of item ids (strings), got {items}"));
                        }
                    }
                    Ok(())
                }
                Some(other) => Err(format!("value.ranker must be a list of item ids or an object of bucket -> item ids, got {other}")),
                None => Err("value.ranker is missing; expected a list of item ids or an object of bucket -> item ids".to_owned()),
            },
            Rule::ChatMessage => {
                let Some(message) = value.get("chatmessage").and_then(Value::as_object) else {
                    return Err("value.chatmessage must be an object with role and content strings".to_owned());
                };
                required_string(message, "role").map_err(|e| format!("value.chatmessage: {e}"))?;
                required_string(message, "content").map_err(|e| format!("value.chatmessage: {e}"))
            }
            Rule::AnyObject { key } => match value.get(key) {
                Some(Value::Object(_)) => Ok(()),
                Some(other) => Err(format!("value.{key} must be a JSON object, got {}", json_kind(other))),
                None => Err(format!("value.{key} is missing; expected a JSON object")),
            },
            Rule::Free => Ok(()),
        }
    }

    /// The labels list is required; it sits under `key`, or under the type name for merged
    /// regions written by a plain `<Labels>` control.
    fn check_label_key(
        &self,
        ci: usize,
        value: &Map<String, Value>,
        ty: &str,
        key: &str,
    ) -> Result<(), String> {
        let from_labels_control = self.controls[ci].tag == "Labels";
        let actual = [ty, key, "labels"]
            .into_iter()
            .enumerate()
            .find(|(i, k)| (*i < 2 || from_labels_control) && value.contains_key(*k))
            .map_or(key, |(_, k)| k);
        let labels = string_list(value, actual)?;
        self.check_labels(ci, actual, &labels)
    }

    fn check_optional_label_key(
        &self,
        ci: usize,
        value: &Map<String, Value>,
        ty: &str,
        key: Option<&str>,
    ) -> Result<(), String> {
        match key {
            Some(key) if key.ends_with("labels") && key == ty => {
                self.check_label_key(ci, value, ty, key)
            }
            Some(key) if value.contains_key(key) => {
                let labels = string_list(value, key)?;
                self.check_labels(ci, key, &labels)
            }
            _ => Ok(()),
        }
    }
}

fn control_attr<'a>(meta: &'a ControlMeta, name: &str) -> Option<&'a str> {
    meta.attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn require_attr<'a>(
    node: roxmltree::Node<'a, '_>,
    tag: &str,
    name: &str,
    at: &str,
) -> Result<&'a str, ConfigError> {
    non_empty_attr(node, name).ok_or_else(|| {
        config_error(
            tag,
            Some(name),
            format!("<{tag}> at {at} needs a non-empty {name} attribute"),
        )
    })
}

fn split_names(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `declared` with every `flag` standing for a run of digits matches `actual`.
fn matches_indexed(declared: &str, flag: &str, actual: &str) -> bool {
    let parts: Vec<&str> = declared.split(flag).collect();
    let mut rest = actual;
    for (i, part) in parts.iter().enumerate() {
        let Some(after) = rest.strip_prefix(part) else {
            return false;
        };
        rest = after;
        if i + 1 < parts.len() {
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            if digits == 0 {
                return false;
            }
            rest = &rest[digits..];
        }
    }
    rest.is_empty()
}

fn labeled_type(shape: &str) -> &'static str {
    match shape {
        "Bitmask" => "bitmasklabels",
        "Brush" => "brushlabels",
        "Cube" => "cubelabels",
        "Ellipse" => "ellipselabels",
        "KeyPoint" => "keypointlabels",
        "Polygon" => "polygonlabels",
        "Rectangle" => "rectanglelabels",
        "Vector" => "vectorlabels",
        _ => "videovectorlabels",
    }
}

/// How an item's `value` is checked. `labels` names the key holding the chosen labels.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    Choices,
    Span {
        key: &'static str,
        offsets: bool,
        instant: bool,
    },
    Rect {
        labels: Option<&'static str>,
    },
    Polygon {
        labels: Option<&'static str>,
    },
    Ellipse {
        labels: Option<&'static str>,
    },
    KeyPoint {
        labels: Option<&'static str>,
    },
    Brush {
        labels: Option<&'static str>,
    },
    Bitmask {
        labels: Option<&'static str>,
    },
    Vector {
        labels: Option<&'static str>,
    },
    VideoRectangle,
    VideoVector {
        labels_required: bool,
    },
    Timeline,
    TextArea,
    Rating,
    Number,
    DateTime,
    Taxonomy,
    Pairwise,
    Ranker,
    ChatMessage,
    AnyObject {
        key: &'static str,
    },
    Free,
}

impl Rule {
    /// The same geometry with an optional labels list under `key` (a plain shape item
    /// written by a `<Shape>Labels` control).
    fn with_optional_labels(self, key: &'static str) -> Rule {
        match self {
            Rule::Rect { .. } => Rule::Rect { labels: Some(key) },
            Rule::Polygon { .. } => Rule::Polygon { labels: Some(key) },
            Rule::Ellipse { .. } => Rule::Ellipse { labels: Some(key) },
            Rule::KeyPoint { .. } => Rule::KeyPoint { labels: Some(key) },
            Rule::Brush { .. } => Rule::Brush { labels: Some(key) },
            Rule::Bitmask { .. } => Rule::Bitmask { labels: Some(key) },
            Rule::Vector { .. } => Rule::Vector { labels: Some(key) },
            other => other,
        }
    }
}

/// Result types and their value rules (type names are Label Studio's lowercased tag names).
const TYPE_RULES: &[(&str, Rule)] = &[
    ("choices", Rule::Choices),
    (
        "labels",
        Rule::Span {
            key: "labels",
            offsets: false,
            instant: false,
        },
    ),
    (
        "hypertextlabels",
        Rule::Span {
            key: "hypertextlabels",
            offsets: true,
            instant: false,
        },
    ),
    (
        "paragraphlabels",
        Rule::Span {
            key: "paragraphlabels",
            offsets: true,
            instant: false,
        },
    ),
    (
        "timeserieslabels",
        Rule::Span {
            key: "timeserieslabels",
            offsets: false,
            instant: true,
        },
    ),
    ("rectangle", Rule::Rect { labels: None }),
    (
        "rectanglelabels",
        Rule::Rect {
            labels: Some("rectanglelabels"),
        },
    ),
    (
        "ocrlabels",
        Rule::Rect {
            labels: Some("ocrlabels"),
        },
    ),
    ("polygon", Rule::Polygon { labels: None }),
    (
        "polygonlabels",
        Rule::Polygon {
            labels: Some("polygonlabels"),
        },
    ),
    ("ellipse", Rule::Ellipse { labels: None }),
    (
        "ellipselabels",
        Rule::Ellipse {
            labels: Some("ellipselabels"),
        },
    ),
    ("keypoint", Rule::KeyPoint { labels: None }),
    (
        "keypointlabels",
        Rule::KeyPoint {
            labels: Some("keypointlabels"),
        },
    ),
    ("brush", Rule::Brush { labels: None }),
    (
        "brushlabels",
        Rule::Brush {
            labels: Some("brushlabels"),
        },
    ),
    ("magicwand", Rule::Brush { labels: None }),
    ("bitmask", Rule::Bitmask { labels: None }),
    (
        "bitmasklabels",
        Rule::Bitmask {
            labels: Some("bitmasklabels"),
        },
    ),
    ("vector", Rule::Vector { labels: None }),
    (
        "vectorlabels",
        Rule::Vector {
            labels: Some("vectorlabels"),
        },
    ),
    ("cube", Rule::Free),
    ("cubelabels", Rule::Free),
    ("videorectangle", Rule::VideoRectangle),
    (
        "videovector",
        Rule::VideoVector {
            labels_required: false,
        },
    ),
    (
        "videovectorlabels",
        Rule::VideoVector {
            labels_required: true,
        },
    ),
    ("timelinelabels", Rule::Timeline),
    ("textarea", Rule::TextArea),
    ("rating", Rule::Rating),
    ("number", Rule::Number),
    ("datetime", Rule::DateTime),
    ("taxonomy", Rule::Taxonomy),
    ("pairwise", Rule::Pairwise),
    ("ranker", Rule::Ranker),
    ("chatmessage", Rule::ChatMessage),
    ("reactcode", Rule::AnyObject { key: "reactcode" }),
];

fn rule_for(ty: &str) -> Option<Rule> {
    TYPE_RULES.iter().find(|(t, _)| *t == ty).map(|(_, r)| *r)
}

fn validate_relation(obj: &Map<String, Value>, region_ids: &[&str]) -> Result<(), String> {
    for key in ["from_id", "to_id"] {
        match obj.get(key) {
            Some(Value::String(id)) if region_ids.contains(&id.as_str()) => {}
            Some(Value::String(id)) => {
                return Err(format!(
                    "relation {key} \"{id}\" does not match the id of any region in this result"
                ));
            }
            Some(other) => {
                return Err(format!(
                    "relation {key} must be a region id string, got {}",
                    json_kind(other)
                ));
            }
            None => {
                return Err(format!(
                    "relation {key} is missing; relations link two region ids"
                ));
            }
        }
    }
    if let Some(direction) = obj.get("direction")
        && !matches!(direction.as_str(), Some("left" | "right" | "bi"))
    {
        return Err(format!(
            "relation direction must be \"left\", \"right\" or \"bi\", got {direction}"
        ));
    }
    if let Some(labels) = obj.get("labels") {
        let ok = labels
            .as_array()
            .is_some_and(|l| l.iter().all(Value::is_string));
        if !ok {
            return Err(format!(
                "relation labels must be a list of strings, got {labels}"
            ));
        }
    }
    Ok(())
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn one_of(options: &[&str]) -> String {
    match options {
        [] => {
            "nothing (this control declares no labels and does not allow dynamic ones)".to_owned()
        }
        [only] => format!("\"{only}\""),
        _ => {
            let quoted: Vec<String> = options.iter().map(|o| format!("\"{o}\"")).collect();
            format!("one of {}", quoted.join(", "))
        }
    }
}

fn string_list<'a>(value: &'a Map<String, Value>, key: &str) -> Result<Vec<&'a str>, String> {
    match value.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .ok_or_else(|| format!("value.{key} must be a list of strings, found {i}"))
            })
            .collect(),
        Some(other) => Err(format!(
            "value.{key} must be a list of strings, got {}",
            json_kind(other)
        )),
        None => Err(format!(
            "value.{key} is missing; expected a list of strings"
        )),
    }
}

fn number(value: &Map<String, Value>, key: &str) -> Result<f64, String> {
    match value.get(key) {
        Some(v) => v
            .as_f64()
            .ok_or_else(|| format!("value.{key} must be a number, got {}", json_kind(v))),
        None => Err(format!("value.{key} is missing; expected a number")),
    }
}

fn integer(value: &Map<String, Value>, key: &str) -> Result<(), String> {
    match value.get(key) {
        Some(v) if v.is_i64() || v.is_u64() => Ok(()),
        Some(v) => Err(format!("{key} must be a whole number, got {v}")),
        None => Err(format!("{key} is missing; expected a whole number")),
    }
}

/// Image coordinates are percentages; Label Studio caps them at 100 (negative sizes occur
/// in real exports of boxes drawn right-to-left, so there is no lower bound).
fn percent(value: &Map<String, Value>, key: &str) -> Result<(), String> {
    let n = number(value, key)?;
    if n > 100.0 {
        return Err(format!(
            "value.{key} is {n}, above 100 (coordinates are percentages of the image)"
        ));
    }
    Ok(())
}

fn optional_rotation(value: &Map<String, Value>) -> Result<(), String> {
    if !value.contains_key("rotation") {
        return Ok(());
    }
    let r = number(value, "rotation")?;
    if r > 360.0 {
        return Err(format!("value.rotation is {r}, above 360 degrees"));
    }
    Ok(())
}

fn span_bound(value: &Map<String, Value>, key: &str) -> Result<(), String> {
    match value.get(key) {
        Some(Value::Number(_) | Value::String(_)) => Ok(()),
        Some(other) => Err(format!(
            "value.{key} must be a number or a string offset, got {}",
            json_kind(other)
        )),
        None => Err(format!(
            "value.{key} is missing; a span needs start and end"
        )),
    }
}

fn optional_non_negative_int(value: &Map<String, Value>, key: &str) -> Result<(), String> {
    match value.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(v) if v.as_u64().is_some() => Ok(()),
        Some(v) => Err(format!(
            "value.{key} must be a whole number of at least 0, got {v}"
        )),
    }
}

fn required_string(value: &Map<String, Value>, key: &str) -> Result<(), String> {
    match value.get(key) {
        Some(Value::String(_)) => Ok(()),
        Some(other) => Err(format!("{key} must be a string, got {}", json_kind(other))),
        None => Err(format!("{key} is missing; expected a string")),
    }
}

fn vertices(value: &Map<String, Value>, path: &str) -> Result<(), String> {
    let Some(list) = value.get("vertices").and_then(Value::as_array) else {
        return Err(format!("{path} must be a list of {{\"x\", \"y\"}} points"));
    };
    for (i, vertex) in list.iter().enumerate() {
        let ok = vertex.as_object().is_some_and(|v| {
            v.get("x").is_some_and(Value::is_number) && v.get("y").is_some_and(Value::is_number)
        });
        if !ok {
            return Err(format!(
                "{path}[{i}] must be an object with numeric x and y, got {vertex}"
            ));
        }
    }
    Ok(())
}

fn sequence(value: &Map<String, Value>) -> Result<&Vec<Value>, String> {
    match value.get("sequence") {
        Some(Value::Array(frames)) => Ok(frames),
        Some(other) => Err(format!(
            "value.sequence must be a list of keyframes, got {}",
            json_kind(other)
        )),
        None => Err("value.sequence is missing; expected a list of keyframes".to_owned()),
    }
}

/// `framesCount` and `duration` are written by the editor but optional in older exports.
fn video_header(value: &Map<String, Value>) -> Result<(), String> {
    for key in ["framesCount", "duration"] {
        if value.contains_key(key) {
            number(value, key)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TEXT_CLASSIFICATION: &str = r#"<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single" showInLine="true">
    <Choice value="Positive"/>
    <Choice value="Negative"/>
    <Choice value="Neutral" alias="neu"/>
  </Choices>
</View>"#;

    const NER: &str = r#"<View>
  <Labels name="label" toName="text">
    <Label value="PER" background="red"/>
    <Label value="ORG" background="darkorange"/>
  </Labels>
  <Text name="text" value="$text"/>
  <Relations>
    <Relation value="works-at"/>
  </Relations>
</View>"#;

    const IMAGE_BBOX: &str = r#"<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image">
    <Label value="Car"/>
    <Label value="Airplane"/>
  </RectangleLabels>
</View>"#;

    const AUDIO: &str = r#"<View>
  <Labels name="speaker" toName="audio" zoom="true">
    <Label value="Speech"/>
    <Label value="Noise"/>
  </Labels>
  <Audio name="audio" value="$audio"/>
  <TextArea name="transcription" toName="audio" perRegion="true"/>
</View>"#;

    const PAIRWISE: &str = r#"<View>
  <Pairwise name="comparison" toName="text1,text2"/>
  <Text name="text1" value="$text1"/>
  <Text name="text2" value="$text2"/>
</View>"#;

    const TAXONOMY: &str = r#"<View>
  <Text name="text" value="$text"/>
  <Taxonomy name="taxonomy" toName="text">
    <Choice value="Archaea"/>
    <Choice value="Eukarya">
      <Choice value="Animalia"/>
      <Choice value="Fungi"/>
    </Choice>
  </Taxonomy>
</View>"#;

    const OCR: &str = r#"<View>
  <Image name="image" value="$ocr"/>
  <Labels name="label" toName="image">
    <Label value="Text"/>
    <Label value="Handwriting"/>
  </Labels>
  <Rectangle name="bbox" toName="image" strokeWidth="3"/>
  <Polygon name="poly" toName="image"/>
  <TextArea name="transcription" toName="image" editable="true" perRegion="true" required="true"/>
</View>"#;

    const VIDEO: &str = r#"<View>
  <Labels name="videoLabels" toName="video">
    <Label value="Car"/>
    <Label value="Man"/>
  </Labels>
  <Video name="video" value="$video"/>
  <VideoRectangle name="box" toName="video"/>
  <TimelineLabels name="timeline" toName="video">
    <Label value="Moving"/>
  </TimelineLabels>
</View>"#;

    const MISC: &str = r#"<View>
  <Text name="text" value="$text"/>
  <Rating name="rating" toName="text" maxRating="10"/>
  <Number name="count" toName="text" min="0"/>
  <DateTime name="when" toName="text" only="date"/>
  <TextArea name="summary" toName="text"/>
  <List name="results" value="$items"/>
  <Ranker name="rank" toName="results"/>
  <Choices name="topics" toName="text" value="$options"/>
  <HyperText name="html" value="$html"/>
  <HyperTextLabels name="htl" toName="html"><Label value="Link"/></HyperTextLabels>
  <Paragraphs name="dialogue" value="$dialogue"/>
  <ParagraphLabels name="pl" toName="dialogue"><Label value="Question"/></ParagraphLabels>
  <TimeSeries name="ts" value="$ts" timeColumn="time"><Channel column="velocity"/></TimeSeries>
  <TimeSeriesLabels name="tsl" toName="ts"><Label value="Run"/></TimeSeriesLabels>
</View>"#;

    const SHAPES: &str = r#"<View>
  <Image name="img" value="$image"/>
  <PolygonLabels name="poly" toName="img"><Label value="Road"/></PolygonLabels>
  <EllipseLabels name="ell" toName="img"><Label value="Eye"/></EllipseLabels>
  <KeyPointLabels name="kp" toName="img"><Label value="Nose"/></KeyPointLabels>
  <BrushLabels name="brush" toName="img"><Label value="Sky"/></BrushLabels>
  <BitmaskLabels name="bm" toName="img"><Label value="Tree"/></BitmaskLabels>
  <VectorLabels name="vec" toName="img"><Label value="Lane"/></VectorLabels>
  <MagicWand name="wand" toName="img"/>
</View>"#;

    fn cfg(xml: &str) -> LabelConfig {
        match LabelConfig::parse(xml) {
            Ok(c) => c,
            Err(e) => panic!("config should parse: {e}\n{xml}"),
        }
    }

    #[test]
    fn valid_configs_parse() {
        let cases: &[(&str, &str, usize, usize)] = &[
            ("default empty view", "<View></View>", 0, 0),
            ("self-closing view", "<View/>", 0, 0),
            (
                "xml declaration and comments",
                "<?xml version=\"1.0\"?><!-- {\"data\": {}} --><View><Text name=\"t\" value=\"$t\"/></View>",
                1,
                0,
            ),
            ("text classification", TEXT_CLASSIFICATION, 1, 1),
            ("ner with bare relations", NER, 1, 1),
            ("image bbox", IMAGE_BBOX, 1, 1),
            ("audio", AUDIO, 1, 2),
            ("pairwise", PAIRWISE, 2, 1),
            ("taxonomy", TAXONOMY, 1, 1),
            ("ocr", OCR, 1, 4),
            ("video", VIDEO, 1, 3),
            ("misc controls", MISC, 5, 9),
            ("shapes", SHAPES, 1, 7),
            (
                "lowercase tag names",
                "<view><text name=\"t\" value=\"$t\"/><choices name=\"c\" toname=\"t\"><choice value=\"A\"/></choices></view>",
                1,
                1,
            ),
            (
                "visual tags",
                "<View><Header value=\"Title\"/><Style>.x{}</Style><Markdown>**hi**</Markdown><Collapse><Panel value=\"p\"><Text name=\"t\" value=\"$t\"/></Panel></Collapse><Filter name=\"f\" toName=\"l\"/><Labels name=\"l\" toName=\"t\"><Label value=\"A\"/></Labels><TextArea name=\"ta\" toName=\"t\"><Shortcut value=\"ok\" hotkey=\"1\"/></TextArea></View>",
                1,
                2,
            ),
            (
                "chat is object and control",
                "<View><Chat name=\"chat\" value=\"$chat\" toName=\"chat\"/><Rating name=\"r\" toName=\"chat\" perRegion=\"true\"/></View>",
                1,
                2,
            ),
            (
                "reactcode without value",
                "<View><ReactCode name=\"app\" toName=\"app\" data=\"$payload\"><![CDATA[function A(){ return 1 < 2 && 3; }]]></ReactCode></View>",
                1,
                1,
            ),
            (
                "repeater",
                "<View><Repeater on=\"$utterances\"><Text name=\"user_{{idx}}\" value=\"$utterances[{{idx}}].text\"/><Choices name=\"act_{{idx}}\" toName=\"user_{{idx}}\"><Choice value=\"Keep\"/></Choices></Repeater></View>",
                1,
                1,
            ),
            (
                "image valueList",
                "<View><Image name=\"pages\" valueList=\"$pages\"/><Rectangle name=\"r\" toName=\"pages\"/></View>",
                1,
                1,
            ),
            (
                "ranker buckets",
                "<View><List name=\"results\" value=\"$items\"/><Ranker name=\"rank\" toName=\"results\"><Bucket name=\"best\" title=\"Best\"/></Ranker></View>",
                1,
                1,
            ),
            (
                "named relations control",
                "<View><Text name=\"t\" value=\"$t\"/><Relations name=\"rel\" toName=\"t\"><Relation value=\"x\"/></Relations></View>",
                1,
                1,
            ),
        ];
        for (label, xml, objects, controls) in cases {
            let parsed = LabelConfig::parse(xml).map_err(|e| format!("{label}: {e}"));
            let parsed = match parsed {
                Ok(p) => p,
                Err(e) => panic!("{e}"),
            };
            assert_eq!(parsed.objects().len(), *objects, "{label}: objects");
            assert_eq!(parsed.controls().len(), *controls, "{label}: controls");
            assert_eq!(
                parsed.has_controls(),
                *controls > 0,
                "{label}: has_controls"
            );
        }
    }

    #[test]
    fn invalid_configs_are_rejected_with_tag_and_attribute() {
        let cases: &[(&str, &str, &str, Option<&str>, &str)] = &[
            ("empty string", "  ", "View", None, "empty"),
            (
                "malformed xml",
                "<View><Text name=\"t\" value=\"$t\"></View>",
                "View",
                None,
                "not well-formed XML",
            ),
            (
                "malformed xml position",
                "<View>\n<Text name=\"t\" value=\"$t\">\n</View>",
                "View",
                None,
                "3:",
            ),
            (
                "wrong root",
                "<Config><Text name=\"t\" value=\"$t\"/></Config>",
                "Config",
                None,
                "root tag must be <View>",
            ),
            (
                "unknown tag",
                "<View><Txt name=\"t\" value=\"$t\"/></View>",
                "Txt",
                None,
                "unknown tag <Txt>",
            ),
            (
                "unknown html tag",
                "<View><div>hi</div></View>",
                "div",
                None,
                "unknown tag <div>",
            ),
            (
                "object without name",
                "<View><Text value=\"$t\"/></View>",
                "Text",
                Some("name"),
                "needs a non-empty name",
            ),
            (
                "object without value",
                "<View><Image name=\"img\"/></View>",
                "Image",
                Some("value"),
                "needs a value attribute",
            ),
            (
                "control without name",
                "<View><Text name=\"t\" value=\"$t\"/><Choices toName=\"t\"/></View>",
                "Choices",
                Some("name"),
                "needs a non-empty name",
            ),
            (
                "control without toName",
                "<View><Text name=\"t\" value=\"$t\"/><choices name=\"c\"/></View>",
                "Choices",
                Some("toName"),
                "needs a toName",
            ),
            (
                "toName to missing object",
                "<View><Text name=\"t\" value=\"$t\"/><Labels name=\"l\" toName=\"txt\"/></View>",
                "Labels",
                Some("toName"),
                "toName=\"txt\"",
            ),
            (
                "second toName missing",
                "<View><Text name=\"a\" value=\"$a\"/><Pairwise name=\"p\" toName=\"a,b\"/></View>",
                "Pairwise",
                Some("toName"),
                "toName=\"b\"",
            ),
            (
                "toName to a control",
                "<View><Text name=\"t\" value=\"$t\"/><Labels name=\"l\" toName=\"t\"/><Choices name=\"c\" toName=\"l\"/></View>",
                "Choices",
                Some("toName"),
                "no object tag",
            ),
            (
                "duplicate object/control",
                "<View><Text name=\"x\" value=\"$t\"/><Choices name=\"x\" toName=\"x\"/></View>",
                "Choices",
                Some("name"),
                "<Text> and <Choices>",
            ),
            (
                "duplicate objects",
                "<View><Text name=\"x\" value=\"$a\"/><Image name=\"x\" value=\"$b\"/></View>",
                "Image",
                Some("name"),
                "<Text> and <Image>",
            ),
            (
                "label without value",
                "<View><Text name=\"t\" value=\"$t\"/><Labels name=\"l\" toName=\"t\"><Label background=\"red\"/></Labels></View>",
                "Label",
                Some("value"),
                "inside <Labels name=\"l\">",
            ),
            (
                "filter to unknown",
                "<View><Text name=\"t\" value=\"$t\"/><Filter toName=\"nope\"/></View>",
                "Filter",
                Some("toName"),
                "toName=\"nope\"",
            ),
            (
                "chat without value",
                "<View><Chat name=\"c\" toName=\"c\"/></View>",
                "Chat",
                Some("value"),
                "needs a value",
            ),
            (
                "dtd rejected",
                "<!DOCTYPE View [<!ENTITY x \"y\">]><View>&x;</View>",
                "View",
                None,
                "not well-formed XML",
            ),
        ];
        for (label, xml, tag, attribute, needle) in cases {
            match LabelConfig::parse(xml) {
                Ok(_) => panic!("{label}: should be rejected"),
                Err(e) => {
                    assert_eq!(e.tag, *tag, "{label}: tag ({e})");
                    assert_eq!(
                        e.attribute.as_deref(),
                        *attribute,
                        "{label}: attribute ({e})"
                    );
                    assert!(
                        e.message.contains(needle),
                        "{label}: message {:?} lacks {needle:?}",
                        e.message
                    );
                    assert_eq!(e.to_string(), e.message, "{label}: Display is the message");
                }
            }
        }
    }

    #[test]
    fn tags_are_reported_canonically_with_labels_and_aliases() {
        let c = cfg(
            "<VIEW><TEXT name=\"t\" value=\"$t\"/><rectanglelabels name=\"r\" toname=\"t\"><label value=\"A\"/><LABEL value=\"B\" alias=\"b\"/><Label value=\"A\"/></rectanglelabels></VIEW>",
        );
        assert_eq!(
            c.objects(),
            &[ObjectTag {
                name: "t".into(),
                tag: "Text".into(),
                value: "$t".into()
            }]
        );
        assert_eq!(
            c.controls(),
            &[ControlTag {
                name: "r".into(),
                tag: "RectangleLabels".into(),
                to_names: vec!["t".into()],
                labels: vec!["A".into(), "b".into()],
                dynamic_labels: false,
            }]
        );
    }

    #[test]
    fn dynamic_labels_detection() {
        let cases: &[(&str, bool)] = &[
            (
                "<Choices name=\"c\" toName=\"t\"><Choice value=\"A\"/></Choices>",
                false,
            ),
            (
                "<Choices name=\"c\" toName=\"t\" value=\"$options\"/>",
                true,
            ),
            ("<Labels name=\"c\" toName=\"t\" value=\"$labels\"/>", true),
            (
                "<Taxonomy name=\"c\" toName=\"t\" apiUrl=\"https://example.com/tree\"/>",
                true,
            ),
            (
                "<Taxonomy name=\"c\" toName=\"t\" userLabels=\"true\"/>",
                true,
            ),
            ("<Choices name=\"c\" toName=\"t\" value=\"static\"/>", false),
        ];
        for (control, dynamic) in cases {
            let c = cfg(&format!(
                "<View><Text name=\"t\" value=\"$t\"/>{control}</View>"
            ));
            assert_eq!(c.controls()[0].dynamic_labels, *dynamic, "{control}");
        }
    }

    #[test]
    fn data_keys_and_types() {
        let c = cfg(r#"<View>
  <Text name="t" value="$text"/>
  <Image name="i" value="$meta.url"/>
  <Header value="$title"/>
  <Text name="caption" value="Rate the response"/>
  <Audio name="a" value="$media"/>
  <Video name="v" value="$media"/>
  <Choices name="c" toName="t" value="$options"/>
  <Repeater on="$rows"><Text name="r_{{idx}}" value="$rows[{{idx}}].text"/></Repeater>
</View>"#);
        let keys: Vec<String> = c.data_keys().into_iter().collect();
        assert_eq!(keys, ["media", "meta", "rows", "text"]);
        let types = c.data_types();
        assert_eq!(
            Value::Object(types),
            json!({
                "text": "Text",
                "meta.url": "Image",
                "media": "Video",
                "options": "Choices",
                "rows[{{idx}}].text": "Text"
            })
        );
        // Video keeps priority even when it comes first.
        let c =
            cfg("<View><Video name=\"v\" value=\"$m\"/><Audio name=\"a\" value=\"$m\"/></View>");
        assert_eq!(Value::Object(c.data_types()), json!({"m": "Video"}));
        // The default config reads nothing.
        let c = cfg("<View></View>");
        assert!(c.data_keys().is_empty());
        assert!(c.data_types().is_empty());
        assert_eq!(c.parsed(), json!({}));
    }

    #[test]
    fn parsed_matches_label_studio_shape() {
        let c = cfg(TEXT_CLASSIFICATION);
        assert_eq!(
            c.parsed(),
            json!({
                "sentiment": {
                    "type": "Choices",
                    "to_name": ["text"],
                    "inputs": [{"type": "Text", "value": "text", "valueType": null}],
                    "labels": ["Positive", "Negative", "neu"],
                    "labels_attrs": {
                        "Positive": {"value": "Positive"},
                        "Negative": {"value": "Negative"},
                        "neu": {"value": "Neutral", "alias": "neu"}
                    }
                }
            })
        );
        let c = cfg(
            r#"<View><Image name="img" valueList="$pages" valueType="url"/><Pairwise name="p" toName="img"/>
            <Choices name="c" toName="img" perRegion="true" whenLabelValue="Car" value="$opts"/></View>"#,
        );
        let parsed = c.parsed();
        assert_eq!(
            parsed["p"]["inputs"],
            json!([{"type": "Image", "valueList": "pages", "valueType": "url"}])
        );
        assert_eq!(
            parsed["c"]["conditionals"],
            json!({"type": "label", "name": "Car"})
        );
        assert_eq!(parsed["c"]["dynamic_labels"], json!(true));
        assert!(parsed["p"].get("dynamic_labels").is_none());
        assert!(parsed["p"].get("conditionals").is_none());
    }

    fn item(from: &str, to: &str, ty: &str, value: Value) -> Value {
        json!({"id": "r1", "from_name": from, "to_name": to, "type": ty, "value": value})
    }

    /// (case, config, result, expected: Ok(()) or Err((index, message fragment))).
    type Case = (
        &'static str,
        &'static str,
        Value,
        Result<(), (usize, &'static str)>,
    );

    fn run(cases: Vec<Case>) {
        for (label, xml, result, expected) in cases {
            let c = cfg(xml);
            let got = c.validate_result(&result);
            match (&got, &expected) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err((index, needle))) => {
                    assert_eq!(e.index, *index, "{label}: index ({e})");
                    assert!(
                        e.message.contains(needle),
                        "{label}: {:?} lacks {needle:?}",
                        e.message
                    );
                    assert!(
                        e.to_string().starts_with(&format!("result item {index}: ")),
                        "{label}"
                    );
                }
                _ => panic!("{label}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn structural_rules() {
        run(vec![
            ("empty result", TEXT_CLASSIFICATION, json!([]), Ok(())),
            (
                "result not array",
                TEXT_CLASSIFICATION,
                json!({"from_name": "sentiment"}),
                Err((0, "must be a JSON array")),
            ),
            (
                "item not object",
                TEXT_CLASSIFICATION,
                json!([
                    item(
                        "sentiment",
                        "text",
                        "choices",
                        json!({"choices": ["Positive"]})
                    ),
                    5
                ]),
                Err((1, "must be a JSON object")),
            ),
            (
                "unknown from_name",
                TEXT_CLASSIFICATION,
                json!([
                    item(
                        "sentiment",
                        "text",
                        "choices",
                        json!({"choices": ["Positive"]})
                    ),
                    item("mood", "text", "choices", json!({"choices": ["Positive"]}))
                ]),
                Err((1, "from_name \"mood\" is not a control in the label config")),
            ),
            (
                "object name as from_name",
                TEXT_CLASSIFICATION,
                json!([item(
                    "text",
                    "text",
                    "choices",
                    json!({"choices": ["Positive"]})
                )]),
                Err((0, "from_name \"text\" is not a control")),
            ),
            (
                "missing from_name",
                TEXT_CLASSIFICATION,
                json!([{"type": "choices", "to_name": "text", "value": {"choices": ["Positive"]}}]),
                Err((0, "from_name is missing")),
            ),
            (
                "wrong to_name",
                TEXT_CLASSIFICATION,
                json!([item(
                    "sentiment",
                    "image",
                    "choices",
                    json!({"choices": ["Positive"]})
                )]),
                Err((0, "to_name \"image\" is not a target")),
            ),
            (
                "missing to_name",
                TEXT_CLASSIFICATION,
                json!([{"from_name": "sentiment", "type": "choices", "value": {"choices": ["Positive"]}}]),
                Err((0, "to_name is missing")),
            ),
            (
                "wrong type",
                TEXT_CLASSIFICATION,
                json!([item(
                    "sentiment",
                    "text",
                    "labels",
                    json!({"choices": ["Positive"]})
                )]),
                Err((
                    0,
                    "type \"labels\" is not produced by <Choices> \"sentiment\"; expected \"choices\"",
                )),
            ),
            (
                "type case matters",
                TEXT_CLASSIFICATION,
                json!([item(
                    "sentiment",
                    "text",
                    "Choices",
                    json!({"choices": ["Positive"]})
                )]),
                Err((0, "type \"Choices\"")),
            ),
            (
                "missing type",
                TEXT_CLASSIFICATION,
                json!([{"from_name": "sentiment", "to_name": "text", "value": {}}]),
                Err((0, "type is missing")),
            ),
            (
                "missing value",
                TEXT_CLASSIFICATION,
                json!([{"from_name": "sentiment", "to_name": "text", "type": "choices"}]),
                Err((0, "value is missing")),
            ),
            (
                "value not object",
                TEXT_CLASSIFICATION,
                json!([{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": ["Positive"]}]),
                Err((0, "value must be a JSON object")),
            ),
            (
                "bad id",
                TEXT_CLASSIFICATION,
                json!([{"id": [1], "from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]}}]),
                Err((0, "id must be a string")),
            ),
            (
                "extra keys are fine",
                TEXT_CLASSIFICATION,
                json!([{"id": "a", "from_name": "sentiment", "to_name": "text", "type": "choices", "origin": "manual", "score": 0.4, "readonly": false, "value": {"choices": ["Positive"]}}]),
                Ok(()),
            ),
            (
                "default config rejects any item",
                "<View></View>",
                json!([item(
                    "sentiment",
                    "text",
                    "choices",
                    json!({"choices": ["Positive"]})
                )]),
                Err((0, "not a control")),
            ),
        ]);
    }

    #[test]
    fn classification_values() {
        run(vec![
            (
                "single choice",
                TEXT_CLASSIFICATION,
                json!([item(
                    "sentiment",
                    "text",
                    "choices",
                    json!({"choices": ["Positive"]})
                )]),
                Ok(()),
            ),
            (
                "alias is the label",
                TEXT_CLASSIFICATION,
                json!([item(
                    "sentiment",
                    "text",
                    "choices",
                    json!({"choices": ["neu"]})
                )]),
                Ok(()),
            ),
            (
                "value behind alias is not",
                TEXT_CLASSIFICATION,
                json!([item(
                    "sentiment",
                    "text",
                    "choices",
                    json!({"choices": ["Neutral"]})
                )]),
                Err((0, "value.choices uses \"Neutral\"")),
            ),
            (
                "undeclared choice",
                TEXT_CLASSIFICATION,
                json!([item(
                    "sentiment",
                    "text",
                    "choices",
                    json!({"choices": ["Happy"]})
                )]),
                Err((0, "does not declare")),
            ),
            (
                "choices as string",
                TEXT_CLASSIFICATION,
                json!([item(
                    "sentiment",
                    "text",
                    "choices",
                    json!({"choices": "Positive"})
                )]),
                Err((0, "value.choices must be a list of strings")),
            ),
            (
                "nested choice paths",
                "<View><Text name=\"t\" value=\"$t\"/><Choices name=\"c\" toName=\"t\" allowNested=\"true\"><Choice value=\"A\"><Choice value=\"A1\"/></Choice></Choices></View>",
                json!([item(
                    "c",
                    "t",
                    "choices",
                    json!({"choices": [["A", "A1"], "A"]})
                )]),
                Ok(()),
            ),
            (
                "nested choice path undeclared",
                "<View><Text name=\"t\" value=\"$t\"/><Choices name=\"c\" toName=\"t\" allowNested=\"true\"><Choice value=\"A\"><Choice value=\"A1\"/></Choice></Choices></View>",
                json!([item("c", "t", "choices", json!({"choices": [["A", "A2"]]}))]),
                Err((0, "value.choices uses \"A2\"")),
            ),
            (
                "nested choice path of numbers",
                TEXT_CLASSIFICATION,
                json!([item(
                    "sentiment",
                    "text",
                    "choices",
                    json!({"choices": [[1]]})
                )]),
                Err((0, "value.choices must be a list of strings")),
            ),
            (
                "choices with number",
                TEXT_CLASSIFICATION,
                json!([item(
                    "sentiment",
                    "text",
                    "choices",
                    json!({"choices": [1]})
                )]),
                Err((0, "value.choices must be a list of strings")),
            ),
            (
                "choices missing",
                TEXT_CLASSIFICATION,
                json!([item(
                    "sentiment",
                    "text",
                    "choices",
                    json!({"labels": ["Positive"]})
                )]),
                Err((0, "value.choices is missing")),
            ),
            (
                "dynamic choices accept anything",
                MISC,
                json!([item(
                    "topics",
                    "text",
                    "choices",
                    json!({"choices": ["whatever"]})
                )]),
                Ok(()),
            ),
            (
                "taxonomy paths",
                TAXONOMY,
                json!([item(
                    "taxonomy",
                    "text",
                    "taxonomy",
                    json!({"taxonomy": [["Eukarya", "Animalia"], ["Archaea"]]})
                )]),
                Ok(()),
            ),
            (
                "taxonomy undeclared node",
                TAXONOMY,
                json!([item(
                    "taxonomy",
                    "text",
                    "taxonomy",
                    json!({"taxonomy": [["Eukarya", "Plantae"]]})
                )]),
                Err((0, "value.taxonomy uses \"Plantae\"")),
            ),
            (
                "taxonomy flat list",
                TAXONOMY,
                json!([item(
                    "taxonomy",
                    "text",
                    "taxonomy",
                    json!({"taxonomy": ["Archaea"]})
                )]),
                Err((0, "value.taxonomy[0] must be a list of strings")),
            ),
            (
                "taxonomy missing",
                TAXONOMY,
                json!([item("taxonomy", "text", "taxonomy", json!({}))]),
                Err((0, "value.taxonomy must be a list of paths")),
            ),
            (
                "rating",
                MISC,
                json!([item("rating", "text", "rating", json!({"rating": 7}))]),
                Ok(()),
            ),
            (
                "rating whole float",
                MISC,
                json!([item("rating", "text", "rating", json!({"rating": 3.0}))]),
                Ok(()),
            ),
            (
                "rating above max",
                MISC,
                json!([item("rating", "text", "rating", json!({"rating": 11}))]),
                Err((0, "above maxRating 10")),
            ),
            (
                "rating fractional",
                MISC,
                json!([item("rating", "text", "rating", json!({"rating": 2.5}))]),
                Err((0, "whole number")),
            ),
            (
                "rating string",
                MISC,
                json!([item("rating", "text", "rating", json!({"rating": "5"}))]),
                Err((0, "value.rating must be a whole number")),
            ),
            (
                "rating default max 5",
                "<View><Text name=\"t\" value=\"$t\"/><Rating name=\"r\" toName=\"t\"/></View>",
                json!([item("r", "t", "rating", json!({"rating": 6}))]),
                Err((0, "above maxRating 5")),
            ),
            (
                "number",
                MISC,
                json!([item("count", "text", "number", json!({"number": 2.5}))]),
                Ok(()),
            ),
            (
                "number as string",
                MISC,
                json!([item("count", "text", "number", json!({"number": "2"}))]),
                Err((0, "value.number must be a number")),
            ),
            (
                "datetime",
                MISC,
                json!([item(
                    "when",
                    "text",
                    "datetime",
                    json!({"datetime": "2021-01-01"})
                )]),
                Ok(()),
            ),
            (
                "datetime number",
                MISC,
                json!([item(
                    "when",
                    "text",
                    "datetime",
                    json!({"datetime": 20210101})
                )]),
                Err((0, "datetime must be a string")),
            ),
            (
                "textarea list",
                MISC,
                json!([item(
                    "summary",
                    "text",
                    "textarea",
                    json!({"text": ["line 1", "line 2"]})
                )]),
                Ok(()),
            ),
            (
                "textarea string",
                MISC,
                json!([item(
                    "summary",
                    "text",
                    "textarea",
                    json!({"text": "one line"})
                )]),
                Ok(()),
            ),
            (
                "textarea number list",
                MISC,
                json!([item("summary", "text", "textarea", json!({"text": [1]}))]),
                Err((0, "value.text must be a string or a list of strings")),
            ),
            (
                "textarea missing text",
                MISC,
                json!([item(
                    "summary",
                    "text",
                    "textarea",
                    json!({"textarea": ["x"]})
                )]),
                Err((0, "value.text is missing")),
            ),
            (
                "ranker list",
                MISC,
                json!([item(
                    "rank",
                    "results",
                    "ranker",
                    json!({"ranker": ["mdn", "wiki"]})
                )]),
                Ok(()),
            ),
            (
                "ranker buckets",
                MISC,
                json!([item(
                    "rank",
                    "results",
                    "ranker",
                    json!({"ranker": {"best": ["mdn"], "ads": []}})
                )]),
                Ok(()),
            ),
            (
                "ranker bad bucket",
                MISC,
                json!([item(
                    "rank",
                    "results",
                    "ranker",
                    json!({"ranker": {"best": "mdn"}})
                )]),
                Err((0, "value.ranker.best")),
            ),
            (
                "ranker to wrong object",
                MISC,
                json!([item("rank", "text", "ranker", json!({"ranker": ["mdn"]}))]),
                Err((0, "to_name \"text\"")),
            ),
        ]);
    }

    #[test]
    fn pairwise_values_and_multi_object_to_name() {
        run(vec![
            (
                "joined to_name",
                PAIRWISE,
                json!([item(
                    "comparison",
                    "text1,text2",
                    "pairwise",
                    json!({"selected": "left"})
                )]),
                Ok(()),
            ),
            (
                "single target",
                PAIRWISE,
                json!([item(
                    "comparison",
                    "text2",
                    "pairwise",
                    json!({"selected": "right"})
                )]),
                Ok(()),
            ),
            (
                "self target (SDK form)",
                PAIRWISE,
                json!([item(
                    "comparison",
                    "comparison",
                    "pairwise",
                    json!({"selected": "right"})
                )]),
                Ok(()),
            ),
            (
                "joined with unknown",
                PAIRWISE,
                json!([item(
                    "comparison",
                    "text1,text3",
                    "pairwise",
                    json!({"selected": "left"})
                )]),
                Err((0, "to_name \"text1,text3\"")),
            ),
            (
                "selected other",
                PAIRWISE,
                json!([item(
                    "comparison",
                    "text1,text2",
                    "pairwise",
                    json!({"selected": "middle"})
                )]),
                Err((0, "value.selected must be \"left\" or \"right\"")),
            ),
            (
                "selected missing",
                PAIRWISE,
                json!([item("comparison", "text1,text2", "pairwise", json!({}))]),
                Err((0, "value.selected is missing")),
            ),
            (
                "joined to_name for single-target control",
                TEXT_CLASSIFICATION,
                json!([item(
                    "sentiment",
                    "text,text",
                    "choices",
                    json!({"choices": ["Positive"]})
                )]),
                Ok(()),
            ),
        ]);
    }

    #[test]
    fn span_values() {
        let ner = |labels: Value| json!({"id": "e1", "from_name": "label", "to_name": "text", "type": "labels", "value": {"start": 0, "end": 5, "text": "Alice", "labels": labels}});
        run(vec![
            ("ner span", NER, json!([ner(json!(["PER"]))]), Ok(())),
            (
                "ner undeclared",
                NER,
                json!([ner(json!(["LOC"]))]),
                Err((0, "value.labels uses \"LOC\"")),
            ),
            (
                "ner labels string",
                NER,
                json!([ner(json!("PER"))]),
                Err((0, "value.labels must be a list of strings")),
            ),
            (
                "ner missing end",
                NER,
                json!([item(
                    "label",
                    "text",
                    "labels",
                    json!({"start": 0, "labels": ["PER"]})
                )]),
                Err((0, "value.end is missing")),
            ),
            (
                "ner bool start",
                NER,
                json!([item(
                    "label",
                    "text",
                    "labels",
                    json!({"start": true, "end": 3, "labels": ["PER"]})
                )]),
                Err((0, "value.start must be a number or a string")),
            ),
            (
                "audio segment is still labels",
                AUDIO,
                json!([item(
                    "speaker",
                    "audio",
                    "labels",
                    json!({"start": 1.23, "end": 4.56, "channel": 0, "labels": ["Speech"]})
                )]),
                Ok(()),
            ),
            (
                "audio per-region transcription",
                AUDIO,
                json!([
                    {"id": "s1", "from_name": "speaker", "to_name": "audio", "type": "labels", "value": {"start": 1.0, "end": 2.0, "labels": ["Noise"]}},
                    {"id": "s1", "from_name": "transcription", "to_name": "audio", "type": "textarea", "value": {"start": 1.0, "end": 2.0, "text": ["hello"]}}
                ]),
                Ok(()),
            ),
            (
                "audio wrong type",
                AUDIO,
                json!([item(
                    "speaker",
                    "audio",
                    "audiolabels",
                    json!({"start": 1, "end": 2, "labels": ["Speech"]})
                )]),
                Err((0, "expected \"labels\"")),
            ),
            (
                "hypertext labels",
                MISC,
                json!([item(
                    "htl",
                    "html",
                    "hypertextlabels",
                    json!({"start": "/p[1]/text()[1]", "end": "/p[1]/text()[1]", "startOffset": 0, "endOffset": 4, "hypertextlabels": ["Link"]})
                )]),
                Ok(()),
            ),
            (
                "hypertext negative offset",
                MISC,
                json!([item(
                    "htl",
                    "html",
                    "hypertextlabels",
                    json!({"start": "/p[1]", "end": "/p[1]", "startOffset": -1, "hypertextlabels": ["Link"]})
                )]),
                Err((0, "value.startOffset")),
            ),
            (
                "hypertext wrong key",
                MISC,
                json!([item(
                    "htl",
                    "html",
                    "hypertextlabels",
                    json!({"start": "/p", "end": "/p", "labels": ["Link"]})
                )]),
                Err((0, "value.hypertextlabels is missing")),
            ),
            (
                "paragraph labels",
                MISC,
                json!([item(
                    "pl",
                    "dialogue",
                    "paragraphlabels",
                    json!({"start": "0", "end": "2", "startOffset": 0, "endOffset": 10, "paragraphlabels": ["Question"]})
                )]),
                Ok(()),
            ),
            (
                "timeseries labels",
                MISC,
                json!([item(
                    "tsl",
                    "ts",
                    "timeserieslabels",
                    json!({"start": 1, "end": 5, "instant": false, "timeserieslabels": ["Run"]})
                )]),
                Ok(()),
            ),
            (
                "timeseries missing instant",
                MISC,
                json!([item(
                    "tsl",
                    "ts",
                    "timeserieslabels",
                    json!({"start": 1, "end": 5, "timeserieslabels": ["Run"]})
                )]),
                Err((0, "value.instant is missing")),
            ),
            (
                "labels on hypertext merged type",
                "<View><HyperText name=\"h\" value=\"$h\"/><Labels name=\"l\" toName=\"h\"><Label value=\"X\"/></Labels></View>",
                json!([
                    item(
                        "l",
                        "h",
                        "hypertextlabels",
                        json!({"start": "/p", "end": "/p", "hypertextlabels": ["X"]})
                    ),
                    item(
                        "l",
                        "h",
                        "labels",
                        json!({"start": "/p", "end": "/p", "labels": ["X"]})
                    )
                ]),
                Ok(()),
            ),
            (
                "labels on hypertext merged bad label",
                "<View><HyperText name=\"h\" value=\"$h\"/><Labels name=\"l\" toName=\"h\"><Label value=\"X\"/></Labels></View>",
                json!([item(
                    "l",
                    "h",
                    "hypertextlabels",
                    json!({"start": "/p", "end": "/p", "labels": ["Y"]})
                )]),
                Err((0, "value.labels uses \"Y\"")),
            ),
        ]);
    }

    #[test]
    fn image_values() {
        let rect = json!({"x": 3.1, "y": 8.2, "width": 20, "height": 16, "rotation": 0, "rectanglelabels": ["Car"]});
        run(vec![
            (
                "bbox",
                IMAGE_BBOX,
                json!([{"id": "b1", "from_name": "label", "to_name": "image", "type": "rectanglelabels", "original_width": 1920, "original_height": 1280, "image_rotation": 0, "value": rect}]),
                Ok(()),
            ),
            (
                "bbox drawn right to left (negative height)",
                IMAGE_BBOX,
                json!([item(
                    "label",
                    "image",
                    "rectanglelabels",
                    json!({"x": 16.3, "y": 96.1, "width": 52.9, "height": -60.7, "rectanglelabels": ["Car"]})
                )]),
                Ok(()),
            ),
            (
                "bbox plain shape from labels control",
                IMAGE_BBOX,
                json!([item(
                    "label",
                    "image",
                    "rectangle",
                    json!({"x": 1, "y": 2, "width": 3, "height": 4})
                )]),
                Ok(()),
            ),
            (
                "bbox plain shape with bad label",
                IMAGE_BBOX,
                json!([item(
                    "label",
                    "image",
                    "rectangle",
                    json!({"x": 1, "y": 2, "width": 3, "height": 4, "rectanglelabels": ["Ship"]})
                )]),
                Err((0, "\"Ship\"")),
            ),
            (
                "bbox undeclared",
                IMAGE_BBOX,
                json!([item(
                    "label",
                    "image",
                    "rectanglelabels",
                    json!({"x": 1, "y": 2, "width": 3, "height": 4, "rectanglelabels": ["Ship"]})
                )]),
                Err((0, "value.rectanglelabels uses \"Ship\"")),
            ),
            (
                "bbox missing labels",
                IMAGE_BBOX,
                json!([item(
                    "label",
                    "image",
                    "rectanglelabels",
                    json!({"x": 1, "y": 2, "width": 3, "height": 4})
                )]),
                Err((0, "value.rectanglelabels is missing")),
            ),
            (
                "bbox labels key not accepted",
                IMAGE_BBOX,
                json!([item(
                    "label",
                    "image",
                    "rectanglelabels",
                    json!({"x": 1, "y": 2, "width": 3, "height": 4, "labels": ["Car"]})
                )]),
                Err((0, "value.rectanglelabels is missing")),
            ),
            (
                "bbox string x",
                IMAGE_BBOX,
                json!([item(
                    "label",
                    "image",
                    "rectanglelabels",
                    json!({"x": "1", "y": 2, "width": 3, "height": 4, "rectanglelabels": ["Car"]})
                )]),
                Err((0, "value.x must be a number")),
            ),
            (
                "bbox missing height",
                IMAGE_BBOX,
                json!([item(
                    "label",
                    "image",
                    "rectanglelabels",
                    json!({"x": 1, "y": 2, "width": 3, "rectanglelabels": ["Car"]})
                )]),
                Err((0, "value.height is missing")),
            ),
            (
                "bbox pixels not percent",
                IMAGE_BBOX,
                json!([item(
                    "label",
                    "image",
                    "rectanglelabels",
                    json!({"x": 640, "y": 2, "width": 3, "height": 4, "rectanglelabels": ["Car"]})
                )]),
                Err((0, "value.x is 640, above 100")),
            ),
            (
                "bbox rotation",
                IMAGE_BBOX,
                json!([item(
                    "label",
                    "image",
                    "rectanglelabels",
                    json!({"x": 1, "y": 2, "width": 3, "height": 4, "rotation": 400, "rectanglelabels": ["Car"]})
                )]),
                Err((0, "value.rotation")),
            ),
            (
                "bbox polygon type",
                IMAGE_BBOX,
                json!([item(
                    "label",
                    "image",
                    "polygon",
                    json!({"points": [[1, 2], [3, 4], [5, 6]]})
                )]),
                Err((0, "expected one of \"rectanglelabels\", \"rectangle\"")),
            ),
            (
                "polygon",
                SHAPES,
                json!([item(
                    "poly",
                    "img",
                    "polygonlabels",
                    json!({"points": [[2, 2], [3.5, 8.1], [3.5, 12.6]], "closed": true, "polygonlabels": ["Road"]})
                )]),
                Ok(()),
            ),
            (
                "polygon triple",
                SHAPES,
                json!([item(
                    "poly",
                    "img",
                    "polygonlabels",
                    json!({"points": [[2, 2, 1]], "polygonlabels": ["Road"]})
                )]),
                Err((0, "value.points[0] must be an [x, y] pair")),
            ),
            (
                "polygon flat",
                SHAPES,
                json!([item(
                    "poly",
                    "img",
                    "polygonlabels",
                    json!({"points": [2, 2], "polygonlabels": ["Road"]})
                )]),
                Err((0, "value.points[0]")),
            ),
            (
                "polygon closed string",
                SHAPES,
                json!([item(
                    "poly",
                    "img",
                    "polygonlabels",
                    json!({"points": [[2, 2]], "closed": "yes", "polygonlabels": ["Road"]})
                )]),
                Err((0, "value.closed")),
            ),
            (
                "ellipse",
                SHAPES,
                json!([item(
                    "ell",
                    "img",
                    "ellipselabels",
                    json!({"x": 10, "y": 10, "radiusX": 3, "radiusY": 4, "rotation": 0, "ellipselabels": ["Eye"]})
                )]),
                Ok(()),
            ),
            (
                "ellipse missing radius",
                SHAPES,
                json!([item(
                    "ell",
                    "img",
                    "ellipselabels",
                    json!({"x": 10, "y": 10, "radiusX": 3, "ellipselabels": ["Eye"]})
                )]),
                Err((0, "value.radiusY is missing")),
            ),
            (
                "keypoint",
                SHAPES,
                json!([item(
                    "kp",
                    "img",
                    "keypointlabels",
                    json!({"x": 3.1, "y": 8.2, "width": 2, "keypointlabels": ["Nose"]})
                )]),
                Ok(()),
            ),
            (
                "keypoint bad label",
                SHAPES,
                json!([item(
                    "kp",
                    "img",
                    "keypointlabels",
                    json!({"x": 3.1, "y": 8.2, "keypointlabels": ["Ear"]})
                )]),
                Err((0, "\"Ear\"")),
            ),
            (
                "brush",
                SHAPES,
                json!([item(
                    "brush",
                    "img",
                    "brushlabels",
                    json!({"format": "rle", "rle": [0, 1, 255], "brushlabels": ["Sky"]})
                )]),
                Ok(()),
            ),
            (
                "brush byte overflow",
                SHAPES,
                json!([item(
                    "brush",
                    "img",
                    "brushlabels",
                    json!({"format": "rle", "rle": [0, 256], "brushlabels": ["Sky"]})
                )]),
                Err((0, "value.rle must be a non-empty list of byte values")),
            ),
            (
                "brush empty rle",
                SHAPES,
                json!([item(
                    "brush",
                    "img",
                    "brushlabels",
                    json!({"rle": [], "brushlabels": ["Sky"]})
                )]),
                Err((0, "value.rle")),
            ),
            (
                "magic wand writes brush",
                SHAPES,
                json!([
                    item(
                        "wand",
                        "img",
                        "brush",
                        json!({"format": "rle", "rle": [3, 4]})
                    ),
                    item(
                        "wand",
                        "img",
                        "magicwand",
                        json!({"format": "rle", "rle": [3, 4]})
                    )
                ]),
                Ok(()),
            ),
            (
                "bitmask",
                SHAPES,
                json!([item(
                    "bm",
                    "img",
                    "bitmasklabels",
                    json!({"imageDataURL": "data:image/png;base64,AAA", "bitmasklabels": ["Tree"]})
                )]),
                Ok(()),
            ),
            (
                "bitmask missing url",
                SHAPES,
                json!([item(
                    "bm",
                    "img",
                    "bitmasklabels",
                    json!({"bitmasklabels": ["Tree"]})
                )]),
                Err((0, "imageDataURL is missing")),
            ),
            (
                "vector",
                SHAPES,
                json!([item(
                    "vec",
                    "img",
                    "vectorlabels",
                    json!({"vertices": [{"id": "v1", "x": 1, "y": 2}], "closed": false, "vectorlabels": ["Lane"]})
                )]),
                Ok(()),
            ),
            (
                "vector pairs not objects",
                SHAPES,
                json!([item(
                    "vec",
                    "img",
                    "vectorlabels",
                    json!({"vertices": [[1, 2]], "vectorlabels": ["Lane"]})
                )]),
                Err((0, "value.vertices[0]")),
            ),
        ]);
    }

    #[test]
    fn ocr_rectangle_and_textarea_share_an_id() {
        let geometry = json!({"x": 10, "y": 10, "width": 30, "height": 5, "rotation": 0});
        let with = |extra: Value| {
            let mut v = geometry.clone();
            if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
                v.extend(extra.clone());
            }
            v
        };
        run(vec![
            (
                "ocr triple",
                OCR,
                json!([
                    {"id": "o1", "from_name": "bbox", "to_name": "image", "type": "rectangle", "value": geometry},
                    {"id": "o1", "from_name": "label", "to_name": "image", "type": "labels", "value": with(json!({"labels": ["Text"]}))},
                    {"id": "o1", "from_name": "transcription", "to_name": "image", "type": "textarea", "value": with(json!({"text": ["ABC"]}))}
                ]),
                Ok(()),
            ),
            (
                "ocr merged labels item",
                OCR,
                json!([
                    {"id": "o2", "from_name": "label", "to_name": "image", "type": "rectanglelabels", "value": with(json!({"rectanglelabels": ["Handwriting"]}))},
                    {"id": "o3", "from_name": "label", "to_name": "image", "type": "polygonlabels", "value": {"points": [[1, 1], [2, 2], [3, 1]], "labels": ["Text"]}}
                ]),
                Ok(()),
            ),
            (
                "ocr merged labels needs a sibling tool",
                OCR,
                json!([
                    {"id": "o2", "from_name": "label", "to_name": "image", "type": "ellipselabels", "value": {"x": 1, "y": 1, "radiusX": 1, "radiusY": 1, "labels": ["Text"]}}
                ]),
                Err((
                    0,
                    "type \"ellipselabels\" is not produced by <Labels> \"label\"",
                )),
            ),
            (
                "ocr undeclared label",
                OCR,
                json!([
                    {"id": "o1", "from_name": "bbox", "to_name": "image", "type": "rectangle", "value": geometry},
                    {"id": "o1", "from_name": "label", "to_name": "image", "type": "labels", "value": with(json!({"labels": ["Stamp"]}))}
                ]),
                Err((1, "value.labels uses \"Stamp\"")),
            ),
            (
                "labels alone on image needs a span",
                OCR,
                json!([
                    {"id": "o9", "from_name": "label", "to_name": "image", "type": "labels", "value": with(json!({"labels": ["Text"]}))}
                ]),
                Err((0, "value.start is missing")),
            ),
            (
                "ocr textarea not text",
                OCR,
                json!([
                    {"id": "o1", "from_name": "bbox", "to_name": "image", "type": "rectangle", "value": geometry},
                    {"id": "o1", "from_name": "transcription", "to_name": "image", "type": "textarea", "value": with(json!({"text": {"line": "ABC"}}))}
                ]),
                Err((1, "value.text must be a string or a list of strings")),
            ),
            (
                "plain rectangle tool cannot emit rectanglelabels",
                OCR,
                json!([
                    {"id": "o1", "from_name": "bbox", "to_name": "image", "type": "rectanglelabels", "value": with(json!({"rectanglelabels": ["Text"]}))}
                ]),
                Err((0, "expected \"rectangle\"")),
            ),
        ]);
    }

    #[test]
    fn video_values() {
        let frame = json!({"frame": 1, "time": 0.04, "x": 10, "y": 10, "width": 20, "height": 20, "rotation": 0, "enabled": true});
        run(vec![
            (
                "video rectangle with labels from sibling",
                VIDEO,
                json!([item(
                    "box",
                    "video",
                    "videorectangle",
                    json!({"framesCount": 300, "duration": 12.3, "sequence": [frame], "labels": ["Car"]})
                )]),
                Ok(()),
            ),
            (
                "video rectangle without labels",
                VIDEO,
                json!([item(
                    "box",
                    "video",
                    "videorectangle",
                    json!({"sequence": [frame]})
                )]),
                Ok(()),
            ),
            (
                "video rectangle undeclared label",
                VIDEO,
                json!([item(
                    "box",
                    "video",
                    "videorectangle",
                    json!({"sequence": [frame], "labels": ["Moving", "Dog"]})
                )]),
                Err((0, "\"Dog\"")),
            ),
            (
                "video rectangle fractional frame",
                VIDEO,
                json!([item(
                    "box",
                    "video",
                    "videorectangle",
                    json!({"sequence": [{"frame": 1.5, "x": 1, "y": 1, "width": 1, "height": 1}]})
                )]),
                Err((0, "value.sequence[0]: frame must be a whole number")),
            ),
            (
                "video rectangle no sequence",
                VIDEO,
                json!([item(
                    "box",
                    "video",
                    "videorectangle",
                    json!({"labels": ["Car"]})
                )]),
                Err((0, "value.sequence is missing")),
            ),
            (
                "timeline",
                VIDEO,
                json!([item(
                    "timeline",
                    "video",
                    "timelinelabels",
                    json!({"ranges": [{"start": 3, "end": 5}], "timelinelabels": ["Moving"]})
                )]),
                Ok(()),
            ),
            (
                "timeline empty ranges",
                VIDEO,
                json!([item(
                    "timeline",
                    "video",
                    "timelinelabels",
                    json!({"ranges": [], "timelinelabels": ["Moving"]})
                )]),
                Err((0, "value.ranges must be a non-empty list")),
            ),
            (
                "timeline label of other control",
                VIDEO,
                json!([item(
                    "timeline",
                    "video",
                    "timelinelabels",
                    json!({"ranges": [{"start": 3, "end": 5}], "timelinelabels": ["Car"]})
                )]),
                Err((0, "value.timelinelabels uses \"Car\"")),
            ),
        ]);
    }

    #[test]
    fn relations() {
        let a = json!({"id": "a", "from_name": "label", "to_name": "text", "type": "labels", "value": {"start": 0, "end": 5, "labels": ["PER"]}});
        let b = json!({"id": "b", "from_name": "label", "to_name": "text", "type": "labels", "value": {"start": 15, "end": 20, "labels": ["ORG"]}});
        run(vec![
            (
                "relation",
                NER,
                json!([a, b, {"from_id": "a", "to_id": "b", "type": "relation", "direction": "right", "labels": ["works-at"]}]),
                Ok(()),
            ),
            (
                "relation before regions",
                NER,
                json!([{"from_id": "a", "to_id": "b", "type": "relation"}, a, b]),
                Ok(()),
            ),
            (
                "relation to unknown id",
                NER,
                json!([a, b, {"from_id": "a", "to_id": "zzz", "type": "relation", "direction": "right"}]),
                Err((2, "to_id \"zzz\" does not match")),
            ),
            (
                "relation missing from_id",
                NER,
                json!([a, b, {"to_id": "b", "type": "relation"}]),
                Err((2, "from_id is missing")),
            ),
            (
                "relation bad direction",
                NER,
                json!([a, b, {"from_id": "a", "to_id": "b", "type": "relation", "direction": "up"}]),
                Err((2, "direction")),
            ),
            (
                "relation labels not list",
                NER,
                json!([a, b, {"from_id": "a", "to_id": "b", "type": "relation", "labels": "works-at"}]),
                Err((2, "labels must be a list of strings")),
            ),
            (
                "named relations control emits no regions",
                "<View><Text name=\"t\" value=\"$t\"/><Relations name=\"rel\" toName=\"t\"><Relation value=\"x\"/></Relations></View>",
                json!([item("rel", "t", "relations", json!({}))]),
                Err((0, "produces only relation items")),
            ),
        ]);
    }

    #[test]
    fn self_referencing_and_repeater() {
        let chat = "<View><Chat name=\"chat\" value=\"$chat\"/><Rating name=\"r\" toName=\"chat\" perRegion=\"true\"/></View>";
        let react = "<View><Text name=\"doc\" value=\"$doc\"/><ReactCode name=\"app\" toName=\"doc\" outputs=\"summary\"/></View>";
        let repeater = "<View><Repeater on=\"$utterances\" indexFlag=\"{{i}}\"><Text name=\"user_{{i}}\" value=\"$utterances[{{i}}].text\"/><Choices name=\"act_{{i}}\" toName=\"user_{{i}}\"><Choice value=\"Keep\"/></Choices></Repeater></View>";
        run(vec![
            (
                "chat message",
                chat,
                json!([item(
                    "chat",
                    "chat",
                    "chatmessage",
                    json!({"chatmessage": {"role": "user", "content": "hi", "createdAt": 1757612212681_u64}})
                )]),
                Ok(()),
            ),
            (
                "chat message missing content",
                chat,
                json!([item(
                    "chat",
                    "chat",
                    "chatmessage",
                    json!({"chatmessage": {"role": "user"}})
                )]),
                Err((0, "value.chatmessage: content is missing")),
            ),
            (
                "chat wrong type",
                chat,
                json!([item("chat", "chat", "chat", json!({}))]),
                Err((0, "expected \"chatmessage\"")),
            ),
            (
                "rating on chat",
                chat,
                json!([item("r", "chat", "rating", json!({"rating": 4}))]),
                Ok(()),
            ),
            (
                "reactcode",
                react,
                json!([
                    item(
                        "app",
                        "app",
                        "reactcode",
                        json!({"reactcode": {"summary": "ok"}})
                    ),
                    item("app", "doc", "reactcode", json!({"reactcode": {}}))
                ]),
                Ok(()),
            ),
            (
                "reactcode not object",
                react,
                json!([item("app", "app", "reactcode", json!({"reactcode": "ok"}))]),
                Err((0, "value.reactcode must be a JSON object")),
            ),
            (
                "repeater names",
                repeater,
                json!([
                    item("act_0", "user_0", "choices", json!({"choices": ["Keep"]})),
                    item("act_12", "user_12", "choices", json!({"choices": ["Keep"]}))
                ]),
                Ok(()),
            ),
            (
                "repeater non-digit index",
                repeater,
                json!([item(
                    "act_x",
                    "user_0",
                    "choices",
                    json!({"choices": ["Keep"]})
                )]),
                Err((0, "from_name \"act_x\" is not a control")),
            ),
            (
                "repeater template literal is not an index",
                repeater,
                json!([item(
                    "act_",
                    "user_0",
                    "choices",
                    json!({"choices": ["Keep"]})
                )]),
                Err((0, "not a control")),
            ),
        ]);
    }

    #[test]
    fn index_flag_matching() {
        let cases: &[(&str, &str, bool)] = &[
            ("a_{{idx}}", "a_0", true),
            ("a_{{idx}}", "a_10", true),
            ("a_{{idx}}_b", "a_3_b", true),
            ("a_{{idx}}_b", "a_3_c", false),
            ("a_{{idx}}", "a_", false),
            ("a_{{idx}}", "a_1x", false),
            ("{{idx}}_{{idx}}", "1_2", true),
            ("a_{{idx}}", "b_1", false),
        ];
        for (declared, actual, expected) in cases {
            assert_eq!(
                matches_indexed(declared, "{{idx}}", actual),
                *expected,
                "{declared} vs {actual}"
            );
        }
    }

    #[test]
    fn every_control_tag_has_a_result_type() {
        for (tag, kind) in TAGS {
            if *kind == Kind::Object || *kind == Kind::Visual {
                continue;
            }
            let xml = format!(
                "<View><Text name=\"t\" value=\"$t\"/><{tag} name=\"c\" toName=\"t\" value=\"x\"/></View>"
            );
            let c = cfg(&xml);
            let ci = c.controls().iter().position(|ct| ct.name == "c");
            let Some(ci) = ci else {
                panic!("{tag}: control missing")
            };
            let accepted = c.accepted_types(ci);
            if *tag == "Relations" {
                assert!(accepted.is_empty());
            } else {
                assert!(!accepted.is_empty(), "{tag} emits no result type");
            }
        }
    }

    #[test]
    fn shorthand_expands_to_the_one_controls_region_item() {
        let one = |xml: &str| LabelConfig::parse(xml).expect("config");
        let choices = one(
            r#"<View><Text name="t" value="$text"/><Choices name="c" toName="t"><Choice value="a"/></Choices></View>"#,
        );
        let full = json!([{"from_name": "c", "to_name": "t", "type": "choices", "value": {"choices": ["a"]}}]);
        assert_eq!(choices.expand_shorthand(&json!("a")).expect("bare"), full);
        assert_eq!(
            choices
                .expand_shorthand(&json!({"choices": ["a"]}))
                .expect("value object"),
            full
        );
        assert_eq!(
            choices.expand_shorthand(&full[0]).expect("one region"),
            full
        );
        assert_eq!(choices.expand_shorthand(&full).expect("list"), full);
        let rating =
            one(r#"<View><Text name="t" value="$text"/><Rating name="r" toName="t"/></View>"#);
        assert_eq!(
            rating.expand_shorthand(&json!(4)).expect("rating"),
            json!([{"from_name": "r", "to_name": "t", "type": "rating", "value": {"rating": 4}}])
        );
        let text =
            one(r#"<View><Text name="t" value="$text"/><TextArea name="s" toName="t"/></View>"#);
        assert_eq!(
            text.expand_shorthand(&json!("short")).expect("textarea")[0]["value"],
            json!({"text": ["short"]})
        );
        let boxes = one(
            r#"<View><Image name="i" value="$image"/><RectangleLabels name="b" toName="i"><Label value="x"/></RectangleLabels></View>"#,
        );
        assert!(boxes.expand_shorthand(&json!("x")).is_err());
        let two = one(
            r#"<View><Text name="t" value="$text"/><Choices name="a" toName="t"><Choice value="x"/></Choices><Choices name="b" toName="t"><Choice value="y"/></Choices></View>"#,
        );
        assert!(
            two.expand_shorthand(&json!("x"))
                .is_err_and(|e| e.message.contains("exactly one control"))
        );
        assert!(choices.expand_shorthand(&json!(null)).is_err());
    }
}
