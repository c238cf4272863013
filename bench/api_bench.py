#!/usr/bin/env python3
"""Benchmark of the Verity control plane API, shaped like the Label Studio measurements in the
foundation issue: import, task listing, next + submit with concurrent annotators, prediction
create, export, memory and server CPU per operation.

Starts its own `verity serve` (release build) on 127.0.0.1 with a fresh data directory (SQLite)
or a given PostgreSQL URL, drives it over HTTP with the standard library only, and prints a
Markdown table. Loopback only; every loop is bounded.

    cargo build --release -p verity-controlplane
    python3 bench/api_bench.py --tasks 10000 --big-tasks 100000 --annotators 8
    python3 bench/api_bench.py --database-url postgres://verity@127.0.0.1:5432/bench
"""
import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

TOKEN = "bench-owner-token-0123456789abcdefghij"
CONFIG = ('<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
          '<Choice value="pos"/><Choice value="neg"/></Choices></View>')
RESULT = [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["pos"]}}]
TICK = os.sysconf("SC_CLK_TCK")


class Client:
    """One keep-alive HTTP connection (one per thread)."""

    def __init__(self, port, token=TOKEN):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}

    def call(self, method, path, body=None, raw=None, content_type=None):
        headers = dict(self.headers)
        if content_type:
            headers["Content-Type"] = content_type
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        self.conn.request(method, path, body=data, headers=headers)
        resp = self.conn.getresponse()
        payload = resp.read()
        return resp.status, payload


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / TICK


def proc_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_server(binary, database_url, data_dir):
    port = free_port()
    env = dict(os.environ, VERITY_LISTEN=f"127.0.0.1:{port}", VERITY_DATA_DIR=data_dir,
               VERITY_ADMIN_TOKEN=TOKEN, VERITY_ADMIN_EMAIL="owner@bench.local", RUST_LOG="warn",
               # Throughput runs are not meant to meet the per-token budget.
               VERITY_RATE_LIMIT_PER_TOKEN_PER_MINUTE="0")
    if database_url:
        env["VERITY_DATABASE_URL"] = database_url
        # PostgreSQL deployments seal stored secrets with a shared key.
        env.setdefault("VERITY_SESSION_KEY", "bench-session-key-" + "0" * 32)
    log = open(os.path.join(data_dir, "server.log"), "w")
    proc = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=log)
    for _ in range(300):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                return proc, port
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    sys.exit("server did not become ready; see " + log.name)


def measured(pid, fn):
    cpu0, t0 = proc_cpu_seconds(pid), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, proc_cpu_seconds(pid) - cpu0


def make_project(client, **settings):
    status, body = client.call("POST", "/api/projects", {"title": "Bench", "label_config": CONFIG, **settings})
    assert status == 201, body
    return json.loads(body)["id"]


def import_tasks(client, project, n, annotated=False):
    tasks = []
    for i in range(n):
        if annotated:
            tasks.append({"data": {"text": f"benchmark task number {i}"}, "annotations": [{"result": RESULT}]})
        else:
            tasks.append({"text": f"benchmark task number {i}"})
    raw = json.dumps(tasks).encode()
    status, body = client.call("POST", f"/api/projects/{project}/import", raw=raw)
    assert status == 201, body[:300]
    return json.loads(body)["task_count"]


def list_all(client, project, page_size, include=None):
    page, seen = 1, 0
    while page < 100000:
        q = f"/api/tasks?project={project}&page={page}&page_size={page_size}"
        if include:
            q += f"&include={include}"
        status, body = client.call("GET", q)
        if status == 404:
            break
        assert status == 200, body[:300]
        seen += len(json.loads(body)["tasks"])
        page += 1
    return seen


def add_members(client, port, project, tokens):
    """Annotators reach only projects they are members of: add them in one request."""
    ids = []
    for token in tokens:
        status, body = Client(port, token).call("GET", "/api/current-user/whoami")
        assert status == 200, body[:200]
        ids.append(json.loads(body)["id"])
    status, body = client.call("POST", f"/api/projects/{project}/members/bulk", {"users": ids})
    assert status == 200, body[:300]


def annotate(port, project, tokens, per_user_limit):
    """Each annotator loops next → submit; returns latencies and double hand-outs."""
    latencies, lock = [], threading.Lock()
    holders, doubles, done = {}, [0], [0]

    def worker(token):
        c = Client(port, token)
        for _ in range(per_user_limit):
            t0 = time.perf_counter()
            status, body = c.call("GET", f"/api/projects/{project}/next")
            if status == 404:
                return
            task = json.loads(body)["id"]
            with lock:
                holders[task] = holders.get(task, 0) + 1
                if holders[task] > 1:
                    doubles[0] += 1
            status, body = c.call("POST", f"/api/tasks/{task}/annotations", {"result": RESULT})
            assert status == 201, body[:300]
            with lock:
                holders[task] -= 1
                latencies.append(time.perf_counter() - t0)
                done[0] += 1

    threads = [threading.Thread(target=worker, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, doubles[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/verity")
    ap.add_argument("--database-url", default="")
    ap.add_argument("--tasks", type=int, default=10000)
    ap.add_argument("--big-tasks", type=int, default=100000)
    ap.add_argument("--annotators", type=int, default=8)
    ap.add_argument("--stream-tasks", type=int, default=2000)
    ap.add_argument("--predictions", type=int, default=1000)
    args = ap.parse_args()

    data_dir = tempfile.mkdtemp(prefix="verity-bench-")
    proc, port = start_server(args.binary, args.database_url, data_dir)
    pid = proc.pid
    rows = []
    try:
        time.sleep(1)
        rows.append(("idle RSS", f"{proc_rss_mb(pid):.1f} MB", ""))
        c = Client(port)

        p = make_project(c)
        n, secs, cpu = measured(pid, lambda: import_tasks(c, p, args.tasks))
        rows.append((f"import {n} tasks (one request)", f"{n / secs:,.0f} tasks/s ({secs:.2f} s)", f"{cpu / n * 1000:.3f} ms CPU/task"))

        big = make_project(c)
        n, secs, cpu = measured(pid, lambda: import_tasks(c, big, args.big_tasks, annotated=True))
        rows.append((f"import {n} annotated tasks (one request)", f"{n / secs:,.0f} tasks/s ({secs:.2f} s)", f"{cpu / n * 1000:.3f} ms CPU/task"))

        seen, secs, cpu = measured(pid, lambda: list_all(c, p, 100))
        rows.append((f"list {seen} tasks, pages of 100 (fields=all)", f"{secs:.2f} s", f"{cpu:.2f} s CPU"))

        seen, secs, cpu = measured(pid, lambda: list_all(c, big, 10000, include="id"))
        rows.append((f"list {seen} task ids (include=id, pages of 10000)", f"{secs:.2f} s", f"{cpu:.2f} s CPU"))

        def export():
            status, body = c.call("GET", f"/api/projects/{big}/export?exportType=JSON")
            assert status == 200
            return len(body)
        rss_before = proc_rss_mb(pid)
        size, secs, cpu = measured(pid, export)
        rows.append((f"JSON export of {args.big_tasks} annotated tasks ({size / 1e6:.0f} MB)", f"{secs:.2f} s",
                     f"RSS {rss_before:.0f} → {proc_rss_mb(pid):.0f} MB"))

        stream = make_project(c, maximum_annotations=1)
        import_tasks(c, stream, args.stream_tasks)
        tokens = []
        for i in range(args.annotators):
            out = subprocess.run([args.binary, "user", "create", "--email", f"ann{i}@bench.local", "--role", "annotator"],
                                 env=dict(os.environ, VERITY_DATA_DIR=data_dir, VERITY_DATABASE_URL=args.database_url),
                                 capture_output=True, text=True, check=True)
            tokens.append(out.stdout.strip())
        add_members(c, port, stream, tokens)
        (lat, doubles), secs, cpu = measured(pid, lambda: annotate(port, stream, tokens, args.stream_tasks))
        lat.sort()
        p50 = lat[len(lat) // 2] * 1000
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
        rows.append((f"next + submit, {args.annotators} annotators, {len(lat)} pairs", f"{len(lat) / secs:,.0f} pairs/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms",
                     f"{cpu / max(1, len(lat)) * 1000:.2f} ms CPU/pair; {doubles} double hand-outs"))

        ids = [t["id"] for t in json.loads(c.call("GET", f"/api/tasks?project={p}&include=id&page_size={args.predictions}")[1])["tasks"]]

        def predict():
            for tid in ids:
                status, body = c.call("POST", "/api/predictions", {"task": tid, "result": RESULT, "score": 0.5})
                assert status == 201, body[:200]
            return len(ids)
        n, secs, cpu = measured(pid, predict)
        rows.append((f"prediction create x{n} (sequential)", f"{n / secs:,.0f}/s", f"{cpu / max(1, n) * 1000:.2f} ms CPU each"))
        rows.append(("RSS after the run", f"{proc_rss_mb(pid):.1f} MB", ""))
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    backend = "PostgreSQL" if args.database_url else "SQLite"
    print(f"\n| {backend} | result | server cost |\n|---|---|---|")
    for name, value, cost in rows:
        print(f"| {name} | {value} | {cost} |")


if __name__ == "__main__":
    main()
