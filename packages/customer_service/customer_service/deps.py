"""Typed dependencies of the routes: the lifespan-owned service parts and the worker pool."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from customer_service.service import CustomerService
from textcore import ModelNotReady
from textcore.web import CapacityLimiter


def get_service(request: Request) -> CustomerService:
    """What the lifespan built: database, knowledge base, models, bot."""
    service: CustomerService | None = getattr(request.app.state, "service", None)
    if service is None:
        raise ModelNotReady(
            "expected the service to have started (database, knowledge base, models); it has not"
        )
    return service


def get_limiter(request: Request) -> CapacityLimiter:
    """The worker pool for blocking model and database calls."""
    limiter: CapacityLimiter = request.app.state.limiter
    return limiter


ServiceDep = Annotated[CustomerService, Depends(get_service)]
LimiterDep = Annotated[CapacityLimiter, Depends(get_limiter)]


async def get_current_service(service: ServiceDep, limiter: LimiterDep) -> CustomerService:
    """The service, its knowledge base first brought up to date with changes made elsewhere (the CLI,
    another replica): one version read per request, a sync only when the version moved."""
    await limiter.run(service.kb.refresh)
    return service


CurrentServiceDep = Annotated[CustomerService, Depends(get_current_service)]
