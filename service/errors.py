"""The refusals the service answers, and the one place that turns them into responses.

A route, the registry, a session or the gate raises a ServiceError: an ErrorCode (which fixes
the HTTP status) and a message saying what was wrong and what was expected. On REST,
`install_error_handlers` renders it as `{"detail": {"code", "message", ...extra}}` and counts it
in `lrr_errors_total{code}`; on a websocket, the stream protocol sends it as an error frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lrr_service.core.vocabulary import ErrorCode

if TYPE_CHECKING:  # the refusals are imported by the settings, and so by the command line, which need no web stack
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    from lrr_service.service.metrics import ServiceMetrics


class ServiceError(Exception):
    """A refusal with its `code`, message and any `extra` fields of the JSON body.

    Subclasses fix the code of one kind of refusal; `status` overrides the code's HTTP status
    where one place answers differently (a websocket handshake refused for the token: 403).
    """

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self._status = status
        self.headers = dict(headers or {})
        self.extra = extra

    @property
    def message(self) -> str:
        """What was wrong and what was expected."""
        return str(self.args[0])

    @property
    def status(self) -> int:
        """The HTTP status of the answer."""
        return self._status or self.code.status or 500

    def body(self) -> dict[str, Any]:
        """The documented JSON error body."""
        return {"detail": {"code": self.code, "message": self.message, **self.extra}}


class UnknownSessionError(ServiceError):
    """No session exists for the key."""

    code = ErrorCode.UNKNOWN_SESSION


class SessionLimitError(ServiceError):
    """A new session was refused because the registry holds LRR_MAX_SESSIONS sessions."""

    code = ErrorCode.TOO_MANY_SESSIONS


class CapacityError(ServiceError):
    """Binding a session to a channel count would take the sessions past LRR_MAX_STATE_BYTES."""

    code = ErrorCode.OVER_CAPACITY


class NotOwnerError(ServiceError):
    """In a cluster, another worker owns the stream key; `owner` in the body is its URL."""

    code = ErrorCode.NOT_OWNER


class StoreUnavailableError(ServiceError):
    """In a cluster, the session store cannot be reached."""

    code = ErrorCode.STORE_UNAVAILABLE


class CheckpointFailedError(ServiceError):
    """The state dir could not be written (or a file in it deleted)."""

    code = ErrorCode.CHECKPOINT_FAILED


def install_error_handlers(app: FastAPI, metrics: ServiceMetrics) -> None:
    """Answer every ServiceError with its documented body, and any other exception with `internal`."""
    from fastapi.responses import JSONResponse

    async def refused(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        metrics.errors.labels(exc.code).inc()
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    async def failed(request: Request, exc: Exception) -> JSONResponse:
        """A bug, not a refusal: Starlette logs the traceback after this answer (as uvicorn's error)."""
        metrics.errors.labels(ErrorCode.INTERNAL).inc()
        fault = ServiceError(
            "the server failed to handle this request; it may not have been applied: check the "
            "session (GET /streams/{key}) and the server log"
        )
        return JSONResponse(fault.body(), status_code=500)

    app.add_exception_handler(ServiceError, refused)
    app.add_exception_handler(Exception, failed)
