"""The router's edge: a consumed record becomes a validated prompt or a dead letter with the reason."""

from __future__ import annotations

import logging
from typing import TypeAlias

from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from schemas.messages import DeadLetter, PromptMessage
from workers.kafka.deadletter import dead_letter

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]


def parse(
    records: list[Record], max_prompt_chars: int, max_tokens: int | None
) -> tuple[list[tuple[Record, PromptMessage]], list[tuple[Record, DeadLetter]]]:
    """Split ``records`` into valid prompts and dead letters (every bad one logged by topic/partition/offset)."""
    good: list[tuple[Record, PromptMessage]] = []
    bad: list[tuple[Record, DeadLetter]] = []
    for record in records:
        try:
            if not record.value:
                raise ValueError("empty message")
            prompt = PromptMessage.model_validate_json(record.value)
            check_limits(prompt, max_prompt_chars, max_tokens)
            good.append((record, prompt))
        except (ValidationError, ValueError) as exc:
            reason = short_reason(exc)
            log.warning("dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
            bad.append((record, dead_letter("router", record, reason, exc)))
    return good, bad


def check_limits(prompt: PromptMessage, max_prompt_chars: int, max_tokens: int | None) -> None:
    """The same caps `thinkroute submit` applies, for producers that did not go through it."""
    size = sum(len(m.content) for m in prompt.body.messages)
    if size > max_prompt_chars:
        raise ValueError(f"prompt of {size} characters is over the limit of {max_prompt_chars}")
    asked = prompt.body.max_completion_tokens or prompt.body.max_tokens
    if max_tokens is not None and asked is not None and asked > max_tokens:
        raise ValueError(f"max_tokens {asked} is over the limit of {max_tokens}")


def short_reason(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        errs = exc.errors()[:3]
        return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in errs)
    return str(exc)[:500]
