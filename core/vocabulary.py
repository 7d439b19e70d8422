"""The protocol's vocabulary, defined once: the stream modes and every error code a client can get.

The server sends these, the clients map them to exceptions, and the tables of docs/protocol.md
and docs/service.md list exactly them (tests/test_vocabulary.py checks both ways).
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Mode(StrEnum):
    """A websocket channel of a session, `/ws/{key}/<mode>`: what happens to each chunk."""

    FIT = "fit"
    TRANSFORM = "transform"
    FIT_TRANSFORM = "fit_transform"

    @property
    def fits(self) -> bool:
        """Chunks on this channel enter the statistics."""
        return self is not Mode.TRANSFORM

    @property
    def transforms(self) -> bool:
        """Chunks on this channel come back rereferenced."""
        return self is not Mode.FIT


class ErrorCode(StrEnum):
    """The `code` of an error: in a websocket error reply (`frame`), in a REST error body (`status`),
    or both. `meaning` is the one-line explanation the documentation tables give."""

    status: int | None
    """The HTTP status of a REST or handshake answer with this code; None for frame-only codes."""
    frame: bool
    """Whether a websocket error reply can carry it."""
    meaning: str

    def __new__(cls, value: str, status: int | None, frame: bool, meaning: str) -> ErrorCode:
        member = str.__new__(cls, value)
        member._value_ = value
        member.status = status
        member.frame = frame
        member.meaning = meaning
        return member

    # -- a frame that breaks the wire contract (docs/protocol.md) ----------------------------------
    TEXT_FRAME = "text_frame", None, True, "a text message arrived; every message must be a binary msgpack map"
    BAD_MSGPACK = (
        "bad_msgpack",
        None,
        True,
        "not one msgpack object: undecodable, trailing bytes, duplicate keys, ext types",
    )
    NOT_A_MAP = "not_a_map", None, True, "valid msgpack, but the top-level object is not a map"
    MISSING_FIELD = "missing_field", None, True, "seq, shape, dtype or data is absent"
    BAD_FIELD = "bad_field", None, True, "a field has the wrong type or range"
    BAD_DTYPE = "bad_dtype", None, True, "dtype is not one of the wire dtypes"
    BAD_SHAPE = "bad_shape", None, True, "shape is not two integers, each >= 1"
    SIZE_MISMATCH = "size_mismatch", 409, True, "the data's size, or an uploaded W's, does not match the channels"
    TOO_MANY_CHANNELS = "too_many_channels", None, True, "more channels than the server's channel limit"
    # -- a chunk the session refuses ------------------------------------------------------------------
    NON_FINITE = "non_finite", None, True, "a fit chunk holds NaN or Inf; skipped, nothing changed"
    OUT_OF_RANGE = "out_of_range", None, True, "a fit chunk holds a sample beyond ±1e100; skipped, nothing changed"
    SETTINGS_MISMATCH = "settings_mismatch", None, True, "the session's settings cannot take the chunk's channel count"
    CHANNELS_MISMATCH = (
        "channels_mismatch",
        409,
        True,
        "the session's channel description has another channel count than the chunk (or, on REST, than the session)",
    )
    BAD_CHANNELS = "bad_channels", 422, True, "a channel description breaks its contract (types, lengths, limits)"
    # -- sessions and the server's limits -------------------------------------------------------------
    BAD_KEY = "bad_key", 400, True, "the stream key is not 1-128 characters of [A-Za-z0-9._-]"
    TOO_MANY_SESSIONS = "too_many_sessions", 429, True, "the server holds its maximum number of sessions"
    OVER_CAPACITY = "over_capacity", 507, True, "binding the session would exceed the server's memory budget"
    INTERNAL = "internal", 500, True, "an unexpected server fault; nothing was applied"
    NOT_OWNER = (
        "not_owner",
        421,
        False,
        "in a cluster, another worker owns the stream key (the answer names it in `owner`); go there or through "
        "the proxy",
    )
    STORE_UNAVAILABLE = (
        "store_unavailable",
        503,
        False,
        "in a cluster, the session store (Redis) cannot be reached: a session could not be restored or a change "
        "not made durable",
    )
    UNKNOWN_SESSION = "unknown_session", 404, False, "no session has this key"
    # -- REST requests ----------------------------------------------------------------------------------
    NO_WEIGHTS = "no_weights", 404, False, "the session has no weights yet (identity)"
    NO_FIT_DATA = "no_fit_data", 409, False, "a solve was asked for, but no fit chunk was accepted since the last reset"
    CHANGED_DURING_SOLVE = "changed_during_solve", 409, False, "the session was reset or changed while it solved"
    SOLVE_FAILED = "solve_failed", 500, False, "the engine could not solve; the previous weights stay"
    CHECKPOINT_FAILED = "checkpoint_failed", 500, False, "the state dir could not be written (or a file deleted)"
    BAD_SETTINGS = "bad_settings", 422, False, "a settings body with an invalid value (FastAPI's list of field errors)"
    BAD_CSV = "bad_csv", 422, False, "the weights CSV is not n lines of n finite numbers"
    BAD_WEIGHTS = "bad_weights", 422, False, "the weights parse but the session cannot take them"
    EMPTY_UPLOAD = "empty_upload", 400, False, "a weights upload without content"
    MISSING_FILE = "missing_file", 400, False, "a multipart upload without a field named file"
    BAD_MULTIPART = "bad_multipart", 400, False, "a multipart body that cannot be read"
    CSV_WORKER_LOST = "csv_worker_lost", 503, False, "the CSV worker process died during the request; retry"
    # -- the gate: what is refused before a route runs (service/gate.py) ---------------------------------
    HOST_NOT_ALLOWED = "host_not_allowed", 400, False, "the Host header names a host the server does not answer to"
    ORIGIN_NOT_ALLOWED = "origin_not_allowed", 403, False, "a websocket or state-changing request from another site"
    UNAUTHORIZED = "unauthorized", 401, False, "the API token is missing or wrong (403 on a websocket handshake)"
    TOO_LARGE = "too_large", 413, False, "the request body exceeds its limit"
    REQUEST_TIMEOUT = "request_timeout", 408, False, "the request body stopped arriving"
    TOO_MANY_REQUESTS = "too_many_requests", 503, False, "the server answers its maximum of HTTP requests at once"
    TOO_MANY_CONNECTIONS = "too_many_connections", 503, False, "the server holds its maximum of websocket streams"


class Regrouped(StrEnum):
    """What a new channel description did to a session's groups and weights (`regrouped` in the reply)."""

    meaning: str

    def __new__(cls, value: str, meaning: str) -> Regrouped:
        member = str.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member

    UNBOUND = "unbound", "no channel count yet: the groups are resolved when the first chunk binds one"
    UNCHANGED = "unchanged", "the groups are the same as before; weights and statistics untouched"
    RESOLVED = "resolved", "the groups changed; the weights were solved again from the statistics, which cover them"
    DEFAULTS = "defaults", "the groups changed and nothing was fitted: the cold-start default of the new groups applies"
    CLEARED = (
        "cleared",
        "the groups changed but the fitted weights' statistics are gone (restored without them): the weights were "
        "dropped for the cold-start default of the new groups",
    )
    UPLOADED_KEPT = (
        "uploaded_kept",
        "the groups changed; uploaded weights stay pinned (they are a full matrix), the next solve uses the new groups",
    )


class CloseCode(IntEnum):
    """Websocket close codes of the service's own (4000-4999 are the application's), beside the
    standard ones (1008 policy, 1009 too big, 1012 restart)."""

    NOT_OWNER = 4421
    """This worker no longer owns the stream key (cluster failover or ring change): reconnect, through the
    proxy or to the owner the front door names; unanswered frames are sent again (docs/scale.md)."""
