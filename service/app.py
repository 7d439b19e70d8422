"""create_app(settings): the FastAPI application with its lifespan (restore, periodic checkpoints, final checkpoint)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from threadpoolctl import threadpool_limits

from lrr_service.service.api_docs import install_api_docs
from lrr_service.service.auth import TokenChecker
from lrr_service.service.capacity import checkpoint_file_limit
from lrr_service.service.checkpoints import Checkpointer
from lrr_service.service.config import ServiceSettings
from lrr_service.service.context import ServiceContext
from lrr_service.service.errors import CapacityError, SessionLimitError, install_error_handlers
from lrr_service.service.gate import HEALTH_PATH, Gate
from lrr_service.service.lane import StatisticsLane, lower_thread_priority
from lrr_service.service.logs import log_event
from lrr_service.service.metrics import ServiceMetrics
from lrr_service.service.persistence import CheckpointStore, SetAside
from lrr_service.service.registry import SessionRegistry
from lrr_service.service.rest import router
from lrr_service.service.solver import SolveScheduler
from lrr_service.service.ui import router as ui_router
from lrr_service.service.ws import router as ws_router

if TYPE_CHECKING:
    from lrr_service.service.cluster import ClusterWriter

SOLVE_DRAIN_SECONDS = 10.0


def create_app(settings: ServiceSettings) -> FastAPI:
    """Build an independent app (own sessions, metrics registry and solve thread) from `settings`."""
    metrics = ServiceMetrics()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lrr-solve", initializer=lower_thread_priority)
    lane = StatisticsLane()
    scheduler = SolveScheduler(settings.solve_every_samples, settings.solve_min_interval_seconds)
    registry = SessionRegistry(
        settings.session_defaults(), settings.max_sessions, metrics, lane, executor, scheduler, settings.max_state_bytes
    )
    store = CheckpointStore(settings.state_dir, checkpoint_file_limit(settings.max_channels))
    cluster = None
    writer: CheckpointStore | ClusterWriter = store
    if settings.store_url:
        from lrr_service.service.cluster import Cluster, ClusterWriter  # Redis's client: a cluster's workers only

        cluster = Cluster(
            settings.store_url,
            settings.own_url(),
            settings.lease_seconds,
            registry,
            settings.max_channels,
            checkpoint_file_limit(settings.max_channels),
        )
        writer = ClusterWriter(cluster.store, cluster.ownership)
    context = ServiceContext(
        settings=settings,
        metrics=metrics,
        registry=registry,
        scheduler=scheduler,
        checkpointer=Checkpointer(writer, registry, metrics),
        lane=lane,
        auth=TokenChecker(settings.token()),
        cluster=cluster,
    )
    if cluster is not None:
        cluster.checkpointer = context.checkpointer

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        blas = threadpool_limits(limits=settings.blas_threads)
        if cluster is None:
            await restore_sessions(context, store)  # a cluster worker restores each key when it is asked for it
        renewals = asyncio.create_task(cluster.ownership.run()) if cluster is not None else None
        periodic = asyncio.create_task(context.checkpointer.run_periodically(settings.checkpoint_seconds))
        context.ready = True
        log_event(
            "service_started",
            state_dir=str(settings.state_dir),
            store=_redacted(settings.store_url),
            sessions=len(registry),
            auth=context.auth.enabled,
            max_frame_bytes=settings.max_frame_bytes,
        )
        try:
            yield
        finally:
            context.ready = False
            periodic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await periodic
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(context.scheduler.drain(), SOLVE_DRAIN_SECONDS)
            written = await context.checkpointer.checkpoint_dirty("shutdown")  # unchanged files are current
            if cluster is not None and renewals is not None:
                renewals.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewals
                await cluster.close()  # leases released: the keys' next owners need not wait for them to expire
            executor.shutdown(wait=False, cancel_futures=True)
            await context.csv.close()
            context.checkpointer.shutdown()
            lane.shutdown()
            blas.restore_original_limits()
            log_event("service_stopped", sessions=len(registry), checkpointed=written)

    app = FastAPI(
        title="lrr-service",
        summary="Real-time Linear Regression Rereferencing over websockets",
        version=metadata.version("lrr-service"),
        lifespan=lifespan,
        docs_url=None,  # served by install_api_docs, from assets of the service's own (no CDN)
        redoc_url=None,
    )
    app.state.context = context
    install_error_handlers(app, metrics)
    app.add_middleware(Gate, context=context)
    app.include_router(router)
    app.include_router(ws_router)
    app.include_router(ui_router)
    install_api_docs(app, token_required=context.auth.enabled, open_paths=[HEALTH_PATH])
    return app


async def restore_sessions(context: ServiceContext, store: CheckpointStore) -> None:
    """Load every checkpoint; files that cannot be restored are logged and set aside, never fatal.

    A state dir that cannot be created is logged too: the server then serves from memory, and
    every checkpoint fails (logged, and REST changes answer `checkpoint_failed`) until it can.
    """
    try:
        kept = await asyncio.to_thread(store.ensure_dir)
    except OSError as exc:
        log_event("state_dir_unusable", logging.ERROR, state_dir=str(store.state_dir), error=str(exc))
        return
    for stale, error in kept:
        log_event("stale_temp_kept", logging.WARNING, file=str(stale), error=error)
    report = await asyncio.to_thread(store.load_all)
    for item in report.set_aside:
        _log_set_aside(item)
    for record in report.records:
        try:
            context.registry.restore(record, context.settings.max_channels)
        except (SessionLimitError, CapacityError) as exc:  # the file stays for a server with higher limits
            log_event("checkpoint_skipped", logging.WARNING, key=record.key, reason=str(exc))
        except Exception as exc:  # SnapshotError, but any failure of one file must not stop the server
            reason = f"{type(exc).__name__}: {exc}"
            _log_set_aside(await asyncio.to_thread(store.set_aside, store.path_for(record.key), reason), record.key)


def _log_set_aside(item: SetAside, key: str | None = None) -> None:
    """`checkpoint_corrupt`: a file that was not restored, where it went (null: it stayed) and why."""
    moved_to = str(item.moved_to) if item.moved_to is not None else None
    fields: dict[str, Any] = {"key": key} if key is not None else {}
    log_event("checkpoint_corrupt", logging.ERROR, file=str(item.path), moved_to=moved_to, reason=item.reason, **fields)


def _redacted(url: str | None) -> str | None:
    """A store URL without its password, for the log."""
    if url is None:
        return None
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}" if "@" in rest else url
