"""Webhooks through the official SDK (`client.webhooks`), delivered by the running server to a
receiver on loopback: create, read, list, update, info, delete, a signed delivery with the
Label Studio payload, and a refused private target."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time

import pytest
from label_studio_sdk.core.api_error import ApiError

from test_sdk_compat import LABEL_CONFIG, choices_result, unique_title


class _Inbox:
    def __init__(self) -> None:
        self.requests: list[tuple[dict, bytes]] = []
        self.lock = threading.Lock()

    def wait(self, n: int, seconds: float = 30.0) -> list[tuple[dict, bytes]]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= n:
                    return list(self.requests)
            time.sleep(0.05)
        raise AssertionError(f"the receiver got {len(self.requests)} requests, expected {n}")


@pytest.fixture
def receiver():
    inbox = _Inbox()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (the stdlib's name)
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with inbox.lock:
                inbox.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"thanks")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", inbox
    server.shutdown()


def test_webhook_lifecycle_and_signed_delivery(ls, receiver):
    url, inbox = receiver
    project = ls.projects.create(title=unique_title("Webhooks"), label_config=LABEL_CONFIG)
    info = ls.webhooks.info()
    assert "ANNOTATION_CREATED" in info.dict() or "ANNOTATION_CREATED" in dict(info)

    hook = ls.webhooks.create(
        url=url, project=project.id, send_for_all_actions=False,
        actions=["TASKS_CREATED", "ANNOTATION_CREATED"], headers={"X-Receiver-Token": "abc"},
    )
    secret = hook.model_extra["secret"]
    assert hook.project == project.id and hook.is_active and not hook.send_for_all_actions
    assert sorted(hook.actions) == ["ANNOTATION_CREATED", "TASKS_CREATED"]
    assert [h.id for h in ls.webhooks.list(project=str(project.id))] == [hook.id]
    assert "secret" not in ls.webhooks.get(hook.id).model_extra

    task = ls.tasks.create(data={"text": "hello"}, project=project.id)
    ls.annotations.create(id=task.id, result=choices_result("Positive"))
    ls.tasks.update(str(task.id), data={"text": "not subscribed"})
    got = inbox.wait(2)
    assert [json.loads(b)["action"] for _, b in got] == ["TASKS_CREATED", "ANNOTATION_CREATED"]
    headers, body = got[1]
    payload = json.loads(body)
    assert payload["annotation"]["task"] == task.id
    assert payload["task"]["id"] == task.id
    assert payload["project"]["id"] == project.id
    assert headers["x-receiver-token"] == "abc"
    t, v1 = (part.split("=", 1)[1] for part in headers["x-verity-signature"].split(","))
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(v1, expected)

    updated = ls.webhooks.update(hook.id, is_active=False)
    assert updated.is_active is False
    ls.tasks.create(data={"text": "while inactive"}, project=project.id)
    time.sleep(1.0)
    assert len(inbox.requests) == 2

    ls.webhooks.delete(hook.id)
    with pytest.raises(ApiError) as err:
        ls.webhooks.get(hook.id)
    assert err.value.status_code == 404
    ls.projects.delete(project.id)


def test_private_webhook_target_is_refused(ls):
    project = ls.projects.create(title=unique_title("Webhooks"), label_config=LABEL_CONFIG)
    with pytest.raises(ApiError) as err:
        ls.webhooks.create(url="http://169.254.169.254/latest/meta-data/", project=project.id)
    assert err.value.status_code == 400
    assert err.value.body["code"] == "private_target"
    ls.projects.delete(project.id)
