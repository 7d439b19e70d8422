"""REST routes: health, readiness, sessions, their live status and quality, events, weights as CSV, solves, metrics.

Handlers are thin: validate, call the registry / scheduler / checkpointer, answer. Errors are
`{"detail": {"code", "message", ...}}` (pydantic body errors keep FastAPI's 422 field list).
Host, origin, token and body limits are checked before any of this runs (service/gate.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import JSONResponse, StreamingResponse

from lrr_service.core.errors import WeightsError
from lrr_service.core.vocabulary import ErrorCode
from lrr_service.core.weights_form import WeightsForm, weights_from_upload
from lrr_service.service.context import ServiceContext, get_context
from lrr_service.service.errors import ServiceError
from lrr_service.service.events import EventStreamResponse, open_event_stream
from lrr_service.service.keys import validate_key
from lrr_service.service.metrics import PROMETHEUS_CONTENT_TYPE
from lrr_service.service.schemas import ChannelsBody, SessionSettingsBody
from lrr_service.service.session import Session
from lrr_service.service.uploads import is_large_upload, read_csv_upload

Context = Annotated[ServiceContext, Depends(get_context)]


async def stream_key(key: str) -> str:
    """Dependency: the path's stream key, validated (400 `bad_key` otherwise)."""
    return validate_key(key)


Key = Annotated[str, Depends(stream_key)]

router = APIRouter()


async def existing_session(key: Key, context: Context) -> Session:
    """Dependency: the session of the path's key (404 `unknown_session` saying how sessions come to exist)."""
    return context.registry.require(key)


Existing = Annotated[Session, Depends(existing_session)]


async def persist(context: ServiceContext, session: Session, reason: str) -> None:
    """Checkpoint before answering (500 `checkpoint_failed`: the change is live but not yet durable)."""
    await context.checkpointer.checkpoint(session, reason)


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
    """Every session, in key order, with its channel count, samples, weights state and live `status`.

    In a cluster: every session in the store, as of its last checkpoint, with its `owner`; those this
    worker holds are shown live, the others with `status` null."""
    return await streams_body(context)


@router.get(
    "/events",
    tags=["streams"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "`streams` events, about one a second"}},
)
async def events(context: Context) -> EventStreamResponse:
    """Server-sent events (text/event-stream): `event: streams` about once a second, its `data` the JSON of
    GET /streams on one line. At most a quarter of LRR_MAX_HTTP_REQUESTS streams at once (503 beyond); each
    ends when the client leaves or the server shuts down."""
    return open_event_stream(context, lambda: streams_body(context))


async def streams_body(context: ServiceContext) -> dict[str, Any]:
    """The body of GET /streams (and of each `streams` event)."""
    summaries = {s.key: s.summary() for s in context.registry.all()}
    if context.cluster is not None:
        own_url = context.settings.own_url()
        stored = {k: v | {"status": None} for k, v in (await context.cluster.stored_sessions()).items()}
        summaries = stored | {k: v | {"owner": own_url} for k, v in summaries.items()}
    return {
        "streams": [summaries[key] for key in sorted(summaries)],
        "count": len(summaries),
        "max_sessions": context.settings.max_sessions,
        "cluster": context.cluster is not None,
    }


@router.get("/streams/{key}/owner", tags=["streams"])
async def stream_owner(key: Key, context: Context) -> dict[str, Any]:
    """The server that serves the key's streams: in a cluster, the owning worker's own URL (a request through
    the proxy makes its ring's worker the owner; a worker that does not own the key answers 421 `not_owner`
    naming the owner); on a single server, `cluster` is false and clients keep the URL they used."""
    return {"key": key, "owner": context.settings.own_url(), "cluster": context.cluster is not None}


@router.get("/streams/{key}", tags=["streams"])
async def get_stream(session: Existing) -> dict[str, Any]:
    """Settings, channel count, samples, weights version and source, counters and live `status` of one session."""
    return session.describe()


@router.get("/streams/{key}/quality", tags=["streams"])
async def get_quality(session: Existing) -> dict[str, Any]:
    """What the rereferencing takes out: per channel, per group and overall, the mean power of the transform
    input and output over the quality window (LRR_QUALITY_WINDOW_SECONDS) and its reduction in dB,
    10 log10(P_in / P_out); null where nothing was measured yet or the value is not finite."""
    return session.quality()


@router.put("/streams/{key}", tags=["streams"], responses={201: {"description": "session created"}})
async def put_stream(key: Key, body: SessionSettingsBody, context: Context, response: Response) -> dict[str, Any]:
    """Create the session or replace its settings (omitted fields: server defaults).

    New settings start the session over (statistics and weights cleared); the same settings change nothing.
    """
    settings = body.to_settings(context.settings.session_default_dict(), context.settings.max_channels)
    session, created = context.registry.get_or_create(key, settings)
    changed = created or await session.configure(settings)
    if created:
        response.status_code = status.HTTP_201_CREATED
    if changed:
        await persist(context, session, "settings_changed")
    return session.describe() | {"changed": changed}


@router.delete("/streams/{key}", tags=["streams"], status_code=status.HTTP_204_NO_CONTENT)
async def delete_stream(session: Existing, context: Context) -> Response:
    """Delete the session's checkpoint, then forget the session; open connections start a new session on
    their next chunk. If the file cannot be deleted, the session stays as it was (500)."""
    await context.checkpointer.delete(session)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/streams/{key}/reset", tags=["streams"])
async def reset_stream(session: Existing, context: Context) -> dict[str, Any]:
    """Clear statistics, weights and channel count; keep the settings."""
    await session.reset("rest")
    await persist(context, session, "reset")
    return session.describe()


@router.post("/streams/{key}/solve", tags=["weights"])
async def solve_stream(session: Existing, context: Context) -> dict[str, Any]:
    """Solve on every fit chunk accepted so far and apply the weights (replacing uploaded ones)."""
    replaced = session.engine.weights_source == "uploaded"
    outcome = await session.solve(requested=True)
    if outcome.reason == "no_data":
        raise ServiceError(
            f"no fit data accepted since the last reset; send chunks to /ws/{session.key}/fit first",
            code=ErrorCode.NO_FIT_DATA,
        )
    if outcome.reason == "stale":
        raise ServiceError(
            "the session was reset or given new settings or weights during the solve; retry",
            code=ErrorCode.CHANGED_DURING_SOLVE,
        )
    if not outcome.installed:
        raise ServiceError(
            "the solve failed; the previous weights stay in use (see the server log)", code=ErrorCode.SOLVE_FAILED
        )
    await persist(context, session, "solve_requested")
    engine = session.engine
    return {
        "key": session.key,
        "weights_version": engine.weights_version,
        "n_samples": engine.n_samples,
        "n_samples_solved": engine.n_samples_solved,
        "weights_source": engine.weights_source,
        "replaced_uploaded": replaced,
        "seconds": outcome.seconds,
    }


# -- channels ----------------------------------------------------------------------------------


@router.get("/streams/{key}/channels", tags=["channels"])
async def get_channels(session: Existing) -> dict[str, Any]:
    """The session's channel description (null if it has none) and the groups resolved from it."""
    engine = session.engine
    channels, grouping = engine.channels, engine.grouping
    return {
        "key": session.key,
        "channels": channels.to_dict() if channels is not None else None,
        "groups": [g.tolist() for g in grouping.groups] if grouping is not None else None,
        "grouping": grouping.describe() if grouping is not None else None,
    }


@router.put("/streams/{key}/channels", tags=["channels"])
async def put_channels(key: Key, body: ChannelsBody, context: Context) -> dict[str, Any]:
    """Describe the session's channels (created if need be): labels and per-channel fields that `channel_groups`
    may name. If the groups change, fitted weights are solved again from the statistics before the reply;
    `regrouped` says what happened. A description of another channel count than the session's: 409."""
    channels = body.to_description(context.settings.max_channels)
    with context.registry.session_for_change(key) as session:
        regrouped = await session.describe_channels(channels)
    await persist(context, session, "channels_described")
    return session.describe() | {"regrouped": regrouped}


@router.delete("/streams/{key}/channels", tags=["channels"])
async def delete_channels(session: Existing, context: Context) -> dict[str, Any]:
    """Remove the description: groups named by a field fall back to block_size, then one group."""
    regrouped = await session.describe_channels(None)
    await persist(context, session, "channels_removed")
    return session.describe() | {"regrouped": regrouped}


# -- weights -----------------------------------------------------------------------------------


@router.get(
    "/streams/{key}/weights", tags=["weights"], response_class=Response, responses={200: {"content": {"text/csv": {}}}}
)
async def get_weights(session: Existing, context: Context) -> Response:
    """W as CSV (np.loadtxt-compatible); uploading it back gives bit-identical weights."""
    engine = session.engine
    weights = engine.weights
    if weights is None:
        raise ServiceError(
            f"session {session.key!r} has no weights yet (identity); fit it or upload weights first",
            code=ErrorCode.NO_WEIGHTS,
        )
    filename = f"{session.key}-weights-v{engine.weights_version}.csv"
    pieces = await context.csv.format(weights)  # a second at 1024 channels: out of the server process
    headers = {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Content-Length": str(sum(map(len, pieces))),
    }
    return StreamingResponse(_each(pieces), media_type="text/csv", headers=headers)


async def _each(pieces: list[bytes]) -> AsyncIterator[bytes]:
    """The pieces one by one, letting other tasks run between them: a 20 MB text is neither joined
    (one copy, GIL held) nor written in one go (writes return at once while the socket takes them)."""
    for piece in pieces:
        yield piece
        await asyncio.sleep(0)


async def read_weights_upload(request: Request, context: ServiceContext, form: WeightsForm) -> np.ndarray:
    """W from an uploaded weights CSV holding `form` (parsed in the CSV worker, I - M taken in the lane;
    large uploads one at a time). Raises the refusals of the upload table in docs/service.md, among them
    `bad_weights` for a diagonal that is not zero (nothing in any session changed yet).
    """
    slot = context.upload_slot if is_large_upload(request) else contextlib.nullcontext()
    async with slot:
        pieces = await read_csv_upload(request, context.settings.csv_limit_bytes())
        matrix = await context.csv.parse(pieces, context.settings.max_channels)
        try:  # I - M is n² values: milliseconds at 1024 channels, off the loop
            return await context.lane.run(weights_from_upload, matrix, form)
        except WeightsError as exc:
            raise ServiceError(str(exc), code=ErrorCode.BAD_WEIGHTS) from None


@router.put("/streams/{key}/weights", tags=["weights"])
async def put_weights(
    key: Key,
    request: Request,
    context: Context,
    replace: Annotated[bool, Query(description="Reset a session bound to another channel count.")] = False,
    form: Annotated[
        WeightsForm,
        Query(
            description="What the CSV holds: `w`, W itself (zero diagonal); `i_minus_w`, the rereferencing "
            "matrix M = I - W (ones on its diagonal), from which W = I - M is stored."
        ),
    ] = "w",
) -> dict[str, Any]:
    """Upload W, or I - W with `?form=i_minus_w`, as CSV (`text/csv` body or multipart field `file`); W's
    diagonal must be zero (|W[i, i]| <= 1e-12). Pinned and durable before the reply."""
    weights = await read_weights_upload(request, context, form)
    with context.registry.session_for_change(key) as session:
        await session.load_weights(weights, replace)
    await persist(context, session, "weights_uploaded")
    return session.describe()
