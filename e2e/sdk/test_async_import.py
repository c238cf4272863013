"""An import run as a job, through the official SDK: `projects.import_tasks` with `async=true`
answers `{"import": id}` (the SDK's `import_` field, as from Label Studio Enterprise), and the
import is polled at `/api/projects/{id}/imports/{import_pk}` until it completes with its
task ids; bad data fails the import with a clear error and imports nothing."""

from __future__ import annotations

import time

import requests

from test_sdk_compat import LABEL_CONFIG, unique_title


def _poll(verity, project: int, import_id: int) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = requests.get(
            f"{verity.base_url}/api/projects/{project}/imports/{import_id}",
            headers={"Authorization": f"Token {verity.admin_token}"}, timeout=10,
        ).json()
        if got["status"] in ("completed", "failed"):
            return got
        time.sleep(0.1)
    raise AssertionError(f"import {import_id} did not end")


def test_async_import_is_polled_to_completion(verity, ls):
    project = ls.projects.create(title=unique_title("Async import"), label_config=LABEL_CONFIG)
    async_query = {"additional_query_parameters": {"async": "true", "return_task_ids": "true"}}
    resp = ls.projects.import_tasks(
        id=project.id, request=[{"text": f"t{i}"} for i in range(250)], request_options=async_query,
    )
    assert resp.import_ is not None and resp.task_count is None
    done = _poll(verity, project.id, resp.import_)
    assert done["status"] == "completed", done
    assert done["task_count"] == 250 and len(done["task_ids"]) == 250
    assert ls.projects.get(project.id).task_number == 250

    bad = ls.projects.import_tasks(
        id=project.id, request=[{"text": "ok"}, {"no_text": 1}], request_options=async_query,
    )
    failed = _poll(verity, project.id, bad.import_)
    assert failed["status"] == "failed" and "task 1" in failed["error"], failed
    assert ls.projects.get(project.id).task_number == 250
