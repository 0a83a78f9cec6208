"""The router's edge: a consumed record becomes a validated prompt or a dead letter with the reason.

A prompt is held to the same limits as a line of `thinkroute submit`'s batch file (``schemas.chat.Limits``,
the ``custom_id`` cap of ``schemas.base``): producers that write to the topic directly get no more room
than the CLI's users.
"""

from __future__ import annotations

import logging
from typing import TypeAlias

from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from schemas.base import describe
from schemas.chat import Limits
from schemas.messages import DeadLetter, PromptMessage
from workers.kafka.deadletter import dead_letter

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]


def parse(
    records: list[Record], max_prompt_chars: int, max_tokens: int | None
) -> tuple[list[tuple[Record, PromptMessage]], list[tuple[Record, DeadLetter]]]:
    """Split ``records`` into valid prompts and dead letters (every bad one logged by topic/partition/offset)."""
    context = Limits(max_prompt_chars, max_tokens).context()
    good: list[tuple[Record, PromptMessage]] = []
    bad: list[tuple[Record, DeadLetter]] = []
    for record in records:
        try:
            if not record.value:
                raise ValueError("empty message")
            good.append((record, PromptMessage.model_validate_json(record.value, context=context)))
        except (ValidationError, ValueError) as exc:
            reason = short_reason(exc)
            log.warning("dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
            bad.append((record, dead_letter("router", record, reason, exc)))
    return good, bad


def short_reason(exc: BaseException) -> str:
    return describe(exc) if isinstance(exc, ValidationError) else str(exc)[:500]
