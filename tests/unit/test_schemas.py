import json

import pytest
from pydantic import ValidationError

from schemas import PromptMessage, RoutedMessage
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
    ],
)
def test_prompt_rejects_bad_messages(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PromptMessage.model_validate(bad)


def test_routed_message_requires_a_decision() -> None:
    with pytest.raises(ValidationError):
        RoutedMessage.model_validate({"prompt": prompt(), "routed_at": 1.0})
