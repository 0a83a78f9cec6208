"""Every Redis key ThinkRoute uses, named in one place. All keys of one job share the hash tag ``{job_id}``, so
they live in one slot of a Redis Cluster and the Lua scripts of ``workers.store.lua`` may touch them together.
The keys across jobs (``JOBS_INDEX``, ``ACTIVE_BATCHES``, an owner's batches or files, a file's record) each
have a slot of their own: never in one script or MULTI with another key (``tests/unit/test_store_slots.py``)."""

from __future__ import annotations

JOBS_INDEX = "tr:jobs"  # sorted set: job_id -> submitted_at
ROUTES = ("reasoning", "direct")
TOKEN_KINDS = ("prompt_tokens", "completion_tokens", "reasoning_tokens")


def meta_key(job_id: str) -> str:
    return f"tr:{{{job_id}}}:meta"


def ids_key(job_id: str) -> str:
    return f"tr:{{{job_id}}}:ids"


def totals_key(job_id: str) -> str:
    return f"tr:{{{job_id}}}:totals"


def done_key(job_id: str) -> str:
    return f"tr:{{{job_id}}}:done"


def latency_key(job_id: str) -> str:
    return f"tr:{{{job_id}}}:latency"


def result_key(job_id: str, request_id: str) -> str:
    return f"tr:{{{job_id}}}:req:{request_id}"


def escalated_key(job_id: str) -> str:
    return f"tr:{{{job_id}}}:escalated"


def attempt_key(job_id: str, request_id: str, attempt: int = 1) -> str:
    return f"tr:{{{job_id}}}:req:{request_id}:attempt:{attempt}"


def explored_key(job_id: str) -> str:
    """The set of request ids whose exploration (shadow) answer is recorded."""
    return f"tr:{{{job_id}}}:explored"


def exploration_key(job_id: str, request_id: str) -> str:
    return f"tr:{{{job_id}}}:explore:{request_id}"


def inflight_key(job_id: str) -> str:
    """The set of request ids a worker admitted (its LLM call may be running) and that are not recorded yet."""
    return f"tr:{{{job_id}}}:inflight"


def stopped_key(job_id: str) -> str:
    """The set of request ids never started because the job was cancelled or expired."""
    return f"tr:{{{job_id}}}:stopped"


def order_key(job_id: str) -> str:
    """A list of the job's request ids in input order (what the output and error files follow)."""
    return f"tr:{{{job_id}}}:order"


def finalize_lock_key(job_id: str) -> str:
    """Held (SET NX PX) by the one ``serve`` replica writing a settled batch's output and error files."""
    return f"tr:{{{job_id}}}:finalizing"


ACTIVE_BATCHES = "tr:batches:active"  # set: API batches not yet finalized (what ``serve``'s sweeper visits)


def owner_batches_key(owner: str) -> str:
    """Sorted set: an owner's batch ids -> created_at (``GET /v1/batches``)."""
    return f"tr:owner:{{{owner}}}:batches"


def owner_files_key(owner: str) -> str:
    """Sorted set: an owner's file ids -> created_at (``GET /v1/files``)."""
    return f"tr:owner:{{{owner}}}:files"


def file_key(file_id: str) -> str:
    """A stored file's metadata (``schemas.records.FileRecord`` JSON)."""
    return f"tr:file:{{{file_id}}}"


ESCALATION = "escalation"  # totals bucket of first attempts that were escalated
EXPLORATION = "explore"  # totals bucket prefix of shadow answers: ``explore:<route>:<field>``
