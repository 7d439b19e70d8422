"""The live view: `GET /ui`, a page the service serves itself (offline: no CDN, no build step)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()

UI_PUBLIC_PATHS: frozenset[str] = frozenset()
"""GET paths of the page and its assets, which need no token (the page asks for it and sends it itself)."""
