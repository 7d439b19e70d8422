"""`LRRClient`: the async Python client of one stream key (websocket channels + REST helpers).

One websocket per mode (fit, transform, fit_transform), opened on first use. Single calls await
one reply; the `*_stream` forms keep up to `max_in_flight` frames on the wire and yield replies
in the order the chunks were given.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from lrr_service.core.vocabulary import Mode
from lrr_service.core import codec
from lrr_service.clients.backoff import ReconnectPolicy, as_policy
from lrr_service.clients.channel import Channel
from lrr_service.clients.endpoints import auth_headers, websocket_url
from lrr_service.clients.rest import AsyncRestClient

DEFAULT_MAX_IN_FLIGHT = 32

Chunks = Iterable[np.ndarray] | AsyncIterable[np.ndarray]


class LRRClient:
    """Stream chunks of one session (`key`) through an lrr server at `url` (http(s):// or ws(s)://).

    `reconnect` is True (default backoff), False, or a ReconnectPolicy. Frames without a reply when
    the connection drops are sent again after reconnecting. Transform frames are idempotent; a fit
    frame whose reply was lost may be applied twice (at-least-once); pass `resend=False` to get
    ConnectionLost for such frames instead of a resend.
    """

    def __init__(self, url: str, key: str, token: str | None = None, *,
                 max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, reconnect: bool | ReconnectPolicy = True,
                 resend: bool = True, open_timeout: float = 10.0) -> None:
        self.max_in_flight = _checked_window(max_in_flight)
        if not key:
            raise ValueError("key is empty; expected the stream key of a session")
        self.url = url
        self.key = key
        self.rest = AsyncRestClient(url, token)
        self._headers = auth_headers(token)
        self._policy = as_policy(reconnect)
        self._resend = resend
        self._open_timeout = open_timeout
        self._channels: dict[str, Channel] = {}

    async def __aenter__(self) -> "LRRClient":
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every websocket and the HTTP pool; frames still waiting fail with ConnectionLost."""
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.aclose()
        await self.rest.aclose()

    @property
    def reconnects(self) -> int:
        """How many times any of this client's websockets was re-established after a drop."""
        return sum(channel.reconnects for channel in self._channels.values())

    def channel(self, mode: str) -> Channel:
        """The websocket channel of `mode` ('fit', 'transform' or 'fit_transform'), created on first use."""
        if mode not in self._channels:
            self._channels[mode] = Channel(websocket_url(self.url, self.key, mode), self._headers, self._policy,
                                           resend=self._resend, open_timeout=self._open_timeout)
        return self._channels[mode]

    def window_size(self, max_in_flight: int | None = None) -> int:
        """A stream's window: `max_in_flight` if given, else the client's; ValueError below 1."""
        return _checked_window(max_in_flight or self.max_in_flight)

    # -- one chunk --------------------------------------------------------------------------

    async def request(self, mode: str, chunk: np.ndarray, *, t0: float | None = None,
                      fs: float | None = None) -> codec.AckReply | codec.ChunkReply:
        """Send one chunk on `mode`'s websocket and return the server's full reply."""
        future = self.channel(mode).submit(chunk, t0=t0, fs=fs)
        reply = await future
        assert not isinstance(reply, codec.ErrorReply)
        return reply

    async def fit(self, chunk: np.ndarray) -> codec.AckReply:
        """Fit the session on `chunk` (samples, channels); returns the acknowledgement."""
        return await self.request(Mode.FIT, chunk)  # type: ignore[return-value]

    async def transform(self, chunk: np.ndarray) -> np.ndarray:
        """Rereference `chunk` with the session's current weights."""
        return (await self.request(Mode.TRANSFORM, chunk)).data  # type: ignore[union-attr]

    async def fit_transform(self, chunk: np.ndarray) -> np.ndarray:
        """Fit on `chunk`, then rereference it."""
        return (await self.request(Mode.FIT_TRANSFORM, chunk)).data  # type: ignore[union-attr]

    # -- streams ----------------------------------------------------------------------------

    async def stream(self, mode: str, chunks: Chunks, *,
                     max_in_flight: int | None = None) -> AsyncIterator[codec.AckReply | codec.ChunkReply]:
        """Pipeline `chunks` through `mode`: up to max_in_flight frames unanswered, replies yielded in order.

        A chunk's error reply is raised (as its ServerError subclass) when its turn to be yielded comes.
        """
        window_size = self.window_size(max_in_flight)
        channel = self.channel(mode)
        window: deque[Any] = deque()
        async for chunk in _as_async(chunks):
            window.append(channel.submit(chunk))
            if len(window) >= window_size:
                yield await window.popleft()
        while window:
            yield await window.popleft()

    async def fit_stream(self, chunks: Chunks, *, max_in_flight: int | None = None) -> AsyncIterator[codec.AckReply]:
        """Pipelined fit: yields each chunk's acknowledgement, in order."""
        async for reply in self.stream(Mode.FIT, chunks, max_in_flight=max_in_flight):
            yield reply  # type: ignore[misc]

    async def transform_stream(self, chunks: Chunks, *, max_in_flight: int | None = None) -> AsyncIterator[np.ndarray]:
        """Pipelined transform: yields each rereferenced chunk, in order."""
        async for reply in self.stream(Mode.TRANSFORM, chunks, max_in_flight=max_in_flight):
            yield reply.data  # type: ignore[union-attr]

    async def fit_transform_stream(self, chunks: Chunks, *,
                                   max_in_flight: int | None = None) -> AsyncIterator[np.ndarray]:
        """Pipelined fit_transform: yields each rereferenced chunk, in order."""
        async for reply in self.stream(Mode.FIT_TRANSFORM, chunks, max_in_flight=max_in_flight):
            yield reply.data  # type: ignore[union-attr]

    # -- REST, bound to this key ------------------------------------------------------------

    async def info(self) -> dict[str, Any]:
        """The session's settings and state (GET /streams/{key})."""
        return await self.rest.session(self.key)

    async def put_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Create the session with, or change it to, these engine settings."""
        return await self.rest.put_settings(self.key, settings)

    async def sessions(self) -> list[dict[str, Any]]:
        """Every session on the server."""
        return await self.rest.sessions()

    async def reset(self) -> dict[str, Any]:
        """Clear the session's statistics and weights (settings stay)."""
        return await self.rest.reset(self.key)

    async def solve(self) -> dict[str, Any]:
        """Solve the weights from the session's statistics now."""
        return await self.rest.solve(self.key)

    async def delete(self) -> None:
        """Delete the session (and its checkpoint) on the server."""
        await self.rest.delete(self.key)

    async def get_weights(self) -> np.ndarray:
        """The session's W as float64 (n, n), bit-identical to the server's."""
        return await self.rest.get_weights(self.key)

    async def download_weights(self, path: Path | str) -> Path:
        """Save the session's W as CSV at `path`."""
        return await self.rest.download_weights(self.key, path)

    async def put_weights(self, weights: np.ndarray | Path | str, *, replace: bool = False) -> dict[str, Any]:
        """Upload W from an array or a CSV path; `replace` overrides weights the session already has."""
        return await self.rest.put_weights(self.key, weights, replace=replace)


def _checked_window(max_in_flight: int) -> int:
    """`max_in_flight` itself, refused with ValueError below 1."""
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
    return max_in_flight


async def _as_async(chunks: Chunks) -> AsyncIterator[np.ndarray]:
    """Iterate a plain or an async iterable the same way."""
    if isinstance(chunks, AsyncIterable):
        async for chunk in chunks:
            yield chunk
    else:
        for chunk in chunks:
            yield chunk
