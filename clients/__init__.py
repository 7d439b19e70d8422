"""Clients of lrr-service: the async `LRRClient`, the blocking `LRRClientSync`, REST helpers, typed errors."""

from lrr_service.clients.backoff import ReconnectPolicy
from lrr_service.clients.client import LRRClient
from lrr_service.clients.errors import (
    ConnectionLost,
    IdentityTransformError,
    LRRClientError,
    ProtocolError,
    ServerError,
)
from lrr_service.clients.rest import AsyncRestClient
from lrr_service.clients.sync import LRRClientSync

__all__ = [
    "AsyncRestClient",
    "ConnectionLost",
    "IdentityTransformError",
    "LRRClient",
    "LRRClientError",
    "LRRClientSync",
    "ProtocolError",
    "ReconnectPolicy",
    "ServerError",
]
