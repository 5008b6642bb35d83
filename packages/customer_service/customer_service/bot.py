"""One chat turn, start to end: understand the message, decide, answer, remember.

    plan     (blocking, in the worker pool) open the session, read the last turns, rewrite a follow-up,
             recognise the intent, retrieve and re-rank passages, score negativity, let the policy decide
             (`customer_service.planner`)
    compose  (async) the answer: a template, grounded generation with citations, or the extractive answer;
             fixed replies for clarify, fallback, hand-off, a message that only thanks or agrees and one
             without a letter or digit (`customer_service.replies`)
    record   (blocking) store the turn with the session's new state in one transaction; once a message is
             planned its turn is stored even when the worker pool is full (`Runner.finish`): refusing it
             then would throw the composed answer away, after a stream had shown it

`Bot.chat` does the three for `POST /v1/chat`; `Bot.stream` does the same for `POST /v1/chat/stream`,
yielding the answer's text as it is generated (a stream that ends early still stores its turn:
`customer_service.turn_stream`). A session waiting for an agent gets an acknowledgement and its message is
kept for the agent: the bot does not talk over a person. A message sent with an idempotency key is stored
with it, and a retry with the key is answered with that turn (`replay`; `customer_service.idempotency`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, ParamSpec, Protocol, TypeVar

from customer_service.answers import Answer, Answerer
from customer_service.clarification import DECLINED_OPTIONS
from customer_service.conversations import Conversations, NewTurn, Outcome
from customer_service.idempotency import Claims, mismatch, needs_session
from customer_service.intents import IntentModel
from customer_service.planner import Plan, Planner
from customer_service.policy import recounted
from customer_service.replies import (
    ACKNOWLEDGEMENT,
    CLOSING,
    FALLBACK,
    GREETING,
    HANDOFF,
    IDENTITY,
    PROMPT,
    WAITING,
    WAITING_GOODBYE,
    Reply,
    Source,
    fixed_reply,
    is_fixed,
    replay_events,
    reply_json,
    shown_sources,
    slots,
)
from customer_service.retrieval import Retriever
from customer_service.sentiment import SentimentScorer
from customer_service.settings import CustomerServiceSettings
from customer_service.turn_stream import CUT_SHORT, TurnStream

# The bot, and what its callers read here: its replies (`customer_service.replies`), the reason of a turn cut
# short and the stream (`customer_service.turn_stream`), the plan (`customer_service.planner`)
__all__ = [
    "ACKNOWLEDGEMENT",
    "CLOSING",
    "CUT_SHORT",
    "DECLINED_OPTIONS",
    "FALLBACK",
    "GREETING",
    "HANDOFF",
    "IDENTITY",
    "PROMPT",
    "WAITING",
    "WAITING_GOODBYE",
    "Bot",
    "Plan",
    "Reply",
    "Runner",
    "Source",
    "TurnStream",
    "replay_events",
    "reply_json",
]

P = ParamSpec("P")
T = TypeVar("T")


class Runner(Protocol):
    """Runs blocking calls off the event loop under a capacity limit (`textcore.web.CapacityLimiter`)."""

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Awaitable[T]: ...

    def finish(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Awaitable[T]:
        """As `run`, but waits for a worker rather than refusing: for the end of a turn already under way."""
        ...


class Bot:
    """The conversation engine; every part is built and owned by the app's lifespan."""

    def __init__(
        self,
        *,
        settings: CustomerServiceSettings,
        conversations: Conversations,
        retriever: Retriever,
        intents: IntentModel | None,
        sentiment: SentimentScorer,
        answerer: Answerer,
        runner: Runner,
    ) -> None:
        # what it reads a message with (retrieval, intents, sentiment) is the planner's alone
        self.planner = Planner(
            settings=settings,
            conversations=conversations,
            retriever=retriever,
            intents=intents,
            sentiment=sentiment,
            answerer=answerer,
        )
        self.settings = settings
        self.conversations = conversations
        self.answerer = answerer
        self.runner = runner
        self.claims = Claims()  # the idempotency keys of the messages being answered

    async def chat(
        self,
        session_id: str | None,
        message: str,
        context: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> Reply:
        """Answer one message; a retry of a message with an idempotency key gets the turn stored for it.

        Raises:
            InvalidInput: If a key comes without a session id, or the key's turn holds another message.
            Conflict: If the message with this key is still being answered.
        """
        if idempotency_key is None:
            return await self._chat(session_id, message, context or {})
        needs_session(session_id, idempotency_key)
        assert session_id is not None
        with self.claims.hold(session_id, idempotency_key):
            stored = await self.runner.run(self.replay, session_id, idempotency_key, message)
            return stored or await self._chat(session_id, message, context or {}, idempotency_key)

    async def _chat(
        self, session_id: str | None, message: str, context: dict[str, str], key: str | None = None
    ) -> Reply:
        plan = await self.runner.run(self.plan, session_id, message, context, key)
        answer = await self._compose(plan)
        return await self.runner.finish(self.record, plan, answer)

    def replay(self, session_id: str, key: str, message: str) -> Reply | None:
        """The reply stored for this key in this session (with the session's state now), or None when none
        is stored (blocking).

        Raises:
            InvalidInput: If the key's turn holds another message.
        """
        found = self.conversations.keyed_turn(session_id, key)
        if found is None:
            return None
        turn, state = found
        if turn.message != message:
            raise mismatch(key, turn.message)
        return Reply(
            session_id=session_id,
            turn_id=turn.id,
            answer=turn.answer,
            action=turn.action,
            intent=turn.intent,
            confidence=turn.confidence,
            sources=[Source(**source) for source in turn.sources],
            state=state,
            mode=turn.mode or "fixed",
        )

    def stream(self, plan: Plan) -> TurnStream:
        """The reply to a planned message as server-sent events (`TurnStream`); the caller closes it."""
        return TurnStream(self, plan)

    def plan(
        self,
        session_id: str | None,
        message: str,
        context: dict[str, str],
        idempotency_key: str | None = None,
    ) -> Plan:
        """Understand a message and decide what to do (blocking: database and models); the turn is to be
        stored with `idempotency_key` (`Planner.plan`).

        Raises:
            PayloadTooLarge: If the message is longer than `max_message_chars` (nothing is stored).
        """
        return self.planner.plan(session_id, message, context, idempotency_key)

    def record(self, plan: Plan, answer: Answer, *, cut_short: bool = False) -> Reply:
        """Store the turn and the session's new state; the reply as stored (blocking).

        The fallback streak is the one stored when the turn is (`policy.recounted`): a fallback may become a
        hand-off there (another message of the session failed meanwhile), or a hand-off after repeated
        fallback a fallback (one was answered meanwhile), with the fixed reply of that action. `cut_short`:
        the stream ended before the reply did; the turn keeps `answer`, what was sent, and says so."""
        shown = shown_sources(plan, self.settings.sources_per_answer)
        waiting = plan.session.state == "waiting_for_agent"

        def settle(stored_streak: int) -> Outcome:
            decision = recounted(plan.decision, stored_streak, self.settings.policy)
            reason = f"{decision.reason}; {CUT_SHORT}" if cut_short else decision.reason
            text = answer.text
            if decision.action != plan.decision.action and not cut_short:
                text = fixed_reply(replace(plan, decision=decision)).text
            handoff = decision.action == "handoff"
            turn = NewTurn(
                message=plan.message,
                query=plan.query,
                answer=text,
                action=decision.action,
                reason=reason,
                awaiting_agent=waiting,
                intent=plan.intent.name if plan.intent else None,
                confidence=plan.intent.confidence if plan.intent else None,
                sources=[s.__dict__ for s in shown],
                latency_ms=round((time.perf_counter() - plan.started) * 1000, 2),
                idempotency_key=plan.idempotency_key,
                mode=answer.mode,
                topic=plan.query if plan.topic is None else plan.topic,
            )
            state = "waiting_for_agent" if handoff else plan.session.state
            handoff_reason = None if waiting or not handoff else decision.reason
            return Outcome(turn, state, decision.fallback_streak, handoff_reason)

        stored, state = self.conversations.record_settled(
            plan.session.id, settle, seen_state=plan.session.state
        )
        return Reply(
            session_id=plan.session.id,
            turn_id=stored.id,
            answer=stored.answer,
            action=stored.action,
            intent=stored.intent,
            confidence=stored.confidence,
            sources=shown,
            state=state,
            mode=answer.mode,
        )

    async def _compose(self, plan: Plan) -> Answer:
        if is_fixed(plan.decision):
            return fixed_reply(plan)
        return await self.answerer.answer(*self.answer_args(plan))

    def answer_args(self, plan: Plan) -> tuple[Any, ...]:
        """What the answerer answers a planned message with: query, template intent, passages, template
        slots and the conversation so far."""
        top = plan.passages[: self.settings.sources_per_answer]
        filled = slots(plan.context, plan.message, top)
        history = [(t.message, t.answer) for t in plan.history]
        return plan.query, self.planner.template_intent(plan.intent), top, filled, history
