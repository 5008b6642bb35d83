"""Training the optional cross-encoder rescorer of a trained text-interest model, and fitting its weight.

The data split is the model's own: with the model's `hold_out_last` each user's last interaction is removed,
and of the rest each user's last item validates. Training rows are (history text, item text, relevance)
from (user, position) pairs of the training sequences, taken in a seeded random order: where the model
ranks the next item among its top `candidates` for that history, the next item is the positive and the
negatives are drawn from the other top candidates. That is the rescorer's own job at serving, telling
apart items the blend already ranks high; targets from anywhere would train it on pairs it never sees there.
The cross-encoder starts from the model's fine-tuned encoder. (On amazon_scientific and MovieLens neither
way of choosing targets gave a rescorer that beat the blend alone on validation: bench/README.md.)

Then, on validation users, the blend's top candidates are re-scored with every (top_n, weight) of a small
grid and the pair with the best NDCG@10 is kept; weight 0 (the blend alone) wins ties, so a rescorer that
does not help on validation is saved switched off. Its report keeps every cell of the grid.
"""

from __future__ import annotations

import dataclasses
import itertools
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recommender.blend_selection import validation_users
from recommender.data import Catalog, Interactions
from recommender.model import TextInterestModel, history_text
from recommender.protocol import (
    Scorer,
    candidate_mask,
    history_positions,
    leave_last_out,
    rank_metrics,
    target_ranks,
)
from recommender.provenance import trained_on
from recommender.rescoring import (
    RESCORER_DIR,
    Rescoring,
    combine,
    top_positions,
    top_relevance,
    write_settings,
)
from textcore import InvalidInput, Reranker, TrainConfig, train_reranker
from textcore.artifacts import utc_now
from textcore.data import ScoredPairs

TOP_NS = (10, 20, 30)  # re-scored candidates tried
WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)  # relevance weights tried (0: the blend alone)
SCORE_BATCH = 256  # histories scored over the whole catalog at once


@dataclass(frozen=True)
class RescorerTrainConfig:
    """Knobs of `train_rescorer`.

    The defaults train on 8,000 rows; with the fit that took 4 min on MovieLens-100k and 11 min on
    amazon_scientific on 2 CPU cores.
    """

    base_model: str = ""  # "": the recommender model's own fine-tuned encoder
    max_queries: int = 2000  # (history, next item) queries whose next item the model ranks in its top
    scan_factor: int = 20  # at most this many times max_queries queries are looked at to find them
    negatives: int = 3  # hard negatives per query
    candidates: int = 30  # the model's top items the negatives are drawn from
    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 5e-5
    max_length: int = 192  # tokens of a (history text, item text) pair
    max_validation_users: int = 1000  # users the top_n and weight are fitted on
    seed: int = 42
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        checks = {
            "max_queries": (self.max_queries >= 2, "an integer >= 2"),
            "scan_factor": (self.scan_factor >= 1, "an integer >= 1"),
            "negatives": (self.negatives >= 1, "an integer >= 1"),
            "candidates": (self.candidates >= self.negatives, "an integer >= negatives"),
            "epochs": (self.epochs >= 1, "an integer >= 1"),
            "batch_size": (self.batch_size >= 2, "an integer >= 2"),
            "learning_rate": (0 < self.learning_rate < 1, "a number in (0, 1)"),
            "max_length": (16 <= self.max_length <= 8192, "an integer in [16, 8192]"),
            "max_validation_users": (self.max_validation_users >= 1, "an integer >= 1"),
        }
        for name, (ok, expected) in checks.items():
            if not ok:
                raise InvalidInput(f"{name}: expected {expected}; found {getattr(self, name)!r}")


@dataclass(frozen=True)
class Query:
    """One training question for the rescorer: what came before, what came next, what the user liked."""

    history: list[int]  # catalog positions, oldest first
    target: int  # the next item's position
    liked: Sequence[int]  # every position the user is known to like: never drawn as a negative


def training_queries(
    train: dict[str, list[str]], catalog: Catalog, history_items: int, seed: int
) -> Iterator[Query]:
    """(previous items, next item) of every position t >= 1 of every training sequence, in a seeded order.

    As in `training.behaviour_pairs`, an item already among the previous `history_items` is skipped. A
    query's `liked` is the user's whole training sequence: an item they chose later is no negative.
    """
    sequences = [history_positions(train[user], catalog) for user in sorted(train)]
    places = [(u, t) for u, positions in enumerate(sequences) for t in range(1, len(positions))]
    for i in np.random.default_rng(seed).permutation(len(places)):
        u, t = places[i]
        positions = sequences[u]
        if positions[t] not in positions[max(0, t - history_items) : t]:
            yield Query(positions[:t], positions[t], positions)


def hard_negative_pairs(
    scorer: Scorer,
    catalog: Catalog,
    queries: Iterable[Query],
    cfg: RescorerTrainConfig,
    history_items: int,
    limit: int,
) -> tuple[ScoredPairs, int]:
    """Rows of the first `limit` queries whose target the scorer ranks among its top `candidates`.

    The rescorer only ever re-orders the blend's best candidates, so it learns on those: a query whose
    target the blend ranks lower is passed over (trained on, it would teach that whatever the blend likes is
    irrelevant). Each kept query gives (history text, next item text, 1.0), then `negatives` rows with label
    0.0 drawn without replacement from the other top candidates, candidate r with weight 1 / (r + 1); items
    the user liked are never candidates. At most `cfg.scan_factor * limit` queries are looked at.

    Returns:
        The rows and how many queries were looked at.
    """
    rng = np.random.default_rng(cfg.seed)
    out_queries: list[str] = []
    passages: list[str] = []
    labels: list[float] = []
    kept = scanned = 0
    pending = iter(queries)
    while kept < limit and scanned < cfg.scan_factor * limit:
        batch = list(itertools.islice(pending, SCORE_BATCH))
        if not batch:
            break
        scanned += len(batch)
        scores = scorer([q.history for q in batch])
        for row, q in enumerate(batch):
            top = top_positions(scores[row], cfg.candidates, [i for i in q.liked if i != q.target])
            if kept == limit or q.target not in top:
                continue
            others = top[top != q.target]
            weights = 1.0 / (np.flatnonzero(top != q.target) + 1.0)
            count = min(cfg.negatives, len(others))
            drawn = rng.choice(others, count, replace=False, p=weights / weights.sum()) if count else others
            query = history_text([catalog.titles[i] for i in q.history], history_items)
            for position, label in [(q.target, 1.0)] + [(int(i), 0.0) for i in drawn]:
                out_queries.append(query)
                passages.append(catalog.texts[position])
                labels.append(label)
            kept += 1
    return ScoredPairs(out_queries, passages, labels), scanned


@dataclass(frozen=True)
class _Candidates:
    """Validation users' blend top candidates, their scores and where the target stands."""

    tops: list[np.ndarray]  # per user, the blend's best max(TOP_NS) unseen items, best first
    blend: list[np.ndarray]  # their blend scores
    targets: np.ndarray  # (users,) target positions
    blend_ranks: np.ndarray  # (users,) the target's 1-based rank under the blend alone


def _blend_candidates(scorer: Scorer, histories: list[list[int]], targets: np.ndarray) -> _Candidates:
    tops: list[np.ndarray] = []
    blend: list[np.ndarray] = []
    ranks = np.empty(len(histories), dtype=np.int64)
    for start in range(0, len(histories), SCORE_BATCH):
        batch = histories[start : start + SCORE_BATCH]
        scores = scorer(batch)
        batch_targets = targets[start : start + len(batch)]
        ranks[start : start + len(batch)] = target_ranks(
            scores, batch_targets, candidate_mask(batch, batch_targets, scores.shape[1])
        )
        for row, history in enumerate(batch):
            top = top_positions(scores[row], max(TOP_NS), history)
            tops.append(top)
            blend.append(scores[row, top])
    return _Candidates(tops, blend, targets, ranks)


def rescored_ranks(
    candidates: _Candidates, relevance: list[np.ndarray], top_n: int, weight: float
) -> np.ndarray:
    """The targets' ranks after re-scoring each user's top `top_n` with `weight` (see `rescoring.lift`).

    A target outside the re-scored candidates keeps its blend rank: they all stay above it.
    """
    ranks = candidates.blend_ranks.copy()
    for user, candidate_top in enumerate(candidates.tops):
        top = candidate_top[:top_n]
        where = np.flatnonzero(top == candidates.targets[user])
        if len(top) < 2 or not len(where):
            continue
        combined = combine(candidates.blend[user][:top_n], relevance[user][:top_n], weight)
        others = np.delete(combined, where[0])
        ranks[user] = 1 + int((others >= combined[where[0]]).sum())
    return ranks


def fit_rescoring(
    reranker: Reranker,
    scorer: Scorer,
    catalog: Catalog,
    histories: list[list[int]],
    targets: np.ndarray,
    history_items: int,
    max_length: int,
) -> tuple[Rescoring, dict[str, Any]]:
    """Choose `top_n` and `weight` by NDCG@10 of the validation targets (weight 0 = the blend alone).

    Returns:
        The chosen settings and a report: the blend's metrics, each cell's NDCG@10, the chosen cell's metrics.
    """
    if not histories:
        unfitted = Rescoring(history_items=history_items, max_length=max_length)
        return unfitted, {"n_users": 0, "note": "no validation users; re-scoring stays off"}
    candidates = _blend_candidates(scorer, histories, targets)
    relevance = top_relevance(reranker, catalog, histories, candidates.tops, history_items)
    grid: dict[str, dict[str, float]] = {}
    best: tuple[float, int, float, dict[str, float]] | None = None
    for top_n in TOP_NS:
        for weight in WEIGHTS:
            metrics = rank_metrics(rescored_ranks(candidates, relevance, top_n, weight))
            grid.setdefault(f"top_{top_n}", {})[f"{weight:g}"] = metrics["ndcg@10"]
            if best is None or metrics["ndcg@10"] > best[0]:  # strict: the blend alone wins ties
                best = (metrics["ndcg@10"], top_n, weight, metrics)
    assert best is not None  # the grids are not empty
    _, top_n, weight, metrics = best
    rescoring = Rescoring(top_n=top_n, weight=weight, history_items=history_items, max_length=max_length)
    report = {
        "n_users": len(histories),
        "blend": rank_metrics(candidates.blend_ranks),
        "grid_ndcg@10": grid,
        "chosen": {**dataclasses.asdict(rescoring), "metrics": metrics},
        "active": weight > 0,
    }
    return rescoring, report


def train_rescorer(
    model_dir: Path,
    interactions: Interactions,
    catalog: Catalog,
    cfg: RescorerTrainConfig | None = None,
    progress: bool = False,
    *,
    sources: dict[str, Any] | None = None,
) -> tuple[Rescoring, dict[str, Any]]:
    """Train a cross-encoder for the model in `model_dir`, fit how it joins the blend, save `rescorer/`.

    The new rescorer replaces an old one only once it is complete.

    Returns:
        The fitted settings and a report: data counts, the cross-encoder's validation figures, the fit.

    Raises:
        NotFound: `model_dir` is not a recommender model.
        InvalidInput: No interactions, or too few training queries.
    """
    cfg = cfg or RescorerTrainConfig()
    if len(interactions) == 0:
        raise InvalidInput("expected at least one interaction to train on; found none")
    model = TextInterestModel.load(model_dir, device=cfg.device, precision=cfg.precision)
    hold_out_last = bool(model.meta.get("train_config", {}).get("hold_out_last", True))
    sequences = interactions.sequences()
    seen = leave_last_out(sequences).train if hold_out_last else sequences
    split = leave_last_out(seen)  # the model's own split: its validation items stay unseen here too
    scorer = model.scorer(catalog, split.train)
    history_items = model.config.text_history_items
    queries = training_queries(split.train, catalog, history_items, cfg.seed)
    pairs, scanned = hard_negative_pairs(scorer, catalog, queries, cfg, history_items, cfg.max_queries)
    n_queries = sum(label == 1.0 for label in pairs.labels)
    if n_queries < 2:
        raise InvalidInput(
            f"expected at least 2 (history, next item) queries whose next item the model ranks among its "
            f"top {cfg.candidates}; found {n_queries} of {scanned} looked at"
        )
    limit = cfg.max_validation_users
    histories, targets = validation_users(split.train, split.test, catalog, limit, cfg.seed)
    held = [Query(h, t, h) for h, t in zip(histories, targets.tolist(), strict=True)]
    held_pairs, _ = hard_negative_pairs(scorer, catalog, held, cfg, history_items, len(held))
    # with fewer than two the trainer carves its validation rows from the training rows
    validation = held_pairs if sum(label == 1.0 for label in held_pairs.labels) >= 2 else None
    config = TrainConfig(
        task="cross-encoder",
        base_model=cfg.base_model or str(Path(model_dir).resolve()),
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        max_length=cfg.max_length,
        evals_per_epoch=1,
        seed=cfg.seed,
        device=cfg.device,
        precision=cfg.precision,
    )
    staging = Path(model_dir) / f".{RESCORER_DIR}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    info = {"queries": n_queries, "rows": len(pairs), "negatives": cfg.negatives, **(sources or {})}
    result = train_reranker(pairs, config, staging, validation=validation, sources=info, progress=progress)
    reranker = Reranker.load(staging, device=cfg.device, precision=cfg.precision, max_length=cfg.max_length)
    rescoring, fit = fit_rescoring(
        reranker, scorer, catalog, histories, targets, history_items, cfg.max_length
    )
    report = {
        "n_queries": n_queries,
        "n_queries_looked_at": scanned,
        "n_rows": len(pairs),
        "cross_encoder": {"validation_metrics": result.metrics},
        "fit": fit,
    }
    meta = {
        "created_at": utc_now(),
        "train_config": dataclasses.asdict(cfg),
        "trained_on": trained_on(interactions, hold_out_last),
        "report": report,
        "sources": sources or {},
    }
    write_settings(staging, rescoring, meta)
    final = Path(model_dir) / RESCORER_DIR
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    return rescoring, report
