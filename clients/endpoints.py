"""Server addresses: the REST base URL, websocket endpoint URLs, and the auth header."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from lrr_service.clients.errors import BadKeyError
from lrr_service.core.keys import key_problem
from lrr_service.core.vocabulary import ErrorCode, Mode

_HTTP_FOR = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_WS_FOR = {"http": "ws", "https": "wss"}


def http_base(url: str) -> str:
    """Normalise a server URL (http, https, ws or wss) to its http(s) base without a trailing slash."""
    parts = urlsplit(url.strip())
    scheme = _HTTP_FOR.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise ValueError(f"server URL {url!r} is not usable; expected http://HOST:PORT (or https, ws, wss)")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def checked_key(key: str) -> str:
    """`key` if it is a valid stream key; else BadKeyError with the server's message, before any connection."""
    problem = key_problem(key)
    if problem is not None:
        raise BadKeyError(ErrorCode.BAD_KEY, problem)
    return key


def websocket_url(url: str, key: str, mode: str) -> str:
    """The websocket endpoint /ws/{key}/{mode} of the server at `url`."""
    checked_key(key)
    if mode not in set(Mode):
        raise ValueError(f"mode {mode!r} is not a websocket channel; expected one of {', '.join(Mode)}")
    parts = urlsplit(http_base(url))
    path = f"{parts.path}/ws/{key}/{mode}"
    return urlunsplit((_WS_FOR[parts.scheme], parts.netloc, path, "", ""))


def stream_path(key: str, *tail: str) -> str:
    """REST path /streams/{key}[/tail...]; BadKeyError for a key the server would refuse."""
    return "/".join(["/streams", checked_key(key), *tail])


def auth_headers(token: str | None) -> dict[str, str]:
    """`Authorization: Bearer <token>` when a token is given, else no header."""
    return {"Authorization": f"Bearer {token}"} if token else {}
