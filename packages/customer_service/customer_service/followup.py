"""Follow-up questions: a message that leans on the previous turn is read together with it.

"How do I open a savings account?" then "and for business accounts?" should retrieve what the second message
means, not what its few words say. A message is a follow-up when it opens with a connective ("and", "what
about", "how about", "also", "what if", ...) or is short and points back with a pronoun ("is it free?"). It is
then rewritten as the previous turn's query (its last `CARRIED_WORDS` words) followed by the message without
its connective; everything else (intent, retrieval) works on the rewritten query. A message that stands on its
own is searched as it is, less an opening connective ("So, how do I ...?" with nothing before it to follow:
`read_alone`). A short message with a pronoun but no connective may name a topic of its own ("Is that
mortgage rate fixed?" after a question on passwords): `points_back_only` tells the bot to check how it reads
alone.

A follow-up leans on the last topical *question*, not on the query the previous follow-up was read by: after
"How do I send money abroad?" and "and to the US?", "and how much does it cost?" is read as "How do I send
money abroad, how much does it cost?". Carrying the rewritten query made a chain of follow-ups snowball
("How do I send money abroad, to the US, how much does it cost"), and the older words outweighed the new
question's: it was answered with the transfer FAQ, not the fees one. Each turn is stored with that question,
its `topic`, rather than having it cut out of its query again: a session's first question that only reads
as a follow-up ("Also, how do I send money abroad?", read alone) was taken to stand for "Also".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from customer_service.phrases import acknowledges, asks_about_bot, asks_for_help, greets, says_nothing

if TYPE_CHECKING:
    from customer_service.conversations import TurnRecord

CONNECTIVE = re.compile(
    r"^\s*(?:and what about|and how about|and if|and for|and with|what about|how about|what if|same for|"
    r"and|but|also|plus|so|or|then)\b[\s,]*",  # longest first: "and what about" goes whole
    re.IGNORECASE,
)
# What a customer puts before a follow-up and that says nothing of its topic: "ok and how do I unfreeze it?",
# "thanks! and for business accounts?" (those were read alone: the connective was no longer first, and the
# words counted towards the length of a short message)
LEAD = re.compile(
    r"^\s*(?:(?:ok|okay|k|thanks|thank you|thx|ty|great|cool|right|alright|perfect|got it|i see|sure|nice|"
    r"understood|hmm|oh|ah)\b[\s,.!;:-]*)+",
    re.IGNORECASE,
)
_BARE = frozenset(["and", "but", "also", "plus", "so", "or", "then"])  # connectives that name no other case
POINTER = re.compile(r"\b(?:it|its|that|this|those|these|they|them|there|one|ones)\b", re.IGNORECASE)
WORD = re.compile(r"[A-Za-z0-9']+")
SHORT = 6  # words: a shorter message with a pronoun leans on the previous turn
CARRIED_WORDS = 30  # of the previous query carried into a rewrite, its last ones: a chain of follow-ups
# would otherwise grow the query with every turn
LOOKBACK = 4  # times history_turns: the turns read to find the last history_turns topical ones, so that a few
# prompts and thanks in a row ("?", "thanks", "ok") do not push the question out of reach, yet a long
# session is not read whole for each message


def is_follow_up(message: str) -> bool:
    """Whether `message` reads as a continuation of the previous turn. After a `LEAD` ("thanks, ..."), a
    connective that asks about another case ("what about", "and for") still makes one, and a bare one ("and")
    counts as no word of a short message that points back ("ok and how do I unfreeze it?"); "thanks, and how
    do I freeze my card?" is a question of its own."""
    if CONNECTIVE.match(message):
        return True
    message = LEAD.sub("", message, count=1)
    if (connective := CONNECTIVE.match(message)) is not None:
        if connective.group().strip(" ,").lower() not in _BARE:
            return True
        message = message[connective.end() :]
    words = WORD.findall(message)
    return 0 < len(words) <= SHORT and bool(POINTER.search(message))


def points_back_only(message: str) -> bool:
    """Whether `message` is a follow-up by a pronoun alone ("is it free?"), with no connective ("and...")."""
    return is_follow_up(message) and not CONNECTIVE.match(LEAD.sub("", message, count=1))


def own_words(message: str) -> str:
    """What a follow-up says by itself: the message without its `LEAD` and opening connective ("business
    accounts?")."""
    text = " ".join(message.split())
    return CONNECTIVE.sub("", LEAD.sub("", text, count=1), count=1).strip() or text


def read_alone(message: str) -> str:
    """What a message read on its own is searched by: the message without an opening connective, after a
    `LEAD` or not ("So, how much can I take out at an ATM?", "ok, and what are the fees for sending money
    abroad?" -> "how much can I take out at an ATM?", ...), or as it is when it opens with none or holds
    nothing else ("and?"). A session's first question, or one after a greeting or a fallback, may open like
    a follow-up with nothing to follow; its connective's word was searched with it: "And what are the fees
    for sending money abroad?" put the transfer FAQ level with the fees one, "So, how much can I take out at
    an ATM?" fell back."""
    text = " ".join(message.split())
    rest = LEAD.sub("", text, count=1)
    if (connective := CONNECTIVE.match(rest)) is None:
        return text
    rest = rest[connective.end() :].strip()
    return text if says_nothing(rest) else rest


def topical_queries(turns: Sequence[TurnRecord]) -> list[str]:
    """The queries of the turns a follow-up can lean on, oldest first: those the bot answered or asked to
    clarify, less a message that only thanked or agreed ("thanks", "ok"), greeted ("hi"), asked for help
    ("can you help me?"), asked whether the bot is a person ("are you a bot?") or held no letter or digit
    ("?"), which names no topic. A fallback (or a hand-off)
    found no topic in its message either. A follow-up stands for the question it was read with (`topic`).
    """
    return [
        topic(t)
        for t in turns
        if t.action in ("answer", "clarify")
        and not (
            acknowledges(t.message)
            or greets(t.message)
            or asks_for_help(t.message)
            or asks_about_bot(t.message)
            or says_nothing(t.message)
        )
    ]


def topic(turn: TurnRecord) -> str:
    """The question a turn stands for, that a later follow-up is read with: the topic stored with it (a
    follow-up's is the question it was read with, "How do I send money abroad?" for "and to the US?";
    any other turn's is its query), so that a chain of follow-ups does not pile up their words.

    A turn stored before topics were (revision 0008) has its topic worked out from its query as it was
    then: a follow-up's query less its own words at the end ("How do I send money abroad, to the US?" ->
    "How do I send money abroad")."""
    if turn.topic is not None:
        return turn.topic
    suffix = f", {own_words(turn.message)}"
    if is_follow_up(turn.message) and turn.query.endswith(suffix) and len(turn.query) > len(suffix):
        return turn.query[: -len(suffix)]
    return turn.query


def rewrite(message: str, previous_queries: Sequence[str]) -> str:
    """The query to understand `message` by: itself, or with the previous turn's query when it is a follow-up.

    Args:
        message: the new user message.
        previous_queries: the questions of earlier turns, oldest first (`topical_queries`: a follow-up's
            is the question it was read with).
    """
    text = " ".join(message.split())
    if not previous_queries or not is_follow_up(text):
        return text
    carried = " ".join(previous_queries[-1].split()[-CARRIED_WORDS:]).rstrip(" ?.!")
    return f"{carried}, {own_words(text)}"
