"""Weights CSV work in a process of its own, so it never holds the server's GIL.

Parsing or formatting a 1024 x 1024 CSV is a Python loop over a million values: about a second
of interpreter time. In a thread of the server it holds the GIL in 5 ms slices, and every
session's transforms wait behind them (a download raised the transform p50 from 0.19 to 6 ms).
Here it runs in one worker process (started on first use, at the lowest CPU priority, like the
statistics lane), which costs a pickled copy of the text or matrix each way.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import os
import select
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

import numpy as np

from core.weights_csv import format_weights_csv, parse_weights_csv
from service.lane import lower_thread_priority

T = TypeVar("T")


class CsvWorkerLost(Exception):
    """The CSV worker process died during a call (killed, out of memory); the next call starts a new one."""


def _start_worker(server_pid: int) -> None:
    """Initializer of the worker: lowest CPU priority, and exit as soon as the server process is gone.

    A worker blocks on its call queue, whose pipe it holds both ends of: without this it would
    outlive a server killed with SIGKILL, for ever.
    """
    lower_thread_priority()
    threading.Thread(target=_exit_with, args=(server_pid,), name="lrr-csv-watch", daemon=True).start()


def _exit_with(pid: int) -> None:
    """Block until process `pid` ends, then end this process (a pidfd where Linux has one, else polling)."""
    try:
        watched = os.pidfd_open(pid)
    except (AttributeError, OSError):
        while _alive(pid):
            time.sleep(1.0)
    else:
        select.select([watched], [], [])
    os._exit(0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def format_csv_bytes(weights: np.ndarray) -> bytes:
    """format_weights_csv as ASCII bytes: what the response sends, without a decode on the server's side."""
    return format_weights_csv(weights).encode("ascii")


class CsvProcess:
    """One worker process for parse_weights_csv and format_weights_csv; restarted if it dies."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    async def parse(self, content: bytes | bytearray, max_channels: int) -> np.ndarray:
        """parse_weights_csv(content) in the worker; raises its WeightsCsvError, or CsvWorkerLost."""
        return await self._run(functools.partial(parse_weights_csv, content, max_channels=max_channels))

    async def format(self, weights: np.ndarray) -> bytes:
        """The CSV text of `weights` as bytes, formatted in the worker; raises CsvWorkerLost."""
        return await self._run(functools.partial(format_csv_bytes, weights))

    async def _run(self, call: Callable[[], T]) -> T:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("forkserver"),
                initializer=_start_worker, initargs=(os.getpid(),),
            )  # fmt: skip
        pool = self._pool
        try:
            return await asyncio.wrap_future(pool.submit(call))
        except BrokenProcessPool:
            if self._pool is pool:
                self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            raise CsvWorkerLost("the CSV worker process died while handling this request; retry it") from None

    def shutdown(self) -> None:
        """Stop the worker (at app shutdown)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
