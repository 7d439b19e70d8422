"""Clients of lrr-service: the async `LRRClient`, the blocking `LRRClientSync`, REST helpers, typed errors."""

from clients.backoff import ReconnectPolicy
from clients.client import LRRClient
from clients.errors import ConnectionLost, LRRClientError, ProtocolError, ServerError
from clients.rest import AsyncRestClient
from clients.sync import LRRClientSync

__all__ = ["AsyncRestClient", "ConnectionLost", "LRRClient", "LRRClientError", "LRRClientSync", "ProtocolError",
           "ReconnectPolicy", "ServerError"]
