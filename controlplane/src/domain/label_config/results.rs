//! Result validation: the rules a `result` array must follow for a parsed config.

use super::*;

impl LabelConfig {
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

    pub(super) fn validate_item(
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
    pub(super) fn names_match(&self, declared: &str, actual: &str) -> bool {
        if declared == actual {
            return true;
        }
        self.index_flags
            .iter()
            .any(|flag| declared.contains(flag.as_str()) && matches_indexed(declared, flag, actual))
    }

    pub(super) fn to_name_ok(&self, control: &ControlTag, to_name: &str) -> bool {
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
    pub(super) fn accepted_types(&self, ci: usize) -> Vec<(&'static str, Rule)> {
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
    pub(super) fn allowed_labels(&self, ci: usize) -> Option<BTreeSet<&str>> {
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

    pub(super) fn check_labels(&self, ci: usize, key: &str, labels: &[&str]) -> Result<(), String> {
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

    pub(super) fn check_value(
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
    pub(super) fn check_label_key(
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

    pub(super) fn check_optional_label_key(
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

pub(super) fn validate_relation(
    obj: &Map<String, Value>,
    region_ids: &[&str],
) -> Result<(), String> {
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

pub(super) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(super) fn one_of(options: &[&str]) -> String {
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

pub(super) fn string_list<'a>(
    value: &'a Map<String, Value>,
    key: &str,
) -> Result<Vec<&'a str>, String> {
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

pub(super) fn number(value: &Map<String, Value>, key: &str) -> Result<f64, String> {
    match value.get(key) {
        Some(v) => v
            .as_f64()
            .ok_or_else(|| format!("value.{key} must be a number, got {}", json_kind(v))),
        None => Err(format!("value.{key} is missing; expected a number")),
    }
}

pub(super) fn integer(value: &Map<String, Value>, key: &str) -> Result<(), String> {
    match value.get(key) {
        Some(v) if v.is_i64() || v.is_u64() => Ok(()),
        Some(v) => Err(format!("{key} must be a whole number, got {v}")),
        None => Err(format!("{key} is missing; expected a whole number")),
    }
}

/// Image coordinates are percentages; Label Studio caps them at 100 (negative sizes occur
/// in real exports of boxes drawn right-to-left, so there is no lower bound).
pub(super) fn percent(value: &Map<String, Value>, key: &str) -> Result<(), String> {
    let n = number(value, key)?;
    if n > 100.0 {
        return Err(format!(
            "value.{key} is {n}, above 100 (coordinates are percentages of the image)"
        ));
    }
    Ok(())
}

pub(super) fn optional_rotation(value: &Map<String, Value>) -> Result<(), String> {
    if !value.contains_key("rotation") {
        return Ok(());
    }
    let r = number(value, "rotation")?;
    if r > 360.0 {
        return Err(format!("value.rotation is {r}, above 360 degrees"));
    }
    Ok(())
}

pub(super) fn span_bound(value: &Map<String, Value>, key: &str) -> Result<(), String> {
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

pub(super) fn optional_non_negative_int(
    value: &Map<String, Value>,
    key: &str,
) -> Result<(), String> {
    match value.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(v) if v.as_u64().is_some() => Ok(()),
        Some(v) => Err(format!(
            "value.{key} must be a whole number of at least 0, got {v}"
        )),
    }
}

pub(super) fn required_string(value: &Map<String, Value>, key: &str) -> Result<(), String> {
    match value.get(key) {
        Some(Value::String(_)) => Ok(()),
        Some(other) => Err(format!("{key} must be a string, got {}", json_kind(other))),
        None => Err(format!("{key} is missing; expected a string")),
    }
}

pub(super) fn vertices(value: &Map<String, Value>, path: &str) -> Result<(), String> {
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

pub(super) fn sequence(value: &Map<String, Value>) -> Result<&Vec<Value>, String> {
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
pub(super) fn video_header(value: &Map<String, Value>) -> Result<(), String> {
    for key in ["framesCount", "duration"] {
        if value.contains_key(key) {
            number(value, key)?;
        }
    }
    Ok(())
}
