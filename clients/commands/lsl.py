"""`lrr lsl --input NAME --key K`: run the LSL bridge (see clients/lsl_bridge.py)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
from typing import TYPE_CHECKING

from lrr_service.clients.commands.common import (
    CommandResult,
    add_direct_option,
    add_group_by_option,
    add_server_options,
    group_by_setting,
)

if TYPE_CHECKING:
    from lrr_service.clients.lsl_bridge import BridgeStats, LSLBridge


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `lsl` subcommand."""
    parser = subcommands.add_parser(
        "lsl",
        help="bridge an LSL stream through the service to a new LSL stream NAME-lrr",
        description="Resolve the LSL stream NAME, send its chunks through the service and publish the result as "
        "NAME-lrr (same channel count, rate, labels and per-channel fields; input timestamps kept). The "
        "labels and per-channel fields of the stream's description (desc/channels/channel) become the "
        "session's channel description, which --group-by can group by. With --fit-seconds S "
        "the first S seconds are only fitted (nothing published), then the session is solved and the "
        "rest is transformed; without it every chunk goes through fit_transform. Needs pylsl "
        "(pip install 'lrr-service[lsl]').",
    )
    parser.add_argument("--input", required=True, metavar="NAME", help="name of the LSL stream to read")
    parser.add_argument(
        "--fit-seconds",
        type=float,
        default=None,
        metavar="S",
        help="fit on the first S seconds only, then transform (default: fit_transform throughout)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="stop after S seconds (default: run until interrupted)",
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=8,
        metavar="N",
        help="chunks sent before waiting for their replies (default 8)",
    )
    parser.add_argument(
        "--resolve-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="how long to look for the input stream (default 10)",
    )
    add_group_by_option(parser)
    add_server_options(parser)
    add_direct_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> CommandResult:
    """Run the bridge until --duration passes, Ctrl-C or SIGTERM; report what went through."""
    from lrr_service.clients.lsl_bridge import LSLBridge

    channel_groups = group_by_setting(args.group_by)
    bridge = LSLBridge(
        args.input,
        args.url,
        args.key,
        args.token,
        fit_seconds=args.fit_seconds,
        max_in_flight=args.max_in_flight,
        resolve_timeout=args.resolve_timeout,
        direct=args.direct,
        channel_groups=channel_groups,
        on_note=lambda note: print(f"lrr lsl: {note}", file=sys.stderr, flush=True),
    )
    stats = asyncio.run(_run_until_signalled(bridge, args.duration))
    data = dataclasses.asdict(stats)
    text = (
        f"{stats.input_name} -> {stats.output_name}: {stats.samples_in} samples in, "
        f"{stats.samples_fitted} fitted, {stats.samples_not_fitted} not fitted (non-finite), "
        f"{stats.samples_out} published"
        + (
            f", {stats.samples_passed_through} of them unchanged (no weights yet)"
            if stats.samples_passed_through
            else ""
        )
    )
    return CommandResult(data, text)


async def _run_until_signalled(bridge: LSLBridge, duration: float | None) -> BridgeStats:
    """Run the bridge; SIGINT / SIGTERM stop it cleanly (pending replies are still published)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        return await bridge.run(duration, stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
