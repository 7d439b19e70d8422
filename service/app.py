"""create_app(settings): the FastAPI application with its lifespan (restore, periodic checkpoints, final checkpoint)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI
from threadpoolctl import threadpool_limits

from service.apidocs import router as docs_router
from service.auth import TokenChecker
from service.capacity import CapacityError
from service.checkpoints import Checkpointer
from service.config import ServiceSettings
from service.context import ServiceContext
from service.lane import StatisticsLane, lower_thread_priority
from service.logs import log_event
from service.metrics import ServiceMetrics
from service.persistence import CheckpointStore
from service.rest import public, router
from service.sessions import SessionLimitError, SessionRegistry
from service.solver import SolveScheduler
from service.ws import router as ws_router

SOLVE_DRAIN_SECONDS = 10.0


def create_app(settings: ServiceSettings) -> FastAPI:
    """Build an independent app (own sessions, metrics registry and solve thread) from `settings`."""
    metrics = ServiceMetrics()
    registry = SessionRegistry(settings.session_defaults(), settings.max_sessions, metrics, settings.max_state_bytes)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lrr-solve", initializer=lower_thread_priority)
    lane = StatisticsLane()
    store = CheckpointStore(settings.state_dir)
    context = ServiceContext(
        settings=settings,
        metrics=metrics,
        registry=registry,
        scheduler=SolveScheduler(
            executor, lane, metrics, settings.solve_every_samples, settings.solve_min_interval_seconds
        ),
        checkpointer=Checkpointer(store, registry, lane, metrics),
        lane=lane,
        auth=TokenChecker(settings.token()),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        blas = threadpool_limits(limits=settings.blas_threads)
        await restore_sessions(context, store)
        periodic = asyncio.create_task(context.checkpointer.run_periodically(settings.checkpoint_seconds))
        context.ready = True
        log_event("service_started", state_dir=str(settings.state_dir), sessions=len(registry),
                  auth=context.auth.enabled, max_frame_bytes=settings.max_frame_bytes)  # fmt: skip
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
            executor.shutdown(wait=False, cancel_futures=True)
            lane.shutdown()
            blas.restore_original_limits()
            log_event("service_stopped", sessions=len(registry), checkpointed=written)

    app = FastAPI(
        title="lrr-service",
        summary="Real-time Linear Regression Rereferencing over websockets",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served behind the token by service/apidocs.py
        redoc_url=None,
        openapi_url=None,
    )
    app.state.context = context
    app.include_router(public)
    app.include_router(router)
    app.include_router(docs_router)
    app.include_router(ws_router)
    return app


async def restore_sessions(context: ServiceContext, store: CheckpointStore) -> None:
    """Load every checkpoint; unreadable or inconsistent files are logged and moved aside, never fatal."""
    await asyncio.to_thread(store.ensure_dir)
    report = await asyncio.to_thread(store.load_all)
    for path, reason in report.moved_aside:
        log_event("checkpoint_corrupt", logging.ERROR, moved_to=str(path), reason=reason)
    for record in report.records:
        try:
            context.registry.restore(record, context.settings.max_channels)
        except (SessionLimitError, CapacityError) as exc:  # the file stays for a server with higher limits
            log_event("checkpoint_skipped", logging.WARNING, key=record.key, reason=str(exc))
        except Exception as exc:  # SnapshotError, but any failure of one file must not stop the server
            moved = await asyncio.to_thread(store.move_aside, store.path_for(record.key))
            log_event("checkpoint_corrupt", logging.ERROR, key=record.key, moved_to=str(moved),
                      reason=f"{type(exc).__name__}: {exc}")  # fmt: skip
