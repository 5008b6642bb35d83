"""Sessions for the agent console (`/v1/sessions/...`) and feedback on turns (`/v1/feedback`)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response

from customer_service.conversations import MAX_POSITION, MAX_TURN_PAGE, TURN_PAGE, TurnWindow
from customer_service.deps import LimiterDep, ServiceDep
from customer_service.schemas import FeedbackIn, HandoffIn, SessionId, SessionOut, SessionPage
from customer_service.session_list import MAX_CURSOR_CHARS

router = APIRouter(prefix="/v1", tags=["sessions"])
SessionIdPath = Annotated[SessionId, Path()]


@router.get("/sessions")
async def list_sessions(
    service: ServiceDep,
    limiter: LimiterDep,
    state: Literal["open", "waiting_for_agent", "closed"] | None = None,
    offset: Annotated[int | None, Query(ge=0, le=1_000_000, description="Sessions to skip")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None,
        Query(min_length=1, max_length=MAX_CURSOR_CHARS, description="An earlier page's `next_cursor`"),
    ] = None,
) -> SessionPage:
    """Sessions a page at a time; `state=waiting_for_agent` is the agents' queue, longest waiting first
    (others: most recently active first). `next_cursor`, passed back as `cursor` with the same `state`,
    continues right after the page's last session: none repeats or is skipped when sessions join or leave
    the list meanwhile (as they do with `offset`, which is kept for existing clients; not both)."""
    page = await limiter.run(service.conversations.sessions, state, offset, limit, cursor)
    return SessionPage.of(page)


@router.get("/sessions/{session_id}")
async def get_session(
    session_id: SessionIdPath,
    service: ServiceDep,
    limiter: LimiterDep,
    limit: Annotated[int, Query(ge=1, le=MAX_TURN_PAGE, description="Turns per page")] = TURN_PAGE,
    cursor: Annotated[
        str | None, Query(min_length=1, max_length=40, description="An earlier page's `next_cursor`")
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_POSITION, description="Only turns after this turn `position`")
    ] = None,
) -> SessionOut:
    """A session, its state and a page of its turns, oldest first: by default the latest `limit` (100).

    `next_cursor`, passed back as `cursor`, reads the turns before the page; `after` (a turn's `position`)
    reads those after it instead, earliest first (poll with the last position seen), and `next_cursor` then
    continues forward. `next_cursor` is null when there is nothing further."""
    window = TurnWindow.of(limit, cursor, after)
    return SessionOut.of(await limiter.run(service.conversations.get, session_id, window))


@router.delete("/sessions/{session_id}", status_code=204)
async def erase_session(session_id: SessionIdPath, service: ServiceDep, limiter: LimiterDep) -> Response:
    """Erase a session, its turns and their feedback (a data-protection erasure request), whatever its
    state: a session waiting for an agent leaves the agents' queue. Nothing of it is kept, analytics'
    figures included; a second DELETE, like one of an unknown id, is a 404 problem. A later message with
    the same id starts a new, empty session."""
    await limiter.run(service.conversations.erase, session_id)
    service.kb.forget_queries()  # its messages, kept in memory as recent queries
    return Response(status_code=204)


@router.post("/sessions/{session_id}/handoff")
async def hand_off(
    session_id: SessionIdPath, service: ServiceDep, limiter: LimiterDep, body: HandoffIn | None = None
) -> SessionOut:
    """Put a session in the agents' queue; the bot stops answering it. Answers the session with its
    latest turns, as `GET /v1/sessions/{id}` does."""
    reason = body.reason if body is not None else HandoffIn().reason
    return SessionOut.of(await limiter.run(service.conversations.hand_off, session_id, reason))


@router.post("/sessions/{session_id}/resolve")
async def resolve(session_id: SessionIdPath, service: ServiceDep, limiter: LimiterDep) -> SessionOut:
    """Close a session waiting for an agent; the customer's next message opens it again with the bot.
    Answers the session with its latest turns, as `GET /v1/sessions/{id}` does; a closed session as it is
    (a retry changes nothing), an open one (no agent was asked) is a 409 problem."""
    return SessionOut.of(await limiter.run(service.conversations.resolve, session_id))


@router.post("/feedback", status_code=204)
async def feedback(body: FeedbackIn, service: ServiceDep, limiter: LimiterDep) -> Response:
    """Rate a turn up or down, with an optional comment."""
    await limiter.run(service.conversations.feedback, body.turn_id, body.rating, body.comment)
    return Response(status_code=204)
