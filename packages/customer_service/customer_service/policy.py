"""The dialogue policy: for each message, answer | clarify | fallback | hand-off, and why.

In order of precedence:
1. hand-off when the message reports an urgent incident (`urgent_topics`: by default possible fraud, a
   hacked account, a stolen card: "I want to report fraud", "someone hacked my account"), the customer asks
   for a person ("talk to a human", "an agent please", "call me back") or says they want to make a
   complaint, or the message is strongly negative (the sentiment score reaches `negative_sentiment`);
2. a short reply in kind when the message only thanks, agrees or says goodbye ("thanks!", "ok", "great, bye",
   "👍", "goodbye 👋"), declines more help ("no thanks", "nope", "that's all"), or only greets ("hi", "good
   morning", "hi, thanks"): it asks nothing, so it is no failed question (an intent's template answers it when
   one renders);
3. a short prompt (what can the bot help with?) when the message only asks for help or says yes, naming no
   topic ("help", "can you help me?", "yes please"), or holds no letter or digit at all ("?", "...", "—",
   "🤔") and is not such an emoji: there is nothing to answer yet, so it is no failed question either;
4. fallback when no passage is relevant enough (the best relevance is under the threshold), or the intent
   model calls the message out of scope and the best passage is not a strong match either (an intent model
   knows its training intents; the knowledge base may answer more than they cover);
5. clarify when the two best passages are both relevant, come from different entries and are closer than
   `clarify_margin`: the customer is offered both;
6. answer otherwise.
A fallback that makes `fallbacks_before_handoff` in a row becomes a hand-off: the customer is not asked to
rephrase forever. The streak is counted when the turn is stored (`recounted`, under the session's lock): two
messages of one session answered at once both read the streak before either is stored, and each would
otherwise count from the same number. Relevance is the re-ranker's probability when there is a re-ranker,
else the cosine similarity of the query and the passage (`min_answer_score` and `min_similarity` are their
thresholds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from customer_service.phrases import (
    COMPLAINT,
    acknowledges,
    asks_about_bot,
    asks_for_help,
    asks_for_person,
    closes,
    greets,
    says_nothing,
    urgent_topic,
)
from customer_service.settings import PolicySettings

ASKED_FOR_HELP = "a request for help naming no topic: asked what the customer needs"
ACKNOWLEDGED = "an acknowledgement (thanks, ok, bye): nothing to answer"
GREETED = "a greeting: nothing to answer yet, asked what the customer needs"
PROMPTED = "no letter or digit: nothing to read, asked what the customer needs"

# in the reason of a hand-off after repeated fallback, the one hand-off of a message the bot could not answer
# (analytics counts those among the unanswered questions, not a request for a person or an angry message)
REPEATED_FALLBACK = "fallbacks in a row"


OwnReply = Literal["acknowledgement", "closing", "greeting", "prompt", "identity"]
# how a turn moves the session's fallback streak: to 0, not at all, or one more (a question the bot failed)
StreakStep = Literal["reset", "keep", "count"]


@dataclass(frozen=True)
class Decision:
    """The policy's choice for one message; `reason` is shown to agents and analytics."""

    action: str  # answer | clarify | fallback | handoff
    reason: str
    fallback_streak: int  # fallbacks in a row after this turn
    template_only: bool = False  # answer with the intent's template alone: no passage was relevant
    # the bot's own reply instead of an answer: "acknowledgement" (the message only thanks or agrees: the bot
    # replies in kind) or "prompt" (it holds no letter or digit: the bot asks what the customer needs)
    own_reply: OwnReply | None = None
    # how the turn moves the streak, applied to the streak as stored when the turn is (`recounted`): "reset"
    # (an answer, a clarifying question, a hand-off), "keep" (an acknowledgement, a prompt, a message to the
    # agents' queue) or "count" (a fallback, or the hand-off it becomes: `failed` says why it failed)
    streak: StreakStep = "reset"
    failed: str | None = None


COMPLAINED = "customer wants to make a complaint"


ABOUT_BOT = "asked whether the bot is a person: told it is an automated assistant and how to reach a person"


NOT_HELPED = "the customer said the last answer did not help"


URGENT = "urgent"  # the reason of a hand-off on an urgent topic: "urgent: possible fraud"


def _urgent_handoff(message: str, negativity: float, settings: PolicySettings) -> str | None:
    """Why the message goes to a person at once (an urgent topic such as possible fraud, an explicit
    request, a complaint, strong negativity), or None."""
    if (topic := urgent_topic(message, settings.urgent_topics)) is not None:
        return f"{URGENT}: {topic}"
    if asks_for_person(message):
        return "customer asked for a person"
    if COMPLAINT.search(message):
        return COMPLAINED
    if negativity >= settings.negative_sentiment:
        return f"strongly negative message ({negativity:.2f})"
    return None


def by_its_words(
    message: str, negativity: float, fallback_streak: int, intent_template: bool, settings: PolicySettings
) -> Decision | None:
    """What the message's own words settle whatever the passages: a hand-off (`_urgent_handoff`), the reply
    to a greeting or an acknowledgement, or a prompt for a request for help naming no topic or a message
    without a letter or digit (none is a question the bot failed at: no fallback, no step towards a hand-off;
    the fallback streak stays as it was)."""
    if (urgent := _urgent_handoff(message, negativity, settings)) is not None:
        return Decision("handoff", urgent, 0)
    if greets(message):  # before an acknowledgement: "hi, thanks" asks what the customer needs
        return _in_kind(GREETED, "greeting", fallback_streak, intent_template)
    if (acknowledged := _acknowledgement(message, fallback_streak, intent_template)) is not None:
        return acknowledged
    return _prompted(message, fallback_streak, intent_template)


def _prompted(message: str, fallback_streak: int, intent_template: bool) -> Decision | None:
    """The bot's own reply to a question whether it is a person, a request for help naming no topic or a
    message without a letter or digit, or None."""
    if asks_about_bot(message):  # no intent's template: it would answer as if another question were asked
        return _in_kind(ABOUT_BOT, "identity", fallback_streak, intent_template=False)
    if asks_for_help(message):
        return _in_kind(ASKED_FOR_HELP, "prompt", fallback_streak, intent_template)
    if says_nothing(message):  # no intent's template either: there are no words it could have read
        return _in_kind(PROMPTED, "prompt", fallback_streak, intent_template=False)
    return None


def _in_kind(reason: str, own: OwnReply, fallback_streak: int, intent_template: bool) -> Decision:
    """The reply to a message that asks nothing yet: the intent's template when one renders, else the bot's
    own; the fallback streak stays as it was."""
    if intent_template:
        return Decision("answer", f"the intent's template ({reason})", 0, template_only=True)
    return Decision("answer", reason, fallback_streak, template_only=True, own_reply=own, streak="keep")


def _acknowledgement(message: str, fallback_streak: int, intent_template: bool) -> Decision | None:
    """When the message only thanks or agrees, the reply: the intent's template when one renders, else the
    bot's own; the fallback streak stays as it was (neither a failed question nor an answered one)."""
    if not acknowledges(message):
        return None
    if intent_template:
        return Decision("answer", f"the intent's template ({ACKNOWLEDGED})", 0, template_only=True)
    own: OwnReply = "closing" if closes(message) else "acknowledgement"
    return Decision("answer", ACKNOWLEDGED, fallback_streak, template_only=True, own_reply=own, streak="keep")


def relevant_first(relevance: Sequence[float], threshold: float, margin: float | None = None) -> list[int]:
    """The order in which `decide` reads the retrieved passages (indices): as retrieved, unless the first is
    less relevant than `threshold` while another passage reaches it, or (given `margin`) another passage is
    more relevant than the first by more than `margin`; then the most relevant one leads, the others
    following as retrieved.

    Without a re-ranker the passages come in the order of rank fusion, and their relevance is the cosine
    similarity: the first fused passage need not be the most relevant. `decide` reads the first as the best,
    so a relevant passage behind an irrelevant one would otherwise end in a fallback. The bot passes its
    `clarify_margin` as `margin` then: on the bank FAQs, a lead by a clear cosine margin answered more
    questions with the right passage, and the most relevant passage by any margin fewer
    (`bench/retrieval.py --lead`).
    """
    order = list(range(len(relevance)))
    if not relevance:
        return order
    best = max(order, key=lambda i: relevance[i])  # the first of equals
    if relevance[best] < threshold:
        return order
    clearly = margin is not None and relevance[best] - relevance[0] > margin
    if relevance[0] >= threshold and not clearly:
        return order
    return [best, *(i for i in order if i != best)]


def decide(
    message: str,
    *,
    relevance: Sequence[float],
    entry_ids: Sequence[str],
    out_of_scope: bool,
    negativity: float,
    fallback_streak: int,
    reranked: bool,
    settings: PolicySettings,
    intent_template: bool = False,
) -> Decision:
    """Choose the action for one message.

    Args:
        message: what the customer wrote.
        relevance: of the retrieved passages, in the order `relevant_first` gives (re-ranker probability
            or cosine similarity): the first is the one to answer with.
        entry_ids: the knowledge entries the passages belong to (a document's chunks share one), same order.
        out_of_scope: the intent model rejected the message.
        negativity: how negative the message is, in [0, 1].
        fallback_streak: fallbacks in a row before this message.
        reranked: whether `relevance` comes from the re-ranker (else cosine similarity).
        settings: the thresholds.
        intent_template: a confident in-scope intent has a template that renders for this message: it
            answers when no passage is relevant ("hello", "thanks", an order lookup the knowledge base
            does not hold).
    """
    settled = by_its_words(message, negativity, fallback_streak, intent_template, settings)
    if settled is not None:
        return settled
    threshold = settings.min_answer_score if reranked else settings.min_similarity
    strong = settings.strong_answer_score if reranked else settings.strong_similarity
    reason = ""
    if out_of_scope and not (relevance and relevance[0] >= strong):
        reason = "out of scope"
    elif not relevance or relevance[0] < threshold:
        best = f"{max(relevance):.2f}" if relevance else "none"  # the passages need not be in its order
        if intent_template:
            return Decision("answer", f"the intent's template (best passage {best})", 0, template_only=True)
        reason = f"no relevant passage (best {best} < {threshold:.2f})"
    if reason:
        return failed(reason, fallback_streak + 1, settings)
    if (
        len(relevance) > 1
        and relevance[1] >= threshold
        and entry_ids[0] != entry_ids[1]
        and abs(relevance[0] - relevance[1]) < settings.clarify_margin  # the second may be the more relevant
    ):
        return Decision("clarify", f"two close candidates ({relevance[0]:.2f}, {relevance[1]:.2f})", 0)
    return Decision("answer", f"relevance {relevance[0]:.2f}", 0)


def failed(reason: str, streak: int, settings: PolicySettings) -> Decision:
    """A message the bot could not answer (`reason`), the `streak`-th in a row: a fallback, or a hand-off once
    the streak reaches `fallbacks_before_handoff`."""
    if streak >= settings.fallbacks_before_handoff:
        handoff = f"{streak} {REPEATED_FALLBACK} ({reason})"
        return Decision("handoff", handoff, 0, streak="count", failed=reason)
    return Decision("fallback", reason, streak, streak="count", failed=reason)


def recounted(decision: Decision, stored_streak: int, settings: PolicySettings) -> Decision:
    """The decision with the session's fallback streak as it stands when the turn is stored (read under the
    session's lock, in the transaction that stores the turn): a fallback counts from there, and becomes a
    hand-off when that makes `fallbacks_before_handoff` in a row (or stays a fallback when an answer stored
    meanwhile started the streak again); a turn that keeps the streak keeps that one."""
    if decision.streak == "keep":
        return replace(decision, fallback_streak=stored_streak)
    if decision.streak == "count" and decision.failed is not None:
        return failed(decision.failed, stored_streak + 1, settings)
    return decision
