"""Training a text-interest model from behaviour: hold out, fine-tune the encoder, fit the blend, save.

With `hold_out_last` each user's last interaction (the leave-last-out test item) is removed first; of what
remains, each user's last item is the validation item. The encoder is fine-tuned with the core's embedding
task on (recent history titles -> next item text) pairs built from the rest, with in-batch negatives. Then the
co-occurrence variant, profile kind, recency decay, closest-item share and blend weights are chosen on the
validation items (`recommender.blend_selection`).

The model's metadata records what it saw (`recommender.provenance.trained_on`), so that an evaluation can tell
whether the model was trained on the interactions it is tested on (`leaked_test_users`).
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recommender.blend_selection import fit_blend, validation_users
from recommender.data import Catalog, Interactions, outside_catalog
from recommender.model import BlendWeights, ModelConfig, TextInterestModel, history_text
from recommender.model_folders import check_base_model, check_model_folder
from recommender.protocol import history_positions, leave_last_out
from recommender.provenance import trained_on
from recommender.rescoring import RESCORER_DIR
from textcore import Encoder, InvalidInput, TrainConfig, train_embedder
from textcore.artifacts import METADATA_FILE, RUN_DIR, utc_now, write_metadata
from textcore.data import Pairs
from textcore.preflight import prepare_output


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


def _validation_pairs(
    train: dict[str, list[str]], validation: dict[str, str], catalog: Catalog, cfg: RecTrainConfig
) -> Pairs | None:
    histories, targets = validation_users(train, validation, catalog, cfg.validation_pairs, cfg.seed)
    if len(histories) < 2:
        return None  # the embedding task then carves its own validation split from the training pairs
    anchors = [history_text([catalog.titles[i] for i in h], cfg.history_items) for h in histories]
    return Pairs(anchors, [catalog.texts[i] for i in targets])


def prepare_model_folder(output: Path) -> None:
    """Empty the folder of an earlier model (its encoder, tokenizer, blend, rescorer and run) before a new one
    is written there, as `textcore train` does, so that no file of it (a vocabulary the new base model has no
    use for, a rescorer fitted on the old blend, the old run's curves) stays beside the new model; refuse a
    folder `check_model_folder` refuses."""
    check_model_folder(output)
    prepare_output(output)


def _save_encoder(
    pairs: Pairs, validation: Pairs | None, cfg: RecTrainConfig, output: Path, progress: bool
) -> dict[str, Any]:
    """Fine-tune the base encoder into `output`, or copy it there unchanged when `epochs` is 0; whatever
    `output` held (an earlier model) is removed first (`prepare_model_folder`), once the run is known to
    start."""
    base = check_base_model(cfg.base_model, output)
    if cfg.epochs == 0:
        prepare_model_folder(output)
        shutil.copytree(
            base,
            output,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(
                RUN_DIR, RESCORER_DIR, f".{RESCORER_DIR}.tmp", "recommender.json", METADATA_FILE
            ),
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
    prepare_model_folder(output)
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
        "n_interactions_outside_catalog": outside_catalog(interactions, catalog)[0],  # left out
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
