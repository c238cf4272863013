//! Property tests (proptest) of the parsers that take user input: the JSON and CSV import
//! splitters, the labeling-configuration parser, result validation and the data-manager filter
//! parser. Properties: no panic on any input; splitting does not depend on how the upload is
//! cut into chunks; generated task lists and CSV files come back exactly; a filter either
//! compiles or is a 400. Each property runs 256 cases in `cargo test` (see
//! docs/development.md for what this covers).

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::import::{CsvSplitter, ImportError, JsonSplitter};
use super::label_config::LabelConfig;

fn json_split(input: &[u8], chunk: usize) -> Result<Vec<Vec<u8>>, ImportError> {
    let mut s = JsonSplitter::new();
    let mut out = Vec::new();
    for c in input.chunks(chunk.max(1)) {
        s.feed(c, &mut out)?;
    }
    s.finish()?;
    Ok(out)
}

fn csv_split(input: &[u8], delimiter: u8, chunk: usize) -> Result<Vec<Value>, ImportError> {
    let mut s = CsvSplitter::new(delimiter);
    let mut out = Vec::new();
    for c in input.chunks(chunk.max(1)) {
        s.feed(c, &mut out)?;
    }
    s.feed(&[], &mut out)?;
    Ok(out)
}

/// JSON values of bounded depth, with strings that contain JSON's own punctuation.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[a-z \"\\\\{}\\[\\],:\n\t]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn task_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-z_]{1,6}", json_value(), 1..4)
        .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
}

/// A CSV cell: letters and the characters that need quoting (no digits: numeric cells are
/// imported as numbers).
fn csv_cell() -> impl Strategy<Value = String> {
    "[a-z ,\"\t\n;']{0,10}"
}

fn csv_quote(cell: &str, delimiter: char) -> String {
    if cell.contains([delimiter, '"', '\n', '\r']) || cell.trim() != cell {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_string()
    }
}

const CONFIG: &str = r#"<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text" choice="multiple"><Choice value="pos"/><Choice value="neg"/></Choices><Labels name="ner" toName="text"><Label value="PER"/></Labels><Rating name="stars" toName="text" maxRating="5"/><TextArea name="note" toName="text"/></View>"#;

proptest! {
    #[test]
    fn json_splitting_does_not_depend_on_chunking(bytes in prop::collection::vec(any::<u8>(), 0..300), chunk in 1usize..48) {
        let whole = json_split(&bytes, bytes.len().max(1));
        let cut = json_split(&bytes, chunk);
        match (&whole, &cut) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => prop_assert_eq!(a.index, b.index),
            _ => prop_assert!(false, "whole {:?} vs chunked {:?}", whole, cut),
        }
    }

    #[test]
    fn json_task_lists_come_back_exactly(tasks in prop::collection::vec(task_object(), 1..6), pretty in any::<bool>(), lines in any::<bool>(), chunk in 1usize..40) {
        let text = if lines {
            tasks.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
        } else if pretty {
            serde_json::to_string_pretty(&Value::Array(tasks.clone())).expect("json")
        } else {
            Value::Array(tasks.clone()).to_string()
        };
        let got: Vec<Value> = json_split(text.as_bytes(), chunk)
            .expect("a generated list splits")
            .iter()
            .map(|b| serde_json::from_slice(b).expect("each piece is the JSON of a task"))
            .collect();
        prop_assert_eq!(got, tasks);
    }

    #[test]
    fn csv_splitting_does_not_depend_on_chunking(bytes in prop::collection::vec(any::<u8>(), 0..300), chunk in 1usize..48, tab in any::<bool>()) {
        let d = if tab { b'\t' } else { b',' };
        let whole = csv_split(&bytes, d, bytes.len().max(1));
        let cut = csv_split(&bytes, d, chunk);
        match (&whole, &cut) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => prop_assert_eq!(a.index, b.index),
            _ => prop_assert!(false, "whole {:?} vs chunked {:?}", whole, cut),
        }
    }

    #[test]
    fn csv_files_come_back_exactly(rows in prop::collection::vec(prop::collection::vec(csv_cell(), 3), 1..6), tab in any::<bool>(), chunk in 1usize..40) {
        let d = if tab { '\t' } else { ',' };
        let header = ["alpha", "beta", "gamma"];
        let mut text = header.join(&d.to_string());
        text.push('\n');
        for row in &rows {
            text.push_str(&row.iter().map(|c| csv_quote(c, d)).collect::<Vec<_>>().join(&d.to_string()));
            text.push('\n');
        }
        let got = csv_split(text.as_bytes(), d as u8, chunk).expect("a generated file splits");
        prop_assert_eq!(got.len(), rows.len());
        for (task, row) in got.iter().zip(&rows) {
            for (key, cell) in header.iter().zip(row) {
                prop_assert_eq!(&task[*key], &Value::String(cell.clone()), "{}", text);
            }
        }
    }

    #[test]
    fn label_configs_never_panic(xml in "(<|>|/|=|\"|View|Text|Choices|Choice|Labels|Label|name|toName|value|\\$text| |a|b){0,60}") {
        let _ = LabelConfig::parse(&xml);
    }

    #[test]
    fn accepted_label_configs_parse_the_same_twice(names in prop::collection::vec("[a-z]{1,5}", 1..4), choices in prop::collection::vec("[A-Za-z]{1,5}", 1..4)) {
        let controls: String = names.iter().map(|n| {
            let opts: String = choices.iter().map(|c| format!(r#"<Choice value="{c}"/>"#)).collect();
            format!(r#"<Choices name="c_{n}" toName="text">{opts}</Choices>"#)
        }).collect();
        let xml = format!(r#"<View><Text name="text" value="$text"/>{controls}</View>"#);
        if let Ok(first) = LabelConfig::parse(&xml) {
            let second = LabelConfig::parse(&xml).expect("parses again");
            prop_assert_eq!(first.parsed(), second.parsed());
            prop_assert_eq!(first.data_keys(), second.data_keys());
        }
    }

    #[test]
    fn result_validation_never_panics(result in json_value()) {
        let config = LabelConfig::parse(CONFIG).expect("config");
        let _ = config.validate_result(&result);
    }

    #[test]
    fn region_shaped_results_never_panic(from in "(sentiment|ner|stars|note|zzz)", kind in "(choices|labels|rating|textarea|x)", value in json_value()) {
        let config = LabelConfig::parse(CONFIG).expect("config");
        let result = serde_json::json!([{"from_name": from, "to_name": "text", "type": kind, "value": value}]);
        let _ = config.validate_result(&result);
    }

    #[test]
    fn data_manager_filters_compile_or_are_refused(query in json_value(), filters in prop::collection::vec(json_value(), 0..3)) {
        for dialect in [crate::storage::Dialect::Sqlite, crate::storage::Dialect::Postgres] {
            let _ = crate::storage::tasks::task_query(dialect, &query, false);
            let shaped = serde_json::json!({"filters": {"conjunction": "and", "items": filters}, "ordering": ["tasks:id"]});
            if let Err(e) = crate::storage::tasks::task_query(dialect, &shaped, true) {
                prop_assert_eq!(e.code.status(), http::StatusCode::BAD_REQUEST, "{}", e.detail);
            }
        }
    }
}
