"""``python -m loadgen replay-server [...]`` or ``python -m loadgen samples [...]``."""

from __future__ import annotations

import sys

USAGE = "usage: python -m loadgen {replay-server,samples} [options]  (--help after a command for its options)"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in ("replay-server", "samples"):
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)
    if args[0] == "replay-server":
        from loadgen import replay_server

        replay_server.main(args[1:])
    else:
        from loadgen import samples

        samples.main(args[1:])


if __name__ == "__main__":
    main()
