"""`lrr stream FILE --key K`: replay a recording through the service and write the rereferenced output."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lrr_service.clients.commands.common import CommandResult, add_direct_option, add_server_options
from lrr_service.clients.recordings import read_recording, write_recording
from lrr_service.clients.sync import LRRClientSync

DEFAULT_CHUNK = 256


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `stream` subcommand."""
    parser = subcommands.add_parser(
        "stream",
        help="replay a recording (.npy, .csv, .edf, .bdf) through the service",
        description="Send a recording through a session chunk by chunk and write the rereferenced output. "
        "--fit-then-transform (the default) fits on the whole recording, solves, then transforms it.",
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
    add_server_options(parser)
    add_direct_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> CommandResult:
    """Check the options, read the file, stream it, write the output; returns a summary."""
    if args.chunk < 1:
        raise ValueError(f"--chunk must be at least 1 sample, got {args.chunk}")
    if args.mode != "fit" and args.output is None:
        raise ValueError(f"-o OUTPUT (.npy or .csv) is required to {args.mode.replace('-', ' ')}")
    if args.output is not None and args.output.suffix.lower() not in (".npy", ".csv"):
        raise ValueError(f"-o {args.output}: expected an output ending in .npy or .csv")
    recording = read_recording(args.file)
    rate = args.sample_rate or recording.sample_rate
    if args.rate == "realtime" and not rate:
        raise ValueError(f"--rate realtime needs a sample rate: {args.file.name} has none, pass --sample-rate HZ")
    data = recording.data
    started = time.monotonic()
    output = None
    with LRRClientSync(
        args.url, args.key, token=args.token, max_in_flight=args.max_in_flight, direct=args.direct
    ) as client:
        if args.mode in ("fit", "fit-then-transform"):
            for _ in client.fit_stream(_paced(data, args, rate, "fit")):
                pass
            client.solve()
        if args.mode in ("transform", "fit-then-transform"):
            pieces = list(client.transform_stream(_paced(data, args, rate, "transform")))
            output = np.concatenate(pieces) if pieces else np.zeros((0, data.shape[1]), data.dtype)
    if output is not None:
        write_recording(args.output, output)
    seconds = time.monotonic() - started
    summary = {
        "file": str(args.file),
        "key": args.key,
        "mode": args.mode,
        "samples": int(data.shape[0]),
        "channels": int(data.shape[1]),
        "chunk": args.chunk,
        "seconds": round(seconds, 3),
        "output": str(args.output) if output is not None else None,
    }
    text = (
        f"{args.mode}: {data.shape[0]} samples x {data.shape[1]} channels through '{args.key}' "
        f"in {seconds:.2f} s" + (f", wrote {args.output}" if output is not None else "")
    )
    return CommandResult(summary, text)


def _paced(data: np.ndarray, args: argparse.Namespace, rate: float | None, label: str) -> Iterator[np.ndarray]:
    """Chunks of `data` in order, paced at `rate` for --rate realtime, with a progress bar on a terminal."""
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
            yield chunk
            bar.update(chunk.shape[0])
