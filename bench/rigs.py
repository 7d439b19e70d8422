"""Concurrent rigs: how many 96-channel, 30 kHz, 1 ms-chunk streams the server keeps in real time.

Each rig is its own connection and session (uploaded weights), paced at one 30-sample frame per ms,
their send times spread over the millisecond. Each count runs REPEATS times, and is kept in real
time when the median of those runs' p99 (over all frames of the run) is under 5 ms and every rig
sent at >= 98 % of its real-time rate in every run (the client kept up). The repeats keep one
burst of other load on this shared machine from deciding a count.
Server and client CPU use are recorded to show which side ran out, and the same count of paced
streams against the bare echo gives the transport floor of each count on this machine.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
from latency import summarize
from processes import cpu_seconds
from workload import FS, chunks, dense_weights, expect_chunk, expect_echo, frames, upload_weights
from wsload import pooled, run_paced_many

N_CHANNELS = 96
N_SAMPLES = 30
P99_LIMIT_US = 5000.0
RATE_FLOOR = 0.98
RIG_COUNTS = (1, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24)
WARMUP_FRAMES = 50
REPEATS = 3


async def measure_rigs(
    service_base: str,
    service_ws: str,
    server_pid: int,
    echo_ws: str,
    echo_pid: int,
    seconds: float = 2.0,
    counts: tuple[int, ...] = RIG_COUNTS,
    progress: Any = print,
) -> list[dict[str, Any]]:
    """Run each rig count in turn until two counts in a row miss real time; one result row per count."""
    period = N_SAMPLES / FS
    wire = frames(chunks(N_SAMPLES, N_CHANNELS, "float32"))
    frames_per_rig = int(seconds / period)
    weights = dense_weights(N_CHANNELS)
    for i in range(max(counts)):
        upload_weights(service_base, f"bench-rig-{i}", weights)
    rows, misses = [], 0
    for count in counts:
        echo_cpu, started = cpu_seconds(echo_pid), time.perf_counter()
        echo = await run_paced_many(
            [f"{echo_ws}/echo"] * count, wire, frames_per_rig, period, expect_echo(len(wire[0]))
        )
        echo_cpu = (cpu_seconds(echo_pid) - echo_cpu) / (time.perf_counter() - started)
        urls = [f"{service_ws}/ws/bench-rig-{i}/transform" for i in range(count)]
        server_cpu, client_cpu, started = cpu_seconds(server_pid), cpu_seconds(os.getpid()), time.perf_counter()
        repeats = [
            await run_paced_many(urls, wire, frames_per_rig, period, expect_chunk(N_SAMPLES, N_CHANNELS))
            for _ in range(REPEATS)
        ]
        wall = time.perf_counter() - started
        rates = [(len(run.sent) - 1) / float(run.sent[-1] - run.sent[0]) * period for runs in repeats for run in runs]
        p99s = [summarize(pooled(runs, WARMUP_FRAMES)).p99 for runs in repeats]
        summary = summarize(np.concatenate([pooled(runs, WARMUP_FRAMES) for runs in repeats]))
        kept = float(np.median(p99s)) < P99_LIMIT_US and min(rates) >= RATE_FLOOR
        row = {
            "rigs": count,
            "latency": summary.as_dict(),
            "echo": summarize(pooled(echo, WARMUP_FRAMES)).as_dict(),
            "p99_by_repeat": p99s,
            "min_rate": min(rates),
            "real_time": kept,
            "server_cpu": (cpu_seconds(server_pid) - server_cpu) / wall,
            "echo_server_cpu": echo_cpu,
            "client_cpu": (cpu_seconds(os.getpid()) - client_cpu) / wall,
        }
        rows.append(row)
        progress(
            f"  {count:>3} rigs: p50 {summary.p50:8.0f} µs  p99 by run {' / '.join(f'{v:,.0f}' for v in p99s)}"
            f" µs  (echo p99 "
            f"{row['echo']['p99']:7.0f})  rate {min(rates):.3f}"
            f"  server CPU {row['server_cpu']:.0%} (echo {echo_cpu:.0%})  client CPU {row['client_cpu']:.0%}"
            f"  {'real time' if kept else 'MISSED'}"
        )
        misses = 0 if kept else misses + 1
        if misses == 2:
            break
    return rows


def rigs_per_core(rows: list[dict[str, Any]]) -> float:
    """Machine-load-free capacity: one core divided by the server CPU one rig costs (median over counts)."""
    shares = [row["server_cpu"] / row["rigs"] for row in rows if row["server_cpu"] > 0]
    return 1.0 / float(np.median(shares)) if shares else float("nan")


def max_rigs(rows: list[dict[str, Any]]) -> int:
    """The largest rig count kept in real time with every smaller measured count also kept."""
    best = 0
    for row in rows:
        if not row["real_time"]:
            break
        best = row["rigs"]
    return best
