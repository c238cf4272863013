"""Bulk labeling and bulk deletion through the official label-studio-sdk (ADR 0061):
`client.annotations.create_bulk` (by task ids and by a data-manager selection) and
`client.annotations.delete_bulk` against a real `verity serve`, with the refusals a script
meets (an annotator, a configuration with region controls, an id of another project)."""

from __future__ import annotations

import secrets

import pytest
import requests
from label_studio_sdk.core.api_error import ApiError

CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices>
  <Rating name="stars" toName="text" maxRating="5"/>
  <TextArea name="note" toName="text"/>
</View>"""

REGIONS = """<View>
  <Text name="text" value="$text"/>
  <Labels name="ner" toName="text"><Label value="PER"/></Labels>
</View>"""


def _answer(label: str, stars: int = 4) -> list[dict]:
    return [
        {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}},
        {"from_name": "stars", "to_name": "text", "type": "rating", "value": {"rating": stars}},
        {"from_name": "note", "to_name": "text", "type": "textarea", "value": {"text": ["bulk"]}},
    ]


def _member_client(verity, admin_client, project_id: int, role: str):
    token = verity.create_user(f"bulk-{secrets.token_hex(4)}@example.com", role)
    me = requests.get(
        verity.base_url + "/api/current-user/whoami", headers={"Authorization": f"Token {token}"}, timeout=30
    ).json()
    admin_client.projects.members.add(id=project_id, user=me["id"])
    return me, verity.client(token)


def test_bulk_labeling_and_deletion_through_the_sdk(verity, admin_client):
    project = admin_client.projects.create(
        title=f"Bulk {secrets.token_hex(3)}", label_config=CONFIG, maximum_annotations=2
    )
    admin_client.projects.import_tasks(id=project.id, request=[{"text": f"t{i}"} for i in range(4)])
    tasks = sorted(t.id for t in admin_client.tasks.list(project=project.id))
    assert admin_client.projects.get(id=project.id).config_suitable_for_bulk_annotation is True

    reviewer, reviewer_client = _member_client(verity, admin_client, project.id, "reviewer")
    _, annotator_client = _member_client(verity, admin_client, project.id, "annotator")

    # By task ids, as a reviewer.
    made = reviewer_client.annotations.create_bulk(tasks=tasks[:2], project=project.id, result=_answer("Positive"))
    assert len(made) == 2
    for task, item in zip(tasks[:2], made):
        annotation = admin_client.annotations.get(id=item.id)
        assert (annotation.task, annotation.completed_by, annotation.bulk_created) == (task, reviewer["id"], True)
        assert annotation.result[0]["value"]["choices"] == ["Positive"]
    # By a data-manager selection, as the admin: every task but the last.
    by_selection = admin_client.annotations.create_bulk(
        project=project.id,
        selected_items={"all": True, "excluded": [tasks[3]]},
        result=_answer("Negative", stars=2),
    )
    assert len(by_selection) == 3
    got = admin_client.projects.get(id=project.id)
    # Overlap 2: t0 and t1 have two annotations now, t2 one, t3 none.
    assert (got.total_annotations_number, got.finished_task_number, got.num_tasks_with_annotations) == (5, 2, 3)
    assert [t.is_labeled for t in sorted(admin_client.tasks.list(project=project.id), key=lambda t: t.id)] == [
        True, True, False, False,
    ]

    # Refusals: an annotator; a result the configuration does not allow; nothing is written.
    with pytest.raises(ApiError) as refused:
        annotator_client.annotations.create_bulk(tasks=[tasks[3]], project=project.id, result=_answer("Positive"))
    assert refused.value.status_code == 403 and refused.value.body["code"] == "forbidden"
    with pytest.raises(ApiError) as bad:
        admin_client.annotations.create_bulk(tasks=[tasks[3]], project=project.id, result=_answer("Maybe"))
    assert bad.value.status_code == 400 and bad.value.body["code"] == "invalid_result"
    assert admin_client.projects.get(id=project.id).total_annotations_number == 5

    # A configuration with region controls cannot be labeled in bulk.
    regions = admin_client.projects.create(title=f"Regions {secrets.token_hex(3)}", label_config=REGIONS)
    admin_client.projects.import_tasks(id=regions.id, request=[{"text": "x"}])
    assert admin_client.projects.get(id=regions.id).config_suitable_for_bulk_annotation is False
    region_task = next(iter(admin_client.tasks.list(project=regions.id))).id
    with pytest.raises(ApiError) as unsuitable:
        admin_client.annotations.create_bulk(tasks=[region_task], project=regions.id, result=[])
    assert unsuitable.value.status_code == 400
    assert unsuitable.value.body["code"] == "config_not_suitable_for_bulk"

    # delete_bulk: an id of another project refuses the call whole; then the reviewer deletes.
    elsewhere = admin_client.annotations.create(
        id=region_task,
        result=[{"from_name": "ner", "to_name": "text", "type": "labels",
                 "value": {"start": 0, "end": 1, "text": "x", "labels": ["PER"]}}],
    )
    with pytest.raises(ApiError) as foreign:
        reviewer_client.annotations.delete_bulk(ids=[made[0].id, elsewhere.id], project=project.id)
    assert foreign.value.status_code == 400 and str(elsewhere.id) in foreign.value.body["detail"]
    assert admin_client.projects.get(id=project.id).total_annotations_number == 5
    deleted = reviewer_client.annotations.delete_bulk(ids=[made[0].id, made[1].id], project=project.id)
    assert deleted.deleted_count == 2
    got = admin_client.projects.get(id=project.id)
    assert (got.total_annotations_number, got.finished_task_number) == (3, 0)
    assert admin_client.annotations.get(id=elsewhere.id).id == elsewhere.id
