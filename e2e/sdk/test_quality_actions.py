"""The data manager's quality actions through the official label-studio-sdk (ADR 0041):
`client.actions.create` with `predictions_to_annotations`, `delete_ground_truths` and
`remove_duplicates` against a real `verity serve`."""

from __future__ import annotations

import secrets

import pytest
from label_studio_sdk.core.api_error import ApiError

CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices>
</View>"""


def _choice(label: str) -> list[dict]:
    return [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def test_quality_actions_through_the_sdk(verity, admin_client):
    project = admin_client.projects.create(title=f"Quality {secrets.token_hex(3)}", label_config=CONFIG)
    admin_client.projects.import_tasks(id=project.id, request=[{"text": f"t{i}"} for i in range(3)])
    tasks = sorted(t.id for t in admin_client.tasks.list(project=project.id))
    old = admin_client.predictions.create(task=tasks[0], result=_choice("Positive"), model_version="m1")
    admin_client.predictions.create(task=tasks[0], result=_choice("Negative"), model_version="m2")
    admin_client.predictions.create(task=tasks[1], result=_choice("Negative"), model_version="m2")

    ids = {a.id for a in admin_client.actions.list(project=project.id)}
    assert {"delete_ground_truths", "predictions_to_annotations", "remove_duplicates"} <= ids

    # The body's model_version (a field the SDK method does not name) picks the version.
    admin_client.actions.create(
        id="predictions_to_annotations",
        project=project.id,
        selected_items={"all": True, "excluded": []},
        request_options={"additional_body_parameters": {"model_version": "m1"}},
    )
    made = admin_client.annotations.list(id=tasks[0])
    assert [(a.parent_prediction, a.result[0]["value"]["choices"]) for a in made] == [(old.id, ["Positive"])]
    assert admin_client.annotations.list(id=tasks[1]) == []
    # Without one, each task's newest prediction; t0 has the caller's annotation already.
    admin_client.actions.create(
        id="predictions_to_annotations", project=project.id, selected_items={"all": True, "excluded": []}
    )
    assert len(admin_client.annotations.list(id=tasks[0])) == 1
    assert [a.result[0]["value"]["choices"] for a in admin_client.annotations.list(id=tasks[1])] == [["Negative"]]
    got = admin_client.projects.get(id=project.id)
    assert (got.total_annotations_number, got.finished_task_number) == (2, 2)

    # Ground truth on both, cleared for the selection.
    for task in tasks[:2]:
        annotation = admin_client.annotations.list(id=task)[0]
        admin_client.annotations.update(id=annotation.id, ground_truth=True)
    admin_client.actions.create(
        id="delete_ground_truths", project=project.id, selected_items={"all": False, "included": [tasks[0]]}
    )
    assert [a.ground_truth for a in admin_client.annotations.list(id=tasks[0])] == [False]
    assert [a.ground_truth for a in admin_client.annotations.list(id=tasks[1])] == [True]
    admin_client.actions.create(
        id="delete_ground_truths", project=project.id, selected_items={"all": True, "excluded": []}
    )
    assert [a.ground_truth for a in admin_client.annotations.list(id=tasks[1])] == [False]

    # A bad model_version: 400, nothing created.
    with pytest.raises(ApiError) as bad:
        admin_client.actions.create(
            id="predictions_to_annotations",
            project=project.id,
            selected_items={"all": True, "excluded": []},
            request_options={"additional_body_parameters": {"model_version": 7}},
        )
    assert bad.value.status_code == 400 and bad.value.body["code"] == "validation_error"
    assert admin_client.projects.get(id=project.id).total_annotations_number == 2


def test_remove_duplicates_through_the_sdk(verity, admin_client):
    project = admin_client.projects.create(title=f"Dups {secrets.token_hex(3)}", label_config=CONFIG)
    admin_client.projects.import_tasks(
        id=project.id, request=[{"text": "same"}, {"text": "other"}, {"text": "same"}]
    )
    tasks = sorted(t.id for t in admin_client.tasks.list(project=project.id))
    annotation = admin_client.annotations.create(id=tasks[2], result=_choice("Positive"))
    admin_client.actions.create(
        id="remove_duplicates", project=project.id, selected_items={"all": True, "excluded": []}
    )
    # The annotated copy is kept; the other one is gone.
    assert sorted(t.id for t in admin_client.tasks.list(project=project.id)) == [tasks[1], tasks[2]]
    assert admin_client.annotations.get(id=annotation.id).task == tasks[2]
    assert admin_client.projects.get(id=project.id).task_number == 2
