"""ServiceContext: the objects one app instance shares between its routes, injected as a dependency."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from lrr_service.service.auth import TokenChecker
from lrr_service.service.checkpoints import Checkpointer
from lrr_service.service.cluster import Cluster
from lrr_service.service.config import ServiceSettings
from lrr_service.service.csv_process import CsvProcess
from lrr_service.service.lane import StatisticsLane
from lrr_service.service.metrics import ServiceMetrics
from lrr_service.service.registry import SessionRegistry
from lrr_service.service.solver import SolveScheduler


@dataclass
class ServiceContext:
    """Everything a route needs; one per app, so tests can run several apps side by side."""

    settings: ServiceSettings
    metrics: ServiceMetrics
    registry: SessionRegistry
    scheduler: SolveScheduler
    checkpointer: Checkpointer
    lane: StatisticsLane
    auth: TokenChecker
    cluster: Cluster | None = None
    """With LRR_STORE_URL: this worker's leases and the shared store (service/cluster.py); None: one process."""
    csv: CsvProcess = field(default_factory=CsvProcess)
    """Parses and formats weights CSV outside the server process (service/csv_process.py)."""
    ready: bool = False
    open_streams: int = 0
    """Websocket streams open now, bounded by LRR_MAX_CONNECTIONS (service/ws.py)."""
    upload_slot: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
    """Held while a large weights upload is read and parsed, so concurrent uploads cannot pile up in memory."""


async def get_context(connection: HTTPConnection) -> ServiceContext:
    """FastAPI dependency: the context of the app serving this request or websocket.

    `async` like every dependency here: FastAPI runs a plain `def` dependency in its thread pool,
    a thread hop per dependency per request that costs the event loop more than the function does."""
    context: ServiceContext = connection.app.state.context
    return context
