"""The customer-service SQL schema (SQLAlchemy 2 declarative); alembic migrations in `migrations/` create it.

    knowledge        the knowledge base: FAQ entries and document chunks, one row per retrievable passage
    knowledge_state  one row: the knowledge base's version, bumped by every change (the saved index carries
                     the version it was built from, so a stale index is rebuilt at start)
    sessions         one conversation: its state (open | waiting_for_agent | closed), fallback streak and
                     last hand-off (why, when: the agents' queue is served oldest first); erasing one
                     (`Conversations.erase`, the retention limit) deletes its turns and their feedback too
    turns            one user message and the bot's reply: action and why, intent, sources, latency; a
                     message sent while the session waited for an agent is kept for the agent
                     (`awaiting_agent`): the bot only acknowledged it; the client's idempotency key of
                     the message, unique within the session; the topic a later follow-up is read with
    feedback         a rating (up | down) of a turn by the user or an agent

A document's chunks share its `document_id`; re-ingesting a document replaces all its chunks. Times are
stored as naive UTC and read back timezone-aware (`textcore.sql.UtcDateTime`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from textcore.sql import UtcDateTime, utcnow

ID_LENGTH = 200
IDEMPOTENCY_KEY_LENGTH = 128
KINDS = ("faq", "chunk")
SESSION_STATES = ("open", "waiting_for_agent", "closed")
ACTIONS = ("answer", "clarify", "fallback", "handoff")
RATINGS = ("up", "down")


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime,
        dict[str, Any]: JSON,
        list[dict[str, Any]]: JSON,
    }


class KnowledgeEntry(Base):
    """One retrievable passage: an FAQ (question + answer) or a chunk of a document."""

    __tablename__ = "knowledge"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # faq | chunk
    title: Mapped[str] = mapped_column(Text, default="")  # FAQ question, or document title > section heading
    question: Mapped[str | None] = mapped_column(Text)  # FAQs only
    text: Mapped[str] = mapped_column(Text)  # the FAQ's answer or the chunk's text
    category: Mapped[str] = mapped_column(String(ID_LENGTH), default="")
    document_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True)  # chunks only
    position: Mapped[int] = mapped_column(Integer, default=0)  # chunk number within its document
    source: Mapped[str] = mapped_column(Text, default="")  # file name or URL it came from, as clients see it
    # the server file an ingested document was read from (absolute): ingest's warnings compare it; never shown
    origin: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class KnowledgeState(Base):
    """The single row holding the knowledge base's version."""

    __tablename__ = "knowledge_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ChatSession(Base):
    """One conversation with one customer."""

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_state_handed_off_at", "state", "handed_off_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(24), default="open")
    fallback_streak: Mapped[int] = mapped_column(Integer, default=0)  # fallbacks in a row
    handoff_reason: Mapped[str | None] = mapped_column(Text)
    handed_off_at: Mapped[datetime | None] = mapped_column()  # the last hand-off: the agents' queue order
    # when the customer last opened the session again after its resolution: the bot's context starts there
    reopened_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # the last activity: the retention limit erases by it, the session list orders by it
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, index=True)


class Turn(Base):
    """One user message and the reply."""

    __tablename__ = "turns"
    __table_args__ = (
        Index("ix_turns_session_position", "session_id", "position", unique=True),
        # a client's retry of a message finds its turn by the key (NULLs, turns without one, never clash)
        Index("ix_turns_session_idempotency_key", "session_id", "idempotency_key", unique=True),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)  # 0, 1, ... within the session
    message: Mapped[str] = mapped_column(Text)
    query: Mapped[str] = mapped_column(Text)  # the message rewritten with the context of earlier turns
    # the question the turn stands for, that a later follow-up is read with: for a follow-up the one it was
    # read with ("How do I send money abroad?" for "and to the US?"), else its query; null before 0008
    topic: Mapped[str | None] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(16))  # answer | clarify | fallback | handoff
    reason: Mapped[str | None] = mapped_column(Text)  # the policy's reason, for agents and analytics
    awaiting_agent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    intent: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    confidence: Mapped[float | None] = mapped_column(Float)
    sources: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # the client's Idempotency-Key of the message (`customer_service.idempotency`), and how the reply was
    # made (template | generated | extractive | fixed), which a retry is answered with; null before 0006
    idempotency_key: Mapped[str | None] = mapped_column(String(IDEMPOTENCY_KEY_LENGTH))
    mode: Mapped[str | None] = mapped_column(String(16))


class Feedback(Base):
    """A rating of one turn; a later rating of the same turn replaces it."""

    __tablename__ = "feedback"

    turn_id: Mapped[str] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"), primary_key=True)
    rating: Mapped[str] = mapped_column(String(8))  # up | down
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
