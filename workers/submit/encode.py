"""Prompt messages of a job, encoded and checked before anything of the job is recorded or published."""

from __future__ import annotations

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
        rid = request_id(job_id, req.custom_id)
        cid, line = req.custom_id, req.line
        try:
            msg = PromptMessage(
                request_id=rid,
                job_id=job_id,
                custom_id=cid,
                line=line,
                body=req.body,
                submitted_at=submitted_at,
                plan=plan,
            )
            key, value = rid.encode(), sign(msg, secret).model_dump_json().encode()
        except ValueError:  # pydantic's validation or serialisation error, or UnicodeEncodeError (the MAC's body)
            bad.append((req.line, "a string cannot be encoded as UTF-8 (a lone surrogate such as \\ud800?)"))
            continue
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, [])
        if size > budget:
            bad.append((req.line, f"the prompt message is {size} bytes, over the limit of {budget} bytes"))
            continue
        out.append((key, value))
    if bad:
        line, why = bad[0]
        more = f" (and {len(bad) - 1} more line(s) that cannot be published)" if len(bad) > 1 else ""
        raise BadInput(line, f"{why}{more}; nothing submitted")
    return out
