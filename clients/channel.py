"""One websocket channel (/ws/{key}/{mode}) that keeps frames matched to replies across reconnects.

`Channel.submit` numbers and encodes a chunk and returns a future for its reply. A sender task
writes frames in seq order; a supervisor task reads replies, resolves futures by seq, and when the
connection drops reconnects with backoff and sends again every frame that has no reply yet.
A frame is never dropped silently: it gets its reply, a typed ServerError, or ConnectionLost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from lrr_service.clients.backoff import ReconnectPolicy, RetryBudget
from lrr_service.clients.errors import (
    AuthenticationError,
    ConnectionLost,
    LRRClientError,
    NoSuchEndpointError,
    ProtocolError,
    ServerError,
    error_for,
)
from lrr_service.clients.inflight import InFlight
from lrr_service.clients.samples import wire_samples
from lrr_service.core import codec
from lrr_service.core.channels import ChannelDescription
from lrr_service.core.vocabulary import ErrorCode

MAX_REPLY_BYTES = 2**28
"""Largest reply accepted (256 MiB): far above any realistic chunk."""

_FATAL_CLOSE_CODES = frozenset({1002, 1003, 1007, 1008, 1009, 1010})
"""Close codes that mean the server refuses this client, so reconnecting cannot help."""


def _mark_retrieved(future: asyncio.Future[codec.Reply]) -> None:
    """Done-callback: an abandoned future's exception must not be reported as 'never retrieved'."""
    if not future.cancelled():
        future.exception()


class Channel:
    """A lazily connected websocket for one mode of one stream key."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        policy: ReconnectPolicy,
        *,
        resend: bool = True,
        open_timeout: float = 10.0,
        locate: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        self.url = url
        self._locate = locate
        """Asked for the URL before each connection (the direct path to a cluster's owner); None: `url`."""
        self._headers = headers
        self._resend = resend
        self._open_timeout = open_timeout
        self._frames = InFlight()
        self._ws: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._queue: asyncio.Queue[int] = asyncio.Queue()
        self._supervisor: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._closed = False
        self._retries = RetryBudget(policy)
        self._refusal: ServerError | None = None
        self.reconnects = 0
        """How many times the connection was re-established after a drop."""
        self._channels: ChannelDescription | None = None
        self._described_on: int | None = None
        """The connection (`reconnects` count) whose frames last carried the description; None: send it."""

    def describe(self, channels: ChannelDescription | None) -> None:
        """Carry `channels` in the next frame (and in the first after every reconnection, in case the server
        lost it); None: stop sending a description."""
        self._channels, self._described_on = channels, None

    @property
    def in_flight(self) -> int:
        """Frames submitted whose reply has not arrived yet."""
        return len(self._frames)

    @property
    def unsent(self) -> int:
        """Frames waiting for a reply that are not yet written to the current connection."""
        return self._frames.unsent()

    def submit(
        self, data: np.ndarray, *, t0: int | float | None = None, fs: int | float | None = None
    ) -> asyncio.Future[codec.Reply]:
        """Queue `data` as the next frame and return the future of its reply (runs synchronously, in call order).

        Other integer dtypes are converted when exact (clients/samples.py). Raises ValueError at once for data
        the wire cannot carry (not 2-D, empty, a dtype that cannot be converted exactly).
        """
        seq = self._frames.next_seq
        channels = self._channels if self._described_on != self.reconnects else None
        frame = codec.encode_chunk(seq, wire_samples(data), t0=t0, fs=fs, channels=channels)
        future = self.submit_encoded(seq, frame)
        if channels is not None:
            self._described_on = self.reconnects
        return future

    def submit_encoded(self, seq: int, message: bytes | str) -> asyncio.Future[codec.Reply]:
        """Queue an already encoded message whose reply will carry `seq` (for relays and protocol tests).

        Later `submit` calls number their frames after `seq`.
        """
        if self._closed:
            raise LRRClientError("the client is closed; make a new one")
        future: asyncio.Future[codec.Reply] = asyncio.get_running_loop().create_future()
        self._frames.add(seq, message, future)
        future.add_done_callback(_mark_retrieved)
        self._queue.put_nowait(seq)
        self._ensure_running()
        return future

    async def aclose(self) -> None:
        """Close the websocket; frames still waiting fail with ConnectionLost."""
        self._closed = True
        for task in (self._sender, self._supervisor):
            if task is not None:
                task.cancel()
        for task in (self._sender, self._supervisor):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._ws is not None:
            await self._ws.close()
        self._frames.fail_all(ConnectionLost("the client was closed"))

    # -- tasks ------------------------------------------------------------------------------

    def _ensure_running(self) -> None:
        """Start the supervisor (connect, read, reconnect) and the sender if they are not running."""
        if self._supervisor is None or self._supervisor.done():
            self._supervisor = asyncio.create_task(self._supervise(), name=f"lrr-read {self.url}")
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_queued(), name=f"lrr-send {self.url}")

    async def _supervise(self) -> None:
        """Connect, read replies until the connection drops, reconnect; fail every waiting frame if that fails.

        Each supervisor starts with the full reconnect budget, even after an earlier one spent its own.
        """
        self._retries.renew()
        try:
            await self._connect(first=True)
            while True:
                await self._read_replies()
                await self._connect(first=False)
                self.reconnects += 1
        except LRRClientError as exc:
            self._connected.clear()
            self._frames.fail_all(exc)
        except Exception as exc:  # a bug or an unforeseen failure must not leave frames waiting forever
            self._connected.clear()
            self._frames.fail_all(
                ConnectionLost(f"the connection to {self.url} failed unexpectedly ({_describe(exc)})")
            )
            raise

    async def _send_queued(self) -> None:
        """Send queued frames in seq order, each at most once per connection."""
        while True:
            seq = await self._queue.get()
            if self._frames.to_send(seq) is None:
                continue
            await self._connected.wait()
            async with self._send_lock:
                message = self._frames.to_send(seq)
                if message is None or self._ws is None:
                    continue
                try:
                    await self._ws.send(message)
                    self._frames.mark_sent(seq)
                except ConnectionClosed:
                    pass  # the supervisor reconnects and sends it again

    # -- connecting -------------------------------------------------------------------------

    async def _connect(self, *, first: bool) -> None:
        """Open the websocket and send every unanswered frame again.

        The first connection is tried once (a server that is not there should fail fast); after a drop,
        attempts follow the backoff policy, whose budget is renewed only when a reply arrives, so a server
        that accepts and drops at once cannot keep the client looping forever.
        """
        failure: Exception | None = None
        while True:
            if not first:
                delay = self._retries.next_delay()
                if delay is None:
                    raise ConnectionLost(
                        f"lost the connection to {self.url} and could not reconnect "
                        f"({_describe(failure) if failure else 'reconnecting is disabled'})",
                        self._frames.seqs(),
                    )
                await asyncio.sleep(delay)
            try:
                if self._locate is not None:
                    self.url = await self._locate()
                ws = await connect(
                    self.url,
                    additional_headers=self._headers,
                    max_size=MAX_REPLY_BYTES,
                    compression=None,
                    open_timeout=self._open_timeout,
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                code = _handshake_code(exc)
                if code is None and status == 401:
                    raise AuthenticationError("unauthorized", _handshake_text(exc), status=status) from None
                if code is None and status in (403, 404):  # lrr-service refusals carry their code
                    raise NoSuchEndpointError(
                        "no_such_endpoint",
                        f"{_handshake_text(exc)} at {self.url}, without an lrr-service error: no stream route at "
                        "this URL (or a proxy in front refused it); check the server URL: a URL with a path "
                        "prefix works only behind a reverse proxy that strips the prefix",
                        status=status,
                    ) from None
                if status < 500 and code != ErrorCode.NOT_OWNER:  # not_owner: the key moved, locate it again
                    raise error_for(code or "handshake_refused", _handshake_text(exc), status=status) from None
                failure = exc
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                failure = exc
            except LRRClientError as exc:  # locating the owner failed (the proxy is down, or has no worker up yet)
                if isinstance(exc, AuthenticationError):
                    raise
                failure = exc
            else:
                break
            if first:
                raise ConnectionLost(f"cannot connect to {self.url} ({_describe(failure)})", self._frames.seqs())
        self._ws = ws
        self._refusal = None
        with contextlib.suppress(ConnectionClosed):  # dropped again at once: _read_replies returns, we reconnect
            await self._send_unanswered(ws)
        self._connected.set()

    async def _send_unanswered(self, ws: ClientConnection) -> None:
        """On a new connection, write every frame without a reply again, oldest first."""
        async with self._send_lock:
            for seq in self._frames.start_connection(resend=self._resend):
                message = self._frames.to_send(seq)
                if message is not None:
                    await ws.send(message)
                    self._frames.mark_sent(seq)

    # -- reading ----------------------------------------------------------------------------

    async def _read_replies(self) -> None:
        """Resolve futures from replies until the connection closes; raise if the server refuses us for good."""
        assert self._ws is not None
        ws = self._ws
        try:
            async for message in ws:
                if isinstance(message, str):
                    raise ProtocolError(f"the server sent a text message {message[:80]!r}; expected binary msgpack")
                try:
                    reply = codec.decode_reply(message)
                except codec.FrameError as exc:
                    raise ProtocolError(f"unreadable reply from the server: {exc}") from None
                self._dispatch(reply)
        except ConnectionClosed:
            pass
        finally:
            self._connected.clear()
        code, reason = ws.close_code, ws.close_reason or ""
        if code == 1009:
            raise error_for(
                "frame_too_large",
                f"the server closed the connection: a frame was over its size "
                f"limit ({reason or 'message too big'}); send smaller chunks",
            )
        if code in _FATAL_CLOSE_CODES:
            if self._refusal is not None:
                raise self._refusal
            raise error_for("closed", f"the server closed the connection ({code}: {reason or 'no reason'})")

    def _dispatch(self, reply: codec.Reply) -> None:
        """Hand a reply to its frame; a bad_key refusal concerns the whole connection (the server closes next)."""
        self._retries.renew()  # progress: a later drop gets a fresh reconnect budget
        if isinstance(reply, codec.ErrorReply) and reply.seq is None and reply.code == ErrorCode.BAD_KEY:
            self._refusal = error_for(reply.code, reply.message)
            return
        self._frames.resolve(reply)


def _handshake_text(exc: InvalidStatus) -> str:
    """The refused handshake's status and body, for the error message."""
    body = exc.response.body.decode(errors="replace").strip() if exc.response.body else ""
    return f"HTTP {exc.response.status_code} at the websocket handshake" + (f": {body[:300]}" if body else "")


def _handshake_code(exc: InvalidStatus) -> str | None:
    """The error code in a refused handshake's JSON body (`{"detail": {"code": ...}}`), if it has one."""
    try:
        detail = json.loads(exc.response.body or b"")["detail"]
        return str(detail["code"]) if isinstance(detail, dict) and "code" in detail else None
    except (ValueError, KeyError, TypeError):
        return None


def _describe(exc: BaseException) -> str:
    """A failure in one short line; a refused handshake keeps the server's explanation."""
    text = _handshake_text(exc) if isinstance(exc, InvalidStatus) else str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:197] + "..."
