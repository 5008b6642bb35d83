"""The error tree shared by the core, its CLI and every service.

    CoreError                 500  base class; never raised directly
    ├── InvalidInput          422  the caller sent something we cannot use (bad file, column, label, size)
    │   └── PayloadTooLarge   413  the input is larger than the configured bound
    ├── Unauthorized          401  the service wants an API key and the request carried none, or a wrong one
    ├── NotFound              404  a named thing (model, version, document, id) does not exist
    ├── Conflict              409  the request contradicts the current state
    ├── ModelNotReady         503  no model is loaded yet, or it is being replaced
    ├── Overloaded            429  every worker slot is busy; retry later
    └── UpstreamError         502  something we called over the network failed

Each class carries the HTTP status that `textcore.web` maps it to (as `application/problem+json`) and a short
`title`; the CLI maps every `CoreError` to one line on stderr and exit code 2. Messages say what was expected
and what was found.
"""

from __future__ import annotations

from typing import ClassVar


class CoreError(Exception):
    """Base of every error the project raises on purpose."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    # seconds a client should wait before it retries, sent as the response's Retry-After (None: no header)
    retry_after_s: ClassVar[int | None] = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(CoreError):
    """The input cannot be used as given."""

    status = 422
    title = "Invalid input"


class PayloadTooLarge(InvalidInput):
    """The input exceeds a configured size bound."""

    status = 413
    title = "Payload too large"


class Unauthorized(CoreError):
    """The request did not carry a key the service accepts."""

    status = 401
    title = "Unauthorized"


class NotFound(CoreError):
    """A named resource does not exist."""

    status = 404
    title = "Not found"


class Conflict(CoreError):
    """The request conflicts with the current state of a resource."""

    status = 409
    title = "Conflict"


class ModelNotReady(CoreError):
    """No model is available to serve the request yet."""

    status = 503
    title = "Model not ready"


class Overloaded(CoreError):
    """All capacity is in use; the caller should retry later."""

    status = 429
    title = "Too many requests"
    retry_after_s = 1  # a worker slot frees within a model call or two


class UpstreamError(CoreError):
    """A remote dependency failed or answered with something unusable."""

    status = 502
    title = "Upstream error"


ALL_ERRORS: tuple[type[CoreError], ...] = (
    CoreError,
    InvalidInput,
    PayloadTooLarge,
    Unauthorized,
    NotFound,
    Conflict,
    ModelNotReady,
    Overloaded,
    UpstreamError,
)


def some_of(values: list[str], limit: int = 10) -> str:
    """`values` for one line of a message: the list itself, or its first `limit` and how many there are in all
    (a wrong column at evaluation can make every one of thousands of texts an unknown label)."""
    if len(values) <= limit:
        return repr(values)
    return f"{values[:limit]!r} and {len(values) - limit} more ({len(values)} in all)"
