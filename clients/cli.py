"""`lrr`: the command line of lrr-service (console script `lrr = lrr_service.clients.cli:main`).

Every subcommand has --help, prints for people by default and JSON with --json, and on failure
exits non-zero with one line on stderr (no traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from lrr_service.clients.commands import admin, demo, lsl, serve, stream
from lrr_service.clients.commands.common import OneLineErrorParser, render

EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    """The `lrr` parser with every subcommand registered."""
    parser = OneLineErrorParser(prog="lrr", description="Clients of lrr-service: stream, manage weights, demo, LSL.")
    subcommands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=OneLineErrorParser
    )
    for module in (serve, stream, admin, demo, lsl):
        module.register(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `lrr` command; returns (and, as a script, exits with) its exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["serve"]:
        serve.exec_service(arguments[1:])  # does not return
    args = build_parser().parse_args(arguments)
    try:
        result = args.run(args)
    except KeyboardInterrupt:
        print("lrr: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the CLI's contract: one line, no traceback
        print(f"lrr {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        if os.environ.get("LRR_DEBUG"):
            raise
        return EXIT_FAILURE
    print(render(result, args.json))
    return 0


def _one_line(exc: BaseException) -> str:
    """The exception as one line: its message, or its type when it has none."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 500 else text[:497] + "..."


if __name__ == "__main__":
    sys.exit(main())
