"""Training a text-interest model from behaviour: hold out, fine-tune the encoder, fit the blend, save.

With `hold_out_last` each user's last interaction (the leave-last-out test item) is removed first; of what
remains, each user's last item is the validation item. The encoder is fine-tuned with the core's embedding
task on (recent history titles -> next item text) pairs built from the rest, with in-batch negatives. Then the
co-occurrence variant (similarity and recency decay) that ranks the validation items best on its own is taken,
and the profile kind, recency decay, closest-item share and blend weights are chosen by NDCG@10 on the same
items, averaged over each grid cell's neighbourhood of weights: every component's (users x items) score matrix
is computed once and only their weighted sums are ranked, so the grid is cheap.

The model's metadata records what it saw (`trained_on`), so that an evaluation can tell whether the model was
trained on the interactions it is tested on (`leaked_test_users`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recommender.baselines import ItemKNN, Popularity
from recommender.data import Catalog, Interactions
from recommender.model import (
    BlendWeights,
    ModelConfig,
    TextInterestModel,
    history_text,
    max_similarities,
    mean_profiles,
    zscore,
)
from recommender.protocol import (
    candidate_mask,
    history_positions,
    leave_last_out,
    rank_metrics,
    target_ranks,
)
from textcore import Encoder, InvalidInput, TrainConfig, train_embedder
from textcore.artifacts import utc_now, write_metadata
from textcore.data import Pairs
from textcore.models import resolve_model

DECAYS = (0.5, 0.8, 1.0)
KNN_DECAYS = (1.0, 0.85, 0.5)  # recency weights tried for the co-occurrence component (1.0: plain item-kNN)
# (alpha, shrink) of the co-occurrence similarity: item-kNN's cosine, and an asymmetric cosine that divides
# less by the candidate's own popularity (amazon_scientific validation chooses it: see bench/README.md)
KNN_SIMILARITIES = ((0.5, 10.0), (0.7, 20.0))
MAX_SHARES = (0.0, 0.3, 0.6)  # weight of the closest-history-item similarity inside the content score
GRID_STEPS = 10  # blend weights on the simplex in steps of 1/GRID_STEPS
CELL_BUDGET = 36_000_000  # validation users x items per component matrix (144 MB of float32)


Weights = tuple[float, float, float]  # blend weights (content, co-occurrence, popularity)
ContentKey = tuple[str, float, float]  # (profile kind, recency decay, closest-item share)


@dataclass(frozen=True)
class RecTrainConfig:
    """Knobs of `train_model`; the defaults are sized for amazon_scientific in ~15 min on 2 CPU cores."""

    base_model: str = "minilm"
    epochs: int = 1  # 0 skips fine-tuning: the base encoder is used zero-shot
    max_pairs: int = 20000  # behaviour pairs, subsampled deterministically
    batch_size: int = 32
    learning_rate: float = 5e-5
    history_items: int = 5  # titles in a training anchor (and in a text profile)
    max_length: int = 96
    seed: int = 42
    hold_out_last: bool = True  # False: the model sees every interaction (for serving, not for evaluation)
    validation_pairs: int = 512  # pairs the embedding task evaluates on during fine-tuning
    max_validation_users: int = 6000  # users on whom the profile and blend are chosen
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        checks = {
            "epochs": (self.epochs >= 0, "an integer >= 0"),
            "max_pairs": (self.max_pairs >= 4, "an integer >= 4"),
            "batch_size": (self.batch_size >= 2, "an integer >= 2"),
            "learning_rate": (0 < self.learning_rate < 1, "a number in (0, 1)"),
            "history_items": (self.history_items >= 1, "an integer >= 1"),
            "max_length": (8 <= self.max_length <= 8192, "an integer in [8, 8192]"),
            "validation_pairs": (self.validation_pairs >= 0, "an integer >= 0"),
            "max_validation_users": (self.max_validation_users >= 1, "an integer >= 1"),
        }
        for name, (ok, expected) in checks.items():
            if not ok:
                raise InvalidInput(f"{name}: expected {expected}; found {getattr(self, name)!r}")


def behaviour_pairs(train: dict[str, list[str]], catalog: Catalog, cfg: RecTrainConfig) -> Pairs:
    """(history text -> next item text) pairs: for each user and position t >= 1 of their sequence.

    The anchor is the titles of up to `history_items` previous items, newest first (see `history_text`);
    the positive is the catalog text of item t. Repeats of an item in the anchor are skipped (no new
    interest to learn). Items outside the catalog are dropped. More than `max_pairs` pairs are subsampled
    with the seed, keeping their order.
    """
    anchors: list[str] = []
    positives: list[str] = []
    for user in sorted(train):
        positions = history_positions(train[user], catalog)
        for t in range(1, len(positions)):
            previous = positions[max(0, t - cfg.history_items) : t]
            if positions[t] in previous:
                continue
            anchors.append(history_text([catalog.titles[i] for i in previous], cfg.history_items))
            positives.append(catalog.texts[positions[t]])
    pairs = Pairs(anchors, positives)
    if len(pairs) <= cfg.max_pairs:
        return pairs
    keep = np.sort(np.random.default_rng(cfg.seed).choice(len(pairs), cfg.max_pairs, replace=False))
    return pairs.subset(keep)


def _time_order(interactions: Interactions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user ids, per-row user codes, rows ordered by (user, time, row)) as in `Interactions.sequences`."""
    ids, codes = np.unique(interactions.users, return_inverse=True)
    return ids, codes, np.lexsort((interactions.times, codes))


def interactions_sha256(interactions: Interactions) -> str:
    """Hex SHA-256 of (user, item, time) rows in each user's time order; independent of file layout."""
    _, _, order = _time_order(interactions)
    digest = hashlib.sha256()
    rows = zip(
        interactions.users[order], interactions.items[order], interactions.times[order].tolist(), strict=True
    )
    for user, item, time in rows:
        digest.update(f"{user}\t{item}\t{time!r}\n".encode())
    return digest.hexdigest()


def _user_times(interactions: Interactions) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Per user (sorted): interaction count, time of the last interaction, time of the one before it."""
    ids, codes, order = _time_order(interactions)
    times, sorted_codes = interactions.times[order], codes[order]
    ends = np.append(np.flatnonzero(np.diff(sorted_codes)), len(order) - 1)  # each user's last row
    counts = np.diff(np.concatenate(([-1], ends)))
    return [str(u) for u in ids], counts, times[ends], times[np.maximum(ends - 1, 0)]


def trained_on(interactions: Interactions, hold_out_last: bool) -> dict[str, Any]:
    """What a model trained on `interactions` saw: content hash, hold-out, and per user the last time seen."""
    if len(interactions) == 0:
        return {
            "interactions_sha256": interactions_sha256(interactions),
            "n_interactions": 0,
            "n_seen": 0,
            "held_out": "last" if hold_out_last else "none",
            "last_seen": {},
        }
    users, counts, last, previous = _user_times(interactions)
    held = hold_out_last & (counts >= 2)  # leave-last-out tests only users with two or more interactions
    return {
        "interactions_sha256": interactions_sha256(interactions),
        "n_interactions": len(interactions),
        "n_seen": len(interactions) - int(held.sum()),
        "held_out": "last" if hold_out_last else "none",
        "last_seen": dict(zip(users, np.where(held, previous, last).tolist(), strict=True)),
    }


def leaked_test_users(meta: dict[str, Any], interactions: Interactions) -> int:
    """How many users' leave-last-out test interaction in `interactions` the model may have trained on.

    Zero when the model was trained on exactly these interactions with the last ones held out, or never
    trained on behaviour. Otherwise a user counts when the model saw one of their interactions at or after
    the time of their last interaction here (ties count as seen: the cautious answer).
    """
    record = meta.get("trained_on")
    if not isinstance(record, dict) or len(interactions) == 0:
        return 0
    if record.get("held_out") == "last" and record.get("interactions_sha256") == interactions_sha256(
        interactions
    ):
        return 0
    last_seen = record.get("last_seen") or {}
    users, counts, last, _ = _user_times(interactions)
    return sum(
        1
        for user, count, time in zip(users, counts, last, strict=True)
        if count >= 2 and user in last_seen and float(last_seen[user]) >= time
    )


def validation_users(
    train: dict[str, list[str]], validation: dict[str, str], catalog: Catalog, limit: int, seed: int
) -> tuple[list[list[int]], np.ndarray]:
    """Histories (catalog positions) and target positions of up to `limit` seeded validation users."""
    users = [u for u in sorted(validation) if validation[u] in catalog.index]
    histories = {u: history_positions(train.get(u, []), catalog) for u in users}
    users = [u for u in users if histories[u]]
    if len(users) > limit:
        users = [
            users[i] for i in np.sort(np.random.default_rng(seed).choice(len(users), limit, replace=False))
        ]
    targets = np.array([catalog.index[validation[u]] for u in users], dtype=np.int64)
    return [histories[u] for u in users], targets


def _validation_pairs(
    train: dict[str, list[str]], validation: dict[str, str], catalog: Catalog, cfg: RecTrainConfig
) -> Pairs | None:
    histories, targets = validation_users(train, validation, catalog, cfg.validation_pairs, cfg.seed)
    if len(histories) < 2:
        return None  # the embedding task then carves its own validation split from the training pairs
    anchors = [history_text([catalog.titles[i] for i in h], cfg.history_items) for h in histories]
    return Pairs(anchors, [catalog.texts[i] for i in targets])


def weight_grid() -> list[Weights]:
    """Blend weights (content, co-occurrence, popularity) on the simplex in steps of 1/GRID_STEPS."""
    steps = range(GRID_STEPS + 1)
    return [
        (c / GRID_STEPS, k / GRID_STEPS, (GRID_STEPS - c - k) / GRID_STEPS)
        for c in steps
        for k in steps
        if c + k <= GRID_STEPS
    ]


def fit_blend(
    model: TextInterestModel,
    catalog: Catalog,
    train: dict[str, list[str]],
    validation: dict[str, str],
    cfg: RecTrainConfig,
    item_vectors: np.ndarray,
) -> tuple[ModelConfig, BlendWeights, dict[str, Any]]:
    """Choose profile kind, recency decay and blend weights by NDCG@10 on each user's validation item.

    Args:
        model: Supplies the encoder (for text profiles) and the base profile settings.
        catalog: The items; `item_vectors` are their (n_items, dim) vectors.
        train: What the components may see (validation items removed).
        validation: User -> validation item id.
        cfg: Training knobs (validation user cap, seed).

    Returns:
        The chosen config and weights, and a report with each component's and the blend's metrics.
    """
    limit = min(cfg.max_validation_users, max(1, CELL_BUDGET // max(1, len(catalog))))
    histories, targets = validation_users(train, validation, catalog, limit, cfg.seed + 1)
    if not histories:
        return model.config, model.weights, {"n_users": 0, "note": "no validation users; defaults kept"}
    candidates = candidate_mask(histories, targets, len(catalog))
    knn, knn_report = _choose_knn(train, catalog, histories, targets, candidates)
    popularity = zscore(Popularity(train, catalog)(histories))
    contents = content_variants(model, histories, item_vectors, catalog.titles)
    components = {**knn_report, "popularity": rank_metrics(target_ranks(popularity, targets, candidates))}
    grid = _grid_search(contents, knn.scores, popularity, targets, candidates)
    (profile, decay, share), weights = grid.key, grid.weights
    for (kind, d, s), figures in grid.alone.items():
        name = f"content_mean_{d:g}" if kind == "mean" else "content_text"
        components[name if s == 0 else f"{name}_max_{s:g}"] = figures
    config = dataclasses.replace(
        model.config,
        profile=profile,
        recency_decay=decay,
        max_share=share,
        knn_decay=knn.decay,
        knn_alpha=knn.alpha,
        knn_shrink=knn.shrink,
    )
    chosen = BlendWeights(*weights)
    report = {
        "n_users": len(histories),
        "components": components,
        "blend": grid.metrics,
        "blend_neighbourhood_ndcg@10": grid.smoothed_ndcg,
        "best_cell": {
            "profile": grid.best_cell[0][0],
            "recency_decay": grid.best_cell[0][1],
            "max_share": grid.best_cell[0][2],
            "weights": dict(zip(("content", "knn", "popularity"), grid.best_cell[1], strict=True)),
            "metrics": grid.best_cell[2],
        },
        "chosen": {
            "profile": profile,
            "recency_decay": decay,
            "knn_decay": knn.decay,
            "knn_alpha": knn.alpha,
            "knn_shrink": knn.shrink,
            "max_share": share,
            "weights": dataclasses.asdict(chosen),
        },
    }
    return config, chosen, report


def content_variants(
    model: TextInterestModel, histories: list[list[int]], item_vectors: np.ndarray, titles: list[str]
) -> Iterator[tuple[ContentKey, np.ndarray]]:
    """Every content variant the blend's grid tries, z-normalised (users, items) scores, one at a time.

    Mean profiles at each of `DECAYS` and the text profile (at the model's recency decay), each mixed with
    the closest-history-item similarity at each of `MAX_SHARES`. The (users x items) matrices are large, so
    the grid holds only the variant it is scoring.
    """
    config = model.config
    text_model = TextInterestModel(
        model.encoder, dataclasses.replace(config, profile="text"), model.weights, {}
    )
    profiles: dict[tuple[str, float], np.ndarray] = {
        ("mean", d): mean_profiles(histories, item_vectors, d, config.history_items) @ item_vectors.T
        for d in DECAYS
    }
    profiles["text", config.recency_decay] = (
        text_model.profiles(histories, item_vectors, titles) @ item_vectors.T
    )
    closest = {
        d: max_similarities(histories, item_vectors, item_vectors, d, config.history_items)
        for d in {d for _, d in profiles}
    }
    for (profile, d), scores in profiles.items():
        for share in MAX_SHARES:
            yield (profile, d, share), zscore((1 - share) * scores + share * closest[d])


@dataclass(frozen=True)
class _Knn:
    """One co-occurrence variant and its z-normalised (users, items) validation scores."""

    alpha: float
    shrink: float
    decay: float
    scores: np.ndarray


def _choose_knn(
    train: dict[str, list[str]],
    catalog: Catalog,
    histories: list[list[int]],
    targets: np.ndarray,
    candidates: np.ndarray,
) -> tuple[_Knn, dict[str, dict[str, float]]]:
    """The co-occurrence variant (similarity x recency decay) that ranks validation items best on its own.

    Choosing it alone, before the blend's grid, keeps at most two variants' matrices in memory instead of
    six and makes the grid six times smaller. In a zero-shot trial on amazon_scientific (four variants) the
    variant best alone was also the one in the best blends.
    """
    best: tuple[float, _Knn] | None = None
    report: dict[str, dict[str, float]] = {}
    for alpha, shrink in KNN_SIMILARITIES:
        item_knn = ItemKNN(train, catalog, shrink=shrink, alpha=alpha)
        for decay in KNN_DECAYS:
            scores = zscore(item_knn(histories, None if decay == 1 else decay))
            metrics = rank_metrics(target_ranks(scores, targets, candidates))
            name = "item_knn" if alpha == 0.5 else f"item_knn_alpha_{alpha:g}"
            report[name if decay == 1 else f"{name}_recency_{decay:g}"] = metrics
            if best is None or metrics["ndcg@10"] > best[0]:
                best = (metrics["ndcg@10"], _Knn(alpha, shrink, decay, scores))
            del scores
    if best is None:
        raise InvalidInput("expected at least one co-occurrence variant; found none")
    return best[1], report


@dataclass(frozen=True)
class GridChoice:
    """The chosen grid cell, its neighbourhood's mean NDCG@10, and the single best cell for comparison."""

    key: ContentKey
    weights: Weights
    metrics: dict[str, float]
    smoothed_ndcg: float
    best_cell: tuple[ContentKey, Weights, dict[str, float]]
    alone: dict[ContentKey, dict[str, float]]  # each content variant's own metrics (weight 1, others 0)


def weight_neighbours(weights: Weights) -> list[Weights]:
    """The grid's cells one step from `weights` (1/GRID_STEPS moved between two components), and itself."""
    cells = weight_grid()
    steps = np.rint(np.array(cells) * GRID_STEPS)
    own = np.rint(np.array(weights) * GRID_STEPS)
    return [cells[i] for i in np.flatnonzero(np.abs(steps - own).sum(axis=1) <= 2)]


def _grid_search(
    contents: Iterable[tuple[ContentKey, np.ndarray]],
    knn: np.ndarray,
    popularity: np.ndarray,
    targets: np.ndarray,
    candidates: np.ndarray,
) -> GridChoice:
    """The sum of z-normalised components whose neighbourhood on the weight grid ranks validation items best.

    Every (content variant, weights) cell is scored by NDCG@10; the chosen cell maximises the mean over itself
    and its neighbours (`weight_neighbours`, same content variant), not its own figure: a lone peak among a
    few thousand validation users is partly noise. On amazon_scientific the single best cell beat its
    neighbours on validation yet ranked the held-out last items worse than the centre of the best plateau, and
    on random halves of the validation users the neighbourhood choice varied less (bench/README.md has the
    figures).
    """
    table: dict[tuple[ContentKey, Weights], dict[str, float]] = {}
    keys: list[ContentKey] = []
    for key, content in contents:
        for weights in weight_grid():
            if weights[0] == 0 and keys:
                table[key, weights] = table[keys[0], weights]  # without content every variant scores alike
                continue
            scores = weights[0] * content + weights[1] * knn + weights[2] * popularity
            table[key, weights] = rank_metrics(target_ranks(scores, targets, candidates))
        keys.append(key)
    if not keys:
        raise InvalidInput("expected at least one profile variant to fit the blend on; found none")
    return choose_cell(table)


def choose_cell(table: dict[tuple[ContentKey, Weights], dict[str, float]]) -> GridChoice:
    """The cell of a full grid (every variant x `weight_grid()`) with the best neighbourhood mean NDCG@10."""
    neighbourhoods = {w: weight_neighbours(w) for w in weight_grid()}
    smoothed = {
        (key, weights): float(np.mean([table[key, n]["ndcg@10"] for n in neighbourhoods[weights]]))
        for key, weights in table
    }
    chosen = max(table, key=lambda cell: smoothed[cell])  # the first maximum in grid order on a tie
    best = max(table, key=lambda cell: table[cell]["ndcg@10"])
    return GridChoice(
        key=chosen[0],
        weights=chosen[1],
        metrics=table[chosen],
        smoothed_ndcg=smoothed[chosen],
        best_cell=(best[0], best[1], table[best]),
        alone={key: figures for (key, weights), figures in table.items() if weights == (1.0, 0.0, 0.0)},
    )


def _save_encoder(
    pairs: Pairs, validation: Pairs | None, cfg: RecTrainConfig, output: Path, progress: bool
) -> dict[str, Any]:
    """Fine-tune the base encoder into `output`, or copy it there unchanged when `epochs` is 0."""
    if cfg.epochs == 0:
        shutil.copytree(
            resolve_model(cfg.base_model),
            output,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("training", "recommender.json", "metadata.json"),
        )
        write_metadata(output, {"task": "embedding", "base_model": cfg.base_model, "training": None})
        return {"trained": False}
    if len(pairs) < 4:
        raise InvalidInput(
            f"expected at least 4 behaviour pairs (users with 3 or more catalog items); found {len(pairs)}"
        )
    config = TrainConfig(
        task="embedding",
        base_model=cfg.base_model,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        max_length=cfg.max_length,
        seed=cfg.seed,
        evals_per_epoch=1,
        device=cfg.device,
        precision=cfg.precision,
    )
    sources = {"behaviour_pairs": len(pairs), "history_items": cfg.history_items}
    result = train_embedder(pairs, config, output, validation=validation, sources=sources, progress=progress)
    return {
        "trained": True,
        "validation_metrics": result.metrics,
        "validation_metrics_before": result.metadata.get("validation_metrics_before"),
        "training": result.metadata.get("training"),
    }


def train_model(
    interactions: Interactions,
    catalog: Catalog,
    output: Path,
    cfg: RecTrainConfig | None = None,
    progress: bool = False,
    *,
    sources: dict[str, Any] | None = None,
) -> tuple[TextInterestModel, dict[str, Any]]:
    """Train a text-interest model and save it in `output` (an encoder folder plus `recommender.json`).

    Args:
        interactions: The behaviour (positives only: threshold ratings before).
        catalog: The items and their text.
        output: The model folder to write.
        cfg: Knobs; defaults when None.
        progress: Show progress bars.
        sources: Where the data came from (paths, file hashes), recorded in the metadata.

    Returns:
        The model and a report: data counts, the encoder's fine-tuning figures and the validation figures of
        each component and of the chosen blend.

    Raises:
        InvalidInput: No interactions, or too few behaviour pairs to fine-tune on.
    """
    cfg = cfg or RecTrainConfig()
    if len(interactions) == 0:
        raise InvalidInput("expected at least one interaction to train on; found none")
    sequences = interactions.sequences()
    seen = leave_last_out(sequences).train if cfg.hold_out_last else sequences
    split = leave_last_out(seen)  # each user's last seen item validates; the rest trains
    pairs = behaviour_pairs(split.train, catalog, cfg)
    validation_pairs = _validation_pairs(split.train, split.test, catalog, cfg)
    encoder_report = _save_encoder(pairs, validation_pairs, cfg, Path(output), progress)
    encoder = Encoder.from_pretrained(
        output, device=cfg.device, precision=cfg.precision, max_length=cfg.max_length
    )
    base_config = ModelConfig(text_history_items=cfg.history_items, max_length=cfg.max_length)
    base = TextInterestModel(encoder, base_config, BlendWeights(), {})
    vectors = base.item_vectors(catalog.texts, progress=progress)
    config, weights, validation = fit_blend(base, catalog, split.train, split.test, cfg, vectors)
    report = {
        "n_interactions": len(interactions),
        "n_users": len(sequences),
        "n_items": len(catalog),
        "n_pairs": len(pairs),
        "encoder": encoder_report,
        "validation": validation,
    }
    meta = {
        "base_model": cfg.base_model,
        "created_at": utc_now(),
        "train_config": dataclasses.asdict(cfg),
        "trained_on": trained_on(interactions, cfg.hold_out_last),
        "report": report,
        "sources": sources or {},
    }
    model = TextInterestModel(encoder, config, weights, meta)
    model.save(Path(output))
    return model, report
