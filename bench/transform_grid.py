"""Transform round trips over the channel x chunk x dtype grid, each read against its three floors.

Per configuration, back to back so both see the same machine: the echo floor (same frame size,
same stack), then the service, each at real-time pacing and pipelined (with the server's CPU time
per frame); then in-process the engine's transform and a bare matmul of the same shape (the
lead's interleaved timer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from bench_core import interleaved_medians
from latency import Latency, summarize
from processes import cpu_seconds
from service_path import service_path_us
from workload import FS, chunks, dense_weights, expect_chunk, expect_echo, frames, upload_weights
from wsload import StreamRun, pooled, run_paced, run_pipelined

from lrr_service.core import LRR

CHANNELS = (64, 256, 384, 1024)
CHUNK_SAMPLES = (30, 300)
DTYPE_NAMES = ("float32", "int16")
WINDOW = 32
PACED_SECONDS = 2.0
PACED_MIN_FRAMES = 400
PACED_BLOCKS = 4
PIPELINED_SECONDS = 1.0
WARMUP_FRAMES = 20


@dataclass
class GridRow:
    """Everything measured for one (channels, chunk, dtype) configuration; times in µs."""

    n_channels: int
    n_samples: int
    dtype: str
    frame_bytes: int
    echo_paced: Latency
    echo_pipelined_fps: float
    service_paced: Latency
    service_pipelined: Latency
    service_pipelined_fps: float
    engine_us: float
    matmul_us: float
    echo_cpu_us: float
    service_cpu_us: float
    path_us: float

    @property
    def overhead_p50_us(self) -> float:
        """The service's own cost per frame: its round trip minus (transport floor + engine), at p50."""
        return self.service_paced.p50 - self.echo_paced.p50 - self.engine_us

    @property
    def path_overhead_us(self) -> float:
        """What the service's own code adds per frame in-process: on_binary minus the engine's transform."""
        return self.path_us - self.engine_us

    @property
    def cpu_overhead_us(self) -> float:
        """Server CPU per frame when hot (pipelined): service minus echo server minus engine."""
        return self.service_cpu_us - self.echo_cpu_us - self.engine_us

    @property
    def cpu_bound_factor(self) -> float:
        """Real-time factor if the server had its core to itself: 1 s of CPU / CPU per frame, in samples."""
        return 1e6 / self.service_cpu_us * self.n_samples / FS if self.service_cpu_us > 0 else float("nan")

    @property
    def realtime_factor(self) -> float:
        """Pipelined samples per second over the 30 kHz a rig produces."""
        return self.service_pipelined_fps * self.n_samples / FS

    def as_dict(self) -> dict[str, Any]:
        """JSON-able record (with the derived figures)."""
        return {
            "n_channels": self.n_channels,
            "n_samples": self.n_samples,
            "dtype": self.dtype,
            "frame_bytes": self.frame_bytes,
            "echo_paced": self.echo_paced.as_dict(),
            "echo_pipelined_fps": self.echo_pipelined_fps,
            "service_paced": self.service_paced.as_dict(),
            "service_pipelined": self.service_pipelined.as_dict(),
            "service_pipelined_fps": self.service_pipelined_fps,
            "engine_us": self.engine_us,
            "matmul_us": self.matmul_us,
            "overhead_p50_us": self.overhead_p50_us,
            "echo_cpu_us": self.echo_cpu_us,
            "service_cpu_us": self.service_cpu_us,
            "cpu_overhead_us": self.cpu_overhead_us,
            "path_us": self.path_us,
            "path_overhead_us": self.path_overhead_us,
            "realtime_factor": self.realtime_factor,
            "cpu_bound_factor": self.cpu_bound_factor,
        }


def engine_floors(weights: np.ndarray, data: np.ndarray, seconds: float) -> tuple[float, float]:
    """(engine transform, bare matmul) medians in µs for one chunk, in this process on one BLAS thread."""
    engine = LRR()
    engine.load_weights(weights)
    out_dtype = np.float64 if data.dtype == np.float64 else np.float32
    matrix = (np.eye(weights.shape[0]) - weights).astype(out_dtype)
    as_float = data.astype(out_dtype)
    out = np.empty(data.shape, out_dtype)
    engine_s, matmul_s = interleaved_medians(
        lambda: engine.transform(data), lambda: np.matmul(as_float, matrix, out=out), seconds
    )
    return engine_s * 1e6, matmul_s * 1e6


async def pipelined_count(url: str, wire: list[bytes], check: Any) -> int:
    """How many frames make about PIPELINED_SECONDS of pipelined traffic (a short calibration run)."""
    probe = await run_pipelined(url, wire, 40, WINDOW, check)
    return int(min(20_000, max(200, probe.frames_per_second() * PIPELINED_SECONDS)))


async def pipelined_with_cpu(url: str, wire: list[bytes], check: Any, pid: int) -> tuple[StreamRun, float]:
    """A pipelined run and the server's CPU µs per frame during it (user + system, all threads)."""
    count = await pipelined_count(url, wire, check)
    before = cpu_seconds(pid)
    run = await run_pipelined(url, wire, count, WINDOW, check)
    return run, (cpu_seconds(pid) - before) / count * 1e6


async def measure_row(
    service_url: str,
    echo_url: str,
    pids: tuple[int, int],
    weights: np.ndarray,
    key: str,
    n_samples: int,
    dtype: str,
    floor_seconds: float,
) -> GridRow:
    """Echo floor, service (paced, pipelined) and engine floors for one configuration."""
    n_channels = weights.shape[0]
    data = chunks(n_samples, n_channels, dtype)
    wire = frames(data)
    size = len(wire[0])
    period = n_samples / FS
    paced_frames = max(PACED_MIN_FRAMES, int(PACED_SECONDS / period))
    echo_check, service_check = expect_echo(size), expect_chunk(n_samples, n_channels)
    echo_url = f"{echo_url}/echo"
    service_url = f"{service_url}/ws/{key}/transform"

    echo_paced, service_paced = [], []
    for _ in range(PACED_BLOCKS):  # alternating blocks: both see the same drift of the machine's load
        echo_paced.append(await run_paced(echo_url, wire, paced_frames // PACED_BLOCKS, period, echo_check))
        service_paced.append(await run_paced(service_url, wire, paced_frames // PACED_BLOCKS, period, service_check))
    echo_pipe, echo_cpu = await pipelined_with_cpu(echo_url, wire, echo_check, pids[1])
    service_pipe, service_cpu = await pipelined_with_cpu(service_url, wire, service_check, pids[0])
    engine_us, matmul_us = engine_floors(weights, data[0], floor_seconds)
    path_us = await service_path_us(weights, wire[0], floor_seconds)
    return GridRow(
        n_channels,
        n_samples,
        dtype,
        size,
        summarize(pooled(echo_paced, WARMUP_FRAMES)),
        echo_pipe.frames_per_second(),
        summarize(pooled(service_paced, WARMUP_FRAMES)),
        service_pipe.summary(WARMUP_FRAMES),
        service_pipe.frames_per_second(),
        engine_us,
        matmul_us,
        echo_cpu,
        service_cpu,
        path_us,
    )


async def measure_grid(
    service_base: str,
    service_ws: str,
    echo_ws: str,
    pids: tuple[int, int],
    floor_seconds: float = 0.5,
    channels: tuple[int, ...] = CHANNELS,
    progress: Any = print,
) -> list[GridRow]:
    """Every configuration of the grid; one session per channel count with uploaded dense weights."""
    rows: list[GridRow] = []
    for n_channels in channels:
        weights = dense_weights(n_channels)
        key = f"bench-transform-{n_channels}"
        upload_weights(service_base, key, weights)
        for n_samples in CHUNK_SAMPLES:
            for dtype in DTYPE_NAMES:
                row = await measure_row(service_ws, echo_ws, pids, weights, key, n_samples, dtype, floor_seconds)
                progress(
                    f"  {n_channels:>5} ch x {n_samples:>3} {dtype:<7}  service p50 {row.service_paced.p50:8.1f} µs"
                    f"  p99 {row.service_paced.p99:8.1f}  echo p50 {row.echo_paced.p50:7.1f}"
                    f"  engine {row.engine_us:7.1f}  overhead {row.overhead_p50_us:7.1f}"
                    f"  CPU/frame svc {row.service_cpu_us:6.1f} echo {row.echo_cpu_us:6.1f}"
                    f"  in-process path +{row.path_overhead_us:5.1f}"
                    f"  pipelined {row.realtime_factor:6.1f}x real time"
                )
                rows.append(row)
    return rows
