"""Agreement statistics against reference implementations (ADR 0025).

Random annotation sets (fixed seed: several annotators; a Choices, a Number and a
PolygonLabels control with random non-convex polygons) are posted through the API; the
statistics endpoints must equal scikit-learn's ``cohen_kappa_score``, statsmodels'
``fleiss_kappa``, the ``krippendorff`` package and shapely's polygon IoU to 1e-9.
"""
from __future__ import annotations

import math
import random
import secrets
import time

import krippendorff
import numpy as np
import pytest
import requests
from shapely.geometry import Polygon
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Image name="img" value="$image"/>
  <Choices name="sentiment" toName="text">
    <Choice value="pos"/><Choice value="neg"/><Choice value="neutral"/>
  </Choices>
  <Number name="score" toName="text"/>
  <PolygonLabels name="poly" toName="img"><Label value="Road"/></PolygonLabels>
</View>"""

TOL = 1e-9
ANNOTATORS = 4
TASKS = 40


def _call(verity, method: str, path: str, token: str, **kw):
    r = requests.request(
        method,
        verity.base_url + path,
        headers={"Authorization": f"Token {token}"},
        timeout=60,
        **kw,
    )
    assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
    return r.json() if r.text else None


def _star(rng: random.Random, cx: float, cy: float) -> list[list[float]]:
    """A star-shaped polygon: simple, and non-convex for most draws."""
    n = rng.randint(5, 9)
    steps = [rng.uniform(0.3, 1.0) for _ in range(n)]
    total = sum(steps)
    angle, points = rng.uniform(0, math.tau), []
    for s in steps:
        angle += s / total * math.tau
        r = rng.uniform(4.0, 22.0)
        points.append([cx + r * math.cos(angle), cy + r * math.sin(angle)])
    return points


@pytest.fixture(scope="module")
def dataset(verity):
    rng = random.Random(20261206)
    owner = verity.admin_token
    project = _call(
        verity,
        "POST",
        "/api/projects",
        owner,
        json={"title": f"Agreement {secrets.token_hex(3)}", "label_config": CONFIG, "maximum_annotations": ANNOTATORS},
    )["id"]
    users = []
    for i in range(ANNOTATORS):
        token = verity.create_user(f"agree-{i}-{secrets.token_hex(3)}@example.com", "annotator")
        uid = _call(verity, "GET", "/api/current-user/whoami", token)["id"]
        _call(verity, "POST", f"/api/projects/{project}/members", owner, json={"user": uid})
        users.append((uid, token))
    tasks = _call(
        verity,
        "POST",
        f"/api/projects/{project}/import?return_task_ids=true",
        owner,
        json=[{"text": f"t{i}", "image": f"https://example.com/{i}.png"} for i in range(TASKS)],
    )["task_ids"]
    choices = ["pos", "neg", "neutral"]
    data = {"sentiment": {}, "score": {}, "poly": {}}  # control -> (task, user) -> value
    for t in tasks:
        truth = rng.choice(choices)
        true_score = rng.randint(1, 5)
        cx, cy = rng.uniform(30, 70), rng.uniform(30, 70)
        for uid, token in users:
            label = truth if rng.random() < 0.6 else rng.choice(choices)
            result = [
                {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}
            ]
            data["sentiment"][(t, uid)] = label
            if rng.random() < 0.85:  # missing ratings for Krippendorff's alpha
                score = max(1, min(5, true_score + rng.choice([-1, 0, 0, 1])))
                result.append({"from_name": "score", "to_name": "text", "type": "number", "value": {"number": score}})
                data["score"][(t, uid)] = score
            points = _star(rng, cx, cy)
            result.append(
                {
                    "id": secrets.token_hex(4),
                    "from_name": "poly",
                    "to_name": "img",
                    "type": "polygonlabels",
                    "value": {"points": points, "closed": True, "polygonlabels": ["Road"]},
                }
            )
            data["poly"][(t, uid)] = points
            _call(verity, "POST", f"/api/tasks/{t}/annotations", token, json={"result": result})
    return {"project": project, "users": [u for u, _ in users], "tasks": tasks, "data": data}


def _reliability(verity, project: int, control: str) -> dict:
    return _call(verity, "GET", f"/api/projects/{project}/stats/reliability?from_name={control}", verity.admin_token)


def _matrix(dataset, control: str, encode) -> np.ndarray:
    """Raters × units, NaN where a rating is missing."""
    values = dataset["data"][control]
    return np.array(
        [[encode(values[(t, u)]) if (t, u) in values else np.nan for t in dataset["tasks"]] for u in dataset["users"]],
        dtype=float,
    )


@pytest.mark.parametrize("control", ["sentiment", "score"])
def test_reliability_equals_reference_implementations(verity, dataset, control):
    got = _reliability(verity, dataset["project"], control)
    values = dataset["data"][control]
    users = dataset["users"]
    assert got["raters"] == len(users)
    # Cohen's kappa per pair, over the tasks both rated.
    for i, a in enumerate(users):
        for b in users[i + 1 :]:
            shared = [t for t in dataset["tasks"] if (t, a) in values and (t, b) in values]
            want = cohen_kappa_score([str(values[(t, a)]) for t in shared], [str(values[(t, b)]) for t in shared])
            assert abs(got["cohen_kappa"][f"{a}-{b}"] - want) < TOL, (a, b, got["cohen_kappa"], want)
    categories = sorted({str(v) for v in values.values()})
    nominal = _matrix(dataset, control, lambda v: categories.index(str(v)))
    want = krippendorff.alpha(reliability_data=nominal, level_of_measurement="nominal")
    assert abs(got["krippendorff_alpha"]["nominal"] - want) < TOL, (got, want)
    units = int(((~np.isnan(nominal)).sum(axis=0) >= 2).sum())
    assert got["items"] == units
    if control == "sentiment":
        # Every task rated by every annotator: Fleiss' kappa is defined.
        table, _ = aggregate_raters(nominal.T.astype(int))
        want = fleiss_kappa(table, method="fleiss")
        assert abs(got["fleiss_kappa"] - want) < TOL, (got, want)
        assert got["krippendorff_alpha"]["interval"] is None
        assert "numeric" in got["undefined"]["krippendorff_alpha.interval"]
    else:
        interval = _matrix(dataset, control, float)
        want = krippendorff.alpha(reliability_data=interval, level_of_measurement="interval")
        assert abs(got["krippendorff_alpha"]["interval"] - want) < TOL, (got, want)
        # Missing ratings: items have different numbers of ratings, so Fleiss is undefined.
        assert got["fleiss_kappa"] is None
        assert "different numbers of ratings" in got["undefined"]["fleiss_kappa"]


def test_polygon_agreement_equals_shapely_iou(verity, dataset):
    project = dataset["project"]
    _call(
        verity,
        "PATCH",
        f"/api/projects/{project}",
        verity.admin_token,
        json={"control_weights": {"sentiment": {"overall": 0}, "score": {"overall": 0}, "poly": {"overall": 1}}},
    )
    polys = dataset["data"]["poly"]
    non_convex = 0
    task_means = []
    for t in dataset["tasks"]:
        got = _call(verity, "GET", f"/api/projects/{project}/tasks/{t}/agreement-matrix", verity.admin_token)
        order = [u["id"] for u in got["users"]]
        assert sorted(order) == sorted(dataset["users"])
        pairs = []
        for i, a in enumerate(order):
            pa = Polygon(polys[(t, a)])
            assert pa.is_valid
            non_convex += pa.area < pa.convex_hull.area - 1e-9
            for j, b in enumerate(order):
                pb = Polygon(polys[(t, b)])
                want = pa.intersection(pb).area / pa.union(pb).area
                assert abs(got["matrix"][i][j] - want) < TOL, (t, a, b, got["matrix"][i][j], want)
                if i < j:
                    pairs.append(want)
        assert abs(got["agreement"] - sum(pairs) / len(pairs)) < TOL
        task_means.append(sum(pairs) / len(pairs))
    # The stored task values, recomputed by the refresh job the weights change enqueued (ADR
    # 0035; the server's in-process workers run it), give the same mean.
    for _ in range(500):
        total = _call(verity, "GET", f"/api/projects/{project}/stats/total_agreement", verity.admin_token)
        if not total["stale"]:
            break
        time.sleep(0.02)
    assert total["stale"] is False, total
    assert total["tasks"] == len(task_means)
    assert abs(total["total_agreement"] - sum(task_means) / len(task_means)) < TOL, (total, task_means)
    assert non_convex > len(dataset["tasks"])  # the polygons really are non-convex


def test_annotator_statistics_through_the_sdk(verity, dataset):
    """The per-annotator statistics, read with the SDK's own methods and shapes, agree with the
    annotator matrix (IAA) read another way: a user's agreement is the pair-weighted mean of
    their IAA row."""
    client = verity.client(verity.admin_token)
    project, users = dataset["project"], dataset["users"]
    iaa = _call(verity, "GET", f"/api/projects/{project}/stats/IAA", verity.admin_token)
    order = [u["id"] for u in iaa["users"]]
    many = client.projects.stats.agreement_annotators(id=project, ids=",".join(map(str, users))).agreement
    for uid in users:
        i = order.index(uid)
        pairs = [(iaa["IAA"][i][j], iaa["common_tasks"][i][j]) for j in range(len(order)) if j != i]
        expected = sum(v * n for v, n in pairs) / sum(n for _, n in pairs)
        one = client.projects.stats.agreement_annotator(id=project, user_id=uid).agreement_per_annotator
        assert abs(one - expected) < TOL, (uid, one, expected)
        assert abs(many[str(uid)] - expected) < TOL
        finished = client.projects.stats.finished_tasks(id=project, user_pk=uid)
        assert (finished.id, finished.finished, finished.progress) == (uid, TASKS, 100)
    # No annotation of the dataset records a lead time.
    assert not client.projects.stats.lead_time(id=project).lead_time_stats
