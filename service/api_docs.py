"""The API's interactive documentation, served by the service itself so that it works on a rig without internet.

Swagger UI at /docs and ReDoc at /redoc load their scripts and styles from /docs/assets/, which
serves the copies shipped in the `fastapi-offline` package (Swagger UI 5 and ReDoc 2), never a
CDN. These pages, their assets and /openapi.json hold no data: the gate (service/gate.py) lets
GET requests for `PUBLIC_PATHS` through without the API token, so a browser can open them. When
the server has a token, the OpenAPI document declares it as a bearer scheme: Swagger UI then
shows an "Authorize" button, and "Try it out" sends `Authorization: Bearer <token>`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_PATH = "/docs"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"
REDOC_PATH = "/redoc"
OPENAPI_PATH = "/openapi.json"
ASSETS_PATH = "/docs/assets"
ASSETS_PACKAGE = ("fastapi_offline", "static")
"""(package, folder) holding the files below; the folder is served whole at ASSETS_PATH."""
SWAGGER_JS, SWAGGER_CSS, REDOC_JS, FAVICON = (
    "swagger-ui-bundle.js",
    "swagger-ui.css",
    "redoc.standalone.js",
    "favicon.png",
)
PUBLIC_PATHS = frozenset(
    {DOCS_PATH, OAUTH2_REDIRECT_PATH, REDOC_PATH, OPENAPI_PATH}
    | {f"{ASSETS_PATH}/{name}" for name in (SWAGGER_JS, SWAGGER_CSS, REDOC_JS, FAVICON)}
)
"""What a browser needs to show the documentation: open without the token (GET and HEAD only)."""
REDOC_IMAGES_POLICY = "img-src 'self' data: blob:"
"""ReDoc's sidebar shows Redocly's logo from their CDN: the browser is told not to fetch images from elsewhere
(the logo then hides itself), so that the page asks nothing of the internet."""
BEARER_SCHEME = "apiToken"
"""Name of the security scheme in the OpenAPI document (components.securitySchemes)."""
UNAUTHORIZED = "Missing or wrong API token (`unauthorized`)."
"""The 401 response every operation that needs the token declares."""


def install_api_docs(app: FastAPI, token_required: bool, open_paths: Iterable[str] = ()) -> None:
    """Serve /docs, /docs/oauth2-redirect, /redoc and their assets on `app` (created with docs_url=None and
    redoc_url=None). With `token_required`, /openapi.json declares the bearer token, and its 401, on every
    operation but those of `open_paths`."""
    app.mount(ASSETS_PATH, StaticFiles(packages=[ASSETS_PACKAGE]), name="docs-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = _root_path(request)
        return get_swagger_ui_html(
            openapi_url=root + OPENAPI_PATH,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_PATH}/{SWAGGER_JS}",
            swagger_css_url=f"{root}{ASSETS_PATH}/{SWAGGER_CSS}",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/{FAVICON}",
            oauth2_redirect_url=root + OAUTH2_REDIRECT_PATH,
        )

    @app.get(OAUTH2_REDIRECT_PATH, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_PATH, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = _root_path(request)
        page = get_redoc_html(
            openapi_url=root + OPENAPI_PATH,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_PATH}/{REDOC_JS}",
            redoc_favicon_url=f"{root}{ASSETS_PATH}/{FAVICON}",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = REDOC_IMAGES_POLICY
        return page

    if token_required:
        app.openapi = _with_bearer_scheme(app.openapi, frozenset(open_paths))  # type: ignore[method-assign]


def _root_path(request: Request) -> str:
    """The prefix a proxy mounted the app under ('' when served at the root)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _with_bearer_scheme(
    generate: Callable[[], dict[str, Any]], open_paths: frozenset[str]
) -> Callable[[], dict[str, Any]]:
    """`generate` (FastAPI's cached OpenAPI builder), with the bearer scheme declared in what it returns."""

    def openapi() -> dict[str, Any]:
        schema = generate()
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        if BEARER_SCHEME not in schemes:  # the schema is built once and cached: declared once
            schemes[BEARER_SCHEME] = {
                "type": "http",
                "scheme": "bearer",
                "description": "the server's LRR_API_TOKEN, sent as `Authorization: Bearer <token>`",
            }
            schema["security"] = [{BEARER_SCHEME: []}]
            for path, item in schema.get("paths", {}).items():
                for operation in item.values():
                    if path in open_paths:
                        operation["security"] = []  # answered without the token
                    else:
                        operation.setdefault("responses", {})["401"] = {"description": UNAUTHORIZED}
        return schema

    return openapi
