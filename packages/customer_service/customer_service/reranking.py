"""Training data and training runs for the two retrieval models, drawn from the knowledge base's own FAQs.

- The re-ranker (a cross-encoder, `textcore.Reranker`) learns from (question, answer, 1.0) rows and
  (question, hard negative, 0.0) rows, the negatives being the answers the current encoder ranks near the
  top for the question without them being its answer (`textcore.mine_hard_negatives`). Each answer is
  written by `retrieval.reranker_passage`, as the retriever hands passages to the re-ranker at answer time.
- The retriever (the bi-encoder that embeds passages and queries) is fine-tuned contrastively on
  (question, answer[, hard negative]) triples with in-batch negatives (`textcore.train_embedder`).

An FAQ question that is stored with several answers has all of them as positives: none of its own answers
is ever used as its negative.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from customer_service.knowledge import FaqIn
from customer_service.retrieval import reranker_passage
from textcore import (
    Encoder,
    InvalidInput,
    ScoredPairs,
    TrainConfig,
    TrainResult,
    mine_hard_negatives,
    train_embedder,
    train_reranker,
)
from textcore.training import Pairs


def reranker_pairs(
    questions: Sequence[str],
    answers: Sequence[str],
    encoder: Encoder,
    *,
    corpus: Sequence[str] = (),
    per_query: int = 3,
    candidates: int = 20,
    seed: int = 42,
) -> ScoredPairs:
    """Re-ranker training rows: each question with its answer (1.0) and up to `per_query` hard negatives.

    Every answer is written as the re-ranker reads an FAQ at answer time (`retrieval.reranker_passage`).

    Args:
        questions: The FAQ questions.
        answers: Each question's answer.
        encoder: Ranks the candidate negatives (the retriever's encoder).
        corpus: More passages to draw negatives from (e.g. the whole knowledge base), each already as the
            re-ranker reads it (`reranker_passage`); answers are included.
        per_query: Negatives per question.
        candidates: Negatives are drawn from the encoder's top this many passages.
        seed: Seeds the draw.

    Raises:
        InvalidInput: If the lengths differ or there are fewer than two distinct passages.
    """
    _check_faqs(questions, answers)
    passages = [reranker_passage("faq", q, a) for q, a in zip(questions, answers, strict=True)]
    return _mined_pairs(questions, passages, encoder, corpus, per_query, candidates, seed)


def _mined_pairs(
    questions: Sequence[str],
    answers: Sequence[str],
    encoder: Encoder,
    corpus: Sequence[str],
    per_query: int,
    candidates: int,
    seed: int,
) -> ScoredPairs:
    """(question, answer, 1.0) and hard-negative rows, no answer of a question used as its negative."""
    passages, positives = _corpus(questions, answers, corpus)
    mined = mine_hard_negatives(
        encoder, list(questions), passages, positives, per_query=per_query, candidates=candidates, seed=seed
    )
    own = _answers_by_question(questions, answers)
    keep = [
        i
        for i, (q, p, label) in enumerate(zip(mined.queries, mined.passages, mined.labels, strict=True))
        if label >= 0.5 or p not in own[q]  # another answer to the same question is no negative
    ]
    return mined.subset(keep) if len(keep) < len(mined) else mined


def retriever_pairs(
    questions: Sequence[str],
    answers: Sequence[str],
    encoder: Encoder | None = None,
    *,
    corpus: Sequence[str] = (),
    candidates: int = 20,
    seed: int = 42,
) -> Pairs:
    """Contrastive training pairs (question -> answer), with one hard negative each when `encoder` is given.

    A question whose mined candidates are all its own answers gets a random other passage as negative.
    """
    passages, _ = _corpus(questions, answers, corpus)
    if encoder is None:
        return Pairs(list(questions), list(answers))
    mined = _mined_pairs(questions, answers, encoder, corpus, 2, max(candidates, 2), seed)
    first_negative: dict[str, str] = {}
    for q, p, label in zip(mined.queries, mined.passages, mined.labels, strict=True):
        if label < 0.5:
            first_negative.setdefault(q, p)
    own = _answers_by_question(questions, answers)
    rng = np.random.default_rng(seed)
    negatives = []
    for q in questions:
        found = first_negative.get(q)
        if found is None:
            others = [p for p in passages if p not in own[q]]
            if not others:
                raise InvalidInput(f"expected a passage other than the answers of {q!r:.80}; found none")
            found = others[int(rng.integers(len(others)))]
        negatives.append(found)
    return Pairs(list(questions), list(answers), negatives)


def train_reranker_from_faqs(
    faqs: Sequence[FaqIn],
    output: Path,
    config: TrainConfig,
    *,
    encoder: Encoder,
    corpus: Sequence[str] = (),
    per_query: int = 3,
    candidates: int = 20,
    sources: dict[str, Any] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a re-ranker on FAQ (question, answer) pairs with mined hard negatives; save it in `output`.

    Raises:
        InvalidInput: If `config.task` is not "cross-encoder" or there are too few FAQs.
    """
    if config.task != "cross-encoder":
        raise InvalidInput(f"config.task: expected 'cross-encoder' for a re-ranker; found {config.task!r}")
    questions, answers = [f.question for f in faqs], [f.answer for f in faqs]
    pairs = reranker_pairs(
        questions,
        answers,
        encoder,
        corpus=corpus,
        per_query=per_query,
        candidates=candidates,
        seed=config.seed,
    )
    info = {"faqs": len(faqs), "hard_negatives_per_query": per_query, **(sources or {})}
    return train_reranker(pairs, config, output, sources=info, progress=progress)


def train_retriever_from_faqs(
    faqs: Sequence[FaqIn],
    output: Path,
    config: TrainConfig,
    *,
    encoder: Encoder | None = None,
    corpus: Sequence[str] = (),
    candidates: int = 20,
    sources: dict[str, Any] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune the retriever's encoder on FAQ (question -> answer) pairs; save it in `output`.

    Args:
        encoder: Mines one hard negative per question when given (None: in-batch negatives only).

    Raises:
        InvalidInput: If `config.task` is not "embedding" or there are too few FAQs.
    """
    if config.task != "embedding":
        raise InvalidInput(f"config.task: expected 'embedding' for a retriever; found {config.task!r}")
    questions, answers = [f.question for f in faqs], [f.answer for f in faqs]
    pairs = retriever_pairs(
        questions, answers, encoder, corpus=corpus, candidates=candidates, seed=config.seed
    )
    info = {"faqs": len(faqs), "hard_negatives": encoder is not None, **(sources or {})}
    return train_embedder(pairs, config, output, sources=info, progress=progress)


def _corpus(
    questions: Sequence[str], answers: Sequence[str], corpus: Sequence[str]
) -> tuple[list[str], list[int]]:
    """The distinct passages (answers first) and the index of each question's answer among them."""
    _check_faqs(questions, answers)
    passages = list(dict.fromkeys([*answers, *corpus]))
    where = {p: i for i, p in enumerate(passages)}
    return passages, [where[a] for a in answers]


def _check_faqs(questions: Sequence[str], answers: Sequence[str]) -> None:
    if isinstance(questions, str) or isinstance(answers, str) or len(questions) != len(answers):
        raise InvalidInput(
            f"expected one answer per question; found {len(questions)} questions and {len(answers)} answers"
        )
    if not questions:
        raise InvalidInput("expected at least one question and answer; found none")


def _answers_by_question(questions: Sequence[str], answers: Sequence[str]) -> dict[str, set[str]]:
    own: dict[str, set[str]] = defaultdict(set)
    for q, a in zip(questions, answers, strict=True):
        own[q].add(a)
    return own
