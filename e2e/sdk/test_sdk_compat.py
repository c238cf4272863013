"""label-studio-sdk 2.x (PyPI) against Verity, unchanged.

Every test that takes the ``ls`` fixture runs twice: with a legacy
``Authorization: Token`` client and with a personal-access-token client (the
SDK exchanges the JWT at /api/token/refresh/ and sends ``Bearer``).
Expected behaviour is Label Studio Community's (see
shared/reference/labelstudio-api.md §0.1, §2.1, §6).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import secrets
import tempfile
import time

import jwt
import pytest
import requests
from label_studio_sdk import Client as LegacyClient
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError
from label_studio_sdk.data_manager import Column, Filters, Operator, Type

LABEL_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="Positive"/>
    <Choice value="Negative"/>
    <Choice value="Neutral"/>
  </Choices>
</View>"""

LABEL_CONFIG_V2 = """<View>
  <Header value="Rate the sentiment"/>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single" showInline="true">
    <Choice value="Positive"/>
    <Choice value="Negative"/>
    <Choice value="Neutral"/>
    <Choice value="Mixed"/>
  </Choices>
</View>"""

UNKNOWN_ID = 987654321


# ------------------------------------------------------------------ helpers


def unique_title(prefix: str) -> str:
    title = f"{prefix} {secrets.token_hex(5)}"
    assert 3 <= len(title) <= 50
    return title


def choices_result(label: str, region_id: str = "r1") -> list:
    return [
        {
            "id": region_id,
            "from_name": "sentiment",
            "to_name": "text",
            "type": "choices",
            "value": {"choices": [label]},
            "origin": "manual",
        }
    ]


def dump(obj) -> dict:
    # warnings=False: the SDK types some fields narrower than LS sends them
    # (e.g. found_formats is a dict on the wire, list[str] in the model).
    return obj.model_dump(by_alias=True, warnings=False) if hasattr(obj, "model_dump") else dict(obj)


def expect_api_error(status: int, fn, *args, **kwargs) -> ApiError:
    with pytest.raises(ApiError) as excinfo:
        fn(*args, **kwargs)
    err = excinfo.value
    assert err.status_code == status, f"expected HTTP {status}, got {err.status_code}: body={err.body!r}"
    return err


def prediction_count(import_response) -> int:
    # LS returns "prediction_count"; the SDK model spells it "predictions_count".
    raw = dump(import_response)
    value = raw.get("prediction_count")
    return value if value is not None else raw.get("predictions_count")


def import_with_ids(ls: LabelStudio, project_id: int, tasks: list) -> list:
    resp = ls.projects.import_tasks(id=project_id, request=tasks, return_task_ids=True)
    assert resp.task_count == len(tasks), dump(resp)
    ids = dump(resp).get("task_ids")
    assert isinstance(ids, list) and len(ids) == len(tasks), f"task_ids missing/wrong: {dump(resp)}"
    assert len(set(ids)) == len(ids) and all(isinstance(i, int) for i in ids), ids
    return ids


def list_tasks(ls: LabelStudio, project_id: int, **kwargs) -> list:
    return [dump(t) for t in ls.tasks.list(project=project_id, **kwargs)]


def project_ids_in_list(ls: LabelStudio) -> list:
    return [p.id for p in ls.projects.list(page_size=100)]


def export_bytes(ls: LabelStudio, project_id: int, **kwargs) -> bytes:
    return b"".join(ls.projects.exports.download_sync(project_id, **kwargs))


@pytest.fixture
def project(ls, admin_client):
    created = ls.projects.create(title=unique_title("SDK compat"), label_config=LABEL_CONFIG)
    assert isinstance(created.id, int), dump(created)
    yield created
    try:
        admin_client.projects.delete(created.id)
    except ApiError as exc:
        if exc.status_code != 404:
            raise


# ------------------------------------------------------------- auth / users


def test_version_reports_community_edition(ls):
    v = ls.versions.get()
    assert v.edition == "Community"
    assert isinstance(v.release, str) and v.release


def test_whoami(ls, auth_kind, verity, admin_id):
    me = ls.users.whoami()
    assert me.email == verity.admin_email
    assert me.id == admin_id
    assert isinstance(me.username, str)  # LS leaves it "" for users created by email

    auth_header = ls._client_wrapper.get_headers()["Authorization"]
    if auth_kind == "legacy":
        assert auth_header == f"Token {verity.admin_token}"
    else:
        # The SDK exchanged the PAT at /api/token/refresh/ and now sends the access token.
        scheme, access = auth_header.split(" ", 1)
        assert scheme == "Bearer"
        claims = jwt.decode(access, options={"verify_signature": False})
        assert claims.get("token_type") == "access", claims
        assert claims.get("exp", 0) > time.time(), claims
        assert str(claims.get("user_id")) == str(admin_id), claims


def test_current_user_token_is_not_retrievable(ls, verity):
    # Deliberate difference (docs/adr/0004): tokens are stored hashed, so Label Studio's
    # GET /api/current-user/token cannot return the key; it answers 400 with a pointer to
    # reset-token instead of leaking or inventing one.
    err = expect_api_error(400, ls.users.get_token)
    assert "reset-token" in str(getattr(err, "body", err)), err


def test_pat_is_listed_without_signature(ls, admin_pat):
    header_payload, signature = admin_pat.rsplit(".", 1)
    tokens = [dump(t).get("token") for t in ls.tokens.list()]
    assert header_payload in tokens, tokens
    assert not any(signature in (t or "") for t in tokens), "token list leaks the PAT signature"


def test_pat_refresh_returns_access_token(ls, admin_pat, admin_id):
    refreshed = ls.tokens.refresh(refresh=admin_pat)
    claims = jwt.decode(refreshed.access, options={"verify_signature": False})
    assert claims.get("token_type") == "access", claims
    assert str(claims.get("user_id")) == str(admin_id), claims

    # The access token works on its own as a Bearer token.
    r = requests.get(
        ls._client_wrapper.get_base_url() + "/api/current-user/whoami",
        headers={"Authorization": f"Bearer {refreshed.access}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.json()["id"] == admin_id


def test_bad_credentials_are_401(verity):
    bogus_legacy = verity.client("0" * 40)
    expect_api_error(401, bogus_legacy.users.whoami)

    # Well-formed refresh JWT that the server never issued (wrong signing key).
    forged = jwt.encode(
        {"token_type": "refresh", "exp": int(time.time()) + 3600, "iat": int(time.time()),
         "jti": secrets.token_hex(16), "user_id": 1},
        secrets.token_hex(32),
        algorithm="HS256",
    )
    forged_client = verity.client(forged)
    expect_api_error(401, forged_client.users.whoami)


def test_x_api_key_header(verity, auth_kind, admin_id, request):
    key = verity.admin_token if auth_kind == "legacy" else request.getfixturevalue("admin_pat")
    # With X-API-Key set the SDK sends no Authorization header (a PAT is first
    # exchanged for an access token, which goes into X-API-Key). Reference §0.1/§6.1.
    # Note: Label Studio OSS 1.23.2 itself answers 401 for the [pat] variant (its
    # middleware rewrites X-Api-Key to "Token <jwt>"); Verity is held to the reference.
    client = LabelStudio(
        base_url=verity.base_url, api_key="placeholder", headers={"X-API-Key": key},
        timeout=30, max_retries=0,
    )
    assert "Authorization" not in client._client_wrapper.get_headers()
    assert client.users.whoami().id == admin_id


def test_pat_lifecycle_create_rotate_blacklist(verity):
    email = f"pat-owner-{secrets.token_hex(4)}@example.com"
    mgmt = verity.client(verity.create_user(email, "annotator"))

    pat1 = mgmt.tokens.create().token
    assert verity.client(pat1).users.whoami().email == email

    pat2 = mgmt.tokens.rotate(refresh=pat1).refresh
    assert pat2 != pat1
    assert verity.client(pat2).users.whoami().email == email
    expect_api_error(401, verity.client(pat1).users.whoami)  # rotated = blacklisted

    mgmt.tokens.blacklist(refresh=pat2)
    expect_api_error(401, verity.client(pat2).users.whoami)
    expect_api_error(404, mgmt.tokens.blacklist, refresh=pat2)  # already blacklisted

    pat3 = mgmt.tokens.create().token  # no valid PAT left, so a new one may be minted
    assert verity.client(pat3).users.whoami().email == email


def test_second_pat_is_issued_and_both_work(verity):
    # Deliberate difference (docs/adr/0004): Label Studio answers 409 to a second personal
    # access token; Verity issues it, lists both, and each keeps working until revoked.
    email = f"pat-twice-{secrets.token_hex(4)}@example.com"
    mgmt = verity.client(verity.create_user(email, "annotator"))
    first = mgmt.tokens.create().token
    second = mgmt.tokens.create().token
    assert first != second
    listed = [dump(t).get("token") for t in mgmt.tokens.list()]
    assert first.rsplit(".", 1)[0] in listed and second.rsplit(".", 1)[0] in listed, listed
    assert verity.client(first).users.whoami().email == email
    assert verity.client(second).users.whoami().email == email


def test_annotator_created_by_cli_whoami(annotator_ls, annotator_account, admin_id, verity):
    me = annotator_ls.users.whoami()
    assert me.email == annotator_account["email"]
    assert isinstance(me.id, int) and me.id != admin_id


def test_users_list_contains_admin_and_annotator(ls, verity, annotator_account, admin_id):
    users = {u.email: u.id for u in ls.users.list()}
    assert users.get(verity.admin_email) == admin_id, users
    assert annotator_account["email"] in users, users
    assert users[annotator_account["email"]] != admin_id


# ------------------------------------------------------------------ projects


def test_create_project_with_label_config(ls, admin_id):
    title = unique_title("Create")
    created = ls.projects.create(
        title=title, description="text classification", label_config=LABEL_CONFIG
    )
    try:
        assert isinstance(created.id, int)
        assert created.title == title
        assert created.label_config == LABEL_CONFIG

        p = ls.projects.get(created.id)
        assert p.id == created.id
        assert p.title == title
        assert p.description == "text classification"
        assert p.label_config == LABEL_CONFIG
        # LS defaults
        assert p.maximum_annotations == 1
        assert p.overlap_cohort_percentage == 100
        assert p.sampling == "Sequential sampling"
        assert p.skip_queue == "REQUEUE_FOR_OTHERS"
        assert p.show_skip_button is True
        assert p.enable_empty_annotation is True
        assert p.show_collab_predictions is True
        assert p.task_number == 0
        assert p.total_annotations_number == 0
        assert p.total_predictions_number == 0
        assert dump(p)["created_by"]["id"] == admin_id

        parsed = dump(p)["parsed_label_config"]
        assert set(parsed) == {"sentiment"}, parsed
        assert parsed["sentiment"]["type"] == "Choices"
        assert parsed["sentiment"]["to_name"] == ["text"]
        assert parsed["sentiment"]["labels"] == ["Positive", "Negative", "Neutral"]
        assert [(i["type"], i["value"]) for i in parsed["sentiment"]["inputs"]] == [("Text", "text")]

        # The SDK helper builds a LabelInterface from the stored config.
        li = p.get_label_interface()
        assert li.get_control("sentiment").labels == ["Positive", "Negative", "Neutral"]

        listed = project_ids_in_list(ls)
        assert listed.count(created.id) == 1
    finally:
        ls.projects.delete(created.id)


def test_projects_list_pagination(ls, admin_client):
    marker = secrets.token_hex(4)
    ids = [
        ls.projects.create(title=f"Page {marker} {i}", label_config=LABEL_CONFIG).id for i in range(5)
    ]
    try:
        first = ls.projects.list(page_size=2, page=1)
        assert len(first.items) == 2
        total = first.response.count
        assert total >= 5
        # SDK pager: page 1, 2, ... until an empty page or a 404
        seen = [p.id for p in ls.projects.list(page_size=2)]
        assert len(seen) == total, f"pager yielded {len(seen)} projects, count says {total}"
        assert len(set(seen)) == len(seen), "duplicate projects across pages"
        assert all(seen.count(pid) == 1 for pid in ids)
        # newest first (LS orders by -created_at when nothing is pinned)
        assert [pid for pid in seen if pid in ids] == sorted(ids, reverse=True)
    finally:
        for pid in ids:
            admin_client.projects.delete(pid)


def test_projects_list_title_filter(ls, admin_client):
    marker = secrets.token_hex(4)
    ids = [
        ls.projects.create(title=f"Filter {marker} {i}", label_config=LABEL_CONFIG).id for i in range(3)
    ]
    other = ls.projects.create(title=unique_title("Other"), label_config=LABEL_CONFIG).id
    try:
        found = [p.id for p in ls.projects.list(title=marker.upper())]  # icontains
        assert sorted(found) == sorted(ids)
        assert other not in found
    finally:
        for pid in ids + [other]:
            admin_client.projects.delete(pid)


def test_update_project_settings(ls, project):
    task_ids = import_with_ids(ls, project.id, [{"text": "one"}, {"text": "two"}])
    ann = ls.annotations.create(id=task_ids[0], result=choices_result("Positive"))
    assert ls.projects.get(project.id).finished_task_number == 1

    new_title = unique_title("Renamed")
    updated = ls.projects.update(
        id=project.id,
        title=new_title,
        description="updated description",
        maximum_annotations=3,
        show_skip_button=False,
        enable_empty_annotation=False,
        sampling="Uniform sampling",
        skip_queue="REQUEUE_FOR_ME",
        expert_instruction="<p>Pick <b>one</b> label</p>",
        show_instruction=True,
        color="#FF0000",
        label_config=LABEL_CONFIG_V2,
    )
    assert updated.id == project.id
    assert updated.title == new_title
    assert updated.maximum_annotations == 3

    p = ls.projects.get(project.id)
    assert p.title == new_title
    assert p.description == "updated description"
    assert p.maximum_annotations == 3
    assert p.show_skip_button is False
    assert p.enable_empty_annotation is False
    assert p.sampling == "Uniform sampling"
    assert p.skip_queue == "REQUEUE_FOR_ME"
    assert p.expert_instruction == "<p>Pick <b>one</b> label</p>"
    assert p.show_instruction is True
    assert p.color == "#FF0000"
    assert p.label_config == LABEL_CONFIG_V2
    assert dump(p)["parsed_label_config"]["sentiment"]["labels"] == ["Positive", "Negative", "Neutral", "Mixed"]
    # untouched fields keep their values
    assert p.show_collab_predictions is True
    assert p.overlap_cohort_percentage == 100

    # maximum_annotations recomputes task overlap and completion (LS §2.1 / §3.4)
    tasks = {t["id"]: t for t in list_tasks(ls, project.id)}
    assert set(tasks) == set(task_ids)
    assert [tasks[i]["overlap"] for i in task_ids] == [3, 3]
    assert tasks[task_ids[0]]["is_labeled"] is False
    assert tasks[task_ids[0]]["total_annotations"] == 1
    assert p.finished_task_number == 0
    assert ls.annotations.get(ann.id).result == choices_result("Positive")


# -------------------------------------------------------------------- import


def test_import_json_list_flat_and_wrapped(ls, project, admin_id):
    tasks = [
        {"text": "flat one"},
        {"text": "flat two", "extra": 5, "nested": {"k": [1, 2]}},
        {
            "data": {"text": "wrapped annotated"},
            "annotations": [{"result": choices_result("Positive", "a1"), "lead_time": 2.5}],
        },
        {
            "data": {"text": "wrapped predicted"},
            "predictions": [
                {"result": choices_result("Negative", "p1"), "score": 0.75, "model_version": "import-v1"}
            ],
        },
        {
            "data": {"text": "wrapped both", "source": "unit"},
            "meta": {"origin": "sdk-test"},
            "annotations": [{"result": choices_result("Neutral", "a2")}],
            "predictions": [{"result": choices_result("Positive", "p2"), "score": 0.5, "model_version": "import-v1"}],
        },
    ]
    resp = ls.projects.import_tasks(id=project.id, request=tasks)
    assert resp.task_count == 5
    assert resp.annotation_count == 2
    assert prediction_count(resp) == 2
    assert dump(resp).get("task_ids") is None  # only with return_task_ids=true

    listed = list_tasks(ls, project.id)
    assert len(listed) == 5
    by_text = {t["data"]["text"]: t for t in listed}
    assert set(by_text) == {"flat one", "flat two", "wrapped annotated", "wrapped predicted", "wrapped both"}

    # flat objects become `data` as a whole; wrapped ones keep only `data`
    assert by_text["flat one"]["data"] == {"text": "flat one"}
    assert by_text["flat two"]["data"] == {"text": "flat two", "extra": 5, "nested": {"k": [1, 2]}}
    assert by_text["wrapped annotated"]["data"] == {"text": "wrapped annotated"}
    assert by_text["wrapped both"]["data"] == {"text": "wrapped both", "source": "unit"}
    assert by_text["wrapped both"]["meta"] == {"origin": "sdk-test"}

    for text in ("flat one", "flat two"):
        assert by_text[text]["annotations"] == [] and by_text[text]["predictions"] == []
        assert by_text[text]["total_annotations"] == 0 and by_text[text]["total_predictions"] == 0

    annotated = by_text["wrapped annotated"]
    assert annotated["total_annotations"] == 1 and annotated["total_predictions"] == 0
    assert len(annotated["annotations"]) == 1
    ann = annotated["annotations"][0]
    assert ann["result"] == choices_result("Positive", "a1")
    assert ann["completed_by"] == admin_id  # importer when not given
    assert ann["lead_time"] == 2.5
    assert annotated["is_labeled"] is True

    predicted = by_text["wrapped predicted"]
    assert predicted["total_annotations"] == 0 and predicted["total_predictions"] == 1
    assert len(predicted["predictions"]) == 1
    pred = predicted["predictions"][0]
    assert pred["result"] == choices_result("Negative", "p1")
    assert pred["score"] == 0.75
    assert pred["model_version"] == "import-v1"
    assert predicted["is_labeled"] is False

    both = by_text["wrapped both"]
    assert [a["result"] for a in both["annotations"]] == [choices_result("Neutral", "a2")]
    assert [p["result"] for p in both["predictions"]] == [choices_result("Positive", "p2")]

    # the same objects through their own endpoints
    anns = ls.annotations.list(annotated["id"])
    assert [a.result for a in anns] == [choices_result("Positive", "a1")]
    preds = ls.predictions.list(task=predicted["id"])
    assert [(p.result, p.score, p.model_version) for p in preds] == [
        (choices_result("Negative", "p1"), 0.75, "import-v1")
    ]

    p = ls.projects.get(project.id)
    assert p.task_number == 5
    assert p.total_annotations_number == 2
    assert p.total_predictions_number == 2
    assert p.finished_task_number == 2


def test_import_return_task_ids_and_inner_ids(ls, project):
    first = import_with_ids(ls, project.id, [{"text": f"batch1 {i}"} for i in range(3)])
    second = import_with_ids(ls, project.id, [{"data": {"text": f"batch2 {i}"}} for i in range(3)])
    assert not set(first) & set(second)

    listed = list_tasks(ls, project.id)
    assert sorted(t["id"] for t in listed) == sorted(first + second)
    by_id = {t["id"]: t for t in listed}
    assert [by_id[i]["data"]["text"] for i in first] == ["batch1 0", "batch1 1", "batch1 2"]
    assert [by_id[i]["data"]["text"] for i in second] == ["batch2 0", "batch2 1", "batch2 2"]
    # inner_id is a per-project sequence starting at 1, in import order
    assert [by_id[i]["inner_id"] for i in first + second] == [1, 2, 3, 4, 5, 6]
    assert all(by_id[i]["project"] == project.id for i in first + second)

    single = ls.tasks.get(str(second[1]))
    assert single.id == second[1] and single.data == {"text": "batch2 1"}


def test_import_task_missing_config_variable_is_400(ls, project):
    # the label config references $text; a task without it must be rejected
    err = expect_api_error(400, ls.projects.import_tasks, id=project.id, request=[{"body": "no text key"}])
    assert isinstance(err.body, dict), err.body
    assert ls.projects.get(project.id).task_number == 0
    assert list_tasks(ls, project.id) == []


CSV_BODY = (
    'text,score,category\n'
    '"hello, world",1,alpha\n'
    '"she said ""hi""",2,beta\n'
    'plain line,3,gamma\n'
)


def _upload_csv(ls: LabelStudio, project_id: int, content: str, filename: str = "tasks.csv"):
    # label-studio-sdk 2.x has no typed method for multipart file import; use the
    # SDK's own authenticated HTTP client (same base URL / Token or Bearer header).
    return ls._client_wrapper.httpx_client.request(
        f"api/projects/{project_id}/import",
        method="POST",
        params={"return_task_ids": True},
        files={"file": (filename, content.encode("utf-8"), "text/csv")},
    )


def test_import_csv_file_upload(ls, project):
    r = _upload_csv(ls, project.id, CSV_BODY)
    assert r.status_code == 201, f"HTTP {r.status_code}: {r.text[:1000]}"
    body = r.json()
    assert body["task_count"] == 3, body
    assert body["annotation_count"] == 0, body
    assert sorted(body["data_columns"]) == ["category", "score", "text"], body
    assert isinstance(body["file_upload_ids"], list), body
    ids = body["task_ids"]
    assert len(ids) == 3 and len(set(ids)) == 3, body

    listed = {t["id"]: t for t in list_tasks(ls, project.id)}
    assert set(listed) == set(ids)
    rows = [listed[i]["data"] for i in ids]
    assert [d["text"] for d in rows] == ["hello, world", 'she said "hi"', "plain line"]
    assert [d["category"] for d in rows] == ["alpha", "beta", "gamma"]
    assert all(set(d) == {"text", "score", "category"} for d in rows), rows
    assert ls.projects.get(project.id).task_number == 3


def test_csv_upload_is_recorded_as_file_upload(ls, project):
    r = _upload_csv(ls, project.id, CSV_BODY)
    assert r.status_code == 201, r.text[:1000]
    body = r.json()
    assert len(body["file_upload_ids"]) == 1, body
    for t in list_tasks(ls, project.id):
        assert str(t["file_upload"]).endswith("tasks.csv"), t["file_upload"]


def test_import_csv_numeric_columns_are_numbers(ls, project):
    # LS reads CSV with pandas: integer columns arrive as JSON numbers.
    r = _upload_csv(ls, project.id, CSV_BODY)
    assert r.status_code == 201, r.text[:1000]
    ids = r.json()["task_ids"]
    listed = {t["id"]: t for t in list_tasks(ls, project.id)}
    assert [listed[i]["data"]["score"] for i in ids] == [1, 2, 3]


def test_legacy_client_file_import(verity, admin_client):
    # label_studio_sdk.Client (kept in 2.x) uploads a file path as multipart and
    # sends return_task_ids=1.
    pid = admin_client.projects.create(title=unique_title("Legacy import"), label_config=LABEL_CONFIG).id
    try:
        legacy = LegacyClient(url=verity.base_url, api_key=verity.admin_token)
        proj = legacy.get_project(pid)
        with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False, encoding="utf-8") as f:
            f.write(CSV_BODY)
            path = f.name
        try:
            task_ids = proj.import_tasks(path)
        finally:
            os.unlink(path)
        assert isinstance(task_ids, list) and len(task_ids) == 3, task_ids
        texts = {t["id"]: t["data"]["text"] for t in list_tasks(admin_client, pid)}
        assert [texts[i] for i in task_ids] == ["hello, world", 'she said "hi"', "plain line"]
    finally:
        admin_client.projects.delete(pid)


# --------------------------------------------------------------------- tasks


def test_tasks_pager_over_multiple_pages(ls, project):
    n = 250
    ids = import_with_ids(ls, project.id, [{"text": f"task {i:03d}"} for i in range(n)])

    pager = ls.tasks.list(project=project.id, page_size=100)
    assert pager.response.total == n
    assert len(pager.items) == 100
    seen = [t.id for t in pager]  # SDK pager walks page 1, 2, 3 and stops at the end
    assert len(seen) == n, f"pager yielded {len(seen)} tasks, expected {n}"
    assert len(set(seen)) == n, "pager yielded duplicate task ids"
    assert set(seen) == set(ids)

    texts = sorted(t["data"]["text"] for t in list_tasks(ls, project.id, page_size=100))
    assert texts == [f"task {i:03d}" for i in range(n)]

    third = ls.tasks.list(project=project.id, page=3, page_size=100)
    assert len(third.items) == 50
    assert {t.id for t in third.items} <= set(ids)
    # fields=all (SDK default) includes the nested lists
    assert all(t.annotations == [] and t.predictions == [] for t in third.items)

    # past the end: LS answers 404 ("Invalid page."); an empty 200 page also ends the pager
    try:
        beyond = ls.tasks.list(project=project.id, page=4, page_size=100)
    except ApiError as exc:
        assert exc.status_code == 404, exc.body
    else:
        assert beyond.items == []


def test_task_create_update_delete(ls, project):
    created = ls.tasks.create(data={"text": "created via sdk"}, project=project.id, meta={"src": "sdk"})
    assert isinstance(created.id, int)
    assert created.data == {"text": "created via sdk"}
    got = ls.tasks.get(str(created.id))
    assert got.data == {"text": "created via sdk"}
    assert got.meta == {"src": "sdk"}
    assert got.project == project.id
    assert ls.projects.get(project.id).task_number == 1

    ls.tasks.update(str(created.id), data={"text": "edited"})
    assert ls.tasks.get(str(created.id)).data == {"text": "edited"}
    assert [t["data"]["text"] for t in list_tasks(ls, project.id)] == ["edited"]

    ls.tasks.delete(str(created.id))
    expect_api_error(404, ls.tasks.get, str(created.id))
    assert list_tasks(ls, project.id) == []
    assert ls.projects.get(project.id).task_number == 0


def test_delete_all_tasks(ls, project):
    ids = import_with_ids(ls, project.id, [{"text": f"gone {i}"} for i in range(4)])
    ls.annotations.create(id=ids[0], result=choices_result("Positive"))
    ls.tasks.delete_all_tasks(id=project.id)
    assert list_tasks(ls, project.id) == []
    p = ls.projects.get(project.id)
    assert (p.task_number, p.total_annotations_number) == (0, 0)
    expect_api_error(404, ls.tasks.get, str(ids[0]))


def test_tasks_list_data_manager_query(ls, project):
    ids = import_with_ids(
        ls, project.id, [{"text": f"alpha {i}"} for i in range(3)] + [{"text": f"beta {i}"} for i in range(2)]
    )
    ls.annotations.create(id=ids[1], result=choices_result("Positive"))

    def query_ids(query: dict) -> list:
        return [t.id for t in ls.tasks.list(project=project.id, query=json.dumps(query))]

    annotated = {"filters": Filters.create(Filters.AND, [
        Filters.item(Column.total_annotations, Operator.GREATER, Type.Number, Filters.value(0))
    ])}
    assert query_ids(annotated) == [ids[1]]

    beta = {"filters": Filters.create(Filters.AND, [
        Filters.item(Column.data("text"), Operator.CONTAINS, Type.String, Filters.value("beta"))
    ])}
    assert sorted(query_ids(beta)) == sorted(ids[3:])

    either = {"filters": Filters.create(Filters.OR, [
        Filters.item(Column.id, Operator.EQUAL, Type.Number, Filters.value(ids[0])),
        Filters.item(Column.id, Operator.EQUAL, Type.Number, Filters.value(ids[4])),
    ])}
    assert sorted(query_ids(either)) == sorted([ids[0], ids[4]])

    assert query_ids({"ordering": ["-tasks:id"]}) == sorted(ids, reverse=True)
    assert query_ids({"ordering": ["tasks:id"]}) == sorted(ids)

    selected = {"selectedItems": {"all": False, "included": [ids[0], ids[2]]}}
    assert sorted(query_ids(selected)) == sorted([ids[0], ids[2]])
    excluded = {"selectedItems": {"all": True, "excluded": [ids[0], ids[2]]}}
    assert sorted(query_ids(excluded)) == sorted([ids[1], ids[3], ids[4]])


# --------------------------------------------------------------- annotations


def test_annotation_create_read_update_delete(ls, project, admin_id):
    t1, t2 = import_with_ids(ls, project.id, [{"text": "to annotate"}, {"text": "untouched"}])
    result = choices_result("Positive", "Xy_9-abc")
    result[0]["meta"] = {"text": ["reviewer note: ünïcødé ✓"]}

    ann = ls.annotations.create(id=t1, result=result, lead_time=3.5, was_cancelled=False, ground_truth=False)
    assert isinstance(ann.id, int)
    assert ann.result == result
    assert ann.task == t1
    assert ann.project == project.id
    assert ann.completed_by == admin_id
    assert ann.was_cancelled is False
    assert ann.ground_truth is False
    assert ann.lead_time == 3.5

    got = ls.annotations.get(ann.id)
    assert got.id == ann.id and got.result == result and got.task == t1

    assert [a.id for a in ls.annotations.list(t1)] == [ann.id]
    assert ls.annotations.list(t2) == []

    task = ls.tasks.get(str(t1))
    assert task.total_annotations == 1
    assert task.is_labeled is True
    assert [a["id"] for a in task.annotations] == [ann.id]
    assert task.annotations[0]["result"] == result
    assert ls.tasks.get(str(t2)).is_labeled is False
    assert ls.projects.get(project.id).total_annotations_number == 1

    new_result = choices_result("Negative", "Xy_9-abc")
    upd = ls.annotations.update(id=ann.id, result=new_result, lead_time=5.0)
    assert upd.id == ann.id
    assert upd.result == new_result
    got = ls.annotations.get(ann.id)
    assert got.result == new_result
    assert got.lead_time == 5.0
    assert got.updated_by == admin_id
    assert [a.id for a in ls.annotations.list(t1)] == [ann.id]

    ls.annotations.delete(ann.id)
    expect_api_error(404, ls.annotations.get, ann.id)
    assert ls.annotations.list(t1) == []
    task = ls.tasks.get(str(t1))
    assert task.total_annotations == 0
    assert task.is_labeled is False
    assert ls.projects.get(project.id).total_annotations_number == 0


def test_skipped_annotation(ls, project):
    (t1,) = import_with_ids(ls, project.id, [{"text": "skip me"}])
    skipped = ls.annotations.create(id=t1, result=[], was_cancelled=True)
    assert skipped.was_cancelled is True
    task = ls.tasks.get(str(t1))
    assert task.cancelled_annotations == 1
    assert task.total_annotations == 0
    assert task.is_labeled is False  # skip_queue REQUEUE_FOR_OTHERS: skips do not complete a task
    p = ls.projects.get(project.id)
    assert p.skipped_annotations_number == 1
    assert p.total_annotations_number == 0
    assert p.finished_task_number == 0


def test_single_ground_truth_per_task(ls, project):
    (t1,) = import_with_ids(ls, project.id, [{"text": "gt"}])
    first = ls.annotations.create(id=t1, result=choices_result("Positive"), ground_truth=True)
    second = ls.annotations.create(id=t1, result=choices_result("Negative"), ground_truth=True)
    assert ls.annotations.get(second.id).ground_truth is True
    assert ls.annotations.get(first.id).ground_truth is False
    assert sorted(a.id for a in ls.annotations.list(t1)) == sorted([first.id, second.id])


def test_annotation_on_unknown_task_is_404(ls):
    expect_api_error(404, ls.annotations.create, id=UNKNOWN_ID, result=choices_result("Positive"))


# --------------------------------------------------------------- predictions


def test_predictions_create_and_import(ls, project):
    t1, t2, t3 = import_with_ids(ls, project.id, [{"text": f"p{i}"} for i in range(3)])

    p = ls.predictions.create(task=t1, result=choices_result("Positive", "m1"), score=0.91, model_version="m-1")
    assert isinstance(p.id, int)
    assert p.task == t1
    assert p.project == project.id
    assert p.result == choices_result("Positive", "m1")
    assert p.score == pytest.approx(0.91)
    assert p.model_version == "m-1"
    got = ls.predictions.get(p.id)
    assert (got.id, got.task, got.result, got.model_version) == (p.id, t1, choices_result("Positive", "m1"), "m-1")

    imported = ls.projects.import_predictions(
        id=project.id,
        request=[
            {"task": t2, "result": choices_result("Negative", "m2"), "score": 0.4, "model_version": "m-2"},
            {"task": t3, "result": choices_result("Neutral", "m3"), "score": 0.6, "model_version": "m-2"},
        ],
    )
    assert imported.created == 2

    preds = ls.predictions.list(project=project.id)
    assert len(preds) == 3
    by_task = {x.task: x for x in preds}
    assert set(by_task) == {t1, t2, t3}
    assert by_task[t2].result == choices_result("Negative", "m2")
    assert by_task[t2].model_version == "m-2"
    assert by_task[t3].score == pytest.approx(0.6)
    assert [x.id for x in ls.predictions.list(task=t1)] == [p.id]

    tasks = {t["id"]: t for t in list_tasks(ls, project.id)}
    assert [tasks[t]["total_predictions"] for t in (t1, t2, t3)] == [1, 1, 1]
    assert [pr["result"] for pr in tasks[t3]["predictions"]] == [choices_result("Neutral", "m3")]
    assert ls.projects.get(project.id).total_predictions_number == 3

    ls.predictions.delete(p.id)
    expect_api_error(404, ls.predictions.get, p.id)
    assert len(ls.predictions.list(project=project.id)) == 2


# -------------------------------------------------------------------- export


def _completed_by_id(value):
    return value["id"] if isinstance(value, dict) else value


def test_export_json_and_csv(ls, project, admin_id):
    t1, t2, t3 = import_with_ids(
        ls, project.id, [{"text": "good movie"}, {"text": "bad movie"}, {"text": "unlabeled"}]
    )
    a1 = ls.annotations.create(id=t1, result=choices_result("Positive", "e1"))
    a2 = ls.annotations.create(id=t2, result=choices_result("Negative", "e2"))
    pr = ls.predictions.create(task=t3, result=choices_result("Neutral", "e3"), score=0.3, model_version="exp")

    # SDK helper: on Community it calls GET /export?export_type=JSON&download_all_tasks=true
    exported = ls.projects.exports.as_json(project.id)
    assert isinstance(exported, list)
    by_id = {t["id"]: t for t in exported}
    assert sorted(by_id) == sorted([t1, t2, t3])
    assert by_id[t1]["data"] == {"text": "good movie"}
    assert by_id[t3]["data"] == {"text": "unlabeled"}
    assert [a["id"] for a in by_id[t1]["annotations"]] == [a1.id]
    assert by_id[t1]["annotations"][0]["result"] == choices_result("Positive", "e1")
    assert _completed_by_id(by_id[t1]["annotations"][0]["completed_by"]) == admin_id
    assert by_id[t2]["annotations"][0]["result"] == choices_result("Negative", "e2")
    assert by_id[t3]["annotations"] == []
    assert len(by_id[t3]["predictions"]) == 1
    p3 = by_id[t3]["predictions"][0]
    if isinstance(p3, dict):
        assert p3["result"] == choices_result("Neutral", "e3")
    else:
        assert p3 == pr.id
    assert all(t.get("project") == project.id for t in exported)

    # default download_all_tasks=false: only tasks with annotations
    only_annotated = json.loads(export_bytes(ls, project.id, export_type="JSON"))
    assert sorted(t["id"] for t in only_annotated) == sorted([t1, t2])

    # CSV: one row per annotation with id, data columns and the control value
    raw_csv = export_bytes(ls, project.id, export_type="CSV", download_all_tasks=False).decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(raw_csv)))
    assert len(rows) == 2, raw_csv
    assert {"id", "text", "sentiment", "annotation_id"} <= set(rows[0]), rows[0].keys()
    by_task = {int(r["id"]): r for r in rows}
    assert set(by_task) == {t1, t2}
    assert by_task[t1]["text"] == "good movie" and by_task[t1]["sentiment"] == "Positive"
    assert by_task[t2]["text"] == "bad movie" and by_task[t2]["sentiment"] == "Negative"
    assert int(by_task[t1]["annotation_id"]) == a1.id
    assert int(by_task[t2]["annotation_id"]) == a2.id

    # SDK pandas helper (CSV, all tasks)
    df = ls.projects.exports.as_pandas(project.id)
    assert sorted(int(x) for x in df["id"]) == sorted([t1, t2, t3])
    sentiment = {int(i): s for i, s in zip(df["id"], df["sentiment"])}
    assert sentiment[t1] == "Positive" and sentiment[t2] == "Negative"
    assert sentiment[t3] is None or (isinstance(sentiment[t3], float) and math.isnan(sentiment[t3])) \
        or sentiment[t3] == ""


# -------------------------------------------------------------------- errors


def test_unknown_project_is_404(ls):
    err = expect_api_error(404, ls.projects.get, UNKNOWN_ID)
    assert isinstance(err.body, dict) and "detail" in err.body, err.body
    expect_api_error(404, ls.projects.update, id=UNKNOWN_ID, title="nope nope")
    expect_api_error(404, ls.projects.import_tasks, id=UNKNOWN_ID, request=[{"text": "x"}])
    expect_api_error(404, ls.projects.delete, UNKNOWN_ID)
    expect_api_error(404, ls.tasks.get, str(UNKNOWN_ID))
    expect_api_error(404, ls.annotations.get, UNKNOWN_ID)
    expect_api_error(404, ls.predictions.get, UNKNOWN_ID)


def test_error_envelope_shape(ls):
    # LS custom_exception_handler: {"id", "status_code", "version", "detail", ...}
    err = expect_api_error(404, ls.projects.get, UNKNOWN_ID)
    assert err.body.get("status_code") == 404, err.body
    assert isinstance(err.body.get("detail"), str) and err.body["detail"], err.body


def test_invalid_label_config_is_400(ls, project):
    marker = secrets.token_hex(4)
    malformed = '<View><Text name="text" value="$text"><Choices name="c" toName="text">'
    err = expect_api_error(400, ls.projects.create, title=f"Bad XML {marker}", label_config=malformed)
    assert isinstance(err.body, dict) and "label_config" in (err.body.get("validation_errors") or {}), err.body

    dangling = (
        '<View><Text name="text" value="$text"/>'
        '<Choices name="sentiment" toName="missing"><Choice value="A"/></Choices></View>'
    )
    err = expect_api_error(400, ls.projects.create, title=f"Bad toName {marker}", label_config=dangling)
    assert "label_config" in (err.body.get("validation_errors") or {}), err.body

    assert [p.id for p in ls.projects.list(page_size=100) if marker in (p.title or "")] == []

    expect_api_error(400, ls.projects.validate_label_config, project.id, label_config=malformed)
    expect_api_error(400, ls.projects.update, id=project.id, label_config=malformed)
    assert ls.projects.get(project.id).label_config == LABEL_CONFIG


def test_delete_project_then_404(ls):
    pid = ls.projects.create(title=unique_title("Delete me"), label_config=LABEL_CONFIG).id
    t1, _ = import_with_ids(ls, pid, [{"text": "a"}, {"text": "b"}])
    ann = ls.annotations.create(id=t1, result=choices_result("Positive"))
    pred = ls.predictions.create(task=t1, result=choices_result("Neutral"), model_version="d")

    ls.projects.delete(pid)

    expect_api_error(404, ls.projects.get, pid)
    expect_api_error(404, ls.tasks.get, str(t1))
    expect_api_error(404, ls.annotations.get, ann.id)
    expect_api_error(404, ls.predictions.get, pred.id)
    assert pid not in project_ids_in_list(ls)
    expect_api_error(404, ls.projects.delete, pid)


# ------------------------------------------------------------- wire checks


@pytest.mark.parametrize("path", ["/api/projects", "/api/projects/"])
def test_projects_route_with_and_without_trailing_slash(verity, path):
    r = requests.get(
        verity.base_url + path,
        headers={"Authorization": f"Token {verity.admin_token}"},
        allow_redirects=False,
        timeout=30,
    )
    assert r.status_code == 200, f"GET {path}: HTTP {r.status_code} {r.headers.get('location')} {r.text[:300]}"
    assert r.headers.get("content-type", "").startswith("application/json")
    body = r.json()
    assert {"count", "next", "previous", "results"} <= set(body), body.keys()
    assert isinstance(body["results"], list) and isinstance(body["count"], int)


# The two tests below encode Verity's routing rule (reference §0.1 / §6.2: every
# route matches with and without "/", never a redirect). Label Studio itself only
# re-dispatches a missing slash, so it answers 404 for "/whoami/" and "/import/".
@pytest.mark.parametrize(
    "path",
    ["/api/current-user/whoami", "/api/current-user/whoami/", "/api/version", "/api/version/"],
)
def test_other_routes_accept_both_slash_forms(verity, path):
    r = requests.get(
        verity.base_url + path,
        headers={"Authorization": f"Token {verity.admin_token}"},
        allow_redirects=False,
        timeout=30,
    )
    assert r.status_code == 200, f"GET {path}: HTTP {r.status_code} {r.text[:300]}"


def test_post_without_trailing_slash_is_not_redirected(verity, admin_client):
    pid = admin_client.projects.create(title=unique_title("Slash"), label_config=LABEL_CONFIG).id
    try:
        headers = {"Authorization": f"Token {verity.admin_token}"}
        for suffix, text in (("/import", "no slash"), ("/import/", "with slash")):
            r = requests.post(
                f"{verity.base_url}/api/projects/{pid}{suffix}",
                json=[{"text": text}],
                headers=headers,
                allow_redirects=False,
                timeout=30,
            )
            assert r.status_code == 201, f"POST {suffix}: HTTP {r.status_code} {r.text[:300]}"
            assert r.json()["task_count"] == 1
        assert sorted(t["data"]["text"] for t in list_tasks(admin_client, pid)) == ["no slash", "with slash"]
    finally:
        admin_client.projects.delete(pid)
