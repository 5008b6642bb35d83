"""Knowledge distillation: a student classifier learning from the averaged soft labels of teachers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.shared.test_cli import assert_clean_failure, invoke_cli, ok, write_csv
from tests.shared.test_training import keyword_data, tiny_config
from textcore import Classifier, LabelledTexts
from textcore.errors import InvalidInput
from textcore.training import TrainConfig, train_classifier
from textcore.training.distill import distillation_loss, teacher_probabilities

LABELS = ["negative", "positive"]


@pytest.fixture(scope="module")
def teachers(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two classifiers trained on the keyword task with different seeds, each right on most new rows."""
    folder = tmp_path_factory.mktemp("teachers")
    data = keyword_data(160)
    paths = []
    for seed in (7, 8):
        result = train_classifier(
            data, tiny_config(tiny_model_dir, epochs=6, seed=seed), folder / f"t{seed}", progress=False
        )
        # judged on rows of their own: the carved validation split holds only a few distinct texts
        assert accuracy(result.output, keyword_data(40, seed=99)) >= 0.85
        paths.append(result.output)
    return paths


def flipped(data: LabelledTexts) -> LabelledTexts:
    other = {"negative": "positive", "positive": "negative"}
    return LabelledTexts(data.texts, [other[label] for label in data.labels])


def accuracy(model: Path, data: LabelledTexts) -> float:
    predictions = Classifier.load(model).predict(data.texts)
    return float(np.mean([p.label == y for p, y in zip(predictions, data.labels, strict=True)]))


def test_distillation_loss_is_zero_at_the_teacher_and_scaled_by_t_squared() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.3, -2.0]])
    for temperature in (1.0, 2.0, 4.0):
        at_teacher = torch.softmax(logits / temperature, dim=1)
        assert float(distillation_loss(logits, at_teacher, temperature)) == pytest.approx(0.0, abs=1e-6)
    uniform = torch.full((2, 3), 1 / 3)
    student = torch.log_softmax(logits / 2.0, dim=1)
    expected = 4.0 * float((uniform * (uniform.log() - student)).sum(dim=1).mean())
    assert float(distillation_loss(logits, uniform, 2.0)) == pytest.approx(expected, rel=1e-5)


def test_teacher_probabilities_average_each_teachers_softened_distribution(teachers: list[Path]) -> None:
    texts = keyword_data(12, seed=3).texts
    soft = teacher_probabilities([str(t) for t in teachers], texts, LABELS, temperature=2.0, precision="fp32")
    assert soft.shape == (12, 2)
    each = [
        torch.softmax(torch.from_numpy(Classifier.load(t, precision="fp32").logits(texts)) / 2.0, dim=1)
        for t in teachers
    ]
    assert torch.allclose(soft, (each[0] + each[1]) / 2, atol=1e-5)
    assert torch.allclose(soft.sum(dim=1), torch.ones(12), atol=1e-5)
    with pytest.raises(InvalidInput, match=r"teacher .*expected the labels \['a', 'b'\]"):
        teacher_probabilities([str(teachers[0])], texts, ["a", "b"], temperature=1.0)
    with pytest.raises(InvalidInput, match="at least one teacher"):
        teacher_probabilities([], texts, LABELS, temperature=1.0)


def test_the_soft_labels_alone_teach_the_student(
    tiny_model_dir: Path, teachers: list[Path], tmp_path: Path
) -> None:
    """Trained on wrong hard labels, a student that weighs only the teachers learns the right task, while
    one that weighs only the labels learns the wrong one: the soft targets reach the loss."""
    wrong = flipped(keyword_data(160))
    held_out = keyword_data(40, seed=99)
    config = tiny_config(tiny_model_dir, epochs=6, teachers=tuple(map(str, teachers)))
    train_classifier(
        wrong, config.replace(distill_weight=1.0), tmp_path / "soft", validation=held_out, progress=False
    )
    # (each run keeps its best checkpoint on validation rows labelled the way it is taught)
    hard = config.replace(distill_weight=0.0)
    train_classifier(wrong, hard, tmp_path / "hard", validation=flipped(held_out), progress=False)
    assert accuracy(tmp_path / "soft", held_out) >= 0.85
    assert accuracy(tmp_path / "hard", held_out) <= 0.15
    recorded = json.loads((tmp_path / "soft" / "metadata.json").read_text())["hyperparameters"]
    assert recorded["teachers"] == [str(t) for t in teachers]
    assert recorded["distill_weight"] == 1.0


def test_teachers_are_refused_outside_single_label_classification() -> None:
    with pytest.raises(InvalidInput, match="teachers: expected none unless task is single-label"):
        TrainConfig(task="embedding", teachers=("some/folder",))
    with pytest.raises(InvalidInput, match="teachers: expected none unless"):
        TrainConfig(multi_label=True, teachers=("some/folder",))
    with pytest.raises(InvalidInput, match="distill_weight"):
        TrainConfig(distill_weight=1.5)
    assert TrainConfig(teachers=["a", "b"]).teachers == ("a", "b")  # type: ignore[arg-type]


def test_cli_distils_from_repeated_teachers_and_refuses_a_teacher_of_other_labels(
    tiny_model_dir: Path, teachers: list[Path], tmp_path: Path
) -> None:
    data = keyword_data(48, seed=5)
    rows = list(zip(data.texts, data.labels, strict=True))
    train_csv = write_csv(tmp_path / "train.csv", rows, header=("text", "label"))
    common = ["train", "--data", train_csv, "--base-model", tiny_model_dir, "--epochs", "1"]
    result = ok(
        invoke_cli(
            *common,
            "--output",
            tmp_path / "student",
            "--teacher",
            teachers[0],
            "--teacher",
            teachers[1],
            "--distill-weight",
            "0.7",
        )
    )
    assert json.loads(result.stdout.strip().splitlines()[-1])["output"] == str(tmp_path / "student")
    recorded = json.loads((tmp_path / "student" / "metadata.json").read_text())["hyperparameters"]
    assert recorded["teachers"] == [str(t) for t in teachers]
    assert recorded["distill_weight"] == 0.7
    other = [(text, "ham" if label == "positive" else "spam") for text, label in rows]
    other_csv = write_csv(tmp_path / "other.csv", other, header=("text", "label"))
    failed = invoke_cli(
        "train", "--data", other_csv, "--base-model", tiny_model_dir, "--epochs", "1",
        "--output", tmp_path / "mismatch", "--teacher", teachers[0],
    )  # fmt: skip
    assert_clean_failure(failed, "expected the labels ['ham', 'spam']")
    assert not (tmp_path / "mismatch" / "metadata.json").exists()
