"""One chat turn, start to end: understand the message, decide, answer, remember.

    plan     (blocking, in the worker pool) open the session, read the last turns, rewrite a follow-up,
             recognise the intent, retrieve and re-rank passages, score negativity, let the policy decide
    compose  (async) the answer: a template, grounded generation with citations, or the extractive answer;
             fixed replies for clarify, fallback, hand-off, a message that only thanks or agrees and one
             without a letter or digit
    record   (blocking) store the turn with the session's new state in one transaction; once a message is
             planned its turn is stored even when the worker pool is full (`Runner.finish`): refusing it
             then would throw the composed answer away, after a stream had shown it

`Bot.chat` does the three for `POST /v1/chat`; `Bot.stream` does the same for `POST /v1/chat/stream`,
yielding the answer's text as it is generated (a stream that ends early still stores its turn:
`TurnStream`). A session waiting for an agent gets an acknowledgement and its message is kept for the
agent: the bot does not talk over a person. A message sent with an idempotency key is stored with it, and a
retry with the key is answered with that turn (`replay`; `customer_service.idempotency`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, ParamSpec, Protocol, TypeVar

from customer_service.answers import Answer, Answerer
from customer_service.clarification import DECLINED_OPTIONS, chosen_option, declines_options
from customer_service.conversations import Conversations, NewTurn, Outcome, SessionRecord, TurnRecord
from customer_service.followup import LOOKBACK, own_words, points_back_only, rewrite, topical_queries
from customer_service.idempotency import Claims, mismatch, needs_session
from customer_service.intents import IntentModel, IntentResult
from customer_service.knowledge import Passage
from customer_service.phrases import closes, says_not_helped, without_opening
from customer_service.policy import (
    NOT_HELPED,
    Decision,
    by_its_words,
    decide,
    failed,
    recounted,
    relevant_first,
)
from customer_service.retrieval import Retriever
from customer_service.sentiment import SentimentScorer
from customer_service.settings import CustomerServiceSettings
from customer_service.templates import RESERVED_SLOTS
from textcore import PayloadTooLarge

P = ParamSpec("P")
T = TypeVar("T")

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
# how a turn whose stream ended before its reply did is marked in its reason
CUT_SHORT = "the stream ended before the reply did: the answer holds what was sent"


class Runner(Protocol):
    """Runs blocking calls off the event loop under a capacity limit (`textcore.web.CapacityLimiter`)."""

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Awaitable[T]: ...

    def finish(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Awaitable[T]:
        """As `run`, but waits for a worker rather than refusing: for the end of a turn already under way."""
        ...


@dataclass(frozen=True)
class Source:
    """A passage shown with a reply: `[n]` in the answer cites the n-th source."""

    id: str
    title: str
    snippet: str
    score: float  # the retrieval's: rank fusion (RRF), or the re-ranker's probability
    relevance: float | None = None  # the policy's figure (`Bot._relevance`); None in turns stored before it
    # where the passage comes from, as the knowledge base shows it (a document's URL or file name, an FAQ's
    # URL), for a front end to link the citation to; None for an entry given without one, or older turns
    source: str | None = None


@dataclass(frozen=True)
class Plan:
    """What the blocking half of a turn found and decided."""

    session: SessionRecord
    message: str
    query: str
    intent: IntentResult | None
    passages: list[Passage]
    decision: Decision
    history: list[TurnRecord]
    context: dict[str, str]
    started: float = field(default_factory=time.perf_counter)
    idempotency_key: str | None = None  # the client's, stored with the turn
    links: dict[str, str] = field(
        default_factory=dict
    )  # the passages' sources, by id (`KnowledgeBase.sources_of`)
    topic: str | None = None  # what a later follow-up is read with (`followup.topic`); None: the query


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
        self.settings = settings
        self.conversations = conversations
        self.retriever = retriever
        self.intents = intents
        self.sentiment = sentiment
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
        stored with `idempotency_key`.

        Raises:
            PayloadTooLarge: If the message is longer than `max_message_chars` (nothing is stored).
        """
        planned = self._plan(session_id, message, context)
        links = self.retriever.kb.sources_of([p.id for p in planned.passages])
        return replace(planned, idempotency_key=idempotency_key, links=links)

    def _plan(self, session_id: str | None, message: str, context: dict[str, str]) -> Plan:
        started = time.perf_counter()
        limit = self.settings.max_message_chars
        if len(message) > limit:
            raise PayloadTooLarge(f"expected a message of at most {limit} characters; found {len(message)}")
        self.retriever.kb.refresh()  # changes made by the CLI or another replica: visible from this turn on
        session = self.conversations.start(session_id)
        # the turns since the session was last opened again: an agent had resolved it; read further back
        # than history_turns, so that prompts and thanks in between do not push the last topic out of reach
        turns = self.settings.history_turns
        recent = self.conversations.history(session.id, LOOKBACK * turns, session.reopened_at)
        history = recent[-turns:] if turns else []
        if session.state == "waiting_for_agent":
            waiting = Decision("handoff", "waiting for an agent", session.fallback_streak, streak="keep")
            return Plan(session, message, message, None, [], waiting, history, context, started)
        if (chosen := self._chosen(message, history)) is not None:  # "the second one"
            query = chosen[0].title  # what the customer meant
            intent = self.intents.predict([query])[0] if self.intents is not None else None
            decision = Decision("answer", f"chosen from the clarifying question: {chosen[0].id}", 0)
            return Plan(session, message, query, intent, chosen, decision, history, context, started)
        topics = topical_queries(recent)[-turns:] if turns else []
        query = rewrite(message, topics)
        rewritten = query != " ".join(message.split())
        if not rewritten:  # "Hi! 👋 I lost my card": the greeting says nothing of the topic
            query = " ".join(without_opening(message).split())
        topic = topics[-1] if rewritten else query  # a follow-up stands for the question it is read with
        intent = self.intents.predict([query])[0] if self.intents is not None else None
        negativity = self.sentiment.negativity([message])[0]
        intent_template = self._intent_template_renders(intent, message, context)
        policy = self.settings.policy
        settled = by_its_words(message, negativity, session.fallback_streak, intent_template, policy)
        unhelped = _declined(message, history)  # "neither", "that didn't help": not read as a follow-up
        if unhelped is not None and not (settled is not None and settled.action == "handoff"):
            declined = failed(unhelped, session.fallback_streak + 1, policy)
            return Plan(session, message, message, None, [], declined, history, context, started)
        if settled is not None:  # a request for a person, thanks, a prompt: no passage is read or shown
            return Plan(session, message, query, intent, [], settled, history, context, started, topic=topic)
        passages = self.retriever.search(query, k=max(2, self.settings.sources_per_answer))
        relevance = self._relevance(query, passages)
        passages = _judged(passages, relevance)
        # a relevant passage is no cause to fall back; without a re-ranker, a clearly more relevant one leads
        margin = None if self.retriever.reranker is not None else policy.clarify_margin
        order = relevant_first(relevance, self._threshold(), margin)
        passages, relevance = [passages[i] for i in order], [relevance[i] for i in order]
        decision = decide(
            message,
            relevance=relevance,
            entry_ids=[p.document_id or p.id for p in passages],
            out_of_scope=bool(intent and intent.out_of_scope),
            negativity=negativity,
            fallback_streak=session.fallback_streak,
            reranked=self.retriever.reranker is not None,
            settings=policy,
            intent_template=intent_template,
        )
        if decision.template_only:  # the passages found are not relevant: neither cited nor templated
            passages = []
        if decision.action == "clarify" and rewritten:
            decision, passages = self._settle_follow_up(message, decision, passages)
        elif decision.action == "answer" and passages and rewritten and points_back_only(message):
            decision, passages = self._weigh_own_reading(message, decision, passages)
        if decision.action == "clarify" and _same_question(passages[0], passages[1]):
            reason = f"{decision.reason}, of one question: the first answers"
            decision = Decision("answer", reason, 0)
        return Plan(
            session, message, query, intent, passages, decision, history, context, started, topic=topic
        )

    def _chosen(self, message: str, history: list[TurnRecord]) -> list[Passage] | None:
        """The two passages the last turn offered, the chosen one first, when `message` picks one of them."""
        if not history or history[-1].action != "clarify":
            return None
        offered = history[-1].sources[:2]
        choice = chosen_option(message, [str(source.get("title", "")) for source in offered])
        if choice is None:
            return None
        scores = {str(source["id"]): float(source.get("score", 0.0)) for source in offered}
        # the relevance each was offered with (absent from turns stored before it was kept)
        judged = {str(source["id"]): source.get("relevance") for source in offered}
        chosen = str(offered[choice]["id"])
        found = self.retriever.kb.passages([chosen, *(i for i in scores if i != chosen)])
        if not found or found[0].id != chosen:  # deleted since it was offered: read the message afresh
            return None
        return [replace(p, score=scores[p.id], relevance=judged[p.id]) for p in found]

    def _settle_follow_up(
        self, message: str, decision: Decision, passages: list[Passage]
    ) -> tuple[Decision, list[Passage]]:
        """A rewritten follow-up torn between two candidates: its own words choose, when they clearly do.

        "and for business accounts?" after a question on savings accounts retrieves both accounts' FAQs
        about equally; "business accounts?" alone is much closer to one of them, which is then answered.
        """
        first, second = self.retriever.similarities(own_words(message), [p.id for p in passages[:2]])
        margin = self.settings.policy.clarify_margin
        if abs(first - second) < margin:
            return decision, passages
        if second > first:
            passages = [passages[1], passages[0], *passages[2:]]
        reason = f"follow-up: its own words pick one of two close candidates ({max(first, second):.2f})"
        return Decision("answer", reason, 0), passages

    def _weigh_own_reading(
        self, message: str, decision: Decision, passages: list[Passage]
    ) -> tuple[Decision, list[Passage]]:
        """A short message that points back may name a topic of its own: when it finds a relevant passage by
        itself and the rewritten query's answer is not among those, the two readings disagree, and the
        customer is offered both (its own first) rather than answered on the previous topic.

        "Is that mortgage rate fixed?" after a password question: read with that question it finds the
        password FAQ, read alone the mortgage one. "Is it free?" alone finds nothing relevant: the rewrite
        stands.
        """
        alone = self.retriever.search(message, k=max(2, self.settings.sources_per_answer))
        threshold = self._threshold()
        relevance = self._relevance(message, alone)
        judged = _judged(alone, relevance)
        relevant = [p for p, score in zip(judged, relevance, strict=True) if score >= threshold]
        entry = passages[0].document_id or passages[0].id
        if not relevant or entry in {p.document_id or p.id for p in relevant}:
            return decision, passages
        own = relevant[0]
        reason = f"follow-up or a new topic: alone it finds {own.id}, with the previous turn {passages[0].id}"
        return Decision("clarify", reason, 0), [own, passages[0]]

    def _intent_template_renders(
        self, intent: IntentResult | None, message: str, context: dict[str, str]
    ) -> bool:
        """A confident in-scope intent whose template renders with what is known without a passage (and
        cites none: no source is shown with it)."""
        name = self._template_intent(intent)
        if self.answerer.templates is None or name is None:
            return False
        return self.answerer.templated(name, [], _slots(context, message, [])) is not None

    def record(self, plan: Plan, answer: Answer, *, cut_short: bool = False) -> Reply:
        """Store the turn and the session's new state; the reply as stored (blocking).

        The fallback streak is the one stored when the turn is (`policy.recounted`): a fallback may become a
        hand-off there (another message of the session failed meanwhile), or a hand-off after repeated
        fallback a fallback (one was answered meanwhile), with the fixed reply of that action. `cut_short`:
        the stream ended before the reply did; the turn keeps `answer`, what was sent, and says so."""
        shown = _shown_sources(plan, self.settings.sources_per_answer)
        waiting = plan.session.state == "waiting_for_agent"

        def settle(stored_streak: int) -> Outcome:
            decision = recounted(plan.decision, stored_streak, self.settings.policy)
            reason = f"{decision.reason}; {CUT_SHORT}" if cut_short else decision.reason
            text = answer.text
            if decision.action != plan.decision.action and not cut_short:
                text = _fixed(replace(plan, decision=decision)).text
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
        if _is_fixed(plan.decision):
            return _fixed(plan)
        return await self.answerer.answer(*self._answer_args(plan))

    def _answer_args(self, plan: Plan) -> tuple[Any, ...]:
        top = plan.passages[: self.settings.sources_per_answer]
        slots = _slots(plan.context, plan.message, top)
        history = [(t.message, t.answer) for t in plan.history]
        return plan.query, self._template_intent(plan.intent), top, slots, history

    def _template_intent(self, intent: IntentResult | None) -> str | None:
        """The intent whose template may answer: an in-scope one at least `template_intent_confidence`
        confident. A guess (0.35 among ten intents) does not put its template over the passage found."""
        if intent is None or intent.out_of_scope:
            return None
        confident = intent.confidence >= self.settings.policy.template_intent_confidence
        return intent.name if confident else None

    def _threshold(self) -> float:
        """The least relevance that answers: a re-ranker probability, else a cosine similarity."""
        policy = self.settings.policy
        return policy.min_answer_score if self.retriever.reranker is not None else policy.min_similarity

    def _relevance(self, query: str, passages: list[Passage]) -> list[float]:
        """Re-ranker probabilities as they are; else the cosine similarity of query and passage."""
        if self.retriever.reranker is not None or not passages:
            return [p.score for p in passages]
        return self.retriever.similarities(query, [p.id for p in passages])


class TurnStream:
    """The reply to a planned message as server-sent events: `meta`, `delta`..., then `done`.

    `meta` carries the action, intent and sources before any text; `done` carries the stored reply. The
    stream is closed with `aclose` however it ended. One that ended before its reply did (the customer
    closed the page, the connection dropped, the server stops) still stores its turn there: the message
    was received and part of the reply may have been read. The turn stores what was sent (nothing, when
    the customer left before the first words), with the session's new state as planned (a request for a
    person still reaches the agents' queue), and its `reason` says the stream ended early
    (`CUT_SHORT`). Generation stops at once, as a stream broken off by its generator keeps its words; a
    turn that failed (an `error` event) is not stored again. (`POST /v1/chat/stream` reads a turn with an
    idempotency key to its end even when its client leaves, so that the retry gets the whole reply; only a
    server shutdown closes such a turn early, and it then holds what was generated.) A fallback, and the
    hand-off it may become, is stored first and then sent as stored: whether it makes the fallbacks in a row
    that hand the customer to a person is known only where the turn is stored (`Bot.record`).
    """

    def __init__(self, bot: Bot, plan: Plan) -> None:
        self._bot, self._plan = bot, plan
        self._sent: list[str] = []  # the answer's text handed to the client so far
        self._ended = False  # stored, or failed with an error the client is told of
        self._events = self._run()

    def __aiter__(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        return self._events

    async def aclose(self) -> Reply | None:
        """End the stream; the turn stored now, when it ended before its reply did, else None."""
        await self._events.aclose()  # a generator still running stops here
        if self._ended:
            return None
        self._ended = True
        # what was sent, however it was made (a turn stores no mode)
        answer = Answer(text="".join(self._sent).strip(), mode="fixed", cited=[])
        return await self._bot.runner.finish(self._bot.record, self._plan, answer, cut_short=True)

    async def _run(self) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
        try:
            async for event in self._reply():
                yield event
        except Exception:  # the route ends the stream with an error event: this turn is not stored
            self._ended = True
            raise

    async def _reply(self) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
        bot, plan = self._bot, self._plan
        if plan.decision.streak == "count":  # fallback or hand-off: settled when stored, then sent as stored
            stored = await bot.runner.finish(self._store, _fixed(plan))
            for event in replay_events(stored):
                yield event
            return
        yield (
            "meta",
            {
                "session_id": plan.session.id,
                "action": plan.decision.action,
                "intent": _intent_json(plan.intent),
                "sources": [s.__dict__ for s in _shown_sources(plan, bot.settings.sources_per_answer)],
            },
        )
        if _is_fixed(plan.decision):
            answer = _fixed(plan)
            self._sent.append(answer.text)
            yield "delta", {"text": answer.text}
        else:
            stream = bot.answerer.stream(*bot._answer_args(plan))
            try:
                async for piece in stream:
                    self._sent.append(piece)
                    yield "delta", {"text": piece}
            finally:
                await stream.aclose()  # the client went away: stop generating
            assert stream.answer is not None  # an exhausted stream holds its answer
            answer = stream.answer
        reply = await bot.runner.finish(self._store, answer)
        yield "done", reply_json(reply)

    def _store(self, answer: Answer) -> Reply:
        """Store the whole turn (blocking); marked stored in the worker, so a stream cancelled meanwhile
        is not stored twice."""
        reply = self._bot.record(self._plan, answer)
        self._ended = True
        return reply


def _slots(context: dict[str, str], message: str, top: list[Passage]) -> dict[str, str]:
    """Template slots: the caller's context, then the ones the bot fills itself (`RESERVED_SLOTS`), which
    the context never sets: the message, and the best passage for templates that wrap it
    ("Hi {{ first_name }}! {{ answer }}"); without a passage `answer` and `title` stay undefined."""
    slots = {name: value for name, value in context.items() if name not in RESERVED_SLOTS}
    slots["message"] = message
    if top:
        slots.update(answer=top[0].text, title=top[0].title)
    return slots


def _is_fixed(decision: Decision) -> bool:
    """Whether the reply is one of the bot's own (clarify, fallback, hand-off, acknowledgement, prompt)."""
    return decision.action != "answer" or decision.own_reply is not None


def _fixed(plan: Plan) -> Answer:
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


def _shown_sources(plan: Plan, limit: int) -> list[Source]:
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


def _judged(passages: list[Passage], relevance: list[float]) -> list[Passage]:
    """The passages with the relevance the policy judges them by."""
    return [replace(p, relevance=float(r)) for p, r in zip(passages, relevance, strict=True)]


def _declined(message: str, history: list[TurnRecord]) -> str | None:
    """Why `message` is a failed turn by its words alone: it declines both options of the clarifying question
    just asked ("neither"), or says the last answer or question did not help ("that didn't help"), which
    would otherwise be read as a follow-up and answered again with what the customer had just declined."""
    last = history[-1].action if history else None
    if last == "clarify" and declines_options(message):
        return DECLINED_OPTIONS
    if last in ("answer", "clarify") and says_not_helped(message):
        return NOT_HELPED
    return None


def _same_question(first: Passage, second: Passage) -> bool:
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


def _intent_json(intent: IntentResult | None) -> dict[str, Any]:
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
