"""Conversations: sessions, their turns and the feedback on them, kept in SQL.

A session is `open` while the bot serves it, `waiting_for_agent` once handed off (the bot then only
acknowledges; an agent takes over through the agent console), and `closed` when an agent resolves it (only a
session handed off is resolved; resolving a closed one again changes nothing). A new message to a closed
session opens it again, and the bot reads it afresh (`history` starts at `reopened_at`: the conversation went
on with a person in between). Every turn is written, with the session's new state, in one transaction, so
what a client was answered is always what is stored.

A session is read with one page of its turns (`TurnWindow`), oldest first: by default its latest 100, which
is what an agent console shows first; the page's `next_cursor` reads the turns before it, and `after` a
turn's position reads those that came later (an agent console polling for new messages). Turns are only ever
appended, so a position is a stable place to continue from.

Transcripts are personal data. `erase` deletes one session with its turns and their feedback (an erasure
request; a session waiting for an agent too: the request is the customer's right, and the agents' console
then finds it gone), and `erase_inactive` a batch of sessions inactive since a time (the retention limit,
`customer_service.retention`), never one waiting for an agent, who still needs it. Nothing else holds their
text: analytics reads the turns, so its figures of the past drop with them. On SQLite the write-ahead log is
then emptied (`Database.checkpoint`), so the text leaves the files too. A message sent later with an erased
session's id starts a new, empty session.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from customer_service.database import Database
from customer_service.session_list import SessionList, list_sessions
from customer_service.tables import ACTIONS, RATINGS, SESSION_STATES, ChatSession, Feedback, Turn
from textcore import Conflict, InvalidInput, NotFound
from textcore.sql import utcnow

SESSION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
TURN_PAGE = 100  # turns a session is read with unless asked for another number
MAX_TURN_PAGE = 500
MAX_POSITION = 2**31 - 1  # turn positions are 32-bit integers in every database
_CURSOR = re.compile(r"^(before|after):(\d{1,10})$")


@dataclass(frozen=True)
class TurnRecord:
    """One stored turn."""

    id: str
    session_id: str
    position: int
    message: str
    query: str
    answer: str
    action: str
    reason: str | None
    awaiting_agent: bool
    intent: str | None
    confidence: float | None
    sources: list[dict[str, Any]]
    latency_ms: float
    created_at: datetime
    idempotency_key: str | None = None  # the client's, for its retries (`customer_service.idempotency`)
    mode: str | None = None  # how the reply was made; None for turns stored before it was kept
    topic: str | None = None  # the question it stands for (`customer_service.followup.topic`); None before


@dataclass(frozen=True)
class TurnWindow:
    """Which turns of a session to read: at most `limit` of them; with neither bound the latest ones, with
    `before` the latest of those before that position, with `after` the earliest of those after it.

    Raises:
        InvalidInput: If `limit` is outside 1..MAX_TURN_PAGE, a position outside 0..MAX_POSITION, or both
            bounds are given.
    """

    limit: int = TURN_PAGE
    before: int | None = None
    after: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_TURN_PAGE:
            raise InvalidInput(f"limit: expected 1 to {MAX_TURN_PAGE} turns; found {self.limit}")
        for name, position in (("before", self.before), ("after", self.after)):
            if position is not None and not 0 <= position <= MAX_POSITION:
                raise InvalidInput(f"{name}: expected a turn position, 0 to {MAX_POSITION}; found {position}")
        if self.before is not None and self.after is not None:
            raise InvalidInput(f"expected one of before and after; found both ({self.before}, {self.after})")

    @classmethod
    def of(cls, limit: int = TURN_PAGE, cursor: str | None = None, after: int | None = None) -> TurnWindow:
        """The window a request asks for: `cursor` from an earlier page's `next_cursor`, or `after`."""
        if cursor is None:
            return cls(limit, after=after)
        if after is not None:
            raise InvalidInput(f"expected a cursor or after, not both; found {cursor!r:.40} and {after}")
        found = _CURSOR.match(cursor)
        if found is None or int(found.group(2)) > MAX_POSITION:
            raise InvalidInput(f"cursor: expected the next_cursor of an earlier page; found {cursor!r:.40}")
        position = int(found.group(2))
        return cls(limit, before=position) if found.group(1) == "before" else cls(limit, after=position)

    def next_cursor(self, page: list[TurnRecord]) -> str:
        """The cursor of the page after `page`, further in this window's direction."""
        if self.after is not None:
            return f"after:{page[-1].position}"
        return f"before:{page[0].position}"


@dataclass(frozen=True)
class SessionRecord:
    """A session and (when asked for) a page of its turns, oldest first.

    `turn_count` is how many turns the session holds; `next_cursor` reads the next page further in the same
    direction (`TurnWindow.of`), None when the page reached the session's first turn (or, read `after` a
    position, its latest).
    """

    id: str
    state: str
    fallback_streak: int
    handoff_reason: str | None
    handed_off_at: datetime | None
    created_at: datetime
    updated_at: datetime
    turns: list[TurnRecord] = field(default_factory=list)
    reopened_at: datetime | None = None  # last opened again after its resolution: the bot's context starts
    turn_count: int = 0
    next_cursor: str | None = None


@dataclass(frozen=True)
class NewTurn:
    """What the bot decided for one message, to be stored."""

    message: str
    query: str
    answer: str
    action: str
    reason: str | None = None  # the policy's
    awaiting_agent: bool = False  # sent while the session waited for an agent: kept for the agent
    intent: str | None = None
    confidence: float | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    latency_ms: float = 0.0
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    idempotency_key: str | None = None  # unique within the session
    mode: str | None = None  # template | generated | extractive | fixed
    topic: str | None = None  # the question it stands for, that a later follow-up is read with


@dataclass(frozen=True)
class Outcome:
    """A turn to store with the session's new state (`Conversations.record_settled`)."""

    turn: NewTurn
    state: str
    fallback_streak: int
    handoff_reason: str | None


def new_session_id() -> str:
    """A fresh random session id."""
    return uuid.uuid4().hex


def session_id_error(session_id: str) -> str | None:
    """Why a client-chosen session id is refused, or None: it must be 1-64 letters, digits, `.`, `_`, `:` or
    `-`, and not `.` or `..` alone, which a URL path cannot carry (`/v1/sessions/..` is `/v1`), so the
    session could be neither read nor erased."""
    if SESSION_ID.match(session_id) and session_id not in (".", ".."):
        return None
    return (
        "expected a session id of 1-64 letters, digits, '.', '_', ':' or '-', other than '.' or '..' "
        f"(a URL path cannot hold those); found {session_id!r:.80}"
    )


def check_session_id(session_id: str) -> str:
    """A client-chosen session id (`session_id_error`).

    Raises:
        InvalidInput: If the id is refused.
    """
    if (error := session_id_error(session_id)) is not None:
        raise InvalidInput(error)
    return session_id


class Conversations:
    """Sessions, turns and feedback in the service's database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def start(self, session_id: str | None) -> SessionRecord:
        """The session with this id (created when new; a closed one is opened again), or a new session."""
        sid = check_session_id(session_id) if session_id is not None else new_session_id()
        with self.db.session() as s:
            row = s.get(ChatSession, sid)
            if row is None:
                try:
                    with s.begin_nested():  # two first messages of one new session may race here
                        s.add(ChatSession(id=sid, state="open", fallback_streak=0))
                except IntegrityError:
                    pass  # the other request created it: continue with its row
                row = _existing(s, sid)
            elif row.state == "closed":
                row.state, row.fallback_streak, row.handoff_reason, row.handed_off_at = "open", 0, None, None
                row.reopened_at = utcnow()  # what the bot said before is not the context of what follows
            s.flush()
            return _session(row)

    def history(self, session_id: str, last: int, since: datetime | None = None) -> list[TurnRecord]:
        """The session's last `last` turns after `since`, oldest first.

        `since`: when the session was last opened again (`SessionRecord.reopened_at`). An agent resolved it
        before (and the messages sent while it waited were theirs), so the bot starts afresh: the next
        message is neither a follow-up of nor an answer to what the bot said before.
        """
        if last <= 0:
            return []
        chosen = [Turn.session_id == session_id]
        if since is not None:
            chosen.append(Turn.created_at > since)
        with self.db.session() as s:
            rows = s.scalars(select(Turn).where(*chosen).order_by(Turn.position.desc()).limit(last)).all()
            return [_turn(r) for r in reversed(rows)]

    def record(
        self,
        session_id: str,
        turn: NewTurn,
        *,
        state: str,
        fallback_streak: int,
        handoff_reason: str | None,
        seen_state: str | None = None,
    ) -> tuple[TurnRecord, str]:
        """Store a turn and the session's new state in one transaction; returns the turn and the state
        (`record_settled`, with the outcome settled beforehand)."""
        outcome = Outcome(turn, state, fallback_streak, handoff_reason)
        return self.record_settled(session_id, lambda _streak: outcome, seen_state=seen_state)

    def record_settled(
        self, session_id: str, settle: Callable[[int], Outcome], *, seen_state: str | None = None
    ) -> tuple[TurnRecord, str]:
        """Store a turn and the session's new state in one transaction; returns the turn and the state.

        `settle`: the outcome, given the session's fallback streak as it stands under the session's lock
        (turns of one session stored at once take turns there, so each counts from the one before it).

        `seen_state`: the state the turn was planned under. When the session's state changed since (an
        agent took it over or closed it while the bot composed its answer), that newer change wins and the
        outcome's state and hand-off reason are not applied.

        Raises:
            InvalidInput: If the outcome's action or state is unknown.
            Conflict: If the session already has a turn with the turn's idempotency key (another replica
                answered a try of the same message meanwhile).
        """
        with self.db.session() as s:
            row = _locked_session(s, session_id)
            outcome = settle(row.fallback_streak)
            turn, state = outcome.turn, outcome.state
            if turn.action not in ACTIONS or state not in SESSION_STATES:
                raise InvalidInput(
                    f"expected an action in {ACTIONS} and a state in {SESSION_STATES}; found "
                    f"{turn.action!r}, {state!r}"
                )
            if turn.idempotency_key is not None and _keyed(s, session_id, turn.idempotency_key) is not None:
                raise Conflict(
                    f"expected one answer per Idempotency-Key; session {session_id!r} already has a turn for "
                    f"{turn.idempotency_key!r} (another try of the message was answered meanwhile): send "
                    "the message again with the key to get that turn"
                )
            last = s.scalar(
                select(Turn.position)
                .where(Turn.session_id == session_id)
                .order_by(Turn.position.desc())
                .limit(1)
            )
            stored = Turn(
                id=turn.id,
                session_id=session_id,
                position=0 if last is None else last + 1,
                message=turn.message,
                query=turn.query,
                answer=turn.answer,
                action=turn.action,
                reason=turn.reason,
                awaiting_agent=turn.awaiting_agent,
                intent=turn.intent,
                confidence=turn.confidence,
                sources=turn.sources,
                latency_ms=turn.latency_ms,
                created_at=utcnow(),
                idempotency_key=turn.idempotency_key,
                mode=turn.mode,
                topic=turn.topic,
            )
            s.add(stored)
            if seen_state is None or row.state == seen_state:
                if state == "waiting_for_agent" and row.state != state:
                    row.handed_off_at = utcnow()
                row.state = state
                if outcome.handoff_reason is not None:
                    row.handoff_reason = outcome.handoff_reason
            row.fallback_streak, row.updated_at = outcome.fallback_streak, utcnow()
            s.flush()
            return _turn(stored), row.state

    def keyed_turn(self, session_id: str, key: str) -> tuple[TurnRecord, str] | None:
        """The session's turn stored with this idempotency key and the session's state now, or None (no such
        turn, or no such session)."""
        with self.db.session() as s:
            row = _keyed(s, session_id, key)
            state = s.scalar(select(ChatSession.state).where(ChatSession.id == session_id))
            return None if row is None or state is None else (_turn(row), state)

    def get(self, session_id: str, window: TurnWindow | None = None) -> SessionRecord:
        """A session with a page of its turns (default: its latest `TURN_PAGE`).

        Raises:
            NotFound: If there is no such session.
        """
        with self.db.session() as s:
            return _with_turns(s, _existing(s, session_id), window or TurnWindow())

    def sessions(
        self, state: str | None = None, offset: int | None = None, limit: int = 50, cursor: str | None = None
    ) -> SessionList:
        """A page of sessions, how many match and the next page's cursor: the agents' queue
        (``waiting_for_agent``) longest waiting first, any other selection most recently active first;
        from `offset`, or after an earlier page's `next_cursor` (`customer_service.session_list`).

        Raises:
            InvalidInput: If the state is unknown, offset < 0, limit < 1, the cursor is malformed, or both
                offset and cursor are given.
        """
        return list_sessions(self.db, state, offset, limit, cursor)

    def hand_off(self, session_id: str, reason: str) -> SessionRecord:
        """Put a session in the agents' queue (from the agent console or the bot's policy); returns it with
        its latest turns, as `get` does."""
        with self.db.session() as s:
            row = _locked_session(s, session_id)
            if row.state == "closed":
                raise Conflict(f"expected an open session to hand off; session {session_id!r} is closed")
            if row.state != "waiting_for_agent":  # one already queued keeps its place
                row.handed_off_at = utcnow()
            row.state, row.handoff_reason, row.updated_at = "waiting_for_agent", reason, utcnow()
            s.flush()
            return _with_turns(s, row, TurnWindow())

    def resolve(self, session_id: str) -> SessionRecord:
        """Close a session waiting for an agent (who has dealt with it); returns it with its latest turns, as
        `get` does. A closed session is returned as it is (a retried resolve changes nothing: its last
        activity, which retention erases by, stays).

        Raises:
            NotFound: If there is no such session.
            Conflict: If the session is open: the bot serves it, no agent was asked (or the customer has
                opened it again since it was resolved).
        """
        with self.db.session() as s:
            row = _locked_session(s, session_id)
            if row.state == "open":
                raise Conflict(
                    f"expected a session waiting for an agent to resolve; session {session_id!r} is open "
                    "(the bot is serving it: hand it off first)"
                )
            if row.state != "closed":
                row.state, row.fallback_streak, row.updated_at = "closed", 0, utcnow()
                s.flush()
            return _with_turns(s, row, TurnWindow())

    def erase(self, session_id: str) -> None:
        """Delete a session, its turns and their feedback, whatever its state; then empty SQLite's log.

        Raises:
            NotFound: If there is no such session (never was, or already erased).
        """
        with self.db.session() as s:
            _locked_session(s, session_id)  # a turn being stored meanwhile is stored first, then erased
            _erase(s, [session_id])
        self.db.checkpoint()

    def erase_inactive(self, before: datetime, limit: int) -> int:
        """Delete at most `limit` sessions last active before `before`, not waiting for an agent, with their
        turns and feedback, in one transaction (least recently active first); returns how many.

        On PostgreSQL sessions another transaction holds are skipped (``SKIP LOCKED``): two replicas share
        the work, and a session being written to is left for the next pass.
        """
        with self.db.session() as s:
            ids = list(
                s.scalars(
                    select(ChatSession.id)
                    .where(ChatSession.updated_at < before, ChatSession.state != "waiting_for_agent")
                    .order_by(ChatSession.updated_at, ChatSession.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            return _erase(s, ids)

    def feedback(self, turn_id: str, rating: str, comment: str | None) -> None:
        """Rate a turn (a later rating of the same turn replaces the earlier one).

        Ratings of one turn sent at once (a double click, a retry, two replicas) take turns on the turn's row
        (``FOR UPDATE`` on PostgreSQL; SQLite: BEGIN IMMEDIATE), so the later one replaces the earlier one
        rather than both inserting and one failing on the feedback's key.

        Raises:
            InvalidInput: If the rating is not up or down.
            NotFound: If there is no such turn.
        """
        if rating not in RATINGS:
            raise InvalidInput(f"expected rating one of {', '.join(RATINGS)}; found {rating!r:.40}")
        with self.db.session() as s:
            if s.scalar(select(Turn.id).where(Turn.id == turn_id).with_for_update()) is None:
                raise NotFound(f"expected an existing turn id; found no turn {turn_id!r:.80}")
            row = s.get(Feedback, turn_id)
            if row is None:
                s.add(Feedback(turn_id=turn_id, rating=rating, comment=comment))
            else:
                row.rating, row.comment, row.created_at = rating, comment, utcnow()


def _existing(s: Session, session_id: str) -> ChatSession:
    row = s.get(ChatSession, session_id)
    if row is None:
        raise NotFound(f"expected an existing session id; found no session {session_id!r:.80}")
    return row


def _keyed(s: Session, session_id: str, key: str) -> Turn | None:
    return s.scalar(select(Turn).where(Turn.session_id == session_id, Turn.idempotency_key == key))


def _locked_session(s: Session, session_id: str) -> ChatSession:
    # FOR UPDATE on PostgreSQL: replicas writing turns of one session take turns (SQLite: BEGIN IMMEDIATE).
    row = s.scalar(select(ChatSession).where(ChatSession.id == session_id).with_for_update())
    if row is None:
        raise NotFound(f"expected an existing session id; found no session {session_id!r:.80}")
    return row


def _erase(s: Session, session_ids: list[str]) -> int:
    """Delete the sessions; the database deletes their turns and the turns' feedback with them (``ON DELETE
    CASCADE``; `textcore.sql` turns SQLite's foreign keys on for every connection). Returns how many."""
    if not session_ids:
        return 0
    plain = {"synchronize_session": False}  # no loaded objects to keep in step: the transaction ends here
    deleted = s.execute(delete(ChatSession).where(ChatSession.id.in_(session_ids)), execution_options=plain)
    return cast(CursorResult[Any], deleted).rowcount


def _with_turns(s: Session, row: ChatSession, window: TurnWindow) -> SessionRecord:
    """The session with the window's page of turns, oldest first, its turn count and the next cursor."""
    query = select(Turn).where(Turn.session_id == row.id)
    if window.after is not None:  # the earliest after the position
        query = query.where(Turn.position > window.after).order_by(Turn.position)
    else:  # the latest (before the position)
        bounded = query.where(Turn.position < window.before) if window.before is not None else query
        query = bounded.order_by(Turn.position.desc())
    rows = s.scalars(query.limit(window.limit + 1)).all()  # one more: is there a next page?
    page = [_turn(t) for t in rows[: window.limit]]
    if window.after is None:
        page.reverse()
    count = int(s.scalar(select(func.count(Turn.id)).where(Turn.session_id == row.id)) or 0)
    more = window.next_cursor(page) if len(rows) > window.limit else None
    return replace(_session(row, page), turn_count=count, next_cursor=more)


def _session(row: ChatSession, turns: list[TurnRecord] | None = None) -> SessionRecord:
    return SessionRecord(
        id=row.id,
        state=row.state,
        fallback_streak=row.fallback_streak,
        handoff_reason=row.handoff_reason,
        handed_off_at=row.handed_off_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        turns=turns or [],
        reopened_at=row.reopened_at,
    )


def _turn(row: Turn) -> TurnRecord:
    return TurnRecord(
        id=row.id,
        session_id=row.session_id,
        position=row.position,
        message=row.message,
        query=row.query,
        answer=row.answer,
        action=row.action,
        reason=row.reason,
        awaiting_agent=row.awaiting_agent,
        intent=row.intent,
        confidence=row.confidence,
        sources=list(row.sources),
        latency_ms=row.latency_ms,
        created_at=row.created_at,
        idempotency_key=row.idempotency_key,
        mode=row.mode,
        topic=row.topic,
    )
