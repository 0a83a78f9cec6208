"""``thinkroute serve`` (the OpenAI Files + Batches API) and ``thinkroute api-key new`` (its keys)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated

import typer

from workers.cli.common import JsonOpt, edge, err, guarded, print_json, settings
from workers.errors import ConfigError, InvalidInput
from workers.runtime.apikeys import key_hash, new_api_key
from workers.runtime.eventloop import run_loop

api_key_app = typer.Typer(no_args_is_help=True, help="API keys of `thinkroute serve`.")
OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
NO_KEYS = (
    "no API key configured: make one with `thinkroute api-key new --owner NAME --keys-file FILE` and set "
    'THINKROUTE_API__KEYS_FILE=FILE (or THINKROUTE_API__KEYS to {"<sha256 of the key>": "NAME"})'
)
NO_STACK = (
    "thinkroute serve needs THINKROUTE_KAFKA_BOOTSTRAP and THINKROUTE_REDIS_URL; for the embedded stack, "
    "`thinkroute stack up` serves the API too"
)


@guarded
def serve(
    host: Annotated[str | None, typer.Option(help="interface to listen on (default THINKROUTE_API__HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port; 0: a free one (default THINKROUTE_API__PORT)")] = None,
) -> None:
    """Serve the OpenAI Files and Batches API (a bearer key on every /v1 route) until SIGTERM or Ctrl-C."""
    from workers.api.auth import Keys
    from workers.api.serve import serve_api

    s = settings()
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    if overrides:
        s = s.model_copy(update={"api": s.api.model_copy(update=overrides)})
    if not s.kafka_bootstrap or s.redis_url is None:
        raise ConfigError(NO_STACK)
    keys = Keys.from_settings(s.api)
    if len(keys) == 0:
        raise ConfigError(NO_KEYS)

    def ready(url: str) -> None:
        typer.echo(f"serving on {url}")

    with edge(s):
        run_loop(serve_api(s, keys, on_ready=ready))


@api_key_app.command("new")
@guarded
def api_key_new(
    owner: Annotated[str, typer.Option(help="who the key belongs to (letters, digits, . _ @ -)")],
    keys_file: Annotated[
        Path | None, typer.Option(help="append `<owner> <sha256>` to this keys file (made 0600)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Make an API key: printed once (keep it), only its SHA-256 is kept by the server."""
    if not OWNER.fullmatch(owner):
        raise InvalidInput(f"--owner {owner!r}: 1 to 64 letters, digits, '.', '_', '@' or '-'")
    key = new_api_key()
    digest = key_hash(key)
    if keys_file is not None:
        append_key(keys_file, owner, digest)
    if as_json:
        print_json({"owner": owner, "key": key, "sha256": digest, "keys_file": str(keys_file) if keys_file else None})
        return
    typer.echo(key)
    where = f"appended to {keys_file}" if keys_file else "THINKROUTE_API__KEYS=" + json.dumps({digest: owner})
    err.print(f"owner {owner}, sha256 {digest}: {where}; the key is not shown again", highlight=False)


def append_key(path: Path, owner: str, digest: str) -> None:
    """Append one `<owner> <sha256>` line, the file 0600 (made so if it is new)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError as exc:
        raise InvalidInput(f"cannot write the keys file {path}: {exc.strerror or exc}") from exc
    with open(fd, "r+b") as f:
        os.fchmod(f.fileno(), 0o600)
        size = f.seek(0, os.SEEK_END)
        ends_line = True
        if size:
            f.seek(size - 1)
            ends_line = f.read(1) == b"\n"
        f.write(("" if ends_line else "\n").encode() + f"{owner} {digest}\n".encode())


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(api_key_app, name="api-key")
