"""Fuzz the running server (hypothesis): malformed websocket frames and malformed weight CSV uploads.

Every input is refused with its documented error (the codes of docs/protocol.md, the statuses of
docs/service.md), never a 5xx or an `internal` error; the connection stays usable, the server stays
up, the fuzzed session's uploaded weights stay as they were, and a witness session streaming on
another connection all along gets bit-identical replies. The expected error comes from the
in-process codec and CSV parser (an oracle tested on its own in test_codec.py / test_weights_csv.py):
here the point is that the server wires them up faithfully under hostile input.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from lrr_service.core.codec import ChunkReply, ErrorReply, FrameError, decode_chunk, decode_reply, encode_chunk
from lrr_service.core.weights_csv import WeightsCsvError, format_weights_csv, max_csv_bytes, parse_weights_csv

try:
    from in_process import InProcessServer
    from live_server import HTTP, LiveServer
except ImportError:
    from tests.in_process import InProcessServer
    from tests.live_server import HTTP, LiveServer

MAX_CHANNELS = 16
MAX_FRAME_BYTES = 1 << 20
CSV_LIMIT = max_csv_bytes(MAX_CHANNELS)
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WITNESS_KEY, FUZZ_KEY, CSV_KEY = "witness", "fuzz", "csv"
N = 4


class Witness(threading.Thread):
    """Streams the same frames on its own session and connection over and over, comparing replies byte for byte."""

    def __init__(self, server: LiveServer, frames: list[bytes], baseline: list[bytes]) -> None:
        super().__init__(daemon=True)
        self.url = f"{server.ws_url}/ws/{WITNESS_KEY}/transform"
        self.frames, self.baseline = frames, baseline
        self.stop_event = threading.Event()
        self.replies = 0
        self.mismatches: list[str] = []

    def run(self) -> None:
        try:
            with connect(self.url, max_size=None, compression=None) as ws:
                while not self.stop_event.is_set():
                    for frame, expected in zip(self.frames, self.baseline):
                        ws.send(frame)
                        reply = ws.recv(timeout=10)
                        if reply != expected:
                            self.mismatches.append(f"reply {self.replies}: {decode_reply(reply)!r:.200}")
                        self.replies += 1
        except Exception as exc:  # reported by check(), which the tests call
            self.mismatches.append(f"witness stream failed: {type(exc).__name__}: {exc}")

    def check(self, replies_before: int) -> None:
        """The witness made progress since `replies_before` and every reply was bit-identical."""
        assert not self.mismatches, self.mismatches[:3]
        assert self.is_alive()
        assert self.replies > replies_before


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {"LRR_MAX_CHANNELS": str(MAX_CHANNELS), "LRR_MAX_FRAME_BYTES": str(MAX_FRAME_BYTES)}
    with InProcessServer(tmp_path_factory.mktemp("fuzz") / "state", env=env) as live:
        yield live


@pytest.fixture(scope="module")
def witness(server: LiveServer) -> Iterator[Witness]:
    rng = np.random.default_rng(0)
    W = rng.uniform(-0.3, 0.3, (8, 8))
    np.fill_diagonal(W, 0.0)
    HTTP.put(f"{server.url}/streams/{WITNESS_KEY}/weights", content=format_weights_csv(W)).raise_for_status()
    frames = [encode_chunk(i, rng.standard_normal((10, 8)).astype(np.float32)) for i in range(8)]
    with connect(f"{server.ws_url}/ws/{WITNESS_KEY}/transform", max_size=None) as ws:
        baseline = []
        for frame in frames:
            ws.send(frame)
            baseline.append(ws.recv(timeout=10))
    assert all(isinstance(decode_reply(b), ChunkReply) for b in baseline)
    thread = Witness(server, frames, baseline)
    thread.start()
    try:
        yield thread
    finally:
        thread.stop_event.set()
        thread.join(10)


@pytest.fixture(scope="module")
def fuzz_ws(server: LiveServer, witness: Witness) -> Iterator[ClientConnection]:
    with connect(f"{server.ws_url}/ws/{FUZZ_KEY}/transform", max_size=None, compression=None) as ws:
        yield ws


# -- frames -------------------------------------------------------------------------------------


def expected_reply(payload: bytes) -> tuple[str | None, int | None]:
    """(error code, seq) the protocol prescribes, or (None, seq) for a valid chunk."""
    try:
        chunk = decode_chunk(payload, max_channels=MAX_CHANNELS)
    except FrameError as exc:
        return exc.code, exc.seq
    return None, chunk.seq


def exchange_and_check(ws: ClientConnection, payload: bytes) -> None:
    """Send one binary frame; the reply must be exactly what the protocol prescribes for it."""
    code, seq = expected_reply(payload)
    ws.send(payload)
    reply = decode_reply(ws.recv(timeout=10))
    if code is None:
        assert isinstance(reply, ChunkReply) and reply.seq == seq, reply
    else:
        assert isinstance(reply, ErrorReply), reply
        assert (reply.code, reply.seq) == (code, seq), (reply, code, seq)
        assert reply.message


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=16)
)
msgpack_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
ext_values = st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)) | st.builds(
    msgpack.Timestamp, st.integers(0, 2**34 - 1), st.integers(0, 999_999_999)
)  # the reserved ext type -1
FIELD_VALUES = {
    "seq": st.integers(-(2**63), 2**64 - 1) | scalars,
    "shape": st.lists(st.integers(-(2**63), 2**64 - 1), max_size=3)
    | st.lists(st.integers(0, 20), max_size=3)
    | scalars,
    "dtype": st.sampled_from(["<f4", "<f8", "<i2", "<i4", ">f4", "f4", "<u1", "|b1", ""]) | scalars,
    "data": st.binary(max_size=64) | scalars,
    "t0": st.floats() | scalars,
    "fs": st.floats() | scalars,
}


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    """A valid 2 x 3 float32 frame with fields dropped, replaced (wrong types, absurd values) or added."""
    message: dict[object, object] = {
        "seq": 7,
        "shape": [2, 3],
        "dtype": "<f4",
        "data": bytes(24),
        "t0": 1.5,
        "fs": 30000,
    }
    for name, values in FIELD_VALUES.items():
        action = draw(st.sampled_from(["keep", "keep", "drop", "replace"]))
        if action == "drop":
            message.pop(name)
        elif action == "replace":
            message[name] = draw(values)
    if draw(st.booleans()):
        message[draw(st.text(max_size=5) | st.integers(-(2**63), 2**64 - 1))] = draw(msgpack_values | ext_values)
    return msgpack.packb(message)


def nested_maps(depth: int) -> bytes:
    """`depth` maps nested as {"a": {"a": ... nil}} (msgpack, built by hand: no recursion needed)."""
    return b"\x81\xa1a" * depth + b"\xc0"


@st.composite
def hostile_frames(draw: st.DrawFn) -> bytes:
    """Truncations, huge declared lengths, deep nesting, ext types and duplicate keys."""
    valid = encode_chunk(
        draw(st.integers(0, 2**63 - 1)), np.zeros((draw(st.integers(1, 5)), draw(st.integers(1, 6))), np.float32)
    )
    kind = draw(st.sampled_from(["truncated", "declared", "nested", "nested_field", "ext", "duplicate"]))
    if kind == "truncated":
        return valid[: draw(st.integers(0, len(valid) - 1))]
    if kind == "declared":  # a bin/str/array/map header announcing far more than follows
        header = draw(st.sampled_from([b"\xc6", b"\xdb", b"\xdd", b"\xdf"]))
        size = struct.pack(">I", draw(st.integers(2**20, 2**32 - 1)))
        body = header + size + draw(st.binary(max_size=32))
        return draw(st.sampled_from([body, b"\x81\xa4data" + body]))
    if kind == "nested":
        return nested_maps(draw(st.integers(1, 5000)))
    if kind == "nested_field":  # a deep structure under a key the server does not know: one more map entry
        return bytes([valid[0] + 1]) + valid[1:] + b"\xa5extra" + nested_maps(draw(st.integers(1, 5000)))
    if kind == "ext":
        ext = draw(ext_values)
        where = draw(st.sampled_from(["top", "seq", "data", "extra"]))
        message = {"seq": 1, "shape": [1, 1], "dtype": "<f4", "data": bytes(4)}
        if where == "top":
            return msgpack.packb(ext)
        message[where] = [ext] if where == "extra" else ext
        return msgpack.packb(message)
    return b"\x85" + msgpack.packb("seq") + b"\x01" + msgpack.packb("seq") + b"\x02" + valid[1:]


@FUZZ
@given(payload=st.binary(max_size=256))
def test_random_bytes_are_refused_with_their_documented_error(fuzz_ws, witness, payload: bytes) -> None:
    exchange_and_check(fuzz_ws, payload)


@FUZZ
@given(value=msgpack_values | ext_values)
def test_random_msgpack_values_are_refused_with_their_documented_error(fuzz_ws, witness, value: object) -> None:
    exchange_and_check(fuzz_ws, msgpack.packb(value))


@FUZZ
@given(payload=mutated_frames())
def test_frames_with_wrong_types_and_absurd_values_get_their_documented_reply(fuzz_ws, witness, payload) -> None:
    exchange_and_check(fuzz_ws, payload)


@FUZZ
@given(payload=hostile_frames())
def test_truncated_oversized_nested_and_ext_frames_are_refused(fuzz_ws, witness, payload: bytes) -> None:
    exchange_and_check(fuzz_ws, payload)


@settings(max_examples=30, deadline=None)
@given(text=st.text(max_size=64))
def test_text_frames_are_refused_and_the_connection_stays(fuzz_ws, witness, text: str) -> None:
    fuzz_ws.send(text)
    reply = decode_reply(fuzz_ws.recv(timeout=10))
    assert isinstance(reply, ErrorReply) and reply.code == "text_frame" and reply.seq is None


# -- CSV uploads ----------------------------------------------------------------------------------

CELLS = (
    st.floats(allow_nan=True, allow_infinity=True).map(repr)
    | st.integers(-10, 10).map(str)
    | st.sampled_from(["nan", "inf", "-Infinity", "1e999", "0x10", "1_0", "", " ", "1 2", "abc", '"1"', "٣"])
    | st.text(max_size=6)
)


@st.composite
def csv_uploads(draw: st.DrawFn) -> bytes:
    """Ragged, non-numeric, non-finite, empty, BOM-prefixed, ';'-separated, badly encoded or enormous CSV."""
    kind = draw(st.sampled_from(["grid", "grid", "square", "binary", "enormous"]))
    if kind == "binary":
        return draw(st.binary(max_size=200))
    if kind == "enormous":
        row = ",".join(["0.125"] * MAX_CHANNELS) + "\n"
        return (row * (draw(st.integers(CSV_LIMIT - 200, 3 * CSV_LIMIT)) // len(row) + 1)).encode()
    if kind == "square":  # a valid N x N matrix (zero diagonal) with at most one cell spoiled
        valid = np.random.default_rng(draw(st.integers(0, 99))).uniform(-1, 1, (N, N))
        np.fill_diagonal(valid, 0.0)
        rows = [[repr(v) for v in r] for r in valid]
        if draw(st.booleans()):
            rows[draw(st.integers(0, N - 1))][draw(st.integers(0, N - 1))] = draw(CELLS)
    else:
        rows = draw(st.lists(st.lists(CELLS, min_size=1, max_size=5), max_size=5))
    separator = draw(st.sampled_from([",", ",", ";", "\t", ", "]))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = newline.join(separator.join(cells) for cells in rows)
    text = draw(st.sampled_from(["", "\ufeff", "# weights\n", "\n\n"])) + text
    return text.encode(draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "latin-1"])), errors="replace")


def expected_status(content: bytes) -> tuple[int, str | None]:
    """(status, code) that docs/service.md prescribes for uploading `content` to an N-channel session."""
    if len(content) > CSV_LIMIT:
        return 413, "too_large"
    if not content.strip():
        return 400, "empty_upload"
    try:
        weights = parse_weights_csv(content, max_channels=MAX_CHANNELS)
    except WeightsCsvError:
        return 422, "bad_csv"
    if np.any(np.abs(np.diagonal(weights)) > 1e-12):  # W's diagonal must be zero, checked before the session
        return 422, "bad_weights"
    if weights.shape[0] != N:
        return 409, "size_mismatch"
    return 200, None


@pytest.fixture(scope="module")
def csv_session(server: LiveServer, witness: Witness) -> Iterator[tuple[httpx.Client, str]]:
    W = np.random.default_rng(5).uniform(-0.3, 0.3, (N, N))
    np.fill_diagonal(W, 0.0)
    original = format_weights_csv(W)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.put(f"/streams/{CSV_KEY}/weights", content=original).raise_for_status()
        yield client, original


@FUZZ
@given(content=csv_uploads())
def test_malformed_csv_uploads_are_refused_with_their_documented_status(csv_session, witness, content) -> None:
    client, original = csv_session
    before = client.get(f"/streams/{CSV_KEY}/weights").content
    status, code = expected_status(content)
    response = client.put(f"/streams/{CSV_KEY}/weights", content=content, headers={"content-type": "text/csv"})
    assert response.status_code == status, (response.status_code, response.text[:300])
    if code is not None:
        detail = response.json()["detail"]
        assert detail["code"] == code and detail["message"]
        assert client.get(f"/streams/{CSV_KEY}/weights").content == before  # nothing changed
    else:
        client.put(f"/streams/{CSV_KEY}/weights", content=original).raise_for_status()


# -- afterwards ---------------------------------------------------------------------------------------


def test_after_the_fuzzing_the_server_and_the_witness_are_intact(
    server: LiveServer, witness: Witness, fuzz_ws: ClientConnection
) -> None:
    replies_before = witness.replies
    exchange_and_check(fuzz_ws, encode_chunk(1, np.ones((3, 5), np.float32)))  # the fuzzed connection still works
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/health").status_code == 200
        metrics = client.get("/metrics").text
    assert 'lrr_errors_total{code="internal"}' not in metrics
    deadline_replies = replies_before + 8
    for _ in range(500):
        if witness.replies >= deadline_replies:
            break
        threading.Event().wait(0.01)
    witness.check(replies_before)
    assert server.running
    assert Path(server.state_dir).is_dir()
