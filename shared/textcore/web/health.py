"""Liveness and readiness endpoints for orchestrators and load balancers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from textcore.errors import CoreError
from textcore.web.problems import PROBLEM_MEDIA_TYPE, problem_response
from textcore.web.query import any_query

ReadyCheck = Callable[[], Awaitable[dict[str, str]]]


class Health(BaseModel):
    """Body of ``GET /healthz``."""

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """Body of ``GET /readyz``: one entry per checked resource."""

    status: Literal["ready"] = "ready"
    checks: dict[str, str]


def health_router(ready_check: ReadyCheck | None = None) -> APIRouter:
    """Build a router serving ``GET /healthz`` and ``GET /readyz``.

    Args:
        ready_check: Awaitable returning one status line per resource; it raises a `CoreError` (for example
            `ModelNotReady`) when the service cannot serve yet. ``None`` means always ready.

    Returns:
        A router to include in the app. ``/healthz`` always answers 200 while the process runs; ``/readyz``
        answers 200 with the checks, or 503 problem+json with the error's message.
    """
    router = APIRouter(tags=["health"])

    # Probes are answered whatever query they carry (a monitor's cache-buster): there is nothing to filter.
    @router.get("/healthz")
    @any_query
    async def healthz() -> Health:
        return Health()

    @router.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"description": "Not ready", "content": {PROBLEM_MEDIA_TYPE: {}}}},
    )
    @any_query
    async def readyz(request: Request) -> Readiness | JSONResponse:
        try:
            checks = await ready_check() if ready_check is not None else {}
        except CoreError as exc:
            return problem_response(503, "Service unavailable", exc.message, request.url.path)
        return Readiness(checks=checks)

    return router
