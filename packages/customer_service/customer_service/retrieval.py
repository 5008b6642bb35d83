"""Retrieval over the knowledge base: dense, keyword, hybrid (reciprocal rank fusion) and re-ranked.

    dense    faiss inner product on L2-normalised embeddings; score = cosine
    keyword  BM25; score = BM25
    hybrid   the top `candidates` of dense and of keyword fused by RRF: score = sum over the two rankings of
             1 / (rrf_k + rank), rank counted from 1 (Cormack et al. 2009; rrf_k = 60 by default)
    rerank   the top `candidates` of hybrid re-scored by a cross-encoder (`textcore.Reranker`); score = its
             probability that the passage answers the query. By default (`fuse_rerank`) the order fuses
             the re-ranker's ranking with the hybrid one by RRF: a re-ranker trained on one knowledge base's
             few thousand pairs is a useful second opinion but, alone, ranks worse than the first stage
             (bench/retrieval.py); `fuse_rerank=False` orders by its probability alone

The default mode is "rerank" when a re-ranker is given, else "hybrid". The re-ranker reads each passage as
`reranker_passage` writes it, the function its training rows are written with too
(`customer_service.reranking`): what it judges at answer time is what it learned to judge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Literal, get_args

from customer_service.knowledge import KnowledgeBase, Passage
from textcore import InvalidInput

if TYPE_CHECKING:
    from textcore import Reranker

Mode = Literal["dense", "keyword", "hybrid", "rerank"]
MODES: tuple[str, ...] = get_args(Mode)


def reranker_passage(kind: str, title: str, text: str) -> str:
    """A passage as the re-ranker reads it, in training and at answer time: an FAQ's answer alone (`title`,
    its question, left out), a document chunk's title ("Doc title > Section") then its text.

    The question is left out even where the knowledge base indexes it with the answer: the re-ranker is
    trained with the FAQ questions as queries, and a passage holding its own query word for word would teach
    it to spot the copy rather than to judge whether the answer answers.
    """
    if kind == "faq" or not title:
        return text
    return f"{title}\n{text}"


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], rrf_k: int = 60) -> list[tuple[str, float]]:
    """Fuse rankings of ids: each id scores the sum of 1 / (rrf_k + rank) over the rankings it is in.

    Args:
        rankings: Lists of ids, best first (rank 1 is the first).
        rrf_k: Damps the weight of the top ranks; larger means flatter.

    Returns:
        (id, score), best first; ties keep the order in which ids were first met (ranking by ranking).
    """
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (rrf_k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])  # sorted() is stable: ties keep first-met order


class Retriever:
    """Searches a knowledge base in one of four modes.

    Args:
        kb: The knowledge base.
        reranker: A cross-encoder for mode "rerank" (None: that mode is unavailable).
        candidates: How many passages each first-stage ranking contributes (and the re-ranker reads).
        rrf_k: The RRF constant.
        fuse_rerank: In mode "rerank", order by RRF of the hybrid and the re-ranker rankings (else by the
            re-ranker's probability alone).

    Raises:
        InvalidInput: If `candidates` or `rrf_k` is not a positive integer.
    """

    def __init__(
        self,
        kb: KnowledgeBase,
        reranker: Reranker | None = None,
        *,
        candidates: int = 20,
        rrf_k: int = 60,
        fuse_rerank: bool = True,
    ) -> None:
        if candidates < 1 or rrf_k < 1:
            raise InvalidInput(f"expected candidates >= 1 and rrf_k >= 1; found {candidates}, {rrf_k}")
        self.kb, self.reranker, self.candidates, self.rrf_k = kb, reranker, candidates, rrf_k
        self.fuse_rerank = fuse_rerank

    @property
    def modes(self) -> tuple[str, ...]:
        """The modes this retriever can search in."""
        return MODES if self.reranker is not None else MODES[:-1]

    @property
    def default_mode(self) -> str:
        """ "rerank" with a re-ranker, else "hybrid"."""
        return "rerank" if self.reranker is not None else "hybrid"

    def search(self, query: str, k: int = 5, mode: str | None = None) -> list[Passage]:
        """The `k` best passages for `query`, best first.

        Args:
            query: The user's question (non-empty).
            k: How many passages to return (fewer when the knowledge base has fewer matches).
            mode: "dense", "keyword", "hybrid" or "rerank"; None for `default_mode`.

        Raises:
            InvalidInput: On an empty query, k < 1, an unknown mode, or "rerank" without a re-ranker.
        """
        mode = mode or self.default_mode
        if mode not in self.modes:
            extra = " (rerank needs a re-ranker; none is loaded)" if mode == "rerank" else ""
            raise InvalidInput(f"mode: expected one of {', '.join(self.modes)}; found {mode!r}{extra}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidInput(f"k: expected a positive integer; found {k!r}")
        if mode == "dense":
            return self.kb.dense(query, k)
        if mode == "keyword":
            return self.kb.keyword(query, k)
        if mode == "hybrid":
            return self._hybrid(query, max(k, self.candidates))[:k]
        return self._rerank(query, self._hybrid(query, max(k, self.candidates)))[:k]

    def similarities(self, query: str, ids: Sequence[str]) -> list[float]:
        """The cosine similarity of `query` with each passage id, in order: a relevance figure in any mode."""
        return self.kb.similarities(query, ids)

    def _hybrid(self, query: str, depth: int) -> list[Passage]:
        dense = self.kb.dense(query, depth)
        keyword = self.kb.keyword(query, depth)
        found = {p.id: p for p in (*keyword, *dense)}
        fused = reciprocal_rank_fusion([[p.id for p in dense], [p.id for p in keyword]], self.rrf_k)
        return [replace(found[i], score=score) for i, score in fused[:depth]]

    def _rerank(self, query: str, passages: list[Passage]) -> list[Passage]:
        if not passages or self.reranker is None:
            return passages
        texts = [reranker_passage(p.kind, p.title, p.text) for p in passages]
        probabilities = self.reranker.score(query, texts)  # (n,) float32 in [0, 1], input order
        scored = [replace(p, score=float(s)) for p, s in zip(passages, probabilities.tolist(), strict=True)]
        ranked = sorted(scored, key=lambda p: -p.score)  # stable: ties keep the hybrid order
        if not self.fuse_rerank:
            return ranked
        by_id = {p.id: p for p in scored}
        fused = reciprocal_rank_fusion([[p.id for p in passages], [p.id for p in ranked]], self.rrf_k)
        return [by_id[i] for i, _ in fused]
