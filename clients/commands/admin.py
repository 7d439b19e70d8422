"""Session management commands: `lrr sessions`, `lrr reset`, `lrr solve`, `lrr weights get|put`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from lrr_service.clients.commands.common import CommandResult, add_server_options, with_rest
from lrr_service.clients.table import format_table

SESSION_COLUMNS = ("key", "n_channels", "n_samples", "weights_version", "weights_source")


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `sessions`, `reset`, `solve` and `weights {get,put}`."""
    sessions = subcommands.add_parser(
        "sessions", help="list the server's sessions as a table", description="List every session the server holds."
    )
    add_server_options(sessions, key=False)
    sessions.set_defaults(run=run_sessions)

    reset = subcommands.add_parser(
        "reset",
        help="clear a session's statistics and weights (keeps its settings)",
        description="Clear a session's statistics and weights; its settings stay.",
    )
    add_server_options(reset)
    reset.set_defaults(run=run_reset)

    solve = subcommands.add_parser(
        "solve",
        help="solve a session's weights from its statistics now",
        description="Solve the weights from everything the session has been fitted on.",
    )
    add_server_options(solve)
    solve.set_defaults(run=run_solve)

    weights = subcommands.add_parser(
        "weights",
        help="download or upload a session's weight matrix W (CSV)",
        description="Download or upload the weight matrix W (CSV, np.loadtxt-compatible).",
    )
    actions = weights.add_subparsers(dest="action", metavar="{get,put}", required=True)
    get = actions.add_parser("get", help="download W as CSV", description="Download a session's W as CSV.")
    get.add_argument("-o", "--output", type=Path, default=None, help="write the CSV here (default: print it)")
    add_server_options(get)
    get.set_defaults(run=run_weights_get)
    put = actions.add_parser("put", help="upload W from a CSV file", description="Upload W from a CSV file.")
    put.add_argument("file", type=Path, help="CSV file holding W (n x n, comma-separated)")
    put.add_argument(
        "--replace", action="store_true", help="allow a matrix of another size: resets the session to its channel count"
    )
    add_server_options(put)
    put.set_defaults(run=run_weights_put)


def run_sessions(args: argparse.Namespace) -> CommandResult:
    """GET /streams, shown as a table."""
    sessions = with_rest(args, lambda rest: rest.sessions())
    rows = [[_cell(session.get(column)) for column in SESSION_COLUMNS] for session in sessions]
    text = format_table(SESSION_COLUMNS, rows) if sessions else "no sessions"
    return CommandResult(sessions, text)


def run_reset(args: argparse.Namespace) -> CommandResult:
    """POST /streams/{key}/reset."""
    reply = with_rest(args, lambda rest: rest.reset(args.key))
    return CommandResult(reply, f"reset '{args.key}': statistics and weights cleared")


def run_solve(args: argparse.Namespace) -> CommandResult:
    """POST /streams/{key}/solve."""
    reply = with_rest(args, lambda rest: rest.solve(args.key))
    return CommandResult(reply, f"solved '{args.key}'" + _describe(reply))


def run_weights_get(args: argparse.Namespace) -> CommandResult:
    """GET /streams/{key}/weights to a file, or to stdout."""
    if args.output is None:
        csv_text = with_rest(args, lambda rest: rest.weights_csv(args.key))
        n = _row_count(csv_text)
        return CommandResult({"key": args.key, "n_channels": n, "csv": csv_text}, csv_text.rstrip("\n"))
    path = with_rest(args, lambda rest: rest.download_weights(args.key, args.output))
    n = _row_count(path.read_text(encoding="utf-8"))
    return CommandResult(
        {"key": args.key, "n_channels": n, "output": str(args.output)},
        f"wrote the {n}x{n} weights of '{args.key}' to {args.output}",
    )


def run_weights_put(args: argparse.Namespace) -> CommandResult:
    """PUT /streams/{key}/weights from a CSV file (its bytes sent unchanged, so the values arrive bit for bit)."""
    if not args.file.is_file():
        raise ValueError(f"{args.file}: no such file; expected a CSV file holding W")
    reply = with_rest(args, lambda rest: rest.put_weights(args.key, args.file, replace=args.replace))
    return CommandResult(reply, f"uploaded {args.file} to '{args.key}'" + _describe(reply))


def _row_count(csv_text: str) -> int:
    """How many rows (= channels) the server's weights CSV holds."""
    return len(csv_text.strip().splitlines())


def _describe(reply: Any) -> str:
    """A short ', weights version N (source)' tail when the server's reply says so."""
    if isinstance(reply, dict) and "weights_version" in reply:
        return f": weights version {reply['weights_version']} ({reply.get('weights_source', '?')})"
    return ""


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple, np.ndarray)):
        return str(len(value))
    return str(value)
