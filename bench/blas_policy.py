"""BLAS thread policy: transform latency on 1 vs 2 OpenBLAS threads, with and without a busy neighbour.

In-process (the engine alone, threadpoolctl limits) and through the service (LRR_BLAS_THREADS),
each quiet and next to a process spinning one core, as happens when a rig's acquisition software
or another service shares the 2-core machine.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

from latency import summarize
from processes import BusyNeighbour, ServerProcess
from threadpoolctl import threadpool_limits
from workload import FS, chunks, dense_weights, expect_chunk, frames, upload_weights
from wsload import run_paced

from lrr_service.core import LRR

ENGINE_SHAPES = ((30, 384), (300, 1024))
SERVICE_SHAPE = (30, 384)
WARMUP_FRAMES = 20


def engine_latency(n_samples: int, n_channels: int, threads: int, seconds: float) -> dict[str, float]:
    """Percentiles (µs) of back-to-back engine transforms on `threads` BLAS threads."""
    engine = LRR()
    engine.load_weights(dense_weights(n_channels))
    data = chunks(n_samples, n_channels, "float32", count=1)[0]
    times = []
    with threadpool_limits(threads):
        engine.transform(data)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(times) < 100:
            started = time.perf_counter()
            engine.transform(data)
            times.append(time.perf_counter() - started)
    return summarize(times).as_dict()


async def service_latency(threads: int, seconds: float, env: dict[str, str]) -> dict[str, float]:
    """Paced 30 x 384 float32 transform round trips (µs) through a server on `threads` BLAS threads."""
    n_samples, n_channels = SERVICE_SHAPE
    period = n_samples / FS
    state = Path(tempfile.mkdtemp(prefix="lrr-bench-blas-")) / "state"
    with ServerProcess(state, env=env | {"LRR_BLAS_THREADS": str(threads)}) as server:
        upload_weights(server.url, "blas", dense_weights(n_channels))
        run = await run_paced(
            f"{server.ws_url}/ws/blas/transform",
            frames(chunks(n_samples, n_channels, "float32")),
            int(seconds / period),
            period,
            expect_chunk(n_samples, n_channels),
        )
    return run.summary(WARMUP_FRAMES).as_dict()


async def measure_blas(env: dict[str, str], seconds: float = 2.0, progress: Any = print) -> list[dict[str, Any]]:
    """Every (where, shape, threads, neighbour) combination; one row each."""
    rows = []
    for busy in (False, True):
        with BusyNeighbour() if busy else contextlib.nullcontext():
            for n_samples, n_channels in ENGINE_SHAPES:
                for threads in (1, 2):
                    latency = engine_latency(n_samples, n_channels, threads, seconds / 2)
                    rows.append(
                        {
                            "where": "engine",
                            "shape": f"{n_samples}x{n_channels}",
                            "threads": threads,
                            "busy_neighbour": busy,
                            "latency": latency,
                        }
                    )
            for threads in (1, 2):
                latency = await service_latency(threads, seconds, env)
                rows.append(
                    {
                        "where": "service",
                        "shape": "x".join(map(str, SERVICE_SHAPE)),
                        "threads": threads,
                        "busy_neighbour": busy,
                        "latency": latency,
                    }
                )
    for row in rows:
        lat = row["latency"]
        progress(
            f"  {row['where']:<8} {row['shape']:>8} {row['threads']} thread(s) "
            f"{'busy neighbour' if row['busy_neighbour'] else 'quiet':<14} p50 {lat['p50']:9.1f} µs  "
            f"p99 {lat['p99']:9.1f} µs"
        )
    return rows
