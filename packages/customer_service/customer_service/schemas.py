"""Request and response bodies of the customer-service API (pydantic v2).

Inputs forbid unknown fields and bound every string, list and mapping. The message length the operator
configures (``max_message_chars``) is checked by the bot with a 413 that says the limit; the bounds here are
the hard ceilings. Every text that is stored (chat messages and context values, feedback comments, hand-off
reasons, knowledge-base entries and documents) holds no control characters but tab, newline and carriage
return (`textcore.printable`), checked as sent, before surrounding whitespace is stripped: PostgreSQL
cannot store NUL, and a streamed reply is already under way when its turn is stored, too late to refuse the
message with a 422.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)

from customer_service.analytics import Analytics
from customer_service.conversations import SESSION_ID, SessionRecord, session_id_error
from customer_service.session_list import SessionList
from customer_service.templates import RESERVED_SLOTS
from textcore.printable import Printable

_INPUT = ConfigDict(extra="forbid")


def _session_id(value: str) -> str:
    if (error := session_id_error(value)) is not None:
        raise ValueError(error)
    return value


# a client-chosen session id: refused with a 422 naming the rule (`conversations.session_id_error`)
SessionId = Annotated[
    str,
    AfterValidator(_session_id),
    WithJsonSchema(
        {"type": "string", "pattern": SESSION_ID.pattern, "not": {"enum": [".", ".."]}, "maxLength": 64}
    ),
]
Message = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100_000),
    Printable,
]
SlotName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")]
SlotValue = Annotated[str, StringConstraints(max_length=500), Printable]


def _slots(value: dict[str, str]) -> dict[str, str]:
    """Context values for template slots: at most 20, none named like a slot the bot fills itself."""
    if len(value) > 20:
        raise ValueError(f"expected at most 20 context values, found {len(value)}")
    if reserved := sorted(RESERVED_SLOTS & value.keys()):
        raise ValueError(
            f"expected no context value named {', '.join(map(repr, reserved))}: the bot sets "
            f"{', '.join(sorted(RESERVED_SLOTS))} itself"
        )
    return value


class ChatIn(BaseModel):
    """One customer message; without `session_id` a new session starts."""

    model_config = _INPUT

    session_id: SessionId | None = Field(None, description="Continue this session (created when new).")
    message: Message = Field(description="What the customer wrote.")
    context: Annotated[dict[SlotName, SlotValue], AfterValidator(_slots)] = Field(
        default_factory=dict, description='Values for answer-template slots, e.g. {"first_name": "Ana"}.'
    )


class IntentOut(BaseModel):
    name: str | None
    confidence: float | None


class SourceOut(BaseModel):
    id: str
    title: str
    snippet: str
    score: float = Field(
        description="The retrieval's score, for ordering: the rank-fusion (RRF) score (about 0.01-0.03) "
        "without a re-ranker, the re-ranker's probability with one; not comparable to the policy's thresholds"
    )
    relevance: float | None = Field(
        None,
        description="How relevant the policy judged the passage: the re-ranker's probability (0-1) with one, "
        "else the cosine similarity of the question and the passage (about 0.3-0.9; the bot answers from "
        "CS_POLICY__MIN_ANSWER_SCORE, 0.5, or CS_POLICY__MIN_SIMILARITY, 0.45): the figure the reasons of "
        "answers and fallbacks name. Null for an option chosen from a clarifying question asked before "
        "relevance was kept",
    )
    source: str | None = Field(
        None,
        description="Where the passage comes from, as GET /v1/knowledge/{id} shows it: the URL or file name "
        "given with its document or FAQ, for linking the citation to its page. Null for an FAQ or a document "
        "stored without a source, and turns stored before sources were kept",
    )


class ChatOut(BaseModel):
    """The bot's reply; `[n]` in `answer` cites `sources[n-1]`."""

    session_id: str
    turn_id: str
    answer: str
    action: Literal["answer", "clarify", "fallback", "handoff"]
    intent: IntentOut
    sources: list[SourceOut]
    state: Literal["open", "waiting_for_agent", "closed"]
    mode: str = Field(description="template | generated | extractive | fixed")


Comment = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2_000), Printable]


class FeedbackIn(BaseModel):
    model_config = _INPUT

    turn_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    rating: Literal["up", "down"]
    comment: Comment | None = None

    @field_validator("comment")
    @classmethod
    def _blank_is_no_comment(cls, comment: str | None) -> str | None:
        return comment or None  # stripped: a comment of whitespace alone is none


class HandoffIn(BaseModel):
    model_config = _INPUT

    reason: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
        Printable,
    ] = "requested by an agent"


_RECORD = ConfigDict(from_attributes=True)  # built from the domain's dataclasses, field by field


class TurnOut(BaseModel):
    model_config = _RECORD

    id: str
    position: int
    message: str
    query: str
    answer: str
    action: str
    reason: str | None = Field(description="Why the bot chose its action (for agents)")
    awaiting_agent: bool = Field(
        description="Sent while the session waited for an agent: the bot only acknowledged it"
    )
    intent: str | None
    confidence: float | None
    sources: list[dict[str, Any]]
    latency_ms: float
    created_at: datetime


class SessionOut(BaseModel):
    model_config = _RECORD

    id: str
    state: str
    fallback_streak: int
    handoff_reason: str | None
    handed_off_at: datetime | None = Field(description="When the session last went to the agents' queue")
    created_at: datetime
    updated_at: datetime
    turns: list[TurnOut] = Field(
        description="A page of the session's turns, oldest first: by default its latest `limit` (100)"
    )
    turn_count: int = Field(description="How many turns the session holds")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page, further in the same direction (earlier turns; "
        "with `after`, later ones); null when there is nothing further. Opaque"
    )

    @classmethod
    def of(cls, session: SessionRecord) -> SessionOut:
        return cls.model_validate(session)


class SessionSummaryOut(BaseModel):
    model_config = _RECORD

    id: str
    state: str
    handoff_reason: str | None
    handed_off_at: datetime | None
    created_at: datetime
    updated_at: datetime
    turns: int = Field(description="How many messages the session holds")
    last_message: str | None = Field(description="The customer's latest message")


class SessionPage(BaseModel):
    model_config = _RECORD

    items: list[SessionSummaryOut]
    total: int = Field(description="Sessions matching the filter, on every page")
    next_cursor: str | None = Field(
        description="Pass as `cursor` (with the same `state`) for the next page, which continues right after "
        "this one's last session however the list changed meanwhile; null on the last page. Opaque"
    )

    @classmethod
    def of(cls, page: SessionList) -> SessionPage:
        return cls.model_validate(page)


class UnansweredOut(BaseModel):
    model_config = _RECORD

    question: str
    count: int


class AnalyticsOut(BaseModel):
    model_config = _RECORD

    days: int
    sessions: int
    turns: int = Field(description="Every message in the window")
    awaiting_agent: int = Field(description="Messages sent while their session waited for an agent")
    actions: dict[str, int] = Field(description="Of the messages the bot handled (all but awaiting_agent)")
    rates: dict[str, float] = Field(description="Each action's share of the messages the bot handled")
    top_unanswered: list[UnansweredOut]
    feedback: dict[str, int]
    mean_latency_ms: float = Field(
        description="Mean latency of the bot's replies to the messages it handled (the acknowledgements of "
        "messages to the agents' queue, awaiting_agent, are left out)"
    )

    @classmethod
    def of(cls, analytics: Analytics) -> AnalyticsOut:
        return cls.model_validate(analytics)


EntryId = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[^#]+$"),
    Printable,
]
Short = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200), Printable]


class FaqBody(BaseModel):
    """An FAQ's content (the id comes from the path)."""

    model_config = _INPUT

    question: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2_000), Printable
    ]
    answer: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000), Printable
    ]
    category: Short = ""
    # the page the answer comes from (a URL), shown with a citation of the FAQ; "" for none
    source: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2_000), Printable] = ""


class FaqItem(FaqBody):
    """An FAQ to create or replace; without an id it replaces the one stored FAQ with its question, else
    gets an id derived from its question and answer."""

    id: EntryId | None = None


class FaqsIn(BaseModel):
    model_config = _INPUT

    items: list[FaqItem] = Field(min_length=1, max_length=10_000)


class DocumentIn(BaseModel):
    """A document to store as overlapping chunks (replacing the document's earlier chunks)."""

    model_config = _INPUT

    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), Printable]
    text: Annotated[str, StringConstraints(min_length=1, max_length=2_000_000), Printable]
    # None (not given): "html" for an HTML page, "markdown" when a line is a Markdown heading, "html" for
    # text with an HTML block element, else "text" (`chunking.guess_format`)
    format: Literal["markdown", "html", "text"] | None = None
    category: Short = ""
    source: Annotated[str, StringConstraints(max_length=2_000), Printable] = ""


class ChangeOut(BaseModel):
    """What a knowledge-base change did; `version` is the knowledge base's version after it."""

    stored: int
    ids: list[str]
    version: int


class EntryOut(BaseModel):
    id: str
    kind: str
    title: str
    question: str | None
    text: str
    category: str
    document_id: str | None
    position: int
    source: str
    created_at: datetime
    updated_at: datetime


class EntryPage(BaseModel):
    items: list[EntryOut]
    total: int
    version: int


class PassageOut(BaseModel):
    id: str
    kind: str
    title: str
    text: str
    category: str
    document_id: str | None
    score: float
