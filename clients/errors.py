"""The client's exceptions: one class per server error code, plus connection and protocol failures.

Every server rejection becomes a `ServerError` subclass carrying the server's `code` and `message`
(and the frame's `seq`, or the HTTP `status` for REST calls), so callers can catch exactly what they handle.
"""

from __future__ import annotations

from lrr_service.core import codec


class LRRClientError(Exception):
    """Base of everything this client raises on purpose."""


class ServerError(LRRClientError):
    """The server refused a request: `code` is its error code, `message` its explanation."""

    code: str = "unknown"

    def __init__(self, code: str, message: str, *, seq: int | None = None, status: int | None = None) -> None:
        where = f" (seq {seq})" if seq is not None else f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{code}: {message}{where}")
        self.code = code
        self.message = message
        self.seq = seq
        self.status = status


class FrameRejected(ServerError):
    """The server could not read a frame this client sent (a client-side bug or a codec mismatch)."""


class TextFrameError(FrameRejected):
    code = codec.TEXT_FRAME


class BadMsgpackError(FrameRejected):
    code = codec.BAD_MSGPACK


class NotAMapError(FrameRejected):
    code = codec.NOT_A_MAP


class MissingFieldError(FrameRejected):
    code = codec.MISSING_FIELD


class BadFieldError(FrameRejected):
    code = codec.BAD_FIELD


class BadDtypeError(FrameRejected):
    code = codec.BAD_DTYPE


class BadShapeError(FrameRejected):
    code = codec.BAD_SHAPE


class SizeMismatchError(FrameRejected):
    code = codec.SIZE_MISMATCH


class TooManyChannelsError(ServerError):
    """The chunk has more channels than the server accepts."""

    code = codec.TOO_MANY_CHANNELS


class ChunkNotFittedError(ServerError):
    """A fit chunk held samples the statistics cannot take; the server skipped it and nothing changed."""


class NonFiniteError(ChunkNotFittedError):
    """A fit chunk held NaN or Inf; the server skipped it and nothing changed."""

    code = codec.NON_FINITE


class OutOfRangeError(ChunkNotFittedError):
    """A fit chunk held a sample beyond ±1e100 (its square would overflow); skipped, nothing changed."""

    code = codec.OUT_OF_RANGE


class TooManySessionsError(ServerError):
    """The server holds its maximum number of sessions; no new session was made."""

    code = codec.TOO_MANY_SESSIONS


class BadKeyError(ServerError):
    """The stream key breaks the server's key rule."""

    code = codec.BAD_KEY


class SettingsMismatchError(ServerError):
    """The session's settings cannot take the chunk's channel count (e.g. a group names a missing channel)."""

    code = codec.SETTINGS_MISMATCH


class InvalidRequestError(ServerError):
    """A REST request body failed validation (HTTP 422); the message names the field."""

    code = "invalid_request"


class OverCapacityError(ServerError):
    """Binding the session to this channel count would exceed the server's memory budget; nothing changed."""

    code = codec.OVER_CAPACITY


class InternalServerError(ServerError):
    """An unexpected server fault; the chunk or request was not applied."""

    code = codec.INTERNAL


class AuthenticationError(ServerError):
    """The server wants a (different) API token."""

    code = "unauthorized"


class UnknownSessionError(ServerError):
    """No session has this key (REST 404); chunks, PUT /streams/{key} or a weights upload create one."""

    code = "unknown_session"


class NoWeightsError(ServerError):
    """The session has no weights yet (it passes data through): fit it or upload weights first."""

    code = "no_weights"


class NoFitDataError(ServerError):
    """A solve was asked for but the session has no fit data since its last reset."""

    code = "no_fit_data"


class ChangedDuringSolveError(ServerError):
    """The session was reset or changed while solving; retrying the solve is safe."""

    code = "changed_during_solve"


class BadCsvError(ServerError):
    """An uploaded weights CSV could not be parsed (the message names line and column)."""

    code = "bad_csv"


class BadWeightsError(ServerError):
    """Uploaded weights parsed but cannot be applied (e.g. non-square for this session)."""

    code = "bad_weights"


class FrameTooLargeError(ServerError):
    """A frame exceeded the server's size limit; the server closed the connection (1009)."""

    code = "frame_too_large"


class ConnectionLost(LRRClientError):
    """The connection dropped and could not be re-established within the reconnect policy.

    `unanswered` lists the seq of every frame that was sent or queued but never answered.
    """

    def __init__(self, message: str, unanswered: tuple[int, ...] = ()) -> None:
        self.reason = message
        if unanswered:
            shown = ", ".join(str(seq) for seq in unanswered[:10]) + (" ..." if len(unanswered) > 10 else "")
            message = f"{message}; {len(unanswered)} frame(s) got no reply (seq {shown})"
        super().__init__(message)
        self.unanswered = unanswered


class ProtocolError(LRRClientError):
    """A server reply broke the wire contract of docs/protocol.md."""


_BY_CODE: dict[str, type[ServerError]] = {
    cls.code: cls
    for cls in (TextFrameError, BadMsgpackError, NotAMapError, MissingFieldError, BadFieldError, BadDtypeError,
                BadShapeError, SizeMismatchError, TooManyChannelsError, NonFiniteError, OutOfRangeError,
                TooManySessionsError,
                BadKeyError, SettingsMismatchError, OverCapacityError, InternalServerError,
                AuthenticationError, InvalidRequestError, UnknownSessionError, NoWeightsError, NoFitDataError,
                ChangedDuringSolveError, BadCsvError, BadWeightsError, FrameTooLargeError)
}


def error_for(code: str, message: str, *, seq: int | None = None, status: int | None = None) -> ServerError:
    """The exception for a server error code; unknown codes give a plain ServerError that keeps the code."""
    return _BY_CODE.get(code, ServerError)(code, message, seq=seq, status=status)
