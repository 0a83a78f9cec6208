"""``/v1/files`` on fakes: upload counted and stored, the limits (413 past max_file_bytes, enforced while
receiving; 400 past max_file_lines), listing and its pages, download streamed with its length, delete, and
another owner's file answered exactly as a missing one."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.unit.api_fakes import Api, auth, file_record, make_api
from workers.api.files import Counted, clean_filename
from workers.api.problems import ApiError

LINES = b'{"custom_id": "a"}\n{"custom_id": "b"}\n{"custom_id": "c"}'


@pytest.fixture
def api() -> Iterator[Api]:
    yield from make_api(max_file_bytes=1000, max_file_lines=5)


def upload(api: Api, data: bytes, owner: str = "alice", purpose: str = "batch", name: str = "in.jsonl") -> Any:
    return api.client.post(
        "/v1/files", headers=auth(owner), data={"purpose": purpose}, files={"file": (name, data, "application/jsonl")}
    )


def test_upload_stores_the_bytes_and_counts_them(api: Api) -> None:
    r = upload(api, LINES, name="dir/../my batch.jsonl")
    assert r.status_code == 200, r.text
    body = r.json()
    assert re.fullmatch(r"file-[0-9a-f]{24}", body["id"])
    assert body | {"id": None, "created_at": None} == {
        "id": None,
        "object": "file",
        "bytes": len(LINES),
        "created_at": None,
        "filename": "my batch.jsonl",
        "purpose": "batch",
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }
    record = api.index.records[body["id"]]
    assert (record.owner, record.lines, record.bytes, record.kind) == ("alice", 3, len(LINES), "input")
    assert api.storage.objects[record.storage_key] == LINES


def test_download_streams_the_bytes_with_their_length(api: Api) -> None:
    file_id = upload(api, LINES).json()["id"]
    r = api.client.get(f"/v1/files/{file_id}/content", headers=auth())
    assert r.status_code == 200
    assert r.content == LINES and r.headers["content-length"] == str(len(LINES))


def test_retrieve_list_and_delete(api: Api) -> None:
    ids = [upload(api, LINES).json()["id"] for _ in range(3)]
    got = api.client.get(f"/v1/files/{ids[1]}", headers=auth()).json()
    assert got["id"] == ids[1] and got["bytes"] == len(LINES)
    listed = api.client.get("/v1/files", headers=auth()).json()
    assert listed["object"] == "list" and len(listed["data"]) == 3 and listed["has_more"] is False
    r = api.client.delete(f"/v1/files/{ids[1]}", headers=auth())
    assert r.status_code == 200 and r.json() == {"id": ids[1], "object": "file", "deleted": True}
    assert ids[1] not in api.index.records and ids[1] not in api.storage.objects
    assert api.client.get(f"/v1/files/{ids[1]}", headers=auth()).status_code == 404
    assert {f["id"] for f in api.client.get("/v1/files", headers=auth()).json()["data"]} == {ids[0], ids[2]}


def test_pages_of_the_file_list(api: Api) -> None:
    for i in range(5):
        fid = f"file-{i:024x}"
        api.index.records[fid] = file_record(file_id=fid, created_at=1000.0 + i)
    api.index.records["file-b"] = file_record(owner="bob", file_id="file-b")
    page = api.client.get("/v1/files", headers=auth(), params={"limit": 2}).json()
    assert [f["id"] for f in page["data"]] == [f"file-{4:024x}", f"file-{3:024x}"]
    assert (page["first_id"], page["last_id"], page["has_more"]) == (f"file-{4:024x}", f"file-{3:024x}", True)
    page = api.client.get("/v1/files", headers=auth(), params={"limit": 2, "after": page["last_id"]}).json()
    assert [f["id"] for f in page["data"]] == [f"file-{2:024x}", f"file-{1:024x}"] and page["has_more"] is True
    page = api.client.get("/v1/files", headers=auth(), params={"limit": 2, "after": page["last_id"]}).json()
    assert [f["id"] for f in page["data"]] == [f"file-{0:024x}"] and page["has_more"] is False
    asc = api.client.get("/v1/files", headers=auth(), params={"order": "asc", "limit": 1}).json()
    assert [f["id"] for f in asc["data"]] == [f"file-{0:024x}"] and asc["has_more"] is True
    empty = api.client.get("/v1/files", headers=auth(), params={"purpose": "batch_output"}).json()
    assert (empty["data"], empty["first_id"], empty["last_id"], empty["has_more"]) == ([], None, None, False)


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 10001}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"order": "up"}, "order"),
        ({"after": "a" * 257}, "after"),
    ],
)
def test_bad_list_parameters_are_400_naming_them(api: Api, params: dict[str, Any], param: str) -> None:
    r = api.client.get("/v1/files", headers=auth(), params=params)
    assert r.status_code == 400 and r.json()["error"]["param"] == param


def test_another_owners_file_is_404_exactly_as_a_missing_one(api: Api) -> None:
    file_id = upload(api, LINES, owner="bob").json()["id"]
    missing = "file-" + "f" * 24
    for method, path in [("GET", "/v1/files/{}"), ("GET", "/v1/files/{}/content"), ("DELETE", "/v1/files/{}")]:
        theirs = api.client.request(method, path.format(file_id), headers=auth("alice"))
        none = api.client.request(method, path.format(missing), headers=auth("alice"))
        assert theirs.status_code == none.status_code == 404
        assert theirs.json() == {
            "error": {
                "message": f"No such File object: {file_id}",
                "type": "invalid_request_error",
                "param": "id",
                "code": None,
            }
        }
        assert none.json()["error"] | {"message": None} == theirs.json()["error"] | {"message": None}
    assert file_id in api.index.records and file_id in api.storage.objects  # bob's file untouched
    assert api.client.get("/v1/files", headers=auth("alice")).json()["data"] == []


def test_a_file_past_max_file_bytes_is_413_and_nothing_is_stored(api: Api) -> None:
    r = upload(api, b"x" * 1001)  # within the multipart slack: refused while streamed into the storage
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert r.json()["error"]["message"] == "The file is larger than the limit of 1000 bytes."
    assert api.storage.objects == {} and api.index.records == {}
    assert upload(api, b"x" * 1000).status_code == 200


def test_a_body_past_the_upload_limit_is_413_while_received_without_content_length(api: Api) -> None:
    boundary = "b0undary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n\r\n'.encode()

    def chunks() -> Iterator[bytes]:  # a generator: sent chunked, no Content-Length to trust
        yield head
        for _ in range(200):
            yield b"y" * 1024

    r = api.client.post(
        "/v1/files",
        headers=auth() | {"Content-Type": f"multipart/form-data; boundary={boundary}"},
        content=chunks(),
    )
    assert r.status_code == 413 and r.json()["error"]["message"].startswith("The upload is larger")
    assert api.storage.objects == {} and api.index.records == {}


def test_a_declared_length_past_the_limit_is_413_before_reading(api: Api) -> None:
    r = api.client.post(
        "/v1/files", headers=auth() | {"Content-Type": "multipart/form-data; boundary=x"}, content=b"z" * 70_000
    )
    assert r.status_code == 413


def test_a_file_past_max_file_lines_is_400(api: Api) -> None:
    r = upload(api, b"{}\n" * 6)
    assert r.status_code == 400 and r.json()["error"]["param"] == "file"
    assert api.storage.objects == {} and api.index.records == {}
    assert upload(api, b"{}\n" * 5).status_code == 200
    assert upload(api, b"{}\n" * 5 + b"{}").status_code == 400  # a last line without its newline counts


@pytest.mark.parametrize(
    ("purpose", "data", "param"),
    [("fine-tune", LINES, "purpose"), ("batch", b"", "file"), (None, LINES, "purpose")],
)
def test_a_bad_upload_is_400_naming_the_field(api: Api, purpose: str | None, data: bytes, param: str) -> None:
    fields = {} if purpose is None else {"purpose": purpose}
    r = api.client.post("/v1/files", headers=auth(), data=fields, files={"file": ("a.jsonl", data)})
    assert r.status_code == 400 and r.json()["error"]["param"] == param
    assert api.index.records == {}


def test_an_upload_without_its_file_is_400(api: Api) -> None:
    r = api.client.post("/v1/files", headers=auth(), data={"purpose": "batch"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "file"


def test_a_file_whose_bytes_are_gone_is_404(api: Api) -> None:
    api.index.records["file-gone"] = file_record(file_id="file-gone")
    assert api.client.get("/v1/files/file-gone/content", headers=auth()).status_code == 404


def test_counted_lines_across_chunks() -> None:
    c = Counted(100, 100)
    for chunk in (b"ab", b"c\nd", b"\n\n", b"e"):
        c.add(chunk)
    assert (c.bytes, c.lines) == (8, 4)
    with pytest.raises(ApiError) as exc:
        Counted(3, 10).add(b"abcd")
    assert exc.value.status == 413


def test_clean_filename() -> None:
    assert clean_filename("a/b\\c.jsonl") == "c.jsonl"
    assert clean_filename(None) == clean_filename("  ") == "file.jsonl"
    assert len(clean_filename("x" * 1000)) == 255
