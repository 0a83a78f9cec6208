"""``thinkroute submit|run``'s input file, streamed: one pass validates every line (and counts), the next ones
read the good requests back a chunk at a time (planning, publishing), so the file is never held whole.

What stays in memory per line is the custom id of a good line and its line number (``Checked.ids``: duplicates,
the registration, the output's order under ``--skip-done``) and at most ``SHOWN`` errors; the requests, their
bodies and encoded messages exist one chunk at a time. The job's request ids go to Redis in chunks
(``Store.register_job`` takes an iterator), its prompts to the broker as ``encoded`` yields them, with at most
``workers.submit.jobs.MAX_PENDING`` unacknowledged. A bad line refuses the whole job before anything is
recorded, as before: the check pass ends before the job exists. The API's intake (``workers.submit.intake``)
streams the same way; its lines are OpenAI request lines only and its errors OpenAI's ``LineError``, this
pass keeps the CLI's two line formats and its messages (``workers.submit.batchfile.parse_line``).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Final

from aiokafka import AIOKafkaProducer

from schemas.batch import ChatBody
from schemas.messages import PromptPlan
from schemas.records import JobMeta, JobPlan
from workers.errors import BadInput
from workers.store.integrity import new_secret, request_id
from workers.store.jobstore import Store
from workers.submit.batchfile import InputRequest, parsed_lines, parsed_requests
from workers.submit.encode import MAX_REQUEST_SIZE, encode_problem, encode_prompts, message_limit
from workers.submit.jobs import new_job_id, submit_encoded

SHOWN: Final = 20  # bad lines kept (and shown); the others are counted
CHUNK: Final = 500  # requests parsed and encoded per step of the publishing pass


@dataclass
class Checked:
    """The check pass over a file: its good requests' custom ids (``ids``: custom id -> line number, input
    order), the first ``SHOWN`` errors and the count of all."""

    path: Path
    job_id: str
    ids: dict[str, int] = field(default_factory=dict)
    errors: list[BadInput] = field(default_factory=list)
    bad: int = 0

    def add(self, error: BadInput) -> None:
        self.bad += 1
        if len(self.errors) < SHOWN:
            self.errors.append(error)


def check_file(
    path: Path,
    max_prompt_chars: int,
    max_tokens: int | None = None,
    job_id: str | None = None,
    max_bytes: int = MAX_REQUEST_SIZE,
) -> Checked:
    """Validate every line of ``path`` as ``read_batch`` does (bad JSON, bad fields, duplicate ids) and that each
    request can be published as a prompt of ``job_id`` (``encode_problem``, under ``max_bytes``), keeping only
    the ids. ``job_id``: the job's id to be (new if None), kept in the result."""
    checked = Checked(path, job_id or new_job_id())
    for number, req in parsed_requests(path, max_prompt_chars, max_tokens):
        if isinstance(req, BadInput):
            checked.add(req)
        elif problem := encode_problem(checked.job_id, req, max_bytes):
            checked.add(BadInput(number, f"{problem}; nothing submitted"))
        else:
            checked.ids[req.custom_id] = number
    return checked


def good_requests(checked: Checked, max_prompt_chars: int, max_tokens: int | None = None) -> Iterator[InputRequest]:
    """The file's good requests again, in input order, one line parsed at a time (``parsed_lines``): a line kept by
    the check pass (its id's line number; no second set of ids). A file changed underneath yields other requests:
    ``submit_file`` counts them."""
    requests = parsed_lines(checked.path, max_prompt_chars, max_tokens)
    try:
        for number, req in requests:
            if isinstance(req, InputRequest) and checked.ids.get(req.custom_id) == number:
                yield req
    finally:
        requests.close()


def todo_requests(
    checked: Checked, max_prompt_chars: int, max_tokens: int | None, skip: Collection[str] = ()
) -> Iterator[InputRequest]:
    """``good_requests`` less those whose custom id is in ``skip`` (``--skip-done``'s answered ones)."""
    return (r for r in good_requests(checked, max_prompt_chars, max_tokens) if r.custom_id not in skip)


def todo_ids(checked: Checked, skip: Collection[str] = ()) -> list[str]:
    """The custom ids to run, input order."""
    return [cid for cid in checked.ids if cid not in skip]


def bodies(requests: Iterator[InputRequest]) -> Iterator[ChatBody]:
    return (r.body for r in requests)


async def submit_file(
    producer: AIOKafkaProducer,
    store: Store,
    topic: str,
    checked: Checked,
    requests: Iterator[InputRequest],
    custom_ids: Sequence[str],
    source: str,
    plan: tuple[JobPlan | None, Sequence[PromptPlan | None]] | None = None,
) -> JobMeta:
    """Register job ``checked.job_id`` with ``custom_ids`` (input order) and publish ``requests`` (the same, read
    lazily: ``todo_requests``), a chunk encoded at a time; what ``workers.submit.jobs.submit`` does for a list.
    ``plan``: one PromptPlan per custom id, same order."""
    job_id = checked.job_id
    now = time.time()
    secret = new_secret()
    limit = message_limit(producer)
    job_plan, plans = plan if plan is not None else (None, None)
    if plans is not None and len(plans) != len(custom_ids):
        raise ValueError(f"{len(plans)} plans for {len(custom_ids)} requests")
    meta = JobMeta(job_id=job_id, total=len(custom_ids), source=source, submitted_at=now, plan=job_plan)

    def encoded() -> Iterator[tuple[bytes, bytes]]:
        sent = 0
        while chunk := list(islice(requests, CHUNK)):
            chunk_plans = None if plans is None else plans[sent : sent + len(chunk)]
            yield from encode_prompts(job_id, chunk, now, secret, limit, chunk_plans)
            sent += len(chunk)
        if sent != len(custom_ids):
            raise RuntimeError(f"{checked.path} has {sent} requests to publish, {len(custom_ids)} were checked")

    ids = (request_id(job_id, cid) for cid in custom_ids)
    return await submit_encoded(producer, store, topic, meta, secret, ids, encoded())
