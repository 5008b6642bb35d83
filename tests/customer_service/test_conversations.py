"""Sessions, turns, feedback and analytics on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TypedDict

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from customer_service.analytics import analytics
from customer_service.bot import DECLINED_OPTIONS, HANDOFF, WAITING
from customer_service.conversations import Conversations, NewTurn, TurnWindow
from customer_service.database import Database
from customer_service.policy import NOT_HELPED, REPEATED_FALLBACK
from customer_service.tables import Base, Turn
from textcore import Conflict, InvalidInput, NotFound
from textcore.sql import utcnow

VERSION_TABLE = "customer_service_alembic_version"  # the name migrations/env.py gives alembic's table


def _turn(message: str, action: str = "answer", **more: object) -> NewTurn:
    return NewTurn(message=message, query=message, answer=f"re: {message}", action=action, **more)  # type: ignore[arg-type]


def test_sessions_turns_and_states(database: Database) -> None:
    conversations = Conversations(database)
    session = conversations.start(None)
    assert session.state == "open" and len(session.id) == 32
    assert conversations.start(session.id).id == session.id  # the same session continues
    first, _ = conversations.record(session.id, _turn("hello", intent="greeting", confidence=0.9),
                                 state="open", fallback_streak=0, handoff_reason=None)  # fmt: skip
    conversations.record(session.id, _turn("???", "fallback"), state="open", fallback_streak=1,
                         handoff_reason=None)  # fmt: skip
    stored = conversations.get(session.id)
    assert [t.position for t in stored.turns] == [0, 1]
    assert stored.turns[0].id == first.id and stored.turns[0].intent == "greeting"
    assert stored.fallback_streak == 1
    assert [t.message for t in conversations.history(session.id, 1)] == ["???"]

    handed = conversations.hand_off(session.id, "requested by an agent")
    assert (handed.state, handed.handoff_reason) == ("waiting_for_agent", "requested by an agent")
    closed = conversations.resolve(session.id)
    assert closed.state == "closed"
    with pytest.raises(Conflict):
        conversations.hand_off(session.id, "again")
    # a new message opens a closed session again, with a fresh streak
    reopened = conversations.start(session.id)
    assert (reopened.state, reopened.fallback_streak) == ("open", 0)


def test_turns_are_read_a_page_at_a_time(database: Database) -> None:
    conversations = Conversations(database)
    sid = conversations.start(None).id
    for n in range(7):
        conversations.record(sid, _turn(f"m{n}"), state="open", fallback_streak=0, handoff_reason=None)
    page = conversations.get(sid, TurnWindow(limit=3))  # the latest, oldest first
    assert [t.message for t in page.turns] == ["m4", "m5", "m6"] and page.turn_count == 7
    page = conversations.get(sid, TurnWindow.of(3, page.next_cursor))
    assert [t.position for t in page.turns] == [1, 2, 3] and page.next_cursor is not None
    page = conversations.get(sid, TurnWindow.of(3, page.next_cursor))
    assert [t.position for t in page.turns] == [0] and page.next_cursor is None
    page = conversations.get(sid, TurnWindow.of(2, after=2))  # forward from a position
    assert [t.position for t in page.turns] == [3, 4] and page.next_cursor is not None
    page = conversations.get(sid, TurnWindow.of(2, page.next_cursor))
    assert [t.position for t in page.turns] == [5, 6] and page.next_cursor is None
    assert len(conversations.get(sid).turns) == 7 and len(conversations.hand_off(sid, "agent").turns) == 7
    assert len(conversations.resolve(sid).turns) == 7
    refused: list[Callable[[], TurnWindow]] = [
        lambda: TurnWindow(limit=0),
        lambda: TurnWindow(limit=501),
        lambda: TurnWindow(after=-1),
        lambda: TurnWindow(before=1, after=1),
        lambda: TurnWindow.of(3, "before:x"),
        lambda: TurnWindow.of(3, "after:2147483648"),
        lambda: TurnWindow.of(3, "before:2", after=1),
    ]
    for bad in refused:
        with pytest.raises(InvalidInput):
            bad()


def test_a_state_change_made_while_a_turn_was_composed_wins(database: Database) -> None:
    conversations = Conversations(database)
    sid = conversations.start(None).id  # the bot plans its turn on an open session ...
    conversations.hand_off(sid, "taken over by an agent")  # ... an agent takes it meanwhile ...
    turn, state = conversations.record(  # ... and the bot's turn is stored after that
        sid, _turn("hello"), state="open", fallback_streak=0, handoff_reason=None, seen_state="open"
    )
    stored = conversations.get(sid)
    assert state == stored.state == "waiting_for_agent"
    assert stored.handoff_reason == "taken over by an agent" and stored.turns[-1].id == turn.id

    conversations.resolve(sid)  # closed while a turn planned on the waiting session is composed
    _, state = conversations.record(
        sid,
        _turn("still there?", "handoff"),
        state="waiting_for_agent",
        fallback_streak=0,
        handoff_reason=None,
        seen_state="waiting_for_agent",
    )
    assert state == conversations.get(sid).state == "closed"


def test_first_messages_of_one_new_session_racing_all_get_that_session(database: Database) -> None:
    conversations = Conversations(database)
    barrier = threading.Barrier(8)

    def first_message() -> str:
        barrier.wait()  # all eight look the session up before any has created it
        return conversations.start("widget-7:new").id

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda _: first_message(), range(8)))
    assert ids == ["widget-7:new"] * 8
    assert conversations.get("widget-7:new").state == "open"


def test_client_chosen_ids_and_unknown_ids(database: Database) -> None:
    conversations = Conversations(database)
    assert conversations.start("widget-42:abc").id == "widget-42:abc"
    with pytest.raises(InvalidInput, match="session id"):
        conversations.start("bad id with spaces")
    for dots in (".", ".."):  # a URL path cannot carry them: the session could not be read or erased
        with pytest.raises(InvalidInput, match=r"other than '\.' or '\.\.'"):
            conversations.start(dots)
    assert conversations.start("...").id == "..."
    with pytest.raises(NotFound):
        conversations.get("nope")
    with pytest.raises(NotFound):
        conversations.resolve("nope")
    with pytest.raises(NotFound):
        conversations.feedback("no-such-turn", "up", None)


def test_feedback_and_analytics(database: Database) -> None:
    conversations = Conversations(database)
    sid = conversations.start(None).id
    answered, _ = conversations.record(
        sid, _turn("card fees"), state="open", fallback_streak=0, handoff_reason=None
    )
    for message in ("Where is the moon?", "where is the   MOON?", "weather today"):
        conversations.record(
            sid, _turn(message, "fallback"), state="open", fallback_streak=1, handoff_reason=None
        )
    conversations.record(sid, _turn("a person please", "handoff", reason="customer asked for a person"),
                         state="waiting_for_agent", fallback_streak=0,
                         handoff_reason="customer asked for a person")  # fmt: skip
    for message in ("hello?", "Where is the moon?"):  # kept for the agent, only acknowledged
        conversations.record(sid, _turn(message, "handoff", awaiting_agent=True), state="waiting_for_agent",
                             fallback_streak=0, handoff_reason=None)  # fmt: skip
    conversations.feedback(answered.id, "down", "not what I asked")
    conversations.feedback(answered.id, "up", None)  # replaces the first rating
    with pytest.raises(InvalidInput):
        conversations.feedback(answered.id, "meh", None)

    figures = analytics(database, days=1)
    assert figures.turns == 7 and figures.sessions == 1 and figures.awaiting_agent == 2
    # rates are of the messages the bot handled: the two sent to the agents' queue are not hand-offs
    assert figures.actions == {"answer": 1, "clarify": 0, "fallback": 3, "handoff": 1}
    assert figures.rates["fallback"] == pytest.approx(0.6)
    assert figures.rates["handoff"] == pytest.approx(0.2)
    assert figures.top_unanswered[0].question == "where is the moon?"
    assert figures.top_unanswered[0].count == 2  # not the agent's copy
    assert "hello?" not in {u.question for u in figures.top_unanswered}
    turns = conversations.get(sid).turns
    assert turns[4].reason == "customer asked for a person" and not turns[4].awaiting_agent
    assert [t.awaiting_agent for t in turns[5:]] == [True, True] and turns[5].reason is None
    assert figures.feedback == {"up": 1, "down": 0}
    assert conversations.get(sid).handoff_reason == "customer asked for a person"


def test_ratings_of_one_turn_sent_at_once_all_succeed_and_the_turn_keeps_one(database: Database) -> None:
    # A double click or a retried request rates a turn twice at once: each rating replaces the other, none
    # fails on the feedback's key (on PostgreSQL both inserted and one got a 409 "retry it").
    conversations = Conversations(database)
    sid = conversations.start(None).id
    for round_ in range(4):
        turn, _ = conversations.record(
            sid, _turn(f"card fees {round_}"), state="open", fallback_streak=0, handoff_reason=None
        )
        barrier = threading.Barrier(8)

        def rate(n: int, turn_id: str = turn.id, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()  # all eight find no rating before any has stored one
            conversations.feedback(turn_id, ("up", "down")[n % 2], f"click {n}")

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(rate, range(8)))  # re-raises a rating that failed
    assert sum(analytics(database, days=1).feedback.values()) == 4  # one rating per turn


def test_unanswered_questions_are_grouped_alike_whatever_their_case(database: Database) -> None:
    # SQLite's lower() folds ASCII letters only: grouping in SQL listed "ÉPARGNE?" apart from "épargne?"
    # there, and not on PostgreSQL; the figures must not depend on the backend
    conversations = Conversations(database)
    sid = conversations.start(None).id
    for message in ("ÉPARGNE?", "épargne?", " Épargne? ", "Überweisung", "überweisung", "ÜBERWEISUNG",
                    "straße", "STRASSE", "où  est   MA carte", "OÙ EST MA CARTE"):  # fmt: skip
        conversations.record(sid, _turn(message, "fallback"), state="open", fallback_streak=1,
                             handoff_reason=None)  # fmt: skip
    figures = analytics(database, days=1)
    assert [(u.question, u.count) for u in figures.top_unanswered] == [
        ("épargne?", 3),
        ("überweisung", 3),
        ("où est ma carte", 2),
        ("strasse", 2),
    ]


def test_replies_to_the_last_answer_are_no_unanswered_questions(database: Database) -> None:
    # "it didn't work", "neither", "none of them" are fallbacks no FAQ answers: they crowded the questions a
    # content team should write FAQs for out of "top unanswered"; they still count as fallbacks
    conversations = Conversations(database)
    sid = conversations.start(None).id
    replies = [
        ("it didn't work", NOT_HELPED),
        ("neither", DECLINED_OPTIONS),
        ("none of them", DECLINED_OPTIONS),
        ("thanks for nothing", "no relevant passage (best 0.12 < 0.35)"),  # sent before any answer
        ("Where is the moon?", "out of scope"),
        ("where is the moon?", "no relevant passage (best 0.20 < 0.35)"),
    ]
    for message, reason in replies:
        turn = _turn(message, "fallback", reason=reason)
        conversations.record(sid, turn, state="open", fallback_streak=1, handoff_reason=None)
    gave_up = f"2 {REPEATED_FALLBACK} ({NOT_HELPED})"  # the second in a row goes to a person
    turn = _turn("still not working", "handoff", reason=gave_up)
    conversations.record(sid, turn, state="waiting_for_agent", fallback_streak=0, handoff_reason=gave_up)
    figures = analytics(database, days=1)
    assert figures.actions["fallback"] == 6 and figures.actions["handoff"] == 1
    assert [(u.question, u.count) for u in figures.top_unanswered] == [("where is the moon?", 2)]


def test_mean_latency_is_of_the_messages_the_bot_handled(database: Database) -> None:
    # a message to the agents' queue is only acknowledged, at once: counting it diluted the bot's latency
    conversations = Conversations(database)
    sid = conversations.start(None).id
    for latency in (100.0, 200.0):
        conversations.record(sid, _turn("card fees", latency_ms=latency), state="open", fallback_streak=0,
                             handoff_reason=None)  # fmt: skip
    for _ in range(3):
        conversations.record(sid, _turn("hello?", "handoff", awaiting_agent=True, latency_ms=1.0),
                             state="waiting_for_agent", fallback_streak=0, handoff_reason=None)  # fmt: skip
    figures = analytics(database, days=1)
    assert figures.turns == 5 and figures.awaiting_agent == 3
    assert figures.mean_latency_ms == 150.0
    only_waiting = Conversations(database).start(None).id
    conversations.record(only_waiting, _turn("anyone?", "handoff", awaiting_agent=True, latency_ms=1.0),
                         state="waiting_for_agent", fallback_streak=0, handoff_reason=None)  # fmt: skip
    assert analytics(database, days=1).mean_latency_ms == 150.0


def test_the_agents_queue_lists_waiting_sessions_longest_waiting_first(database: Database) -> None:
    conversations = Conversations(database)
    first, second, idle = (conversations.start(sid).id for sid in ("first", "second", "idle"))
    conversations.record(idle, _turn("hello"), state="open", fallback_streak=0, handoff_reason=None)
    conversations.record(second, _turn("a person please", "handoff"), state="waiting_for_agent",
                         fallback_streak=0, handoff_reason="customer asked for a person")  # fmt: skip
    time.sleep(0.01)
    conversations.hand_off(first, "VIP customer")  # from the agent console
    time.sleep(0.01)
    conversations.record(second, _turn("anyone there?", "handoff", awaiting_agent=True),
                         state="waiting_for_agent", fallback_streak=0, handoff_reason=None)  # fmt: skip
    conversations.hand_off(second, "escalated")  # already queued: keeps its place

    listed = conversations.sessions("waiting_for_agent")
    queue, total = listed.items, listed.total
    assert total == 2 and [q.id for q in queue] == [second, first]
    oldest, newest = queue
    assert (oldest.turns, oldest.last_message, oldest.handoff_reason) == (2, "anyone there?", "escalated")
    assert (newest.turns, newest.last_message) == (0, None)
    assert oldest.handed_off_at is not None and newest.handed_off_at is not None
    assert oldest.handed_off_at < newest.handed_off_at
    page = conversations.sessions(None, offset=1, limit=1)
    assert page.total == 3 and len(page.items) == 1

    conversations.resolve(second)
    assert [q.id for q in conversations.sessions("waiting_for_agent").items] == [first]
    assert conversations.start(second).handed_off_at is None  # the customer is back with the bot
    queries: list[SessionQuery] = [{"state": "lost"}, {"offset": -1}, {"limit": 0}]
    for query in queries:
        with pytest.raises(InvalidInput):
            conversations.sessions(**query)


class SessionQuery(TypedDict, total=False):
    """What `Conversations.sessions` is asked for."""

    state: str
    offset: int
    limit: int


def test_a_turn_is_found_by_its_idempotency_key_which_its_session_holds_once(database: Database) -> None:
    conversations = Conversations(database)
    sid, other = conversations.start("widget-1").id, conversations.start("widget-2").id
    kept = {"state": "open", "fallback_streak": 0, "handoff_reason": None}
    first, _ = conversations.record(sid, _turn("hello", idempotency_key="k-1", mode="generated"), **kept)  # type: ignore[arg-type]
    for _ in range(2):  # turns without a key never clash
        conversations.record(sid, _turn("no key"), **kept)  # type: ignore[arg-type]
    found = conversations.keyed_turn(sid, "k-1")
    assert found is not None
    assert (found[0].id, found[0].message, found[0].mode, found[1]) == (
        first.id,
        "hello",
        "generated",
        "open",
    )
    assert conversations.keyed_turn(other, "k-1") is None  # a key belongs to its session
    assert conversations.keyed_turn("no-such-session", "k-1") is None
    with pytest.raises(Conflict, match="already has a turn for 'k-1'"):  # another replica's try, meanwhile
        conversations.record(sid, _turn("hello", idempotency_key="k-1"), **kept)  # type: ignore[arg-type]
    conversations.record(other, _turn("hello", idempotency_key="k-1"), **kept)  # type: ignore[arg-type]
    assert (conversations.get(sid).turn_count, conversations.get(other).turn_count) == (3, 1)
    with pytest.raises(IntegrityError), database.session() as s:  # the database holds it too
        s.add(Turn(id="dup", session_id=sid, position=9, message="m", query="m", answer="a", action="answer",
                   sources=[], latency_ms=0.0, created_at=utcnow(), idempotency_key="k-1"))  # fmt: skip


def test_migrations_build_exactly_the_models(database: Database) -> None:
    database.migrate()  # a second upgrade is a no-op
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        assert compare_metadata(context, Base.metadata) == []


def test_upgrading_marks_earlier_messages_and_sessions_of_the_agents_queue(database_url: str) -> None:
    # a database at the first schema, holding a hand-off and a message acknowledged while waiting
    database = Database(database_url)
    config = Config()
    config.set_main_option("script_location", str(database.migrations))
    try:
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0001")
            now = datetime(2026, 11, 30)
            connection.execute(text("INSERT INTO sessions VALUES ('s', 'waiting_for_agent', 0, 'asked', "
                                    ":now, :now)"), {"now": now})  # fmt: skip
            connection.execute(text("INSERT INTO sessions VALUES ('o', 'open', 0, NULL, :now, :now)"),
                               {"now": now})  # fmt: skip
            for position, answer in enumerate((HANDOFF, WAITING)):
                connection.execute(
                    text("INSERT INTO turns VALUES (:id, 's', :position, 'm', 'm', :answer, 'handoff', "
                         "NULL, NULL, '[]', 0.0, :now)"),
                    {"id": f"t{position}", "position": position, "answer": answer, "now": now},
                )  # fmt: skip
        database.migrate()
        session = Conversations(database).get("s")
        assert [(t.action, t.awaiting_agent, t.reason) for t in session.turns] == [
            ("handoff", False, None),
            ("handoff", True, None),
        ]
        # a session already waiting joins the queue at its last change; others have no hand-off time
        assert session.handed_off_at == session.updated_at
        assert Conversations(database).get("o").handed_off_at is None
    finally:
        database.dispose()
