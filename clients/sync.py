"""Blocking wrapper for scripts and notebooks: `LRRClientSync`.

Each runs the async client on its own event loop in a background thread, so it works the same
inside Jupyter (whose own loop is already running) and in plain scripts.
"""

from __future__ import annotations

import functools
import inspect
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from lrr_service.clients.backoff import ReconnectPolicy
from lrr_service.clients.client import DEFAULT_MAX_IN_FLIGHT, LRRClient
from lrr_service.clients.loop_thread import LoopThread
from lrr_service.core import codec
from lrr_service.core.channels import ChannelDescription
from lrr_service.core.vocabulary import Mode


class LRRClientSync:
    """The blocking twin of LRRClient: same arguments, same methods, streams as plain generators."""

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
        self._thread = LoopThread()
        try:
            self._client = self._thread.run(
                _make_client(
                    url,
                    key,
                    token,
                    max_in_flight=max_in_flight,
                    reconnect=reconnect,
                    resend=resend,
                    open_timeout=open_timeout,
                    direct=direct,
                    allow_identity=allow_identity,
                )
            )
        except BaseException:
            self._thread.close()
            raise
        self.key = key
        self.url = url

    def __enter__(self) -> LRRClientSync:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections and stop the background loop; idempotent. The loop stops even if closing fails."""
        if self._thread.loop.is_closed():
            return
        try:
            self._thread.run(self._client.aclose())
        finally:
            self._thread.close()

    @property
    def reconnects(self) -> int:
        """How many times a websocket was re-established after a drop."""
        return self._client.reconnects

    def set_channels(self, description: ChannelDescription | Mapping[str, Any] | None) -> None:
        """Describe the stream's channels: sent with the next frame of each websocket (LRRClient.set_channels)."""
        self._thread.run(_describe(self._client, description))

    # -- streams: chunks are iterated in the caller's thread, replies awaited in the loop's ---

    def stream(
        self,
        mode: str,
        chunks: Iterable[np.ndarray],
        *,
        max_in_flight: int | None = None,
        timestamps: Iterable[float | None] | None = None,
    ) -> Iterator[codec.AckReply | codec.ChunkReply]:
        """Pipeline `chunks` through `mode`; yields full replies in order (LRRClient.stream, blocking).

        `timestamps`, if given, supplies each chunk's t0 (echoed in its reply).
        """
        window_size = self._client.window_size(max_in_flight)
        starts = iter(timestamps) if timestamps is not None else None
        window: deque[Future[Any]] = deque()
        try:
            for chunk in chunks:
                t0 = next(starts, None) if starts is not None else None
                window.append(self._thread.submit(self._client.request(mode, chunk, t0=t0)))
                if len(window) >= window_size:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()
        finally:
            for future in window:
                future.add_done_callback(_mark_retrieved)

    def fit_stream(self, chunks: Iterable[np.ndarray], *, max_in_flight: int | None = None) -> Iterator[codec.AckReply]:
        """Pipelined fit: yields each acknowledgement in order."""
        yield from self.stream(Mode.FIT, chunks, max_in_flight=max_in_flight)  # type: ignore[misc]

    def transform_stream(
        self, chunks: Iterable[np.ndarray], *, max_in_flight: int | None = None
    ) -> Iterator[np.ndarray]:
        """Pipelined transform: yields each rereferenced chunk in order."""
        for reply in self.stream(Mode.TRANSFORM, chunks, max_in_flight=max_in_flight):
            yield reply.data  # type: ignore[union-attr]

    def fit_transform_stream(
        self, chunks: Iterable[np.ndarray], *, max_in_flight: int | None = None
    ) -> Iterator[np.ndarray]:
        """Pipelined fit_transform: yields each rereferenced chunk in order."""
        for reply in self.stream(Mode.FIT_TRANSFORM, chunks, max_in_flight=max_in_flight):
            yield reply.data  # type: ignore[union-attr]

    # Every other public coroutine of LRRClient (request, fit, transform, fit_transform, the REST
    # methods) gets a blocking twin below the class, generated from it, so the two cannot drift.
    if TYPE_CHECKING:  # static checkers see the generated twins as untyped attributes

        def __getattr__(self, name: str) -> Any: ...


def _blocking(name: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """LRRClient's coroutine method `name` as a blocking method: run on the client's loop thread."""

    @functools.wraps(method)
    def blocking(self: LRRClientSync, *args: Any, **kwargs: Any) -> Any:
        return self._thread.run(getattr(self._client, name)(*args, **kwargs))

    return blocking


for _name, _method in inspect.getmembers(LRRClient, inspect.iscoroutinefunction):
    if not _name.startswith("_") and _name != "aclose":
        setattr(LRRClientSync, _name, _blocking(_name, _method))


async def _describe(client: LRRClient, description: ChannelDescription | Mapping[str, Any] | None) -> None:
    """LRRClient.set_channels, run in the loop's thread like every other call on the client."""
    client.set_channels(description)


async def _make_client(url: str, key: str, token: str | None, **options: Any) -> LRRClient:
    """Build the async client inside the loop thread (its primitives belong to that loop)."""
    return LRRClient(url, key, token, **options)


def _mark_retrieved(future: Future[Any]) -> None:
    """Done-callback for abandoned stream futures: their exceptions are not worth a warning."""
    if not future.cancelled():
        future.exception()
