"""`python -m lrr_service.service serve [--host ...] [--port ...] [--state-dir ...]`: run the server with uvicorn.

Every `LRR_*` setting has a flag (`--max-channels`, `--ridge-lambda`, ...); flags override the
environment. SIGTERM/SIGINT shut down gracefully and checkpoint every changed session.
`--prog NAME`, first on the command line, is the program name that usage and help show
(`lrr serve` passes `--prog lrr`, so that `lrr serve --help` says `usage: lrr serve ...`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pydantic import ValidationError

from lrr_service.service.config import SESSION_SETTING_FIELDS, ServiceSettings
from lrr_service.service.launcher import ClusterLauncher, LaunchError
from lrr_service.service.logs import configure_logging

STARTUP_FAILURE = 3
"""Exit status when the server could not start (uvicorn's own: the lifespan or the socket failed)."""

#: Settings whose flag value is JSON rather than a scalar.
_JSON_FLAGS = {"channel_groups"}


PROG = "python -m lrr_service.service"
"""The program name usage and help show, unless the command line starts with --prog NAME."""


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The `serve` command line: one flag per ServiceSettings field, named after it; usage says `prog`."""
    parser = argparse.ArgumentParser(prog=prog, description="Run the lrr-service websocket server.")
    parser.add_argument(
        "--prog",
        metavar="NAME",
        default=argparse.SUPPRESS,
        help=f"program name for usage and help, when first on the command line (default {PROG!r}; lrr serve "
        "passes 'lrr')"
        if prog == PROG
        else argparse.SUPPRESS,  # not shown under another program's name
    )
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the server (the default command)")
    for target in (parser, serve):
        _add_setting_flags(target)
        target.add_argument(
            "--allow-unauthenticated",
            action="store_true",
            default=argparse.SUPPRESS,
            help="listen on a non-loopback host without LRR_API_TOKEN (e.g. behind an authenticating proxy)",
        )
    return parser


def exposure_problem(settings: ServiceSettings, allow_unauthenticated: bool) -> str | None:
    """Why the server must not start as configured (open to the network without a token), or None."""
    if settings.listens_on_loopback() or settings.token() is not None or allow_unauthenticated:
        return None
    return (
        f"refusing to listen on {settings.host!r} without LRR_API_TOKEN: anyone who can reach the port could "
        "read, change and delete every session. Set LRR_API_TOKEN, listen on 127.0.0.1, or pass "
        "--allow-unauthenticated if something in front of the server authenticates clients"
    )


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """Add `--field-name VALUE` for every setting, with its env variable and default in the help."""
    fields = ServiceSettings.model_fields.items()
    for name, field in sorted(fields, key=lambda item: item[0] in SESSION_SETTING_FIELDS):  # sessions' last
        default = "unset" if field.default is None else field.default
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            default=argparse.SUPPRESS,
            metavar=name.upper(),
            help=f"{field.description} (env LRR_{name.upper()}, default {default})",
        )


def settings_from_args(args: argparse.Namespace) -> ServiceSettings:
    """Environment first, then the flags that were given; raises ValidationError if invalid."""
    overrides: dict[str, Any] = {}
    for name in ServiceSettings.model_fields:
        if hasattr(args, name):
            value = getattr(args, name)
            overrides[name] = _parse_json_flag(name, value) if name in _JSON_FLAGS else value
    return ServiceSettings(**overrides)


def _parse_json_flag(name: str, value: str) -> object:
    """A JSON-valued flag such as --channel-groups '[[0,1,2],[3,4,5]]'; an empty value means unset."""
    if not value.strip():
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name}: {value!r} is not JSON ({exc}); expected e.g. [[0,1,2],[3,4,5]]") from None


def split_prog(argv: list[str]) -> tuple[str, list[str]]:
    """(program name, the rest of the command line): a leading `--prog NAME` (or `--prog=NAME`) taken off."""
    if argv[:1] == ["--prog"] and len(argv) > 1:
        return argv[1], argv[2:]
    if argv[:1] and argv[0].startswith("--prog="):
        return argv[0].partition("=")[2], argv[1:]
    return PROG, argv


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, validate the settings and run uvicorn until a signal stops it."""
    prog, arguments = split_prog(list(sys.argv[1:] if argv is None else argv))
    args = build_parser(prog).parse_args(arguments)
    try:
        settings = settings_from_args(args)
        settings.session_defaults()
    except (ValidationError, ValueError) as exc:
        print(f"lrr-service: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    problem = exposure_problem(settings, getattr(args, "allow_unauthenticated", False))
    if problem is not None:
        print(f"lrr-service: {problem}", file=sys.stderr)
        return 2
    if settings.workers is not None:
        return run_cluster(settings, arguments)
    # uvicorn and the app are imported only to serve: --help and a cluster's launcher need neither
    from lrr_service.service.serving import service_server

    configure_logging(settings.log_level)
    server = service_server(settings)
    server.run()
    return 0 if server.started else STARTUP_FAILURE


_PER_WORKER_FLAGS = ("--port", "--workers", "--store-url", "--advertise-url")
"""Flags the launcher sets for each worker itself (through LRR_ variables)."""


def worker_arguments(argv: list[str]) -> list[str]:
    """The command line without the `serve` command and the flags each worker gets its own value of."""
    kept: list[str] = []
    skip = False
    for argument in argv:
        if skip:
            skip = False
        elif argument in _PER_WORKER_FLAGS:
            skip = True
        elif argument != "serve" and not argument.startswith(tuple(f + "=" for f in _PER_WORKER_FLAGS)):
            kept.append(argument)
    return kept


def run_cluster(settings: ServiceSettings, argv: list[str]) -> int:
    """`serve --workers N`: Redis, N workers and HAProxy on this machine (service/launcher.py)."""
    launcher = ClusterLauncher(settings, worker_arguments(argv))
    try:
        return launcher.run()
    except LaunchError as exc:
        print(f"lrr-service: {exc}", file=sys.stderr)
        return STARTUP_FAILURE


if __name__ == "__main__":
    sys.exit(main())
