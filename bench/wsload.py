"""Client-side load drivers over one websocket: real-time pacing and maximum pipelined throughput.

The same drivers and the same client library (`websockets`) measure the service and the echo floor,
so the client's own cost cancels out when one is subtracted from the other. Frames are encoded
before the clock starts and reused cyclically.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np
from latency import Latency, summarize
from websockets.asyncio.client import ClientConnection, connect

Schedule = Callable[[int], Awaitable[None]]
Check = Callable[[bytes], None]
CHECK_EVERY = 97
"""Every this many replies (and the first and last) go through the full reply check."""


@dataclass
class StreamRun:
    """Per-frame send and reply times (perf_counter seconds) of one stream."""

    sent: np.ndarray
    received: np.ndarray

    @property
    def latencies(self) -> np.ndarray:
        """Round trip of each frame: its reply time minus its send time."""
        return self.received - self.sent

    @property
    def elapsed(self) -> float:
        """First send to last reply."""
        return float(self.received[-1] - self.sent[0])

    def frames_per_second(self) -> float:
        """Replies per second over the whole run."""
        return len(self.sent) / self.elapsed

    def summary(self, skip: int = 0) -> Latency:
        """Latency percentiles, leaving out the first `skip` frames (warm-up)."""
        return summarize(self.latencies[skip:])


def pooled(runs: Sequence[StreamRun], skip: int = 0) -> np.ndarray:
    """The round trips (s) of several runs in one array, each run without its first `skip` frames (warm-up)."""
    return np.concatenate([run.latencies[skip:] for run in runs])


async def open_stream(url: str) -> ClientConnection:
    """A websocket with the options every benchmark client uses (no compression, no size cap)."""
    return await connect(url, compression=None, max_size=None, open_timeout=20, ping_interval=None)


def paced_group(period: float, starts: Sequence[float], count: int) -> list[Schedule]:
    """One schedule per stream: frame i of stream k at `starts[k] + i * period`, never early.

    The clock is one thread sleeping with `time.sleep` (a high-resolution timer) through the merged
    schedule of all streams: the event loop's own timers are millisecond-grained (uvloop even fires
    sub-millisecond sleeps at once), which would send frames early or in bursts and misstate every
    paced figure. Late frames go at once, like a rig's buffer.
    """
    loop = asyncio.get_running_loop()
    queues: list[asyncio.Queue[int]] = [asyncio.Queue() for _ in starts]
    events = sorted((start + i * period, k, i) for k, start in enumerate(starts) for i in range(count))

    def ticker() -> None:
        for due, k, i in events:
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                loop.call_soon_threadsafe(queues[k].put_nowait, i)
            except RuntimeError:  # the loop is gone: the run was abandoned
                return

    threading.Thread(target=ticker, name="bench-pacer", daemon=True).start()

    def schedule(queue: asyncio.Queue[int]) -> Schedule:
        async def wait(i: int) -> None:
            await queue.get()

        return wait

    return [schedule(queue) for queue in queues]


def paced(period: float, start: float, count: int) -> Schedule:
    """The schedule of a single paced stream (see `paced_group`)."""
    return paced_group(period, [start], count)[0]


async def drive(
    ws: ClientConnection,
    frames: Sequence[bytes],
    count: int,
    schedule: Schedule,
    check: Check,
    window: int | None = None,
    check_every: int = CHECK_EVERY,
) -> StreamRun:
    """Send `count` frames on `schedule` with at most `window` unanswered; time every reply (in order).

    Every `check_every`-th reply (and the last) goes through `check`, right after its time is taken.
    """
    sent = np.zeros(count)
    received = np.zeros(count)
    slots = asyncio.Semaphore(window) if window else None

    async def sender() -> None:
        for i in range(count):
            await schedule(i)
            if slots is not None:
                await slots.acquire()
            sent[i] = time.perf_counter()
            await ws.send(frames[i % len(frames)])

    task = asyncio.create_task(sender())
    try:
        for i in range(count):
            reply = await ws.recv()
            received[i] = time.perf_counter()
            if slots is not None:
                slots.release()
            if i % check_every == 0 or i == count - 1:
                check(reply)  # type: ignore[arg-type]
        await task
    finally:
        task.cancel()
    return StreamRun(sent, received)


async def no_wait(i: int) -> None:
    """Schedule of a pipelined run: send as soon as the window allows."""


async def run_paced(url: str, frames: Sequence[bytes], count: int, period: float, check: Check) -> StreamRun:
    """One stream at real-time pacing (one frame per `period` seconds)."""
    async with await open_stream(url) as ws:
        await ws.send(frames[0])
        await ws.recv()  # warm-up: session lookup, first-use allocations
        return await drive(ws, frames, count, paced(period, time.perf_counter(), count), check)


async def run_pipelined(url: str, frames: Sequence[bytes], count: int, window: int, check: Check) -> StreamRun:
    """One stream as fast as the server answers, `window` frames in flight."""
    async with await open_stream(url) as ws:
        await ws.send(frames[0])
        await ws.recv()
        return await drive(ws, frames, count, no_wait, check, window=window)


async def run_paced_many(
    urls: Sequence[str], frames: Sequence[bytes], count: int, period: float, check: Check
) -> list[StreamRun]:
    """Several paced streams at once (one connection each), their send times spread over one period."""
    sockets = [await open_stream(url) for url in urls]
    try:
        for ws in sockets:
            await ws.send(frames[0])
            await ws.recv()
        start = time.perf_counter() + 0.01
        offsets = [start + period * k / len(sockets) for k in range(len(sockets))]
        schedules = paced_group(period, offsets, count)
        runs = [drive(ws, frames, count, schedule, check) for ws, schedule in zip(sockets, schedules)]
        return list(await asyncio.gather(*runs))
    finally:
        for ws in sockets:
            await ws.close()
