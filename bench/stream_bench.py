#!/usr/bin/env python3
"""The label stream and the reads around it in a project of 1,000,000 tasks (issue 13's
benchmark, docs/benchmarks.md), against a `verity serve` (release build) on SQLite or a given
PostgreSQL, over loopback:

1. Import: the first tenth of the tasks arrive annotated (the stream must step over them).
2. Next + submit with A concurrent annotators (default 16): latency of `next` and of the submit
   separately (p50, p99), pairs per second, server CPU per pair, double hand-outs. First at
   saturation (each annotator's next request right after the last answer), then paced: each
   annotator labels for a random 0.5–1.5 × `--think-ms` before submitting (1 s by default,
   still many times faster than people label), which is the latency annotators see.
3. Filtered data-manager pages (`GET /api/tasks?view=V`, 30 per page) for a few saved views.
4. Dashboard and agreement reads (`/stats/...`): the slowest of several calls each.
5. Agreement update per annotation: a second annotator's submit on tasks that already hold an
   annotation (the task's agreement is refreshed in that request) against a first annotation
   on fresh tasks; the difference in server CPU per submit is the agreement's cost.

    cargo build --release -p verity-controlplane --bin verity
    python3 bench/stream_bench.py --tasks 1000000 --annotators 16
    python3 bench/stream_bench.py --database-url postgres://verity@127.0.0.1:5432/bench
"""
import argparse
import json
import os
import random
import subprocess
import tempfile
import threading
import time
import urllib.parse

from api_bench import RESULT, Client, add_members, make_project, proc_cpu_seconds, proc_rss_mb, start_server

FILTERED_VIEWS = {
    "completed, newest first": {
        "filters": {"conjunction": "and", "items": [
            {"filter": "filter:tasks:total_annotations", "operator": "greater", "type": "Number", "value": 0}]},
        "ordering": ["-tasks:completed_at"]},
    "text contains \"777\" or ends with \"5\"": {
        "filters": {"conjunction": "or", "items": [
            {"filter": "filter:tasks:data.text", "operator": "contains", "type": "String", "value": "777"},
            {"filter": "filter:tasks:data.text", "operator": "ends_with", "type": "String", "value": "5"}]},
        "ordering": ["tasks:id"]},
    "not labeled, by id descending": {
        "filters": {"conjunction": "and", "items": [
            {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0}]},
        "ordering": ["-tasks:id"]},
    "annotation results contain \"neg\"": {
        "filters": {"conjunction": "and", "items": [
            {"filter": "filter:tasks:annotations_results", "operator": "contains", "type": "String",
             "value": "neg"}]},
        "ordering": ["tasks:id"]},
}
NEG = [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["neg"]}}]


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] * 1000


def import_million(c, project, n, annotated, batch=50_000):
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        tasks = []
        for i in range(start, min(n, start + batch)):
            data = {"text": f"benchmark task number {i}", "group": i % 100}
            if i < annotated:
                tasks.append({"data": data, "annotations": [{"result": NEG if i % 7 == 0 else RESULT}]})
            else:
                tasks.append(data)
        status, body = c.call("POST", f"/api/projects/{project}/import", raw=json.dumps(tasks).encode())
        assert status == 201, body[:300]
    return time.perf_counter() - t0


def annotators(binary, data_dir, database_url, count, prefix):
    tokens = []
    env = dict(os.environ, VERITY_DATA_DIR=data_dir, VERITY_DATABASE_URL=database_url)
    for i in range(count):
        out = subprocess.run([binary, "user", "create", "--email", f"{prefix}{i}@bench.local", "--role", "annotator"],
                             env=env, capture_output=True, text=True, check=True)
        tokens.append(out.stdout.strip())
    return tokens


def stream(port, project, tokens, pairs, think_ms=0):
    """Each annotator loops next → submit `pairs` times; (next latencies, submit latencies, doubles).

    With `think_ms`, an annotator spends a random 0.5–1.5 × `think_ms` on each task between
    receiving it and submitting (labeling), as people do; without, requests follow each other
    at once and the run measures the server at saturation."""
    nexts, submits, lock = [], [], threading.Lock()
    holders, doubles = {}, [0]

    def worker(token):
        c = Client(port, token)
        rng = random.Random(token)
        for _ in range(pairs):
            t0 = time.perf_counter()
            status, body = c.call("GET", f"/api/projects/{project}/next")
            t1 = time.perf_counter()
            if status == 404:
                return
            assert status == 200, body[:300]
            task = json.loads(body)["id"]
            with lock:
                holders[task] = holders.get(task, 0) + 1
                doubles[0] += holders[task] > 1
            if think_ms:
                time.sleep(think_ms * rng.uniform(0.5, 1.5) / 1000)
            t2 = time.perf_counter()
            status, body = c.call("POST", f"/api/tasks/{task}/annotations", {"result": RESULT})
            t3 = time.perf_counter()
            assert status == 201, body[:300]
            with lock:
                nexts.append(t1 - t0)
                submits.append(t3 - t2)

    threads = [threading.Thread(target=worker, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return nexts, submits, doubles[0]


def timed_calls(c, path, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        status, body = c.call("GET", path)
        times.append(time.perf_counter() - t0)
        assert status == 200, (path, status, body[:300])
    return times


def submits_on(c, pid, tasks, result):
    cpu0, times = proc_cpu_seconds(pid), []
    for task in tasks:
        t0 = time.perf_counter()
        status, body = c.call("POST", f"/api/tasks/{task}/annotations", {"result": result})
        times.append(time.perf_counter() - t0)
        assert status == 201, body[:300]
    return times, (proc_cpu_seconds(pid) - cpu0) / len(tasks)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/verity")
    ap.add_argument("--database-url", default="")
    ap.add_argument("--tasks", type=int, default=1_000_000)
    ap.add_argument("--annotators", type=int, default=16)
    ap.add_argument("--pairs", type=int, default=150, help="next + submit pairs per annotator")
    ap.add_argument("--think-ms", type=int, default=1000,
                    help="mean time an annotator spends on a task in the paced run (0: no paced run)")
    ap.add_argument("--paced-pairs", type=int, default=60, help="next + submit pairs per annotator, paced run")
    ap.add_argument("--agreement-tasks", type=int, default=500)
    args = ap.parse_args()

    data_dir = tempfile.mkdtemp(prefix="verity-stream-bench-")
    proc, port = start_server(args.binary, args.database_url, data_dir)
    pid, rows = proc.pid, []
    try:
        c = Client(port)
        project = make_project(c)
        annotated = args.tasks // 10
        secs = import_million(c, project, args.tasks, annotated)
        rows.append((f"import {args.tasks:,} tasks ({annotated:,} annotated), batches of 50,000",
                     f"{secs:.0f} s", f"RSS {proc_rss_mb(pid):.0f} MB"))

        tokens = annotators(args.binary, data_dir, args.database_url, args.annotators, "ann")
        add_members(c, port, project, tokens)
        cpu0, t0 = proc_cpu_seconds(pid), time.perf_counter()
        nexts, submits, doubles = stream(port, project, tokens, args.pairs)
        secs, cpu = time.perf_counter() - t0, proc_cpu_seconds(pid) - cpu0
        n = len(nexts)
        rows.append((f"next + submit, {args.annotators} annotators, {n:,} pairs",
                     f"{n / secs:,.0f} pairs/s; next p50 {pct(nexts, .5):.1f} ms, p99 {pct(nexts, .99):.1f} ms; "
                     f"submit p50 {pct(submits, .5):.1f} ms, p99 {pct(submits, .99):.1f} ms",
                     f"{cpu / n * 1000:.2f} ms CPU/pair; {doubles} double hand-outs; RSS {proc_rss_mb(pid):.0f} MB"))
        if args.think_ms:
            nexts, submits, doubles = stream(port, project, tokens, args.paced_pairs, args.think_ms)
            rows.append((f"next + submit, {args.annotators} annotators labeling {args.think_ms} ms per task "
                         f"(0.5–1.5×), {len(nexts):,} pairs",
                         f"next p50 {pct(nexts, .5):.1f} ms, p99 {pct(nexts, .99):.1f} ms; "
                         f"submit p50 {pct(submits, .5):.1f} ms, p99 {pct(submits, .99):.1f} ms",
                         f"{doubles} double hand-outs; RSS {proc_rss_mb(pid):.0f} MB"))

        for name, data in FILTERED_VIEWS.items():
            status, body = c.call("POST", "/api/dm/views", {"project": project, "data": data})
            assert status == 201, body[:300]
            view = json.loads(body)["id"]
            times = timed_calls(c, f"/api/tasks?view={view}&page=1&page_size=30", 10)
            times += timed_calls(c, f"/api/tasks?view={view}&page=3&page_size=30", 5)
            rows.append((f"data manager page of 30: {name}", f"p50 {pct(times, .5):.0f} ms, max {max(times) * 1000:.0f} ms",
                         f"RSS {proc_rss_mb(pid):.0f} MB"))

        for path in ("stats/label-distribution/counts", "stats/member_performance_summary",
                     "stats/member_performance_rows", "stats/finished", "stats/lead_time",
                     "stats/total_agreement", "stats/IAA",
                     "stats/reliability?from_name=sentiment"):
            times = timed_calls(c, f"/api/projects/{project}/{path}", 5)
            rows.append((f"GET .../{path}", f"p50 {pct(times, .5):.0f} ms, max {max(times) * 1000:.0f} ms",
                         f"RSS {proc_rss_mb(pid):.0f} MB"))

        # Organization KPIs over the project's events (ADR 0060): a total, per day, per person.
        for query in ("annotations_submitted?tz=UTC",
                      "annotations_submitted?tz=Europe%2FBerlin&segment_by_time=daily",
                      "time_annotating?tz=UTC&segment_by_user=true"):
            times = timed_calls(c, f"/api/analytics/kpis/{query}&projects={project}", 5)
            rows.append((f"GET /api/analytics/kpis/{query}", f"p50 {pct(times, .5):.0f} ms, max {max(times) * 1000:.0f} ms",
                         f"RSS {proc_rss_mb(pid):.0f} MB"))

        # Agreement: the last tasks are fresh; a first annotation on each, then a second by
        # someone else (the task's agreement is refreshed with it).
        first, second = annotators(args.binary, data_dir, args.database_url, 2, "agree")
        add_members(c, port, project, [first, second])
        query = urllib.parse.quote(json.dumps({"ordering": ["-tasks:id"]}))
        status, body = c.call("GET", f"/api/tasks?project={project}&include=id"
                                     f"&page_size={args.agreement_tasks}&query={query}")
        assert status == 200, body[:300]
        ids = [t["id"] for t in json.loads(body)["tasks"]]
        a_times, a_cpu = submits_on(Client(port, first), pid, ids, RESULT)
        b_times, b_cpu = submits_on(Client(port, second), pid, ids, NEG)
        rows.append((f"first annotation on {len(ids)} fresh tasks (sequential)",
                     f"p50 {pct(a_times, .5):.1f} ms, p99 {pct(a_times, .99):.1f} ms", f"{a_cpu * 1000:.2f} ms CPU each"))
        rows.append(("second annotation on the same tasks (agreement refreshed)",
                     f"p50 {pct(b_times, .5):.1f} ms, p99 {pct(b_times, .99):.1f} ms",
                     f"{b_cpu * 1000:.2f} ms CPU each ({(b_cpu - a_cpu) * 1000:+.2f} ms)"))
        rows.append(("RSS after the run", f"{proc_rss_mb(pid):.0f} MB", ""))
    finally:
        proc.terminate()
        proc.wait(timeout=60)

    backend = "PostgreSQL" if args.database_url else "SQLite"
    print(f"\n| {backend}, {args.tasks:,} tasks | result | server cost |\n|---|---|---|")
    for name, value, cost in rows:
        print(f"| {name} | {value} | {cost} |")


if __name__ == "__main__":
    main()
