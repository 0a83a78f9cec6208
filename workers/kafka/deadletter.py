"""Build dead-letter records: the reason, the error class and the original bytes."""

from __future__ import annotations

import base64
import time

from aiokafka.structs import ConsumerRecord

from schemas.messages import DeadLetter


def dead_letter(
    stage: str,
    record: ConsumerRecord[bytes, bytes],
    reason: str,
    error: BaseException | str,
    *,
    request_id: str | None = None,
    job_id: str | None = None,
) -> DeadLetter:
    key = record.key.decode("utf-8", "replace") if record.key is not None else None
    return DeadLetter(
        stage=stage,  # type: ignore[arg-type]
        reason=reason[:2000],
        error=error if isinstance(error, str) else type(error).__name__,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=key,
        value_b64=base64.b64encode(record.value or b"").decode("ascii"),
        request_id=request_id,
        job_id=job_id,
        at=time.time(),
    )
