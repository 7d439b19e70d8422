"""The per-connection stream protocol, free of I/O: one binary frame in, one reply frame out.

`StreamChannel.on_binary` is the hot path: decode (a zero-copy view), look up the session once
per connection, hand the chunk to the session (service/session.py: transforms of a bound engine
run on the loop without a lock), encode the reply, and tell the session's live status what was
served (rates, the time from decode to the encoded reply, the chunk's `fs`). A refused frame
gets an error reply with its code and changes nothing; a fault of the server gets `internal`,
saying whether the session changed before it struck.
"""

from __future__ import annotations

import logging
import time

from lrr_service.core.codec import Chunk, FrameError, decode_chunk, encode_ack, encode_chunk_reply, encode_error
from lrr_service.core.vocabulary import ErrorCode, Mode
from lrr_service.service.context import ServiceContext
from lrr_service.service.errors import ServiceError
from lrr_service.service.logs import log_event
from lrr_service.service.session import ChunkResult, Session


class StreamChannel:
    """One websocket connection's protocol state: its stream key, route and the session it feeds."""

    def __init__(self, key: str, route: Mode | str, context: ServiceContext) -> None:
        self.key = key
        self.route = route = Mode(route)
        self.context = context
        self.registry = context.registry
        self.max_channels = context.settings.max_channels
        self.route_metrics = context.metrics.routes[route]
        self._session: Session | None = None

    def on_text(self) -> bytes:
        """Text frames are not part of the protocol: explain, keep the connection."""
        return self._reject(
            ErrorCode.TEXT_FRAME, "a text message arrived; send each chunk as one binary msgpack map", None
        )

    async def on_binary(self, payload: bytes) -> bytes:
        """Process one chunk frame and return the reply frame (chunk, ack or error)."""
        started = time.perf_counter()
        try:
            chunk = decode_chunk(payload, max_channels=self.max_channels)
        except FrameError as exc:
            return self._reject(exc.code, exc.message, exc.seq)
        session, created = self._session, False
        epoch = None
        try:
            if session is None or session.closed:
                session, created = self.registry.get_or_create(self.key)
                self._session = session
            epoch = session.epoch
            if self.route.fits:
                result = await session.fit(chunk.data, self.route, chunk.channels)
            else:
                result = await session.transform(chunk.data, self.route, chunk.channels)
        except ServiceError as exc:
            if created:
                self.registry.discard_if_unused(session)  # type: ignore[arg-type]
            return self._reject(exc.code, exc.message, chunk.seq)
        except Exception as exc:  # a bug, not bad input: say so, keep serving
            log_event(
                "chunk_failed",
                logging.ERROR,
                key=self.key,
                route=self.route,
                seq=chunk.seq,
                error=f"{type(exc).__name__}: {exc}",
                exc_info=True,
            )
            changed = session is not None and session.epoch != epoch
            return self._reject(ErrorCode.INTERNAL, self._internal_message(changed), chunk.seq)
        metrics = self.route_metrics
        n_samples = chunk.data.shape[0]
        metrics.frames.inc()
        metrics.samples.inc(n_samples)
        reply = self._reply(chunk, result)
        session.note_served(started, n_samples, n_samples if result.output is not None else 0, chunk.fs)
        return reply

    def _reply(self, chunk: Chunk, result: ChunkResult) -> bytes:
        """The ack (fit) or the rereferenced chunk (transform, fit_transform) for a processed chunk."""
        if result.output is None:
            return encode_ack(
                chunk.seq,
                n_samples=result.n_samples,
                weights_version=result.weights_version,
                reset=result.reset,
                regrouped=result.regrouped,
            )
        return encode_chunk_reply(
            chunk.seq,
            result.output,
            weights_version=result.weights_version,
            reset=result.reset,
            t0=chunk.t0,
            fs=chunk.fs,
            n_samples=result.n_samples if self.route.fits else None,
            weights_source=result.weights_source,
            regrouped=result.regrouped,
        )

    def _internal_message(self, session_changed: bool) -> str:
        """The `internal` reply: the chunk was not applied; whether the session changed meanwhile (e.g. the reset
        for the chunk's new channel count happened before the fault), so the client knows what to check."""
        if not session_changed:
            return "the server failed to process this chunk; it was not applied and the session is as before"
        return (
            "the server failed to process this chunk; it was not applied, but the session changed meanwhile "
            "(it may have been reset for the chunk's channel count: statistics and weights cleared); "
            f"check GET /streams/{self.key}"
        )

    def _reject(self, code: ErrorCode, message: str, seq: int | None) -> bytes:
        """An error reply; counted by code (and on the session, if any). Never logged per frame."""
        self.context.metrics.errors.labels(code).inc()
        session = self._session if self._session is not None and not self._session.closed else None
        session = session or self.registry.get(self.key)
        if session is not None:
            session.note_rejected(code, message)
        return encode_error(code, message, seq)
