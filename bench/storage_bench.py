#!/usr/bin/env python3
"""Storage benchmarks of issue 14 (docs/benchmarks.md), against a `verity serve` (release build)
on the embedded default (SQLite, SQL job queue) and moto's S3 server, both on 127.0.0.1:

1. Import sync of N small JSON task objects from S3, then a re-sync with nothing changed: wall
   time, server CPU, and the server's peak RSS during the sync, for N/10 and N objects (constant
   memory means the same peak for both).
2. Storage proxy throughput for one large object: through the proxy from a local-files storage
   (the proxy's own cost) and from S3 (bounded by moto), one client and four at once, next to a
   direct read from moto; the server's RSS while it streams.
3. COCO export of M annotated images (one rectangle each), streamed by
   `GET /api/projects/{id}/export?exportType=COCO`: wall time, server CPU and RSS; and, for
   comparison, Label Studio's converter (`label_studio_sdk.converter`, installed with the SDK)
   turning Verity's JSON export of the same project into COCO.

Needs boto3, requests and label_studio_sdk (the SDK test venv); `bench/storage/run` sets it up.

    python bench/storage_bench.py --binary target/release/verity --objects 100000 \
        --proxy-mb 100 --coco-images 100000
"""
import argparse
import base64
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config as BotoConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from api_bench import Client, free_port, proc_cpu_seconds, proc_rss_mb, start_server  # noqa: E402

KEY_ID, SECRET = "AKIAVERITYBENCH00001", "verity-bench-secret"
TEXT_CONFIG = ('<View><Text name="text" value="$text"/><Choices name="c" toName="text">'
               '<Choice value="a"/><Choice value="b"/></Choices></View>')
IMAGE_CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
                '<Label value="cat"/><Label value="dog"/><Label value="bird"/></RectangleLabels></View>')


class PeakRss:
    """Samples a process's RSS every 50 ms while running; `peak` is the highest seen."""

    def __init__(self, pid):
        self.pid, self.peak, self._stop = pid, proc_rss_mb(pid), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, proc_rss_mb(self.pid))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def start_moto(venv_bin, log_dir):
    port = free_port()
    log = open(os.path.join(log_dir, "moto.log"), "w")
    proc = subprocess.Popen([os.path.join(venv_bin, "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=log)
    for _ in range(300):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/moto-api/")
            c.getresponse().read()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("moto_server did not start; see " + log.name)


def call_json(client, method, path, body=None, expect=(200, 201)):
    status, payload = client.call(method, path, body)
    for _ in range(20):
        # A busy database answers 503 ("retry shortly"); the polls of a long sync do so.
        if status != 503 or method != "GET":
            break
        print(f"  503 on {path}, retrying: {payload[:120]!r}", flush=True)
        time.sleep(1)
        status, payload = client.call(method, path, body)
    assert status in expect, (method, path, status, payload[:300])
    return json.loads(payload) if payload else None


def make_project(client, config):
    return call_json(client, "POST", "/api/projects", {"title": "Storage bench", "label_config": config})["id"]


def s3_storage(client, project, moto, bucket, **extra):
    body = dict(project=project, bucket=bucket, s3_endpoint=moto, region_name="us-east-1",
                aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET, **extra)
    return call_json(client, "POST", "/api/storages/s3", body)["id"]


def sync(client, path, pid):
    """Starts a sync of the storage at `path` and waits for its end: (view, seconds, CPU, peak RSS)."""
    cpu0, t0 = proc_cpu_seconds(pid), time.perf_counter()
    with PeakRss(pid) as rss:
        call_json(client, "POST", path + "/sync")
        deadline = time.monotonic() + 3600
        while True:
            view = call_json(client, "GET", path)
            if view["status"] in ("completed", "failed", "completed_with_errors"):
                break
            assert time.monotonic() < deadline, view
            time.sleep(0.1)
    assert view["status"] == "completed", view
    return view, time.perf_counter() - t0, proc_cpu_seconds(pid) - cpu0, rss.peak


def put_many(s3, bucket, items, threads=32):
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda kv: s3.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), items))


def bench_import(rows, c, pid, s3, moto, n):
    bucket = f"import-{n}"
    s3.create_bucket(Bucket=bucket)
    t0 = time.perf_counter()
    put_many(s3, bucket, ((f"t/{i:07}.json", json.dumps({"text": f"object number {i}"}).encode())
                          for i in range(n)))
    print(f"  put {n} objects into moto in {time.perf_counter() - t0:.0f} s", flush=True)
    project = make_project(c, TEXT_CONFIG)
    storage = s3_storage(c, project, moto, bucket, prefix="t", regex_filter=r".*\.json", use_blob_urls=False)
    path = f"/api/storages/s3/{storage}"
    rss0 = proc_rss_mb(pid)
    view, secs, cpu, peak = sync(c, path, pid)
    assert view["last_sync_count"] == n, view
    rows.append((f"S3 import sync, {n:,} JSON objects", f"{secs:.1f} s ({n / secs:,.0f} objects/s)",
                 f"{cpu:.1f} s CPU ({cpu / n * 1000:.2f} ms/object); RSS {rss0:.0f} → peak {peak:.0f} MB"))
    view, secs, cpu, peak = sync(c, path, pid)
    assert view["last_sync_count"] == 0, view
    rows.append((f"S3 re-sync, {n:,} objects, none changed", f"{secs:.1f} s",
                 f"{cpu:.1f} s CPU; peak RSS {peak:.0f} MB"))


def read_link(port, link, rng=None):
    """GETs a proxy link, discarding the body in 1 MiB reads; answers the bytes read."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("GET", link, headers={"Range": rng} if rng else {})
    resp = conn.getresponse()
    assert resp.status in (200, 206), (resp.status, resp.read()[:300])
    total = 0
    while True:
        chunk = resp.read(1 << 20)
        if not chunk:
            break
        total += len(chunk)
    conn.close()
    return total


def proxy_link(c, task, uri):
    """The signed proxy link `/api/tasks/{id}/presign` redirects to."""
    fileuri = urllib.parse.quote(base64.urlsafe_b64encode(uri.encode()).decode())
    conn = http.client.HTTPConnection("127.0.0.1", c.conn.port, timeout=60)
    conn.request("GET", f"/api/tasks/{task}/presign?fileuri={fileuri}", headers=c.headers)
    resp = conn.getresponse()
    body = resp.read()
    assert resp.status == 303, (resp.status, body[:300])
    return resp.getheader("Location")


def throughput(rows, name, pid, fetch, size, clients):
    for n in clients:
        cpu0, t0 = proc_cpu_seconds(pid) if pid else 0, time.perf_counter()
        with PeakRss(pid or os.getpid()) as rss, ThreadPoolExecutor(n) as pool:
            got = list(pool.map(lambda _: fetch(), range(n)))
        secs = time.perf_counter() - t0
        assert all(g == size for g in got), got
        cost = f"{proc_cpu_seconds(pid) - cpu0:.2f} s CPU; peak RSS {rss.peak:.0f} MB" if pid else "(moto)"
        rows.append((f"{name}, {n} client{'s' if n > 1 else ''}",
                     f"{size * n / secs / 1e6:,.0f} MB/s ({secs:.2f} s)", cost))


def bench_proxy(rows, c, pid, port, s3, moto, files_root, mb):
    size = mb * 1_000_000
    block = os.urandom(1 << 20)
    data = (block * (size // len(block) + 1))[:size]
    # Local files: the proxy's own cost.
    os.makedirs(os.path.join(files_root, "big"), exist_ok=True)
    with open(os.path.join(files_root, "big", "blob.wav"), "wb") as f:
        f.write(data)
    project = make_project(c, IMAGE_CONFIG)
    local = call_json(c, "POST", "/api/storages/localfiles",
                      {"project": project, "path": os.path.join(files_root, "big"), "use_blob_urls": True})["id"]
    sync(c, f"/api/storages/localfiles/{local}", pid)
    task = call_json(c, "GET", f"/api/tasks?project={project}&page_size=1")["tasks"][0]
    link = proxy_link(c, task["id"], task["data"]["image"])
    throughput(rows, f"proxy, local file of {mb} MB", pid, lambda: read_link(port, link), size, (1, 4))
    # S3 (moto serves the bytes; Python bounds this).
    s3.create_bucket(Bucket="proxy")
    s3.put_object(Bucket="proxy", Key="big/blob.wav", Body=data)
    project = make_project(c, IMAGE_CONFIG)
    storage = s3_storage(c, project, moto, "proxy", prefix="big", use_blob_urls=True, presign=False)
    sync(c, f"/api/storages/s3/{storage}", pid)
    task = call_json(c, "GET", f"/api/tasks?project={project}&page_size=1")["tasks"][0]
    link = proxy_link(c, task["id"], task["data"]["image"])
    throughput(rows, f"proxy, S3 object of {mb} MB", pid, lambda: read_link(port, link), size, (1, 4))

    def direct():
        body = s3.get_object(Bucket="proxy", Key="big/blob.wav")["Body"]
        return sum(len(chunk) for chunk in body.iter_chunks(1 << 20))
    throughput(rows, f"moto directly with boto3 (no proxy), {mb} MB", None, direct, size, (1,))
    quarter = size // 4
    got = read_link(port, link, f"bytes={quarter}-{2 * quarter - 1}")
    assert got == quarter, got


def bench_coco(rows, c, pid, m, data_dir, venv_python):
    project = make_project(c, IMAGE_CONFIG)
    labels = ("cat", "dog", "bird")
    batch = 20_000
    t0 = time.perf_counter()
    for start in range(0, m, batch):
        tasks = []
        for i in range(start, min(m, start + batch)):
            region = {"id": f"r{i}", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
                      "original_width": 1024, "original_height": 768,
                      "value": {"x": 10 + i % 50, "y": 20, "width": 30, "height": 25.5, "rotation": 0,
                                "rectanglelabels": [labels[i % 3]]}}
            tasks.append({"data": {"image": f"https://images.example.com/set/{i:07}.jpg"},
                          "annotations": [{"result": [region]}]})
        status, body = c.call("POST", f"/api/projects/{project}/import", raw=json.dumps(tasks).encode())
        assert status == 201, body[:300]
    print(f"  imported {m} annotated images in {time.perf_counter() - t0:.0f} s", flush=True)

    def export(kind, out):
        conn = http.client.HTTPConnection("127.0.0.1", c.conn.port, timeout=3600)
        conn.request("GET", f"/api/projects/{project}/export?exportType={kind}", headers=c.headers)
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()[:300]
        total = 0
        with open(out, "wb") as f:
            while True:
                chunk = resp.read(1 << 20)
                if not chunk:
                    break
                f.write(chunk)
                total += len(chunk)
        return total

    out = os.path.join(data_dir, "coco.zip")
    rss0 = proc_rss_mb(pid)
    cpu0, t0 = proc_cpu_seconds(pid), time.perf_counter()
    with PeakRss(pid) as rss:
        size = export("COCO", out)
    secs = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as unzip:
        subprocess.run(["python3", "-m", "zipfile", "-e", out, unzip], check=True)
        coco = json.load(open(os.path.join(unzip, "result.json")))
    assert len(coco["images"]) == m and len(coco["annotations"]) == m, (len(coco["images"]), len(coco["annotations"]))
    rows.append((f"COCO export, {m:,} annotated images ({size / 1e6:.0f} MB zip)", f"{secs:.1f} s",
                 f"{proc_cpu_seconds(pid) - cpu0:.1f} s CPU; RSS {rss0:.0f} → peak {rss.peak:.0f} MB"))

    # Label Studio's converter on the same annotations (Verity's JSON export as its input).
    json_out = os.path.join(data_dir, "export.json")
    export("JSON", json_out)
    script = ("import sys, time\n"
              "from label_studio_sdk.converter import Converter\n"
              "config = open(sys.argv[1]).read()\n"
              "t0 = time.perf_counter()\n"
              "Converter(config=config, project_dir='.', download_resources=False)"
              ".convert_to_coco(sys.argv[2], sys.argv[3], is_dir=False)\n"
              "print(time.perf_counter() - t0)\n")
    cfg = os.path.join(data_dir, "config.xml")
    with open(cfg, "w") as f:
        f.write(IMAGE_CONFIG)
    outdir = os.path.join(data_dir, "ls-coco")
    timed = subprocess.run(["/usr/bin/time", "-f", "%M", venv_python, "-c", script, cfg, json_out, outdir],
                           capture_output=True, text=True, check=True, cwd=data_dir)
    peak_kb = int(timed.stderr.strip().splitlines()[-1])
    rows.append((f"Label Studio's converter, same {m:,} images, JSON → COCO",
                 f"{float(timed.stdout.strip().splitlines()[-1]):.1f} s", f"peak RSS {peak_kb / 1024:.0f} MB"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/verity")
    ap.add_argument("--objects", type=int, default=100_000)
    ap.add_argument("--proxy-mb", type=int, default=100)
    ap.add_argument("--coco-images", type=int, default=100_000)
    ap.add_argument("--only", default="import,proxy,coco")
    args = ap.parse_args()
    only = set(args.only.split(","))
    venv_bin = os.path.dirname(sys.executable)

    data_dir = tempfile.mkdtemp(prefix="verity-storage-bench-")
    files_root = os.path.join(data_dir, "files")
    os.makedirs(files_root)
    os.environ.update(VERITY_ALLOW_PRIVATE_TARGETS="127.0.0.1", VERITY_LOCAL_FILES_ROOT=files_root)
    moto_proc, moto = start_moto(venv_bin, data_dir)
    proc, port = start_server(args.binary, "", data_dir)
    pid = proc.pid
    rows = []
    try:
        c = Client(port)
        s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1", aws_access_key_id=KEY_ID,
                          aws_secret_access_key=SECRET, config=BotoConfig(max_pool_connections=32))
        rows.append(("idle RSS", f"{proc_rss_mb(pid):.1f} MB", ""))
        if "import" in only:
            for n in (args.objects // 10, args.objects):
                bench_import(rows, c, pid, s3, moto, n)
        if "proxy" in only:
            bench_proxy(rows, c, pid, port, s3, moto, files_root, args.proxy_mb)
        if "coco" in only:
            bench_coco(rows, c, pid, args.coco_images, data_dir, sys.executable)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        moto_proc.terminate()
        moto_proc.wait(timeout=30)

    print("\n| measure | result | server cost |\n|---|---|---|")
    for name, value, cost in rows:
        print(f"| {name} | {value} | {cost} |")


if __name__ == "__main__":
    main()
