"""The frozen view (`TrainConfig.blend_frozen`): the folded regression, the blend weight, the saved folder,
prediction through `Classifier`, and bad combinations refused."""

from __future__ import annotations

import gc
import json
import random
import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.shared.test_cli import assert_clean_failure, invoke_cli, ok, write_csv
from tests.shared.test_training import keyword_data, tiny_config
from textcore.classifier import Classifier
from textcore.data import LabelledTexts
from textcore.embeddings import Encoder
from textcore.errors import InvalidInput
from textcore.frozen_view import (
    BLEND_GRID,
    FROZEN_DIR,
    FrozenView,
    choose_blend_weight,
    fit_frozen_view,
    frozen_base,
    has_frozen_view,
    replace_frozen_view,
)
from textcore.models import load_tokenizer
from textcore.onnx_backend import OnnxClassifier
from textcore.training import TrainConfig, train_classifier

TOPICS = {
    "cards": ["my card was declined", "card payment failed", "new card has not arrived"],
    "loans": ["loan interest rate", "repay my loan early", "loan application status"],
    "travel": ["using the app abroad", "exchange rate on holiday", "travel notice for my trip"],
}


def topic_data(n: int, seed: int = 0) -> LabelledTexts:
    """Three classes told apart by their wording."""
    rng = random.Random(seed)
    names = sorted(TOPICS)
    labels = [names[i % 3] for i in range(n)]
    texts = [f"{rng.choice(TOPICS[y])} " + "please " * rng.randint(0, 3) for y in labels]
    return LabelledTexts(texts, labels)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities: np.ndarray = shifted / shifted.sum(axis=1, keepdims=True)  # (n, classes), rows sum to 1
    return probabilities


@pytest.mark.parametrize("data", [keyword_data(60), topic_data(60)], ids=["binary", "three-class"])
def test_the_folded_regression_matches_sklearn_on_the_encoders_embeddings(
    tiny_model_dir: Path, data: LabelledTexts
) -> None:
    labels = sorted(set(data.labels))
    tokenizer = load_tokenizer(tiny_model_dir)
    view = fit_frozen_view(str(tiny_model_dir), data.texts, data.labels, labels, tokenizer, max_length=128)
    encoder = Encoder.from_pretrained(tiny_model_dir)
    features = encoder.encode(data.texts)
    reference = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    reference.fit(features, data.labels)
    assert list(reference.classes_) == labels
    folded = softmax(features @ view.weight.numpy().T + view.bias.numpy())
    np.testing.assert_allclose(folded, reference.predict_proba(features), atol=1e-4)


def test_rows_of_weight_0_are_left_out_of_the_regression(tiny_model_dir: Path) -> None:
    data, flipped = topic_data(60), topic_data(30, seed=9)
    contradictions = LabelledTexts(flipped.texts, [sorted(TOPICS)[0]] * len(flipped))  # all one label
    tokenizer = load_tokenizer(tiny_model_dir)
    labels = sorted(TOPICS)

    def fit(rows: LabelledTexts, weights: list[float] | None) -> FrozenView:
        return fit_frozen_view(
            str(tiny_model_dir), rows.texts, rows.labels, labels, tokenizer, max_length=128, weights=weights
        )

    both = LabelledTexts(data.texts + contradictions.texts, data.labels + contradictions.labels)
    weighted = fit(both, [1.0] * len(data) + [0.0] * len(contradictions))
    plain = fit(data, None)
    features = Encoder.from_pretrained(tiny_model_dir).encode(data.texts)
    np.testing.assert_allclose(
        softmax(features @ weighted.weight.numpy().T + weighted.bias.numpy()),
        softmax(features @ plain.weight.numpy().T + plain.bias.numpy()),
        atol=1e-3,
    )
    unweighted = fit(both, None)
    assert not np.allclose(unweighted.weight.numpy(), plain.weight.numpy(), atol=1e-3)


def test_the_blend_weight_is_the_smallest_within_one_validation_row_of_the_best() -> None:
    # six rows both views get right; then rows the fine-tuned model gets narrowly wrong and the view right
    # (at w the fine-tuned (0.55, 0.45) and the view's (0.1, 0.9) blend to the right label from w = 0.15 on)
    easy_tuned, easy_frozen = [[0.9, 0.1], [0.2, 0.8]] * 3, [[0.6, 0.4], [0.4, 0.6]] * 3
    hard_tuned, hard_frozen = [0.55, 0.45], [0.1, 0.9]

    def choose(hard_rows: int) -> tuple[float, dict[str, float]]:
        tuned = np.array(easy_tuned + [hard_tuned] * hard_rows)
        frozen = np.array(easy_frozen + [hard_frozen] * hard_rows)
        return choose_blend_weight(tuned, frozen, np.array([0, 1] * 3 + [1] * hard_rows))

    weight, accuracy = choose(2)
    assert set(accuracy) == {f"{w:.2f}" for w in BLEND_GRID}
    assert accuracy["0.00"] == 0.75 and accuracy["0.10"] == 0.75 and accuracy["0.15"] == 1.0
    assert weight == 0.15  # two rows gained: the smallest weight that gains them
    weight, accuracy = choose(1)
    assert accuracy["0.15"] > accuracy["0.00"]
    assert weight == 0.0  # one row gained is within noise: no view
    assert choose_blend_weight(np.array(easy_tuned), np.array(easy_tuned), np.array([0, 1] * 3))[0] == 0.0


def test_a_classifier_with_a_frozen_view_predicts_the_blend_of_both(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = topic_data(60)
    train_classifier(data, tiny_config(tiny_model_dir, epochs=1), tmp_path / "m", progress=False)
    plain = Classifier.load(tmp_path / "m")
    assert plain.frozen_view is None
    view = fit_frozen_view(
        str(tiny_model_dir), data.texts, data.labels, plain.labels, plain.tokenizer, max_length=128
    )
    view.blend_weight = 0.3
    replace_frozen_view(tmp_path / "m", view)
    assert has_frozen_view(tmp_path / "m")
    blended = Classifier.load(tmp_path / "m")
    assert blended.frozen_view is not None and blended.frozen_view.blend_weight == 0.3

    texts = topic_data(12, seed=5).texts
    frozen = softmax(
        Encoder.from_pretrained(tiny_model_dir).encode(texts) @ view.weight.numpy().T + view.bias.numpy()
    )
    expected = 0.7 * plain.predict_proba(texts) + 0.3 * frozen
    np.testing.assert_allclose(blended.predict_proba(texts), expected, atol=1e-5)
    assert [p.label for p in blended.predict(texts)] == [plain.labels[i] for i in expected.argmax(axis=1)]

    replace_frozen_view(tmp_path / "m", None)
    assert not (tmp_path / "m" / FROZEN_DIR).exists()
    np.testing.assert_allclose(
        Classifier.load(tmp_path / "m").predict_proba(texts), plain.predict_proba(texts)
    )


def test_the_view_reads_a_shared_encoders_embeddings_and_predicts_the_same(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = topic_data(60)
    train_classifier(data, tiny_config(tiny_model_dir, epochs=1), tmp_path / "m", progress=False)
    labels = Classifier.load(tmp_path / "m").labels
    view = fit_frozen_view(
        str(tiny_model_dir), data.texts, data.labels, labels, load_tokenizer(tiny_model_dir), max_length=128
    )
    view.blend_weight = 0.4
    replace_frozen_view(tmp_path / "m", view)
    own = Classifier.load(tmp_path / "m", device="cpu", precision="fp32")
    shared = Classifier.load(tmp_path / "m", device="cpu", precision="fp32")
    texts = topic_data(12, seed=5).texts

    # an encoder with other weights, or a classifier without a view: nothing is shared
    changed = Encoder.from_pretrained(tiny_model_dir, device="cpu", precision="fp32")
    with torch.no_grad():
        next(changed.model.parameters()).add_(0.01)
    assert not shared.share_frozen_encoder(changed, changed.encode)
    plain = Classifier.load(tmp_path / "m", device="cpu", precision="fp32")
    plain.frozen_view = None
    same = Encoder.from_pretrained(tiny_model_dir, device="cpu", precision="fp32")
    assert not plain.share_frozen_encoder(same, same.encode)

    # the service's own way to embed (an equal encoder of its own, so that `same` can be guarded whole)
    service = Encoder.from_pretrained(tiny_model_dir, device="cpu", precision="fp32")
    asked: list[list[str]] = []

    def embed(batch: Sequence[str]) -> np.ndarray:
        asked.append(list(batch))
        return service.encode(batch)

    assert shared.frozen_view is not None
    own_encoder = weakref.ref(shared.frozen_view.encoder)
    assert shared.share_frozen_encoder(same, embed)
    # the view holds the shared encoder now; its own copy of the same weights is released
    assert shared.frozen_view.encoder is same
    gc.collect()
    assert own_encoder() is None

    def no_second_pass(*args: object) -> np.ndarray:
        raise AssertionError("the view ran an encoder pass of its own")

    monkeypatch.setattr(same, "encode", no_second_pass)
    monkeypatch.setattr(same, "embed_batch", no_second_pass)
    np.testing.assert_allclose(shared.predict_proba(texts), own.predict_proba(texts), atol=1e-5)
    assert asked == [texts]
    assert shared.predict_proba([]).shape == (0, len(labels))


def test_training_takes_the_frozen_view_when_fine_tuning_learnt_nothing(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    train_part, validation = topic_data(90), topic_data(30, seed=3)
    # a learning rate too small to move anything: the fine-tuned model stays at chance, the view does not
    config = tiny_config(
        tiny_model_dir, epochs=1, learning_rate=1e-9, head_learning_rate=1e-9, blend_frozen=True
    )
    result = train_classifier(train_part, config, tmp_path / "m", validation=validation, progress=False)
    record = result.metadata["frozen_view"]
    assert record["blend_weight"] > 0 and record["train_rows"] == 90
    by_weight = record["validation_accuracy_by_weight"]
    chosen = by_weight[f"{record['blend_weight']:.2f}"]
    assert chosen > by_weight["0.00"] and chosen >= max(by_weight.values()) - 1 / 30  # within a row
    assert record["base_model"] == str(tiny_model_dir)
    assert has_frozen_view(tmp_path / "m")

    # the saved model is the blended one: its validation accuracy is the one recorded
    loaded = Classifier.load(tmp_path / "m")
    predicted = [p.label for p in loaded.predict(validation.texts)]
    accuracy = np.mean([p == y for p, y in zip(predicted, validation.labels, strict=True)])
    assert accuracy == pytest.approx(result.metadata["validation_metrics"]["accuracy"])
    assert accuracy == pytest.approx(by_weight[f"{record['blend_weight']:.2f}"])

    # a retrain from this version keeps the pretrained view, not the fine-tuned encoder
    assert frozen_base(str(tmp_path / "m")) == str(tmp_path / "m" / FROZEN_DIR)
    with pytest.raises(InvalidInput, match="expected backend torch"):
        OnnxClassifier.load(tmp_path / "m")
    with pytest.raises(InvalidInput, match="the classifier's labels"):
        FrozenView.load(tmp_path / "m", ["a", "b", "c"])

    (tmp_path / "m" / FROZEN_DIR / "view.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(InvalidInput, match="expected a frozen view written by textcore"):
        Classifier.load(tmp_path / "m")

    # a later run into the same folder that keeps no view leaves none behind
    train_classifier(train_part, config.replace(blend_frozen=False), tmp_path / "m", progress=False)
    assert not has_frozen_view(tmp_path / "m")
    assert "frozen_view" not in json.loads((tmp_path / "m" / "metadata.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"multi_label": True}, "blend_frozen: expected false unless task is single-label classification"),
        ({"task": "embedding"}, "blend_frozen: expected false unless task is single-label classification"),
        ({"refit": True}, "blend_frozen: expected false with refit"),
    ],
    ids=["multi-label", "embedding", "refit"],
)
def test_blend_frozen_is_refused_where_it_cannot_apply(changes: dict[str, object], expected: str) -> None:
    with pytest.raises(InvalidInput, match=expected):
        TrainConfig(blend_frozen=True, **changes)  # type: ignore[arg-type]


def test_cli_blend_frozen(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = topic_data(60)
    csv_file = write_csv(
        tmp_path / "d.csv", list(zip(data.texts, data.labels, strict=True)), ("text", "label")
    )
    common = ("train", "--data", csv_file, "--base-model", tiny_model_dir, "--epochs", 1, "--batch-size", 8)
    ok(invoke_cli(*common, "--blend-frozen", "--output", tmp_path / "m"))
    metadata = json.loads((tmp_path / "m" / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["hyperparameters"]["blend_frozen"] is True
    assert metadata["frozen_view"]["blend_weight"] in BLEND_GRID
    assert has_frozen_view(tmp_path / "m") == (metadata["frozen_view"]["blend_weight"] > 0)
    failed = invoke_cli(*common, "--blend-frozen", "--refit", "--output", tmp_path / "r")
    assert_clean_failure(failed, "blend_frozen: expected false with refit")
    assert not (tmp_path / "r").exists()
