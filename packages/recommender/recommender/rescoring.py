"""Optional re-scoring of the blend's best candidates by a cross-encoder trained on behaviour.

A cross-encoder reads a user's history text and one candidate's text together, in one forward pass per pair,
so it can weigh their words against each other where the two towers only compare two vectors. It is far too
slow to score a catalog, so it re-orders only the `top_n` candidates the blend ranks best: there the blend
and the cross-encoder's relevance are each z-normalised over those candidates and summed with `weight`. The
re-scored candidates stay above every other one, so only the order inside the top `top_n` changes.

`rescorer_training.train_rescorer` writes `<model>/rescorer/`: a `textcore` cross-encoder folder plus
`rescoring.json` with `top_n`, the `weight` fitted on validation users, and the training report. A weight of
0 means re-scoring did not help on validation; such a rescorer is kept for inspection but never used.
Cold-start requests (interests without a history) are not re-scored: the cross-encoder reads histories.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recommender.data import Catalog
from recommender.model import history_text, zscore
from recommender.protocol import Scorer
from textcore import InvalidInput, Reranker
from textcore.artifacts import read_json, write_json_atomic

RESCORER_DIR = "rescorer"
SETTINGS_FILE = "rescoring.json"
MAX_TOP_N = 1000


@dataclass(frozen=True)
class Rescoring:
    """How the cross-encoder joins the blend.

    Args:
        top_n: How many of the blend's best candidates are re-scored.
        weight: Weight of the z-normalised relevance beside the z-normalised blend (0: re-scoring is off).
        history_items: Titles in the query text (the text profile's and the training anchors' length).
        max_length: Tokens of a (query, item text) pair, as the cross-encoder was trained.
    """

    top_n: int = 20
    weight: float = 0.0
    history_items: int = 5
    max_length: int = 192

    def __post_init__(self) -> None:
        if not 1 <= self.top_n <= MAX_TOP_N:
            raise InvalidInput(f"top_n: expected an integer in [1, {MAX_TOP_N}]; found {self.top_n!r}")
        if not (np.isfinite(self.weight) and self.weight >= 0):
            raise InvalidInput(f"weight: expected a finite number >= 0; found {self.weight!r}")
        if self.history_items < 1:
            raise InvalidInput(f"history_items: expected an integer >= 1; found {self.history_items!r}")
        if not 16 <= self.max_length <= 8192:
            raise InvalidInput(f"max_length: expected an integer in [16, 8192]; found {self.max_length!r}")


def combine(blend: np.ndarray, relevance: np.ndarray, weight: float) -> np.ndarray:
    """z(blend) + weight * z(relevance) over the last axis: the order of the re-scored candidates."""
    return zscore(blend) + np.float32(weight) * zscore(relevance)


def top_positions(scores: np.ndarray, n: int, exclude: Sequence[int] = ()) -> np.ndarray:
    """Positions of the `n` highest finite scores of a 1-D array outside `exclude`, best first (ties keep
    input order)."""
    if len(exclude):
        scores = scores.copy()
        scores[list(exclude)] = -np.inf
    order = np.argsort(-scores, kind="stable")[:n]
    kept: np.ndarray = order[np.isfinite(scores[order])]
    return kept


def top_relevance(
    reranker: Reranker,
    catalog: Catalog,
    histories: Sequence[Sequence[int]],
    tops: Sequence[np.ndarray],
    history_items: int,
) -> list[np.ndarray]:
    """Per history (catalog positions, oldest first), the cross-encoder's relevance of its `tops` items.

    All (history text, item text) pairs go to the cross-encoder in one call, so its batches stay full.
    """
    queries: list[str] = []
    passages: list[str] = []
    for history, top in zip(histories, tops, strict=True):
        queries.extend([history_text([catalog.titles[i] for i in history], history_items)] * len(top))
        passages.extend(catalog.texts[int(i)] for i in top)
    scores = reranker.score_pairs(queries, passages)
    bounds = np.cumsum([0] + [len(top) for top in tops])
    return [scores[a:b] for a, b in itertools.pairwise(bounds)]


def lift(scores: np.ndarray, top: np.ndarray, combined: np.ndarray) -> np.ndarray:
    """A copy of 1-D `scores` where positions `top` rank above every other one, ordered by `combined`.

    The lifted scores are ``floor + 1 + (combined - min(combined))`` with `floor` the best score left
    outside `top`, so a higher score still means a better item across the whole answer.
    """
    out = np.array(scores, dtype=np.float32, copy=True)
    if len(top) == 0:
        return out
    rest = np.delete(out, top)
    rest = rest[np.isfinite(rest)]
    floor = float(rest.max()) if rest.size else 0.0
    out[top] = floor + 1.0 + (combined - combined.min())
    return out


class Rescorer:
    """A trained cross-encoder and its `Rescoring`; thread-safe like `textcore.Reranker`."""

    def __init__(self, reranker: Reranker, rescoring: Rescoring, meta: dict[str, Any]) -> None:
        self.reranker = reranker
        self.rescoring = rescoring
        self.meta = meta

    @classmethod
    def load(cls, model_folder: Path, *, device: str = "auto", precision: str = "auto") -> Rescorer | None:
        """The rescorer of a model folder, or None when the model has none.

        Raises:
            InvalidInput: The rescorer folder exists but is malformed.
        """
        folder = Path(model_folder) / RESCORER_DIR
        if not (folder / SETTINGS_FILE).is_file():
            return None
        rescoring, meta = read_settings(folder)
        reranker = Reranker.load(folder, device=device, precision=precision, max_length=rescoring.max_length)
        return cls(reranker, rescoring, meta)

    @property
    def active(self) -> bool:
        """Whether the fitted weight asks for re-scoring at all."""
        return self.rescoring.weight > 0

    def query(self, history_titles: Sequence[str]) -> str:
        """The query text of a history (titles, oldest first), as the cross-encoder was trained on."""
        return history_text(history_titles, self.rescoring.history_items)

    def rescore(
        self, scores: np.ndarray, query: str, texts_of: Callable[[list[int]], list[str]]
    ) -> np.ndarray:
        """Re-order the best `top_n` of 1-D blend `scores` by blend and relevance (see `lift`).

        Args:
            scores: (n,) blend scores; -inf marks positions that must not be re-scored.
            query: The history text (see `query`).
            texts_of: Positions -> the item texts there (only the re-scored ones are asked for).
        """
        top = top_positions(scores, self.rescoring.top_n)
        if len(top) < 2:
            return np.array(scores, dtype=np.float32, copy=True)
        relevance = self.reranker.score(query, texts_of(top.tolist()))
        return lift(scores, top, combine(scores[top], relevance, self.rescoring.weight))

    def scorer(self, scorer: Scorer, catalog: Catalog) -> Scorer:
        """`scorer` with each history's top `top_n` unseen items re-scored (for `protocol.evaluate`)."""
        settings = self.rescoring

        def score(histories: list[list[int]]) -> np.ndarray:
            scores = np.array(scorer(histories), dtype=np.float32, copy=True)
            # the user's own items are not candidates; an empty history is not re-scored
            tops = [
                top_positions(scores[row], settings.top_n, history) if history else np.zeros(0, np.int64)
                for row, history in enumerate(histories)
            ]
            relevance = top_relevance(self.reranker, catalog, histories, tops, settings.history_items)
            for row, (top, part) in enumerate(zip(tops, relevance, strict=True)):
                if len(top) >= 2:
                    scores[row] = lift(scores[row], top, combine(scores[row, top], part, settings.weight))
            return scores

        return score


def read_settings(folder: Path) -> tuple[Rescoring, dict[str, Any]]:
    """`rescoring.json` of a rescorer folder: the settings and the rest of the record (report, provenance).

    Raises:
        InvalidInput: The file is malformed.
    """
    path = folder / SETTINGS_FILE
    data = read_json(path)
    try:
        rescoring = Rescoring(**data["rescoring"])
        meta = dict(data["meta"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"{path}: expected 'rescoring' and 'meta' objects; {exc}") from exc
    return rescoring, meta


def write_settings(folder: Path, rescoring: Rescoring, meta: dict[str, Any]) -> None:
    """Write `rescoring.json` into a rescorer folder (atomically)."""
    write_json_atomic(folder / SETTINGS_FILE, {"rescoring": dataclasses.asdict(rescoring), "meta": meta})
