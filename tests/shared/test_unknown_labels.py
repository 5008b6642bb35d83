"""Labels a model or a run does not know are named on one readable line, however many there are."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.shared.test_training import keyword_data, tiny_config
from textcore.classifier import Classifier
from textcore.data import LabelledTexts
from textcore.errors import InvalidInput, some_of
from textcore.evaluation import evaluate_classifier
from textcore.training import train_classifier

# What a wrong --label-column gives: every row's text taken for its label.
TEXTS = [f"review number {i} of the quarter, with its own wording" for i in range(400)]


def test_some_of_names_a_short_list_whole_and_a_long_one_by_its_first_few() -> None:
    assert some_of(["a", "b"]) == "['a', 'b']"
    assert (
        some_of([str(i) for i in range(12)])
        == "['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'] and 2 more (12 in all)"
    )


def test_evaluation_with_thousands_of_unknown_labels_names_a_few(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    train_classifier(keyword_data(12), tiny_config(tiny_model_dir, epochs=1), tmp_path / "m", progress=False)
    with pytest.raises(InvalidInput) as caught:
        evaluate_classifier(Classifier.load(tmp_path / "m"), LabelledTexts(TEXTS, TEXTS))
    message = caught.value.message
    assert "are not known to the model" in message and "and 390 more (400 in all)" in message
    assert len(message) < 1000  # all 400 texts made a line of some 22,000 characters


def test_validation_with_many_unknown_labels_names_a_few(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as caught:
        train_classifier(
            keyword_data(12),
            tiny_config(tiny_model_dir, epochs=1),
            tmp_path / "m",
            validation=LabelledTexts(TEXTS, TEXTS),
            progress=False,
        )
    message = caught.value.message
    assert "do not occur in the training data" in message and "(400 in all)" in message
    assert len(message) < 1000
