"""Tests of core.codec: round trips, every error code, zero-copy decoding, fuzzing, and the protocol doc's bytes."""

from __future__ import annotations

import math
import re
from pathlib import Path

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrr_service.core import codec
from lrr_service.core.codec import (
    AckReply,
    Chunk,
    ChunkReply,
    ErrorReply,
    FrameError,
    decode_chunk,
    decode_reply,
    encode_ack,
    encode_chunk,
    encode_chunk_reply,
    encode_error,
)
from lrr_service.core.vocabulary import ErrorCode

MAX_CHANNELS = 1024
PROTOCOL_DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def frame(**fields: object) -> bytes:
    """A hand-built frame: a valid 2x3 float32 chunk with `fields` overriding or (value ...) deleting keys."""
    message: dict[str, object] = {"seq": 7, "shape": [2, 3], "dtype": "<f4", "data": bytes(24)}
    for key, value in fields.items():
        if value is ...:
            message.pop(key, None)
        else:
            message[key] = value
    return msgpack.packb(message)


def rejected(payload: bytes, max_channels: int = MAX_CHANNELS) -> FrameError:
    """The FrameError decode_chunk raises for payload (the test fails if it decodes)."""
    with pytest.raises(FrameError) as caught:
        decode_chunk(payload, max_channels=max_channels)
    return caught.value


# --- round trips ---


@pytest.mark.parametrize("wire", ["<f4", "<f8", "<i2", "<i4"])
@pytest.mark.parametrize("byte_order", ["<", ">"])
@pytest.mark.parametrize("layout", ["c", "fortran", "strided"])
def test_chunk_round_trip_every_dtype_byte_order_and_layout(wire: str, byte_order: str, layout: str) -> None:
    values = np.arange(-20, 40, dtype=np.int64).reshape(6, 10) * 3
    source = values.astype(np.dtype(wire).newbyteorder(byte_order))
    if layout == "fortran":
        source = np.asfortranarray(source)
    elif layout == "strided":
        source = source[::2, ::3]
    payload = encode_chunk(12, source, t0=3.25, fs=30000)
    chunk = decode_chunk(payload, max_channels=MAX_CHANNELS)
    assert chunk.seq == 12
    assert chunk.t0 == 3.25 and chunk.fs == 30000
    assert chunk.data.dtype == np.dtype(wire)
    assert chunk.data.shape == source.shape
    np.testing.assert_array_equal(chunk.data, source)


def test_float_values_round_trip_bit_exactly() -> None:
    special = np.array([[0.0, -0.0, 5e-324, np.inf], [-np.inf, np.nan, 1.7976931348623157e308, -1e-310]])
    chunk = decode_chunk(encode_chunk(0, special), max_channels=MAX_CHANNELS)
    assert chunk.data.tobytes() == special.astype("<f8").tobytes()


def test_optional_fields_absent_or_nil_decode_as_none() -> None:
    assert decode_chunk(frame(), max_channels=MAX_CHANNELS)[2:] == (None, None, None)
    chunk = decode_chunk(frame(t0=None, fs=None, channels=None), max_channels=MAX_CHANNELS)
    assert (chunk.t0, chunk.fs, chunk.channels) == (None, None, None)


def test_t0_and_fs_keep_their_type() -> None:
    chunk = decode_chunk(frame(t0=-5, fs=2.5), max_channels=MAX_CHANNELS)
    assert chunk.t0 == -5 and type(chunk.t0) is int
    assert chunk.fs == 2.5 and type(chunk.fs) is float


def test_unknown_keys_are_ignored() -> None:
    payload = frame(extra={"nested": [1, 2, {"x": b"y"}]}, comment="hello")
    with_int_key = msgpack.packb({1: "x", "seq": 3, "shape": [1, 1], "dtype": "<i2", "data": b"\x05\x00"})
    assert decode_chunk(payload, max_channels=MAX_CHANNELS).seq == 7
    assert decode_chunk(with_int_key, max_channels=MAX_CHANNELS).data.tolist() == [[5]]


def test_decoded_data_views_the_payload_without_copying() -> None:
    payload = encode_chunk(1, np.ones((30, 384), dtype=np.float32))
    chunk = decode_chunk(payload, max_channels=MAX_CHANNELS)
    assert np.shares_memory(chunk.data, np.frombuffer(payload, dtype=np.uint8))
    assert not chunk.data.flags.writeable


def test_decode_accepts_bytearray_and_memoryview_payloads() -> None:
    payload = encode_chunk(4, np.eye(3, dtype=np.float32))
    for variant in (bytearray(payload), memoryview(payload)):
        chunk = decode_chunk(variant, max_channels=MAX_CHANNELS)
        np.testing.assert_array_equal(chunk.data, np.eye(3))


def test_channel_limit_is_inclusive() -> None:
    payload = encode_chunk(0, np.zeros((1, 8), dtype=np.int16))
    assert decode_chunk(payload, max_channels=8).data.shape == (1, 8)
    assert rejected(payload, max_channels=7).code == ErrorCode.TOO_MANY_CHANNELS


def test_chunk_reply_round_trip() -> None:
    data = np.arange(12, dtype=">f8").reshape(3, 4)
    payload = encode_chunk_reply(9, data, weights_version=4, reset=True, t0=1, fs=250.0, n_samples=300)
    reply = decode_reply(payload)
    assert isinstance(reply, ChunkReply)
    assert (reply.seq, reply.weights_version, reply.reset, reply.n_samples, reply.t0, reply.fs) == (
        9,
        4,
        True,
        300,
        1,
        250.0,
    )
    assert reply.data.dtype == np.dtype("<f8")
    np.testing.assert_array_equal(reply.data, data)
    assert np.shares_memory(reply.data, np.frombuffer(payload, dtype=np.uint8))


def test_transform_reply_has_no_n_samples() -> None:
    reply = decode_reply(encode_chunk_reply(0, np.zeros((1, 2), np.float32), weights_version=0, reset=False))
    assert isinstance(reply, ChunkReply)
    assert (reply.n_samples, reply.t0, reply.fs, reply.reset) == (None, None, None, False)
    assert "n_samples" not in msgpack.unpackb(
        encode_chunk_reply(0, np.zeros((1, 2), np.float32), weights_version=0, reset=False)
    )


def test_ack_and_error_round_trip() -> None:
    assert decode_reply(encode_ack(3, n_samples=90, weights_version=2, reset=False)) == AckReply(3, 90, 2, False)
    assert decode_reply(encode_error(ErrorCode.NON_FINITE, "NaN at sample 2", seq=5)) == ErrorReply(
        ErrorCode.NON_FINITE, "NaN at sample 2", 5
    )
    assert decode_reply(encode_error(ErrorCode.TEXT_FRAME, "send binary")) == ErrorReply(
        ErrorCode.TEXT_FRAME, "send binary"
    )
    assert msgpack.unpackb(encode_error(ErrorCode.TEXT_FRAME, "x"))["seq"] is None


def test_error_reply_without_seq_key_is_accepted() -> None:
    payload = msgpack.packb({"type": "error", "code": "internal", "message": "boom"})
    assert decode_reply(payload) == ErrorReply("internal", "boom", None)


def test_frame_error_reply_carries_code_message_and_seq() -> None:
    error = rejected(frame(dtype="<u8"))
    reply = decode_reply(encode_error(error.code, error.message, error.seq))
    assert reply == ErrorReply(ErrorCode.BAD_DTYPE, error.message, 7)


# --- every error code ---

TOO_BIG = 2**63

ERROR_CASES = [
    # (id, payload, code, words the message must contain, seq the error must carry)
    ("empty", b"", ErrorCode.BAD_MSGPACK, "expected one msgpack map", None),
    ("reserved byte", b"\xc1", ErrorCode.BAD_MSGPACK, "expected one msgpack map", None),
    ("truncated map", frame()[:-5], ErrorCode.BAD_MSGPACK, "expected one msgpack map", 7),
    ("trailing bytes", frame() + b"\x00", ErrorCode.BAD_MSGPACK, "1 trailing bytes", 7),
    ("two maps", frame() + frame(), ErrorCode.BAD_MSGPACK, "expected exactly one msgpack map", 7),
    ("ext type", frame(extra=msgpack.ExtType(5, b"abc")), ErrorCode.BAD_MSGPACK, "ext types are not accepted", 7),
    ("timestamp ext", frame(when=msgpack.Timestamp(1, 0)), ErrorCode.BAD_MSGPACK, "ext types are not accepted", 7),
    ("bad utf-8 key", b"\x81\xa2\xff\xfe\x01", ErrorCode.BAD_MSGPACK, "not valid UTF-8", None),
    ("huge map header", b"\xdf\xff\xff\xff\xff", ErrorCode.BAD_MSGPACK, "expected one msgpack map", None),
    ("array", msgpack.packb([7, [2, 3]]), ErrorCode.NOT_A_MAP, "is a msgpack array; expected a msgpack map", None),
    ("integer", msgpack.packb(7), ErrorCode.NOT_A_MAP, "is a msgpack integer; expected a msgpack map", None),
    ("no seq", frame(seq=...), ErrorCode.MISSING_FIELD, "'seq'", None),
    ("no data", frame(data=...), ErrorCode.MISSING_FIELD, "'data'; expected all of seq, shape, dtype, data", 7),
    ("no shape, dtype", frame(shape=..., dtype=...), ErrorCode.MISSING_FIELD, "'shape', 'dtype'", 7),
    ("negative seq", frame(seq=-1), ErrorCode.BAD_FIELD, "expected an integer 0 <= seq < 2**63", None),
    ("seq 2**63", frame(seq=TOO_BIG), ErrorCode.BAD_FIELD, "expected an integer 0 <= seq < 2**63", None),
    ("bool seq", frame(seq=True), ErrorCode.BAD_FIELD, "(boolean); expected an integer", None),
    ("float seq", frame(seq=7.0), ErrorCode.BAD_FIELD, "(float); expected an integer", None),
    ("string seq", frame(seq="7"), ErrorCode.BAD_FIELD, "(string); expected an integer", None),
    ("nested seq", frame(seq=[7]), ErrorCode.BAD_FIELD, "(array); expected an integer", None),
    ("map seq", frame(seq={"v": 7}), ErrorCode.BAD_FIELD, "(map); expected an integer", None),
    ("shape string", frame(shape="2x3"), ErrorCode.BAD_FIELD, "expected an array [n_samples, n_channels]", 7),
    ("shape map", frame(shape={"n": 2}), ErrorCode.BAD_FIELD, "shape is a map", 7),
    ("dtype int", frame(dtype=4), ErrorCode.BAD_FIELD, "dtype is 4 (integer); expected a string", 7),
    ("dtype bin", frame(dtype=b"<f4"), ErrorCode.BAD_FIELD, "expected a string", 7),
    ("data string", frame(data="abc"), ErrorCode.BAD_FIELD, "data is a msgpack string; expected msgpack bin", 7),
    ("data array", frame(data=[0.0] * 6), ErrorCode.BAD_FIELD, "data is a msgpack array; expected msgpack bin", 7),
    (
        "data ext",
        frame(data=msgpack.ExtType(1, bytes(24))),
        ErrorCode.BAD_FIELD,
        "msgpack ext; expected msgpack bin",
        7,
    ),
    ("data nil", frame(data=None), ErrorCode.BAD_FIELD, "msgpack nil; expected msgpack bin", 7),
    ("t0 string", frame(t0="now"), ErrorCode.BAD_FIELD, "t0 is 'now' (string); expected a finite number", 7),
    ("t0 nan", frame(t0=math.nan), ErrorCode.BAD_FIELD, "expected a finite number", 7),
    ("t0 bool", frame(t0=False), ErrorCode.BAD_FIELD, "(boolean); expected a finite number", 7),
    ("fs zero", frame(fs=0), ErrorCode.BAD_FIELD, "fs is 0 (integer); expected a finite number > 0", 7),
    ("fs negative", frame(fs=-250.0), ErrorCode.BAD_FIELD, "expected a finite number > 0", 7),
    ("fs inf", frame(fs=math.inf), ErrorCode.BAD_FIELD, "expected a finite number > 0", 7),
    ("fs list", frame(fs=[30000]), ErrorCode.BAD_FIELD, "(array); expected a finite number > 0", 7),
    ("dtype f2", frame(dtype="<f2"), ErrorCode.BAD_DTYPE, "expected one of <f4, <f8, <i2, <i4", 7),
    ("big-endian dtype", frame(dtype=">f4"), ErrorCode.BAD_DTYPE, "'>f4' is not accepted", 7),
    ("numpy name", frame(dtype="float32"), ErrorCode.BAD_DTYPE, "expected one of <f4, <f8, <i2, <i4", 7),
    ("one dim", frame(shape=[6]), ErrorCode.BAD_SHAPE, "expected [n_samples, n_channels], integers >= 1", 7),
    ("three dims", frame(shape=[2, 3, 1]), ErrorCode.BAD_SHAPE, "integers >= 1", 7),
    ("zero samples", frame(shape=[0, 3]), ErrorCode.BAD_SHAPE, "integers >= 1", 7),
    ("negative channels", frame(shape=[2, -3]), ErrorCode.BAD_SHAPE, "integers >= 1", 7),
    ("float dim", frame(shape=[2.0, 3]), ErrorCode.BAD_SHAPE, "integers >= 1", 7),
    ("bool dim", frame(shape=[True, 3]), ErrorCode.BAD_SHAPE, "integers >= 1", 7),
    ("nested dim", frame(shape=[[2], 3]), ErrorCode.BAD_SHAPE, "integers >= 1", 7),
    ("short data", frame(data=bytes(23)), ErrorCode.SIZE_MISMATCH, "holds 23 bytes; expected 24 = 2 samples x 3", 7),
    ("long data", frame(data=bytes(25)), ErrorCode.SIZE_MISMATCH, "expected 24", 7),
    ("dtype wider than data", frame(dtype="<f8"), ErrorCode.SIZE_MISMATCH, "expected 48", 7),
    ("absurd samples", frame(shape=[2**64 - 1, 3]), ErrorCode.SIZE_MISMATCH, "holds 24 bytes; expected", 7),
    ("absurd channels", frame(shape=[2, 2**64 - 1]), ErrorCode.TOO_MANY_CHANNELS, "expected at most 1024", 7),
    (
        "channels over limit",
        frame(shape=[1, 1025], data=bytes(4100)),
        ErrorCode.TOO_MANY_CHANNELS,
        "1025 channels; expected at most 1024",
        7,
    ),
]


@pytest.mark.parametrize(
    ("payload", "code", "words", "seq"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_every_frame_error_has_its_code_message_and_seq(payload: bytes, code: str, words: str, seq: int | None) -> None:
    error = rejected(payload)
    assert error.code == code
    assert words in error.message
    assert "expected" in error.message
    assert error.seq == seq


def test_duplicate_key_is_named() -> None:
    payload = b"\x85" + frame()[1:] + msgpack.packb("seq") + msgpack.packb(8)
    error = rejected(payload)
    assert (error.code, error.seq) == (ErrorCode.BAD_MSGPACK, 7)
    assert "duplicate key 'seq'" in error.message


def test_declared_lengths_beyond_the_payload_are_refused_without_allocating() -> None:
    huge_array = b"\x81\xa3seq\xdd\xff\xff\xff\xff"
    huge_bin = b"\x82\xa3seq\x01\xa4data\xc6\xff\xff\xff\xff"
    assert rejected(huge_array).code == ErrorCode.BAD_MSGPACK
    error = rejected(huge_bin)
    assert (error.code, error.seq) == (ErrorCode.BAD_MSGPACK, 1)


def test_deep_nesting_is_a_frame_error() -> None:
    deep = b"\x82\xa3seq\x02\xa5extra" + b"\x91" * 100_000 + b"\x00"
    error = rejected(deep)
    assert (error.code, error.seq) == (ErrorCode.BAD_MSGPACK, 2)


NESTED_FIELD_CODES = {
    "seq": ErrorCode.BAD_FIELD,
    "shape": ErrorCode.BAD_SHAPE,
    "dtype": ErrorCode.BAD_FIELD,
    "data": ErrorCode.BAD_FIELD,
    "t0": ErrorCode.BAD_FIELD,
    "fs": ErrorCode.BAD_FIELD,
    "extra": ErrorCode.MISSING_FIELD,
}


@pytest.mark.parametrize("field", sorted(NESTED_FIELD_CODES))
@pytest.mark.parametrize("depth", [1, 999, 1023, 5000])
def test_nested_values_at_any_depth_are_frame_errors(field: str, depth: int) -> None:
    fields: dict[str, object] = {"shape": [2, 3], "dtype": "<f4", "data": bytes(24)}
    if field != "extra":
        fields["seq"] = 7
    fields.pop(field, None)
    header = bytes([0x80 + len(fields) + 1])
    payload = header + msgpack.packb(fields)[1:] + msgpack.packb(field) + b"\x91" * depth + b"\x00"
    error = rejected(payload)
    assert len(error.message) < 200
    if depth == 5000:
        assert error.code == ErrorCode.BAD_MSGPACK
        assert error.message == "arrays or maps are nested too deeply; expected one msgpack map"
    else:
        assert error.code == NESTED_FIELD_CODES[field]
        assert error.seq == (None if field in ("seq", "extra") else 7)


def test_hostile_values_are_shortened_in_messages() -> None:
    error = rejected(frame(dtype="x" * 10_000))
    assert error.code == ErrorCode.BAD_DTYPE
    assert len(error.message) < 200
    error = rejected(frame(seq=[{"a": 1}] * 10_000))
    assert error.code == ErrorCode.BAD_FIELD
    assert "seq is <array of 10000 items> (array)" in error.message


# --- reply validation (client side) ---

REPLY_CASES = [
    ("no type", {"seq": 1}, ErrorCode.MISSING_FIELD, 1),
    ("unknown type", {"type": "pong", "seq": 1}, ErrorCode.BAD_FIELD, 1),
    ("type not string", {"type": 1}, ErrorCode.BAD_FIELD, None),
    (
        "ack without n_samples",
        {"type": "ack", "seq": 2, "weights_version": 0, "reset": False},
        ErrorCode.MISSING_FIELD,
        2,
    ),
    (
        "ack reset int",
        {"type": "ack", "seq": 2, "n_samples": 1, "weights_version": 0, "reset": 0},
        ErrorCode.BAD_FIELD,
        2,
    ),
    (
        "ack negative version",
        {"type": "ack", "seq": 2, "n_samples": 1, "weights_version": -1, "reset": True},
        ErrorCode.BAD_FIELD,
        2,
    ),
    ("error without code", {"type": "error", "seq": 3, "message": "m"}, ErrorCode.MISSING_FIELD, 3),
    ("error message bin", {"type": "error", "code": "internal", "message": b"m"}, ErrorCode.BAD_FIELD, None),
    (
        "chunk int dtype",
        {
            "type": "chunk",
            "seq": 4,
            "shape": [1, 1],
            "dtype": "<i2",
            "data": b"\0\0",
            "weights_version": 0,
            "reset": False,
        },
        ErrorCode.BAD_DTYPE,
        4,
    ),
    (
        "chunk size",
        {
            "type": "chunk",
            "seq": 4,
            "shape": [1, 2],
            "dtype": "<f4",
            "data": b"\0\0\0\0",
            "weights_version": 0,
            "reset": False,
        },
        ErrorCode.SIZE_MISMATCH,
        4,
    ),
    (
        "chunk no reset",
        {"type": "chunk", "seq": 4, "shape": [1, 1], "dtype": "<f4", "data": b"\0\0\0\0", "weights_version": 0},
        ErrorCode.MISSING_FIELD,
        4,
    ),
]


@pytest.mark.parametrize(("message", "code", "seq"), [c[1:] for c in REPLY_CASES], ids=[c[0] for c in REPLY_CASES])
def test_malformed_replies_are_frame_errors(message: dict[str, object], code: str, seq: int | None) -> None:
    with pytest.raises(FrameError) as caught:
        decode_reply(msgpack.packb(message))
    assert caught.value.code == code
    assert caught.value.seq == seq
    assert "expected" in caught.value.message


# --- encoder input checks ---


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: encode_chunk(0, np.zeros(3, np.float32)), "expected 2-D"),
        (lambda: encode_chunk(0, np.zeros((0, 3), np.float32)), "both >= 1"),
        (lambda: encode_chunk(0, np.zeros((2, 3), np.int64)), "expected one of <f4, <f8, <i2, <i4"),
        (lambda: encode_chunk(0, np.zeros((2, 3), np.complex64)), "expected one of"),
        (lambda: encode_chunk(-1, np.zeros((2, 3), np.float32)), "0 <= seq < 2**63"),
        (lambda: encode_chunk(True, np.zeros((2, 3), np.float32)), "0 <= seq < 2**63"),
        (lambda: encode_chunk(0, np.zeros((2, 3), np.float32), fs=0), "expected a finite number > 0"),
        (lambda: encode_chunk(0, np.zeros((2, 3), np.float32), t0=math.nan), "expected a finite number"),
        (
            lambda: encode_chunk_reply(0, np.zeros((2, 3), np.int16), weights_version=0, reset=False),
            "expected one of <f4, <f8",
        ),
        (
            lambda: encode_chunk_reply(0, np.zeros((2, 3), np.float32), weights_version=-1, reset=False),
            "weights_version",
        ),
        (lambda: encode_ack(0, n_samples=-5, weights_version=0, reset=False), "n_samples"),
        (lambda: encode_error("internal", "x", seq=2**63), "0 <= seq < 2**63"),
    ],
)
def test_encoders_refuse_what_the_peer_would_reject(call, words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        call()


# --- the worked example in docs/protocol.md ---


def documented_bytes(name: str) -> bytes:
    """The annotated hex dump that follows `<!-- example: name -->` in docs/protocol.md, as bytes."""
    text = PROTOCOL_DOC.read_text(encoding="utf-8")
    match = re.search(rf"<!-- example: {name} -->\s*```text\n(.*?)```", text, re.DOTALL)
    assert match, f"example {name!r} not found in {PROTOCOL_DOC}"
    hex_digits = " ".join(line.split("#", 1)[0] for line in match.group(1).splitlines())
    return bytes.fromhex(hex_digits)


def test_protocol_doc_example_bytes_are_what_the_codec_produces() -> None:
    x = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)
    weights = np.full((3, 3), 0.5)
    np.fill_diagonal(weights, 0.0)
    y = (x @ (np.eye(3) - weights)).astype(np.float32)
    request = encode_chunk(7, x, t0=12.5, fs=30000)
    reply = encode_chunk_reply(7, y, weights_version=1, reset=False, t0=12.5, fs=30000)
    assert documented_bytes("request") == request
    assert documented_bytes("reply") == reply
    assert len(request) == 74 and len(reply) == 109
    assert decode_reply(reply).data.tolist() == [[-1.5, 0.0, 1.5], [-1.5, 0.0, 1.5]]


# --- fuzzing: decode_chunk only ever returns a valid Chunk or raises FrameError ---

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(),
    st.text(max_size=8),
    st.binary(max_size=64),
)
msgpack_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12,
)
field_values = {
    "seq": st.one_of(st.integers(min_value=-1, max_value=2**64 - 1), msgpack_values),
    "shape": st.one_of(
        st.lists(st.integers(min_value=-2, max_value=2**64 - 1), max_size=3),
        st.lists(st.integers(min_value=1, max_value=8), min_size=2, max_size=2),
        msgpack_values,
    ),
    "dtype": st.one_of(st.sampled_from(["<f4", "<f8", "<i2", "<i4", ">f4", "f4"]), msgpack_values),
    "data": st.one_of(st.binary(max_size=256), msgpack_values),
    "t0": msgpack_values,
    "fs": msgpack_values,
}


def assert_valid_or_frame_error(payload: bytes) -> None:
    """decode_chunk either raises FrameError with a known code or returns a Chunk that honours the contract."""
    try:
        chunk = decode_chunk(payload, max_channels=64)
    except FrameError as error:
        assert error.code in set(ErrorCode) and error.code.frame
        assert error.seq is None or 0 <= error.seq < 2**63
        assert "expected" in error.message
        return
    assert isinstance(chunk, Chunk)
    assert 0 <= chunk.seq < 2**63
    assert chunk.data.ndim == 2 and chunk.data.shape[0] >= 1 and 1 <= chunk.data.shape[1] <= 64
    assert chunk.data.dtype.str in codec.WIRE_DTYPES
    assert chunk.fs is None or chunk.fs > 0


@FUZZ
@given(
    st.fixed_dictionaries({}, optional=field_values),
    st.dictionaries(st.text(max_size=6), msgpack_values, max_size=3),
)
def test_fuzz_random_fields(fields: dict[str, object], extra: dict[str, object]) -> None:
    assert_valid_or_frame_error(msgpack.packb({**extra, **fields}))


@FUZZ
@given(msgpack_values)
def test_fuzz_random_msgpack_values(value: object) -> None:
    assert_valid_or_frame_error(msgpack.packb(value))


@FUZZ
@given(st.binary(max_size=512))
def test_fuzz_random_bytes(payload: bytes) -> None:
    assert_valid_or_frame_error(payload)


@FUZZ
@given(st.binary(max_size=64))
def test_fuzz_random_bytes_behind_a_map_header(tail: bytes) -> None:
    for header in (b"\x84", b"\x8f", b"\xde\x00\x04", b"\xdf\x00\x00\x00\x04"):
        assert_valid_or_frame_error(header + tail)


@FUZZ
@given(
    st.integers(min_value=1, max_value=6),
    st.integers(min_value=1, max_value=6),
    st.sampled_from(list(codec.WIRE_DTYPES)),
    st.data(),
)
def test_fuzz_truncated_and_corrupted_valid_frames(n_samples: int, n_channels: int, wire: str, data) -> None:
    payload = encode_chunk(5, np.ones((n_samples, n_channels), dtype=wire), t0=1.0, fs=100)
    cut = data.draw(st.integers(min_value=0, max_value=len(payload) - 1))
    assert_valid_or_frame_error(payload[:cut])
    position = data.draw(st.integers(min_value=0, max_value=len(payload) - 1))
    corrupted = bytearray(payload)
    corrupted[position] = data.draw(st.integers(min_value=0, max_value=255))
    assert_valid_or_frame_error(bytes(corrupted))


@FUZZ
@given(
    st.integers(min_value=0, max_value=2**64 - 1), st.integers(min_value=0, max_value=2**64 - 1), st.binary(max_size=64)
)
def test_fuzz_absurd_shapes_never_allocate_or_overflow(n_samples: int, n_channels: int, data: bytes) -> None:
    assert_valid_or_frame_error(frame(shape=[n_samples, n_channels], data=data))


@st.composite
def valid_fields(draw: st.DrawFn) -> dict[str, object]:
    """The fields of a valid chunk of random shape, dtype and content."""
    n_samples = draw(st.integers(min_value=1, max_value=5))
    n_channels = draw(st.integers(min_value=1, max_value=64))
    wire = draw(st.sampled_from(list(codec.WIRE_DTYPES)))
    size = n_samples * n_channels * codec.WIRE_DTYPES[wire].itemsize
    fields: dict[str, object] = {
        "seq": draw(st.integers(min_value=0, max_value=2**63 - 1)),
        "shape": [n_samples, n_channels],
        "dtype": wire,
        "data": draw(st.binary(min_size=size, max_size=size)),
    }
    finite = st.floats(allow_nan=False, allow_infinity=False)
    optional = {
        "t0": st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), finite),
        "fs": st.one_of(st.none(), st.floats(min_value=1e-3, max_value=1e6)),
    }
    fields.update(draw(st.fixed_dictionaries({}, optional=optional)))
    return fields


@FUZZ
@given(
    valid_fields(),
    st.dictionaries(st.text(max_size=6).filter(lambda k: k not in field_values), msgpack_values, max_size=3),
)
def test_fuzz_valid_frames_decode_to_their_fields(fields: dict[str, object], extra: dict[str, object]) -> None:
    chunk = decode_chunk(msgpack.packb({**extra, **fields}), max_channels=64)
    assert chunk.seq == fields["seq"]
    assert chunk.data.shape == tuple(fields["shape"])
    assert chunk.data.dtype.str == fields["dtype"]
    assert chunk.data.tobytes() == fields["data"]
    assert (chunk.t0, chunk.fs) == (fields.get("t0"), fields.get("fs"))


@FUZZ
@given(valid_fields(), st.sampled_from(sorted(field_values)), msgpack_values)
def test_fuzz_valid_frames_with_one_field_replaced(fields: dict[str, object], key: str, value: object) -> None:
    assert_valid_or_frame_error(msgpack.packb({**fields, key: value}))
