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
    let c = cfg("<View><Video name=\"v\" value=\"$m\"/><Audio name=\"a\" value=\"$m\"/></View>");
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
    let full =
        json!([{"from_name": "c", "to_name": "t", "type": "choices", "value": {"choices": ["a"]}}]);
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
    let rating = one(r#"<View><Text name="t" value="$text"/><Rating name="r" toName="t"/></View>"#);
    assert_eq!(
        rating.expand_shorthand(&json!(4)).expect("rating"),
        json!([{"from_name": "r", "to_name": "t", "type": "rating", "value": {"rating": 4}}])
    );
    let text = one(r#"<View><Text name="t" value="$text"/><TextArea name="s" toName="t"/></View>"#);
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

#[test]
fn bulk_labeling_takes_whole_task_controls_of_six_kinds_only() {
    let suitable = cfg(r#"<View><Text name="t" value="$text"/>
        <Choices name="c" toName="t"><Choice value="a"/></Choices>
        <DateTime name="d" toName="t" only="date"/><Number name="n" toName="t"/>
        <Rating name="r" toName="t"/><Taxonomy name="x" toName="t"><Choice value="A"/></Taxonomy>
        <TextArea name="ta" toName="t" perRegion="false"/></View>"#);
    assert_eq!(suitable.bulk_unsuitable(), None);
    let labels = cfg(
        r#"<View><Text name="t" value="$text"/><Labels name="l" toName="t"><Label value="A"/></Labels>
        <Choices name="c" toName="t"><Choice value="a"/></Choices></View>"#,
    );
    let reason = labels.bulk_unsuitable().expect("Labels is not bulk");
    assert!(
        reason.contains("<Labels>") && reason.contains("Choices, DateTime"),
        "{reason}"
    );
    let per_region = cfg(
        r#"<View><Text name="t" value="$text"/><TextArea name="ta" toName="t" PERREGION="True"/></View>"#,
    );
    assert!(
        per_region
            .bulk_unsuitable()
            .expect("perRegion")
            .contains("perRegion")
    );
    let per_item = cfg(
        r#"<View><Image name="i" valueList="$images"/><Choices name="c" toName="i" perItem="true"><Choice value="a"/></Choices></View>"#,
    );
    assert!(
        per_item
            .bulk_unsuitable()
            .expect("perItem")
            .contains("perItem")
    );
    let empty = cfg("<View><Text name=\"t\" value=\"$text\"/></View>");
    assert!(empty.bulk_unsuitable().is_some());
}
