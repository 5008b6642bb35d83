"""Seeded character noise (typos) for robustness checks: how much does accuracy drop on misspelt input?"""

from __future__ import annotations

import random
import re
import string

from textcore.errors import InvalidInput

EDITS = ("swap", "drop", "insert", "substitute")
_LETTERS = string.ascii_lowercase


def add_typos(text: str, rate: float = 0.1, seed: int = 0) -> str:
    """A copy of `text` with one random character edit in about `rate` of its words.

    Each chosen word (a whitespace-separated token of at least two characters) gets one of: two neighbouring
    characters swapped, a character dropped, a random lowercase letter inserted, or a character replaced by
    another letter. The random choices derive from (seed, text), so the result is reproducible across
    processes and different texts get different noise under one seed. Whitespace is kept as it was.

    Args:
        text: the text to corrupt.
        rate: the probability that a word gets an edit, in [0, 1].
        seed: seeds the random choices.

    Raises:
        InvalidInput: `rate` outside [0, 1].
    """
    if not 0 <= rate <= 1:
        raise InvalidInput(f"rate: expected a number in [0, 1]; found {rate!r}")
    rng = random.Random(f"{seed}:{text}")  # noqa: S311 - noise for tests, not cryptography
    parts = re.split(r"(\s+)", text)  # words at even positions, the whitespace between them at odd ones
    for i in range(0, len(parts), 2):
        if len(parts[i]) >= 2 and rng.random() < rate:
            parts[i] = _edit(parts[i], rng)
    return "".join(parts)


def _edit(word: str, rng: random.Random) -> str:
    """`word` with one random edit (see `EDITS`)."""
    kind = rng.choice(EDITS)
    at = rng.randrange(len(word) - 1) if kind == "swap" else rng.randrange(len(word))
    if kind == "swap":
        return word[:at] + word[at + 1] + word[at] + word[at + 2 :]
    if kind == "drop":
        return word[:at] + word[at + 1 :]
    if kind == "insert":
        return word[:at] + rng.choice(_LETTERS) + word[at:]
    letter = rng.choice([c for c in _LETTERS if c != word[at].lower()])
    return word[:at] + letter + word[at + 1 :]
