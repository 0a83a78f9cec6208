"""The router's intake holds a message on the topic to the batch-file reader's limits, and what the
classifier reads of a request."""

from __future__ import annotations

import base64
import json
from typing import Any

from aiokafka.structs import ConsumerRecord

from schemas.batch import ChatBody
from workers.router.intake import parse
from workers.router.text import prompt_text

TOPIC = "thinkroute.prompts"


def record(value: bytes, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(TOPIC, 0, offset, 0, 0, b"k", value, None, 1, len(value), [])


def message(**kw: Any) -> bytes:
    base: dict[str, Any] = {
        "request_id": "j/1",
        "job_id": "j",
        "custom_id": "1",
        "line": 1,
        "submitted_at": 1.0,
        "body": {"messages": [{"role": "user", "content": "What is 2+2?"}]},
    }
    return json.dumps(base | kw).encode()


def test_a_long_custom_id_on_the_topic_is_dead_lettered_with_the_reason() -> None:
    values = [message(custom_id="x" * 600), message(custom_id="y" * 600_000), message(custom_id="z" * 512)]
    good, bad = parse([record(v, i) for i, v in enumerate(values)], 200_000, None)
    assert [p.custom_id for _, p in good] == ["z" * 512]
    assert [(r.offset, d.reason) for r, d in bad] == [
        (0, "custom_id: String should have at most 512 characters"),
        (1, "custom_id: String should have at most 512 characters"),
    ]
    assert [base64.b64decode(d.value_b64) for _, d in bad] == values[:2]
    assert all(d.stage == "router" and d.error == "ValidationError" for _, d in bad)


def test_the_readers_limits_and_refusals_hold_on_the_topic() -> None:
    parts = [{"type": "text", "text": "x" * 60}, {"type": "text", "text": "y" * 41}]
    values = [
        message(body={"messages": [{"role": "user", "content": parts}]}),
        message(body={"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 51}),
        message(body={"messages": [{"role": "user", "content": "  "}]}),
        message(body={"messages": [{"role": "user", "content": "hi"}], "chat_template_kwargs": {"thinking": True}}),
        message(custom_id=5),
        message(job_id="j" * 129),
        b"",
        b"\xff\xfe",
    ]
    good, bad = parse([record(v, i) for i, v in enumerate(values)], 100, 50)
    assert good == []
    reasons = [d.reason for _, d in bad]
    assert reasons[:6] == [
        "body: prompt of 101 characters is over the limit of 100",
        "body: max_completion_tokens 51 is over the limit of 50",
        "body: empty prompt",
        "body: chat_template_kwargs is set by ThinkRoute from the routing decision (the reasoning switch); remove it",
        'custom_id: must be a string, as OpenAI\'s Batch API requires: write "5", not 5',
        "job_id: String should have at most 128 characters",
    ]
    assert reasons[6] == "empty message" and reasons[7].startswith("Invalid JSON")


def test_a_user_conversation_with_tools_and_parts_is_accepted() -> None:
    body = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo?"}]},
            {"role": "assistant", "content": None, "tool_calls": [_call("get_weather", '{"city": "Oslo"}')]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather"}}],
        "tool_choice": "auto",
    }
    good, bad = parse([record(message(body=body))], 200_000, None)
    assert bad == []
    assert good[0][1].body.model_dump(exclude_none=True) == body | {
        "messages": [{k: v for k, v in m.items() if v is not None} for m in body["messages"]]
    }


def _call(name: str, arguments: str) -> dict[str, Any]:
    return {"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}


def body(*messages: dict[str, Any]) -> ChatBody:
    return ChatBody.model_validate({"messages": list(messages)})


def test_the_classifier_reads_the_last_user_text() -> None:
    system = {"role": "system", "content": "Be brief."}
    first = {"role": "user", "content": "first question"}
    parts = {
        "role": "user",
        "content": [
            {"type": "text", "text": "Describe"},
            {"type": "image_url", "image_url": {"url": "u"}},
            {"type": "text", "text": "this chart."},
        ],
    }
    image_only = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}
    call = {"role": "assistant", "content": None, "tool_calls": [_call("f", "{}")]}
    tool = {"role": "tool", "tool_call_id": "call_1", "content": "tool output"}
    assert prompt_text(body(system, first)) == "first question"
    assert prompt_text(body(system, first, parts)) == "Describe\nthis chart."
    assert prompt_text(body(first, call, tool)) == "first question"  # a tool's output is not the question
    assert prompt_text(body(first, image_only)) == "first question"  # the last user turn with text
    assert prompt_text(body(system, {"role": "assistant", "content": "Hi."}, tool | {"content": "x"})) == (
        "Be brief.\nHi.\nx"  # no user text: the whole conversation
    )
    assert prompt_text(body(image_only)) == ""
