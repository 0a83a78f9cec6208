"""An API batch from its stored input file to the prompts topic, streamed: validate every line, register the
request ids, plan, publish, start. STUB."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer

from schemas.chat import ChatBody
from schemas.messages import PromptPlan
from schemas.records import FileRecord, JobPlan
from workers.files.storage import FileStorage
from workers.settings import Settings
from workers.store.jobstore import Store


class Planner(Protocol):
    """The job's planning pass (built by the API from the batch's metadata: budget, exploration), run in a thread:
    the custom ids in input order and an iterable over the bodies in the same order (it may be iterated once)."""

    def __call__(
        self, custom_ids: Sequence[str], bodies: Iterable[ChatBody]
    ) -> tuple[JobPlan | None, list[PromptPlan | None]]: ...


async def intake(
    producer: AIOKafkaProducer,
    store: Store,
    storage: FileStorage,
    s: Settings,
    job_id: str,
    input_file: FileRecord,
    planner: Planner | None = None,
) -> str:
    """Validate, register, publish and start the ``validating`` batch ``job_id``; returns its state after
    (``running``/``done``; ``failed`` with line errors; ``cancelled``/``stopping`` if cancelled meanwhile)."""
    raise NotImplementedError
