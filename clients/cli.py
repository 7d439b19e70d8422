"""`lrr`: the command line of lrr-service (console script `lrr = lrr_service.clients.cli:main`).

Every subcommand has --help, prints for people by default and JSON with --json, and on failure
exits non-zero with one line on stderr (no traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import metadata

from lrr_service.clients.commands import admin, channels, demo, lsl, serve, stream
from lrr_service.clients.commands.common import (
    OneLineErrorParser,
    in_cli_terms,
    render,
    resolve_server_options,
)

EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130
EXIT_CLOSED_PIPE = 141
"""The reader of stdout went away (128 + SIGPIPE, what a shell reports for a writer a closed pipe stopped)."""


def build_parser() -> argparse.ArgumentParser:
    """The `lrr` parser with every subcommand registered."""
    parser = OneLineErrorParser(prog="lrr", description="Clients of lrr-service: stream, manage weights, demo, LSL.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {metadata.version('lrr-service')}")
    subcommands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=OneLineErrorParser
    )
    for module in (serve, stream, admin, channels, demo, lsl):
        module.register(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `lrr` command; returns (and, as a script, exits with) its exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["serve"]:
        serve.exec_service(arguments[1:])  # does not return
    args = build_parser().parse_args(arguments)
    try:
        resolve_server_options(args)
        result = args.run(args)
    except KeyboardInterrupt:
        print("lrr: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the CLI's contract: one line, no traceback
        print(f"lrr {args.command}: error: {in_cli_terms(_one_line(exc))}", file=sys.stderr)
        if os.environ.get("LRR_DEBUG"):
            raise
        return EXIT_FAILURE
    try:
        print(render(result, args.json), flush=True)
    except BrokenPipeError:  # `lrr weights get ... | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return EXIT_CLOSED_PIPE
    return 0


def _one_line(exc: BaseException) -> str:
    """The exception as one line: its message, or its type when it has none."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 500 else text[:497] + "..."


if __name__ == "__main__":
    sys.exit(main())
