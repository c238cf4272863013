"""Azure Blob import and export storages through the official SDK
(`client.import_storage.azure.*`, `client.export_storage.azure.*`) against Azurite (npm
`azurite` pinned in e2e/sdk/azurite, installed by e2e/test-all), started here on a free loopback
port with the well-known development account. The storage reaches it through Verity's
`azure_endpoint` field (the account URL, ADR 0028), sent with the SDK's
`additional_body_parameters`. Azurite verifies Shared Key signatures, so a wrong account key is
refused for real. Covered: validate, an import of a few hundred objects, incremental re-syncs,
JSON task files, media proxied and presigned (SAS), export with deletion, bad credentials
(clear error, nothing imported; also a key rotated on the service between syncs) and a missing
container. Blobs are seeded with a small Shared
Key signer below (no Azure SDK in the suite)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import os
import re
import socket
import subprocess
import tempfile
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from label_studio_sdk.core.api_error import ApiError

from test_sdk_compat import unique_title

IMAGE_CONFIG = """<View><Image name="image" value="$image"/>
<Choices name="choice" toName="image"><Choice value="a"/><Choice value="b"/></Choices></View>"""
TEXT_CONFIG = """<View><Text name="text" value="$text"/>
<Choices name="choice" toName="text"><Choice value="a"/><Choice value="b"/></Choices></View>"""
ACCOUNT = "devstoreaccount1"
# Azurite's published development key (not a secret).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE_BIN = os.path.join(os.path.dirname(__file__), "azurite", "node_modules", ".bin", "azurite-blob")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_azurite(port: int, location: str, key: str = KEY) -> subprocess.Popen:
    if not os.path.exists(AZURITE_BIN):
        pytest.fail("azurite is not installed: e2e/test-all links e2e/sdk/azurite/node_modules")
    env = dict(os.environ, AZURITE_ACCOUNTS=f"{ACCOUNT}:{key}")
    proc = subprocess.Popen(
        [AZURITE_BIN, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", location,
         "--silent", "--skipApiVersionCheck", "--loose"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"http://127.0.0.1:{port}/{ACCOUNT}", timeout=1)
            return proc
        except requests.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise AssertionError("azurite did not start")
            time.sleep(0.2)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def azure():
    port = _free_port()
    with tempfile.TemporaryDirectory() as data:
        proc = _start_azurite(port, data)
        yield f"http://127.0.0.1:{port}/{ACCOUNT}"
        _stop(proc)


def _call(url: str, method: str, path: str, query: dict | None = None, body: bytes = b"",
          headers: dict | None = None, key: str = KEY) -> requests.Response:
    """A Shared Key signed request to the emulator (path-style: /<account>/<container>/<blob>)."""
    query = query or {}
    headers = dict(headers or {})
    headers["x-ms-date"] = datetime.datetime.now(datetime.timezone.utc).strftime(
        "%a, %d %b %Y %H:%M:%S GMT")
    headers["x-ms-version"] = "2021-08-06"
    full_path = urllib.parse.urlsplit(url).path + path
    canon_headers = "".join(f"{k}:{v}\n" for k, v in sorted(
        (k.lower(), v) for k, v in headers.items() if k.lower().startswith("x-ms-")))
    canon_resource = f"/{ACCOUNT}{urllib.parse.quote(full_path)}" + "".join(
        f"\n{k.lower()}:{v}" for k, v in sorted(query.items()))
    content_type = headers.get("Content-Type", "")
    to_sign = "\n".join([method, "", "", str(len(body)) if body else "", "", content_type,
                         "", "", "", "", "", ""]) + "\n" + canon_headers + canon_resource
    signature = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(),
                                          hashlib.sha256).digest()).decode()
    headers["Authorization"] = f"SharedKey {ACCOUNT}:{signature}"
    base = url.rsplit("/", 1)[0]
    return requests.request(method, base + urllib.parse.quote(full_path), params=query,
                            data=body, headers=headers, timeout=10)


def _mk_container(url: str, name: str) -> str:
    r = _call(url, "PUT", f"/{name}", {"restype": "container"})
    assert r.status_code in (201, 409), r.text
    return name


def _put(url: str, container: str, key: str, body: bytes) -> None:
    r = _call(url, "PUT", f"/{container}/{key}", body=body,
              headers={"x-ms-blob-type": "BlockBlob", "Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text


def _put_many(url: str, container: str, items: dict) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda kv: _put(url, container, kv[0], kv[1]), items.items()))


def _keys(url: str, container: str) -> list:
    r = _call(url, "GET", f"/{container}", {"restype": "container", "comp": "list"})
    assert r.status_code == 200, r.text
    return sorted(re.findall(r"<Name>([^<]+)</Name>", r.text))


def _read(url: str, container: str, key: str) -> bytes:
    r = _call(url, "GET", f"/{container}/{key}")
    assert r.status_code == 200, r.text
    return r.content


def _args(url: str, container: str, key: str = KEY, **extra) -> dict:
    args = dict(container=container, account_name=ACCOUNT, account_key=key,
                request_options={"additional_body_parameters": {"azure_endpoint": url}})
    args.update(extra)
    return args


def _raw(verity, method: str, path: str, **kw) -> requests.Response:
    headers = kw.pop("headers", {})
    headers["Authorization"] = f"Token {verity.admin_token}"
    return requests.request(method, verity.base_url + path, headers=headers, timeout=30, **kw)


def _sync(ls, verity, storage_id: int, export: bool = False) -> dict:
    client = ls.export_storage.azure if export else ls.import_storage.azure
    queued = client.sync(id=storage_id)
    assert queued.last_sync_job, queued
    path = f"/api/storages/{'export/' if export else ''}azure/{storage_id}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        got = _raw(verity, "GET", path).json()
        if got["status"] in ("completed", "failed"):
            return got
        time.sleep(0.25)
    raise AssertionError(f"sync of {path} did not end: {got}")


def _task_number(ls, project: int) -> int:
    return ls.projects.get(project).task_number


def test_validate_and_credentials_never_returned(verity, admin_client, azure):
    ls = admin_client
    container = _mk_container(azure, "az-validate")
    project = ls.projects.create(title=unique_title("Azure validate"), label_config=IMAGE_CONFIG)
    ls.import_storage.azure.validate(project=project.id, **_args(azure, container))
    with pytest.raises(ApiError) as missing:
        ls.import_storage.azure.validate(project=project.id, **_args(azure, "no-such-container"))
    assert missing.value.status_code == 400
    assert missing.value.body["code"] == "storage_unreachable", missing.value.body
    assert "container no-such-container does not exist" in missing.value.body["detail"]
    with pytest.raises(ApiError):
        ls.import_storage.azure.create(project=project.id, **_args(azure, "no-such-container"))
    assert ls.import_storage.azure.list(project=project.id) == []

    created = ls.import_storage.azure.create(project=project.id, title="media", prefix="x/",
                                             **_args(azure, container))
    raw = _raw(verity, "GET", f"/api/storages/azure/{created.id}").json()
    assert raw["container"] == container and raw["prefix"] == "x" and raw["type"] == "azure", raw
    assert raw["account_name"] == ACCOUNT and raw["azure_endpoint"] == azure, raw
    assert raw["has_credentials"] is True and KEY not in json.dumps(raw), raw
    if not os.environ.get("VERITY_SDK_DATABASE_URL"):
        import sqlite3

        with sqlite3.connect(os.path.join(verity.data_dir, "verity.db")) as db:
            (stored,) = db.execute("select account_key from cloud_storage where id = ?",
                                   (created.id,)).fetchone()
        assert stored.startswith("sealed:v1:") and KEY not in stored
    patched = ls.import_storage.azure.update(id=created.id, title="renamed")
    assert patched.title == "renamed"
    ok = _raw(verity, "POST", "/api/storages/azure/validate", json={"id": created.id})
    assert ok.status_code == 200, ok.text
    listed = _raw(verity, "GET", f"/api/storages/?project={project.id}").json()
    assert [(s["type"], s["id"]) for s in listed] == [("azure", created.id)], listed
    ls.import_storage.azure.delete(id=created.id)
    assert ls.import_storage.azure.list(project=project.id) == []


def test_import_blobs_incrementally_and_serve_media(verity, admin_client, azure):
    ls = admin_client
    container = _mk_container(azure, "az-bulk")
    body = bytes(range(256)) * 20
    _put_many(azure, container, {f"img/{i:04}.jpg": b"x%d" % i for i in range(300)})
    _put(azure, container, "img/clip.wav", body)
    _put(azure, container, "img/sub/deeper.jpg", b"d")
    _put(azure, container, "other/outside.jpg", b"o")
    project = ls.projects.create(title=unique_title("Azure bulk"), label_config=IMAGE_CONFIG)
    storage = ls.import_storage.azure.create(project=project.id, prefix="img", use_blob_urls=True,
                                             presign=False, **_args(azure, container))
    done = _sync(ls, verity, storage.id)
    assert done["status"] == "completed" and done["last_sync_count"] == 301, done
    assert done["meta"]["new"] == 301 and done["meta"]["filtered"] == 1, done["meta"]
    again = _sync(ls, verity, storage.id)
    assert again["last_sync_count"] == 0 and again["meta"]["unchanged"] == 301, again
    _put_many(azure, container, {f"img/new-{i}.jpg": b"n" for i in range(3)})
    _put_many(azure, container, {"img/0001.jpg": b"changed", "img/0002.jpg": b"changed too"})
    third = _sync(ls, verity, storage.id)
    assert third["last_sync_count"] == 3, third
    assert third["meta"]["new"] == 3 and third["meta"]["changed"] == 2, third["meta"]
    assert _task_number(ls, project.id) == 304

    task = next(t for t in ls.tasks.list(project=project.id, page_size=400, resolve_uri=False)
                if t.data["image"].endswith("clip.wav"))
    assert task.data["image"] == f"azure-blob://{container}/img/clip.wav"
    fileuri = base64.urlsafe_b64encode(task.data["image"].encode()).decode()
    resolved = _raw(verity, "GET", f"/api/tasks/{task.id}/presign?fileuri={fileuri}",
                    allow_redirects=False)
    assert resolved.status_code == 303, resolved.text
    link = resolved.headers["Location"]
    assert link.startswith("/storage-proxy/"), link
    assert requests.get(verity.base_url + link, timeout=30).content == body
    part = requests.get(verity.base_url + link, headers={"Range": "bytes=10-19"}, timeout=30)
    assert part.status_code == 206 and part.content == body[10:20], part.text
    # presign = true: a SAS URL signed with the account key, which Azurite verifies.
    ls.import_storage.azure.update(id=storage.id, presign=True, presign_ttl=5)
    presigned = _raw(verity, "GET", f"/api/tasks/{task.id}/presign?fileuri={fileuri}",
                     allow_redirects=False)
    assert presigned.status_code == 303, presigned.text
    location = presigned.headers["Location"]
    assert location.startswith(f"{azure}/{container}/img/clip.wav?") and "sig=" in location, location
    assert requests.get(location, timeout=30).content == body
    tampered = requests.get(location.replace("sp=r", "sp=rw"), timeout=30)
    assert tampered.status_code == 403, tampered.status_code


def test_json_task_files_incrementally(verity, admin_client, azure):
    ls = admin_client
    container = _mk_container(azure, "az-tasks")
    files = {f"t/{i}.json": json.dumps({"data": {"text": f"single {i}"}}).encode() for i in range(10)}
    files["t/list.json"] = json.dumps([{"text": "l1"}, {"text": "l2"}]).encode()
    files["t/lines.jsonl"] = "\n".join(json.dumps({"text": f"line {i}"}) for i in range(3)).encode()
    files["t/readme.txt"] = b"not a task"
    _put_many(azure, container, files)
    project = ls.projects.create(title=unique_title("Azure json"), label_config=TEXT_CONFIG)
    storage = ls.import_storage.azure.create(project=project.id, prefix="t",
                                             regex_filter=r".*\.jsonl?$", **_args(azure, container))
    done = _sync(ls, verity, storage.id)
    assert done["status"] == "completed" and done["last_sync_count"] == 15, done
    again = _sync(ls, verity, storage.id)
    assert again["last_sync_count"] == 0 and again["meta"]["unchanged"] == 12, again
    _put_many(azure, container, {"t/3.json": json.dumps([{"text": "v2 a"}, {"text": "v2 b"}]).encode(),
                                 "t/new.json": json.dumps({"text": "brand new"}).encode()})
    third = _sync(ls, verity, storage.id)
    assert third["status"] == "completed" and third["last_sync_count"] == 3, third
    assert _task_number(ls, project.id) == 18


def test_export_writes_annotations_and_deletes_removed_ones(verity, admin_client, azure):
    ls = admin_client
    container = _mk_container(azure, "az-exports")
    project = ls.projects.create(title=unique_title("Azure export"), label_config=TEXT_CONFIG)
    ls.projects.import_tasks(id=project.id, request=[{"text": f"t{i}"} for i in range(3)])
    tasks = list(ls.tasks.list(project=project.id))
    result = [{"from_name": "choice", "to_name": "text", "type": "choices", "value": {"choices": ["a"]}}]
    annotations = [ls.annotations.create(id=t.id, result=result) for t in tasks]
    storage = ls.export_storage.azure.create(project=project.id, prefix="out",
                                             can_delete_objects=True, **_args(azure, container))
    done = _sync(ls, verity, storage.id, export=True)
    assert done["status"] == "completed" and done["last_sync_count"] == 3, done
    keys = _keys(azure, container)
    assert keys == sorted(f"out/{a.id}" for a in annotations)
    written = json.loads(_read(azure, container, f"out/{annotations[0].id}"))
    assert written["id"] == annotations[0].id and written["task"]["id"] == tasks[0].id, written
    again = _sync(ls, verity, storage.id, export=True)
    assert again["status"] == "completed" and _keys(azure, container) == keys, again
    # Deleting an annotation deletes its object as it happens (ADR 0052); the sync after it
    # finds nothing left to delete.
    ls.annotations.delete(id=annotations[1].id)
    expected = sorted(f"out/{a.id}" for a in (annotations[0], annotations[2]))
    deadline = time.monotonic() + 30
    while _keys(azure, container) != expected:
        assert time.monotonic() < deadline, "the deleted annotation's object is still there"
        time.sleep(0.2)
    third = _sync(ls, verity, storage.id, export=True)
    assert third["status"] == "completed" and third["meta"].get("deleted", 0) == 0, third
    assert _keys(azure, container) == expected
    exported = _raw(verity, "GET", f"/api/storages/export?project={project.id}").json()
    assert [(s["type"], s["id"]) for s in exported] == [("azure", storage.id)], exported


def test_bad_credentials_and_missing_container(verity, admin_client, azure):
    ls = admin_client
    container = _mk_container(azure, "az-guarded")
    _put_many(azure, container, {f"{i}.jpg": b"x" for i in range(5)})
    project = ls.projects.create(title=unique_title("Azure bad key"), label_config=IMAGE_CONFIG)
    wrong = base64.b64encode(b"not the account key at all, 64 bytes long ..........").decode()
    with pytest.raises(ApiError) as refused:
        ls.import_storage.azure.create(project=project.id, use_blob_urls=True,
                                       **_args(azure, container, key=wrong))
    assert refused.value.body["code"] == "storage_unreachable", refused.value.body
    assert "refused the credentials" in refused.value.body["detail"], refused.value.body
    assert ls.import_storage.azure.list(project=project.id) == []
    storage = ls.import_storage.azure.create(project=project.id, use_blob_urls=True,
                                             **_args(azure, container))
    # A change to a wrong key is refused the same way, and the storage keeps the good one.
    with pytest.raises(ApiError) as changed:
        ls.import_storage.azure.update(id=storage.id, account_key=wrong)
    assert changed.value.body["code"] == "storage_unreachable", changed.value.body
    ok = _raw(verity, "POST", "/api/storages/azure/validate", json={"id": storage.id})
    assert ok.status_code == 200, ok.text
    # The container goes away: the sync fails and says so.
    assert _call(azure, "DELETE", f"/{container}", {"restype": "container"}).status_code == 202
    failed = _sync(ls, verity, storage.id)
    assert failed["status"] == "failed", failed
    assert f"container {container} does not exist" in failed["traceback"], failed
    assert _task_number(ls, project.id) == 0


def test_a_key_rotated_on_the_service_fails_the_sync_and_imports_nothing(verity, admin_client):
    """The storage's key stops working behind its back (the account key is rotated: Azurite
    restarted on the same data with another key): the sync fails, says the credentials were
    refused, and imports nothing; with the new key set, the next sync imports."""
    ls = admin_client
    port = _free_port()
    rotated = base64.b64encode(b"the rotated account key of the development account, 64 bytes!!").decode()
    with tempfile.TemporaryDirectory() as data:
        url = f"http://127.0.0.1:{port}/{ACCOUNT}"
        proc = _start_azurite(port, data)
        try:
            container = _mk_container(url, "az-rotated")
            _put_many(url, container, {f"{i}.jpg": b"x" for i in range(4)})
            project = ls.projects.create(title=unique_title("Azure rotated"), label_config=IMAGE_CONFIG)
            storage = ls.import_storage.azure.create(project=project.id, use_blob_urls=True,
                                                     **_args(url, container))
        finally:
            _stop(proc)
        proc = _start_azurite(port, data, key=rotated)
        try:
            failed = _sync(ls, verity, storage.id)
            assert failed["status"] == "failed", failed
            assert f"the container {container} refused the credentials" in failed["traceback"], failed
            assert "account_key" in failed["traceback"], failed
            assert _task_number(ls, project.id) == 0
            ls.import_storage.azure.update(id=storage.id, account_key=rotated)
            done = _sync(ls, verity, storage.id)
            assert done["status"] == "completed" and done["last_sync_count"] == 4, done
        finally:
            _stop(proc)


def _png(width: int, height: int, fill: int) -> bytes:
    """A valid PNG of `width`×`height` gray pixels (COCO reads the size from the bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes([fill]) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


BOXES_CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="label" toName="image"><Label value="Car"/></RectangleLabels></View>"""


def test_images_of_the_azure_storage_in_exports_with_images(verity, admin_client, azure):
    """COCO_WITH_IMAGES and YOLO_WITH_IMAGES archives of a project whose tasks point at
    `azure-blob://` images of its Azure storage hold the blobs' bytes (read with the storage's
    key, which Azurite checks); a blob that is missing, or outside the storage's prefix, is left
    out and named in the archive comment; COCO takes the size from the image."""
    import io
    import zipfile

    ls = admin_client
    container = _mk_container(azure, "az-images")
    street = _png(64, 48, 7)
    _put(azure, container, "shots/street.png", street)
    _put(azure, container, "elsewhere/out.png", _png(10, 10, 8))
    project = ls.projects.create(title=unique_title("Azure images"), label_config=BOXES_CONFIG)
    ls.import_storage.azure.create(project=project.id, prefix="shots", use_blob_urls=True,
                                   **_args(azure, container))
    present = f"azure-blob://{container}/shots/street.png"
    unreadable = [f"azure-blob://{container}/shots/lost.png",
                  f"azure-blob://{container}/elsewhere/out.png"]
    box = [{"id": "r1", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
            "original_width": 200, "original_height": 100,
            "value": {"x": 10, "y": 20, "width": 50, "height": 40, "rotation": 0,
                      "rectanglelabels": ["Car"]}}]
    for url in [present, *unreadable]:
        task = ls.tasks.create(project=project.id, data={"image": url})
        ls.annotations.create(id=task.id, result=box)

    def export(fmt: str) -> zipfile.ZipFile:
        r = _raw(verity, "GET", f"/api/projects/{project.id}/export", params={"exportType": fmt})
        assert r.status_code == 200, r.text
        return zipfile.ZipFile(io.BytesIO(r.content))

    for fmt in ("YOLO_WITH_IMAGES", "COCO_WITH_IMAGES"):
        archive = export(fmt)
        images = [n for n in archive.namelist() if n.startswith("images/") and len(n) > 7]
        assert len(images) == 1 and images[0].endswith("__street.png"), (fmt, archive.namelist())
        assert archive.read(images[0]) == street, fmt
        comment = archive.comment.decode()
        assert comment.startswith("2 image(s) could not be read"), comment
        assert all(url in comment for url in unreadable) and present not in comment, comment
        if fmt == "COCO_WITH_IMAGES":
            doc = json.loads(archive.read("result.json"))
            sizes = [(i["width"], i["height"]) for i in doc["images"]
                     if i["file_name"].endswith("__street.png")]
            assert sizes == [(64, 48)], doc["images"]
