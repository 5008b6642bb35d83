"""How negative a customer's message is, for the hand-off rule (0 = not at all, 1 = very).

Two sources: a trained classifier (any textcore classification model with a `negative` label, e.g. one
trained with `textcore train` on the operator's own labelled messages), or, without one, a short built-in
list of strongly negative phrases: anger and abuse. The list errs on the side of silence: it scores only
unmistakable phrases, so the bot hands off on fury, not on the word "problem". Topics are not anger: closing
an account, switching banks, making a complaint or reporting a scam are questions the knowledge base answers
("How do I close my account?"), so they are not in the list.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

from textcore import InvalidInput, LabelPredictor, load_predictor

STRONGLY_NEGATIVE = (
    r"furious",
    r"outraged",
    r"disgusted",
    r"appalling",
    r"unacceptable",
    r"ridiculous",
    r"useless",
    r"pathetic",
    r"terrible service",
    r"awful service",
    r"worst (?:bank|service|experience)",
    r"fed up",
    r"sick of",
    r"sick and tired",
    r"hate (?:this|you)",
    r"rip(?:ped)? ?off",
    r"this is a joke",
    r"waste of (?:my )?time",
    r"never again",
    r"sue you",
)
_PATTERN = re.compile(r"\b(?:" + "|".join(STRONGLY_NEGATIVE) + r")\b", re.IGNORECASE)


class SentimentScorer(Protocol):
    """Scores how negative each message is, in [0, 1]."""

    def negativity(self, texts: list[str]) -> list[float]: ...


class PhraseSentiment:
    """The built-in list: 1 for a message with a strongly negative phrase (or shouting and '!!'), else 0."""

    def negativity(self, texts: list[str]) -> list[float]:
        return [1.0 if _PATTERN.search(t) or _shouting(t) else 0.0 for t in texts]


class ModelSentiment:
    """P(negative) from a trained classifier."""

    def __init__(self, predictor: LabelPredictor, label: str = "negative") -> None:
        if label not in predictor.labels:
            raise InvalidInput(f"expected a sentiment model with a {label!r} label; found {predictor.labels}")
        self.predictor = predictor
        self.column = predictor.labels.index(label)

    def negativity(self, texts: list[str]) -> list[float]:
        return [float(p) for p in self.predictor.predict_proba(texts)[:, self.column]]


def load_sentiment(path: Path | None) -> SentimentScorer:
    """The classifier at `path`, or the built-in phrase list when there is none."""
    if path is None:
        return PhraseSentiment()
    return ModelSentiment(load_predictor(path))


def _shouting(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return len(letters) >= 12 and sum(c.isupper() for c in letters) / len(letters) > 0.8 and "!!" in text
