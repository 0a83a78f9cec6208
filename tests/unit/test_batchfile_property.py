"""The batch-file reader under any bytes (hypothesis): every non-blank line comes back once, as a request
or as a line error with its number and a reason, and never as an exception; gzip is transparent (the same
answer as the plain file) and a cut gzip stream keeps the complete lines before the cut."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workers.errors import BadInput
from workers.submit.batchfile import GZIP_MAGIC, OTHER_FORMATS, UTF8_BOM, InputRequest, read_batch

LIMIT = 200
MAX_TOKENS = 100
EXAMPLES = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def mostly(valid: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``valid`` three times in four, else ``other``: enough valid requests to check what is accepted."""
    return st.sampled_from([valid, valid, valid, other]).flatmap(lambda strategy: strategy)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
texts = mostly(st.text(min_size=1, max_size=40), st.sampled_from(["", " ", "x" * (LIMIT + 1)]) | st.text())
parts = mostly(
    st.fixed_dictionaries({"type": st.just("text"), "text": texts})
    | st.just({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}),
    st.fixed_dictionaries({"type": st.sampled_from(["input_audio", "file", "refusal", "video"]), "file": json_values}),
)
messages = mostly(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user"]), "content": texts | st.lists(parts, max_size=3)}
    ),
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["developer", "user", "assistant", "tool", "wizard"]),
            "content": texts | st.lists(parts, max_size=3) | st.none() | json_values,
        },
        optional={"tool_call_id": st.text(max_size=4), "name": st.text(max_size=4), "refusal": st.text(max_size=4)},
    ),
)
valid_fields = st.fixed_dictionaries(
    {},
    optional={
        "model": st.text(max_size=5),
        "max_tokens": st.integers(1, 2 * MAX_TOKENS),
        "max_completion_tokens": st.integers(1, 2 * MAX_TOKENS),
        "temperature": st.floats(0, 2),
        "n": st.integers(1, 3),
        "tools": st.just([{"type": "function", "function": {"name": "f", "parameters": {"default": None}}}]),
        "tool_choice": st.sampled_from(["auto", "none", "required"]),
        "response_format": st.just({"type": "json_object"}),
        "logit_bias": st.dictionaries(st.sampled_from(["1", "2"]), st.integers(-100, 100)),
        "user": st.text(max_size=3),
        "stream": st.just(False),
    },
)
other_fields = st.dictionaries(
    st.sampled_from(
        ["model", "max_tokens", "n", "temperature", "stream", "tools", "tool_choice", "response_format",
         "logit_bias", "reasoning_effort", "stream_options", "metadata", "surprise"]
    ),
    json_values,
    max_size=3,
)  # fmt: skip
bodies = st.builds(
    lambda ms, extra: {"messages": ms, **extra},
    mostly(st.lists(messages, min_size=1, max_size=3), st.lists(messages, max_size=3)),
    mostly(valid_fields, other_fields),
)
ids = mostly(st.text(min_size=1, max_size=6), st.integers() | st.just("") | st.just("x" * 513))
request_lines = st.builds(
    lambda cid, body, extra: {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": body} | extra,
    ids,
    bodies,
    mostly(st.just({}), st.dictionaries(st.sampled_from(["method", "url", "extra"]), json_values, max_size=1)),
)
prompt_lines = st.fixed_dictionaries(
    {"id": ids, "prompt": texts}, optional={"max_tokens": mostly(st.integers(1, 2 * MAX_TOKENS), json_values)}
)


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def mutate(line: bytes, data: st.DataObject) -> bytes:
    if not line or data.draw(st.integers(0, 3)):
        return line  # three times in four
    i = data.draw(st.integers(0, len(line) - 1))
    return line[:i] + data.draw(st.binary(max_size=3)) + line[i + data.draw(st.integers(0, 3)) :]


@st.composite
def files(draw: st.DrawFn) -> bytes:
    """JSON lines as users write them (valid, broken, mutated), blank lines, arbitrary bytes, CRLF, a BOM."""
    data = draw(st.data())
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["request", "request", "prompt", "prompt", "bytes", "blank"]))
        if kind == "request":
            lines.append(mutate(encode(draw(request_lines)), data))
        elif kind == "prompt":
            lines.append(mutate(encode(draw(prompt_lines)), data))
        elif kind == "bytes":
            lines.append(draw(st.binary(max_size=30)))
        else:
            lines.append(draw(st.sampled_from([b"", b"  ", b"\t", b"\r"])))
    content = draw(st.sampled_from([b"\n", b"\r\n"])).join(lines) + draw(st.sampled_from([b"", b"\n"]))
    return (UTF8_BOM if draw(st.booleans()) else b"") + content


@pytest.fixture(scope="module")
def path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("property") / "in.jsonl"


def read(path: Path, content: bytes) -> tuple[list[InputRequest], list[BadInput]]:
    path.write_bytes(content)
    return read_batch(path, LIMIT, MAX_TOKENS)


def non_blank_lines(content: bytes) -> list[int]:
    """The line numbers the reader must answer for, computed independently of it."""
    lines = content.removeprefix(UTF8_BOM).split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [n for n, raw in enumerate(lines, start=1) if raw.strip()]


def check_answers(content: bytes, good: list[InputRequest], bad: list[BadInput]) -> None:
    numbers = sorted([r.line for r in good] + [e.line for e in bad])
    first = content.removeprefix(UTF8_BOM)
    if any(first.startswith(magic) for magic in OTHER_FORMATS):
        assert good == [] and [e.line for e in bad] == [1] and "not a JSON lines file" in str(bad[0])
        return
    assert numbers == non_blank_lines(content)  # each line exactly once
    for e in bad:
        reason = str(e).removeprefix(f"line {e.line}: ")
        assert reason and reason != str(e)
    for r in good:
        assert 1 <= len(r.custom_id) <= 512 and r.body.chars() <= LIMIT
        assert all((getattr(r.body, f) or 0) <= MAX_TOKENS for f in ("max_tokens", "max_completion_tokens"))
    assert len({r.custom_id for r in good}) == len(good)


@EXAMPLES
@given(content=files())
def test_any_file_gives_requests_or_line_errors(path: Path, content: bytes) -> None:
    if content.startswith(GZIP_MAGIC):
        return  # read as gzip: the next tests
    good, bad = read(path, content)
    check_answers(content, good, bad)
    assert (good, [str(e) for e in bad]) == _same(read(path, gzip.compress(content)))  # gzip is transparent


@EXAMPLES
@given(content=st.binary(max_size=200))
def test_any_bytes_give_requests_or_line_errors(path: Path, content: bytes) -> None:
    good, bad = read(path, content)
    if not content.startswith(GZIP_MAGIC):
        check_answers(content, good, bad)
    assert all(e.line >= 1 for e in bad)


@EXAMPLES
@given(content=files(), cut=st.floats(0, 1, exclude_max=True))
def test_a_cut_gzip_stream_keeps_the_lines_before_the_cut(path: Path, content: bytes, cut: float) -> None:
    if any(content.removeprefix(UTF8_BOM).startswith(magic) for magic in OTHER_FORMATS):
        return  # refused at its first line, before the cut
    packed = gzip.compress(content)
    shortened = packed[: max(len(GZIP_MAGIC), int(len(packed) * cut))]
    good, bad = read(path, shortened)
    full_good, _ = read(path, packed)
    assert {(r.line, r.custom_id) for r in good} <= {(r.line, r.custom_id) for r in full_good}
    assert any("gzip stream is corrupt or cut short" in str(e) for e in bad)
    if good:
        assert max(e.line for e in bad) > max(r.line for r in good)


def _same(answer: tuple[list[InputRequest], list[BadInput]]) -> tuple[list[InputRequest], list[str]]:
    return answer[0], [str(e) for e in answer[1]]
