"""Uploaded files through the official SDK (ADR 0032): media files posted to the import
endpoint by the SDK's own HTTP client become tasks pointing at `/data/upload/...`; the SDK's
`files` calls list, read, download, replace and delete them; `projects.import_tasks` with
`preannotated_from_fields` turns a field into predictions."""

from __future__ import annotations

import pytest
from label_studio_sdk.core.api_error import ApiError

from test_sdk_compat import LABEL_CONFIG, unique_title

IMAGE_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <Choices name="kind" toName="image"><Choice value="cat"/><Choice value="dog"/></Choices>
</View>"""

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20
JPG = b"\xff\xd8\xff\xe0" + bytes(reversed(range(256))) * 7


def _upload(ls, project: int, files) -> dict:
    """A multipart import through the SDK's HTTP client (its auth and base URL)."""
    response = ls._client_wrapper.httpx_client.request(
        f"api/projects/{project}/import",
        method="POST",
        data={},
        files={f"file{i}": f for i, f in enumerate(files)},
        force_multipart=True,
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_uploaded_files_through_the_sdk(ls):
    project = ls.projects.create(title=unique_title("Uploads"), label_config=IMAGE_CONFIG)
    summary = _upload(ls, project.id, [("cat.png", PNG), ("dog.jpg", JPG)])
    assert summary["task_count"] == 2 and len(summary["file_upload_ids"]) == 2

    tasks = list(ls.tasks.list(project=project.id))
    urls = sorted(t.data["image"] for t in tasks)
    assert all(u.startswith(f"/data/upload/{project.id}/") for u in urls), urls

    uploads = ls.files.list(id=project.id)
    assert sorted(u.file for u in uploads) == urls
    first, second = summary["file_upload_ids"]
    only = ls.files.list(id=project.id, ids=[str(second)])
    assert [u.id for u in only] == [second]
    got = ls.files.get(first)
    assert got.size == len(PNG) and got.file.endswith("-cat.png")

    # The SDK's download takes the path under /data/upload/.
    name = got.file.removeprefix("/data/upload/")
    raw = ls.files.with_raw_response.download(filename=name)
    assert raw.response.content == PNG
    assert raw.response.headers["content-type"] == "image/png"

    # Replacing the content keeps the URL.
    new = b"\x89PNG\r\n\x1a\nreplaced"
    updated = ls.files.update(first, file=("other.png", new))
    assert updated.size == len(new) and updated.file == got.file
    assert ls.files.with_raw_response.download(filename=name).response.content == new

    # Files that tasks were made of are kept; without the tasks they go.
    with pytest.raises(ApiError) as refused:
        ls.files.delete(first)
    assert refused.value.status_code == 409
    ls.tasks.delete_all_tasks(id=project.id)
    ls.files.delete(first)
    ls.files.delete_many(id=project.id)
    assert list(ls.files.list(id=project.id)) == []
    with pytest.raises(ApiError) as gone:
        ls.files.with_raw_response.download(filename=name)
    assert gone.value.status_code == 404


def test_import_tasks_with_preannotated_fields(ls):
    project = ls.projects.create(title=unique_title("Preannotated"), label_config=LABEL_CONFIG)
    resp = ls.projects.import_tasks(
        id=project.id,
        request=[{"text": "great", "sentiment": "Positive"}, {"text": "awful", "sentiment": "Negative"}],
        preannotated_from_fields=["sentiment"],
        return_task_ids=True,
    )
    assert resp.task_count == 2 and resp.prediction_count == 2
    task = ls.tasks.get(resp.task_ids[0])
    assert "sentiment" not in task.data
    predictions = list(ls.predictions.list(task=task.id))
    assert predictions[0].result[0]["value"] == {"choices": ["Positive"]}

    with pytest.raises(ApiError) as bad:
        ls.projects.import_tasks(
            id=project.id, request=[{"text": "x", "mood": "Positive"}], preannotated_from_fields=["mood"],
        )
    assert bad.value.status_code == 400
    assert ls.projects.get(project.id).task_number == 2
