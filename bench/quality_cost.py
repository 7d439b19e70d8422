"""What the quality measurement (core/quality.py, GET /streams/{key}/quality) costs per transform frame.

One 384 x 30 float32 frame with dense weights, measured with the quality meter on every frame
(LRR_QUALITY_EVERY=1, its dearest setting), on every k-th frame (the default LRR_QUALITY_EVERY, if
not 1) and off (LRR_QUALITY_EVERY=0), in alternating blocks so all see the same load:

- in this process: `StreamChannel.on_binary` of two app contexts on one BLAS thread, median wall
  time per frame and median CPU time of the loop's thread per frame over the blocks (the less
  noisy figure);
- through one server process per configuration: the paced round trip's p50 and the server's CPU
  time per frame under pipelined load.

The goal is at most GOAL_RATIO times the CPU per frame of "off" with the default setting. Run alone:
`python bench/quality_cost.py [--seconds S]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from latency import summarize
from processes import ServerProcess
from threadpoolctl import threadpool_limits
from transform_grid import pipelined_with_cpu
from workload import FS, chunks, dense_weights, expect_chunk, frames, upload_weights
from wsload import pooled, run_paced

N_CHANNELS = 384
N_SAMPLES = 30
GOAL_RATIO = 1.03
"""At most 3 % more CPU per frame with the quality measured."""
BLOCK_FRAMES = 100
"""Frames per in-process block; the blocks alternate between the meter on and off."""
ROUNDS = 4
"""Alternations of the two servers (paced, then pipelined, each)."""
PACED_FRAMES = 300


def _context(every: int) -> Any:
    """An in-process app context (not started) measuring every `every`-th transforming frame."""
    from lrr_service.service.app import create_app
    from lrr_service.service.config import ServiceSettings

    state = Path(tempfile.mkdtemp(prefix="lrr-bench-quality-"))
    return create_app(ServiceSettings(state_dir=state, log_level="WARNING", quality_every=every)).state.context


def configurations() -> dict[str, int]:
    """LRR_QUALITY_EVERY of each configuration measured: every frame, the default (if it differs), off."""
    from lrr_service.service.config import ServiceSettings

    default = int(ServiceSettings.model_fields["quality_every"].default)
    return {"every": 1} | ({"default": default} if default not in (0, 1) else {}) | {"off": 0}


async def in_process(seconds: float) -> dict[str, Any]:
    """Median µs per frame of `on_binary` (wall, and CPU of the loop's thread) per configuration, interleaved."""
    from lrr_service.service.stream import StreamChannel

    weights = dense_weights(N_CHANNELS)
    wire = frames(chunks(N_SAMPLES, N_CHANNELS, "float32"))
    contexts = {name: _context(every) for name, every in configurations().items()}
    channels = {}
    for name, context in contexts.items():
        session, _ = context.registry.get_or_create("quality-cost")
        session.engine.load_weights(weights)
        channels[name] = StreamChannel("quality-cost", "transform", context)
    walls: dict[str, list[float]] = {name: [] for name in contexts}
    cpus: dict[str, list[float]] = {name: [] for name in contexts}
    deadline = time.perf_counter() + seconds
    with threadpool_limits(limits=1):  # as the server runs numpy (LRR_BLAS_THREADS=1): the loop's thread does it all
        for channel in channels.values():  # warm up (plans, buffers)
            for payload in wire:
                await channel.on_binary(payload)
        while time.perf_counter() < deadline or len(cpus["off"]) < 6:
            for name, channel in channels.items():
                cpu_started = time.thread_time()
                for i in range(BLOCK_FRAMES):
                    started = time.perf_counter()
                    await channel.on_binary(wire[i % len(wire)])
                    walls[name].append(time.perf_counter() - started)
                cpus[name].append((time.thread_time() - cpu_started) / BLOCK_FRAMES)
    for context in contexts.values():
        context.lane.shutdown()
    result: dict[str, Any] = {"blocks": len(cpus["off"])}
    for name in contexts:
        result[f"path_{name}_us"] = float(np.median(walls[name])) * 1e6
        result[f"path_cpu_{name}_us"] = float(np.median(cpus[name])) * 1e6
    for name in contexts:
        result[f"path_{name}_ratio"] = result[f"path_{name}_us"] / result["path_off_us"]
        result[f"path_cpu_{name}_ratio"] = result[f"path_cpu_{name}_us"] / result["path_cpu_off_us"]
    return result


async def through_servers(server_env: dict[str, str], rounds: int = ROUNDS) -> dict[str, Any]:
    """Paced p50 and pipelined server CPU per frame of one server per configuration, alternated."""
    weights = dense_weights(N_CHANNELS)
    wire = frames(chunks(N_SAMPLES, N_CHANNELS, "float32"))
    check = expect_chunk(N_SAMPLES, N_CHANNELS)
    period = N_SAMPLES / FS
    key = "bench-quality"
    servers = {
        name: ServerProcess(
            Path(tempfile.mkdtemp(prefix="lrr-bench-q-")) / "state", env=server_env | {"LRR_QUALITY_EVERY": str(every)}
        )
        for name, every in configurations().items()
    }
    paced: dict[str, list[Any]] = {name: [] for name in servers}
    cpu: dict[str, list[float]] = {name: [] for name in servers}
    try:
        for server in servers.values():
            server.start()
            upload_weights(server.url, key, weights)
        for _ in range(rounds):
            for name, server in servers.items():
                url = f"{server.ws_url}/ws/{key}/transform"
                paced[name].append(await run_paced(url, wire, PACED_FRAMES, period, check))
                _, cpu_us = await pipelined_with_cpu(url, wire, check, server.pid or 0)
                cpu[name].append(cpu_us)
    finally:
        for server in servers.values():
            server.stop()
    result: dict[str, Any] = {"rounds": rounds}
    for name in servers:
        result[f"server_p50_{name}_us"] = summarize(pooled(paced[name], 20)).p50
        result[f"server_cpu_{name}_us"] = float(np.median(cpu[name]))
    for name in servers:
        result[f"server_p50_{name}_ratio"] = result[f"server_p50_{name}_us"] / result["server_p50_off_us"]
        result[f"server_cpu_{name}_ratio"] = result[f"server_cpu_{name}_us"] / result["server_cpu_off_us"]
    return result


async def measure_quality_cost(server_env: dict[str, str], seconds: float, rounds: int = ROUNDS) -> dict[str, Any]:
    """Both measurements per configuration (every frame, the default every-k, off), with the goal."""
    every = configurations()
    result: dict[str, Any] = {
        "frame": f"{N_CHANNELS} x {N_SAMPLES} float32",
        "goal_ratio": GOAL_RATIO,
        "configurations": every,
        "default_every": every.get("default", 1),
    }
    result |= await in_process(seconds)
    if rounds:
        result |= await through_servers(server_env, rounds)
    return result


def summary_line(cost: dict[str, Any]) -> str:
    """One console line: the CPU ratios of the default configuration against the goal."""
    name = "default" if "default" in cost["configurations"] else "every"
    line = (
        f"  quality measured on every {cost['default_every']}th frame (the default), {cost['frame']}: "
        f"in-process CPU/frame "
        f"{cost[f'path_cpu_{name}_us']:.1f} vs {cost['path_cpu_off_us']:.1f} µs off "
        f"(x{cost[f'path_cpu_{name}_ratio']:.3f}; every frame x{cost['path_cpu_every_ratio']:.3f})"
    )
    if "server_cpu_off_us" in cost:
        line += (
            f", server CPU/frame {cost[f'server_cpu_{name}_us']:.1f} vs {cost['server_cpu_off_us']:.1f} µs "
            f"(x{cost[f'server_cpu_{name}_ratio']:.3f}; every frame x{cost['server_cpu_every_ratio']:.3f}), paced p50 "
            f"{cost[f'server_p50_{name}_us']:.1f} vs {cost['server_p50_off_us']:.1f} µs"
        )
    return line + f"; goal x{cost['goal_ratio']:.2f}"


def main() -> int:
    """Measure and print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0, help="in-process measuring time")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="alternations of the two servers")
    args = parser.parse_args()
    cost = asyncio.run(measure_quality_cost({"LRR_LOG_LEVEL": "WARNING"}, args.seconds, args.rounds))
    print(summary_line(cost))
    print(json.dumps(cost, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
