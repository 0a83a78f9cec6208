"""Which chat-completion parameters the replay server honours, accepts without effect, or refuses.

The server answers from recorded outputs (`workers.replay.records`), one per (model, question, mode), so:

* honoured: ``model``, ``messages``, ``max_tokens`` / ``max_completion_tokens`` (cuts the recorded reply,
  finish reason ``length``), ``chat_template_kwargs`` (``enable_thinking`` / ``thinking``),
  ``reasoning_effort``, ``logprobs`` and ``top_logprobs`` (MODELLED, `workers.replay.logprobs`),
  ``stream`` with ``stream_options.include_usage``, ``n: 1``, ``response_format: {"type": "text"}``;
* accepted, no effect: the sampling controls ``temperature``, ``top_p``, ``seed``, ``presence_penalty``,
  ``frequency_penalty`` (and vLLM's ``top_k``, ``min_p``, ``repetition_penalty``) and ``user``: a recorded
  output is one sample of the model, a valid draw under any sampling setting, so these change which sample
  a real server would return but not what kind of reply it is. Their types and ranges are still checked;
* refused with a 400 whose ``param`` names the parameter: ``n > 1`` (there is one recorded output per
  prompt and mode; the same one n times would pass for n independent samples), ``response_format``
  ``json_object`` / ``json_schema`` (recorded outputs are free text), ``top_logprobs`` without
  ``logprobs: true`` (as OpenAI does), ``stream_options`` without ``stream: true``, ``stop`` (the recorded
  text was not generated with it) and every other parameter, known to OpenAI (``tools``, ``logit_bias``,
  ...) or not. A parameter sent as ``null`` counts as absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workers.replay.api import RequestError

HONOURED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "chat_template_kwargs",
        "reasoning_effort",
        "logprobs",
        "top_logprobs",
        "stream",
        "stream_options",
        "n",
        "response_format",
    }
)
# no effect on a recorded reply; (low, high) bounds of the number, None: any
SAMPLING: dict[str, tuple[float | None, float | None]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
    "repetition_penalty": (0.0, None),
    "min_p": (0.0, 1.0),
}
INTEGER_SAMPLING = frozenset({"seed", "top_k"})
MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True, slots=True)
class Options:
    """What a valid request asks for beyond the reply itself."""

    stream: bool = False
    include_usage: bool = False
    logprobs: bool = False
    top_logprobs: int = 0


def _refuse(param: str, message: str) -> RequestError:
    return RequestError(400, message, param=param)


def _check_sampling(name: str, value: Any) -> None:
    if name == "user":
        if not isinstance(value, str):
            raise _refuse(name, "user must be a string")
        return
    if name in INTEGER_SAMPLING:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _refuse(name, f"{name} must be an integer")
        return
    low, high = SAMPLING[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _refuse(name, f"{name} must be a number")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise _refuse(name, f"{name} must be {bounds}")


def _flag(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise _refuse(name, f"{name} must be a boolean")
    return bool(value)


def check_params(body: Mapping[str, Any]) -> Options:
    """Refuse what the server cannot honour (module doc); what it honours beyond the reply itself."""
    for name, value in body.items():
        if value is None or name in HONOURED:
            continue
        if name in SAMPLING or name in INTEGER_SAMPLING or name == "user":
            _check_sampling(name, value)
            continue
        raise _refuse(name, f"{name} is not supported by the replay server, which answers from recorded outputs")
    n = body.get("n")
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise _refuse("n", "n must be a positive integer")
        if n > 1:
            raise _refuse("n", "n > 1 is not supported: the replay server has one recorded output per prompt")
    fmt = body.get("response_format")
    if fmt is not None:
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind != "text":
            what = f"{kind} is" if isinstance(kind, str) else "only type text is"
            raise _refuse("response_format", f"response_format {what} not supported: recorded outputs are free text")
    stream, logprobs = _flag(body, "stream"), _flag(body, "logprobs")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise _refuse("stream_options", "stream_options is only allowed when stream is true")
        if not isinstance(options, dict):
            raise _refuse("stream_options", "stream_options must be an object")
        for key in options:
            if key != "include_usage":
                raise _refuse(f"stream_options.{key}", f"stream_options.{key} is not supported")
        usage = options.get("include_usage")
        if usage is not None and not isinstance(usage, bool):
            raise _refuse("stream_options.include_usage", "stream_options.include_usage must be a boolean")
        include_usage = bool(usage)
    top = body.get("top_logprobs")
    if top is None:
        top = 0
    elif isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= MAX_TOP_LOGPROBS:
        raise _refuse("top_logprobs", f"top_logprobs must be an integer from 0 to {MAX_TOP_LOGPROBS}")
    if top > 0 and not logprobs:
        raise _refuse("top_logprobs", "top_logprobs requires logprobs: true")
    return Options(stream, include_usage, logprobs, top)
