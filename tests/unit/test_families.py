import json

from schemas.batch import ChatBody
from tests.unit.test_batchfile import FULL_BODY, MESSAGES
from workers.inference.families import build_request, family_for

PATTERNS = {"qwen3": "qwen3", "deepseek": "deepseek", "gpt-oss": "gpt-oss"}


def test_family_by_model_name() -> None:
    assert family_for("Qwen/Qwen3-30B-A3B", PATTERNS, "none") == "qwen3"
    assert family_for("deepseek-ai/DeepSeek-V3.1", PATTERNS, "none") == "deepseek"
    assert family_for("openai/gpt-oss-20b", PATTERNS, "none") == "gpt-oss"
    assert family_for("meta-llama/Llama-3.1-8B", PATTERNS, "none") == "none"


def test_qwen3_sends_the_flag_both_ways() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10, "metadata": {"a": "b"}}
    on = build_request(body, "Qwen/Qwen3-8B", "qwen3", True, None)
    off = build_request(body, "Qwen/Qwen3-8B", "qwen3", False, None)
    assert on["chat_template_kwargs"] == {"enable_thinking": True}
    assert off["chat_template_kwargs"] == {"enable_thinking": False}
    assert on["model"] == "Qwen/Qwen3-8B" and on["max_tokens"] == 10 and on["stream"] is False
    assert "metadata" not in on
    assert body == {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10, "metadata": {"a": "b"}}


def test_deepseek_gpt_oss_and_none() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert build_request(body, "ds", "deepseek", True, None)["chat_template_kwargs"] == {"thinking": True}
    assert build_request(body, "ds", "deepseek", False, None)["chat_template_kwargs"] == {"thinking": False}
    assert build_request(body, "g", "gpt-oss", True, "high")["reasoning_effort"] == "high"
    assert build_request(body, "g", "gpt-oss", True, None)["reasoning_effort"] == "medium"
    assert build_request(body, "g", "gpt-oss", False, "high")["reasoning_effort"] == "low"
    plain = build_request(body, "m", "none", True, None)
    assert "chat_template_kwargs" not in plain and "reasoning_effort" not in plain


def test_a_users_body_reaches_the_llm_unchanged_but_for_model_stream_reasoning_and_metadata() -> None:
    body = ChatBody.model_validate(FULL_BODY)
    sent = build_request(body.model_dump(exclude_none=True), "Qwen/Qwen3-8B", "qwen3", False, None)
    user_fields = {k: v for k, v in sent.items() if k not in {"model", "stream", "chat_template_kwargs"}}
    expected = {k: v for k, v in FULL_BODY.items() if k not in {"model", "stream", "metadata"}}
    expected["messages"] = [{k: v for k, v in m.items() if v is not None} for m in MESSAGES]  # null == absent
    assert user_fields == expected
    assert json.loads(json.dumps(sent))["tools"] == FULL_BODY["tools"]  # a null inside a tool schema stays
    assert (sent["model"], sent["stream"], sent["chat_template_kwargs"]) == (
        "Qwen/Qwen3-8B",
        False,
        {"enable_thinking": False},
    )
