"""Application factory of the customer_service service.

Run with ``uvicorn --factory customer_service.app:create_app``.
"""

from __future__ import annotations

from fastapi import FastAPI

from customer_service.settings import CustomerServiceSettings
from textcore.web import service_app


def create_app(settings: CustomerServiceSettings | None = None) -> FastAPI:
    """Build the customer_service application; settings are read from the environment when omitted."""
    return service_app(
        title="Customer service",
        distribution="customer-service",
        description="Chat API: intents, knowledge-base retrieval, grounded answers, hand-off.",
        settings=settings or CustomerServiceSettings(),
    )
