"""``thinkroute replay-server``: the vLLM-compatible replay server alone (`workers.replay.server`).

The same flags as ``python -m workers.replay.server`` (its argparse ``parser()``, which the embedded stack
runs as a child process); tests/unit/test_cli.py checks the two agree, name for name and default for default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from workers.cli.common import fail, guarded
from workers.replay.faults import FaultPlan
from workers.replay.server import DEFAULT_DECODE_TOK_PER_S, DEFAULT_PREFILL_S_PER_1K, serve

FAULTS = "Fault injection (shares of chat-completion requests)"
_NO_FAULTS = FaultPlan()
LogLevel = Literal["debug", "info", "warning", "error"]  # the server's LOG_LEVELS


def _share(flag: str, what: str) -> Any:
    return typer.Option(flag, min=0.0, max=1.0, help=what, rich_help_panel=FAULTS)


def replay_server(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    time_scale: Annotated[float, typer.Option(help="latency multiplier; 0 = no latency")] = 1.0,
    prefill_s_per_1k: Annotated[
        float, typer.Option(help="modelled prefill seconds per 1,000 prompt tokens")
    ] = DEFAULT_PREFILL_S_PER_1K,
    decode_tok_per_s: Annotated[
        float, typer.Option(help="modelled decode tokens per second per sequence")
    ] = DEFAULT_DECODE_TOK_PER_S,
    qwen3_records: Annotated[
        Path | None, typer.Option(dir_okay=False, help="a .jsonl(.xz) in the Qwen3 think/nothink format")
    ] = None,
    log_level: Annotated[LogLevel, typer.Option(help="uvicorn and server logs")] = "warning",
    fault_5xx: Annotated[float, _share("--fault-5xx", "answer 503")] = _NO_FAULTS.share_5xx,
    fault_429: Annotated[float, _share("--fault-429", "answer 429 with Retry-After")] = _NO_FAULTS.share_429,
    fault_timeout: Annotated[float, _share("--fault-timeout", "hang for --fault-hang-s")] = _NO_FAULTS.share_timeout,
    fault_reset: Annotated[float, _share("--fault-reset", "drop the connection mid-response")] = (
        _NO_FAULTS.share_reset
    ),
    fault_slow: Annotated[float, _share("--fault-slow", "add --fault-slow-s of delay")] = _NO_FAULTS.share_slow,
    fault_retry_after_s: Annotated[
        float, typer.Option(help="Retry-After of the 429s", rich_help_panel=FAULTS)
    ] = _NO_FAULTS.retry_after_s,
    fault_hang_s: Annotated[
        float, typer.Option(help="how long a hung request hangs", rich_help_panel=FAULTS)
    ] = _NO_FAULTS.hang_s,
    fault_slow_s: Annotated[
        float, typer.Option(help="delay added to a slow reply", rich_help_panel=FAULTS)
    ] = _NO_FAULTS.slow_s,
    fault_fail_marker: Annotated[
        str | None, typer.Option(help="prompts containing this always get 503", rich_help_panel=FAULTS)
    ] = None,
    fault_seed: Annotated[int, typer.Option(help="seed of the fault draws", rich_help_panel=FAULTS)] = _NO_FAULTS.seed,
) -> None:
    """The vLLM-compatible replay server: answers from recorded model outputs, with modelled latency."""
    try:
        faults = FaultPlan(
            share_5xx=fault_5xx,
            share_429=fault_429,
            share_timeout=fault_timeout,
            share_reset=fault_reset,
            share_slow=fault_slow,
            retry_after_s=fault_retry_after_s,
            hang_s=fault_hang_s,
            slow_s=fault_slow_s,
            fail_marker=fault_fail_marker,
            seed=fault_seed,
        )
    except ValueError as exc:
        fail(str(exc))
    serve(
        host,
        port,
        time_scale=time_scale,
        prefill_s_per_1k=prefill_s_per_1k,
        decode_tok_per_s=decode_tok_per_s,
        log_level=log_level,
        qwen3_records=qwen3_records,
        faults=faults,
    )


def register(app: typer.Typer) -> None:
    app.command("replay-server")(guarded(replay_server))
