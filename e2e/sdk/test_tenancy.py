"""Workspaces, members, project roles, pauses and organization memberships through the
official label-studio-sdk (its Enterprise clients), against a real `verity serve`."""

from __future__ import annotations

import secrets

import pytest
import requests
from label_studio_sdk.core.api_error import ApiError

CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices>
</View>"""


def _user(verity, role: str) -> tuple[str, int]:
    email = f"{role}-{secrets.token_hex(4)}@example.com"
    token = verity.create_user(email, role)
    me = requests.get(
        verity.base_url + "/api/current-user/whoami",
        headers={"Authorization": f"Token {token}"},
        timeout=30,
    ).json()
    return token, me["id"]


def test_workspaces_members_roles_and_pauses(verity, admin_client):
    ann_token, ann_id = _user(verity, "annotator")
    annotator = verity.client(ann_token)
    project = admin_client.projects.create(title=f"Tenancy {secrets.token_hex(3)}", label_config=CONFIG)
    admin_client.projects.import_tasks(id=project.id, request=[{"text": "one"}, {"text": "two"}])

    # Not a member: the project is out of reach.
    with pytest.raises(ApiError) as denied:
        annotator.projects.get(id=project.id)
    assert denied.value.status_code == 403
    assert "project.view" in str(denied.value.body)

    # Through a workspace.
    ws = admin_client.workspaces.create(title="SDK team", description="made by the SDK")
    assert ws.id and ws.title == "SDK team"
    admin_client.workspaces.projects.add(id=ws.id, project=project.id)
    assert [p.id for p in admin_client.workspaces.projects.list(id=ws.id)] == [project.id]
    admin_client.workspaces.members.create(id=ws.id, user=ann_id)
    assert annotator.projects.get(id=project.id).id == project.id
    assert any(m.user.id == ann_id for m in admin_client.workspaces.members.list(id=ws.id))
    admin_client.workspaces.members.delete(id=ws.id, user_id=ann_id)
    with pytest.raises(ApiError):
        annotator.projects.get(id=project.id)

    # Through a project membership with a project role.
    admin_client.projects.members.add(id=project.id, user=ann_id)
    admin_client.projects.roles.add(project=project.id, user=ann_id, role="RE")
    assert annotator.projects.get(id=project.id).id == project.id

    # Pausing stops the label stream with the manager's message.
    pause = admin_client.projects.pauses.create(
        project_pk=project.id, user_pk=ann_id, reason="MANUAL", verbose_reason="Take a break"
    )
    r = requests.get(
        verity.base_url + f"/api/projects/{project.id}/next",
        headers={"Authorization": f"Token {ann_token}"},
        timeout=30,
    )
    assert r.status_code == 403 and r.json()["code"] == "paused", r.text
    assert "Take a break" in r.json()["detail"]
    listed = admin_client.projects.pauses.list(project_pk=project.id, user_pk=ann_id)
    assert [p.id for p in listed] == [pause.id]
    admin_client.projects.pauses.delete(project_pk=project.id, user_pk=ann_id, id=pause.id)
    r = requests.get(
        verity.base_url + f"/api/projects/{project.id}/next",
        headers={"Authorization": f"Token {ann_token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text

    admin_client.projects.members.remove(id=project.id, user=ann_id)
    with pytest.raises(ApiError):
        annotator.projects.get(id=project.id)


def test_organization_memberships(verity, admin_client):
    _, rev_id = _user(verity, "reviewer")
    org = admin_client.organizations.list()[0]
    page = admin_client.organizations.members.list(id=org.id, page_size=100)
    ids = [m.user.id if hasattr(m, "user") and m.user else m.user_id for m in page]
    assert rev_id in ids
    admin_client.organizations.members.update(id=org.id, user_id=rev_id, role="MA")
    member = admin_client.organizations.members.get(id=org.id, user_pk=rev_id)
    assert member.role in ("manager", "MA")
    admin_client.organizations.members.delete(id=org.id, user_pk=rev_id)
    member = admin_client.organizations.members.get(id=org.id, user_pk=rev_id)
    assert member.is_active is False
