//! Import formats: a streaming splitter for JSON (a list, one object, or JSON lines), a
//! streaming CSV/TSV reader, and the normalization of one task object into data, meta,
//! annotations and predictions.
//!
//! Memory is bounded by one task (plus one read chunk), never by the size of the upload: the
//! splitters are fed chunks and hand back complete tasks as they close.

use serde_json::{Map, Value};

/// Why an import was rejected. `index` is the zero-based position of the task in the upload.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("task {index}: {message}")]
pub struct ImportError {
    /// Zero-based task index (or the line/record for syntax errors).
    pub index: usize,
    /// What is wrong and what to fix.
    pub message: String,
}

impl ImportError {
    fn new(index: usize, message: impl Into<String>) -> Self {
        Self {
            index,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Nothing but whitespace seen yet.
    Start,
    /// Inside a top-level array: expecting an element or `]`.
    ArrayExpectElement,
    /// Inside a top-level array after an element: expecting `,` or `]`.
    ArrayExpectSeparator,
    /// After the closing `]`: only whitespace may follow.
    ArrayDone,
    /// A stream of top-level objects (one object, or JSON lines).
    Stream,
}

/// The largest task object an import accepts (data, annotations and predictions together):
/// media belong in storage and are referenced by URL, so a bigger task is a mistake, and
/// holding it would cost memory per request.
pub const MAX_TASK_BYTES: usize = 10 * 1024 * 1024;

/// Splits a JSON upload into task objects, fed in arbitrary chunks.
#[derive(Debug)]
pub struct JsonSplitter {
    mode: Mode,
    depth: usize,
    in_string: bool,
    escape: bool,
    current: Vec<u8>,
    index: usize,
    just_opened: bool,
}

impl Default for JsonSplitter {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonSplitter {
    /// A splitter at the start of a document.
    pub fn new() -> Self {
        Self {
            mode: Mode::Start,
            depth: 0,
            in_string: false,
            escape: false,
            current: Vec::new(),
            index: 0,
            just_opened: false,
        }
    }

    /// Feeds the next chunk; complete task objects are appended to `out` as raw bytes.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), ImportError> {
        for &b in chunk {
            if self.depth > 0 {
                self.current.push(b);
                if self.current.len() > MAX_TASK_BYTES {
                    return Err(ImportError::new(
                        self.index,
                        format!(
                            "the task is larger than {} MiB; keep media in storage and reference them by URL",
                            MAX_TASK_BYTES / (1024 * 1024)
                        ),
                    ));
                }
                if self.in_string {
                    if self.escape {
                        self.escape = false;
                    } else if b == b'\\' {
                        self.escape = true;
                    } else if b == b'"' {
                        self.in_string = false;
                    }
                    continue;
                }
                match b {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => {
                        self.depth -= 1;
                        if self.depth == 0 {
                            out.push(std::mem::take(&mut self.current));
                            self.index += 1;
                            if self.mode == Mode::ArrayExpectElement {
                                self.mode = Mode::ArrayExpectSeparator;
                            }
                        }
                    }
                    _ => {}
                }
                continue;
            }
            if b.is_ascii_whitespace() {
                continue;
            }
            match (self.mode, b) {
                (Mode::Start, b'[') => {
                    self.mode = Mode::ArrayExpectElement;
                    self.just_opened = true;
                }
                (Mode::Start, b'{') => {
                    self.mode = Mode::Stream;
                    self.open_object();
                }
                (Mode::Stream, b'{') => self.open_object(),
                (Mode::ArrayExpectElement, b'{') => {
                    self.just_opened = false;
                    self.open_object();
                }
                (Mode::ArrayExpectElement, b']') if self.just_opened => self.mode = Mode::ArrayDone,
                (Mode::ArrayExpectSeparator, b',') => self.mode = Mode::ArrayExpectElement,
                (Mode::ArrayExpectSeparator, b']') => self.mode = Mode::ArrayDone,
                (Mode::ArrayExpectElement, _) => {
                    return Err(ImportError::new(
                        self.index,
                        format!("each task must be a JSON object, found {:?}", char::from(b)),
                    ));
                }
                (Mode::ArrayDone, _) => {
                    return Err(ImportError::new(
                        self.index,
                        "unexpected data after the closing ] of the task list",
                    ));
                }
                (Mode::Start, _) => {
                    return Err(ImportError::new(
                        0,
                        "the body must be a JSON list of tasks, one JSON task object, or JSON lines",
                    ));
                }
                (_, _) => {
                    return Err(ImportError::new(
                        self.index,
                        format!("invalid JSON: unexpected {:?} between tasks", char::from(b)),
                    ));
                }
            }
        }
        Ok(())
    }

    fn open_object(&mut self) {
        self.current.clear();
        self.current.push(b'{');
        self.depth = 1;
    }

    /// Checks that the document ended cleanly.
    pub fn finish(&self) -> Result<(), ImportError> {
        if self.depth > 0 {
            return Err(ImportError::new(
                self.index,
                "invalid JSON: the upload ends inside a task",
            ));
        }
        match self.mode {
            Mode::ArrayExpectElement | Mode::ArrayExpectSeparator => Err(ImportError::new(
                self.index,
                "invalid JSON: the task list is not closed with ]",
            )),
            Mode::Start => Err(ImportError::new(
                0,
                "the upload is empty: send at least one task",
            )),
            _ => Ok(()),
        }
    }
}

/// Reads CSV or TSV (first record = column names) in chunks, producing flat task objects.
#[derive(Debug)]
pub struct CsvSplitter {
    reader: csv_core::Reader,
    header: Option<Vec<String>>,
    field: Vec<u8>,
    fields: Vec<String>,
    record: usize,
    started: bool,
}

impl CsvSplitter {
    /// A reader for `delimiter` (`b','` or `b'\t'`).
    pub fn new(delimiter: u8) -> Self {
        Self {
            reader: csv_core::ReaderBuilder::new().delimiter(delimiter).build(),
            header: None,
            field: Vec::new(),
            fields: Vec::new(),
            record: 0,
            started: false,
        }
    }

    /// Feeds a chunk (empty = end of input); complete rows are appended to `out` as task objects.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<Value>) -> Result<(), ImportError> {
        let at_end = input.is_empty();
        let mut buf = [0u8; 8192];
        loop {
            // csv_core takes an empty slice for the end of the input: mid-stream, a consumed
            // chunk must end the call instead (or a chunk boundary would end the record).
            if input.is_empty() && !at_end {
                return Ok(());
            }
            let (result, consumed, written) = self.reader.read_field(input, &mut buf);
            input = &input[consumed..];
            self.field.extend_from_slice(&buf[..written]);
            match result {
                csv_core::ReadFieldResult::InputEmpty => {
                    if !at_end {
                        return Ok(());
                    }
                }
                csv_core::ReadFieldResult::OutputFull => continue,
                csv_core::ReadFieldResult::Field { record_end } => {
                    self.started = true;
                    let text =
                        String::from_utf8(std::mem::take(&mut self.field)).map_err(|_| {
                            ImportError::new(
                                self.record.saturating_sub(1),
                                "the file is not valid UTF-8",
                            )
                        })?;
                    self.fields.push(text);
                    if record_end {
                        self.end_record(out)?;
                    }
                }
                csv_core::ReadFieldResult::End => return Ok(()),
            }
        }
    }

    fn end_record(&mut self, out: &mut Vec<Value>) -> Result<(), ImportError> {
        let fields = std::mem::take(&mut self.fields);
        self.record += 1;
        match &self.header {
            None => {
                let header: Vec<String> = fields
                    .into_iter()
                    .map(|h| h.trim_start_matches('\u{feff}').to_string())
                    .collect();
                if header.iter().any(String::is_empty) {
                    return Err(ImportError::new(
                        0,
                        "the header row has an empty column name",
                    ));
                }
                self.header = Some(header);
            }
            Some(header) => {
                if fields.len() == 1 && fields[0].is_empty() {
                    return Ok(()); // blank line
                }
                let index = self.record - 2;
                if fields.len() != header.len() {
                    return Err(ImportError::new(
                        index,
                        format!(
                            "row has {} columns but the header has {}",
                            fields.len(),
                            header.len()
                        ),
                    ));
                }
                let mut obj = Map::new();
                for (name, value) in header.iter().zip(fields) {
                    obj.insert(name.clone(), cell_value(value));
                }
                out.push(Value::Object(obj));
            }
        }
        Ok(())
    }
}

/// A CSV cell as JSON: integers and finite decimals become numbers (as Label Studio's pandas-based
/// reader makes them), everything else stays a string.
fn cell_value(text: String) -> Value {
    let trimmed = text.trim();
    let numeric_shape = !trimmed.is_empty()
        && trimmed
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
        && trimmed.bytes().any(|b| b.is_ascii_digit());
    if numeric_shape {
        if let Ok(i) = trimmed.parse::<i64>() {
            return Value::from(i);
        }
        if let Some(n) = trimmed
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .and_then(serde_json::Number::from_f64)
        {
            return Value::Number(n);
        }
    }
    Value::String(text)
}

/// Who completed an imported annotation.
#[derive(Debug, Clone, PartialEq)]
pub enum CompletedBy {
    /// The importing user.
    Importer,
    /// A user id.
    Id(i64),
    /// A user email.
    Email(String),
}

/// An annotation carried inside an imported task.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedAnnotation {
    /// The result (an array), or null.
    pub result: Value,
    /// Skipped.
    pub was_cancelled: bool,
    /// Ground truth.
    pub ground_truth: bool,
    /// Seconds spent.
    pub lead_time: Option<f64>,
    /// Author.
    pub completed_by: CompletedBy,
}

/// A prediction carried inside an imported task.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedPrediction {
    /// The result (an array).
    pub result: Value,
    /// Score.
    pub score: Option<f64>,
    /// Model version.
    pub model_version: String,
}

/// One normalized task.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedTask {
    /// The task data object.
    pub data: Map<String, Value>,
    /// The task meta object.
    pub meta: Map<String, Value>,
    /// Inline annotations.
    pub annotations: Vec<ImportedAnnotation>,
    /// Inline predictions.
    pub predictions: Vec<ImportedPrediction>,
}

/// Turns one uploaded task object into a task. Objects with a `data` object are structured
/// tasks; any other object is the data itself (a "flat" task).
pub fn normalize_task(index: usize, value: Value) -> Result<ImportedTask, ImportError> {
    let Value::Object(mut obj) = value else {
        return Err(ImportError::new(index, "each task must be a JSON object"));
    };
    let structured = matches!(obj.get("data"), Some(Value::Object(_)));
    if !structured {
        if obj.is_empty() {
            return Err(ImportError::new(index, "the task has no data"));
        }
        return Ok(ImportedTask {
            data: obj,
            meta: Map::new(),
            annotations: Vec::new(),
            predictions: Vec::new(),
        });
    }
    let Some(Value::Object(data)) = obj.remove("data") else {
        return Err(ImportError::new(index, "\"data\" must be an object"));
    };
    let meta = match obj.remove("meta") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(ImportError::new(index, "\"meta\" must be an object")),
    };
    let annotations_value = obj
        .remove("annotations")
        .or_else(|| obj.remove("completions"));
    let annotations = match annotations_value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, a)| parse_annotation(index, i, a))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ImportError::new(index, "\"annotations\" must be a list")),
    };
    let predictions = match obj.remove("predictions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, p)| parse_prediction(index, i, p))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ImportError::new(index, "\"predictions\" must be a list")),
    };
    Ok(ImportedTask {
        data,
        meta,
        annotations,
        predictions,
    })
}

fn parse_annotation(
    index: usize,
    i: usize,
    value: Value,
) -> Result<ImportedAnnotation, ImportError> {
    let Value::Object(mut a) = value else {
        return Err(ImportError::new(
            index,
            format!("annotations[{i}] must be an object"),
        ));
    };
    let result = match a.remove("result") {
        None | Some(Value::Null) => Value::Null,
        Some(r @ Value::Array(_)) => r,
        Some(_) => {
            return Err(ImportError::new(
                index,
                format!("annotations[{i}].result must be a list"),
            ));
        }
    };
    let flag = |a: &Map<String, Value>, key: &str| -> Result<bool, ImportError> {
        match a.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(ImportError::new(
                index,
                format!("annotations[{i}].{key} must be true or false"),
            )),
        }
    };
    let was_cancelled = flag(&a, "was_cancelled")?;
    let ground_truth = flag(&a, "ground_truth")?;
    let lead_time = match a.get("lead_time") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(_) => {
            return Err(ImportError::new(
                index,
                format!("annotations[{i}].lead_time must be a number"),
            ));
        }
    };
    let completed_by = match a.get("completed_by") {
        None | Some(Value::Null) => CompletedBy::Importer,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(id) => CompletedBy::Id(id),
            None => {
                return Err(ImportError::new(
                    index,
                    format!("annotations[{i}].completed_by must be a user id"),
                ));
            }
        },
        Some(Value::Object(o)) => match (o.get("email"), o.get("id")) {
            (Some(Value::String(e)), _) => CompletedBy::Email(e.clone()),
            (_, Some(Value::Number(n))) if n.as_i64().is_some() => {
                CompletedBy::Id(n.as_i64().unwrap_or_default())
            }
            _ => {
                return Err(ImportError::new(
                    index,
                    format!(
                        "annotations[{i}].completed_by must be a user id or {{\"email\": ...}}"
                    ),
                ));
            }
        },
        Some(_) => {
            return Err(ImportError::new(
                index,
                format!("annotations[{i}].completed_by must be a user id or {{\"email\": ...}}"),
            ));
        }
    };
    Ok(ImportedAnnotation {
        result,
        was_cancelled,
        ground_truth,
        lead_time,
        completed_by,
    })
}

fn parse_prediction(
    index: usize,
    i: usize,
    value: Value,
) -> Result<ImportedPrediction, ImportError> {
    let Value::Object(p) = value else {
        return Err(ImportError::new(
            index,
            format!("predictions[{i}] must be an object"),
        ));
    };
    let result = match p.get("result") {
        Some(r @ Value::Array(_)) => r.clone(),
        _ => {
            return Err(ImportError::new(
                index,
                format!("predictions[{i}].result must be a list"),
            ));
        }
    };
    let score = match p.get("score") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(_) => {
            return Err(ImportError::new(
                index,
                format!("predictions[{i}].score must be a number"),
            ));
        }
    };
    let model_version = match p.get("model_version") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => {
            return Err(ImportError::new(
                index,
                format!("predictions[{i}].model_version must be a string"),
            ));
        }
    };
    Ok(ImportedPrediction {
        result,
        score,
        model_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn split_all(input: &[u8], chunk: usize) -> Result<Vec<Value>, ImportError> {
        let mut s = JsonSplitter::new();
        let mut out = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            s.feed(c, &mut out)?;
        }
        s.finish()?;
        Ok(out
            .into_iter()
            .map(|b| serde_json::from_slice(&b).expect("valid element"))
            .collect())
    }

    #[test]
    fn oversized_tasks_are_refused_with_their_index() {
        let big = format!(
            "[{{\"text\": \"small\"}}, {{\"text\": \"{}\"}}]",
            "x".repeat(MAX_TASK_BYTES)
        );
        let e = split_all(big.as_bytes(), 65536).expect_err("too big");
        assert_eq!(e.index, 1);
        assert!(e.message.contains("MiB"), "{}", e.message);
    }

    #[test]
    fn splits_lists_objects_and_lines_at_any_chunk_size() {
        let list = br#" [ {"text": "a]}\"{"}, {"text": "b", "n": [1, {"x": 2}]} ] "#;
        for chunk in [1, 2, 3, 7, 1000] {
            let got = split_all(list, chunk).expect("split");
            assert_eq!(
                got,
                vec![
                    json!({"text": "a]}\"{"}),
                    json!({"text": "b", "n": [1, {"x": 2}]})
                ]
            );
        }
        assert_eq!(
            split_all(br#"{"text": "one"}"#, 3).expect("one"),
            vec![json!({"text": "one"})]
        );
        let lines = b"{\"a\": 1}\n{\"a\": 2}\n\n{\"a\": 3}\n";
        assert_eq!(split_all(lines, 5).expect("lines").len(), 3);
        assert_eq!(split_all(b"[]", 1).expect("empty list").len(), 0);
    }

    #[test]
    fn rejects_broken_json_with_position() {
        assert_eq!(split_all(br#"[{"a": 1}, 5]"#, 4).unwrap_err().index, 1);
        assert!(split_all(br#"[{"a": 1}"#, 4).is_err());
        assert!(split_all(br#"[{"a": 1} {"a": 2}]"#, 4).is_err());
        assert!(split_all(br#"[{"a": 1}] x"#, 4).is_err());
        assert!(split_all(b"   ", 4).is_err());
        assert!(split_all(b"\"text\"", 4).is_err());
        assert!(split_all(br#"{"a": "#, 4).is_err());
    }

    #[test]
    fn csv_and_tsv() {
        let mut s = CsvSplitter::new(b',');
        let mut out = Vec::new();
        let input = "text,label\n\"hello, \"\"world\"\"\",pos\nbye,neg\n";
        for c in input.as_bytes().chunks(4) {
            s.feed(c, &mut out).expect("feed");
        }
        s.feed(&[], &mut out).expect("end");
        assert_eq!(
            out,
            vec![
                json!({"text": "hello, \"world\"", "label": "pos"}),
                json!({"text": "bye", "label": "neg"})
            ]
        );

        let mut t = CsvSplitter::new(b'\t');
        let mut out = Vec::new();
        t.feed(b"a\tb\n1\t2", &mut out).expect("feed");
        t.feed(&[], &mut out).expect("end");
        assert_eq!(out, vec![json!({"a": 1, "b": 2})]);

        let mut bad = CsvSplitter::new(b',');
        let mut out = Vec::new();
        let err = bad.feed(b"a,b\n1,2\n3\n", &mut out).unwrap_err();
        assert_eq!(err.index, 1);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn csv_numbers_become_numbers() {
        assert_eq!(cell_value("42".into()), json!(42));
        assert_eq!(cell_value("-1.5".into()), json!(-1.5));
        assert_eq!(cell_value("1e3".into()), json!(1000.0));
        assert_eq!(cell_value("12 apples".into()), json!("12 apples"));
        assert_eq!(cell_value("e".into()), json!("e"));
        assert_eq!(cell_value("".into()), json!(""));
        assert_eq!(cell_value("NaN".into()), json!("NaN"));
    }

    #[test]
    fn normalizes_flat_and_structured_tasks() {
        let flat = normalize_task(0, json!({"text": "x"})).expect("flat");
        assert_eq!(Value::Object(flat.data), json!({"text": "x"}));
        let task = normalize_task(
            3,
            json!({"data": {"text": "y"}, "meta": {"m": 1},
                   "annotations": [{"result": [], "completed_by": {"email": "a@b.c"}, "lead_time": 1.5}],
                   "predictions": [{"result": [], "score": 0.5, "model_version": "v1"}]}),
        )
        .expect("structured");
        assert_eq!(
            task.annotations[0].completed_by,
            CompletedBy::Email("a@b.c".into())
        );
        assert_eq!(task.annotations[0].lead_time, Some(1.5));
        assert_eq!(task.predictions[0].model_version, "v1");
        let err = normalize_task(
            4,
            json!({"data": {"t": 1}, "annotations": [{"result": "no"}]}),
        )
        .unwrap_err();
        assert_eq!(err.index, 4);
        assert!(
            err.message.contains("annotations[0].result"),
            "{}",
            err.message
        );
        assert!(
            normalize_task(5, json!({"data": {"t": 1}, "predictions": [{"score": 1}]})).is_err()
        );
        assert!(normalize_task(6, json!({})).is_err());
    }
}
