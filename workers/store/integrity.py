"""Who may change a job: request ids derived from (job id, custom id), and a per-job HMAC over each prompt.

Pure functions, shared by the submitter (which signs) and the inference worker (which checks, through
``workers.store.jobstore.Store.admit``). The secret is 32 random bytes made at submit and kept in the job's
meta hash in Redis; it never travels on Kafka. The MAC is HMAC-SHA256 over an unambiguous JSON array of
(a domain tag, job id, custom id, line, submitted_at, SHA-256 of the canonical body JSON). The canonical
body is its JSON with keys sorted, no whitespace and unset (None) fields left out, so it survives every
round trip a prompt makes (submit -> prompts topic -> router -> routed topic -> escalation) unchanged, and an
optional field added to ``ChatBody`` later does not change the MAC of bodies that do not use it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from enum import StrEnum

from schemas.batch import ChatBody
from schemas.messages import PromptMessage, PromptPlan
from workers.errors import PermanentError

SECRET_BYTES = 32
_DOMAIN = "thinkroute-prompt-mac-v1"


def request_id(job_id: str, custom_id: str) -> str:
    """The only request id a prompt of ``job_id`` with ``custom_id`` may carry."""
    return f"{job_id}/{custom_id}"


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def canonical_body(body: ChatBody) -> bytes:
    """The body's canonical JSON, UTF-8. Raises UnicodeEncodeError for a string with a lone surrogate."""
    doc = body.model_dump(mode="json", exclude_none=True)
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def prompt_mac(
    secret: bytes,
    job_id: str,
    custom_id: str,
    line: int,
    submitted_at: float,
    body: ChatBody,
    plan: PromptPlan | None = None,
) -> str:
    """HMAC-SHA256 (hex) of one prompt of a job; any change of a covered field changes it.

    The plan (route, budget, exploration) is covered when there is one, so nobody on the topic can move a
    prompt to the other arm or into the exploration sample; a prompt without a plan has the MAC it always had.
    """
    digest = hashlib.sha256(canonical_body(body)).hexdigest()
    fields: list[object] = [_DOMAIN, job_id, custom_id, line, submitted_at, digest]
    if plan is not None:
        fields.append(plan.model_dump(mode="json"))
    framed = json.dumps(fields, separators=(",", ":"), sort_keys=True, allow_nan=False)
    return hmac.new(secret, framed.encode(), hashlib.sha256).hexdigest()


def _mac_of(prompt: PromptMessage, secret: bytes) -> str:
    p = prompt
    return prompt_mac(secret, p.job_id, p.custom_id, p.line, p.submitted_at, p.body, p.plan)


def sign(prompt: PromptMessage, secret: bytes) -> PromptMessage:
    """The prompt with its ``mac`` set (everything else unchanged)."""
    return prompt.model_copy(update={"mac": _mac_of(prompt, secret)})


def mac_matches(prompt: PromptMessage, secret: bytes) -> bool:
    if prompt.mac is None:
        return False
    try:
        want = _mac_of(prompt, secret)
    except (UnicodeEncodeError, ValueError):  # cannot have been signed
        return False
    return hmac.compare_digest(want, prompt.mac)


class Verdict(StrEnum):
    """What the inference worker may do with a prompt (``Store.admit``): answer it, skip it, or reject it."""

    OK = "ok"
    DONE = "done"  # already recorded: a redelivery, skipped
    BAD_REQUEST_ID = "bad_request_id"
    UNSIGNED = "unsigned"
    UNKNOWN_JOB = "unknown_job"
    FAILED_JOB = "failed_job"
    UNREGISTERED = "unregistered"
    BAD_MAC = "bad_mac"
    NOT_EXPLORED = "not_explored"  # a shadow of a prompt its submitter did not sign into the exploration sample
    STOPPED = "stopped"  # its job was cancelled or expired: not started, counted stopped (``Store.skip``)

    @property
    def rejected(self) -> bool:
        return self not in (Verdict.OK, Verdict.DONE, Verdict.STOPPED)


REASONS = {
    Verdict.BAD_REQUEST_ID: "the request id is not <job_id>/<custom_id>",
    Verdict.UNSIGNED: "the prompt carries no MAC",
    Verdict.UNKNOWN_JOB: "no such job in Redis",
    Verdict.FAILED_JOB: "the job failed at submit: none of its requests count",
    Verdict.UNREGISTERED: "the request id is not one the submitter registered for this job",
    Verdict.BAD_MAC: "the MAC does not match the job's secret (forged or altered prompt)",
    Verdict.NOT_EXPLORED: "an exploration shadow of a prompt that is not in its job's exploration sample",
}


class RejectedRequest(PermanentError):
    """A prompt that does not belong to its job (``verdict``); dead-lettered, never answered or counted."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(f"rejected ({verdict.value}): {REASONS.get(verdict, verdict.value)}")
        self.verdict = verdict


def precheck(prompt: PromptMessage) -> Verdict | None:
    """The checks that need no Redis: the request id is derived from the job and custom id, a MAC is there."""
    if prompt.request_id != request_id(prompt.job_id, prompt.custom_id):
        return Verdict.BAD_REQUEST_ID
    if prompt.mac is None:
        return Verdict.UNSIGNED
    return None
