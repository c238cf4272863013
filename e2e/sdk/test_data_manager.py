"""The data manager through the official label-studio-sdk: saved views (`client.views`) and bulk
actions (`client.actions`) against a real `verity serve` (ADR 0033)."""

from __future__ import annotations

import secrets

import pytest
from label_studio_sdk.core.api_error import ApiError

CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices>
</View>"""


def _id_filter(operator: str, value: int) -> dict:
    return {
        "conjunction": "and",
        "items": [{"filter": "filter:tasks:id", "operator": operator, "type": "Number", "value": value}],
    }


def test_views_and_actions_through_the_sdk(verity, admin_client):
    project = admin_client.projects.create(title=f"DM {secrets.token_hex(3)}", label_config=CONFIG)
    admin_client.projects.import_tasks(id=project.id, request=[{"text": f"t{i}"} for i in range(5)])
    tasks = sorted(t.id for t in admin_client.tasks.list(project=project.id))

    # Views: create, list, get, update, order, delete.
    late = admin_client.views.create(
        project=project.id,
        data={"title": "Late", "filters": _id_filter("greater", tasks[1]), "ordering": ["-tasks:id"]},
    )
    assert late.project == project.id and late.data["title"] == "Late"
    assert late.filter_group.conjunction == "and"
    assert late.filter_group.filters[0].column == "filter:tasks:id"
    through = [t.id for t in admin_client.tasks.list(project=project.id, view=late.id)]
    assert through == [tasks[4], tasks[3], tasks[2]]

    other = admin_client.views.create(project=project.id, data={"title": "All"})
    listed = admin_client.views.list(project=project.id)
    assert [v.id for v in listed] == [late.id, other.id]

    updated = admin_client.views.update(
        id=str(late.id), project=project.id, data={"title": "Early", "filters": _id_filter("less", tasks[2])}
    )
    assert updated.data["title"] == "Early"
    assert admin_client.views.get(id=str(late.id)).data["title"] == "Early"
    through = [t.id for t in admin_client.tasks.list(project=project.id, view=late.id)]
    assert through == [tasks[0], tasks[1]]

    # A bad filter is refused and changes nothing.
    with pytest.raises(ApiError) as bad:
        admin_client.views.update(
            id=str(late.id),
            project=project.id,
            data={"title": "Bad", "filters": {"conjunction": "xor", "items": []}},
        )
    assert bad.value.status_code == 400
    assert admin_client.views.get(id=str(late.id)).data["title"] == "Early"

    admin_client.views.update_order(project=project.id, ids=[other.id, late.id])
    assert [v.id for v in admin_client.views.list(project=project.id)] == [other.id, late.id]

    # Actions: the catalogue, then a prediction cleanup and a deletion through the view.
    ids = {a.id for a in admin_client.actions.list(project=project.id)}
    assert {"delete_tasks", "delete_tasks_annotations", "delete_tasks_predictions"} <= ids
    admin_client.predictions.create(task=tasks[0], result=[
        {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]}}
    ], model_version="m1")
    admin_client.actions.create(
        id="delete_tasks_predictions",
        project=project.id,
        selected_items={"all": True, "excluded": []},
    )
    assert admin_client.projects.get(id=project.id).total_predictions_number == 0
    admin_client.actions.create(
        id="delete_tasks", project=project.id, view=late.id, selected_items={"all": True, "excluded": [tasks[1]]}
    )
    left = sorted(t.id for t in admin_client.tasks.list(project=project.id))
    assert left == [tasks[1], tasks[2], tasks[3], tasks[4]]

    admin_client.views.delete(id=str(other.id))
    admin_client.views.delete_all(project=project.id)
    assert admin_client.views.list(project=project.id) == []
