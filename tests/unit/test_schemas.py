import json

import pytest
from pydantic import ValidationError

from schemas import PromptMessage, RoutedMessage
from schemas.base import describe
from schemas.chat import Limits
from schemas.jsonschema import JSON_DIR, MODELS, render


@pytest.mark.parametrize("name", sorted(MODELS))
def test_generated_json_schema_matches_the_models(name: str) -> None:
    path = JSON_DIR / f"{name}.schema.json"
    assert path.is_file(), f"{path} missing: run `python -m schemas`"
    assert path.read_text() == render(MODELS[name]), f"{path} drifted: run `python -m schemas`"


def prompt(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "request_id": "j/1",
        "job_id": "j",
        "custom_id": "1",
        "line": 1,
        "submitted_at": 1.0,
        "body": {"messages": [{"role": "user", "content": "hi"}]},
    }
    return base | kw


def test_prompt_roundtrip_and_version() -> None:
    msg = PromptMessage.model_validate(prompt())
    assert msg.v == 1
    again = PromptMessage.model_validate_json(msg.model_dump_json())
    assert again == msg
    assert json.loads(msg.model_dump_json())["v"] == 1


@pytest.mark.parametrize(
    "bad",
    [
        prompt(v=2),
        prompt(extra_field=1),
        prompt(line=0),
        prompt(body={"messages": []}),
        prompt(body={"messages": [{"role": "user", "content": "x"}], "chat_template_kwargs": {}}),
        prompt(body={"messages": [{"role": "wizard", "content": "x"}]}),
        prompt(body={"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "low"}),
        prompt(body={"messages": [{"role": "user", "content": "x"}], "stream": True}),
        prompt(body={"messages": [{"role": "user", "content": " "}]}),
        prompt(body={"messages": [{"role": "tool", "content": "x"}]}),
        prompt(custom_id="x" * 513),
        prompt(custom_id=1),
        prompt(job_id="j" * 129),
        prompt(request_id="r" * 642),
    ],
)
def test_prompt_rejects_bad_messages(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PromptMessage.model_validate(bad)


def test_routed_message_requires_a_decision() -> None:
    with pytest.raises(ValidationError):
        RoutedMessage.model_validate({"prompt": prompt(), "routed_at": 1.0})


def test_ids_up_to_their_limits_are_accepted() -> None:
    msg = PromptMessage.model_validate(prompt(custom_id="x" * 512, job_id="j" * 128, request_id="r" * 641))
    assert (len(msg.custom_id), len(msg.job_id), len(msg.request_id)) == (512, 128, 641)


def test_limits_apply_only_when_given_and_the_same_to_both_token_fields() -> None:
    body = {"messages": [{"role": "user", "content": "x" * 30}], "max_tokens": 5, "max_completion_tokens": 9}
    assert PromptMessage.model_validate(prompt(body=body)).body.chars() == 30
    for limits, message in [
        (Limits(29, None), "prompt of 30 characters is over the limit of 29"),
        (Limits(30, 8), "max_completion_tokens 9 is over the limit of 8"),
        (Limits(30, 4), "max_tokens 5 is over the limit of 4"),
    ]:
        with pytest.raises(ValidationError) as exc:
            PromptMessage.model_validate(prompt(body=body), context=limits.context())
        assert describe(exc.value) == f"body: {message}"
    assert PromptMessage.model_validate(prompt(body=body), context=Limits(30, 9).context()).body.max_tokens == 5


def test_a_conversation_with_parts_and_tools_round_trips() -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "u"}}],
            },
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "custom", "custom": {"name": "f", "input": "x"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "out"},
        ],
        "tools": [{"type": "custom", "custom": {"name": "f"}}],
    }
    msg = PromptMessage.model_validate(prompt(body=body))
    assert PromptMessage.model_validate_json(msg.model_dump_json()) == msg
    assert msg.body.model_dump(exclude_none=True) == body
    assert [m.text() for m in msg.body.messages] == ["a", "", "out"]
    assert msg.body.chars() == len("a") + len("x") + len("out")
