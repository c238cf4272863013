"""ML backends through the official SDK (`client.ml`), with a real model server: the
scikit-learn text classifier of e2e/ml/model_server.py, a separate process speaking Label
Studio's ML backend protocol on loopback. Connect (checked with /health and /setup, basic auth),
batch pre-labeling on the queue, training started by submitted annotations, the new model
version refreshing the predictions in the background, uncertainty sampling handing out the
least certain task of the current version, interactive pre-annotation, versions, and a slow
model that cannot hold an annotator up."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
import requests
from label_studio_sdk.core.api_error import ApiError

from test_sdk_compat import LABEL_CONFIG, choices_result, unique_title

SERVER = os.path.join(os.path.dirname(__file__), "..", "ml", "model_server.py")

POSITIVE = ["great wonderful film", "lovely great acting", "wonderful lovely story", "great fun"]
NEGATIVE = ["awful boring film", "terrible boring plot", "awful terrible acting", "boring mess"]
UNLABELED = [
    "great lovely wonderful",
    "awful terrible boring",
    "great but boring",
    "a film",
    "lovely acting, awful plot",
    "wonderful",
    "terrible",
    "fun story",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ModelServer:
    def __init__(self, verity, *args: str) -> None:
        self.port = _free_port()
        env = dict(os.environ, LABEL_STUDIO_URL=verity.base_url, LABEL_STUDIO_API_KEY=verity.admin_token)
        self.proc = subprocess.Popen(
            [sys.executable, SERVER, "--port", str(self.port), *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", f"the model server did not start: {line}"
        self.url = f"http://127.0.0.1:{self.port}"

    def calls(self) -> list[dict]:
        return requests.get(f"{self.url}/_calls", timeout=5).json()["calls"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def model(verity):
    servers: list[ModelServer] = []

    def start(*args: str) -> ModelServer:
        servers.append(ModelServer(verity, *args))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


def _raw(verity, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(
        method, f"{verity.base_url}{path}",
        headers={"Authorization": f"Token {verity.admin_token}"}, timeout=30, **kwargs,
    )


def _wait(what: str, check, seconds: float = 90.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _predictions(verity, project: int, version: str) -> list[dict]:
    got = _raw(verity, "GET", f"/api/predictions?project={project}").json()
    return [p for p in got if p["model_version"] == version]


@pytest.mark.parametrize("auth_kind", ["legacy"], indirect=True)
def test_the_active_learning_loop(verity, ls, model):
    server = model()
    project = ls.projects.create(title=unique_title("ML loop"), label_config=LABEL_CONFIG)
    # Train after every fourth submitted annotation; hand out the least certain task first.
    r = _raw(verity, "PATCH", f"/api/projects/{project.id}", json={
        "start_training_on_annotation_update": True, "train_every_annotations": 4,
        "sampling": "Uncertainty sampling",
    })
    assert r.status_code == 200, r.text
    labeled = ls.projects.import_tasks(id=project.id, request=[{"text": t} for t in POSITIVE + NEGATIVE])
    assert labeled.task_count == 8
    ls.projects.import_tasks(id=project.id, request=[{"text": t} for t in UNLABELED])
    tasks = {t.data["text"]: t.id for t in ls.tasks.list(project=project.id)}
    assert len(tasks) == 16

    backend = ls.ml.create(project=project.id, url=server.url, title="tfidf", is_interactive=True)
    assert backend.model_version == "initial"
    assert backend.state == "CO"
    assert [b.id for b in ls.ml.list(project=project.id)] == [backend.id]
    setup = [c for c in server.calls() if c["path"] == "/setup"]
    assert setup and setup[0]["body"]["schema"] == LABEL_CONFIG
    assert setup[0]["body"]["project"].startswith(f"{project.id}.")

    # Batch pre-labeling on the queue.
    ls.ml.predict_all_tasks(backend.id)
    initial = _wait("16 predictions of the initial model", lambda: len(_predictions(verity, project.id, "initial")) == 16 and _predictions(verity, project.id, "initial"))
    assert all(p["result"][0]["value"]["choices"] == ["Positive"] for p in initial)

    # Submitting eight annotations trains twice; the second training sees all eight.
    for text in POSITIVE + NEGATIVE:
        label = "Positive" if text in POSITIVE else "Negative"
        ls.annotations.create(id=tasks[text], result=choices_result(label))
    _wait("two trainings", lambda: sum(1 for c in server.calls() if c["path"] == "/webhook") >= 2)
    trainings = [c for c in server.calls() if c["path"] == "/webhook"]
    assert all(c["body"]["action"] == "START_TRAINING" for c in trainings)
    assert trainings[0]["body"]["project"]["id"] == project.id
    _wait("model version v2", lambda: ls.ml.get(backend.id).model_version == "v2")
    versions = ls.ml.list_model_versions(backend.id)
    assert versions.versions == ["initial", "v1", "v2"]

    # The new version refreshes every task's prediction in the background, and the project
    # follows it (what pre-labeling and sampling read).
    fresh = _wait("16 predictions of v2", lambda: len(_predictions(verity, project.id, "v2")) == 16 and _predictions(verity, project.id, "v2"))
    assert ls.projects.get(project.id).model_version == "v2"
    by_task = {p["task"]: p for p in fresh}
    assert by_task[tasks["awful terrible boring"]]["result"][0]["value"]["choices"] == ["Negative"]
    assert by_task[tasks["great lovely wonderful"]]["result"][0]["value"]["choices"] == ["Positive"]

    # Uncertainty sampling: the unlabeled task the current model is least sure of comes first.
    unlabeled_scores = {tasks[t]: by_task[tasks[t]]["score"] for t in UNLABELED}
    least = min(unlabeled_scores.values())
    nxt = _raw(verity, "GET", f"/api/projects/{project.id}/next").json()
    assert unlabeled_scores[nxt["id"]] == least, (nxt["id"], unlabeled_scores)

    # Interactive pre-annotation: the backend gets the context, the caller gets the result.
    r = _raw(verity, "POST", f"/api/ml/{backend.id}/interactive-annotating",
             json={"task": tasks["wonderful"], "context": {"result": [{"type": "choices"}]}})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["result"][0]["value"]["choices"] == ["Positive"]
    assert any(c["path"] == "/predict" and c["body"]["params"]["context"] for c in server.calls())
    ls.ml.predict_interactive(backend.id, task=tasks["terrible"], context={"result": []})

    ls.ml.delete(backend.id)
    assert list(ls.ml.list(project=project.id)) == []
    assert len(_predictions(verity, project.id, "v2")) == 16  # predictions stay


@pytest.mark.parametrize("auth_kind", ["legacy"], indirect=True)
def test_connecting_checks_the_backend(verity, ls, model):
    guarded = model("--basic-auth", "model:s3cret")
    project = ls.projects.create(title=unique_title("ML auth"), label_config=LABEL_CONFIG)
    with pytest.raises(ApiError) as refused:
        ls.ml.create(project=project.id, url=guarded.url)
    assert refused.value.status_code == 400
    assert refused.value.body["code"] == "ml_backend_unreachable"
    assert "401" in refused.value.body["detail"]
    assert list(ls.ml.list(project=project.id)) == []
    backend = ls.ml.create(project=project.id, url=guarded.url, auth_method="BASIC_AUTH",
                           basic_auth_user="model", basic_auth_pass="s3cret")
    shown = _raw(verity, "GET", f"/api/ml/{backend.id}").json()
    assert shown["basic_auth_pass_is_set"] is True and "s3cret" not in str(shown)
    checked = [c for c in guarded.calls() if c["path"] in ("/setup", "/health")]
    assert checked and all((c["authorization"] or "").startswith("Basic ") for c in checked[-2:])


@pytest.mark.parametrize("auth_kind", ["legacy"], indirect=True)
def test_a_slow_model_cannot_hold_an_annotator_up(verity, ls, model):
    slow = model("--predict-delay", "5")
    project = ls.projects.create(title=unique_title("ML slow"), label_config=LABEL_CONFIG)
    task = ls.tasks.create(data={"text": "hello"}, project=project.id)
    backend = ls.ml.create(project=project.id, url=slow.url, is_interactive=True, timeout=1.0)
    started = time.monotonic()
    r = _raw(verity, "POST", f"/api/ml/{backend.id}/interactive-annotating", json={"task": task.id})
    assert r.status_code == 502, r.text
    assert r.json()["code"] == "ml_backend_failed" and "timed out" in r.json()["detail"]
    assert time.monotonic() - started < 4
    # Labeling does not wait for the model.
    assert _raw(verity, "GET", f"/api/projects/{project.id}/next").status_code == 200
