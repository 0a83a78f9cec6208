"""``python -m loadgen {samples,chaos,bench,scale} [...]`` (the replay server is ``thinkroute replay-server``)."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "samples": "loadgen.samples",
    "chaos": "loadgen.chaos",
    "bench": "loadgen.bench",
    "scale": "loadgen.bench_scale",
}
USAGE = f"usage: python -m loadgen {{{','.join(COMMANDS)}}} [options]  (--help after a command for its options)"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)
    importlib.import_module(COMMANDS[args[0]]).main(args[1:])


if __name__ == "__main__":
    main()
