"""The live view: `GET /ui`, a page the service serves itself (offline: no CDN, no build step).

The page is three package files in service/ui-page/ (index.html, app.js, style.css), read with
importlib.resources from the installed package (pyproject.toml ships them as package data), so a
wheel install serves the same page as a checkout. The folder's name is not a Python identifier on
purpose: a folder `ui` beside this module would also be an importable namespace package.

`GET /` redirects to the page. The page and its assets hold no data: the gate (service/gate.py)
lets GET and HEAD of `UI_PUBLIC_PATHS` through without the API token. The page itself asks for the
token when `GET /streams` answers 401, and sends it as `Authorization: Bearer <token>` on every API
call it makes (never in a URL).

Every answer carries a Content-Security-Policy that allows scripts, styles and connections to
this origin only: a page served offline needs nothing else, and data inserted by mistake as
markup could not run a script.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

UI_PATH = "/ui"
ASSETS_FOLDER = "ui-page"
"""The folder of the page's files in this package (pyproject.toml: package-data)."""
ASSETS: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
"""The files of service/ui-page/ and their media types; index.html is served at UI_PATH, the others below it."""
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
"""Content-Security-Policy of the page: nothing from elsewhere, no inline script, no framing by other sites."""
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidated on each load: an upgraded server serves its own page
}

UI_PUBLIC_PATHS: frozenset[str] = frozenset(
    {"/", UI_PATH} | {f"{UI_PATH}/{name}" for name in ASSETS if name != "index.html"}
)
"""GET paths of the page and its assets, which need no token (the page asks for it and sends it itself)."""

router = APIRouter(include_in_schema=False)


@cache
def _asset(name: str) -> bytes:
    """The bytes of service/ui-page/<name> in the installed package (read once)."""
    return files("lrr_service.service").joinpath(ASSETS_FOLDER, name).read_bytes()


def _answer(name: str) -> Response:
    return Response(_asset(name), media_type=ASSETS[name], headers=HEADERS)


@router.api_route("/", methods=["GET", "HEAD"])
async def root(request: Request) -> RedirectResponse:
    """The service's root leads to its page."""
    return RedirectResponse(str(request.scope.get("root_path", "")).rstrip("/") + UI_PATH, status_code=307)


@router.api_route(UI_PATH, methods=["GET", "HEAD"])
async def page() -> Response:
    """The live view: sessions, their status, weights and quality, and the operator's actions."""
    return _answer("index.html")


@router.api_route(UI_PATH + "/app.js", methods=["GET", "HEAD"])
async def script() -> Response:
    return _answer("app.js")


@router.api_route(UI_PATH + "/style.css", methods=["GET", "HEAD"])
async def style() -> Response:
    return _answer("style.css")
