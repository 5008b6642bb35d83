"""Continual learning: retraining from the active version, the promotion gate and the untuned baseline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from tests.shared.test_cli import TEXTCORE, invoke_cli, ok, write_csv
from tests.shared.test_training import keyword_data, tiny_config
from textcore.artifacts import read_labels
from textcore.baseline import evaluate_base_model, untuned_base_model
from textcore.continual import gate, merge_labelled, recorded_config, retrain
from textcore.data import LabelledTexts, read_labelled
from textcore.errors import InvalidInput, NotFound
from textcore.registry import ModelRegistry, ModelVersion
from textcore.training import TrainConfig, train_classifier, train_classifier_from_files

COLUMNS = ("sentence", "sentiment")
FAST = {"max_length": 32, "epochs": 6}  # the texts are short
FROZEN = {
    "learning_rate": 1e-12,
    "head_learning_rate": 1e-12,
    "max_length": 32,
    "epochs": 1,
}  # changes nothing


def unique_rows(n: int, start: int) -> LabelledTexts:
    """Keyword data whose texts are all distinct (a case number each), so files never share a text."""
    data = keyword_data(n, seed=start)
    return LabelledTexts([f"{t} case {start + i}" for i, t in enumerate(data.texts)], data.labels)


def read_metadata(folder: Path) -> Any:
    return json.loads((folder / "metadata.json").read_text(encoding="utf-8"))


def write_rows(path: Path, data: LabelledTexts) -> Path:
    return write_csv(path, list(zip(data.texts, data.labels, strict=True)), header=COLUMNS)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("continual-data")
    return {
        "train": write_rows(folder / "train.csv", unique_rows(64, 0)),
        "eval": write_rows(folder / "eval.csv", unique_rows(32, 1000)),
    }


@pytest.fixture(scope="module")
def first_model(
    files: dict[str, Path], tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A good keyword classifier trained from a file (so its metadata records the training file)."""
    output = tmp_path_factory.mktemp("continual-v1") / "model"
    config = tiny_config(tiny_model_dir, **FAST)
    train_classifier_from_files(files["train"], *COLUMNS, config, output, progress=False)
    return output


@pytest.fixture
def registry(tmp_path: Path, first_model: Path) -> ModelRegistry:
    registry = ModelRegistry(tmp_path / "registry")
    registry.register("clf", first_model, promote=True)
    return registry


def test_merge_lets_new_labels_correct_old_ones() -> None:
    old = LabelledTexts(["profit rose", "sales fell", "sales fell"], ["negative", "negative", "negative"])
    new = LabelledTexts([" profit rose ", "margin grew"], ["positive", "positive"])
    merged, counts = merge_labelled(old, new)
    assert merged.texts == ["profit rose", "sales fell", "margin grew"]
    assert merged.labels == ["positive", "negative", "positive"]
    assert counts == {"old": 3, "new": 2, "corrected": 1, "duplicates": 2, "total": 3}


def test_merge_matches_texts_as_the_split_does_case_and_spacing_aside() -> None:
    """A correction typed in another case or with other spacing replaces the old row: training never sees
    both labels for one text."""
    old = LabelledTexts(["Profit rose", "sales fell"], ["negative", "negative"])
    new = LabelledTexts(["profit  ROSE", "Sales fell\n"], ["positive", "negative"])
    merged, counts = merge_labelled(old, new)
    assert merged.texts == ["Profit rose", "sales fell"]
    assert merged.labels == ["positive", "negative"]
    assert counts == {"old": 2, "new": 2, "corrected": 1, "duplicates": 2, "total": 2}


def test_retrain_starts_from_the_active_version(
    registry: ModelRegistry, files: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    active = registry.active("clf")
    rows = read_labelled(files["train"], *COLUMNS)
    old_text, new_label = rows.texts[0], "positive" if rows.labels[0] == "negative" else "negative"
    correction = LabelledTexts([old_text, "revenue soared case 5000"], [new_label, "positive"])
    new_file = write_rows(tmp_path / "new.csv", correction)
    config = tiny_config(tiny_model_dir, **FROZEN)
    result = retrain(
        registry,
        "clf",
        new_file,
        config,
        eval_data=files["eval"],
        text_column=COLUMNS[0],
        label_column=COLUMNS[1],
    )

    candidate = result.version
    assert candidate.version == 2
    assert read_metadata(candidate.path)["base_model"] == str(active.path)
    assert read_metadata(candidate.path)["untuned_base_model"] == str(tiny_model_dir)
    assert read_metadata(candidate.path)["continual"]["parent"]["version"] == 1
    assert result.rows == {"old": 64, "new": 2, "corrected": 1, "duplicates": 1, "total": 65}
    # nothing could move at this learning rate, so the candidate is the active model: warm-started head
    before, after = (
        load_file(str(active.path / "head.safetensors")),
        load_file(str(candidate.path / "head.safetensors")),
    )
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)
    # the merged data is kept inside the version, with the correction
    kept = [
        json.loads(line) for line in (candidate.path / "training" / "data.jsonl").read_text().splitlines()
    ]
    assert {"text": old_text, "label": new_label} in kept
    # equal figures: not worse, so promoted
    assert result.decision.promoted
    assert result.decision.candidate_figures == result.decision.active_figures
    assert registry.active("clf").version == 2
    # the next retrain finds its old data inside the new active version
    again = retrain(
        registry,
        "clf",
        new_file,
        config,
        eval_data=files["eval"],
        text_column=COLUMNS[0],
        label_column=COLUMNS[1],
    )
    assert again.rows["old"] == 65
    assert untuned_base_model(again.version.path) == str(tiny_model_dir)


def test_retrain_maps_head_rows_when_a_label_is_added(
    registry: ModelRegistry, files: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    fresh = LabelledTexts([f"results were flat case {i}" for i in range(6)], ["neutral"] * 6)
    new_file = write_rows(tmp_path / "new.csv", fresh)
    config = tiny_config(tiny_model_dir, **FROZEN)
    result = retrain(
        registry,
        "clf",
        new_file,
        config,
        eval_data=files["eval"],
        text_column=COLUMNS[0],
        label_column=COLUMNS[1],
    )

    labels, _ = read_labels(result.version.path)
    assert labels == ["negative", "neutral", "positive"]
    before = load_file(str(registry.get("clf", 1).path / "head.safetensors"))
    after = load_file(str(result.version.path / "head.safetensors"))
    assert torch.allclose(after["weight"][[0, 2]], before["weight"], atol=1e-6)
    assert torch.allclose(after["weight"][1], torch.zeros_like(after["weight"][1]), atol=1e-6)
    assert read_metadata(result.version.path)["continual"]["head_rows_copied"] == 2


def test_retrain_carries_a_cosine_head_over_and_a_changed_kind_of_head_starts_fresh(
    files: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    first = tmp_path / "cosine-v1"
    config = tiny_config(tiny_model_dir, head="cosine", **FAST)
    train_classifier_from_files(files["train"], *COLUMNS, config, first, progress=False)
    registry = ModelRegistry(tmp_path / "registry")
    registry.register("clf", first, promote=True)
    fresh = LabelledTexts([f"results were flat case {i}" for i in range(6)], ["neutral"] * 6)
    new_file = write_rows(tmp_path / "new.csv", fresh)
    retrain_with = partial(
        retrain,
        registry,
        "clf",
        new_file,
        eval_data=files["eval"],
        text_column=COLUMNS[0],
        label_column=COLUMNS[1],
    )

    cosine = retrain_with(tiny_config(tiny_model_dir, head="cosine", scale=8.0, **FROZEN))
    before = load_file(str(first / "head.safetensors"))
    after = load_file(str(cosine.version.path / "head.safetensors"))
    assert set(after) == {"weight", "scale"}
    assert float(after["scale"]) == 8.0  # the new recipe's, not the first version's 20
    assert torch.allclose(after["weight"][[0, 2]], before["weight"], atol=1e-6)
    assert torch.allclose(after["weight"][1], torch.zeros_like(after["weight"][1]), atol=1e-6)
    assert read_metadata(cosine.version.path)["continual"]["head_rows_copied"] == 2

    linear = retrain_with(tiny_config(tiny_model_dir, **FROZEN))
    assert set(load_file(str(linear.version.path / "head.safetensors"))) == {"weight", "bias"}
    assert read_metadata(linear.version.path)["continual"]["head_rows_copied"] == 0


def test_gate_refuses_a_worse_candidate(
    registry: ModelRegistry, files: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    rows = read_labelled(files["train"], *COLUMNS)
    flipped = LabelledTexts(rows.texts, ["positive" if y == "negative" else "negative" for y in rows.labels])
    train_classifier(flipped, tiny_config(tiny_model_dir, **FAST), tmp_path / "worse", progress=False)
    worse = registry.register("clf", tmp_path / "worse")

    decision = gate(
        registry, "clf", worse.version, files["eval"], text_column=COLUMNS[0], label_column=COLUMNS[1]
    )

    assert decision.decision == "rejected"
    assert not decision.promoted
    assert decision.active_figures is not None
    assert decision.candidate_figures["accuracy"] < decision.active_figures["accuracy"]
    assert registry.active("clf").version == 1
    event: Any = registry.history("clf")[-1]
    assert event["event"] == "gate"
    assert event["decision"] == "rejected"
    assert (event["candidate"], event["active"], event["metric"]) == (2, 1, "accuracy")
    assert event["candidate_figures"] == dict(decision.candidate_figures)
    assert event["active_figures"] == dict(decision.active_figures)
    assert event["eval_data"]["sha256"] == decision.eval_data["sha256"]
    assert event["eval_data"]["rows"] == 32
    assert "<" in str(event["reason"])


def test_gate_min_delta_and_first_promotion(
    registry: ModelRegistry, first_model: Path, files: dict[str, Path]
) -> None:
    same = registry.register("clf", first_model)
    strict = gate(
        registry,
        "clf",
        same.version,
        files["eval"],
        "macro_f1",
        0.01,
        text_column=COLUMNS[0],
        label_column=COLUMNS[1],
    )
    assert strict.decision == "rejected"
    assert strict.candidate_figures == strict.active_figures

    registry.register("fresh", first_model)
    first = gate(registry, "fresh", 1, files["eval"], text_column=COLUMNS[0], label_column=COLUMNS[1])
    assert (first.decision, first.active, first.active_figures) == ("promoted", None, None)
    assert registry.active("fresh").version == 1
    assert registry.history("fresh")[-1]["reason"] == "no active version yet"


def test_gate_and_retrain_refuse_bad_input(
    registry: ModelRegistry, files: dict[str, Path], tmp_path: Path, tiny_model_dir: Path
) -> None:
    with pytest.raises(InvalidInput, match="metric: expected one of accuracy, macro_f1; found 'f1'"):
        gate(registry, "clf", 1, files["eval"], "f1")
    with pytest.raises(InvalidInput, match="other than the active one"):
        gate(registry, "clf", 1, files["eval"])
    with pytest.raises(NotFound, match="no version 9"):
        gate(registry, "clf", 9, files["eval"])
    embedder = tmp_path / "embedder"
    embedder.mkdir()
    (embedder / "metadata.json").write_text(json.dumps({"task": "embedding"}), encoding="utf-8")
    (embedder / "model.safetensors").write_bytes(b"weights")  # never read: the task is checked first
    registry.register("clf", embedder)
    with pytest.raises(InvalidInput, match="found task 'embedding'"):
        gate(registry, "clf", 2, files["eval"], text_column=COLUMNS[0], label_column=COLUMNS[1])


def test_registry_cli_gate_checks_the_active_alias_before_evaluating(
    registry: ModelRegistry, first_model: Path, files: dict[str, Path]
) -> None:
    registry.register("clf", first_model)  # the candidate, v2
    alias = registry.root / "clf" / "active"
    alias.unlink()
    alias.mkdir()  # a broken alias: the promotion would refuse it, so evaluating first is wasted
    result = invoke_cli(
        "registry",
        "gate",
        *("--root", registry.root, "--name", "clf", "--version", 2, "--eval-data", files["eval"]),
        *("--text-column", COLUMNS[0], "--label-column", COLUMNS[1]),
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: could not gate version 2 of clf in the registry {registry.root}: {alias}: expected a file; "
        "found a folder; repair or remove the alias first"
    ]
    assert result.stdout == "" and alias.is_dir()
    assert '"gate"' not in (registry.root / "clf" / "history.jsonl").read_text(encoding="utf-8")


def test_retrain_without_old_data_says_to_pass_it(
    registry: ModelRegistry, first_model: Path, files: dict[str, Path], tmp_path: Path, tiny_model_dir: Path
) -> None:
    folder, recorded = tmp_path / "model", tmp_path / "train.csv"
    shutil.copytree(first_model, folder)
    shutil.copy(files["train"], recorded)
    metadata = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    metadata["data"]["file"]["path"] = str(recorded)
    (folder / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")
    registry.register("moved", folder, promote=True)
    new_file = write_rows(tmp_path / "new.csv", unique_rows(4, 3000))
    config = tiny_config(tiny_model_dir, **FROZEN)
    run = partial(
        retrain,
        registry,
        "moved",
        new_file,
        config,
        eval_data=files["eval"],
        text_column=COLUMNS[0],
        label_column=COLUMNS[1],
    )

    recorded.write_text(recorded.read_text(encoding="utf-8") + "extra row,negative\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"changed since .* pass the old training data \(--old-data\)"):
        run()
    recorded.unlink()
    with pytest.raises(InvalidInput, match=r"no longer exists; pass the old training data \(--old-data\)"):
        run()
    result = run(old_data=files["train"])
    assert result.rows["old"] == 64
    assert result.version.version == 2


def test_compare_base_reports_the_untuned_model_beside_the_fine_tuned_one(
    first_model: Path, files: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    result = ok(
        invoke_cli(
            "evaluate",
            "--model",
            first_model,
            "--data",
            files["eval"],
            "--text-column",
            COLUMNS[0],
            "--label-column",
            COLUMNS[1],
            "--compare-base",
        )
    )
    report = json.loads(result.stdout.splitlines()[-1])
    assert {"accuracy", "macro_f1", "n", "per_label", "confusion", "base", "delta"} <= set(report)
    base = report["base"]
    assert base["model"] == str(tiny_model_dir)
    assert (base["n"], base["train_rows"], base["excluded_overlap"]) == (32, 64, 0)
    assert 0.0 <= base["accuracy"] <= 1.0
    assert report["delta"]["accuracy"] == pytest.approx(report["accuracy"] - base["accuracy"])
    assert report["delta"]["macro_f1"] == pytest.approx(report["macro_f1"] - base["macro_f1"])
    assert "before and after fine-tuning" in result.stdout


def test_baseline_leaves_out_evaluation_texts(first_model: Path, files: dict[str, Path]) -> None:
    train = read_labelled(files["train"], *COLUMNS)
    evaluation = LabelledTexts(
        [*train.texts[:10], " profit rose case 9000 "], [*train.labels[:10], "positive"]
    )
    report = evaluate_base_model(first_model, evaluation, train_data=train, device="cpu")
    assert (report.train_rows, report.excluded_overlap, report.n) == (54, 10, 11)


def test_registry_cli_retrain_and_gate(
    registry: ModelRegistry, files: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    new_file = write_rows(tmp_path / "new.csv", unique_rows(8, 4000))
    columns = ("--text-column", COLUMNS[0], "--label-column", COLUMNS[1])
    root = ("--root", registry.root, "--name", "clf")
    retrained = ok(
        invoke_cli(
            "registry",
            "retrain",
            *root,
            "--data",
            new_file,
            "--eval-data",
            files["eval"],
            *columns,
            "--epochs",
            1,
        )
    )
    summary = json.loads(retrained.stdout.splitlines()[-1])
    assert (summary["candidate"], summary["active"]) == (2, 1)
    assert summary["decision"] in ("promoted", "rejected")
    assert summary["rows"]["new"] == 8
    assert set(summary["candidate_figures"]) == {"accuracy", "macro_f1", "n"}

    rejected = ok(
        invoke_cli(
            "registry",
            "gate",
            *root,
            "--version",
            1 if summary["decision"] == "promoted" else 2,
            "--eval-data",
            files["eval"],
            *columns,
            "--min-delta",
            0.5,
        )
    )
    assert json.loads(rejected.stdout.splitlines()[-1])["decision"] == "rejected"
    missing = invoke_cli(
        "registry",
        "retrain",
        "--root",
        registry.root,
        "--name",
        "nope",
        "--data",
        new_file,
        "--eval-data",
        files["eval"],
    )
    assert missing.returncode == 2
    assert "no model named 'nope'" in missing.stderr


def test_a_retrain_keeps_the_recipe_but_not_the_distillation_teachers(tmp_path: Path) -> None:
    recipe = TrainConfig(epochs=3, learning_rate=5e-5, teachers=("runs/t1", "runs/t2"), distill_weight=0.8)
    version = ModelVersion("intents", 2, tmp_path, "2026-01-01T00:00:00+00:00", {"hyperparameters": {
        **json.loads(json.dumps(recipe.to_dict())), "a_field_of_a_later_release": 1}})  # fmt: skip
    recorded = recorded_config(version)
    assert (recorded.epochs, recorded.learning_rate, recorded.distill_weight) == (3, 5e-5, 0.8)
    assert recorded.teachers == ()


def test_retrain_and_gate_a_multi_label_model_whose_rows_may_name_no_label(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A multi-label row with an empty cell has none of the labels: retrain read the recorded training
    # file, the new rows and the evaluation set as single-label data and refused that row.
    def tagged(n: int, start: int) -> LabelledTexts:
        data = unique_rows(n, start)
        return LabelledTexts(
            data.texts, ["" if i % 3 == 0 else f"{y}|news" for i, y in enumerate(data.labels)]
        )

    train = write_rows(tmp_path / "train.csv", tagged(32, 0))
    new = write_rows(tmp_path / "new.csv", tagged(4, 500))
    held_out = write_rows(tmp_path / "eval.csv", tagged(12, 1000))
    config = tiny_config(tiny_model_dir, **{**FROZEN, "multi_label": True})
    train_classifier_from_files(train, *COLUMNS, config, tmp_path / "model", progress=False)
    registry = ModelRegistry(tmp_path / "registry")
    registry.register("tags", tmp_path / "model", promote=True)
    for _ in range(2):  # the second one reads the merged rows the first kept in its version
        result = retrain(
            registry, "tags", new, config, eval_data=held_out, text_column=COLUMNS[0], label_column=COLUMNS[1]
        )
        assert read_labels(result.version.path) == (["negative", "news", "positive"], True)
    assert result.rows["old"] == 36 and result.rows["total"] == 36


def test_a_killed_retrain_leaves_nothing_a_later_writer_does_not_remove(
    registry: ModelRegistry, files: dict[str, Path], tmp_path: Path
) -> None:
    # Its work folder (".retrain-*": the merged rows and the model being trained) stayed in the registry
    # root for ever; it is now a staging folder, swept as a killed register's is once an hour old.
    new_file = write_rows(tmp_path / "new.csv", unique_rows(8, 4000))
    args = ["registry", "retrain", "--root", registry.root, "--name", "clf", "--data", new_file,
            "--eval-data", files["eval"], "--text-column", COLUMNS[0], "--label-column", COLUMNS[1],
            "--epochs", 200]  # fmt: skip
    process = subprocess.Popen([str(TEXTCORE), *map(str, args)], stderr=subprocess.DEVNULL)

    def hidden() -> list[Path]:
        return [p for p in registry.root.iterdir() if p.name.startswith(".")]

    try:
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            if any((p / "model" / "training" / "metrics.jsonl").is_file() for p in hidden()):
                break
            time.sleep(0.01)
    finally:
        process.kill()
        process.wait()
    (left,) = hidden()
    assert (left / "model" / "training").is_dir(), "expected the retrain to be killed while training"
    moment = time.time() - 2 * 3600
    os.utime(left, (moment, moment))
    registry.promote("clf", 1)  # any writer sweeps
    assert hidden() == []
    assert [v.version for v in registry.versions("clf")] == [1]
