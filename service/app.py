"""create_app(settings): the FastAPI application (placeholder until the routes land)."""

from __future__ import annotations

from fastapi import FastAPI

from service.config import ServiceSettings


def create_app(settings: ServiceSettings) -> FastAPI:
    """Build the app."""
    app = FastAPI(title="lrr-service")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
