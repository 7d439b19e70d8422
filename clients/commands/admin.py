"""Session management commands: `lrr sessions` (`--watch`, `lrr top`), `reset`, `solve`, `delete`,
`settings get|put`, `weights get|put`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from lrr_service.clients.commands.common import CommandResult, add_server_options, in_cli_terms, with_rest
from lrr_service.clients.errors import UnknownSessionError
from lrr_service.clients.rest import AsyncRestClient
from lrr_service.clients.table import format_table
from lrr_service.clients.watch import MIN_INTERVAL_S, watch
from lrr_service.core.weights_form import WeightsForm

SESSION_COLUMNS = ("key", "n_channels", "n_samples", "weights_version", "weights_source")


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `sessions` (and `top`, its --watch), `reset`, `solve`, `delete`, `settings` and `weights`."""
    sessions = subcommands.add_parser(
        "sessions",
        help="list the server's sessions as a table (--watch: live, refreshed in place)",
        description="List every session the server holds; with --watch, a live table refreshed every --interval "
        "seconds until Ctrl-C (or q): connections, frame and sample rates, weights, transform latency and the "
        "median channel's reduction in dB.",
    )
    sessions.add_argument(
        "--watch", action="store_true", help="keep the table on screen, refreshed every --interval seconds"
    )
    add_watch_options(sessions)
    add_server_options(sessions, key=False)
    sessions.set_defaults(run=run_sessions)

    top = subcommands.add_parser(
        "top",
        help="the live sessions table: lrr sessions --watch",
        description="The live sessions table, refreshed in place until Ctrl-C (or q): lrr sessions --watch.",
    )
    add_watch_options(top)
    add_server_options(top, key=False)
    top.set_defaults(run=run_sessions, watch=True)

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

    delete = subcommands.add_parser(
        "delete",
        help="delete a session: its statistics, weights and settings, and its checkpoint",
        description="Delete a session on the server (statistics, weights, settings and its checkpoint).",
    )
    add_server_options(delete)
    delete.set_defaults(run=run_delete)

    settings = subcommands.add_parser(
        "settings",
        help="show or change a session's engine settings",
        description="Show or change a session's engine settings (docs/service.md lists them).",
    )
    settings_actions = settings.add_subparsers(dest="action", metavar="{get,put}", required=True)
    settings_get = settings_actions.add_parser("get", help="show the settings", description="Show the settings.")
    add_server_options(settings_get)
    settings_get.set_defaults(run=run_settings_get)
    settings_put = settings_actions.add_parser(
        "put",
        help="change settings (NAME=VALUE ...; the others keep their values)",
        description="Change some settings, keeping the others; a change starts the session over "
        "(statistics and weights cleared). Values are JSON: ridge_lambda=0.1 block_size=64 "
        "channel_groups='[[0,1,2],[3,4,5]]' block_size=null.",
    )
    settings_put.add_argument("changes", nargs="+", metavar="NAME=VALUE", help="a setting and its new value (JSON)")
    add_server_options(settings_put)
    settings_put.set_defaults(run=run_settings_put)

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
    put = actions.add_parser(
        "put",
        help="upload W (or I - W) from a CSV file",
        description="Upload W from a CSV file. W's diagonal must be zero (a channel is never predicted from "
        "itself); a file holding the rereferencing matrix I - W (ones on its diagonal) takes --i-minus-w.",
    )
    put.add_argument("file", type=Path, help="CSV file holding W (n x n, comma-separated), or I - W with --i-minus-w")
    put.add_argument(
        "--replace", action="store_true", help="allow a matrix of another size: resets the session to its channel count"
    )
    put.add_argument(
        "--i-minus-w",
        action="store_true",
        help="the file holds I - W, the rereferencing matrix (ones on its diagonal); the server stores W = I - M",
    )
    add_server_options(put)
    put.set_defaults(run=run_weights_put)


def add_watch_options(parser: argparse.ArgumentParser) -> None:
    """--interval and --count of the live table."""
    parser.add_argument(
        "--interval",
        type=_interval,
        default=1.0,
        metavar="S",
        help=f"seconds between two refreshes with --watch (default 1, at least {MIN_INTERVAL_S:g})",
    )
    parser.add_argument(
        "--count",
        type=_positive_count,
        default=None,
        metavar="N",
        help="with --watch, stop after N refreshes (default: until Ctrl-C); exit status 1 if the last one failed",
    )


def run_sessions(args: argparse.Namespace) -> CommandResult:
    """GET /streams, shown as a table; with --watch, the live table until Ctrl-C (run_watch)."""
    if args.watch:
        return run_watch(args)
    sessions = with_rest(args, lambda rest: rest.sessions())
    rows = [[_cell(session.get(column)) for column in SESSION_COLUMNS] for session in sessions]
    text = format_table(SESSION_COLUMNS, rows) if sessions else "no sessions"
    return CommandResult(sessions, text)


def run_watch(args: argparse.Namespace) -> CommandResult:
    """The live table (clients/watch.py) until Ctrl-C, q or --count refreshes. Each refresh is printed as it
    comes; the result is an empty line (text) or a last JSON line saying how the watch ended. A watch whose
    last counted refresh failed raises its error (exit status 1); Ctrl-C ends it with status 0."""
    outcome = watch(
        args.url, args.token, interval=args.interval, count=args.count, as_json=args.json, describe_error=in_cli_terms
    )
    if outcome.stopped == "count" and outcome.error is not None:
        raise ConnectionError(outcome.error)
    return CommandResult({"watch": {"refreshes": outcome.refreshes, "stopped": outcome.stopped}}, "")


def _interval(text: str) -> float:
    """--interval: seconds, at least MIN_INTERVAL_S."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= MIN_INTERVAL_S or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text}: expected at least {MIN_INTERVAL_S:g} seconds")
    return value


def _positive_count(text: str) -> int:
    """--count: a whole number of refreshes, at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: expected at least 1 refresh")
    return value


def run_reset(args: argparse.Namespace) -> CommandResult:
    """POST /streams/{key}/reset."""
    reply = with_rest(args, lambda rest: rest.reset(args.key))
    return CommandResult(reply, f"reset '{args.key}': statistics and weights cleared")


def run_solve(args: argparse.Namespace) -> CommandResult:
    """POST /streams/{key}/solve."""
    reply = with_rest(args, lambda rest: rest.solve(args.key))
    return CommandResult(reply, f"solved '{args.key}'" + _describe(reply))


def run_delete(args: argparse.Namespace) -> CommandResult:
    """DELETE /streams/{key}."""
    with_rest(args, lambda rest: rest.delete(args.key))
    return CommandResult({"key": args.key, "deleted": True}, f"deleted session '{args.key}'")


def run_settings_get(args: argparse.Namespace) -> CommandResult:
    """GET /streams/{key}: its settings."""
    settings = with_rest(args, lambda rest: rest.session(args.key))["settings"]
    rows = [[name, json.dumps(value)] for name, value in settings.items()]
    return CommandResult(settings, format_table(("setting", "value"), rows))


def run_settings_put(args: argparse.Namespace) -> CommandResult:
    """GET the settings (if the session exists), change the named ones, PUT them back."""
    changes = dict(_setting_change(change) for change in args.changes)

    async def change(rest: AsyncRestClient) -> dict[str, Any]:
        try:
            current = (await rest.session(args.key))["settings"]
        except UnknownSessionError:
            current = {}
        return await rest.put_settings(args.key, current | changes)

    reply = with_rest(args, change)
    if not reply.get("changed"):
        return CommandResult(reply, f"settings of '{args.key}' unchanged")
    names = ", ".join(f"{name}={json.dumps(value)}" for name, value in changes.items())
    return CommandResult(
        reply, f"settings of '{args.key}' set ({names}); the session starts over: no statistics, no weights"
    )


def _setting_change(change: str) -> tuple[str, Any]:
    """NAME=VALUE with a JSON value (a bare word that is not JSON is taken as a string)."""
    name, sep, raw = change.partition("=")
    if not sep or not name:
        raise ValueError(f"{change!r}: expected NAME=VALUE, e.g. ridge_lambda=0.1")
    try:
        return name, json.loads(raw)
    except json.JSONDecodeError:
        return name, raw


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
    """PUT /streams/{key}/weights from a CSV file holding W, or I - W with --i-minus-w (its bytes sent unchanged,
    so the values arrive bit for bit)."""
    if not args.file.is_file():
        raise ValueError(f"{args.file}: no such file; expected a CSV file holding W")
    form: WeightsForm = "i_minus_w" if args.i_minus_w else "w"
    reply = with_rest(args, lambda rest: rest.put_weights(args.key, args.file, replace=args.replace, form=form))
    held = " (I - W)" if form == "i_minus_w" else ""
    return CommandResult(reply, f"uploaded {args.file}{held} to '{args.key}'" + _describe(reply))


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
