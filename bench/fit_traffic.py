"""Fit through the service at 384 channels in 30-sample chunks, with a transform stream on the same key.

Measures fit throughput (samples/s) alone and under a paced transform stream, how stale the weights
in use are (time from a fit sample's ack until weights that include it are applied, seen in the
acks' `weights_version`), and the transform stream's p99 without fit traffic, with real-time fit traffic and with
fit traffic at full speed. Under the transform stream, the fit traffic comes from its own process
(bench/fit_sender.py), like a second rig.
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

from core.codec import AckReply, decode_reply
from latency import summarize
from wsload import CHECK_EVERY, Check, StreamRun, drive, no_wait, open_stream, paced, pooled, run_paced
from workload import FS, chunks, dense_weights, expect_ack, expect_chunk, frames, upload_weights

N_CHANNELS = 384
N_SAMPLES = 30
PERIOD = N_SAMPLES / FS
"""Duration of one chunk (s): the real-time pacing of both streams."""
KEY = "bench-fit-384"
CONTROL_KEY = "bench-fit-control-384"
"""The control stream's key: a paced transform stream like a second rig, instead of fit traffic."""
WINDOW = 32
WARMUP_FRAMES = 20
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


async def fit_stream(url: str, wire: list[bytes], count: int, period: float | None,
                     check: Check = expect_ack, check_every: int = CHECK_EVERY) -> FitRun:
    """Fit `count` frames, paced at `period` or pipelined when None; returns the run and the prior n_samples.

    `check` sees every `check_every`-th ack (see `drive`)."""
    async with await open_stream(url) as ws:
        await ws.send(wire[0])
        first = decode_reply(await ws.recv())
        assert isinstance(first, AckReply), first
        schedule = paced(period, time.perf_counter(), count) if period else no_wait
        run = await drive(ws, wire, count, schedule, check, window=None if period else WINDOW,
                          check_every=check_every)  # fmt: skip
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
    return await run_paced(f"{service_ws}/ws/{KEY}/transform", tr_wire, int(seconds / PERIOD), PERIOD,
                           expect_chunk(N_SAMPLES, N_CHANNELS))  # fmt: skip


async def fit_with_transform(service_ws: str, base_url: str, tr_wire: list[bytes], seconds: float,
                             mode: str, fit_count: int) -> tuple[dict[str, Any], StreamRun]:
    """A second stream from its own process (`mode`: paced or full-speed fit on KEY, or the paced
    `control` transform stream on CONTROL_KEY) and a paced transform stream on KEY from this one;
    returns the sender's results (bench/fit_sender.py) and the transform run."""
    sender = await asyncio.create_subprocess_exec(
        sys.executable, str(FIT_SENDER), service_ws, base_url, str(fit_count), mode,
        stdout=asyncio.subprocess.PIPE, cwd=FIT_SENDER.parent,
    )
    assert sender.stdout is not None
    if (await sender.stdout.readline()).strip() != b"ready":
        raise RuntimeError("the fit sender did not start")
    transform = await paced_transform(service_ws, tr_wire, seconds)
    output, _ = await sender.communicate()
    if sender.returncode != 0:
        raise RuntimeError(f"the fit sender failed with exit code {sender.returncode}")
    return json.loads(output), transform


def lag_summary(fit: FitRun) -> dict[str, float]:
    """Median and worst of the freshest-data lag, and the worst lag any sample saw, in ms."""
    nan = float("nan")
    fresh, worst = fit.lags, fit.worst_lags
    return {"n": len(fresh), "median_ms": float(np.median(fresh)) * 1e3 if fresh else nan,
            "max_ms": max(fresh) * 1e3 if fresh else nan,
            "worst_sample_ms": max(worst) * 1e3 if worst else nan}  # fmt: skip


async def measure_fit(service_ws: str, base_url: str, seconds: float = 3.0, progress: Any = print) -> dict[str, Any]:
    """The whole fit scenario; returns JSON-able results."""
    fit_wire = fit_frames()
    tr_wire = frames(chunks(N_SAMPLES, N_CHANNELS, "float32", seed=6))
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        await client.delete(f"/streams/{KEY}")
    await fit_stream(f"{service_ws}/ws/{KEY}/fit", fit_wire, 200, None)  # statistics and first weights
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        (await client.post(f"/streams/{KEY}/solve")).raise_for_status()
    alone = await fit_stream(f"{service_ws}/ws/{KEY}/fit", fit_wire, int(seconds * 4000), None)
    progress(f"  fit alone, pipelined: {alone.samples_per_second():,.0f} samples/s")
    quiet = [await paced_transform(service_ws, tr_wire, seconds / 2)]
    realtime_fit, realtime_tr = await fit_with_transform(service_ws, base_url, tr_wire, seconds, "paced",
                                                         int(seconds / PERIOD))
    progress(f"  transform alone: p99 {quiet[0].summary(WARMUP_FRAMES).p99:,.0f} µs")
    progress(f"  with real-time fit: transform p99 {realtime_tr.summary(WARMUP_FRAMES).p99:,.0f} µs, "
             f"weights lag median {realtime_fit['lag']['median_ms']:.0f} ms")
    full_count = int(alone.samples_per_second() / N_SAMPLES * seconds)  # about as long as the transform stream
    quiet.append(await paced_transform(service_ws, tr_wire, seconds / 2))  # before and after: same load drift
    full_fit, full_tr = await fit_with_transform(service_ws, base_url, tr_wire, seconds, "full", full_count)
    quiet.append(await paced_transform(service_ws, tr_wire, seconds / 2))
    progress(f"  with full-speed fit: {full_fit['samples_per_s']:,.0f} samples/s, transform p99 "
             f"{full_tr.summary(WARMUP_FRAMES).p99:,.0f} µs, weights lag median {full_fit['lag']['median_ms']:.0f} ms")
    upload_weights(base_url, CONTROL_KEY, dense_weights(N_CHANNELS))
    _, control_tr = await fit_with_transform(service_ws, base_url, tr_wire, seconds, "control", int(seconds / PERIOD))
    quiet.append(await paced_transform(service_ws, tr_wire, seconds / 2))
    progress(f"  with a second paced transform stream (control): transform p99 "
             f"{control_tr.summary(WARMUP_FRAMES).p99:,.0f} µs")
    alone_latencies = pooled(quiet, WARMUP_FRAMES)
    return {
        "fit_alone_samples_per_s": alone.samples_per_second(),
        "fit_with_transform_samples_per_s": full_fit["samples_per_s"],
        "transform_alone": summarize(alone_latencies).as_dict(),
        "transform_with_realtime_fit": realtime_tr.summary(WARMUP_FRAMES).as_dict(),
        "transform_with_full_speed_fit": full_tr.summary(WARMUP_FRAMES).as_dict(),
        "transform_with_control_stream": control_tr.summary(WARMUP_FRAMES).as_dict(),
        "lag_realtime_fit": realtime_fit["lag"],
        "lag_full_speed_fit": full_fit["lag"],
        "latencies_us": {
            "alone": (alone_latencies * 1e6).tolist(),
            "realtime_fit": (realtime_tr.latencies[WARMUP_FRAMES:] * 1e6).tolist(),
            "full_speed_fit": (full_tr.latencies[WARMUP_FRAMES:] * 1e6).tolist(),
            "control_stream": (control_tr.latencies[WARMUP_FRAMES:] * 1e6).tolist(),
        },
    }
