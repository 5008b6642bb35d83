"""Hard-negative mining: training rows for a re-ranker from (query, positive passage) pairs and an encoder.

A re-ranker learns little from random negatives (they are easy to reject). The passages an embedding model
already ranks near the top for a query, but that are not its answer, are the mistakes a re-ranker must fix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from textcore.embeddings import Encoder
from textcore.errors import InvalidInput
from textcore.pairs import ScoredPairs

_QUERY_CHUNK = 1024  # queries scored at once: bounds the (chunk, passages) similarity matrix


def _normalised(text: str) -> str:
    return " ".join(text.split())


def _check_inputs(
    queries: Sequence[str], passages: Sequence[str], positives: Sequence[int], per_query: int, candidates: int
) -> None:
    if isinstance(queries, str) or isinstance(passages, str):
        raise InvalidInput("expected lists of queries and passages; found a single string")
    if len(queries) != len(positives):
        raise InvalidInput(
            f"expected one positive passage index per query; found {len(queries)} queries and "
            f"{len(positives)} indices"
        )
    bad = next((p for p in positives if not 0 <= int(p) < len(passages)), None)
    if bad is not None:
        raise InvalidInput(f"expected positive indices in [0, {len(passages)}); found {bad}")
    if per_query < 1 or candidates < per_query:
        raise InvalidInput(
            f"expected 1 <= per_query <= candidates; found per_query={per_query}, candidates={candidates}"
        )
    if len({_normalised(p) for p in passages}) < 2:
        raise InvalidInput("expected at least two distinct passages to draw negatives from; found fewer")


def mine_hard_negatives(
    encoder: Encoder,
    queries: Sequence[str],
    passages: Sequence[str],
    positives: Sequence[int],
    *,
    per_query: int = 3,
    candidates: int = 20,
    seed: int = 42,
) -> ScoredPairs:
    """Pair each query with its positive passage and with hard negatives the encoder confuses with it.

    For query i the negatives are drawn, without replacement, from the encoder's top `candidates` passages
    by exact cosine similarity, leaving out the positive itself and every passage whose text equals the
    positive's (whitespace-normalised); each negative text is used once per query. Higher-ranked candidates
    are preferred: candidate r (0 = most similar) is drawn with weight 1 / (r + 1), so the hardest negatives
    are most likely while a near-duplicate of the answer at the very top does not always make it in.

    Args:
        encoder: the embedding model that ranks passages (e.g. the retriever being served).
        queries: (n,) query texts.
        passages: the corpus the negatives come from.
        positives: (n,) index into `passages` of each query's relevant passage.
        per_query: negatives per query.
        candidates: how many top-ranked passages a query's negatives are drawn from.
        seed: seeds the draw, so the same inputs give the same rows.

    Returns:
        For each query in order: the row (query, positive, 1.0), then `per_query` rows (query, negative, 0.0)
        in rank order (fewer only when the corpus has fewer other distinct passages).
    """
    _check_inputs(queries, passages, positives, per_query, candidates)
    rng = np.random.default_rng(seed)
    keys = [_normalised(p) for p in passages]
    out_queries: list[str] = []
    out_passages: list[str] = []
    out_labels: list[float] = []
    passage_vectors = encoder.encode(list(passages))  # (passages, dim) float32, L2-normalised
    for start in range(0, len(queries), _QUERY_CHUNK):
        chunk = list(queries[start : start + _QUERY_CHUNK])
        similarity = encoder.encode(chunk) @ passage_vectors.T  # (chunk, passages) cosine
        for offset, query in enumerate(chunk):
            positive = int(positives[start + offset])
            ranked = np.argsort(-similarity[offset], kind="stable")
            chosen = _draw(ranked, keys, keys[positive], per_query, candidates, rng)
            out_queries.extend([query] * (1 + len(chosen)))
            out_passages.extend([passages[positive], *(passages[j] for j in chosen)])
            out_labels.extend([1.0] + [0.0] * len(chosen))
    return ScoredPairs(out_queries, out_passages, out_labels)


def _draw(
    ranked: np.ndarray,
    keys: list[str],
    positive_key: str,
    per_query: int,
    candidates: int,
    rng: np.random.Generator,
) -> list[int]:
    """Indices of up to `per_query` negatives, in rank order, from passages ranked best first."""
    top: list[int] = []  # the best `candidates` distinct texts other than the positive's, best first
    seen = {positive_key}
    for j in ranked:
        if keys[j] not in seen:
            seen.add(keys[j])
            top.append(int(j))
            if len(top) == candidates:
                break
    weights = 1.0 / np.arange(1, len(top) + 1)
    picked = rng.choice(len(top), size=min(per_query, len(top)), replace=False, p=weights / weights.sum())
    return [top[i] for i in sorted(int(i) for i in picked)]
