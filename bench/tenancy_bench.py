#!/usr/bin/env python3
"""Benchmark of tenancy costs (issue: organizations, workspaces, roles, audit log).

1. next + submit (8 annotators) and listing 10,000 tasks in one project of an empty instance;
2. the same again after loading 5 organizations x 20 workspaces x 100 projects (10 tasks each);
3. an audit-log query with a filter over 1,000,000 entries: first page latency.

Uses bench/api_bench.py's server and client helpers (standard library only; loopback only).
For step 3 the entries are inserted straight into the database (SQLite via the sqlite3 module,
PostgreSQL via psql) while the server is stopped: the query cost does not depend on how the rows
were written, and a million API calls would measure the API instead.

    cargo build --release -p verity-controlplane
    python3 bench/tenancy_bench.py
    python3 bench/tenancy_bench.py --database-url postgres://verity@127.0.0.1:5432/bench
"""
import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import api_bench as ab  # noqa: E402


def stream_and_list(c, port, pid, binary, data_dir, database_url, label, tag):
    """Measures next + submit and a 10k-task listing on a fresh project; returns table rows."""
    rows = []
    stream = ab.make_project(c, maximum_annotations=1)
    ab.import_tasks(c, stream, 2000)
    tokens = []
    for i in range(8):
        out = subprocess.run([binary, "user", "create", "--email", f"ann{i}-{tag}@bench.local", "--role", "annotator"],
                             env=dict(os.environ, VERITY_DATA_DIR=data_dir, VERITY_DATABASE_URL=database_url),
                             capture_output=True, text=True, check=True)
        tokens.append(out.stdout.strip())
    ab.add_members(c, port, stream, tokens)
    (lat, doubles), secs, cpu = ab.measured(pid, lambda: ab.annotate(port, stream, tokens, 2000))
    lat.sort()
    p50 = lat[len(lat) // 2] * 1000
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
    rows.append((f"{label}: next + submit, 8 annotators, {len(lat)} pairs",
                 f"{len(lat) / secs:,.0f} pairs/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms",
                 f"{cpu / max(1, len(lat)) * 1000:.2f} ms CPU/pair; {doubles} double hand-outs"))
    listing = ab.make_project(c)
    ab.import_tasks(c, listing, 10000)
    seen, secs, cpu = ab.measured(pid, lambda: ab.list_all(c, listing, 100))
    rows.append((f"{label}: list {seen} tasks, pages of 100", f"{secs:.2f} s", f"{cpu:.2f} s CPU"))
    return rows


def load_tenants(c, port, binary, data_dir, database_url, orgs, workspaces, projects, tasks):
    """orgs x workspaces x projects; the first organization is the one the owner token acts in."""
    t0 = time.perf_counter()
    owner_tokens = [ab.TOKEN]
    for i in range(1, orgs):
        out = subprocess.run([binary, "org", "create", "--name", f"Tenant {i}", "--owner-email", f"owner{i}@tenant.test"],
                             env=dict(os.environ, VERITY_DATA_DIR=data_dir, VERITY_DATABASE_URL=database_url),
                             capture_output=True, text=True, check=True)
        owner_tokens.append(out.stdout.strip())
    body = json.dumps([{"text": f"tenant task {i}"} for i in range(tasks)]).encode()
    made = 0
    for token in owner_tokens:
        oc = ab.Client(port, token)
        for w in range(workspaces):
            status, resp = oc.call("POST", "/api/workspaces", {"title": f"Workspace {w}"})
            assert status == 201, resp[:200]
            ws = json.loads(resp)["id"]
            for p in range(projects):
                status, resp = oc.call("POST", "/api/projects",
                                       {"title": f"Project {w}-{p}", "label_config": ab.CONFIG, "workspace": ws})
                assert status == 201, resp[:200]
                pid = json.loads(resp)["id"]
                status, resp = oc.call("POST", f"/api/projects/{pid}/import", raw=body)
                assert status == 201, resp[:200]
                made += 1
    return made, time.perf_counter() - t0


def fill_audit_log(data_dir, database_url, n):
    """Adds n synthetic entries to organization 1's audit log (server stopped)."""
    actions = ["project.update", "task.import", "annotation.create", "annotation.update", "member.role",
               "workspace.update", "prediction.create", "export.create"]
    if not database_url:
        db = sqlite3.connect(os.path.join(data_dir, "verity.db"))
        start = db.execute("select seq from audit_head where chain_id = 1").fetchone()[0]
        rows = ((1, start + i + 1, 1, 1 + i % 50, f"user{i % 50}@bench.local", actions[i % len(actions)], "ok",
                 "project", str(i % 1000), "{}", "", "127.0.0.1", "bench", 1_700_000_000_000_000 + i * 1000, "x", "x")
                for i in range(n))
        db.executemany("insert into audit_log (chain_id, seq, organization_id, actor_id, actor_email, action, outcome, "
                       "target_type, target_id, summary, request_id, client_ip, user_agent, created_at, prev_hash, hash) "
                       "values (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        db.commit()
        db.execute("analyze")
        db.close()
    else:
        actions_sql = "array[" + ",".join(f"'{a}'" for a in actions) + "]"
        sql = ("insert into audit_log (chain_id, seq, organization_id, actor_id, actor_email, action, outcome, target_type, "
               "target_id, summary, request_id, client_ip, user_agent, created_at, prev_hash, hash) "
               f"select 1, (select seq from audit_head where chain_id = 1) + g, 1, 1 + g % 50, 'user' || (g % 50) || '@bench.local', "
               f"({actions_sql})[1 + g % {len(actions)}], 'ok', 'project', (g % 1000)::text, '{{}}', '', '127.0.0.1', 'bench', "
               f"1700000000000000 + g * 1000, 'x', 'x' from generate_series(1, {n}) g; analyze audit_log;")
        subprocess.run(["psql", "-q", database_url, "-c", sql], check=True)


def query_latency(c, path, runs=30):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        status, body = c.call("GET", path)
        times.append(time.perf_counter() - t0)
        assert status == 200, body[:200]
    times.sort()
    return statistics.median(times) * 1000, times[-1] * 1000, len(json.loads(body)["results"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/verity")
    ap.add_argument("--database-url", default="")
    ap.add_argument("--orgs", type=int, default=5)
    ap.add_argument("--workspaces", type=int, default=20)
    ap.add_argument("--projects", type=int, default=100)
    ap.add_argument("--tasks-per-project", type=int, default=10)
    ap.add_argument("--audit-entries", type=int, default=1_000_000)
    args = ap.parse_args()

    data_dir = tempfile.mkdtemp(prefix="verity-tenancy-bench-")
    rows = []
    proc, port = ab.start_server(args.binary, args.database_url, data_dir)
    try:
        c = ab.Client(port)
        rows += stream_and_list(c, port, proc.pid, args.binary, data_dir, args.database_url, "empty instance", "a")
        made, secs = load_tenants(c, port, args.binary, data_dir, args.database_url, args.orgs, args.workspaces,
                                  args.projects, args.tasks_per_project)
        rows.append((f"load {args.orgs} orgs x {args.workspaces} workspaces x {args.projects} projects", f"{made} projects in {secs:.0f} s", ""))
        rows += stream_and_list(c, port, proc.pid, args.binary, data_dir, args.database_url, "loaded instance", "b")
        status, body = c.call("GET", "/api/projects?page_size=30")
        t0 = time.perf_counter()
        for _ in range(20):
            c.call("GET", "/api/projects?page_size=30")
        rows.append(("loaded instance: project list, first page (owner)", f"{(time.perf_counter() - t0) / 20 * 1000:.1f} ms", ""))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    fill_audit_log(data_dir, args.database_url, args.audit_entries)
    proc, port = ab.start_server(args.binary, args.database_url, data_dir)
    try:
        c = ab.Client(port)
        for label, q in [("by action", "action=member.role"), ("by actor and action", "actor=7&action=annotation."),
                         ("by target", "target_type=project&target_id=123"), ("unfiltered", "")]:
            median, worst, n = query_latency(c, f"/api/audit-log?page_size=50&{q}")
            rows.append((f"audit log, {args.audit_entries:,} entries, first page {label}", f"median {median:.1f} ms, max {worst:.1f} ms", f"{n} entries"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    backend = "PostgreSQL" if args.database_url else "SQLite"
    print(f"\n| {backend} | result | notes |\n|---|---|---|")
    for name, value, cost in rows:
        print(f"| {name} | {value} | {cost} |")


if __name__ == "__main__":
    main()
