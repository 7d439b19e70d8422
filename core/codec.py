"""The websocket wire codec: msgpack frames <-> numpy arrays (contract: docs/protocol.md).

Pure (numpy + msgpack, no I/O). Decoders validate everything a hostile peer can send and raise
`FrameError` carrying a protocol error code (core/vocabulary.py); encoders pack arrays as msgpack bin
without extra copies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, NamedTuple, NoReturn

import msgpack
import numpy as np

from lrr_service.core.channels import ChannelDescription, ChannelDescriptionError
from lrr_service.core.vocabulary import ErrorCode

# --- dtypes ---

WIRE_DTYPES: Final[Mapping[str, np.dtype]] = MappingProxyType(
    {code: np.dtype(code) for code in ("<f4", "<f8", "<i2", "<i4")}
)
"""Accepted input dtypes, keyed by their wire name."""

REPLY_DTYPES: Final[Mapping[str, str]] = MappingProxyType({"<f4": "<f4", "<f8": "<f8", "<i2": "<f4", "<i4": "<f4"})
"""Input wire dtype -> dtype of the processed data sent back."""

_REPLY_WIRE_DTYPES: Final[Mapping[str, np.dtype]] = MappingProxyType(
    {code: WIRE_DTYPES[code] for code in ("<f4", "<f8")}
)

SEQ_LIMIT: Final = 2**63
"""seq must satisfy 0 <= seq < SEQ_LIMIT."""

MAX_CHANNELS_BYTES: Final = 1 << 20
"""The largest `channels` field (a channel description) a chunk frame may carry, in encoded bytes."""

_MAP_HEADERS: Final = frozenset(range(0x80, 0x90)) | {0xDE, 0xDF}
_BIN_HEADER_SIZES: Final[Mapping[int, int]] = MappingProxyType({0xC4: 2, 0xC5: 3, 0xC6: 5})
_SHOWN_CHARS: Final = 60


class FrameError(ValueError):
    """A frame broke the wire contract: `.code` is the protocol error code, `.seq` the chunk's seq or None."""

    def __init__(self, code: ErrorCode, message: str, seq: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.seq = seq

    @property
    def message(self) -> str:
        """The human-readable explanation: what was wrong and what was expected."""
        return str(self.args[0])


# --- decoded messages ---


class Chunk(NamedTuple):
    """A client's chunk: `data` is a read-only (n_samples, n_channels) view of the frame's bytes."""

    seq: int
    data: np.ndarray
    t0: int | float | None = None
    fs: int | float | None = None
    channels: ChannelDescription | None = None
    """A new description of the chunk's channels, sent when it changes (not on every frame)."""


class ChunkReply(NamedTuple):
    """The server's processed chunk (transform / fit_transform); n_samples is set by fit_transform only."""

    seq: int
    data: np.ndarray
    weights_version: int
    reset: bool
    n_samples: int | None = None
    t0: int | float | None = None
    fs: int | float | None = None
    weights_source: str | None = None
    """What the weights applied to this chunk came from: `none` (identity: output = input), `default`, `fitted`
    or `uploaded`; None from a server that does not say."""
    regrouped: str | None = None
    """On the reply to a frame that carried `channels`: what the description did (core.vocabulary.Regrouped)."""


class AckReply(NamedTuple):
    """The server's acknowledgement of a fit chunk."""

    seq: int
    n_samples: int
    weights_version: int
    reset: bool
    regrouped: str | None = None
    """On the reply to a frame that carried `channels`: what the description did (core.vocabulary.Regrouped)."""


class ErrorReply(NamedTuple):
    """The server's rejection of a message; seq is None when it could not be read."""

    code: str
    message: str
    seq: int | None = None


Reply = ChunkReply | AckReply | ErrorReply


# --- decoding: msgpack map -> fields ---


class _Span(NamedTuple):
    """Where a value sits in the payload, recorded instead of unpacking it (for bin fields)."""

    start: int
    end: int


class _ExtTypeFound(Exception):
    """Raised from the unpacker's ext hook: ext types are refused anywhere in a frame."""


def _refuse_ext(code: int, data: bytes) -> NoReturn:
    """msgpack ext_hook that rejects every ext type (the protocol uses none)."""
    raise _ExtTypeFound(code)


def _show(value: object) -> str:
    """A short, bounded rendering of a hostile value for an error message (one level deep, never recursive)."""
    if isinstance(value, dict):
        return f"<map of {len(value)} entries>"
    if isinstance(value, list):
        if len(value) > 8 or any(isinstance(item, (list, dict)) for item in value):
            return f"<array of {len(value)} items>"
        return "[" + ", ".join(_show(item) for item in value) + "]"
    text = repr(value[:_SHOWN_CHARS] if isinstance(value, (str, bytes)) else value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _kind(value: object) -> str:
    """The msgpack type name of an unpacked value, for error messages."""
    if value is None:
        return "nil"
    names = {bool: "boolean", int: "integer", float: "float", str: "string", bytes: "bin", list: "array", dict: "map"}
    return names.get(type(value), type(value).__name__)


def _kind_of_header(header: int) -> str:
    """The msgpack type name announced by a value's first byte (for values that were skipped, not unpacked)."""
    if header <= 0x7F or header >= 0xE0 or 0xCC <= header <= 0xD3:
        return "integer"
    if 0x80 <= header <= 0x8F or header in (0xDE, 0xDF):
        return "map"
    if 0x90 <= header <= 0x9F or header in (0xDC, 0xDD):
        return "array"
    if 0xA0 <= header <= 0xBF or 0xD9 <= header <= 0xDB:
        return "string"
    named = {0xC0: "nil", 0xC2: "boolean", 0xC3: "boolean", 0xCA: "float", 0xCB: "float"}
    return named.get(header, "ext")


def _valid_seq(value: object) -> int | None:
    """value if it is a valid seq, else None (used to attach seq to errors found later)."""
    if type(value) is int and 0 <= value < SEQ_LIMIT:
        return value
    return None


def _limited_unpacker(size: int) -> msgpack.Unpacker:
    """An unpacker whose every declared length is bounded by the payload size (no huge pre-allocation)."""
    return msgpack.Unpacker(
        max_buffer_size=max(size, 1),
        max_bin_len=size,
        max_str_len=size,
        max_array_len=size,
        max_map_len=size // 2,
        max_ext_len=0,
        ext_hook=_refuse_ext,
    )


def _explain_unpack_failure(exc: Exception) -> str:
    """Why msgpack refused the bytes, in words."""
    if isinstance(exc, _ExtTypeFound):
        return f"msgpack ext type {exc.args[0]} found; ext types are not accepted"
    if "max_ext_len" in str(exc):  # non-empty ext (timestamps included) stopped by max_ext_len=0
        return "a msgpack ext value was found; ext types are not accepted"
    if isinstance(exc, UnicodeDecodeError):
        return "a msgpack string is not valid UTF-8"
    if isinstance(exc, msgpack.exceptions.StackError):
        return "arrays or maps are nested too deeply"
    detail = str(exc) or type(exc).__name__
    return f"not decodable as msgpack ({_show(detail)})"


def _raise_not_a_map(payload: bytes | bytearray | memoryview) -> NoReturn:
    """Tell apart 'valid msgpack but not a map' from 'not msgpack at all' (error path only)."""
    unpacker = _limited_unpacker(len(payload))
    unpacker.feed(payload)
    try:
        value = unpacker.unpack()
        end = unpacker.tell()
    except Exception as exc:  # any failure of the parser on hostile bytes means "not msgpack"
        raise FrameError(ErrorCode.BAD_MSGPACK, f"{_explain_unpack_failure(exc)}; expected one msgpack map") from None
    if end != len(payload):
        raise FrameError(ErrorCode.BAD_MSGPACK, "more than one msgpack object in the message; expected exactly one map")
    raise FrameError(ErrorCode.NOT_A_MAP, f"the message is a msgpack {_kind(value)}; expected a msgpack map")


def _unpack_fields(payload: bytes | bytearray | memoryview, binary_fields: frozenset[str]) -> dict[str, Any]:
    """Read the frame's single top-level map into {key: value}; values of `binary_fields` become _Spans.

    Non-string keys are ignored (forward compatibility); duplicate keys, ext types, trailing bytes
    and undecodable bytes raise FrameError(bad_msgpack), carrying seq if it was already read.
    """
    size = len(payload)
    if size == 0:
        raise FrameError(ErrorCode.BAD_MSGPACK, "empty message; expected one msgpack map")
    if payload[0] not in _MAP_HEADERS:
        _raise_not_a_map(payload)
    unpacker = _limited_unpacker(size)
    unpacker.feed(payload)
    fields: dict[str, Any] = {}
    try:
        for _ in range(unpacker.read_map_header()):
            key = unpacker.unpack()
            if type(key) is not str:
                unpacker.unpack()
                continue
            if key in fields:
                raise FrameError(
                    ErrorCode.BAD_MSGPACK, f"duplicate key {_show(key)} in the map; expected each key once"
                )
            if key in binary_fields:
                start = unpacker.tell()
                unpacker.skip()
                fields[key] = _Span(start, unpacker.tell())
            else:
                fields[key] = unpacker.unpack()
        end = unpacker.tell()
    except FrameError as err:
        err.seq = _valid_seq(fields.get("seq"))
        raise
    except Exception as exc:  # any failure of the parser on hostile bytes means "not msgpack"
        message = f"{_explain_unpack_failure(exc)}; expected one msgpack map"
        raise FrameError(ErrorCode.BAD_MSGPACK, message, _valid_seq(fields.get("seq"))) from None
    if end != size:
        message = f"{size - end} trailing bytes after the map; expected exactly one msgpack map"
        raise FrameError(ErrorCode.BAD_MSGPACK, message, _valid_seq(fields.get("seq")))
    return fields


# --- decoding: field validation ---


def _require(fields: Mapping[str, Any], names: tuple[str, ...], seq: int | None) -> None:
    """Raise missing_field naming every absent required field."""
    missing = [name for name in names if name not in fields]
    if missing:
        listed = ", ".join(repr(name) for name in missing)
        raise FrameError(ErrorCode.MISSING_FIELD, f"missing field(s) {listed}; expected all of {', '.join(names)}", seq)


def _read_seq(fields: Mapping[str, Any]) -> int:
    """The seq field, validated: an integer in [0, 2**63)."""
    _require(fields, ("seq",), None)
    value = fields["seq"]
    seq = _valid_seq(value)
    if seq is None:
        raise FrameError(
            ErrorCode.BAD_FIELD, f"seq is {_show(value)} ({_kind(value)}); expected an integer 0 <= seq < 2**63"
        )
    return seq


def _read_int(fields: Mapping[str, Any], name: str, seq: int | None) -> int:
    """A required non-negative integer field (booleans are not integers)."""
    value = fields[name]
    if type(value) is not int or value < 0:
        raise FrameError(
            ErrorCode.BAD_FIELD, f"{name} is {_show(value)} ({_kind(value)}); expected an integer >= 0", seq
        )
    return value


def _read_bool(fields: Mapping[str, Any], name: str, seq: int | None) -> bool:
    """A required boolean field."""
    value = fields[name]
    if type(value) is not bool:
        raise FrameError(ErrorCode.BAD_FIELD, f"{name} is {_show(value)} ({_kind(value)}); expected true or false", seq)
    return value


def _read_str(fields: Mapping[str, Any], name: str, seq: int | None) -> str:
    """A required string field."""
    value = fields[name]
    if type(value) is not str:
        raise FrameError(ErrorCode.BAD_FIELD, f"{name} is {_show(value)} ({_kind(value)}); expected a string", seq)
    return value


def _read_dtype(fields: Mapping[str, Any], seq: int, accepted: Mapping[str, np.dtype]) -> np.dtype:
    """The dtype field: a string naming one of the `accepted` wire dtypes."""
    name = _read_str(fields, "dtype", seq)
    dtype = accepted.get(name)
    if dtype is None:
        raise FrameError(
            ErrorCode.BAD_DTYPE, f"dtype {_show(name)} is not accepted; expected one of {', '.join(accepted)}", seq
        )
    return dtype


def _read_shape(fields: Mapping[str, Any], seq: int) -> tuple[int, int]:
    """The shape field: an array of two integers [n_samples, n_channels], each >= 1."""
    value = fields["shape"]
    if type(value) is not list:
        raise FrameError(
            ErrorCode.BAD_FIELD, f"shape is a {_kind(value)}; expected an array [n_samples, n_channels]", seq
        )
    if len(value) != 2 or any(type(dim) is not int or dim < 1 for dim in value):
        raise FrameError(
            ErrorCode.BAD_SHAPE, f"shape is {_show(value)}; expected [n_samples, n_channels], integers >= 1", seq
        )
    return value[0], value[1]


def _read_bin(payload: bytes | bytearray | memoryview, fields: Mapping[str, Any], name: str, seq: int) -> memoryview:
    """A bin field as a zero-copy view of the payload (its _Span located by _unpack_fields)."""
    span: _Span = fields[name]
    header = payload[span.start]
    header_size = _BIN_HEADER_SIZES.get(header)
    if header_size is None:
        message = f"{name} is a msgpack {_kind_of_header(header)}; expected msgpack bin (raw bytes)"
        raise FrameError(ErrorCode.BAD_FIELD, message, seq)
    return memoryview(payload)[span.start + header_size : span.end]


def _read_optional_number(fields: Mapping[str, Any], name: str, seq: int, *, positive: bool) -> int | float | None:
    """An optional finite int/float field (nil counts as absent); `positive` demands > 0."""
    value = fields.get(name)
    if value is None:
        return None
    valid = type(value) in (int, float) and math.isfinite(value) and (value > 0 or not positive)
    if not valid:
        wanted = "a finite number > 0" if positive else "a finite number"
        raise FrameError(ErrorCode.BAD_FIELD, f"{name} is {_show(value)} ({_kind(value)}); expected {wanted}", seq)
    number: int | float | None = value
    return number


def _read_array(
    payload: bytes | bytearray | memoryview,
    fields: Mapping[str, Any],
    seq: int,
    accepted: Mapping[str, np.dtype],
    max_channels: int | None,
) -> np.ndarray:
    """shape + dtype + data -> a read-only (n_samples, n_channels) array viewing the payload.

    Sizes are compared as Python integers before anything is allocated, so absurd shapes cannot overflow.
    """
    dtype = _read_dtype(fields, seq, accepted)
    n_samples, n_channels = _read_shape(fields, seq)
    if max_channels is not None and n_channels > max_channels:
        raise FrameError(
            ErrorCode.TOO_MANY_CHANNELS,
            f"{n_channels} channels; expected at most {max_channels} channels per chunk",
            seq,
        )
    data = _read_bin(payload, fields, "data", seq)
    expected_bytes = n_samples * n_channels * dtype.itemsize
    if len(data) != expected_bytes:
        raise FrameError(
            ErrorCode.SIZE_MISMATCH,
            f"data holds {len(data)} bytes; expected {expected_bytes} = {n_samples} samples x {n_channels} "
            f"channels x {dtype.itemsize} bytes ({dtype.str})",
            seq,
        )
    return np.frombuffer(data, dtype=dtype).reshape(n_samples, n_channels)


_DATA_FIELD: Final = frozenset({"data"})
_CHUNK_SPANS: Final = frozenset({"data", "channels"})
_CHUNK_FIELDS: Final = ("seq", "shape", "dtype", "data")


def decode_chunk(payload: bytes | bytearray | memoryview, *, max_channels: int) -> Chunk:
    """Decode and validate a client's chunk frame; the array views the payload (no copy).

    Raises FrameError (with seq whenever it could be read) for anything outside the contract.
    """
    fields = _unpack_fields(payload, _CHUNK_SPANS)
    seq = _read_seq(fields)
    _require(fields, _CHUNK_FIELDS, seq)
    data = _read_array(payload, fields, seq, WIRE_DTYPES, max_channels)
    t0 = _read_optional_number(fields, "t0", seq, positive=False)
    fs = _read_optional_number(fields, "fs", seq, positive=True)
    channels = _read_channels(payload, fields.get("channels"), data.shape[1], seq)
    return Chunk(seq=seq, data=data, t0=t0, fs=fs, channels=channels)


def _read_channels(
    payload: bytes | bytearray | memoryview, span: _Span | None, n_channels: int, seq: int
) -> ChannelDescription | None:
    """The optional `channels` field: a description of exactly the chunk's channels (nil: absent)."""
    if span is None:
        return None
    size = span.end - span.start
    if size > MAX_CHANNELS_BYTES:
        raise FrameError(
            ErrorCode.BAD_CHANNELS,
            f"channels is {size} bytes; expected at most {MAX_CHANNELS_BYTES} (send labels and the fields you group "
            "by, once, when they change)",
            seq,
        )
    unpacker = _limited_unpacker(size)
    unpacker.feed(payload[span.start : span.end])
    try:
        value = unpacker.unpack()
    except Exception as exc:  # e.g. a map key that is not a string
        raise FrameError(ErrorCode.BAD_CHANNELS, f"channels cannot be read ({exc}); expected a map", seq) from None
    if value is None:
        return None
    try:
        description = ChannelDescription.from_dict(value)
    except ChannelDescriptionError as exc:
        raise FrameError(ErrorCode.BAD_CHANNELS, f"channels: {exc}", seq) from None
    if len(description) != n_channels:
        raise FrameError(
            ErrorCode.BAD_CHANNELS,
            f"channels describes {len(description)} channels but the chunk has {n_channels}; expected one entry "
            "per channel of the chunk",
            seq,
        )
    return description


def _decode_error_reply(fields: Mapping[str, Any]) -> ErrorReply:
    """Validate an error reply's fields; its seq may be nil or absent."""
    raw_seq = fields.get("seq")
    seq = None if raw_seq is None else _read_seq(fields)
    _require(fields, ("code", "message"), seq)
    return ErrorReply(code=_read_str(fields, "code", seq), message=_read_str(fields, "message", seq), seq=seq)


def _decode_ack_reply(fields: Mapping[str, Any]) -> AckReply:
    """Validate a fit acknowledgement's fields."""
    seq = _read_seq(fields)
    _require(fields, ("n_samples", "weights_version", "reset"), seq)
    return AckReply(
        seq=seq,
        n_samples=_read_int(fields, "n_samples", seq),
        weights_version=_read_int(fields, "weights_version", seq),
        reset=_read_bool(fields, "reset", seq),
        regrouped=_read_optional_str(fields, "regrouped", seq),
    )


def _decode_chunk_reply(payload: bytes | bytearray | memoryview, fields: Mapping[str, Any]) -> ChunkReply:
    """Validate a processed-chunk reply's fields; the array views the payload (no copy)."""
    seq = _read_seq(fields)
    _require(fields, (*_CHUNK_FIELDS, "weights_version", "reset"), seq)
    data = _read_array(payload, fields, seq, _REPLY_WIRE_DTYPES, None)
    n_samples = None if fields.get("n_samples") is None else _read_int(fields, "n_samples", seq)
    return ChunkReply(
        seq=seq,
        data=data,
        weights_version=_read_int(fields, "weights_version", seq),
        reset=_read_bool(fields, "reset", seq),
        n_samples=n_samples,
        t0=_read_optional_number(fields, "t0", seq, positive=False),
        fs=_read_optional_number(fields, "fs", seq, positive=True),
        weights_source=_read_optional_str(fields, "weights_source", seq),
        regrouped=_read_optional_str(fields, "regrouped", seq),
    )


def _read_optional_str(fields: Mapping[str, Any], name: str, seq: int) -> str | None:
    """A string field that may be absent or nil."""
    return None if fields.get(name) is None else _read_str(fields, name, seq)


def decode_reply(payload: bytes | bytearray | memoryview) -> Reply:
    """Decode and validate a server reply (for clients); raises FrameError if it breaks the contract."""
    fields = _unpack_fields(payload, _DATA_FIELD)
    seq = _valid_seq(fields.get("seq"))
    _require(fields, ("type",), seq)
    reply_type = _read_str(fields, "type", seq)
    if reply_type == "chunk":
        return _decode_chunk_reply(payload, fields)
    if reply_type == "ack":
        return _decode_ack_reply(fields)
    if reply_type == "error":
        return _decode_error_reply(fields)
    raise FrameError(ErrorCode.BAD_FIELD, f"type is {_show(reply_type)}; expected 'chunk', 'ack' or 'error'", seq)


# --- encoding ---


def _check_seq(seq: int) -> None:
    """Refuse a seq the peer would reject."""
    if _valid_seq(seq) is None:
        raise ValueError(f"seq is {_show(seq)}; expected an integer 0 <= seq < 2**63")


def _check_count(value: int, name: str) -> None:
    """Refuse a counter that is not a non-negative integer."""
    if type(value) is not int or value < 0:
        raise ValueError(f"{name} is {_show(value)}; expected an integer >= 0")


def _check_number(value: int | float | None, name: str, *, positive: bool) -> None:
    """Refuse a t0/fs the peer would reject (None means absent)."""
    if value is None:
        return
    if type(value) not in (int, float) or not math.isfinite(value) or (positive and value <= 0):
        wanted = "a finite number > 0" if positive else "a finite number"
        raise ValueError(f"{name} is {_show(value)}; expected {wanted} or None")


def _wire_array(data: np.ndarray, accepted: Mapping[str, np.dtype]) -> tuple[str, np.ndarray]:
    """(wire dtype name, little-endian C-contiguous 2-D array); copies only if byte order or layout demand it."""
    array = np.asarray(data)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"data has shape {array.shape}; expected 2-D (n_samples, n_channels), both >= 1")
    name = array.dtype.newbyteorder("<").str if array.dtype.kind in "fi" else ""
    if name not in accepted:
        raise ValueError(f"data has dtype {array.dtype}; expected one of {', '.join(accepted)} (any byte order)")
    return name, np.ascontiguousarray(array, dtype=accepted[name])


def _with_optional(message: dict[str, Any], **optional: object) -> dict[str, Any]:
    """message plus every optional field that is not None."""
    message.update((key, value) for key, value in optional.items() if value is not None)
    return message


def encode_chunk(
    seq: int,
    data: np.ndarray,
    *,
    t0: int | float | None = None,
    fs: int | float | None = None,
    channels: ChannelDescription | None = None,
) -> bytes:
    """A client's chunk frame; accepts float32/float64/int16/int32 in any byte order or memory layout.
    `channels`, a description of the chunk's channels, is for the frames where it changes."""
    _check_seq(seq)
    _check_number(t0, "t0", positive=False)
    _check_number(fs, "fs", positive=True)
    name, array = _wire_array(data, WIRE_DTYPES)
    if channels is not None and len(channels) != array.shape[1]:
        raise ValueError(f"channels describes {len(channels)} channels but data has {array.shape[1]}")
    message = {"seq": seq, "shape": list(array.shape), "dtype": name}
    described = channels.to_dict() if channels is not None else None
    return _pack(_with_optional(message, t0=t0, fs=fs, channels=described) | {"data": array.data})


def encode_chunk_reply(
    seq: int,
    data: np.ndarray,
    *,
    weights_version: int,
    reset: bool,
    t0: int | float | None = None,
    fs: int | float | None = None,
    n_samples: int | None = None,
    weights_source: str | None = None,
    regrouped: str | None = None,
) -> bytes:
    """The server's reply carrying processed data (float32 or float64); n_samples for fit_transform,
    regrouped for a frame that carried a channel description."""
    _check_seq(seq)
    _check_count(weights_version, "weights_version")
    if n_samples is not None:
        _check_count(n_samples, "n_samples")
    _check_number(t0, "t0", positive=False)
    _check_number(fs, "fs", positive=True)
    name, array = _wire_array(data, _REPLY_WIRE_DTYPES)
    message = {
        "type": "chunk",
        "seq": seq,
        "shape": list(array.shape),
        "dtype": name,
        "weights_version": weights_version,
        "reset": bool(reset),
    }
    optional = _with_optional(
        message, n_samples=n_samples, t0=t0, fs=fs, weights_source=weights_source, regrouped=regrouped
    )
    return _pack(optional | {"data": array.data})


def encode_ack(seq: int, *, n_samples: int, weights_version: int, reset: bool, regrouped: str | None = None) -> bytes:
    """The server's reply to a fit chunk (regrouped: for a frame that carried a channel description)."""
    _check_seq(seq)
    _check_count(n_samples, "n_samples")
    _check_count(weights_version, "weights_version")
    message = {
        "type": "ack",
        "seq": seq,
        "n_samples": n_samples,
        "weights_version": weights_version,
        "reset": bool(reset),
    }
    return _pack(_with_optional(message, regrouped=regrouped))


def _pack(message: dict[str, Any]) -> bytes:
    """msgpack of `message` (msgpack ships no type information)."""
    packed: bytes = msgpack.packb(message)
    return packed


def encode_error(code: str, message: str, seq: int | None = None) -> bytes:
    """The server's rejection of a message; seq is sent as nil when it could not be read."""
    if seq is not None:
        _check_seq(seq)
    return _pack({"type": "error", "seq": seq, "code": str(code), "message": str(message)})
