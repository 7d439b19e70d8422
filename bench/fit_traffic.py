"""Fit through the service at 384 channels in 30-sample chunks, with a transform stream on the same key.

Measures fit throughput (samples/s) alone and under a paced transform stream, how stale the weights
in use are (time from a fit sample's ack until weights that include it are applied, polled over
REST), and the transform stream's p99 without fit traffic, with real-time fit traffic and with
fit traffic at full speed.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from core.codec import AckReply, decode_reply
from latency import summarize
from wsload import StreamRun, drive, no_wait, open_stream, paced, pooled, run_paced
from workload import FS, chunks, expect_ack, expect_chunk, frames

N_CHANNELS = 384
N_SAMPLES = 30
PERIOD = N_SAMPLES / FS
"""Duration of one chunk (s): the real-time pacing of both streams."""
KEY = "bench-fit-384"
WINDOW = 32
POLL_SECONDS = 0.02
WARMUP_FRAMES = 20


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


async def fit_stream(url: str, wire: list[bytes], count: int, period: float | None) -> FitRun:
    """Fit `count` frames, paced at `period` or pipelined when None; returns the run and the prior n_samples."""
    async with await open_stream(url) as ws:
        await ws.send(wire[0])
        first = decode_reply(await ws.recv())
        assert isinstance(first, AckReply), first
        schedule = paced(period, time.perf_counter(), count) if period else no_wait
        run = await drive(ws, wire, count, schedule, expect_ack, window=None if period else WINDOW)
        return FitRun(run, first.n_samples)


async def poll_lag(base_url: str, fit: asyncio.Task[FitRun]) -> list[tuple[float, int]]:
    """Poll GET /streams/{key} until `fit` ends; returns (time, n_samples_solved) whenever it changed."""
    seen: list[tuple[float, int]] = []
    last = -1
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        while not fit.done():
            solved = (await client.get(f"/streams/{KEY}")).json()["n_samples_solved"]
            if solved != last:
                seen.append((time.perf_counter(), solved))
                last = solved
            await asyncio.sleep(POLL_SECONDS)
    return seen


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


async def fit_with_transform(service_ws: str, base_url: str, fit_wire: list[bytes], tr_wire: list[bytes],
                             seconds: float, fit_period: float | None, fit_count: int) -> tuple[FitRun, StreamRun]:
    """A fit stream (paced, or full speed when `fit_period` is None) and a paced transform stream on one key."""
    fit = asyncio.create_task(fit_stream(f"{service_ws}/ws/{KEY}/fit", fit_wire, fit_count, fit_period))
    poller = asyncio.create_task(poll_lag(base_url, fit))
    transform = await paced_transform(service_ws, tr_wire, seconds)
    fit_run = await fit
    fit_run.lags, fit_run.worst_lags = weights_lags(fit_run, await poller)
    return fit_run, transform


def lag_summary(fit: FitRun) -> dict[str, float]:
    """Median and worst of the freshest-data lag, and the worst lag any sample saw, in ms."""
    nan = float("nan")
    fresh, worst = fit.lags, fit.worst_lags
    return {"n": len(fresh), "median_ms": float(np.median(fresh)) * 1e3 if fresh else nan,
            "max_ms": max(fresh) * 1e3 if fresh else nan,
            "worst_sample_ms": max(worst) * 1e3 if worst else nan}  # fmt: skip


async def measure_fit(service_ws: str, base_url: str, seconds: float = 3.0, progress: Any = print) -> dict[str, Any]:
    """The whole fit scenario; returns JSON-able results."""
    fit_wire = frames(chunks(N_SAMPLES, N_CHANNELS, "float32", count=64, seed=5))
    tr_wire = frames(chunks(N_SAMPLES, N_CHANNELS, "float32", seed=6))
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        await client.delete(f"/streams/{KEY}")
    await fit_stream(f"{service_ws}/ws/{KEY}/fit", fit_wire, 200, None)  # statistics and first weights
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        (await client.post(f"/streams/{KEY}/solve")).raise_for_status()
    alone = await fit_stream(f"{service_ws}/ws/{KEY}/fit", fit_wire, int(seconds * 4000), None)
    progress(f"  fit alone, pipelined: {alone.samples_per_second():,.0f} samples/s")
    quiet = [await paced_transform(service_ws, tr_wire, seconds / 2)]
    realtime_fit, realtime_tr = await fit_with_transform(service_ws, base_url, fit_wire, tr_wire, seconds, PERIOD,
                                                         int(seconds / PERIOD))
    progress(f"  transform alone: p99 {quiet[0].summary(WARMUP_FRAMES).p99:,.0f} µs")
    progress(f"  with real-time fit: transform p99 {realtime_tr.summary(WARMUP_FRAMES).p99:,.0f} µs, "
             f"weights lag median {lag_summary(realtime_fit)['median_ms']:.0f} ms")
    full_count = int(alone.samples_per_second() / N_SAMPLES * seconds)  # about as long as the transform stream
    quiet.append(await paced_transform(service_ws, tr_wire, seconds / 2))  # before and after: same load drift
    full_fit, full_tr = await fit_with_transform(service_ws, base_url, fit_wire, tr_wire, seconds, None, full_count)
    quiet.append(await paced_transform(service_ws, tr_wire, seconds / 2))
    progress(f"  with full-speed fit: {full_fit.samples_per_second():,.0f} samples/s, transform p99 "
             f"{full_tr.summary(WARMUP_FRAMES).p99:,.0f} µs, weights lag median "
             f"{lag_summary(full_fit)['median_ms']:.0f} ms")
    alone_latencies = pooled(quiet, WARMUP_FRAMES)
    return {
        "fit_alone_samples_per_s": alone.samples_per_second(),
        "fit_with_transform_samples_per_s": full_fit.samples_per_second(),
        "transform_alone": summarize(alone_latencies).as_dict(),
        "transform_with_realtime_fit": realtime_tr.summary(WARMUP_FRAMES).as_dict(),
        "transform_with_full_speed_fit": full_tr.summary(WARMUP_FRAMES).as_dict(),
        "lag_realtime_fit": lag_summary(realtime_fit),
        "lag_full_speed_fit": lag_summary(full_fit),
        "latencies_us": {
            "alone": (alone_latencies * 1e6).tolist(),
            "realtime_fit": (realtime_tr.latencies[WARMUP_FRAMES:] * 1e6).tolist(),
            "full_speed_fit": (full_tr.latencies[WARMUP_FRAMES:] * 1e6).tolist(),
        },
    }
