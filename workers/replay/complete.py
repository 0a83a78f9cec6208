"""One chat-completion request answered from the recorded outputs: validated, looked up, rendered."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from workers.replay.api import RequestError, completion_body, request_max_tokens, request_messages, request_mode
from workers.replay.logprobs import modelled_logprobs
from workers.replay.params import Options, check_params
from workers.replay.records import QWEN3_MODEL, Mode, ReplayAnswer, ReplayData

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Completed:
    model: str
    mode: Mode
    answer: ReplayAnswer
    body: dict[str, Any]
    options: Options


def new_completion_id() -> str:
    """Unique per response, like OpenAI's: ``chatcmpl-`` and 32 hex digits of a random UUID."""
    return "chatcmpl-" + uuid.uuid4().hex


def complete(data: ReplayData, body: Any) -> Completed:
    """Validate one request and build its response body: the content is the same for the same request, the
    ``id`` is new and ``created`` is now."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    options = check_params(body)
    model = body.get("model", QWEN3_MODEL)
    if not isinstance(model, str):
        raise RequestError(400, "model must be a string", param="model")
    canonical = data.resolve_model(model)
    if canonical is None:
        raise RequestError(404, f"The model `{model}` does not exist.", param="model", code="model_not_found")
    messages = request_messages(body)
    mode = request_mode(body, canonical == QWEN3_MODEL)
    max_tokens = request_max_tokens(body)
    answer, finish_reason = data.answer(canonical, messages, mode).capped(max_tokens)
    completion_id = new_completion_id()
    logger.debug("%s %s %s -> %s %s", completion_id, canonical, mode.tag, answer.source, finish_reason)
    payload = completion_body(completion_id, int(time.time()), model, answer, finish_reason)
    if options.logprobs:
        answered_by = answer.source.removeprefix("proxy:") if answer.source.startswith("proxy:") else canonical
        logprobs = modelled_logprobs(data.models, answer, answered_by, options.top_logprobs)
        payload["choices"][0]["logprobs"] = logprobs
    return Completed(canonical, mode, answer, payload, options)
