"""Answers to a clarifying question: "Did you mean “A” [1] or “B” [2]?" then "the second one".

A reply picks an option when it is, as a whole, a choice between the two: a number or ordinal ("2",
"[2]", "the second one", "option 1", "the former", "yes, the first"), or one option's title exactly as
offered (what a chat widget's quick-reply button sends back). Anything else ("neither, I want to close my
account") is read as a new message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_FIRST = r"1|one|first|1st|former|top|upper"
_SECOND = r"2|two|second|2nd|latter|bottom|lower"
CHOICE = re.compile(
    r"(?:(?:yes|yeah|yep|no|nope|ok|okay|sorry|oh)\W+)?"
    r"(?:i\s+mean(?:t)?\s+|it'?s\s+|it\s+is\s+|i\s+want\s+|i'?d\s+like\s+)?"
    r"(?:the\s+)?(?:option\s+|number\s+|no\.?\s*|#\s*)?"
    rf"\[?(?:(?P<first>{_FIRST})|(?P<second>{_SECOND}))\]?"
    r"(?:\s+(?:one|option|please))*\W*",
    re.IGNORECASE,
)


# A reply that declines both options: "neither", "none of them", "no", "nope, neither of those", "something
# else". "none of them" was read as a follow-up of the question before it and answered with the first
# option, and "no" closed the conversation ("Alright! If anything else comes up, just write here.").
DECLINED = re.compile(
    r"(?:(?:no|nope|nah|sorry|oh|hmm|um)\W+)*"
    r"(?:no|nope|nah|neither|none|not (?:really|quite|those|these|them|either|that)|"
    r"(?:neither|none) (?:one|of (?:them|those|these|the above|the two|both|it|that))|"
    r"(?:it'?s |i mean |i meant |i want |i need )?something else(?: entirely)?)"
    r"(?:\W+sorry)?\W*",  # "no thanks" closes, as it does anywhere
    re.IGNORECASE,
)
# the reason of a fallback on such a reply
DECLINED_OPTIONS = "neither option of the clarifying question"


def declines_options(message: str) -> bool:
    """Whether the reply to a clarifying question declines both options ("neither", "none of them", "no")."""
    return DECLINED.fullmatch(" ".join(message.split())) is not None


def chosen_option(message: str, titles: Sequence[str]) -> int | None:
    """Which of the offered options (0-based, in the order offered) `message` picks, or None.

    Args:
        message: the customer's reply to the clarifying question.
        titles: the options' titles as they were offered, [1] first.
    """
    text = _plain(message)
    for position, title in enumerate(titles):
        if text and text == _plain(title):
            return position
    match = CHOICE.fullmatch(" ".join(message.split()))
    if match is None or len(titles) < 2:
        return None
    return 0 if match.group("first") else 1


def _plain(text: str) -> str:
    """Lower case, words only: how a title compares with a reply that repeats it."""
    return " ".join(re.findall(r"\w+", text.lower()))
