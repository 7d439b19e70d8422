"""`lrr demo`: a synthetic rig streamed through a server, reporting artifact power before and after LRR."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator

import numpy as np

from lrr_service.clients.cleaning import (
    cleaning_report,
    plot_report,
    report_json,
    report_text,
    require_plotting,
)
from lrr_service.clients.commands.common import CommandResult, add_output_option
from lrr_service.clients.errors import ServerError
from lrr_service.clients.grouping import session_groups
from lrr_service.clients.local_server import private_server
from lrr_service.clients.sync import LRRClientSync
from lrr_service.clients.synthetic import artifact_part, make_rig


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `demo` subcommand."""
    parser = subcommands.add_parser(
        "demo",
        help="stream a synthetic rig through a server and report the artifact reduction",
        description="N channels of independent signals plus shared 60 Hz line noise and a common-mode drift: "
        "fit on the first --fit-seconds, transform the rest, and print each channel's artifact power "
        "(the part of the signal the artifact waveforms explain) before and after, and the reduction in dB, "
        "per channel group too when the session has several. Uses the server at --url (or $LRR_URL); with "
        "neither it starts its own on a free loopback port with a temporary state dir.",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("LRR_URL") or None,
        help="server base URL (default $LRR_URL; if unset, start a private server)",
    )
    parser.add_argument(
        "--token", default=os.environ.get("LRR_API_TOKEN") or None, help="API token (default $LRR_API_TOKEN)"
    )
    parser.add_argument("--key", default="lrr-demo", help="stream key to use (default lrr-demo; deleted afterwards)")
    parser.add_argument("--channels", type=int, default=8, help="number of channels (default 8)")
    parser.add_argument("--sample-rate", type=float, default=1000.0, help="samples per second (default 1000)")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of the recording (default 6)")
    parser.add_argument("--fit-seconds", type=float, default=3.0, help="seconds used for fitting (default 3)")
    parser.add_argument("--chunk", type=int, default=10, help="samples per frame (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--report",
        metavar="FILE.png",
        help="also draw the per-channel reduction and the solved weights W to this PNG (needs matplotlib: "
        "pip install 'lrr-service[report]')",
    )
    add_output_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> CommandResult:
    """Make the rig, stream it, measure; the session is deleted afterwards."""
    _check(args)
    if args.report:
        require_plotting()
    rig = make_rig(args.channels, int(args.seconds * args.sample_rate), args.sample_rate, seed=args.seed)
    split = int(args.fit_seconds * args.sample_rate)
    with _server(args.url) as url, LRRClientSync(url, args.key, token=args.token) as client:
        _forget(client)
        try:
            for _ in client.fit_stream(_chunks(rig.recording[:split], args.chunk)):
                pass
            client.solve()
            output = np.concatenate(list(client.transform_stream(_chunks(rig.recording[split:], args.chunk))))
            groups = session_groups(client.info())
            weights = client.get_weights() if args.report else None
        finally:
            _forget(client)
    sources = rig.sources[split:]
    report = cleaning_report(artifact_part(rig.recording[split:], sources), artifact_part(output, sources), groups)
    data = {
        "url": url,
        "key": args.key,
        **report_json(report, quantity="artifact_power"),
        "fit_samples": split,
        "transform_samples": int(output.shape[0]),
    }
    text = f"{report_text(report, label='artifact')}\nserver {url}"
    if args.report:
        title = f"lrr demo: artifact power reduction {report.overall.reduction_db:.1f} dB, {args.channels} channels"
        data["report"] = str(plot_report(report, args.report, weights, title=title, label="artifact power"))
        text += f"\nfigure: {args.report}"
    return CommandResult(data, text)


def _check(args: argparse.Namespace) -> None:
    """Refuse option values the rig cannot be built from, saying what is needed."""
    if args.channels < 3:
        raise ValueError(f"--channels must be at least 3 (LRR predicts a channel from the others), got {args.channels}")
    if args.chunk < 1:
        raise ValueError(f"--chunk must be at least 1 sample, got {args.chunk}")
    if args.sample_rate <= 0:
        raise ValueError(f"--sample-rate must be > 0, got {args.sample_rate}")
    if not 0 < args.fit_seconds < args.seconds:
        raise ValueError(f"--fit-seconds must be between 0 and --seconds ({args.seconds}), got {args.fit_seconds}")
    if args.report and not args.report.lower().endswith(".png"):
        raise ValueError(f"--report writes a PNG image: give a file name ending in .png, got {args.report!r}")


@contextlib.contextmanager
def _server(url: str | None) -> Iterator[str]:
    """The given server's URL, or a private server started for the demo and stopped afterwards."""
    if url:
        yield url
        return
    with private_server() as server:
        yield server.url


def _forget(client: LRRClientSync) -> None:
    """Delete the demo session if it exists, so every run starts from nothing."""
    try:
        client.delete()
    except ServerError as exc:
        if exc.status != 404:
            raise


def _chunks(data: np.ndarray, size: int) -> Iterator[np.ndarray]:
    """Consecutive row blocks of `data`."""
    for start in range(0, data.shape[0], size):
        yield data[start : start + size]
