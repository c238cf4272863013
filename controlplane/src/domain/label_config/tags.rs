//! The tag catalogue: every tag the editor registers, and the result types each control writes.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
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
pub(super) const TAGS: &[(&str, Kind)] = &[
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
pub(super) const LABEL_CHILD_TAGS: &[&str] = &["Label", "Choice", "Relation"];

/// Geometry tools whose regions a plain `<Labels>` control can label ("merged" regions).
pub(super) const GEOMETRY_TAGS: &[&str] = &[
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
pub(super) const DEFAULT_INDEX_FLAG: &str = "{{idx}}";

pub(super) fn lookup_tag(raw: &str) -> Option<(&'static str, Kind)> {
    TAGS.iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(raw))
        .copied()
}

pub(super) fn labeled_type(shape: &str) -> &'static str {
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
pub(super) enum Rule {
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
    pub(super) fn with_optional_labels(self, key: &'static str) -> Rule {
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
pub(super) const TYPE_RULES: &[(&str, Rule)] = &[
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

pub(super) fn rule_for(ty: &str) -> Option<Rule> {
    TYPE_RULES.iter().find(|(t, _)| *t == ty).map(|(_, r)| *r)
}
