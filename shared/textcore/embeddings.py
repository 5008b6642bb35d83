"""Sentence embeddings: mean-pooled, L2-normalised encoder outputs as float32 numpy arrays."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias
from torch import nn

from textcore.batching import check_batch_settings, encode_texts, map_sorted
from textcore.devices import autocast, resolve_device, use_bf16
from textcore.errors import InvalidInput
from textcore.models import DEFAULT_MODEL, Backbone, fit_max_length, load_backbone


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average token vectors over the real (unpadded) tokens.

    Args:
        hidden: (batch, tokens, dim) last hidden states.
        attention_mask: (batch, tokens) 1 for real tokens, 0 for padding.

    Returns:
        (batch, dim) float32 sentence vectors.
    """
    mask = attention_mask.unsqueeze(-1).to(torch.float32)
    summed = (hidden.to(torch.float32) * mask).sum(dim=1)
    return summed / mask.sum(dim=1).clamp(min=1.0)


class Encoder:
    """Embeds texts with a transformer encoder.

    Texts are sorted by length into batches so that little compute is spent on padding; the output keeps the
    input order. On hardware with bf16 support (CUDA, AMX CPUs) the forward pass autocasts to bf16 unless
    `precision="fp32"`. A `max_length` above what the model takes (its position embeddings) is lowered to
    that, with a logged warning.
    """

    def __init__(
        self,
        backbone: Backbone,
        *,
        device: str = "auto",
        precision: str = "auto",
        max_length: int = 256,
        batch_size: int = 64,
    ) -> None:
        check_batch_settings(max_length, batch_size)
        self.device = resolve_device(device)
        self.bf16 = use_bf16(precision, self.device)
        self.backbone = backbone
        # typed as a plain Module: transformers' own annotations of .to()/.eval() confuse the checker
        self.model = cast(nn.Module, backbone.model)
        self.model.to(self.device)
        self.model.eval()
        self.tokenizer = backbone.tokenizer
        self.max_length = fit_max_length(max_length, backbone.model.config, self.tokenizer)
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(
        cls,
        name: str | os.PathLike[str] = DEFAULT_MODEL,
        *,
        device: str = "auto",
        precision: str = "auto",
        max_length: int = 256,
        batch_size: int = 64,
    ) -> Encoder:
        """Load an encoder by alias, folder or hub id (see `textcore.models.resolve_model`)."""
        return cls(
            load_backbone(name),
            device=device,
            precision=precision,
            max_length=max_length,
            batch_size=batch_size,
        )

    @property
    def dim(self) -> int:
        """Embedding width."""
        return self.backbone.hidden_size

    def embed_batch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(batch, dim) float32 L2-normalised embeddings of one padded batch, with gradients if enabled."""
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with autocast(self.device, self.bf16):
            hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
        return F.normalize(mean_pool(hidden, batch["attention_mask"]), dim=-1)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Embed texts.

        Args:
            texts: the texts to embed.
            batch_size: texts per forward pass; None: the encoder's own.

        Returns:
            (len(texts), dim) float32, L2-normalised, in input order.

        Raises:
            InvalidInput: a single string instead of a list, or a `batch_size` below 1.
        """
        if isinstance(texts, str):
            raise InvalidInput("expected a list of texts; found a single string")
        size = self.batch_size if batch_size is None else batch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InvalidInput(f"expected batch_size >= 1 (or None: the encoder's own); found {batch_size!r}")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encoded = encode_texts(self.tokenizer, texts, self.max_length)
        pad_id = int(self.tokenizer.pad_token_id or 0)
        return map_sorted(
            encoded,
            pad_id,
            size,
            self.dim,
            lambda batch: self.embed_batch(batch).float().cpu().numpy(),
        )
