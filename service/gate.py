"""The gate: what every request must pass before a route runs or a byte of its body is read.

In order: an allowed `Host` (DNS rebinding), an allowed `Origin` on websockets and
state-changing requests (cross-site pages), the API token, a free slot among the HTTP requests
in progress, and a body within its size limit that keeps arriving. A refusal is answered here
with the documented `{"detail": {"code", "message"}}` body and counted by code; the app behind
the gate never sees the request. In a cluster, a request naming a stream key then waits until
this worker owns the key (or is refused `not_owner`). `/health` passes untouched: liveness
probes need no token and must answer however busy the server is. The API documentation (GET
of service/api_docs.py's PUBLIC_PATHS: /docs, its assets, /redoc, /openapi.json) needs no token
either, since it holds no data and a browser must be able to open it; every other check applies.

Bodies of every route but the weights upload are read here in full (they are small: at most
LRR_MAX_BODY_BYTES), so a route never parses a body its client was not allowed to send; the
upload streams through to its reader (service/uploads.py), which applies LRR_MAX_CSV_BYTES.
"""

from __future__ import annotations

import asyncio
import json
import re

from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lrr_service.core.vocabulary import ErrorCode
from lrr_service.service.api_docs import PUBLIC_PATHS
from lrr_service.service.context import ServiceContext
from lrr_service.service.errors import ServiceError
from lrr_service.service.keys import KEY_PATTERN
from lrr_service.service.sites import SitePolicy
from lrr_service.service.ui import UI_PUBLIC_PATHS

HEALTH_PATH = "/health"
UNLIMITED_PATHS = frozenset({HEALTH_PATH, "/ready"})
"""Answered however many HTTP requests are in progress: probes must not fail because REST is busy."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods a cross-site page may send without an Origin check: they change nothing."""
PUBLIC_METHODS = frozenset({"GET", "HEAD"})
"""Methods that may read PUBLIC_PATHS (the API documentation) without the token."""
UPLOAD_PATH = re.compile(r"/streams/[^/]+/weights")
KEYED_PATH = re.compile(r"/(?:ws|streams)/([^/]+)")
"""Paths that name a stream key: in a cluster, served only by the key's owner."""
ROUTED_HEADER = "x-lrr-routed"
"""Set to 1 by the cluster's HAProxy: the request reached this worker through the proxy's ring."""


class BodyStalled(Exception):
    """The client sent no part of a request body for LRR_CLIENT_TIMEOUT_SECONDS."""


class Gate:
    """ASGI middleware applying the checks above; one per app, holding the count of requests in progress."""

    def __init__(self, app: ASGIApp, context: ServiceContext) -> None:
        self.app = app
        self.context = context
        settings = context.settings
        self.sites = SitePolicy.from_settings(settings)
        self.max_body_bytes = settings.max_body_bytes
        self.max_requests = settings.max_http_requests
        self.timeout = settings.client_timeout_seconds
        self.in_progress = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != HEALTH_PATH:
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    # -- checks -------------------------------------------------------------------------------

    def _refusal(self, scope: Scope, headers: Headers) -> ServiceError | None:
        """Host, then Origin, then the token: the first check the request fails, or None."""
        host = headers.get("host")
        if not self.sites.host_allowed(host):
            return ServiceError(
                f"this server does not answer to the host name in Host: {host!r}; use its address "
                "(e.g. 127.0.0.1), or list the name in LRR_ALLOWED_HOSTS",
                code=ErrorCode.HOST_NOT_ALLOWED,
            )
        origin = headers.get("origin")
        websocket = scope["type"] == "websocket"
        checked = websocket or scope["method"] not in SAFE_METHODS
        if origin is not None and checked and not self.sites.origin_allowed(origin, host):
            what = "websocket" if websocket else f"{scope['method']} request"
            return ServiceError(
                f"a {what} from the web page at {origin!r} was refused: pages of other sites may not "
                "use this server; list the origin in LRR_ALLOWED_ORIGINS if it should",
                code=ErrorCode.ORIGIN_NOT_ALLOWED,
            )
        auth = self.context.auth
        if websocket and not auth.accepts_websocket(headers, QueryParams(scope["query_string"])):
            return ServiceError(
                "missing or wrong API token; send 'Authorization: Bearer <token>' or add ?token=<token> to the URL",
                code=ErrorCode.UNAUTHORIZED,
                status=403,
            )
        public = not websocket and scope["method"] in PUBLIC_METHODS and scope["path"] in PUBLIC_PATHS | UI_PUBLIC_PATHS
        if not websocket and not public and not auth.accepts_rest(headers):
            return ServiceError(
                "missing or wrong API token; send 'Authorization: Bearer <token>'",
                code=ErrorCode.UNAUTHORIZED,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return None

    # -- websockets ---------------------------------------------------------------------------

    async def _owner_refusal(self, scope: Scope, headers: Headers) -> ServiceError | None:
        """In a cluster, make this worker the owner of the key the path names (service/cluster.py), or the
        refusal (`not_owner`, `store_unavailable`)."""
        cluster = self.context.cluster
        match = KEYED_PATH.match(scope["path"]) if cluster is not None else None
        if cluster is None or match is None or KEY_PATTERN.fullmatch(match.group(1)) is None:
            return None
        try:
            await cluster.enter(match.group(1), routed=headers.get(ROUTED_HEADER) == "1")
        except ServiceError as exc:
            return exc
        return None

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        refusal = self._refusal(scope, headers) or await self._owner_refusal(scope, headers)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        self.context.metrics.errors.labels(refusal.code).inc()
        await receive()  # websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            body, raw_headers = _rendered(refusal, close=False)
            await send({"type": "websocket.http.response.start", "status": refusal.status, "headers": raw_headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:  # the server cannot send a body: a plain refusal (HTTP 403)
            await send({"type": "websocket.close", "code": 1008})

    # -- HTTP ---------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        refusal = self._refusal(scope, headers)
        if refusal is None and scope["path"] not in UNLIMITED_PATHS and self.in_progress >= self.max_requests:
            refusal = ServiceError(
                f"the server is answering its maximum of {self.max_requests} HTTP requests at once "
                "(LRR_MAX_HTTP_REQUESTS); retry shortly",
                code=ErrorCode.TOO_MANY_REQUESTS,
                headers={"Retry-After": "1"},
            )
        if refusal is not None:
            await self._refuse(send, refusal)
            return
        self.in_progress += 1
        try:
            refusal = await self._owner_refusal(scope, headers)
            if refusal is not None:
                await self._refuse(send, refusal)
                return
            await self._admit(scope, headers, receive, send)
        finally:
            self.in_progress -= 1

    async def _admit(self, scope: Scope, headers: Headers, receive: Receive, send: Send) -> None:
        """Run the app with the body read here (or, for uploads, paced); a stalled body gets 408."""
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            if scope["method"] == "PUT" and UPLOAD_PATH.fullmatch(scope["path"]):
                await self.app(scope, self._paced(receive), tracked_send)
                return
            body = await self._read_body(headers, receive)
            if isinstance(body, ServiceError):
                await self._refuse(send, body)
            elif body is not None:
                await self.app(scope, _replay(body, receive), tracked_send)
        except BodyStalled:
            if not started:
                stalled = ServiceError(
                    f"no part of the request body arrived for {self.timeout:g} s "
                    "(LRR_CLIENT_TIMEOUT_SECONDS); send the body without pausing",
                    code=ErrorCode.REQUEST_TIMEOUT,
                )
                await self._refuse(send, stalled)

    async def _read_body(self, headers: Headers, receive: Receive) -> bytes | ServiceError | None:
        """The whole body within LRR_MAX_BODY_BYTES (Content-Length checked before reading), the refusal,
        or None when the client left before sending all of it."""
        declared = headers.get("content-length")
        limit = self.max_body_bytes
        too_large = ServiceError(
            f"the request body exceeds {limit} bytes (LRR_MAX_BODY_BYTES); settings and other "
            "JSON bodies are far smaller",
            code=ErrorCode.TOO_LARGE,
        )
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return too_large
        if declared in (None, "0") and "chunked" not in headers.get("transfer-encoding", "").lower():
            return b""
        receive_paced = self._paced(receive)
        body = bytearray()
        while True:
            message = await receive_paced()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > limit:
                return too_large
            if not message.get("more_body", False):
                return bytes(body)

    def _paced(self, receive: Receive) -> Receive:
        """`receive` that raises BodyStalled when a body message takes longer than the client timeout."""
        timeout = self.timeout

        async def paced_receive() -> Message:
            try:
                async with asyncio.timeout(timeout):
                    return await receive()
            except TimeoutError:
                raise BodyStalled from None

        return paced_receive

    async def _refuse(self, send: Send, refusal: ServiceError) -> None:
        """Answer with the refusal and close the connection (any unread body is not wanted)."""
        self.context.metrics.errors.labels(refusal.code).inc()
        body, headers = _rendered(refusal, close=True)
        await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _rendered(refusal: ServiceError, close: bool) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The refusal's JSON body and raw headers, as the error handler of service/errors.py would answer it."""
    body = json.dumps(refusal.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in refusal.headers.items()]
    return body, [*headers, (b"connection", b"close")] if close else headers


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the app the body already read, then whatever the connection says next."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
