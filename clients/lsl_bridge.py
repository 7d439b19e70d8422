"""The LSL bridge: an LSL input stream -> lrr-service -> an LSL outlet `NAME-lrr`.

With `fit_seconds` the first S seconds of input (by the input's own timestamps) are only fitted
(no output), the session is solved, and everything after is transformed and published. Without
it every chunk goes through fit_transform (the model keeps adapting) and is published; its first
chunks, before the first solve, come back unchanged, as fit_transform's do. After a fitting period
the session must hold weights: a transform that would apply none stops the bridge
(IdentityTransformError) rather than publish raw data as cleaned. Chunks the server will not fit
(NaN, Inf) are published transformed, not fitted, and counted. The outlet copies the input's
channel count, nominal rate, type and channel labels, and every output sample carries its input
sample's timestamp.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from lrr_service.clients.client import LRRClient
from lrr_service.clients.errors import ChunkNotFittedError
from lrr_service.core.vocabulary import Mode

RESOLVE_TIMEOUT_S = 10.0
PULL_TIMEOUT_S = 0.05
OUTPUT_SUFFIX = "-lrr"


class BridgeError(RuntimeError):
    """The bridge cannot run: pylsl missing, input stream not found or not numeric."""


@dataclass
class FitWindow:
    """Splits incoming samples into the fitting period and the rest, by input timestamps (pure logic)."""

    fit_seconds: float | None
    start: float | None = None

    def split(self, timestamps: np.ndarray) -> int:
        """How many leading samples of a chunk with these timestamps still belong to the fitting period."""
        if self.fit_seconds is None or len(timestamps) == 0:
            return 0
        if self.start is None:
            self.start = float(timestamps[0])
        return int(np.searchsorted(timestamps, self.start + self.fit_seconds, side="left"))


@dataclass
class BridgeStats:
    """What went through the bridge."""

    input_name: str
    output_name: str
    samples_in: int = 0
    samples_fitted: int = 0
    samples_out: int = 0
    samples_not_fitted: int = 0
    """Samples of chunks the server would not fit (NaN, Inf or beyond ±1e100); published transformed, unfitted."""
    reconnects: int = 0


LIBLSL_QUIET_CONFIG = "[log]\nlevel = -1\n"
"""liblsl logs INFO lines to stderr by default; keep warnings and errors only (unless LSLAPICFG is set)."""


def _pylsl() -> Any:
    """The pylsl module (liblsl quietened), or a BridgeError saying how to install it."""
    try:
        import pylsl
    except ImportError:
        raise BridgeError("the LSL bridge needs pylsl; install it with: pip install 'lrr-service[lsl]'") from None
    if not os.environ.get("LSLAPICFG"):
        pylsl.set_config_content(LIBLSL_QUIET_CONFIG)
    return pylsl


_WIRE_DTYPE = {"float32": np.float32, "double64": np.float64, "int16": np.int16, "int32": np.int32}


def _format_name(pylsl: Any, channel_format: int) -> str:
    names = {
        getattr(pylsl, "cf_" + name): name
        for name in ("float32", "double64", "int16", "int32", "int8", "int64", "string")
    }
    return names.get(channel_format, str(channel_format))


def resolve_input(name: str, timeout: float = RESOLVE_TIMEOUT_S) -> Any:
    """The StreamInfo of the LSL stream called `name`; BridgeError if none appears within `timeout`."""
    pylsl = _pylsl()
    found = pylsl.resolve_byprop("name", name, 1, timeout)
    if not found:
        raise BridgeError(f"no LSL stream named {name!r} found within {timeout:g} s; is the rig publishing?")
    return found[0]


def channel_labels(info: Any) -> list[str]:
    """The labels under desc/channels/channel/label, in order ('' where a channel has none)."""
    labels: list[str] = []
    channel = info.desc().child("channels").child("channel")
    while not channel.empty() and len(labels) < info.channel_count():
        labels.append(channel.child_value("label"))
        channel = channel.next_sibling("channel")
    return labels


def output_info(pylsl: Any, source: Any, labels: list[str]) -> Any:
    """StreamInfo of the outlet: `NAME-lrr`, same type, channel count, rate and labels; float output."""
    fmt = pylsl.cf_double64 if source.channel_format() == pylsl.cf_double64 else pylsl.cf_float32
    info = pylsl.StreamInfo(
        source.name() + OUTPUT_SUFFIX,
        source.type(),
        source.channel_count(),
        source.nominal_srate(),
        fmt,
        (source.source_id() or source.name()) + OUTPUT_SUFFIX,
    )
    channels = info.desc().append_child("channels")
    for label in labels:
        channel = channels.append_child("channel")
        channel.append_child_value("label", label)
    return info


class LSLBridge:
    """Pull chunks from an inlet, send them through the service, push the replies to the outlet."""

    def __init__(
        self,
        input_name: str,
        url: str,
        key: str,
        token: str | None = None,
        *,
        fit_seconds: float | None = None,
        max_in_flight: int = 8,
        resolve_timeout: float = RESOLVE_TIMEOUT_S,
        direct: bool = False,
    ) -> None:
        if fit_seconds is not None and fit_seconds <= 0:
            raise ValueError(f"fit_seconds must be > 0 (or omitted for fit_transform), got {fit_seconds}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1 (chunks awaiting a reply at once), got {max_in_flight}")
        self.input_name = input_name
        self.url, self.key, self.token = url, key, token
        self.window = FitWindow(fit_seconds)
        self.max_in_flight = max_in_flight
        self.resolve_timeout = resolve_timeout
        self.direct = direct
        """In a cluster, stream to the worker that owns the key (LRRClient's `direct`)."""
        self.stats = BridgeStats(input_name, input_name + OUTPUT_SUFFIX)

    async def run(self, duration: float | None = None, stop: asyncio.Event | None = None) -> BridgeStats:
        """Bridge until `duration` seconds have passed or `stop` is set (else forever); returns what went through.

        On stopping, every chunk already sent is still answered and published before returning.
        """
        pylsl = _pylsl()
        source = await asyncio.to_thread(resolve_input, self.input_name, self.resolve_timeout)
        fmt = _format_name(pylsl, source.channel_format())
        if fmt not in _WIRE_DTYPE:
            raise BridgeError(
                f"stream {self.input_name!r} carries {fmt} samples; expected float32, double64, int16 or int32"
            )
        inlet = pylsl.StreamInlet(source, max_chunklen=0, recover=True)
        full_info = await asyncio.to_thread(inlet.info, self.resolve_timeout)
        outlet = pylsl.StreamOutlet(output_info(pylsl, full_info, channel_labels(full_info)))
        dtype = _WIRE_DTYPE[fmt]
        deadline = None if duration is None else time.monotonic() + duration
        queue: asyncio.Queue[_Sent | None] = asyncio.Queue(self.max_in_flight)
        async with LRRClient(
            self.url, self.key, self.token, direct=self.direct, allow_identity=self.window.fit_seconds is None
        ) as client:
            tasks = [
                asyncio.create_task(self._pump(inlet, client, queue, dtype, deadline, stop or asyncio.Event())),
                asyncio.create_task(self._publish(queue, outlet, client)),
            ]
            try:
                await _first_failure(tasks)
            finally:
                for task in tasks:
                    task.cancel()
                self.stats.reconnects = client.reconnects
                inlet.close_stream()
        return self.stats

    async def _pump(
        self,
        inlet: Any,
        client: LRRClient,
        queue: asyncio.Queue[Any],
        dtype: type,
        deadline: float | None,
        stop: asyncio.Event,
    ) -> None:
        """Pull input and submit it: fitting-period samples to fit, then (after a solve) transform or fit_transform.

        In the fitting period at most `max_in_flight` fits await their reply at once, so a refusal surfaces
        promptly; after it the queue to `_publish` holds `max_in_flight` chunks (so up to `max_in_flight` + 2
        await their reply: one being published, the queued ones, one waiting for room).
        """
        solved = self.window.fit_seconds is None
        fit_acks: list[tuple[asyncio.Future[Any], int]] = []
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            samples, stamps = await asyncio.to_thread(inlet.pull_chunk, PULL_TIMEOUT_S)
            if not stamps:
                continue
            data: np.ndarray = np.asarray(samples, dtype=dtype)
            times = np.asarray(stamps, dtype=np.float64)
            self.stats.samples_in += len(times)
            n_fit = self.window.split(times)
            if n_fit:
                fit_acks.append((client.channel(Mode.FIT).submit(data[:n_fit]), n_fit))
                if len(fit_acks) >= self.max_in_flight:
                    await self._settle_fits(fit_acks)
            if n_fit == len(times):
                continue
            if not solved:
                await self._end_fitting(client, fit_acks)
                solved = True
            fitting = self.window.fit_seconds is None
            future = client.channel(Mode.FIT_TRANSFORM if fitting else Mode.TRANSFORM).submit(data[n_fit:])
            await queue.put(_Sent(future, stamps[n_fit:], data[n_fit:], fitting))
        await self._settle_fits(fit_acks)
        await queue.put(None)

    async def _end_fitting(self, client: LRRClient, acks: list[tuple[asyncio.Future[Any], int]]) -> None:
        """Wait for the fitting period's fits and solve; BridgeError if none of its samples could be fitted."""
        await self._settle_fits(acks)
        if self.stats.samples_fitted == 0:
            raise BridgeError(
                f"none of the {self.stats.samples_not_fitted} samples of the first "
                f"{self.window.fit_seconds:g} s could be fitted (each chunk held NaN, Inf or a value "
                "beyond ±1e100), so there is nothing to solve; fix the input or use a longer "
                "--fit-seconds"
            )
        await client.solve()

    async def _settle_fits(self, acks: list[tuple[asyncio.Future[Any], int]]) -> None:
        """Wait for fit acknowledgements and count their samples as fitted or not fitted.

        Chunks refused as unfittable (non_finite, out_of_range) are counted, not fatal; any other refusal
        stops the bridge.
        """
        outcomes = await asyncio.gather(*(future for future, _ in acks), return_exceptions=True)
        for outcome, (_, samples) in zip(outcomes, acks, strict=True):
            if isinstance(outcome, ChunkNotFittedError):
                self.stats.samples_not_fitted += samples
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                self.stats.samples_fitted += samples
        acks.clear()

    async def _publish(self, queue: asyncio.Queue[Any], outlet: Any, client: LRRClient) -> None:
        """Push each reply, in order, with its input timestamps.

        A fit_transform chunk refused as unfittable is transformed without fitting instead, so the
        output keeps every sample (NaN stays NaN where it reaches).
        """
        while (sent := await queue.get()) is not None:
            try:
                reply = await sent.future
                self.stats.samples_fitted += len(sent.stamps) if sent.fitting else 0
            except ChunkNotFittedError:
                self.stats.samples_not_fitted += len(sent.stamps)
                reply = await client.request(Mode.TRANSFORM, sent.data)
            outlet.push_chunk(np.ascontiguousarray(reply.data), sent.stamps)
            self.stats.samples_out += len(sent.stamps)


@dataclass(frozen=True)
class _Sent:
    """A chunk on its way: its reply's future, its input timestamps and data, and whether it is being fitted."""

    future: asyncio.Future[Any]
    stamps: list[float]
    data: np.ndarray
    fitting: bool


async def _first_failure(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for all tasks; if one fails, raise its exception at once (the caller cancels the others)."""
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    for task in done:
        if task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
