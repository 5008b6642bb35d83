"""Retrieval quality: recall@1, recall@5 and MRR@10 of a retriever on questions with known answers, and a
reader for FAQ files (CSV or JSON Lines with question, answer and optional id and category columns).

Each query has one or more relevant passage ids (several when the same answer is stored more than once,
or one question has several answers). recall@k counts a query as found when any relevant id is among the
first k; MRR@10 averages 1 / rank of the first relevant id within the first 10 (0 when none is).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Protocol

from customer_service.entries import FaqIn
from textcore import InvalidInput, read_table
from textcore.printable import RULE, control_character

if TYPE_CHECKING:  # the search index imports torch: reading an FAQ file does not need it
    from customer_service.search_index import Passage

METRICS = ("recall@1", "recall@5", "mrr@10")
DEPTH = 10


class Searcher(Protocol):
    """Anything that searches like `customer_service.retrieval.Retriever`."""

    def search(self, query: str, k: int = 5, mode: str | None = None) -> list[Passage]: ...


def evaluate_retrieval(
    retriever: Searcher,
    queries: Sequence[str],
    expected: Sequence[str | Collection[str]],
    modes: Sequence[str],
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Search every query in every mode and score the rankings.

    Args:
        retriever: Searches one query in one mode (`Retriever`).
        queries: The questions.
        expected: Per query, the relevant passage id or a collection of ids.
        modes: The modes to evaluate, e.g. ("dense", "keyword", "hybrid", "rerank").
        progress: Called with (mode, done, total) after each query.

    Returns:
        {mode: {"recall@1", "recall@5", "mrr@10"}} with figures in [0, 1].

    Raises:
        InvalidInput: If there are no queries or the lengths of queries and expected differ.
    """
    if isinstance(queries, str) or len(queries) != len(expected) or not queries:
        raise InvalidInput(
            f"expected as many expected ids as queries, at least one; found {len(queries)} queries and "
            f"{len(expected)} expected"
        )
    relevant = [{e} if isinstance(e, str) else set(e) for e in expected]
    results: dict[str, dict[str, float]] = {}
    for mode in modes:
        ranks = []
        for done, (query, wanted) in enumerate(zip(queries, relevant, strict=True), start=1):
            ids = [p.id for p in retriever.search(query, DEPTH, mode)]
            ranks.append(next((rank for rank, i in enumerate(ids, start=1) if i in wanted), None))
            if progress is not None:
                progress(mode, done, len(queries))
        results[mode] = ranking_metrics(ranks)
    return results


def ranking_metrics(ranks: Sequence[int | None]) -> dict[str, float]:
    """recall@1, recall@5 and MRR@10 from each query's rank of its first relevant passage (None: none)."""
    n = len(ranks)
    return {
        "recall@1": sum(r is not None and r <= 1 for r in ranks) / n,
        "recall@5": sum(r is not None and r <= 5 for r in ranks) / n,
        "mrr@10": sum(1.0 / r for r in ranks if r is not None and r <= DEPTH) / n,
    }


def faq_id(question: str, answer: str) -> str:
    """A stable id for an FAQ without one: "faq-" and 12 hex digits of SHA-1 of its question and answer."""
    digest = hashlib.sha1(f"{question.strip()}\x00{answer.strip()}".encode(), usedforsecurity=False)
    return f"faq-{digest.hexdigest()[:12]}"


def read_faqs(
    path: str | os.PathLike[str],
    *,
    id_column: str = "id",
    question_column: str = "question",
    answer_column: str = "answer",
    category_column: str = "category",
) -> list[FaqIn]:
    """Read FAQs from a CSV, TSV or JSON Lines file.

    The id and category columns are optional: without ids, each FAQ gets `faq_id(question, answer)` and a
    row repeating an earlier question and answer exactly is dropped; with ids, a repeated id is refused.

    Raises:
        InvalidInput: On a missing file or question/answer column, no rows, an empty question or answer,
            a repeated id, or a control character other than tab, newline and carriage return in any of
            the four columns (named with the row, as `textcore.printable` words it).
    """
    rows = read_table(path, strings=(question_column, answer_column))
    if not rows:
        raise InvalidInput(f"{path}: expected at least one FAQ row; found none")
    return faqs_from_rows(
        path,
        list(enumerate(rows, start=1)),
        id_column=id_column,
        question_column=question_column,
        answer_column=answer_column,
        category_column=category_column,
    )


def faqs_from_rows(
    path: str | os.PathLike[str],
    rows: Sequence[tuple[int, dict[str, str]]],
    *,
    id_column: str = "id",
    question_column: str = "question",
    answer_column: str = "answer",
    category_column: str = "category",
) -> list[FaqIn]:
    """FAQs from rows of a table file, each with its 1-based row number (see `read_faqs`).

    Raises:
        InvalidInput: As `read_faqs`, naming `path` and the row's number.
    """
    if not rows:
        raise InvalidInput(f"{path}: expected at least one FAQ row; found none")
    first = rows[0][1]
    missing = [c for c in (question_column, answer_column) if c not in first]
    if missing:
        raise InvalidInput(f"{path}: expected column(s) {', '.join(missing)}; found {', '.join(first)}")
    faqs: dict[str, FaqIn] = {}
    for number, row in rows:
        for column in (id_column, question_column, answer_column, category_column, "source"):
            if (found := control_character(row.get(column, ""))) is not None:
                raise InvalidInput(f"{path}: row {number}, column {column!r}: {RULE}; found {found}")
        question, answer = row.get(question_column, "").strip(), row.get(answer_column, "").strip()
        if not question or not answer:
            empty = question_column if not question else answer_column
            raise InvalidInput(f"{path}: row {number} has an empty {empty!r}; expected text in every row")
        given = row.get(id_column, "").strip()
        category, source = row.get(category_column, "").strip(), row.get("source", "").strip()
        faq = FaqIn(given or faq_id(question, answer), question, answer, category, source)
        if faq.id in faqs:
            if given:
                raise InvalidInput(f"{path}: row {number} repeats the id {given!r}; expected unique ids")
            continue  # the same question and answer again
        faqs[faq.id] = faq
    return list(faqs.values())
