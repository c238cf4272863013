"""Dashboards through the official label-studio-sdk's Enterprise stats client
(`projects.stats.label_distribution_*`, `projects.stats.member_performance_*`) against a real
`verity serve` (ADR 0036): the SDK's typed models parse what the server answers, and the numbers
are the ones the annotations make."""

from __future__ import annotations

import json
import secrets

import requests

CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices>
  <Labels name="entity" toName="text"><Label value="Person"/><Label value="Place"/></Labels>
</View>"""


def _choice(label: str) -> dict:
    return {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}


def _span(label: str, start: int) -> dict:
    return {
        "id": secrets.token_hex(4),
        "from_name": "entity",
        "to_name": "text",
        "type": "labels",
        "value": {"start": start, "end": start + 3, "labels": [label]},
    }


def _user(verity, role: str) -> tuple[str, int]:
    email = f"dash-{role}-{secrets.token_hex(4)}@example.com"
    token = verity.create_user(email, role)
    me = requests.get(
        verity.base_url + "/api/current-user/whoami",
        headers={"Authorization": f"Token {token}"},
        timeout=30,
    ).json()
    return token, me["id"]


def test_dashboards_through_the_sdk(verity, admin_client):
    project = admin_client.projects.create(title=f"Dashboards {secrets.token_hex(3)}", label_config=CONFIG)
    admin_client.projects.import_tasks(id=project.id, request=[{"text": f"text {i}"} for i in range(3)])
    tasks = [t.id for t in admin_client.tasks.list(project=project.id)]
    people = []
    for _ in range(2):
        token, uid = _user(verity, "annotator")
        admin_client.projects.members.add(id=project.id, user=uid)
        people.append((verity.client(token), uid))
    (a, a_id), (b, b_id) = people
    # a: Positive everywhere, one Person span per task; b: Negative on the first task, skips the rest.
    for t in tasks:
        a.annotations.create(id=t, result=[_choice("Positive"), _span("Person", 0)], lead_time=4.0)
    b.annotations.create(id=tasks[0], result=[_choice("Negative"), _span("Person", 0), _span("Place", 5)])
    for t in tasks[1:]:
        b.annotations.create(id=t, result=[], was_cancelled=True)

    stats = admin_client.projects.stats
    structure = stats.label_distribution_structure(id=project.id)
    names = [d.name for d in structure.dimensions]
    assert names == ["sentiment", "entity"]
    assert structure.dimensions[1].choices == ["Person", "Place"]
    assert "entity___SEP___Place" in structure.choice_keys

    counts = stats.label_distribution_counts(id=project.id)
    by_key = {r.choice_key: r for r in counts.results}
    assert by_key["sentiment___SEP___Positive"].from_annotations_count == 3
    assert by_key["sentiment___SEP___Negative"].from_annotations_count == 1
    assert abs(by_key["sentiment___SEP___Positive"].from_annotations_percent - 75.0) < 1e-9
    assert by_key["entity___SEP___Person"].from_annotations_count == 4
    assert counts.totals.annotation_totals_by_dimension == {"sentiment": 4, "entity": 5}
    # Only the first task, through the SDK's filter plan argument.
    plan = {"conjunction": "and", "items": [
        {"filter": "filter:tasks:id", "operator": "equal", "type": "Number", "value": tasks[0]},
    ]}
    first = stats.label_distribution_counts(id=project.id, filters=json.dumps(plan))
    first_by_key = {r.choice_key: r for r in first.results}
    assert abs(first_by_key["sentiment___SEP___Positive"].from_annotations_percent - 50.0) < 1e-9
    assert first.next_offset is None

    rows = stats.member_performance_rows(id=project.id, ordering="-skipped")
    assert rows.count == 2
    top = rows.results[0]
    assert top["member"]["id"] == b_id and top["skipped"] == 2 and top["finished"] == 1
    assert rows.results[1]["member"]["id"] == a_id and rows.results[1]["time_total"] == 12.0
    summary = stats.member_performance_summary(id=project.id)
    assert summary.summary["finished"] == 4 and summary.summary["skipped"] == 2
    participants = stats.member_performance_participants(id=project.id)
    assert sorted(u.id for u in participants) == sorted([a_id, b_id])


def test_kpis_through_the_sdk(verity, admin_client):
    """`analytics.kpis`: the catalogue and a KPI per day and per person parse into the SDK's
    models, and the numbers are those of the project's annotations (in the project alone)."""
    import datetime as dt

    project = admin_client.projects.create(title=f"KPIs {secrets.token_hex(3)}", label_config=CONFIG)
    admin_client.projects.import_tasks(id=project.id, request=[{"text": f"text {i}"} for i in range(3)])
    tasks = [t.id for t in admin_client.tasks.list(project=project.id)]
    token, uid = _user(verity, "annotator")
    admin_client.projects.members.add(id=project.id, user=uid)
    annotator = verity.client(token)
    for t in tasks[:2]:
        annotator.annotations.create(id=t, result=[_choice("Positive")], lead_time=6.0)
    annotator.annotations.create(id=tasks[2], result=[], was_cancelled=True)

    catalogue = {k.key: k for k in admin_client.analytics.kpis.list()}
    assert catalogue["annotations_submitted"].unit == "count"
    assert catalogue["review_accept_rate"].is_calculated
    kpis = admin_client.analytics.kpis
    total = kpis.get("annotations_submitted", tz="UTC", projects=str(project.id))
    assert total.segmentation == "none" and total.total.value == 3 - 1
    today = dt.datetime.now(dt.timezone.utc).date()
    daily = kpis.get(
        "annotations_skipped",
        tz="Asia/Kolkata",
        projects=str(project.id),
        segment_by_time="daily",
        start=dt.datetime.combine(today - dt.timedelta(days=2), dt.time()),
    )
    assert daily.segmentation == "time"
    assert len(daily.time_series.interval_start) == len(daily.time_series.values) >= 3
    assert daily.time_series.interval_start[0].utcoffset() == dt.timedelta(hours=5, minutes=30)
    assert sum(v or 0 for v in daily.time_series.values) == 1
    per_user = kpis.get("time_annotating", tz="UTC", projects=str(project.id), segment_by_user=True)
    assert [(u.user_id, v) for u, v in zip(per_user.by_user.users, per_user.by_user.values)] == [(uid, 12.0)]
    # The annotator sees their own events through the same client.
    mine = annotator.analytics.kpis.get("annotations_submitted", tz="UTC")
    assert mine.total.value == 2
