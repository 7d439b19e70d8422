"""Hardening of the HTTP front door, against the real server over raw sockets and real clients.

Proves that defects 3, 4 and 6 of the issue-10 hardening contract stay fixed:

* 3: with a token set, a request head declaring a huge body is refused (401 without the token,
  413 `too_large` with it) without the server waiting for the body; a chunked body over
  LRR_MAX_BODY_BYTES gets 413 and changes nothing.
* 4: idle TCP connections no longer make REST or /health answer 503 (uvicorn's
  limit_concurrency is gone); the server closes connections that never send a byte, heads that
  never end (431 once over 64 KiB, or at LRR_CLIENT_TIMEOUT_SECONDS) and bodies that stall (408).
* 6: a loopback server without a token refuses foreign Origins on websockets and on state-changing
  HTTP methods (403 `origin_not_allowed`, nothing changes) and foreign Host headers
  (400 `host_not_allowed`); its own origin and LRR_ALLOWED_ORIGINS are accepted.

Every time bound below is a liveness bound (the broken server answers after 12+ s or never),
not a performance claim.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from collections.abc import Iterator
from typing import NamedTuple

import httpx
import numpy as np
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from lrr_service.core.codec import AckReply, encode_chunk

try:
    from in_process import InProcessServer
    from live_server import LiveServer, exchange
except ImportError:
    from tests.in_process import InProcessServer
    from tests.live_server import LiveServer, exchange

pytestmark = pytest.mark.timeout(60)

TOKEN = "hardening-http-token-5f3a"
MAX_BODY_BYTES = 8192
CLIENT_TIMEOUT_S = 2
LIVENESS_S = 10.0
"""How long a test waits for the server to answer or hang up (liveness, not performance: 5x the timeout)."""
ALLOWED_ORIGIN = "https://app.example"
EVIL_ORIGIN = "https://evil.example"
HUNDRED_MIB = 100 * 1024 * 1024


# -- servers ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with an API token and a small body limit (defect 3)."""
    env = {
        "LRR_API_TOKEN": TOKEN,
        "LRR_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "LRR_CLIENT_TIMEOUT_SECONDS": str(CLIENT_TIMEOUT_S),
    }
    live = InProcessServer(tmp_path_factory.mktemp("secured") / "lrr-state", env=env).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A loopback server without a token (defects 4 and 6).

    LRR_MAX_CONNECTIONS=4 makes the old uvicorn limit_concurrency 4 + 64 = 68 connections.
    """
    env = {
        "LRR_MAX_CONNECTIONS": "4",
        "LRR_CLIENT_TIMEOUT_SECONDS": str(CLIENT_TIMEOUT_S),
        "LRR_ALLOWED_ORIGINS": ALLOWED_ORIGIN,
    }
    live = InProcessServer(tmp_path_factory.mktemp("open") / "lrr-state", env=env).start()
    yield live
    live.stop()


# -- raw HTTP helpers -----------------------------------------------------------------------------


class RawResponse(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes

    def detail(self) -> dict:
        """The `detail` object of a JSON error body; AssertionError showing the response otherwise."""
        try:
            detail = json.loads(self.body)["detail"]
        except (ValueError, KeyError, TypeError):
            raise AssertionError(f"not a JSON error body: HTTP {self.status} {self.body[:300]!r}") from None
        assert isinstance(detail, dict), f"detail is not an object: HTTP {self.status} {self.body[:300]!r}"
        return detail


def connect(server: LiveServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=LIVENESS_S)


def send_ignoring_close(sock: socket.socket, data: bytes) -> None:
    """Send `data`; a server that already answered and hung up is not an error here."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)


def read_response(sock: socket.socket, within: float = LIVENESS_S) -> RawResponse:
    """Read one HTTP response (head, then Content-Length bytes of body); AssertionError if none comes
    within `within` seconds (liveness bound) or the connection ends first."""
    deadline = time.monotonic() + within
    data = b""

    def more() -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no complete HTTP response within {within} s (got {data[:200]!r})")
        sock.settimeout(remaining)
        try:
            return sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"no complete HTTP response within {within} s (got {data[:200]!r})") from None
        except ConnectionResetError:
            raise AssertionError(f"connection reset before a complete HTTP response (got {data[:200]!r})") from None

    while b"\r\n\r\n" not in data:
        piece = more()
        if not piece:
            raise AssertionError(f"connection closed before a complete HTTP response (got {data[:200]!r})")
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        piece = more()
        if not piece:
            break
        body += piece
    return RawResponse(status, headers, body[:length])


def wait_closed(sock: socket.socket, within: float = LIVENESS_S) -> bytes:
    """Everything the server sends until it closes the connection; AssertionError if it is still open
    after `within` seconds (liveness bound)."""
    deadline = time.monotonic() + within
    received = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"the server kept the connection open for {within} s (received {received[:200]!r})")
        sock.settimeout(remaining)
        try:
            piece = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return received
        if not piece:
            return received
        received += piece


def raw_request(server: LiveServer, head: str, body: bytes = b"") -> RawResponse:
    """Send a hand-written request (head lines without the final blank line) and read the response."""
    with connect(server) as sock:
        send_ignoring_close(sock, head.encode("latin-1") + b"\r\n\r\n" + body)
        return read_response(sock)


def host(server: LiveServer) -> str:
    return f"127.0.0.1:{server.port}"


def websocket_handshake(path: str, host_header: str, extra: str = "") -> str:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13{extra}"
    )


# -- 3: bodies are not read before the token and the size are checked --------------------------------


def test_put_without_token_declaring_100_mib_gets_401_from_the_head_alone(secured: LiveServer) -> None:
    head = (
        f"PUT /streams/huge-anon HTTP/1.1\r\nHost: {host(secured)}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {HUNDRED_MIB}"
    )
    response = raw_request(secured, head)  # not one body byte is sent
    assert response.status == 401, response
    assert response.headers.get("www-authenticate", "").lower().startswith("bearer"), response.headers
    assert response.detail()["code"] == "unauthorized"


def test_put_with_token_declaring_a_body_over_the_limit_gets_413_from_the_head_alone(secured: LiveServer) -> None:
    head = (
        f"PUT /streams/huge-authed HTTP/1.1\r\nHost: {host(secured)}\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {HUNDRED_MIB}"
    )
    response = raw_request(secured, head)
    assert response.status == 413, response
    assert response.detail()["code"] == "too_large"


def test_put_with_token_and_a_chunked_body_over_the_limit_gets_413_and_changes_nothing(secured: LiveServer) -> None:
    # valid JSON, padded with whitespace past the limit: the old server parsed it and created the session
    document = b"{" + b" " * (MAX_BODY_BYTES * 2) + b'"ridge_lambda": 0.5}'
    chunks = [document[i : i + 1000] for i in range(0, len(document), 1000)]
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    head = (
        f"PUT /streams/chunked-big HTTP/1.1\r\nHost: {host(secured)}\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked"
    )
    response = raw_request(secured, head, body)
    assert response.status == 413, response
    assert response.detail()["code"] == "too_large"
    with secured.http() as http:
        assert http.get("/streams/chunked-big").status_code == 404


def test_guard_a_body_within_the_limit_is_accepted(secured: LiveServer) -> None:
    """Guard (held before the fix too): the limit does not refuse ordinary requests."""
    with secured.http() as http:
        response = http.put("/streams/small-body", json={"ridge_lambda": 0.5, "block_size": 4})
    assert response.status_code == 201, response.text
    assert response.json()["settings"]["ridge_lambda"] == 0.5


# -- 4: idle and slow connections ---------------------------------------------------------------------


def test_idle_connections_do_not_make_health_or_rest_answer_503(open_server: LiveServer) -> None:
    idle = [connect(open_server) for _ in range(80)]  # more than the old 68-connection limit, none sends a byte
    try:
        with httpx.Client(base_url=open_server.url, timeout=5.0) as http:  # liveness bound
            health = http.get("/health")
            streams = http.get("/streams")
    finally:
        for sock in idle:
            sock.close()
    assert health.status_code == 200, health.text
    assert streams.status_code == 200, streams.text


def test_a_connection_that_never_sends_a_byte_is_closed_by_the_server(open_server: LiveServer) -> None:
    with connect(open_server) as sock:
        received = wait_closed(sock)  # the server hangs up after LRR_CLIENT_TIMEOUT_SECONDS (2 s)
    assert not received.startswith(b"HTTP/1.1 2"), received


def test_a_head_that_never_ends_is_refused_431_once_over_64_kib(open_server: LiveServer) -> None:
    head = f"GET /health HTTP/1.1\r\nHost: {host(open_server)}\r\n".encode()
    padding = b"".join(b"X-Pad-%05d: %s\r\n" % (i, b"a" * 100) for i in range(620))  # ~70 KiB, no blank line
    assert 65536 < len(head + padding) < 80 * 1024
    with connect(open_server) as sock:
        send_ignoring_close(sock, head + padding)
        response = read_response(sock)
        assert response.status == 431, response
        wait_closed(sock)


def test_a_head_trickled_byte_by_byte_is_closed_at_the_client_timeout(open_server: LiveServer) -> None:
    """Slowloris: a byte every 0.2 s keeps the connection busy forever unless the head has a deadline."""
    head = f"GET /health HTTP/1.1\r\nHost: {host(open_server)}\r\nX-Slow: ".encode() + b"a" * 10_000
    deadline = time.monotonic() + LIVENESS_S
    with connect(open_server) as sock:
        for byte in head:
            if time.monotonic() > deadline:
                raise AssertionError(f"the server kept a never-ending head open for {LIVENESS_S} s")
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                return  # closed by the server
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                received = wait_closed(sock)
                assert not received.startswith(b"HTTP/1.1 2"), received
                return
    raise AssertionError("the whole head was sent without the server closing the connection")


def test_a_stalled_request_body_is_answered_408(open_server: LiveServer) -> None:
    head = (
        f"PUT /streams/stalled HTTP/1.1\r\nHost: {host(open_server)}\r\nContent-Type: application/json\r\n"
        "Content-Length: 100"
    )
    with connect(open_server) as sock:
        send_ignoring_close(sock, head.encode() + b"\r\n\r\n" + b'{"ridge_la')  # 10 of the 100 bytes, then nothing
        response = read_response(sock)
        assert response.status == 408, response
        assert response.detail()["code"] == "request_timeout"
        wait_closed(sock)


# -- 6: Origin and Host checks on a loopback server without a token -------------------------------------


async def fit_some(server: LiveServer, key: str) -> None:
    rng = np.random.default_rng(6)
    async with server.connect(key, "fit") as ws:
        ack = await exchange(ws, encode_chunk(0, rng.standard_normal((50, 4))))
    assert isinstance(ack, AckReply) and ack.n_samples == 50


def n_samples(server: LiveServer, key: str) -> int:
    with server.http() as http:
        response = http.get(f"/streams/{key}")
    assert response.status_code == 200, response.text
    return response.json()["n_samples"]


async def test_websocket_from_a_foreign_origin_is_refused_403(open_server: LiveServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with open_server.connect("ws-evil", "fit", origin=EVIL_ORIGIN):
            pass
    assert refused.value.response.status_code == 403
    assert json.loads(refused.value.response.body)["detail"]["code"] == "origin_not_allowed"


@pytest.mark.parametrize(("method", "path"), [("POST", "/streams/{key}/reset"), ("DELETE", "/streams/{key}")])
async def test_state_changing_request_from_a_foreign_origin_is_refused_403_and_changes_nothing(
    open_server: LiveServer, stream_key: str, method: str, path: str
) -> None:
    await fit_some(open_server, stream_key)
    headers = {"Origin": EVIL_ORIGIN, "Content-Type": "text/plain"}  # a "simple" request: no CORS preflight
    with open_server.http() as http:
        response = http.request(method, path.format(key=stream_key), headers=headers, content=b"x")
    assert response.status_code == 403, response.text
    assert response.json()["detail"]["code"] == "origin_not_allowed"
    assert n_samples(open_server, stream_key) == 50


def test_a_foreign_host_header_is_refused_400(open_server: LiveServer) -> None:
    """DNS rebinding: a page on attacker.example resolving to 127.0.0.1 reads the API."""
    with httpx.Client(base_url=open_server.url, timeout=5.0, headers={"Host": "attacker.example"}) as http:
        response = http.get("/streams")
    assert response.status_code == 400, response.text
    assert response.json()["detail"]["code"] == "host_not_allowed"


def test_a_websocket_handshake_with_a_foreign_host_header_is_refused_400(open_server: LiveServer) -> None:
    response = raw_request(
        open_server, websocket_handshake("/ws/host-evil/fit", f"attacker.example:{open_server.port}")
    )
    assert response.status == 400, response
    assert response.detail()["code"] == "host_not_allowed"


async def test_guard_same_origin_and_listed_origins_are_accepted(open_server: LiveServer, stream_key: str) -> None:
    """Guard (held before the fix too): the server's own origin and LRR_ALLOWED_ORIGINS pass."""
    for origin in (f"http://127.0.0.1:{open_server.port}", ALLOWED_ORIGIN):
        async with open_server.connect(stream_key, "fit", origin=origin) as ws:
            ack = await exchange(ws, encode_chunk(0, np.ones((3, 4)) + np.arange(4)))
        assert isinstance(ack, AckReply), (origin, ack)
        with open_server.http() as http:
            response = http.post(
                f"/streams/{stream_key}/reset", headers={"Origin": origin, "Content-Type": "text/plain"}
            )
        assert response.status_code == 200, (origin, response.text)
        assert response.json()["n_samples"] == 0


def test_guard_reads_from_a_foreign_origin_and_a_localhost_host_are_answered(open_server: LiveServer) -> None:
    """Guard (held before the fix too): GET is not origin-checked; `localhost` is an allowed Host by default."""
    with open_server.http() as http:
        assert http.get("/streams", headers={"Origin": EVIL_ORIGIN}).status_code == 200
        assert http.get("/streams", headers={"Host": f"localhost:{open_server.port}"}).status_code == 200


async def test_guard_websocket_without_origin_is_accepted(open_server: LiveServer, stream_key: str) -> None:
    """Guard (held before the fix too): non-browser clients send no Origin and are served."""
    async with websockets.connect(f"{open_server.ws_url}/ws/{stream_key}/fit") as ws:
        assert isinstance(await exchange(ws, encode_chunk(0, np.ones((2, 4)))), AckReply)
