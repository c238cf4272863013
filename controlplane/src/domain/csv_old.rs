//! `CSV_OLD`: the converter's older CSV layout (`label_studio_sdk.converter.exports.csv`,
//! reached through its command line), one row per region rather than per annotation. Each row
//! holds the task id, the annotation id, the annotator, the task's data and the region
//! "minified": a value with one key becomes one column named after the control (`None` for an
//! empty list, the element of a one-element list, the list otherwise); a value with several keys
//! (a box: x, y, width, ...) spreads into one column per key. Columns come in order of first
//! appearance over all rows, and cells are written as pandas' `to_csv` writes the frame:
//! a column of numbers with a gap or a fraction is a float column (`4.0`), lists and dicts in
//! Python's `repr`. Pure: the caller makes two passes (columns, then rows).

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::convert::py_float;

/// Columns beyond this many are dropped (a config of free-form keys should not make the header
/// unbounded).
const MAX_COLUMNS: usize = 1000;

/// What a column holds, to format it as pandas infers its type.
#[derive(Debug, Clone, Copy)]
struct Kind {
    /// Rows where the column has a value (not missing, not null).
    present: u64,
    /// Every present value is a number (not a bool).
    numeric: bool,
    /// Every present value is an integer.
    ints: bool,
}

/// The columns of a `CSV_OLD` export, collected over a first pass of the tasks.
#[derive(Debug, Default)]
pub struct Columns {
    names: Vec<String>,
    index: HashMap<String, usize>,
    kinds: Vec<Kind>,
    rows: u64,
}

/// One row: (column, value) in the order the record's keys were set.
type Record = Vec<(String, Value)>;

fn set(record: &mut Record, key: &str, value: Value) {
    match record.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value,
        None => record.push((key.to_string(), value)),
    }
}

/// The rows of one task: one per region of every annotation (skipped ones too, as the old
/// converter reads them all).
pub fn records(task: &Value) -> Vec<Record> {
    let mut out = Vec::new();
    let Some(annotations) = task.get("annotations").and_then(Value::as_array) else {
        return out;
    };
    for annotation in annotations {
        let mut base: Record = Vec::new();
        set(
            &mut base,
            "id",
            task.get("id").cloned().unwrap_or(Value::Null),
        );
        set(
            &mut base,
            "annotation_id",
            annotation.get("id").cloned().unwrap_or(Value::Null),
        );
        let annotator = match annotation.get("completed_by") {
            Some(Value::Object(user)) => user
                .get("email")
                .filter(|e| e.as_str().is_some_and(|s| !s.is_empty()))
                .or_else(|| user.get("id"))
                .cloned()
                .unwrap_or(Value::Null),
            Some(other) => other.clone(),
            None => Value::Null,
        };
        set(&mut base, "annotator", annotator);
        if let Some(Value::Object(data)) = task.get("data") {
            for (k, v) in data {
                set(&mut base, k, v.clone());
            }
        }
        let results = annotation.get("result").and_then(Value::as_array);
        for result in results.into_iter().flatten() {
            let mut row = base.clone();
            let name = result
                .get("from_name")
                .and_then(Value::as_str)
                .unwrap_or("null");
            let value = result.get("value").and_then(Value::as_object);
            for (k, v) in minified(name, value) {
                set(&mut row, &k, v);
            }
            out.push(row);
        }
    }
    out
}

/// `_minify_result`: one key → the control's column; several → the value's own keys.
fn minified(name: &str, value: Option<&Map<String, Value>>) -> Vec<(String, Value)> {
    let Some(value) = value else {
        return Vec::new();
    };
    if value.len() != 1 {
        return value.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    }
    let item = value.values().next().cloned().unwrap_or(Value::Null);
    let cell = match &item {
        Value::Array(list) if list.is_empty() => Value::Null,
        Value::Array(list) if list.len() == 1 => list[0].clone(),
        Value::String(s) if s.is_empty() => Value::Null,
        Value::String(s) if s.chars().count() == 1 => item.clone(),
        Value::Object(o) if o.is_empty() => Value::Null,
        _ => item,
    };
    vec![(name.to_string(), cell)]
}

impl Columns {
    /// Adds the rows of one task to the column list.
    pub fn add_task(&mut self, task: &Value) {
        for record in records(task) {
            self.rows += 1;
            for (key, value) in record {
                let i = match self.index.get(&key) {
                    Some(&i) => i,
                    None if self.names.len() < MAX_COLUMNS => {
                        self.index.insert(key.clone(), self.names.len());
                        self.names.push(key);
                        self.kinds.push(Kind {
                            present: 0,
                            numeric: true,
                            ints: true,
                        });
                        self.names.len() - 1
                    }
                    None => continue,
                };
                let kind = &mut self.kinds[i];
                match &value {
                    Value::Null => {}
                    Value::Number(n) => {
                        kind.present += 1;
                        kind.ints &= n.is_i64() || n.is_u64();
                    }
                    _ => {
                        kind.present += 1;
                        kind.numeric = false;
                    }
                }
            }
        }
    }

    /// The header's cells.
    pub fn header(&self) -> &[String] {
        &self.names
    }

    /// The cells of a task's rows, in column order.
    pub fn rows(&self, task: &Value) -> Vec<Vec<String>> {
        records(task)
            .into_iter()
            .map(|record| {
                let mut cells = vec![String::new(); self.names.len()];
                for (key, value) in record {
                    let Some(&i) = self.index.get(&key) else {
                        continue;
                    };
                    let kind = self.kinds[i];
                    // pandas: numbers with a gap (NaN) or a fraction make a float column.
                    let float = kind.numeric
                        && kind.present > 0
                        && (!kind.ints || kind.present < self.rows);
                    cells[i] = match (&value, float) {
                        (Value::Number(n), true) => py_float(n.as_f64().unwrap_or(f64::NAN)),
                        _ => py_str(&value),
                    };
                }
                cells
            })
            .collect()
    }
}

/// Python's `str` of a JSON value as pandas writes an object cell (`None` as an empty cell).
fn py_str(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

/// Python's `repr` of a JSON value (`['Car']`, `{'x': 1.0}`, `True`, `None`).
pub fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) if n.is_f64() => py_float(n.as_f64().unwrap_or(f64::NAN)),
        Value::Number(n) => n.to_string(),
        Value::String(s) => py_str_repr(s),
        Value::Array(list) => {
            let items: Vec<String> = list.iter().map(py_repr).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", py_str_repr(k), py_repr(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

/// Python's `repr` of a string: single quotes unless the text has one and no double quote.
fn py_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_row_per_region_with_pandas_cells() {
        let task = json!({"id": 7, "data": {"image": "a.jpg"}, "annotations": [
            {"id": 1, "completed_by": 3, "result": [
                {"from_name": "kind", "value": {"choices": ["cat"]}},
                {"from_name": "box", "value": {"x": 10, "y": 2.5, "rectanglelabels": ["Car"]}}]},
            {"id": 2, "completed_by": {"id": 4, "email": "a@b.c"}, "result": [
                {"from_name": "kind", "value": {"choices": ["dog", "it's"]}}]}]});
        let mut cols = Columns::default();
        cols.add_task(&task);
        assert_eq!(
            cols.header(),
            [
                "id",
                "annotation_id",
                "annotator",
                "image",
                "kind",
                "rectanglelabels",
                "x",
                "y"
            ]
        );
        let rows = cols.rows(&task);
        assert_eq!(rows[0], ["7", "1", "3", "a.jpg", "cat", "", "", ""]);
        // x has gaps: a float column.
        assert_eq!(
            rows[1],
            ["7", "1", "3", "a.jpg", "", "['Car']", "10.0", "2.5"]
        );
        assert_eq!(
            rows[2],
            ["7", "2", "a@b.c", "a.jpg", "['dog', \"it's\"]", "", "", ""]
        );
    }
}
