"""What every `lrr` subcommand shares: server options, --json, and the result it prints."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from lrr_service.clients.config_file import DEFAULT_URL, server_address
from lrr_service.clients.rest import AsyncRestClient
from lrr_service.core.weights_form import Interface, restate

T = TypeVar("T")


@dataclass(frozen=True)
class CommandResult:
    """A command's outcome: `data` is printed as JSON with --json, `text` for people otherwise."""

    data: Any
    text: str


Command = Callable[[argparse.Namespace], CommandResult]


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (no usage dump) pointing at --help; exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_output_option(parser: argparse.ArgumentParser) -> None:
    """--json: print machine-readable JSON on stdout instead of text for people."""
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def add_server_options(parser: argparse.ArgumentParser, *, key: bool = True) -> None:
    """--url, --token (and --key) for commands that talk to a server; defaults from the environment."""
    parser.add_argument(
        "--url",
        default=None,
        help=f"server base URL (default $LRR_URL, else the config file's url, else {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        default=None,
        help="API token sent as 'Authorization: Bearer' (default $LRR_API_TOKEN, else the config file's token)",
    )
    parser.set_defaults(resolve_server=True)
    if key:
        parser.add_argument("--key", required=True, help="stream key naming the session on the server")
    add_output_option(parser)


def add_direct_option(parser: argparse.ArgumentParser) -> None:
    """--direct: stream to the cluster worker that owns the key, not through its proxy (docs/scale.md)."""
    parser.add_argument(
        "--direct",
        action="store_true",
        help="in a cluster, stream straight to the worker that owns the key (found through --url) instead of "
        "through the proxy: one network hop less; no effect on a single server",
    )


_CLI_TERMS = (
    ("send 'Authorization: Bearer <token>' or add ?token=<token> to the URL", "pass --token (or set LRR_API_TOKEN)"),
    ("send 'Authorization: Bearer <token>'", "pass --token (or set LRR_API_TOKEN)"),
    ("add ?replace=true", "pass --replace"),
    ("give the client the server's URL", "pass its URL with --url (or set LRR_URL)"),
    ("pass allow_identity=True", "pass --allow-identity"),
)
"""What the server and the library say in HTTP or Python terms, and what the command line calls it."""


_ROUTE_COMMANDS = (
    (re.compile(r"POST /streams/([^\s/,]+)/reset\b"), r"lrr reset --key \1"),
    (re.compile(r"the first chunk on /ws/([^\s/,]+)/\.\.\."), r"lrr stream --key \1"),
    (re.compile(r"send chunks to /ws/([^\s/,]+)/fit\b"), r"fit it (lrr stream --fit --key \1)"),
    (re.compile(r"PUT /streams/([^\s/,]+)/weights\b"), r"lrr weights put --key \1"),
    (re.compile(r"PUT /streams/([^\s/,]+)(?![/\w])"), r"lrr settings put --key \1 NAME=VALUE"),
)
"""Hints that name a route of the server, and the command that does the same."""


def in_cli_terms(message: str) -> str:
    """`message` with its hints in the command line's terms (flags and commands, not query parameters,
    arguments or routes), the weights upload's own ones (core/weights_form.py) included."""
    for phrase, flag in _CLI_TERMS:
        message = message.replace(phrase, flag)
    for route, command in _ROUTE_COMMANDS:
        message = route.sub(command, message)
    return restate(message, Interface.CLI)


def render(result: CommandResult, as_json: bool) -> str:
    """The text to print for `result`."""
    return json.dumps(result.data, indent=None, sort_keys=True) if as_json else result.text


def resolve_server_options(args: argparse.Namespace) -> None:
    """Fill --url and --token not given on the command line: from the environment, then the configuration
    file (clients/config_file.py, read only when needed), then the default URL."""
    if not getattr(args, "resolve_server", False):
        return
    args.url, args.token = server_address(args.url, args.token)


def with_rest(args: argparse.Namespace, action: Callable[[AsyncRestClient], Awaitable[T]]) -> T:
    """Run one REST `action` against --url with --token, closing the connection afterwards."""

    async def call() -> T:
        async with AsyncRestClient(args.url, args.token) as rest:
            return await action(rest)

    return asyncio.run(call())


def add_group_by_option(parser: argparse.ArgumentParser) -> None:
    """--group-by FIELD[,FIELD...] (repeatable): group the session's channels by fields of their description."""
    parser.add_argument(
        "--group-by",
        action="append",
        default=None,
        metavar="FIELD[,FIELD...]",
        help="set the session's channel_groups to this field of the channel description (e.g. bank, or label): "
        "channels with equal values form a group; several fields (comma-separated or the option repeated) group "
        "by their combination. Other settings are kept; a change starts the session over",
    )


def group_by_setting(values: Sequence[str] | None) -> str | list[str] | None:
    """The `channel_groups` setting the --group-by values ask for: a field name, a list of several (in order,
    each once), or None without the option; ValueError for an empty name."""
    if not values:
        return None
    names: list[str] = []
    for value in values:
        for name in (part.strip() for part in value.split(",")):
            if not name:
                raise ValueError(
                    f"--group-by {value!r}: empty field name; expected FIELD or FIELD,FIELD (e.g. bank or bank,array)"
                )
            if name not in names:
                names.append(name)
    return names[0] if len(names) == 1 else names
