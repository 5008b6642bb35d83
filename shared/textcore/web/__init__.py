"""FastAPI glue shared by every service: problem+json errors, capacity limits, health, body limits, API keys,
request ids, the rule of query parameters (`textcore.web.query`).

This is the only part of `textcore` that imports FastAPI or Starlette.
"""

from textcore.web.auth import ApiKeyAuth, KeyScope
from textcore.web.body_limit import BodySizeLimit
from textcore.web.capacity import CapacityLimiter
from textcore.web.health import Health, Readiness, ReadyCheck, health_router
from textcore.web.problems import (
    PROBLEM_MEDIA_TYPE,
    database_error,
    install_problem_handlers,
    problem_body,
    problem_response,
)
from textcore.web.request_id import RequestId
from textcore.web.service import Resources, ServiceReadyCheck, service_app

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "ApiKeyAuth",
    "BodySizeLimit",
    "CapacityLimiter",
    "Health",
    "KeyScope",
    "Readiness",
    "ReadyCheck",
    "RequestId",
    "Resources",
    "ServiceReadyCheck",
    "database_error",
    "health_router",
    "install_problem_handlers",
    "problem_body",
    "problem_response",
    "service_app",
]
