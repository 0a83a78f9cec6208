import bz2
import gzip
import json
import lzma
from pathlib import Path
from typing import Any

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


# --- the OpenAI Batch format as users bring it ------------------------------------------------------------

TOOL = {
    "type": "function",
    "function": {"name": "add", "description": "a + b", "parameters": {"type": "object", "default": None}},
}
MESSAGES: list[dict[str, Any]] = [
    {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
    {"role": "system", "content": "You add numbers.", "name": "calc"},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is 2+2?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
            {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
            {"type": "file", "file": {"file_id": "file-1"}},
        ],
    },
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a":2}'}}],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "4"}]},
    {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}], "refusal": "no"},
    {"role": "user", "content": "And 3+3?"},
]
FULL_BODY: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": MESSAGES,
    "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"enum": [None, 1]}}},
    "tools": [TOOL],
    "tool_choice": {"type": "function", "function": {"name": "add"}},
    "parallel_tool_calls": False,
    "n": 2,
    "user": "u-1",
    "logit_bias": {"50256": -100},
    "logprobs": True,
    "top_logprobs": 3,
    "stop": ["\n\n"],
    "seed": 7,
    "temperature": 0.2,
    "top_p": 0.9,
    "presence_penalty": 0.5,
    "frequency_penalty": -0.5,
    "max_completion_tokens": 50,
    "metadata": {"team": "a"},
    "store": False,
    "service_tier": "auto",
    "modalities": ["text"],
    "prediction": {"type": "content", "content": "4"},
    "web_search_options": {"search_context_size": "low"},
    "verbosity": "low",
    "safety_identifier": "s",
    "prompt_cache_key": "k",
    "prompt_cache_retention": "24h",
    "stream": False,
}


def request(body: dict[str, object], cid: object = "a") -> bytes:
    return json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": body}).encode()


def test_every_chat_completions_field_is_accepted_and_forwarded_unchanged(tmp_path: Path) -> None:
    good, bad = read_batch(write(tmp_path, [request(FULL_BODY)]), 1000, 100)
    assert bad == []
    forwarded = good[0].body.model_dump(exclude_none=True)
    assert forwarded == FULL_BODY | {
        "messages": [{k: v for k, v in m.items() if v is not None} for m in MESSAGES]
    }  # JSON values inside (a schema's null default, the enum's null) are kept


def test_limits_count_text_parts_refusals_and_tool_arguments(tmp_path: Path) -> None:
    body = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "x" * 6}, {"type": "image_url", "image_url": {}}]},
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "yyy"}}],
            },
            {"role": "tool", "tool_call_id": "c", "content": "z"},
        ]
    }
    assert read_batch(write(tmp_path, [request(body)]), 10)[1] == []
    (err,) = read_batch(write(tmp_path, [request(body)]), 9)[1]
    assert str(err) == "line 1: body: prompt of 10 characters is over the limit of 9"
    image_only = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}]}
    assert read_batch(write(tmp_path, [request(image_only)]), 10)[1] == []  # media is a prompt, not an empty one


def test_refusals_name_the_field_and_the_reason(tmp_path: Path) -> None:
    user = [{"role": "user", "content": "hi"}]
    lines = [
        request({"messages": user, "stream": True}),
        request({"messages": user, "stream_options": {"include_usage": True}}),
        request({"messages": user, "reasoning_effort": "high"}),
        request({"messages": user, "chat_template_kwargs": {"enable_thinking": True}}),
        request({"messages": user, "max_token": 5}),
        request({"messages": user, "functions": [{"name": "f"}]}),
        request({"messages": [{"role": "tool", "content": "4"}]}),
        request({"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}]}),
        request({"messages": [{"role": "user", "content": None}]}),
        request({"messages": [{"role": "assistant", "content": None}]}),
        request({"messages": [{"role": "user", "content": [{"type": "video", "video": {}}]}]}),
        request({"messages": user}, cid=7),
        request({"messages": user}, cid="x" * 513),
        request({"messages": user, "max_completion_tokens": 101}),
        request({"messages": user, "stream": False, "reasoning_effort": None}),
    ]
    good, bad = read_batch(write(tmp_path, lines), 1000, 100)
    assert [r.line for r in good] == [15]
    assert "reasoning_effort" not in good[0].body.model_dump(exclude_none=True)
    msgs = {e.line: str(e).removeprefix(f"line {e.line}: ") for e in bad}
    assert msgs == {
        1: "body: stream: a batch line's answer comes whole, it cannot be streamed; remove stream",
        2: "body: stream_options goes with stream, which a batch line cannot use (its answer comes whole); remove it",
        3: "body: reasoning_effort is set by ThinkRoute from the routing decision (the reasoning switch); remove it",
        4: "body: chat_template_kwargs is set by ThinkRoute from the routing decision (the reasoning switch); "
        "remove it",
        5: "body.max_token: unknown field",
        6: "body: functions is deprecated by OpenAI and not served by the backend; use tools",
        7: "body.messages.0: a tool message needs tool_call_id",
        8: "body.messages.0: a system message cannot have image_url parts",
        9: "body.messages.0: a user message needs content",
        10: "body.messages.0: an assistant message needs content or tool_calls",
        11: "body.messages.0.content.0: a content part is an object of type text, image_url, input_audio, file "
        "or refusal",
        12: 'custom_id: must be a string, as OpenAI\'s Batch API requires: write "7", not 7',
        13: "custom_id: String should have at most 512 characters",
        14: "body: max_completion_tokens 101 is over the limit of 100",
    }


def test_a_utf8_bom_at_the_start_is_dropped(tmp_path: Path) -> None:
    p = tmp_path / "bom.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + batch_line("a") + b"\r\n" + b"\xef\xbb\xbf" + batch_line("b") + b"\r\n")
    good, bad = read_batch(p, 1000)
    assert [r.custom_id for r in good] == ["a"]
    # only the file's start may have one: elsewhere it is a line that is not JSON
    assert [str(e) for e in bad] == [
        "line 2: not valid JSON: Unexpected UTF-8 BOM (decode using utf-8-sig) at column 1"
    ]


def test_gzip_is_read_by_its_magic_bytes_with_the_plain_file_line_numbers(tmp_path: Path) -> None:
    lines = [batch_line("a"), b"", b"{oops", json.dumps({"id": "b", "prompt": "Hello"}).encode(), b"   "]
    plain = write(tmp_path, lines)
    expected = read_batch(plain, 1000)
    content = plain.read_bytes()
    for name, data in [
        ("in.jsonl.gz", gzip.compress(b"\xef\xbb\xbf" + content)),
        ("named-plain.jsonl", gzip.compress(content)),
        ("plain-named.jsonl.gz", content),
        ("two-members.jsonl.gz", gzip.compress(content[:40]) + gzip.compress(content[40:])),
    ]:
        packed = tmp_path / name
        packed.write_bytes(data)
        good, bad = read_batch(packed, 1000)
        assert [(r.line, r.custom_id, r.body) for r in good] == [(r.line, r.custom_id, r.body) for r in expected[0]]
        assert (
            [str(e) for e in bad]
            == [str(e) for e in expected[1]]
            == ["line 3: not valid JSON: Expecting property name enclosed in double quotes at column 2"]
        )
    assert [(r.line, r.custom_id) for r in expected[0]] == [(1, "a"), (4, "b")]


def test_a_cut_gzip_file_keeps_its_complete_lines_and_names_the_break(tmp_path: Path) -> None:
    data = gzip.compress(b"\n".join(batch_line(f"c{i}", "q" * 50 + str(i)) for i in range(2000)) + b"\n")
    p = tmp_path / "cut.jsonl.gz"
    p.write_bytes(data[: len(data) // 2])
    good, bad = read_batch(p, 1000)
    assert 0 < len(good) < 2000
    assert [r.line for r in good] == list(range(1, len(good) + 1))
    (err,) = bad
    assert err.line == len(good) + 1
    assert "gzip stream is corrupt or cut short" in str(err)


def test_other_compressions_and_utf16_are_named(tmp_path: Path) -> None:
    content = batch_line("a") + b"\n"
    for data, what in [
        (bz2.compress(content), "bzip2"),
        (lzma.compress(content), "xz"),
        (content.decode().encode("utf-16"), "UTF-16"),
    ]:
        p = tmp_path / "other.jsonl"
        p.write_bytes(data)
        good, bad = read_batch(p, 1000)
        assert good == [] and len(bad) == 1 and bad[0].line == 1
        assert "not a JSON lines file" in str(bad[0]) and what in str(bad[0])


def test_nan_infinity_and_deep_nesting_are_line_errors(tmp_path: Path) -> None:
    head = b'{"custom_id": "%s", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": [{"role": '
    head += b'"user", "content": "hi"}], '
    lines = [head % b"a" + b'"temperature": NaN}}', head % b"b" + b'"tools": [{"x": [-Infinity]}]}}']
    _, bad = read_batch(write(tmp_path, [*lines, b"[" * 100_000 + b"]" * 100_000]), 1000)
    assert [str(e) for e in bad] == [
        "line 1: body.temperature: Input should be a finite number",
        "line 2: body.tools.0: Input should be a finite number",  # it would reach the LLM as null
        "line 3: not valid JSON: nested too deep",
    ]
