"""REST helpers (httpx, async): sessions, settings, weights upload/download, reset, solve, delete, quality.

Weights travel as CSV text produced and parsed by core.weights_csv, so an array or file round-trips bit for bit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import numpy as np

from lrr_service.clients.endpoints import auth_headers, http_base, stream_path
from lrr_service.clients.errors import (
    BadWeightsError,
    ConnectionLost,
    NoSuchEndpointError,
    ProtocolError,
    ServerError,
    error_for,
)
from lrr_service.clients.tls import shared_tls_context
from lrr_service.core import weights_csv
from lrr_service.core.channels import ChannelDescription
from lrr_service.core.weights_form import Interface, WeightsForm, check_form, restate

DEFAULT_TIMEOUT_S = 30.0


class AsyncRestClient:
    """The server's REST API; every method raises a ServerError subclass when the server refuses."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.base_url = http_base(url)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=auth_headers(token), timeout=timeout, verify=shared_tls_context()
        )

    async def __aenter__(self) -> AsyncRestClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._http.aclose()

    # -- server -----------------------------------------------------------------------------

    async def sessions(self) -> list[dict[str, Any]]:
        """GET /streams: one summary dict per session (the reply's `streams` list)."""
        reply = await self._json("GET", "/streams")
        streams = reply.get("streams")
        if not isinstance(streams, list):
            raise ProtocolError(f'GET /streams answered {str(reply)[:80]!r}; expected {{"streams": [...], ...}}')
        return streams

    # -- one session ------------------------------------------------------------------------

    async def session(self, key: str) -> dict[str, Any]:
        """GET /streams/{key}: the session's settings and state."""
        return await self._json("GET", stream_path(key))

    async def owner(self, key: str) -> str:
        """GET /streams/{key}/owner: the base URL to stream `key` to directly, i.e. the owning worker
        of a cluster (docs/scale.md); this client's own URL on a single server."""
        reply = await self._json("GET", stream_path(key, "owner"))
        owner = reply.get("owner")
        if reply.get("cluster") and isinstance(owner, str):
            return owner
        return self.base_url

    async def put_settings(self, key: str, settings: dict[str, Any]) -> dict[str, Any]:
        """PUT /streams/{key}: create the session or change its settings."""
        return await self._json("PUT", stream_path(key), json=settings)

    async def delete(self, key: str) -> None:
        """DELETE /streams/{key}: drop the session and its checkpoint (the server answers 204, no body)."""
        await self._request("DELETE", stream_path(key))

    async def reset(self, key: str) -> dict[str, Any]:
        """POST /streams/{key}/reset: clear statistics and weights, keep settings."""
        return await self._json("POST", stream_path(key, "reset"))

    async def solve(self, key: str) -> dict[str, Any]:
        """POST /streams/{key}/solve: solve the weights from the current statistics now."""
        return await self._json("POST", stream_path(key, "solve"))

    async def quality(self, key: str) -> dict[str, Any]:
        """GET /streams/{key}/quality: what the cleaning of the session's transform traffic removes, per channel
        and overall (`overall.median_channel_db`, the median channel's reduction in dB, among others)."""
        return await self._json("GET", stream_path(key, "quality"))

    # -- channels ---------------------------------------------------------------------------

    async def put_channels(self, key: str, description: ChannelDescription | Mapping[str, Any]) -> dict[str, Any]:
        """PUT /streams/{key}/channels: describe the channels (labels, per-channel fields); the reply's
        `regrouped` says what it did to the groups and weights."""
        if not isinstance(description, ChannelDescription):
            description = ChannelDescription.from_dict(description)
        body = {name: value for name, value in description.to_dict().items() if value}
        return await self._json("PUT", stream_path(key, "channels"), json=body)

    async def get_channels(self, key: str) -> ChannelDescription | None:
        """GET /streams/{key}/channels: the session's channel description, None if it has none."""
        described = (await self._json("GET", stream_path(key, "channels")))["channels"]
        return ChannelDescription.from_dict(described) if described is not None else None

    async def delete_channels(self, key: str) -> dict[str, Any]:
        """DELETE /streams/{key}/channels: hold no description (field groups fall back to block_size)."""
        return await self._json("DELETE", stream_path(key, "channels"))

    # -- weights ----------------------------------------------------------------------------

    async def weights_csv(self, key: str) -> str:
        """GET /streams/{key}/weights: W as CSV text, exactly as the server wrote it."""
        return (await self._weights_response(key)).text

    async def _weights_response(self, key: str) -> httpx.Response:
        """GET /streams/{key}/weights, whose body is W's CSV."""
        return await self._request("GET", stream_path(key, "weights"))

    async def get_weights(self, key: str) -> np.ndarray:
        """W as a float64 (n, n) array, bit-identical to the server's."""
        text = await self.weights_csv(key)
        return weights_csv.parse_weights_csv(text, max_channels=max(1, text.count("\n") + 1))

    async def download_weights(self, key: str, path: Path | str) -> Path:
        """Save W's CSV to `path` byte for byte, as the server sent it; returns the path."""
        path = Path(path)
        path.write_bytes((await self._weights_response(key)).content)
        return path

    async def put_weights_csv(
        self, key: str, csv: bytes | str, *, replace: bool = False, form: WeightsForm = "w"
    ) -> dict[str, Any]:
        """PUT /streams/{key}/weights with CSV bytes (sent as they are) or text (sent as UTF-8).

        `replace` lets a matrix of another size reset the session to that channel count. `form` says what the
        CSV holds: "w", W itself (zero diagonal), or "i_minus_w", the rereferencing matrix I - W, from which
        the server stores W. A diagonal the server refuses raises BadWeightsError, its message naming `form=`.
        """
        form = check_form(form)  # before a byte is sent
        params = {"replace": "true"} if replace else {}
        if form != "w":
            params["form"] = form
        content = csv.encode() if isinstance(csv, str) else csv
        try:
            return await self._json(
                "PUT",
                stream_path(key, "weights"),
                content=content,
                headers={"Content-Type": "text/csv"},
                params=params or None,
            )
        except BadWeightsError as exc:  # the server names its query parameter; say it as this API does
            raise error_for(exc.code, restate(exc.message, Interface.PYTHON), status=exc.status) from None

    async def put_weights(
        self, key: str, weights: np.ndarray | Path | str, *, replace: bool = False, form: WeightsForm = "w"
    ) -> dict[str, Any]:
        """Upload W from an array (encoded exactly) or from a CSV file path (its bytes sent unchanged);
        with form="i_minus_w" the array or file holds I - W instead (see put_weights_csv)."""
        form = check_form(form)
        if isinstance(weights, (str, Path)):
            csv: bytes | str = Path(weights).read_bytes()
        else:
            csv = weights_csv.format_weights_csv(np.asarray(weights))
        return await self.put_weights_csv(key, csv, replace=replace, form=form)

    # -- transport --------------------------------------------------------------------------

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request; refusals become ServerError, network failures ConnectionLost.

        A request that is safe to repeat (`_repeatable`) is sent again, after RETRY_DELAYS_S, when the network
        failed or a proxy answered that no worker could take it: in a cluster the worker that held the key may
        have died mid-request, and the proxy routes the retry to the key's next owner (docs/scale.md).
        """
        delays = iter(RETRY_DELAYS_S if _repeatable(method, path) else ())
        while True:
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                delay = next(delays, None)
                if delay is None:
                    raise self._lost(method, path, exc) from None
                await asyncio.sleep(delay)
                continue
            if response.status_code in PROXY_UNAVAILABLE and not _from_service(response):
                delay = next(delays, None)
                if delay is not None:
                    await asyncio.sleep(delay)
                    continue
            if response.status_code >= 400:
                raise _refusal(response)
            return response

    def _lost(self, method: str, path: str, exc: httpx.TransportError) -> ConnectionLost:
        """The ConnectionLost of a request that could not be completed."""
        if isinstance(exc, httpx.ConnectError):
            return ConnectionLost(
                f"cannot connect to the server at {self.base_url} ({exc or type(exc).__name__}): is it running there? "
                "Start one with `lrr serve` (or `make run`), or give the client the server's URL"
            )
        return ConnectionLost(f"{method} {self.base_url}{path} failed: {exc or type(exc).__name__}")

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Send one request and return its JSON body, an object (every success of the API answers one)."""
        response = await self._request(method, path, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ProtocolError(f"{method} {path} answered {response.content[:80]!r}; expected a JSON object")
        return body


RETRY_DELAYS_S = (0.25, 0.5, 1.0)
"""Pauses before each repeat of a request that is safe to repeat: together longer than a proxy takes to drop a
dead worker (HAProxy checks every 250 ms and drops it after two failures, docs/scale.md)."""
PROXY_UNAVAILABLE = frozenset({502, 503, 504})
"""Statuses a proxy answers when no worker could take the request."""


def _repeatable(method: str, path: str) -> bool:
    """Whether sending the request twice does what sending it once does: GET, HEAD, PUT and DELETE (HTTP's
    idempotent methods; a PUT states the whole new value), and the POSTs that solve or reset a session."""
    return method in ("GET", "HEAD", "PUT", "DELETE") or (method == "POST" and path.endswith(("/solve", "/reset")))


def _from_service(response: httpx.Response) -> bool:
    """Whether an error answer is the service's own (its JSON error body), not a proxy's."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and "detail" in body


def _refusal(response: httpx.Response) -> ServerError:
    """The typed exception for an HTTP error response.

    The server answers `{"detail": {"code", "message", ...}}`, or FastAPI's field list for a 422 body error;
    anything else (a plain-text 500, FastAPI's `{"detail": "Not Found"}`) keeps its status and text.
    """
    status = response.status_code
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, dict) and "code" in detail:
        return error_for(str(detail["code"]), str(detail.get("message", "")), status=status)
    if isinstance(detail, list):
        return error_for("invalid_request", "; ".join(_field_error(item) for item in detail), status=status)
    message = detail if isinstance(detail, str) else response.text.strip()[:300] or response.reason_phrase
    if status == 404:
        return NoSuchEndpointError(
            "no_such_endpoint",
            f"no lrr-service route at {response.request.url} (HTTP 404: {message}); check the server URL: "
            "a URL with a path prefix works only behind a reverse proxy that strips the prefix",
            status=status,
        )
    return error_for("internal" if status >= 500 else "http_error", message, status=status)


def _field_error(item: Any) -> str:
    """One FastAPI validation error as 'field: problem'."""
    if not isinstance(item, dict):
        return str(item)
    location = [str(part) for part in item.get("loc", ()) if part != "body"]
    return (".".join(location) + ": " if location else "") + str(item.get("msg", item))
