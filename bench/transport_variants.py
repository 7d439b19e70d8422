"""Transport variants: the echo floor of a 30 x 384 float32 frame on other stacks than the service's.

Bare ASGI vs the same echo behind FastAPI routing (what the framework costs), and uvicorn's
legacy `websockets` implementation vs `websockets-sansio` (the service's), paced and pipelined.
"""

from __future__ import annotations

from typing import Any

from processes import EchoServer, cpu_seconds
from workload import chunks, expect_echo, frames
from wsload import run_paced, run_pipelined

VARIANTS = (("websockets-sansio", "asgi"), ("websockets-sansio", "fastapi"), ("websockets", "asgi"))
PIPELINED_FRAMES = 10_000
WARMUP_FRAMES = 20


async def measure_transports(seconds: float = 2.0, progress: Any = print) -> list[dict[str, Any]]:
    """One row per (websocket implementation, app) variant."""
    wire = frames(chunks(30, 384, "float32"))
    check = expect_echo(len(wire[0]))
    rows = []
    for ws, app in VARIANTS:
        with EchoServer(ws, app) as echo:
            url = f"{echo.ws_url}/echo"
            paced = await run_paced(url, wire, int(seconds * 1000), 0.001, check)
            before = cpu_seconds(echo.pid)
            pipelined = await run_pipelined(url, wire, PIPELINED_FRAMES, 32, check)
            cpu_us = (cpu_seconds(echo.pid) - before) / PIPELINED_FRAMES * 1e6
        row = {
            "ws": ws,
            "app": app,
            "paced": paced.summary(WARMUP_FRAMES).as_dict(),
            "pipelined_fps": pipelined.frames_per_second(),
            "cpu_us": cpu_us,
        }
        progress(
            f"  {ws:<18} {app:<8} p50 {row['paced']['p50']:7.1f} µs  p99 {row['paced']['p99']:7.1f} µs  "
            f"pipelined {row['pipelined_fps']:8,.0f} frames/s  server CPU {cpu_us:5.1f} µs/frame"
        )
        rows.append(row)
    return rows
