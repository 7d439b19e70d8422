"""One TLS context per process, shared by every HTTP client the clients make.

httpx builds a new SSL context for each client it makes, loading the whole CA bundle: about 50 ms of
CPU each time. In an asyncio program that blocks the loop (every stream waits), and a loop polling
a server that is starting spends most of its time there. The context is built once, on first use,
as httpx builds it (certifi, or SSL_CERT_FILE / SSL_CERT_DIR when set), and an SSLContext may be
shared by clients and threads.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    """httpx's default verifying context, built on the first call and the same object afterwards."""
    return httpx.create_ssl_context()
