"""`/v1/chat` and `/v1/chat/stream`: one customer message in, the bot's reply out."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncGenerator, Callable
from typing import Annotated, Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator, WithJsonSchema
from sqlalchemy.exc import DataError
from starlette.types import Receive, Scope, Send

from customer_service.bot import TurnStream, replay_events, reply_json
from customer_service.deps import LimiterDep, ServiceDep
from customer_service.idempotency import HEADER, KEY, MAX_KEY_CHARS, key_error, needs_session
from customer_service.schemas import ChatIn, ChatOut
from textcore import CoreError, InvalidInput
from textcore.web import database_error, problem_body

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["chat"])


def _key(value: str) -> str:
    if (error := key_error(value)) is not None:
        raise ValueError(error)
    return value


IdempotencyKey = Annotated[
    str | None,
    AfterValidator(lambda value: None if value is None else _key(value)),
    WithJsonSchema({"type": "string", "pattern": KEY.pattern, "maxLength": MAX_KEY_CHARS}),
    Header(
        alias=HEADER,
        description=(
            "Makes retries of this message safe: send the same key (a UUID, for instance; 1-128 letters, "
            "digits or ._:+/=-) with every try of one message, with its session_id. The first try's turn is "
            "stored with the key; a retry in the same session is answered with that turn (same turn_id, "
            "answer, sources; the session's state now) without asking the bot again or storing anything. "
            "A stream that drops before `done` is answered to its end all the same and stored whole, for "
            "its retry. 409 while the first try is still being answered (try again after it); 422 for the "
            "key with another message, without a session_id, or malformed. Without it every request is a "
            "new turn."
        ),
    ),
]


@router.post("/chat")
async def chat(body: ChatIn, service: ServiceDep, idempotency_key: IdempotencyKey = None) -> ChatOut:
    """Answer a message: action (answer | clarify | fallback | handoff), intent, cited sources.

    With an `Idempotency-Key`, a retry of the message gets the turn its first try stored."""
    reply = await service.bot.chat(body.session_id, body.message, body.context, idempotency_key)
    return ChatOut.model_validate(reply_json(reply))


@router.post("/chat/stream", response_class=StreamingResponse)
async def chat_stream(
    body: ChatIn,
    request: Request,
    service: ServiceDep,
    limiter: LimiterDep,
    idempotency_key: IdempotencyKey = None,
) -> StreamingResponse:
    """The same reply as server-sent events: `meta`, then `delta` pieces of the answer, then `done`.

    When the turn fails once the stream has begun (storing it), `error` with the problem document ends the
    stream instead of `done`. A client that leaves before `done` still has its turn stored, with the part
    of the reply sent to it (`TurnStream`). With an `Idempotency-Key`, a retry of the message gets the turn
    its first try stored as `meta`, one `delta` with its whole answer, and `done`; a keyed stream the client
    leaves is answered to its end all the same (`_relayed`), so that its retry gets the whole reply."""
    bot, key = service.bot, idempotency_key
    if key is None:
        plan = await limiter.run(bot.plan, body.session_id, body.message, body.context)
        return _TurnResponse(bot.stream(plan), request.url.path)
    needs_session(body.session_id, key)
    assert body.session_id is not None
    session_id = body.session_id
    bot.claims.claim(session_id, key)
    try:
        stored = await limiter.run(bot.replay, session_id, key, body.message)
        if stored is None:
            plan = await limiter.run(bot.plan, session_id, body.message, body.context, key)
    except BaseException:
        bot.claims.release(session_id, key)
        raise
    if stored is not None:
        bot.claims.release(session_id, key)
        return StreamingResponse(iter([_event(name, data) for name, data in replay_events(stored)]), **_SSE)

    def released() -> None:
        bot.claims.release(session_id, key)

    return _relayed(bot.stream(plan), request.url.path, service.background, released)


_SSE: dict[str, Any] = {
    "media_type": "text/event-stream",
    "headers": {"Cache-Control": "no-store", "X-Accel-Buffering": "no"},  # a turn is personal data
}


class _TurnResponse(StreamingResponse):
    """A turn's events as SSE (one without an idempotency key); the turn's stream is closed once the
    response ends, however it ends.

    A client gone mid-stream leaves the events generator where it was (Starlette cancels the response and
    leaves the generator to the garbage collector): closing it here is what stores a turn cut short, and
    stops its generation."""

    def __init__(self, turn: TurnStream, instance: str) -> None:
        self._turn = turn
        self._sse = _events(turn, instance)
        super().__init__(self._sse, **_SSE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):  # the request may be cancelled: the turn is stored anyway
                await self._sse.aclose()
                try:
                    await self._turn.aclose()
                except Exception:
                    logger.exception("could not store a streamed turn that ended before its reply")


def _relayed(
    turn: TurnStream, instance: str, tasks: TaskGroup, ended: Callable[[], None]
) -> StreamingResponse:
    """A keyed turn's events, generated in `tasks` (the service's) rather than in the request.

    A client that leaves before `done` does so because its connection dropped, to retry with the key: the
    turn is then generated to its end (within the generator's time and token limits) and stored whole, for
    the retry to get, which meanwhile is refused with 409. The service closing cancels it: the turn is
    stored with what was generated by then. `ended` is called once the turn is stored or failed."""
    # Unbounded (a reply is bounded by the generator's limits): the task never waits for a reader, so a
    # response that never starts (its request cancelled first) cannot hold the turn and its key.
    send, receive = anyio.create_memory_object_stream[str](max_buffer_size=math.inf)
    tasks.start_soon(_answer, turn, instance, send, ended)
    return _Relay(receive)


class _Relay(StreamingResponse):
    """Relays a turn generated elsewhere (`_relayed`); closing its end, however the response ends, tells
    the generating task that the client is gone."""

    def __init__(self, receive: MemoryObjectReceiveStream[str]) -> None:
        self._receive = receive
        super().__init__(receive, **_SSE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._receive.close()


async def _answer(
    turn: TurnStream, instance: str, send: MemoryObjectSendStream[str], ended: Callable[[], None]
) -> None:
    """Generate the turn to its end, sending its events while the client reads them; never raises but for
    cancellation (the service closing), after storing the turn."""
    client = True  # the client still reads the events

    async def deliver(event: str) -> None:
        nonlocal client
        if client:
            try:
                await send.send(event)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                client = False  # gone: the turn is completed for its retry

    try:
        with send:
            try:
                async for name, data in turn:
                    await deliver(_event(name, data))
            except Exception as exc:
                if client:
                    await deliver(_event("error", _problem(exc, instance)))
                else:
                    logger.error(
                        "could not complete a keyed turn its client left on %s", instance, exc_info=exc
                    )
    finally:
        with anyio.CancelScope(shield=True):  # cancelled at shutdown: the turn holds what was generated
            try:
                await turn.aclose()
            except Exception:
                logger.exception("could not store a keyed turn cut short on %s", instance)
            finally:
                ended()


async def _events(turn: TurnStream, instance: str) -> AsyncGenerator[str, None]:
    """The events as SSE; a failure mid-stream ends it with an `error` event (the status is already sent)."""
    try:
        async for name, data in turn:
            yield _event(name, data)
    except Exception as exc:  # the status line is gone: the client learns of the failure from this event
        yield _event("error", _problem(exc, instance))


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _problem(exc: Exception, instance: str) -> dict[str, Any]:
    """The problem document `POST /v1/chat` answers the same error with (the details of others are logged)."""
    if isinstance(exc, CoreError):
        return problem_body(exc.status, exc.title, exc.message, instance)
    if isinstance(exc, DataError):
        logger.info("database refused the values of a streamed turn: %s", database_error(exc))
        detail = (
            "expected values the database can store (no NUL characters, numbers in range); it refused these"
        )
        return problem_body(422, InvalidInput.title, detail, instance)
    logger.error("streamed reply failed on %s", instance, exc_info=exc)
    detail = "the server failed to handle this request; the error has been logged"
    return problem_body(500, CoreError.title, detail, instance)
