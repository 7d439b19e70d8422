"""`lrr stream FILE --key K`: replay a recording through the service and write the rereferenced output."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tqdm import tqdm

from lrr_service.clients.cleaning import (
    CleaningAccumulator,
    CleaningReport,
    plot_report,
    report_json,
    report_text,
    require_plotting,
)
from lrr_service.clients.commands.common import (
    CommandResult,
    add_direct_option,
    add_group_by_option,
    add_server_options,
    group_by_setting,
)
from lrr_service.clients.endpoints import checked_key
from lrr_service.clients.errors import IdentityTransformError, UnknownSessionError
from lrr_service.clients.grouping import grouping_fallback, session_groups, settings_with_channel_groups
from lrr_service.clients.recordings import read_recording, write_recording
from lrr_service.clients.sync import LRRClientSync
from lrr_service.core.channels import ChannelDescription, ChannelDescriptionError
from lrr_service.core.vocabulary import Mode

DEFAULT_CHUNK = 256
T = TypeVar("T")


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `stream` subcommand."""
    parser = subcommands.add_parser(
        "stream",
        help="replay a recording (.npy, .csv, .edf, .bdf) through the service",
        description="Send a recording through a session chunk by chunk and write the rereferenced output. "
        "--fit-then-transform (the default) fits on the whole recording, solves, then transforms it. The channel "
        "names of a CSV header row or of an EDF/BDF file become the session's channel labels, which "
        "--group-by label can group by.",
    )
    parser.add_argument("file", type=Path, help="recording: .npy or .csv (samples x channels), .edf or .bdf")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--fit",
        dest="mode",
        action="store_const",
        const="fit",
        help="only fit the session on the recording (no output)",
    )
    mode.add_argument(
        "--transform",
        dest="mode",
        action="store_const",
        const="transform",
        help="only transform with the session's current weights",
    )
    mode.add_argument(
        "--fit-then-transform",
        dest="mode",
        action="store_const",
        const="fit-then-transform",
        help="fit on the whole recording, solve, then transform it (default)",
    )
    parser.set_defaults(mode="fit-then-transform")
    parser.add_argument(
        "--chunk", type=int, default=DEFAULT_CHUNK, metavar="N", help=f"samples per frame (default {DEFAULT_CHUNK})"
    )
    parser.add_argument(
        "--rate",
        choices=("realtime", "max"),
        default="max",
        help="realtime: pace frames at the recording's sample rate; max: as fast as possible (default)",
    )
    parser.add_argument(
        "--sample-rate",
        type=float,
        default=None,
        metavar="HZ",
        help="sample rate for --rate realtime when the file has none (.npy, .csv)",
    )
    parser.add_argument(
        "--max-in-flight", type=int, default=32, metavar="N", help="frames sent ahead of their replies (default 32)"
    )
    parser.add_argument("-o", "--output", type=Path, default=None, help="output file, .npy or .csv")
    parser.add_argument(
        "--transpose", action="store_true", help="the file holds channels x samples: swap its axes first"
    )
    state = parser.add_mutually_exclusive_group()
    state.add_argument(
        "--reset", action="store_true", help="clear the session's statistics and weights before fitting (start clean)"
    )
    state.add_argument(
        "--append", action="store_true", help="add this recording to the statistics the session already holds"
    )
    parser.add_argument(
        "--allow-identity",
        action="store_true",
        help="transform even when the session has no weights (the output then equals the input)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="FILE.png",
        help="also draw what the cleaning did (per-channel reduction, the weights) into a PNG (the report extra)",
    )
    parser.add_argument(
        "--skip-non-finite",
        action="store_true",
        help="leave chunks holding NaN or infinity out (their output rows are NaN) instead of refusing the file",
    )
    add_group_by_option(parser)
    add_server_options(parser)
    add_direct_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> CommandResult:
    """Check the options and the file, state what the session holds, stream, write; returns a summary."""
    if args.chunk < 1:
        raise ValueError(f"--chunk must be at least 1 sample, got {args.chunk}")
    if args.mode != "fit" and args.output is None:
        raise ValueError(f"-o OUTPUT (.npy or .csv) is required to {args.mode.replace('-', ' ')}")
    if args.output is not None and args.output.suffix.lower() not in (".npy", ".csv"):
        raise ValueError(f"-o {args.output}: expected an output ending in .npy or .csv")
    checked_key(args.key)
    if args.report is not None:
        if args.mode == "fit" or args.report.suffix.lower() != ".png":
            raise ValueError(f"--report {args.report}: expected a .png file, and a mode that transforms")
        require_plotting()  # before the replay, not after it
    args.channel_groups = group_by_setting(args.group_by)
    recording = read_recording(args.file)
    rate = args.sample_rate or recording.sample_rate
    if args.rate == "realtime" and not rate:
        raise ValueError(f"--rate realtime needs a sample rate: {args.file.name} has none, pass --sample-rate HZ")
    data = recording.data.T if args.transpose else recording.data
    if data.shape[1] > data.shape[0]:
        hint = (
            "--transpose made it so: drop --transpose"
            if args.transpose
            else "if the file is channels x samples, pass --transpose"
        )
        raise ValueError(
            f"{args.file.name} holds {data.shape[0]} samples x {data.shape[1]} channels: more channels than "
            f"samples; {hint}"
        )
    skipped = _non_finite_chunks(data, args)
    description = _channel_description(args, recording.labels, data.shape[1])
    started = time.monotonic()
    with LRRClientSync(
        args.url,
        args.key,
        token=args.token,
        max_in_flight=args.max_in_flight,
        direct=args.direct,
        allow_identity=args.allow_identity,
    ) as client:
        before = _prepare_session(client, args, data)
        if description is not None:
            client.set_channels(description)  # carried by the first frame of each websocket
        try:
            output, applied, cleaning = _replay(client, args, data, rate, skipped)
        except BaseException as exc:
            _account_for_abort(client, args, exc)
            raise
        after = _session_or_none(client)
        if args.report is not None and cleaning is not None:
            weights = None if after is None or _identity(after) else client.get_weights()
            plot_report(cleaning, args.report, weights, title=f"{args.file.name} through '{args.key}'")
    if output is not None:
        write_recording(args.output, output)
    seconds = time.monotonic() - started
    result = _summary(args, data, seconds, output, before, after, applied, skipped, description)
    if cleaning is None:
        return result
    return CommandResult(
        result.data | {"cleaning": report_json(cleaning)}, result.text + "\n\n" + report_text(cleaning)
    )


def _channel_description(args: argparse.Namespace, labels: list[str], n_channels: int) -> dict[str, Any] | None:
    """The session's channel description from the file's channel names (None when it has none); with
    --transpose the names name samples, so none is sent (and a line on stderr says so)."""
    if not labels:
        return None
    if args.transpose:
        print(
            f"lrr stream: --transpose: the {len(labels)} names in {args.file.name} name its columns, now samples; "
            "no channel labels are sent",
            file=sys.stderr,
        )
        return None
    if len(labels) != n_channels:  # a reader's promise broken; refuse rather than mislabel
        raise ValueError(f"{args.file.name} names {len(labels)} channels but holds {n_channels}")
    try:
        return ChannelDescription.from_dict({"labels": labels}).to_dict()
    except ChannelDescriptionError as exc:
        raise ValueError(f"{args.file.name}: its channel names cannot be the session's labels: {exc}") from None


def _non_finite_chunks(data: np.ndarray, args: argparse.Namespace) -> list[tuple[int, int]]:
    """The (start, stop) sample ranges of chunks holding NaN or infinity; refuses the file without
    --skip-non-finite, naming the first bad value's sample and channel in the file."""
    bad_rows = ~np.isfinite(data).all(axis=1) if data.dtype.kind == "f" else np.zeros(data.shape[0], bool)
    if not bad_rows.any():
        return []
    chunks = sorted({int(row) // args.chunk for row in np.flatnonzero(bad_rows)})
    ranges = [(c * args.chunk, min((c + 1) * args.chunk, data.shape[0])) for c in chunks]
    if args.skip_non_finite:
        return ranges
    row = int(np.flatnonzero(bad_rows)[0])
    channel = int(np.flatnonzero(~np.isfinite(data[row]))[0])
    where = f"sample {row}, channel {channel}" + (" (after --transpose)" if args.transpose else "")
    raise ValueError(
        f"{args.file.name}: {data[row, channel]} at {where}; {len(ranges)} chunk(s) of {args.chunk} samples hold "
        "NaN or infinity and would be refused; pass --skip-non-finite to leave them out (their output rows are NaN)"
    )


def _prepare_session(client: LRRClientSync, args: argparse.Namespace, data: np.ndarray) -> dict[str, Any] | None:
    """Say what the key holds; refuse what would silently mix recordings, transpose, or pass raw data on."""
    session = _session_or_none(client)
    bound = session.get("n_channels") if session is not None else None
    if bound not in (None, data.shape[1]) and bound == data.shape[0]:
        raise ValueError(
            f"session '{args.key}' has {bound} channels, the number of samples in "
            f"{args.file.name} ({data.shape[0]} x {data.shape[1]}); if the file is channels x samples, "
            "pass --transpose"
        )
    fits = args.mode in ("fit", "fit-then-transform")
    holds = session is not None and session["n_samples"] > 0
    print(f"lrr stream: {_describe_session(args.key, session)}", file=sys.stderr)
    if fits and holds and not (args.reset or args.append):
        raise ValueError(
            f"session '{args.key}' already holds {session['n_samples']} fitted samples"  # type: ignore[index]
            f" ({_weights_text(session)}); pass --append to add {args.file.name} to them, or --reset to start clean"
        )
    settings = settings_with_channel_groups(session, args.channel_groups)
    if settings is not None:
        _refuse_regrouping(args, session)
    if args.reset and session is not None:
        client.reset()
        print(f"lrr stream: --reset: session '{args.key}' cleared", file=sys.stderr)
    if args.mode == "transform" and not args.allow_identity and (session is None or _identity(session)):
        raise ValueError(
            f"session '{args.key}' has no weights (nothing fitted, uploaded or defaulted): the output would equal "
            f"the input; fit it first (lrr stream --fit), upload weights (lrr weights put), or pass --allow-identity"
        )
    if settings is not None:
        client.put_settings(settings)
        dropped = session is not None and not args.reset and not _identity(session)
        print(
            f"lrr stream: --group-by: session '{args.key}' now groups its channels by "
            f"{json.dumps(args.channel_groups)}" + ("; it starts over: its weights were dropped" if dropped else ""),
            file=sys.stderr,
        )
    return session


def _refuse_regrouping(args: argparse.Namespace, session: dict[str, Any] | None) -> None:
    """Refuse a --group-by that would start over a session whose statistics (--append) or weights
    (--transform) the command means to use."""
    if session is None or args.reset:
        return
    now = json.dumps(session.get("settings", {}).get("channel_groups"))
    change = (
        f"--group-by {','.join(args.group_by)} changes how session '{args.key}' groups its channels (now "
        f"channel_groups={now}), which starts it over"
    )
    if args.append and session.get("n_samples"):
        raise ValueError(
            f"{change} and drops the {session['n_samples']} fitted samples --append would add to; pass --reset "
            "instead of --append, or leave --group-by out"
        )
    if args.mode == "transform" and not _identity(session):
        raise ValueError(
            f"{change} and drops the weights --transform would apply; fit it with the new grouping (lrr stream "
            f"--reset --group-by ...), or leave --group-by out"
        )


def _replay(
    client: LRRClientSync,
    args: argparse.Namespace,
    data: np.ndarray,
    rate: float | None,
    skipped: list[tuple[int, int]],
) -> tuple[np.ndarray | None, set[tuple[int, str]], CleaningReport | None]:
    """Fit and/or transform; returns the output (None for --fit), the (version, source) of weights applied,
    and what the cleaning did (clients/cleaning.py)."""
    left_out = {start for start, _ in skipped}
    applied: set[tuple[int, str]] = set()
    warn = _grouping_warning(client)
    if args.mode in ("fit", "fit-then-transform"):
        for _ in _after_first(client.fit_stream(_paced(data, args, rate, "fit", left_out)), warn):
            pass
        client.solve()
    if args.mode == "fit":
        return None, applied, None
    output = np.full(data.shape, np.nan, dtype=np.float64 if data.dtype == np.float64 else np.float32)
    starts = [start for start in range(0, data.shape[0], args.chunk) if start not in left_out]
    described = _session_or_none(client) or {}  # none: a new key transformed with --allow-identity
    groups = session_groups(described, data.shape[1], client.get_channels() if described else None)
    _refuse_pass_through(args, described, groups)
    cleaning = CleaningAccumulator(groups, data.shape[1])
    try:
        replies = _after_first(client.stream(Mode.TRANSFORM, _paced(data, args, rate, "transform", left_out)), warn)
        for start, reply in zip(starts, replies, strict=True):
            cleaned = reply.data  # type: ignore[union-attr]
            output[start : start + cleaned.shape[0]] = cleaned
            cleaning.add(data[start : start + cleaned.shape[0]], cleaned)
            applied.add((reply.weights_version, str(reply.weights_source)))  # type: ignore[union-attr]
    except IdentityTransformError:
        raise ValueError(
            f"session '{args.key}' has no weights after fitting {args.file.name} (the fit may not determine them: "
            "too few samples or channels per group); the output would equal the input, so none was written; "
            "pass --allow-identity to write it anyway"
        ) from None
    return output, applied, cleaning.report()


def _grouping_warning(client: LRRClientSync) -> Callable[[], None]:
    """A check to run after the first reply (the session is bound then): one warning on stderr if the session's
    channel_groups names fields it could not resolve; later calls do nothing."""
    done = False

    def warn() -> None:
        nonlocal done
        if done:
            return
        done = True
        session = _session_or_none(client)
        if session is not None and (note := grouping_fallback(session)) is not None:
            print(f"lrr stream: warning: {note}", file=sys.stderr)

    return warn


def _after_first(replies: Iterable[T], action: Callable[[], None]) -> Iterator[T]:
    """`replies` unchanged, with `action` run once the first of them has arrived."""
    iterator = iter(replies)
    for first in iterator:
        action()
        yield first
        break
    yield from iterator


def _refuse_pass_through(args: argparse.Namespace, session: dict[str, Any], groups: list[list[int]]) -> None:
    """Refuse (unless --allow-identity) a session whose every channel group is smaller than min_group_size:
    its weights, fitted or not, leave every channel unchanged."""
    smallest = session.get("settings", {}).get("min_group_size")
    if args.allow_identity or not groups or smallest is None or any(len(group) >= smallest for group in groups):
        return
    raise ValueError(
        f"every channel group of session '{args.key}' has fewer than min_group_size={smallest} channels "
        f"(largest: {max(len(group) for group in groups)}), so its weights leave every channel unchanged and the "
        "output would equal the input; group more channels together (lrr settings put --key "
        f"{args.key} block_size=... or channel_groups=...), or pass --allow-identity"
    )


def _account_for_abort(client: LRRClientSync, args: argparse.Namespace, exc: BaseException) -> None:
    """After an interrupted or failed replay that fitted: one line on what the session now holds, and the undo."""
    if args.mode == "transform":
        return
    try:
        session = _session_or_none(client)
    except Exception:  # the server is gone too: nothing more to say than the error itself
        return
    if session is None:
        return
    what = "interrupted" if isinstance(exc, KeyboardInterrupt) else "stopped"
    print(
        f"lrr stream: {what}: session '{args.key}' now holds {session['n_samples']} fitted samples "
        f"({_weights_text(session)}); to undo: lrr reset --key {args.key}",
        file=sys.stderr,
    )


def _session_or_none(client: LRRClientSync) -> dict[str, Any] | None:
    """The session's description (GET /streams/{key}), or None when the server has no such session."""
    try:
        session: dict[str, Any] = client.info()
    except UnknownSessionError:
        return None
    return session


def _identity(session: dict[str, Any]) -> bool:
    return session.get("weights_source") == "none"


def _weights_text(session: dict[str, Any] | None) -> str:
    if session is None or _identity(session):
        return "no weights"
    return f"weights version {session['weights_version']}, {session['weights_source']}"


def _describe_session(key: str, session: dict[str, Any] | None) -> str:
    if session is None:
        return f"session '{key}' is new"
    return f"session '{key}' holds {session['n_samples']} fitted samples and {_weights_text(session)}"


def _summary(
    args: argparse.Namespace,
    data: np.ndarray,
    seconds: float,
    output: np.ndarray | None,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    applied: set[tuple[int, str]],
    skipped: list[tuple[int, int]],
    description: dict[str, Any] | None,
) -> CommandResult:
    """The command's result: what went through, which weights the output got, what was skipped, the channel
    labels sent and the session's grouping."""
    weights = [{"weights_version": version, "weights_source": source} for version, source in sorted(applied)]
    summary = {
        "file": str(args.file),
        "key": args.key,
        "mode": args.mode,
        "samples": int(data.shape[0]),
        "channels": int(data.shape[1]),
        "chunk": args.chunk,
        "seconds": round(seconds, 3),
        "output": str(args.output) if output is not None else None,
        "weights_applied": weights,
        "skipped_chunks": [{"start": start, "stop": stop} for start, stop in skipped],
        "n_samples_before": before["n_samples"] if before else 0,
        "n_samples_after": after["n_samples"] if after else 0,
        "labels": description["labels"] if description is not None else None,
        "grouping": after.get("grouping") if after else None,
    }
    text = (
        f"{args.mode}: {data.shape[0]} samples x {data.shape[1]} channels through '{args.key}' "
        f"in {seconds:.2f} s" + (f", wrote {args.output}" if output is not None else "")
    )
    if weights:
        text += "; applied " + ", ".join(
            f"weights version {w['weights_version']} ({w['weights_source']})" for w in weights
        )
    if description is not None:
        text += f"; sent {len(description['labels'])} channel labels"
    grouping = summary["grouping"]
    if isinstance(grouping, dict) and grouping.get("n_groups") is not None:
        text += f"; {grouping['n_groups']} channel group(s) ({grouping.get('source')})"
    if skipped:
        shown = ", ".join(f"{start}-{stop - 1}" for start, stop in skipped[:10]) + (" ..." if len(skipped) > 10 else "")
        text += f"; skipped {len(skipped)} chunk(s) holding NaN or infinity (samples {shown}; output rows NaN)"
    return CommandResult(summary, text)


def _paced(
    data: np.ndarray, args: argparse.Namespace, rate: float | None, label: str, left_out: set[int]
) -> Iterator[np.ndarray]:
    """Chunks of `data` in order but those starting at a sample in `left_out`, paced at `rate` for --rate
    realtime, with a progress bar on a terminal."""
    realtime = args.rate == "realtime"
    started = time.monotonic()
    with tqdm(
        total=data.shape[0],
        unit="samples",
        unit_scale=True,
        desc=label,
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
        leave=False,
    ) as bar:
        for start in range(0, data.shape[0], args.chunk):
            chunk = data[start : start + args.chunk]
            if realtime and rate:
                delay = started + start / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            if start not in left_out:
                yield chunk
            bar.update(chunk.shape[0])
