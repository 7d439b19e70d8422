"""Fit through the service at 384 channels in 30-sample chunks, with a transform stream on the same key.

Measures fit throughput (samples/s) alone and under a paced transform stream, how stale the weights
in use are (time from a fit sample's ack until weights that include it are applied, seen in the
acks' `weights_version`), and the transform stream's p99 without fit traffic, with real-time fit
traffic, with fit traffic at full speed and with a control stream (a second paced transform
stream on another key), in interleaved rounds. The traffic beside the measured transform stream
comes from its own process (bench/fit_sender.py), like a second rig.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from latency import summarize
from workload import FS, chunks, dense_weights, expect_ack, expect_chunk, frames, upload_weights
from wsload import CHECK_EVERY, Check, StreamRun, drive, no_wait, open_stream, paced, pooled, run_paced

from lrr_service.core.codec import AckReply, decode_reply

N_CHANNELS = 384
N_SAMPLES = 30
PERIOD = N_SAMPLES / FS
"""Duration of one chunk (s): the real-time pacing of both streams."""
KEY = "bench-fit-384"
CONTROL_KEY = "bench-fit-control-384"
"""The control stream's key: a paced transform stream like a second rig, instead of fit traffic."""
WINDOW = 32
WARMUP_FRAMES = 20
ROUNDS = 3
FIT_SENDER = Path(__file__).with_name("fit_sender.py")


def fit_frames() -> list[bytes]:
    """The fit stream's frames (64 different chunks, reused cyclically)."""
    return frames(chunks(N_SAMPLES, N_CHANNELS, "float32", count=64, seed=5))


@dataclass
class FitRun:
    """One fit stream: its timing, the samples the session held before it, and the weights lag samples (s)."""

    run: StreamRun
    n_before: int
    lags: list[float] = field(default_factory=list)
    """Per solve seen: from the ack of its newest sample until it was in use (the freshest data's lag)."""
    worst_lags: list[float] = field(default_factory=list)
    """Per solve seen: from the ack of the first sample it did NOT include until the next solve was in use."""

    def samples_per_second(self) -> float:
        """Fit samples acknowledged per second."""
        return len(self.run.sent) * N_SAMPLES / self.run.elapsed


async def fit_stream(
    url: str,
    wire: list[bytes],
    count: int,
    period: float | None,
    check: Check = expect_ack,
    check_every: int = CHECK_EVERY,
) -> FitRun:
    """Fit `count` frames, paced at `period` or pipelined when None; returns the run and the prior n_samples.

    `check` sees every `check_every`-th ack (see `drive`)."""
    async with await open_stream(url) as ws:
        await ws.send(wire[0])
        first = decode_reply(await ws.recv())
        assert isinstance(first, AckReply), first
        schedule = paced(period, time.perf_counter(), count) if period else no_wait
        run = await drive(ws, wire, count, schedule, check, window=None if period else WINDOW, check_every=check_every)
        return FitRun(run, first.n_samples)


def weights_lags(fit: FitRun, seen: list[tuple[float, int]]) -> tuple[list[float], list[float]]:
    """(freshest lags, worst lags) in seconds from the solves seen in use and the fit acks' times."""
    acked_counts = [fit.n_before + (i + 1) * N_SAMPLES for i in range(len(fit.run.sent))]

    def acked_at(n_samples: int) -> float | None:
        i = bisect.bisect_left(acked_counts, n_samples)
        return float(fit.run.received[i]) if n_samples > fit.n_before and i < len(acked_counts) else None

    fresh, worst = [], []
    for k, (seen_at, solved) in enumerate(seen):
        newest = acked_at(solved)
        if newest is not None:
            fresh.append(seen_at - newest)
        if k + 1 < len(seen):
            first_left_out = acked_at(solved + 1)
            if first_left_out is not None:
                worst.append(seen[k + 1][0] - first_left_out)
    return fresh, worst


async def paced_transform(service_ws: str, tr_wire: list[bytes], seconds: float) -> StreamRun:
    """The paced transform stream on KEY for `seconds` (one chunk per chunk duration)."""
    return await run_paced(
        f"{service_ws}/ws/{KEY}/transform", tr_wire, int(seconds / PERIOD), PERIOD, expect_chunk(N_SAMPLES, N_CHANNELS)
    )


async def fit_with_transform(
    service_ws: str, base_url: str, tr_wire: list[bytes], seconds: float, mode: str, fit_count: int
) -> tuple[dict[str, Any], StreamRun]:
    """A second stream from its own process (`mode`: paced or full-speed fit on KEY, or the paced
    `control` transform stream on CONTROL_KEY) and a paced transform stream on KEY from this one;
    returns the sender's results (bench/fit_sender.py) and the transform run."""
    sender = await asyncio.create_subprocess_exec(
        sys.executable,
        str(FIT_SENDER),
        service_ws,
        base_url,
        str(fit_count),
        mode,
        stdout=asyncio.subprocess.PIPE,
        cwd=FIT_SENDER.parent,
    )
    assert sender.stdout is not None
    try:
        if (await sender.stdout.readline()).strip() != b"ready":
            raise RuntimeError("the fit sender did not start")
        transform = await paced_transform(service_ws, tr_wire, seconds)
        output, _ = await sender.communicate()
    finally:
        if sender.returncode is None:  # this run failed: do not leave the sender streaming
            sender.kill()
            await sender.wait()
    if sender.returncode != 0:
        raise RuntimeError(f"the fit sender failed with exit code {sender.returncode}")
    return json.loads(output), transform


def lag_summary(lags: list[float], worst_lags: list[float]) -> dict[str, float]:
    """Median and worst of the freshest-data lags, and the worst lag any sample saw (all given in s), in ms."""
    nan = float("nan")
    return {
        "n": len(lags),
        "median_ms": float(np.median(lags)) * 1e3 if lags else nan,
        "max_ms": max(lags) * 1e3 if lags else nan,
        "worst_sample_ms": max(worst_lags) * 1e3 if worst_lags else nan,
    }


CONDITIONS = {"realtime_fit": "paced", "full_speed_fit": "full", "control_stream": "control"}
"""What runs beside the measured transform stream in each round (bench/fit_sender.py modes)."""


async def measure_fit(
    service_ws: str, base_url: str, seconds: float = 3.0, progress: Any = print, rounds: int = ROUNDS
) -> dict[str, Any]:
    """The whole fit scenario; returns JSON-able results.

    The paced transform stream is measured alone and beside each condition in `rounds` interleaved
    rounds, so that drift in the machine's load reaches every condition alike; a ratio is a
    condition's p99 over the same round's p99 alone, and the figure is the median over rounds.
    """
    fit_wire = fit_frames()
    tr_wire = frames(chunks(N_SAMPLES, N_CHANNELS, "float32", seed=6))
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        await client.delete(f"/streams/{KEY}")
    await fit_stream(f"{service_ws}/ws/{KEY}/fit", fit_wire, 200, None)  # statistics and first weights
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        (await client.post(f"/streams/{KEY}/solve")).raise_for_status()
    upload_weights(base_url, CONTROL_KEY, dense_weights(N_CHANNELS))
    alone = await fit_stream(f"{service_ws}/ws/{KEY}/fit", fit_wire, int(seconds * 4000), None)
    progress(f"  fit alone, pipelined: {alone.samples_per_second():,.0f} samples/s")
    counts = {
        "paced": int(seconds / PERIOD),
        "control": int(seconds / PERIOD),
        "full": int(alone.samples_per_second() / N_SAMPLES * seconds),
    }  # about as long as the transform stream
    transforms: dict[str, list[StreamRun]] = {"alone": [], **{name: [] for name in CONDITIONS}}
    senders: dict[str, list[dict[str, Any]]] = {name: [] for name in CONDITIONS}
    for round_ in range(rounds):
        transforms["alone"].append(await paced_transform(service_ws, tr_wire, seconds))
        for name, mode in CONDITIONS.items():
            sent, transform = await fit_with_transform(service_ws, base_url, tr_wire, seconds, mode, counts[mode])
            senders[name].append(sent)
            transforms[name].append(transform)
        p99s = "  ".join(f"{name} {runs[-1].summary(WARMUP_FRAMES).p99:,.0f}" for name, runs in transforms.items())
        progress(f"  round {round_ + 1}: transform p99 µs: {p99s}")
    ratios = {
        name: [
            run.summary(WARMUP_FRAMES).p99 / quiet.summary(WARMUP_FRAMES).p99
            for run, quiet in zip(transforms[name], transforms["alone"])
        ]
        for name in CONDITIONS
    }
    full_rates = [sent["samples_per_s"] for sent in senders["full_speed_fit"]]
    progress(
        "  p99 ratios to alone (median of rounds): "
        + ", ".join(f"{name} {float(np.median(values)):.2f}x" for name, values in ratios.items())
        + f"; full-speed fit {float(np.median(full_rates)):,.0f} samples/s"
    )

    def lag(name: str) -> dict[str, float]:
        return lag_summary(
            [x for sent in senders[name] for x in sent["lags"]],
            [x for sent in senders[name] for x in sent["worst_lags"]],
        )

    return {
        "rounds": rounds,
        "fit_alone_samples_per_s": alone.samples_per_second(),
        "fit_with_transform_samples_per_s": float(np.median(full_rates)),
        "fit_with_transform_samples_per_s_by_round": full_rates,
        "transform_alone": summarize(pooled(transforms["alone"], WARMUP_FRAMES)).as_dict(),
        **{
            f"transform_with_{name}": summarize(pooled(transforms[name], WARMUP_FRAMES)).as_dict()
            for name in CONDITIONS
        },
        "p99_ratio": {name: float(np.median(values)) for name, values in ratios.items()},
        "p99_ratio_by_round": ratios,
        "lag_realtime_fit": lag("realtime_fit"),
        "lag_full_speed_fit": lag("full_speed_fit"),
        "latencies_us": {name: (pooled(runs, WARMUP_FRAMES) * 1e6).tolist() for name, runs in transforms.items()},
    }
