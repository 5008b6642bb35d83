"""Fine-tuning: learning, reproducibility, early stopping, resume, and the real MiniLM on real data."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import shared_data
from textcore.classifier import Classifier
from textcore.data import LabelledTexts, read_labelled
from textcore.errors import InvalidInput
from textcore.evaluation import evaluate_classifier, load_predictor
from textcore.models import load_backbone
from textcore.training import TrainConfig, train_classifier
from textcore.training.classification import ClassificationTask
from textcore.training.loop import train
from textcore.training.tracking import read_metrics

POSITIVE = ["profit rose", "sales grew strongly", "record revenue", "shares jumped", "margin improved"]
NEGATIVE = ["profit fell", "sales dropped", "heavy losses", "shares plunged", "margin shrank"]


def keyword_data(n: int, seed: int = 0) -> LabelledTexts:
    """Two classes told apart by their wording, with filler that varies the length."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = "positive" if i % 2 else "negative"
        phrase = rng.choice(POSITIVE if label == "positive" else NEGATIVE)
        texts.append(f"{phrase} " + " ".join(["in the quarter"] * rng.randint(0, 4)))
        labels.append(label)
    return LabelledTexts(texts, labels)


def tiny_config(model: Path, **changes: object) -> TrainConfig:
    base = TrainConfig(
        base_model=str(model),
        epochs=4,
        batch_size=8,
        learning_rate=2e-3,
        head_learning_rate=1e-2,
        evals_per_epoch=1,
        patience=10,
        seed=7,
    )
    return base.replace(**changes)


def test_tiny_model_learns_a_keyword_task(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = keyword_data(160)
    result = train_classifier(data, tiny_config(tiny_model_dir, epochs=6), tmp_path / "m", progress=False)
    assert result.metrics["accuracy"] >= 0.85
    held_out = keyword_data(40, seed=99)
    predictions = Classifier.load(tmp_path / "m").predict(held_out.texts)
    accuracy = np.mean([p.label == y for p, y in zip(predictions, held_out.labels, strict=True)])
    assert accuracy >= 0.85


def test_same_seed_gives_identical_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = tiny_config(tiny_model_dir, epochs=1)
    for name in ("a", "b"):
        train_classifier(keyword_data(32), config, tmp_path / name, progress=False)
    first, second = (
        load_file(str(tmp_path / "a" / "head.safetensors")),
        load_file(str(tmp_path / "b" / "head.safetensors")),
    )
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_early_stopping_restores_the_best_evaluation(tiny_model_dir: Path, tmp_path: Path) -> None:
    # A learning rate this small cannot change the validation accuracy, so every evaluation after the first
    # fails to improve and the run stops after `patience` of them.
    config = tiny_config(tiny_model_dir, epochs=20, learning_rate=1e-12, head_learning_rate=1e-12, patience=2)
    result = train_classifier(keyword_data(40), config, tmp_path / "m", progress=False)
    assert result.loop.stopped_early
    assert result.loop.best_step == result.loop.steps // 3
    assert result.metadata["training"]["stopped_early"] is True


class CrashError(RuntimeError):
    pass


def _keyword_task(model: Path, config: TrainConfig) -> ClassificationTask:
    data = keyword_data(48)
    train_part, val_part = data.subset(range(36)), data.subset(range(36, 48))
    torch.manual_seed(config.seed)
    return ClassificationTask(load_backbone(model), train_part, val_part, ["negative", "positive"], config)


@pytest.mark.parametrize(
    ("ema", "adapter"),
    [(0.0, "none"), (0.8, "none"), (0.0, "adalora")],
    ids=["weights", "weight-average", "adalora-importance"],
)
def test_resume_after_a_crash_matches_an_uninterrupted_run(
    tiny_model_dir: Path, tmp_path: Path, ema: float, adapter: str
) -> None:
    config = tiny_config(
        tiny_model_dir, epochs=3, evals_per_epoch=1, validation_fraction=0.25, ema=ema, adapter=adapter
    )
    check_resume_matches_an_uninterrupted_run(tiny_model_dir, config, tmp_path)


def test_resume_after_a_crash_between_the_checkpoint_renames(tiny_model_dir: Path, tmp_path: Path) -> None:
    # A new checkpoint is renamed in after the previous one is moved aside: a crash between the two renames
    # leaves only the previous one, under its temporary name. The run resumes from it, not from scratch.
    config = tiny_config(tiny_model_dir, epochs=2, evals_per_epoch=1)
    reference = _keyword_task(tiny_model_dir, config)
    train(reference, config, tmp_path / "reference", progress=False)
    crashing = _keyword_task(tiny_model_dir, config)
    original_loss = crashing.loss
    calls = {"n": 0}

    def loss_that_crashes(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 8:  # after the first epoch's checkpoint (5 steps per epoch)
            raise CrashError
        return original_loss(batch)

    crashing.loss = loss_that_crashes  # type: ignore[method-assign]
    with pytest.raises(CrashError):
        train(crashing, config, tmp_path / "run", progress=False)
    (tmp_path / "run" / "checkpoint").rename(tmp_path / "run" / ".checkpoint.old")

    resumed = _keyword_task(tiny_model_dir, config)
    resumed_loss, batches_trained = resumed.loss, []

    def counted_loss(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        batches_trained.append(batch)
        return resumed_loss(batch)

    resumed.loss = counted_loss  # type: ignore[method-assign]
    result = train(resumed, config, tmp_path / "run", resume=True, progress=False)
    assert (result.steps, len(batches_trained)) == (10, 5)  # steps 6 to 10, not 1 to 10
    for (name, a), (_, b) in zip(
        reference.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-6), name
    assert (tmp_path / "run" / "checkpoint").is_dir() and not (tmp_path / "run" / ".checkpoint.old").exists()


def check_resume_matches_an_uninterrupted_run(model_dir: Path, config: TrainConfig, tmp_path: Path) -> None:
    """A run that crashes after its first checkpoint and is resumed ends with the uninterrupted run's weights
    (dropout is on: the random generators must be restored too)."""
    reference = _keyword_task(model_dir, config)
    train(reference, config, tmp_path / "reference", progress=False)

    crashing = _keyword_task(model_dir, config)
    calls = {"n": 0}
    original_loss = crashing.loss

    def loss_that_crashes(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 8:  # after the first epoch's checkpoint (5 steps per epoch), before the second's
            raise CrashError
        return original_loss(batch)

    crashing.loss = loss_that_crashes  # type: ignore[method-assign]
    with pytest.raises(CrashError):
        train(crashing, config, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "checkpoint" / "state.json").is_file()

    resumed = _keyword_task(model_dir, config)
    result = train(resumed, config, tmp_path / "run", resume=True, progress=False)
    assert result.steps == 15
    for (name, a), (_, b) in zip(
        reference.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-6), name


def test_accumulation_trains_each_row_once_per_epoch_with_a_short_last_step(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # 36 rows in batches of 8: 5 batches an epoch, so steps of 2 batches leave 1 at each epoch's end. That
    # one makes a short step of its own (its loss the mean of its batches, as a full step's is); a step
    # never takes batches of the next epoch, which trained some rows 3 times and others 2 in 2 epochs.
    config = tiny_config(tiny_model_dir, epochs=2, grad_accum_steps=2)
    data = keyword_data(36)
    data = LabelledTexts([f"{text} row {i}" for i, text in enumerate(data.texts)], data.labels)
    torch.manual_seed(config.seed)
    task = ClassificationTask(
        load_backbone(tiny_model_dir), data, data.subset(range(4)), ["negative", "positive"], config
    )
    rows_seen: list[int] = []
    batch_losses: list[float] = []
    original_loss = task.loss

    def recorded_loss(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        texts = task.tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True)
        rows_seen.extend(int(text.split()[-1]) for text in texts)
        loss = original_loss(batch)
        batch_losses.append(float(loss.detach()))
        return loss

    task.loss = recorded_loss  # type: ignore[method-assign]
    result = train(task, config, tmp_path / "run", progress=False)
    assert result.steps == result.scheduled_steps == 6  # 3 steps an epoch: 2 + 2 + 1 batches
    assert sorted(rows_seen[:36]) == list(range(36)) and sorted(rows_seen[36:]) == list(range(36))
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    logged = [(r["epoch"], r["loss"]) for r in records if "loss" in r]
    sizes = [2, 2, 1] * 2
    ends = np.cumsum(sizes)
    means = [float(np.mean(batch_losses[end - size : end])) for size, end in zip(sizes, ends, strict=True)]
    assert [epoch for epoch, _ in logged] == [0, 0, 0, 1, 1, 1]
    assert [loss for _, loss in logged] == pytest.approx(means, rel=1e-5)


def test_class_weights_and_multi_label_train(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = keyword_data(40)
    weighted = train_classifier(
        data, tiny_config(tiny_model_dir, epochs=1, class_weights=True), tmp_path / "w", progress=False
    )
    assert weighted.metadata["hyperparameters"]["class_weights"] is True
    multi = LabelledTexts(data.texts, [f"{y}|finance" for y in data.labels])
    result = train_classifier(
        multi, tiny_config(tiny_model_dir, epochs=1, multi_label=True), tmp_path / "ml", progress=False
    )
    assert result.metrics["labels"] == ["finance", "negative", "positive"]
    prediction = Classifier.load(tmp_path / "ml").predict(["profit rose"])[0]
    assert set(prediction.scores) == {"finance", "negative", "positive"}


def test_validation_labels_unknown_to_training_are_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    validation = LabelledTexts(["profit rose"], ["surprised"])
    with pytest.raises(InvalidInput, match="surprised"):
        train_classifier(
            keyword_data(20),
            tiny_config(tiny_model_dir),
            tmp_path / "m",
            validation=validation,
            progress=False,
        )


def test_a_single_label_with_a_bar_in_it_is_one_label(tiny_model_dir: Path, tmp_path: Path) -> None:
    # "|" separates labels only for multi-label data; here "positive|strong" is one label of its own.
    data = keyword_data(20)
    data = LabelledTexts(data.texts, [y.replace("positive", "positive|strong") for y in data.labels])
    validation = LabelledTexts(["profit rose", "profit fell"], ["positive|strong", "negative"])
    config = tiny_config(tiny_model_dir, epochs=1)
    result = train_classifier(data, config, tmp_path / "m", validation=validation, progress=False)
    assert Classifier.load(tmp_path / "m").labels == ["negative", "positive|strong"]
    assert result.metrics["per_label"].keys() == {"negative", "positive|strong"}


def test_config_explains_bad_values() -> None:
    with pytest.raises(InvalidInput, match=r"epochs: expected an integer >= 1; found 0"):
        TrainConfig(epochs=0)
    with pytest.raises(InvalidInput, match=r"seed: expected an integer in \[0, 2\*\*32\); found -1"):
        TrainConfig(seed=-1)
    with pytest.raises(InvalidInput, match="metric"):
        TrainConfig(metric="recall@1")


def test_real_minilm_beats_the_majority_class_on_phrasebank(tmp_path: Path) -> None:
    rows = read_labelled(shared_data("financial_phrasebank/train.csv"), "sentence", "label")
    # The file is ordered by annotator agreement: sample rows at random rather than slicing.
    picked = random.Random(0).sample(range(len(rows)), 96 + 40 + 200)
    train_rows, validation, held_out = (
        rows.subset(picked[:96]),
        rows.subset(picked[96:136]),
        rows.subset(picked[136:]),
    )
    config = TrainConfig(epochs=6, batch_size=8, evals_per_epoch=1, seed=1)
    result = train_classifier(train_rows, config, tmp_path / "m", validation=validation, progress=False)
    predictions = Classifier.load(result.output).predict(held_out.texts)
    accuracy = float(np.mean([p.label == y for p, y in zip(predictions, held_out.labels, strict=True)]))
    majority = Counter(held_out.labels).most_common(1)[0][1] / len(held_out)
    assert accuracy > majority + 0.05, (accuracy, majority)


def test_recorded_validation_figures_match_the_saved_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    # The runner scores the restored best weights; dropout must be off when it does, or the figures in
    # metadata.json would disagree with what the saved model actually does.
    data, validation = keyword_data(80), keyword_data(30, seed=5)
    config = tiny_config(tiny_model_dir, epochs=2, dropout=0.5)
    result = train_classifier(data, config, tmp_path / "m", validation=validation, progress=False)
    report = evaluate_classifier(Classifier.load(tmp_path / "m", precision="fp32"), validation)
    assert result.metadata["validation_metrics"]["accuracy"] == report["accuracy"]
    assert result.metrics["confusion"] == report["confusion"]


def test_a_loaded_model_cuts_texts_where_its_training_did(tiny_model_dir: Path, tmp_path: Path) -> None:
    # Trained on 8 tokens per text, with the telling words after the filler: served on more tokens, the
    # model would see words it never saw in training, and disagree with its own validation figures.
    def late_keywords(n: int, seed: int) -> LabelledTexts:
        rng = random.Random(seed)
        labels = ["positive" if i % 2 else "negative" for i in range(n)]
        texts = [
            "in the quarter " * rng.randint(0, 4) + rng.choice(POSITIVE if y == "positive" else NEGATIVE)
            for y in labels
        ]
        return LabelledTexts(texts, labels)

    data, validation = late_keywords(80, 0), late_keywords(30, 5)
    config = tiny_config(tiny_model_dir, epochs=2, max_length=8)
    result = train_classifier(data, config, tmp_path / "m", validation=validation, progress=False)
    loaded = Classifier.load(tmp_path / "m", precision="fp32")
    assert loaded.max_length == 8 and loaded_predictor_length(tmp_path / "m") == 8
    assert Classifier.load(tmp_path / "m", max_length=32).max_length == 32  # an explicit length still wins
    report = evaluate_classifier(loaded, validation)
    assert result.metadata["validation_metrics"]["accuracy"] == report["accuracy"]
    assert result.metrics["confusion"] == report["confusion"]


def loaded_predictor_length(folder: Path) -> int:
    predictor = load_predictor(folder)
    assert isinstance(predictor, Classifier)
    return predictor.max_length


def test_a_step_with_an_inf_gradient_is_skipped_and_counted(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = tiny_config(tiny_model_dir, epochs=2)
    task = _keyword_task(tiny_model_dir, config)
    head = task.model.head.weight
    before = head.detach().clone()
    calls = {"n": 0}

    def overflow_once(grad: torch.Tensor) -> torch.Tensor:  # what an overflow in one backward pass gives
        calls["n"] += 1
        return grad * float("inf") if calls["n"] == 1 else grad

    hook_gradient(head, overflow_once)
    seen: list[torch.Tensor] = []
    task.model.head.register_forward_pre_hook(lambda _module, _args: seen.append(head.detach().clone()))
    result = train(task, config, tmp_path / "run", progress=False)
    assert result.skipped_steps == 1
    # the second step's forward pass saw the weights of the start: the first step made no update
    assert torch.equal(seen[1], before)
    assert all(torch.isfinite(p).all() for p in task.model.parameters())
    assert not torch.equal(head.detach(), before)  # and later steps trained as usual
    # the log stays strict JSON: the skipped step's gradient norm is null, not Infinity
    lines = (tmp_path / "run" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line, parse_constant=_refuse) for line in lines]
    assert records[0]["grad_norm"] is None
    assert all(r["grad_norm"] > 0 for r in records[1:] if "grad_norm" in r)


GradientHook = Callable[[torch.Tensor], torch.Tensor]


def hook_gradient(tensor: torch.Tensor, hook: GradientHook) -> None:
    """`tensor.register_hook(hook)`, typed (torch leaves it unannotated): each gradient computed for `tensor`
    goes through `hook`, and what it returns is the gradient used."""
    register = cast(Callable[[GradientHook], object], tensor.register_hook)
    register(hook)


def _refuse(constant: str) -> float:
    raise AssertionError(f"not JSON: {constant}")


def test_a_run_whose_gradients_stay_nan_stops_with_one_clear_error(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = tiny_config(tiny_model_dir, epochs=6)  # 30 steps: time for the limit of 10 in a row
    task = _keyword_task(tiny_model_dir, config)
    hook_gradient(task.model.head.weight, lambda grad: grad * float("nan"))
    with pytest.raises(InvalidInput, match=r"training diverged: .* at 10 steps in a row, up to step 10 "):
        train(task, config, tmp_path / "run", progress=False)
