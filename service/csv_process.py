"""Weights CSV work in a process of its own, so it never holds the server's GIL.

Parsing or formatting a 1024 x 1024 CSV is a Python loop over a million values: about a second
of interpreter time. In a thread of the server it holds the GIL in 5 ms slices, and every
session's transforms wait behind them (a download raised the transform p50 from 0.19 to 6 ms).
Here it runs in a worker process (service/csv_worker.py, at the lowest CPU priority, started on
first use, started again if it dies), one job at a time.

The text and the matrix cross over the worker's stdin and stdout in pieces of at most
PIECE_BYTES, written and read by the event loop: no pickling, and no copy of a whole body in one
go. Each of those held the GIL, and so stalled every transform, for milliseconds: pickling a
22 MB upload for a process pool took 22 ms, zeroing a buffer for it 5 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np

from lrr_service.core.vocabulary import ErrorCode
from lrr_service.service.csv_worker import WIRE_FLOAT
from lrr_service.service.errors import ServiceError
from lrr_service.service.logs import log_event

PIECE_BYTES = 64 * 1024
"""The most the loop copies at once while feeding or reading the worker: a pipe's default capacity."""
STOP_SECONDS = 5.0


class CsvWorkerLost(ServiceError):
    """The CSV worker process died during a job (killed, out of memory); the next job starts a new one."""

    code = ErrorCode.CSV_WORKER_LOST


class CsvProcess:
    """The server's side of the CSV worker: `parse` and `format`, one job at a time."""

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def parse(self, pieces: Sequence[bytes], max_channels: int) -> np.ndarray:
        """parse_weights_csv of the text in `pieces`, in the worker: the matrix; a refused CSV raises
        ServiceError `bad_csv` naming its line and column; CsvWorkerLost."""
        async with self._lock, self._job() as (stdin, stdout):
            reply = await _exchange(stdin, stdout, {"op": "parse", "max_channels": max_channels}, pieces)
            if not reply["ok"]:
                raise ServiceError(reply["message"], code=ErrorCode.BAD_CSV, row=reply["row"], column=reply["column"])
            weights = np.empty((reply["n"], reply["n"]), dtype=WIRE_FLOAT)
            target, filled = weights.data.cast("B"), 0
            async for piece in _pieces(stdout, reply["size"]):
                target[filled : filled + len(piece)] = piece
                filled += len(piece)
            return weights

    async def format(self, weights: np.ndarray) -> list[bytes]:
        """The CSV text of `weights`, formatted in the worker, in pieces (not joined: that would copy it all
        at once); CsvWorkerLost."""
        matrix = np.ascontiguousarray(weights, dtype=WIRE_FLOAT)
        async with self._lock, self._job() as (stdin, stdout):
            job = {"op": "format", "n": matrix.shape[0]}
            reply = await _exchange(stdin, stdout, job, [matrix.data.cast("B")])
            return [piece async for piece in _pieces(stdout, reply["size"])]

    @contextlib.asynccontextmanager
    async def _job(self) -> AsyncIterator[tuple[asyncio.StreamWriter, asyncio.StreamReader]]:
        """The running worker's pipes (started if need be) for one job; if the job fails midway for any
        reason but a refused CSV, the worker is stopped (its pipes are out of step), and a worker fault
        raises CsvWorkerLost."""
        if self._process is None or self._process.returncode is not None:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "lrr_service.service.csv_worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=2 * PIECE_BYTES,
            )
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        try:
            yield process.stdin, process.stdout
        except ServiceError:  # a refused CSV: the worker answered in step
            raise
        except (OSError, EOFError, asyncio.IncompleteReadError, json.JSONDecodeError) as exc:
            await self._stop(process)
            log_event(
                "csv_worker_lost", logging.ERROR, error=f"{type(exc).__name__}: {exc}", returncode=process.returncode
            )
            raise CsvWorkerLost(
                f"the CSV worker process died during this request ({type(exc).__name__}); retry it"
            ) from None
        except BaseException:  # cancelled midway: the next job must not read this one's reply
            await self._stop(process)
            raise

    async def _stop(self, process: asyncio.subprocess.Process) -> None:
        if self._process is process:
            self._process = None
        if process.returncode is None:
            process.kill()
            await process.wait()

    async def close(self) -> None:
        """Stop the worker (at app shutdown): it exits when its stdin closes."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        assert process.stdin is not None
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), STOP_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()


async def _exchange(
    stdin: asyncio.StreamWriter, stdout: asyncio.StreamReader, job: dict[str, Any], pieces: Sequence[bytes | memoryview]
) -> dict[str, Any]:
    """Send a job's header and its payload, PIECE_BYTES at a time, then read the reply's header."""
    stdin.write(json.dumps(job | {"size": sum(map(len, pieces))}).encode() + b"\n")
    for piece in pieces:
        view = memoryview(piece)
        for start in range(0, len(view), PIECE_BYTES):
            stdin.write(view[start : start + PIECE_BYTES])
            await stdin.drain()
            await asyncio.sleep(0)  # drain() returns at once while the pipe keeps up: let the streams in
    line = await stdout.readline()
    if not line:
        raise EOFError("the worker closed its output")
    reply: dict[str, Any] = json.loads(line)
    return reply


async def _pieces(stdout: asyncio.StreamReader, size: int) -> AsyncIterator[bytes]:
    """The next `size` bytes of the worker's output, PIECE_BYTES at a time."""
    for start in range(0, size, PIECE_BYTES):
        yield await stdout.readexactly(min(PIECE_BYTES, size - start))
