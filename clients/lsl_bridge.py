"""The LSL bridge: an LSL input stream -> lrr-service -> an LSL outlet `NAME-lrr`.

With `fit_seconds` the first S seconds of input (by the input's own timestamps) are only fitted
(no output), the session is solved, and everything after is transformed and published. Without
it every chunk goes through fit_transform (the model keeps adapting) and is published; its first
chunks, before the first solve, come back unchanged, as fit_transform's do: the bridge counts them
(`samples_passed_through`) and notes when its output starts being its input and when weights take over,
since nothing in the LSL stream can say so. After a fitting period
the session must hold weights: a transform that would apply none stops the bridge
(IdentityTransformError) rather than publish raw data as cleaned. Chunks the server will not fit
(NaN, Inf) are published transformed, not fitted, and counted. The outlet copies the input's
channel count, nominal rate, type and `desc/channels` (labels and every per-channel field), and every
output sample carries its input sample's timestamp.

The labels and per-channel fields of the input's `desc/channels` are sent as the session's channel
description (`stream_channels`), so `channel_groups` may name one of them ("bank"); `channel_groups`
sets that setting before streaming, and a grouping the session could not resolve is noted after the
first reply.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree

import numpy as np

from lrr_service.clients.client import LRRClient
from lrr_service.clients.errors import ChunkNotFittedError, LRRClientError, UnknownSessionError
from lrr_service.clients.grouping import grouping_fallback, settings_with_channel_groups
from lrr_service.core.channels import LABEL_FIELD, MAX_FIELDS, ChannelDescription, ChannelDescriptionError
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
    samples_passed_through: int = 0
    """Samples published unchanged because the session had no weights yet (fit_transform before its first solve)."""
    reconnects: int = 0
    notes: list[str] = field(default_factory=list)
    """What the operator should know: parts of the stream's channel description left out, a grouping change,
    a grouping by fields the session could not resolve, the output being the input unchanged (no weights) and
    weights taking over."""


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


@dataclass(frozen=True)
class StreamChannels:
    """What an LSL stream's `desc/channels` says, as the service's channel description.

    `description` is the `ChannelDescription.from_dict` form (None when the stream describes no usable
    channels); `notes` say, one sentence each, what was left out and why.
    """

    description: dict[str, Any] | None
    notes: tuple[str, ...] = ()


def stream_channels(xml: str, n_channels: int) -> StreamChannels:
    """The channel description in an LSL stream info's XML (`StreamInfo.as_xml()`), for a stream of `n_channels`.

    Each `desc/channels/channel` gives one channel: its `label` element the label, every other element a field
    named by its tag (`bank`, `type`, `unit`), nested elements by their path (`<location><X>` is `location.X`);
    values are the element's text, stripped of surrounding whitespace and kept as strings ("1" and "01" are
    different banks). A channel without a field gets null for it; without a label, "". A description that
    lists another number of channels than the stream has gives none; a field the service cannot hold (name,
    value length, more than MAX_FIELDS fields) is left out. Each omission is one of `notes`.
    """
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        return StreamChannels(None, (f"the stream's description is not readable XML ({exc}); no channel description",))
    channels = root.findall("./desc/channels/channel")
    if not channels:
        return StreamChannels(None)
    if len(channels) != n_channels:
        return StreamChannels(
            None,
            (
                f"the stream's description lists {len(channels)} channel(s) for its {n_channels} channels; "
                "no channel description is sent",
            ),
        )
    rows = [_leaf_values(channel) for channel in channels]
    names = list(dict.fromkeys(name for row in rows for name in row))
    notes: list[str] = []
    description: dict[str, Any] = {"labels": None, "fields": {}}
    if LABEL_FIELD in names:
        labels = [row.get(LABEL_FIELD) or "" for row in rows]
        if (problem := _refusal({"labels": labels})) is None:
            description["labels"] = labels
        else:
            notes.append(f"the channel labels are left out: {problem}")
    for name in (name for name in names if name != LABEL_FIELD):
        values = [row.get(name) for row in rows]
        if (problem := _refusal({"fields": {name: values}})) is not None:
            notes.append(f"the channel field {name!r} is left out: {problem}")
        elif len(description["fields"]) == MAX_FIELDS:
            notes.append(f"the channel field {name!r} is left out: the service holds at most {MAX_FIELDS} fields")
        else:
            description["fields"][name] = values
    if description["labels"] is None and not description["fields"]:
        return StreamChannels(None, tuple(notes))
    return StreamChannels(description, tuple(notes))


def _leaf_values(element: ElementTree.Element, prefix: str = "") -> dict[str, str]:
    """The text of every element under `element` without children of its own, by its tag path below
    `element` (dots between tags); the first of repeated paths wins."""
    values: dict[str, str] = {}
    for child in element:
        path = prefix + child.tag
        if len(child):
            for name, value in _leaf_values(child, path + ".").items():
                values.setdefault(name, value)
        else:
            values.setdefault(path, (child.text or "").strip())
    return values


def _refusal(description: dict[str, Any]) -> str | None:
    """Why the service would refuse this (partial) channel description, or None if it would take it."""
    try:
        ChannelDescription.from_dict(description)
    except ChannelDescriptionError as exc:
        return str(exc)
    return None


def output_info(pylsl: Any, source: Any) -> Any:
    """StreamInfo of the outlet: `NAME-lrr`, same type, channel count and rate, float samples, and a copy of the
    source's `desc/channels` (labels and every per-channel field as the source wrote them)."""
    fmt = pylsl.cf_double64 if source.channel_format() == pylsl.cf_double64 else pylsl.cf_float32
    info = pylsl.StreamInfo(
        source.name() + OUTPUT_SUFFIX,
        source.type(),
        source.channel_count(),
        source.nominal_srate(),
        fmt,
        (source.source_id() or source.name()) + OUTPUT_SUFFIX,
    )
    channels = source.desc().child("channels")
    if not channels.empty():
        info.desc().append_copy(channels)
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
        channel_groups: str | list[str] | None = None,
        on_note: Callable[[str], None] | None = None,
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
        self.channel_groups = channel_groups
        """The session's `channel_groups` setting to make sure of before streaming (a field name or a list of
        them, e.g. "bank"), or None to leave the settings alone."""
        self.on_note = on_note
        """Called with each note as it is made (they are also kept in `stats.notes`)."""
        self.stats = BridgeStats(input_name, input_name + OUTPUT_SUFFIX)
        self._grouping_check: asyncio.Task[None] | None = None
        self._passing_through = False

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
        channels = stream_channels(full_info.as_xml(), full_info.channel_count())
        for note in channels.notes:
            self._note(note)
        outlet = pylsl.StreamOutlet(output_info(pylsl, full_info))
        dtype = _WIRE_DTYPE[fmt]
        deadline = None if duration is None else time.monotonic() + duration
        queue: asyncio.Queue[_Sent | None] = asyncio.Queue(self.max_in_flight)
        async with LRRClient(
            self.url, self.key, self.token, direct=self.direct, allow_identity=self.window.fit_seconds is None
        ) as client:
            if self.channel_groups is not None:
                await self._apply_channel_groups(client)
            if channels.description is not None:
                client.set_channels(channels.description)
            tasks = [
                asyncio.create_task(self._pump(inlet, client, queue, dtype, deadline, stop or asyncio.Event())),
                asyncio.create_task(self._publish(queue, outlet, client)),
            ]
            try:
                await _first_failure(tasks)
                if self._grouping_check is not None:
                    await self._grouping_check  # its warning comes before the summary
            finally:
                for task in tasks:
                    task.cancel()
                if self._grouping_check is not None:
                    self._grouping_check.cancel()
                    self._grouping_check = None  # a next run checks again
                self.stats.reconnects = client.reconnects
                inlet.close_stream()
        return self.stats

    def _note(self, text: str) -> None:
        """Keep a note for the operator and pass it to `on_note`."""
        self.stats.notes.append(text)
        if self.on_note is not None:
            self.on_note(text)

    async def _apply_channel_groups(self, client: LRRClient) -> None:
        """Set the session's `channel_groups` to `self.channel_groups`, keeping its other settings; a change
        starts the session over, which a note says when it held fitted samples or weights."""
        try:
            session: dict[str, Any] | None = await client.info()
        except UnknownSessionError:
            session = None
        settings = settings_with_channel_groups(session, self.channel_groups)
        if settings is None:
            return
        await client.put_settings(settings)
        if session is not None and (session.get("n_samples") or session.get("weights_source") not in (None, "none")):
            self._note(
                f"session {self.key!r} now groups its channels by {json.dumps(self.channel_groups)}, so it starts "
                f"over: its {session.get('n_samples', 0)} fitted samples and any weights were dropped"
            )

    def _check_grouping_after(self, client: LRRClient, reply: asyncio.Future[Any]) -> None:
        """Once, after the first chunk's reply: note a session whose grouping fell back (its channel_groups
        names a field its channel description does not have, or it has none)."""
        if self._grouping_check is None:
            self._grouping_check = asyncio.create_task(self._report_grouping(client, reply))

    async def _report_grouping(self, client: LRRClient, reply: asyncio.Future[Any]) -> None:
        """After `reply` succeeds, GET the session and note a grouping that fell back (grouping_fallback)."""
        await asyncio.wait([reply])
        if reply.cancelled() or reply.exception() is not None:
            return  # the chunk's own consumer deals with its failure
        try:
            session = await client.info()
        except LRRClientError:
            return  # advisory only: the stream itself reports a server that stopped answering
        if (note := grouping_fallback(session)) is not None:
            self._note(f"warning: {note}")

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
                self._check_grouping_after(client, fit_acks[-1][0])
                if len(fit_acks) >= self.max_in_flight:
                    await self._settle_fits(fit_acks)
            if n_fit == len(times):
                continue
            if not solved:
                await self._end_fitting(client, fit_acks)
                solved = True
            fitting = self.window.fit_seconds is None
            future = client.channel(Mode.FIT_TRANSFORM if fitting else Mode.TRANSFORM).submit(data[n_fit:])
            self._check_grouping_after(client, future)
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
            self._account_for_weights(reply.weights_source == "none", sent.stamps)
            outlet.push_chunk(np.ascontiguousarray(reply.data), sent.stamps)
            self.stats.samples_out += len(sent.stamps)

    def _account_for_weights(self, passed_through: bool, stamps: list[float]) -> None:
        """Count a chunk published unchanged for want of weights, and tell the operator each time the output starts
        being the input unchanged and each time weights take over: an LSL consumer cannot tell them apart."""
        if passed_through:
            self.stats.samples_passed_through += len(stamps)
        if passed_through == self._passing_through:
            return
        self._passing_through = passed_through
        if passed_through:
            self._note(
                f"session '{self.key}' has no weights: from the sample stamped {stamps[0]:.6f} on, "
                f"{self.stats.output_name} publishes the input unchanged until the session is solved "
                "(lrr solve, or the server's solve schedule)"
            )
        else:
            self._note(
                f"weights apply from the sample stamped {stamps[0]:.6f} on: {self.stats.output_name} is rereferenced "
                f"({self.stats.samples_passed_through} samples were published unchanged before)"
            )


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
