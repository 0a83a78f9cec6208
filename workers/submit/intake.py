"""An API batch from its stored input file to the prompts topic, streamed: validate every line, register the
request ids, plan, publish, start. STUB."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from schemas.records import FileRecord
from workers.files.storage import FileStorage
from workers.settings import Settings
from workers.store.jobstore import Store


async def intake(
    producer: AIOKafkaProducer, store: Store, storage: FileStorage, s: Settings, job_id: str, input_file: FileRecord
) -> str:
    """Validate, register, publish and start the ``validating`` batch ``job_id``; returns its state after
    (``running``/``done``; ``failed`` with line errors; ``cancelled``/``stopping`` if cancelled meanwhile)."""
    raise NotImplementedError
