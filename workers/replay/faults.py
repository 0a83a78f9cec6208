"""Fault injection for the replay server: make the backend misbehave like a loaded or broken vLLM.

Each chat-completion request draws one outcome from a seeded generator: a 5xx, a 429 with Retry-After,
a hang longer than the client's timeout, a dropped connection (no response), a slow reply, or normal
service. Requests whose prompt contains ``fail_marker`` always get a 503, to exercise the path where
retries run out. The plan can be changed while the server runs (``POST /faults``; ``GET /faults``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from starlette.responses import Response

from workers.replay.api import error_response

Outcome = Literal["ok", "5xx", "429", "timeout", "reset", "slow"]


@dataclass
class FaultPlan:
    share_5xx: float = 0.0
    share_429: float = 0.0
    share_timeout: float = 0.0
    share_reset: float = 0.0
    share_slow: float = 0.0
    retry_after_s: float = 0.2
    hang_s: float = 30.0
    slow_s: float = 1.0
    fail_marker: str | None = None
    seed: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        shares = [self.share_5xx, self.share_429, self.share_timeout, self.share_reset, self.share_slow]
        if any(s < 0 for s in shares) or sum(shares) > 1:
            raise ValueError("fault shares must be >= 0 and add up to at most 1")
        self._rng = random.Random(self.seed)

    @property
    def active(self) -> bool:
        shares = (self.share_5xx, self.share_429, self.share_timeout, self.share_reset, self.share_slow)
        return any(shares) or bool(self.fail_marker)

    def draw(self, prompt: str) -> Outcome:
        if self.fail_marker and self.fail_marker in prompt:
            return "5xx"
        x = self._rng.random()
        for outcome, share in (
            ("5xx", self.share_5xx),
            ("429", self.share_429),
            ("timeout", self.share_timeout),
            ("reset", self.share_reset),
            ("slow", self.share_slow),
        ):
            if x < share:
                return outcome  # type: ignore[return-value]
            x -= share
        return "ok"

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FaultPlan:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and not k.startswith("_")}
        unknown = set(d) - set(known)
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        return cls(**known)


class DroppedResponse(Response):
    """Promises a body, sends a few bytes of it and ends: the server then drops the connection, and the
    client sees the peer close mid-response (what a crashed or restarted backend looks like)."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"4096")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"id": "chatcmpl-', "more_body": False})


def add_fault_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("fault injection (shares of chat-completion requests)")
    g.add_argument("--fault-5xx", type=float, default=0.0, help="answer 503")
    g.add_argument("--fault-429", type=float, default=0.0, help="answer 429 with Retry-After")
    g.add_argument("--fault-timeout", type=float, default=0.0, help="hang for --fault-hang-s")
    g.add_argument("--fault-reset", type=float, default=0.0, help="drop the connection mid-response")
    g.add_argument("--fault-slow", type=float, default=0.0, help="add --fault-slow-s of delay")
    g.add_argument("--fault-retry-after-s", type=float, default=0.2)
    g.add_argument("--fault-hang-s", type=float, default=30.0)
    g.add_argument("--fault-slow-s", type=float, default=1.0)
    g.add_argument("--fault-fail-marker", default=None, help="prompts containing this always get 503")
    g.add_argument("--fault-seed", type=int, default=0)


def plan_from_args(args: argparse.Namespace) -> FaultPlan:
    return FaultPlan(
        share_5xx=args.fault_5xx,
        share_429=args.fault_429,
        share_timeout=args.fault_timeout,
        share_reset=args.fault_reset,
        share_slow=args.fault_slow,
        retry_after_s=args.fault_retry_after_s,
        hang_s=args.fault_hang_s,
        slow_s=args.fault_slow_s,
        fail_marker=args.fault_fail_marker,
        seed=args.fault_seed,
    )


async def inject(plan: FaultPlan, body: Any, counts: Counter[str]) -> Response | None:
    """Apply the fault drawn for this request; None means serve it normally (maybe after a delay)."""
    messages = body.get("messages") if isinstance(body, dict) else None
    prompt = json.dumps(messages, ensure_ascii=False) if messages else ""
    outcome = plan.draw(prompt)
    counts[outcome] += 1
    if outcome == "5xx":
        return error_response(503, "injected fault: service unavailable", code="service_unavailable")
    if outcome == "429":
        resp = error_response(429, "injected fault: too many requests", code="rate_limit_exceeded")
        resp.headers["retry-after"] = f"{plan.retry_after_s:g}"
        return resp
    if outcome == "timeout":
        await asyncio.sleep(plan.hang_s)
        return error_response(504, "injected fault: hung past the client's timeout", code="timeout")
    if outcome == "reset":
        return DroppedResponse()
    if outcome == "slow":
        await asyncio.sleep(plan.slow_s)
    return None
