"""The interactive API documentation (/docs, /redoc) and the schema (/openapi.json), behind the token.

FastAPI's own documentation routes cannot take dependencies, so the app is created without them
and these serve the same pages from a router that requires the token like every route but /health.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse

from service.rest import require_token

OPENAPI_URL = "/openapi.json"
DOCS_URL = "/docs"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
REDOC_URL = "/redoc"

router = APIRouter(dependencies=[Depends(require_token)], include_in_schema=False)


@router.get(OPENAPI_URL)
async def openapi_schema(request: Request) -> JSONResponse:
    """The OpenAPI schema of this app."""
    return JSONResponse(request.app.openapi())


@router.get(DOCS_URL)
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI over the schema."""
    return get_swagger_ui_html(openapi_url=OPENAPI_URL, title=f"{request.app.title} - Swagger UI",
                               oauth2_redirect_url=OAUTH2_REDIRECT_URL)  # fmt: skip


@router.get(OAUTH2_REDIRECT_URL)
async def swagger_ui_redirect() -> HTMLResponse:
    """The OAuth2 redirect page Swagger UI expects."""
    return get_swagger_ui_oauth2_redirect_html()


@router.get(REDOC_URL)
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc over the schema."""
    return get_redoc_html(openapi_url=OPENAPI_URL, title=f"{request.app.title} - ReDoc")
