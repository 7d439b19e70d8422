"""The client's exceptions: one class per server error code, plus connection and protocol failures.

Every server rejection becomes a `ServerError` subclass carrying the server's `code` and `message`
(and the frame's `seq`, or the HTTP `status` for REST calls), so callers can catch exactly what they handle.
"""

from __future__ import annotations

from lrr_service.core.vocabulary import ErrorCode


class LRRClientError(Exception):
    """Base of everything this client raises on purpose."""


class ServerError(LRRClientError):
    """The server refused a request: `code` is its error code, `message` its explanation."""

    code: str = "unknown"
    """The server's error code (an ErrorCode; a newer server's unknown code is kept as it came)."""

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
    code = ErrorCode.TEXT_FRAME


class BadMsgpackError(FrameRejected):
    code = ErrorCode.BAD_MSGPACK


class NotAMapError(FrameRejected):
    code = ErrorCode.NOT_A_MAP


class MissingFieldError(FrameRejected):
    code = ErrorCode.MISSING_FIELD


class BadFieldError(FrameRejected):
    code = ErrorCode.BAD_FIELD


class BadDtypeError(FrameRejected):
    code = ErrorCode.BAD_DTYPE


class BadShapeError(FrameRejected):
    code = ErrorCode.BAD_SHAPE


class SizeMismatchError(FrameRejected):
    code = ErrorCode.SIZE_MISMATCH


class TooManyChannelsError(ServerError):
    """The chunk has more channels than the server accepts."""

    code = ErrorCode.TOO_MANY_CHANNELS


class ChunkNotFittedError(ServerError):
    """A fit chunk held samples the statistics cannot take; the server skipped it and nothing changed."""


class NonFiniteError(ChunkNotFittedError):
    """A fit chunk held NaN or Inf; the server skipped it and nothing changed."""

    code = ErrorCode.NON_FINITE


class OutOfRangeError(ChunkNotFittedError):
    """A fit chunk held a sample beyond ±1e100 (its square would overflow); skipped, nothing changed."""

    code = ErrorCode.OUT_OF_RANGE


class TooManySessionsError(ServerError):
    """The server holds its maximum number of sessions; no new session was made."""

    code = ErrorCode.TOO_MANY_SESSIONS


class BadKeyError(ServerError):
    """The stream key breaks the server's key rule."""

    code = ErrorCode.BAD_KEY


class SettingsMismatchError(ServerError):
    """The session's settings cannot take the chunk's channel count (e.g. a group names a missing channel)."""

    code = ErrorCode.SETTINGS_MISMATCH


class ChannelsMismatchError(ServerError):
    """The session's channel description has another channel count than the chunk (or the session): send the
    chunk's description with it (LRRClient.set_channels), or replace or remove the session's."""

    code = ErrorCode.CHANNELS_MISMATCH


class BadChannelsError(ServerError):
    """A channel description the server refuses (types, one entry per channel, limits)."""

    code = ErrorCode.BAD_CHANNELS


class InvalidRequestError(ServerError):
    """A REST request body failed validation (HTTP 422); the message names the field."""

    code = "invalid_request"


class OverCapacityError(ServerError):
    """Binding the session to this channel count would exceed the server's memory budget; nothing changed."""

    code = ErrorCode.OVER_CAPACITY


class InternalServerError(ServerError):
    """An unexpected server fault; the chunk or request was not applied."""

    code = ErrorCode.INTERNAL


class AuthenticationError(ServerError):
    """The server wants a (different) API token."""

    code = ErrorCode.UNAUTHORIZED


class UnknownSessionError(ServerError):
    """No session has this key (REST 404); chunks, PUT /streams/{key} or a weights upload create one."""

    code = ErrorCode.UNKNOWN_SESSION


class NoWeightsError(ServerError):
    """The session has no weights yet (it passes data through): fit it or upload weights first."""

    code = ErrorCode.NO_WEIGHTS


class NoFitDataError(ServerError):
    """A solve was asked for but the session has no fit data since its last reset."""

    code = ErrorCode.NO_FIT_DATA


class ChangedDuringSolveError(ServerError):
    """The session was reset or changed while solving; retrying the solve is safe."""

    code = ErrorCode.CHANGED_DURING_SOLVE


class BadCsvError(ServerError):
    """An uploaded weights CSV could not be parsed (the message names line and column)."""

    code = ErrorCode.BAD_CSV


class BadWeightsError(ServerError):
    """Uploaded weights parsed but cannot be applied (e.g. non-square for this session)."""

    code = ErrorCode.BAD_WEIGHTS


class SolveFailedError(ServerError):
    """The engine could not solve; the previous weights stay in use."""

    code = ErrorCode.SOLVE_FAILED


class CheckpointFailedError(ServerError):
    """The change could not be written to (or a file deleted from) the server's state dir."""

    code = ErrorCode.CHECKPOINT_FAILED


class BadSettingsError(InvalidRequestError):
    """A settings body named an invalid value (HTTP 422); the message names the field."""

    code = ErrorCode.BAD_SETTINGS


class UploadRefusedError(ServerError):
    """A weights upload that could not be read (empty, no `file` field, unreadable multipart)."""


class EmptyUploadError(UploadRefusedError):
    code = ErrorCode.EMPTY_UPLOAD


class MissingFileError(UploadRefusedError):
    code = ErrorCode.MISSING_FILE


class BadMultipartError(UploadRefusedError):
    code = ErrorCode.BAD_MULTIPART


class CsvWorkerLostError(ServerError):
    """The server's CSV worker died during the request; nothing changed, retrying is safe."""

    code = ErrorCode.CSV_WORKER_LOST


class RequestRefusedError(ServerError):
    """The server refused the request before reading it (its host, origin, size or pace)."""


class HostNotAllowedError(RequestRefusedError):
    code = ErrorCode.HOST_NOT_ALLOWED


class OriginNotAllowedError(RequestRefusedError):
    code = ErrorCode.ORIGIN_NOT_ALLOWED


class TooLargeError(RequestRefusedError):
    code = ErrorCode.TOO_LARGE


class RequestTimeoutError(RequestRefusedError):
    code = ErrorCode.REQUEST_TIMEOUT


class ServerBusyError(ServerError):
    """The server is at one of its limits of concurrent work; retry shortly."""


class TooManyRequestsError(ServerBusyError):
    code = ErrorCode.TOO_MANY_REQUESTS


class TooManyConnectionsError(ServerBusyError):
    code = ErrorCode.TOO_MANY_CONNECTIONS


class NotOwnerError(ServerError):
    """In a cluster, another worker owns the key (docs/scale.md); clients with `direct=True` locate it again."""

    code = ErrorCode.NOT_OWNER


class StoreUnavailableError(ServerBusyError):
    """In a cluster, the session store cannot be reached; retry once it is back."""

    code = ErrorCode.STORE_UNAVAILABLE


class NoSuchEndpointError(ServerError):
    """The URL reached an HTTP server that has no lrr-service route at that path (a 404, or a websocket
    handshake refused without an lrr-service error): the URL is wrong, or a path prefix is not stripped."""

    code = "no_such_endpoint"


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


class IdentityTransformError(LRRClientError):
    """A transform applied no weights (the session has none): its output equals its input. Raised by the
    client unless identity output was allowed (`allow_identity=True`, `lrr stream --allow-identity`)."""

    def __init__(self, message: str, seq: int | None = None) -> None:
        super().__init__(message)
        self.seq = seq


class ProtocolError(LRRClientError):
    """A server reply broke the wire contract of docs/protocol.md."""


def _by_code() -> dict[str, type[ServerError]]:
    """Every class above that stands for one code, by its code."""
    found: dict[str, type[ServerError]] = {}
    pending = [ServerError]
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        if "code" in vars(cls):
            found[cls.code] = cls
    return found


_BY_CODE = _by_code()


def error_for(code: str, message: str, *, seq: int | None = None, status: int | None = None) -> ServerError:
    """The exception for a server error code; unknown codes give a plain ServerError that keeps the code."""
    return _BY_CODE.get(code, ServerError)(code, message, seq=seq, status=status)
