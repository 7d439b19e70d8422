"""uvicorn's HTTP protocol with a deadline and a size limit on every request head.

uvicorn closes idle keep-alive connections, but a connection that never sends a byte, or sends
its request line and headers slowly or without end, is kept open (and its headers in memory) for
ever. Here a connection must complete each request head (request line and headers) within
`head_timeout` seconds of opening, or of the first byte of that request after a keep-alive pause,
in at most `max_head_bytes`; otherwise it gets 408 or 431 and is closed. A complete head hands the
request, or the websocket upgrade, to uvicorn as usual.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_REQUEST_HEAD_BYTES = 64 * 1024
"""Request line plus headers; a legitimate request to this service needs a few hundred bytes."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that closes connections whose request head is late or too large."""

    head_timeout: float = 10.0
    max_head_bytes: int = MAX_REQUEST_HEAD_BYTES

    _head_deadline: asyncio.TimerHandle | None = None
    _head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_deadline is None:  # the next request on a keep-alive connection
            self._await_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_deadline is not None:  # the head is still incomplete: these bytes were all head
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse_head(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)

    def on_headers_complete(self) -> None:
        self._head_done()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_done()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        self._head_bytes = 0
        self._head_deadline = self.loop.call_later(self.head_timeout, self._refuse_head, HTTPStatus.REQUEST_TIMEOUT)

    def _head_done(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _refuse_head(self, status: HTTPStatus) -> None:
        """Answer `status` with a one-line explanation and close the connection."""
        self._head_done()
        if self.transport.is_closing():
            return
        reason = (
            f"the request line and headers took longer than {self.head_timeout:g} s"
            if status == HTTPStatus.REQUEST_TIMEOUT
            else f"the request line and headers exceed {self.max_head_bytes} bytes"
        )
        body = f"{reason}; connection closed\n".encode()
        head = (
            f"HTTP/1.1 {status.value} {status.phrase}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        ).encode()
        self.transport.write(head + body)
        self.transport.close()


def guarded_http_protocol(head_timeout: float) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for uvicorn's `http=` option, with this head timeout."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"head_timeout": head_timeout})
