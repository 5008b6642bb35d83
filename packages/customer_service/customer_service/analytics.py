"""What the operator wants to know: volume, how turns ended, what the bot could not answer, and feedback.

Everything is computed in SQL over a time window (the last `days` days), so it works the same on SQLite and
PostgreSQL and costs one query per figure. Actions and their rates count the messages the bot handled:
messages sent while a session waited for an agent (`awaiting_agent`) were only acknowledged and are counted
apart, so a customer writing to the agents' queue does not inflate the hand-off rate, nor its quick
acknowledgements dilute the mean latency, which is that of the bot's replies to the messages it handled.
"Top unanswered" groups the messages the bot could not answer, its fallbacks and its hand-offs after
repeated fallback, by their case-folded, whitespace-normalised text: the questions the knowledge base is
missing. SQL groups by the trimmed text only and Python folds case (`str.casefold`) and inner whitespace,
merging the counts, because SQL's lower() is not the same on each backend (SQLite's folds ASCII letters
only, so "ÉPARGNE?" and "épargne?" stayed apart there). A question is shown lower-cased as it was most
often written. A hand-off the customer asked for ("talk to a person") or a strongly negative message caused
is no such question: the bot did not try to answer it. Nor is a reply that only says the last answer did not
help ("it didn't work", "thanks for nothing") or declines both options of a clarifying question ("neither",
"none of them"): no FAQ answers it, and such replies crowded out the questions to write FAQs for. They are
left out by the reason the bot gave (a fallback, or the hand-off after repeated fallback it became) and by
their words (one sent before any answer was searched as a question and fell back); they still count as
fallbacks and hand-offs in the actions and rates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, distinct, func, or_, select

from customer_service.clarification import DECLINED_OPTIONS, declines_options
from customer_service.database import Database
from customer_service.phrases import says_not_helped
from customer_service.policy import NOT_HELPED, REPEATED_FALLBACK
from customer_service.tables import ACTIONS, Feedback, Turn
from textcore.sql import utcnow


@dataclass(frozen=True)
class Unanswered:
    """A question the bot fell back on (or handed off after repeated fallback), and how often it was asked."""

    question: str
    count: int


@dataclass(frozen=True)
class Analytics:
    """Figures over the window."""

    days: int
    sessions: int
    turns: int  # every message
    awaiting_agent: int  # messages sent while their session waited for an agent
    actions: dict[str, int]  # of the messages the bot handled (the others)
    rates: dict[str, float]  # answer / clarify / fallback / handoff share of the messages the bot handled
    top_unanswered: list[Unanswered]
    feedback: dict[str, int]  # up / down
    mean_latency_ms: float


def analytics(db: Database, *, days: int = 7, top: int = 10) -> Analytics:
    """Figures of the last `days` days."""
    since = utcnow() - timedelta(days=days)
    in_window = Turn.created_at >= since
    with db.session() as s:
        turns, sessions = s.execute(
            select(func.count(Turn.id), func.count(distinct(Turn.session_id))).where(in_window)
        ).one()
        handled = Turn.awaiting_agent.is_(False)
        latency = s.execute(select(func.avg(Turn.latency_ms)).where(in_window, handled)).scalar_one()
        by_action = dict(
            s.execute(
                select(Turn.action, func.count(Turn.id)).where(in_window, handled).group_by(Turn.action)
            ).all()
        )
        question = func.trim(Turn.message)
        gave_up = and_(Turn.action == "handoff", Turn.reason.contains(REPEATED_FALLBACK, autoescape=True))
        # a reply to the bot's last answer or question ("it didn't work", "neither") is no question
        replied = or_(
            *(Turn.reason.contains(reason, autoescape=True) for reason in (NOT_HELPED, DECLINED_OPTIONS))
        )
        unanswered = and_(or_(Turn.action == "fallback", gave_up), or_(Turn.reason.is_(None), ~replied))
        missed = s.execute(
            select(question, func.count(Turn.id)).where(in_window, handled, unanswered).group_by(question)
        ).all()
        ratings = dict(
            s.execute(
                select(Feedback.rating, func.count(Feedback.turn_id))
                .join(Turn, Turn.id == Feedback.turn_id)
                .where(in_window)
                .group_by(Feedback.rating)
            ).all()
        )
    actions = {a: int(by_action.get(a, 0)) for a in ACTIONS}
    bot_turns = sum(actions.values())
    return Analytics(
        days=days,
        sessions=int(sessions),
        turns=int(turns),
        awaiting_agent=int(turns) - bot_turns,
        actions=actions,
        rates={a: (n / bot_turns if bot_turns else 0.0) for a, n in actions.items()},
        top_unanswered=_top(missed, top),
        feedback={"up": int(ratings.get("up", 0)), "down": int(ratings.get("down", 0))},
        mean_latency_ms=round(float(latency or 0.0), 2),
    )


def _top(grouped: Sequence[tuple[str, int]], top: int) -> list[Unanswered]:
    """Merge SQL's trimmed groups by case-folded, whitespace-normalised text; the `top` most asked, each
    shown lower-cased as it was most often written (the smallest such text on a tie)."""
    counts: Counter[str] = Counter()
    spellings: dict[str, Counter[str]] = {}
    for question, n in grouped:
        if not_a_question(str(question)):
            continue
        words = str(question).split()
        key = " ".join(words).casefold()
        counts[key] += int(n)
        spellings.setdefault(key, Counter())[" ".join(words).lower()] += int(n)
    ranked = sorted(counts.items(), key=lambda qn: (-qn[1], qn[0]))[:top]
    return [Unanswered(_most_written(spellings[q]), n) for q, n in ranked]


def _most_written(spellings: Counter[str]) -> str:
    return min(spellings.items(), key=lambda sn: (-sn[1], sn[0]))[0]


def not_a_question(message: str) -> bool:
    """Whether a message the bot could not answer only says the last answer did not help or declines the
    options offered ("it didn't work", "none of them"): by its words, whatever the reason it was given."""
    return says_not_helped(message) or declines_options(message)
