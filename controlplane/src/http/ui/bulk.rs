//! The data page's bulk-label and assign forms (ADR 0061): the fields of "Label selected tasks"
//! built from the project's labeling configuration, and the result read back from the posted
//! form. Pure: it reads a parsed configuration and form fields, and never writes anything (the
//! data page sends the result through the code of `POST /api/annotations/bulk/`).

use serde_json::{Map, Value, json};

use crate::{
    domain::label_config::LabelConfig,
    error::{ApiError, ErrorCode},
};

/// The form-field name of control `name`.
fn field_name(name: &str) -> String {
    format!("bulk:{name}")
}

/// The fields of the bulk-label form, one per control. A Taxonomy's items are check boxes, each
/// named by its whole path ("Animals / Cats") and carrying the path as JSON; with `leafsOnly`
/// only the leaves can be chosen, as in the editor. Empty when the configuration is not one
/// bulk labeling writes.
pub(super) fn label_fields(config: &LabelConfig) -> Vec<Value> {
    if config.bulk_unsuitable().is_some() {
        return Vec::new();
    }
    config
        .controls()
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let attr = |k: &str| config.control_attribute(i, k).map(str::to_owned);
            let base =
                json!({"id": format!("bulk-{i}"), "name": field_name(&c.name), "label": c.name});
            let mut field = base.as_object().cloned().unwrap_or_default();
            let kind = match c.tag.as_str() {
                "Choices" => {
                    let multiple =
                        attr("choice").is_some_and(|v| v.eq_ignore_ascii_case("multiple"));
                    field.insert("multiple".into(), json!(multiple));
                    field.insert("options".into(), json!(c.labels));
                    "choices"
                }
                "Number" => {
                    field.insert("min".into(), json!(attr("min")));
                    field.insert("max".into(), json!(attr("max")));
                    field.insert(
                        "step".into(),
                        json!(attr("step").unwrap_or_else(|| "any".into())),
                    );
                    "number"
                }
                "DateTime" => {
                    let only = attr("only").unwrap_or_default();
                    if only.eq_ignore_ascii_case("date") {
                        "date"
                    } else {
                        "datetime"
                    }
                }
                "Rating" => {
                    let max = attr("maxRating")
                        .and_then(|m| m.trim().parse::<u32>().ok())
                        .unwrap_or(5)
                        .clamp(1, 100);
                    field.insert("options".into(), json!((1..=max).collect::<Vec<_>>()));
                    "rating"
                }
                "TextArea" => "textarea",
                "Taxonomy" => {
                    let leafs_only =
                        attr("leafsOnly").is_some_and(|v| v.eq_ignore_ascii_case("true"));
                    let options: Vec<Value> = config
                        .taxonomy_items(i)
                        .iter()
                        .filter(|(_, leaf)| *leaf || !leafs_only)
                        .map(|(path, _)| {
                            json!({"value": Value::from(path.clone()).to_string(), "label": path.join(" / ")})
                        })
                        .collect();
                    field.insert("options".into(), json!(options));
                    "taxonomy"
                }
                _ => return None,
            };
            field.insert("kind".into(), json!(kind));
            Some(Value::Object(field))
        })
        .collect()
}

/// The result the posted bulk-label form asks for: one item per control given a value (the
/// others are left out). A number that does not parse is refused naming the control; a form
/// with no value at all is refused. The result is then checked against the configuration as
/// any annotation's is.
pub(super) fn label_result(
    config: &LabelConfig,
    fields: &[(String, String)],
) -> Result<Value, ApiError> {
    let mut items = Vec::new();
    for control in config.controls() {
        let name = field_name(&control.name);
        let values: Vec<&str> = fields
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
            .collect();
        let Some(first) = values.first().copied() else {
            continue;
        };
        let bad_number = || {
            ApiError::field(
                ErrorCode::ValidationError,
                &name,
                format!("{first:?} is not a number: give {} a number", control.name),
            )
        };
        let (kind, value) = match control.tag.as_str() {
            "Choices" => ("choices", json!({"choices": values})),
            "Number" => {
                let n: f64 = first.parse().map_err(|_| bad_number())?;
                let number = if n.fract() == 0.0 && n.abs() < 9.0e15 {
                    json!(n as i64)
                } else {
                    json!(n)
                };
                ("number", json!({"number": number}))
            }
            "DateTime" => ("datetime", json!({"datetime": first})),
            "Rating" => (
                "rating",
                json!({"rating": first.parse::<i64>().map_err(|_| bad_number())?}),
            ),
            "TextArea" => ("textarea", json!({"text": [first]})),
            "Taxonomy" => {
                let paths = values
                    .iter()
                    .map(|v| {
                        serde_json::from_str::<Vec<String>>(v)
                            .ok()
                            .filter(|p| !p.is_empty())
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        ApiError::field(
                            ErrorCode::ValidationError,
                            &name,
                            format!(
                                "{first:?} is not an item of {}: choose items from the list",
                                control.name
                            ),
                        )
                    })?;
                ("taxonomy", json!({"taxonomy": paths}))
            }
            _ => continue,
        };
        let mut item = Map::new();
        item.insert("from_name".into(), json!(control.name));
        item.insert(
            "to_name".into(),
            json!(control.to_names.first().cloned().unwrap_or_default()),
        );
        item.insert("type".into(), json!(kind));
        item.insert("value".into(), value);
        items.push(Value::Object(item));
    }
    if items.is_empty() {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "result",
            "Give at least one answer to write to the selected tasks.",
        ));
    }
    Ok(Value::Array(items))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"<View><Text name="text" value="$text"/>
        <Choices name="topic" toName="text" choice="multiple"><Choice value="a"/><Choice value="b"/></Choices>
        <Number name="n" toName="text" min="1"/><Rating name="r" toName="text" maxRating="3"/>
        <DateTime name="d" toName="text" only="date"/><TextArea name="note" toName="text"/></View>"#;

    #[test]
    fn fields_follow_the_controls_and_answers_become_result_items() {
        let config = LabelConfig::parse(CONFIG).expect("parses");
        let fields = label_fields(&config);
        let kinds: Vec<&str> = fields
            .iter()
            .map(|f| f["kind"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(kinds, ["choices", "number", "rating", "date", "textarea"]);
        assert_eq!(fields[0]["multiple"], json!(true));
        assert_eq!(fields[2]["options"], json!([1, 2, 3]));
        let posted: Vec<(String, String)> = [
            ("bulk:topic", "a"),
            ("bulk:topic", "b"),
            ("bulk:n", "4"),
            ("bulk:r", ""),
            ("bulk:note", "ok"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let result = label_result(&config, &posted).expect("a result");
        assert_eq!(
            result,
            json!([
                {"from_name": "topic", "to_name": "text", "type": "choices", "value": {"choices": ["a", "b"]}},
                {"from_name": "n", "to_name": "text", "type": "number", "value": {"number": 4}},
                {"from_name": "note", "to_name": "text", "type": "textarea", "value": {"text": ["ok"]}}
            ])
        );
        config
            .validate_result(&result)
            .expect("valid for the configuration");
        let none = label_result(&config, &[("bulk:r".to_string(), " ".to_string())]);
        assert!(none.is_err());
        let bad = label_result(&config, &[("bulk:n".to_string(), "many".to_string())]);
        assert!(bad.is_err_and(|e| e.detail.contains("not a number")));
    }

    #[test]
    fn taxonomy_items_are_paths_and_leafs_only_keeps_the_leaves() {
        let tree = |extra: &str| {
            format!(
                r#"<View><Text name="text" value="$text"/><Taxonomy name="topic" toName="text"{extra}>
                <Choice value="Animals"><Choice value="Cats"/><Choice value="Dogs" alias="dog"/></Choice>
                <Choice value="Plants"/></Taxonomy></View>"#
            )
        };
        let config = LabelConfig::parse(&tree("")).expect("parses");
        let fields = label_fields(&config);
        let options = |f: &Value| -> Vec<(String, String)> {
            f["options"]
                .as_array()
                .map(|o| {
                    o.iter()
                        .map(|o| {
                            (
                                o["label"].as_str().unwrap_or("").to_owned(),
                                o["value"].as_str().unwrap_or("").to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(fields[0]["kind"], json!("taxonomy"));
        assert_eq!(
            options(&fields[0]),
            [
                ("Animals", r#"["Animals"]"#),
                ("Animals / Cats", r#"["Animals","Cats"]"#),
                ("Animals / dog", r#"["Animals","dog"]"#),
                ("Plants", r#"["Plants"]"#),
            ]
            .map(|(l, v)| (l.to_owned(), v.to_owned()))
        );
        let leaves = LabelConfig::parse(&tree(r#" leafsOnly="true""#)).expect("parses");
        let labels: Vec<String> = options(&label_fields(&leaves)[0])
            .into_iter()
            .map(|(l, _)| l)
            .collect();
        assert_eq!(labels, ["Animals / Cats", "Animals / dog", "Plants"]);

        let posted: Vec<(String, String)> = [r#"["Animals","Cats"]"#, r#"["Plants"]"#]
            .iter()
            .map(|v| ("bulk:topic".to_string(), v.to_string()))
            .collect();
        let result = label_result(&config, &posted).expect("a result");
        assert_eq!(
            result,
            json!([{"from_name": "topic", "to_name": "text", "type": "taxonomy",
                    "value": {"taxonomy": [["Animals", "Cats"], ["Plants"]]}}])
        );
        config
            .validate_result(&result)
            .expect("valid for the configuration");
        let forged = label_result(
            &config,
            &[("bulk:topic".to_string(), "Animals".to_string())],
        );
        assert!(forged.is_err_and(|e| e.detail.contains("not an item of topic")));
    }

    #[test]
    fn a_configuration_with_regions_gets_no_form() {
        let config = LabelConfig::parse(
            r#"<View><Text name="t" value="$t"/><Labels name="l" toName="t"><Label value="A"/></Labels></View>"#,
        )
        .expect("parses");
        assert!(label_fields(&config).is_empty());
    }
}
