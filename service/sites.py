"""Which `Host` and `Origin` headers the server answers: its defence against web pages.

A page the operator opens in a browser on the rig PC can make that browser talk to the service:
cross-site (`Origin` names the page's site) or, by DNS rebinding, under a host name of the
attacker's that resolves to 127.0.0.1 (`Host` names it). Loopback alone stops neither, so the
server answers only the host names it is known by, and takes websockets and state-changing
requests only from its own origin or from origins the operator allowed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from lrr_service.service.config import ServiceSettings

ANY = "*"
LOOPBACK_NAMES = frozenset({"localhost"})


@dataclass(frozen=True)
class SitePolicy:
    """The allowed host names (None: any) and the origins allowed besides the server's own."""

    hosts: frozenset[str] | None
    loopback_addresses: bool
    """Also allow any loopback IP literal (127.0.0.0/8, ::1): the default of a loopback server."""
    origins: frozenset[str]

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> SitePolicy:
        """LRR_ALLOWED_HOSTS and LRR_ALLOWED_ORIGINS; unset hosts mean loopback names on a loopback server."""
        origins = frozenset(_normalise_origin(o) for o in _split(settings.allowed_origins))
        if settings.allowed_hosts is None:
            if settings.listens_on_loopback():
                return cls(LOOPBACK_NAMES, True, origins)
            return cls(None, False, origins)
        hosts = frozenset(h.lower().rstrip(".") for h in _split(settings.allowed_hosts))
        return cls(None if ANY in hosts else hosts, False, origins)

    def host_allowed(self, host_header: str | None) -> bool:
        """True for an allowed host name (any port), or no Host header at all (not a browser)."""
        if self.hosts is None or host_header is None:
            return True
        name = host_name(host_header)
        return name in self.hosts or (self.loopback_addresses and _is_loopback_address(name))

    def origin_allowed(self, origin: str, host_header: str | None) -> bool:
        """True when `origin` is the server's own (same host and port as the request) or an allowed one."""
        normalised = _normalise_origin(origin)
        if normalised in self.origins:
            return True
        netloc = urlsplit(normalised).netloc
        return bool(netloc) and host_header is not None and netloc == host_header.strip().lower()


def host_name(host_header: str) -> str:
    """The name of a Host header without its port: 'Rig.local:8000' -> 'rig.local', '[::1]:80' -> '::1'."""
    value = host_header.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    name, _, port = value.rpartition(":")
    return name.rstrip(".") if name and port.isdigit() else value.rstrip(".")


def _is_loopback_address(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _normalise_origin(origin: str) -> str:
    return origin.strip().lower().rstrip("/")


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]
