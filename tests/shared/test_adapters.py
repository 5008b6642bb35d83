"""LoRA and AdaLoRA through peft: a small trainable share, small folders, and a reload that merges the adapter
into the base weights and gives the outputs of the trained model in memory (classifier, embedder,
cross-encoder and tagger; an mlm run keeps full weights with its adapter merged)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.shared.test_cli import invoke_cli, ok, write_csv
from tests.shared.test_cross_encoder import KEYWORDS, keyword_pairs
from tests.shared.test_mlm import TEXTS as MLM_TEXTS
from tests.shared.test_mlm import config as mlm_config
from tests.shared.test_token_classification import TEMPLATES, tagged
from tests.shared.test_token_classification import tiny_config as tagger_config
from tests.shared.test_training import keyword_data, tiny_config
from textcore.adapters import adapter_penalty, after_optimizer_step, save_encoder, wrap_encoder
from textcore.artifacts import write_metadata
from textcore.bio import tag_labels
from textcore.classifier import Classifier
from textcore.data import Pairs
from textcore.embeddings import Encoder
from textcore.errors import InvalidInput, NotFound
from textcore.models import load_backbone, model_max_length, resolve_model
from textcore.reranker import Reranker
from textcore.tagger import Tagger
from textcore.training import TrainConfig, TrainResult, train_classifier, train_embedder
from textcore.training.classification import ClassificationTask
from textcore.training.cross_encoder import RELEVANT, CrossEncoderTask
from textcore.training.embedding import EmbeddingTask
from textcore.training.loop import train
from textcore.training.mlm import MaskedLMTask
from textcore.training.params import encoder_param_groups
from textcore.training.token_classification import TokenClassificationTask

LABELS = ["negative", "positive"]
# An adapter starts as a no-op (LoRA's B and AdaLoRA's singular values are zero), so it needs a higher rate
# than full fine-tuning to move the tiny random encoder within a few dozen steps.
LEARNING_RATE = {"lora": 1e-2, "adalora": 5e-2}


def adapter_config(model: Path, adapter: str, **changes: object) -> TrainConfig:
    return tiny_config(
        model, adapter=adapter, learning_rate=LEARNING_RATE[adapter], precision="fp32", **changes
    )


def weight_bytes(folder: Path, name: str) -> int:
    return (folder / name).stat().st_size


@pytest.fixture(scope="module")
def full_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    output = tmp_path_factory.mktemp("full") / "model"
    config = tiny_config(tiny_model_dir, epochs=1, precision="fp32")
    return train_classifier(keyword_data(32), config, output, progress=False)


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    output = tmp_path_factory.mktemp("lora") / "model"
    config = adapter_config(tiny_model_dir, "lora", epochs=1)
    return train_classifier(keyword_data(32), config, output, progress=False)


# classification


@pytest.mark.parametrize("adapter", ["lora", "adalora"])
def test_adapter_learns_and_reloads_merged_to_the_same_logits(
    adapter: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = adapter_config(tiny_model_dir, adapter, epochs=8)
    validation = keyword_data(40, seed=99)
    torch.manual_seed(config.seed)
    task = ClassificationTask(load_backbone(tiny_model_dir), keyword_data(80), validation, LABELS, config)
    train(task, config, tmp_path / "run", progress=False)
    assert task.evaluate()["accuracy"] >= 0.85
    if adapter == "adalora":  # the rank allocation ran after each step and pruned some singular triplets
        values = [p for name, p in task.model.named_parameters() if "lora_E" in name]
        assert any(bool((v == 0).any()) for v in values)
    in_memory = task.logits(task.val_ids)

    task.model.save(tmp_path / "model", task.tokenizer, LABELS, multi_label=False)
    reloaded = Classifier.load(tmp_path / "model", precision="fp32")
    np.testing.assert_allclose(reloaded.logits(validation.texts), in_memory, atol=1e-5)
    assert not any("lora" in name for name, _ in reloaded.model.named_parameters()), "expected merged"


def test_adapter_folder_is_small_and_records_its_base(
    lora_run: TrainResult, full_run: TrainResult, tiny_model_dir: Path
) -> None:
    folder = lora_run.output
    assert (folder / "adapter_config.json").is_file()
    assert not (folder / "config.json").exists() and not (folder / "model.safetensors").exists()
    assert not (folder / "README.md").exists()
    adapter = weight_bytes(folder, "adapter_model.safetensors")
    assert adapter * 20 < weight_bytes(full_run.output, "model.safetensors")
    base = json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(base) == tiny_model_dir.resolve()
    assert lora_run.metadata["base_model"] == str(tiny_model_dir)
    assert resolve_model(folder) == folder.resolve()


def test_every_run_records_its_trainable_share(lora_run: TrainResult, full_run: TrainResult) -> None:
    lora, full = lora_run.metadata["training"], full_run.metadata["training"]
    assert 0 < lora["trainable_parameters"] < 0.02 * lora["total_parameters"]
    # a full fine-tune trains everything but the frozen word embeddings
    embeddings = sum(
        p.numel() for p in load_backbone(full_run.output).model.get_input_embeddings().parameters()
    )
    assert full["trainable_parameters"] == full["total_parameters"] - embeddings


def test_onnx_export_of_an_adapter_folder_matches_torch(lora_run: TrainResult) -> None:
    pytest.importorskip("onnxruntime", reason="the onnx backend needs onnxruntime")
    from textcore.onnx_backend import OnnxClassifier  # noqa: PLC0415 - optional dependency

    texts = keyword_data(12, seed=3).texts
    expected = Classifier.load(lora_run.output, precision="fp32").logits(texts)
    np.testing.assert_allclose(OnnxClassifier.load(lora_run.output).logits(texts), expected, atol=1e-4)


def test_a_max_length_above_the_base_model_limit_is_lowered_for_an_adapter_folder(
    lora_run: TrainResult,
) -> None:
    pytest.importorskip("onnxruntime", reason="the onnx backend needs onnxruntime")
    from textcore.onnx_backend import OnnxClassifier  # noqa: PLC0415 - optional dependency

    # the adapter folder has no config.json: the limit is its base's 128 positions (its tokenizer says 512)
    assert model_max_length(lora_run.output, 1024) == 128
    classifier = OnnxClassifier.load(lora_run.output, max_length=1024)
    assert classifier.max_length == 128
    assert classifier.logits(["good " * 300]).shape == (1, len(LABELS))


# embedding and cross-encoder


def test_embedding_adapter_reloads_merged_to_the_same_vectors(tiny_model_dir: Path, tmp_path: Path) -> None:
    texts = [f"{phrase} number {i}" for i, phrase in enumerate(["profit rose", "sales fell", "new CEO"] * 6)]
    pairs = Pairs(texts, [t.upper() for t in texts])
    config = adapter_config(tiny_model_dir, "lora", task="embedding", epochs=2, metric="")
    task = EmbeddingTask(load_backbone(tiny_model_dir), pairs, pairs, config)
    train(task, config, tmp_path / "run", progress=False)
    in_memory = task.encoder.encode(texts)

    save_encoder(task.model, tmp_path / "model")
    task.encoder.tokenizer.save_pretrained(str(tmp_path / "model"))
    reloaded = Encoder.from_pretrained(tmp_path / "model", precision="fp32")
    np.testing.assert_allclose(reloaded.encode(texts), in_memory, atol=1e-5)


def test_embedding_runner_writes_an_adapter_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    texts = [f"{phrase} number {i}" for i, phrase in enumerate(["profit rose", "sales fell"] * 6)]
    config = adapter_config(tiny_model_dir, "adalora", task="embedding", epochs=1, metric="")
    result = train_embedder(Pairs(texts, [t.upper() for t in texts]), config, tmp_path / "m", progress=False)
    assert (tmp_path / "m" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "m" / "model.safetensors").exists()
    training = result.metadata["training"]
    assert training["trainable_parameters"] < 0.02 * training["total_parameters"]
    assert Encoder.from_pretrained(tmp_path / "m").encode(texts[:2]).shape == (2, 32)


def test_cross_encoder_adapter_reloads_merged_to_the_same_scores(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = keyword_pairs(KEYWORDS, "I have a question about my {kw}")
    config = adapter_config(tiny_model_dir, "adalora", task="cross-encoder", epochs=2, max_length=48)
    task = CrossEncoderTask(load_backbone(tiny_model_dir), data, data, config)
    train(task, config, tmp_path / "run", progress=False)
    in_memory = 1.0 / (1.0 + np.exp(-task.logits(task.val_ids).astype(np.float64)))

    task.model.save(tmp_path / "model", task.tokenizer, [RELEVANT], multi_label=False)
    write_metadata(tmp_path / "model", {"task": "cross-encoder"})
    reloaded = Reranker.load(tmp_path / "model", precision="fp32")
    np.testing.assert_allclose(reloaded.score_pairs(data.queries, data.passages), in_memory, atol=1e-5)


def test_tagger_adapter_reloads_merged_to_the_same_probabilities(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = tagged(TEMPLATES)
    labels = tag_labels(data.entity_counts())
    config = tagger_config(tiny_model_dir, adapter="lora", epochs=1)
    task = TokenClassificationTask(load_backbone(tiny_model_dir), data, data.subset(range(4)), labels, config)
    train(task, config, tmp_path / "run", progress=False)
    in_memory = Tagger(task.model, task.tokenizer, labels, precision="fp32").word_probabilities(data.tokens)

    task.model.save(tmp_path / "model", task.tokenizer, labels)
    write_metadata(tmp_path / "model", {"task": "token-classification"})
    assert (tmp_path / "model" / "adapter_model.safetensors").is_file()
    reloaded = Tagger.load(tmp_path / "model", precision="fp32").word_probabilities(data.tokens)
    for got, want in zip(reloaded, in_memory, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_mlm_adapter_is_merged_into_a_plain_encoder_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    # an mlm folder is a base for later runs, so it keeps full weights with the adapter merged in
    config = mlm_config(tiny_model_dir, adapter="adalora", epochs=1, precision="fp32")
    task = MaskedLMTask(tiny_model_dir, MLM_TEXTS, MLM_TEXTS[:12], config)
    train(task, config, tmp_path / "run", progress=False)
    inputs = task.tokenizer(MLM_TEXTS[:6], padding=True, return_tensors="pt")
    with torch.inference_mode():
        in_memory = task.model.encoder(**inputs)[0]

    task.save(tmp_path / "model")
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert not (tmp_path / "model" / "adapter_config.json").exists()
    reloaded_encoder = Encoder.from_pretrained(tmp_path / "model", precision="fp32").model  # in eval mode
    with torch.inference_mode():
        reloaded = reloaded_encoder(**inputs)[0]
    torch.testing.assert_close(reloaded, in_memory, atol=1e-5, rtol=0)


# the pieces


def test_only_adapters_train_and_keep_layer_wise_rates(tiny_model_dir: Path) -> None:
    config = TrainConfig(base_model=str(tiny_model_dir), adapter="lora", learning_rate=1e-3)
    encoder = wrap_encoder(load_backbone(tiny_model_dir).model, config)
    groups = encoder_param_groups(encoder, config, n_layers=2)  # also freezes the word embeddings
    trainable = {name for name, p in encoder.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in name or ".lora_B." in name for name in trainable)
    assert not any("pooler" in name for name in trainable)  # mean pooling never reads the pooler
    assert sum(len(g["params"]) for g in groups) == len(trainable)
    rates = {round(g["lr"], 9) for g in groups}
    assert rates == {round(1e-3 * 0.9**2, 9), round(1e-3 * 0.9, 9)}  # layer 0 decays once more than layer 1


def test_an_untrained_adapter_saves_and_loads_as_its_base(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = TrainConfig(base_model=str(tiny_model_dir), adapter="lora")
    folder = tmp_path / "m"
    save_encoder(wrap_encoder(load_backbone(tiny_model_dir).model, config), folder)
    load_backbone(tiny_model_dir).tokenizer.save_pretrained(str(folder))
    texts = ["profit rose", "heavy losses in the quarter"]
    base = Encoder.from_pretrained(tiny_model_dir, precision="fp32").encode(texts)
    np.testing.assert_allclose(
        Encoder.from_pretrained(folder, precision="fp32").encode(texts), base, atol=1e-6
    )
    # saving full weights into the same folder removes the adapter, so the folder is never ambiguous
    save_encoder(load_backbone(tiny_model_dir).model, folder)
    assert not (folder / "adapter_config.json").exists()
    assert (folder / "config.json").is_file()


def test_an_adapter_of_an_alias_names_the_alias_and_saves_offline(tmp_path: Path) -> None:
    backbone = load_backbone("minilm")
    save_encoder(wrap_encoder(backbone.model, TrainConfig(adapter="lora")), tmp_path)  # warnings are errors
    backbone.tokenizer.save_pretrained(str(tmp_path))
    assert json.loads((tmp_path / "adapter_config.json").read_text())["base_model_name_or_path"] == "minilm"
    assert load_backbone(tmp_path).hidden_size == 384


def test_adalora_needs_the_planned_steps_and_adds_its_penalty(tiny_model_dir: Path) -> None:
    config = TrainConfig(base_model=str(tiny_model_dir), adapter="adalora")
    with pytest.raises(InvalidInput, match="adapter adalora: expected total_steps >= 1; found 0"):
        wrap_encoder(load_backbone(tiny_model_dir).model, config)
    plain = load_backbone(tiny_model_dir).model
    after_optimizer_step(plain, 1)  # a no-op without AdaLoRA
    assert wrap_encoder(plain, config.replace(adapter="none")) is plain
    assert adapter_penalty(plain) == 0.0
    # AdaLoRA's orthogonality penalty joins the task's loss, with gradients for P and Q
    adalora = wrap_encoder(load_backbone(tiny_model_dir).model, config, total_steps=10)
    penalty = adapter_penalty(adalora)
    assert isinstance(penalty, torch.Tensor) and penalty.item() > 0 and penalty.requires_grad


def test_bad_adapter_settings_are_refused() -> None:
    with pytest.raises(InvalidInput, match="adapter: expected one of none, lora, adalora; found 'qlora'"):
        TrainConfig(adapter="qlora")
    with pytest.raises(InvalidInput, match="lora_rank: expected an integer >= 1; found 0"):
        TrainConfig(adapter="lora", lora_rank=0)


def test_adapter_folders_explain_a_missing_or_circular_base(lora_run: TrainResult, tmp_path: Path) -> None:
    config_file = "adapter_config.json"
    for name, base, error, message in [
        ("lost", str(tmp_path / "gone"), NotFound, "base model of the adapter in .*lost.*cannot find model"),
        ("self", "SELF", InvalidInput, "names its own folder as its base model"),
    ]:
        folder = tmp_path / name
        folder.mkdir()
        for item in lora_run.output.iterdir():
            if item.is_file():
                (folder / item.name).write_bytes(item.read_bytes())
        settings = json.loads((folder / config_file).read_text())
        settings["base_model_name_or_path"] = str(folder) if base == "SELF" else base
        (folder / config_file).write_text(json.dumps(settings))
        with pytest.raises(error, match=message):
            Classifier.load(folder)


def test_an_adapter_cannot_be_written_over_its_base(tiny_model_dir: Path, tmp_path: Path) -> None:
    base = tmp_path / "base"
    save_encoder(load_backbone(tiny_model_dir).model, base)
    load_backbone(tiny_model_dir).tokenizer.save_pretrained(str(base))
    encoder = wrap_encoder(load_backbone(base).model, TrainConfig(base_model=str(base), adapter="lora"))
    with pytest.raises(InvalidInput, match="expected a folder other than the adapter's base model"):
        save_encoder(encoder, base)
    assert (base / "model.safetensors").is_file()


# command line


def test_cli_trains_an_adapter_then_predicts_and_evaluates(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = keyword_data(32)
    csv_file = write_csv(tmp_path / "train.csv", list(zip(data.texts, data.labels, strict=True)))
    output = tmp_path / "model"
    common = ["--text-column", "review", "--label-column", "sentiment"]
    ok(
        invoke_cli(
            "train", "--data", csv_file, *common, "--base-model", tiny_model_dir, "--output", output,
            "--adapter", "lora", "--lora-rank", 4, "--lora-alpha", 8, "--epochs", 1, "--batch-size", 8,
        )
    )  # fmt: skip
    settings = json.loads((output / "adapter_config.json").read_text())
    assert (settings["peft_type"], settings["r"], settings["lora_alpha"]) == ("LORA", 4, 8)
    predicted = ok(invoke_cli("predict", "--model", output, stdin="profit rose\nheavy losses\n"))
    assert [json.loads(line)["label"] in LABELS for line in predicted.stdout.splitlines()] == [True, True]
    report = json.loads(
        ok(invoke_cli("evaluate", "--model", output, "--data", csv_file, *common)).stdout.splitlines()[-1]
    )
    assert report["n"] == 32
    refused = invoke_cli(
        "train", "--data", csv_file, *common, "--output", tmp_path / "x", "--adapter", "qlora"
    )
    assert refused.returncode == 2
    assert "adapter: expected one of none, lora, adalora; found 'qlora'" in refused.stderr
