//! Agreement between annotations, per control tag (ADR 0025).
//!
//! Pure functions: two annotations' `result` arrays restricted to one control give a score
//! in [0, 1]; a task's agreement is the mean over annotation pairs of the weighted mean over
//! controls (`control_weights`); chance-corrected statistics (Cohen's and Fleiss' kappa,
//! Krippendorff's alpha) are computed per control over a project's ratings.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::{ControlTag, LabelConfig};

/// Keypoints closer than this (in percent of the image) still agree partly; the score falls
/// linearly from 1 at distance 0 to 0 at this distance.
pub const KEYPOINT_TOLERANCE: f64 = 5.0;

/// Scoring options for region controls.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Params {
    /// `None`: the mean over regions of each region's best overlap (IoU) with a region of the
    /// same label on the other side. `Some(t)`: F1 of a one-to-one matching of regions of the
    /// same label whose overlap is at least `t`.
    pub iou_threshold: Option<f64>,
}

/// A control's weights from a project's `control_weights` (overall and per label).
#[derive(Debug, Clone, PartialEq)]
pub struct ControlWeight {
    pub overall: f64,
    pub labels: BTreeMap<String, f64>,
}

impl ControlWeight {
    fn label(&self, label: &str) -> f64 {
        self.labels.get(label).copied().unwrap_or(1.0)
    }
}

/// Reads `control_weights` (`{name: {"overall": w, "labels": {label: w}}}`); a control that
/// is absent weighs 1 overall and 1 per label.
pub fn control_weight(weights: &Map<String, Value>, control: &str) -> ControlWeight {
    let entry = weights.get(control).and_then(Value::as_object);
    let overall = entry
        .and_then(|e| e.get("overall"))
        .and_then(Value::as_f64)
        .unwrap_or(1.0);
    let labels = entry
        .and_then(|e| e.get("labels"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    ControlWeight { overall, labels }
}

/// How a control's results are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The chosen values must be the same (Choices, Taxonomy, Rating, Number, DateTime, and
    /// every tag without a finer metric).
    ExactMatch,
    /// Region overlap (IoU) of boxes and polygons, regions matched by label.
    Area,
    /// 1-D overlap of spans (`start`/`end` offsets), spans matched by label.
    Span,
    /// Distance of keypoints, matched by label.
    KeyPoint,
    /// 1 − normalized edit distance of the text.
    Text,
}

/// The metric a control tag is scored with.
pub fn method_for(tag: &str) -> Method {
    match tag {
        "RectangleLabels" | "Rectangle" | "PolygonLabels" | "Polygon" => Method::Area,
        "Labels" | "HyperTextLabels" | "TimeSeriesLabels" => Method::Span,
        "KeyPointLabels" | "KeyPoint" => Method::KeyPoint,
        "TextArea" => Method::Text,
        _ => Method::ExactMatch,
    }
}

/// One control's score for a pair of annotations, and how much it weighs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub score: f64,
    pub weight: f64,
}

/// Scores two annotations' items of one control (`a` and `b` hold only that control's items).
/// `None` when every label involved weighs 0 (the control does not count for this pair).
pub fn control_agreement(
    control: &ControlTag,
    weight: &ControlWeight,
    params: Params,
    a: &[&Value],
    b: &[&Value],
) -> Option<Scored> {
    if weight.overall <= 0.0 {
        return None;
    }
    if a.is_empty() && b.is_empty() {
        return Some(Scored {
            score: 1.0,
            weight: weight.overall,
        });
    }
    match method_for(&control.tag) {
        Method::ExactMatch => {
            let labels: BTreeSet<String> = a.iter().chain(b).flat_map(|i| item_labels(i)).collect();
            let label_weight = if labels.is_empty() {
                1.0
            } else {
                labels.iter().map(|l| weight.label(l)).sum::<f64>() / labels.len() as f64
            };
            if label_weight <= 0.0 {
                return None;
            }
            let score = if exact_key(a) == exact_key(b) {
                1.0
            } else {
                0.0
            };
            Some(Scored {
                score,
                weight: weight.overall * label_weight,
            })
        }
        Method::Text => {
            let score = strsim::normalized_levenshtein(&text_of(a), &text_of(b));
            Some(Scored {
                score,
                weight: weight.overall,
            })
        }
        method => {
            let ra: Vec<Region> = a.iter().filter_map(|i| region(method, i)).collect();
            let rb: Vec<Region> = b.iter().filter_map(|i| region(method, i)).collect();
            let score = region_agreement(&ra, &rb, weight, params)?;
            Some(Scored {
                score,
                weight: weight.overall,
            })
        }
    }
}

/// Agreement of two whole annotations: the weighted mean over the config's controls.
/// `None` when no control counts (every weight 0, or a config without controls).
pub fn pair_agreement(
    config: &LabelConfig,
    weights: &Map<String, Value>,
    params: Params,
    a: &Value,
    b: &Value,
) -> Option<f64> {
    let (mut sum, mut total) = (0.0, 0.0);
    for control in config.controls() {
        let w = control_weight(weights, &control.name);
        let ia = items_of(a, &control.name);
        let ib = items_of(b, &control.name);
        if let Some(s) = control_agreement(control, &w, params, &ia, &ib) {
            sum += s.score * s.weight;
            total += s.weight;
        }
    }
    (total > 0.0).then(|| sum / total)
}

/// A task's agreement: the mean of [`pair_agreement`] over every pair of its annotations.
/// `None` with fewer than two annotations.
pub fn task_agreement(
    config: &LabelConfig,
    weights: &Map<String, Value>,
    params: Params,
    results: &[&Value],
) -> Option<f64> {
    let mut scores = Vec::new();
    for i in 0..results.len() {
        for j in i + 1..results.len() {
            if let Some(s) = pair_agreement(config, weights, params, results[i], results[j]) {
                scores.push(s);
            }
        }
    }
    (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64)
}

/// The items of a `result` array written by control `name`.
pub fn items_of<'a>(result: &'a Value, name: &str) -> Vec<&'a Value> {
    result
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|i| i.get("from_name").and_then(Value::as_str) == Some(name))
                .collect()
        })
        .unwrap_or_default()
}

/// Labels an item carries (`value.<type>`, or `value.labels`).
fn item_labels(item: &Value) -> Vec<String> {
    let Some(value) = item.get("value").and_then(Value::as_object) else {
        return Vec::new();
    };
    let ty = item.get("type").and_then(Value::as_str).unwrap_or("");
    let list = value
        .get(ty)
        .or_else(|| value.get("labels"))
        .and_then(Value::as_array);
    match list {
        Some(l) => l
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        None => Vec::new(),
    }
}

/// A canonical form of an item's value: lists are compared as sets, numbers by value.
fn canonical(value: &Value) -> String {
    match value {
        Value::Array(items) => {
            let mut parts: Vec<String> = items.iter().map(canonical).collect();
            parts.sort();
            parts.dedup();
            format!("[{}]", parts.join(","))
        }
        Value::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k:?}:{}", canonical(v)))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Number(n) => match n.as_f64() {
            Some(f) => format!("{f:?}"),
            None => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn exact_key(items: &[&Value]) -> Vec<String> {
    let mut keys: Vec<String> = items
        .iter()
        .map(|i| canonical(i.get("value").unwrap_or(&Value::Null)))
        .collect();
    keys.sort();
    keys
}

fn text_of(items: &[&Value]) -> String {
    let mut lines = Vec::new();
    for item in items {
        match item.get("value").and_then(|v| v.get("text")) {
            Some(Value::Array(parts)) => lines.extend(parts.iter().filter_map(Value::as_str)),
            Some(Value::String(s)) => lines.push(s.as_str()),
            _ => {}
        }
    }
    lines.join("\n")
}

/// A region's geometry.
#[derive(Debug, Clone, PartialEq)]
enum Shape {
    /// A simple polygon's vertices.
    Polygon(Vec<(f64, f64)>),
    Span(f64, f64),
    Point(f64, f64),
}

#[derive(Debug, Clone, PartialEq)]
struct Region {
    label: String,
    shape: Shape,
}

fn num(value: &Map<String, Value>, key: &str) -> Option<f64> {
    value.get(key).and_then(Value::as_f64)
}

fn region(method: Method, item: &Value) -> Option<Region> {
    let value = item.get("value")?.as_object()?;
    let label = item_labels(item).into_iter().next().unwrap_or_default();
    let shape = match method {
        Method::Area => {
            if let Some(points) = value.get("points").and_then(Value::as_array) {
                let pts: Option<Vec<(f64, f64)>> = points
                    .iter()
                    .map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?.as_f64()?)))
                    .collect();
                Shape::Polygon(pts?)
            } else {
                Shape::Polygon(rectangle(item, value)?)
            }
        }
        Method::Span => {
            let offsets = value.get("globalOffsets").and_then(Value::as_object);
            let source = offsets.unwrap_or(value);
            Shape::Span(num(source, "start")?, num(source, "end")?)
        }
        Method::KeyPoint => Shape::Point(num(value, "x")?, num(value, "y")?),
        Method::ExactMatch | Method::Text => return None,
    };
    Some(Region { label, shape })
}

/// A rectangle's corners. With a rotation (degrees, clockwise about the top-left corner, as
/// the editor draws it) the corners are rotated in pixel space when the item carries
/// `original_width`/`original_height`, in percent space otherwise; IoU does not depend on
/// the unit, only the rotation does.
fn rectangle(item: &Value, value: &Map<String, Value>) -> Option<Vec<(f64, f64)>> {
    let (x, y) = (num(value, "x")?, num(value, "y")?);
    let (w, h) = (num(value, "width")?, num(value, "height")?);
    let rotation = num(value, "rotation").unwrap_or(0.0);
    let sx = item
        .get("original_width")
        .and_then(Value::as_f64)
        .filter(|v| *v > 0.0)
        .unwrap_or(100.0)
        / 100.0;
    let sy = item
        .get("original_height")
        .and_then(Value::as_f64)
        .filter(|v| *v > 0.0)
        .unwrap_or(100.0)
        / 100.0;
    let (px, py, pw, ph) = (x * sx, y * sy, w * sx, h * sy);
    let (sin, cos) = rotation.to_radians().sin_cos();
    let corners = [(0.0, 0.0), (pw, 0.0), (pw, ph), (0.0, ph)];
    Some(
        corners
            .iter()
            .map(|(dx, dy)| (px + dx * cos - dy * sin, py + dx * sin + dy * cos))
            .collect(),
    )
}

/// Overlap of two shapes in [0, 1] (IoU for areas and spans, a distance score for points).
fn overlap(a: &Shape, b: &Shape) -> f64 {
    match (a, b) {
        (Shape::Polygon(p), Shape::Polygon(q)) => polygon_iou(p, q),
        (Shape::Span(s1, e1), Shape::Span(s2, e2)) => {
            let (s1, e1) = (s1.min(*e1), s1.max(*e1));
            let (s2, e2) = (s2.min(*e2), s2.max(*e2));
            let inter = (e1.min(e2) - s1.max(s2)).max(0.0);
            let union = (e1.max(e2) - s1.min(s2)).max(0.0);
            if union > 0.0 {
                inter / union
            } else if s1 == s2 {
                1.0
            } else {
                0.0
            }
        }
        (Shape::Point(x1, y1), Shape::Point(x2, y2)) => {
            let d = ((x1 - x2).powi(2) + (y1 - y2).powi(2)).sqrt();
            (1.0 - d / KEYPOINT_TOLERANCE).max(0.0)
        }
        _ => 0.0,
    }
}

/// Region score of two region lists; `None` when every region weighs 0.
fn region_agreement(
    a: &[Region],
    b: &[Region],
    weight: &ControlWeight,
    params: Params,
) -> Option<f64> {
    if a.is_empty() && b.is_empty() {
        return Some(1.0);
    }
    match params.iou_threshold {
        None => {
            let (mut sum, mut total) = (0.0, 0.0);
            for (mine, theirs) in [(a, b), (b, a)] {
                for r in mine {
                    let w = weight.label(&r.label);
                    let best = theirs
                        .iter()
                        .filter(|o| o.label == r.label)
                        .map(|o| overlap(&r.shape, &o.shape))
                        .fold(0.0, f64::max);
                    sum += w * best;
                    total += w;
                }
            }
            (total > 0.0).then(|| sum / total)
        }
        Some(t) => {
            let m = match_regions(a, b, t, weight);
            m.f1()
        }
    }
}

/// Precision, recall and F1 of a candidate against a reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prf {
    pub true_positives: f64,
    pub false_positives: f64,
    pub false_negatives: f64,
}

impl Prf {
    pub fn precision(&self) -> Option<f64> {
        let d = self.true_positives + self.false_positives;
        (d > 0.0).then(|| self.true_positives / d)
    }

    pub fn recall(&self) -> Option<f64> {
        let d = self.true_positives + self.false_negatives;
        (d > 0.0).then(|| self.true_positives / d)
    }

    /// 2TP / (2TP + FP + FN); 1 when both sides are empty, `None` when nothing weighs.
    pub fn f1(&self) -> Option<f64> {
        let d = 2.0 * self.true_positives + self.false_positives + self.false_negatives;
        (d > 0.0).then(|| 2.0 * self.true_positives / d)
    }
}

/// One-to-one matching of regions with the same label, best overlaps first, overlap ≥ `t`.
/// Counts are label-weighted.
fn match_regions(
    candidate: &[Region],
    reference: &[Region],
    t: f64,
    weight: &ControlWeight,
) -> Prf {
    let mut pairs = Vec::new();
    for (i, c) in candidate.iter().enumerate() {
        for (j, r) in reference.iter().enumerate() {
            if c.label == r.label {
                let o = overlap(&c.shape, &r.shape);
                if o >= t && o > 0.0 {
                    pairs.push((o, i, j));
                }
            }
        }
    }
    pairs.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    let mut used_c = vec![false; candidate.len()];
    let mut used_r = vec![false; reference.len()];
    let mut tp = 0.0;
    for (_, i, j) in pairs {
        if !used_c[i] && !used_r[j] {
            used_c[i] = true;
            used_r[j] = true;
            tp += weight.label(&candidate[i].label);
        }
    }
    let fp = candidate
        .iter()
        .zip(&used_c)
        .filter(|(_, u)| !**u)
        .map(|(r, _)| weight.label(&r.label))
        .sum();
    let fn_ = reference
        .iter()
        .zip(&used_r)
        .filter(|(_, u)| !**u)
        .map(|(r, _)| weight.label(&r.label))
        .sum();
    Prf {
        true_positives: tp,
        false_positives: fp,
        false_negatives: fn_,
    }
}

/// Precision/recall/F1 of `candidate` against a ground-truth annotation, for one control:
/// classification controls by chosen label, region controls by matched regions (same label,
/// overlap ≥ `threshold`).
pub fn against_ground_truth(
    control: &ControlTag,
    weight: &ControlWeight,
    ground_truth: &[&Value],
    candidate: &[&Value],
    threshold: f64,
) -> Prf {
    match method_for(&control.tag) {
        Method::Area | Method::Span | Method::KeyPoint => {
            let method = method_for(&control.tag);
            let c: Vec<Region> = candidate.iter().filter_map(|i| region(method, i)).collect();
            let g: Vec<Region> = ground_truth
                .iter()
                .filter_map(|i| region(method, i))
                .collect();
            match_regions(&c, &g, threshold, weight)
        }
        Method::ExactMatch | Method::Text => {
            let c: BTreeSet<String> = candidate.iter().flat_map(|i| item_labels(i)).collect();
            let g: BTreeSet<String> = ground_truth.iter().flat_map(|i| item_labels(i)).collect();
            let sum = |s: &mut dyn Iterator<Item = &String>| s.map(|l| weight.label(l)).sum();
            Prf {
                true_positives: sum(&mut c.intersection(&g)),
                false_positives: sum(&mut c.difference(&g)),
                false_negatives: sum(&mut g.difference(&c)),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Polygon intersection.
//
// The area of A ∩ B is the boundary integral ∮ x dy over ∂(A ∩ B), which is made of the
// pieces of A's edges inside B and of B's edges inside A (both walked counter-clockwise).
// Each edge is cut where it crosses the other polygon's edges; each piece is kept when its
// midpoint lies inside the other polygon. A piece lying on the other polygon's boundary
// (shared edges) is kept once: from A when both edges run the same way, never from B.
// This is exact up to floating-point rounding for any simple polygon, convex or not.
// ---------------------------------------------------------------------------------------

type Pt = (f64, f64);

fn signed_area(p: &[Pt]) -> f64 {
    let n = p.len();
    (0..n)
        .map(|i| {
            let (a, b) = (p[i], p[(i + 1) % n]);
            a.0 * b.1 - b.0 * a.1
        })
        .sum::<f64>()
        / 2.0
}

fn ccw(p: &[Pt]) -> Vec<Pt> {
    let mut v = p.to_vec();
    if signed_area(&v) < 0.0 {
        v.reverse();
    }
    v
}

fn cross(o: Pt, a: Pt, b: Pt) -> f64 {
    (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
}

/// Where on segment p→q (parameter in (0, 1)) it crosses segment r→s, if it does.
fn crossing(p: Pt, q: Pt, r: Pt, s: Pt) -> Option<f64> {
    let d = (q.0 - p.0) * (s.1 - r.1) - (q.1 - p.1) * (s.0 - r.0);
    if d == 0.0 {
        return None;
    }
    let t = ((r.0 - p.0) * (s.1 - r.1) - (r.1 - p.1) * (s.0 - r.0)) / d;
    let u = ((r.0 - p.0) * (q.1 - p.1) - (r.1 - p.1) * (q.0 - p.0)) / d;
    ((0.0..=1.0).contains(&u) && t > 0.0 && t < 1.0).then_some(t)
}

enum Where {
    Inside,
    Outside,
    /// On an edge of the polygon running the same (`true`) or the opposite way.
    OnEdge(bool),
}

fn locate(pt: Pt, dir: Pt, poly: &[Pt], eps: f64) -> Where {
    let n = poly.len();
    for i in 0..n {
        let (a, b) = (poly[i], poly[(i + 1) % n]);
        let len = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
        if len == 0.0 {
            continue;
        }
        let dist = cross(a, b, pt).abs() / len;
        let along = ((pt.0 - a.0) * (b.0 - a.0) + (pt.1 - a.1) * (b.1 - a.1)) / (len * len);
        if dist <= eps && (0.0..=1.0).contains(&along) {
            let same = dir.0 * (b.0 - a.0) + dir.1 * (b.1 - a.1) > 0.0;
            return Where::OnEdge(same);
        }
    }
    let mut inside = false;
    for i in 0..n {
        let (a, b) = (poly[i], poly[(i + 1) % n]);
        if (a.1 > pt.1) != (b.1 > pt.1) {
            let x = a.0 + (pt.1 - a.1) * (b.0 - a.0) / (b.1 - a.1);
            if pt.0 < x {
                inside = !inside;
            }
        }
    }
    if inside {
        Where::Inside
    } else {
        Where::Outside
    }
}

/// ∮ x dy over the pieces of `p`'s edges inside `q`.
fn boundary_inside(p: &[Pt], q: &[Pt], keep_shared: bool, eps: f64) -> f64 {
    let n = p.len();
    let mut sum = 0.0;
    for i in 0..n {
        let (a, b) = (p[i], p[(i + 1) % n]);
        let mut cuts = vec![0.0, 1.0];
        for j in 0..q.len() {
            if let Some(t) = crossing(a, b, q[j], q[(j + 1) % q.len()]) {
                cuts.push(t);
            }
        }
        // Vertices of q lying on this edge also cut it (touching and shared edges).
        for &v in q {
            let len2 = (b.0 - a.0).powi(2) + (b.1 - a.1).powi(2);
            if len2 == 0.0 {
                continue;
            }
            let t = ((v.0 - a.0) * (b.0 - a.0) + (v.1 - a.1) * (b.1 - a.1)) / len2;
            if t > 0.0 && t < 1.0 && cross(a, b, v).abs() / len2.sqrt() <= eps {
                cuts.push(t);
            }
        }
        cuts.sort_by(f64::total_cmp);
        let dir = (b.0 - a.0, b.1 - a.1);
        for w in cuts.windows(2) {
            let (t0, t1) = (w[0], w[1]);
            if t1 - t0 <= 0.0 {
                continue;
            }
            let s = (a.0 + dir.0 * t0, a.1 + dir.1 * t0);
            let e = (a.0 + dir.0 * t1, a.1 + dir.1 * t1);
            let mid = ((s.0 + e.0) / 2.0, (s.1 + e.1) / 2.0);
            let keep = match locate(mid, dir, q, eps) {
                Where::Inside => true,
                Where::Outside => false,
                Where::OnEdge(same) => keep_shared && same,
            };
            if keep {
                sum += (s.0 * e.1 - e.0 * s.1) / 2.0;
            }
        }
    }
    sum
}

/// Area of the intersection of two simple polygons (convex or not).
pub fn polygon_intersection_area(p: &[Pt], q: &[Pt]) -> f64 {
    if p.len() < 3 || q.len() < 3 {
        return 0.0;
    }
    let (p, q) = (ccw(p), ccw(q));
    let scale = p
        .iter()
        .chain(&q)
        .flat_map(|(x, y)| [x.abs(), y.abs()])
        .fold(1.0, f64::max);
    let eps = scale * 1e-12;
    let area = boundary_inside(&p, &q, true, eps) + boundary_inside(&q, &p, false, eps);
    area.max(0.0)
}

/// Intersection over union of two simple polygons.
pub fn polygon_iou(p: &[Pt], q: &[Pt]) -> f64 {
    if p == q && p.len() >= 3 && signed_area(p) != 0.0 {
        // The same region copied: exactly 1, not 1 − rounding.
        return 1.0;
    }
    let (ap, aq) = (signed_area(p).abs(), signed_area(q).abs());
    let inter = polygon_intersection_area(p, q).min(ap.min(aq));
    let union = ap + aq - inter;
    if union > 0.0 {
        (inter / union).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

// ---------------------------------------------------------------------------------------
// Chance-corrected statistics over a project.
// ---------------------------------------------------------------------------------------

/// A statistic, or why it is undefined.
#[derive(Debug, Clone, PartialEq)]
pub enum Stat {
    Value(f64),
    Undefined(String),
}

impl Stat {
    pub fn value(&self) -> Option<f64> {
        match self {
            Stat::Value(v) => Some(*v),
            Stat::Undefined(_) => None,
        }
    }
}

/// One rating: a rater's value for an item. `number` is set for numeric controls.
#[derive(Debug, Clone, PartialEq)]
pub struct Rating {
    pub item: i64,
    pub rater: i64,
    pub category: String,
    pub number: Option<f64>,
}

/// A control's category for one annotation: the chosen value(s) in canonical form, and the
/// number for Rating/Number controls. `None` when the annotation has no item of the control.
pub fn rating_value(control: &ControlTag, items: &[&Value]) -> Option<(String, Option<f64>)> {
    if items.is_empty() {
        return None;
    }
    let number = match control.tag.as_str() {
        "Rating" | "Number" => {
            let key = control.tag.to_ascii_lowercase();
            items[0]
                .get("value")
                .and_then(|v| v.get(&key))
                .and_then(Value::as_f64)
        }
        _ => None,
    };
    if let Some(n) = number {
        return Some((format!("{n:?}"), Some(n)));
    }
    let labels: BTreeSet<String> = items.iter().flat_map(|i| item_labels(i)).collect();
    if !labels.is_empty() {
        return Some((labels.into_iter().collect::<Vec<_>>().join("|"), None));
    }
    Some((exact_key(items).join("|"), None))
}

/// Cohen's kappa of two raters over the items both rated.
pub fn cohen_kappa(pairs: &[(&str, &str)]) -> Stat {
    if pairs.is_empty() {
        return Stat::Undefined("the two raters share no rated item".to_owned());
    }
    let n = pairs.len() as f64;
    let observed = pairs.iter().filter(|(a, b)| a == b).count() as f64 / n;
    let mut ca: BTreeMap<&str, f64> = BTreeMap::new();
    let mut cb: BTreeMap<&str, f64> = BTreeMap::new();
    for (a, b) in pairs {
        *ca.entry(a).or_default() += 1.0;
        *cb.entry(b).or_default() += 1.0;
    }
    let expected: f64 = ca
        .iter()
        .map(|(c, x)| x * cb.get(c).copied().unwrap_or(0.0))
        .sum::<f64>()
        / (n * n);
    if expected >= 1.0 {
        return Stat::Undefined(
            "both raters used one and the same category only; kappa is 0/0".to_owned(),
        );
    }
    Stat::Value((observed - expected) / (1.0 - expected))
}

/// Fleiss' kappa of items × category counts; every item needs the same number of ratings.
pub fn fleiss_kappa(counts: &[BTreeMap<String, usize>]) -> Stat {
    let rated: Vec<&BTreeMap<String, usize>> = counts
        .iter()
        .filter(|c| c.values().sum::<usize>() >= 2)
        .collect();
    let Some(first) = rated.first() else {
        return Stat::Undefined("no item has two or more ratings".to_owned());
    };
    let m = first.values().sum::<usize>();
    if rated.iter().any(|c| c.values().sum::<usize>() != m) {
        return Stat::Undefined(
            "items have different numbers of ratings; Fleiss' kappa needs the same number on every item"
                .to_owned(),
        );
    }
    let (n_items, m_f) = (rated.len() as f64, m as f64);
    let mut totals: BTreeMap<&str, f64> = BTreeMap::new();
    let mut p_bar = 0.0;
    for c in &rated {
        let mut sq = 0.0;
        for (cat, k) in c.iter() {
            *totals.entry(cat).or_default() += *k as f64;
            sq += (*k as f64) * (*k as f64);
        }
        p_bar += (sq - m_f) / (m_f * (m_f - 1.0));
    }
    p_bar /= n_items;
    let pe: f64 = totals.values().map(|t| (t / (n_items * m_f)).powi(2)).sum();
    if pe >= 1.0 {
        return Stat::Undefined("every rating is the same category; kappa is 0/0".to_owned());
    }
    Stat::Value((p_bar - pe) / (1.0 - pe))
}

/// Krippendorff's alpha over units of values (missing ratings simply absent), with the
/// squared difference `delta2`. Units with fewer than two values are not pairable.
pub fn krippendorff_alpha<T: Clone>(units: &[Vec<T>], delta2: impl Fn(&T, &T) -> f64) -> Stat {
    let pairable: Vec<&Vec<T>> = units.iter().filter(|u| u.len() >= 2).collect();
    let n: f64 = pairable.iter().map(|u| u.len() as f64).sum();
    if pairable.is_empty() {
        return Stat::Undefined("no item has two or more ratings".to_owned());
    }
    let mut observed = 0.0;
    for u in &pairable {
        let m = u.len() as f64;
        let mut s = 0.0;
        for i in 0..u.len() {
            for j in 0..u.len() {
                if i != j {
                    s += delta2(&u[i], &u[j]);
                }
            }
        }
        observed += s / (m - 1.0);
    }
    observed /= n;
    // Distinct values with their counts, so the expected disagreement costs values², not n².
    let mut distinct: Vec<(&T, f64)> = Vec::new();
    for v in pairable.iter().flat_map(|u| u.iter()) {
        match distinct.iter_mut().find(|(d, _)| delta2(d, v) == 0.0) {
            Some(slot) => slot.1 += 1.0,
            None => distinct.push((v, 1.0)),
        }
    }
    let mut expected = 0.0;
    for (a, na) in &distinct {
        for (b, nb) in &distinct {
            expected += na * nb * delta2(a, b);
        }
    }
    expected /= n * (n - 1.0);
    if expected <= 0.0 {
        return Stat::Undefined(
            "every rating is the same value; alpha is 0/0 (no expected disagreement)".to_owned(),
        );
    }
    Stat::Value(1.0 - observed / expected)
}

/// The reliability statistics of one control over a project.
#[derive(Debug, Clone, PartialEq)]
pub struct Reliability {
    /// Per rater pair `(a, b)` with `a < b`.
    pub cohen_kappa: BTreeMap<(i64, i64), Stat>,
    pub fleiss_kappa: Stat,
    pub alpha_nominal: Stat,
    pub alpha_interval: Stat,
    /// Items with two or more ratings.
    pub items: usize,
    /// Raters with at least one rating.
    pub raters: usize,
}

/// Computes [`Reliability`] from ratings (one per item and rater; later duplicates are
/// ignored). `numeric` says whether the interval alpha applies.
pub fn reliability(ratings: &[Rating], numeric: bool) -> Reliability {
    let mut by_item: BTreeMap<i64, BTreeMap<i64, &Rating>> = BTreeMap::new();
    for r in ratings {
        by_item
            .entry(r.item)
            .or_default()
            .entry(r.rater)
            .or_insert(r);
    }
    let raters: BTreeSet<i64> = ratings.iter().map(|r| r.rater).collect();
    let mut cohen = BTreeMap::new();
    let rater_list: Vec<i64> = raters.iter().copied().collect();
    for (i, a) in rater_list.iter().enumerate() {
        for b in &rater_list[i + 1..] {
            let pairs: Vec<(&str, &str)> = by_item
                .values()
                .filter_map(|m| Some((m.get(a)?.category.as_str(), m.get(b)?.category.as_str())))
                .collect();
            cohen.insert((*a, *b), cohen_kappa(&pairs));
        }
    }
    let counts: Vec<BTreeMap<String, usize>> = by_item
        .values()
        .map(|m| {
            let mut c = BTreeMap::new();
            for r in m.values() {
                *c.entry(r.category.clone()).or_default() += 1;
            }
            c
        })
        .collect();
    let fleiss = if raters.len() < 2 {
        Stat::Undefined("fewer than two raters".to_owned())
    } else {
        fleiss_kappa(&counts)
    };
    let nominal_units: Vec<Vec<&str>> = by_item
        .values()
        .map(|m| m.values().map(|r| r.category.as_str()).collect())
        .collect();
    let alpha_nominal = if raters.len() < 2 {
        Stat::Undefined("fewer than two raters".to_owned())
    } else {
        krippendorff_alpha(&nominal_units, |a, b| if a == b { 0.0 } else { 1.0 })
    };
    let alpha_interval = if !numeric {
        Stat::Undefined("the interval alpha needs a numeric control (Rating or Number)".to_owned())
    } else if raters.len() < 2 {
        Stat::Undefined("fewer than two raters".to_owned())
    } else {
        let units: Vec<Vec<f64>> = by_item
            .values()
            .map(|m| m.values().filter_map(|r| r.number).collect())
            .collect();
        krippendorff_alpha(&units, |a, b| (a - b) * (a - b))
    };
    Reliability {
        cohen_kappa: cohen,
        fleiss_kappa: fleiss,
        alpha_nominal,
        alpha_interval,
        items: by_item.values().filter(|m| m.len() >= 2).count(),
        raters: raters.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const CONFIG: &str = r#"<View>
  <Image name="img" value="$image"/>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text"><Choice value="pos"/><Choice value="neg"/></Choices>
  <Rating name="stars" toName="text"/>
  <RectangleLabels name="box" toName="img"><Label value="Car"/><Label value="Plane"/></RectangleLabels>
  <PolygonLabels name="poly" toName="img"><Label value="Road"/></PolygonLabels>
  <Labels name="ner" toName="text"><Label value="PER"/><Label value="ORG"/></Labels>
  <KeyPointLabels name="kp" toName="img"><Label value="Eye"/></KeyPointLabels>
  <TextArea name="note" toName="text"/>
</View>"#;

    fn config() -> LabelConfig {
        LabelConfig::parse(CONFIG).expect("test config parses")
    }

    fn control(name: &str) -> ControlTag {
        config()
            .controls()
            .iter()
            .find(|c| c.name == name)
            .cloned()
            .expect("control exists")
    }

    fn choice(v: &str) -> Value {
        json!({"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [v]}})
    }

    fn rect(x: f64, y: f64, w: f64, h: f64, label: &str) -> Value {
        json!({"from_name": "box", "to_name": "img", "type": "rectanglelabels",
               "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label]}})
    }

    fn span(start: f64, end: f64, label: &str) -> Value {
        json!({"from_name": "ner", "to_name": "text", "type": "labels",
               "value": {"start": start, "end": end, "labels": [label]}})
    }

    fn one(name: &str, a: &[Value], b: &[Value], params: Params) -> Option<f64> {
        let w = ControlWeight {
            overall: 1.0,
            labels: BTreeMap::new(),
        };
        let ra: Vec<&Value> = a.iter().collect();
        let rb: Vec<&Value> = b.iter().collect();
        control_agreement(&control(name), &w, params, &ra, &rb).map(|s| s.score)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn exact_match_and_empty_rules() {
        let p = Params::default();
        assert_eq!(
            one("sentiment", &[choice("pos")], &[choice("pos")], p),
            Some(1.0)
        );
        assert_eq!(
            one("sentiment", &[choice("pos")], &[choice("neg")], p),
            Some(0.0)
        );
        assert_eq!(one("sentiment", &[], &[], p), Some(1.0));
        assert_eq!(one("sentiment", &[choice("pos")], &[], p), Some(0.0));
        // Lists compare as sets; numbers by value.
        let multi = |v: Value| json!({"from_name": "sentiment", "type": "choices", "value": {"choices": v}});
        assert_eq!(
            one(
                "sentiment",
                &[multi(json!(["pos", "neg"]))],
                &[multi(json!(["neg", "pos"]))],
                p
            ),
            Some(1.0)
        );
        let stars =
            |v: Value| json!({"from_name": "stars", "type": "rating", "value": {"rating": v}});
        assert_eq!(
            one("stars", &[stars(json!(4))], &[stars(json!(4.0))], p),
            Some(1.0)
        );
        assert_eq!(
            one("stars", &[stars(json!(4))], &[stars(json!(3))], p),
            Some(0.0)
        );
    }

    #[test]
    fn rectangles_by_label_with_best_iou_per_region() {
        let p = Params::default();
        // Same box: 1. Half-shifted box: IoU = 50/150.
        assert_eq!(
            one(
                "box",
                &[rect(0.0, 0.0, 10.0, 10.0, "Car")],
                &[rect(0.0, 0.0, 10.0, 10.0, "Car")],
                p
            ),
            Some(1.0)
        );
        let s = one(
            "box",
            &[rect(0.0, 0.0, 10.0, 10.0, "Car")],
            &[rect(5.0, 0.0, 10.0, 10.0, "Car")],
            p,
        )
        .unwrap_or(-1.0);
        assert!(close(s, 1.0 / 3.0), "{s}");
        // A different label never matches.
        assert_eq!(
            one(
                "box",
                &[rect(0.0, 0.0, 10.0, 10.0, "Car")],
                &[rect(0.0, 0.0, 10.0, 10.0, "Plane")],
                p
            ),
            Some(0.0)
        );
        // Two regions against one: (1 + 0 + 1) / 3.
        let s = one(
            "box",
            &[
                rect(0.0, 0.0, 10.0, 10.0, "Car"),
                rect(50.0, 50.0, 10.0, 10.0, "Car"),
            ],
            &[rect(0.0, 0.0, 10.0, 10.0, "Car")],
            p,
        )
        .unwrap_or(-1.0);
        assert!(close(s, 2.0 / 3.0), "{s}");
        // With a threshold: F1 of the matching; IoU 1/3 < 0.5 is no match.
        let t = Params {
            iou_threshold: Some(0.5),
        };
        assert_eq!(
            one(
                "box",
                &[rect(0.0, 0.0, 10.0, 10.0, "Car")],
                &[rect(5.0, 0.0, 10.0, 10.0, "Car")],
                t
            ),
            Some(0.0)
        );
        assert_eq!(
            one(
                "box",
                &[rect(0.0, 0.0, 10.0, 10.0, "Car")],
                &[rect(1.0, 0.0, 10.0, 10.0, "Car")],
                t
            ),
            Some(1.0)
        );
    }

    #[test]
    fn rotated_rectangle_is_rotated_about_its_top_left_corner() {
        // A 10×10 square rotated by 90° about (10, 0) covers x in [0, 10], y in [0, 10]
        // (clockwise on screen, y down): the same area as the unrotated square at (0, 0).
        let rotated = json!({"from_name": "box", "type": "rectanglelabels",
            "value": {"x": 10, "y": 0, "width": 10, "height": 10, "rotation": 90, "rectanglelabels": ["Car"]}});
        let s = one(
            "box",
            &[rotated],
            &[rect(0.0, 0.0, 10.0, 10.0, "Car")],
            Params::default(),
        )
        .unwrap_or(-1.0);
        assert!(close(s, 1.0), "{s}");
    }

    #[test]
    fn polygon_intersection_is_exact_for_non_convex_polygons() {
        let sq = |x0: f64, y0: f64, x1: f64, y1: f64| vec![(x0, y0), (x1, y0), (x1, y1), (x0, y1)];
        assert!(close(
            polygon_iou(&sq(0.0, 0.0, 2.0, 2.0), &sq(1.0, 1.0, 3.0, 3.0)),
            1.0 / 7.0
        ));
        // Identical, also when one is clockwise.
        let mut cw = sq(0.0, 0.0, 2.0, 2.0);
        cw.reverse();
        assert!(close(polygon_iou(&sq(0.0, 0.0, 2.0, 2.0), &cw), 1.0));
        // Sharing an edge only.
        assert!(close(
            polygon_iou(&sq(0.0, 0.0, 1.0, 1.0), &sq(1.0, 0.0, 2.0, 1.0)),
            0.0
        ));
        // Inside with shared edges: 1 / 4.
        assert!(close(
            polygon_iou(&sq(0.0, 0.0, 1.0, 1.0), &sq(0.0, 0.0, 2.0, 2.0)),
            0.25
        ));
        // An L (area 3) and a square over its inner corner: 0.75 in common.
        let l = vec![
            (0.0, 0.0),
            (2.0, 0.0),
            (2.0, 1.0),
            (1.0, 1.0),
            (1.0, 2.0),
            (0.0, 2.0),
        ];
        assert!(close(
            polygon_intersection_area(&l, &sq(0.5, 0.5, 1.5, 1.5)),
            0.75
        ));
        assert!(close(polygon_iou(&l, &sq(0.5, 0.5, 1.5, 1.5)), 0.75 / 3.25));
        // The square filling the L's notch touches it only.
        assert!(close(
            polygon_intersection_area(&l, &sq(1.0, 1.0, 2.0, 2.0)),
            0.0
        ));
        // Two Ls, one shifted: the union is not convex and the intersection has two parts.
        let u = vec![
            (0.0, 0.0),
            (3.0, 0.0),
            (3.0, 3.0),
            (2.0, 3.0),
            (2.0, 1.0),
            (1.0, 1.0),
            (1.0, 3.0),
            (0.0, 3.0),
        ];
        let bar = sq(-1.0, 2.0, 4.0, 2.5);
        // The bar crosses both arms of the U: 2 × (1 × 0.5).
        assert!(close(polygon_intersection_area(&u, &bar), 1.0));
    }

    #[test]
    fn spans_keypoints_and_text() {
        let p = Params::default();
        let s = one(
            "ner",
            &[span(0.0, 10.0, "PER")],
            &[span(5.0, 15.0, "PER")],
            p,
        )
        .unwrap_or(-1.0);
        assert!(close(s, 5.0 / 15.0));
        let t = Params {
            iou_threshold: Some(0.3),
        };
        assert_eq!(
            one(
                "ner",
                &[span(0.0, 10.0, "PER")],
                &[span(5.0, 15.0, "PER")],
                t
            ),
            Some(1.0)
        );
        let kp = |x: f64| json!({"from_name": "kp", "type": "keypointlabels", "value": {"x": x, "y": 0, "keypointlabels": ["Eye"]}});
        let s = one("kp", &[kp(0.0)], &[kp(KEYPOINT_TOLERANCE / 2.0)], p).unwrap_or(-1.0);
        assert!(close(s, 0.5));
        let note =
            |t: &str| json!({"from_name": "note", "type": "textarea", "value": {"text": [t]}});
        // "kitten" → "sitting": 3 edits over 7 characters.
        let s = one("note", &[note("kitten")], &[note("sitting")], p).unwrap_or(-1.0);
        assert!(close(s, 1.0 - 3.0 / 7.0));
    }

    #[test]
    fn weights_and_task_agreement() {
        let c = config();
        let a = json!([choice("pos"), rect(0.0, 0.0, 10.0, 10.0, "Car")]);
        let b = json!([choice("neg"), rect(0.0, 0.0, 10.0, 10.0, "Car")]);
        let none = Map::new();
        // 7 controls: 6 agree (5 of them empty on both sides), sentiment does not.
        let s = pair_agreement(&c, &none, Params::default(), &a, &b).unwrap_or(-1.0);
        assert!(close(s, 6.0 / 7.0), "{s}");
        // Only the two used controls, sentiment weighing a third of the box.
        let mut w = Map::new();
        for ctl in c.controls() {
            w.insert(ctl.name.clone(), json!({"overall": 0.0}));
        }
        w.insert("sentiment".into(), json!({"overall": 0.5}));
        w.insert("box".into(), json!({"overall": 1.0}));
        let s = pair_agreement(&c, &w, Params::default(), &a, &b).unwrap_or(-1.0);
        assert!(close(s, 1.0 / 1.5), "{s}");
        // A label weighing 0 takes the control out.
        w.insert(
            "sentiment".into(),
            json!({"overall": 1.0, "labels": {"pos": 0.0, "neg": 0.0}}),
        );
        let s = pair_agreement(&c, &w, Params::default(), &a, &b).unwrap_or(-1.0);
        assert!(close(s, 1.0), "{s}");
        // Every weight 0: undefined.
        w.insert("box".into(), json!({"overall": 0.0}));
        assert_eq!(pair_agreement(&c, &w, Params::default(), &a, &b), None);
        // Task: mean over the three pairs (a,b), (a,a'), (b,a').
        let s = task_agreement(&c, &none, Params::default(), &[&a, &b, &a]).unwrap_or(-1.0);
        assert!(close(s, (6.0 / 7.0 + 1.0 + 6.0 / 7.0) / 3.0), "{s}");
        assert_eq!(task_agreement(&c, &none, Params::default(), &[&a]), None);
    }

    #[test]
    fn ground_truth_precision_recall() {
        let box_ = control("box");
        let w = ControlWeight {
            overall: 1.0,
            labels: BTreeMap::new(),
        };
        let gt = [
            rect(0.0, 0.0, 10.0, 10.0, "Car"),
            rect(50.0, 50.0, 10.0, 10.0, "Car"),
        ];
        let cand = [
            rect(1.0, 0.0, 10.0, 10.0, "Car"),
            rect(80.0, 80.0, 5.0, 5.0, "Car"),
            rect(50.0, 50.0, 10.0, 10.0, "Plane"),
        ];
        let g: Vec<&Value> = gt.iter().collect();
        let c: Vec<&Value> = cand.iter().collect();
        let prf = against_ground_truth(&box_, &w, &g, &c, 0.5);
        assert_eq!(
            (prf.true_positives, prf.false_positives, prf.false_negatives),
            (1.0, 2.0, 1.0)
        );
        assert_eq!(prf.precision(), Some(1.0 / 3.0));
        assert_eq!(prf.recall(), Some(0.5));
        assert_eq!(prf.f1(), Some(0.4));
        let classes = control("sentiment");
        let prf = against_ground_truth(&classes, &w, &[&choice("pos")], &[&choice("pos")], 0.5);
        assert_eq!(prf.f1(), Some(1.0));
    }

    #[test]
    fn cohen_kappa_published_example() {
        // Wikipedia's example: 50 proposals, 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no → 0.4.
        let mut pairs = Vec::new();
        pairs.extend(std::iter::repeat_n(("yes", "yes"), 20));
        pairs.extend(std::iter::repeat_n(("yes", "no"), 5));
        pairs.extend(std::iter::repeat_n(("no", "yes"), 10));
        pairs.extend(std::iter::repeat_n(("no", "no"), 15));
        let k = cohen_kappa(&pairs).value().unwrap_or(f64::NAN);
        assert!((k - 0.4).abs() < 1e-12, "{k}");
        assert!(matches!(
            cohen_kappa(&[("a", "a"), ("a", "a")]),
            Stat::Undefined(_)
        ));
        assert!(matches!(cohen_kappa(&[]), Stat::Undefined(_)));
    }

    #[test]
    fn fleiss_kappa_published_example() {
        // Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories, κ ≈ 0.210.
        let rows = [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ];
        let counts: Vec<BTreeMap<String, usize>> = rows
            .iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(c, n)| (c.to_string(), *n))
                    .collect()
            })
            .collect();
        let k = fleiss_kappa(&counts).value().unwrap_or(f64::NAN);
        assert!((k - 0.210).abs() < 5e-4, "{k}");
    }

    #[test]
    fn krippendorff_alpha_published_example() {
        // Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 coders, 12
        // units, missing values; nominal α = 0.743, interval α = 0.849.
        let data: [[Option<f64>; 12]; 4] = {
            let n = None;
            let s = |v: f64| Some(v);
            [
                [
                    s(1.),
                    s(2.),
                    s(3.),
                    s(3.),
                    s(2.),
                    s(1.),
                    s(4.),
                    s(1.),
                    s(2.),
                    n,
                    n,
                    n,
                ],
                [
                    s(1.),
                    s(2.),
                    s(3.),
                    s(3.),
                    s(2.),
                    s(2.),
                    s(4.),
                    s(1.),
                    s(2.),
                    s(5.),
                    n,
                    s(3.),
                ],
                [
                    n,
                    s(3.),
                    s(3.),
                    s(3.),
                    s(2.),
                    s(3.),
                    s(4.),
                    s(2.),
                    s(2.),
                    s(5.),
                    s(1.),
                    n,
                ],
                [
                    s(1.),
                    s(2.),
                    s(3.),
                    s(3.),
                    s(2.),
                    s(4.),
                    s(4.),
                    s(1.),
                    s(2.),
                    s(5.),
                    s(1.),
                    n,
                ],
            ]
        };
        let units: Vec<Vec<f64>> = (0..12)
            .map(|u| data.iter().filter_map(|c| c[u]).collect())
            .collect();
        let nominal = krippendorff_alpha(&units, |a, b| if a == b { 0.0 } else { 1.0 });
        let interval = krippendorff_alpha(&units, |a, b| (a - b) * (a - b));
        let (n, i) = (
            nominal.value().unwrap_or(f64::NAN),
            interval.value().unwrap_or(f64::NAN),
        );
        assert!((n - 0.743).abs() < 5e-4, "{n}");
        assert!((i - 0.849).abs() < 5e-4, "{i}");
        assert!(matches!(
            krippendorff_alpha(&[vec![1.0, 1.0]], |a, b| (a - b) * (a - b)),
            Stat::Undefined(_)
        ));
    }

    #[test]
    fn reliability_over_ratings() {
        let r = |item, rater, c: &str, n: Option<f64>| Rating {
            item,
            rater,
            category: c.into(),
            number: n,
        };
        let ratings = vec![
            r(1, 10, "a", None),
            r(1, 11, "a", None),
            r(2, 10, "b", None),
            r(2, 11, "b", None),
            r(3, 10, "a", None),
            r(3, 11, "b", None),
        ];
        let out = reliability(&ratings, false);
        assert_eq!((out.items, out.raters), (3, 2));
        // po = 2/3, pe = (2/3)(1/3) + (1/3)(2/3) = 4/9 → κ = (2/9)/(5/9) = 0.4.
        let k = out
            .cohen_kappa
            .get(&(10, 11))
            .and_then(Stat::value)
            .unwrap_or(f64::NAN);
        assert!(close(k, 0.4), "{k}");
        assert!(out.fleiss_kappa.value().is_some());
        assert!(matches!(out.alpha_interval, Stat::Undefined(_)));
        let single = reliability(&ratings[..1], true);
        assert!(matches!(single.fleiss_kappa, Stat::Undefined(_)));
        assert!(matches!(single.alpha_nominal, Stat::Undefined(_)));
    }

    /// A star-shaped (so simple, usually non-convex) polygon around a centre.
    fn star() -> impl Strategy<Value = Vec<(f64, f64)>> {
        (
            0.0..60.0f64,
            0.0..60.0f64,
            prop::collection::vec((0.1..1.0f64, 2.0..30.0f64), 3..9),
        )
            .prop_map(|(cx, cy, spokes)| {
                let total: f64 = spokes.iter().map(|s| s.0).sum();
                let mut angle = 0.0;
                spokes
                    .iter()
                    .map(|(step, r)| {
                        angle += step / total * std::f64::consts::TAU;
                        (cx + r * angle.cos(), cy + r * angle.sin())
                    })
                    .collect()
            })
    }

    proptest! {
        #[test]
        fn polygon_iou_is_symmetric_bounded_and_one_with_itself(p in star(), q in star()) {
            let pq = polygon_iou(&p, &q);
            let qp = polygon_iou(&q, &p);
            prop_assert!((0.0..=1.0).contains(&pq));
            prop_assert!((pq - qp).abs() < 1e-9, "{} vs {}", pq, qp);
            prop_assert!((polygon_iou(&p, &p) - 1.0).abs() < 1e-9);
            let inter = polygon_intersection_area(&p, &q);
            prop_assert!(inter <= signed_area(&p).abs().min(signed_area(&q).abs()) + 1e-9);
        }

        #[test]
        fn pair_agreement_is_symmetric_bounded_and_one_with_itself(
            xs in prop::collection::vec((0.0..90.0f64, 0.0..90.0f64, 1.0..10.0f64, 0usize..2), 0..4),
            ys in prop::collection::vec((0.0..90.0f64, 0.0..90.0f64, 1.0..10.0f64, 0usize..2), 0..4),
            ca in 0usize..2, cb in 0usize..2, threshold in prop::option::of(0.1..0.9f64),
        ) {
            let labels = ["Car", "Plane"];
            let make = |rs: &[(f64, f64, f64, usize)], c: usize| {
                let mut items: Vec<Value> = rs.iter().map(|(x, y, s, l)| rect(*x, *y, *s, *s, labels[*l])).collect();
                items.push(choice(["pos", "neg"][c]));
                Value::Array(items)
            };
            let (a, b) = (make(&xs, ca), make(&ys, cb));
            let c = config();
            let params = Params { iou_threshold: threshold };
            let ab = pair_agreement(&c, &Map::new(), params, &a, &b).unwrap_or(-1.0);
            let ba = pair_agreement(&c, &Map::new(), params, &b, &a).unwrap_or(-2.0);
            prop_assert!((0.0..=1.0).contains(&ab));
            prop_assert!((ab - ba).abs() < 1e-12);
            prop_assert_eq!(pair_agreement(&c, &Map::new(), params, &a, &a), Some(1.0));
        }

        #[test]
        fn kappas_and_alpha_are_bounded_symmetric_and_one_when_all_agree(
            table in prop::collection::vec(prop::collection::vec(0usize..3, 3), 2..30),
        ) {
            let pairs: Vec<(String, String)> = table.iter().map(|r| (r[0].to_string(), r[1].to_string())).collect();
            let ab: Vec<(&str, &str)> = pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            let ba: Vec<(&str, &str)> = pairs.iter().map(|(a, b)| (b.as_str(), a.as_str())).collect();
            match (cohen_kappa(&ab), cohen_kappa(&ba)) {
                (Stat::Value(x), Stat::Value(y)) => {
                    prop_assert!((-1.0 - 1e-12..=1.0 + 1e-12).contains(&x));
                    prop_assert!((x - y).abs() < 1e-12);
                }
                (Stat::Undefined(_), Stat::Undefined(_)) => {}
                other => prop_assert!(false, "asymmetric definedness {:?}", other),
            }
            let ratings: Vec<Rating> = table.iter().enumerate().flat_map(|(i, r)| {
                r.iter().enumerate().map(move |(rater, v)| Rating {
                    item: i as i64, rater: rater as i64, category: v.to_string(), number: Some(*v as f64),
                })
            }).collect();
            let out = reliability(&ratings, true);
            for s in [&out.fleiss_kappa, &out.alpha_nominal, &out.alpha_interval] {
                if let Stat::Value(v) = s {
                    prop_assert!(*v <= 1.0 + 1e-12 && v.is_finite());
                }
            }
            // Every rater copying rater 0: perfect agreement is 1 wherever defined.
            let same: Vec<Rating> = ratings.iter().map(|r| Rating {
                category: table[r.item as usize][0].to_string(),
                number: Some(table[r.item as usize][0] as f64),
                ..r.clone()
            }).collect();
            let out = reliability(&same, true);
            for s in [&out.fleiss_kappa, &out.alpha_nominal, &out.alpha_interval] {
                if let Stat::Value(v) = s {
                    prop_assert!((v - 1.0).abs() < 1e-12, "{}", v);
                }
            }
            for k in out.cohen_kappa.values() {
                if let Stat::Value(v) = k {
                    prop_assert!((v - 1.0).abs() < 1e-12);
                }
            }
        }
    }
}
