#!/usr/bin/env python3
"""A small but real ML backend for Verity's end-to-end tests.

It speaks the Label Studio ML backend protocol (``/health``, ``/setup``,
``/predict``, ``/webhook``) over plain ``http.server`` and classifies text
with scikit-learn (TF-IDF features + logistic regression).  The e2e tests
start it as a separate process, point a Verity project's ML backend at it and
then check what Verity sends and how it uses the answers:

* before training it predicts the first ``<Choice>`` of the label config with
  a deterministic, text-dependent score, model version ``"initial"``;
* a ``START_TRAINING`` webhook makes it download the project's export from
  ``$LABEL_STUDIO_URL`` (authenticated with ``$LABEL_STUDIO_API_KEY``), fit a
  model and bump the version to ``v1``, ``v2``, ...;
* ``GET /_calls`` (a test helper, never auth-protected) lists every request
  received so far, so tests can assert on the exact traffic;
* ``--basic-auth user:pass`` protects everything else, ``--predict-delay``
  slows ``/predict`` down for timeout tests.

Run:  python e2e/ml/model_server.py --port N [--host 127.0.0.1]
          [--basic-auth user:pass] [--predict-delay SECONDS]
It prints ``ready`` on stdout once it is listening; SIGTERM stops it cleanly.
"""
import argparse
import base64
import hmac
import json
import os
import signal
import sys
import threading
import time
import urllib.request
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

MODEL_CLASS = "TfidfLogReg"


class HttpError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def parse_label_config(xml_text):
    """Return {from_name, to_name, data_key, labels} for the first <Choices>, or None."""
    if not xml_text:
        return None
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise HttpError(400, f"invalid label config XML: {exc}") from exc
    choices = next((el for el in root.iter() if el.tag == "Choices"), None)
    if choices is None:
        return None
    to_name = choices.get("toName", "")
    obj = next((el for el in root.iter() if el.get("name") == to_name and el is not choices), None)
    # The object tag's value is a data reference such as "$text" -> task.data["text"].
    value = obj.get("value", "$text") if obj is not None else "$text"
    return {
        "from_name": choices.get("name", ""),
        "to_name": to_name,
        "data_key": value[1:] if value.startswith("$") else value,
        "labels": [c.get("value") for c in choices.iter("Choice") if c.get("value") is not None],
    }


def project_key(project):
    """Label Studio sends the project as "<id>.<timestamp>" in /setup and /predict
    but as an object ({"id": 5, ...}) in webhooks; both map to the key "5"."""
    if isinstance(project, dict):
        project = project.get("id", "")
    return str(project if project is not None else "").split(".", 1)[0]


class State:
    """All mutable model state, guarded by one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.projects = {}  # key -> {"config", "model", "version"}
        self.versions = ["initial"]
        self.calls = []
        self.hostname = ""
        self.access_token = ""

    def project(self, key):
        return self.projects.setdefault(key, {"config": None, "model": None, "version": "initial"})


STATE = State()


class Model:
    def __init__(self, texts, labels):
        self.classes = sorted(set(labels))
        self.vectorizer = self.classifier = None
        if len(self.classes) > 1:  # LogisticRegression needs at least two classes
            self.vectorizer = TfidfVectorizer(token_pattern=r"(?u)\b\w+\b")
            self.classifier = LogisticRegression(max_iter=1000)
            self.classifier.fit(self.vectorizer.fit_transform(texts), labels)

    def predict(self, text):
        if self.classifier is None:
            return self.classes[0], 1.0
        probs = self.classifier.predict_proba(self.vectorizer.transform([text]))[0]
        best = int(probs.argmax())
        return str(self.classifier.classes_[best]), float(probs[best])


def handle_setup(body):
    key = project_key(body.get("project"))
    config = parse_label_config(body.get("schema"))
    with STATE.lock:
        proj = STATE.project(key)
        if config is not None:
            proj["config"] = config
        STATE.hostname = body.get("hostname") or STATE.hostname
        STATE.access_token = body.get("access_token") or STATE.access_token
        return 200, {"model_version": proj["version"]}


def handle_predict(body, delay):
    if delay:
        time.sleep(delay)
    key = project_key(body.get("project"))
    tasks = body.get("tasks") or []
    params = body.get("params") or {}
    context = params.get("context") if isinstance(params, dict) else None
    # A non-empty context means interactive pre-annotation (the user drew a hint).
    interactive = isinstance(context, dict) and bool(context)
    request_config = parse_label_config(body.get("label_config"))
    with STATE.lock:
        proj = STATE.project(key)
        if request_config is not None:
            proj["config"] = request_config
        config, model, version = proj["config"], proj["model"], proj["version"]
    results = []
    for task in tasks:
        data = (task.get("data") if isinstance(task, dict) else None) or {}
        item = {"result": [], "score": 0.0, "model_version": version}
        if config is not None:
            text = str(data.get(config["data_key"], ""))
            if model is not None:
                label, score = model.predict(text)
            elif config["labels"]:
                label, score = config["labels"][0], 0.5 + (len(text) % 10) / 100
            else:
                label = None
            if label is not None:
                item["result"] = [{
                    "from_name": config["from_name"], "to_name": config["to_name"],
                    "type": "choices", "value": {"choices": [label]},
                }]
                item["score"] = score
        if interactive:
            item["interactive"] = True
        results.append(item)
    return 200, {"results": results}


def fetch_export(project_id):
    base = os.environ.get("LABEL_STUDIO_URL") or STATE.hostname
    token = os.environ.get("LABEL_STUDIO_API_KEY") or STATE.access_token
    if not base:
        raise HttpError(500, "LABEL_STUDIO_URL is not set and /setup gave no hostname")
    url = f"{base.rstrip('/')}/api/projects/{project_id}/export?exportType=JSON"
    req = urllib.request.Request(url, headers={"Authorization": f"Token {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        tasks = json.loads(resp.read().decode("utf-8"))
    if not isinstance(tasks, list):
        raise HttpError(502, "export did not return a JSON list")
    return tasks


def training_examples(tasks, config):
    texts, labels = [], []
    for task in tasks:
        text = str((task.get("data") or {}).get(config["data_key"], ""))
        for ann in task.get("annotations") or []:
            if ann.get("was_cancelled"):
                continue
            for r in ann.get("result") or []:
                choices = (r.get("value") or {}).get("choices") or []
                if r.get("type") == "choices" and r.get("from_name") == config["from_name"] and choices:
                    texts.append(text)
                    labels.append(str(choices[0]))
    return texts, labels


def handle_webhook(body):
    if body.get("action") != "START_TRAINING":
        return 200, {"status": "Unknown event"}
    project = body.get("project") or {}
    key = project_key(project)
    with STATE.lock:
        config = STATE.project(key)["config"]
    if config is None and isinstance(project, dict):
        config = parse_label_config(project.get("label_config"))
    if config is None:
        raise HttpError(400, f"no label config with <Choices> known for project {key!r}")
    texts, labels = training_examples(fetch_export(key), config)
    if not texts:
        return 200, {"status": "no data"}
    model = Model(texts, labels)  # fit outside the lock; predictions keep flowing
    with STATE.lock:
        version = f"v{len(STATE.versions)}"  # versions[0] is "initial"
        STATE.versions.append(version)
        proj = STATE.project(key)
        proj.update(model=model, version=version)
        if proj["config"] is None:
            proj["config"] = config
    return 201, {"status": "ok", "model_version": version, "examples": len(texts)}


class Handler(BaseHTTPRequestHandler):
    server_version = "VerityTestMLBackend/1.0"
    basic_auth = None  # "user:pass" or None
    predict_delay = 0.0

    def log_message(self, fmt, *args):
        pass  # keep stderr quiet: tests may pipe it without reading

    def send_json(self, status, payload):
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="ml-backend"')
        self.end_headers()
        self.wfile.write(data)

    def authorized(self):
        if not self.basic_auth:
            return True
        header = self.headers.get("Authorization") or ""
        if not header.startswith("Basic "):
            return False
        try:
            given = base64.b64decode(header[6:].strip(), validate=True)
        except ValueError:
            return False
        return hmac.compare_digest(given, self.basic_auth.encode("utf-8"))

    def dispatch(self):
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            body = json.loads(raw) if raw.strip() else None
            bad_json = None
        except ValueError as exc:
            body, bad_json = None, f"invalid JSON: {exc}"
        if path != "/_calls":
            with STATE.lock:
                STATE.calls.append({"method": self.command, "path": path, "body": body,
                                    "authorization": self.headers.get("Authorization")})
        try:
            status, payload = self.route(path, body, bad_json)
        except HttpError as exc:
            status, payload = exc.status, {"error": str(exc)}
        except Exception as exc:  # never let one request take the server down
            status, payload = 500, {"error": f"{type(exc).__name__}: {exc}"}
        try:
            self.send_json(status, payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # client gave up (e.g. a timeout test against --predict-delay)

    def route(self, path, body, bad_json):
        method = self.command
        if path == "/_calls" and method == "GET":
            with STATE.lock:
                return 200, {"calls": list(STATE.calls)}
        if not self.authorized():
            return 401, {"error": "unauthorized"}
        if path in ("/", "/health") and method == "GET":
            return 200, {"status": "UP", "model_class": MODEL_CLASS}
        if path == "/versions" and method == "GET":
            with STATE.lock:
                return 200, {"versions": list(STATE.versions)}
        handlers = {"/setup": handle_setup, "/webhook": handle_webhook,
                    "/predict": lambda b: handle_predict(b, self.predict_delay)}
        if path not in handlers or method != "POST":
            return 404, {"error": "not found"}
        if bad_json:
            return 400, {"error": bad_json}
        if body is None:
            body = {}
        if not isinstance(body, dict):
            return 400, {"error": "request body must be a JSON object"}
        return handlers[path](body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = dispatch


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--basic-auth", default=None, help="user:pass")
    parser.add_argument("--predict-delay", type=float, default=0.0, help="seconds")
    args = parser.parse_args()

    Handler.basic_auth = args.basic_auth
    Handler.predict_delay = args.predict_delay
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True

    def stop(_signum, _frame):
        # shutdown() waits for serve_forever() to return, which runs on this
        # (main) thread, so it must be called from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("ready", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
