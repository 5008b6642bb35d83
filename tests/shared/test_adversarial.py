"""Adversarial training (FGM, PGD) on the word embeddings, and TensorBoard logging of a run."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # type: ignore[import-untyped]
from torch import nn
from transformers.models.bert.modeling_bert import BertEmbeddings

from tests.shared.test_cli import assert_clean_failure, invoke_cli, ok, write_csv
from tests.shared.test_training import keyword_data, tiny_config
from textcore.data import Pairs
from textcore.errors import InvalidInput
from textcore.models import load_backbone
from textcore.training import train_classifier
from textcore.training.adversarial import EmbeddingAdversary, adversary_for, word_embeddings
from textcore.training.classification import ClassificationTask
from textcore.training.embedding import EmbeddingTask
from textcore.training.loop import train
from textcore.training.tracking import read_metrics

Batch = dict[str, torch.Tensor]
EPSILON = 0.05  # small beside the tiny model's embeddings: the loss is close to linear in the perturbation


@contextmanager
def embedding_sums(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Every input of the encoder's embedding LayerNorm (word + position + type embeddings), in call order."""
    layer_norm = next(m for m in model.modules() if isinstance(m, BertEmbeddings)).LayerNorm
    seen: list[torch.Tensor] = []
    handle = layer_norm.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    try:
        yield seen
    finally:
        handle.remove()


def attack(
    model: nn.Module, loss: Callable[[], torch.Tensor], adversary: EmbeddingAdversary
) -> tuple[float, float, list[torch.Tensor], int]:
    """A clean pass (recorded, backpropagated), then the attack on the same batch.

    Returns the clean and adversarial losses, the per-example norms of the final perturbation of each
    encoder call, and the number of forward passes (clean one included).
    """
    with embedding_sums(model) as seen:
        with adversary.recording():
            clean = loss()
        clean.backward()  # type: ignore[no-untyped-call]
        calls = len(seen)
        adversarial = adversary.attack(loss)
    final = seen[-calls:]
    norms = [
        torch.linalg.vector_norm((a - c).flatten(1), dim=1) for a, c in zip(final, seen[:calls], strict=True)
    ]
    return float(clean.detach()), adversarial, norms, len(seen) // calls


def classification_task(model_dir: Path, **changes: object) -> tuple[ClassificationTask, Batch]:
    """A task on the keyword data with dropout off (so that only the perturbation changes the loss)."""
    data = keyword_data(16)
    config = tiny_config(model_dir, **changes)
    task = ClassificationTask(load_backbone(str(model_dir)), data, data, ["negative", "positive"], config)
    task.param_groups()  # freezes the word embeddings, as the loop's optimizer set-up does
    task.model.eval()
    return task, task.epoch_batches(np.random.default_rng(0))[0]


def all_close_to(values: torch.Tensor, target: float) -> bool:
    return bool(torch.allclose(values, torch.full_like(values, target), atol=1e-4))


def test_fgm_moves_each_sequence_by_epsilon_raises_the_loss_and_adds_gradients(tiny_model_dir: Path) -> None:
    task, batch = classification_task(tiny_model_dir)
    weight = word_embeddings(task.model).weight
    assert isinstance(weight, torch.Tensor)
    before = weight.detach().clone()
    adversary = EmbeddingAdversary(task.model, EPSILON)
    with embedding_sums(task.model) as seen:
        with adversary.recording():
            clean = task.loss(batch)
        clean.backward()  # type: ignore[no-untyped-call]
        assert task.model.head.weight.grad is not None
        clean_grad = task.model.head.weight.grad.clone()
        adversarial = adversary.attack(lambda: task.loss(batch))
    assert len(seen) == 2  # one clean and one adversarial pass
    norms = torch.linalg.vector_norm((seen[1] - seen[0]).flatten(1), dim=1)
    assert norms.shape == (batch["input_ids"].shape[0],)
    assert all_close_to(norms, EPSILON)  # normalised per sequence, not over the batch
    assert adversarial > float(clean.detach())
    assert task.model.head.weight.grad is not None
    assert not torch.equal(task.model.head.weight.grad, clean_grad)  # the adversarial gradients add on
    # the frozen embedding matrix got no gradient and never changed; without the adversary the loss is clean
    assert not weight.requires_grad and weight.grad is None and torch.equal(weight, before)
    assert float(task.loss(batch).detach()) == float(clean.detach())


def test_pgd_takes_k_steps_inside_the_epsilon_ball(tiny_model_dir: Path) -> None:
    task, batch = classification_task(tiny_model_dir)
    adversary = EmbeddingAdversary(task.model, EPSILON, steps=3)
    clean, adversarial, norms, passes = attack(task.model, lambda: task.loss(batch), adversary)
    assert passes == 4  # clean, two intermediate steps, the final adversarial pass
    assert bool((norms[0] <= EPSILON + 1e-4).all()) and bool((norms[0] > 0).all())
    assert adversarial > clean


def test_embedding_task_perturbs_every_encoder_call(tiny_model_dir: Path) -> None:
    texts = [f"{phrase} {i}" for i, phrase in enumerate(["profit rose", "sales fell", "shares jumped"] * 4)]
    pairs = Pairs(texts, [t.upper() for t in texts], [t[::-1] for t in texts])
    config = tiny_config(tiny_model_dir, task="embedding", metric="", freeze_embeddings=True)
    task = EmbeddingTask(load_backbone(str(tiny_model_dir)), pairs, pairs, config)
    task.param_groups()
    task.model.eval()
    batch = task.epoch_batches(np.random.default_rng(0))[0]
    adversary = EmbeddingAdversary(task.model, EPSILON)
    clean, adversarial, norms, passes = attack(task.model, lambda: task.loss(batch), adversary)
    assert len(norms) == 3  # anchors, positives and negatives each get their own perturbation
    assert all(all_close_to(n, EPSILON) for n in norms)
    assert passes == 2 and adversarial > clean


def test_a_peft_wrapped_encoder_is_perturbed_too(tiny_model_dir: Path) -> None:
    task, batch = classification_task(tiny_model_dir, adapter="lora")
    assert type(task.model.encoder).__name__.startswith("Peft")
    adversary = EmbeddingAdversary(task.model, EPSILON)
    clean, adversarial, norms, _ = attack(task.model, lambda: task.loss(batch), adversary)
    assert all_close_to(norms[0], EPSILON) and adversarial > clean


@pytest.mark.parametrize(("method", "steps"), [("fgm", 1), ("pgd", 2)])
def test_adversarial_training_still_learns_the_keyword_task(
    method: str, steps: int, tiny_model_dir: Path, tmp_path: Path
) -> None:
    # the size of test_tiny_model_learns_a_keyword_task: on 80 rows and 4 epochs the tiny model scored 0.5 on
    # validation texts it had not seen (0.85 and more only while the split put copies of training texts there)
    config = tiny_config(
        tiny_model_dir, epochs=6, adversarial=method, adversarial_epsilon=EPSILON, adversarial_steps=steps
    )
    result = train_classifier(keyword_data(160), config, tmp_path / "m", progress=False)
    assert not result.loop.stopped_early
    assert result.metadata["hyperparameters"]["adversarial"] == method
    assert result.metrics["accuracy"] >= 0.85


def test_unknown_adversarial_method_or_model_is_invalid_input(tiny_model_dir: Path) -> None:
    with pytest.raises(InvalidInput, match=r"adversarial: expected one of none, fgm, pgd; found 'xyz'"):
        tiny_config(tiny_model_dir, adversarial="xyz")
    with pytest.raises(InvalidInput, match=r"adversarial: expected a model with a transformers encoder"):
        word_embeddings(nn.Linear(2, 2))
    assert adversary_for(nn.Linear(2, 2), tiny_config(tiny_model_dir)) is None  # none needs no encoder


def scalars(folder: Path) -> dict[str, list[float]]:
    """Every scalar series of the TensorBoard event files in `folder`, by tag."""
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_gets_the_step_and_validation_scalars(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = tiny_config(tiny_model_dir, epochs=2, tensorboard=str(tmp_path / "tb"))
    result = train_classifier(keyword_data(32), config, tmp_path / "model", progress=False)
    series = scalars(tmp_path / "tb" / "model")  # one subfolder per model folder
    assert set(series) == {
        "train/loss",
        "train/lr",
        "train/grad_norm",
        "val/accuracy",
        "val/macro_f1",
        "val/loss",
    }
    records = read_metrics(tmp_path / "model" / "training" / "metrics.jsonl")
    assert series["train/loss"] == pytest.approx([r["loss"] for r in records if "loss" in r])
    assert len(series["train/loss"]) == result.loop.steps
    evaluations = [r["val_accuracy"] for r in records if "val_accuracy" in r]
    assert series["val/accuracy"] == pytest.approx(evaluations)


def test_a_resumed_run_continues_its_tensorboard_series(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = keyword_data(48)
    config = tiny_config(tiny_model_dir, epochs=3, tensorboard=str(tmp_path / "tb"))
    train_part, val_part = data.subset(range(36)), data.subset(range(36, 48))

    def new_task() -> ClassificationTask:
        labels = ["negative", "positive"]
        return ClassificationTask(load_backbone(tiny_model_dir), train_part, val_part, labels, config)

    crashing = new_task()
    calls = {"n": 0}
    original_loss = crashing.loss

    def loss_that_crashes(batch: Batch) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 8:  # steps 6 and 7 are logged after the checkpoint of step 5, then the run dies
            raise RuntimeError("crash")
        return original_loss(batch)

    crashing.loss = loss_that_crashes  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="crash"):
        train(crashing, config, tmp_path / "model" / "training", progress=False)
    train(new_task(), config, tmp_path / "model" / "training", resume=True, progress=False)
    events = EventAccumulator(str(tmp_path / "tb" / "model"))
    events.Reload()
    # the crashed run's steps 6 and 7 are hidden; the resumed run's take their place
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 16))
    assert [e.step for e in events.Scalars("val/accuracy")] == [5, 10, 15]


def test_cli_trains_with_fgm_and_tensorboard(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = keyword_data(24)
    csv = write_csv(tmp_path / "d.csv", list(zip(data.texts, data.labels, strict=True)))
    args = ["train", "--data", csv, "--text-column", "review", "--label-column", "sentiment"]
    args += ["--base-model", tiny_model_dir, "--epochs", 1, "--batch-size", 8]
    ok(
        invoke_cli(
            *args, "--output", tmp_path / "m", "--adversarial", "fgm", "--tensorboard", tmp_path / "tb"
        )
    )
    metadata = json.loads((tmp_path / "m" / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["hyperparameters"]["adversarial"] == "fgm"
    assert "val/accuracy" in scalars(tmp_path / "tb" / "m")
    bad = invoke_cli(*args, "--output", tmp_path / "x", "--adversarial", "xyz")
    assert_clean_failure(bad, "adversarial: expected one of none, fgm, pgd; found 'xyz'")
