"""Label stream rules through the official label-studio-sdk (ADR 0037): the Enterprise settings
go through `projects.update` as the SDK types them (decimals as strings), and an annotator over
the limit is paused with a message."""

from __future__ import annotations

import secrets

import requests

CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices>
</View>"""


def test_limits_and_thresholds_through_the_sdk(verity, admin_client):
    project = admin_client.projects.create(title=f"Limits {secrets.token_hex(3)}", label_config=CONFIG)
    admin_client.projects.import_tasks(id=project.id, request=[{"text": f"t{i}"} for i in range(4)])
    admin_client.projects.update(
        id=project.id,
        annotation_limit_percent="50",
        agreement_threshold="75.5",
        max_additional_annotators_assignable=2,
        annotator_evaluation_enabled=True,
        annotator_evaluation_minimum_score="90",
        annotator_evaluation_minimum_tasks=3,
    )
    got = admin_client.projects.get(id=project.id)
    assert got.annotation_limit_percent == "50.00"
    assert got.agreement_threshold == "75.50"
    assert got.max_additional_annotators_assignable == 2
    assert got.annotator_evaluation_minimum_score == "90.00"
    assert got.annotator_evaluation_minimum_tasks == 3

    email = f"limit-{secrets.token_hex(4)}@example.com"
    token = verity.create_user(email, "annotator")
    headers = {"Authorization": f"Token {token}"}
    me = requests.get(verity.base_url + "/api/current-user/whoami", headers=headers, timeout=30).json()
    admin_client.projects.members.add(id=project.id, user=me["id"])
    annotator = verity.client(token)
    for _ in range(2):
        task = requests.get(f"{verity.base_url}/api/projects/{project.id}/next", headers=headers, timeout=30).json()
        annotator.annotations.create(
            id=task["id"],
            result=[{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]}}],
        )
    refused = requests.get(f"{verity.base_url}/api/projects/{project.id}/next", headers=headers, timeout=30)
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "paused"
    assert "limit of 2" in refused.json()["detail"]
    admin_client.projects.metrics.update(id=project.id, agreement_threshold=70, max_additional_annotators_assignable=1)
    metric = admin_client.projects.metrics.get(id=project.id)
    assert metric.agreement_threshold == 70 and metric.max_additional_annotators_assignable == 1
    assert admin_client.projects.get(id=project.id).agreement_threshold == "70.00"

    pauses = admin_client.projects.pauses.list(project_pk=project.id, user_pk=me["id"])
    assert [p.reason for p in pauses] == ["ANNOTATION_LIMIT"]
