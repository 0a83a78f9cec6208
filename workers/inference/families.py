"""How each model family switches reasoning on and off in vLLM's OpenAI-compatible API.

- Qwen3: ``chat_template_kwargs.enable_thinking``; Qwen3 thinks by default, so the flag is always sent.
- DeepSeek V3.1: ``chat_template_kwargs.thinking``.
- gpt-oss: ``reasoning_effort`` low|medium|high (it always reasons; "off" is the lowest effort).
- none: the model has no switch; nothing is added.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workers.settings import Family


def family_for(model: str, patterns: Mapping[str, Family], default: Family) -> Family:
    """First pattern (a lower-case substring of the model name) that matches, else ``default``."""
    name = model.lower()
    for pattern, family in patterns.items():
        if pattern.lower() in name:
            return family
    return default


def reasoning_params(family: Family, use_reasoning: bool, effort: str | None) -> dict[str, Any]:
    """The request fields that set reasoning for ``family``."""
    if family == "qwen3":
        return {"chat_template_kwargs": {"enable_thinking": use_reasoning}}
    if family == "deepseek":
        return {"chat_template_kwargs": {"thinking": use_reasoning}}
    if family == "gpt-oss":
        return {"reasoning_effort": (effort or "medium") if use_reasoning else "low"}
    return {}


def build_request(
    body: Mapping[str, Any], model: str, family: Family, use_reasoning: bool, effort: str | None
) -> dict[str, Any]:
    """The JSON sent to ``/v1/chat/completions``: the user's body, the routed model, the reasoning switch."""
    payload = {k: v for k, v in body.items() if v is not None and k != "metadata"}
    payload["model"] = model
    payload["stream"] = False
    payload.update(reasoning_params(family, use_reasoning, effort))
    return payload
