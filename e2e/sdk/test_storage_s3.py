"""S3 import and export storages through the official SDK (`client.import_storage.s3.*`,
`client.export_storage.s3.*`) against moto's S3 server, started here on a free loopback port:
validate, an import of 10,000 objects, incremental re-syncs (only new and changed objects),
JSON/JSONL task objects, media through the proxy (byte ranges) and presigned redirects, export
with deletion, bad credentials, a missing bucket, and an object deleted between the listing and
the read (made deterministic by a forwarding proxy that deletes it right after answering the
listing). The server runs with VERITY_ALLOW_PRIVATE_TARGETS=127.0.0.1 (conftest)."""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
import requests
from botocore.config import Config as BotoConfig
from label_studio_sdk.core.api_error import ApiError

from test_sdk_compat import unique_title

IMAGE_CONFIG = """<View><Image name="image" value="$image"/>
<Choices name="choice" toName="image"><Choice value="a"/><Choice value="b"/></Choices></View>"""
TEXT_CONFIG = """<View><Text name="text" value="$text"/>
<Choices name="choice" toName="text"><Choice value="a"/><Choice value="b"/></Choices></View>"""
KEY_ID, SECRET = "AKIAVERITYTEST000001", "verity-test-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto():
    port = _free_port()
    moto_bin = os.path.join(os.path.dirname(sys.executable), "moto_server")
    proc = subprocess.Popen(
        [moto_bin, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(url + "/moto-api/", timeout=1)
            break
        except requests.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise AssertionError("moto_server did not start")
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def s3(moto):
    return boto3.client(
        "s3", endpoint_url=moto, region_name="us-east-1", aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET, config=BotoConfig(max_pool_connections=32),
    )


def _bucket(s3, name: str) -> str:
    s3.create_bucket(Bucket=name)
    return name


def _put_many(s3, bucket: str, items: dict) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda kv: s3.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), items.items()))


def _storage_args(moto: str, bucket: str, **extra) -> dict:
    args = dict(bucket=bucket, s3endpoint=moto, region_name="us-east-1",
                aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)
    args.update(extra)
    return args


def _raw(verity, method: str, path: str, **kw) -> requests.Response:
    headers = kw.pop("headers", {})
    headers["Authorization"] = f"Token {verity.admin_token}"
    return requests.request(method, verity.base_url + path, headers=headers, timeout=30, **kw)


def _wait(verity, path: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = _raw(verity, "GET", path).json()
        if got["status"] in ("completed", "failed"):
            return got
        time.sleep(0.25)
    raise AssertionError(f"sync of {path} did not end: {got}")


def _sync(ls, verity, storage_id: int, export: bool = False) -> dict:
    if export:
        queued = ls.export_storage.s3.sync(id=storage_id)
        path = f"/api/storages/export/s3/{storage_id}"
    else:
        queued = ls.import_storage.s3.sync(id=storage_id)
        path = f"/api/storages/s3/{storage_id}"
    assert queued.status in ("queued", "in_progress", "completed"), queued
    assert queued.last_sync_job, queued
    return _wait(verity, path)


def _task_number(ls, project: int) -> int:
    return ls.projects.get(project).task_number


def test_validate_and_credentials_never_returned(verity, admin_client, moto, s3):
    ls = admin_client
    bucket = _bucket(s3, "validate-me")
    project = ls.projects.create(title=unique_title("S3 validate"), label_config=IMAGE_CONFIG)
    ls.import_storage.s3.validate(project=project.id, **_storage_args(moto, bucket))
    with pytest.raises(ApiError) as missing:
        ls.import_storage.s3.validate(project=project.id, **_storage_args(moto, "no-such-bucket"))
    assert missing.value.status_code == 400
    assert missing.value.body["code"] == "storage_unreachable", missing.value.body
    assert "no-such-bucket does not exist" in missing.value.body["detail"], missing.value.body
    # Creating a storage on a missing bucket stores nothing.
    with pytest.raises(ApiError):
        ls.import_storage.s3.create(project=project.id, **_storage_args(moto, "no-such-bucket"))
    assert ls.import_storage.s3.list(project=project.id) == []

    created = ls.import_storage.s3.create(project=project.id, title="media", prefix="x/",
                                          **_storage_args(moto, bucket))
    raw = _raw(verity, "GET", f"/api/storages/s3/{created.id}").json()
    assert raw["bucket"] == bucket and raw["prefix"] == "x" and raw["type"] == "s3", raw
    assert raw["has_credentials"] is True, raw
    assert SECRET not in json.dumps(raw) and KEY_ID not in json.dumps(raw), raw
    if not os.environ.get("VERITY_SDK_DATABASE_URL"):
        # Sealed at rest (ADR 0016): the SQLite file holds no credential in plain text.
        import sqlite3

        with sqlite3.connect(os.path.join(verity.data_dir, "verity.db")) as db:
            stored = db.execute(
                "select aws_access_key_id, aws_secret_access_key from cloud_storage where id = ?",
                (created.id,),
            ).fetchone()
        assert all(v.startswith("sealed:v1:") for v in stored), stored
        assert SECRET not in "".join(stored) and KEY_ID not in "".join(stored)
    # A patch without credentials keeps them: the storage still reaches the bucket.
    patched = ls.import_storage.s3.update(id=created.id, title="renamed")
    assert patched.title == "renamed"
    ok = _raw(verity, "POST", "/api/storages/s3/validate", json={"id": created.id})
    assert ok.status_code == 200, ok.text
    assert [s.id for s in ls.import_storage.s3.list(project=project.id)] == [created.id]
    ls.import_storage.s3.delete(id=created.id)
    assert ls.import_storage.s3.list(project=project.id) == []


def test_import_10000_objects_then_only_new_and_changed(verity, admin_client, moto, s3):
    ls = admin_client
    bucket = _bucket(s3, "bulk-media")
    _put_many(s3, bucket, {f"img/{i:05}.jpg": b"x%d" % i for i in range(10_000)})
    s3.put_object(Bucket=bucket, Key="img/sub/deeper.jpg", Body=b"d")  # not recursive
    s3.put_object(Bucket=bucket, Key="other/outside.jpg", Body=b"o")  # outside the prefix
    project = ls.projects.create(title=unique_title("S3 bulk"), label_config=IMAGE_CONFIG)
    storage = ls.import_storage.s3.create(
        project=project.id, prefix="img", use_blob_urls=True, presign=False,
        **_storage_args(moto, bucket),
    )
    started = time.monotonic()
    done = _sync(ls, verity, storage.id)
    assert done["status"] == "completed", done
    assert done["last_sync_count"] == 10_000, done
    assert done["meta"]["new"] == 10_000 and done["meta"]["filtered"] == 1, done["meta"]
    assert _task_number(ls, project.id) == 10_000
    print(f"10,000 objects imported in {time.monotonic() - started:.1f} s")
    task = next(iter(ls.tasks.list(project=project.id, page_size=1, resolve_uri=False)))
    assert task.data["image"].startswith(f"s3://{bucket}/img/"), task.data

    # Nothing changed: nothing imported.
    again = _sync(ls, verity, storage.id)
    assert again["last_sync_count"] == 0 and again["meta"]["unchanged"] == 10_000, again
    # Five new objects and two changed ones: five tasks (a changed blob keeps its task).
    _put_many(s3, bucket, {f"img/new-{i}.jpg": b"n" for i in range(5)})
    _put_many(s3, bucket, {"img/00001.jpg": b"changed", "img/00002.jpg": b"changed too"})
    third = _sync(ls, verity, storage.id)
    assert third["status"] == "completed", third
    assert third["last_sync_count"] == 5, third
    assert third["meta"]["new"] == 5 and third["meta"]["changed"] == 2, third["meta"]
    assert _task_number(ls, project.id) == 10_005


def test_json_and_jsonl_objects_incrementally(verity, admin_client, moto, s3):
    ls = admin_client
    bucket = _bucket(s3, "task-files")
    files = {f"t/{i}.json": json.dumps({"data": {"text": f"single {i}"}}) for i in range(20)}
    files["t/list.json"] = json.dumps([{"text": "l1"}, {"text": "l2"}])
    files["t/lines.jsonl"] = "\n".join(json.dumps({"text": f"line {i}"}) for i in range(3))
    files["t/readme.txt"] = "not a task"
    _put_many(s3, bucket, files)
    project = ls.projects.create(title=unique_title("S3 json"), label_config=TEXT_CONFIG)
    storage = ls.import_storage.s3.create(
        project=project.id, prefix="t", regex_filter=r".*\.jsonl?$", **_storage_args(moto, bucket),
    )
    done = _sync(ls, verity, storage.id)
    assert done["status"] == "completed", done
    assert done["last_sync_count"] == 25, done
    assert _task_number(ls, project.id) == 25
    # A changed file is imported again (its new version); a new one once; the rest not at all.
    _put_many(s3, bucket, {"t/3.json": json.dumps([{"text": "v2 a"}, {"text": "v2 b"}]),
                           "t/new.json": json.dumps({"text": "brand new"})})
    again = _sync(ls, verity, storage.id)
    assert again["status"] == "completed", again
    assert again["last_sync_count"] == 3, again
    assert again["meta"]["changed"] == 1 and again["meta"]["new"] == 1, again["meta"]
    assert _task_number(ls, project.id) == 28
    texts = {t.data["text"] for t in ls.tasks.list(project=project.id, page_size=100)}
    assert {"v2 a", "v2 b", "brand new", "line 2", "l2"} <= texts

    # A file that is not JSON fails the sync and names the file; nothing of it is imported.
    s3.put_object(Bucket=bucket, Key="t/broken.json", Body=b"{not json")
    failed = _sync(ls, verity, storage.id)
    assert failed["status"] == "failed", failed
    assert "t/broken.json" in failed["traceback"], failed
    assert _task_number(ls, project.id) == 28


def test_media_through_the_proxy_and_presigned(verity, admin_client, moto, s3):
    ls = admin_client
    bucket = _bucket(s3, "media-serve")
    body = bytes(range(256)) * 40
    s3.put_object(Bucket=bucket, Key="a/clip.wav", Body=body)
    project = ls.projects.create(title=unique_title("S3 media"), label_config=IMAGE_CONFIG)
    proxied = ls.import_storage.s3.create(project=project.id, prefix="a", use_blob_urls=True,
                                          presign=False, **_storage_args(moto, bucket))
    assert _sync(ls, verity, proxied.id)["status"] == "completed"
    task = next(iter(ls.tasks.list(project=project.id, resolve_uri=False)))
    uri = task.data["image"]
    assert uri == f"s3://{bucket}/a/clip.wav"
    fileuri = base64.urlsafe_b64encode(uri.encode()).decode()
    # By default (resolve_uri), lists and the task detail carry the task's media link instead.
    link_path = f"/api/tasks/{task.id}/presign?fileuri={fileuri}"
    assert next(iter(ls.tasks.list(project=project.id))).data["image"] == link_path
    assert ls.tasks.get(id=task.id).data["image"] == link_path
    assert _raw(verity, "GET", f"/api/tasks/{task.id}?resolve_uri=false").json()["data"]["image"] == uri
    resolved = _raw(verity, "GET", f"/api/tasks/{task.id}/presign?fileuri={fileuri}",
                    allow_redirects=False)
    assert resolved.status_code == 303, resolved.text
    link = resolved.headers["Location"]
    assert link.startswith("/storage-proxy/"), link
    whole = requests.get(verity.base_url + link, timeout=30)
    assert whole.status_code == 200 and whole.content == body
    part = requests.get(verity.base_url + link, headers={"Range": "bytes=100-199"}, timeout=30)
    assert part.status_code == 206, part.text
    assert part.content == body[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(body)}"
    tampered = requests.get(verity.base_url + link[:-3] + "AAA", timeout=30)
    assert tampered.status_code == 403

    # presign = true: a redirect straight to a presigned URL of the bucket.
    ls.import_storage.s3.update(id=proxied.id, presign=True, presign_ttl=5)
    presigned = _raw(verity, "GET", f"/api/tasks/{task.id}/presign?fileuri={fileuri}",
                     allow_redirects=False)
    assert presigned.status_code == 303, presigned.text
    location = presigned.headers["Location"]
    assert location.startswith(moto) and "X-Amz-Signature=" in location, location
    assert "X-Amz-Expires=300" in location, location
    assert requests.get(location, timeout=30).content == body
    # A URI of a bucket no storage of the project holds is refused.
    other = base64.urlsafe_b64encode(b"s3://someone-else/secret.png").decode()
    refused = _raw(verity, "GET", f"/api/tasks/{task.id}/presign?fileuri={other}",
                   allow_redirects=False)
    assert refused.status_code == 400, refused.text


def test_export_writes_annotations_and_deletes_removed_ones(verity, admin_client, moto, s3):
    ls = admin_client
    bucket = _bucket(s3, "exports")
    project = ls.projects.create(title=unique_title("S3 export"), label_config=TEXT_CONFIG)
    ls.projects.import_tasks(id=project.id, request=[{"text": f"t{i}"} for i in range(3)])
    tasks = list(ls.tasks.list(project=project.id))
    result = [{"from_name": "choice", "to_name": "text", "type": "choices", "value": {"choices": ["a"]}}]
    annotations = [ls.annotations.create(id=t.id, result=result) for t in tasks]
    storage = ls.export_storage.s3.create(project=project.id, prefix="out", can_delete_objects=True,
                                          **_storage_args(moto, bucket))
    done = _sync(ls, verity, storage.id, export=True)
    assert done["status"] == "completed" and done["last_sync_count"] == 3, done
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == sorted(f"out/{a.id}" for a in annotations)
    written = json.loads(s3.get_object(Bucket=bucket, Key=f"out/{annotations[0].id}")["Body"].read())
    assert written["id"] == annotations[0].id and written["result"][0]["value"] == {"choices": ["a"]}
    assert written["task"]["id"] == tasks[0].id and written["task"]["data"]["text"] == "t0", written
    # Idempotent: the same keys again.
    again = _sync(ls, verity, storage.id, export=True)
    assert again["status"] == "completed", again
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]) == keys
    # A deleted annotation's object goes as it is deleted (ADR 0052: a job writes every change);
    # the next sync finds nothing left to delete.
    ls.annotations.delete(id=annotations[1].id)
    expected = sorted(f"out/{a.id}" for a in (annotations[0], annotations[2]))
    deadline = time.monotonic() + 30
    while sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]) != expected:
        assert time.monotonic() < deadline, "the deleted annotation's object is still there"
        time.sleep(0.2)
    third = _sync(ls, verity, storage.id, export=True)
    assert third["status"] == "completed" and third["meta"].get("deleted", 0) == 0, third
    left = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert left == expected
    assert [s.id for s in ls.export_storage.s3.list(project=project.id)] == [storage.id]


def test_bad_credentials_fail_clearly_and_import_nothing(verity, admin_client, moto, s3):
    ls = admin_client
    bucket = _bucket(s3, "guarded")
    _put_many(s3, bucket, {f"{i}.jpg": b"x" for i in range(5)})
    project = ls.projects.create(title=unique_title("S3 bad keys"), label_config=IMAGE_CONFIG)
    # Created while moto checks no credentials; then moto starts checking them.
    storage = ls.import_storage.s3.create(
        project=project.id, use_blob_urls=True,
        **_storage_args(moto, bucket, aws_access_key_id="AKIANOTAREALKEY00000"),
    )
    assert requests.post(moto + "/moto-api/reset-auth", data=b"0", timeout=10).status_code == 200
    try:
        failed = _sync(ls, verity, storage.id)
        assert failed["status"] == "failed", failed
        assert "refused the credentials" in failed["traceback"], failed
        with pytest.raises(ApiError) as refused:
            ls.import_storage.s3.validate(
                project=project.id,
                **_storage_args(moto, bucket, aws_access_key_id="AKIANOTAREALKEY00000"),
            )
        assert refused.value.body["code"] == "storage_unreachable", refused.value.body
    finally:
        requests.post(moto + "/moto-api/reset-auth", data=b"inf", timeout=10)
    assert _task_number(ls, project.id) == 0


def test_missing_bucket_fails_the_sync(verity, admin_client, moto, s3):
    ls = admin_client
    bucket = _bucket(s3, "short-lived")
    project = ls.projects.create(title=unique_title("S3 gone"), label_config=IMAGE_CONFIG)
    storage = ls.import_storage.s3.create(project=project.id, use_blob_urls=True,
                                          **_storage_args(moto, bucket))
    s3.delete_bucket(Bucket=bucket)
    failed = _sync(ls, verity, storage.id)
    assert failed["status"] == "failed", failed
    assert f"bucket {bucket} does not exist" in failed["traceback"], failed
    assert _task_number(ls, project.id) == 0


class _DeletingProxy(http.server.ThreadingHTTPServer):
    """Forwards requests to moto; right after answering a bucket listing, deletes one object
    (so the sync lists it and then finds it gone when it reads it)."""

    daemon_threads = True

    def __init__(self, upstream: str, s3, bucket: str, victim: str):
        self.upstream, self.s3, self.bucket, self.victim = upstream, s3, bucket, victim
        self.deleted = threading.Event()
        super().__init__(("127.0.0.1", 0), _ForwardHandler)


class _ForwardHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _forward(self):
        server: _DeletingProxy = self.server  # type: ignore[assignment]
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        upstream = requests.request(self.command, server.upstream + self.path, data=data,
                                    headers=headers, timeout=30)
        if "list-type=2" in self.path and not server.deleted.is_set():
            server.s3.delete_object(Bucket=server.bucket, Key=server.victim)
            server.deleted.set()
        self.send_response(upstream.status_code)
        for k, v in upstream.headers.items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(upstream.content)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(upstream.content)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward


def test_object_deleted_between_listing_and_reading_is_reported(verity, admin_client, moto, s3):
    ls = admin_client
    bucket = _bucket(s3, "vanishing")
    _put_many(s3, bucket, {f"{i}.json": json.dumps({"text": f"t{i}"}) for i in range(10)})
    project = ls.projects.create(title=unique_title("S3 vanishing"), label_config=TEXT_CONFIG)
    proxy = _DeletingProxy(moto, s3, bucket, "4.json")
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{proxy.server_address[1]}"
        storage = ls.import_storage.s3.create(project=project.id, **_storage_args(endpoint, bucket))
        # validate listed once through the proxy: put the victim back before the sync.
        s3.put_object(Bucket=bucket, Key="4.json", Body=json.dumps({"text": "t4"}))
        proxy.deleted.clear()
        done = _sync(ls, verity, storage.id)
    finally:
        proxy.shutdown()
    assert proxy.deleted.is_set()
    assert done["status"] == "completed", done
    assert done["meta"]["missing"] == ["4.json"] and done["meta"]["listed"] == 10, done["meta"]
    assert done["last_sync_count"] == 9, done
    assert _task_number(ls, project.id) == 9


class _MotoWithRole:
    """A moto server of its own with IAM authentication enforced after the set-up: a user whose
    keys may only assume `role_arn`, a role that trusts that user with `external_id` and may
    use S3, and a bucket `role-media` with four objects."""

    role_arn = "arn:aws:iam::123456789012:role/sdk-media"
    external_id = "sdk-ext-1"

    def __enter__(self):
        port = _free_port()
        moto_bin = os.path.join(os.path.dirname(sys.executable), "moto_server")
        self.proc = subprocess.Popen([moto_bin, "-H", "127.0.0.1", "-p", str(port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    requests.get(url + "/moto-api/", timeout=1)
                    break
                except requests.ConnectionError:
                    assert time.monotonic() < deadline and self.proc.poll() is None, \
                        "moto_server did not start"
                    time.sleep(0.1)
            setup = dict(endpoint_url=url, region_name="us-east-1",
                         aws_access_key_id="AKIASETUP", aws_secret_access_key="setup")
            iam, s3 = boto3.client("iam", **setup), boto3.client("s3", **setup)
            iam.create_user(UserName="verity")
            self.key = iam.create_access_key(UserName="verity")["AccessKey"]
            iam.put_user_policy(UserName="verity", PolicyName="assume", PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": self.role_arn}]}))
            iam.create_role(RoleName="sdk-media", AssumeRolePolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                 "Principal": {"AWS": "arn:aws:iam::123456789012:user/verity"},
                 "Condition": {"StringEquals": {"sts:ExternalId": self.external_id}}}]}))
            iam.put_role_policy(RoleName="sdk-media", PolicyName="s3", PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
            s3.create_bucket(Bucket="role-media")
            for i in range(4):
                s3.put_object(Bucket="role-media", Key=f"{i}.jpg", Body=b"x")
            assert requests.post(url + "/moto-api/reset-auth", data=b"0", timeout=10).status_code == 200
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def role_s3(self):
        """An S3 client signed with the role's temporary credentials (as the user assumes it)."""
        sts = boto3.client("sts", endpoint_url=self.url, region_name="us-east-1",
                           aws_access_key_id=self.key["AccessKeyId"],
                           aws_secret_access_key=self.key["SecretAccessKey"])
        creds = sts.assume_role(RoleArn=self.role_arn, RoleSessionName="test",
                                ExternalId=self.external_id)["Credentials"]
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=creds["AccessKeyId"],
                            aws_secret_access_key=creds["SecretAccessKey"],
                            aws_session_token=creds["SessionToken"])

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def test_role_assumption_with_external_id(verity, admin_client):
    """An `s3` storage that names an IAM role and external id (ADR 0054) with keys of its own to
    assume it, created through the SDK's `s3` client (the role fields as additional body
    parameters: LSE's `s3` client has none), against its own moto server with IAM
    authentication enforced: the user's keys may only assume the role, so only the role's
    temporary credentials can list and read the bucket."""
    ls = admin_client
    with _MotoWithRole() as aws:
        project = ls.projects.create(title=unique_title("S3 role"), label_config=IMAGE_CONFIG)
        args = dict(project=project.id, bucket="role-media", s3endpoint=aws.url, region_name="us-east-1",
                    aws_access_key_id=aws.key["AccessKeyId"],
                    aws_secret_access_key=aws.key["SecretAccessKey"], use_blob_urls=True)
        # The user's keys alone are refused by the bucket.
        with pytest.raises(ApiError) as alone:
            ls.import_storage.s3.validate(**args)
        assert alone.value.body["code"] == "storage_unreachable", alone.value.body
        # A wrong external id is refused by STS: 400 on role_arn, nothing stored.
        with pytest.raises(ApiError) as wrong:
            ls.import_storage.s3.create(**args, request_options={"additional_body_parameters": {
                "role_arn": aws.role_arn, "external_id": "not-it"}})
        assert wrong.value.status_code == 400
        assert "AccessDenied" in wrong.value.body["validation_errors"]["role_arn"][0], wrong.value.body
        assert ls.import_storage.s3.list(project=project.id) == []

        storage = ls.import_storage.s3.create(**args, request_options={"additional_body_parameters": {
            "role_arn": aws.role_arn, "external_id": aws.external_id}})
        raw = _raw(verity, "GET", f"/api/storages/s3/{storage.id}").json()
        assert raw["role_arn"] == aws.role_arn and raw["external_id"] == aws.external_id, raw
        assert aws.key["SecretAccessKey"] not in json.dumps(raw), raw
        done = _sync(ls, verity, storage.id)
        assert done["status"] == "completed" and done["last_sync_count"] == 4, done
        assert _task_number(ls, project.id) == 4


def test_s3s_clients_assume_the_role_with_the_server_identity():
    """Label Studio Enterprise's `s3s` storages through the SDK's own clients
    (`import_storage.s3s`, `export_storage.s3s`; ADR 0054 addendum) against a Verity whose base
    identity (VERITY_AWS_*) is the moto user that may only assume the role: the storage keeps
    no keys (keys are refused), a wrong external id is refused by STS, and import and export
    syncs run with the role's temporary credentials. This server has a SQLite database of its
    own (the session's server has no base identity); the Rust suite runs the routes on both
    engines."""
    from conftest import _start_server, _stop

    with _MotoWithRole() as aws:
        server = _start_server(extra_env={
            "VERITY_AWS_ACCESS_KEY_ID": aws.key["AccessKeyId"],
            "VERITY_AWS_SECRET_ACCESS_KEY": aws.key["SecretAccessKey"],
            "VERITY_AWS_STS_ENDPOINT": aws.url,
        }, own_database=True)
        try:
            ls = server.client(server.admin_token)
            project = ls.projects.create(title=unique_title("S3s"), label_config=IMAGE_CONFIG)
            args = dict(project=project.id, bucket="role-media", s3endpoint=aws.url,
                        region_name="us-east-1", role_arn=aws.role_arn, external_id=aws.external_id)
            # Keys of its own are refused, with the field and what to do instead.
            with pytest.raises(ApiError) as keys:
                ls.import_storage.s3s.create(**args, aws_access_key_id=aws.key["AccessKeyId"],
                                             aws_secret_access_key=aws.key["SecretAccessKey"])
            assert keys.value.status_code == 400, keys.value.body
            assert "keeps no keys" in keys.value.body["validation_errors"]["aws_access_key_id"][0]
            # STS refuses a wrong external id: 400 on role_arn, nothing stored.
            with pytest.raises(ApiError) as wrong:
                ls.import_storage.s3s.validate(**{**args, "external_id": "not-it"})
            assert "AccessDenied" in wrong.value.body["validation_errors"]["role_arn"][0], wrong.value.body
            assert ls.import_storage.s3s.list(project=project.id) == []
            ls.import_storage.s3s.validate(**args)

            storage = ls.import_storage.s3s.create(**args, use_blob_urls=True)
            assert storage.role_arn == aws.role_arn and storage.external_id == aws.external_id
            assert storage.type == "s3s", storage
            assert [s.id for s in ls.import_storage.s3s.list(project=project.id)] == [storage.id]
            assert ls.import_storage.s3.list(project=project.id) == []
            assert ls.import_storage.s3s.get(id=storage.id).bucket == "role-media"
            renamed = ls.import_storage.s3s.update(id=storage.id, title="by role")
            assert renamed.title == "by role" and renamed.role_arn == aws.role_arn
            queued = ls.import_storage.s3s.sync(id=storage.id)
            assert queued.last_sync_job, queued
            done = _wait(server, f"/api/storages/s3s/{storage.id}")
            assert done["status"] == "completed" and done["last_sync_count"] == 4, done
            assert _task_number(ls, project.id) == 4
            listed = _raw(server, "GET", f"/api/storages/?project={project.id}").json()
            assert [(s["type"], s["id"]) for s in listed] == [("s3s", storage.id)], listed

            # Export: annotations written with the role's credentials.
            task = next(iter(ls.tasks.list(project=project.id)))
            result = [{"from_name": "choice", "to_name": "image", "type": "choices",
                       "value": {"choices": ["a"]}}]
            annotation = ls.annotations.create(id=task.id, result=result)
            target = ls.export_storage.s3s.create(project=project.id, bucket="role-media", prefix="out",
                                                  s3endpoint=aws.url, region_name="us-east-1",
                                                  role_arn=aws.role_arn, external_id=aws.external_id)
            assert [s.id for s in ls.export_storage.s3s.list(project=project.id)] == [target.id]
            assert ls.export_storage.s3.list(project=project.id) == []
            ls.export_storage.s3s.sync(id=target.id)
            written = _wait(server, f"/api/storages/export/s3s/{target.id}")
            assert written["status"] == "completed" and written["last_sync_count"] == 1, written
            body = aws.role_s3().get_object(Bucket="role-media", Key=f"out/{annotation.id}")["Body"].read()
            assert json.loads(body)["id"] == annotation.id

            ls.export_storage.s3s.delete(id=target.id)
            ls.import_storage.s3s.delete(id=storage.id)
            assert ls.import_storage.s3s.list(project=project.id) == []
        finally:
            _stop(server)
            shutil.rmtree(server.data_dir, ignore_errors=True)
