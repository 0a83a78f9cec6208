"""The router's intake under any record values (hypothesis): every record comes back exactly once, as a
prompt or as a dead letter with a reason and its original bytes, never as an exception; and a request is
accepted on the topic exactly when the batch-file reader accepts it as a line (one set of limits)."""

from __future__ import annotations

import base64
import json
from typing import Any

from aiokafka.structs import ConsumerRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_batchfile_property import LIMIT, MAX_TOKENS, bodies, ids, json_values, mostly
from workers.errors import BadInput
from workers.router.intake import parse
from workers.submit.batchfile import parse_line

EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOPIC = "thinkroute.prompts"


def prompt_message(custom_id: Any, body: Any, **kw: Any) -> dict[str, Any]:
    return {
        "request_id": "j/1",
        "job_id": "j",
        "custom_id": custom_id,
        "line": 1,
        "submitted_at": 1.0,
        "body": body,
    } | kw


@st.composite
def values(draw: st.DrawFn) -> bytes:
    """A record's value: arbitrary bytes, or a prompt message mutated in its JSON or in its bytes."""
    kind = draw(st.sampled_from(["message", "json-mutated", "byte-mutated", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=80))
    msg = prompt_message(draw(ids), draw(bodies))
    if kind == "json-mutated":
        msg[draw(st.sampled_from([*msg, "v", "extra"]))] = draw(json_values)
    raw = json.dumps(msg).encode()
    if kind == "byte-mutated" and raw:
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + draw(st.binary(max_size=3)) + raw[i + draw(st.integers(0, 3)) :]
    return raw


@EXAMPLES
@given(batch=st.lists(values(), max_size=12), max_tokens=mostly(st.just(MAX_TOKENS), st.none()))
def test_every_record_is_a_prompt_or_a_dead_letter_with_a_reason(batch: list[bytes], max_tokens: int | None) -> None:
    records = [ConsumerRecord(TOPIC, 0, i, 0, 0, None, v, None, -1, len(v), []) for i, v in enumerate(batch)]
    good, bad = parse(records, LIMIT, max_tokens)
    assert sorted([id(r) for r, _ in good] + [id(r) for r, _ in bad]) == sorted(id(r) for r in records)
    for record, letter in bad:
        assert letter.reason and letter.stage == "router" and letter.error in {"ValidationError", "ValueError"}
        assert (letter.topic, letter.offset) == (TOPIC, record.offset)
        assert base64.b64decode(letter.value_b64) == record.value
    for _, prompt in good:
        assert 1 <= len(prompt.custom_id) <= 512 and prompt.body.chars() <= LIMIT
        if max_tokens is not None:
            assert all((getattr(prompt.body, f) or 0) <= max_tokens for f in ("max_tokens", "max_completion_tokens"))


@EXAMPLES
@given(custom_id=ids, body=bodies)
def test_the_topic_and_the_batch_file_accept_the_same_requests(custom_id: Any, body: Any) -> None:
    line = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}
    try:
        request = parse_line(json.dumps(line).encode(), 1, LIMIT, MAX_TOKENS)
    except BadInput as exc:
        refused: str | None = str(exc).removeprefix("line 1: ")
    else:
        refused = None
    value = json.dumps(prompt_message(custom_id, body)).encode()
    good, bad = parse([ConsumerRecord(TOPIC, 0, 0, 0, 0, None, value, None, -1, len(value), [])], LIMIT, MAX_TOKENS)
    if refused is None:
        assert bad == [] and good[0][1].body == request.body and good[0][1].custom_id == request.custom_id
    else:
        assert good == [] and bad[0][1].reason == refused  # the same reason, word for word
