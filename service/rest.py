"""REST routes: health, readiness, sessions, weights as CSV, explicit solves and metrics.

Handlers are thin: validate, call the registry / scheduler / checkpointer, answer. Errors are
`{"detail": {"code", "message", ...}}` (pydantic body errors keep FastAPI's 422 field list).
Host, origin, token and body limits are checked before any of this runs (service/gate.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any, NoReturn

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse, StreamingResponse

from lrr_service.core.errors import ChannelCountError, SettingsError, WeightsError
from lrr_service.core.settings import LRRSettings
from lrr_service.core.vocabulary import ErrorCode
from lrr_service.core.weights_csv import WeightsCsvError
from lrr_service.service.capacity import CapacityError
from lrr_service.service.context import ServiceContext, get_context
from lrr_service.service.csv_process import CsvWorkerLost
from lrr_service.service.keys import InvalidKeyError, validate_key
from lrr_service.service.metrics import PROMETHEUS_CONTENT_TYPE
from lrr_service.service.schemas import SessionSettingsBody
from lrr_service.service.sessions import Session, SessionLimitError, UnknownSessionError, prepare_transforms
from lrr_service.service.uploads import UploadError, is_large_upload, read_csv_upload

Context = Annotated[ServiceContext, Depends(get_context)]


def api_error(context: ServiceContext, status_code: int, code: ErrorCode, message: str, **extra: Any) -> NoReturn:
    """Raise an HTTP error whose body says what was wrong and what was expected; counted by code."""
    context.metrics.errors.labels(code).inc()
    raise HTTPException(status_code, detail={"code": code, "message": message, **extra})


async def stream_key(key: str, context: Context) -> str:
    """Dependency: the path's stream key, validated (400 otherwise)."""
    try:
        return validate_key(key)
    except InvalidKeyError as exc:
        api_error(context, status.HTTP_400_BAD_REQUEST, ErrorCode.BAD_KEY, str(exc))


Key = Annotated[str, Depends(stream_key)]

router = APIRouter()


def existing_session(context: ServiceContext, key: str) -> Session:
    """The session of `key`, or 404 saying how sessions come to exist."""
    try:
        return context.registry.require(key)
    except UnknownSessionError as exc:
        api_error(context, status.HTTP_404_NOT_FOUND, ErrorCode.UNKNOWN_SESSION,
                  f"{exc}; sessions are created by the first chunk on /ws/{key}/..., "
                  f"PUT /streams/{key} or PUT /streams/{key}/weights")  # fmt: skip


def new_or_existing_session(
    context: ServiceContext, key: str, settings: LRRSettings | None = None
) -> tuple[Session, bool]:
    """(session, created), or 429 when the session limit refuses a new one."""
    try:
        return context.registry.get_or_create(key, settings)
    except SessionLimitError as exc:
        api_error(context, status.HTTP_429_TOO_MANY_REQUESTS, ErrorCode.TOO_MANY_SESSIONS, str(exc))


async def persist(context: ServiceContext, session: Session, reason: str) -> None:
    """Checkpoint before answering; 500 saying the change is live but not yet durable if the write fails."""
    try:
        await context.checkpointer.checkpoint(session, reason)
    except Exception as exc:
        api_error(context, status.HTTP_500_INTERNAL_SERVER_ERROR, ErrorCode.CHECKPOINT_FAILED,
                  f"the change is applied but could not be written to disk ({exc}); "
                  "it will be retried with the next periodic checkpoint")  # fmt: skip


# -- health ----------------------------------------------------------------------------------


@router.get("/health", tags=["health"])
async def health() -> dict[str, str]:
    """Liveness: the process answers. Never needs a token (the gate lets it through untouched)."""
    return {"status": "ok"}


@router.get("/ready", tags=["health"], responses={503: {"description": "starting or shutting down"}})
async def ready(context: Context) -> JSONResponse:
    """Readiness: sessions are restored and the server is not shutting down."""
    body = {"status": "ready" if context.ready else "unavailable", "sessions": len(context.registry)}
    return JSONResponse(body, status_code=200 if context.ready else 503)


@router.get("/metrics", tags=["health"], response_class=Response)
async def metrics(context: Context) -> Response:
    """Prometheus text exposition of this server's metrics (the registry keeps the sessions gauge current)."""
    return Response(context.metrics.render(), media_type=PROMETHEUS_CONTENT_TYPE)


# -- sessions --------------------------------------------------------------------------------


@router.get("/streams", tags=["streams"])
async def list_streams(context: Context) -> dict[str, Any]:
    """Every session, in key order, with its channel count, samples and weights state."""
    sessions = context.registry.all()
    return {"streams": [s.summary() for s in sessions], "count": len(sessions),
            "max_sessions": context.settings.max_sessions}  # fmt: skip


@router.get("/streams/{key}", tags=["streams"])
async def get_stream(key: Key, context: Context) -> dict[str, Any]:
    """Settings, channel count, samples, weights version and source, and counters of one session."""
    return existing_session(context, key).describe()


@router.put("/streams/{key}", tags=["streams"], responses={201: {"description": "session created"}})
async def put_stream(key: Key, body: SessionSettingsBody, context: Context, response: Response) -> dict[str, Any]:
    """Create the session or replace its settings (omitted fields: server defaults).

    New settings start the session over (statistics and weights cleared); the same settings change nothing.
    """
    try:
        settings = body.to_settings(context.settings.session_default_dict(), context.settings.max_channels)
    except SettingsError as exc:
        context.metrics.errors.labels(ErrorCode.BAD_SETTINGS).inc()
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=settings_field_errors(str(exc))) from None
    existing = context.registry.get(key)
    if existing is not None and existing.engine.settings == settings:
        return existing.describe() | {"changed": False}
    if existing is None:
        session, _ = new_or_existing_session(context, key, settings)
        response.status_code = status.HTTP_201_CREATED
    else:
        session = existing
        async with session.engine_lock:
            context.registry.replace_settings(session, settings)
    await persist(context, session, "settings_changed")
    return session.describe() | {"changed": True}


def settings_field_errors(message: str) -> list[dict[str, Any]]:
    """A SettingsError as FastAPI-style field errors, naming the setting the message is about."""
    fields = SessionSettingsBody.model_fields
    named = [name for name in fields if name in message]
    field = min(named, key=message.index) if named else "body"
    return [{"loc": ["body", field], "msg": message, "type": "value_error"}]


@router.delete("/streams/{key}", tags=["streams"], status_code=status.HTTP_204_NO_CONTENT)
async def delete_stream(key: Key, context: Context) -> Response:
    """Delete the session's checkpoint, then forget the session; open connections start a new session on
    their next chunk. If the file cannot be deleted, the session stays as it was (500)."""
    session = existing_session(context, key)
    try:
        await context.checkpointer.delete(session)
    except OSError as exc:
        api_error(context, status.HTTP_500_INTERNAL_SERVER_ERROR, ErrorCode.CHECKPOINT_FAILED,
                  f"session {key!r} was not deleted: its checkpoint file could not be removed ({exc}); nothing "
                  "changed: make the state dir (LRR_STATE_DIR) writable and retry")  # fmt: skip
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/streams/{key}/reset", tags=["streams"])
async def reset_stream(key: Key, context: Context) -> dict[str, Any]:
    """Clear statistics, weights and channel count; keep the settings."""
    session = existing_session(context, key)
    async with session.engine_lock:
        context.registry.reset(session, "rest")
    await persist(context, session, "reset")
    return session.describe()


@router.post("/streams/{key}/solve", tags=["weights"])
async def solve_stream(key: Key, context: Context) -> dict[str, Any]:
    """Solve on every fit chunk accepted so far and apply the weights (replacing uploaded ones)."""
    session = existing_session(context, key)
    replaced = session.engine.weights_source == "uploaded"
    outcome = await context.scheduler.solve_now(session)
    if outcome.reason == "no_data":
        api_error(context, status.HTTP_409_CONFLICT, ErrorCode.NO_FIT_DATA,
                  f"no fit data accepted since the last reset; send chunks to /ws/{key}/fit first")  # fmt: skip
    if outcome.reason == "stale":
        api_error(context, status.HTTP_409_CONFLICT, ErrorCode.CHANGED_DURING_SOLVE,
                  "the session was reset or given new settings or weights during the solve; retry")  # fmt: skip
    if not outcome.installed:
        api_error(context, status.HTTP_500_INTERNAL_SERVER_ERROR, ErrorCode.SOLVE_FAILED,
                  "the solve failed; the previous weights stay in use (see the server log)")  # fmt: skip
    await persist(context, session, "solve_requested")
    engine = session.engine
    return {"key": key, "weights_version": engine.weights_version, "n_samples": engine.n_samples,
            "n_samples_solved": engine.n_samples_solved, "weights_source": engine.weights_source,
            "replaced_uploaded": replaced, "seconds": outcome.seconds}  # fmt: skip


# -- weights -----------------------------------------------------------------------------------


@router.get("/streams/{key}/weights", tags=["weights"], response_class=Response,
            responses={200: {"content": {"text/csv": {}}}})  # fmt: skip
async def get_weights(key: Key, context: Context) -> Response:
    """W as CSV (np.loadtxt-compatible); uploading it back gives bit-identical weights."""
    engine = existing_session(context, key).engine
    weights = engine.weights
    if weights is None:
        api_error(context, status.HTTP_404_NOT_FOUND, ErrorCode.NO_WEIGHTS,
                  f"session {key!r} has no weights yet (identity); fit it or upload weights first")  # fmt: skip
    filename = f"{key}-weights-v{engine.weights_version}.csv"
    try:
        pieces = await context.csv.format(weights)  # a second at 1024 channels: out of the server process
    except CsvWorkerLost as exc:
        api_error(context, status.HTTP_503_SERVICE_UNAVAILABLE, ErrorCode.CSV_WORKER_LOST, str(exc))
    headers = {"Content-Disposition": f'attachment; filename="{filename}"',
               "Content-Length": str(sum(map(len, pieces)))}  # fmt: skip
    return StreamingResponse(_each(pieces), media_type="text/csv", headers=headers)


async def _each(pieces: list[bytes]) -> AsyncIterator[bytes]:
    """The pieces one by one, letting other tasks run between them: a 20 MB text is neither joined
    (one copy, GIL held) nor written in one go (writes return at once while the socket takes them)."""
    for piece in pieces:
        yield piece
        await asyncio.sleep(0)


async def read_weights_upload(request: Request, context: ServiceContext) -> np.ndarray:
    """Read and parse an uploaded weights CSV (parsed in the CSV process; large uploads one at a time).

    Raises the 400/413/422 HTTP errors of the upload table in docs/service.md.
    """
    slot = context.upload_slot if is_large_upload(request) else contextlib.nullcontext()
    async with slot:
        try:
            pieces = await read_csv_upload(request, context.settings.csv_limit_bytes())
        except UploadError as exc:
            api_error(context, exc.status_code, exc.code, str(exc))
        try:
            return await context.csv.parse(pieces, context.settings.max_channels)
        except WeightsCsvError as exc:
            api_error(context, status.HTTP_422_UNPROCESSABLE_ENTITY, ErrorCode.BAD_CSV, str(exc),
                      row=exc.row, column=exc.column)  # fmt: skip
        except CsvWorkerLost as exc:
            api_error(context, status.HTTP_503_SERVICE_UNAVAILABLE, ErrorCode.CSV_WORKER_LOST, str(exc))


@router.put("/streams/{key}/weights", tags=["weights"])
async def put_weights(
    key: Key,
    request: Request,
    context: Context,
    replace: Annotated[bool, Query(description="Reset a session bound to another channel count.")] = False,
) -> dict[str, Any]:
    """Upload W as CSV (`text/csv` body or multipart field `file`); pinned and durable before the reply."""
    weights = await read_weights_upload(request, context)
    session, created = new_or_existing_session(context, key)
    bound = session.engine.n_channels  # re-checked by the engine under the lock (ChannelCountError)
    n = weights.shape[0]
    if bound is not None and bound != n and not replace:
        api_error(context, status.HTTP_409_CONFLICT, ErrorCode.SIZE_MISMATCH,
                  f"the weights are {n}x{n} but session {key!r} has {bound} channels; upload a {bound}x{bound} "
                  f"matrix, or add ?replace=true to reset the session to {n} channels",
                  n_channels=bound, got=n)  # fmt: skip
    try:
        async with session.engine_lock:
            if session.engine.n_channels != n:
                context.registry.check_capacity(key, n)
            # both copy and check n² values: milliseconds at 1024 channels, off the loop
            await context.lane.run(context.registry.load_weights, session, weights, replace)
            await context.lane.run(prepare_transforms, session.engine)
    except (ChannelCountError, WeightsError, SettingsError, CapacityError) as exc:
        if created:
            context.registry.discard_if_unused(session)
        if isinstance(exc, CapacityError):
            api_error(context, status.HTTP_507_INSUFFICIENT_STORAGE, ErrorCode.OVER_CAPACITY, str(exc))
        api_error(context, status.HTTP_422_UNPROCESSABLE_ENTITY, ErrorCode.BAD_WEIGHTS, str(exc))
    await persist(context, session, "weights_uploaded")
    return session.describe()
