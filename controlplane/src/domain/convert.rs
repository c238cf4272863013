//! Label Studio's converter formats (YOLO, YOLO_OBB, COCO, Pascal VOC, CoNLL 2003) computed
//! from export task JSON, one task at a time: the same files `label-studio-converter` writes for
//! the same annotations (ADR 0046 lists where and why Verity differs). Pure: bytes in, bytes
//! out, no I/O. State grows with the categories and the zip's directory, never with the
//! annotations.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::zip::{ZipError, ZipStream};

/// A converter format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// One label file per image, boxes as centre and size.
    Yolo,
    /// One label file per image, boxes as four corners (rotated boxes).
    YoloObb,
    /// One COCO JSON file.
    Coco,
    /// One Pascal VOC XML file per image.
    Voc,
    /// Text spans as CoNLL 2003 token tags (one text file, not an archive).
    Conll2003,
    /// One NumPy `.npy` array per brush region.
    BrushNumpy,
    /// One grayscale PNG per brush region.
    BrushPng,
    /// Brush masks traced to COCO polygons (with polygons and boxes), one `result_coco.json`.
    BrushCoco,
    /// NeMo's JSON-lines manifest of audio transcriptions.
    AsrManifest,
    /// [`Target::Yolo`] with the task images in `images/`.
    YoloImages,
    /// [`Target::YoloObb`] with the task images in `images/`.
    YoloObbImages,
    /// [`Target::Coco`] with the task images in `images/`.
    CocoImages,
}

impl Target {
    /// Label Studio's name.
    pub fn name(self) -> &'static str {
        match self {
            Target::Yolo => "YOLO",
            Target::YoloObb => "YOLO_OBB",
            Target::Coco => "COCO",
            Target::Voc => "VOC",
            Target::Conll2003 => "CONLL2003",
            Target::BrushNumpy => "BRUSH_TO_NUMPY",
            Target::BrushPng => "BRUSH_TO_PNG",
            Target::BrushCoco => "BRUSH_TO_COCO",
            Target::AsrManifest => "ASR_MANIFEST",
            Target::YoloImages => "YOLO_WITH_IMAGES",
            Target::YoloObbImages => "YOLO_OBB_WITH_IMAGES",
            Target::CocoImages => "COCO_WITH_IMAGES",
        }
    }

    /// The label-only format a `*_WITH_IMAGES` format adds the images to (else itself).
    pub fn base(self) -> Target {
        match self {
            Target::YoloImages => Target::Yolo,
            Target::YoloObbImages => Target::YoloObb,
            Target::CocoImages => Target::Coco,
            other => other,
        }
    }

    /// Whether the archive carries the task images (`*_WITH_IMAGES`).
    pub fn with_images(self) -> bool {
        self.base() != self
    }

    /// Whether the output is a zip archive (several files) rather than one file.
    pub fn archive(self) -> bool {
        self != Target::Conll2003
    }
}

/// One control tag of a label config, as the converter reads it.
#[derive(Debug, Clone)]
struct Control {
    name: String,
    tag: String,
    /// Object tags it points at: (tag, data key).
    inputs: Vec<(String, String)>,
    /// Label values (alias, else value) in document order, with their attributes.
    labels: Vec<(String, BTreeMap<String, String>)>,
}

/// The label config as the converter sees it: control tags with their inputs and labels.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    controls: Vec<Control>,
}

impl Schema {
    /// Reads a label config (an unreadable one has no controls: only the plain formats fit).
    pub fn parse(xml: &str) -> Schema {
        let Ok(doc) = roxmltree::Document::parse(xml) else {
            return Schema::default();
        };
        let mut controls: Vec<Control> = Vec::new();
        let mut inputs: BTreeMap<String, (String, String)> = BTreeMap::new();
        let mut pending: Vec<(String, Vec<String>)> = Vec::new();
        for node in doc.descendants().filter(|n| n.is_element()) {
            let tag = node.tag_name().name();
            let name = node.attribute("name");
            if let (Some(name), Some(to)) = (name, node.attribute("toName"))
                && tag != "Filter"
            {
                controls.retain(|c| c.name != name);
                controls.push(Control {
                    name: name.to_string(),
                    tag: tag.to_string(),
                    inputs: Vec::new(),
                    labels: Vec::new(),
                });
                pending.retain(|(n, _)| n != name);
                pending.push((
                    name.to_string(),
                    to.split(',').map(str::to_string).collect(),
                ));
            } else if let (Some(name), Some(value)) = (name, node.attribute("value")) {
                inputs.insert(
                    name.to_string(),
                    (tag.to_string(), value.trim_start_matches('$').to_string()),
                );
            }
            if tag != "Label" && tag != "Choice" {
                continue;
            }
            let parent = node.ancestors().skip(1).find_map(|a| {
                let n = a.attribute("name")?;
                controls.iter().position(|c| c.name == n)
            });
            let value = node.attribute("alias").or(node.attribute("value"));
            if let (Some(i), Some(value)) = (parent, value.filter(|v| !v.is_empty())) {
                let attrs: BTreeMap<String, String> = node
                    .attributes()
                    .map(|a| (a.name().to_string(), a.value().to_string()))
                    .collect();
                let labels = &mut controls[i].labels;
                match labels.iter_mut().find(|(v, _)| v == value) {
                    Some(entry) => entry.1 = attrs,
                    None => labels.push((value.to_string(), attrs)),
                }
            }
        }
        for (name, to) in pending {
            if let Some(c) = controls.iter_mut().find(|c| c.name == name) {
                c.inputs = to.iter().filter_map(|t| inputs.get(t).cloned()).collect();
            }
        }
        Schema { controls }
    }

    fn control(&self, name: &str) -> Option<&Control> {
        self.controls.iter().find(|c| c.name == name)
    }

    fn data_keys(&self) -> BTreeSet<&str> {
        self.controls
            .iter()
            .flat_map(|c| c.inputs.iter().map(|(_, v)| v.as_str()))
            .collect()
    }

    fn data_key(&self) -> String {
        self.data_keys()
            .into_iter()
            .next()
            .unwrap_or_default()
            .to_string()
    }

    fn has_control(&self, tag: &str) -> bool {
        self.controls.iter().any(|c| c.tag == tag)
    }

    fn has_input(&self, tag: &str) -> bool {
        self.controls
            .iter()
            .flat_map(|c| c.inputs.iter())
            .any(|(t, _)| t == tag)
    }

    fn keypoints(&self) -> bool {
        self.has_control("KeyPointLabels")
    }

    /// Keypoint labels in order of their `model_index` (those without one are left out).
    fn keypoint_order(&self) -> Vec<String> {
        let mut block: Vec<(String, BTreeMap<String, String>)> = Vec::new();
        for c in self.controls.iter().filter(|c| c.tag == "KeyPointLabels") {
            for (label, attrs) in &c.labels {
                match block.iter_mut().find(|(l, _)| l == label) {
                    Some(entry) => entry.1 = attrs.clone(),
                    None => block.push((label.clone(), attrs.clone())),
                }
            }
        }
        let mut pairs: Vec<(i64, String)> = Vec::new();
        for (name, attrs) in block {
            let Some(idx) = attrs
                .get("model_index")
                .and_then(|v| v.trim().parse::<i64>().ok())
            else {
                continue;
            };
            if pairs.iter().any(|(i, _)| *i == idx) {
                continue;
            }
            pairs.push((idx, name));
        }
        pairs.sort_by_key(|(i, _)| *i);
        pairs.into_iter().map(|(_, n)| n).collect()
    }

    /// Whether `target` fits this label config, as Label Studio decides which formats to offer;
    /// `Err` says why not.
    pub fn fits(&self, target: Target) -> Result<(), String> {
        let name = target.name();
        // The images do not change what a format needs of the config.
        let target = target.base();
        if self.data_keys().len() > 1 {
            return Err(format!(
                "{name} needs a label config with one data field; this one reads several"
            ));
        }
        let image = self.has_input("Image");
        let rect = self.has_control("RectangleLabels");
        let labels = self.has_control("Labels");
        let boxes = self.has_control("Rectangle") && labels;
        let fits = match target {
            Target::Conll2003 => self.has_input("Text") && labels,
            Target::AsrManifest => {
                (self.has_input("Audio") || self.has_input("AudioPlus"))
                    && self.has_control("TextArea")
            }
            Target::BrushNumpy | Target::BrushPng | Target::BrushCoco => {
                image
                    && (self.has_control("BrushLabels")
                        || self.has_control("brushlabels")
                        || self.has_control("Brush") && labels)
            }
            Target::Voc => image && (rect || boxes),
            Target::Yolo
            | Target::YoloObb
            | Target::Coco
            | Target::YoloImages
            | Target::YoloObbImages
            | Target::CocoImages => {
                let shapes = image
                    && (rect
                        || self.has_control("PolygonLabels")
                        || self.has_control("KeyPointLabels"))
                    || boxes
                    || (self.has_control("PolygonLabels") || self.keypoints()) && labels;
                let keypoints_alone = self.keypoints() && !rect && target != Target::YoloObb;
                let video = self.has_input("Video") && self.has_control("TimelineLabels");
                shapes && !keypoints_alone && !(video && target == Target::YoloObb)
            }
        };
        if !fits {
            return Err(match target {
                Target::Voc => format!("{name} needs an Image with RectangleLabels"),
                Target::Conll2003 => format!("{name} needs a Text with Labels"),
                Target::BrushNumpy | Target::BrushPng | Target::BrushCoco => {
                    format!("{name} needs an Image with BrushLabels (or Brush with Labels)")
                }
                Target::AsrManifest => format!("{name} needs an Audio with a TextArea"),
                _ => format!(
                    "{name} needs an Image with RectangleLabels, PolygonLabels or KeyPointLabels (KeyPointLabels together with RectangleLabels)"
                ),
            });
        }
        if target == Target::Coco && self.keypoints() && self.keypoint_order().is_empty() {
            return Err(format!(
                "{name} with KeyPointLabels needs a model_index on each keypoint Label, e.g. <Label value=\"eye\" model_index=\"0\"/>"
            ));
        }
        Ok(())
    }

    /// `_get_labels`: explicit `category` ids first, the other labels sorted, numbered from 0
    /// skipping the ids taken.
    fn categories(&self) -> Vec<(i64, String)> {
        let mut all: BTreeSet<&str> = BTreeSet::new();
        let mut out: Vec<(i64, String)> = Vec::new();
        for c in &self.controls {
            for (label, attrs) in &c.labels {
                all.insert(label);
                if let Some(id) = attrs
                    .get("category")
                    .and_then(|v| v.trim().parse::<i64>().ok())
                {
                    out.retain(|(_, n)| n != label);
                    out.push((id, label.clone()));
                }
            }
        }
        let used: BTreeSet<i64> = out.iter().map(|(i, _)| *i).collect();
        let named: BTreeSet<String> = out.iter().map(|(_, n)| n.clone()).collect();
        let mut ids = (0i64..).filter(|i| !used.contains(i));
        for label in all.into_iter().filter(|l| !named.contains(*l)) {
            if let Some(id) = ids.next() {
                out.push((id, label.to_string()));
            }
        }
        out
    }
}

/// Python's `repr` of a float (`0.25`, `1.0`, `1e-05`): what the converter writes in text files.
pub fn py_float(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Shortest round-trip digits and the decimal exponent, then Python's layout rules.
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let point = exp + 1;
        let body = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if (point as usize) >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            let (a, b) = digits.split_at(point as usize);
            format!("{a}.{b}")
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{esign}{:02}", exp.abs())
    }
}

/// Python's `str` of a JSON number as it was read (`640` stays `640`, `640.0` stays `640.0`).
fn py_number(v: &Value) -> String {
    match v {
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        Value::Number(n) => py_float(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

fn num(v: &Map<String, Value>, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

/// The name the converter gives a task's media when it does not download it:
/// `<first 8 hex digits of the MD5 of the URL>__<file name>` (its cache path).
///
/// An upload of this server (`/data/upload/<project>/<file>`) keeps its stored name: Label
/// Studio's server hands the converter its upload directory, where the converter finds the file
/// and copies it under that name.
pub fn media_name(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("/data/upload/")
        && let Some((project, file)) = rest.split_once('/')
        && !project.is_empty()
        && project.bytes().all(|b| b.is_ascii_digit())
        && !file.is_empty()
        && !file.contains('/')
    {
        return file.to_string();
    }
    let file = if let Some((_, d)) = url.split_once("?d=").filter(|_| url.starts_with("/data/")) {
        basename(d)
    } else if url.starts_with("s3:") || url.starts_with("gs:") || url.starts_with("azure-blob:") {
        basename(url)
    } else {
        let no_scheme = match url.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
            None => url,
        };
        let path = no_scheme.split(['?', '#']).next().unwrap_or_default();
        basename(path)
    };
    let digest = md5::Digest::finalize(md5::Digest::chain_update(
        md5::Md5::default(),
        url.as_bytes(),
    ));
    format!("{}__{file}", &hex::encode(digest)[..8])
}

/// Where the converter copies a task's audio: `audio/<file name>` (an upload's stored name, a
/// local file's name, or the last segment of a URL's path).
fn audio_entry(url: &str) -> String {
    // `urllib.parse.unquote`: %XX escapes only ('+' stays).
    let unquote = |s: &str| {
        let kept = s.replace('+', "%2B");
        url::form_urlencoded::parse(format!("f={kept}").as_bytes())
            .next()
            .map_or_else(|| s.to_string(), |(_, v)| v.into_owned())
    };
    let file = if let Some(rest) = url.strip_prefix("/data/upload/") {
        basename(&unquote(rest)).to_string()
    } else if let Some((_, query)) = url.split_once('?').filter(|_| url.starts_with("/data/")) {
        let d = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "d")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        basename(&d).to_string()
    } else {
        let no_scheme = match url.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
            None => url,
        };
        basename(no_scheme.split(['?', '#']).next().unwrap_or_default()).to_string()
    };
    format!("audio/{file}")
}

/// A JSON string as Python's `json.dumps` writes it (`ensure_ascii`: everything past ASCII as
/// `\uXXXX`, surrogate pairs beyond the BMP).
pub fn py_json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `os.path.splitext(name)[0]`.
fn stem(name: &str) -> &str {
    let lead = name.len() - name.trim_start_matches('.').len();
    match name[lead..].rfind('.') {
        Some(i) => &name[..lead + i],
        None => name,
    }
}

/// One annotation of a task as the converter iterates them.
struct Item<'a> {
    data: &'a Value,
    /// Regions by `from_name`, in order of first appearance; each value with `type` set to the
    /// control's tag and the image size copied in.
    outputs: Vec<(String, Vec<Map<String, Value>>)>,
    completed_by: Value,
    /// The annotation's id (`None` for a task without annotations).
    annotation_id: Value,
}

impl Item<'_> {
    fn regions(&self) -> impl Iterator<Item = &Map<String, Value>> {
        self.outputs.iter().flat_map(|(_, v)| v.iter())
    }

    /// `get_annotator`: the email of an expanded user, else the id as text.
    fn annotator(&self, default: &str) -> String {
        match &self.completed_by {
            Value::Object(o) => o
                .get("email")
                .and_then(Value::as_str)
                .unwrap_or(default)
                .to_string(),
            other => py_number(other),
        }
    }
}

/// The converter's items of one task: one per annotation that was not skipped, newest first
/// (or one without regions for a task without annotations).
fn items<'a>(task: &'a Value, schema: &Schema) -> Vec<Item<'a>> {
    static NULL: Value = Value::Null;
    let data = task.get("data").unwrap_or(&NULL);
    let Some(annotations) = task.get("annotations").and_then(Value::as_array) else {
        return Vec::new();
    };
    if annotations.is_empty() {
        return vec![Item {
            data,
            outputs: Vec::new(),
            completed_by: json!({}),
            annotation_id: Value::Null,
        }];
    }
    let truthy = |v: Option<&Value>| match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    };
    let mut kept: Vec<&Value> = annotations
        .iter()
        .filter(|a| !truthy(a.get("skipped")) && !truthy(a.get("was_cancelled")))
        .collect();
    let created = |a: &Value| {
        a.get("created_at")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    kept.sort_by_key(|a| std::cmp::Reverse(created(a)));
    let keypoints = schema.keypoints();
    kept.into_iter()
        .map(|a| {
            let mut outputs: Vec<(String, Vec<Map<String, Value>>)> = Vec::new();
            for r in a
                .get("result")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(from) = r.get("from_name").and_then(Value::as_str) else {
                    continue;
                };
                let Some(control) = schema.control(from) else {
                    continue;
                };
                let Some(mut v) = r.get("value").and_then(Value::as_object).cloned() else {
                    continue;
                };
                v.insert("type".into(), Value::String(control.tag.clone()));
                for key in ["original_width", "original_height"] {
                    if let Some(x) = r.get(key) {
                        v.insert(key.into(), x.clone());
                    }
                }
                if keypoints {
                    v.insert("id".into(), r.get("id").cloned().unwrap_or(Value::Null));
                    v.insert(
                        "parentID".into(),
                        r.get("parentID").cloned().unwrap_or(Value::Null),
                    );
                }
                match outputs.iter_mut().find(|(n, _)| n == from) {
                    Some((_, list)) => list.push(v),
                    None => outputs.push((from.to_string(), vec![v])),
                }
            }
            Item {
                data,
                outputs,
                completed_by: a.get("completed_by").cloned().unwrap_or(Value::Null),
                annotation_id: a.get("id").cloned().unwrap_or(Value::Null),
            }
        })
        .collect()
}

/// The media URL of an item (the last one of a list, as the converter picks it).
fn media_url(item: &Item<'_>, key: &str) -> String {
    match item.data.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(list)) => list
            .last()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .unwrap_or_default(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// The first label of a region under one of `keys`.
fn first_label<'a>(region: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| {
        region
            .get(*k)
            .and_then(Value::as_array)
            .and_then(|l| l.first())
            .and_then(Value::as_str)
    })
}

/// A rectangle in percent of the image (`x`, `y`, `width`, `height` of a region) in pixels of
/// an image `ow` × `oh`, as COCO's `bbox` takes it.
fn rect_in_pixels((x, y, w, h): (f64, f64, f64, f64), ow: f64, oh: f64) -> (f64, f64, f64, f64) {
    (
        x * ow / 100.0,
        y * oh / 100.0,
        w * ow / 100.0,
        h * oh / 100.0,
    )
}

/// `rotated_rectangle`: the axis-aligned box around a rotated one, in percent.
fn rotated_rectangle(label: &Map<String, Value>) -> Option<(f64, f64, f64, f64)> {
    let (mut x, mut y, mut w, mut h) = (
        num(label, "x")?,
        num(label, "y")?,
        num(label, "width")?,
        num(label, "height")?,
    );
    let r = num(label, "rotation").unwrap_or(0.0);
    if r.abs() > 0.0 {
        use std::f64::consts::PI;
        let alpha = (h / w).atan();
        let beta = PI * (r / 180.0);
        let radius = ((w / 2.0).powi(2) + (h / 2.0).powi(2)).sqrt();
        let x0 = x - radius * ((PI - alpha - beta).cos() - (PI - alpha).cos()) + w / 2.0;
        let y0 = y + radius * ((PI - alpha - beta).sin() - (PI - alpha).sin()) + h / 2.0;
        let thetas = [
            alpha + beta,
            PI - alpha + beta,
            PI + alpha + beta,
            2.0 * PI - alpha + beta,
        ];
        let xs: Vec<f64> = thetas.iter().map(|t| x0 + radius * t.cos()).collect();
        let ys: Vec<f64> = thetas.iter().map(|t| y0 + radius * t.sin()).collect();
        let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        x = min(&xs);
        y = min(&ys);
        w = max(&xs) - x;
        h = max(&ys) - y;
    }
    Some((x, y, w, h))
}

/// Label Studio's categories: `[{"id", "name", ...}]` plus a name index.
#[derive(Debug, Clone, Default)]
struct Categories {
    list: Vec<Value>,
}

impl Categories {
    fn from_pairs(pairs: Vec<(i64, String)>) -> Self {
        Categories {
            list: pairs
                .into_iter()
                .map(|(id, name)| json!({"id": id, "name": name}))
                .collect(),
        }
    }

    fn get(&self, name: &str) -> Option<i64> {
        // The last mapping of a name wins, as a dict assignment does.
        self.list
            .iter()
            .rev()
            .find(|c| c["name"] == name)
            .and_then(|c| c["id"].as_i64())
    }

    /// The id of `name`, adding it (numbered by the count so far) if it is new.
    fn id(&mut self, name: &str) -> i64 {
        if let Some(id) = self.get(name) {
            return id;
        }
        let id = self
            .list
            .iter()
            .filter(|c| c.get("alias").is_none())
            .count() as i64;
        self.list.push(json!({"id": id, "name": name}));
        id
    }
}

/// Converts export task JSON to one converter format, task by task. Call [`Converter::start`]
/// before each of [`Converter::passes`] passes over the same tasks, [`Converter::task`] for
/// each task, then [`Converter::finish`]. Every call appends the next bytes of the file.
pub struct Converter {
    target: Target,
    schema: Schema,
    key: String,
    zip: ZipStream,
    categories: Categories,
    /// Keypoint labels in model order (keypoint configs).
    kp_order: Vec<String>,
    year: i32,
    date_created: String,
    pass: u8,
    images: i64,
    annotations: i64,
    first: bool,
    /// ASR: the duration of the task's audio, when the caller could read it.
    duration: Option<f64>,
    /// `*_WITH_IMAGES`: the archive carries the task images.
    with_images: bool,
    /// COCO with images: the first pass, which writes the images (the JSON comes after).
    image_pass: bool,
    /// Image entries written so far (an image shared by tasks is written once).
    written: std::collections::HashSet<String>,
    /// The image entry being written and its first bytes (COCO reads its size from them).
    head: Option<(String, Vec<u8>)>,
    /// COCO with images: the size of each image written, read from its header.
    sizes: std::collections::HashMap<String, (u32, u32)>,
    /// BRUSH_TO_COCO: its category names in the order met (ids count from 1).
    brush_categories: Vec<String>,
    /// Images that could not be read: how many, and the first few (task id and URL).
    missing: u64,
    missing_sample: Vec<String>,
}

/// Bytes of an image's start kept to read its size (JPEG puts it after the EXIF block).
const IMAGE_HEAD: usize = 256 * 1024;

/// Missing images named in the archive comment; the rest are counted.
const MISSING_SAMPLE: usize = 20;

/// Why a conversion stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The zip archive cannot hold the export.
    #[error(transparent)]
    Zip(#[from] ZipError),
    /// The format does not fit the project's label config.
    #[error("{0}")]
    Unfit(String),
}

impl Converter {
    /// A converter to `target` for a project with this label config, stamping files with `now`
    /// (UTC: year, month, day, hour, minute, second).
    pub fn new(
        target: Target,
        label_config: &str,
        now: (i32, u8, u8, u8, u8, u8),
    ) -> Result<Self, ConvertError> {
        let schema = Schema::parse(label_config);
        schema.fits(target).map_err(ConvertError::Unfit)?;
        let with_images = target.with_images();
        let target = target.base();
        let keypoints = schema.keypoints();
        let kp_order = schema.keypoint_order();
        let categories = match target {
            Target::Yolo | Target::YoloObb if keypoints => {
                let kp: Vec<String> = labels_of(&schema, "KeyPointLabels");
                Categories {
                    list: labels_of(&schema, "RectangleLabels")
                        .into_iter()
                        .enumerate()
                        .map(|(i, n)| json!({"id": i, "name": n, "keypoints": kp}))
                        .collect(),
                }
            }
            Target::Coco if keypoints => {
                let kp = labels_of(&schema, "KeyPointLabels");
                let mut list: Vec<Value> = schema
                    .categories()
                    .into_iter()
                    .filter(|(_, n)| !kp.contains(n))
                    .map(|(id, name)| json!({"id": id, "name": name}))
                    .collect();
                let merged = list
                    .iter()
                    .filter_map(|c| c["id"].as_i64())
                    .max()
                    .map_or(0, |m| m + 1);
                list.push(json!({"id": merged, "name": "default", "supercategory": "default", "keypoints": kp, "skeleton": []}));
                // Keypoint labels map to the merged category.
                for name in &kp {
                    list.push(json!({"id": merged, "name": name, "alias": true}));
                }
                Categories { list }
            }
            _ => Categories::from_pairs(schema.categories()),
        };
        let (y, mo, d, h, mi, s) = now;
        Ok(Converter {
            target,
            key: schema.data_key(),
            schema,
            zip: ZipStream::new(y, mo, d, h, mi, s),
            categories,
            kp_order,
            year: y,
            date_created: format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"),
            pass: 0,
            images: 0,
            annotations: 0,
            first: true,
            duration: None,
            with_images,
            image_pass: false,
            written: Default::default(),
            head: None,
            sizes: Default::default(),
            brush_categories: Vec::new(),
            missing: 0,
            missing_sample: Vec::new(),
        })
    }

    /// The media URL of a task whose file this target reads (the ASR manifest's audio, for
    /// its duration); `None` for targets that read no media.
    pub fn media_url(&self, task: &Value) -> Option<String> {
        if self.target != Target::AsrManifest {
            return None;
        }
        task.get("data")?
            .get(&self.key)?
            .as_str()
            .map(str::to_string)
    }

    /// [`Converter::task`] with the duration of the task's audio in seconds (ASR manifest),
    /// `None` when it could not be read.
    pub fn task_with_duration(
        &mut self,
        task: &Value,
        duration: Option<f64>,
        out: &mut Vec<u8>,
    ) -> Result<(), ConvertError> {
        self.duration = duration;
        let done = self.task(task, out);
        self.duration = None;
        done
    }

    /// Passes over the tasks: COCO writes its images first and its annotations after the
    /// categories, so it reads the tasks twice; the others once.
    /// COCO with images reads them once more first: the images go into the archive before
    /// `result.json`, whose image list needs their sizes.
    pub fn passes(&self) -> u8 {
        match self.target {
            Target::Coco if self.with_images => 3,
            Target::Coco | Target::BrushCoco => 2,
            _ => 1,
        }
    }

    /// Starts pass `pass` (0-based).
    pub fn start(&mut self, pass: u8, out: &mut Vec<u8>) -> Result<(), ConvertError> {
        let pass = if self.target == Target::Coco && self.with_images {
            if pass == 0 {
                self.image_pass = true;
                self.zip.dir("images/", out)?;
                return Ok(());
            }
            self.image_pass = false;
            pass - 1
        } else {
            pass
        };
        self.pass = pass;
        self.images = 0;
        self.annotations = 0;
        self.first = true;
        match (self.target, pass) {
            (Target::Yolo | Target::YoloObb, 0) => {
                self.zip.dir("images/", out)?;
                self.zip.dir("labels/", out)?;
            }
            (Target::Voc, 0) => {
                self.zip.dir("Annotations/", out)?;
                self.zip.dir("images/", out)?;
            }
            (Target::Coco, 0) => {
                if !self.with_images {
                    self.zip.dir("images/", out)?;
                }
                self.zip.begin("result.json", out)?;
                self.zip.write(b"{\"images\": [", out);
            }
            (Target::BrushCoco, 0) => {
                self.zip.dir("images/", out)?;
                self.zip.begin("result_coco.json", out)?;
                self.zip.write(b"{\"images\": [", out);
            }
            (Target::BrushCoco, _) => self.zip.write(b"], \"annotations\": [", out),
            (Target::AsrManifest, 0) => {
                self.zip.dir("audio/", out)?;
                self.zip.begin("manifest.json", out)?;
            }
            (Target::Conll2003, _) => out.extend_from_slice(b"-DOCSTART- -X- O\n"),
            (Target::Coco, _) => {
                let cats = serde_json::to_string(&self.public_categories()).unwrap_or_default();
                self.zip.write(
                    format!("], \"categories\": {cats}, \"annotations\": [").as_bytes(),
                    out,
                );
            }
            _ => {}
        }
        Ok(())
    }

    fn public_categories(&self) -> Vec<Value> {
        self.categories
            .list
            .iter()
            .filter(|c| c.get("alias").is_none())
            .cloned()
            .collect()
    }

    /// `*_WITH_IMAGES`: the archive entry and media URL of the task's image when it is to be
    /// written now (the converter downloads the image of every task it writes an item for; an
    /// image already written is not written again). Write it with [`Converter::image_begin`],
    /// [`Converter::image_write`] and [`Converter::image_end`] before [`Converter::task`], or
    /// report it with [`Converter::image_missing`].
    pub fn image_of(&self, task: &Value) -> Option<(String, String)> {
        if !self.with_images || (self.target == Target::Coco && !self.image_pass) {
            return None;
        }
        let items = items(task, &self.schema);
        let url = media_url(items.first()?, &self.key);
        let entry = format!("images/{}", media_name(&url));
        (!url.is_empty() && !self.written.contains(&entry)).then_some((entry, url))
    }

    /// Starts the image entry `entry`.
    pub fn image_begin(&mut self, entry: &str, out: &mut Vec<u8>) -> Result<(), ConvertError> {
        self.zip.begin(entry, out)?;
        self.written.insert(entry.to_string());
        self.head = Some((entry.to_string(), Vec::new()));
        Ok(())
    }

    /// Appends bytes of the image being written.
    pub fn image_write(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if let Some((_, head)) = self.head.as_mut().filter(|_| self.target == Target::Coco) {
            let room = IMAGE_HEAD.saturating_sub(head.len());
            head.extend_from_slice(&bytes[..room.min(bytes.len())]);
        }
        self.zip.write(bytes, out);
    }

    /// Ends the image being written (COCO keeps its size, when its header tells it).
    pub fn image_end(&mut self, out: &mut Vec<u8>) -> Result<(), ConvertError> {
        self.zip.end(out)?;
        if let Some((entry, head)) = self.head.take()
            && let Some(size) = super::media::image_size(&head)
        {
            self.sizes.insert(entry, size);
        }
        Ok(())
    }

    /// Records that the image of task `task_id` at `url` could not be read: it is left out of
    /// the archive (the labels stay) and counted in the archive's comment.
    pub fn image_missing(&mut self, task_id: &Value, url: &str) {
        self.missing += 1;
        if self.missing_sample.len() < MISSING_SAMPLE {
            self.missing_sample
                .push(format!("task {}: {url}", py_number(task_id)));
        }
    }

    /// How many images could not be read.
    pub fn images_missing(&self) -> u64 {
        self.missing
    }

    /// Converts one task of the export JSON.
    pub fn task(&mut self, task: &Value, out: &mut Vec<u8>) -> Result<(), ConvertError> {
        if self.image_pass {
            return Ok(());
        }
        let items = items(task, &self.schema);
        match self.target {
            Target::Yolo | Target::YoloObb => self.yolo(&items, out),
            Target::Voc => self.voc(&items, out),
            Target::Conll2003 => {
                for item in &items {
                    self.conll(item, out);
                }
                Ok(())
            }
            Target::Coco => {
                for item in &items {
                    self.coco(item, out);
                }
                Ok(())
            }
            Target::AsrManifest => {
                for item in &items {
                    self.asr(item, out);
                }
                Ok(())
            }
            Target::BrushCoco => {
                for item in &items {
                    self.brush_coco(item, out);
                }
                Ok(())
            }
            Target::BrushNumpy | Target::BrushPng => {
                let task_id = py_number(task.get("id").unwrap_or(&Value::Null));
                for item in &items {
                    self.brush(&task_id, item, out)?;
                }
                Ok(())
            }
            // `new` keeps the label-only format.
            Target::YoloImages | Target::YoloObbImages | Target::CocoImages => Ok(()),
        }
    }

    /// Ends the file.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), ConvertError> {
        match self.target {
            Target::Yolo | Target::YoloObb => {
                let cats = self.public_categories();
                let mut classes = String::new();
                for c in &cats {
                    classes.push_str(c["name"].as_str().unwrap_or_default());
                    classes.push('\n');
                }
                self.zip.file("classes.txt", classes.as_bytes(), out)?;
                let notes = json!({"categories": cats, "info": {"year": self.year, "version": "1.0", "contributor": "Label Studio"}});
                let notes = serde_json::to_vec_pretty(&notes).unwrap_or_default();
                self.zip.file("notes.json", &notes, out)?;
            }
            Target::Coco => {
                let info = json!({"year": self.year, "version": "1.0", "description": "", "contributor": "Label Studio", "url": "", "date_created": self.date_created});
                self.zip
                    .write(format!("], \"info\": {info}}}").as_bytes(), out);
            }
            Target::BrushCoco => {
                let categories: Vec<Value> = self
                    .brush_categories
                    .iter()
                    .enumerate()
                    .map(|(i, name)| json!({"id": i + 1, "name": name, "supercategory": "", "color": label_colour(name), "metadata": {}}))
                    .collect();
                let info = json!({"year": self.year, "version": "1.0", "description": "Converted from Label Studio", "contributor": "Label Studio Converter", "date_created": self.date_created});
                let tail = format!(
                    "], \"categories\": {}, \"info\": {info}}}",
                    Value::Array(categories)
                );
                self.zip.write(tail.as_bytes(), out);
            }
            Target::Voc | Target::BrushNumpy | Target::BrushPng | Target::AsrManifest => {}
            Target::Conll2003 => return Ok(()),
            // `new` keeps the label-only format.
            Target::YoloImages | Target::YoloObbImages | Target::CocoImages => {}
        }
        if self.missing > 0 {
            let mut note = format!(
                "{} image(s) could not be read and are not in this archive (their labels are):\n",
                self.missing
            );
            for line in &self.missing_sample {
                note.push_str(line);
                note.push('\n');
            }
            if self.missing > self.missing_sample.len() as u64 {
                note.push_str("...\n");
            }
            self.zip.comment(&note);
        }
        self.zip.finish(out)?;
        Ok(())
    }

    /// One manifest line per annotation: the audio's path in the converter's `audio/` folder,
    /// its duration (`null` when the file could not be read), the first transcription (the
    /// first control whose first region has a `text`) and the annotator, written as Python's
    /// `json.dump` writes them. An annotation without a transcription gives no line.
    fn asr(&mut self, item: &Item<'_>, out: &mut Vec<u8>) {
        let Some(url) = item.data.get(&self.key).and_then(Value::as_str) else {
            return;
        };
        let Some(text) = item
            .outputs
            .iter()
            .find_map(|(_, v)| v.first().and_then(|r| r.get("text")))
        else {
            return;
        };
        let text = match text {
            Value::Array(list) => match list.first() {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => return,
            },
            // Python indexes a string by character.
            Value::String(s) => match s.chars().next() {
                Some(c) => c.to_string(),
                None => return,
            },
            _ => return,
        };
        let duration = self.duration.map_or_else(|| "null".to_string(), py_float);
        let line = format!(
            "{{\"audio_filepath\": {}, \"duration\": {duration}, \"text\": {}, \"annotator\": {}}}\n",
            py_json_str(&audio_entry(url)),
            py_json_str(&text),
            py_json_str(&item.annotator(""))
        );
        self.zip.write(line.as_bytes(), out);
    }

    /// The converter's `brush` export: every brush region with an RLE becomes one file,
    /// `task-<task>-annotation-<annotation>-by-<annotator>-<from_name>-<labels>-<n>` (`n`
    /// counts the regions of the same control and labels in the annotation), holding the
    /// region's mask (the RLE image's alpha channel). A region whose RLE does not match its
    /// size is left out (the converter stops the whole export there).
    fn brush(
        &mut self,
        task_id: &str,
        item: &Item<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), ConvertError> {
        let annotation = py_number(&item.annotation_id);
        // Python's str.isalnum() keeps letters and digits of any script.
        let email: String = item
            .annotator("")
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '@' || *c == '.')
            .collect();
        for (from_name, results) in &item.outputs {
            let mut counters: BTreeMap<String, u64> = BTreeMap::new();
            for result in results {
                let kind = result
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let key = match kind.as_str() {
                    "brushlabels" => "brushlabels",
                    "labels" => "labels",
                    _ => continue,
                };
                let Some(rle) = result.get("rle") else {
                    continue;
                };
                let labels: Vec<String> = match result.get(key).and_then(Value::as_array) {
                    Some(list) => list
                        .iter()
                        .map(|l| l.as_str().map_or_else(|| l.to_string(), str::to_string))
                        .collect(),
                    None if result.contains_key(key) => Vec::new(),
                    None => vec!["no_label".into()],
                };
                let mut name = format!("{from_name}-{}", labels.join("-"));
                let counter = counters.entry(name.clone()).or_default();
                name = format!("{name}-{counter}");
                *counter += 1;
                let (Some(width), Some(height)) = (
                    num(result, "original_width").filter(|w| *w >= 0.0),
                    num(result, "original_height").filter(|h| *h >= 0.0),
                ) else {
                    continue;
                };
                let (width, height) = (width as u64, height as u64);
                let bytes: Vec<u8> = rle
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|b| b.as_u64().unwrap_or(0) as u8)
                    .collect();
                let Ok(mask) = super::brush::decode_alpha(&bytes, width, height) else {
                    continue;
                };
                let base = format!(
                    "task-{task_id}-annotation-{annotation}-by-{email}-{}",
                    name.replace(['/', '\\'], "-")
                );
                if self.target == Target::BrushNumpy {
                    // numpy.save appends .npy unless the name already ends with it.
                    let file = if base.ends_with(".npy") {
                        base
                    } else {
                        format!("{base}.npy")
                    };
                    self.zip.begin(&file, out)?;
                    self.zip
                        .write(&super::brush::npy_header(height, width), out);
                    self.zip.write(&mask, out);
                    self.zip.end(out)?;
                } else {
                    let (Ok(w), Ok(h)) = (u32::try_from(width), u32::try_from(height)) else {
                        continue;
                    };
                    let png = super::brush::png_gray(&mask, w, h);
                    self.zip.file(&format!("{base}.png"), &png, out)?;
                }
            }
        }
        Ok(())
    }

    /// The converter's `BRUSH_TO_COCO` for one item: every brush region's mask traced to its
    /// outer contours (one COCO annotation per contour of at least three corners), polygons
    /// rounded to whole pixels, and boxes, each once per label of the region. The item's image
    /// is the first data value that ends like an image file; the image goes into `images` (on
    /// the first pass) only when the item gave an annotation and names its size. Categories are
    /// numbered from 1 in the order their labels are met. Item ids count every item, also those
    /// left out.
    /// One BRUSH_TO_COCO annotation of `shape` (its `segmentation`, `bbox` and `area`): counted
    /// on every pass (ids), written on the second.
    fn brush_coco_annotation(
        &mut self,
        shape: &Value,
        image_id: i64,
        category_id: usize,
        annotator: &str,
        out: &mut Vec<u8>,
    ) {
        let id = self.annotations;
        self.annotations += 1;
        if self.pass == 1 {
            let mut a = shape.clone();
            a["id"] = json!(id);
            a["image_id"] = json!(image_id);
            a["category_id"] = json!(category_id);
            a["iscrowd"] = json!(0);
            a["annotator"] = json!(annotator);
            self.emit(&a, out);
        }
    }

    fn brush_coco(&mut self, item: &Item<'_>, out: &mut Vec<u8>) {
        let image_id = self.images;
        self.images += 1;
        let Some(path) = item.data.as_object().and_then(|data| {
            data.values().filter_map(Value::as_str).find(|v| {
                let lower = v.to_lowercase();
                [".jpg", ".jpeg", ".png", ".gif", ".bmp"]
                    .iter()
                    .any(|ext| lower.ends_with(ext))
            })
        }) else {
            return;
        };
        if item.outputs.is_empty() {
            return;
        }
        let annotator = item.annotator("unknown");
        let mut size: Option<(Value, Value)> = None;
        let mut valid = false;
        for (_, regions) in &item.outputs {
            for region in regions {
                if size.is_none()
                    && let Some(w) = region.get("original_width")
                {
                    let h = region.get("original_height").cloned();
                    size = Some((w.clone(), h.unwrap_or(Value::Null)));
                }
                let kind = region
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_lowercase();
                let Some((key, labels)) =
                    ["brushlabels", "polygonlabels", "rectanglelabels", "labels"]
                        .into_iter()
                        .find_map(|k| region.get(k).map(|v| (k, v)))
                else {
                    continue;
                };
                let labels: Vec<String> = match labels {
                    Value::Array(list) => list
                        .iter()
                        .map(|l| l.as_str().map_or_else(|| l.to_string(), str::to_string))
                        .collect(),
                    // Python iterates a string by character.
                    Value::String(s) => s.chars().map(String::from).collect(),
                    _ => continue,
                };
                let sized =
                    region.contains_key("original_width") && region.contains_key("original_height");
                // A region's shapes do not depend on its label: traced once, written per label.
                let mut shapes: Option<Vec<Value>> = None;
                for label in labels {
                    let category_id = match self.brush_categories.iter().position(|c| *c == label) {
                        Some(i) => i + 1,
                        None => {
                            self.brush_categories.push(label);
                            self.brush_categories.len()
                        }
                    };
                    if key == "brushlabels" && region.contains_key("rle") {
                        if !sized {
                            continue;
                        }
                        let shapes = shapes.get_or_insert_with(|| traced_brush(region));
                        for shape in shapes.iter() {
                            valid = true;
                            self.brush_coco_annotation(
                                shape,
                                image_id,
                                category_id,
                                &annotator,
                                out,
                            );
                        }
                    } else if key == "polygonlabels" && region.contains_key("points") {
                        if !sized {
                            continue;
                        }
                        let Some(shape) = shapes
                            .get_or_insert_with(|| rounded_polygon(region).into_iter().collect())
                            .first()
                            .cloned()
                        else {
                            continue;
                        };
                        valid = true;
                        self.brush_coco_annotation(&shape, image_id, category_id, &annotator, out);
                    } else if kind == "rectanglelabels" || key == "labels" {
                        let values: Option<Vec<f64>> = [
                            "x",
                            "y",
                            "width",
                            "height",
                            "original_width",
                            "original_height",
                        ]
                        .iter()
                        .map(|k| num(region, k))
                        .collect();
                        let Some(&[x, y, w, h, ow, oh]) = values.as_deref() else {
                            continue;
                        };
                        let (x, y, w, h) = rect_in_pixels((x, y, w, h), ow, oh);
                        valid = true;
                        let shape =
                            json!({"segmentation": [], "area": w * h, "bbox": [x, y, w, h]});
                        self.brush_coco_annotation(&shape, image_id, category_id, &annotator, out);
                    }
                }
            }
        }
        if self.pass == 0
            && valid
            && let Some((w, h)) = size.filter(|(w, h)| !w.is_null() && !h.is_null())
        {
            let image = json!({"id": image_id, "file_name": basename(path), "path": path, "width": w, "height": h});
            self.emit(&image, out);
        }
    }

    /// `create_tokens_and_tags`: the text's tokens, tagged `B-`/`I-` by the spans of the first
    /// Labels control that has regions, `O` elsewhere.
    fn conll(&self, item: &Item<'_>, out: &mut Vec<u8>) {
        let Some(text) = item.data.get(&self.key).and_then(Value::as_str) else {
            return;
        };
        let tokens = super::tokenize::span_tokenize(text);
        let spans: Option<&Vec<Map<String, Value>>> =
            item.outputs.iter().map(|(_, v)| v).find(|v| {
                v.first()
                    .and_then(|r| r.get("type"))
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case("labels"))
            });
        let mut tags: Vec<String> = vec!["O".to_string(); tokens.len()];
        let bounds = |s: &Map<String, Value>| Some((num(s, "start")?, num(s, "end")? - 1.0));
        if let Some(spans) =
            spans.filter(|s| !s.is_empty() && s.iter().all(|x| bounds(x).is_some()))
        {
            let mut queue: Vec<&Map<String, Value>> = spans.iter().collect();
            queue.sort_by(|a, b| {
                let (x, y) = (
                    num(a, "start").unwrap_or(0.0),
                    num(b, "start").unwrap_or(0.0),
                );
                x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal)
            });
            let mut queue = queue.into_iter();
            let mut span = queue.next();
            let (mut start, mut end) = span.and_then(bounds).unwrap_or((0.0, -1.0));
            let mut prefix = "B-";
            for (i, (token, token_start)) in tokens.iter().enumerate() {
                let token_start = *token_start as f64;
                let token_end = token_start + token.chars().count() as f64 - 1.0;
                if token_start > end {
                    for next in queue.by_ref() {
                        span = Some(next);
                        (start, end) = bounds(next).unwrap_or((0.0, -1.0));
                        prefix = "B-";
                        if token_start <= end {
                            break;
                        }
                    }
                }
                let label = span
                    .and_then(|s| s.get("labels"))
                    .and_then(Value::as_array)
                    .and_then(|l| l.first())
                    .map(|l| l.as_str().map_or_else(|| l.to_string(), str::to_string));
                let Some(label) = label else { continue };
                if token_end < start {
                    continue;
                }
                if start <= token_end && end >= token_start {
                    tags[i] = format!("{prefix}{label}");
                    prefix = "I-";
                }
            }
        }
        for ((token, _), tag) in tokens.iter().zip(tags) {
            out.extend_from_slice(format!("{token} -X- _ {tag}\n").as_bytes());
        }
        out.push(b'\n');
    }

    fn yolo(&mut self, items: &[Item<'_>], out: &mut Vec<u8>) -> Result<(), ConvertError> {
        // Files of this task by name; a later annotation of the same image replaces the file,
        // as the converter overwrites it (an annotation without regions only creates it).
        let mut files: Vec<(String, String)> = Vec::new();
        for item in items {
            let name = media_name(&media_url(item, &self.key));
            let mut label = stem(&format!("images/{name}"))
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .chars()
                .take(251)
                .collect::<String>();
            label = format!("labels/{label}.txt");
            let regions: Vec<&Map<String, Value>> = item.regions().collect();
            if regions.is_empty() {
                if !files.iter().any(|(n, _)| *n == label) {
                    files.push((label, String::new()));
                }
                continue;
            }
            let text = if self.schema.keypoints() {
                self.yolo_keypoints(&regions)
            } else {
                self.yolo_lines(&regions)
            };
            match files.iter_mut().find(|(n, _)| *n == label) {
                Some(entry) => entry.1 = text,
                None => files.push((label, text)),
            }
        }
        for (name, text) in files {
            self.zip.file(&name, text.as_bytes(), out)?;
        }
        Ok(())
    }

    fn yolo_lines(&mut self, regions: &[&Map<String, Value>]) -> String {
        let obb = self.target == Target::YoloObb;
        let mut text = String::new();
        for label in regions {
            let names: Vec<&str> = ["rectanglelabels", "polygonlabels", "labels"]
                .iter()
                .filter_map(|k| label.get(*k).and_then(Value::as_array))
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            for name in names {
                let id = self.categories.id(name);
                let values: Vec<f64> = if label.contains_key("rectanglelabels")
                    || label.contains_key("rectangle")
                    || label.contains_key("labels")
                {
                    let got = if obb {
                        yolo_obb(label)
                    } else {
                        yolo_box(label)
                    };
                    match got {
                        Some(v) => v,
                        None => continue,
                    }
                } else if label.contains_key("polygonlabels") || label.contains_key("polygon") {
                    let Some(points) = label.get("points").and_then(Value::as_array) else {
                        continue;
                    };
                    points
                        .iter()
                        .filter_map(Value::as_array)
                        .flat_map(|p| p.iter().filter_map(Value::as_f64).map(|c| c / 100.0))
                        .collect()
                } else {
                    continue;
                };
                text.push_str(&id.to_string());
                for v in values {
                    text.push(' ');
                    text.push_str(&py_float(v));
                }
                text.push('\n');
            }
        }
        text
    }

    fn yolo_keypoints(&self, regions: &[&Map<String, Value>]) -> String {
        struct Rect {
            id: Value,
            base: String,
            points: BTreeMap<String, (f64, f64)>,
        }
        let mut rects: Vec<Rect> = Vec::new();
        let tag = |r: &Map<String, Value>| {
            r.get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_ascii_lowercase()
        };
        for r in regions.iter().filter(|r| tag(r) == "rectanglelabels") {
            let Some(name) = first_label(r, &["rectanglelabels"]) else {
                continue;
            };
            let Some(class) = self.categories.get(name) else {
                continue;
            };
            let (Some(x), Some(y), Some(w), Some(h)) =
                (num(r, "x"), num(r, "y"), num(r, "width"), num(r, "height"))
            else {
                continue;
            };
            let (x, y, w, h) = (x / 100.0, y / 100.0, w / 100.0, h / 100.0);
            let base = format!(
                "{class} {} {} {} {}",
                py_float(x + w / 2.0),
                py_float(y + h / 2.0),
                py_float(w),
                py_float(h)
            );
            let id = r.get("id").cloned().unwrap_or(Value::Null);
            let rect = Rect {
                id: id.clone(),
                base,
                points: BTreeMap::new(),
            };
            match rects.iter_mut().find(|o| o.id == id) {
                Some(old) => *old = rect,
                None => rects.push(rect),
            }
        }
        for r in regions.iter().filter(|r| tag(r) == "keypointlabels") {
            let parent = r.get("parentID").cloned().unwrap_or(Value::Null);
            let Some(rect) = rects.iter_mut().find(|o| o.id == parent) else {
                continue;
            };
            let Some(name) = first_label(r, &["keypointlabels"]) else {
                continue;
            };
            let (Some(x), Some(y)) = (num(r, "x"), num(r, "y")) else {
                continue;
            };
            rect.points.insert(name.to_string(), (x / 100.0, y / 100.0));
        }
        let lines: Vec<String> = rects
            .iter()
            .map(|r| {
                let mut line = r.base.clone();
                for k in &self.kp_order {
                    match r.points.get(k) {
                        Some((x, y)) => {
                            line.push_str(&format!(" {} {} 2", py_float(*x), py_float(*y)))
                        }
                        None => line.push_str(" 0.0 0.0 0"),
                    }
                }
                line
            })
            .collect();
        lines.join("\n")
    }

    fn voc(&mut self, items: &[Item<'_>], out: &mut Vec<u8>) -> Result<(), ConvertError> {
        let mut files: Vec<(String, String)> = Vec::new();
        for item in items {
            let image = media_name(&media_url(item, &self.key));
            let regions: Vec<&Map<String, Value>> = item.regions().collect();
            let Some(first) = regions.first() else {
                continue;
            };
            let (Some(width), Some(height)) =
                (first.get("original_width"), first.get("original_height"))
            else {
                continue;
            };
            let (w, h) = (
                width.as_f64().unwrap_or(0.0),
                height.as_f64().unwrap_or(0.0),
            );
            let mut xml =
                String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<annotation>\n");
            let el = |xml: &mut String, tag: &str, text: &str| {
                xml.push_str(&format!("<{tag}>{}</{tag}>\n", xml_text(text)));
            };
            el(&mut xml, "folder", "images");
            el(&mut xml, "filename", &image);
            xml.push_str("<source>\n");
            el(&mut xml, "database", "MyDatabase");
            el(&mut xml, "annotation", "COCO2017");
            el(&mut xml, "image", "flickr");
            el(&mut xml, "flickrid", "NULL");
            el(&mut xml, "annotator", &item.annotator(""));
            xml.push_str("</source>\n<owner>\n");
            el(&mut xml, "flickrid", "NULL");
            el(&mut xml, "name", "Label Studio");
            xml.push_str("</owner>\n<size>\n");
            el(&mut xml, "width", &py_number(width));
            el(&mut xml, "height", &py_number(height));
            el(&mut xml, "depth", "3");
            xml.push_str("</size>\n");
            el(&mut xml, "segmented", "0");
            for b in &regions {
                let key = if b.contains_key("rectanglelabels") {
                    "rectanglelabels"
                } else if b.contains_key("labels") {
                    "labels"
                } else {
                    continue;
                };
                let Some(name) = first_label(b, &[key]) else {
                    continue;
                };
                let (Some(bx), Some(by), Some(bw), Some(bh)) =
                    (num(b, "x"), num(b, "y"), num(b, "width"), num(b, "height"))
                else {
                    continue;
                };
                // int(): toward zero.
                let x = (bx / 100.0 * w).trunc() as i64;
                let y = (by / 100.0 * h).trunc() as i64;
                let bw = (bw / 100.0 * w).trunc() as i64;
                let bh = (bh / 100.0 * h).trunc() as i64;
                xml.push_str("<object>\n");
                el(&mut xml, "name", name);
                el(&mut xml, "pose", "Unspecified");
                el(&mut xml, "truncated", "0");
                el(&mut xml, "difficult", "0");
                xml.push_str("<bndbox>\n");
                el(&mut xml, "xmin", &x.to_string());
                el(&mut xml, "ymin", &y.to_string());
                el(&mut xml, "xmax", &(x + bw).to_string());
                el(&mut xml, "ymax", &(y + bh).to_string());
                xml.push_str("</bndbox>\n</object>\n");
            }
            xml.push_str("</annotation>\n");
            let name = format!("Annotations/{}.xml", stem(&image));
            match files.iter_mut().find(|(n, _)| *n == name) {
                Some(entry) => entry.1 = xml,
                None => files.push((name, xml)),
            }
        }
        for (name, xml) in files {
            self.zip.file(&name, xml.as_bytes(), out)?;
        }
        Ok(())
    }

    fn coco_image(
        &mut self,
        id: i64,
        width: Option<&Value>,
        height: Option<&Value>,
        path: &str,
        out: &mut Vec<u8>,
    ) {
        self.images += 1;
        if self.pass != 0 {
            return;
        }
        let image = json!({"width": width.cloned().unwrap_or(Value::Null), "height": height.cloned().unwrap_or(Value::Null), "id": id, "file_name": path});
        self.emit(&image, out);
    }

    fn emit(&mut self, value: &Value, out: &mut Vec<u8>) {
        let mut bytes = Vec::new();
        if !self.first {
            bytes.extend_from_slice(b", ");
        }
        self.first = false;
        let _ = serde_json::to_writer(&mut bytes, value);
        self.zip.write(&bytes, out);
    }

    fn coco_annotation(&mut self, annotation: Value, out: &mut Vec<u8>) {
        self.annotations += 1;
        if self.pass == 1 {
            self.emit(&annotation, out);
        }
    }

    fn coco(&mut self, item: &Item<'_>, out: &mut Vec<u8>) {
        let path = format!("images/{}", media_name(&media_url(item, &self.key)));
        let image_id = self.images;
        let regions: Vec<&Map<String, Value>> = item.regions().collect();
        let mut size: Option<(f64, f64)> = None;
        // With the images the converter reads each image's size from the file itself.
        if let Some(&(w, h)) = self.sizes.get(&path) {
            self.coco_image(image_id, Some(&json!(w)), Some(&json!(h)), &path, out);
            size = Some((f64::from(w), f64::from(h)));
        }
        if item.outputs.is_empty() {
            if size.is_none() {
                self.coco_image(image_id, None, None, &path, out);
            }
            return;
        }
        let mut keypoints: Vec<&Map<String, Value>> = Vec::new();
        for label in regions {
            let Some(category) = first_label(
                label,
                &[
                    "rectanglelabels",
                    "polygonlabels",
                    "keypointlabels",
                    "labels",
                ],
            ) else {
                continue;
            };
            if size.is_none_or(|(w, h)| w == 0.0 || h == 0.0) {
                let (Some(w), Some(h)) =
                    (label.get("original_width"), label.get("original_height"))
                else {
                    continue;
                };
                size = Some((w.as_f64().unwrap_or(0.0), h.as_f64().unwrap_or(0.0)));
                self.coco_image(image_id, Some(w), Some(h), &path, out);
            }
            let (width, height) = size.unwrap_or_default();
            let category_id = self.categories.id(category);
            let id = self.annotations;
            if label.contains_key("rectanglelabels") || label.contains_key("labels") {
                let Some((x, y, w, h)) = rotated_rectangle(label) else {
                    continue;
                };
                let (Some(ow), Some(oh)) =
                    (num(label, "original_width"), num(label, "original_height"))
                else {
                    continue;
                };
                let (x, y, w, h) = rect_in_pixels((x, y, w, h), ow, oh);
                self.coco_annotation(
                    json!({"id": id, "image_id": image_id, "category_id": category_id, "segmentation": [], "bbox": [x, y, w, h], "ignore": 0, "iscrowd": 0, "area": w * h}),
                    out,
                );
            } else if label.contains_key("polygonlabels") {
                let points: Vec<(f64, f64)> = label
                    .get("points")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|p| {
                        let p = p.as_array()?;
                        Some((
                            p.first()?.as_f64()? / 100.0 * width,
                            p.get(1)?.as_f64()? / 100.0 * height,
                        ))
                    })
                    .collect();
                if points.is_empty() {
                    continue;
                }
                let xs: Vec<f64> = points.iter().map(|p| p.0).collect();
                let ys: Vec<f64> = points.iter().map(|p| p.1).collect();
                let (x1, y1) = (
                    xs.iter().copied().fold(f64::INFINITY, f64::min),
                    ys.iter().copied().fold(f64::INFINITY, f64::min),
                );
                let (x2, y2) = (
                    xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    ys.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                );
                // Shoelace formula, with numpy.roll's shift by one.
                let n = xs.len();
                let (mut a, mut b) = (0.0, 0.0);
                for i in 0..n {
                    let prev = (i + n - 1) % n;
                    a += xs[i] * ys[prev];
                    b += ys[i] * xs[prev];
                }
                let segmentation: Vec<f64> = points.iter().flat_map(|p| [p.0, p.1]).collect();
                self.coco_annotation(
                    json!({"id": id, "image_id": image_id, "category_id": category_id, "segmentation": [segmentation], "bbox": [x1, y1, x2 - x1, y2 - y1], "ignore": 0, "iscrowd": 0, "area": 0.5 * (a - b).abs()}),
                    out,
                );
            } else if label.contains_key("keypointlabels") {
                keypoints.push(label);
            }
        }
        if !keypoints.is_empty() && !self.kp_order.is_empty() {
            let n = self.kp_order.len();
            let mut kp = vec![0i64; n * 3];
            for point in &keypoints {
                let (ow, oh) = (
                    num(point, "original_width").unwrap_or(0.0),
                    num(point, "original_height").unwrap_or(0.0),
                );
                let (x, y) = (
                    num(point, "x").unwrap_or(0.0) / 100.0 * ow,
                    num(point, "y").unwrap_or(0.0) / 100.0 * oh,
                );
                let labels: Vec<&str> = point
                    .get("keypointlabels")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let v = if labels.is_empty() { 0 } else { 2 };
                for l in labels {
                    if let Some(i) = self.kp_order.iter().position(|k| k == l) {
                        // Python's round(): halves to even.
                        kp[3 * i] = x.round_ties_even() as i64;
                        kp[3 * i + 1] = y.round_ties_even() as i64;
                        kp[3 * i + 2] = v;
                    }
                }
            }
            let visible: Vec<usize> = (0..n).filter(|i| kp[3 * i + 2] > 0).collect();
            let bbox = if visible.is_empty() {
                vec![0, 0, 0, 0]
            } else {
                let xs: Vec<i64> = visible.iter().map(|i| kp[3 * i]).collect();
                let ys: Vec<i64> = visible.iter().map(|i| kp[3 * i + 1]).collect();
                let (x1, x2) = (
                    *xs.iter().min().unwrap_or(&0),
                    *xs.iter().max().unwrap_or(&0),
                );
                let (y1, y2) = (
                    *ys.iter().min().unwrap_or(&0),
                    *ys.iter().max().unwrap_or(&0),
                );
                vec![x1, y1, x2 - x1, y2 - y1]
            };
            let category_id = self.categories.get(&self.kp_order[0]).unwrap_or(0);
            let id = self.annotations;
            self.coco_annotation(
                json!({"id": id, "image_id": image_id, "category_id": category_id, "keypoints": kp, "num_keypoints": visible.len(), "bbox": bbox, "iscrowd": 0}),
                out,
            );
        }
    }
}

/// BRUSH_TO_COCO: the outer contours of a brush region's mask with at least three corners, as
/// COCO shapes (`segmentation`, `bbox`, `area` truncated to a whole number); none when the RLE
/// does not decode to the region's size.
fn traced_brush(region: &Map<String, Value>) -> Vec<Value> {
    let (Some(width), Some(height)) = (
        region.get("original_width").and_then(Value::as_u64),
        region.get("original_height").and_then(Value::as_u64),
    ) else {
        return Vec::new();
    };
    let bytes: Vec<u8> = match region.get("rle") {
        Some(Value::Array(list)) => list.iter().map(|b| b.as_u64().unwrap_or(0) as u8).collect(),
        _ => return Vec::new(),
    };
    let Ok(mask) = super::brush::decode_alpha(&bytes, width, height) else {
        return Vec::new();
    };
    let (Ok(w), Ok(h)) = (usize::try_from(width), usize::try_from(height)) else {
        return Vec::new();
    };
    super::contours::outer_contours(&mask, w, h)
        .into_iter()
        .filter(|c| c.len() >= 3)
        .map(|c| {
            let flat: Vec<i64> = c.iter().flat_map(|&(x, y)| [x, y]).collect();
            let area = super::contours::polygon_area(&c).trunc() as i64;
            json!({"segmentation": [flat], "bbox": super::contours::bounding_rect(&c), "area": area})
        })
        .collect()
}

/// BRUSH_TO_COCO: a polygon region's points in pixels rounded as Python rounds (halves to
/// even), with OpenCV's box and area of them; `None` when a point is not a pair of numbers.
fn rounded_polygon(region: &Map<String, Value>) -> Option<Value> {
    let (ow, oh) = (
        num(region, "original_width")?,
        num(region, "original_height")?,
    );
    let points: Vec<(i64, i64)> = region
        .get("points")?
        .as_array()?
        .iter()
        .map(|p| match p.as_array().map(Vec::as_slice) {
            Some([x, y]) => Some((
                (x.as_f64()? * ow / 100.0).round_ties_even() as i64,
                (y.as_f64()? * oh / 100.0).round_ties_even() as i64,
            )),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let flat: Vec<i64> = points.iter().flat_map(|&(x, y)| [x, y]).collect();
    let area = super::contours::polygon_area(&points).trunc() as i64;
    Some(
        json!({"segmentation": [flat], "bbox": super::contours::bounding_rect(&points), "area": area}),
    )
}

/// A category's colour for BRUSH_TO_COCO: Label Studio draws a random one; this is stable for
/// a label (the first three bytes of its MD5).
fn label_colour(name: &str) -> String {
    let digest = md5::Digest::finalize(md5::Digest::chain_update(
        md5::Md5::default(),
        name.as_bytes(),
    ));
    format!("#{}", hex::encode(&digest[..3]))
}

fn labels_of(schema: &Schema, tag: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in schema.controls.iter().filter(|c| c.tag == tag) {
        for (l, _) in &c.labels {
            if !out.contains(l) {
                out.push(l.clone());
            }
        }
    }
    out
}

fn yolo_box(label: &Map<String, Value>) -> Option<Vec<f64>> {
    let (x, y, w, h) = (
        num(label, "x")?,
        num(label, "y")?,
        num(label, "width")?,
        num(label, "height")?,
    );
    Some(vec![
        (x + w / 2.0) / 100.0,
        (y + h / 2.0) / 100.0,
        w / 100.0,
        h / 100.0,
    ])
}

fn yolo_obb(label: &Map<String, Value>) -> Option<Vec<f64>> {
    let ow = num(label, "original_width")?;
    let oh = num(label, "original_height")?;
    let x = num(label, "x")? / 100.0 * ow;
    let y = num(label, "y")? / 100.0 * oh;
    let w = num(label, "width")? / 100.0 * ow;
    let h = num(label, "height")? / 100.0 * oh;
    let r = num(label, "rotation")?.to_radians();
    let (cos, sin) = (r.cos(), r.sin());
    let corners = [
        (x, y),
        (x + w * cos, y + w * sin),
        (x + w * cos - h * sin, y + w * sin + h * cos),
        (x - h * sin, y + h * cos),
    ];
    Some(corners.iter().flat_map(|(a, b)| [a / ow, b / oh]).collect())
}

fn xml_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_python_does() {
        for (v, s) in [
            (0.25, "0.25"),
            (1.0, "1.0"),
            (0.00001, "1e-05"),
            (0.0001, "0.0001"),
            (123.456, "123.456"),
            (1e16, "1e+16"),
            (-0.5, "-0.5"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1234567890123456.0, "1234567890123456.0"),
        ] {
            assert_eq!(py_float(v), s);
        }
    }

    #[test]
    fn media_names_follow_the_converter_cache() {
        assert_eq!(
            media_name("http://example.com/a/img1.jpg?x=1"),
            "e593e8b2__img1.jpg"
        );
        assert_eq!(stem("e593e8b2__img1.jpg"), "e593e8b2__img1");
    }

    #[test]
    fn manifest_lines_are_written_as_python_does() {
        assert_eq!(
            py_json_str("a \"b\"\\ \u{7f}\né 😀"),
            r#""a \"b\"\\ \u007f\n\u00e9 \ud83d\ude00""#
        );
        assert_eq!(
            audio_entry("/data/upload/3/ab12-x%20y.wav"),
            "audio/ab12-x y.wav"
        );
        assert_eq!(
            audio_entry("/data/local-files/?d=rec%2Fday%201%2Fa.wav"),
            "audio/a.wav"
        );
        assert_eq!(
            audio_entry("https://cdn.example.com/a/b%20c.wav?sig=1"),
            "audio/b%20c.wav"
        );
        let config = r#"<View><Audio name="audio" value="$audio"/><TextArea name="transcription" toName="audio"/></View>"#;
        let mut conv = Converter::new(Target::AsrManifest, config, (2026, 1, 2, 3, 4, 5)).unwrap();
        let task = json!({"id": 1, "data": {"audio": "/data/upload/1/x.wav"}, "annotations": [
            {"id": 2, "completed_by": 7, "created_at": "b", "result": [
                {"from_name": "transcription", "to_name": "audio", "type": "textarea", "value": {"text": ["héllo"]}}]},
            {"id": 3, "completed_by": {"email": "a@b.c"}, "created_at": "a", "result": []}]});
        assert_eq!(
            conv.media_url(&task).as_deref(),
            Some("/data/upload/1/x.wav")
        );
        let mut out = Vec::new();
        conv.start(0, &mut out).unwrap();
        let head = out.len();
        conv.task_with_duration(&task, Some(1.5), &mut out).unwrap();
        conv.task(&task, &mut out).unwrap();
        let text = String::from_utf8_lossy(&out[head..]).to_string();
        assert_eq!(
            text,
            "{\"audio_filepath\": \"audio/x.wav\", \"duration\": 1.5, \"text\": \"h\\u00e9llo\", \"annotator\": \"7\"}\n\
             {\"audio_filepath\": \"audio/x.wav\", \"duration\": null, \"text\": \"h\\u00e9llo\", \"annotator\": \"7\"}\n"
        );
    }

    #[test]
    fn categories_put_explicit_ids_first() {
        let s = Schema::parse(
            r#"<View><Image name="i" value="$image"/><RectangleLabels name="l" toName="i"><Label value="Car"/><Label value="Airplane" category="7"/><Label value="Bus"/></RectangleLabels></View>"#,
        );
        assert_eq!(
            s.categories(),
            vec![(7, "Airplane".into()), (0, "Bus".into()), (1, "Car".into())]
        );
        assert!(s.fits(Target::Yolo).is_ok());
        assert!(Schema::parse(r#"<View><Text name="t" value="$text"/><Choices name="c" toName="t"><Choice value="a"/></Choices></View>"#).fits(Target::Yolo).is_err());
    }
}
