"""The mlm task: unlabelled texts -> an encoder adapted to their domain by masked-language modelling.

Domain-adaptive continued pretraining, as FinBERT did on financial news: of each text, `mlm_probability` of
the tokens are chosen; 80% of those become [MASK], 10% a random token, 10% stay; the model learns to predict
the originals. Masking is drawn by transformers' `DataCollatorForLanguageModeling`, seeded from (seed, epoch)
so that a resumed run sees the same masks; the validation texts are masked once, so every evaluation scores
the same positions. Texts longer than `max_length` tokens are cut into several chunks.

The masked-LM head. A sentence-embedding base such as all-MiniLM-L6-v2 ships only the encoder weights: loading
it as `AutoModelForMaskedLM` creates the head's transform (dense + LayerNorm) and output bias afresh and ties
the decoder to the word embeddings. The fresh head trains at `head_learning_rate`, the pretrained encoder at
`learning_rate` with layer-wise decay. With `freeze_embeddings` (the default) the word embeddings, and so the
tied decoder, stay fixed: the head learns to map hidden states onto the pretrained vocabulary geometry
instead of pulling that geometry towards a random head; later fine-tuning (which freezes them too) sees the
input vectors it expects; and a step costs far less on a CPU. A head saved by an earlier run
(`mlm_head.safetensors`) is loaded and trains at `learning_rate`.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias
import transformers.utils.logging as hf_logging
from peft import PeftModel
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    AutoModelForMaskedLM,
    DataCollatorForLanguageModeling,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from textcore.adapters import adapter_penalty, after_optimizer_step, is_adapter, planned_steps, wrap_encoder
from textcore.batching import Encoded, length_grouped_batches, sorted_batches
from textcore.devices import autocast, resolve_device, use_bf16
from textcore.errors import InvalidInput
from textcore.models import load_backbone, load_tokenizer, resolve_model
from textcore.training.config import TrainConfig
from textcore.training.params import encoder_param_groups

Batch = dict[str, torch.Tensor]
MLM_HEAD_FILE = "mlm_head.safetensors"
IGNORE = -100  # the collator's label for positions that are not predicted


def split_texts(texts: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Random (train, validation) split of texts; at least one text on each side.

    Raises:
        InvalidInput: fewer than two texts.
    """
    if len(texts) < 2:
        raise InvalidInput(f"expected at least 2 texts to carve a validation split; found {len(texts)}")
    order = np.random.default_rng(seed).permutation(len(texts))
    n_val = min(len(texts) - 1, max(1, round(len(texts) * fraction)))
    return [texts[i] for i in order[n_val:]], [texts[i] for i in order[:n_val]]


def chunk_texts(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> Encoded:
    """Tokenise texts, cutting each into chunks of at most `max_length` tokens (special tokens included)."""
    out = tokenizer(
        list(texts), truncation=True, max_length=max_length, padding=False, return_overflowing_tokens=True
    )
    return Encoded(ids=[list(map(int, ids)) for ids in out["input_ids"]])


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' load report: the fresh head is expected, and recorded in the metadata instead."""
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def load_masked_lm(folder: Path) -> tuple[PreTrainedModel, bool]:
    """Load the encoder in `folder` with a masked-LM head.

    Returns:
        The model and whether its head was freshly initialised (neither in the weights nor in
        `mlm_head.safetensors`).

    Raises:
        InvalidInput: no safetensors weights, or no masked-LM class for the architecture.
    """
    if not any(folder.glob("*.safetensors")):
        raise InvalidInput(
            f"expected safetensors weights in {folder}; found none (pickle weights are refused)"
        )
    try:
        with _quiet_transformers():
            model, info = AutoModelForMaskedLM.from_pretrained(
                str(folder), use_safetensors=True, dtype=torch.float32, output_loading_info=True
            )
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot load a masked-language model from {folder}: {exc}") from exc
    if (folder / MLM_HEAD_FILE).is_file():
        head = folder / MLM_HEAD_FILE
        unexpected = model.load_state_dict(load_file(str(head)), strict=False).unexpected_keys
        if unexpected:
            raise InvalidInput(
                f"{head}: expected the head of {type(model).__name__}; found keys {unexpected[:3]}"
            )
        return model, False
    prefix = f"{model.base_model_prefix}."
    return model, any(not key.startswith(prefix) for key in info["missing_keys"])


class MaskedLanguageModel(nn.Module):
    """An encoder and its masked-LM head; the forward pass predicts only the masked positions.

    Scoring the whole vocabulary at every position would cost about as much as the encoder itself (30k x 384
    per token for MiniLM); the 15% of positions that carry a label are all the loss needs.
    """

    def __init__(self, masked_lm: PreTrainedModel) -> None:
        super().__init__()
        heads = [module for _, module in masked_lm.named_children() if module is not masked_lm.base_model]
        if len(heads) != 1:
            raise InvalidInput(
                f"expected a masked-language model with one head beside its encoder; "
                f"{type(masked_lm).__name__} has {len(heads)} modules there"
            )
        self.masked_lm = masked_lm
        # while an adapter trains, the peft wrapper of the encoder (see `textcore.adapters`)
        self.encoder: PreTrainedModel | PeftModel = cast(PreTrainedModel, masked_lm.base_model)
        self.head = heads[0]

    def get_input_embeddings(self) -> nn.Module:
        """The word embeddings (tied to the decoder)."""
        embeddings: nn.Module = self.encoder.get_input_embeddings()
        return embeddings

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, tokens) ids, mask and labels -> ((n_masked, vocab) logits, (n_masked,) target ids)."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0]  # (batch, tokens, dim)
        picked = labels != IGNORE
        logits: torch.Tensor = self.head(hidden[picked])
        return logits.float(), labels[picked]

    def head_parameters(self) -> list[nn.Parameter]:
        """Trainable head parameters that the encoder does not share (the tied decoder weight is the
        encoder's word embedding matrix)."""
        shared = {id(p) for p in self.encoder.parameters()}
        return [p for p in self.head.parameters() if p.requires_grad and id(p) not in shared]

    def head_state(self) -> dict[str, torch.Tensor]:
        """The head's own weights under the masked-LM model's names (for `mlm_head.safetensors`)."""
        shared = {id(p) for p in self.encoder.parameters()}
        return {
            name: param.detach().float().cpu().contiguous()
            for name, param in self.masked_lm.named_parameters()
            if id(param) not in shared
        }


class MaskedLMTask:
    """Continued pretraining of an encoder by masked-language modelling."""

    def __init__(
        self,
        base: str | os.PathLike[str],
        train: Sequence[str],
        validation: Sequence[str],
        config: TrainConfig,
    ) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.bf16 = use_bf16(config.precision, self.device)
        self.folder = resolve_model(base)
        self.tokenizer = load_tokenizer(self.folder)
        if self.tokenizer.mask_token is None:
            raise InvalidInput(f"expected a tokenizer with a mask token in {self.folder}; it has none")
        masked_lm, self.fresh_head = load_masked_lm(self.folder)
        self.model = MaskedLanguageModel(masked_lm).to(self.device)
        self.n_layers = int(masked_lm.config.num_hidden_layers)
        self.train_ids = chunk_texts(self.tokenizer, train, config.max_length)
        self.val_ids = chunk_texts(self.tokenizer, validation, config.max_length)
        val_order = list(sorted_batches(self.val_ids.lengths, 64))
        self.val_batches = self._masked(self.val_ids, val_order, config.seed)  # fixed masks
        self.val_masked = sum(int((b["labels"] != IGNORE).sum()) for b in self.val_batches)
        if self.val_masked == 0:
            raise InvalidInput(
                f"validation texts: expected tokens to mask (probability {config.mlm_probability}); "
                f"found none in {len(validation)} texts"
            )
        steps = planned_steps(len(self.epoch_batches(np.random.default_rng(0))), config)
        encoder = cast(PreTrainedModel, masked_lm.base_model)
        self.model.encoder = wrap_encoder(encoder, config, total_steps=steps)

    def after_step(self, step: int) -> None:
        """Called by the loop after each optimizer step (AdaLoRA re-allocates its ranks)."""
        after_optimizer_step(self.model.encoder, step)

    def _masked(self, encoded: Encoded, batches: list[np.ndarray], seed: int) -> list[Batch]:
        """Pad and mask each batch of rows; the masks depend only on `seed` and the batches."""
        collator = DataCollatorForLanguageModeling(
            self.tokenizer, mlm_probability=self.config.mlm_probability, seed=seed
        )
        out: list[Batch] = []
        for idx in batches:
            batch = collator([{"input_ids": encoded.ids[i]} for i in idx])
            out.append({k: batch[k] for k in ("input_ids", "attention_mask", "labels")})
        return out

    def param_groups(self) -> list[dict[str, Any]]:
        head_lr = self.config.head_learning_rate if self.fresh_head else self.config.learning_rate
        return [
            *encoder_param_groups(self.model.encoder, self.config, self.n_layers),
            {"params": self.model.head_parameters(), "lr": head_lr, "weight_decay": self.config.weight_decay},
        ]

    def epoch_batches(self, rng: np.random.Generator) -> list[Batch]:
        order = length_grouped_batches(self.train_ids.lengths, self.config.batch_size, rng)
        return self._masked(self.train_ids, order, seed=int(rng.integers(2**31 - 1)))

    def _predict(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        out: tuple[torch.Tensor, torch.Tensor] = self.model(
            batch["input_ids"], batch["attention_mask"], batch["labels"]
        )
        return out

    def loss(self, batch: Batch) -> torch.Tensor:
        batch = {k: v.to(self.device) for k, v in batch.items()}
        logits, targets = self._predict(batch)
        if not len(targets):  # short texts can draw no mask at all; nothing to learn from this batch
            return logits.sum() * 0.0
        return F.cross_entropy(logits, targets) + adapter_penalty(self.model.encoder)

    @torch.inference_mode()
    def evaluate(self) -> dict[str, float]:
        """Masked-token accuracy, loss and perplexity on the fixed validation masks."""
        total, correct = 0.0, 0
        for batch in self.val_batches:
            inputs = {k: v.to(self.device) for k, v in batch.items()}
            with autocast(self.device, self.bf16):
                logits, targets = self._predict(inputs)
            total += float(F.cross_entropy(logits.float(), targets, reduction="sum"))
            correct += int((logits.argmax(dim=-1) == targets).sum())
        loss = total / self.val_masked
        return {"accuracy": correct / self.val_masked, "loss": loss, "perplexity": math.exp(min(loss, 50.0))}

    def save(self, output: Path) -> None:
        """Write the encoder in the plain encoder layout (any task can start from it), the tokenizer, and the
        masked-LM head beside them in `mlm_head.safetensors`.

        The base's own encoder class is loaded again and given the trained weights, so parts that masked-LM
        training does not use (BERT's pooler) are kept as they were rather than re-initialised at each load.
        """
        backbone = load_backbone(self.folder)
        encoder = self.model.encoder
        if is_adapter(encoder):  # other runs start from this folder: it keeps full weights, adapter merged
            encoder = encoder.merge_and_unload()
        result = backbone.model.load_state_dict(encoder.state_dict(), strict=False)
        untouched = [k for k in result.missing_keys if not k.startswith("pooler.")]
        if untouched or result.unexpected_keys:
            raise InvalidInput(
                f"expected the trained encoder to match the encoder of {self.folder}; "
                f"missing {untouched[:3]}, unexpected {result.unexpected_keys[:3]}"
            )
        output.mkdir(parents=True, exist_ok=True)
        backbone.model.save_pretrained(str(output), safe_serialization=True)
        self.tokenizer.save_pretrained(str(output))
        save_file(self.model.head_state(), str(output / MLM_HEAD_FILE))
