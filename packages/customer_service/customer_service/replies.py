"""The bot's replies as a customer sees them: its own fixed replies, the sources shown with an answer, the
template slots an answer is filled from, and a stored reply as the chat endpoints send it.

    fixed    clarify ("Did you mean “A” [1] or “B” [2]?"), fallback, hand-off, the acknowledgement of a
             message sent while waiting for an agent, and the replies to thanks, greetings, prompts and
             questions about the bot (`OWN_REPLIES`, by `Decision.own_reply`)
    sources  the passages shown with a reply (none for fallback and hand-off, the two offered for clarify)
    json     a reply as `POST /v1/chat` returns it (`reply_json`), and as a stream's events (`replay_events`)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from customer_service.answers import Answer
from customer_service.intents import IntentResult
from customer_service.knowledge import Passage
from customer_service.phrases import closes
from customer_service.policy import Decision
from customer_service.templates import RESERVED_SLOTS

if TYPE_CHECKING:
    from customer_service.planner import Plan

FALLBACK = "I'm not sure I understood that. Could you rephrase it, or tell me a little more?"
HANDOFF = "I'm passing you to a member of our team; a person will reply here shortly."
WAITING = "Thanks, I've added that for our team; a person will be with you shortly."
ACKNOWLEDGEMENT = "Glad to help! Is there anything else I can help you with?"
PROMPT = "What can I help you with?"
GREETING = "Hello! What can I help you with?"
CLOSING = "Alright! If anything else comes up, just write here."
IDENTITY = (
    "I'm the bank's automated assistant, not a person. I can answer questions about your accounts, cards and "
    'banking; if you\'d rather talk to a member of our team, just say "talk to a person".'
)
# a goodbye while waiting for an agent: "a person will be with you shortly" read as if the bot had not heard
WAITING_GOODBYE = "Goodbye! Your conversation stays with our team: a person will reply here if you come back."
# by `Decision.own_reply`
OWN_REPLIES = {
    "acknowledgement": ACKNOWLEDGEMENT,
    "closing": CLOSING,
    "greeting": GREETING,
    "prompt": PROMPT,
    "identity": IDENTITY,
}
SNIPPET_CHARS = 240


@dataclass(frozen=True)
class Source:
    """A passage shown with a reply: `[n]` in the answer cites the n-th source."""

    id: str
    title: str
    snippet: str
    score: float  # the retrieval's: rank fusion (RRF), or the re-ranker's probability
    relevance: float | None = None  # the policy's figure (`Planner`); None in turns stored before it
    # where the passage comes from, as the knowledge base shows it (a document's URL or file name, an FAQ's
    # URL), for a front end to link the citation to; None for an entry given without one, or older turns
    source: str | None = None


@dataclass(frozen=True)
class Reply:
    """The reply to one message, as stored and returned."""

    session_id: str
    turn_id: str
    answer: str
    action: str
    intent: str | None
    confidence: float | None
    sources: list[Source]
    state: str
    mode: str  # template | generated | extractive | fixed


def slots(context: dict[str, str], message: str, top: list[Passage]) -> dict[str, str]:
    """Template slots: the caller's context, then the ones the bot fills itself (`RESERVED_SLOTS`), which
    the context never sets: the message, and the best passage for templates that wrap it
    ("Hi {{ first_name }}! {{ answer }}"); without a passage `answer` and `title` stay undefined."""
    slots = {name: value for name, value in context.items() if name not in RESERVED_SLOTS}
    slots["message"] = message
    if top:
        slots.update(answer=top[0].text, title=top[0].title)
    return slots


def is_fixed(decision: Decision) -> bool:
    """Whether the reply is one of the bot's own (clarify, fallback, hand-off, acknowledgement, prompt)."""
    return decision.action != "answer" or decision.own_reply is not None


def fixed_reply(plan: Plan) -> Answer:
    action = plan.decision.action
    if plan.decision.own_reply is not None:
        return Answer(text=OWN_REPLIES[plan.decision.own_reply], mode="fixed", cited=[])
    if action == "handoff":
        if plan.session.state != "waiting_for_agent":
            return Answer(text=HANDOFF, mode="fixed", cited=[])
        return Answer(text=WAITING_GOODBYE if closes(plan.message) else WAITING, mode="fixed", cited=[])
    if action == "clarify":
        first, second = plan.passages[0], plan.passages[1]
        text = f"Did you mean {_quoted(first)} [1] or {_quoted(second)} [2]?"
        return Answer(text=text, mode="fixed", cited=[0, 1])
    return Answer(text=FALLBACK, mode="fixed", cited=[])


def shown_sources(plan: Plan, limit: int) -> list[Source]:
    """The sources a reply shows: none for fallback and hand-off, the two offered for clarify."""
    action = plan.decision.action
    if action in ("fallback", "handoff"):
        return []
    if action == "clarify":
        return _sources(plan.passages[:2], 2, plan.links)
    return _sources(plan.passages, limit, plan.links)


def _sources(passages: list[Passage], limit: int, links: dict[str, str]) -> list[Source]:
    return [
        Source(
            id=p.id,
            title=_title(p),
            snippet=_snippet(p.text),
            score=round(float(p.score), 4),
            relevance=None if p.relevance is None else round(float(p.relevance), 4),
            source=links.get(p.id),
        )
        for p in passages[:limit]
    ]


def same_question(first: Passage, second: Passage) -> bool:
    """Whether two passages read as the same option (an FAQ file may hold one question with two answers,
    one per product): a clarifying question offering both would read "Did you mean “A” [1] or “A” [2]?"."""
    return _quoted(first).casefold() == _quoted(second).casefold()


def _quoted(passage: Passage) -> str:
    """An option of a clarifying question as the customer reads it: its title on one line in quotation marks
    (not Python's repr, which escaped an apostrophe or a line break with a backslash)."""
    return f"“{' '.join(_title(passage).split())}”"


def _title(passage: Passage) -> str:
    return passage.title or _snippet(passage.text, 80)


def _snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rsplit(" ", 1)[0] + "…"


def intent_json(intent: IntentResult | None) -> dict[str, Any]:
    if intent is None:
        return {"name": None, "confidence": None}
    return {"name": intent.name, "confidence": round(float(intent.confidence), 4)}


def replay_events(reply: Reply) -> list[tuple[str, dict[str, Any]]]:
    """A stored reply as the events of a stream: `meta`, one `delta` with the whole answer, `done`."""
    meta = {
        "session_id": reply.session_id,
        "action": reply.action,
        "intent": reply_json(reply)["intent"],
        "sources": [s.__dict__ for s in reply.sources],
    }
    return [("meta", meta), ("delta", {"text": reply.answer}), ("done", reply_json(reply))]


def reply_json(reply: Reply) -> dict[str, Any]:
    """The reply as `POST /v1/chat` returns it."""
    return {
        "session_id": reply.session_id,
        "turn_id": reply.turn_id,
        "answer": reply.answer,
        "action": reply.action,
        "intent": {
            "name": reply.intent,
            "confidence": None if reply.confidence is None else round(reply.confidence, 4),
        },
        "sources": [s.__dict__ for s in reply.sources],
        "state": reply.state,
        "mode": reply.mode,
    }
