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

pub mod agreement;
mod results;
mod tags;
#[cfg(test)]
mod tests;

use tags::*;

/// The control tags bulk labeling writes (Label Studio Enterprise's list): whole-task answers
/// that one form can give for many tasks at once.
pub const BULK_CONTROL_TAGS: [&str; 6] = [
    "Choices", "DateTime", "Number", "Rating", "Taxonomy", "TextArea",
];

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
    /// `<Taxonomy>` only: each of its `<Choice>` items as its path from the top (the labels of
    /// the enclosing items, then its own), with whether it is a leaf, in document order.
    taxonomy: Vec<(Vec<String>, bool)>,
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
            taxonomy: Vec::new(),
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
        if self.controls[index].tag == "Taxonomy" {
            let is_item = |n: &roxmltree::Node<'_, '_>| {
                n.is_element() && n.tag_name().name().eq_ignore_ascii_case(tag)
            };
            let mut path: Vec<String> = node
                .ancestors()
                .skip(1)
                .take_while(|a| {
                    non_empty_attr(*a, "name").is_none_or(|n| n != self.controls[index].name)
                })
                .filter(is_item)
                .filter_map(|a| {
                    non_empty_attr(a, "alias")
                        .or_else(|| non_empty_attr(a, "value"))
                        .map(str::to_owned)
                })
                .collect();
            path.reverse();
            path.push(label.to_owned());
            let leaf = !node.children().any(|c| is_item(&c));
            self.control_meta[index].taxonomy.push((path, leaf));
        }
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

    /// An attribute of control `index` (of [`Self::controls`]) as written, the name matched
    /// without regard to letter case (`choice`, `maxRating`, `min`, `only`...).
    pub fn control_attribute(&self, index: usize, name: &str) -> Option<&str> {
        self.control_meta
            .get(index)
            .and_then(|m| control_attr(m, name))
    }

    /// The items of control `index` when it is a `<Taxonomy>`: each as its path from the top
    /// (the value a `taxonomy` result names it by) and whether it is a leaf, in document order;
    /// empty for other controls.
    pub fn taxonomy_items(&self, index: usize) -> &[(Vec<String>, bool)] {
        self.control_meta
            .get(index)
            .map(|m| m.taxonomy.as_slice())
            .unwrap_or_default()
    }

    /// Why bulk labeling (ADR 0061) cannot write this configuration's results, or `None` when
    /// it can: every control tag must be one of [`BULK_CONTROL_TAGS`] and label the whole
    /// task (no `perRegion`, no `perItem`), and there must be at least one. Label Studio
    /// Enterprise's `config_suitable_for_bulk_annotation` is `self.bulk_unsuitable().is_none()`.
    pub fn bulk_unsuitable(&self) -> Option<String> {
        if self.controls.is_empty() {
            return Some("the labeling configuration has no control tags".to_owned());
        }
        for (control, meta) in self.controls.iter().zip(&self.control_meta) {
            if !BULK_CONTROL_TAGS.contains(&control.tag.as_str()) {
                return Some(format!(
                    "control <{}> {:?} cannot be labeled in bulk: only {} can",
                    control.tag,
                    control.name,
                    BULK_CONTROL_TAGS.join(", ")
                ));
            }
            let set = |key: &str| {
                meta.attrs
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case(key) && v.eq_ignore_ascii_case("true"))
            };
            for key in ["perRegion", "perItem"] {
                if set(key) {
                    return Some(format!(
                        "control <{}> {:?} has {key}=\"true\": bulk labeling writes whole-task answers only",
                        control.tag, control.name
                    ));
                }
            }
        }
        None
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
