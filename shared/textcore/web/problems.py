"""Map every error a service can raise to an RFC 9457 ``application/problem+json`` response.

``install_problem_handlers`` registers the handlers on an app: ``CoreError`` subclasses keep their own
``status`` and ``title``; request validation failures become 422 with an ``errors`` list; values the database
refuses (SQLAlchemy ``DataError``) 422 and a uniqueness race lost to a concurrent request (``IntegrityError``)
409; anything else becomes a generic 500 whose traceback goes to the log, never to the caller. Starlette's own
HTTP errors (unknown route, wrong method) are rendered the same way so every error body has one shape.

A JSON body that cannot be read is the caller's input too: FastAPI answers malformed JSON with a validation
error (422, ``json_invalid``) but JSON its parser gives up on otherwise (nested too deeply, not UTF-8, a
number of over 4,300 digits) with a bare 400; both are answered as the same 422 here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope, Send

from textcore import logs
from textcore.errors import Conflict, CoreError, InvalidInput
from textcore.logs import REQUEST_ID_HEADER
from textcore.web.request_id import request_id_of
from textcore.web.security_headers import add_security_headers

PROBLEM_MEDIA_TYPE = "application/problem+json"

logger = logging.getLogger(__name__)

_PHRASES = {status.value: status.phrase for status in HTTPStatus}


def problem_body(status: int, title: str, detail: str, instance: str, **extra: Any) -> dict[str, Any]:
    """Build the members of a problem document.

    Args:
        status: HTTP status code of the response.
        title: Short, human-readable summary of the problem type.
        detail: Explanation specific to this occurrence.
        instance: The request path the problem occurred on.
        **extra: Extension members (for example ``errors``).

    Returns:
        A JSON-serialisable dict with ``type`` "about:blank" and the given members.
    """
    return {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        **extra,
    }


async def send_problem(
    scope: Scope,
    send: Send,
    status: int,
    title: str,
    detail: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Send a problem document as the whole response of a request that pure-ASGI middleware answers before
    the app does (a refused key, host or body size), with any further `headers`."""
    payload = json.dumps(problem_body(status, title, detail, str(scope.get("path", "")))).encode()
    start = [
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(payload)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": payload})


def problem_response(
    status: int,
    title: str,
    detail: str,
    instance: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """Return a problem document as an ``application/problem+json`` response.

    Args:
        status: HTTP status code of the response.
        title: Short, human-readable summary of the problem type.
        detail: Explanation specific to this occurrence.
        instance: The request path the problem occurred on.
        headers: Extra response headers (for example ``Retry-After``).
        **extra: Extension members (for example ``errors``).

    Returns:
        The response, ready to be returned from a handler or route.
    """
    body = problem_body(status, title, detail, instance, **extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


async def _core_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CoreError)  # registered for CoreError only
    wait = exc.retry_after_s
    headers = {"Retry-After": str(wait)} if wait is not None else None
    return problem_response(exc.status, exc.title, exc.message, request.url.path, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # registered for RequestValidationError only
    # Only loc, msg and type: the offending ``input`` may be a huge body and is never echoed back.
    errors = [{"loc": list(e["loc"]), "msg": str(e["msg"]), "type": str(e["type"])} for e in exc.errors()]
    detail = f"expected a request matching the schema, found {len(errors)} validation error(s)"
    return problem_response(422, InvalidInput.title, detail, request.url.path, errors=errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # registered for HTTPException only
    if exc.status_code == 400 and (reason := _unreadable_json(exc.__cause__)) is not None:
        # FastAPI's 400 for a body json.loads raised on other than JSONDecodeError: answered as malformed
        # JSON is (its 422 `json_invalid`), so every unreadable body gets one status and shape
        errors = [{"loc": ["body"], "msg": f"JSON decode error: {reason}", "type": "json_invalid"}]
        detail = f"expected a request matching the schema, found {len(errors)} validation error(s)"
        return problem_response(422, InvalidInput.title, detail, request.url.path, errors=errors)
    title = _PHRASES.get(exc.status_code, "Error")
    return problem_response(exc.status_code, title, str(exc.detail), request.url.path, headers=exc.headers)


def _unreadable_json(cause: BaseException | None) -> str | None:
    """Why the JSON parser refused a body, when `cause` is its error (None: not a parser's refusal)."""
    if isinstance(cause, RecursionError):
        return "nested too deeply to read"
    if isinstance(cause, UnicodeDecodeError):
        return f"expected UTF-8, found byte {cause.object[cause.start : cause.start + 1]!r} at {cause.start}"
    if isinstance(cause, ValueError):  # an integer of over 4,300 digits (sys.get_int_max_str_digits)
        return "a value too large to read"
    return None


def database_error(exc: Exception) -> str:
    """What a log line may say of a database error: the driver's error class and SQLSTATE, never its message.

    SQLAlchemy's message holds the statement and its parameters (a customer's chat message), and the
    driver's may quote a value (PostgreSQL's "Key (name)=(...) already exists"): personal data, which logs
    must not carry.
    """
    orig = getattr(exc, "orig", None)
    cause = orig if isinstance(orig, BaseException) else exc
    name = f"{type(cause).__module__}.{type(cause).__qualname__}".removeprefix("builtins.")
    sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    return f"{name} (SQLSTATE {sqlstate})" if isinstance(sqlstate, str) else name


async def _database_refused_values(request: Request, exc: Exception) -> JSONResponse:
    # A value the schema let through that the database cannot hold (PostgreSQL: a NUL character in
    # text, a number out of range): the caller's input, so 422; the error's class goes to the log only.
    logger.info(
        "database refused the values of %s %s: %s", request.method, request.url.path, database_error(exc)
    )
    detail = "expected values the database can store (no NUL characters, numbers in range); it refused these"
    return problem_response(422, InvalidInput.title, detail, request.url.path)


async def _database_conflict(request: Request, exc: Exception) -> JSONResponse:
    # A uniqueness or reference rule broken by a concurrent request (both checked, then both wrote).
    logger.warning("database conflict on %s %s: %s", request.method, request.url.path, database_error(exc))
    detail = "a concurrent change conflicted with this request; retry it"
    return problem_response(409, Conflict.title, detail, request.url.path)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Sent from outside every middleware (Starlette's ServerErrorMiddleware), so the request id is set here.
    request_id = request_id_of(request)
    method, path = request.method, request.url.path
    token = logs.request_id.set(request_id)  # the middleware that set it for the request has returned
    try:
        logger.error("unhandled error on %s %s (request %s)", method, path, request_id or "-", exc_info=exc)
    finally:
        logs.request_id.reset(token)
    logged = f"logged with request id {request_id}" if request_id else "logged"
    detail = f"the server failed to handle this request; the error has been {logged}"
    headers = {REQUEST_ID_HEADER: request_id} if request_id else None
    response = problem_response(500, CoreError.title, detail, path, headers=headers)
    add_security_headers(response.headers)  # sent from outside the middleware that sets them too
    return response


def install_problem_handlers(app: FastAPI) -> None:
    """Register the problem+json exception handlers on ``app``.

    Args:
        app: The application to configure; call once, before it starts serving.
    """
    app.add_exception_handler(CoreError, _core_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DataError, _database_refused_values)
    app.add_exception_handler(IntegrityError, _database_conflict)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
