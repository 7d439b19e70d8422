"""Every HTTP client the clients make shares one TLS context (clients/tls.py): building one loads the CA
bundle, about 50 ms of CPU, which would block an asyncio program's loop each time a client is made."""

from __future__ import annotations

import ssl

import pytest

from lrr_service.clients import LRRClient, LRRClientSync
from lrr_service.clients.local_server import ServerProcess
from lrr_service.clients.rest import AsyncRestClient
from lrr_service.clients.tls import shared_tls_context


@pytest.fixture
def ca_loads(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every CA bundle load from now on (the shared context is built before counting starts)."""
    shared_tls_context()
    loads: list[object] = []
    original = ssl.SSLContext.load_verify_locations

    def counted(self: ssl.SSLContext, *args: object, **kwargs: object) -> None:
        loads.append(args or kwargs)
        original(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    return loads


def test_the_shared_context_is_built_once_and_verifies_certificates() -> None:
    context = shared_tls_context()
    assert shared_tls_context() is context
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


async def test_making_clients_loads_no_ca_bundle(ca_loads: list[object], tmp_path) -> None:
    for url in ("http://127.0.0.1:9", "https://lrr.example:8443"):
        async with AsyncRestClient(url), LRRClient(url, "rig-1"):
            pass
        with LRRClientSync(url, "rig-1"):
            pass
    with ServerProcess(tmp_path / "state", port=9).http():
        pass
    assert ca_loads == []
