"""ServiceContext: the objects one app instance shares between its routes, injected as a dependency."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from lrr_service.service.auth import TokenChecker
from lrr_service.service.checkpoints import Checkpointer
from lrr_service.service.config import ServiceSettings
from lrr_service.service.csv_process import CsvProcess
from lrr_service.service.events import SharedBody
from lrr_service.service.lane import StatisticsLane
from lrr_service.service.metrics import ServiceMetrics
from lrr_service.service.registry import SessionRegistry
from lrr_service.service.solver import SolveScheduler

if TYPE_CHECKING:  # imported by a cluster's workers only: it brings Redis's client
    from lrr_service.service.cluster import Cluster


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
    stopping: bool = False
    """Set when the server begins to shut down, before uvicorn waits for open responses (by ServiceServer in
    service/serving.py): event streams end on it (service/events.py)."""
    event_streams: int = 0
    """GET /events responses open now, bounded by `max_event_streams` (service/events.py)."""
    streams_feed: SharedBody | None = None
    """The GET /streams body shared by every open event stream (service/events.py), made by the first."""

    def __post_init__(self) -> None:
        self.registry.set_quality(self.settings.quality_window_seconds, self.settings.quality_every)

    @property
    def max_event_streams(self) -> int:
        """Most GET /events streams at once: a quarter of LRR_MAX_HTTP_REQUESTS (at least 1), since each holds one
        of those slots for as long as it is open, and REST must keep the rest."""
        return max(1, self.settings.max_http_requests // 4)


async def get_context(connection: HTTPConnection) -> ServiceContext:
    """FastAPI dependency: the context of the app serving this request or websocket.

    `async` like every dependency here: FastAPI runs a plain `def` dependency in its thread pool,
    a thread hop per dependency per request that costs the event loop more than the function does."""
    context: ServiceContext = connection.app.state.context
    return context
