"""The transport floor: a bare ASGI websocket echo served by uvicorn exactly as the service is served.

Same stack as `python -m lrr_service.service serve`: uvicorn, `ws="websockets-sansio"` (the service's choice;
`--ws` picks another implementation to compare), uvloop/httptools when present,
no per-message deflate, the same maximum message size. Nothing but the echo runs per frame.
Run: `python bench/echo_server.py --port 8765`.
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn
from fastapi import FastAPI, WebSocket

MAX_FRAME_BYTES = 16 * 1024 * 1024
SERVICE_WS_IMPLEMENTATION = "websockets-sansio"
"""Must match the `ws=` of service/serving.py, or the floor is not the service's transport."""


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Websocket: send every message back unchanged. HTTP: 200 on any path (health probe)."""
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
            else:
                await send({"type": "websocket.send", "text": message.get("text") or ""})
    elif scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})
    elif scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


def fastapi_echo_app() -> Any:
    """The same echo behind FastAPI's websocket routing (as the service's routes are): framework cost."""
    app = FastAPI()

    @app.get("/health")
    async def health() -> str:
        return "ok"

    @app.websocket("/echo")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        receive, send = websocket.receive, websocket.send
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})

    return app


def main() -> None:
    """Serve the echo app on 127.0.0.1 with the service's uvicorn options."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ws", default=SERVICE_WS_IMPLEMENTATION, help="uvicorn websocket implementation")
    parser.add_argument("--app", choices=("asgi", "fastapi"), default="asgi", help="bare ASGI or FastAPI routing")
    args = parser.parse_args()
    uvicorn.run(
        echo_app if args.app == "asgi" else fastapi_echo_app(),
        host="127.0.0.1",
        port=args.port,
        loop="auto",
        http="auto",
        ws=args.ws,
        ws_max_size=MAX_FRAME_BYTES,
        ws_per_message_deflate=False,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
