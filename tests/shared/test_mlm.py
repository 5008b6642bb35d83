"""The mlm task (domain-adaptive continued pretraining) on a tiny random BERT and a few dozen sentences."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from textcore.data import LabelledTexts, read_corpus
from textcore.errors import InvalidInput
from textcore.models import load_backbone, load_tokenizer
from textcore.training import TrainConfig, TrainResult, train_classifier, train_from_files, train_mlm
from textcore.training.mlm import MLM_HEAD_FILE, MaskedLMTask, chunk_texts

SUBJECTS = ["the bank", "the company", "the fund", "the board", "the insurer", "the lender"]
VERBS = ["raised its dividend", "cut its forecast", "reported higher profit", "announced a buyback"]
TEXTS = [f"{s} {v} this quarter" for s in SUBJECTS for v in VERBS] * 2  # 48 repetitive sentences


def config(model: Path, **changes: object) -> TrainConfig:
    base = TrainConfig(
        task="mlm",
        base_model=str(model),
        epochs=5,
        batch_size=8,
        learning_rate=2e-3,
        head_learning_rate=1e-2,
        evals_per_epoch=1,
        max_length=32,
        validation_fraction=0.25,
        mlm_probability=0.3,
    )
    return base.replace(**changes)


@pytest.fixture(scope="module")
def pretrained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    output = tmp_path_factory.mktemp("mlm") / "model"
    return train_mlm(TEXTS, config(tiny_model_dir), output, progress=False)


def test_pretraining_lowers_the_validation_loss_and_raises_masked_accuracy(pretrained: TrainResult) -> None:
    before = pretrained.metadata["validation_metrics_before"]
    after = pretrained.metadata["validation_metrics"]
    assert after["loss"] < before["loss"]
    assert after["accuracy"] > before["accuracy"]
    assert after["perplexity"] == pytest.approx(np.exp(after["loss"]))
    assert pretrained.metadata["task"] == "mlm"
    assert pretrained.metadata["mlm_head"] == "initialised"
    assert pretrained.metadata["data"]["validation"]["texts"] == 12  # 25% of 48
    report = json.loads((pretrained.output / "training" / "report.json").read_text(encoding="utf-8"))
    assert report == {"before": before, "after": after}
    assert (pretrained.output / "training" / "curves.png").is_file()


def test_the_folder_is_a_plain_encoder_that_keeps_the_base_pooler(
    pretrained: TrainResult, tiny_model_dir: Path
) -> None:
    base, trained = load_backbone(tiny_model_dir), load_backbone(pretrained.output)
    assert type(trained.model) is type(base.model)
    before, after = base.model.state_dict(), trained.model.state_dict()
    assert before.keys() == after.keys()
    # the pooler (unused by masked-LM training) is kept, the layers moved, the word embeddings stayed frozen
    for name, moved in [
        ("pooler.dense.weight", False),
        ("encoder.layer.1.output.dense.weight", True),
        ("embeddings.word_embeddings.weight", False),
    ]:
        assert torch.equal(before[name], after[name]) is not moved, name
    assert set(load_file(str(pretrained.output / MLM_HEAD_FILE))) == {
        "cls.predictions.bias",
        "cls.predictions.transform.dense.weight",
        "cls.predictions.transform.dense.bias",
        "cls.predictions.transform.LayerNorm.weight",
        "cls.predictions.transform.LayerNorm.bias",
    }


def test_a_classifier_fine_tunes_from_the_pretrained_folder(pretrained: TrainResult, tmp_path: Path) -> None:
    data = LabelledTexts(TEXTS, ["up" if "raised" in t or "higher" in t else "down" for t in TEXTS])
    cfg = TrainConfig(base_model=str(pretrained.output), epochs=1, batch_size=8, max_length=32)
    result = train_classifier(data, cfg, tmp_path / "classifier", progress=False)
    assert result.metadata["base_model"] == str(pretrained.output)
    assert 0.0 <= result.metadata["validation_metrics"]["accuracy"] <= 1.0


def test_a_second_round_loads_the_saved_head(pretrained: TrainResult, tmp_path: Path) -> None:
    task = MaskedLMTask(pretrained.output, TEXTS[:8], TEXTS[8:12], config(pretrained.output))
    assert not task.fresh_head
    saved = load_file(str(pretrained.output / MLM_HEAD_FILE))
    loaded = task.model.masked_lm.state_dict()["cls.predictions.bias"]
    assert torch.equal(loaded, saved["cls.predictions.bias"])
    task.model.eval()
    assert task.evaluate()["accuracy"] > 0.0  # a trained head, not a random one


def test_masks_depend_on_seed_and_epoch_and_validation_masks_are_fixed(tiny_model_dir: Path) -> None:
    task = MaskedLMTask(tiny_model_dir, TEXTS, TEXTS[:6], config(tiny_model_dir))

    def labels(epoch: int) -> list[torch.Tensor]:
        return [b["labels"] for b in task.epoch_batches(np.random.default_rng([42, epoch]))]

    first, again, second = labels(0), labels(0), labels(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(first, second, strict=True))
    task.model.eval()
    assert task.evaluate() == task.evaluate()


def test_long_texts_are_cut_into_chunks(tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_model_dir)
    encoded = chunk_texts(tokenizer, [" ".join(TEXTS[:10]), "short"], max_length=16)
    assert len(encoded) > 2
    assert all(len(ids) <= 16 for ids in encoded.ids)
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert all(ids[0] == cls_id and ids[-1] == sep_id for ids in encoded.ids)


def test_plain_text_input_has_one_text_per_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(TEXTS[:20]) + "\n   \n", encoding="utf-8")
    assert read_corpus(corpus) == TEXTS[:20]
    cfg = config(tiny_model_dir, epochs=1)
    result = train_from_files(cfg, corpus, "text", "label", tmp_path / "model", progress=False)
    assert result.metadata["data"]["file"]["texts"] == 20
    assert result.metadata["data"]["train"]["texts"] + result.metadata["data"]["validation"]["texts"] == 20


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", "\n  \n", "expected at least one non-blank line"),
        ("header.csv", "text\n", "expected at least one data row"),
        ("other.csv", "body\nsome text\n", "expected column"),
        ("notes.md", "some text\n", "expected one of .txt"),
    ],
)
def test_files_without_texts_are_refused(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InvalidInput, match=message):
        read_corpus(path, "text")


def test_too_few_texts_and_a_wrong_task_are_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="at least 2 texts"):
        train_mlm(["only one"], config(tiny_model_dir), tmp_path / "m", progress=False)
    with pytest.raises(InvalidInput, match="expected task mlm"):
        train_mlm(TEXTS, config(tiny_model_dir).replace(task="embedding"), tmp_path / "m", progress=False)


def textcore(*args: object) -> subprocess.CompletedProcess[str]:
    """Run the installed console script."""
    command = [str(Path(sys.executable).parent / "textcore"), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def test_cli_trains_mlm_from_a_text_file(tmp_path: Path, tiny_model_dir: Path) -> None:
    corpus = tmp_path / "x.txt"
    corpus.write_text("\n".join(TEXTS), encoding="utf-8")
    common = ["--base-model", tiny_model_dir, "--epochs", 1, "--max-length", 32, "--mlm-probability", 0.3]
    done = textcore("train", "--task", "mlm", "--data", corpus, "--output", tmp_path / "d", *common)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])["validation"]
    assert set(figures) == {"accuracy", "loss", "perplexity"}
    metadata = json.loads((tmp_path / "d" / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["task"] == "mlm"
    assert metadata["hyperparameters"]["mlm_probability"] == 0.3
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    refused = textcore("train", "--task", "mlm", "--data", empty, "--output", tmp_path / "e")
    assert refused.returncode == 2
    assert refused.stderr.strip().startswith("error:") and "non-blank line" in refused.stderr
