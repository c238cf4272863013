"""Annotation load through a Service, for fault drills: N threads submit annotations to the
project's tasks until the stop file appears, and write the id of every annotation the server
acknowledged (HTTP 201 with an id) to the output file, one per line. Failures (refused, reset,
5xx while a pod dies) are counted, not retried as the same request: an unacknowledged write may
or may not exist, an acknowledged one must.

    python3 annotate_load.py URL TOKEN PROJECT STOPFILE OUTFILE [THREADS]
    python3 annotate_load.py --verify URL TOKEN IDFILE   (exit 1 unless every id is found)
"""
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request


def call(url, token, method="GET", body=None, timeout=10):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", "Token " + token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, json.loads(resp.read() or b"null")


def task_ids(base, token, project):
    status, page = call(f"{base}/api/tasks?project={project}&page_size=1000", token)
    tasks = page["tasks"] if isinstance(page, dict) else page
    return [t["id"] for t in tasks]


def load(base, token, project, stop, out, threads):
    tasks = task_ids(base, token, project)
    if not tasks:
        sys.exit("no tasks in the project")
    lock = threading.Lock()
    counts = {"ok": 0, "failed": 0}
    result = [{"from_name": "c", "to_name": "image", "type": "choices", "value": {"choices": ["Cat"]}}]

    def worker(n):
        i = n
        with open(out + f".{n}", "w") as f:
            while not os.path.exists(stop):
                task = tasks[i % len(tasks)]
                i += threads
                try:
                    status, ann = call(f"{base}/api/tasks/{task}/annotations", token, "POST", {"result": result})
                    if status == 201 and isinstance(ann, dict) and "id" in ann:
                        f.write(f"{ann['id']}\n")
                        f.flush()
                        with lock:
                            counts["ok"] += 1
                        continue
                except (urllib.error.URLError, OSError, ValueError):
                    pass
                with lock:
                    counts["failed"] += 1
                time.sleep(0.05)

    ts = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    with open(out, "w") as f:
        for n in range(threads):
            with open(out + f".{n}") as part:
                f.write(part.read())
            os.remove(out + f".{n}")
    print(f"acknowledged {counts['ok']}, failed {counts['failed']}")


def verify(base, token, idfile):
    ids = [line.strip() for line in open(idfile) if line.strip()]
    missing = []
    for ann in ids:
        try:
            status, _ = call(f"{base}/api/annotations/{ann}", token)
            if status != 200:
                missing.append(ann)
        except urllib.error.HTTPError:
            missing.append(ann)
    print(f"checked {len(ids)} acknowledged annotations, {len(missing)} missing {missing[:10]}")
    return 1 if missing or not ids else 0


if __name__ == "__main__":
    if sys.argv[1] == "--verify":
        sys.exit(verify(*sys.argv[2:5]))
    base, token, project, stop, out = sys.argv[1:6]
    load(base, token, project, stop, out, int(sys.argv[6]) if len(sys.argv) > 6 else 4)
