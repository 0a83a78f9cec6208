import json
from pathlib import Path

from workers.submit.batchfile import read_batch


def write(tmp_path: Path, lines: list[bytes]) -> Path:
    p = tmp_path / "in.jsonl"
    p.write_bytes(b"\n".join(lines) + b"\n")
    return p


def batch_line(cid: str, content: str = "What is 2+2?") -> bytes:
    return json.dumps(
        {
            "custom_id": cid,
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "m", "messages": [{"role": "user", "content": content}], "max_tokens": 5},
        }
    ).encode()


def test_both_input_forms_are_accepted(tmp_path: Path) -> None:
    p = write(tmp_path, [batch_line("a"), b"", json.dumps({"id": "b", "prompt": "Hello"}).encode()])
    good, bad = read_batch(p, 1000)
    assert bad == []
    assert [(r.line, r.custom_id) for r in good] == [(1, "a"), (3, "b")]
    assert good[0].body.max_tokens == 5 and good[0].body.model == "m"
    assert good[1].body.messages[0].content == "Hello" and good[1].body.messages[0].role == "user"


def test_bad_lines_are_reported_with_numbers_and_reasons(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        [
            batch_line("a"),
            b"{not json",
            b"\xff\xfe bad utf8",
            b"[1, 2]",
            json.dumps({"custom_id": "c", "method": "GET", "url": "/v1/chat/completions", "body": {}}).encode(),
            batch_line("a"),
            json.dumps({"id": "big", "prompt": "x" * 2000}).encode(),
            json.dumps({"foo": 1}).encode(),
            json.dumps({"id": "e", "prompt": "   "}).encode(),
        ],
    )
    good, bad = read_batch(p, 1000)
    assert [r.custom_id for r in good] == ["a"]
    msgs = {e.line: str(e) for e in bad}
    assert sorted(msgs) == [2, 3, 4, 5, 6, 7, 8, 9]
    assert "not valid JSON" in msgs[2]
    assert "UTF-8" in msgs[3]
    assert "JSON object" in msgs[4]
    assert "method" in msgs[5]
    assert "duplicate id 'a' (first on line 1)" in msgs[6]
    assert "over the limit of 1000" in msgs[7]
    assert "neither" in msgs[8]
    assert "empty prompt" in msgs[9]
