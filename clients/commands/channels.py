"""`lrr channels get|put|delete`: a session's channel description (labels and per-channel fields), read from
a .json file (the body of PUT /streams/{key}/channels) or a .csv montage table (a header row, one row per channel)."""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lrr_service.clients.commands.common import CommandResult, add_server_options, with_rest
from lrr_service.clients.grouping import grouping_fallback
from lrr_service.clients.table import format_table
from lrr_service.core.channels import LABEL_FIELD, ChannelDescription
from lrr_service.core.vocabulary import Regrouped

FILE_FORMATS = (
    ".json (labels and fields, the body of PUT /streams/{key}/channels) or .csv (a montage table: a header row "
    "naming the columns, one row per channel; the column 'label' gives the labels, every other one a field)"
)


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `channels` and its actions `get`, `put` and `delete`."""
    channels = subcommands.add_parser(
        "channels",
        help="show, set or remove a session's channel description (labels, per-channel fields)",
        description="Show, set or remove a session's channel description: its channel labels and named "
        "per-channel fields (bank, array, ...) that the channel_groups setting may group by.",
    )
    actions = channels.add_subparsers(dest="action", metavar="{get,put,delete}", required=True)
    for name, run, summary, description in (
        ("get", run_channels_get, "show the description as a table", "Show the description, one row per channel."),
        (
            "put",
            run_channels_put,
            "describe the channels from a .json or .csv file",
            f"Describe the session's channels (the session is created if need be) from {FILE_FORMATS}. Values "
            "stay strings, as the LSL bridge keeps them. A description of another channel count than the session's "
            "is refused: reset the session first.",
        ),
        (
            "delete",
            run_channels_delete,
            "remove the description (field groups fall back to block_size)",
            "Remove the session's channel description: groups named by a field fall back to block_size, then one "
            "group of all channels.",
        ),
    ):
        action = actions.add_parser(name, help=summary, description=description)
        if name == "put":
            action.add_argument("file", type=Path, help="a .json or .csv file describing one entry per channel")
        add_server_options(action)
        action.set_defaults(run=run)


def run_channels_get(args: argparse.Namespace) -> CommandResult:
    """GET /streams/{key}/channels: a table with one row per channel (--json: the description, or null)."""
    description = with_rest(args, lambda rest: rest.get_channels(args.key))
    if description is None:
        return CommandResult(None, f"session '{args.key}' has no channel description")
    return CommandResult(description.to_dict(), description_table(description))


def run_channels_put(args: argparse.Namespace) -> CommandResult:
    """PUT /streams/{key}/channels from FILE, read and checked before anything is sent; says what the server did."""
    description = read_description(args.file)

    reply = with_rest(args, lambda rest: rest.put_channels(args.key, description))
    held = f"described the {description.n_channels} channels of '{args.key}' from {args.file}: {_holds(description)}"
    return CommandResult(reply, "\n".join([held, *outcome_lines(reply)]))


def run_channels_delete(args: argparse.Namespace) -> CommandResult:
    """DELETE /streams/{key}/channels; says what it did to the groups and weights."""
    reply = with_rest(args, lambda rest: rest.delete_channels(args.key))
    removed = f"session '{args.key}' holds no channel description now"
    return CommandResult(reply, "\n".join([removed, *outcome_lines(reply)]))


def description_table(description: ChannelDescription) -> str:
    """One row per channel: its index, label ("-" without labels) and the value of each field (strings as they
    are, other values as JSON)."""
    names = list(description.fields)
    labels = description.labels or ("-",) * description.n_channels
    rows = [
        [str(index), labels[index], *(_cell(description.fields[name][index]) for name in names)]
        for index in range(description.n_channels)
    ]
    return format_table(("index", "label", *names), rows)


def outcome_lines(reply: Mapping[str, Any]) -> list[str]:
    """What a PUT or DELETE of the description did: `regrouped` and its meaning, then the grouping the session
    now has (with the server's fallback note) once it is bound to a channel count."""
    lines = [f"regrouped: {_regrouped(reply.get('regrouped'))}"]
    grouping = reply.get("grouping")
    if isinstance(grouping, Mapping):
        fallback = grouping_fallback(reply)
        lines.append(f"grouping: {grouping.get('source')} ({grouping.get('n_groups')} group(s))")
        lines += [f"note: {fallback}"] if fallback else []
    return lines


def read_description(path: Path) -> ChannelDescription:
    """The channel description a .json or .csv file holds, checked with the service's rule; ValueError naming the
    file and what is wrong with it (or the formats expected)."""
    readers: dict[str, Callable[[str], object]] = {".json": _json_body, ".csv": montage}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise ValueError(f"{path}: unsupported file type ({path.suffix or 'no suffix'}); expected {FILE_FORMATS}")
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read as UTF-8 text ({exc})") from None
    if not text.strip():
        raise ValueError(f"{path}: the file is empty; expected a channel description")
    try:
        return ChannelDescription.from_dict(reader(text))
    except ValueError as exc:  # the readers' own errors and ChannelDescriptionError
        raise ValueError(f"{path}: {exc}") from None


def montage(text: str) -> dict[str, Any]:
    """A montage table as a description: the header row names the columns, each later row is one channel; the
    column `label` gives the labels, every other column a field. Values stay strings, stripped of spaces."""
    reader = csv.reader(io.StringIO(text), skipinitialspace=True)
    try:
        rows = [(reader.line_num, [cell.strip() for cell in row]) for row in reader if any(c.strip() for c in row)]
    except csv.Error as exc:
        raise ValueError(f"not a readable CSV table (line {reader.line_num}: {exc})") from None
    if len(rows) < 2:
        raise ValueError("a header row but no channel rows; expected one row per channel after the header row")
    header = _column_names(rows[0][1])
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise ValueError(
                f"line {line} has {len(row)} value(s) but the header row names {len(header)} column(s); "
                "expected one value per column in every row"
            )
    columns = {name: [row[i] for _, row in rows[1:]] for i, name in enumerate(header)}
    return {"labels": columns.pop(LABEL_FIELD, None), "fields": columns}


def _column_names(header: list[str]) -> list[str]:
    """The header row's names, each given once; ValueError naming a blank or repeated one."""
    seen: set[str] = set()
    for index, name in enumerate(header, start=1):
        if not name:
            raise ValueError(f"column {index} of the header row has no name; expected a name for every column")
        if name in seen:
            raise ValueError(f"the header row names {name!r} twice; expected each column once")
        seen.add(name)
    return header


def _json_body(text: str) -> object:
    """The JSON document `text` holds; ValueError saying where it is not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None


def _holds(description: ChannelDescription) -> str:
    """'labels; fields bank, x' for people: what the description holds."""
    labels = "labels" if description.labels is not None else "no labels"
    fields = f"fields {', '.join(description.fields)}" if description.fields else "no fields"
    return f"{labels}; {fields}"


def _regrouped(value: object) -> str:
    """A `regrouped` value and its meaning (core/vocabulary.py); a value this client does not know, as it came."""
    meaning = next((member.meaning for member in Regrouped if member == value), None)
    return f"{value} ({meaning})" if meaning else str(value)


def _cell(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)
