"""Converter export formats (YOLO, YOLO_OBB, COCO, VOC, CONLL2003, BRUSH_TO_NUMPY, BRUSH_TO_PNG,
ASR_MANIFEST and the *_WITH_IMAGES archives) against Label Studio's converter.

Each test builds a project with generated annotations through the SDK, exports a format from
Verity (the direct ``GET /export?exportType=`` and a snapshot conversion downloaded through the
SDK), runs ``label_studio_sdk.converter`` on Verity's own JSON export of the same project, and
compares the files: the same names; JSON equal (floats within 1e-9); YOLO lines equal within
float tolerance; VOC XML elements equal; CoNLL lines equal; brush masks equal pixel for pixel
(``.npy`` files byte for byte). Fields skipped on purpose (ADR 0046): the timestamps
of ``notes.json`` / COCO ``info`` (``year``, ``date_created``).

The converter runs as Label Studio's server runs it for label-only formats: without downloading
media (``download_resources=False``) and with a hostname, so media names are the converter's
cache names (``<md5 prefix>__<file>``). The ``*_WITH_IMAGES`` archives are compared with the
converter run as Label Studio's server runs it with media: ``download_resources=True`` and the
upload folder (Verity's ``<data dir>/upload``), where it finds the uploaded images and copies
them under their stored names; image bytes must equal the uploaded ones.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import secrets
import tempfile
import time
import xml.etree.ElementTree as ET
import zipfile

import numpy as np
import pytest
import requests
from label_studio_sdk.converter import Converter, brush
from PIL import Image

TOL = 1e-9

BOXES_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image">
    <Label value="Car"/><Label value="Airplane" category="7"/><Label value="Bus"/>
    <Label value="Person" alias="human"/>
  </RectangleLabels>
  <PolygonLabels name="poly" toName="image">
    <Label value="Road"/><Label value="Lake"/>
  </PolygonLabels>
</View>"""

KEYPOINTS_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image"><Label value="Face"/><Label value="Cat"/></RectangleLabels>
  <KeyPointLabels name="kp" toName="image">
    <Label value="eye" model_index="0"/><Label value="nose" model_index="1"/><Label value="ear" model_index="2"/>
  </KeyPointLabels>
</View>"""

BRUSH_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="tag" toName="image"><Label value="Road"/><Label value="Sky/Cloud"/><Label value="Tree"/></BrushLabels>
</View>"""

TEXT_CONFIG = """<View><Text name="text" value="$text"/>
  <Labels name="ner" toName="text"><Label value="PER"/><Label value="ORG"/></Labels></View>"""


def headers(verity, api_key):
    return {"Authorization": f"Token {api_key}"}


def region(rid, from_name, kind, value, w=640, h=480):
    return {"id": rid, "from_name": from_name, "to_name": "image", "type": kind,
            "original_width": w, "original_height": h, "image_rotation": 0, "value": value}


def rnd_box(rng):
    x, y = rng.uniform(0, 60), rng.uniform(0, 60)
    return {"x": x, "y": y, "width": rng.uniform(5, 35), "height": rng.uniform(5, 35),
            "rotation": rng.choice([0, 0, 30, -15.5, 90])}


def make_project(ls, config, title):
    return ls.projects.create(title=f"{title} {secrets.token_hex(3)}", label_config=config)


def fill_boxes(ls, project_id, rng):
    urls = [f"https://img.example.com/set/{i}.jpg?sig=abc" for i in range(4)] + ["s3://bucket/dir/photo.png"]
    for n, url in enumerate(urls):
        task = ls.tasks.create(project=project_id, data={"image": url})
        w, h = rng.choice([(640, 480), (1920, 1080), (333, 777)])
        for a in range(1 + (n % 2)):
            result = []
            for k in range(rng.randint(1, 4)):
                label = rng.choice(["Car", "Airplane", "Bus", "human"])
                result.append(region(f"b{n}{a}{k}", "label", "rectanglelabels",
                                     {**rnd_box(rng), "rectanglelabels": [label]}, w, h))
            if n != 2:
                pts = [[rng.uniform(0, 100), rng.uniform(0, 100)] for _ in range(rng.randint(3, 6))]
                result.append(region(f"p{n}{a}", "poly", "polygonlabels",
                                     {"points": pts, "closed": True, "polygonlabels": [rng.choice(["Road", "Lake"])]}, w, h))
            ls.annotations.create(id=task.id, result=result)
    # an unlabeled task (only with download_all_tasks) and a skipped annotation
    ls.tasks.create(project=project_id, data={"image": "https://img.example.com/set/empty.jpg"})
    skipped = ls.tasks.create(project=project_id, data={"image": "https://img.example.com/set/skipped.jpg"})
    ls.annotations.create(id=skipped.id, result=[], was_cancelled=True)


def fill_keypoints(ls, project_id, rng):
    for n in range(3):
        task = ls.tasks.create(project=project_id, data={"image": f"https://img.example.com/kp/{n}.png"})
        result = []
        for b in range(2):
            box = {"x": rng.uniform(0, 50), "y": rng.uniform(0, 50), "width": rng.uniform(10, 40),
                   "height": rng.uniform(10, 40), "rotation": 0, "rectanglelabels": [rng.choice(["Face", "Cat"])]}
            rid = f"r{n}{b}"
            result.append(region(rid, "box", "rectanglelabels", box))
            for kp in rng.sample(["eye", "nose", "ear"], k=2):
                item = region(f"k{n}{b}{kp}", "kp", "keypointlabels",
                              {"x": box["x"] + 2.5, "y": box["y"] + 3.5, "width": 1, "keypointlabels": [kp]})
                item["parentID"] = rid
                result.append(item)
        ls.annotations.create(id=task.id, result=result)


SENTENCES = [
    "John Smith works at Acme Corp. in New York.",
    "They'll meet \"Dr. Jane O'Neil\" (of the UN) on Monday, can't they?",
    "Prices rose 3.5% to $12,000 -- a record; see https://example.com/a/b for details...",
    "Gimme the data/results from Berlin and Paris!",
    "  Leading spaces,trailing comma,",
]


def fill_text(ls, project_id, rng):
    for n, text in enumerate(SENTENCES):
        task = ls.tasks.create(project=project_id, data={"text": text})
        words = [(m.start(), m.end()) for m in __import__("re").finditer(r"\S+", text)]
        for a in range(1 + (n % 2)):
            result = []
            for k, (start, end) in enumerate(rng.sample(words, k=min(3, len(words)))):
                # Some spans cover two words, some only part of a word.
                if k == 1:
                    end = min(len(text), end + 4)
                result.append({"id": f"s{n}{a}{k}", "from_name": "ner", "to_name": "text", "type": "labels",
                               "value": {"start": start, "end": end, "text": text[start:end],
                                         "labels": [rng.choice(["PER", "ORG"])]}})
            ls.annotations.create(id=task.id, result=result)
    ls.tasks.create(project=project_id, data={"text": "An unlabeled sentence."})


def export_direct(verity, api_key, project_id, fmt, **params):
    r = requests.get(f"{verity.base_url}/api/projects/{project_id}/export",
                     params={"exportType": fmt, **params}, headers=headers(verity, api_key), timeout=60)
    return r


def export_snapshot(ls, project_id, fmt):
    snap = ls.projects.exports.create(project_id, title=f"convert {fmt}")
    deadline = time.monotonic() + 60
    while ls.projects.exports.get(project_id, snap.id).status != "completed":
        assert time.monotonic() < deadline, "snapshot did not complete"
        time.sleep(0.2)
    ls.projects.exports.convert(project_id, snap.id, export_type=fmt)
    while True:
        got = ls.projects.exports.get(project_id, snap.id)
        status = {c.export_type: c.status for c in (got.converted_formats or [])}.get(fmt)
        if status == "completed":
            break
        assert status in ("created", "in_progress"), got
        assert time.monotonic() < deadline, "conversion did not complete"
        time.sleep(0.2)
    converted = b"".join(ls.projects.exports.download(project_id, snap.id, export_type=fmt))
    source = json.loads(b"".join(ls.projects.exports.download(project_id, snap.id, export_type="JSON")))
    return converted, source


def reference(config, tasks_json, fmt):
    """The converter's files for Verity's JSON export: {relative path: bytes} and the dirs."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "export.json")
        with open(src, "w") as f:
            json.dump(tasks_json, f)
        out = os.path.join(tmp, "out")
        # Label Studio hands the converter an existing directory (the brush export needs one).
        os.makedirs(out)
        Converter(config=config, project_dir=None, download_resources=False,
                  hostname="http://verity.invalid", access_token="token").convert(src, out, fmt, is_dir=False)
        files, dirs = {}, set()
        for root, dnames, fnames in os.walk(out):
            for d in dnames:
                dirs.add(os.path.relpath(os.path.join(root, d), out) + "/")
            for fn in fnames:
                p = os.path.join(root, fn)
                with open(p, "rb") as fh:
                    files[os.path.relpath(p, out)] = fh.read()
        return files, dirs


def unzip(data):
    z = zipfile.ZipFile(io.BytesIO(data))
    assert z.testzip() is None
    files = {i.filename: z.read(i) for i in z.infolist() if not i.is_dir()}
    dirs = {i.filename for i in z.infolist() if i.is_dir()}
    assert len(files) + len(dirs) == len(z.infolist()), "duplicate entries"
    return files, dirs


def close(a, b, path="$"):
    if isinstance(a, bool) or isinstance(b, bool):
        assert a == b, f"{path}: {a!r} != {b!r}"
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)):
        assert math.isclose(a, b, rel_tol=TOL, abs_tol=TOL), f"{path}: {a!r} != {b!r}"
    elif isinstance(a, dict) and isinstance(b, dict):
        assert set(a) == set(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{path}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            close(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def yolo_lines_close(ours, theirs, name):
    a, b = ours.decode().splitlines(), theirs.decode().splitlines()
    assert len(a) == len(b), f"{name}: {a} != {b}"
    for la, lb in zip(a, b):
        ta, tb = la.split(" "), lb.split(" ")
        assert len(ta) == len(tb) and ta[0] == tb[0], f"{name}: {la!r} != {lb!r}"
        for x, y in zip(ta[1:], tb[1:]):
            assert math.isclose(float(x), float(y), rel_tol=TOL, abs_tol=TOL), f"{name}: {la!r} != {lb!r}"


def xml_tree(data):
    def walk(e):
        return (e.tag, (e.text or "").strip(), [walk(c) for c in e])
    return walk(ET.fromstring(data))


def without_timestamps(doc):
    doc = json.loads(doc)
    for key in ("year", "date_created"):
        doc.get("info", {}).pop(key, None)
    return doc


def compare(fmt, ours_zip, config, tasks_json):
    ours, our_dirs = unzip(ours_zip)
    theirs, their_dirs = reference(config, tasks_json, fmt)
    assert set(ours) == set(theirs), f"{fmt}: files {sorted(ours)} != {sorted(theirs)}"
    assert our_dirs == their_dirs, f"{fmt}: dirs {sorted(our_dirs)} != {sorted(their_dirs)}"
    for name, data in theirs.items():
        if name.endswith(".json"):
            close(without_timestamps(ours[name]), without_timestamps(data), f"{fmt}:{name}")
        elif name.endswith(".xml"):
            assert xml_tree(ours[name]) == xml_tree(data), f"{fmt}:{name}"
        elif name.startswith("labels/"):
            yolo_lines_close(ours[name], data, f"{fmt}:{name}")
        else:
            assert ours[name] == data, f"{fmt}:{name}: {ours[name]!r} != {data!r}"
    return ours


@pytest.fixture(scope="module")
def api_key(verity):
    return verity.admin_token


@pytest.fixture(scope="module")
def boxes_project(admin_client):
    p = make_project(admin_client, BOXES_CONFIG, "Boxes")
    fill_boxes(admin_client, p.id, random.Random(46))
    yield p
    admin_client.projects.delete(p.id)


@pytest.fixture(scope="module")
def keypoints_project(admin_client):
    p = make_project(admin_client, KEYPOINTS_CONFIG, "Keypoints")
    fill_keypoints(admin_client, p.id, random.Random(47))
    yield p
    admin_client.projects.delete(p.id)


def verity_json(verity, api_key, project_id, **params):
    r = export_direct(verity, api_key, project_id, "JSON", **params)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("fmt", ["YOLO", "YOLO_OBB", "COCO", "VOC"])
@pytest.mark.parametrize("all_tasks", [False, True])
def test_direct_export_matches_the_converter(verity, api_key, boxes_project, fmt, all_tasks):
    params = {"download_all_tasks": "true"} if all_tasks else {}
    r = export_direct(verity, api_key, boxes_project.id, fmt, **params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"].endswith('.zip"')
    files = compare(fmt, r.content, BOXES_CONFIG, verity_json(verity, api_key, boxes_project.id, **params))
    if fmt.startswith("YOLO"):
        assert sum(1 for n in files if n.startswith("labels/")) >= 5


@pytest.mark.parametrize("fmt", ["YOLO", "COCO"])
def test_keypoints_match_the_converter(verity, api_key, keypoints_project, fmt):
    r = export_direct(verity, api_key, keypoints_project.id, fmt)
    assert r.status_code == 200, r.text
    files = compare(fmt, r.content, KEYPOINTS_CONFIG, verity_json(verity, api_key, keypoints_project.id))
    if fmt == "COCO":
        coco = json.loads(files["result.json"])
        assert any("keypoints" in a for a in coco["annotations"])


@pytest.mark.parametrize("fmt", ["YOLO", "COCO", "VOC"])
def test_snapshot_conversion_matches_the_converter(verity, api_key, admin_client, boxes_project, fmt):
    data, source = export_snapshot(admin_client, boxes_project.id, fmt)
    assert any(not t["annotations"] for t in source), "the snapshot should take every task"
    compare(fmt, data, BOXES_CONFIG, source)


@pytest.fixture(scope="module")
def text_project(admin_client):
    p = make_project(admin_client, TEXT_CONFIG, "Text")
    fill_text(admin_client, p.id, random.Random(48))
    yield p
    admin_client.projects.delete(p.id)


@pytest.mark.parametrize("all_tasks", [False, True])
def test_conll_matches_the_converter(verity, api_key, text_project, all_tasks):
    params = {"download_all_tasks": "true"} if all_tasks else {}
    r = export_direct(verity, api_key, text_project.id, "CONLL2003", **params)
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"].endswith('.conll"')
    theirs, _ = reference(TEXT_CONFIG, verity_json(verity, api_key, text_project.id, **params), "CONLL2003")
    assert list(theirs) == ["result.conll"]
    assert r.text.splitlines() == theirs["result.conll"].decode().splitlines()
    assert any(line.endswith(" B-PER") or line.endswith(" B-ORG") for line in r.text.splitlines())


def test_conll_snapshot_conversion_matches_the_converter(admin_client, text_project):
    data, source = export_snapshot(admin_client, text_project.id, "CONLL2003")
    theirs, _ = reference(TEXT_CONFIG, source, "CONLL2003")
    assert data.decode().splitlines() == theirs["result.conll"].decode().splitlines()


def test_formats_follow_the_label_config(verity, api_key, admin_client, boxes_project):
    def formats(pid):
        r = requests.get(f"{verity.base_url}/api/projects/{pid}/export/formats",
                         headers=headers(verity, api_key), timeout=30)
        assert r.status_code == 200, r.text
        return {f["name"]: f.get("disabled", False) for f in r.json()}

    boxes = formats(boxes_project.id)
    assert {k for k, off in boxes.items() if not off} >= {"JSON", "CSV", "YOLO", "YOLO_OBB", "COCO", "VOC"}
    text = make_project(admin_client, TEXT_CONFIG, "Text")
    try:
        listed = formats(text.id)
        for fmt in ("YOLO", "YOLO_OBB", "COCO", "VOC"):
            assert listed[fmt] is True, listed
            r = export_direct(verity, api_key, text.id, fmt)
            assert r.status_code == 400, r.text
            assert r.json()["code"] == "export_format_unsupported", r.json()
        assert listed["JSON"] is False and listed["CONLL2003"] is False
        assert boxes["CONLL2003"] is True
    finally:
        admin_client.projects.delete(text.id)


def random_mask(rng, w, h):
    """A mask of a few filled rectangles (0 or 255, and some odd values), as brushes paint."""
    mask = np.zeros((h, w), dtype=np.uint8)
    for _ in range(rng.randint(1, 4)):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        mask[y0:y0 + rng.randint(1, h), x0:x0 + rng.randint(1, w)] = rng.choice([255, 255, 128, 7])
    return mask


def fill_brush(ls, project_id, rng):
    for n in range(3):
        task = ls.tasks.create(project=project_id, data={"image": f"https://img.example.com/seg/{n}.png"})
        w, h = rng.choice([(37, 23), (64, 48), (5, 300)])
        for a in range(1 + (n % 2)):
            result = []
            # Several regions of the same label, a region with two labels, one with none.
            for k, labels in enumerate([["Road"], ["Road"], ["Sky/Cloud"], ["Tree", "Road"], []][: 2 + n + a]):
                rle = brush.mask2rle(random_mask(rng, w, h))
                result.append(region(f"m{n}{a}{k}", "tag", "brushlabels",
                                     {"format": "rle", "rle": rle, "brushlabels": labels}, w, h))
            ls.annotations.create(id=task.id, result=result)
    ls.tasks.create(project=project_id, data={"image": "https://img.example.com/seg/empty.png"})


@pytest.fixture(scope="module")
def brush_project(admin_client):
    p = make_project(admin_client, BRUSH_CONFIG, "Brush")
    fill_brush(admin_client, p.id, random.Random(50))
    yield p
    admin_client.projects.delete(p.id)


def compare_masks(fmt, ours_zip, tasks_json):
    ours, our_dirs = unzip(ours_zip)
    theirs, their_dirs = reference(BRUSH_CONFIG, tasks_json, fmt)
    assert set(ours) == set(theirs), f"{fmt}: files {sorted(ours)} != {sorted(theirs)}"
    assert our_dirs == their_dirs == set()
    assert len(theirs) >= 8, sorted(theirs)
    for name, data in theirs.items():
        if fmt == "BRUSH_TO_NUMPY":
            a, b = np.load(io.BytesIO(ours[name])), np.load(io.BytesIO(data))
            assert a.dtype == b.dtype == np.uint8 and a.shape == b.shape, name
            assert np.array_equal(a, b), name
            assert ours[name] == data, f"{name}: the .npy bytes differ"
        else:
            with Image.open(io.BytesIO(ours[name])) as a, Image.open(io.BytesIO(data)) as b:
                assert (a.mode, a.size) == (b.mode, b.size) == ("L", b.size), name
                assert np.array_equal(np.asarray(a), np.asarray(b)), name
    return ours


@pytest.mark.parametrize("fmt", ["BRUSH_TO_NUMPY", "BRUSH_TO_PNG"])
def test_brush_masks_match_the_converter(verity, api_key, brush_project, fmt):
    r = export_direct(verity, api_key, brush_project.id, fmt)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    files = compare_masks(fmt, r.content, verity_json(verity, api_key, brush_project.id))
    assert any("-tag-Sky-Cloud-0." in n for n in files), sorted(files)
    assert any("-tag-Road-1." in n for n in files), sorted(files)


@pytest.mark.parametrize("fmt", ["BRUSH_TO_NUMPY", "BRUSH_TO_PNG"])
def test_brush_snapshot_conversion_matches_the_converter(admin_client, brush_project, fmt):
    data, source = export_snapshot(admin_client, brush_project.id, fmt)
    compare_masks(fmt, data, source)


def test_brush_formats_follow_the_label_config(verity, api_key, brush_project, boxes_project):
    def formats(pid):
        r = requests.get(f"{verity.base_url}/api/projects/{pid}/export/formats",
                         headers=headers(verity, api_key), timeout=30)
        assert r.status_code == 200, r.text
        return {f["name"]: f.get("disabled", False) for f in r.json()}

    theirs = set(Converter(config=BRUSH_CONFIG, project_dir=None).supported_formats)
    assert {"BRUSH_TO_NUMPY", "BRUSH_TO_PNG"} <= theirs
    listed = formats(brush_project.id)
    assert listed["BRUSH_TO_NUMPY"] is False and listed["BRUSH_TO_PNG"] is False, listed
    assert listed["YOLO"] is True and listed["COCO"] is True, listed
    boxes = formats(boxes_project.id)
    assert boxes["BRUSH_TO_NUMPY"] is True and boxes["BRUSH_TO_PNG"] is True, boxes
    r = export_direct(verity, api_key, boxes_project.id, "BRUSH_TO_PNG")
    assert r.status_code == 400 and r.json()["code"] == "export_format_unsupported", r.text


AUDIO_CONFIG = """<View><Audio name="audio" value="$audio"/>
  <TextArea name="transcription" toName="audio"/></View>"""


def wav_file(rate, channels, width, frames):
    import wave
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"\0" * (frames * channels * width))
    return buf.getvalue()


@pytest.fixture(scope="module")
def audio_project(verity, api_key, admin_client):
    p = make_project(admin_client, AUDIO_CONFIG, "Audio")
    files = [("talk one.wav", wav_file(8000, 1, 2, 12000)), ("stereo.wav", wav_file(44100, 2, 2, 22050)),
             ("odd.wav", wav_file(16000, 1, 1, 12345))]
    r = requests.post(f"{verity.base_url}/api/projects/{p.id}/import",
                      files=[("file", (name, data, "audio/wav")) for name, data in files],
                      headers=headers(verity, api_key), timeout=60)
    assert r.status_code == 201, r.text
    texts = ["hello \"world\"", "naïve café — 😀", "line\nbreak\ttab", "second take"]
    for n, task in enumerate(admin_client.tasks.list(project=p.id)):
        for a in range(1 + (n % 2)):
            admin_client.annotations.create(id=task.id, result=[
                {"id": f"t{n}{a}", "from_name": "transcription", "to_name": "audio", "type": "textarea",
                 "value": {"text": [texts[(n + a) % len(texts)]]}}])
    remote = admin_client.tasks.create(project=p.id, data={"audio": "https://audio.example.invalid/x/remote.wav"})
    admin_client.annotations.create(id=remote.id, result=[
        {"id": "r", "from_name": "transcription", "to_name": "audio", "type": "textarea", "value": {"text": ["far"]}}])
    yield p
    admin_client.projects.delete(p.id)


def asr_reference(verity, tasks_json):
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "export.json")
        with open(src, "w") as f:
            json.dump(tasks_json, f)
        out = os.path.join(tmp, "out")
        os.makedirs(out)
        # The converter reads Verity's uploads where Label Studio keeps its own: <upload dir>/<project>/<file>.
        Converter(config=AUDIO_CONFIG, project_dir=None, upload_dir=os.path.join(verity.data_dir, "upload"),
                  download_resources=True).convert(src, out, "ASR_MANIFEST", is_dir=False)
        with open(os.path.join(out, "manifest.json"), encoding="utf8") as fh:
            return fh.read().splitlines()


def check_manifest(verity, data, tasks_json):
    ours, dirs = unzip(data)
    assert set(ours) == {"manifest.json"} and dirs == {"audio/"}, (sorted(ours), dirs)
    lines = ours["manifest.json"].decode("ascii").splitlines()
    # Audio on other servers is not read: its line has no duration (the converter downloads it,
    # here it cannot, and leaves the line out).
    remote = [line for line in lines if json.loads(line)["duration"] is None]
    assert [json.loads(line)["audio_filepath"] for line in remote] == ["audio/remote.wav"], lines
    theirs = asr_reference(verity, tasks_json)
    assert len(theirs) >= 4
    assert [line for line in lines if line not in remote] == theirs


def test_asr_manifest_matches_the_converter(verity, api_key, audio_project):
    r = export_direct(verity, api_key, audio_project.id, "ASR_MANIFEST")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    check_manifest(verity, r.content, verity_json(verity, api_key, audio_project.id))


def test_asr_snapshot_conversion_matches_the_converter(verity, admin_client, audio_project):
    data, source = export_snapshot(admin_client, audio_project.id, "ASR_MANIFEST")
    check_manifest(verity, data, source)


@pytest.mark.parametrize("config", [BOXES_CONFIG, KEYPOINTS_CONFIG, TEXT_CONFIG, BRUSH_CONFIG, AUDIO_CONFIG])
def test_enabled_formats_are_the_converters(verity, api_key, admin_client, config):
    p = make_project(admin_client, config, "Formats")
    try:
        r = requests.get(f"{verity.base_url}/api/projects/{p.id}/export/formats",
                         headers=headers(verity, api_key), timeout=30)
        assert r.status_code == 200, r.text
        listed = {f["name"]: f["disabled"] for f in r.json()}
        theirs = set(Converter(config=config, project_dir=None).supported_formats)
        assert {name for name, off in listed.items() if not off} == theirs & set(listed), listed
    finally:
        admin_client.projects.delete(p.id)


def png_image(w, h, seed):
    rng = random.Random(seed)
    img = Image.new("RGB", (w, h), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def images_project(verity, api_key, admin_client):
    """Boxes on uploaded images (their real size differs from the annotations' original size)."""
    p = make_project(admin_client, BOXES_CONFIG, "Images")
    files = [("street one.png", png_image(64, 48, 1)), ("yard.png", png_image(30, 70, 2)),
             ("plain.png", png_image(12, 12, 3))]
    r = requests.post(f"{verity.base_url}/api/projects/{p.id}/import",
                      files=[("file", (name, data, "image/png")) for name, data in files],
                      headers=headers(verity, api_key), timeout=60)
    assert r.status_code == 201, r.text
    rng = random.Random(48)
    uploaded = {}
    for n, task in enumerate(admin_client.tasks.list(project=p.id)):
        stored = task.data["image"].rsplit("/", 1)[-1]
        uploaded[stored] = next(data for name, data in files if stored.endswith(name.replace(" ", "_"))
                                or stored.endswith(name))
        if n == 2:
            continue  # an image without annotations (only with download_all_tasks)
        result = [region(f"b{n}{k}", "label", "rectanglelabels",
                         {**rnd_box(rng), "rectanglelabels": [rng.choice(["Car", "Bus", "human"])]})
                  for k in range(1 + n)]
        admin_client.annotations.create(id=task.id, result=result)
    yield p, uploaded
    admin_client.projects.delete(p.id)


def images_reference(verity, tasks_json, fmt):
    """The converter's files for ``fmt``, reading Verity's uploads where Label Studio's server
    lets it read its own (the upload folder), downloading nothing else."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "export.json")
        with open(src, "w") as f:
            json.dump(tasks_json, f)
        out = os.path.join(tmp, "out")
        os.makedirs(out)
        Converter(config=BOXES_CONFIG, project_dir=None, upload_dir=os.path.join(verity.data_dir, "upload"),
                  download_resources=True).convert(src, out, fmt, is_dir=False)
        files = {}
        for root, _, fnames in os.walk(out):
            for fn in fnames:
                p = os.path.join(root, fn)
                with open(p, "rb") as fh:
                    files[os.path.relpath(p, out)] = fh.read()
        return files


def compare_with_images(verity, fmt, ours_zip, tasks_json, uploaded):
    ours, dirs = unzip(ours_zip)
    theirs = images_reference(verity, tasks_json, fmt)
    assert set(ours) == set(theirs), f"{fmt}: files {sorted(ours)} != {sorted(theirs)}"
    assert "images/" in dirs
    images = {name for name in ours if name.startswith("images/")}
    assert images, ours.keys()
    for name in images:
        # The uploaded bytes, unchanged.
        assert ours[name] == theirs[name] == uploaded[name[len("images/"):]], name
    for name, data in theirs.items():
        if name.startswith("labels/"):
            yolo_lines_close(ours[name], data, f"{fmt}:{name}")
        elif name == "result.json":
            doc = without_timestamps(data)
            # The converter names an image it read from the upload folder by its path there,
            # relative to the output (outside the archive); Verity names the copy in images/.
            for image in doc["images"]:
                image["file_name"] = "images/" + os.path.basename(image["file_name"])
            close(without_timestamps(ours[name]), doc, f"{fmt}:{name}")
        elif name.endswith(".json"):
            close(without_timestamps(ours[name]), without_timestamps(data), f"{fmt}:{name}")
        elif not name.startswith("images/"):
            assert ours[name] == data, f"{fmt}:{name}"
    return ours


@pytest.mark.parametrize("fmt", ["YOLO_WITH_IMAGES", "YOLO_OBB_WITH_IMAGES", "COCO_WITH_IMAGES"])
@pytest.mark.parametrize("all_tasks", [False, True])
def test_images_match_the_converter(verity, api_key, images_project, fmt, all_tasks):
    project, uploaded = images_project
    params = {"download_all_tasks": "true"} if all_tasks else {}
    r = export_direct(verity, api_key, project.id, fmt, **params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    ours = compare_with_images(verity, fmt, r.content, verity_json(verity, api_key, project.id, **params), uploaded)
    assert len([n for n in ours if n.startswith("images/")]) == (3 if all_tasks else 2)
    if fmt == "COCO_WITH_IMAGES":
        sizes = {i["file_name"]: (i["width"], i["height"]) for i in json.loads(ours["result.json"])["images"]}
        assert set(sizes.values()) <= {(64, 48), (30, 70), (12, 12)}, sizes


@pytest.mark.parametrize("fmt", ["YOLO_WITH_IMAGES", "COCO_WITH_IMAGES"])
def test_images_snapshot_conversion_matches_the_converter(verity, admin_client, images_project, fmt):
    project, uploaded = images_project
    data, source = export_snapshot(admin_client, project.id, fmt)
    compare_with_images(verity, fmt, data, source, uploaded)


@pytest.mark.parametrize("all_tasks", [False, True])
def test_csv_old_matches_the_converter(verity, api_key, admin_client, boxes_project, all_tasks):
    """CSV_OLD is the converter's command-line ``ExportToCSV`` layout (pandas ``to_csv``)."""
    from label_studio_sdk.converter.exports.csv import ExportToCSV

    params = {"download_all_tasks": "true"} if all_tasks else {}
    r = export_direct(verity, api_key, boxes_project.id, "CSV_OLD", keep_formulas="true", **params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    theirs = io.StringIO()
    ExportToCSV(verity_json(verity, api_key, boxes_project.id, **params)).to_file(theirs, index=False)
    assert r.text.splitlines() == theirs.getvalue().splitlines()
    # A job's conversion writes the same rows, cells that would start a spreadsheet formula
    # (here negative numbers) prefixed with ' as every CSV conversion does (docs/exports.md).
    data, source = export_snapshot(admin_client, boxes_project.id, "CSV_OLD")
    theirs = io.StringIO()
    ExportToCSV(source).to_file(theirs, index=False)
    neutral = [["'" + c if c[:1] in ("=", "+", "-", "@", "\t", "\r") else c for c in row]
               for row in csv.reader(io.StringIO(theirs.getvalue()))]
    assert list(csv.reader(io.StringIO(data.decode()))) == neutral


BRUSH_COCO_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="mask" toName="image"><Label value="Road"/><Label value="Sky"/><Label value="Tree"/></BrushLabels>
  <PolygonLabels name="poly" toName="image"><Label value="Lake"/><Label value="Road"/></PolygonLabels>
  <RectangleLabels name="box" toName="image"><Label value="Car"/><Label value="Sky"/></RectangleLabels>
</View>"""


def traced_mask(rng, w, h):
    """A mask that exercises contour tracing: filled discs, a ring with an island in its hole,
    speckle (many small regions, diagonal contacts and holes), lone pixels, a thin line and a
    diagonal, some of them touching the image's edges."""
    yy, xx = np.mgrid[0:h, 0:w]
    mask = np.zeros((h, w), dtype=np.uint8)
    for _ in range(rng.randint(0, 2)):
        cx, cy, r = rng.uniform(-3, w + 3), rng.uniform(-3, h + 3), rng.uniform(2, min(w, h) / 2)
        mask[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = 255
    if rng.random() < 0.6:
        cx, cy = rng.uniform(8, w - 8), rng.uniform(8, h - 8)
        d = (xx - cx) ** 2 + (yy - cy) ** 2
        mask[(d <= 49) & (d >= 16)] = 200
        mask[int(cy), int(cx)] = 9
    x0, y0 = rng.randrange(w // 2), rng.randrange(h // 2)
    box = mask[y0:y0 + rng.randint(4, h // 2), x0:x0 + rng.randint(4, w // 2)]
    box[np.array([[rng.random() < 0.45 for _ in range(box.shape[1])] for _ in range(box.shape[0])])] = 255
    for _ in range(rng.randint(0, 3)):
        mask[rng.randrange(h), rng.randrange(w)] = 255
    y = rng.randrange(h)
    mask[y, rng.randrange(w // 2):] = 128
    for k in range(min(w, h) // 2):
        mask[k, (k + 3) % w] = 255
    return mask


def fill_brush_coco(ls, project_id, rng):
    for n in range(6):
        task = ls.tasks.create(project=project_id, data={"image": f"https://img.example.com/coco/{n}.PNG"})
        w, h = rng.choice([(41, 29), (64, 48), (30, 30)])
        for a in range(1 + (n % 2)):
            result = []
            for k, labels in enumerate([["Road"], ["Sky", "Tree"], ["Tree"], []][: 1 + (n + a) % 4]):
                rle = brush.mask2rle(traced_mask(rng, w, h))
                result.append(region(f"m{n}{a}{k}", "mask", "brushlabels",
                                     {"format": "rle", "rle": rle, "brushlabels": labels}, w, h))
            if n % 3 != 2:
                pts = [[rng.uniform(0, 100), rng.uniform(0, 100)] for _ in range(rng.randint(3, 6))]
                if w == 64:
                    # A corner at exactly 12.5 pixels (19.53125 % of 64): rounded half to even.
                    pts.append([19.53125, 50])
                result.append(region(f"p{n}{a}", "poly", "polygonlabels",
                                     {"points": pts, "closed": True, "polygonlabels": [rng.choice(["Lake", "Road"])]}, w, h))
            if n % 2 == 0:
                result.append(region(f"b{n}{a}", "box", "rectanglelabels",
                                     {**rnd_box(rng), "rectanglelabels": ["Car", "Sky"][: 1 + a]}, w, h))
            ls.annotations.create(id=task.id, result=result)
    # no image extension: not in the converter's output, but it takes an image id
    odd = ls.tasks.create(project=project_id, data={"image": "https://img.example.com/coco/raw?id=7"})
    ls.annotations.create(id=odd.id, result=[region("x", "box", "rectanglelabels",
                                                    {**rnd_box(rng), "rectanglelabels": ["Car"]})])
    ls.tasks.create(project=project_id, data={"image": "https://img.example.com/coco/none.png"})


@pytest.fixture(scope="module")
def brush_coco_project(admin_client):
    p = make_project(admin_client, BRUSH_COCO_CONFIG, "Brush COCO")
    fill_brush_coco(admin_client, p.id, random.Random(51))
    yield p
    admin_client.projects.delete(p.id)


def compare_brush_coco(ours_zip, tasks_json):
    ours, our_dirs = unzip(ours_zip)
    theirs, their_dirs = reference(BRUSH_COCO_CONFIG, tasks_json, "BRUSH_TO_COCO")
    assert set(ours) == set(theirs) == {"result_coco.json"}, (sorted(ours), sorted(theirs))
    assert our_dirs == their_dirs == {"images/"}
    docs = []
    for doc in (json.loads(ours["result_coco.json"]), json.loads(theirs["result_coco.json"])):
        for key in ("year", "date_created"):
            doc["info"].pop(key)
        # Label Studio draws each category's colour at random.
        for category in doc["categories"]:
            assert len(category.pop("color")) == 7
        docs.append(doc)
    close(docs[0], docs[1], "BRUSH_TO_COCO")
    return docs[0]


@pytest.mark.parametrize("all_tasks", [False, True])
def test_brush_to_coco_matches_the_converter(verity, api_key, brush_coco_project, all_tasks):
    params = {"download_all_tasks": "true"} if all_tasks else {}
    r = export_direct(verity, api_key, brush_coco_project.id, "BRUSH_TO_COCO", **params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    doc = compare_brush_coco(r.content, verity_json(verity, api_key, brush_coco_project.id, **params))
    traced = [a for a in doc["annotations"] if a["segmentation"] and len(a["segmentation"][0]) > 2 * 6]
    assert len(doc["annotations"]) >= 40 and len(traced) >= 15, (len(doc["annotations"]), len(traced))
    assert {c["name"] for c in doc["categories"]} == {"Road", "Sky", "Tree", "Lake", "Car"}


def test_brush_to_coco_snapshot_conversion_matches_the_converter(admin_client, brush_coco_project):
    data, source = export_snapshot(admin_client, brush_coco_project.id, "BRUSH_TO_COCO")
    compare_brush_coco(data, source)
