"""The per-connection stream protocol, free of I/O: one binary frame in, one reply frame out.

`StreamChannel.on_binary` is the hot path: decode (zero-copy view), look up the session once,
transform on the event loop, encode. Fit chunks are staged on the loop (a copy) and folded into
the statistics in the statistics lane (a BLAS update of milliseconds at hundreds of channels):
a full staging block is folded there while the next chunks are staged and acknowledged, so a
fit stream waits for a fold only if it fills the other block before the fold is done.
A rejected frame changes no session state.
"""

from __future__ import annotations

import logging

import numpy as np

from lrr_service.core import MAX_FIT_MAGNITUDE, BadSample, first_bad_sample
from lrr_service.core.codec import (
    Chunk,
    FrameError,
    decode_chunk,
    encode_ack,
    encode_chunk_reply,
    encode_error,
)
from lrr_service.core.errors import SettingsError
from lrr_service.core.vocabulary import ErrorCode, Mode
from lrr_service.service.capacity import CapacityError
from lrr_service.service.context import ServiceContext
from lrr_service.service.logs import log_event
from lrr_service.service.sessions import Session, SessionLimitError, check_settings_fit


class RejectedChunk(Exception):
    """A well-formed chunk that the session refuses; carries the protocol error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class StreamChannel:
    """One websocket connection's protocol state: its stream key, route and cached session."""

    def __init__(self, key: str, route: Mode | str, context: ServiceContext) -> None:
        self.key = key
        self.route = route = Mode(route)
        self.fits = route.fits
        self.transforms = route.transforms
        self.context = context
        self.registry = context.registry
        self.scheduler = context.scheduler
        self.lane = context.lane
        self.max_channels = context.settings.max_channels
        self.route_metrics = context.metrics.routes[route]
        self._session: Session | None = None

    def on_text(self) -> bytes:
        """Text frames are not part of the protocol: explain, keep the connection."""
        return self._reject(ErrorCode.TEXT_FRAME, "a text message arrived; send each chunk as one binary msgpack map", None)

    async def on_binary(self, payload: bytes) -> bytes:
        """Process one chunk frame and return the reply frame (chunk, ack or error)."""
        try:
            chunk = decode_chunk(payload, max_channels=self.max_channels)
        except FrameError as exc:
            return self._reject(exc.code, exc.message, exc.seq)
        session = self._session
        created = False
        if session is None or session.closed:
            try:
                session, created = self.registry.get_or_create(self.key)
            except SessionLimitError as exc:
                return self._reject(ErrorCode.TOO_MANY_SESSIONS, str(exc), chunk.seq)
            self._session = session
        epoch = session.epoch
        try:
            if self.fits:
                reply = await self._fit(session, chunk)
            else:
                reply = self._transform(session, chunk) or await self._transform_rebinding(session, chunk)
        except RejectedChunk as exc:
            if created:
                self.registry.discard_if_unused(session)
            return self._reject(exc.code, str(exc), chunk.seq)
        except Exception as exc:  # a bug, not bad input: say so, keep serving
            log_event("chunk_failed", logging.ERROR, key=self.key, route=self.route, seq=chunk.seq,
                      error=f"{type(exc).__name__}: {exc}", exc_info=True)  # fmt: skip
            return self._reject(ErrorCode.INTERNAL, self._internal_message(session.epoch != epoch), chunk.seq)
        metrics = self.route_metrics
        metrics.frames.inc()
        metrics.samples.inc(chunk.data.shape[0])
        return reply

    def _transform(self, session: Session, chunk: Chunk, reset: bool = False, bind: bool = False) -> bytes | None:
        """The hot path of /transform: apply the current weights on the loop.

        Returns None when the chunk's channel count is not the engine's, unless `bind` (engine lock held).
        """
        engine = session.engine
        data = chunk.data
        if engine.n_channels != data.shape[1] and not bind:
            return None
        output = engine.transform(data)
        counters = session.counters
        counters.transform_frames += 1
        counters.transform_samples += data.shape[0]
        return encode_chunk_reply(
            chunk.seq, output, weights_version=engine.weights_version, reset=reset, t0=chunk.t0, fs=chunk.fs,
            n_samples=engine.n_samples if self.fits else None,
        )

    async def _transform_rebinding(self, session: Session, chunk: Chunk) -> bytes:
        """A transform chunk whose channel count is new to the session: bind (resetting if bound), then apply."""
        async with session.engine_lock:
            reset = self._rebind(session, chunk.data)
            reply = self._transform(session, chunk, reset=reset, bind=True)
            session.dirty = True  # bound to a channel count (and perhaps given default weights)
        assert reply is not None
        return reply

    async def _fit(self, session: Session, chunk: Chunk) -> bytes:
        """Accumulate the chunk (in the statistics lane when it would fold into XᵀX), then ack or transform."""
        data = chunk.data
        n_samples = data.shape[0]
        async with session.engine_lock:
            reset = self._rebind(session, data)
            engine = session.engine
            if engine.n_channels is None:
                engine.bind(data.shape[1])  # allocation only, so the check below is exact for every chunk
            if engine.accumulate_is_cheap(n_samples):  # staging only: a copy, microseconds
                accepted = engine.accumulate(data)
            else:  # folds a staged block into XᵀX with BLAS: milliseconds, off the loop
                accepted = await self.lane.run(engine.accumulate, data)
            if not accepted:
                raise self._unfittable(first_bad_sample(data))
            if engine.has_pending_fold and (session.pending_fold is None or session.pending_fold.done()):
                session.pending_fold = self.lane.start(engine.fold_pending)  # the next chunks stage meanwhile
            counters = session.counters
            counters.fit_frames += 1
            counters.fit_samples += n_samples
            session.dirty = True
            self.scheduler.note_fit(session, n_samples)
            if self.transforms:
                reply = self._transform(session, chunk, reset=reset, bind=True)
                assert reply is not None
                return reply
            return encode_ack(chunk.seq, n_samples=engine.n_samples,
                              weights_version=engine.weights_version, reset=reset)  # fmt: skip

    def _rebind(self, session: Session, data: np.ndarray) -> bool:
        """With the engine lock held: refuse the chunk if it would be refused anyway, else reset a session
        bound to another channel count. True if it reset; the engine is then unbound."""
        engine = session.engine
        if engine.n_channels == data.shape[1]:
            return False
        self._check_acceptable(session, data)
        if engine.n_channels is None:
            return False
        self.registry.reset(session, "channel_count", n_channels=data.shape[1], route=self.route)
        return True

    def _check_acceptable(self, session: Session, data: np.ndarray) -> None:
        """Before binding or resetting the session for a new channel count, make sure the chunk will be taken."""
        try:
            check_settings_fit(session.engine.settings, data.shape[1])
        except SettingsError as exc:
            raise RejectedChunk(ErrorCode.SETTINGS_MISMATCH, f"{exc}; change the session's settings (PUT /streams/"
                                f"{session.key}) or send chunks with a matching channel count") from None  # fmt: skip
        try:
            self.registry.check_capacity(session.key, data.shape[1])
        except CapacityError as exc:
            raise RejectedChunk(ErrorCode.OVER_CAPACITY, str(exc)) from None
        if self.fits:
            bad = first_bad_sample(data)
            if bad is not None:
                raise self._unfittable(bad)

    @staticmethod
    def _unfittable(bad: BadSample | None) -> RejectedChunk:
        """The refusal of a fit chunk the statistics cannot take, naming its first bad sample so the
        sender can find it: `out_of_range` for a finite sample beyond ±MAX_FIT_MAGNITUDE, else `non_finite`."""
        if bad is not None and bad.finite:
            return RejectedChunk(ErrorCode.OUT_OF_RANGE, f"the chunk holds {bad.describe()}, beyond ±{MAX_FIT_MAGNITUDE:g}: "
                                 "its square would overflow the statistics; it was not fitted, nothing changed: "
                                 "send samples in physical units (volts, microvolts or ADC counts)")  # fmt: skip
        where = f" (first at sample {bad.sample}, channel {bad.channel})" if bad is not None else ""
        return RejectedChunk(ErrorCode.NON_FINITE, f"the chunk holds NaN or infinity{where}; it was not fitted, nothing "
                             "changed: send finite samples (drop or interpolate bad ones)")  # fmt: skip

    def _internal_message(self, session_changed: bool) -> str:
        """The `internal` reply: the chunk was not applied; whether the session changed meanwhile (e.g. the reset
        for the chunk's new channel count happened before the fault), so the client knows what to check."""
        if not session_changed:
            return "the server failed to process this chunk; it was not applied and the session is as before"
        return ("the server failed to process this chunk; it was not applied, but the session changed meanwhile "
                "(it may have been reset for the chunk's channel count: statistics and weights cleared); "
                f"check GET /streams/{self.key}")  # fmt: skip

    def _reject(self, code: str, message: str, seq: int | None) -> bytes:
        """An error reply; counted by code (and on the session, if any). Never logged per frame."""
        self.context.metrics.errors.labels(code).inc()
        session = self._session if self._session is not None and not self._session.closed else None
        session = session or self.registry.get(self.key)
        if session is not None:
            session.counters.rejected_frames += 1
        return encode_error(code, message, seq)
