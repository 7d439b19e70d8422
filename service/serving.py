"""The app served by uvicorn as `serve` runs it: `service_server(settings)`.

Apart from the command line (service/__main__.py) so that what does not serve (`--help`, the cluster's
launcher, which only starts processes) imports neither uvicorn nor the app. The tests' in-process server
(tests/in_process.py) serves through it too, so it runs with the command's configuration.
"""

from __future__ import annotations

from typing import Any

import uvicorn

from lrr_service.service.app import create_app
from lrr_service.service.config import ServiceSettings
from lrr_service.service.context import ServiceContext
from lrr_service.service.http_protocol import guarded_http_protocol


def uvicorn_config(app: Any, settings: ServiceSettings) -> uvicorn.Config:
    """How the service is served: the settings' address and limits, the guarded HTTP protocol, the websockets
    library, no access log (the app logs what matters)."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="auto",
        http=guarded_http_protocol(settings.client_timeout_seconds),  # httptools, with a deadline on request heads
        ws="websockets-sansio",  # the websockets library, Sans-I/O; uvicorn deprecates its legacy "websockets"
        ws_max_size=settings.max_frame_bytes,
        ws_per_message_deflate=False,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
        # no limit_concurrency: it counts idle connections too, so they could make /health answer 503;
        # websocket streams (LRR_MAX_CONNECTIONS) and HTTP requests (LRR_MAX_HTTP_REQUESTS) are limited by the app
    )


class ServiceServer(uvicorn.Server):
    """uvicorn's server that marks the app's context as stopping the moment it is asked to exit (a signal, or
    `should_exit` set by whoever runs it), so long responses such as GET /events end at once instead of holding
    the graceful shutdown up (service/events.py)."""

    def __init__(self, config: uvicorn.Config, context: ServiceContext) -> None:
        self._context = context
        super().__init__(config)

    @property
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._should_exit = value
        if value:
            self._context.stopping = True


def service_server(settings: ServiceSettings) -> ServiceServer:
    """The app of `settings` served by uvicorn as configured by `uvicorn_config`."""
    app = create_app(settings)
    return ServiceServer(uvicorn_config(app, settings), app.state.context)
