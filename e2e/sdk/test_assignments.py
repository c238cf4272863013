"""Task assignments and manual distribution through the official label-studio-sdk (ADR 0039):
`projects.assignments` (assign, list, update, delete, bulk_assign) and the
`assignment_settings` project setting, with an annotator's label stream following them."""

from __future__ import annotations

import secrets

import pytest
import requests
from label_studio_sdk.core.api_error import ApiError

CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices>
</View>"""


def _member(verity, admin_client, project_id: int, role: str) -> tuple[dict, dict]:
    token = verity.create_user(f"assign-{secrets.token_hex(4)}@example.com", role)
    headers = {"Authorization": f"Token {token}"}
    me = requests.get(verity.base_url + "/api/current-user/whoami", headers=headers, timeout=30).json()
    admin_client.projects.members.add(id=project_id, user=me["id"])
    return me, headers


def test_assignments_through_the_sdk(verity, admin_client):
    project = admin_client.projects.create(title=f"Assign {secrets.token_hex(3)}", label_config=CONFIG)
    admin_client.projects.import_tasks(id=project.id, request=[{"text": f"t{i}"} for i in range(4)])
    tasks = sorted(t.id for t in admin_client.tasks.list(project=project.id))
    admin_client.projects.update(
        id=project.id, assignment_settings={"label_stream_task_distribution": "assigned_only"}
    )
    got = admin_client.projects.get(id=project.id)
    assert got.assignment_settings.label_stream_task_distribution == "assigned_only"

    me, headers = _member(verity, admin_client, project.id, "annotator")
    other, _ = _member(verity, admin_client, project.id, "annotator")
    made = admin_client.projects.assignments.assign(id=project.id, task_pk=tasks[2], type="AN", users=[me["id"]])
    assert (made.task, made.assignee, made.type) == (tasks[2], me["id"], "AN")
    listed = admin_client.projects.assignments.list(id=project.id, task_pk=tasks[2])
    assert [(a.assignee, a.type) for a in listed] == [(me["id"], "AN")]

    bulk = admin_client.projects.assignments.bulk_assign(
        id=project.id, type="AN", users=[me["id"]], selected_items={"all": False, "included": [tasks[1], tasks[2]]}
    )
    assert bulk.assignments == 1
    assert bulk.task_ids == [tasks[1], tasks[2]]

    # The annotator's stream: assigned tasks only, in id order.
    nxt = requests.get(f"{verity.base_url}/api/projects/{project.id}/next", headers=headers, timeout=30)
    assert nxt.status_code == 200, nxt.text
    assert nxt.json()["id"] == tasks[1]

    # update replaces the type's assignees; delete removes them.
    replaced = admin_client.projects.assignments.update(id=project.id, task_pk=tasks[1], type="AN", users=[other["id"]])
    assert replaced.assignee == other["id"]
    admin_client.projects.assignments.delete(id=project.id, task_pk=tasks[2], type="AN", users=str(me["id"]))
    assert admin_client.projects.assignments.list(id=project.id, task_pk=tasks[2]) == []
    refused = requests.get(f"{verity.base_url}/api/projects/{project.id}/next", headers=headers, timeout=30)
    assert refused.status_code == 404 and refused.json()["code"] == "no_more_tasks", refused.text

    # An annotator cannot be assigned to review: 400 naming them.
    with pytest.raises(ApiError) as err:
        admin_client.projects.assignments.assign(id=project.id, task_pk=tasks[0], type="RE", users=[me["id"]])
    assert err.value.status_code == 400
    assert err.value.body["code"] == "invalid_assignee"
    assert str(me["id"]) in err.value.body["detail"]
