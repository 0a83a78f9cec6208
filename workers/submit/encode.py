"""Prompt messages of a job, encoded and checked before anything of the job is recorded or published."""

from __future__ import annotations

import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from schemas.messages import PromptMessage, PromptPlan
from workers.errors import BadInput
from workers.store.integrity import request_id, sign
from workers.submit.batchfile import InputRequest

MAX_REQUEST_SIZE = 1024 * 1024  # aiokafka's default max_request_size, when the producer does not say
# room left in the limit for what the router wraps around a prompt (its RoutedMessage adds about 500 bytes:
# the decision, the envelope) and for an escalated message's first attempt (its answer text)
ROUTING_HEADROOM = 16 * 1024


def message_limit(producer: AIOKafkaProducer) -> int:
    """The largest record (bytes, as aiokafka estimates it) the producer accepts."""
    limit = getattr(producer, "_max_request_size", None)
    return limit if isinstance(limit, int) else MAX_REQUEST_SIZE


def encode_prompts(
    job_id: str,
    requests: Sequence[InputRequest],
    submitted_at: float,
    secret: bytes,
    max_bytes: int,
    plans: Sequence[PromptPlan | None] | None = None,
) -> list[tuple[bytes, bytes]]:
    """Every request as its signed prompt message, encoded: (key, value). Nothing is recorded or published.

    ``plans``: each request's plan (same order), signed with it; None: no prompt carries a plan.

    Raises BadInput naming the first line that cannot be published (a string pydantic cannot serialise, such
    as a lone surrogate ``"\\ud800"``; a record over ``max_bytes`` less ``ROUTING_HEADROOM``) and how many
    more there are.
    """
    budget = max_bytes - ROUTING_HEADROOM
    out: list[tuple[bytes, bytes]] = []
    bad: list[tuple[int, str]] = []
    if plans is not None and len(plans) != len(requests):
        raise ValueError(f"{len(plans)} plans for {len(requests)} requests")
    for n, req in enumerate(requests):
        plan = None if plans is None else plans[n]
        encoded = _encode_one(job_id, req, submitted_at, secret, budget, plan)
        if isinstance(encoded, str):
            bad.append((req.line, encoded))
        else:
            out.append(encoded)
    if bad:
        line, why = bad[0]
        more = f" (and {len(bad) - 1} more line(s) that cannot be published)" if len(bad) > 1 else ""
        raise BadInput(line, f"{why}{more}; nothing submitted")
    return out


def encode_problem(job_id: str, req: InputRequest, max_bytes: int) -> str | None:
    """Why ``req`` cannot be published as a prompt of ``job_id`` (``encode_prompts``'s refusal of it), or None.

    Checked before the job's secret and submit time exist: a stand-in MAC of the same length, and a plan's
    few hundred bytes are well inside ``ROUTING_HEADROOM``."""
    encoded = _encode_one(job_id, req, time.time(), _PROBE_SECRET, max_bytes - ROUTING_HEADROOM, None)
    return encoded if isinstance(encoded, str) else None


_PROBE_SECRET = bytes(32)


def _encode_one(
    job_id: str, req: InputRequest, submitted_at: float, secret: bytes, budget: int, plan: PromptPlan | None
) -> tuple[bytes, bytes] | str:
    """The request's signed prompt message as (key, value), or why it cannot be published."""
    rid = request_id(job_id, req.custom_id)
    try:
        msg = PromptMessage(
            request_id=rid,
            job_id=job_id,
            custom_id=req.custom_id,
            line=req.line,
            body=req.body,
            submitted_at=submitted_at,
            plan=plan,
        )
        key, value = rid.encode(), sign(msg, secret).model_dump_json().encode()
    except ValueError:  # pydantic's validation or serialisation error, or UnicodeEncodeError (the MAC's body)
        return "a string cannot be encoded as UTF-8 (a lone surrogate such as \\ud800?)"
    size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, [])
    if size > budget:
        return f"the prompt message is {size} bytes, over the limit of {budget} bytes"
    return key, value
