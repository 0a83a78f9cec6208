"""An OpenAI-compatible server that answers from recorded model outputs (see `workers.replay.records`).

Stands in for ``vllm serve`` (or OpenAI's API) where there is no GPU, checked with the official ``openai``
SDK (tests/unit/test_replay_openai_sdk.py): ``GET /health``, ``GET /v1/models``, ``GET /v1/models/{id}``,
``POST /v1/chat/completions`` with or without ``stream`` (server-sent ``chat.completion.chunk`` events
ending in ``data: [DONE]``, `workers.replay.stream`), plus ``GET /stats`` (request counts by source and
mode) and ``GET``/``POST /faults`` (`workers.replay.faults`). Every error, unknown routes included, is a
JSON body in OpenAI's shape ``{"error": {"message", "type", "param", "code"}}`` (`workers.replay.api`).

What a request may ask for is in `workers.replay.params`: honoured are the model, the messages,
``max_tokens``, the thinking switches, ``logprobs``/``top_logprobs`` (MODELLED, `workers.replay.logprobs`:
the answer letter's probability is the recorded models' agreement), ``stream`` and
``stream_options.include_usage``; sampling controls (``temperature``, ``top_p``, ``seed``, penalties) are
accepted and change nothing (a recorded output is one valid sample); ``n > 1``, ``response_format``
``json_object``/``json_schema``, ``stop``, tools and any other parameter are refused with a 400 whose
``param`` names it. Thinking switches: ``chat_template_kwargs`` ``{"enable_thinking": bool}`` (Qwen3; on
when absent) or ``{"thinking": bool}`` (DeepSeek style; off when absent for models other than Qwen3), and
``reasoning_effort`` low|medium|high (implies thinking on unless a switch says off explicitly, which
wins). The same request gets the same content, usage and finish reason; each response has its own ``id``
(``chatcmpl-`` + a random UUID) and ``created`` is the time it was made.

Latency: each reply waits ``time_scale * (prefill_s_per_1k * prompt_tokens / 1000 + completion_tokens /
decode_tok_per_s)`` on the event loop (``asyncio.sleep``), so concurrent requests overlap like sequences
in one vLLM batch; a stream waits the prefill before its first chunk and spreads the decode time evenly
over the others. The defaults are assumptions for Qwen3-30B-A3B (30.5B parameters, 3.3B active, bf16)
under vLLM on one H100, to be replaced with measured figures; they are not measurements:

* decode 60 tokens/s per sequence: a decode step must read the weights of every expert some sequence in
  the batch routes to; with 128 experts, top-8 routing and 16-32 concurrent sequences that is 64-87% of
  about 61 GB, i.e. 12-16 ms at 3.35 TB/s before attention and scheduling, so roughly 50-80 tokens/s per
  sequence (single-stream decode is faster, about 150 tokens/s);
* prefill 0.05 s per 1,000 prompt tokens: 6.6 TFLOP per 1,000 tokens at 3.3B active parameters is about
  0.02 s at a realistic 30-40% of H100 bf16 peak; chunked prefill shares steps with the running decodes,
  so a prompt sees about twice that.

``time_scale=0`` replies at once (tests, benchmarks of the rest of the pipeline).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from workers.replay.api import RequestError, error_response, http_error, request_error_response, server_error
from workers.replay.complete import Completed, complete
from workers.replay.faults import FaultPlan, add_fault_args, inject, plan_from_args
from workers.replay.records import Mode, ReplayData, load_default
from workers.replay.stream import DONE, chunks, event

logger = logging.getLogger(__name__)

DEFAULT_PREFILL_S_PER_1K = 0.05
DEFAULT_DECODE_TOK_PER_S = 60.0
SHUTDOWN_GRACE_S = 2


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """Seconds a reply takes: time_scale * (prefill + decode); defaults are assumptions (module doc)."""

    time_scale: float = 1.0
    prefill_s_per_1k: float = DEFAULT_PREFILL_S_PER_1K
    decode_tok_per_s: float = DEFAULT_DECODE_TOK_PER_S

    def __post_init__(self) -> None:
        if self.time_scale < 0 or self.prefill_s_per_1k < 0 or self.decode_tok_per_s <= 0:
            raise ValueError("time_scale and prefill_s_per_1k must be >= 0, decode_tok_per_s > 0")

    def prefill_s(self, prompt_tokens: int) -> float:
        return self.time_scale * self.prefill_s_per_1k * prompt_tokens / 1000

    def decode_s(self, completion_tokens: int) -> float:
        return self.time_scale * completion_tokens / self.decode_tok_per_s

    def delay_s(self, prompt_tokens: int, completion_tokens: int) -> float:
        return self.prefill_s(prompt_tokens) + self.decode_s(completion_tokens)


@dataclass
class Stats:
    """Counts of answered requests (by source, mode, model) and of errors (by HTTP status); ``received``: every
    chat completion request that reached the server, injected faults included."""

    received: int = 0
    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    by_source: Counter[str] = field(default_factory=Counter)
    by_mode: Counter[str] = field(default_factory=Counter)
    by_model: Counter[str] = field(default_factory=Counter)
    errors: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)

    def add(self, model: str, mode: Mode, source: str) -> None:
        self.requests += 1
        self.by_source[source] += 1
        self.by_mode[mode.tag] += 1
        self.by_model[model] += 1

    def enter(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "requests": self.requests,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "by_source": dict(self.by_source),
            "by_mode": dict(self.by_mode),
            "by_model": dict(self.by_model),
            "errors": {str(k): v for k, v in self.errors.items()},
            "faults": dict(self.faults),
        }


def create_app(data: ReplayData, latency: LatencyModel, faults: FaultPlan | None = None) -> Starlette:
    """The ASGI app; ``app.state.stats`` holds the counters served at ``/stats``, ``app.state.faults`` the plan."""
    stats = Stats()
    created = int(time.time())

    async def health(request: Request) -> Response:
        return Response(status_code=200)

    def card(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": created, "owned_by": "replay"}

    async def list_models(request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [card(name) for name in data.served_models()]})

    async def get_model(request: Request) -> JSONResponse:
        name = request.path_params["model"]
        if data.resolve_model(name) is None:
            stats.errors[404] += 1
            return error_response(404, f"The model `{name}` does not exist.", param="model", code="model_not_found")
        return JSONResponse(card(name))

    async def get_stats(request: Request) -> JSONResponse:
        return JSONResponse(stats.as_dict())

    async def get_faults(request: Request) -> JSONResponse:
        return JSONResponse(app.state.faults.as_dict())

    async def set_faults(request: Request) -> JSONResponse:
        try:
            app.state.faults = FaultPlan.from_dict(await request.json())
        except (ValueError, TypeError) as exc:
            return error_response(400, f"bad fault plan: {exc}")
        logger.warning("fault plan now %s", app.state.faults.as_dict())
        return JSONResponse(app.state.faults.as_dict())

    async def chat_completions(request: Request) -> Response | bytes:
        stats.received += 1
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            stats.errors[400] += 1
            return error_response(400, "the request body is not valid JSON")
        plan: FaultPlan = app.state.faults
        if plan.active:
            fault = await inject(plan, body, stats.faults)
            if fault is not None:
                return fault
        try:
            done = complete(data, body)
        except RequestError as exc:
            stats.errors[exc.status] += 1
            return request_error_response(exc)
        stats.add(done.model, done.mode, done.answer.source)
        if done.options.stream:
            return StreamingResponse(stream(done), media_type="text/event-stream")
        delay = latency.delay_s(done.answer.prompt_tokens, done.answer.completion_tokens)
        if delay > 0:
            stats.enter()
            try:
                await asyncio.sleep(delay)
            finally:
                stats.in_flight -= 1
        return render_json(done.body)

    async def stream(done: Completed) -> AsyncIterator[bytes]:
        first, *rest = chunks(done.body, done.options.include_usage)
        prefill, decode = latency.prefill_s(done.answer.prompt_tokens), latency.decode_s(done.answer.completion_tokens)
        step = decode / max(len(rest), 1)
        paced = prefill + decode > 0
        if paced:
            stats.enter()
        try:
            if prefill > 0:
                await asyncio.sleep(prefill)
            yield event(first)
            for chunk in rest:
                if step > 0:
                    await asyncio.sleep(step)
                yield event(chunk)
            yield DONE
        finally:
            if paced:
                stats.in_flight -= 1

    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", get_model, methods=["GET"]),
            Route("/v1/chat/completions", JsonEndpoint(chat_completions), methods=["POST"]),
            Route("/stats", get_stats, methods=["GET"]),
            Route("/faults", get_faults, methods=["GET"]),
            Route("/faults", set_faults, methods=["POST"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    app.state.stats = stats
    app.state.faults = faults or FaultPlan()
    app.state.data = data
    return app


def render_json(content: Any) -> bytes:
    """The bytes Starlette's JSONResponse renders."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


class JsonEndpoint:
    """A route as a bare ASGI app: the handler returns a Response, or the bytes of a 200 JSON body that are
    sent without building a Response. Starlette's per-request wrapper (exception scope, Response object,
    header rendering) was a sixth of the replay server's CPU per request, and the replay server shares the
    benchmark machine's cores with the pipeline it stands in for."""

    def __init__(self, handler: Callable[[Request], Awaitable[Response | bytes]]) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        out = await self.handler(Request(scope, receive))
        if isinstance(out, Response):
            await out(scope, receive, send)
            return
        headers = [(b"content-length", b"%d" % len(out)), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": out})


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    time_scale: float = 1.0,
    prefill_s_per_1k: float = DEFAULT_PREFILL_S_PER_1K,
    decode_tok_per_s: float = DEFAULT_DECODE_TOK_PER_S,
    log_level: str = "warning",
    qwen3_records: Path | None = None,
    faults: FaultPlan | None = None,
) -> None:
    """Log at ``log_level`` on stderr, load the data and serve until interrupted (blocking); what
    ``thinkroute replay-server`` and ``python -m workers.replay.server`` run."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    latency = LatencyModel(time_scale, prefill_s_per_1k, decode_tok_per_s)
    data = load_default() if qwen3_records is None else ReplayData.load(qwen3_records)
    logger.info("replay server on http://%s:%d (%s, faults %s)", host, port, latency, faults)
    app = create_app(data, latency, faults)
    # SIGTERM: requests in flight get SHUTDOWN_GRACE_S, then are cancelled (not minutes of paced answers)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=SHUTDOWN_GRACE_S)


LOG_LEVELS = ("debug", "info", "warning", "error")


def parser() -> argparse.ArgumentParser:
    """The flags of ``python -m workers.replay.server`` (what the embedded stack runs as a child process)."""
    p = argparse.ArgumentParser(prog="python -m workers.replay.server", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--time-scale", type=float, default=1.0, help="latency multiplier; 0 = no latency")
    p.add_argument("--prefill-s-per-1k", type=float, default=DEFAULT_PREFILL_S_PER_1K)
    p.add_argument("--decode-tok-per-s", type=float, default=DEFAULT_DECODE_TOK_PER_S)
    p.add_argument("--qwen3-records", type=Path, default=None, help="a .jsonl(.xz) in the Qwen3 think/nothink format")
    p.add_argument("--log-level", default="warning", choices=LOG_LEVELS)
    add_fault_args(p)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    serve(
        args.host,
        args.port,
        time_scale=args.time_scale,
        prefill_s_per_1k=args.prefill_s_per_1k,
        decode_tok_per_s=args.decode_tok_per_s,
        qwen3_records=args.qwen3_records,
        log_level=args.log_level,
        faults=plan_from_args(args),
    )


if __name__ == "__main__":
    main()
