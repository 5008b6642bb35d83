"""Text classification: the model (encoder + mean pooling + linear head) and the predictor that serves it."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from textcore.artifacts import HEAD_FILE, read_labels, trained_max_length, write_labels
from textcore.batching import check_batch_settings, encode_texts, map_sorted
from textcore.devices import autocast, resolve_device, use_bf16
from textcore.embeddings import mean_pool
from textcore.errors import InvalidInput
from textcore.frozen_view import Embed, FrozenView, has_frozen_view, same_encoder
from textcore.models import fit_max_length, load_backbone

if TYPE_CHECKING:
    from peft import PeftModel

    from textcore.embeddings import Encoder


HEADS = ("linear", "cosine")


class CosineHead(nn.Module):
    """Logits = `scale` x the cosine of the pooled vector and each label's weight vector (normalised softmax).

    Every label's logit lies in [-scale, scale], so no label can win by the length of its weight vector alone;
    `scale` is a buffer, saved with the weights, which is how a saved head says it is a cosine one.
    """

    def __init__(self, hidden: int, n_labels: int, scale: float = 20.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_labels, hidden))
        nn.init.normal_(self.weight, std=0.02)
        self.scale: torch.Tensor
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        weight = nn.functional.normalize(self.weight, dim=-1).to(pooled.dtype)
        cosine = nn.functional.normalize(pooled, dim=-1) @ weight.T
        return cosine * self.scale.to(pooled.dtype)


def saved_head_kind(state: Mapping[str, torch.Tensor]) -> str:
    """The kind of head (`linear` or `cosine`) a saved head state holds: only a cosine head saves a scale."""
    return "cosine" if "scale" in state else "linear"


class TextClassifier(nn.Module):
    """A transformer encoder with a mean-pooled classification head: linear, or cosine (`CosineHead`)."""

    def __init__(
        self,
        encoder: PreTrainedModel,
        n_labels: int,
        dropout: float = 0.1,
        *,
        head: str = "linear",
        scale: float = 20.0,
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise InvalidInput(f"head: expected one of {', '.join(HEADS)}; found {head!r}")
        # while an adapter trains, the peft wrapper of `encoder` (see `textcore.adapters`)
        self.encoder: PreTrainedModel | PeftModel = encoder
        self.dropout = nn.Dropout(dropout)
        hidden = int(encoder.config.hidden_size)
        self.head: nn.Linear | CosineHead = (
            nn.Linear(hidden, n_labels) if head == "linear" else CosineHead(hidden, n_labels, scale)
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(batch, tokens) ids and mask -> (batch, n_labels) float32 logits."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
        pooled = mean_pool(hidden, attention_mask)
        logits: torch.Tensor = self.head(self.dropout(pooled))
        return logits.float()

    def save(
        self, folder: Path, tokenizer: PreTrainedTokenizerBase, labels: list[str], multi_label: bool
    ) -> None:
        """Write encoder (only its adapter if it has one), tokenizer, head and labels into `folder`."""
        from textcore.adapters import save_encoder  # noqa: PLC0415 - peft is only needed when saving

        save_encoder(self.encoder, folder)
        tokenizer.save_pretrained(str(folder))
        state = {k: v.detach().float().cpu().contiguous() for k, v in self.head.state_dict().items()}
        save_file(state, str(folder / HEAD_FILE))
        write_labels(folder, labels, multi_label)

    @classmethod
    def load(cls, folder: Path) -> tuple[TextClassifier, PreTrainedTokenizerBase, list[str], bool]:
        """Load a classifier folder written by `save`."""
        labels, multi_label = read_labels(folder)
        backbone = load_backbone(folder)
        head_path = folder / HEAD_FILE
        if not head_path.is_file():
            raise InvalidInput(f"expected {HEAD_FILE} in {folder}; it is not a trained classifier")
        try:
            state = load_file(str(head_path))
            model = (
                cls(backbone.model, len(labels), head="cosine", scale=float(state["scale"]))
                if saved_head_kind(state) == "cosine"
                else cls(backbone.model, len(labels))
            )
            model.head.load_state_dict(state)
        except (SafetensorError, RuntimeError) as exc:  # a damaged file, or a head for other labels
            raise InvalidInput(
                f"{head_path}: expected the head of a classifier of {len(labels)} labels; cannot load it: "
                f"{str(exc)[:300]}"
            ) from exc
        return model, backbone.tokenizer, labels, multi_label


@dataclass(frozen=True, slots=True)
class Prediction:
    """One text's prediction: the top label (or labels above 0.5 for multi-label) and every label's score."""

    label: str
    confidence: float
    scores: dict[str, float]
    labels: tuple[str, ...] = ()


class LabelPredictor:
    """Batches texts and turns a backend's logits into probabilities and predictions.

    A backend sets the attributes below and implements `_forward` (one padded batch -> its logits).
    """

    labels: list[str]
    multi_label: bool
    tokenizer: PreTrainedTokenizerBase
    max_length: int
    batch_size: int

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), n_labels) float32 logits in input order (length-sorted batches inside)."""
        if isinstance(texts, str):
            raise InvalidInput("expected a list of texts; found a single string")
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        encoded = encode_texts(self.tokenizer, texts, self.max_length)
        pad_id = int(self.tokenizer.pad_token_id or 0)
        return map_sorted(encoded, pad_id, self.batch_size, len(self.labels), self._forward)

    def _forward(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        """(batch, n_labels) float32 logits of one padded batch."""
        raise NotImplementedError

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), n_labels) probabilities: softmax, or independent sigmoids for multi-label."""
        logits = torch.from_numpy(self.logits(texts))
        probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)
        return probs.numpy()

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Predict a label for each text."""
        return [self._prediction(row) for row in self.predict_proba(texts)]

    def _prediction(self, row: np.ndarray) -> Prediction:
        best = int(row.argmax())
        scores = {label: float(p) for label, p in zip(self.labels, row, strict=True)}
        chosen = (
            tuple(lab for lab, p in scores.items() if p >= 0.5) if self.multi_label else (self.labels[best],)
        )
        return Prediction(label=self.labels[best], confidence=float(row[best]), scores=scores, labels=chosen)


class Classifier(LabelPredictor):
    """Serves a trained classifier: batched, length-sorted, bf16 where the hardware is fast at it."""

    def __init__(
        self,
        model: TextClassifier,
        tokenizer: PreTrainedTokenizerBase,
        labels: list[str],
        *,
        multi_label: bool = False,
        device: str = "auto",
        precision: str = "auto",
        max_length: int = 256,
        batch_size: int = 64,
        frozen_view: FrozenView | None = None,
    ) -> None:
        """`frozen_view`: blended into every prediction (see `textcore.frozen_view`; single-label only)."""
        if frozen_view is not None and multi_label:
            raise InvalidInput("expected a single-label classifier with a frozen view; found multi_label")
        check_batch_settings(max_length, batch_size)
        self.device = resolve_device(device)
        self.bf16 = use_bf16(precision, self.device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.labels = labels
        self.multi_label = multi_label
        self.max_length = fit_max_length(max_length, model.encoder.config, tokenizer)
        self.batch_size = batch_size
        self.frozen_view = frozen_view
        self._view_embed: Embed | None = None  # see share_frozen_encoder

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike[str],
        *,
        device: str = "auto",
        precision: str = "auto",
        max_length: int | None = None,
        batch_size: int = 64,
    ) -> Classifier:
        """Load a trained classifier folder (see `textcore.artifacts`), with its frozen view if it has one.

        `max_length`: tokens per text; by default the length the model was trained with, so that a loaded
        model gives the predictions its validation figures were measured on.
        """
        path = Path(folder)
        max_length = trained_max_length(path) if max_length is None else max_length
        model, tokenizer, labels, multi_label = TextClassifier.load(path)
        view = (
            FrozenView.load(
                path, labels, device=device, precision=precision, max_length=max_length, batch_size=batch_size
            )
            if has_frozen_view(path)
            else None
        )
        return cls(
            model,
            tokenizer,
            labels,
            multi_label=multi_label,
            device=device,
            precision=precision,
            max_length=max_length,
            batch_size=batch_size,
            frozen_view=view,
        )

    def share_frozen_encoder(self, encoder: Encoder, embed: Embed) -> bool:
        """Let the frozen view read its embeddings from `embed` rather than run its own encoder, when
        `encoder` is that same encoder (equal weights, vocabulary, device and precision).

        For a service that embeds the same texts anyway (the chatbot embeds each message for dense
        retrieval): `embed` is that service's own (cached) way to `encoder.encode` a list of texts, so the
        view costs no second encoder pass. The view then sees a text cut at `encoder.max_length` tokens
        rather than this classifier's `max_length`, which changes nothing for texts shorter than both. It
        also holds `encoder` in place of its own copy of the same weights, which is released.

        Returns:
            Whether the view now reads from `embed` (False without a view or for another encoder).
        """
        view = self.frozen_view
        if view is None or not same_encoder(view.encoder, encoder):
            return False
        view.encoder = encoder
        self._view_embed = embed
        return True

    @property
    def frozen_view_shared(self) -> bool:
        """Whether the frozen view reads another encoder's embeddings (see `share_frozen_encoder`)."""
        return self._view_embed is not None

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), n_labels) float32 logits in input order; with a frozen view, the log of the blended
        probabilities (whose softmax is those probabilities)."""
        logits = super().logits(texts)
        view = self.frozen_view
        if view is None or not len(logits):
            return logits
        embedded = (self._view_embed or view.encoder.encode)(texts)
        frozen = view.probabilities_of(torch.from_numpy(np.asarray(embedded, dtype=np.float32)))
        result: np.ndarray = torch.log(view.blend(torch.from_numpy(logits), frozen).clamp_min(1e-30)).numpy()
        return result

    @torch.inference_mode()
    def _forward(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        """One batch's logits from the fine-tuned model (the frozen view is blended in `logits`)."""
        inputs = {k: v.to(self.device) for k, v in batch.items()}
        with autocast(self.device, self.bf16):
            result: np.ndarray = self.model(**inputs).float().cpu().numpy()
        return result
