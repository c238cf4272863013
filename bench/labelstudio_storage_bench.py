#!/usr/bin/env python3
"""The S3 import sync of bench/storage_bench.py, run against Label Studio itself, for the
comparison in docs/benchmarks.md: N small JSON task objects in moto's S3 server, one import
storage, one sync, Label Studio's wall time, CPU and peak RSS (the server and its children).

Label Studio is not a dependency of Verity; install it into a venv of its own first:

    python3 -m venv /tmp/ls-venv
    /tmp/ls-venv/bin/pip install label-studio==1.23.2 'sentry-sdk<3' boto3 moto[server]
    /tmp/ls-venv/bin/python bench/labelstudio_storage_bench.py --objects 10000

Without Redis, Label Studio runs the sync inside the request, so the POST returns when it ends.
"""
import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time

import boto3
from botocore.config import Config as BotoConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from api_bench import free_port, proc_cpu_seconds, proc_rss_mb  # noqa: E402
from storage_bench import KEY_ID, SECRET, TEXT_CONFIG, PeakRss, put_many, start_moto  # noqa: E402

TOKEN = "0123456789abcdef0123456789abcdef01234567"


def tree(pid):
    """The pid and its descendants (Label Studio's server may fork)."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    pids = [pid]
    for child in out.split():
        pids += tree(int(child))
    return pids


def call(port, method, path, body=None, timeout=7200):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Authorization": f"Token {TOKEN}", "Content-Type": "application/json"}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    resp = conn.getresponse()
    payload = resp.read()
    assert resp.status in (200, 201), (method, path, resp.status, payload[:500])
    return json.loads(payload) if payload else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=10_000)
    args = ap.parse_args()
    venv_bin = os.path.dirname(sys.executable)
    data_dir = tempfile.mkdtemp(prefix="ls-storage-bench-")
    moto_proc, moto = start_moto(venv_bin, data_dir)
    port = free_port()
    env = dict(os.environ, LABEL_STUDIO_BASE_DATA_DIR=data_dir, SENTRY_DSN="", FRONTEND_SENTRY_DSN="",
               LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true")
    log = open(os.path.join(data_dir, "ls.log"), "w")
    ls = subprocess.Popen([os.path.join(venv_bin, "label-studio"), "start", "--no-browser", "--port", str(port),
                           "--data-dir", data_dir, "--username", "bench@example.com", "--password", "bench-pass-1",
                           "--user-token", TOKEN], env=env, stdout=log, stderr=log)
    try:
        for _ in range(900):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            sys.exit("Label Studio did not start; see " + log.name)
        s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1", aws_access_key_id=KEY_ID,
                          aws_secret_access_key=SECRET, config=BotoConfig(max_pool_connections=32))
        n = args.objects
        s3.create_bucket(Bucket="ls-import")
        put_many(s3, "ls-import", ((f"t/{i:07}.json", json.dumps({"text": f"object number {i}"}).encode())
                                   for i in range(n)))
        project = call(port, "POST", "/api/projects", {"title": "Storage bench", "label_config": TEXT_CONFIG})["id"]
        storage = call(port, "POST", "/api/storages/s3", dict(
            project=project, bucket="ls-import", prefix="t", regex_filter=r".*\.json", use_blob_urls=False,
            s3_endpoint=moto, region_name="us-east-1", aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET))["id"]
        pids = tree(ls.pid)
        rss0 = sum(proc_rss_mb(p) for p in pids)
        cpu0, t0 = sum(proc_cpu_seconds(p) for p in pids), time.perf_counter()
        with PeakRss(ls.pid) as rss:
            call(port, "POST", f"/api/storages/s3/{storage}/sync")
            while True:
                view = call(port, "GET", f"/api/storages/s3/{storage}")
                if view["status"] in ("completed", "failed", "completed_with_errors"):
                    break
                time.sleep(0.2)
        secs = time.perf_counter() - t0
        cpu = sum(proc_cpu_seconds(p) for p in tree(ls.pid)) - cpu0
        total = call(port, "GET", f"/api/projects/{project}")["task_number"]
        print(f"| Label Studio S3 import sync, {n:,} JSON objects ({view['status']}, {total} tasks) "
              f"| {secs:.1f} s ({n / secs:,.0f} objects/s) "
              f"| {cpu:.1f} s CPU ({cpu / n * 1000:.2f} ms/object); RSS {rss0:.0f} → peak {rss.peak:.0f} MB |")
    finally:
        ls.terminate()
        ls.wait(timeout=60)
        moto_proc.terminate()
        moto_proc.wait(timeout=30)


if __name__ == "__main__":
    main()
