"""GET /events: server-sent events pushing the body of GET /streams about once a second.

Each event is `event: streams` with `data:` the JSON of GET /streams on one line; a failure to
build it (in a cluster: the store unreachable) is sent as `event: error` with `{"code", "message"}`
and the stream goes on. The first event is sent at once.

Sharing: every stream sends the same body (`SharedBody`): a build less than half an interval old, or still
under way, serves whoever asks. However many viewers, the listing is built at most twice a second (in a
cluster, the store's summaries read twice), not once per viewer per second.

Limits: an open event stream is an HTTP request in progress, so it holds one of the
LRR_MAX_HTTP_REQUESTS slots of the gate (service/gate.py) for as long as it is open. To keep REST
answering, at most a quarter of those slots (`ServiceContext.max_event_streams`, 16 by default)
may be event streams; beyond, GET /events answers 503 `too_many_requests`.

Shutdown: uvicorn waits for open responses (up to LRR_SHUTDOWN_TIMEOUT_SECONDS) before it shuts
the app down, and does not tell them it is stopping. The service's server (`ServiceServer` in
service/serving.py) sets `context.stopping` the moment it is asked to exit, and each stream checks
it every STOP_POLL_SECONDS and then ends cleanly (the response completes). Under another server
that does not set it, a stream only delays the shutdown by the graceful timeout, after which
uvicorn cancels it.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from lrr_service.core.vocabulary import ErrorCode
from lrr_service.service.errors import ServiceError

if TYPE_CHECKING:
    from lrr_service.service.context import ServiceContext

EVENT_INTERVAL_SECONDS = 1.0
"""Time between two `streams` events of one stream."""
STOP_POLL_SECONDS = 0.1
"""How often a stream checks whether the server is stopping."""
RETRY_MILLISECONDS = 2000
"""The reconnection delay browsers (EventSource) are told to use when the stream ends."""


Body = Callable[[], Awaitable[dict[str, Any]]]


class SharedBody:
    """One build of `build()` shared by every caller while it is under way or less than `fresh_seconds` old.
    A caller that leaves does not cancel it for the others; a failed build is shared like a good one."""

    def __init__(self, build: Body, fresh_seconds: float = EVENT_INTERVAL_SECONDS / 2) -> None:
        self._build = build
        self._fresh_seconds = fresh_seconds
        self._latest: asyncio.Future[dict[str, Any]] | None = None
        self._started = -math.inf

    async def get(self) -> dict[str, Any]:
        """The latest build's body (or its exception), a new build when the latest is done and stale."""
        loop = asyncio.get_running_loop()
        latest = self._latest
        if latest is None or (latest.done() and loop.time() - self._started >= self._fresh_seconds):
            self._started = loop.time()
            latest = self._latest = asyncio.ensure_future(self._build())
            latest.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved if none waits
        return await asyncio.shield(latest)


def event(name: str, data: Any) -> bytes:
    """One server-sent event: `event: <name>` and `data:` the compact JSON of `data` on one line."""
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'), allow_nan=False)}\n\n".encode()


class EventStreamResponse(StreamingResponse):
    """The text/event-stream response; gives back its slot among the context's event streams when it ends."""

    def __init__(self, context: ServiceContext, content: AsyncIterator[bytes]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.context.event_streams -= 1


def open_event_stream(context: ServiceContext, body: Body) -> EventStreamResponse:
    """Take one of the context's event-stream slots and answer with a stream of `body()` as `streams` events.
    Every stream of the context shares the SharedBody of the first one's `body` (one route, one body). Raises
    ServiceError too_many_requests (503) when every slot is taken."""
    limit = context.max_event_streams
    if context.event_streams >= limit:
        raise ServiceError(
            f"the server holds its maximum of {limit} event streams (a quarter of LRR_MAX_HTTP_REQUESTS); "
            "close another page or terminal watching the server, or retry later",
            code=ErrorCode.TOO_MANY_REQUESTS,
            headers={"Retry-After": "5"},
        )
    context.event_streams += 1
    if context.streams_feed is None:
        context.streams_feed = SharedBody(body)
    return EventStreamResponse(context, _events(context, context.streams_feed.get))


async def _events(context: ServiceContext, body: Body) -> AsyncIterator[bytes]:
    """`streams` events every EVENT_INTERVAL_SECONDS until the client leaves or the server stops."""

    def stopping() -> bool:
        return context.stopping or not context.ready

    loop = asyncio.get_running_loop()
    yield f"retry: {RETRY_MILLISECONDS}\n\n".encode()
    while not stopping():
        try:
            yield event("streams", await body())
        except ServiceError as exc:
            yield event("error", {"code": str(exc.code), "message": exc.message})
        deadline = loop.time() + EVENT_INTERVAL_SECONDS
        while loop.time() < deadline:
            if stopping():
                return
            await asyncio.sleep(min(STOP_POLL_SECONDS, max(0.0, deadline - loop.time())))
