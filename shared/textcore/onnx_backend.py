"""Serving a trained classifier with ONNX Runtime on the CPU: same inputs and outputs as `Classifier`.

`export_onnx` writes `<folder>/model.onnx` once (the whole `TextClassifier`: encoder, mean pooling and
head), fused by ONNX Runtime's transformer optimizer; `OnnxClassifier` serves it with the same tokenising
and length-sorted batching as `Classifier`. Logits match PyTorch fp32 to about 1e-6.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.transformers.optimizer import optimize_model
from transformers import PreTrainedTokenizerBase

from textcore.artifacts import HEAD_FILE, read_labels, trained_max_length
from textcore.batching import check_batch_settings
from textcore.classifier import LabelPredictor, TextClassifier
from textcore.devices import resolve_device
from textcore.errors import InvalidInput
from textcore.frozen_view import has_frozen_view
from textcore.models import load_tokenizer, model_max_length

ONNX_FILE = "model.onnx"
WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors", HEAD_FILE)  # an adapter merges on load
INPUT_NAMES = ("input_ids", "attention_mask")


def _is_fresh(target: Path, sources: Sequence[Path]) -> bool:
    if not target.is_file():
        return False
    newest = max((p.stat().st_mtime_ns for p in sources if p.is_file()), default=0)
    return target.stat().st_mtime_ns >= newest


def export_onnx(folder: str | os.PathLike[str]) -> Path:
    """Export a trained classifier folder to `<folder>/model.onnx`, unless an up-to-date export is there.

    The graph takes `input_ids` and `attention_mask` ((batch, sequence) int64, both axes dynamic) and returns
    `logits` ((batch, n_labels) float32). It is re-exported when missing or older than the weights.

    Args:
        folder: a classifier folder written by `TextClassifier.save`.

    Returns:
        The path of the ONNX file.
    """
    folder = Path(folder)
    target = folder / ONNX_FILE
    if _is_fresh(target, [folder / name for name in WEIGHT_FILES]):
        return target
    model, _, _, _ = TextClassifier.load(folder)
    config = model.encoder.config
    # eager attention traces to the MatMul/Softmax pattern that the optimizer fuses into Attention ops
    model.encoder.set_attn_implementation("eager")
    model.eval()
    # a padded second row, so that the traced graph takes the masked path
    ids = torch.ones((2, 8), dtype=torch.long)
    mask = torch.ones((2, 8), dtype=torch.long)
    mask[1, 5:] = 0
    axes = {0: "batch", 1: "sequence"}
    with tempfile.TemporaryDirectory(dir=folder, prefix=".onnx-export.") as tmp:
        raw = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated but is the one that works offline without onnxscript;
            # the tracer warns about Python bools taken from shapes (constant for an encoder: no cache,
            # no causal mask) and about advanced indexing with negative indices (not used here).
            warnings.filterwarnings(
                "ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning
            )
            warnings.filterwarnings(
                "ignore", message="The feature will be removed", category=DeprecationWarning
            )
            warnings.filterwarnings("ignore", message="Converting a tensor to a Python")
            warnings.filterwarnings("ignore", message="Exporting aten::index operator", category=UserWarning)
            with torch.inference_mode():
                torch.onnx.export(
                    model,
                    (ids, mask),
                    str(raw),
                    dynamo=False,
                    input_names=list(INPUT_NAMES),
                    output_names=["logits"],
                    dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": {0: "batch"}},
                    opset_version=17,
                )
        optimized = optimize_model(
            str(raw),
            model_type="bert",
            num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size),
        )
        staged = Path(tmp) / ONNX_FILE
        optimized.save_model_to_file(str(staged))
        staged.replace(target)
    return target


class OnnxClassifier(LabelPredictor):
    """Serves a trained classifier folder with ONNX Runtime (CPU, fp32), like `Classifier` does with torch."""

    precision = "fp32 (onnxruntime)"

    def __init__(
        self,
        session: ort.InferenceSession,
        tokenizer: PreTrainedTokenizerBase,
        labels: list[str],
        *,
        multi_label: bool = False,
        max_length: int = 256,
        batch_size: int = 64,
    ) -> None:
        check_batch_settings(max_length, batch_size)
        self.session = session
        self.tokenizer = tokenizer
        self.labels = labels
        self.multi_label = multi_label
        self.max_length = max_length
        self.batch_size = batch_size

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike[str],
        *,
        max_length: int | None = None,
        batch_size: int = 64,
        threads: int | None = None,
        device: str = "cpu",
    ) -> OnnxClassifier:
        """Load a trained classifier folder, exporting it to ONNX first when needed (see `export_onnx`).

        Args:
            folder: a classifier folder written by `TextClassifier.save`.
            max_length: tokens per text (longer texts are truncated); by default the length the model was
                trained with. One above the model's position limit is lowered to it (`fit_max_length`).
            batch_size: texts per forward pass.
            threads: intra-op threads (default: every CPU).
            device: `cpu` or `auto` (which means the CPU here); accepted so that callers of
                `Classifier.load` can switch backends.

        Raises:
            InvalidInput: a device other than the CPU, a folder that is not a trained classifier, or one with
                a frozen view (`textcore.frozen_view`).
        """
        if device != "auto" and resolve_device(device).type != "cpu":
            raise InvalidInput(f"OnnxClassifier runs on the CPU only; found device {device!r}")
        path = Path(folder)
        labels, multi_label = read_labels(path)
        if not (path / HEAD_FILE).is_file():
            raise InvalidInput(f"expected {HEAD_FILE} in {path}; it is not a trained classifier")
        if has_frozen_view(path):
            raise InvalidInput(
                f"expected backend torch for {path}: it blends a frozen view (frozen/), which the ONNX "
                "export leaves out"
            )
        wanted = trained_max_length(path) if max_length is None else max_length
        check_batch_settings(wanted, batch_size)  # before the export, which takes seconds
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        session = ort.InferenceSession(
            str(export_onnx(path)), sess_options=options, providers=["CPUExecutionProvider"]
        )
        return cls(
            session,
            load_tokenizer(path),
            labels,
            multi_label=multi_label,
            max_length=model_max_length(path, wanted),
            batch_size=batch_size,
        )

    def _forward(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        feed = {name: batch[name].numpy() for name in INPUT_NAMES}
        return np.asarray(self.session.run(["logits"], feed)[0], dtype=np.float32)
