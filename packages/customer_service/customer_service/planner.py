"""The blocking half of a chat turn: understand a message and decide what to do (`Planner.plan`).

Open the session and read its last turns; read a choice from the clarifying question just asked, a
message that declines what was offered, or a follow-up with the question it continues
(`customer_service.followup`); recognise the intent, retrieve and re-rank passages, score negativity, and
let the policy decide (`customer_service.policy`). A follow-up torn between two candidates is settled by
its own words, and a short one that points back but finds a topic of its own is offered both readings.
Runs in the worker pool (database and models); the result, a `Plan`, is answered and stored by the bot
(`customer_service.bot`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from customer_service.answers import Answerer
from customer_service.clarification import DECLINED_OPTIONS, chosen_option, declines_options
from customer_service.conversations import Conversations, SessionRecord, TurnRecord
from customer_service.followup import (
    LOOKBACK,
    own_words,
    points_back_only,
    read_alone,
    rewrite,
    topical_queries,
)
from customer_service.intents import IntentModel, IntentResult
from customer_service.knowledge import Passage
from customer_service.phrases import says_not_helped, without_opening
from customer_service.policy import NOT_HELPED, Decision, by_its_words, decide, failed, relevant_first
from customer_service.replies import same_question, slots
from customer_service.retrieval import Retriever
from customer_service.sentiment import SentimentScorer
from customer_service.settings import CustomerServiceSettings
from textcore import PayloadTooLarge


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


class Planner:
    """Understands messages and decides what to do with them; its parts are the bot's."""

    def __init__(
        self,
        *,
        settings: CustomerServiceSettings,
        conversations: Conversations,
        retriever: Retriever,
        intents: IntentModel | None,
        sentiment: SentimentScorer,
        answerer: Answerer,
    ) -> None:
        self.settings = settings
        self.conversations = conversations
        self.retriever = retriever
        self.intents = intents
        self.sentiment = sentiment
        self.answerer = answerer

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
        if not rewritten:  # "Hi! 👋 I lost my card", "So, how do I ...": neither says anything of the topic
            query = read_alone(without_opening(message))
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
        if decision.action == "clarify" and same_question(passages[0], passages[1]):
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
        name = self.template_intent(intent)
        if self.answerer.templates is None or name is None:
            return False
        return self.answerer.templated(name, [], slots(context, message, [])) is not None

    def template_intent(self, intent: IntentResult | None) -> str | None:
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
