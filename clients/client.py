"""`LRRClient`: the async Python client of one stream key (websocket channels + REST helpers).

One websocket per mode (fit, transform, fit_transform), opened on first use. Single calls await
one reply; the `*_stream` forms keep up to `max_in_flight` frames on the wire and yield replies
in the order the chunks were given.
"""

from __future__ import annotations

import functools
import inspect
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import numpy as np

from lrr_service.clients.backoff import ReconnectPolicy, as_policy
from lrr_service.clients.channel import Channel
from lrr_service.clients.endpoints import auth_headers, checked_key, websocket_url
from lrr_service.clients.errors import IdentityTransformError
from lrr_service.clients.rest import AsyncRestClient
from lrr_service.core import codec
from lrr_service.core.channels import ChannelDescription
from lrr_service.core.vocabulary import Mode

DEFAULT_MAX_IN_FLIGHT = 32

Chunks = Iterable[np.ndarray] | AsyncIterable[np.ndarray]
T = TypeVar("T")


def _for_key(method: Callable[..., Awaitable[T]], name: str | None = None) -> Callable[..., Awaitable[T]]:
    """`method` of AsyncRestClient (whose second parameter is the key) as a method of LRRClient bound
    to the client's key: one definition per REST operation, and a signature without `key`."""

    @functools.wraps(method)
    async def bound(self: LRRClient, *args: Any, **kwargs: Any) -> T:
        return await method(self.rest, self.key, *args, **kwargs)

    signature = inspect.signature(method)
    parameters = list(signature.parameters.values())
    bound.__signature__ = signature.replace(parameters=[parameters[0], *parameters[2:]])  # type: ignore[attr-defined]
    if name is not None:
        bound.__name__ = bound.__qualname__ = name
    return bound


class LRRClient:
    """Stream chunks of one session (`key`) through an lrr server at `url` (http(s):// or ws(s)://).

    `reconnect` is True (default backoff), False, or a ReconnectPolicy. Frames without a reply when
    the connection drops are sent again after reconnecting. Transform frames are idempotent; a fit
    frame whose reply was lost may be applied twice (at-least-once); pass `resend=False` to get
    ConnectionLost for such frames instead of a resend.

    A `transform` whose reply says no weights were applied (`weights_source` "none": the output would equal
    the input) raises IdentityTransformError, unless `allow_identity=True`; `fit_transform` replies are
    not checked (their first chunks precede the first solve by design).

    `direct=True` (for a cluster behind a proxy, docs/scale.md): the websockets go straight to the
    worker that owns `key`, found with GET /streams/{key}/owner at each (re)connection, saving the
    proxy's hop; REST calls still go to `url`. On a single server it changes nothing.
    """

    def __init__(
        self,
        url: str,
        key: str,
        token: str | None = None,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        reconnect: bool | ReconnectPolicy = True,
        resend: bool = True,
        open_timeout: float = 10.0,
        direct: bool = False,
        allow_identity: bool = False,
    ) -> None:
        self.max_in_flight = _checked_window(max_in_flight)
        checked_key(key)  # BadKeyError now, not at the first connection
        self.url = url
        self.key = key
        self.rest = AsyncRestClient(url, token)
        self._headers = auth_headers(token)
        self._policy = as_policy(reconnect)
        self._resend = resend
        self._open_timeout = open_timeout
        self.direct = direct
        self.allow_identity = allow_identity
        self._channels: dict[str, Channel] = {}
        self._description: ChannelDescription | None = None

    async def __aenter__(self) -> LRRClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
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
            self._channels[mode] = Channel(
                websocket_url(self.url, self.key, mode),
                self._headers,
                self._policy,
                resend=self._resend,
                open_timeout=self._open_timeout,
                locate=self._owner_locator(mode) if self.direct else None,
            )
            self._channels[mode].describe(self._description)
        return self._channels[mode]

    def set_channels(self, description: ChannelDescription | Mapping[str, Any] | None) -> None:
        """Describe the stream's channels (labels, fields such as `bank` that channel_groups may name): the
        next frame on each websocket carries it, and the first after each reconnection. None: stop sending.
        Raises ChannelDescriptionError for a description that breaks its contract (core/channels.py)."""
        if description is not None and not isinstance(description, ChannelDescription):
            description = ChannelDescription.from_dict(description)
        self._description = description
        for channel in self._channels.values():
            channel.describe(description)

    def _owner_locator(self, mode: str) -> Callable[[], Awaitable[str]]:
        """For the direct path: the websocket URL of `mode` on the key's owner, asked for anew each time."""

        async def locate() -> str:
            return websocket_url(await self.rest.owner(self.key), self.key, mode)

        return locate

    def window_size(self, max_in_flight: int | None = None) -> int:
        """A stream's window: `max_in_flight` if given, else the client's; ValueError below 1."""
        return _checked_window(max_in_flight or self.max_in_flight)

    # -- one chunk --------------------------------------------------------------------------

    async def request(
        self, mode: str, chunk: np.ndarray, *, t0: float | None = None, fs: float | None = None
    ) -> codec.AckReply | codec.ChunkReply:
        """Send one chunk on `mode`'s websocket and return the server's full reply."""
        future = self.channel(mode).submit(chunk, t0=t0, fs=fs)
        reply = await future
        assert not isinstance(reply, codec.ErrorReply)
        return self._checked(mode, reply)

    def _checked(self, mode: str, reply: codec.AckReply | codec.ChunkReply) -> codec.AckReply | codec.ChunkReply:
        """`reply`, unless it is a transform that applied no weights and identity output was not allowed."""
        if (
            mode == Mode.TRANSFORM
            and not self.allow_identity
            and isinstance(reply, codec.ChunkReply)
            and reply.weights_source == "none"
        ):
            raise IdentityTransformError(
                f"session {self.key!r} has no weights (nothing fitted, uploaded or defaulted), so its transform "
                "returns the input unchanged; fit it (then solve), upload weights, or pass allow_identity=True "
                "to accept unchanged output",
                seq=reply.seq,
            )
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

    async def stream(
        self,
        mode: str,
        chunks: Chunks,
        *,
        max_in_flight: int | None = None,
        timestamps: Iterable[float | None] | None = None,
    ) -> AsyncIterator[codec.AckReply | codec.ChunkReply]:
        """Pipeline `chunks` through `mode`: up to max_in_flight frames unanswered, replies yielded in order.

        `timestamps`, if given, supplies each chunk's t0 (echoed in its reply). A chunk's error reply is
        raised (as its ServerError subclass) when its turn to be yielded comes.
        """
        window_size = self.window_size(max_in_flight)
        channel = self.channel(mode)
        starts = iter(timestamps) if timestamps is not None else None
        window: deque[Any] = deque()
        async for chunk in _as_async(chunks):
            window.append(channel.submit(chunk, t0=next(starts, None) if starts is not None else None))
            if len(window) >= window_size:
                yield self._checked(mode, await window.popleft())
        while window:
            yield self._checked(mode, await window.popleft())

    async def fit_stream(self, chunks: Chunks, *, max_in_flight: int | None = None) -> AsyncIterator[codec.AckReply]:
        """Pipelined fit: yields each chunk's acknowledgement, in order."""
        async for reply in self.stream(Mode.FIT, chunks, max_in_flight=max_in_flight):
            yield reply  # type: ignore[misc]

    async def transform_stream(self, chunks: Chunks, *, max_in_flight: int | None = None) -> AsyncIterator[np.ndarray]:
        """Pipelined transform: yields each rereferenced chunk, in order."""
        async for reply in self.stream(Mode.TRANSFORM, chunks, max_in_flight=max_in_flight):
            yield reply.data  # type: ignore[union-attr]

    async def fit_transform_stream(
        self, chunks: Chunks, *, max_in_flight: int | None = None
    ) -> AsyncIterator[np.ndarray]:
        """Pipelined fit_transform: yields each rereferenced chunk, in order."""
        async for reply in self.stream(Mode.FIT_TRANSFORM, chunks, max_in_flight=max_in_flight):
            yield reply.data  # type: ignore[union-attr]

    # -- REST, bound to this key (AsyncRestClient's methods, written once there) -------------

    info = _for_key(AsyncRestClient.session, "info")
    put_settings = _for_key(AsyncRestClient.put_settings)
    reset = _for_key(AsyncRestClient.reset)
    solve = _for_key(AsyncRestClient.solve)
    delete = _for_key(AsyncRestClient.delete)
    get_weights = _for_key(AsyncRestClient.get_weights)
    download_weights = _for_key(AsyncRestClient.download_weights)
    put_weights = _for_key(AsyncRestClient.put_weights)
    put_channels = _for_key(AsyncRestClient.put_channels)
    get_channels = _for_key(AsyncRestClient.get_channels)
    delete_channels = _for_key(AsyncRestClient.delete_channels)
    quality = _for_key(AsyncRestClient.quality)

    async def sessions(self) -> list[dict[str, Any]]:
        """Every session on the server (GET /streams)."""
        return await self.rest.sessions()


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
