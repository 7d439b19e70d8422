"""Websocket routes /ws/{key}/fit, /ws/{key}/transform and /ws/{key}/fit_transform: the I/O loop only.

Protocol logic lives in service/stream.py. Oversized messages never reach here: uvicorn's
websockets implementation closes the connection with 1009 (ws_max_size = LRR_MAX_FRAME_BYTES).
"""

from __future__ import annotations

import time

from fastapi import APIRouter, WebSocket, WebSocketDisconnect, status
from fastapi.responses import JSONResponse

from lrr_service.core.codec import encode_error
from lrr_service.core.vocabulary import CloseCode, ErrorCode, Mode
from lrr_service.service.context import ServiceContext
from lrr_service.service.keys import InvalidKeyError, validate_key
from lrr_service.service.stream import StreamChannel

router = APIRouter()


async def serve_stream(websocket: WebSocket, key: str, route: Mode) -> None:
    """Take one of the LRR_MAX_CONNECTIONS stream slots, then serve the stream (the gate checked the token)."""
    context: ServiceContext = websocket.app.state.context
    if context.open_streams >= context.settings.max_connections:
        await refuse_busy(websocket, context)
        return
    context.open_streams += 1
    try:
        await serve_accepted(websocket, context, key, route)
    finally:
        context.open_streams -= 1


async def refuse_busy(websocket: WebSocket, context: ServiceContext) -> None:
    """Refuse the handshake with HTTP 503 saying why: the server holds LRR_MAX_CONNECTIONS streams."""
    context.metrics.errors.labels(ErrorCode.TOO_MANY_CONNECTIONS).inc()
    limit = context.settings.max_connections
    detail = {
        "code": ErrorCode.TOO_MANY_CONNECTIONS,
        "message": f"the server holds its maximum of {limit} websocket streams (LRR_MAX_CONNECTIONS); "
        "retry later or close unused connections",
    }
    await websocket.send_denial_response(
        JSONResponse({"detail": detail}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "1"})
    )


async def serve_accepted(websocket: WebSocket, context: ServiceContext, key: str, route: Mode) -> None:
    """Accept, validate the key, then answer every message in order until the client leaves."""
    await websocket.accept()
    try:
        validate_key(key)
    except InvalidKeyError as exc:
        context.metrics.errors.labels(ErrorCode.BAD_KEY).inc()
        await websocket.send_bytes(encode_error(ErrorCode.BAD_KEY, str(exc)))
        await websocket.close(code=status.WS_1008_POLICY_VIOLATION, reason="invalid stream key")
        return
    channel = StreamChannel(key, route, context)
    latency = channel.route_metrics.latency
    connections = context.metrics.connections.labels(route)
    connections.inc()
    context.registry.connected(key, route)
    receive, send = websocket.receive, websocket.send
    cluster = context.cluster
    lease = cluster.ownership.held(key) if cluster is not None else None
    if cluster is not None:
        cluster.opened(key, websocket)
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                break
            if cluster is not None and (lease is None or not await cluster.ownership.still_owner(lease)):
                await websocket.close(code=CloseCode.NOT_OWNER, reason="this worker no longer owns the stream key")
                break
            started = time.perf_counter()
            payload = message.get("bytes")
            reply = await channel.on_binary(payload) if payload is not None else channel.on_text()
            await send({"type": "websocket.send", "bytes": reply})
            latency.observe(time.perf_counter() - started)
    except (WebSocketDisconnect, OSError):
        pass
    except RuntimeError:  # the cluster closed the socket (the key moved) while a reply was on its way
        if cluster is None:
            raise
    finally:
        connections.dec()
        context.registry.disconnected(key, route)
        if cluster is not None:
            cluster.closed(key, websocket)


def _add_stream_route(route: Mode) -> None:
    """Register /ws/{key}/<route>."""

    async def endpoint(websocket: WebSocket, key: str) -> None:
        await serve_stream(websocket, key, route)

    endpoint.__name__ = f"ws_{route}"
    endpoint.__doc__ = f"Websocket stream: every binary msgpack chunk gets one {route} reply (docs/protocol.md)."
    router.add_api_websocket_route(f"/ws/{{key}}/{route}", endpoint, name=f"ws_{route}")


for _route in Mode:
    _add_stream_route(_route)
