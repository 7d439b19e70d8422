"""API-token authentication: `Authorization: Bearer <token>` on REST, that or `?token=` on websockets.

Tokens are compared with hmac.compare_digest (constant time). With no token configured, everything is open.
"""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers, QueryParams


class TokenChecker:
    """Decides whether a request carries the configured API token."""

    def __init__(self, token: str | None) -> None:
        self._expected = token.encode() if token else None

    @property
    def enabled(self) -> bool:
        """True when a token is configured."""
        return self._expected is not None

    def accepts(self, presented: str | None) -> bool:
        """True if auth is off, or `presented` equals the token (constant-time comparison)."""
        if self._expected is None:
            return True
        if presented is None:
            return False
        return hmac.compare_digest(presented.encode(), self._expected)

    def accepts_rest(self, headers: Headers) -> bool:
        """REST: only the Authorization header counts (tokens in URLs end up in logs)."""
        return self.accepts(bearer_token(headers))

    def accepts_websocket(self, headers: Headers, query: QueryParams) -> bool:
        """Websocket: the Authorization header, or `?token=` since browsers cannot set headers."""
        if not self.enabled:
            return True
        return self.accepts(bearer_token(headers)) or self.accepts(query.get("token"))


def bearer_token(headers: Headers) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
