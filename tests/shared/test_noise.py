"""Seeded typos for robustness checks."""

from __future__ import annotations

import re

import pytest

from textcore import InvalidInput, add_typos

SENTENCE = "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the corresponding period"


def changed_words(before: str, after: str) -> int:
    return sum(a != b for a, b in zip(before.split(), after.split(), strict=True))


def test_same_seed_same_typos_and_other_seeds_differ() -> None:
    assert add_typos(SENTENCE, 0.5, seed=1) == add_typos(SENTENCE, 0.5, seed=1)
    assert len({add_typos(SENTENCE, 0.5, seed=s) for s in range(5)}) > 1


def test_rate_zero_is_identity_and_rate_one_edits_every_longer_word() -> None:
    assert add_typos(SENTENCE, 0.0) == SENTENCE
    noisy = add_typos("profit  rose\tsharply\n", 1.0, seed=3)
    assert re.findall(r"\s+", noisy) == ["  ", "\t", "\n"]  # whitespace kept as it was
    words = noisy.split()
    # one edit per word: a swap keeps the letters, a drop or an insertion changes the length by one
    assert all(w != o for w, o in zip(words, ["profit", "rose", "sharply"], strict=True))
    assert all(abs(len(w) - len(o)) <= 1 for w, o in zip(words, ["profit", "rose", "sharply"], strict=True))


def test_about_the_rate_of_words_get_a_typo() -> None:
    text = " ".join(["revenue"] * 1000)  # no neighbouring letters repeat, so every edit shows
    assert 70 <= changed_words(text, add_typos(text, 0.1, seed=0)) <= 130


def test_single_characters_are_left_alone() -> None:
    assert add_typos("a b c % 7", 1.0) == "a b c % 7"


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_rate_outside_zero_one_is_invalid(rate: float) -> None:
    with pytest.raises(InvalidInput, match=rf"rate: expected a number in \[0, 1\]; found {rate}"):
        add_typos(SENTENCE, rate)
