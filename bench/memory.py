"""Memory per session: the server's RSS growth per fitted, solved and transformed session.

A fresh server; a small session warms every code path first; then K sessions of n channels
each get fit data, a solve and one float32 transform. (RSS after - RSS before) / K is reported
next to what the arrays alone need (statistics C and weights W in float64, I - W in float32).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import httpx
from processes import ServerProcess, rss_bytes
from workload import chunks, frames
from wsload import open_stream

SESSIONS = {384: 8, 1024: 4}
FIT_SAMPLES = 1000
SETTLE_SECONDS = 1.0


async def fill_session(server: ServerProcess, key: str, n_channels: int) -> None:
    """Fit a few chunks, solve, transform once: the session holds everything it will hold."""
    async with await open_stream(f"{server.ws_url}/ws/{key}/fit") as ws:
        for frame in frames(chunks(FIT_SAMPLES, n_channels, "float32", count=3)):
            await ws.send(frame)
            await ws.recv()
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
        (await client.post(f"/streams/{key}/solve")).raise_for_status()
    async with await open_stream(f"{server.ws_url}/ws/{key}/transform") as ws:
        await ws.send(frames(chunks(30, n_channels, "float32", count=1))[0])
        await ws.recv()


async def measure_memory(env: dict[str, str], progress: Any = print) -> list[dict[str, Any]]:
    """RSS per session at each channel count in SESSIONS, on a fresh server each."""
    rows = []
    for n_channels, count in SESSIONS.items():
        with ServerProcess(Path(tempfile.mkdtemp(prefix="lrr-bench-mem-")) / "state", env=env) as server:
            await fill_session(server, "warm-up", 16)
            await asyncio.sleep(SETTLE_SECONDS)
            before = rss_bytes(server.pid or 0)
            for i in range(count):
                await fill_session(server, f"mem-{n_channels}-{i}", n_channels)
            await asyncio.sleep(SETTLE_SECONDS)
            after = rss_bytes(server.pid or 0)
        arrays = n_channels * n_channels * (8 + 8 + 4)
        row = {
            "n_channels": n_channels,
            "sessions": count,
            "rss_per_session_bytes": (after - before) / count,
            "arrays_bytes": arrays,
            "rss_before_bytes": before,
        }
        progress(
            f"  {n_channels} ch: {row['rss_per_session_bytes'] / 2**20:.1f} MiB per session "
            f"(arrays C, W, I-W: {arrays / 2**20:.1f} MiB)"
        )
        rows.append(row)
    return rows
