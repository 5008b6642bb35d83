"""What a request asks for (`Query`: a stored user, a history of item ids, free-text interests) and the
profile it is scored against (`Profile`), with the interests split into the phrases that explanations name."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from textcore import InvalidInput

_PHRASE_SPLIT = re.compile(r"[,;\n]|\band\b", re.IGNORECASE)
MAX_INTEREST_PHRASES = 20  # each phrase is encoded for the explanations: 400 of them took 0.47 s a request


@dataclass(frozen=True)
class Query:
    """Whom to score for: a stored user, or a history of item ids, and/or free-text interests."""

    user_id: str | None = None
    history: tuple[str, ...] | None = None
    interests: str | None = None


@dataclass(frozen=True)
class Profile:
    """A request's interests: a (dim,) vector, the history behind it, what to exclude, the phrases."""

    vector: np.ndarray  # (dim,) float32, L2-normalised, or zeros when nothing is known
    history: list[str]  # liked catalog items, oldest first
    recent_vectors: np.ndarray  # (r, dim) vectors of the newest r history items the profile used
    seen: frozenset[str]  # every item the user interacted with
    phrases: list[str]
    phrase_vectors: np.ndarray  # (n_phrases, dim) float32
    disliked: frozenset[str] = frozenset()  # the user's items whose latest rating is below the threshold


def interest_phrases(interests: str) -> list[str]:
    """Free text split into phrases on commas, semicolons, line breaks and the word "and" (each once).

    A phrase repeated in another case or spacing ("Optics", "optics", "OPTICS") is one phrase, kept as first
    written: the encoder reads it alike, and it would be named twice in an explanation. A phrase of
    punctuation only ("-", "...", "?!") names nothing and is no phrase.

    Raises:
        InvalidInput: No phrase (the text is only separators and punctuation), or more than
            `MAX_INTEREST_PHRASES` different phrases.
    """
    phrases = (p.strip(" .\t") for p in _PHRASE_SPLIT.split(interests))
    first: dict[str, str] = {}  # casefolded, whitespace-normalised phrase -> its first spelling
    for phrase in phrases:
        if any(not c.isspace() and not unicodedata.category(c).startswith("P") for c in phrase):
            first.setdefault(" ".join(phrase.split()).casefold(), phrase)
    unique = list(first.values())
    if not unique:
        shown = interests if len(interests) <= 80 else f"{interests[:80]}..."
        raise InvalidInput(
            "expected interests naming at least one thing; found only separators (commas, semicolons, "
            f'line breaks, "and") and punctuation: {shown!r}'
        )
    if len(unique) > MAX_INTEREST_PHRASES:
        raise InvalidInput(
            f"expected interests of at most {MAX_INTEREST_PHRASES} phrases (split on commas, semicolons, "
            f'line breaks and "and"); found {len(unique)}'
        )
    return unique
