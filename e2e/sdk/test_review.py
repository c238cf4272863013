"""The review workflow through the official label-studio-sdk's Enterprise clients
(`annotation_reviews`, `projects.update(review_settings=...)`) against a real `verity serve`
(ADR 0024)."""

from __future__ import annotations

import secrets

import pytest
import requests
from label_studio_sdk.core.api_error import ApiError

CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices>
</View>"""


def _choice(label: str) -> list:
    return [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def _user(verity, role: str) -> tuple[str, int]:
    email = f"{role}-{secrets.token_hex(4)}@example.com"
    token = verity.create_user(email, role)
    me = requests.get(
        verity.base_url + "/api/current-user/whoami",
        headers={"Authorization": f"Token {token}"},
        timeout=30,
    ).json()
    return token, me["id"]


def test_reviews_through_the_sdk(verity, admin_client):
    ann_token, ann_id = _user(verity, "annotator")
    rev_token, rev_id = _user(verity, "reviewer")
    annotator, reviewer = verity.client(ann_token), verity.client(rev_token)
    project = admin_client.projects.create(title=f"Review {secrets.token_hex(3)}", label_config=CONFIG)
    admin_client.projects.import_tasks(id=project.id, request=[{"text": "one"}, {"text": "two"}])
    for user in (ann_id, rev_id):
        admin_client.projects.members.add(id=project.id, user=user)

    # Settings through the SDK's typed request.
    admin_client.projects.update(
        id=project.id,
        review_settings={"require_comment_on_reject": True, "requeue_rejected_tasks_mode": "requeue"},
    )
    settings = admin_client.projects.get(id=project.id).review_settings
    settings = settings if isinstance(settings, dict) else settings.dict()
    assert settings["require_comment_on_reject"] is True
    assert settings["review_criteria"] == "all"

    tasks = [t.id for t in admin_client.tasks.list(project=project.id)]
    first = annotator.annotations.create(id=tasks[0], result=_choice("Positive"))
    second = annotator.annotations.create(id=tasks[1], result=_choice("Positive"))

    # An annotator may not review; a rejection needs a comment here.
    with pytest.raises(ApiError) as denied:
        annotator.annotation_reviews.create(annotation=first.id, accepted=True)
    assert denied.value.status_code == 403
    with pytest.raises(ApiError) as no_comment:
        reviewer.annotation_reviews.create(annotation=second.id, accepted=False)
    assert no_comment.value.status_code == 400
    assert no_comment.value.body["code"] == "comment_required"

    # Fix and accept: the fixed result replaces the annotation's.
    fixed = reviewer.annotation_reviews.create(annotation=first.id, accepted=True, result=_choice("Negative"))
    assert fixed.accepted is True and fixed.annotation == first.id and fixed.created_by == rev_id
    assert fixed.previous_annotation_history and fixed.fixed_annotation_history
    assert admin_client.annotations.get(id=first.id).result == _choice("Negative")

    rejected = reviewer.annotation_reviews.create(annotation=second.id, accepted=False, comment="wrong sentiment")
    assert rejected.accepted is False and rejected.remove_from_queue is False

    listed = reviewer.annotation_reviews.list(annotation_task_project=project.id)
    assert [r.id for r in listed] == [fixed.id, rejected.id]
    assert [r.id for r in reviewer.annotation_reviews.list(annotation=second.id)] == [rejected.id]
    assert reviewer.annotation_reviews.get(id=rejected.id).accepted is False

    # Requeued: the annotator gets the task back for rework.
    rework = requests.get(
        f"{verity.base_url}/api/projects/{project.id}/next",
        headers={"Authorization": f"Token {ann_token}"},
        timeout=30,
    ).json()
    assert rework["id"] == tasks[1] and rework["queue"] == "Rework queue"

    updated = reviewer.annotation_reviews.update(id=rejected.id, accepted=True)
    assert updated.accepted is True
    task = admin_client.tasks.get(id=tasks[1])
    extra = task.dict() if hasattr(task, "dict") else dict(task)
    assert extra.get("reviews_accepted") == 1

    reviewer.annotation_reviews.delete(id=rejected.id)
    with pytest.raises(ApiError) as gone:
        reviewer.annotation_reviews.get(id=rejected.id)
    assert gone.value.status_code == 404
    assert [r.id for r in admin_client.annotation_reviews.list(annotation_task_project=project.id)] == [fixed.id]
