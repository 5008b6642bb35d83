"""The list of sessions an agent console pages through: the agents' queue and every other selection.

The agents' queue (``waiting_for_agent``) is served longest waiting first: by `handed_off_at`, then id; any
other selection lists the most recently active first: by `updated_at` descending, then id. Both change while
an agent reads them (hand-offs arrive, sessions are resolved, customers write), so a page is continued by its
keyset, not its offset: each page's `next_cursor` holds its last session's sort key and id (base64url JSON,
opaque to clients), and the page after it starts right after that place in the order. A session that joins
or leaves the list between two pages neither repeats one nor skips one; a session whose own key changes
meanwhile (new activity) moves to its new place. `offset` still pages by position for existing clients.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select

from customer_service.database import Database
from customer_service.tables import SESSION_STATES, ChatSession, Turn
from textcore import InvalidInput

QUEUE = "waiting_for_agent"
MAX_CURSOR_CHARS = 200  # a cursor holds a state, a timestamp and a session id (at most 64 characters)
_SESSION_ID_CHARS = 64


@dataclass(frozen=True)
class SessionSummary:
    """A session as the agents' queue lists it."""

    id: str
    state: str
    handoff_reason: str | None
    handed_off_at: datetime | None
    created_at: datetime
    updated_at: datetime
    turns: int
    last_message: str | None


@dataclass(frozen=True)
class SessionList:
    """A page of sessions, how many match the selection, and the cursor of the next page (None: the last)."""

    items: list[SessionSummary]
    total: int
    next_cursor: str | None = None


@dataclass(frozen=True)
class ListCursor:
    """A place in the list of one selection (`state`): right after the session `id` with sort key `key`."""

    state: str | None
    key: datetime
    id: str

    def encode(self) -> str:
        """The opaque text a client passes back as `cursor`."""
        data = json.dumps([self.state, self.key.isoformat(), self.id], separators=(",", ":"))
        return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, state: str | None) -> ListCursor:
        """The place a `next_cursor` of an earlier page of the same selection names.

        Raises:
            InvalidInput: If `text` is not such a cursor (malformed, too long, or of another selection).
        """
        if len(text) > MAX_CURSOR_CHARS:
            raise InvalidInput(f"cursor: expected at most {MAX_CURSOR_CHARS} characters; found {len(text)}")
        try:
            found = _decoded(text)
        except ValueError:
            expected = "cursor: expected the next_cursor of an earlier page"
            raise InvalidInput(f"{expected}; found {text!r:.40}") from None
        if found.state != state:
            raise InvalidInput(
                f"cursor: expected the next_cursor of a page listing state={state}; found one of "
                f"state={found.state}"
            )
        return found


def _decoded(text: str) -> ListCursor:
    """The cursor `text` encodes; ValueError when malformed (base64, UTF-8, JSON errors are ValueErrors)."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None
    data: Any = json.loads(raw.decode())
    if not (isinstance(data, list) and len(data) == 3 and all(isinstance(v, str) for v in data[1:])):
        raise ValueError("expected [state, key, id]")
    state, key, sid = data
    if (state is not None and state not in SESSION_STATES) or not 1 <= len(sid) <= _SESSION_ID_CHARS:
        raise ValueError("unknown state or id")
    moment = datetime.fromisoformat(key)
    if moment.tzinfo is None:
        raise ValueError("a naive time")
    return ListCursor(state, moment, sid)


def list_sessions(
    db: Database, state: str | None, offset: int | None, limit: int, cursor: str | None
) -> SessionList:
    """A page of the sessions in `state` (None: all), from `offset` or after `cursor` (default: the first).

    Raises:
        InvalidInput: If the state is unknown, offset < 0, limit < 1, the cursor malformed or of another
            selection, or both offset and cursor are given.
    """
    if state is not None and state not in SESSION_STATES:
        raise InvalidInput(f"expected a state in {SESSION_STATES}; found {state!r:.40}")
    if (offset is not None and offset < 0) or limit < 1:
        raise InvalidInput(f"expected offset >= 0 and limit >= 1; found {offset}, {limit}")
    if offset is not None and cursor is not None:
        raise InvalidInput(f"expected offset or cursor, not both; found {offset} and {cursor!r:.40}")
    after = ListCursor.decode(cursor, state) if cursor is not None else None
    chosen = [] if state is None else [ChatSession.state == state]
    query = _listed(chosen, state)
    if after is not None:
        query = query.where(_after(after))
    with db.session() as s:
        total = int(s.scalar(select(func.count(ChatSession.id)).where(*chosen)) or 0)
        rows = s.execute(query.offset(offset or 0).limit(limit + 1)).all()  # one more: is there a next page?
    items = [_summary(row, int(count), message) for row, count, message in rows[:limit]]
    more = _cursor_after(items[-1], state) if len(rows) > limit else None
    return SessionList(items, total, more)


def _listed(chosen: list[ColumnElement[bool]], state: str | None) -> Any:
    """The sessions with their turn count and last message, in the selection's order."""
    of_session = Turn.session_id == ChatSession.id
    turns = select(func.count(Turn.id)).where(of_session).correlate(ChatSession).scalar_subquery()
    last = (
        select(Turn.message).where(of_session).order_by(Turn.position.desc()).limit(1)
        .correlate(ChatSession).scalar_subquery()
    )  # fmt: skip
    # the queue longest waiting first, any other selection most recently active first
    first = ChatSession.handed_off_at.asc() if state == QUEUE else ChatSession.updated_at.desc()
    return select(ChatSession, turns, last).where(*chosen).order_by(first, ChatSession.id)


def _after(cursor: ListCursor) -> ColumnElement[bool]:
    """The sessions after the cursor's place in its selection's order."""
    if cursor.state == QUEUE:
        key, later = ChatSession.handed_off_at, ChatSession.handed_off_at > cursor.key
    else:
        key, later = ChatSession.updated_at, ChatSession.updated_at < cursor.key
    return or_(later, and_(key == cursor.key, ChatSession.id > cursor.id))


def _cursor_after(last: SessionSummary, state: str | None) -> str | None:
    key = last.handed_off_at if state == QUEUE else last.updated_at
    return None if key is None else ListCursor(state, key, last.id).encode()


def _summary(row: ChatSession, turns: int, last_message: str | None) -> SessionSummary:
    return SessionSummary(
        id=row.id,
        state=row.state,
        handoff_reason=row.handoff_reason,
        handed_off_at=row.handed_off_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        turns=turns,
        last_message=last_message,
    )
